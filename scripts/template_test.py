"""What only AWS would show, checked on infra/template.yaml itself: an invalid schedule for some
allowed parameter value, an alarm that stays quiet through the outage it is for, a SecretsArn that
deploys and is then denied, a function timeout shorter than the budgets inside it.

Usage: python template_test.py   (from the repository root)
"""

import json
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import cfn_template  # noqa: E402

TEMPLATE = "infra/template.yaml"
# API Gateway's longest integration timeout.
GATEWAY_TIMEOUT_SECONDS = 30


def resolve(value, template: dict, parameters: dict):
    """A small evaluator for the intrinsics the checked properties use: !If, !Equals, !Ref, !Sub."""
    if isinstance(value, list) and len(value) == 3 and value[0] in template.get("Conditions", {}):
        condition = resolve(template["Conditions"][value[0]], template, parameters)
        return resolve(value[1] if condition else value[2], template, parameters)
    if isinstance(value, list) and len(value) == 2:
        left, right = (resolve(side, template, parameters) for side in value)
        return str(left) == str(right)
    if isinstance(value, str) and value in parameters:
        return parameters[value]
    if isinstance(value, str):
        return re.sub(r"\$\{(\w+)\}", lambda match: str(parameters.get(match.group(1), match.group(0))), value)
    return value


class Template(unittest.TestCase):
    def setUp(self):
        self.template = cfn_template.load(TEMPLATE)
        self.resources = self.template["Resources"]
        self.parameters = self.template["Parameters"]

    def test_the_sweep_schedule_is_valid_for_every_allowed_value_with_an_explicit_input(self):
        sweep = self.resources["PlatformSyncFunction"]["Properties"]["Events"]["Sweep"]["Properties"]
        allowed = self.parameters["SyncSweepMinutes"]
        for minutes in sorted({allowed["MinValue"], 2, allowed["Default"], 60, allowed["MaxValue"]}):
            expression = resolve(sweep["ScheduleExpression"], self.template, {"SyncSweepMinutes": minutes})
            expected = "rate(1 minute)" if minutes == 1 else f"rate({minutes} minutes)"
            self.assertEqual(expression, expected, minutes)
        payload = json.loads(sweep["Input"])
        self.assertNotIn("Records", payload, "the sync tells a sweep from a stream batch by Records")

    def test_silence_breaches_where_it_means_an_outage_and_the_stream_lag_alarms(self):
        alarms = {name: r["Properties"] for name, r in self.resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
        for name, alarm in alarms.items():
            self.assertIn(alarm.get("TreatMissingData"), {"breaching", "notBreaching"}, name)
        pending_age = next(a for a in alarms.values() if a.get("MetricName") == "OldestPendingSyncSeconds")
        self.assertEqual(pending_age["TreatMissingData"], "breaching", "no metric means no sweep")
        iterator_age = [a for a in alarms.values() if a.get("MetricName") == "IteratorAge"]
        self.assertEqual(len(iterator_age), 1)
        self.assertEqual(iterator_age[0]["Dimensions"][0]["Value"], "PlatformSyncFunction")

    def test_secrets_arn_takes_a_full_arn_only(self):
        pattern = re.compile(self.parameters["SecretsArn"]["AllowedPattern"])
        for accepted in ["", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:addon/provider-AbC123"]:
            self.assertTrue(pattern.fullmatch(accepted), accepted)
        for refused in [
            "addon-provider",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:addon-provider",
            "arn:aws:secretsmanager:eu-west-1:1234:secret:addon-AbC123",
        ]:
            self.assertFalse(pattern.fullmatch(refused), refused)
        self.assertIn("SecretsKmsKeyArn", self.parameters)
        decrypt = self.resources["SecretsKeyDecryptPolicy"]
        self.assertEqual(decrypt["Condition"], "HasSecretsKmsKey")
        self.assertEqual(decrypt["Properties"]["PolicyDocument"]["Statement"][0]["Action"], "kms:Decrypt")

    def test_each_function_timeout_covers_the_budgets_inside_it_under_the_gateways(self):
        vendor_seconds = self.parameters["ProvisionerTimeoutMs"]["MaxValue"] / 1000
        dynamodb_seconds = 5  # shared::config::aws_sdk_config's operation timeout
        for name in ["ProvisionFunction", "PlanChangeFunction", "DeprovisionFunction"]:
            timeout = self.resources[name]["Properties"]["Timeout"]
            self.assertGreaterEqual(timeout, vendor_seconds + 2 * dynamodb_seconds, name)
            self.assertLess(timeout, GATEWAY_TIMEOUT_SECONDS, name)
        link = self.resources["Cloud66LinkFunction"]["Properties"]
        partner = int(link["Environment"]["Variables"]["CLOUD66_PARTNER_TIME_LIMIT_SECONDS"])
        self.assertGreaterEqual(link["Timeout"], vendor_seconds + partner + 2 * dynamodb_seconds)
        self.assertLess(link["Timeout"], GATEWAY_TIMEOUT_SECONDS)

    def test_lifecycle_routes_are_throttled_apart_from_the_browser_routes(self):
        api = self.resources["HttpApi"]["Properties"]
        routes = api["RouteSettings"]
        for route in ["POST /clevercloud/resources", "PUT /clevercloud/resources/{id}", "DELETE /clevercloud/resources/{id}"]:
            self.assertEqual(routes[route]["ThrottlingRateLimit"], "LifecycleThrottlingRateLimit", route)
        self.assertEqual(api["DefaultRouteSettings"]["ThrottlingRateLimit"], "ApiThrottlingRateLimit")
        self.assertEqual(self.parameters["EdgeProtection"]["Default"], "off")
        self.assertEqual(self.resources["EdgeWebAcl"]["Condition"], "EdgeEnabled")
        rule = self.resources["EdgeWebAcl"]["Properties"]["Rules"][0]["Statement"]["RateBasedStatement"]
        self.assertEqual(rule["AggregateKeyType"], "IP")


if __name__ == "__main__":
    unittest.main()
