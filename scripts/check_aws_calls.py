"""Fails unless every AWS call the functions made during the end-to-end run is
allowed by that function's own statements in infra/template.yaml, and every
grant there was needed by some call.

DynamoDB Local and moto ignore IAM, so without this a call the template does
not allow passes every local test and fails only on AWS (a deprovision's
transaction holding an UpdateItem, with only GetItem and PutItem granted, did).
scripts/aws_call_recorder.py writes the recording: one line per request with
the calling function (the SDK user agent's app name) and, per IAM's rules,
each action it needs and the partition key it needs it on (a transaction
needs the action of every item inside it).

A call is allowed when one Allow statement of the function's policies names
its action, its resource (the table, an index of it, the part of the secret
read, the event bus) and, if the statement has a `dynamodb:LeadingKeys` condition, a pattern
that its key matches.

Usage:
  python check_aws_calls.py TEMPLATE RECORDING             the check
  python check_aws_calls.py --each-grant TEMPLATE RECORDING also: removing any
      one exercised grant from the template makes the check fail
"""

import collections
import copy
import fnmatch
import json
import re
import sys

import cfn_template

# Grants that no end-to-end call exercises, each with why it stays.
NOT_EXERCISED = {
    "provision dynamodb:GetItem table CLEVERCLOUD_ADDON#*": (
        "a provision whose claim transaction collided with a concurrent one (TransactionConflict) "
        "reads the claim to learn the winner; only a race that DynamoDB Local seldom produces reaches it"
    ),
    "provision dynamodb:GetItem table HEROKU_ADDON#*": (
        "the same read for a Heroku provision's claim (keyed by Heroku's uuid), reached only by the same race"
    ),
    "provision dynamodb:GetItem table SCALINGO_ADDON#*": (
        "the same read for a Scalingo provision's claim (keyed by its uuid), reached only by the same race"
    ),
    "marketplace-register dynamodb:GetItem table AWS_LICENSE#*": (
        "the same read for an AWS Marketplace purchase's claim (keyed by its license), reached only by the same "
        "race between two posts of one purchase"
    ),
    "marketplace-register dynamodb:UpdateItem table RESOURCE#res_aws_*": (
        "a registration that finds its license deprovisioned by an event handled while it provisioned deprovisions "
        "the resource, with the default provisioner (no ProvisionerUrl) in one UpdateItem; the end-to-end stacks "
        "run with a vendor's PROVISIONER_URL (a read and a versioned put), and the race is not produced on demand"
    ),
}


def allow_statements(function: dict) -> list:
    """A function resource's Allow statements, in order (the same objects, not copies)."""
    return [
        statement
        for policy in function["Properties"].get("Policies", [])
        if isinstance(policy, dict)
        for statement in policy.get("Statement", [])
        if statement.get("Effect") == "Allow"
    ]


def functions(template: dict) -> dict:
    """binary name -> (resource name, [statement, …])"""
    return {
        resource["Metadata"]["BuildProperties"]["Binary"]: (name, allow_statements(resource))
        for name, resource in template["Resources"].items()
        if resource.get("Type") == "AWS::Serverless::Function"
    }


def resource_kind(resource) -> str:
    """What a statement's Resource stands for, in the recorder's terms."""
    if resource == "*":
        # Actions that take no resource ARN (aws-marketplace:ResolveCustomer, GetEntitlements).
        return "*"
    text = json.dumps(resource)
    if "/index/" in text:
        return "index/" + text.split("/index/")[1].split('"')[0]
    if "Table.Arn" in text:
        return "table"
    part = re.search(r"secret:\$\{SecretsName\}/([a-z0-9-]+)-\?{6}", text)
    if part:
        return "secret/" + part.group(1)
    if ":event-bus/" in text:
        return "event-bus"
    if "kms" in text.lower() or "KmsKey" in text:
        return "kms-key"
    return text


def as_list(value):
    return value if isinstance(value, list) else [value]


def leading_keys(statement: dict):
    return statement.get("Condition", {}).get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys")


