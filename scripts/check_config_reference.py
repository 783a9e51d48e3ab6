"""Fails when the configuration reference (docs/operating.md) misses a variable the code reads, a secret the
secret may hold, a variable the template sets, or a template parameter: each must appear there in backquotes.

Usage: python check_config_reference.py infra/template.yaml shared/src docs/operating.md
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(__file__))
import cfn_template  # noqa: E402

# A read of one variable: config::required/optional/seconds(lookup, "NAME", ...), or a lookup("NAME").
READ = re.compile(r'\b(?:required|optional|seconds|lookup)\(\s*(?:&?[a-z_]+\s*,\s*)?"([A-Z][A-Z0-9_]{2,})"')
SECRET_VARS = re.compile(r"pub const SECRET_VARS[^=]*= \[(.*?)\];", re.S)
# Read by the SDK or the runtime, not by this code: documented with the tools that set them.
NOT_OURS = {"AWS_REGION"}


def variables_read(source_dir: str) -> dict:
    found = {}
    for root, _, files in os.walk(source_dir):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(root, name)
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            # Tests name variables that no deployment sets.
            text = text.split("#[cfg(test)]")[0]
            for var in READ.findall(text):
                found.setdefault(var, path)
            block = SECRET_VARS.search(text)
            if block:
                for var in re.findall(r'"([A-Z0-9_]+)"', block.group(1)):
                    found.setdefault(var, f"{path} (SECRET_VARS)")
    return found


def template_names(template_path: str) -> dict:
    template = cfn_template.load(template_path)
    found = {name: f"{template_path} (parameter)" for name in template.get("Parameters", {})}
    functions = [template.get("Globals", {}).get("Function", {})] + [
        r.get("Properties", {}) for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::Function"
    ]
    for properties in functions:
        for var in properties.get("Environment", {}).get("Variables", {}):
            found.setdefault(var, f"{template_path} (function environment)")
    return found


def missing(reference_text: str, names: dict) -> list:
    return sorted(
        f"{name} (from {where})"
        for name, where in names.items()
        if name not in NOT_OURS and f"`{name}`" not in reference_text
    )


def main(template_path: str, source_dir: str, reference_path: str) -> int:
    with open(reference_path, encoding="utf-8") as handle:
        reference = handle.read()
    names = {**template_names(template_path), **variables_read(source_dir)}
    absent = missing(reference, names)
    if absent:
        print(f"check_config_reference: {reference_path} does not document:", file=sys.stderr)
        for line in absent:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"check_config_reference: {len(names)} variables and parameters, each in {reference_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
