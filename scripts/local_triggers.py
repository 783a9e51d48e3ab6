"""The event sources infra/template.yaml declares, driven locally the way AWS drives them, so that
what `make run` does is what the deployed stack does (docs/sync.md, "Running locally").

It reads the settings from the template itself (never a copy of them), and invokes the functions
through `cargo lambda watch`'s Invoke API, as Lambda would:

- a DynamoDB stream event source: DynamoDB Local's stream of the table is polled and each shard's
  records are handed over in Lambda's record format, in order, in batches of at most `BatchSize`
  gathered for at most `MaximumBatchingWindowInSeconds`. A failed batch (a function error, or with
  `ReportBatchItemFailures` the records from the lowest failed one on) is retried, split in two
  first when `BisectBatchOnFunctionError` is set, and blocks the records after it; after
  `MaximumRetryAttempts` retries, or once older than `MaximumRecordAgeInSeconds`, a record of the
  batch goes to the `OnFailure` destination (the local SQS) in Lambda's format and the shard moves
  on;
- a schedule (`Schedule`, `ScheduleV2`): its `rate(...)` fires with its `Input`, or a scheduled-event
  document when it has none;
- an EventBridge rule (`AWS::Events::Rule`) whose targets are log groups or queues: `prepare` makes
  it, its bus and its targets on the local EventBridge (moto's), which then delivers what the
  functions put on the bus, as EventBridge does;
- a function's EventBridge rule (`EventBridgeRule`): `prepare` makes the rule on the local
  EventBridge with a relay queue as its target; `run` hands each event the bus matched to the
  function, as EventBridge invokes it, retrying a failed one with back-off until `RetryPolicy`'s
  `MaximumRetryAttempts` or `MaximumEventAgeInSeconds`, then sending it to its `DeadLetterConfig`
  queue. Whatever is put on the local bus (`aws events put-events`) thus reaches the function.

An HTTP route is `cargo lambda watch`'s own. Any other event source stops this script at start, so a
trigger the template gains is never silently left out (scripts/local_triggers_test.py fails too).

Usage:
  python local_triggers.py plan TEMPLATE      what would be driven, as JSON (changes nothing)
  python local_triggers.py prepare TEMPLATE   creates each OnFailure queue on the local SQS, each rule
                                              on the local EventBridge, and prints `VAR=VALUE` lines
                                              (SYNC_DEAD_LETTER_QUEUE_URL=…, EVENTS_LOG_GROUP=…)
  python local_triggers.py run TEMPLATE       drives every source until stopped
Environment: WATCH_URL (cargo lambda watch's address), TABLE_NAME, AWS_ENDPOINT_URL_DYNAMODB,
AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL_EVENTBRIDGE, AWS_REGION; each template parameter is its Default unless
TEMPLATE_PARAMETERS (a JSON object of parameter names to values) says otherwise.
"""

import dataclasses
import datetime
import json
import os
import re
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

import cfn_template

# The account moto serves (its default), named in the ARNs it is given.
ACCOUNT = "123456789012"
# Served by `cargo lambda watch` itself.
HTTP_EVENTS = {"HttpApi", "Api"}
# A template resource holding an on-failure queue, and the variable its URL is known by (the stack
# output the CLI reads: cli/src/stack.rs).
QUEUE_VARIABLES = {
    "SyncDeadLetterQueue": "SYNC_DEAD_LETTER_QUEUE_URL",
    "MarketplaceEventsDeadLetterQueue": "MARKETPLACE_EVENTS_DEAD_LETTER_QUEUE_URL",
}
# A log group an EventBridge rule of the template writes to, and the variable its name is known by.
LOG_GROUP_VARIABLES = {"LifecycleEventsLog": "EVENTS_LOG_GROUP"}


class Unsupported(Exception):
    """An event source this script cannot drive: the local stack would not be the deployed one."""


# ---------------------------------------------------------------------------------------------
# The template, resolved


