//! A deliberately breakable stand-in add-on provider, for testing
//! `provider check` itself: with no fault it speaks Clever Cloud's and
//! Cloud 66's protocols correctly (in memory), and each [`Fault`] breaks one
//! rule the way a real provider might. A check that passes against every
//! fault would be worthless; the tests assert each fault is named.

use crate::fakes::serve;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use chrono::Utc;
use shared::clevercloud::sso::{parse_form, CleverCloudSso, Proof};
use shared::cloud66::sso::{Cloud66Sso, KeyDerivation};
use shared::secret::{random_hex, Secret};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const ADDON_ID: &str = "check-standin";
pub const PASSWORD: &str = "stand-in-password-0123456789abcdef";
pub const SSO_SALT: &str = "stand-in-sso-salt-0123456789abcdef";
pub const CONFIG_VARS: [&str; 2] = ["CHECK_STANDIN_URL", "CHECK_STANDIN_TOKEN"];
pub const CLOUD66_PROVIDER: &str = "check-standin";
pub const CLOUD66_UID: &str = "standin-cloud66-uid-0123456789abcdef";

/// One way to get the protocol wrong, and the check that must say so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Looks the id up before checking credentials: 404 leaks before 401.
    AuthAfterLookup,
    /// 401 without `WWW-Authenticate`.
    NoChallenge,
    /// Checks the user name only.
    PasswordIgnored,
    /// Answers the marketplace's `addon_id` as its own id.
    EchoesAddonId,
    /// Adds a config var the manifest does not list.
    ExtraConfigVar,
    /// A repeated provision creates another resource.
    NotIdempotent,
    /// Checks for an existing claim, then writes it later: racing copies
    /// each create one.
    RacyClaim,
    /// Malformed JSON reaches code that fails with 500.
    CrashesOnBadJson,
    /// Bad bodies get a plain-text 400.
    PlainTextErrors,
    /// A spent SSO form signs in again.
    SsoReplay,
    /// No maximum age for an SSO timestamp.
    SsoNoAgeLimit,
    /// No limit on how far ahead an SSO timestamp may be.
    SsoNoFutureLimit,
    /// Knows only the legacy SHA-1 token, not the SHA-512 signature.
    SsoLegacyOnly,
    /// Any Clever Cloud SSO signature is accepted.
    SsoUnsigned,
    /// Any Cloud 66 signature is accepted.
    Cloud66Unsigned,
    /// A plan change for an unknown id answers 200.
    PlanChangeUnknown200,
    /// A repeated deprovision answers 404.
    DeprovisionRepeat404,
    /// A deprovisioned resource still signs in.
    DeprovisionedSignsIn,
}

impl Fault {
    pub const ALL: [Fault; 18] = [
        Fault::AuthAfterLookup,
        Fault::NoChallenge,
        Fault::PasswordIgnored,
        Fault::EchoesAddonId,
        Fault::ExtraConfigVar,
        Fault::NotIdempotent,
        Fault::RacyClaim,
        Fault::CrashesOnBadJson,
        Fault::PlainTextErrors,
        Fault::SsoReplay,
        Fault::SsoNoAgeLimit,
        Fault::SsoNoFutureLimit,
        Fault::SsoLegacyOnly,
        Fault::SsoUnsigned,
        Fault::Cloud66Unsigned,
        Fault::PlanChangeUnknown200,
        Fault::DeprovisionRepeat404,
        Fault::DeprovisionedSignsIn,
    ];

    /// The check that must fail against this fault.
    pub fn expected_failure(self) -> &'static str {
        match self {
            Fault::AuthAfterLookup => "auth.deprovision.missing",
            Fault::NoChallenge => "auth.provision.missing",
            Fault::PasswordIgnored => "auth.provision.wrong_password",
            Fault::EchoesAddonId => "provision.new",
            Fault::ExtraConfigVar => "provision.new",
            Fault::NotIdempotent => "provision.repeat",
            Fault::RacyClaim => "provision.concurrent",
            Fault::CrashesOnBadJson => "hostile.provision.malformed_json",
            Fault::PlainTextErrors => "hostile.provision.empty_body",
            Fault::SsoReplay => "sso.clevercloud.replay",
            Fault::SsoNoAgeLimit => "sso.clevercloud.stale",
            Fault::SsoNoFutureLimit => "sso.clevercloud.future",
            Fault::SsoLegacyOnly => "sso.clevercloud.signature",
            Fault::SsoUnsigned => "sso.clevercloud.wrong_signature",
            Fault::Cloud66Unsigned => "sso.cloud66.wrong_signature",
            Fault::PlanChangeUnknown200 => "plan_change.unknown_id",
            Fault::DeprovisionRepeat404 => "deprovision.repeat",
            Fault::DeprovisionedSignsIn => "sso.clevercloud.deprovisioned",
        }
    }
}

