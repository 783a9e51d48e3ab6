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
//! With `FLOOR_MODE=change` it is the floor of a change to an existing
//! resource (a plan change, a suspend or resume, a deprovision with the
//! vendor's service): a consistent read of the item, the vendor's round
//! trip carrying the resource's details (when `PROVISIONER_URL` is set),
//! then one `TransactWriteItems` of the version-conditional put of the item
//! and its audit event.
//!
//! With `FLOOR_MODE=authorize` it is the floor of an OpenID Connect
//! authorize (the session's read, its add-on's read, since a sign-in lasts
//! only while the add-on is active, then a code's conditional write
//! carrying the session's claims and what the code is bound to), and with
//! `FLOOR_MODE=token` of a token request (that code's conditional update,
//! spending it and naming the token it buys,
//! the access token's write, and the one RS256 signature of the ID token
//! that the contract requires, with the same crate and a key of the same
//! size). They are handed the same events as the `oidc` function, the token
//! floor redeeming the codes the authorize floor issued.
//!
//! With `FLOOR_MODE=register` it is the floor of AWS Marketplace's
//! registration of a new purchase (docs/aws-marketplace.md): a read for an
//! earlier post of the token, `ResolveCustomer` at the stand-in AWS
//! Marketplace (the same SDK), one batch read of what events said of the
//! license and of its resource, the vendor's round trip (when
//! `PROVISIONER_URL` is set), and one transaction creating the claim, the
//! item and its audit event, keeping the token's resolution, spending it
//! and opening the session, and checking the license's state.
//!
//! With `FLOOR_MODE=event` it is the floor of AWS Marketplace's `License
//! Updated` for a registered purchase whose plan it changes: one batch read
//! of the event's mark, its agreement's and license's states and the
//! resource, `GetEntitlements` at the stand-in AWS Marketplace (the same
//! SDK), the vendor's round trip carrying the resource's details, and one
//! transaction of the resource's version-conditional put, its audit event,
//! the license's new state and the event's mark.
//!
//! With `FLOOR_MODE=usage` it is the floor of a vendor's usage report
//! (docs/metering.md): the signature over the method, path and body
//! checked, the body read, and one transaction of the record's key claim
//! and the counter's `ADD`. `FLOOR_MODE=usage-check` adds to that
//! transaction what the contract also needs: the check that the resource
//! still takes usage (a condition on its item, which is read back only
//! when the check fails).

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use base64::Engine as _;
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

    /// One signed request (a provision, or with `config` a change carrying
    /// the resource's details); its answer read to the end.
    async fn ask(&self, id: &str, config: Option<&str>) -> Result<(), Error> {
        // 64 hex digits, as the schema wants an idempotency key.
        let key = format!("{id}{id}");
        let body = match config {
            None => format!(
                r#"{{"action":"provision","idempotency_key":"{key}","resource_id":"res_{id}","marketplace":"clevercloud","marketplace_ids":{{"addon_id":"{id}"}},"plan":"basic","options":{{}}}}"#
            ),
            Some(config) => format!(
                r#"{{"action":"change_plan","idempotency_key":"{key}","resource_id":"res_{id}","marketplace":"clevercloud","marketplace_ids":{{"addon_id":"{id}"}},"plan":"premium","previous_plan":"basic","options":{{}},"config":{config}}}"#
            ),
        };
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
    Change,
    Authorize,
    Token(Box<shared::oidc::SigningKey>),
    Register(aws_sdk_marketplacemetering::Client),
    Event(aws_sdk_marketplaceentitlement::Client),
    /// With the resource's check, or without.
    Usage(Secret, bool),
}