class Resolver:
    """Intrinsic functions resolved against parameter values, as CloudFormation resolves them; a
    resource's `Ref` or `GetAtt` stays symbolic ({"Resource": name, "Attribute": attr})."""

    def __init__(self, template: dict, overrides: dict, region: str):
        self.parameters = {name: spec.get("Default") for name, spec in template.get("Parameters", {}).items()}
        self.parameters.update(overrides)
        self.conditions = template.get("Conditions", {})
        self.pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::StackName": "local",
            "AWS::URLSuffix": "amazonaws.com",
        }

    def value(self, node):
        if isinstance(node, dict) and len(node) == 1:
            ((key, argument),) = node.items()
            if key == "Ref":
                if argument in self.parameters:
                    return self.parameters[argument]
                if argument in self.pseudo:
                    return self.pseudo[argument]
                return {"Resource": argument, "Attribute": None}
            if key == "Fn::GetAtt":
                return {"Resource": argument[0], "Attribute": argument[1]}
            if key == "Fn::Sub":
                return self.substitute(argument)
            if key == "Fn::If":
                name, then, otherwise = argument
                return self.value(then if self.condition(name) else otherwise)
            if key in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Condition"):
                return self.truth(node)
        if isinstance(node, dict):
            return {key: self.value(value) for key, value in node.items()}
        if isinstance(node, list):
            return [self.value(item) for item in node]
        return node

    def substitute(self, argument):
        text, names = (argument, {}) if isinstance(argument, str) else (argument[0], argument[1])

        def one(match):
            name = match.group(1)
            if name in names:
                return str(self.value(names[name]))
            if name in self.parameters:
                return str(self.parameters[name])
            if name in self.pseudo:
                return self.pseudo[name]
            raise Unsupported(f"Fn::Sub names {name}, which is not a parameter")

        return re.sub(r"\$\{([^}!]+)\}", one, text)

    def truth(self, node) -> bool:
        ((key, argument),) = node.items()
        if key == "Condition":
            return self.condition(argument)
        if key == "Fn::Equals":
            left, right = (self.value(side) for side in argument)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self.truth(argument[0])
        if key == "Fn::And":
            return all(self.truth(item) for item in argument)
        if key == "Fn::Or":
            return any(self.truth(item) for item in argument)
        raise Unsupported(f"condition {node!r}")

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            raise Unsupported(f"no condition {name} in the template")
        return self.truth(self.conditions[name]) if isinstance(self.conditions[name], dict) else bool(self.conditions[name])


@dataclasses.dataclass
class StreamSource:
    function: str
    event: str
    table: str
    batch_size: int
    window_seconds: float
    bisect: bool
    # -1: until the record expires (Lambda's default).
    max_retries: int
    max_age_seconds: int
    report_failures: bool
    starting_position: str
    on_failure: str | None


@dataclasses.dataclass
class RuleSource:
    """An EventBridge rule of the template (`AWS::Events::Rule`) whose targets the local EventBridge
    (moto's) delivers itself: log groups and queues."""

    rule: str
    bus: str
    pattern: dict
    # (target id, "logs" or "sqs", the target resource, its local name)
    targets: list


@dataclasses.dataclass
class FunctionRuleSource:
    """A function's `EventBridgeRule` event: what the bus matches is handed to the function."""

    function: str
    event: str
    bus: str
    pattern: dict
    # EventBridge's defaults: 185 retries over 24 hours.
    max_retries: int
    max_age_seconds: int
    dead_letter: str | None

    @property
    def rule(self) -> str:
        return f"{self.function}-{self.event}"

    @property
    def relay(self) -> str:
        return queue_name(f"{self.event}Relay")


@dataclasses.dataclass
class ScheduleSource:
    function: str
    event: str
    seconds: int
    input: dict | None


RATE_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}


def rate_seconds(expression: str) -> int:
    """`rate(5 minutes)` in seconds; a `cron(...)` or `at(...)` expression is not driven."""
    match = re.fullmatch(r"rate\((\d+) (minutes?|hours?|days?)\)", str(expression).strip())
    if not match or int(match.group(1)) < 1:
        raise Unsupported(f"schedule {expression!r}: only rate(N minutes|hours|days) is driven locally")
    return int(match.group(1)) * RATE_UNITS[match.group(2)]


