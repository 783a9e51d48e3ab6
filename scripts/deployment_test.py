"""`make manifest` and `make teardown` (scripts/deployment.py) against moto's CloudFormation, Secrets Manager
and DynamoDB, in process: the manifest comes from the stack's outputs, parameters and secret, quotes and all;
teardown's --delete removes the retained table (deletion protection first) and schedules the deletion of the
secret's parts.

Usage: .tools/moto/bin/python scripts/deployment_test.py
"""

import io
import json
import os
import sys
import unittest
from contextlib import redirect_stdout

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
    def test_the_manifest_is_the_stacks_urls_and_the_secrets_values(self):
        secret_name = secret({"ADDON_PASSWORD": 'pa"ss\\word', "ADDON_SSO_SALT": "the-salt"})
        stack(
            {
                "ApiUrl": "https://api.example",
                "StackSecretsName": secret_name,
                "TableName": "table",
            },
            {"AddonId": "addon-name", "AddonConfigVars": "ADDON_NAME_URL, ADDON_NAME_TOKEN"},
        )
        manifest = deployment.manifest("my-addon")
        self.assertEqual(manifest["id"], "addon-name")
        self.assertEqual(manifest["api"]["password"], 'pa"ss\\word')
        self.assertEqual(manifest["api"]["sso_salt"], "the-salt")
        self.assertEqual(manifest["api"]["config_vars"], ["ADDON_NAME_URL", "ADDON_NAME_TOKEN"])
        self.assertEqual(manifest["api"]["production"]["base_url"], "https://api.example/clevercloud/resources")
        self.assertEqual(manifest["api"]["production"]["sso_url"], "https://api.example/clevercloud/sso/login")

    @mock_aws
    def test_the_heroku_manifest_is_v3_with_herokus_names_and_secrets(self):
        secret_name = secret({"HEROKU_PASSWORD": "hk-pass", "HEROKU_SSO_SALT": "hk-salt"})
        parameters = {"AddonId": "addon-name", "AddonConfigVars": "ADDON_NAME_URL,ADDON_NAME_TOKEN", "HerokuAddonId": ""}
        stack({"ApiUrl": "https://api.example", "StackSecretsName": secret_name, "TableName": "table"}, parameters)
        with self.assertRaises(SystemExit) as refused:
            deployment.manifest("my-addon", "heroku")
        self.assertIn("HerokuAddonId", str(refused.exception))
        boto3.client("cloudformation").delete_stack(StackName="my-addon")
        parameters.update({"HerokuAddonId": "my-addon", "HerokuConfigVars": "MY_ADDON_URL,MY_ADDON_TOKEN"})
        stack({"ApiUrl": "https://api.example", "StackSecretsName": secret_name, "TableName": "table"}, parameters)
        manifest = deployment.manifest("my-addon", "heroku")
        self.assertEqual(manifest["id"], "my-addon")
        api = manifest["api"]
        self.assertEqual(api["version"], "3")
        self.assertEqual((api["password"], api["sso_salt"]), ("hk-pass", "hk-salt"))
        self.assertEqual(api["config_vars"], ["MY_ADDON_URL", "MY_ADDON_TOKEN"])
        self.assertEqual(api["config_vars_prefix"], "MY_ADDON")
        self.assertEqual(api["production"]["base_url"], "https://api.example/heroku/resources")
        self.assertEqual(api["production"]["sso_url"], "https://api.example/heroku/sso/login")

    @mock_aws
    def test_the_scalingo_manifest_has_its_own_username_secrets_and_plans(self):
        secret_name = secret({"SCALINGO_PASSWORD": "sc-pass", "SCALINGO_SSO_SALT": "sc-salt"})
        parameters = {"AddonId": "addon-name", "AddonConfigVars": "ADDON_NAME_URL,ADDON_NAME_TOKEN", "ScalingoUsername": ""}
        stack({"ApiUrl": "https://api.example", "StackSecretsName": secret_name, "TableName": "table"}, parameters)
        with self.assertRaises(SystemExit) as refused:
            deployment.manifest("my-addon", "scalingo")
        self.assertIn("ScalingoUsername", str(refused.exception))
        boto3.client("cloudformation").delete_stack(StackName="my-addon")
        parameters.update({"ScalingoUsername": "my-addon-sc", "AddonPlans": "basic,premium", "ScalingoPlans": ""})
        stack({"ApiUrl": "https://api.example", "StackSecretsName": secret_name, "TableName": "table"}, parameters)
        manifest = deployment.manifest("my-addon", "scalingo")
        self.assertEqual((manifest["name"], manifest["username"]), ("my-addon-sc", "my-addon-sc"))
        self.assertEqual((manifest["password"], manifest["sso_salt"]), ("sc-pass", "sc-salt"))
        self.assertEqual(manifest["config_vars"], ["ADDON_NAME_URL", "ADDON_NAME_TOKEN"])
        self.assertEqual(manifest["production"]["base_url"], "https://api.example/scalingo/resources")
        self.assertEqual(manifest["test"]["sso_url"], "https://api.example/scalingo/sso")
        self.assertEqual([plan["name"] for plan in manifest["plans"]], ["basic", "premium"])
        self.assertEqual(set(manifest["plans"][0]), {"name", "display_name", "price", "description"})

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
        with redirect_stdout(io.StringIO()) as printed:
            deployment.retained("my-addon", delete=False)
        parts = [f"my-addon/provider/{part}" for part in ("lifecycle", "vendor", "signin", "oidc", "tokens", "platforms")]
        self.assertEqual(json.loads(printed.getvalue()), {"retained": {"table": "table", "secret": parts}})
        self.assertIn("table", dynamodb.list_tables()["TableNames"], "nothing removed unless asked")
        with redirect_stdout(io.StringIO()):
            deployment.retained("my-addon", delete=True)
        self.assertNotIn("table", dynamodb.list_tables()["TableNames"])
        for part in parts:
            described = boto3.client("secretsmanager").describe_secret(SecretId=part)
            self.assertIn("DeletedDate", described, f"the deletion of {part} is scheduled")


if __name__ == "__main__":
    unittest.main()
