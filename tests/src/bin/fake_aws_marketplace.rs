//! A stand-in for AWS Marketplace's two seller APIs (docs/aws-marketplace.md),
//! reached by the real AWS SDK through
//! `AWS_ENDPOINT_URL_MARKETPLACE_METERING` and
//! `AWS_ENDPOINT_URL_MARKETPLACE_ENTITLEMENT_SERVICE`. It speaks the
//! protocols the SDK sends:
//! - the metering service, awsJson1_1: `POST /` with `X-Amz-Target`;
//! - the entitlement service, Smithy RPC v2 CBOR: `POST
//!   /service/AWSMPEntitlementService/operation/GetEntitlements` with CBOR
//!   bodies (the SDK's default; awsJson1_1 at `POST /` is taken too).
//!
//! Errors are `{"__type": …, "message": …}` in the request's encoding, with
//! status 400 (500 for `InternalServiceErrorException`). Signatures are not
//! checked (as moto).
//!
//! - `AWSMPMeteringService.ResolveCustomer` `{"RegistrationToken"}`: a token
//!   minted here resolves once, to its buyer's `CustomerAWSAccountId`,
//!   `LicenseArn`, `ProductCode` and `CustomerIdentifier` (empty unless
//!   minted `legacy`). A second resolution, or one past its expiry, is
//!   `ExpiredTokenException`, as AWS answers a resubmitted or stale token; an
//!   unknown token `InvalidTokenException`.
//! - `AWSMPEntitlementService.GetEntitlements` `{"ProductCode", "Filter":
//!   {"LICENSE_ARN": […]}, "NextToken", "MaxResults"}`: the license's
//!   entitlements, by pages of `MaxResults` (default 25), an empty page with
//!   a `NextToken` first when the license is set `empty_first_page`.
//!
//! - `AWSMPMeteringService.BatchMeterUsage` `{"ProductCode", "UsageRecords"}`:
//!   at most 25 records, of the one product; each record's license must be
//!   one minted for that product (`InvalidLicenseException` for the whole
//!   call otherwise), its timestamp within 6 hours before the stand-in's
//!   clock (`TimestampOutOfBoundsException`). A record is billed once per
//!   (license or customer, dimension, hour): the first write wins and any
//!   later one is `DuplicateRecord`, whatever its quantity. A license set
//!   `not_subscribed` is `CustomerNotSubscribed`.
//!
//! Control, for tests and people:
//! - `POST /mint` `{"account"?, "product_code"?, "expires_in"?, "legacy"?}`
//!   (the product code defaults to `AWS_MARKETPLACE_PRODUCT_CODE`'s) →
//!   `{"token", "license_arn", "account", "product_code"}` (expiry default
//!   4 hours, as AWS's);
//! - `PUT /entitlements` `{"license_arn", "entitlements": [{"Dimension",
//!   "Value": {…}}], "empty_first_page"?, "page_size"?}` (`page_size`:
//!   pages no longer than this, so a test sees several);
//! - `POST /throttle` `{"operation", "next": N}`: the operation's next N
//!   calls answer `ThrottlingException`;
//! - `POST /metering` `{"now"?, "unprocessed_call"?, "garble_call"?,
//!   "not_subscribed"?: [license ARN]}`: the clock BatchMeterUsage goes by
//!   (Unix seconds; the real one by default); the Nth BatchMeterUsage call
//!   from now (1: the next) that answers every record unprocessed, and the one
//!   that bills its records and then answers what no SDK can read (the
//!   answer lost on the way: the caller cannot know it was billed);
//! - `GET /billed`: every record billed, oldest first;
//! - `GET /received/{operation}`: the calls of an operation, oldest first.
//!
//! Usage: fake_aws_marketplace PORT

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tests::fakes::{port_argument, serve_on, Received};

/// A registration token's buyer and purchase.
#[derive(Clone)]
struct Purchase {
    account: String,
    license_arn: String,
    product_code: String,
    legacy: bool,
    expires_at: i64,
    resolved: bool,
}

#[derive(Default, Clone)]
struct Entitled {
    entitlements: Vec<Value>,
    empty_first_page: bool,
    /// Pages at most this long, whatever the caller's `MaxResults`.
    page_size: Option<u64>,
}

#[derive(Default)]
struct Marketplace {
    tokens: Mutex<HashMap<String, Purchase>>,
    entitlements: Mutex<HashMap<String, Entitled>>,
    /// Operation → how many of its next calls answer ThrottlingException.
    throttle_next: Mutex<HashMap<String, u32>>,
    metering: Mutex<Metering>,
    received: Arc<Received>,
}

