"""deploy/<stage>.toml (scripts/stage.py): the example is complete for the template, each kind of gap is
named, and `make deploy-plan STAGE=example` without AWS credentials stops at the credentials step, with a
message saying so, before building anything or asking anything.

Usage: .tools/venv/bin/python scripts/stage_test.py   (from the repository root)
"""

import copy
import os
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
        flat = with_overrides(example(), lambda entries: " ".join(entries))
        self.assertIn("must be a list", stage.problems(flat, self.template)[0])
        asks = copy.deepcopy(example())
        asks["default"]["deploy"]["parameters"]["confirm_changeset"] = True
        self.assertIn("confirm_changeset must be false", stage.problems(asks, self.template)[0])

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


if __name__ == "__main__":
    unittest.main()