def rule_source(name: str, resource: dict, resources: dict, resolver: Resolver) -> RuleSource:
    properties = resolver.value(resource.get("Properties", {}))
    if properties.get("ScheduleExpression"):
        raise Unsupported(f"rule {name}: a schedule rule (give the function a Schedule event instead)")
    targets = []
    for target in properties.get("Targets", []):
        arn = target.get("Arn")
        if not (isinstance(arn, dict) and arn.get("Attribute") == "Arn" and arn.get("Resource") in resources):
            raise Unsupported(f"rule {name}: target {target.get('Id')} is not a resource of the template")
        kind = resources[arn["Resource"]].get("Type")
        target_properties = resolver.value(resources[arn["Resource"]].get("Properties", {}))
        if kind == "AWS::Logs::LogGroup":
            targets.append((target["Id"], "logs", arn["Resource"], target_properties["LogGroupName"]))
        elif kind == "AWS::SQS::Queue":
            targets.append((target["Id"], "sqs", arn["Resource"], queue_name(arn["Resource"])))
        else:
            raise Unsupported(f"rule {name}: target {target.get('Id')} is a {kind}, which is not driven locally")
    bus = properties.get("EventBusName") or "default"
    return RuleSource(rule=name, bus=bus, pattern=properties.get("EventPattern") or {}, targets=targets)


def sources(template: dict, overrides: dict | None = None, region: str = "us-east-1") -> list:
    """Every event source the template declares, resolved, in template order; raises Unsupported
    for one that is not driven locally."""
    resolver = Resolver(template, overrides or {}, region)
    resources = template.get("Resources", {})
    found = []
    for name, resource in resources.items():
        if resource.get("Type") == "AWS::Events::Rule":
            if "Condition" not in resource or resolver.condition(resource["Condition"]):
                found.append(rule_source(name, resource, resources, resolver))
            continue
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        if "Condition" in resource and not resolver.condition(resource["Condition"]):
            continue
        function = resource["Metadata"]["BuildProperties"]["Binary"]
        for event, spec in (resource.get("Properties", {}).get("Events") or {}).items():
            kind = spec.get("Type")
            properties = resolver.value(spec.get("Properties", {}))
            if kind in HTTP_EVENTS:
                continue
            if kind == "DynamoDB":
                stream = properties.get("Stream")
                if not (isinstance(stream, dict) and stream.get("Attribute") == "StreamArn"):
                    raise Unsupported(f"{function} event {event}: the stream of a table not in the template")
                destination = properties.get("DestinationConfig", {}).get("OnFailure", {})
                if destination and destination.get("Type", "SQS") != "SQS":
                    raise Unsupported(f"{function} event {event}: on-failure destination {destination.get('Type')}")
                queue = destination.get("Destination")
                found.append(
                    StreamSource(
                        function=function,
                        event=event,
                        table=stream["Resource"],
                        batch_size=int(properties.get("BatchSize", 100)),
                        window_seconds=float(properties.get("MaximumBatchingWindowInSeconds", 0)),
                        bisect=bool(properties.get("BisectBatchOnFunctionError", False)),
                        max_retries=int(properties.get("MaximumRetryAttempts", -1)),
                        max_age_seconds=int(properties.get("MaximumRecordAgeInSeconds", -1)),
                        report_failures="ReportBatchItemFailures" in (properties.get("FunctionResponseTypes") or []),
                        starting_position=properties.get("StartingPosition", "LATEST"),
                        on_failure=queue["Resource"] if isinstance(queue, dict) else None,
                    )
                )
                continue
            if kind == "EventBridgeRule":
                retry = properties.get("RetryPolicy") or {}
                dead_letter = (properties.get("DeadLetterConfig") or {}).get("Arn")
                if dead_letter is not None and not (isinstance(dead_letter, dict) and dead_letter.get("Attribute") == "Arn"):
                    raise Unsupported(f"{function} event {event}: a dead-letter queue not in the template")
                found.append(
                    FunctionRuleSource(
                        function=function,
                        event=event,
                        bus=properties.get("EventBusName") or "default",
                        pattern=properties.get("Pattern") or {},
                        max_retries=int(retry.get("MaximumRetryAttempts", 185)),
                        max_age_seconds=int(retry.get("MaximumEventAgeInSeconds", 86400)),
                        dead_letter=dead_letter["Resource"] if dead_letter else None,
                    )
                )
                continue
            if kind in ("Schedule", "ScheduleV2"):
                enabled = properties.get("Enabled", True) and properties.get("State", "ENABLED") != "DISABLED"
                if not enabled:
                    continue
                expression = properties.get("ScheduleExpression") if kind == "ScheduleV2" else properties.get("Schedule")
                given = properties.get("Input")
                found.append(
                    ScheduleSource(
                        function=function,
                        event=event,
                        seconds=rate_seconds(expression),
                        input=json.loads(given) if isinstance(given, str) else given,
                    )
                )
                continue
            raise Unsupported(f"{function} event {event}: type {kind} is not driven locally (scripts/local_triggers.py)")
    return found


