//! `make perf`'s floor: what a new provision cannot avoid — lambda_http and
//! one `TransactWriteItems` of three conditional puts (a claim, the item,
//! its audit event), the client built once in `main` with the same
//! configuration as the functions'. The functions are measured against it.
//!
//! With `PROVISIONER_URL` set it is the floor of a provision that asks the
//! vendor's service first: one signed POST there (its answer read whole)
//! before the transaction. `make perf` runs it both ways, so the vendor's
//! own round trip can be told apart from the functions' work.
//!
//! With `FLOOR_WARM_UP` set it also makes, at init, the warm-up read every
//! function makes there ([`DynamoStore::ready`]), so its share of a cold
//! start shows on its own row.

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use lambda_http::{run, service_fn, Body, Error, Request, Response};
use shared::provisioner::signature;
use shared::secret::Secret;
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

/// The vendor's endpoint, when there is one to call.
struct Vendor {
    client: reqwest::Client,
    url: String,
    secret: Secret,
}

impl Vendor {
    fn from_env() -> Result<Option<Self>, Error> {
        let Ok(url) = std::env::var("PROVISIONER_URL") else {
            return Ok(None);
        };
        let secret = std::env::var("PROVISIONER_SIGNING_SECRET")
            .map_err(|_| "PROVISIONER_SIGNING_SECRET is not set")?;
        Ok(Some(Self {
            client: shared::outbound::client_builder().build()?,
            url,
            secret: Secret::new(secret),
        }))
    }

    /// One signed provision request; its answer read to the end.
    async fn ask(&self, id: &str) -> Result<(), Error> {
        // 64 hex digits, as the schema wants an idempotency key.
        let key = format!("{id}{id}");
        let body = format!(
            r#"{{"action":"provision","idempotency_key":"{key}","resource_id":"res_{id}","marketplace":"clevercloud","marketplace_ids":{{"addon_id":"{id}"}},"plan":"basic","options":{{}}}}"#
        );
        let signed = signature::sign(&self.secret, chrono::Utc::now().timestamp(), body.as_bytes());
        let answer = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(signature::HEADER, signed)
            .header("Idempotency-Key", key)
            .body(body)
            .send()
            .await?
            .error_for_status()?;
        answer.bytes().await?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let table = std::env::var("TABLE_NAME").map_err(|_| "TABLE_NAME is not set")?;
    let vendor = Vendor::from_env()?;
    let aws = shared::config::aws_sdk_config("perf_floor").await;
    let client = if std::env::var_os("FLOOR_WARM_UP").is_some() {
        DynamoStore::ready(&aws, table.clone()).await.client().clone()
    } else {
        aws_sdk_dynamodb::Client::new(&aws)
    };
    run(service_fn(|_request: Request| {
        let (client, table, vendor) = (&client, &table, &vendor);
        async move {
            let id = shared::secret::random_hex(16);
            if let Some(vendor) = vendor {
                vendor.ask(&id).await?;
            }
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
