//! Reads the table's stream from DynamoDB Local with the Streams API, which
//! returns records in exactly the shape Lambda hands a stream function.

use crate::{stack_var, table_name};
use serde_json::{json, Value};

async fn call(target: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(stack_var("AWS_ENDPOINT_URL_DYNAMODB"))
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", format!("DynamoDBStreams_20120810.{target}"))
        // DynamoDB Local reads the credential scope but checks no signature.
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=00",
        )
        .header("x-amz-date", "20260101T000000Z")
        .body(body.to_string())
        .send()
        .await
        .expect("DynamoDB Local streams API");
    let status = response.status();
    let body: Value = response.json().await.expect("JSON from the streams API");
    assert!(status.is_success(), "{target}: {status} {body}");
    body
}

/// Every stream record so far whose partition key is `pk`, oldest first.
pub async fn records_for(pk: &str) -> Vec<Value> {
    records_in(&table_name(), pk).await
}

/// [`records_for`] in another table of DynamoDB Local (one with a stream).
pub async fn records_in(table: &str, pk: &str) -> Vec<Value> {
    let table = crate::dynamo_client()
        .await
        .describe_table()
        .table_name(table)
        .send()
        .await
        .expect("describe table");
    let arn = table
        .table
        .and_then(|t| t.latest_stream_arn)
        .expect("the table has a stream");
    let mut records = Vec::new();
    let description = call("DescribeStream", json!({ "StreamArn": arn })).await;
    for shard in description["StreamDescription"]["Shards"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let mut iterator = call(
            "GetShardIterator",
            json!({"StreamArn": arn, "ShardId": shard["ShardId"], "ShardIteratorType": "TRIM_HORIZON"}),
        )
        .await["ShardIterator"]
            .clone();
        while iterator.is_string() {
            let page = call("GetRecords", json!({ "ShardIterator": iterator })).await;
            let batch = page["Records"].as_array().cloned().unwrap_or_default();
            if batch.is_empty() {
                break;
            }
            records.extend(
                batch
                    .into_iter()
                    .filter(|record| record["dynamodb"]["Keys"]["pk"]["S"] == pk),
            );
            iterator = page["NextShardIterator"].clone();
        }
    }
    records
}

/// A Lambda DynamoDB stream event carrying `records`.
pub fn event(records: &[Value]) -> aws_lambda_events::event::dynamodb::Event {
    serde_json::from_value(json!({ "Records": records })).expect("records in Lambda's shape")
}
