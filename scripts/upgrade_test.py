"""Upgrading a deployed stack from the last release to this version (docs/upgrading.md): what an upgrade
must keep, checked on infra/template.yaml against the last release's recorded facts
(infra/releases/<version>.json: its parameters, its table and its secret's parts, recorded from its
template when it was tagged).

- every parameter a stage file of the last release may set still exists, and every new parameter has a
  default, so `make deploy STAGE=…` with the last release's stage file deploys this version unchanged;
- the table (keys, indexes, stream, retention) is the same resource, so its data stays where it is;
- the secret's parts are the same, or the release's "Upgrading" section says how to move them;
- this version has its CHANGELOG.md section and its docs/upgrading.md section from the last release.

Usage: python upgrade_test.py                      the checks
       python upgrade_test.py record VERSION REV   records release VERSION's facts from git revision REV
"""

import json
import os
import re
import subprocess
import sys
import tomllib
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import cfn_template  # noqa: E402
import deployment  # noqa: E402

TEMPLATE = "infra/template.yaml"
RELEASES = "infra/releases"


def facts(template: dict, secret_parts: list) -> dict:
    """What an upgrade must keep, from a template."""
    table = template["Resources"]["Table"]
    properties = table["Properties"]
    return {
        "parameters": {name: "Default" in spec for name, spec in template["Parameters"].items()},
        "table": {
            "DeletionPolicy": table.get("DeletionPolicy"),
            "KeySchema": properties.get("KeySchema"),
            "AttributeDefinitions": properties.get("AttributeDefinitions"),
            "GlobalSecondaryIndexes": properties.get("GlobalSecondaryIndexes"),
            "StreamSpecification": properties.get("StreamSpecification"),
        },
        "secret_parts": secret_parts,
    }


def version() -> str:
    with open("Cargo.toml", "rb") as handle:
        return tomllib.load(handle)["workspace"]["package"]["version"]


def last_release() -> tuple:
    """(version, facts) of the newest recorded release older than this version."""
    def key(name: str):
        return tuple(int(part) for part in name.split("."))

    current = key(version())
    # X.Y.Z.json: a release's template facts (X.Y.Z-items.json is its table, tests/tests/upgrade.rs).
    recorded = sorted(
        (name[: -len(".json")] for name in os.listdir(RELEASES) if re.fullmatch(r"\d+\.\d+\.\d+\.json", name)),
        key=key,
    )
    older = [name for name in recorded if key(name) < current]
    if not older:
        raise SystemExit(f"upgrade_test: no release older than {version()} in {RELEASES}")
    with open(os.path.join(RELEASES, f"{older[-1]}.json"), encoding="utf-8") as handle:
        return older[-1], json.load(handle)


def problems(before: dict, now: dict, upgrading_section: str) -> list:
    found = []
    for name, had_default in before["parameters"].items():
        if name not in now["parameters"]:
            found.append(f"parameter {name} is gone: a stage file that sets it no longer deploys")
    for name, has_default in now["parameters"].items():
        if name not in before["parameters"] and not has_default:
            found.append(f"new parameter {name} has no default: the last release's stage file would not deploy")
        if name in before["parameters"] and before["parameters"][name] and not has_default:
            found.append(f"parameter {name} lost its default")
    for field, value in before["table"].items():
        if now["table"].get(field) != value:
            found.append(f"the table's {field} changed: CloudFormation would replace the table")
    if now["secret_parts"] != before["secret_parts"] and "secret" not in upgrading_section.lower():
        found.append("the secret's parts changed, and the release's upgrading section does not say how to move them")
    return found


def upgrading_section(previous: str, current: str) -> str:
    with open("docs/upgrading.md", encoding="utf-8") as handle:
        text = handle.read()
    match = re.search(rf"^## {re.escape(previous)} → {re.escape(current)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    return match.group(1) if match else ""


class Upgrade(unittest.TestCase):
    def setUp(self):
        self.previous, self.before = last_release()
        self.now = facts(cfn_template.load(TEMPLATE), deployment.secret_parts())

    def test_the_last_releases_stack_upgrades_in_place(self):
        section = upgrading_section(self.previous, version())
        self.assertEqual(problems(self.before, self.now, section), [])

    def test_the_release_is_written_up(self):
        self.assertTrue(
            upgrading_section(self.previous, version()).strip(),
            f"docs/upgrading.md has no section '## {self.previous} → {version()}'",
        )
        with open("CHANGELOG.md", encoding="utf-8") as handle:
            self.assertIn(f"## [{version()}]", handle.read())

    def test_each_thing_an_upgrade_could_break_is_caught(self):
        def changed(change):
            after = json.loads(json.dumps(self.now))
            change(after)
            return problems(self.now, after, "")

        self.assertEqual(changed(lambda facts: None), [])
        self.assertTrue(changed(lambda facts: facts["parameters"].pop("AddonId")))
        self.assertTrue(changed(lambda facts: facts["parameters"].update({"NewRequired": False})))
        self.assertEqual(changed(lambda facts: facts["parameters"].update({"NewOptional": True})), [])
        self.assertTrue(changed(lambda facts: facts["parameters"].update({"AlarmEmail": False})))
        self.assertTrue(changed(lambda facts: facts["table"].update({"KeySchema": []})))
        self.assertTrue(changed(lambda facts: facts["table"].update({"DeletionPolicy": "Delete"})))
        self.assertTrue(changed(lambda facts: facts["secret_parts"].append("extra")))
        self.assertEqual(
            problems(self.now, {**self.now, "secret_parts": self.now["secret_parts"] + ["x"]}, "create the secret part"),
            [],
            "a parts change the upgrading section explains",
        )


def record(release: str, revision: str) -> int:
    text = subprocess.run(["git", "show", f"{revision}:{TEMPLATE}"], check=True, capture_output=True, text=True).stdout
    parts_source = subprocess.run(
        ["git", "show", f"{revision}:shared/src/secret_parts.rs"], check=True, capture_output=True, text=True
    ).stdout
    path = os.path.join(RELEASES, f"{release}.json")
    with open(path, "w", encoding="utf-8") as handle:
        template = cfn_template.loads(text)
        parts = re.findall(r'Part::\w+ => "([a-z0-9-]+)"', parts_source)
        json.dump(facts(template, parts), handle, indent=2, sort_keys=True)
        handle.write("\n")
    print(f"upgrade_test: recorded {path} from {revision}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "record":
        sys.exit(record(sys.argv[2], sys.argv[3]))
    unittest.main()
