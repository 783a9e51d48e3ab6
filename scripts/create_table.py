"""Creates the add-on table in DynamoDB Local from infra/template.yaml.

The template is the one definition of the table: this reads its `Table`
resource and passes the key schema, attribute definitions, billing mode,
indexes, stream and TTL settings to DynamoDB Local, so the local table cannot
drift from the deployed one. Settings DynamoDB Local does not model (point-in-
time recovery, deletion protection) are left out.

Usage: python create_table.py TEMPLATE TABLE_NAME   (endpoint from AWS_ENDPOINT_URL_DYNAMODB)
"""

import os
import sys

import boto3

import cfn_template

CREATE_TABLE_KEYS = (
    "AttributeDefinitions",
    "KeySchema",
    "BillingMode",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "StreamSpecification",
)


def main(template_path: str, table_name: str) -> None:
    template = cfn_template.load(template_path)
    properties = template["Resources"]["Table"]["Properties"]
    request = {key: properties[key] for key in CREATE_TABLE_KEYS if key in properties}
    if "StreamSpecification" in request:
        request["StreamSpecification"] = {"StreamEnabled": True, **request["StreamSpecification"]}

    client = boto3.client(
        "dynamodb",
        endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB"],
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
    )
    if table_name in client.list_tables()["TableNames"]:
        print(f"create_table: {table_name} already exists", file=sys.stderr)
        return
    client.create_table(TableName=table_name, **request)
    client.get_waiter("table_exists").wait(TableName=table_name)
    ttl = properties.get("TimeToLiveSpecification")
    if ttl:
        client.update_time_to_live(TableName=table_name, TimeToLiveSpecification=ttl)
    print(f"create_table: created {table_name}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