/// `FLOOR_MODE=usage`: one usage report of one record.
async fn usage(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    (secret, resource): (&Secret, Option<&str>),
    request: Request,
) -> Result<Response<Body>, Error> {
    let header = request
        .headers()
        .get(signature::HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let signed = signature::Signed::Call {
        method: request.method().as_str(),
        path: request.uri().path(),
        body: request.body().as_ref(),
    };
    signature::verify_signed(secret, header, signed, chrono::Utc::now().timestamp(), 300)
        .map_err(|err| err.to_string())?;
    let report: serde_json::Value = serde_json::from_slice(request.body().as_ref())?;
    let record = &report["records"][0];
    let text = |name: &str| record[name].as_str().unwrap_or_default().to_string();
    let (key, hour, dimension) = (text("key"), text("hour"), text("dimension"));
    let quantity = record["quantity"].as_u64().unwrap_or_default();
    let claim = put(table, format!("FLOOR_USAGE_KEY#{key}"))?;
    let add = aws_sdk_dynamodb::types::Update::builder()
        .table_name(table)
        .key("pk", AttributeValue::S("FLOOR_USAGE#perf".into()))
        .key("sk", AttributeValue::S(format!("{hour}#{dimension}")))
        .update_expression("ADD quantity :quantity")
        .condition_expression("attribute_not_exists(sealed_at)")
        .expression_attribute_values(":quantity", AttributeValue::N(quantity.to_string()))
        .build()?;
    let mut transaction = client
        .transact_write_items()
        .transact_items(claim)
        .transact_items(TransactWriteItem::builder().update(add).build());
    if let Some(resource) = resource {
        let check = aws_sdk_dynamodb::types::ConditionCheck::builder()
            .table_name(table)
            .set_key(Some(floor_key(resource.to_string())))
            .condition_expression("attribute_exists(pk) AND #version >= :zero")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .build()?;
        transaction = transaction.transact_items(TransactWriteItem::builder().condition_check(check).build());
    }
    transaction.send().await?;
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from(format!(r#"{{"counted":[{{"key":"{key}"}}]}}"#)))
        .map_err(Error::from)
}

/// `FLOOR_MODE=event`: one `License Updated` that changes the plan of the
/// floor's resource (`resource`, changed in place).
async fn event(
    client: &aws_sdk_dynamodb::Client,
    entitlements: &aws_sdk_marketplaceentitlement::Client,
    table: &str,
    vendor: Option<&Vendor>,
    (resource, config): (&str, &str),
    event: serde_json::Value,
) -> Result<serde_json::Value, Error> {
    let id = event["id"].as_str().ok_or("no event id")?.to_string();
    let arn = event["detail"]["license"]["arn"].as_str().ok_or("no license")?;
    let arn = format!("arn:{}", arn.trim_start_matches("arn:"));
    let agreement = event["detail"]["agreement"]["id"].as_str().unwrap_or_default();
    let keys = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
        .keys(floor_key(format!("FLOOR_EVENT#{id}")))
        .keys(floor_key(format!("FLOOR_AGREEMENT#{agreement}")))
        .keys(floor_key(format!("FLOOR_LICENSE#{arn}")))
        .keys(floor_key(resource.to_string()))
        .consistent_read(true)
        .build()?;
    let read = client.batch_get_item().request_items(table, keys).send().await?;
    let version = read
        .responses
        .unwrap_or_default()
        .remove(table)
        .unwrap_or_default()
        .into_iter()
        .find(|item| item.get("pk") == Some(&AttributeValue::S(resource.to_string())))
        .and_then(|item| match item.get("version") {
            Some(AttributeValue::N(version)) => version.parse::<u64>().ok(),
            _ => None,
        })
        .ok_or("no floor resource")?;
    let page = entitlements
        .get_entitlements()
        .product_code(std::env::var("AWS_MARKETPLACE_PRODUCT_CODE").unwrap_or_default())
        .filter(
            aws_sdk_marketplaceentitlement::types::GetEntitlementFilterName::LicenseArn,
            vec![arn.clone()],
        )
        .send()
        .await?;
    let dimensions: Vec<String> = page
        .entitlements()
        .iter()
        .filter_map(|entitlement| entitlement.dimension().map(str::to_string))
        .collect();
    if let Some(vendor) = vendor {
        vendor.ask(&shared::secret::random_hex(16), Some(config)).await?;
    }
    let mut item = floor_key(resource.to_string());
    item.insert("version".into(), AttributeValue::N((version + 1).to_string()));
    item.insert("config".into(), AttributeValue::S(config.to_string()));
    item.insert("plan".into(), AttributeValue::S(dimensions.join(",")));
    item.insert("details".into(), AttributeValue::S("x".repeat(600)));
    let versioned = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("#version = :expected")
        .expression_attribute_names("#version", "version")
        .expression_attribute_values(":expected", AttributeValue::N(version.to_string()))
        .build()?;
    let mut license = floor_key(format!("FLOOR_LICENSE#{arn}"));
    license.insert("entitled".into(), AttributeValue::S(dimensions.join(",")));
    client
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().put(versioned).build())
        .transact_items(put(
            table,
            format!("FLOOR_AUDIT#{}", shared::secret::random_hex(16)),
        )?)
        .transact_items(
            TransactWriteItem::builder()
                .put(Put::builder().table_name(table).set_item(Some(license)).build()?)
                .build(),
        )
        .transact_items(put(table, format!("FLOOR_EVENT#{id}"))?)
        .send()
        .await?;
    Ok(serde_json::json!({"id": id, "handled": "entitlements applied"}))
}

/// `FLOOR_MODE=register`: one registration of a new purchase.
async fn register(
    client: &aws_sdk_dynamodb::Client,
    metering: &aws_sdk_marketplacemetering::Client,
    table: &str,
    vendor: Option<&Vendor>,
    request: Request,
) -> Result<Response<Body>, Error> {
    let token = form_urlencoded::parse(request.body().as_ref())
        .find(|(name, _)| name == "x-amzn-marketplace-token")
        .map(|(_, value)| value.into_owned())
        .ok_or("no token")?;
    let digest = shared::signin::fingerprint(&token);
    let earlier = client
        .get_item()
        .table_name(table)
        .set_key(Some(floor_key(format!("FLOOR_TOKEN#{digest}"))))
        .consistent_read(true)
        .send()
        .await?;
    if earlier.item.is_some() {
        return Err("a new purchase's token was posted before".into());
    }
    let customer = metering
        .resolve_customer()
        .registration_token(&token)
        .send()
        .await?;
    let license = customer.license_arn().unwrap_or_default().to_string();
    let id = shared::secret::random_hex(16);
    let keys = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
        .keys(floor_key(format!("FLOOR_LICENSE#{license}")))
        .keys(floor_key(format!("FLOOR#{id}")))
        .consistent_read(true)
        .build()?;
    client.batch_get_item().request_items(table, keys).send().await?;
    if let Some(vendor) = vendor {
        vendor.ask(&id, None).await?;
    }
    let session = shared::secret::random_hex(32);
    let check = aws_sdk_dynamodb::types::ConditionCheck::builder()
        .table_name(table)
        .set_key(Some(floor_key(format!("FLOOR_LICENSE#{license}"))))
        .condition_expression("attribute_not_exists(pk)")
        .build()?;
    let mut token_item = floor_key(format!("FLOOR_TOKEN#{digest}"));
    token_item.insert("license_arn".into(), AttributeValue::S(license));
    token_item.insert(
        "aws_account_id".into(),
        AttributeValue::S(customer.customer_aws_account_id().unwrap_or_default().to_string()),
    );
    client
        .transact_write_items()
        .transact_items(put(table, format!("FLOOR_CLAIM#{id}"))?)
        .transact_items(put(table, format!("FLOOR#{id}"))?)
        .transact_items(put(table, format!("FLOOR_AUDIT#{id}"))?)
        .transact_items(
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(table)
                        .set_item(Some(token_item))
                        .build()?,
                )
                .build(),
        )
        .transact_items(put(table, format!("FLOOR_SPENT#{digest}"))?)
        .transact_items(put(
            table,
            format!("FLOOR_SESSION#{}", shared::signin::fingerprint(&session)),
        )?)
        .transact_items(TransactWriteItem::builder().condition_check(check).build())
        .send()
        .await?;
    Response::builder()
        .status(303)
        .header("location", "/dashboard")
        .header(
            "set-cookie",
            format!("__Host-addon_session={session}; Max-Age=3600; Path=/; HttpOnly; Secure; SameSite=Lax"),
        )
        .body(Body::Empty)
        .map_err(Error::from)
}

fn floor_key(pk: String) -> std::collections::HashMap<String, AttributeValue> {
    std::collections::HashMap::from([
        ("pk".to_string(), AttributeValue::S(pk)),
        ("sk".to_string(), AttributeValue::S("FLOOR".into())),
    ])
}

/// Writes `item`, which must be new (a fresh code or token), as the function does.
async fn put_new(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    item: std::collections::HashMap<String, AttributeValue>,
) -> Result<(), Error> {
    client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await?;
    Ok(())
}

/// The OpenID Connect floors: what an authorize and a token request cannot
/// avoid, on the same items as the function's (the session it reads, a code
/// and a token carrying the session's claims).
async fn oidc(
    mode: &Mode,
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    request: Request,
) -> Result<Response<Body>, Error> {
    let now = chrono::Utc::now().timestamp();
    match mode {
        Mode::Authorize => {
            // The session the cookie names, as the function reads it.
            let session_id = request
                .headers()
                .get("cookie")
                .and_then(|value| value.to_str().ok())
                .and_then(|cookie| cookie.split_once('='))
                .map(|(_, id)| id.to_string())
                .ok_or("no session cookie")?;
            let session = client
                .get_item()
                .table_name(table)
                .key(
                    "pk",
                    AttributeValue::S(format!("SESSION#{}", shared::signin::fingerprint(&session_id))),
                )
                .key("sk", AttributeValue::S("SESSION".into()))
                .consistent_read(true)
                .send()
                .await?
                .item
                .ok_or("no session")?;
            // The add-on the sign-in was for, which must still be active.
            let resource_id = match session.get("subject_id") {
                Some(AttributeValue::S(id)) => id.clone(),
                _ => return Err("no subject_id".into()),
            };
            client
                .get_item()
                .table_name(table)
                .key("pk", AttributeValue::S(format!("RESOURCE#{resource_id}")))
                .key("sk", AttributeValue::S("RESOURCE".into()))
                .consistent_read(true)
                .send()
                .await?
                .item
                .filter(|item| matches!(item.get("status"), Some(AttributeValue::S(status)) if status == "active"))
                .ok_or("no active add-on")?;
            let query: std::collections::HashMap<String, String> =
                form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
                    .into_owned()
                    .collect();
            let code = shared::secret::random_hex(32);
            let mut item = session;
            item.extend(floor_key(format!(
                "FLOOR_CODE#{}",
                shared::signin::fingerprint(&code)
            )));
            for name in ["client_id", "redirect_uri", "code_challenge"] {
                item.insert(
                    name.into(),
                    AttributeValue::S(query.get(name).cloned().unwrap_or_default()),
                );
            }
            item.insert("expires_at".into(), AttributeValue::N((now + 60).to_string()));
            put_new(client, table, item).await?;
            let redirect = query.get("redirect_uri").cloned().unwrap_or_default();
            Ok(Response::builder()
                .status(302)
                .header("location", format!("{redirect}?code={code}&state=perf"))
                .body(Body::Empty)?)
        }
        Mode::Token(key) => {
            let form: std::collections::HashMap<String, String> =
                form_urlencoded::parse(request.body().as_ref())
                    .into_owned()
                    .collect();
            let field = |name: &str| AttributeValue::S(form.get(name).cloned().unwrap_or_default());
            let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
                <sha2::Sha256 as sha2::Digest>::digest(
                    form.get("code_verifier").cloned().unwrap_or_default(),
                ),
            );
            let code = form.get("code").cloned().unwrap_or_default();
            let access_token = shared::secret::random_hex(32);
            let mut item = client
                .update_item()
                .table_name(table)
                .set_key(Some(floor_key(format!(
                    "FLOOR_CODE#{}",
                    shared::signin::fingerprint(&code)
                ))))
                .condition_expression(
                    "attribute_exists(pk) AND attribute_not_exists(spent_for) AND expires_at > :now \
                     AND client_id = :client AND redirect_uri = :redirect AND code_challenge = :challenge",
                )
                .update_expression("SET spent_for = :token, expires_at = :until")
                .expression_attribute_values(
                    ":token",
                    AttributeValue::S(shared::signin::fingerprint(&access_token)),
                )
                .expression_attribute_values(":until", AttributeValue::N((now + 600).to_string()))
                .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
                .expression_attribute_values(":client", field("client_id"))
                .expression_attribute_values(":redirect", field("redirect_uri"))
                .expression_attribute_values(":challenge", AttributeValue::S(challenge))
                .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
                .send()
                .await?
                .attributes
                .ok_or("no code")?;
            item.extend(floor_key(format!(
                "FLOOR_TOKEN#{}",
                shared::signin::fingerprint(&access_token)
            )));
            item.insert("expires_at".into(), AttributeValue::N((now + 600).to_string()));
            put_new(client, table, item).await?;
            let id_token = key.sign(&serde_json::json!({"sub": code, "aud": "app", "iat": now}))?;
            Ok(Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(Body::from(format!(
                    r#"{{"access_token":"{access_token}","token_type":"Bearer","expires_in":600,"id_token":"{id_token}"}}"#
                )))?)
        }
        Mode::Provision | Mode::Change | Mode::Register(_) | Mode::Event(_) | Mode::Usage(..) => {
            Err("not an OpenID Connect floor".into())
        }
    }
}

