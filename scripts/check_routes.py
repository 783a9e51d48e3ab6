"""Fails unless `cargo lambda watch`'s routes (Cargo.toml) and the template's HttpApi events agree.

Local runs and tests go through watch; production goes through API Gateway.
If the two route tables drift, tests pass against routes nobody deploys.

Usage: python check_routes.py TEMPLATE CARGO_TOML
"""

import sys
import tomllib

import cfn_template


def template_routes(path: str) -> set:
    routes = set()
    for resource in cfn_template.load(path)["Resources"].values():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        binary = resource["Metadata"]["BuildProperties"]["Binary"]
        for event in resource["Properties"].get("Events", {}).values():
            if event["Type"] == "HttpApi":
                routes.add((event["Properties"]["Method"].upper(), event["Properties"]["Path"], binary))
    return routes


def watch_routes(path: str) -> set:
    with open(path, "rb") as handle:
        router = tomllib.load(handle)["workspace"]["metadata"]["lambda"]["watch"]["router"]
    return {
        (route["method"].upper(), route_path, route["function"])
        for route_path, entries in router.items()
        for route in entries
    }


def main(template: str, cargo_toml: str) -> int:
    deployed, local = template_routes(template), watch_routes(cargo_toml)
    for route in sorted(deployed - local):
        print(f"check_routes: {route} is in the template but not in cargo lambda watch's router", file=sys.stderr)
    for route in sorted(local - deployed):
        print(f"check_routes: {route} is in cargo lambda watch's router but not in the template", file=sys.stderr)
    if deployed != local:
        return 1
    print(f"check_routes: {len(deployed)} routes agree", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
