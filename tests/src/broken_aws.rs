//! A deliberately breakable stand-in for a stack selling on AWS Marketplace,
//! with its own stand-in AWS Marketplace, for testing `provider check
//! --marketplace aws`: with no fault it registers purchases and handles
//! subscription events as docs/aws-marketplace.md says (in memory), and
//! each [`AwsFault`] breaks one rule the way a real integration might
//! (several are what AWS's own sample does); the tests assert each is named.
//!
//! One server answers as all three parts the check calls: the stack
//! (`POST /aws/register`, `GET /dashboard`), the stand-in AWS Marketplace's
//! control (`/mint`, `/entitlements`, `/throttle`), and Lambda's Invoke API
//! for `marketplace-events`.

use crate::fakes::serve;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use shared::secret::random_hex;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

pub const PRODUCT_CODE: &str = "checkstandin1";
pub const PLANS: &str = "basic_dim:basic,premium_dim:premium";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AwsFault {
    /// The session cookie is neither `__Host-` nor `HttpOnly`.
    LooseCookie,
    /// The landing URL carries the token (AWS's sample redirects so).
    TokenInLocation,
    /// A re-post opens another session.
    RepostOpensSession,
    /// One resource per AWS account, not per purchase.
    OnePerAccount,
    /// An unknown token is provisioned.
    InvalidAccepted,
    /// An expired token is provisioned.
    ExpiredAccepted,
    /// Another product's token is provisioned.
    AnyProduct,
    /// A JSON body is a 500.
    JsonIs500,
    /// Throttling is a 500, without `Retry-After`.
    ThrottleIs500,
    /// Events before the registration are dropped.
    EarlyEventsLost,
    /// Entitlements are read from their first page only.
    FirstPageOnly,
    /// A redelivered event is applied (and audited) again.
    NoDedupe,
    /// Events of any source are acted on.
    AnySource,
    /// `Purchase Agreement Ended` changes nothing.
    EndedIgnored,
    /// A late `Created` makes an ended purchase active again.
    LateCreatedRevives,
    /// Each `License Deprovisioned` is applied and audited.
    DeprovisionTwice,
}

impl AwsFault {
    pub const ALL: [AwsFault; 16] = [
        AwsFault::LooseCookie,
        AwsFault::TokenInLocation,
        AwsFault::RepostOpensSession,
        AwsFault::OnePerAccount,
        AwsFault::InvalidAccepted,
        AwsFault::ExpiredAccepted,
        AwsFault::AnyProduct,
        AwsFault::JsonIs500,
        AwsFault::ThrottleIs500,
        AwsFault::EarlyEventsLost,
        AwsFault::FirstPageOnly,
        AwsFault::NoDedupe,
        AwsFault::AnySource,
        AwsFault::EndedIgnored,
        AwsFault::LateCreatedRevives,
        AwsFault::DeprovisionTwice,
    ];

    /// The check each fault must fail.
    pub fn expected_failure(self) -> &'static str {
        match self {
            AwsFault::LooseCookie => "aws.register.signs_in",
            AwsFault::TokenInLocation => "aws.register.token_unexposed",
            AwsFault::RepostOpensSession => "aws.register.repost",
            AwsFault::OnePerAccount => "aws.register.second_purchase",
            AwsFault::InvalidAccepted => "aws.register.invalid_token",
            AwsFault::ExpiredAccepted => "aws.register.expired_token",
            AwsFault::AnyProduct => "aws.register.other_product",
            AwsFault::JsonIs500 => "aws.register.not_a_form",
            AwsFault::ThrottleIs500 => "aws.register.throttled",
            AwsFault::EarlyEventsLost => "aws.events.before_registration",
            AwsFault::FirstPageOnly => "aws.events.updated",
            AwsFault::NoDedupe => "aws.events.duplicate",
            AwsFault::AnySource => "aws.events.other_source",
            AwsFault::EndedIgnored => "aws.events.ended",
            AwsFault::LateCreatedRevives => "aws.events.late_created",
            AwsFault::DeprovisionTwice => "aws.events.deprovisioned",
        }
    }
}

struct Token {
    account: String,
    license_id: String,
    product_code: String,
    expires_at: i64,
}