def scheduled_event(region: str) -> dict:
    """The document EventBridge hands a scheduled function that has no Input of its own."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [],
        "detail": {},
    }


# ---------------------------------------------------------------------------------------------
# Delivery


class InvokeError(Exception):
    """The function failed (an error answer), or could not be reached."""


def failed_from(records: list, answer) -> int | None:
    """Where a batch failed, by Lambda's rules for ReportBatchItemFailures: None when every record
    succeeded, else the index of the lowest failed sequence number (an identifier that is not in
    the batch fails it all: 0)."""
    failures = (answer or {}).get("batchItemFailures") if isinstance(answer, dict) else None
    if not failures:
        return None
    sequence = [record["dynamodb"]["SequenceNumber"] for record in records]
    indexes = []
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if identifier not in sequence:
            return 0
        indexes.append(sequence.index(identifier))
    return min(indexes)


def iso(seconds) -> str:
    return datetime.datetime.fromtimestamp(float(seconds), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dead_letter_record(source: StreamSource, stream_arn: str, shard: str, records: list, condition: str,
                       invocations: int, region: str) -> dict:
    """What Lambda puts on a stream source's on-failure queue: the batch's place in the stream, not
    its records (cli/src/dlq.rs reads it)."""
    created = [record["dynamodb"].get("ApproximateCreationDateTime", time.time()) for record in records]
    return {
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"arn:aws:lambda:{region}:{ACCOUNT}:function:{source.function}",
            "condition": condition,
            "approximateInvokeCount": invocations,
        },
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "DDBStreamBatchInfo": {
            "shardId": shard,
            "startSequenceNumber": records[0]["dynamodb"]["SequenceNumber"],
            "endSequenceNumber": records[-1]["dynamodb"]["SequenceNumber"],
            "approximateArrivalOfFirstRecord": iso(min(created)),
            "approximateArrivalOfLastRecord": iso(max(created)),
            "batchSize": len(records),
            "streamArn": stream_arn,
        },
    }


class BatchDelivery:
    """One batch of one shard, delivered as Lambda delivers it: retried, bisected, and at last
    dead-lettered. `invoke(payload)` answers the function's result or raises InvokeError;
    `dead_letter(records, condition, invocations)` sends the failure record."""

    def __init__(self, source: StreamSource, invoke, dead_letter, clock=time.time, sleep=time.sleep, log=None):
        self.source, self.invoke, self.dead_letter = source, invoke, dead_letter
        self.clock, self.sleep, self.log = clock, sleep, log or (lambda message: None)

    def expired(self, records: list) -> bool:
        if self.source.max_age_seconds < 0:
            return False
        oldest = min(float(record["dynamodb"].get("ApproximateCreationDateTime", self.clock())) for record in records)
        return self.clock() - oldest > self.source.max_age_seconds

    def deliver(self, batch: list) -> int:
        """Delivers `batch` until every record succeeded or was dead-lettered; the invocations made."""
        invocations = 0
        pending = [(batch, 0)]
        while pending:
            records, retries = pending.pop(0)
            if self.expired(records):
                self.dead_letter(records, "RecordAgeExceeded", retries)
                continue
            invocations += 1
            try:
                answer = self.invoke({"Records": records})
                start = failed_from(records, answer) if self.source.report_failures else None
            except InvokeError as error:
                self.log(f"{self.source.function}: batch of {len(records)} failed: {error}")
                start = 0
            if start is None:
                continue
            remaining = records[start:]
            if 0 <= self.source.max_retries <= retries:
                self.dead_letter(remaining, "RetryAttemptsExhausted", retries + 1)
                continue
            self.sleep(min(0.2 * 2**retries, 5.0))
            if self.source.bisect and len(remaining) > 1:
                half = len(remaining) // 2
                pending[:0] = [(remaining[:half], retries + 1), (remaining[half:], retries + 1)]
            else:
                pending.insert(0, (remaining, retries + 1))
        return invocations


# ---------------------------------------------------------------------------------------------
# The local services


def post_json(url: str, service: str, target: str, body: dict, timeout: float = 10):
    """A JSON-protocol AWS call to a local service (DynamoDB Local and moto check no signature,
    but read the credential scope: moto tells the service by it)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={
            "content-type": "application/x-amz-json-1.0",
            "x-amz-target": target,
            "authorization": f"AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/{service}/aws4_request, "
            "SignedHeaders=host, Signature=00",
            "x-amz-date": "20260101T000000Z",
            # Named as the SDK names its app, so the recorded calls tell the runner (Lambda's own
            # event-source poller on AWS) from the functions.
            "x-amz-user-agent": "local-triggers app/local-triggers",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read() or b"{}")


