"""Describes the running local stack as a deployed one, on the local CloudFormation (moto): a stack whose
outputs and parameters are this stack's URL, table, secret, queue and settings, as infra/template.yaml names
them. So `make manifest STACK=…` and `provider --stack …` run against the local stack exactly as against a
deployed one (scripts/e2e.sh).

Usage: python as_deployed.py STACK_NAME   (with the stack's environment, AWS_ENDPOINT_URL_CLOUDFORMATION set)
"""

import json
import os
import sys

import boto3

# Output or parameter → the variable the local stack has it in (cli/src/stack.rs reads them back).
OUTPUTS = {
    "ApiUrl": "E2E_BASE_URL",
    "TableName": "TABLE_NAME",
    "StackSecretsName": "SECRETS_NAME",
    "SyncDeadLetterQueueUrl": "SYNC_DEAD_LETTER_QUEUE_URL",
    "LifecycleEventBus": "EVENT_BUS_NAME",
    "LifecycleEventsLogGroup": "EVENTS_LOG_GROUP",
}
PARAMETERS = {
    "AddonId": "ADDON_ID",
    "AddonConfigVars": "ADDON_CONFIG_VARS",
    "AddonPlans": "ADDON_PLANS",
    "HerokuAddonId": "HEROKU_ADDON_ID",
    "HerokuConfigVars": "HEROKU_CONFIG_VARS",
    "HerokuPlans": "HEROKU_PLANS",
    "ScalingoUsername": "SCALINGO_USERNAME",
    "ScalingoPlans": "SCALINGO_PLANS",
}


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