def grants(statements: list):
    """(statement index, action, resource kind, key pattern or None), one per
    thing a statement allows."""
    for index, statement in enumerate(statements):
        kinds = {resource_kind(resource) for resource in as_list(statement.get("Resource"))}
        patterns = leading_keys(statement)
        for action in as_list(statement.get("Action", [])):
            for kind in kinds:
                for pattern in as_list(patterns) if patterns else [None]:
                    yield index, action, kind, pattern


def allows(grant, check) -> bool:
    _, action, kind, pattern = grant
    if action != check["action"] or kind != check["resource"]:
        return False
    if pattern is None:
        return True
    return check["key"] is not None and fnmatch.fnmatchcase(check["key"], pattern)


def read_recording(path: str) -> list:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def evaluate(template: dict, recording: list, exhaustive: bool = True):
    """(problems, used grants per function, calls per caller). `exhaustive`: every function made a
    call and every grant was needed by one (a recording of the whole suite); otherwise only that
    each recorded call is allowed (a recording of part of it)."""
    by_binary = functions(template)
    problems, used = [], collections.defaultdict(set)
    callers = collections.Counter(call["caller"] for call in recording)
    denied = set()
    for call in recording:
        if call["caller"] not in by_binary:
            continue  # the tests' own reads and writes, the CLI: not a function
        name, statements = by_binary[call["caller"]]
        function_grants = list(grants(statements))
        for check in call["checks"]:
            matching = [grant for grant in function_grants if allows(grant, check)]
            if not matching:
                key = check["key"] if check["key"] is not None else "(no key)"
                denied.add(
                    f"{call['caller']} ({name}) is not allowed {check['action']} on {check['resource']} "
                    f"key {key} (in {call['operation']})"
                )
            used[call["caller"]].update(matching)
    problems += sorted(denied)
    for binary, (name, statements) in sorted(by_binary.items()) if exhaustive else []:
        if not callers.get(binary):
            problems.append(f"{binary} ({name}) made no recorded AWS call: is its SDK app name set?")
            continue
        for grant in grants(statements):
            if grant in used[binary]:
                continue
            _, action, kind, pattern = grant
            label = f"{binary} {action} {kind} {pattern or ''}".strip()
            if label not in NOT_EXERCISED:
                problems.append(f"{label}: granted ({name}) but no recorded call needed it")
    return problems, used, callers


def without(template: dict, binary: str, grant) -> dict:
    """The template with one grant taken out of one function's statement."""
    changed = copy.deepcopy(template)
    for resource in changed["Resources"].values():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        if resource["Metadata"]["BuildProperties"]["Binary"] != binary:
            continue
        index, action, _, pattern = grant
        statement = allow_statements(resource)[index]
        patterns = leading_keys(statement)
        if pattern is not None and len(as_list(patterns)) > 1:
            statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] = [
                kept for kept in as_list(patterns) if kept != pattern
            ]
        else:
            statement["Action"] = [kept for kept in as_list(statement["Action"]) if kept != action]
    return changed


def main(argv: list) -> int:
    each_grant = "--each-grant" in argv
    exhaustive = "--calls-only" not in argv
    template_path, recording_path = [arg for arg in argv if not arg.startswith("--")]
    template = cfn_template.load(template_path)
    recording = read_recording(recording_path)
    problems, used, callers = evaluate(template, recording, exhaustive)
    if each_grant and not problems:
        tried = 0
        for binary, function_grants in sorted(used.items()):
            for grant in sorted(function_grants, key=str):
                tried += 1
                if not evaluate(without(template, binary, grant), recording)[0]:
                    problems.append(f"removing {binary}'s {grant[1]} {grant[3] or ''} did not fail the check")
        print(f"check_aws_calls: removing any one of {tried} exercised grants fails the check", file=sys.stderr)
    for problem in problems:
        print(f"check_aws_calls: {problem}", file=sys.stderr)
    if problems:
        return 1
    summary = ", ".join(f"{caller} {count}" for caller, count in sorted(callers.items()))
    print(f"check_aws_calls: {len(recording)} recorded AWS calls ({summary}), each allowed by its function's grants", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