class DynamoStream:
    """The table's stream in DynamoDB Local, through the Streams API (the same JSON Lambda reads)."""

    def __init__(self, endpoint: str, table: str):
        self.endpoint, self.table = endpoint, table
        described = post_json(endpoint, "dynamodb", "DynamoDB_20120810.DescribeTable", {"TableName": table})
        self.arn = described["Table"].get("LatestStreamArn")
        if not self.arn:
            raise Unsupported(f"table {table} has no stream")

    def call(self, operation: str, body: dict) -> dict:
        return post_json(self.endpoint, "dynamodb", f"DynamoDBStreams_20120810.{operation}", body)

    def shards(self) -> list:
        return self.call("DescribeStream", {"StreamArn": self.arn})["StreamDescription"].get("Shards", [])

    def iterator(self, shard: str, position: str, after: str | None = None) -> str | None:
        body = {"StreamArn": self.arn, "ShardId": shard, "ShardIteratorType": position}
        if after:
            body = {**body, "ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after}
        return self.call("GetShardIterator", body).get("ShardIterator")

    def records(self, iterator: str) -> tuple:
        page = self.call("GetRecords", {"ShardIterator": iterator, "Limit": 1000})
        return page.get("Records", []), page.get("NextShardIterator")


def repaired(record: dict) -> dict:
    """The record as DynamoDB Streams gives it. DynamoDB Local's stream writes an empty map
    attribute as `{}` where DynamoDB's is `{"M": {}}` (GetItem on the same item answers
    `{"M": {}}`); Lambda's record decoders, ours included, refuse the former. An attribute value
    that is an empty object can only have been an empty map."""

    def value(attribute):
        if attribute == {}:
            return {"M": {}}
        if isinstance(attribute, dict) and isinstance(attribute.get("M"), dict):
            return {"M": {name: value(inner) for name, inner in attribute["M"].items()}}
        if isinstance(attribute, dict) and isinstance(attribute.get("L"), list):
            return {"L": [value(inner) for inner in attribute["L"]]}
        return attribute

    change = dict(record.get("dynamodb", {}))
    for image in ("NewImage", "OldImage", "Keys"):
        if isinstance(change.get(image), dict):
            change[image] = {name: value(attribute) for name, attribute in change[image].items()}
    return {**record, "dynamodb": change}


class StreamPoller:
    """Follows every shard of a stream, parents before children, and hands each shard's records to
    a BatchDelivery in batches of the source's size and window."""

    def __init__(self, source: StreamSource, stream, delivery_for, clock=time.time, log=print):
        self.source, self.stream, self.delivery_for, self.clock, self.log = source, stream, delivery_for, clock, log
        self.shards = {}  # shard id -> {"iterator", "buffer", "first_seen", "closed", "parent"}
        self.finished = set()

    def discover(self):
        for shard in self.stream.shards():
            shard_id = shard["ShardId"]
            if shard_id in self.shards or shard_id in self.finished:
                continue
            self.shards[shard_id] = {
                "iterator": None,
                "buffer": [],
                "first_seen": None,
                "closed": False,
                "parent": shard.get("ParentShardId"),
            }

    def poll_once(self) -> int:
        """Reads what each ready shard has and delivers the batches that are due; records delivered."""
        self.discover()
        delivered = 0
        for shard_id, state in list(self.shards.items()):
            parent = state["parent"]
            if parent and parent in self.shards:
                continue  # a child waits for its parent, as Lambda keeps order across a split
            if state["iterator"] is None and not state["closed"]:
                state["iterator"] = self.stream.iterator(shard_id, self.source.starting_position)
            if state["iterator"] is not None and len(state["buffer"]) < self.source.batch_size:
                records, state["iterator"] = self.stream.records(state["iterator"])
                if records and state["first_seen"] is None:
                    state["first_seen"] = self.clock()
                state["buffer"].extend({**repaired(record), "eventSourceARN": self.stream.arn} for record in records)
                if state["iterator"] is None:
                    state["closed"] = True
            while state["buffer"] and (
                len(state["buffer"]) >= self.source.batch_size
                or state["closed"]
                or self.clock() - state["first_seen"] >= self.source.window_seconds
            ):
                batch = state["buffer"][: self.source.batch_size]
                state["buffer"] = state["buffer"][self.source.batch_size :]
                state["first_seen"] = self.clock() if state["buffer"] else None
                invocations = self.delivery_for(shard_id).deliver(batch)
                delivered += len(batch)
                self.log(f"{self.source.function}: {len(batch)} record(s) of {shard_id} handed over ({invocations} invocation(s))")
            if state["closed"] and not state["buffer"]:
                del self.shards[shard_id]
                self.finished.add(shard_id)
        return delivered


class WatchInvoker:
    """`cargo lambda watch`'s Invoke API: the function's answer, or InvokeError."""

    def __init__(self, watch_url: str, function: str, timeout: float = 120):
        self.url = f"{watch_url.rstrip('/')}/2015-03-31/functions/{function}/invocations"
        self.timeout = timeout

    def __call__(self, payload: dict):
        request = urllib.request.Request(
            self.url, data=json.dumps(payload).encode(), headers={"content-type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                body = answer.read()
                error = answer.headers.get("X-Amz-Function-Error")
        except urllib.error.HTTPError as failure:
            raise InvokeError(f"status {failure.code}: {failure.read()[:300]!r}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as failure:
            raise InvokeError(f"not reached: {failure}") from None
        try:
            result = json.loads(body) if body.strip() else None
        except ValueError:
            result = None
        if error or (isinstance(result, dict) and "errorType" in result and "errorMessage" in result):
            raise InvokeError(f"function error: {body[:300]!r}")
        return result


class LocalEventBridge:
    """The local EventBridge and CloudWatch Logs (moto's), through their JSON protocols."""

    def __init__(self, endpoint: str, region: str):
        self.endpoint, self.region = endpoint.rstrip("/") + "/", region

    def events(self, operation: str, body: dict) -> dict:
        return post_json(self.endpoint, "events", f"AWSEvents.{operation}", body)

    def logs(self, operation: str, body: dict) -> dict:
        return post_json(self.endpoint, "logs", f"Logs_20140328.{operation}", body)

    def create(self, rule: RuleSource, queues) -> dict:
        """The rule, its bus and its targets; the variables the targets are known by."""
        known = {}
        if rule.bus != "default":
            try:
                self.events("CreateEventBus", {"Name": rule.bus})
            except urllib.error.HTTPError as failure:
                if failure.code != 400:  # it exists already
                    raise
        targets = []
        for target_id, kind, resource, name in rule.targets:
            if kind == "logs":
                try:
                    self.logs("CreateLogGroup", {"logGroupName": name})
                except urllib.error.HTTPError as failure:
                    if failure.code != 400:  # it exists already
                        raise
                arn = f"arn:aws:logs:{self.region}:{ACCOUNT}:log-group:{name}"
                known[LOG_GROUP_VARIABLES.get(resource, resource)] = name
            else:
                url = queues.create(name)
                arn = f"arn:aws:sqs:{self.region}:{ACCOUNT}:{name}"
                known[QUEUE_VARIABLES.get(resource, resource)] = url
            targets.append({"Id": target_id, "Arn": arn})
        self.events("PutRule", {"Name": rule.rule, "EventBusName": rule.bus, "EventPattern": json.dumps(rule.pattern)})
        self.events("PutTargets", {"Rule": rule.rule, "EventBusName": rule.bus, "Targets": targets})
        return known


class SqsQueues:
    """The local SQS (moto's), through its JSON protocol."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint.rstrip("/") + "/"

    def call(self, operation: str, body: dict) -> dict:
        return post_json(self.endpoint, "sqs", f"AmazonSQS.{operation}", body)

    def create(self, name: str) -> str:
        return self.call("CreateQueue", {"QueueName": name})["QueueUrl"]

    def url(self, name: str) -> str:
        return self.call("GetQueueUrl", {"QueueName": name})["QueueUrl"]

    def send(self, url: str, body: dict):
        self.call("SendMessage", {"QueueUrl": url, "MessageBody": json.dumps(body)})


def relay_backoff(receives: int) -> int:
    """Seconds before a failed event is handed over again (EventBridge backs off; locally shorter)."""
    return min(2 ** max(receives - 1, 0), 30)


def relay_once(source: FunctionRuleSource, queues, invoke, log, now=time.time) -> int:
    """Hands the events waiting in the rule's relay queue to the function; the number handled."""
    url = queues.url(source.relay)
    answer = queues.call("ReceiveMessage", {
        # No long polling: moto's holds its lock for the wait, which stalls the bus delivering here.
        "QueueUrl": url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 0, "VisibilityTimeout": 30,
        "MessageSystemAttributeNames": ["ApproximateReceiveCount"], "AttributeNames": ["ApproximateReceiveCount"],
    })
    handled = 0
    for message in answer.get("Messages", []):
        event = json.loads(message["Body"])
        # moto's EventBridge leaves out the envelope's `account`, which AWS's never does.
        event.setdefault("account", ACCOUNT)
        receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        try:
            invoke(event)
            log(f"{source.function}: {event.get('detail-type')} {event.get('id')} handed over")
        except InvokeError as failure:
            sent = datetime.datetime.fromisoformat(str(event.get("time", "")).replace("Z", "+00:00")) \
                if event.get("time") else None
            age = now() - sent.timestamp() if sent else 0
            if receives <= source.max_retries and age <= source.max_age_seconds:
                log(f"{source.function}: {event.get('id')} failed ({failure}); retry {receives}")
                queues.call("ChangeMessageVisibility", {"QueueUrl": url, "ReceiptHandle": message["ReceiptHandle"],
                                                        "VisibilityTimeout": relay_backoff(receives)})
                continue
            log(f"{source.function}: {event.get('id')} dead-lettered after {receives} attempt(s)")
            if source.dead_letter:
                queues.send(queues.url(queue_name(source.dead_letter)), event)
        queues.call("DeleteMessage", {"QueueUrl": url, "ReceiptHandle": message["ReceiptHandle"]})
        handled += 1
    return handled


def queue_name(resource: str) -> str:
    """The local name of a template queue resource."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", resource).lower()


# ---------------------------------------------------------------------------------------------
# The command


def load(template_path: str, environ) -> list:
    overrides = json.loads(environ.get("TEMPLATE_PARAMETERS") or "{}")
    return sources(cfn_template.load_long_form(template_path), overrides, environ.get("AWS_REGION", "us-east-1"))


def run(template_path: str, environ) -> int:
    found = load(template_path, environ)
    region = environ.get("AWS_REGION", "us-east-1")
    watch = environ["WATCH_URL"]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())

    def log(message: str):
        print(f"{datetime.datetime.now().strftime('%H:%M:%S')} {message}", flush=True)

    def follow_stream(source: StreamSource):
        table = environ["TABLE_NAME"] if source.table == "Table" else source.table
        stream = DynamoStream(environ["AWS_ENDPOINT_URL_DYNAMODB"], table)
        queues = SqsQueues(environ["AWS_ENDPOINT_URL_SQS"]) if source.on_failure else None
        queue_url = queues.url(queue_name(source.on_failure)) if queues else None
        invoke = WatchInvoker(watch, source.function)

        def delivery_for(shard: str) -> BatchDelivery:
            def dead_letter(records, condition, invocations):
                log(f"{source.function}: {len(records)} record(s) of shard {shard} dead-lettered ({condition})")
                if queue_url:
                    queues.send(queue_url, dead_letter_record(source, stream.arn, shard, records, condition, invocations, region))

            return BatchDelivery(source, invoke, dead_letter, log=log)

        poller = StreamPoller(source, stream, delivery_for, log=log)
        log(f"{source.function}: following the stream of {table} ({source.event}: batches of {source.batch_size})")
        while not stop.is_set():
            try:
                if not poller.poll_once():
                    stop.wait(0.25)
            except (OSError, ValueError, KeyError) as failure:
                log(f"{source.function}: the stream could not be read ({failure}); trying again")
                stop.wait(2)

    def fire(source: ScheduleSource):
        invoke = WatchInvoker(watch, source.function)
        log(f"{source.function}: {source.event} every {source.seconds} s")
        while not stop.wait(source.seconds):
            try:
                invoke(source.input if source.input is not None else scheduled_event(region))
                log(f"{source.function}: {source.event} fired")
            except InvokeError as failure:
                log(f"{source.function}: {source.event} failed: {failure}")

    def relay(source: FunctionRuleSource):
        queues = SqsQueues(environ["AWS_ENDPOINT_URL_SQS"])
        invoke = WatchInvoker(watch, source.function)
        log(f"{source.function}: {source.event} events of bus {source.bus}")
        while not stop.is_set():
            try:
                if not relay_once(source, queues, invoke, log):
                    stop.wait(0.25)
            except (OSError, ValueError, KeyError) as failure:
                log(f"{source.function}: the relay queue could not be read ({failure}); trying again")
                stop.wait(2)

    # A rule's targets are the local EventBridge's to deliver (`prepare` made them).
    drivers = {StreamSource: follow_stream, ScheduleSource: fire, FunctionRuleSource: relay}
    threads = [
        threading.Thread(target=drivers[type(source)], args=(source,), daemon=True)
        for source in found
        if not isinstance(source, RuleSource)
    ]
    for thread in threads:
        thread.start()
    stop.wait()
    return 0


def main(argv: list, environ=os.environ) -> int:
    if len(argv) != 2 or argv[0] not in ("plan", "prepare", "run"):
        print(__doc__, file=sys.stderr)
        return 2
    command, template_path = argv
    try:
        if command == "plan":
            print(json.dumps([{"kind": type(s).__name__, **dataclasses.asdict(s)} for s in load(template_path, environ)], indent=2))
            return 0
        if command == "prepare":
            queues = SqsQueues(environ["AWS_ENDPOINT_URL_SQS"])
            bridge = LocalEventBridge(environ["AWS_ENDPOINT_URL_EVENTBRIDGE"], environ.get("AWS_REGION", "us-east-1"))
            for source in load(template_path, environ):
                if isinstance(source, StreamSource) and source.on_failure:
                    url = queues.create(queue_name(source.on_failure))
                    print(f"{QUEUE_VARIABLES.get(source.on_failure, source.on_failure)}={url}")
                if isinstance(source, RuleSource):
                    for var, value in bridge.create(source, queues).items():
                        print(f"{var}={value}")
                if isinstance(source, FunctionRuleSource):
                    if source.dead_letter:
                        url = queues.create(queue_name(source.dead_letter))
                        print(f"{QUEUE_VARIABLES.get(source.dead_letter, source.dead_letter)}={url}")
                    relay = RuleSource(rule=source.rule, bus=source.bus, pattern=source.pattern,
                                       targets=[("relay", "sqs", source.relay, source.relay)])
                    bridge.create(relay, queues)
            return 0
        return run(template_path, environ)
    except Unsupported as problem:
        print(f"local_triggers: {problem}", file=sys.stderr)
        return 1
    except (OSError, KeyError, ValueError) as problem:
        # A local service not answering, a variable not set: say which, not a traceback.
        print(f"local_triggers {command}: {type(problem).__name__}: {problem}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
