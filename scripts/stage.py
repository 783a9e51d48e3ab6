"""A deployment stage file (deploy/<stage>.toml, the SAM CLI's config format), checked before
`make deploy` or `make deploy-plan` runs anything: every parameter without a default is set, every
parameter a marketplace needs is written down (even empty, so the first run's file is complete), no
parameter is one the template does not have, and AWS credentials are there. Nothing is asked: a
missing value is named, and the run stops.

Usage: python stage.py check STAGE_FILE TEMPLATE          the file alone
       python stage.py ready STAGE_FILE TEMPLATE          the file, then the credentials
"""

import os
import sys
import tomllib

sys.path.insert(0, os.path.dirname(__file__))
import cfn_template  # noqa: E402

# The listing's facts (docs/registering.md): the stage's plans and config vars must be its.
LISTING = "marketplace.toml"

# Each marketplace's parameters: written in a stage file even when empty (empty: not sold there),
# so that nobody deploys twice for a forgotten one.
MARKETPLACE_PARAMETERS = {
    "Clever Cloud": ["AddonId", "AddonConfigVars", "AddonPlans"],
    "Heroku": ["HerokuAddonId", "HerokuConfigVars", "HerokuPlans"],
    "Scalingo": ["ScalingoUsername", "ScalingoPlans", "ScalingoApiUrl"],
    "Cloud 66": ["Cloud66Provider", "Cloud66PartnerEndpoint"],
    "Cloudmore": ["CloudmoreUsername", "CloudmoreResellerId"],
}


def deploy_section(stage: dict):
    """The stage's `[default.deploy.parameters]`, or None."""
    return stage.get("default", {}).get("deploy", {}).get("parameters")


def comma_list(text: str) -> list:
    """A parameter's comma-separated names, as the functions read them (shared::config::comma_list)."""
    return [name.strip() for name in text.split(",") if name.strip()]


def overrides(stage: dict) -> dict:
    """The parameter overrides of the stage's deploy section, as a dict."""
    given = (deploy_section(stage) or {}).get("parameter_overrides", [])
    if isinstance(given, str):
        raise ValueError("parameter_overrides must be a list of \"Name=value\" strings")
    found = {}
    for entry in given:
        name, equals, value = entry.partition("=")
        if not equals:
            raise ValueError(f"parameter_overrides entry {entry!r} is not Name=value")
        if value == "":
            raise ValueError(f'{name}= is refused by the SAM CLI: write {name}="" for an empty value')
        if name in found:
            raise ValueError(f"{name} is set twice")
        # The SAM CLI takes `Name="value"` (and needs it for an empty value: `Name=""`).
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        found[name] = value
    return found


def problems(stage: dict, template: dict) -> list:
    """What is wrong with `stage` for `template`, each naming the fix."""
    found = []
    section = deploy_section(stage)
    if section is None:
        return ["no [default.deploy.parameters] section"]
    for key in ("stack_name", "region", "capabilities"):
        if not section.get(key):
            found.append(f"{key} is not set")
    if section.get("confirm_changeset") is not False:
        found.append("confirm_changeset must be false: a stage deploys without a question")
    try:
        given = overrides(stage)
    except ValueError as error:
        return found + [str(error)]
    parameters = template["Parameters"]
    for name in sorted(set(given) - set(parameters)):
        found.append(f"{name} is not a parameter of the template")
    for name, spec in parameters.items():
        if "Default" not in spec and not given.get(name):
            found.append(f"{name} has no default: set it")
    for marketplace, names in MARKETPLACE_PARAMETERS.items():
        for name in names:
            if name not in given:
                found.append(f'{name} ({marketplace}) is not written down: set it, or write {name}="" if not sold there')
    return found


# Where each marketplace's plans are in a stage file, and when it sells there (empty: not sold).
LISTED_PLANS = {
    "clevercloud": ("AddonPlans", "AddonId"),
    "heroku": ("HerokuPlans", "HerokuAddonId"),
    "scalingo": ("ScalingoPlans", "ScalingoUsername"),
}


def listing_problems(stage: dict, listing: dict) -> list:
    """Where the stage's plans or config vars are not the listing's (marketplace.toml): what the stack
    would accept is then not what is registered. A marketplace's empty plan list falls back to
    AddonPlans, as the functions read it."""
    given = overrides(stage)
    found = []
    config_vars = comma_list(given.get("AddonConfigVars", ""))
    if config_vars != listing.get("config_vars"):
        found.append(f"AddonConfigVars ({','.join(config_vars)}) is not marketplace.toml's config_vars "
                     f"({','.join(listing.get('config_vars', []))}), in that order")
    for market, (parameter, sold_by) in LISTED_PLANS.items():
        if not given.get(sold_by) or market not in listing:
            continue
        plans = given.get(parameter) or given.get("AddonPlans", "")
        accepted = sorted(comma_list(plans))
        listed = sorted(plan["slug"] for plan in listing[market]["plans"])
        if accepted and accepted != listed:
            found.append(f"{parameter} ({','.join(accepted)}) is not marketplace.toml's [{market}] plans ({','.join(listed)})")
    return found


def credentials_problem(region: str):
    """Why the AWS credentials cannot deploy to `region`, or None. Asks STS who they are (no change
    anywhere)."""
    import boto3
    import botocore.exceptions

    try:
        boto3.client("sts", region_name=region).get_caller_identity()
    except botocore.exceptions.NoCredentialsError:
        return "no AWS credentials: set AWS_PROFILE (or run `aws sso login`), then run this again"
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        return f"the AWS credentials do not work ({error}): check AWS_PROFILE and AWS_REGION"
    return None


def main(argv: list) -> int:
    if len(argv) != 3 or argv[0] not in ("check", "ready"):
        print(__doc__, file=sys.stderr)
        return 2
    command, stage_path, template_path = argv
    try:
        with open(stage_path, "rb") as handle:
            stage = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as error:
        print(f"stage: cannot read {stage_path}: {error}", file=sys.stderr)
        return 2
    found = problems(stage, cfn_template.load(template_path))
    if not found and os.path.exists(LISTING):
        with open(LISTING, "rb") as handle:
            found = listing_problems(stage, tomllib.load(handle))
    for problem in found:
        print(f"stage: {stage_path}: {problem}", file=sys.stderr)
    if found:
        return 2
    if command == "ready":
        problem = credentials_problem(deploy_section(stage)["region"])
        if problem:
            print(f"stage: {problem}; nothing was built or deployed", file=sys.stderr)
            return 3
    print(f"stage: {stage_path} is complete for {template_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
