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
//!
//! With `FLOOR_MODE=authorize` it is the floor of an OpenID Connect
//! authorize (a session's read and a code's conditional write), and with
//! `FLOOR_MODE=token` of a token request (a code's conditional delete, the
//! access token's write, and the one RS256 signature of the ID token that
//! the contract requires, with the same crate and a key of the same size).

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

/// What the floor stands for.
enum Mode {
    Provision,
    Authorize,
    Token(Box<shared::oidc::SigningKey>),
}

fn put_new(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    pk: String,
) -> aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder {
    client
        .put_item()
        .table_name(table)
        .item("pk", AttributeValue::S(pk))
        .item("sk", AttributeValue::S("FLOOR".into()))
        .item(
            "expires_at",
            AttributeValue::N((chrono::Utc::now().timestamp() + 60).to_string()),
        )
        .condition_expression("attribute_not_exists(pk)")
}

/// The OpenID Connect floors' round trips (and the token's signature).
async fn oidc(mode: &Mode, client: &aws_sdk_dynamodb::Client, table: &str) -> Result<Response<Body>, Error> {
    let id = shared::secret::random_hex(32);
    match mode {
        Mode::Authorize => {
            client
                .get_item()
                .table_name(table)
                .key("pk", AttributeValue::S(format!("FLOOR_SESSION#{id}")))
                .key("sk", AttributeValue::S("FLOOR".into()))
                .consistent_read(true)
                .send()
                .await?;
            put_new(client, table, format!("FLOOR_CODE#{id}")).send().await?;
            Ok(Response::builder()
                .status(302)
                .header("location", format!("https://app.example/cb?code={id}"))
                .body(Body::Empty)?)
        }
        Mode::Token(key) => {
            client
                .delete_item()
                .table_name(table)
                .key("pk", AttributeValue::S(format!("FLOOR_CODE#{id}")))
                .key("sk", AttributeValue::S("FLOOR".into()))
                .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
                .send()
                .await?;
            put_new(client, table, format!("FLOOR_TOKEN#{id}")).send().await?;
            let id_token = key.sign(&serde_json::json!({"sub": id, "aud": "app"}))?;
            Ok(Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(Body::from(format!(
                    r#"{{"access_token":"{id}","id_token":"{id_token}"}}"#
                )))?)
        }
        Mode::Provision => Err("not an OpenID Connect floor".into()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mode = match std::env::var("FLOOR_MODE").as_deref() {
        Ok("authorize") => Mode::Authorize,
        Ok("token") => {
            let pem = std::env::var("OIDC_SIGNING_KEY").map_err(|_| "OIDC_SIGNING_KEY is not set")?;
            Mode::Token(Box::new(shared::oidc::SigningKey::from_pem(
                "OIDC_SIGNING_KEY",
                &pem,
            )?))
        }
        _ => Mode::Provision,
    };
    let table = std::env::var("TABLE_NAME").map_err(|_| "TABLE_NAME is not set")?;
    let vendor = Vendor::from_env()?;
    let aws = shared::config::aws_sdk_config("perf_floor").await;
    let client = if std::env::var_os("FLOOR_WARM_UP").is_some() {
        DynamoStore::ready(&aws, table.clone()).await.client().clone()
    } else {
        aws_sdk_dynamodb::Client::new(&aws)
    };
    run(service_fn(|_request: Request| {
        let (client, table, vendor, mode) = (&client, &table, &vendor, &mode);
        async move {
            if !matches!(mode, Mode::Provision) {
                return oidc(mode, client, table).await;
            }
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
