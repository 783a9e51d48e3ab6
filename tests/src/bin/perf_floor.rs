//! `make perf`'s floor: what a new provision cannot avoid — lambda_http and
//! one `TransactWriteItems` of three conditional puts (a claim, the item,
//! its audit event), the client built once in `main` with the same
//! configuration as the functions'. The functions are measured against it.

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use lambda_http::{run, service_fn, Body, Error, Request, Response};
use shared::store::DynamoStore;

fn put(table: &str, pk: String) -> Result<TransactWriteItem, Error> {
    let put = Put::builder()
        .table_name(table)
        .item("pk", AttributeValue::S(pk))
        .item("sk", AttributeValue::S("FLOOR".into()))
        .condition_expression("attribute_not_exists(pk)")
        .build()?;
    Ok(TransactWriteItem::builder().put(put).build())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let table = std::env::var("TABLE_NAME").map_err(|_| "TABLE_NAME is not set")?;
    let client = DynamoStore::client_from_env().await;
    run(service_fn(|_request: Request| {
        let (client, table) = (&client, &table);
        async move {
            let id = shared::secret::random_hex(16);
            client
                .transact_write_items()
                .transact_items(put(table, format!("FLOOR_CLAIM#{id}"))?)
                .transact_items(put(table, format!("FLOOR#{id}"))?)
                .transact_items(put(table, format!("FLOOR_AUDIT#{id}"))?)
                .send()
                .await?;
            Response::builder()
                .status(201)
                .header("content-type", "application/json")
                .body(Body::from(format!(r#"{{"id":"{id}"}}"#)))
                .map_err(Error::from)
        }
    }))
    .await
}
