"""check_aws_calls must fail on a call the template does not allow, naming the function, the action
and the key, and on a removed grant (a check that cannot fail proves nothing).

Usage: python check_aws_calls_test.py   (from the repository root)
"""

import copy
import io
import json
import os
import sys
import tempfile
import unittest
from contextlib import redirect_stderr

sys.path.insert(0, os.path.dirname(__file__))
import aws_call_recorder  # noqa: E402
import cfn_template  # noqa: E402
import check_aws_calls  # noqa: E402

TEMPLATE = "infra/template.yaml"


def call(caller: str, target: str, body: dict) -> dict:
    """One recorded line, made by the recorder's own parsing."""
    headers = {"x-amz-target": target, "x-amz-user-agent": f"aws-sdk-rust/1 app/{caller}"}
    return aws_call_recorder.record_line(headers, json.dumps(body).encode())


# A deprovision with the default provisioner: one transaction holding an
# Update of the resource and a Put of its audit item.
DEPROVISION = call(
    "deprovision",
    "DynamoDB_20120810.TransactWriteItems",
    {
        "TransactItems": [
            {"Update": {"TableName": "t", "Key": {"pk": {"S": "RESOURCE#res_1"}, "sk": {"S": "RESOURCE"}}}},
            {"Put": {"TableName": "t", "Item": {"pk": {"S": "RESOURCE#res_1"}, "sk": {"S": "AUDIT#1"}}}},
        ]
    },
)


def problems(template: dict, recording: list) -> list:
    return check_aws_calls.evaluate(template, recording)[0]


class CheckAwsCalls(unittest.TestCase):
    def setUp(self):
        self.template = cfn_template.load(TEMPLATE)

    def test_the_recorder_sees_each_item_of_a_transaction(self):
        self.assertEqual(DEPROVISION["caller"], "deprovision")
        self.assertEqual(
            [(check["action"], check["key"]) for check in DEPROVISION["checks"]],
            [("dynamodb:UpdateItem", "RESOURCE#res_1"), ("dynamodb:PutItem", "RESOURCE#res_1")],
        )

    def test_the_recorder_reads_a_querys_partition_and_a_secrets_id(self):
        query = call(
            "platform-sync",
            "DynamoDB_20120810.Query",
            {
                "TableName": "t",
                "IndexName": "PendingSync",
                "KeyConditionExpression": "#queue = :queue AND sync_since < :before",
                "ExpressionAttributeNames": {"#queue": "sync_queue"},
                "ExpressionAttributeValues": {":queue": {"S": "pending"}, ":before": {"S": "2026"}},
            },
        )
        self.assertEqual(query["checks"], [{"action": "dynamodb:Query", "resource": "index/PendingSync", "key": "pending"}])
        secret = call("provision", "secretsmanager.GetSecretValue", {"SecretId": "my-addon/provider/tokens"})
        self.assertEqual(
            secret["checks"], [{"action": "secretsmanager:GetSecretValue", "resource": "secret/tokens", "key": None}]
        )
        by_arn = call(
            "oidc",
            "secretsmanager.GetSecretValue",
            {"SecretId": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:my-addon/provider/oidc-AbC123"},
        )
        self.assertEqual(by_arn["checks"][0]["resource"], "secret/oidc")

    def test_a_part_of_the_secret_a_function_is_not_granted_fails(self):
        read = lambda caller, part: call(caller, "secretsmanager.GetSecretValue", {"SecretId": f"addon-provider-1/{part}"})
        denied = lambda recording: [p for p in problems(self.template, recording) if "is not allowed" in p]
        self.assertEqual(denied([read("sso-login", "signin"), read("sso-login", "oidc")]), [])
        self.assertEqual(
            denied([read("sso-login", "tokens")]),
            ["sso-login (SsoLoginFunction) is not allowed secretsmanager:GetSecretValue on secret/tokens key (no key) (in GetSecretValue)"],
        )
        found = denied([read("oidc", "lifecycle")])
        self.assertTrue(any("oidc" in p and "secret/lifecycle" in p for p in found), found)

    def test_an_update_inside_a_transaction_needs_update_item(self):
        broken = copy.deepcopy(self.template)
        for statement in broken["Resources"]["DeprovisionFunction"]["Properties"]["Policies"][0]["Statement"]:
            if "dynamodb:UpdateItem" in statement["Action"]:
                statement["Action"].remove("dynamodb:UpdateItem")
        found = problems(broken, [DEPROVISION])
        self.assertTrue(
            any(
                "deprovision" in problem and "dynamodb:UpdateItem" in problem and "RESOURCE#res_1" in problem
                for problem in found
            ),
            found,
        )
        denied = [problem for problem in problems(self.template, [DEPROVISION]) if "is not allowed" in problem]
        self.assertEqual(denied, [], "the template allows it")

    def test_a_key_outside_the_functions_prefixes_is_denied(self):
        stray = call(
            "dashboard",
            "DynamoDB_20120810.PutItem",
            {"TableName": "t", "Item": {"pk": {"S": "RESOURCE#res_1"}, "sk": {"S": "RESOURCE"}}},
        )
        found = problems(self.template, [stray])
        self.assertTrue(any("dashboard" in p and "dynamodb:PutItem" in p and "RESOURCE#res_1" in p for p in found), found)

    def test_the_link_may_write_cloud66_resources_only(self):
        def put(resource_id):
            return call(
                "cloud66-link",
                "DynamoDB_20120810.TransactWriteItems",
                {"TransactItems": [{"Put": {"TableName": "t", "Item": {"pk": {"S": f"RESOURCE#{resource_id}"}}}}]},
            )

        denied = lambda found: [p for p in found if "is not allowed" in p]  # noqa: E731
        self.assertEqual(denied(problems(self.template, [put("res_c66_ab")])), [])
        self.assertTrue(denied(problems(self.template, [put("res_ab")])), "a Clever Cloud resource")

    def test_a_partial_recording_is_held_to_its_calls_only(self):
        # The whole suite's recording must exercise every function and grant;
        # a stage's (--calls-only) need only be allowed, and a denied call
        # still fails it.
        self.assertTrue(problems(self.template, [DEPROVISION]), "other functions made no call")
        self.assertEqual(check_aws_calls.evaluate(self.template, [DEPROVISION], exhaustive=False)[0], [])
        broken = copy.deepcopy(self.template)
        grant = next(iter(check_aws_calls.evaluate(broken, [DEPROVISION])[1]["deprovision"]))
        broken = check_aws_calls.without(broken, "deprovision", grant)
        found = check_aws_calls.evaluate(broken, [DEPROVISION], exhaustive=False)[0]
        self.assertEqual(len(found), 1, found)
        self.assertIn("deprovision (DeprovisionFunction) is not allowed", found[0])

    def test_removing_an_exercised_grant_fails_the_check_through_main(self):
        with tempfile.TemporaryDirectory() as folder:
            recording = os.path.join(folder, "calls.jsonl")
            with open(recording, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(DEPROVISION) + "\n")
            broken = copy.deepcopy(self.template)
            grant = next(iter(check_aws_calls.evaluate(broken, [DEPROVISION])[1]["deprovision"]))
            broken = check_aws_calls.without(broken, "deprovision", grant)
            original = cfn_template.load
            cfn_template.load = lambda _path: broken
            errors = io.StringIO()
            try:
                with redirect_stderr(errors):
                    status = check_aws_calls.main([TEMPLATE, recording])
            finally:
                cfn_template.load = original
        self.assertEqual(status, 1)
        self.assertIn("deprovision (DeprovisionFunction) is not allowed", errors.getvalue())


if __name__ == "__main__":
    unittest.main()
