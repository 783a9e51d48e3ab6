"""A deployed stack, read through its outputs: the production manifests (`make manifest`), and
what a teardown leaves behind (`make teardown`).

Usage: python deployment.py manifest STACK [clevercloud|heroku|scalingo]
       python deployment.py retained STACK [--delete]
AWS credentials and region come from the usual chain (AWS_PROFILE, AWS_REGION, ...). Uses the boto3 that the
SAM CLI in .tools/venv brings.
"""

import json
import os
import re
import sys

import boto3

import manifests


def stack(name: str) -> dict:
    description = boto3.client("cloudformation").describe_stacks(StackName=name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in description.get("Parameters", [])}
    return {"outputs": outputs, "parameters": parameters}


def secret_parts() -> list:
    """The parts of the secret (shared::secret_parts::Part::name), read from the code so the two cannot drift."""
    path = os.path.join(os.path.dirname(__file__), "..", "shared", "src", "secret_parts.rs")
    with open(path, encoding="utf-8") as handle:
        return re.findall(r'Part::\w+ => "([a-z0-9-]+)"', handle.read())


def secret(name: str, parts=("lifecycle", "signin")) -> dict:
    """The values of the secret `name`'s `parts` (the manifests need the passwords and the salts), merged."""
    client, values = boto3.client("secretsmanager"), {}
    for part in parts:
        values.update(json.loads(client.get_secret_value(SecretId=f"{name}/{part}")["SecretString"]))
    return values


def manifest(name: str, marketplace: str = "clevercloud") -> dict:
    """The manifest the marketplace's add-on API documents, from the stack's outputs and its secret."""
    deployed = stack(name)
    outputs, parameters = deployed["outputs"], deployed["parameters"]
    values = secret(outputs["StackSecretsName"])
    base_url = outputs.get("EdgeUrl") or outputs["ApiUrl"]
    if marketplace == "scalingo":
        if not parameters.get("ScalingoUsername"):
            raise SystemExit(f"stack {name} does not sell on Scalingo: its ScalingoUsername parameter is empty")
        return manifests.scalingo(
            parameters["ScalingoUsername"],
            manifests.names(parameters["AddonConfigVars"]),
            values["SCALINGO_PASSWORD"],
            values["SCALINGO_SSO_SALT"],
            manifests.names(parameters.get("ScalingoPlans") or parameters.get("AddonPlans") or ""),
            base_url,
        )
    if marketplace == "heroku":
        if not parameters.get("HerokuAddonId"):
            raise SystemExit(f"stack {name} does not sell on Heroku: its HerokuAddonId parameter is empty")
        config_vars = manifests.names(parameters.get("HerokuConfigVars") or parameters["AddonConfigVars"])
        return manifests.heroku(
            parameters["HerokuAddonId"], config_vars, values["HEROKU_PASSWORD"], values["HEROKU_SSO_SALT"], base_url
        )
    return manifests.clevercloud(
        parameters["AddonId"],
        manifests.names(parameters["AddonConfigVars"]),
        values["ADDON_PASSWORD"],
        values["ADDON_SSO_SALT"],
        base_url,
    )


def retained(name: str, delete: bool) -> int:
    """What `sam delete` keeps: the table (DeletionPolicy Retain, deletion protection) and the secret's parts
    (made by `make secrets`, outside the stack). With --delete, removes both: the table for good, the parts
    after Secrets Manager's 7-day recovery window."""
    deployed = stack(name)
    table, secret_name = deployed["outputs"]["TableName"], deployed["outputs"]["StackSecretsName"]
    parts = [f"{secret_name}/{part}" for part in secret_parts()]
    print(json.dumps({"retained": {"table": table, "secret": parts}}))
    if delete:
        dynamodb = boto3.client("dynamodb")
        dynamodb.update_table(TableName=table, DeletionProtectionEnabled=False)
        dynamodb.delete_table(TableName=table)
        secrets = boto3.client("secretsmanager")
        for part in parts:
            secrets.delete_secret(SecretId=part, RecoveryWindowInDays=7)
        print(json.dumps({"deleted": {"table": table, "secret_scheduled": parts}}))
    return 0


def main(argv: list) -> int:
    if len(argv) >= 2 and argv[0] == "manifest":
        print(json.dumps(manifest(argv[1], *argv[2:3]), indent=2))
        return 0
    if len(argv) >= 2 and argv[0] == "retained":
        return retained(argv[1], "--delete" in argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
