"""A recording proxy in front of a local AWS stand-in (DynamoDB Local, moto).

Every request is forwarded unchanged to UPSTREAM and, before that, one JSON
line is appended to LOG saying who asked for what, in IAM's terms:

    {"caller": "deprovision", "service": "dynamodb", "operation": "TransactWriteItems",
     "checks": [{"action": "dynamodb:UpdateItem", "resource": "table", "key": "RESOURCE#res_…"}, …]}

`caller` is the `app/NAME` the AWS SDK puts in its user agent: each function
names itself there (shared::config::aws_sdk_config), so the recording says
which function made each call. `checks` is what IAM evaluates for the call: a
transaction needs the action of each item inside it, on that item's key.
scripts/check_aws_calls.py compares the recording with infra/template.yaml.

No value but partition keys is written: items, secrets and answers are not.

Usage: python aws_call_recorder.py PORT UPSTREAM_URL LOG
"""

import http.client
import http.server
import json
import re
import sys
import threading
import urllib.parse

# The table's partition key and each index's (infra/template.yaml).
HASH_KEYS = {None: "pk", "PendingSync": "sync_queue"}
TRANSACT_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}


def _partition(item_or_key: dict):
    value = (item_or_key or {}).get("pk", {})
    return value.get("S") if isinstance(value, dict) else None


def _resource(index):
    return f"index/{index}" if index else "table"


def _query_partition(body: dict):
    """The hash key's value in a Query's key condition, as IAM sees it."""
    index = body.get("IndexName")
    hash_key = HASH_KEYS.get(index)
    names = body.get("ExpressionAttributeNames", {})
    values = body.get("ExpressionAttributeValues", {})
    for clause in re.split(r"\s+AND\s+", body.get("KeyConditionExpression", ""), flags=re.I):
        match = re.fullmatch(r"\s*(#?\w+)\s*=\s*(:\w+)\s*", clause)
        if match and names.get(match.group(1), match.group(1)) == hash_key:
            return values.get(match.group(2), {}).get("S")
    return None


def dynamodb_checks(operation: str, body: dict) -> list:
    action = f"dynamodb:{operation}"
    if operation in ("GetItem", "DeleteItem", "UpdateItem"):
        return [{"action": action, "resource": "table", "key": _partition(body.get("Key"))}]
    if operation == "PutItem":
        return [{"action": action, "resource": "table", "key": _partition(body.get("Item"))}]
    if operation in ("TransactWriteItems", "TransactGetItems"):
        checks = []
        for entry in body.get("TransactItems", []):
            for kind, spec in entry.items():
                key = _partition(spec.get("Item") or spec.get("Key"))
                checks.append({"action": TRANSACT_ACTIONS.get(kind, f"dynamodb:{kind}"), "resource": "table", "key": key})
        return checks
    if operation == "Query":
        index = body.get("IndexName")
        return [{"action": action, "resource": _resource(index), "key": _query_partition(body)}]
    if operation in ("BatchGetItem", "BatchWriteItem"):
        # IAM checks the batch action itself on each key.
        checks = []
        for requests in body.get("RequestItems", {}).values():
            keys = requests.get("Keys", []) if isinstance(requests, dict) else [
                spec.get("Item") or spec.get("Key") for request in requests for spec in request.values()
            ]
            checks += [{"action": action, "resource": "table", "key": _partition(key)} for key in keys]
        return checks
    # Scan, DescribeTable and the rest: no partition key to limit them.
    return [{"action": action, "resource": _resource(body.get("IndexName")), "key": None}]


def secret_part(secret_id) -> str:
    """`secret/<part>` for a part of the deployment's secret (shared::secret_parts), named
    `<name>/<part>` or by its ARN (`…:secret:<name>/<part>-XXXXXX`); the secret's own name kept
    otherwise. The names are not values: only which part was read is recorded."""
    name = str(secret_id or "")
    if ":secret:" in name:
        name = re.sub(r"-[A-Za-z0-9]{6}$", "", name.split(":secret:", 1)[1])
    return "secret/" + name.rsplit("/", 1)[-1]


def checks_for(target: str, body: dict):
    """(service, operation, checks) for an `X-Amz-Target` and its JSON body."""
    prefix, _, operation = target.partition(".")
    if prefix.startswith("DynamoDB_"):
        return "dynamodb", operation, dynamodb_checks(operation, body)
    if prefix == "secretsmanager":
        return "secretsmanager", operation, [
            {"action": f"secretsmanager:{operation}", "resource": secret_part(body.get("SecretId")), "key": None}
        ]
    if prefix == "AWSEvents":
        buses = {entry.get("EventBusName") or "default" for entry in body.get("Entries", [])} or {"default"}
        return "events", operation, [
            {"action": f"events:{operation}", "resource": "event-bus", "key": bus} for bus in sorted(buses)
        ]
    if prefix in MARKETPLACE_SERVICES:
        return marketplace_checks(operation)
    return prefix, operation, [{"action": f"{prefix}:{operation}", "resource": "unknown", "key": None}]


# AWS Marketplace's seller APIs: IAM's `aws-marketplace:` actions take no resource ARN.
MARKETPLACE_SERVICES = {"AWSMPMeteringService", "AWSMPEntitlementService"}


def marketplace_checks(operation: str):
    return "aws-marketplace", operation, [{"action": f"aws-marketplace:{operation}", "resource": "*", "key": None}]


def caller_of(headers) -> str:
    for header in ("x-amz-user-agent", "user-agent"):
        match = re.search(r"(?:^|\s)app/(\S+)", headers.get(header, ""))
        if match:
            return match.group(1)
    return "unknown"


def record_line(headers, raw: bytes, path: str = "/"):
    target = headers.get("x-amz-target")
    # Smithy RPC v2 CBOR names the operation in the path (the entitlement service's SDK default).
    rpc = re.fullmatch(r"/service/(\w+)/operation/(\w+)", path.split("?")[0])
    if not target and rpc and rpc.group(1) in MARKETPLACE_SERVICES:
        service, operation, checks = marketplace_checks(rpc.group(2))
        return {"caller": caller_of(headers), "service": service, "operation": operation, "checks": checks}
    if not target:
        return None
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        body = {}
    service, operation, checks = checks_for(target, body if isinstance(body, dict) else {})
    return {"caller": caller_of(headers), "service": service, "operation": operation, "checks": checks}


def serve(port: int, upstream: str, log_path: str):
    parsed = urllib.parse.urlsplit(upstream)
    log_lock = threading.Lock()
    local = threading.local()

    def connection():
        if getattr(local, "connection", None) is None:
            local.connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        return local.connection

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args):
            pass

        def _forward(self):
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            line = record_line(self.headers, raw, self.path)
            if line is not None:
                with log_lock, open(log_path, "a", encoding="utf-8") as log:
                    log.write(json.dumps(line) + "\n")
            headers = {name: value for name, value in self.headers.items() if name.lower() != "host"}
            headers["Host"] = parsed.netloc
            for attempt in (1, 2):
                try:
                    upstream_connection = connection()
                    upstream_connection.request(self.command, self.path, body=raw, headers=headers)
                    answer = upstream_connection.getresponse()
                    data = answer.read()
                    break
                except (ConnectionError, http.client.HTTPException, OSError):
                    # A kept-alive connection the upstream closed: once more.
                    local.connection = None
                    if attempt == 2:
                        self.send_error(502)
                        return
            self.send_response(answer.status, answer.reason)
            for name, value in answer.getheaders():
                if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2], sys.argv[3])
