"""deploy/<stage>.toml (scripts/stage.py): the example is complete for the template, each kind of gap is
named; `make deploy-plan STAGE=example` without AWS credentials stops at the credentials step, with a
message saying so, before building anything or asking anything; and with credentials for a local AWS
(moto) it reaches the changeset through the SAM CLI, asks nothing, and executes nothing.

Usage: .tools/venv/bin/python scripts/stage_test.py   (from the repository root)
"""

import copy
import json
import os
import re
import subprocess
import sys
import tomllib
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import cfn_template  # noqa: E402
import stage  # noqa: E402

TEMPLATE = "infra/template.yaml"
EXAMPLE = "deploy/example.toml"


def example() -> dict:
    with open(EXAMPLE, "rb") as handle:
        return tomllib.load(handle)


def with_overrides(stage_file: dict, change) -> dict:
    changed = copy.deepcopy(stage_file)
    section = changed["default"]["deploy"]["parameters"]
    section["parameter_overrides"] = change(section["parameter_overrides"])
    return changed


class Stage(unittest.TestCase):
    def setUp(self):
        self.template = cfn_template.load(TEMPLATE)

    def test_the_example_is_complete_for_the_template(self):
        self.assertEqual(stage.problems(example(), self.template), [])

    def test_each_gap_is_named(self):
        without = lambda name: with_overrides(  # noqa: E731
            example(), lambda entries: [e for e in entries if not e.startswith(f"{name}=")]
        )
        self.assertEqual(stage.problems(without("SecretsName"), self.template), ["SecretsName has no default: set it"])
        heroku = stage.problems(without("HerokuAddonId"), self.template)
        self.assertEqual(len(heroku), 1)
        self.assertIn("HerokuAddonId (Heroku) is not written down", heroku[0])
        unknown = with_overrides(example(), lambda entries: entries + ["NoSuchParameter=1"])
        self.assertEqual(stage.problems(unknown, self.template), ["NoSuchParameter is not a parameter of the template"])
        twice = with_overrides(example(), lambda entries: entries + ["AddonId=again"])
        self.assertEqual(stage.problems(twice, self.template), ["AddonId is set twice"])
        bare = with_overrides(example(), lambda entries: entries + ["PublicUrl="])
        self.assertIn('write PublicUrl=""', stage.problems(bare, self.template)[0])
        flat = with_overrides(example(), lambda entries: " ".join(entries))
        self.assertIn("must be a list", stage.problems(flat, self.template)[0])
        asks = copy.deepcopy(example())
        asks["default"]["deploy"]["parameters"]["confirm_changeset"] = True
        self.assertIn("confirm_changeset must be false", stage.problems(asks, self.template)[0])

    def test_the_stage_must_sell_what_the_listing_lists(self):
        with open(stage.LISTING, "rb") as handle:
            listing = tomllib.load(handle)
        self.assertEqual(stage.listing_problems(example(), listing), [])
        other = with_overrides(example(), lambda entries: [e for e in entries if not e.startswith("AddonPlans=")] + ["AddonPlans=basic,gold"])
        self.assertIn("AddonPlans (basic,gold)", stage.listing_problems(other, listing)[0])
        heroku = with_overrides(
            example(),
            lambda entries: [e for e in entries if not e.startswith(("HerokuAddonId=", "HerokuPlans="))]
            + ["HerokuAddonId=my-addon", "HerokuPlans=hobby"],
        )
        self.assertEqual(len(stage.listing_problems(heroku, listing)), 1, "HerokuPlans, once Heroku is sold")
        swapped = with_overrides(
            example(),
            lambda entries: [e for e in entries if not e.startswith("AddonConfigVars=")]
            + ["AddonConfigVars=ADDON_NAME_TOKEN,ADDON_NAME_URL"],
        )
        self.assertIn("AddonConfigVars", stage.listing_problems(swapped, listing)[0])

    def test_deploy_plan_without_credentials_stops_at_the_credentials_step(self):
        keep = ("PATH", "HOME", "CARGO_HOME", "RUSTUP_HOME", "LANG")
        environ = {name: os.environ[name] for name in keep if name in os.environ}
        environ.update(
            {
                "AWS_CONFIG_FILE": "/nonexistent/aws-config",
                "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
                "AWS_EC2_METADATA_DISABLED": "true",
            }
        )
        run = subprocess.run(
            ["make", "deploy-plan", "STAGE=example"],
            env=environ,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.assertNotEqual(run.returncode, 0, run.stdout + run.stderr)
        self.assertIn("no AWS credentials", run.stderr)
        self.assertIn("nothing was built or deployed", run.stderr)
        self.assertNotIn("sam build", run.stdout + run.stderr, "stopped before the build")
        self.assertNotIn("?", run.stdout, "no question asked")


def free_port() -> int:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


def built_template(folder: str) -> str:
    """infra/template.yaml as `sam build` leaves it, every function's code a stand-in `bootstrap` (the
    real arm64 build takes 12 to 30 minutes; the changeset is about the template)."""
    code = os.path.join(folder, "code")
    os.makedirs(code)
    with open(os.path.join(code, "bootstrap"), "w", encoding="utf-8") as handle:
        handle.write("stand-in\n")
    with open(TEMPLATE, encoding="utf-8") as handle:
        text = handle.read()
    # The functions' code is the Globals' CodeUri (the workspace): here, the stand-in. The text is
    # edited, not parsed and dumped, so the template stays CloudFormation's YAML, tags and all.
    workspace = re.search(r"^    CodeUri: \.\.$", text, re.M)
    assert workspace, "the template's Globals CodeUri moved"
    text = text.replace(workspace.group(0), f"    CodeUri: {code}")
    path = os.path.join(folder, "template.yaml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


class DeployPlan(unittest.TestCase):
    """`make deploy-plan STAGE=example` against a local AWS (moto: STS, S3, CloudFormation) reaches the
    changeset through the SAM CLI with no question asked, and executes nothing."""

    def test_the_example_stage_reaches_the_changeset_without_a_question(self):
        import boto3
        import tempfile
        import time

        port = free_port()
        # `localhost`, not 127.0.0.1: moto reads the bucket of the template's path-style S3 URL only so.
        endpoint = f"http://localhost:{port}"
        moto = subprocess.Popen(
            [".tools/moto/bin/python", "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            environ = {
                name: os.environ[name] for name in ("PATH", "HOME", "CARGO_HOME", "RUSTUP_HOME", "LANG") if name in os.environ
            }
            environ.update(
                {
                    "AWS_ACCESS_KEY_ID": "local",
                    "AWS_SECRET_ACCESS_KEY": "local",
                    "AWS_ENDPOINT_URL": endpoint,
                    "AWS_EC2_METADATA_DISABLED": "true",
                    "SAM_CLI_TELEMETRY": "0",
                }
            )
            region = example()["default"]["deploy"]["parameters"]["region"]
            session = boto3.session.Session(
                aws_access_key_id="local", aws_secret_access_key="local", region_name=region
            )
            for _ in range(100):
                try:
                    session.client("sts", endpoint_url=endpoint).get_caller_identity()
                    break
                except Exception:  # noqa: BLE001 (moto is still starting)
                    time.sleep(0.1)
            # The SAM CLI's own bucket stack, as `sam deploy --resolve-s3` made it once.
            session.client("s3", endpoint_url=endpoint).create_bucket(
                Bucket="sam-artifacts", CreateBucketConfiguration={"LocationConstraint": region}
            )
            session.client("cloudformation", endpoint_url=endpoint).create_stack(
                StackName="aws-sam-cli-managed-default",
                TemplateBody=json.dumps(
                    {"Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}}, "Outputs": {"SourceBucket": {"Value": "sam-artifacts"}}}
                ),
                Tags=[{"Key": "ManagedStackSource", "Value": "AwsSamCli"}],
            )
            with tempfile.TemporaryDirectory() as folder:
                run = subprocess.run(
                    ["make", "deploy-plan", "STAGE=example", f"BUILT={built_template(folder)}"],
                    env=environ,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
            output = run.stdout + run.stderr
            self.assertEqual(run.returncode, 0, output[-3000:])
            self.assertIn("Changeset created successfully", output)
            self.assertIn("ProvisionFunction", output, "the stack's own resources in the changeset")
            self.assertNotIn("[y/N]", output, "no question asked")
            stacks = session.client("cloudformation", endpoint_url=endpoint).describe_stacks(StackName="my-addon")
            self.assertEqual(stacks["Stacks"][0]["StackStatus"], "REVIEW_IN_PROGRESS", "planned, not executed")
        finally:
            moto.terminate()
            moto.wait(timeout=30)


if __name__ == "__main__":
    unittest.main()
