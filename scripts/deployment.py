"""What a teardown leaves behind (`make teardown`), read through the stack's outputs before `sam delete`, and
removed only after it succeeded. (The manifests are `provider manifest`'s.)

Usage: python deployment.py retained STACK            prints {"retained": {"table", "secret"}}
       python deployment.py delete-retained < REPORT   removes them (the stack must be gone)
AWS credentials and region come from the usual chain (AWS_PROFILE, AWS_REGION, ...). Uses the boto3 that the
SAM CLI in .tools/venv brings.
"""

import json
import os
import re
import sys

import boto3


def stack(name: str) -> dict:
    description = boto3.client("cloudformation").describe_stacks(StackName=name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in description.get("Parameters", [])}
    return {"outputs": outputs, "parameters": parameters}


def secret_parts() -> list:
    """The parts of the secret (shared::secret_parts::Part::name), read from the code so the two cannot drift."""
    path = os.path.join(os.path.dirname(__file__), "..", "shared", "src", "secret_parts.rs")
    with open(path, encoding="utf-8") as handle:
        return re.findall(r'Part::\w+ => "([a-z0-9-]+)"', handle.read())


def retained(name: str) -> dict:
    """What `sam delete` keeps: the table (DeletionPolicy Retain, deletion protection) and the secret's parts
    (made by `make secrets`, outside the stack). Read before the stack is deleted: its outputs name them."""
    outputs = stack(name)["outputs"]
    table, secret_name = outputs["TableName"], outputs["StackSecretsName"]
    return {"retained": {"table": table, "secret": [f"{secret_name}/{part}" for part in secret_parts()]}}


def delete_retained(retained_report: dict) -> dict:
    """Removes what `retained` named, once the stack is gone: the table for good, the secret's parts after
    Secrets Manager's 7-day recovery window."""
    table, parts = retained_report["retained"]["table"], retained_report["retained"]["secret"]
    dynamodb = boto3.client("dynamodb")
    dynamodb.update_table(TableName=table, DeletionProtectionEnabled=False)
    dynamodb.delete_table(TableName=table)
    secrets = boto3.client("secretsmanager")
    for part in parts:
        secrets.delete_secret(SecretId=part, RecoveryWindowInDays=7)
    return {"deleted": {"table": table, "secret_scheduled": parts}}


def main(argv: list) -> int:
    if len(argv) == 2 and argv[0] == "retained":
        print(json.dumps(retained(argv[1])))
        return 0
    if argv == ["delete-retained"]:
        print(json.dumps(delete_retained(json.load(sys.stdin))))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