/// The change floor: read the resource, ask the vendor, then write the
/// next version and its audit event in one transaction.
async fn change(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    vendor: Option<&Vendor>,
    resource: &str,
    config: &str,
) -> Result<Response<Body>, Error> {
    let mut item = client
        .get_item()
        .table_name(table)
        .set_key(Some(floor_key(resource.to_string())))
        .consistent_read(true)
        .send()
        .await?
        .item
        .ok_or("no floor resource")?;
    let version: u64 = match item.get("version") {
        Some(AttributeValue::N(version)) => version.parse()?,
        _ => return Err("no version".into()),
    };
    let id = shared::secret::random_hex(16);
    if let Some(vendor) = vendor {
        vendor.ask(&id, Some(config)).await?;
    }
    item.insert("version".into(), AttributeValue::N((version + 1).to_string()));
    let update = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("version = :read")
        .expression_attribute_values(":read", AttributeValue::N(version.to_string()))
        .build()?;
    client
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().put(update).build())
        .transact_items(put(table, format!("FLOOR_AUDIT#{id}"))?)
        .send()
        .await?;
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from(format!(r#"{{"config":{config}}}"#)))
        .map_err(Error::from)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mode = match std::env::var("FLOOR_MODE").as_deref() {
        Ok("authorize") => Mode::Authorize,
        Ok("change") => Mode::Change,
        Ok("token") => {
            let pem = std::env::var("OIDC_SIGNING_KEY").map_err(|_| "OIDC_SIGNING_KEY is not set")?;
            Mode::Token(Box::new(shared::oidc::SigningKey::from_pem(
                "OIDC_SIGNING_KEY",
                &pem,
            )?))
        }
        Ok("register") => Mode::Register(aws_sdk_marketplacemetering::Client::new(
            &shared::config::aws_sdk_config("perf_floor").await,
        )),
        Ok("event") => Mode::Event(aws_sdk_marketplaceentitlement::Client::from_conf(
            aws_sdk_marketplaceentitlement::config::Builder::from(
                &shared::config::aws_sdk_config("perf_floor").await,
            )
            .region(aws_sdk_marketplaceentitlement::config::Region::new("us-east-1"))
            .build(),
        )),
        Ok(mode @ ("usage" | "usage-check")) => Mode::Usage(
            Secret::new(
                std::env::var("PROVISIONER_SIGNING_SECRET")
                    .map_err(|_| "PROVISIONER_SIGNING_SECRET is not set")?,
            ),
            mode == "usage-check",
        ),
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
    // The change floor's resource: an item the size of a resource's, with
    // its config, changed in place by every request.
    let resource = format!("FLOOR_RESOURCE#{}", shared::secret::random_hex(16));
    let config = format!(
        r#"{{"ADDON_NAME_URL":"https://resources.example/res_{}","ADDON_NAME_TOKEN":"{}"}}"#,
        shared::secret::random_hex(16),
        shared::secret::random_hex(32)
    );
    if matches!(mode, Mode::Change | Mode::Event(_) | Mode::Usage(_, true)) {
        let mut item = floor_key(resource.clone());
        item.insert("version".into(), AttributeValue::N("0".into()));
        item.insert("config".into(), AttributeValue::S(config.clone()));
        item.insert("details".into(), AttributeValue::S("x".repeat(600)));
        put_new(&client, &table, item).await?;
    }
    if let Mode::Event(entitlements) = &mode {
        // EventBridge's invocations are JSON events, not HTTP requests.
        return lambda_runtime::run(lambda_runtime::service_fn(
            |invocation: lambda_runtime::LambdaEvent<serde_json::Value>| {
                let (client, table, vendor) = (&client, &table, &vendor);
                let (resource, config) = (&resource, &config);
                async move {
                    event(
                        client,
                        entitlements,
                        table,
                        vendor.as_ref(),
                        (resource, config),
                        invocation.payload,
                    )
                    .await
                }
            },
        ))
        .await;
    }
    run(service_fn(|request: Request| {
        let (client, table, vendor, mode) = (&client, &table, &vendor, &mode);
        let (resource, config) = (&resource, &config);
        async move {
            if matches!(mode, Mode::Change) {
                return change(client, table, vendor.as_ref(), resource, config).await;
            }
            if let Mode::Usage(secret, checked) = mode {
                let resource = checked.then_some(resource.as_str());
                return usage(client, table, (secret, resource), request).await;
            }
            if let Mode::Register(metering) = mode {
                return register(client, metering, table, vendor.as_ref(), request).await;
            }
            if !matches!(mode, Mode::Provision) {
                return oidc(mode, client, table, request).await;
            }
            let id = shared::secret::random_hex(16);
            if let Some(vendor) = vendor {
                vendor.ask(&id, None).await?;
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
