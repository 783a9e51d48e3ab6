"""check_policies must fail on each way a policy can be too broad (a check that cannot fail proves nothing).

Usage: python check_policies_test.py   (from the repository root)
"""

import copy
import io
import os
import sys
import tempfile
import unittest
from contextlib import redirect_stderr

sys.path.insert(0, os.path.dirname(__file__))
import cfn_template  # noqa: E402
import check_policies  # noqa: E402

TEMPLATE = "infra/template.yaml"
STORE = "shared/src/store/dynamo.rs"


def run(template: dict, store_source: str | None = None) -> tuple[int, str]:
    with tempfile.TemporaryDirectory() as folder:
        store = STORE
        if store_source is not None:
            store = os.path.join(folder, "dynamo.rs")
            with open(store, "w", encoding="utf-8") as handle:
                handle.write(store_source)
        original = cfn_template.load
        cfn_template.load = lambda _path: template
        errors = io.StringIO()
        try:
            with redirect_stderr(errors):
                status = check_policies.main(TEMPLATE, store)
        finally:
            cfn_template.load = original
        return status, errors.getvalue()


def statements(template: dict, function: str) -> list:
    """The function's DynamoDB statements."""
    return [
        statement
        for statement in template["Resources"][function]["Properties"]["Policies"][0]["Statement"]
        if any(action.startswith("dynamodb:") for action in statement["Action"])
    ]


class CheckPolicies(unittest.TestCase):
    def setUp(self):
        self.template = cfn_template.load(TEMPLATE)

    def test_the_template_passes(self):
        self.assertEqual(run(self.template)[0], 0)

    def test_sso_login_writing_resources_fails(self):
        broken = copy.deepcopy(self.template)
        put = next(s for s in statements(broken, "SsoLoginFunction") if "dynamodb:PutItem" in s["Action"])
        put["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"].append("RESOURCE#*")
        status, errors = run(broken)
        self.assertEqual(status, 1)
        self.assertIn("sso-login may dynamodb:PutItem RESOURCE#", errors)

    def test_the_link_writing_clever_cloud_resources_fails(self):
        broken = copy.deepcopy(self.template)
        put = next(
            s
            for s in statements(broken, "Cloud66LinkFunction")
            if "RESOURCE#res_c66_*" in s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
        )
        put["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] = ["RESOURCE#*"]
        status, errors = run(broken)
        self.assertEqual(status, 1)
        self.assertIn("cloud66-link may dynamodb:PutItem RESOURCE#*", errors)

    def test_a_statement_without_leading_keys_fails(self):
        broken = copy.deepcopy(self.template)
        del statements(broken, "DashboardFunction")[0]["Condition"]
        status, errors = run(broken)
        self.assertEqual(status, 1)
        self.assertIn("DashboardFunction", errors)

    def test_a_bare_wildcard_fails(self):
        broken = copy.deepcopy(self.template)
        statements(broken, "ProvisionFunction")[0]["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"] = ["*"]
        status, errors = run(broken)
        self.assertEqual(status, 1)
        self.assertIn("is not PREFIX#*", errors)

    def test_a_plain_secret_in_a_function_environment_fails(self):
        broken = copy.deepcopy(self.template)
        broken["Resources"]["ProvisionFunction"]["Properties"]["Environment"]["Variables"]["ADDON_PASSWORD"] = "x"
        status, errors = run(broken)
        self.assertEqual(status, 1)
        self.assertIn("ProvisionFunction has the secret ADDON_PASSWORD", errors)

    def test_a_part_of_the_secret_granted_beyond_or_short_of_what_the_code_reads_fails(self):
        part = lambda name: "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${SecretsName}/" + name + "-??????"
        for function, resources, expected in [
            ("SsoLoginFunction", [part("signin"), part("oidc"), part("tokens")], "SsoLoginFunction is granted the secret's part tokens"),
            ("ProvisionFunction", [part("lifecycle"), part("vendor")], "ProvisionFunction is not granted the secret's part tokens"),
            ("OidcFunction", ["*"], "is not one part"),
        ]:
            broken = copy.deepcopy(self.template)
            for statement in broken["Resources"][function]["Properties"]["Policies"][0]["Statement"]:
                if "secretsmanager:GetSecretValue" in statement["Action"]:
                    statement["Resource"] = resources
            status, errors = run(broken)
            self.assertEqual(status, 1, function)
            self.assertIn(expected, errors)

    def test_a_prefix_the_store_uses_but_nobody_is_granted_fails(self):
        with open(STORE, encoding="utf-8") as handle:
            source = handle.read() + '\nfn extra() -> String { format!("NEW_THING#{}", 1) }\n'
        status, errors = run(self.template, source)
        self.assertEqual(status, 1)
        self.assertIn("NEW_THING#", errors)

    def test_an_api_without_throttling_fails(self):
        broken = copy.deepcopy(self.template)
        del broken["Resources"]["HttpApi"]["Properties"]["DefaultRouteSettings"]["ThrottlingBurstLimit"]
        status, errors = run(broken)
        self.assertEqual(status, 1)
        self.assertIn("HttpApi has no ThrottlingBurstLimit", errors)

    def test_a_route_off_the_throttled_api_fails(self):
        broken = copy.deepcopy(self.template)
        event = next(iter(broken["Resources"]["ProvisionFunction"]["Properties"]["Events"].values()))
        del event["Properties"]["ApiId"]
        status, errors = run(broken)
        self.assertEqual(status, 1)
        self.assertIn("ProvisionFunction route", errors)


if __name__ == "__main__":
    unittest.main()
