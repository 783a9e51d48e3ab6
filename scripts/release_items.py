"""A release's table, as its stack wrote it (infra/releases/<version>-items.json), for the upgrade test:
`record` keeps every item of a stack's table after a few provisions; `load` puts them into another
stack's table, which then serves them (tests/tests/upgrade.rs).

Usage: python release_items.py record OUT   (inside scripts/stack.sh test, after the provisions)
       python release_items.py load FILE    (TABLE_NAME, AWS_ENDPOINT_URL_DYNAMODB)
"""

import json
import os
import sys

import boto3


def table():
    client = boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB"])
    return client, os.environ["TABLE_NAME"]


def record(out: str) -> int:
    client, name = table()
    items = []
    for page in client.get_paginator("scan").paginate(TableName=name):
        items.extend(page["Items"])
    items.sort(key=lambda item: (item["pk"]["S"], item["sk"]["S"]))
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(items, handle, indent=1, sort_keys=True)
        handle.write("\n")
    print(f"release_items: {len(items)} items recorded in {out}", file=sys.stderr)
    return 0


def load(path: str) -> int:
    client, name = table()
    with open(path, encoding="utf-8") as handle:
        items = json.load(handle)
    for item in items:
        client.put_item(TableName=name, Item=item)
    print(f"release_items: {len(items)} items loaded into {name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] in ("record", "load"):
        sys.exit({"record": record, "load": load}[sys.argv[1]](sys.argv[2]))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