#[derive(Default)]
struct License {
    entitled_plan: Option<String>,
    ended: bool,
    deprovisioned: bool,
}

struct Resource {
    id: String,
    plan: String,
    status: &'static str,
    events: Vec<&'static str>,
}

#[derive(Default)]
struct Books {
    tokens: HashMap<String, Token>,
    /// Tokens registered: the resource each made.
    registered: HashMap<String, String>,
    entitlements: HashMap<String, (Vec<String>, bool)>,
    throttle_next: u64,
    licenses: HashMap<String, License>,
    /// Agreement → its license, and whether it ended.
    agreements: HashMap<String, (Option<String>, bool)>,
    resources: HashMap<String, Resource>,
    sessions: HashMap<String, String>,
    handled: HashSet<String>,
}

struct StandIn {
    fault: Option<AwsFault>,
    books: Mutex<Books>,
}

impl StandIn {
    fn has(&self, fault: AwsFault) -> bool {
        self.fault == Some(fault)
    }
}

/// Starts a stand-in with `fault` on a free port; its base URL.
pub fn spawn(fault: Option<AwsFault>) -> String {
    let state = Arc::new(StandIn {
        fault,
        books: Mutex::default(),
    });
    let router = Router::new()
        .route("/aws/register", post(register))
        .route("/dashboard", get(dashboard))
        .route("/mint", post(mint))
        .route("/entitlements", put(entitle))
        .route("/throttle", post(throttle))
        .route(
            "/2015-03-31/functions/marketplace-events/invocations",
            post(invoke),
        )
        .with_state(state);
    serve(router)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn license_id(arn: &str) -> String {
    shared::model::aws_license_id(arn).to_string()
}

async fn mint(State(standin): State<Arc<StandIn>>, Json(body): Json<Value>) -> Json<Value> {
    let token = format!("tok-{}", random_hex(12));
    let account = body["account"].as_str().map_or_else(
        || format!("{:012}", u64::from_str_radix(&random_hex(5), 16).unwrap_or(1)),
        str::to_string,
    );
    let id = format!("l-{}", random_hex(8));
    let license_arn = format!("arn:aws:license-manager::{account}:license:{id}");
    standin.books.lock().unwrap().tokens.insert(
        token.clone(),
        Token {
            account: account.clone(),
            license_id: id,
            product_code: body["product_code"].as_str().unwrap_or(PRODUCT_CODE).to_string(),
            expires_at: now() + body["expires_in"].as_i64().unwrap_or(4 * 3600),
        },
    );
    Json(json!({"token": token, "license_arn": license_arn, "account": account}))
}

async fn entitle(State(standin): State<Arc<StandIn>>, Json(body): Json<Value>) -> StatusCode {
    let dimensions = body["entitlements"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|entitlement| entitlement["Dimension"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let spread = body["empty_first_page"].as_bool().unwrap_or(false);
    let license = license_id(body["license_arn"].as_str().unwrap_or_default());
    standin
        .books
        .lock()
        .unwrap()
        .entitlements
        .insert(license, (dimensions, spread));
    StatusCode::NO_CONTENT
}

async fn throttle(State(standin): State<Arc<StandIn>>, Json(body): Json<Value>) -> StatusCode {
    standin.books.lock().unwrap().throttle_next = body["next"].as_u64().unwrap_or(0);
    StatusCode::NO_CONTENT
}

fn page(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        format!("<!doctype html><p>{text} Go back to AWS Marketplace and choose Set up your account.</p>"),
    )
        .into_response()
}

fn landing(standin: &StandIn, books: &mut Books, resource_id: &str, token: &str, session: bool) -> Response {
    let location = if standin.has(AwsFault::TokenInLocation) {
        format!("/dashboard?token={token}")
    } else {
        "/dashboard".to_string()
    };
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
    if session {
        let id = random_hex(32);
        books.sessions.insert(id.clone(), resource_id.to_string());
        let cookie = if standin.has(AwsFault::LooseCookie) {
            format!("addon_session={id}; Path=/; Secure; SameSite=Lax")
        } else {
            format!("__Host-addon_session={id}; Max-Age=3600; Path=/; HttpOnly; Secure; SameSite=Lax")
        };
        response
            .headers_mut()
            .insert(header::SET_COOKIE, cookie.parse().unwrap());
    }
    response
}

async fn register(State(standin): State<Arc<StandIn>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/x-www-form-urlencoded"));
    if !form {
        return if standin.has(AwsFault::JsonIs500) {
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        } else {
            page(StatusCode::BAD_REQUEST, "This registration could not be read.")
        };
    }
    let Some(token) = form_urlencoded::parse(&body)
        .find(|(name, _)| name == "x-amzn-marketplace-token")
        .map(|(_, value)| value.into_owned())
    else {
        return page(StatusCode::BAD_REQUEST, "This registration could not be read.");
    };
    let mut books = standin.books.lock().unwrap();
    if let Some(resource) = books.registered.get(&token).cloned() {
        let session = standin.has(AwsFault::RepostOpensSession);
        return landing(&standin, &mut books, &resource, &token, session);
    }
    if books.throttle_next > 0 {
        books.throttle_next -= 1;
        return if standin.has(AwsFault::ThrottleIs500) {
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        } else {
            let mut response = page(StatusCode::SERVICE_UNAVAILABLE, "Please try again.");
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, "5".parse().unwrap());
            response
        };
    }
    let (account, license, product_code) = match books.tokens.get(&token) {
        Some(known) if known.expires_at <= now() && !standin.has(AwsFault::ExpiredAccepted) => {
            return page(StatusCode::BAD_REQUEST, "This registration has expired.");
        }
        Some(known) => (
            known.account.clone(),
            known.license_id.clone(),
            known.product_code.clone(),
        ),
        None if standin.has(AwsFault::InvalidAccepted) => (
            "000000000000".to_string(),
            format!("l-{}", random_hex(8)),
            PRODUCT_CODE.to_string(),
        ),
        None => {
            return page(
                StatusCode::BAD_REQUEST,
                "AWS Marketplace did not recognise this registration.",
            )
        }
    };
    if product_code != PRODUCT_CODE && !standin.has(AwsFault::AnyProduct) {
        return page(StatusCode::FORBIDDEN, "This registration is for another product.");
    }
    let state = books.licenses.entry(license.clone()).or_default();
    if state.ended || state.deprovisioned {
        return page(StatusCode::FORBIDDEN, "This subscription has ended.");
    }
    let plan = state.entitled_plan.clone().unwrap_or_else(|| "basic".into());
    let key = if standin.has(AwsFault::OnePerAccount) {
        account
    } else {
        license
    };
    let id = format!("res_aws_{key}").replace('-', "_");
    books.resources.entry(id.clone()).or_insert_with(|| Resource {
        id: id.clone(),
        plan,
        status: "active",
        events: vec!["provisioned"],
    });
    books.registered.insert(token.clone(), id.clone());
    landing(&standin, &mut books, &id, &token, true)
}

async fn dashboard(State(standin): State<Arc<StandIn>>, headers: HeaderMap) -> Response {
    let books = standin.books.lock().unwrap();
    let resource = headers
        .get(header::COOKIE)
        .and_then(|value| value.to_str().ok())
        .and_then(|cookies| cookies.split(';').find_map(|pair| pair.trim().split_once('=')))
        .and_then(|(_, id)| books.sessions.get(id))
        .and_then(|id| books.resources.get(id));
    let Some(resource) = resource else {
        return (StatusCode::FOUND, [(header::LOCATION, "/dashboard/signed-out")]).into_response();
    };
    let events: String = resource
        .events
        .iter()
        .map(|event| format!("<tr><td>{event}</td><td>aws_marketplace</td></tr>"))
        .collect();
    let html = format!(
        "<!doctype html><dl><dt>Resource</dt><dd><code>{}</code></dd><dt>Plan</dt><dd id=\"plan\">{}</dd><dt>Status</dt><dd id=\"status\">{}</dd></dl><table class=\"events\">{events}</table>",
        resource.id, resource.plan, resource.status
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

/// Brings the license's resource to what the events said.
fn settle(standin: &StandIn, books: &mut Books, license: &str) {
    let Some(state) = books.licenses.get(license) else {
        return;
    };
    let (plan, ended, deprovisioned) = (state.entitled_plan.clone(), state.ended, state.deprovisioned);
    let id = format!("res_aws_{license}").replace('-', "_");
    let Some(resource) = books.resources.get_mut(&id) else {
        return;
    };
    if deprovisioned {
        if resource.status != "deprovisioned" || standin.has(AwsFault::DeprovisionTwice) {
            resource.status = "deprovisioned";
            resource.events.push("deprovisioned");
        }
    } else if ended {
        if resource.status == "active" {
            resource.status = "ending";
            resource.events.push("ending");
        }
    } else if let Some(plan) = plan {
        if resource.status == "active" && (resource.plan != plan || standin.has(AwsFault::NoDedupe)) {
            resource.plan = plan;
            resource.events.push("plan_changed");
        }
    }
}

async fn invoke(State(standin): State<Arc<StandIn>>, Json(event): Json<Value>) -> Json<Value> {
    let mut books = standin.books.lock().unwrap();
    if event["source"] != "aws.agreement-marketplace" && !standin.has(AwsFault::AnySource) {
        return Json(json!({"ignored": "source"}));
    }
    let id = event["id"].as_str().unwrap_or_default().to_string();
    if !books.handled.insert(id) && !standin.has(AwsFault::NoDedupe) {
        return Json(json!({"ignored": "redelivery"}));
    }
    let detail_type = event["detail-type"].as_str().unwrap_or_default();
    let agreement = event["detail"]["agreement"]["id"].as_str().map(str::to_string);
    let license = event["detail"]["license"]["arn"].as_str().map(license_id);
    let registered = license.as_ref().is_some_and(|license| {
        books
            .resources
            .contains_key(&format!("res_aws_{license}").replace('-', "_"))
    });
    match detail_type.rsplit_once(" - ").map_or("", |(base, _)| base) {
        "Purchase Agreement Created" => {
            if let Some(agreement) = agreement {
                let (license, _) = books.agreements.entry(agreement).or_default().clone();
                if let (Some(license), true) = (license, standin.has(AwsFault::LateCreatedRevives)) {
                    let id = format!("res_aws_{license}").replace('-', "_");
                    books.licenses.entry(license).or_default().ended = false;
                    if let Some(resource) = books.resources.get_mut(&id) {
                        resource.status = "active";
                    }
                }
            }
        }
        "Purchase Agreement Ended" if !standin.has(AwsFault::EndedIgnored) => {
            if let Some(agreement) = agreement {
                let entry = books.agreements.entry(agreement).or_default();
                entry.1 = true;
                if let Some(license) = entry.0.clone() {
                    books.licenses.entry(license.clone()).or_default().ended = true;
                    settle(&standin, &mut books, &license);
                }
            }
        }
        "License Updated" => {
            let Some(license) = license else {
                return Json(json!({"ignored": "no license"}));
            };
            if !registered && standin.has(AwsFault::EarlyEventsLost) {
                return Json(json!({"ignored": "not registered"}));
            }
            let ended = agreement.is_some_and(|agreement| {
                let entry = books.agreements.entry(agreement).or_default();
                entry.0 = Some(license.clone());
                entry.1
            });
            let (dimensions, spread) = books.entitlements.get(&license).cloned().unwrap_or_default();
            let read = if spread && standin.has(AwsFault::FirstPageOnly) {
                Vec::new()
            } else {
                dimensions
            };
            let plan = ["premium_dim", "basic_dim"]
                .into_iter()
                .find(|dimension| read.iter().any(|held| held == dimension))
                .map(|dimension| dimension.trim_end_matches("_dim").to_string());
            let state = books.licenses.entry(license.clone()).or_default();
            if plan.is_some() {
                state.entitled_plan = plan;
            }
            state.ended |= ended;
            settle(&standin, &mut books, &license);
        }
        "License Deprovisioned" => {
            if let Some(license) = license {
                books.licenses.entry(license.clone()).or_default().deprovisioned = true;
                settle(&standin, &mut books, &license);
            }
        }
        _ => {}
    }
    Json(json!({"handled": detail_type}))
}
