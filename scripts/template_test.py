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
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        return not resolve(value[0], template, parameters)  # !Not [condition]
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

    def test_with_a_custom_domain_every_registered_url_is_on_it(self):
        # A recreated stack keeps its URLs only if nothing registered names the API's own host.
        registered = ["ManifestBaseUrl", "ManifestSsoUrl", "Cloud66SsoCallbackUrl", "Cloud66SsoStartUrl",
                      "Cloud66LinkUrl", "OidcIssuer"]
        outputs = self.template["Outputs"]
        for name in registered:
            value = outputs[name]["Value"]
            with_domain = resolve(value, self.template, {"DomainName": "addons.example", "PublicUrl": ""})
            without = resolve(value, self.template, {"DomainName": "", "PublicUrl": ""})
            self.assertTrue(with_domain.startswith("https://addons.example"), f"{name}: {with_domain}")
            self.assertIn("execute-api", without, name)
        for function in ("SsoLoginFunction", "OidcFunction"):
            public_url = self.resources[function]["Properties"]["Environment"]["Variables"]["PUBLIC_URL"]
            self.assertEqual(resolve(public_url, self.template, {"DomainName": "addons.example", "PublicUrl": ""}),
                             "https://addons.example", function)
            self.assertEqual(resolve(public_url, self.template, {"DomainName": "d.example", "PublicUrl": "https://p"}),
                             "https://p", "PublicUrl wins")
        self.assertEqual(self.resources["CustomDomain"]["Condition"], "HasDomain")
        self.assertEqual(self.resources["CustomDomainMapping"]["Properties"]["ApiId"], "HttpApi")

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

    def test_secrets_name_takes_a_secret_name_without_a_part(self):
        pattern = re.compile(self.parameters["SecretsName"]["AllowedPattern"])
        for accepted in ["addon/provider", "my-addon", "a.b@c/d_e+f=g"]:
            self.assertTrue(pattern.fullmatch(accepted), accepted)
        self.assertNotIn("Default", self.parameters["SecretsName"], "the secret is made by `make secrets`, first")
        for refused in [
            "",
            "addon/provider/",
            "/addon",
            "a//b",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:addon/provider-AbC123",
            "addon provider",
        ]:
            self.assertFalse(pattern.fullmatch(refused), refused)
        self.assertIn("SecretsKmsKeyArn", self.parameters)
        decrypt = self.resources["SecretsKeyDecryptPolicy"]
        self.assertEqual(decrypt["Condition"], "HasSecretsKmsKey")
        self.assertEqual(decrypt["Properties"]["PolicyDocument"]["Statement"][0]["Action"], "kms:Decrypt")

    def test_the_kms_grant_covers_exactly_the_functions_that_read_a_secret(self):
        """With SecretsKmsKeyArn set, a reader missing from the grant cannot start
        (the oidc function once was), and a function that reads no secret has no
        business decrypting one."""
        readers = set()
        for name, resource in self.resources.items():
            if resource["Type"] != "AWS::Serverless::Function":
                continue
            for policy in resource["Properties"].get("Policies", []):
                for statement in policy.get("Statement", []):
                    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                    if "secretsmanager:GetSecretValue" in actions:
                        readers.add(f"{name}Role")
        roles = set()
        for role in self.resources["SecretsKeyDecryptPolicy"]["Properties"]["Roles"]:
            # `!If [Condition, Role, AWS::NoValue]` (the loader's short form): the role when enabled.
            roles.add(role[1] if isinstance(role, list) else role)
        self.assertTrue(readers, "some function reads a secret")
        self.assertEqual(roles, readers)

    def test_no_secret_passes_through_a_parameter_or_sub(self):
        for name, parameter in self.parameters.items():
            self.assertNotIn("NoEcho", parameter, f"{name}: secrets live in the secret `make secrets` writes")
        secrets = [r for r in self.resources.values() if r["Type"] == "AWS::SecretsManager::Secret"]
        self.assertEqual(secrets, [], "the template makes no secret from text")

    def test_every_function_has_a_log_group_alarms_and_a_configuration_error_metric(self):
        functions = {name: r for name, r in self.resources.items() if r["Type"] == "AWS::Serverless::Function"}
        alarms = {name: r for name, r in self.resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
        groups = {r["Properties"]["LogGroupName"]: r for r in self.resources.values() if r["Type"] == "AWS::Logs::LogGroup"}

        def names(alarm, metric):
            dims = alarm["Properties"].get("Dimensions", [])
            return alarm["Properties"].get("MetricName") == metric and [d["Value"] for d in dims] == [function]

        for function, resource in functions.items():
            group = groups.get(f"/aws/lambda/${{{function}}}")
            self.assertIsNotNone(group, function)
            self.assertEqual(group["Properties"]["RetentionInDays"], "LogRetentionDays", function)
            self.assertEqual(group.get("Condition"), resource.get("Condition"), function)
            for metric in ["Errors", "Throttles"]:
                self.assertTrue(any(names(a, metric) for a in alarms.values()), f"{function} {metric}")
            routes = {
                (e["Properties"]["Method"], e["Properties"]["Path"])
                for e in resource["Properties"].get("Events", {}).values()
                if e["Type"] == "HttpApi"
            }
            if routes:
                five = [
                    a for a in alarms.values()
                    if any(
                        m.get("MetricStat", {}).get("Metric", {}).get("MetricName") == "5xx"
                        for m in a["Properties"].get("Metrics", [])
                    )
                    and {
                        tuple(d["Value"] for d in m["MetricStat"]["Metric"]["Dimensions"] if d["Name"] in ("Method", "Resource"))
                        for m in a["Properties"]["Metrics"] if "MetricStat" in m
                    } == routes
                ]
                self.assertEqual(len(five), 1, f"{function}: one 5xx alarm over exactly its routes")
        filters = [r for r in self.resources.values() if r["Type"] == "AWS::Logs::MetricFilter"]
        self.assertEqual(len(filters), len(functions))
        for f in filters:
            self.assertIn("configuration error", f["Properties"]["FilterPattern"])
        with open("shared/src/config.rs", encoding="utf-8") as handle:
            self.assertIn('"configuration error: ', handle.read(), "the filter matches what a function prints")
        self.assertIn("ConfigurationErrorAlarm", alarms)
        for name, alarm in alarms.items():
            self.assertEqual(alarm["Properties"]["AlarmActions"], ["AlarmTopic"], name)
        self.assertTrue(self.resources["HttpApi"]["Properties"]["DefaultRouteSettings"]["DetailedMetricsEnabled"])

    def test_resource_base_url_is_required_only_by_the_default_provisioner(self):
        self.assertEqual(self.parameters["ResourceBaseUrl"]["Default"], "")
        rule = self.template["Rules"]["DefaultProvisionerNeedsResourceBaseUrl"]
        self.assertEqual(rule["RuleCondition"], ["ProvisionerUrl", ""])

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
