"""Prints every key of a DynamoDB table, sorted, one `pk sk` per line: scripts/e2e.sh compares the table
before and after `provider check` to prove the check leaves it as it found it.

Usage: python table_keys.py TABLE   (AWS_ENDPOINT_URL_DYNAMODB and the region from the environment)
"""

import os
import sys

import boto3


def keys(table: str) -> list:
    client = boto3.client("dynamodb", region_name=os.environ.get("AWS_REGION", "us-east-1"))
    found, start = [], None
    while True:
        page = client.scan(
            TableName=table,
            ProjectionExpression="pk, sk",
            ConsistentRead=True,
            **({"ExclusiveStartKey": start} if start else {}),
        )
        found += [f'{item["pk"]["S"]} {item["sk"]["S"]}' for item in page["Items"]]
        start = page.get("LastEvaluatedKey")
        if not start:
            return sorted(found)


if __name__ == "__main__":
    print("\n".join(keys(sys.argv[1])))