/// BatchMeterUsage's state and switches.
#[derive(Default)]
struct Metering {
    /// (license or customer, dimension, hour) → the billed record.
    billed: Vec<((String, String, i64), Value)>,
    calls: u32,
    now: Option<i64>,
    unprocessed_call: Option<u32>,
    garble_call: Option<u32>,
    not_subscribed: Vec<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port = port_argument("fake_aws_marketplace");
    let marketplace = Arc::new(Marketplace::default());
    serve_on(port, router(marketplace)).await;
}

fn router(marketplace: Arc<Marketplace>) -> Router {
    Router::new()
        .route("/", post(aws_json))
        .route("/service/{service}/operation/{name}", post(rpc_v2_cbor))
        .route("/mint", post(mint))
        .route("/entitlements", put(set_entitlements))
        .route("/throttle", post(throttle))
        .route("/metering", post(set_metering))
        .route("/billed", axum::routing::get(billed))
        .with_state(marketplace.clone())
        .merge(Received::routes(marketplace.received.clone()))
}

/// How a request came, and so how its answer goes.
#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    AwsJson,
    Cbor,
}

impl Encoding {
    fn decode(self, body: &[u8]) -> Option<Value> {
        match self {
            Self::AwsJson => serde_json::from_slice(body).ok(),
            Self::Cbor if body.is_empty() => Some(json!({})),
            Self::Cbor => ciborium::from_reader(body).ok(),
        }
    }

    fn reply(self, status: StatusCode, body: &Value) -> Response {
        match self {
            Self::AwsJson => (
                status,
                [("content-type", "application/x-amz-json-1.1")],
                body.to_string(),
            )
                .into_response(),
            Self::Cbor => {
                let mut bytes = Vec::new();
                if ciborium::into_writer(body, &mut bytes).is_err() {
                    return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                }
                (
                    status,
                    [
                        ("content-type", "application/cbor"),
                        ("smithy-protocol", "rpc-v2-cbor"),
                    ],
                    bytes,
                )
                    .into_response()
            }
        }
    }

    fn error(self, kind: &str, message: &str) -> Response {
        let status = if kind == "InternalServiceErrorException" {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::BAD_REQUEST
        };
        self.reply(status, &json!({"__type": kind, "message": message}))
    }

