"""Describes the running local stack as a deployed one, on the local CloudFormation (moto): a stack whose
outputs and parameters are this stack's URL, table, secret, queue and settings, as infra/template.yaml names
them. So `make manifest STACK=…` and `provider --stack …` run against the local stack exactly as against a
deployed one (scripts/e2e.sh).

Usage: python as_deployed.py STACK_NAME   (with the stack's environment, AWS_ENDPOINT_URL_CLOUDFORMATION set)
"""

import json
import os
import re
import sys

import boto3

def read_back() -> tuple:
    """(outputs, parameters): each output or parameter → the variable `provider --stack` sets from it,
    read from cli/src/stack.rs (FROM_OUTPUTS, FROM_PARAMETERS), so the stack described here is what the
    CLI reads back, entry for entry."""
    path = os.path.join(os.path.dirname(__file__), "..", "cli", "src", "stack.rs")
    with open(path, encoding="utf-8") as handle:
        source = handle.read()

    def table(name: str) -> dict:
        block = re.search(rf"const {name}: \[\(&str, &str\); \d+\] = \[(.*?)\];", source, re.S)
        if not block:
            raise SystemExit(f"as_deployed: no {name} in {path}")
        return dict(re.findall(r'\("(\w+)", "(\w+)"\)', block.group(1)))

    outputs = table("FROM_OUTPUTS")
    # Where the marketplaces reach the stack (stack::root_url): this stack's own address.
    outputs["ApiUrl"] = "E2E_BASE_URL"
    return outputs, table("FROM_PARAMETERS")


OUTPUTS, PARAMETERS = read_back()


def template(environ) -> dict:
    parameters = {name: var for name, var in PARAMETERS.items() if environ.get(var)}
    return {
        "Parameters": {name: {"Type": "String"} for name in parameters},
        # CloudFormation wants one resource; a queue is one moto makes.
        "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {name: {"Value": environ[var]} for name, var in OUTPUTS.items() if environ.get(var)},
    }, {name: environ[var] for name, var in parameters.items()}


def main(argv: list) -> int:
    if len(argv) != 1 or not os.environ.get("AWS_ENDPOINT_URL_CLOUDFORMATION"):
        print(__doc__, file=sys.stderr)
        return 2
    body, parameters = template(os.environ)
    boto3.client("cloudformation").create_stack(
        StackName=argv[0],
        TemplateBody=json.dumps(body),
        Parameters=[{"ParameterKey": key, "ParameterValue": value} for key, value in parameters.items()],
    )
    print(f"as_deployed: stack {argv[0]} describes {os.environ['E2E_BASE_URL']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
