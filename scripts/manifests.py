"""The marketplaces' add-on manifests for this provider, from its settings and secrets.

One builder per marketplace, used by `make run` / the test stack (local URLs, development values) and by
`make manifest` (a deployed stack's outputs and secret). Manifests hold the secrets: keep them out of
version control.

Usage: python manifests.py clevercloud|heroku|scalingo BASE_URL   (values from the environment)
"""

import json
import os
import sys


def names(text: str) -> list:
    return [name.strip() for name in text.split(",") if name.strip()]


def clevercloud(addon_id: str, config_vars: list, password: str, sso_salt: str, base_url: str) -> dict:
    """Clever Cloud's manifest (docs/clevercloud.md)."""
    urls = {"base_url": f"{base_url}/clevercloud/resources", "sso_url": f"{base_url}/clevercloud/sso/login"}
    return {
        "id": addon_id,
        "name": addon_id,
        "api": {
            "config_vars": config_vars,
            "regions": ["eu"],
            "password": password,
            "sso_salt": sso_salt,
            "production": urls,
            "test": urls,
        },
    }


def config_vars_prefix(config_vars: list) -> str:
    """What every name shares before its last common '_' (shared::heroku::HerokuNames::prefix)."""
    first = config_vars[0]
    common = len(first)
    for name in config_vars[1:]:
        common = min(common, next((i for i, (a, b) in enumerate(zip(first, name)) if a != b), min(len(first), len(name))))
    shared = first[:common]
    return shared[: shared.rfind("_")] if "_" in shared else ""


def heroku(addon_id: str, config_vars: list, password: str, sso_salt: str, base_url: str) -> dict:
    """Heroku's v3 manifest (docs/heroku.md, "The manifest")."""
    urls = {"base_url": f"{base_url}/heroku/resources", "sso_url": f"{base_url}/heroku/sso/login"}
    return {
        "id": addon_id,
        "name": addon_id,
        "api": {
            "config_vars_prefix": config_vars_prefix(config_vars),
            "config_vars": config_vars,
            "password": password,
            "sso_salt": sso_salt,
            "regions": ["us", "eu"],
            "requires": [],
            "production": urls,
            "test": urls,
            "version": "3",
        },
    }


def scalingo(username: str, config_vars: list, password: str, sso_salt: str, plans: list, base_url: str) -> dict:
    """Scalingo's manifest, sent to Scalingo by e-mail (docs/scalingo.md, "The manifest"). Prices are EUR per 30
    days and descriptions are the vendor's to write: both are placeholders here."""
    urls = {"base_url": f"{base_url}/scalingo/resources", "sso_url": f"{base_url}/scalingo/sso"}
    return {
        "name": username,
        "username": username,
        "password": password,
        "sso_salt": sso_salt,
        "config_vars": config_vars,
        "production": urls,
        "test": urls,
        "plans": [
            {"name": plan, "display_name": plan.replace("-", " ").title(), "price": 0, "description": f"The {plan} plan"}
            for plan in plans
        ],
    }


def from_environment(marketplace: str, base_url: str) -> dict:
    env = os.environ
    if marketplace == "scalingo":
        plans = names(env.get("SCALINGO_PLANS") or env.get("ADDON_PLANS") or "")
        return scalingo(
            env["SCALINGO_USERNAME"],
            names(env["ADDON_CONFIG_VARS"]),
            env["SCALINGO_PASSWORD"],
            env["SCALINGO_SSO_SALT"],
            plans,
            base_url,
        )
    if marketplace == "heroku":
        config_vars = names(env.get("HEROKU_CONFIG_VARS") or env["ADDON_CONFIG_VARS"])
        return heroku(env["HEROKU_ADDON_ID"], config_vars, env["HEROKU_PASSWORD"], env["HEROKU_SSO_SALT"], base_url)
    return clevercloud(
        env["ADDON_ID"], names(env["ADDON_CONFIG_VARS"]), env["ADDON_PASSWORD"], env["ADDON_SSO_SALT"], base_url
    )


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("clevercloud", "heroku", "scalingo"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    print(json.dumps(from_environment(sys.argv[1], sys.argv[2]), indent=2))