const MAX_BODY_BYTES: usize = 64 * 1024;
const MAX_AGE_SECONDS: i64 = 300;
const FUTURE_TOLERANCE_SECONDS: i64 = 60;

struct Resource {
    addon_id: String,
    config: serde_json::Value,
    active: bool,
}

#[derive(Default)]
struct Books {
    claims: HashMap<String, String>,
    resources: HashMap<String, Resource>,
    spent: HashSet<String>,
    sessions: HashSet<String>,
}

/// The status and error code of a refused request.
type Refusal = (StatusCode, &'static str);

struct StandIn {
    fault: Option<Fault>,
    clevercloud: CleverCloudSso,
    cloud66: Cloud66Sso,
    books: Mutex<Books>,
}

/// Serves the stand-in on a free loopback port; returns its base URL.
pub fn spawn(fault: Option<Fault>) -> String {
    let cloud66 = Cloud66Sso::new(
        "https://app.cloud66.com".into(),
        CLOUD66_PROVIDER.into(),
        CLOUD66_UID,
        KeyDerivation::Uid,
    )
    .expect("a valid stand-in Cloud 66 UID");
    let state = Arc::new(StandIn {
        fault,
        clevercloud: CleverCloudSso::new(Secret::new(SSO_SALT), MAX_AGE_SECONDS),
        cloud66,
        books: Mutex::default(),
    });
    let router = Router::new()
        .route("/clevercloud/resources", post(provision))
        .route(
            "/clevercloud/resources/{id}",
            put(change_plan).delete(deprovision),
        )
        .route("/clevercloud/sso/login", post(clevercloud_login))
        .route("/cloud66/sso/start", get(cloud66_start))
        .route("/cloud66/sso/callback", get(cloud66_callback))
        .route("/dashboard", get(dashboard))
        .with_state(state);
    serve(router)
}

/// A manifest for the stand-in at `base`, as `make run` prints one.
pub fn manifest(base: &str) -> serde_json::Value {
    let endpoints = serde_json::json!({
        "base_url": format!("{base}/clevercloud/resources"),
        "sso_url": format!("{base}/clevercloud/sso/login"),
    });
    serde_json::json!({
        "id": ADDON_ID,
        "api": {
            "config_vars": CONFIG_VARS,
            "regions": ["eu"],
            "password": PASSWORD,
            "sso_salt": SSO_SALT,
            "production": endpoints,
            "test": endpoints,
        }
    })
}

impl StandIn {
    fn has(&self, fault: Fault) -> bool {
        self.fault == Some(fault)
    }

    /// A JSON error (plain text with [`Fault::PlainTextErrors`]); a 401
    /// carries its challenge unless [`Fault::NoChallenge`]; a 500 is bare.
    fn error(&self, (status, code): Refusal) -> Response {
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            return status.into_response();
        }
        let mut response = if self.has(Fault::PlainTextErrors) {
            (status, code.to_string()).into_response()
        } else {
            (status, Json(serde_json::json!({"error": code, "message": code}))).into_response()
        };
        if status == StatusCode::UNAUTHORIZED && !self.has(Fault::NoChallenge) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Basic realm=\"stand-in\"".parse().unwrap(),
            );
        }
        response
    }

    fn authenticate(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let credentials = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Basic "))
            .and_then(|value| base64::engine::general_purpose::STANDARD.decode(value).ok())
            .and_then(|decoded| String::from_utf8(decoded).ok());
        let accepted = credentials.and_then(|text| {
            let (user, password) = text.split_once(':')?;
            Some(user == ADDON_ID && (password == PASSWORD || self.has(Fault::PasswordIgnored)))
        });
        match accepted {
            Some(true) => Ok(()),
            _ => Err((StatusCode::UNAUTHORIZED, "unauthorized")),
        }
    }

    /// A JSON object body with the string fields named.
    fn read_json(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        fields: &[&str],
    ) -> Result<HashMap<String, String>, Refusal> {
        let media_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if !media_type.starts_with("application/json") {
            return Err((StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"));
        }
        if body.len() > MAX_BODY_BYTES {
            return Err((StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"));
        }
        if body.is_empty() {
            return Err((StatusCode::BAD_REQUEST, "empty_body"));
        }
        let value: serde_json::Value = match serde_json::from_slice(body) {
            Ok(value) => value,
            Err(_) if self.has(Fault::CrashesOnBadJson) => {
                return Err((StatusCode::INTERNAL_SERVER_ERROR, "crashed"))
            }
            Err(_) => return Err((StatusCode::BAD_REQUEST, "malformed_json")),
        };
        fields
            .iter()
            .map(|field| match value.get(field).and_then(|v| v.as_str()) {
                Some(text) => Ok((field.to_string(), text.to_string())),
                None => Err((StatusCode::BAD_REQUEST, "invalid_body")),
            })
            .collect()
    }

    fn new_config(&self, id: &str) -> serde_json::Value {
        let mut config = serde_json::Map::new();
        config.insert(
            CONFIG_VARS[0].into(),
            format!("https://stand-in.example/{id}").into(),
        );
        config.insert(CONFIG_VARS[1].into(), random_hex(16).into());
        if self.has(Fault::ExtraConfigVar) {
            config.insert("OTHER_VAR".into(), "x".into());
        }
        config.into()
    }

    fn known(&self, id: &str) -> bool {
        self.books.lock().unwrap().resources.contains_key(id)
    }

    /// A session cookie and a 303 to the panel.
    fn open_session(&self) -> Response {
        let session = random_hex(16);
        self.books.lock().unwrap().sessions.insert(session.clone());
        (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, "/dashboard".to_string()),
                (header::SET_COOKIE, format!("session={session}; Path=/; HttpOnly")),
            ],
        )
            .into_response()
    }
}

fn forbidden() -> Response {
    (StatusCode::FORBIDDEN, "<p>refused</p>").into_response()
}

async fn provision(State(api): State<Arc<StandIn>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refusal) = api.authenticate(&headers) {
        return api.error(refusal);
    }
    let fields = match api.read_json(&headers, &body, &["addon_id", "plan"]) {
        Ok(fields) => fields,
        Err(refusal) => return api.error(refusal),
    };
    let addon_id = fields["addon_id"].clone();
    let existing = api.books.lock().unwrap().claims.get(&addon_id).cloned();
    if let Some(id) = existing.filter(|_| !api.has(Fault::NotIdempotent)) {
        let books = api.books.lock().unwrap();
        let config = books.resources[&id].config.clone();
        return Json(serde_json::json!({"id": id, "config": config})).into_response();
    }
    if api.has(Fault::RacyClaim) {
        // The gap between the check above and the write below.
        // Long enough that concurrent copies all fall into it, even on a
        // loaded machine that spreads their arrival.
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let id = if api.has(Fault::EchoesAddonId) {
        addon_id.clone()
    } else {
        format!("res_{}", random_hex(8))
    };
    let config = api.new_config(&id);
    let mut books = api.books.lock().unwrap();
    let id = match books.claims.get(&addon_id) {
        // Done right, the claim is checked and written under one lock.
        Some(id) if !api.has(Fault::RacyClaim) && !api.has(Fault::NotIdempotent) => id.clone(),
        _ => {
            books.claims.insert(addon_id.clone(), id.clone());
            books.resources.insert(
                id.clone(),
                Resource {
                    addon_id,
                    config: config.clone(),
                    active: true,
                },
            );
            id
        }
    };
    let config = books.resources[&id].config.clone();
    Json(serde_json::json!({"id": id, "config": config, "message": "provisioned"})).into_response()
}

/// The lookup the `AuthAfterLookup` fault makes too early.
fn lookup_first(api: &StandIn, id: &str) -> Option<Response> {
    (api.has(Fault::AuthAfterLookup) && !api.known(id))
        .then(|| api.error((StatusCode::NOT_FOUND, "not_found")))
}

async fn change_plan(
    State(api): State<Arc<StandIn>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(early) = lookup_first(&api, &id) {
        return early;
    }
    if let Err(refusal) = api.authenticate(&headers) {
        return api.error(refusal);
    }
    let fields = match api.read_json(&headers, &body, &["addon_id", "plan"]) {
        Ok(fields) => fields,
        Err(refusal) => return api.error(refusal),
    };
    let books = api.books.lock().unwrap();
    match books.resources.get(&id).filter(|resource| resource.active) {
        Some(resource) if resource.addon_id != fields["addon_id"] => {
            api.error((StatusCode::BAD_REQUEST, "addon_id_mismatch"))
        }
        Some(resource) => {
            Json(serde_json::json!({"config": resource.config, "message": "changed"})).into_response()
        }
        None if api.has(Fault::PlanChangeUnknown200) => {
            Json(serde_json::json!({"config": api.new_config(&id), "message": "changed"})).into_response()
        }
        None => api.error((StatusCode::NOT_FOUND, "not_found")),
    }
}

async fn deprovision(
    State(api): State<Arc<StandIn>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(early) = lookup_first(&api, &id) {
        return early;
    }
    if let Err(refusal) = api.authenticate(&headers) {
        return api.error(refusal);
    }
    let mut books = api.books.lock().unwrap();
    match books.resources.get_mut(&id) {
        Some(resource) if resource.active => {
            resource.active = false;
            Json(serde_json::json!({"message": "deprovisioned"})).into_response()
        }
        Some(_) if !api.has(Fault::DeprovisionRepeat404) => {
            Json(serde_json::json!({"message": "already deprovisioned"})).into_response()
        }
        _ => api.error((StatusCode::NOT_FOUND, "not_found")),
    }
}

/// Seconds since the epoch from seconds or milliseconds.
fn issued_at(timestamp: &str) -> Option<i64> {
    let whole = timestamp.split('.').next()?;
    let value: i64 = whole.parse().ok()?;
    Some(if value > 1_000_000_000_000 {
        value / 1000
    } else {
        value
    })
}

async fn clevercloud_login(State(api): State<Arc<StandIn>>, body: Bytes) -> Response {
    let Ok(form) = parse_form(&body) else {
        return (StatusCode::BAD_REQUEST, "<p>malformed</p>").into_response();
    };
    let sso = &api.clevercloud;
    let (expected, given) = match &form.proof {
        Proof::Signature(_) if api.has(Fault::SsoLegacyOnly) => return forbidden(),
        Proof::Signature(given) => (
            sso.signature(
                &form.id,
                &form.user_id,
                &form.email,
                &form.nav_data,
                &form.timestamp,
            ),
            given,
        ),
        Proof::Token(given) => (sso.token(&form.id, &form.timestamp), given),
    };
    if expected != given.to_ascii_lowercase() && !api.has(Fault::SsoUnsigned) {
        return forbidden();
    }
    let Some(issued) = issued_at(&form.timestamp) else {
        return (StatusCode::BAD_REQUEST, "<p>malformed</p>").into_response();
    };
    let now = Utc::now().timestamp();
    if now - issued > MAX_AGE_SECONDS && !api.has(Fault::SsoNoAgeLimit) {
        return forbidden();
    }
    if issued - now > FUTURE_TOLERANCE_SECONDS && !api.has(Fault::SsoNoFutureLimit) {
        return forbidden();
    }
    {
        let mut books = api.books.lock().unwrap();
        let signs_in = books
            .resources
            .get(&form.id)
            .is_some_and(|resource| resource.active || api.has(Fault::DeprovisionedSignsIn));
        if !signs_in {
            return forbidden();
        }
        if !books.spent.insert(given.clone()) && !api.has(Fault::SsoReplay) {
            return forbidden();
        }
    }
    api.open_session()
}

async fn cloud66_start(State(api): State<Arc<StandIn>>) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, api.cloud66.signin_url())]).into_response()
}