    fn answer(self, body: Value) -> Response {
        self.reply(StatusCode::OK, &body)
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// awsJson1_1: `POST /`, the operation in `X-Amz-Target`.
async fn aws_json(State(mp): State<Arc<Marketplace>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    operation(&mp, Encoding::AwsJson, &target, &body)
}

/// RPC v2 CBOR: the service and the operation in the path.
async fn rpc_v2_cbor(
    State(mp): State<Arc<Marketplace>>,
    Path((service, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    operation(&mp, Encoding::Cbor, &format!("{service}.{name}"), &body)
}

fn operation(mp: &Marketplace, encoding: Encoding, target: &str, body: &[u8]) -> Response {
    let Some(request) = encoding.decode(body) else {
        return encoding.error("SerializationException", "the body cannot be read");
    };
    let operation = target.rsplit('.').next().unwrap_or_default().to_string();
    mp.received.record(&operation, request.clone());
    if let Some(left) = mp.throttle_next.lock().unwrap().get_mut(&operation) {
        if *left > 0 {
            *left -= 1;
            return encoding.error("ThrottlingException", "Rate exceeded");
        }
    }
    match target {
        "AWSMPMeteringService.ResolveCustomer" => resolve_customer(mp, encoding, &request),
        "AWSMPEntitlementService.GetEntitlements" => get_entitlements(mp, encoding, &request),
        "AWSMPMeteringService.BatchMeterUsage" => batch_meter_usage(mp, encoding, &request),
        _ => encoding.error(
            "UnknownOperationException",
            &format!("unknown operation {target}"),
        ),
    }
}

fn resolve_customer(mp: &Marketplace, encoding: Encoding, request: &Value) -> Response {
    let Some(token) = request["RegistrationToken"].as_str() else {
        return encoding.error("InvalidTokenException", "RegistrationToken is required");
    };
    let mut tokens = mp.tokens.lock().unwrap();
    let Some(purchase) = tokens.get_mut(token) else {
        return encoding.error("InvalidTokenException", "Registration token is invalid");
    };
    if purchase.resolved || purchase.expires_at <= now() {
        return encoding.error("ExpiredTokenException", "Registration token has expired");
    }
    purchase.resolved = true;
    let customer_identifier = if purchase.legacy {
        format!("cust-{}", &purchase.account[..6])
    } else {
        String::new()
    };
    encoding.answer(json!({
        "CustomerIdentifier": customer_identifier,
        "CustomerAWSAccountId": purchase.account,
        "ProductCode": purchase.product_code,
        "LicenseArn": purchase.license_arn,
    }))
}

fn get_entitlements(mp: &Marketplace, encoding: Encoding, request: &Value) -> Response {
    let Some(product_code) = request["ProductCode"].as_str() else {
        return encoding.error("InvalidParameterException", "ProductCode is required");
    };
    let licenses: Vec<&str> = request["Filter"]["LICENSE_ARN"]
        .as_array()
        .map(|values| values.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut page_size = request["MaxResults"].as_u64().unwrap_or(25);
    if !(1..=25).contains(&page_size) {
        return encoding.error("InvalidParameterException", "MaxResults must be 1 to 25");
    }
    let entitled = mp.entitlements.lock().unwrap();
    let mut all = Vec::new();
    let mut empty_first_page = false;
    for license in &licenses {
        if let Some(found) = entitled.get(*license) {
            empty_first_page |= found.empty_first_page;
            page_size = found.page_size.map_or(page_size, |size| size.clamp(1, page_size));
            all.extend(found.entitlements.iter().map(|entitlement| {
                let mut entitlement = entitlement.clone();
                entitlement["ProductCode"] = product_code.into();
                entitlement["LicenseArn"] = (*license).into();
                entitlement
            }));
        }
    }
    // A page is a position in the list; an empty first page is position 0
    // given out as "empty", then position 0 again.
    let (start, empty) = match request["NextToken"].as_str() {
        None if empty_first_page => (0, true),
        None => (0, false),
        Some(token) => match token.strip_prefix("page-").and_then(|n| n.parse::<usize>().ok()) {
            Some(start) if start <= all.len() => (start, false),
            _ => return encoding.error("InvalidParameterException", "NextToken is invalid"),
        },
    };
    if empty {
        return encoding.answer(json!({"Entitlements": [], "NextToken": "page-0"}));
    }
    let end = (start + page_size as usize).min(all.len());
    let mut page = json!({"Entitlements": all[start..end].to_vec()});
    if end < all.len() {
        page["NextToken"] = format!("page-{end}").into();
    }
    encoding.answer(page)
}

async fn mint(State(mp): State<Arc<Marketplace>>, Json(body): Json<Value>) -> Json<Value> {
    let token = format!("tok-{}", shared::secret::random_hex(24));
    let account = body["account"].as_str().map(str::to_string).unwrap_or_else(|| {
        format!(
            "{:012}",
            // Twelve digits, as AWS account ids are.
            u64::from_str_radix(&shared::secret::random_hex(5), 16).unwrap_or(7) % 1_000_000_000_000
        )
    });
    // The stack's listing unless told otherwise, so a minted token is for it.
    let product_code = body["product_code"]
        .as_str()
        .map(str::to_string)
        .or_else(|| std::env::var("AWS_MARKETPLACE_PRODUCT_CODE").ok())
        .filter(|code| !code.is_empty())
        .unwrap_or_else(|| "prodstandin1".to_string());
    let license_arn = format!(
        "arn:aws:license-manager::{account}:license:l-{}",
        shared::secret::random_hex(16)
    );
    let purchase = Purchase {
        account: account.clone(),
        license_arn: license_arn.clone(),
        product_code: product_code.clone(),
        legacy: body["legacy"].as_bool().unwrap_or(false),
        expires_at: now() + body["expires_in"].as_i64().unwrap_or(4 * 3600),
        resolved: false,
    };
    mp.tokens.lock().unwrap().insert(token.clone(), purchase);
    Json(
        json!({"token": token, "license_arn": license_arn, "account": account, "product_code": product_code}),
    )
}

async fn set_entitlements(State(mp): State<Arc<Marketplace>>, Json(body): Json<Value>) -> Response {
    let Some(license) = body["license_arn"].as_str() else {
        return (StatusCode::BAD_REQUEST, "license_arn is required").into_response();
    };
    let entitled = Entitled {
        entitlements: body["entitlements"].as_array().cloned().unwrap_or_default(),
        empty_first_page: body["empty_first_page"].as_bool().unwrap_or(false),
        page_size: body["page_size"].as_u64(),
    };
    mp.entitlements
        .lock()
        .unwrap()
        .insert(license.to_string(), entitled);
    StatusCode::NO_CONTENT.into_response()
}

async fn throttle(State(mp): State<Arc<Marketplace>>, Json(body): Json<Value>) -> StatusCode {
    let Some(operation) = body["operation"].as_str() else {
        return StatusCode::BAD_REQUEST;
    };
    let next = u32::try_from(body["next"].as_u64().unwrap_or(0).min(1000)).unwrap_or(0);
    mp.throttle_next
        .lock()
        .unwrap()
        .insert(operation.to_string(), next);
    StatusCode::NO_CONTENT
}

/// A record's timestamp: awsJson sends epoch seconds (a number).
fn timestamp_of(record: &Value) -> Option<i64> {
    record["Timestamp"]
        .as_f64()
        .map(|seconds| seconds as i64)
        .or_else(|| {
            record["Timestamp"]
                .as_str()
                .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
                .map(|at| at.timestamp())
        })
}

fn batch_meter_usage(mp: &Marketplace, encoding: Encoding, request: &Value) -> Response {
    let mut metering = mp.metering.lock().unwrap();
    metering.calls += 1;
    let call = metering.calls;
    let product_code = request["ProductCode"].as_str().unwrap_or_default();
    let records = request["UsageRecords"].as_array().cloned().unwrap_or_default();
    if records.len() > 25 {
        return encoding.error("ValidationException", "UsageRecords holds at most 25 records");
    }
    let now = metering.now.unwrap_or_else(now);
    // Every license must be one of this product's.
    let products: HashMap<String, String> = mp
        .tokens
        .lock()
        .unwrap()
        .values()
        .map(|purchase| (purchase.license_arn.clone(), purchase.product_code.clone()))
        .collect();
    for record in &records {
        if let Some(license) = record["LicenseArn"].as_str() {
            if products
                .get(license)
                .is_none_or(|product| product != product_code)
            {
                return encoding.error(
                    "InvalidLicenseException",
                    &format!("{license} is not a license of {product_code}"),
                );
            }
        }
        match timestamp_of(record) {
            Some(at) if at <= now && now - at < 6 * 3600 => {}
            _ => {
                return encoding.error(
                    "TimestampOutOfBoundsException",
                    "a record's Timestamp is outside the window",
                )
            }
        }
    }
    if metering.unprocessed_call == Some(call) {
        return encoding.answer(json!({"Results": [], "UnprocessedRecords": records}));
    }
    let mut results = Vec::new();
    for record in &records {
        let customer = record["LicenseArn"]
            .as_str()
            .filter(|arn| !arn.is_empty())
            .or_else(|| record["CustomerIdentifier"].as_str())
            .unwrap_or_default()
            .to_string();
        let hour = timestamp_of(record).unwrap_or_default() / 3600 * 3600;
        let key = (
            customer.clone(),
            record["Dimension"].as_str().unwrap_or_default().to_string(),
            hour,
        );
        let status = if metering.not_subscribed.contains(&customer) {
            "CustomerNotSubscribed"
        } else if metering.billed.iter().any(|(billed, _)| *billed == key) {
            "DuplicateRecord"
        } else {
            let id = format!("mr-{}", shared::secret::random_hex(8));
            let mut billed = record.clone();
            billed["MeteringRecordId"] = id.clone().into();
            metering.billed.push((key, billed));
            "Success"
        };
        let id = metering
            .billed
            .iter()
            .find(|(billed, _)| {
                billed.0 == customer
                    && billed.2 == hour
                    && Some(billed.1.as_str()) == record["Dimension"].as_str()
            })
            .map(|(_, billed)| billed["MeteringRecordId"].clone())
            .unwrap_or(Value::Null);
        let mut result = json!({"UsageRecord": record, "Status": status});
        if status != "CustomerNotSubscribed" {
            result["MeteringRecordId"] = id;
        }
        results.push(result);
    }
    if metering.garble_call == Some(call) {
        // Billed, and the answer lost: what the caller reads is no answer.
        return (
            StatusCode::OK,
            [("content-type", "application/x-amz-json-1.1")],
            "{\"Results\": [",
        )
            .into_response();
    }
    encoding.answer(json!({"Results": results, "UnprocessedRecords": []}))
}

async fn set_metering(State(mp): State<Arc<Marketplace>>, Json(body): Json<Value>) -> StatusCode {
    let mut metering = mp.metering.lock().unwrap();
    if let Some(now) = body["now"].as_i64() {
        metering.now = Some(now);
    }
    // Counted from now: 1 is the next call.
    let calls = metering.calls;
    let from_now = |call: &Value| {
        call.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(|n| calls + n)
    };
    if let Some(call) = from_now(&body["unprocessed_call"]) {
        metering.unprocessed_call = Some(call);
    }
    if let Some(call) = from_now(&body["garble_call"]) {
        metering.garble_call = Some(call);
    }
    if let Some(licenses) = body["not_subscribed"].as_array() {
        metering
            .not_subscribed
            .extend(licenses.iter().filter_map(Value::as_str).map(str::to_string));
    }
    StatusCode::NO_CONTENT
}

async fn billed(State(mp): State<Arc<Marketplace>>) -> Json<Value> {
    let metering = mp.metering.lock().unwrap();
    Json(Value::Array(
        metering.billed.iter().map(|(_, record)| record.clone()).collect(),
    ))
}
