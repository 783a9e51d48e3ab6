"""Fails unless every function's DynamoDB permissions are limited to the key prefixes it uses.

- every statement that grants a DynamoDB action carries a `dynamodb:LeadingKeys` condition
  (ForAllValues:StringLike) listing `PREFIX#*` patterns, never a bare wildcard;
- the functions a stranger can reach without the Basic-auth password (sso-login, dashboard,
  cloud66-link, marketplace-register) can write no Clever Cloud or Heroku resource or add-on claim:
  an internet-facing bug there cannot overwrite one (cloud66-link writes only `RESOURCE#res_c66_*`,
  the ids of resources made through Cloud 66, which a Clever Cloud resource's id never matches;
  marketplace-register only `RESOURCE#res_aws_*`);
- no function's plain environment (nor the Globals') holds a secret: they come from SECRETS_NAME;
- each function is granted exactly the parts of the secret its code reads
  (shared::secret_parts::READERS): the token key only where tokens are sealed or opened, no
  marketplace password in a sign-in function;
- every route is on an HttpApi whose default route settings throttle it (rate and burst from
  template parameters), so a flood is cut before it costs Lambda time or DynamoDB writes;
- every partition-key prefix the store writes (shared/src/store/dynamo.rs) is granted to some
  function, and no function is granted a prefix the store does not use.

Usage: python check_policies.py TEMPLATE STORE_SOURCE
"""

import os
import re
import sys

import cfn_template

WRITES = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}
# Reached by anyone on the internet with no shared secret checked first.
UNAUTHENTICATED = {"sso-login", "dashboard", "cloud66-link", "oidc", "marketplace-register"}
NEVER_WRITTEN_BY_UNAUTHENTICATED = {"RESOURCE", "CLEVERCLOUD_ADDON", "HEROKU_ADDON", "SCALINGO_ADDON"}
# The narrowed patterns an internet-facing function may write under those
# prefixes: Cloud 66's resources (shared::cloud66::link::CLOUD66_RESOURCE_ID_PREFIX) and AWS
# Marketplace's (shared::aws_marketplace::RESOURCE_ID_PREFIX), made only for a registration token
# AWS resolved.
WRITABLE_BY_UNAUTHENTICATED = {("RESOURCE", "res_c66_"), ("RESOURCE", "res_aws_")}
# The partition values of the PendingSync index (shared::model::SyncQueue).
INDEX_QUEUES = {"pending", "failed", "unpublished", "metering"}


def grants(template: dict):
    """(binary, action, prefix, narrowing) for every DynamoDB grant (narrowing: what
    `PREFIX#narrowing*` adds after the prefix, usually nothing), and the problems found."""
    found, problems = [], []
    for name, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        binary = resource["Metadata"]["BuildProperties"]["Binary"]
        for policy in resource["Properties"].get("Policies", []):
            for statement in policy.get("Statement", []):
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                dynamo = [action for action in actions if action.startswith("dynamodb:")]
                if not dynamo:
                    continue
                keys = (
                    statement.get("Condition", {})
                    .get("ForAllValues:StringLike", {})
                    .get("dynamodb:LeadingKeys")
                )
                if not keys:
                    problems.append(f"{name}: {dynamo} without a dynamodb:LeadingKeys condition")
                    continue
                if "/index/" in str(statement.get("Resource")):
                    # An index's leading keys are its own partition values
                    # (the sync queues), not the table's prefixes; reads only.
                    writes = WRITES.intersection(dynamo)
                    if writes or not set(keys) <= INDEX_QUEUES:
                        problems.append(f"{name}: index statement {dynamo} on {keys} is not a read of the sync queues")
                    continue
                for key in keys:
                    match = re.fullmatch(r"([A-Z0-9_]+)#([a-z0-9_]*)\*", key)
                    if not match:
                        problems.append(f"{name}: LeadingKeys entry {key!r} is not PREFIX#*")
                        continue
                    found.extend((binary, action, match.group(1), match.group(2)) for action in dynamo)
    return found, problems


def secret_vars(config_source: str) -> set:
    """shared::config::SECRET_VARS, read from the code so the two cannot drift."""
    with open(config_source, encoding="utf-8") as handle:
        block = re.search(r"pub const SECRET_VARS[^=]*= \[(.*?)\];", handle.read(), re.S)
    return set(re.findall(r'"([A-Z0-9_]+)"', block.group(1))) if block else set()


SECRET_VARS = secret_vars(os.path.join(os.path.dirname(__file__), "..", "shared", "src", "config.rs"))


def plain_secrets(template: dict) -> list:
    places = [("Globals", template.get("Globals", {}).get("Function", {}))]
    places += [
        (name, resource.get("Properties", {}))
        for name, resource in template["Resources"].items()
        if resource.get("Type") == "AWS::Serverless::Function"
    ]
    return [
        f"{name} has the secret {var} in its plain environment; it belongs in the SECRETS_NAME secret"
        for name, properties in places
        for var in properties.get("Environment", {}).get("Variables", {})
        if var in SECRET_VARS
    ]