async fn cloud66_callback(
    State(api): State<Arc<StandIn>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (Some(multipass), Some(signature)) = (query.get("multipass"), query.get("signature")) else {
        return (StatusCode::BAD_REQUEST, "<p>malformed</p>").into_response();
    };
    let signed = signature.to_ascii_lowercase() == api.cloud66.signature(multipass);
    if !signed && api.has(Fault::Cloud66Unsigned) {
        return api.open_session();
    }
    if api.cloud66.verify(multipass, signature, Utc::now()).is_err() {
        return forbidden();
    }
    if !api.books.lock().unwrap().spent.insert(multipass.clone()) {
        return forbidden();
    }
    api.open_session()
}

async fn dashboard(State(api): State<Arc<StandIn>>, headers: HeaderMap) -> Response {
    let session = headers
        .get(header::COOKIE)
        .and_then(|value| value.to_str().ok())
        .and_then(|cookies| {
            cookies
                .split(';')
                .find_map(|pair| pair.trim().strip_prefix("session="))
        })
        .map(str::to_string);
    let signed_in = session.is_some_and(|session| api.books.lock().unwrap().sessions.contains(&session));
    if signed_in {
        (StatusCode::OK, "<p>panel</p>").into_response()
    } else {
        (StatusCode::FOUND, [(header::LOCATION, "/dashboard/signed-out")]).into_response()
    }
}
