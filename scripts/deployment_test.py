"""`make teardown` (scripts/deployment.py) against moto's CloudFormation, Secrets Manager and DynamoDB, in
process: what the stack retains is read from its outputs before it is deleted, and removed after (the table,
deletion protection first; the secret's parts scheduled for deletion).

Usage: .tools/moto/bin/python scripts/deployment_test.py
"""

import json
import os
import sys
import unittest

for var, value in {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}.items():
    os.environ[var] = value
for var in [v for v in os.environ if v.startswith("AWS_ENDPOINT_URL") or v in ("AWS_PROFILE", "AWS_REGION")]:
    del os.environ[var]

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import deployment  # noqa: E402


def stack(outputs: dict, parameters: dict) -> None:
    template = {
        "Parameters": {name: {"Type": "String"} for name in parameters},
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {name: {"Value": value} for name, value in outputs.items()},
    }
    boto3.client("cloudformation").create_stack(
        StackName="my-addon",
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )


def secret(values: dict) -> str:
    """The secret `my-addon/provider`, split in its parts as `provider secrets init` makes it: its name."""
    lifecycle = {k: v for k, v in values.items() if k.endswith("_PASSWORD") or k.endswith("_PASSWORD_PREVIOUS")}
    signin = {k: v for k, v in values.items() if k not in lifecycle}
    client = boto3.client("secretsmanager")
    for part in deployment.secret_parts():
        held = {"lifecycle": lifecycle, "signin": signin}.get(part, {})
        client.create_secret(Name=f"my-addon/provider/{part}", SecretString=json.dumps(held))
    return "my-addon/provider"


class Deployment(unittest.TestCase):
    @mock_aws
    def test_teardown_names_what_stays_and_removes_it_only_when_asked(self):
        secret_name = secret({})
        dynamodb = boto3.client("dynamodb")
        dynamodb.create_table(
            TableName="table",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            DeletionProtectionEnabled=True,
        )
        stack({"StackSecretsName": secret_name, "TableName": "table"}, {"AddonId": "addon-name"})
        report = deployment.retained("my-addon")
        parts = [f"my-addon/provider/{part}" for part in ("lifecycle", "vendor", "signin", "oidc", "tokens", "platforms")]
        self.assertEqual(report, {"retained": {"table": "table", "secret": parts}})
        self.assertIn("table", dynamodb.list_tables()["TableNames"], "reading removes nothing")
        # The stack goes first (sam delete); what it named is removed after, from the report alone.
        boto3.client("cloudformation").delete_stack(StackName="my-addon")
        deleted = deployment.delete_retained(report)
        self.assertEqual(deleted["deleted"]["table"], "table")
        self.assertNotIn("table", dynamodb.list_tables()["TableNames"])
        for part in parts:
            described = boto3.client("secretsmanager").describe_secret(SecretId=part)
            self.assertIn("DeletedDate", described, f"the deletion of {part} is scheduled")

if __name__ == "__main__":
    unittest.main()