def secret_readers(parts_source: str) -> dict:
    """shared::secret_parts::READERS (binary -> the part names it reads), read from the code."""
    with open(parts_source, encoding="utf-8") as handle:
        source = handle.read()
    names = dict(re.findall(r"Part::(\w+) => \"([a-z0-9-]+)\"", source))
    block = re.search(r"pub const READERS[^=]*= \[(.*?)\n\];", source, re.S)
    readers = {}
    for binary, parts in re.findall(r'\(\s*"([a-z0-9-]+)",\s*&\[([^\]]*)\],?\s*\)', block.group(1) if block else ""):
        readers[binary] = {names[part] for part in re.findall(r"Part::(\w+)", parts)}
    return readers


SECRET_READERS = secret_readers(os.path.join(os.path.dirname(__file__), "..", "shared", "src", "secret_parts.rs"))


def secret_grants(template: dict) -> list:
    """Problems: a function granted a part of the secret its code does not read, or not granted
    one it reads, or granted the secret other than by part."""
    problems = []
    if not SECRET_READERS:
        return ["could not read READERS from shared/src/secret_parts.rs"]
    for name, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        binary = resource["Metadata"]["BuildProperties"]["Binary"]
        granted = set()
        for policy in resource["Properties"].get("Policies", []):
            for statement in policy.get("Statement", []):
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                if not any(action.startswith("secretsmanager:") for action in actions):
                    continue
                for entry in statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]:
                    part = re.search(r"secret:\$\{SecretsName\}/([a-z0-9-]+)-\?{6}$", str(entry))
                    if part:
                        granted.add(part.group(1))
                    else:
                        problems.append(f"{name}: secret grant {entry!r} is not one part (…:secret:${{SecretsName}}/PART-??????)")
        reads = SECRET_READERS.get(binary)
        if reads is None:
            problems.append(f"{name}: {binary} is not in shared::secret_parts::READERS")
            continue
        for part in sorted(granted - reads):
            problems.append(f"{name} is granted the secret's part {part}, which {binary} never reads")
        for part in sorted(reads - granted):
            problems.append(f"{name} is not granted the secret's part {part}, which {binary} reads")
    return problems


def unthrottled(template: dict) -> list:
    resources = template["Resources"]
    apis = {name for name, resource in resources.items() if resource.get("Type") == "AWS::Serverless::HttpApi"}
    problems = []
    for name in sorted(apis):
        settings = resources[name].get("Properties", {}).get("DefaultRouteSettings", {})
        for key in ("ThrottlingRateLimit", "ThrottlingBurstLimit"):
            if settings.get(key) not in template.get("Parameters", {}):
                problems.append(f"{name} has no {key} set from a template parameter")
    for function, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        for event, spec in resource.get("Properties", {}).get("Events", {}).items():
            if spec.get("Type") == "HttpApi" and spec.get("Properties", {}).get("ApiId") not in apis:
                problems.append(f"{function} route {event} is not on the throttled HttpApi")
    return problems


def store_prefixes(path: str) -> set:
    """The prefixes of the store's source, `dynamo.rs`, and of its submodules (`dynamo/*.rs`)."""
    sources = [path]
    children = os.path.splitext(path)[0]
    if os.path.isdir(children):
        sources += sorted(os.path.join(children, name) for name in os.listdir(children) if name.endswith(".rs"))
    source = ""
    for each in sources:
        with open(each, encoding="utf-8") as handle:
            source += handle.read()
    # Partition keys are built as format!("PREFIX#…"); AUDIT# is a sort key.
    return set(re.findall(r'format!\("([A-Z0-9_]+)#', source)) - {"AUDIT"}


def main(template_path: str, store_path: str) -> int:
    template = cfn_template.load(template_path)
    found, problems = grants(template)
    if len(SECRET_VARS) < 2:
        problems.append("could not read SECRET_VARS from shared/src/config.rs")
    problems += plain_secrets(template)
    problems += secret_grants(template)
    problems += unthrottled(template)
    for binary, action, prefix, narrowing in found:
        if (
            binary in UNAUTHENTICATED
            and action in WRITES
            and prefix in NEVER_WRITTEN_BY_UNAUTHENTICATED
            and (prefix, narrowing) not in WRITABLE_BY_UNAUTHENTICATED
        ):
            problems.append(f"{binary} may {action} {prefix}#{narrowing}* items; it must never write them")
    granted = {prefix for _, _, prefix, _ in found}
    used = store_prefixes(store_path)
    for prefix in sorted(used - granted):
        problems.append(f"the store uses {prefix}# but no function is granted it")
    for prefix in sorted(granted - used):
        problems.append(f"{prefix}# is granted but the store never uses it")
    for problem in problems:
        print(f"check_policies: {problem}", file=sys.stderr)
    if problems:
        return 1
    binaries = sorted({binary for binary, *_ in found})
    print(f"check_policies: {len(found)} grants over {len(binaries)} functions, each limited by key prefix", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
