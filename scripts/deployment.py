"""A deployed stack, read through its outputs: the production Clever Cloud manifest (`make manifest`), and
what a teardown leaves behind (`make teardown`).

Usage: python deployment.py manifest STACK
       python deployment.py retained STACK [--delete]
AWS credentials and region come from the usual chain (AWS_PROFILE, AWS_REGION, ...). Uses the boto3 that the
SAM CLI in .tools/venv brings.
"""

import json
import sys

import boto3


def stack(name: str) -> dict:
    description = boto3.client("cloudformation").describe_stacks(StackName=name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in description.get("Parameters", [])}
    return {"outputs": outputs, "parameters": parameters}


def secret(arn: str) -> dict:
    return json.loads(boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"])


def manifest(name: str) -> dict:
    """The manifest Clever Cloud's add-on API documents, from the stack's outputs and its secret."""
    deployed = stack(name)
    outputs, parameters = deployed["outputs"], deployed["parameters"]
    values = secret(outputs["StackSecretsArn"])
    addon_id = parameters["AddonId"]
    production = {"base_url": outputs["ManifestBaseUrl"], "sso_url": outputs["ManifestSsoUrl"]}
    if "EdgeUrl" in outputs:
        edge = outputs["EdgeUrl"]
        production = {"base_url": f"{edge}/clevercloud/resources", "sso_url": f"{edge}/clevercloud/sso/login"}
    return {
        "id": addon_id,
        "name": addon_id,
        "api": {
            "config_vars": [v.strip() for v in parameters["AddonConfigVars"].split(",") if v.strip()],
            "regions": ["eu"],
            "password": values["ADDON_PASSWORD"],
            "sso_salt": values["ADDON_SSO_SALT"],
            "production": production,
            "test": production,
        },
    }


def retained(name: str, delete: bool) -> int:
    """What `sam delete` keeps: the table (DeletionPolicy Retain, deletion protection) and the secret (made by
    `make secrets`, outside the stack). With --delete, removes both: the table for good, the secret after
    Secrets Manager's 7-day recovery window."""
    deployed = stack(name)
    table, arn = deployed["outputs"]["TableName"], deployed["outputs"]["StackSecretsArn"]
    print(json.dumps({"retained": {"table": table, "secret": arn}}))
    if delete:
        dynamodb = boto3.client("dynamodb")
        dynamodb.update_table(TableName=table, DeletionProtectionEnabled=False)
        dynamodb.delete_table(TableName=table)
        boto3.client("secretsmanager").delete_secret(SecretId=arn, RecoveryWindowInDays=7)
        print(json.dumps({"deleted": {"table": table, "secret_scheduled": arn}}))
    return 0


def main(argv: list) -> int:
    if len(argv) >= 2 and argv[0] == "manifest":
        print(json.dumps(manifest(argv[1]), indent=2))
        return 0
    if len(argv) >= 2 and argv[0] == "retained":
        return retained(argv[1], "--delete" in argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
