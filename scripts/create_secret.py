"""Creates the deployment's secret in the local Secrets Manager (moto) from the named variables in
the environment, as the template's AddonSecrets does in AWS, and prints its ARN.

Usage: python create_secret.py NAME VAR...   (AWS_ENDPOINT_URL_SECRETS_MANAGER set)
"""

import json
import os
import sys

import boto3

def main(name: str, secret_vars: list) -> int:
    client = boto3.client(
        "secretsmanager",
        endpoint_url=os.environ["AWS_ENDPOINT_URL_SECRETS_MANAGER"],
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
    )
    values = {var: os.environ[var] for var in secret_vars if os.environ.get(var)}
    print(client.create_secret(Name=name, SecretString=json.dumps(values))["ARN"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
