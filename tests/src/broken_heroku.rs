//! A deliberately breakable stand-in Heroku add-on provider, for testing
//! `provider check --marketplace heroku`: with no fault it speaks Heroku's
//! Add-on Partner API v3 correctly (in memory, its SSO verified by the real
//! `shared::heroku::sso`), and each [`HerokuFault`] breaks one rule the way
//! a real provider might; the tests assert each is named.

use crate::fakes::serve;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use shared::heroku::sso::{parse_form, HerokuSso, ProofKind};
use shared::secret::{random_hex, Secret};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

pub const ADDON_ID: &str = "check-heroku-standin";
pub const PASSWORD: &str = "stand-in-heroku-password-0123456789";
pub const SSO_SALT: &str = "stand-in-heroku-sso-salt-0123456789";
pub const CONFIG_VARS: [&str; 2] = ["CHECK_HEROKU_URL", "CHECK_HEROKU_TOKEN"];
const PLANS: [&str; 2] = ["basic", "premium"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HerokuFault {
    /// 401 without `WWW-Authenticate`.
    NoChallenge,
    /// Checks the user name only.
    PasswordIgnored,
    /// A repeated provision makes another add-on.
    NotIdempotent,
    /// Answers config vars the manifest does not list.
    WrongConfigNames,
    /// Answers 406 to an `Accept` it does not expect.
    StrictAccept,
    /// Provisions any plan.
    AnyPlan,
    /// A spent sign-in proof signs in again.
    SsoReplay,
    /// No maximum age for an SSO timestamp.
    SsoNoAgeLimit,
    /// Knows only `resource_token` and `token`, not the user-scoped token.
    SsoNoUserScoped,
    /// Checks the weakest proof present, so a valid one rescues a forged one.
    SsoWeakestProof,
    /// Deprovision answers 200 with a body.
    Deprovision200,
    /// A repeated deprovision answers 404.
    DeprovisionRepeat404,
    /// A plan change for a uuid never provisioned answers 200.
    PlanChangeUnknown200,
    /// A deprovisioned add-on still signs in.
    DeprovisionedSignsIn,
}

impl HerokuFault {
    pub const ALL: [HerokuFault; 14] = [
        HerokuFault::NoChallenge,
        HerokuFault::PasswordIgnored,
        HerokuFault::NotIdempotent,
        HerokuFault::WrongConfigNames,
        HerokuFault::StrictAccept,
        HerokuFault::AnyPlan,
        HerokuFault::SsoReplay,
        HerokuFault::SsoNoAgeLimit,
        HerokuFault::SsoNoUserScoped,
        HerokuFault::SsoWeakestProof,
        HerokuFault::Deprovision200,
        HerokuFault::DeprovisionRepeat404,
        HerokuFault::PlanChangeUnknown200,
        HerokuFault::DeprovisionedSignsIn,
    ];

    /// The check that must fail against this fault.
    pub fn expected_failure(self) -> &'static str {
        match self {
            HerokuFault::NoChallenge => "heroku.auth.provision.missing",
            HerokuFault::PasswordIgnored => "heroku.auth.provision.wrong_password",
            HerokuFault::NotIdempotent => "heroku.provision.repeat",
            HerokuFault::WrongConfigNames => "heroku.provision.new",
            HerokuFault::StrictAccept => "heroku.provision.any_accept",
            HerokuFault::AnyPlan => "heroku.provision.unknown_plan",
            HerokuFault::SsoReplay => "heroku.sso.replay",
            HerokuFault::SsoNoAgeLimit => "heroku.sso.stale",
            HerokuFault::SsoNoUserScoped => "heroku.sso.user_scoped",
            HerokuFault::SsoWeakestProof => "heroku.sso.forged_beside_valid",
            HerokuFault::Deprovision200 => "heroku.deprovision.first",
            HerokuFault::DeprovisionRepeat404 => "heroku.deprovision.repeat",
            HerokuFault::PlanChangeUnknown200 => "heroku.plan_change.unknown_uuid",
            HerokuFault::DeprovisionedSignsIn => "heroku.sso.deprovisioned",
        }
    }
}

struct AddOn {
    id: String,
    config: serde_json::Value,
    plan: String,
    active: bool,
}

#[derive(Default)]
struct Books {
    /// uuid → add-on.
    addons: HashMap<String, AddOn>,
    spent: HashSet<String>,
    sessions: HashSet<String>,
}

struct StandIn {
    fault: Option<HerokuFault>,
    sso: HerokuSso,
    books: Mutex<Books>,
}

/// Serves the stand-in on a free loopback port; returns its base URL.
pub fn spawn(fault: Option<HerokuFault>) -> String {
    let state = Arc::new(StandIn {
        fault,
        sso: HerokuSso::new(Secret::new(SSO_SALT), None, 300),
        books: Mutex::default(),
    });
    let router = Router::new()
        .route("/heroku/resources", post(provision))
        .route("/heroku/resources/{uuid}", put(change_plan).delete(deprovision))
        .route("/heroku/sso/login", post(sso))
        .route("/dashboard", get(dashboard))
        .with_state(state);
    serve(router)
}

/// The stand-in's v3 manifest, as `make run` prints one.
pub fn manifest(base: &str) -> serde_json::Value {
    let urls = serde_json::json!({"base_url": format!("{base}/heroku/resources"), "sso_url": format!("{base}/heroku/sso/login")});
    serde_json::json!({
        "id": ADDON_ID, "name": ADDON_ID,
        "api": {"config_vars_prefix": "CHECK_HEROKU", "config_vars": CONFIG_VARS, "password": PASSWORD,
                "sso_salt": SSO_SALT, "regions": ["us"], "requires": [], "production": urls, "test": urls,
                "version": "3"},
    })
}

fn refusal(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": "refused", "message": message})),
    )
        .into_response()
}

impl StandIn {
    fn has(&self, fault: HerokuFault) -> bool {
        self.fault == Some(fault)
    }

    /// Basic auth, as the fault allows: the refusal, if any.
    fn refuse(&self, headers: &HeaderMap) -> Option<Response> {
        let expected = base64_basic(ADDON_ID, PASSWORD);
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let user_only = given
            .strip_prefix("Basic ")
            .and_then(|encoded| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.decode(encoded).ok()
            })
            .and_then(|decoded| String::from_utf8(decoded).ok())
            .is_some_and(|pair| pair.split(':').next() == Some(ADDON_ID));
        if given == expected || (self.has(HerokuFault::PasswordIgnored) && user_only) {
            return None;
        }
        let mut response = refusal(StatusCode::UNAUTHORIZED, "unauthorized");
        if !self.has(HerokuFault::NoChallenge) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Basic realm=\"add-on\"".parse().unwrap(),
            );
        }
        Some(response)
    }

    fn config(&self, id: &str) -> serde_json::Value {
        let mut config = serde_json::Map::new();
        config.insert(
            CONFIG_VARS[0].into(),
            format!("https://check.example/{id}").into(),
        );
        config.insert(CONFIG_VARS[1].into(), random_hex(16).into());
        if self.has(HerokuFault::WrongConfigNames) {
            config.insert("OTHER_VAR".into(), "x".into());
        }
        config.into()
    }
}

fn base64_basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

async fn provision(State(state): State<Arc<StandIn>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refused) = state.refuse(&headers) {
        return refused;
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if state.has(HerokuFault::StrictAccept) && !accept.starts_with("application/vnd.heroku-addons+json") {
        return refusal(StatusCode::NOT_ACCEPTABLE, "not acceptable");
    }
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return refusal(StatusCode::BAD_REQUEST, "the body is not JSON");
    };
    let (Some(uuid), Some(plan)) = (request["uuid"].as_str(), request["plan"].as_str()) else {
        return refusal(StatusCode::BAD_REQUEST, "uuid and plan are required");
    };
    if shared::heroku::resource_id(uuid).is_none() {
        return refusal(StatusCode::BAD_REQUEST, "uuid must be a UUID");
    }
    if !PLANS.contains(&plan) && !state.has(HerokuFault::AnyPlan) {
        return refusal(StatusCode::UNPROCESSABLE_ENTITY, "no such plan");
    }
    let mut books = state.books.lock().unwrap();
    let fresh = |state: &StandIn| {
        let id = format!("res_{}", random_hex(8));
        AddOn {
            config: state.config(&id),
            id,
            plan: plan.to_string(),
            active: true,
        }
    };
    if state.has(HerokuFault::NotIdempotent) || !books.addons.contains_key(uuid) {
        books.addons.insert(uuid.to_string(), fresh(&state));
    }
    let addon = &books.addons[uuid];
    Json(serde_json::json!({"id": addon.id, "config": addon.config, "message": "ready"})).into_response()
}

async fn change_plan(
    State(state): State<Arc<StandIn>>,
    Path(uuid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = state.refuse(&headers) {
        return refused;
    }
    let plan = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|body| body["plan"].as_str().map(str::to_string))
        .unwrap_or_default();
    if !PLANS.contains(&plan.as_str()) {
        return refusal(StatusCode::UNPROCESSABLE_ENTITY, "no such plan");
    }
    let mut books = state.books.lock().unwrap();
    match books.addons.get_mut(&uuid).filter(|addon| addon.active) {
        Some(addon) => {
            addon.plan = plan;
            Json(serde_json::json!({"config": addon.config, "message": "changed"})).into_response()
        }
        None if state.has(HerokuFault::PlanChangeUnknown200) => {
            Json(serde_json::json!({"config": state.config("x"), "message": "changed"})).into_response()
        }
        None => refusal(StatusCode::NOT_FOUND, "no such add-on"),
    }
}

async fn deprovision(
    State(state): State<Arc<StandIn>>,
    Path(uuid): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = state.refuse(&headers) {
        return refused;
    }
    let mut books = state.books.lock().unwrap();
    let Some(addon) = books.addons.get_mut(&uuid) else {
        return refusal(StatusCode::NOT_FOUND, "no such add-on");
    };
    if !addon.active && state.has(HerokuFault::DeprovisionRepeat404) {
        return refusal(StatusCode::NOT_FOUND, "no such add-on");
    }
    addon.active = false;
    if state.has(HerokuFault::Deprovision200) {
        return Json(serde_json::json!({"message": "gone"})).into_response();
    }
    StatusCode::NO_CONTENT.into_response()
}

fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/html")],
        "<p>Sign-in refused</p>",
    )
        .into_response()
}

async fn sso(State(state): State<Arc<StandIn>>, body: Bytes) -> Response {
    let Ok(mut form) = parse_form(&body) else {
        return (StatusCode::BAD_REQUEST, "malformed").into_response();
    };
    if state.has(HerokuFault::SsoNoUserScoped) && form.kind == ProofKind::UserScoped {
        return forbidden();
    }
    if state.has(HerokuFault::SsoWeakestProof) && form.kind == ProofKind::UserScoped {
        // Falls back on the resource token sent beside it.
        if let Ok(weaker) = parse_form(&strip_field(&body, "user_scoped_resource_token")) {
            form = weaker;
        }
    }
    let now = if state.has(HerokuFault::SsoNoAgeLimit) {
        // Judged as of its own time: never too old.
        form.timestamp
            .parse()
            .ok()
            .and_then(|at| chrono::DateTime::from_timestamp(at, 0))
            .unwrap_or_default()
    } else {
        chrono::Utc::now()
    };
    if state.sso.verify(&form, now).is_err() {
        return forbidden();
    }
    let mut books = state.books.lock().unwrap();
    let known = books
        .addons
        .get(&form.uuid)
        .is_some_and(|addon| addon.active || state.has(HerokuFault::DeprovisionedSignsIn));
    if !known {
        return forbidden();
    }
    let proof = String::from_utf8_lossy(&body).to_string();
    if !books.spent.insert(proof) && !state.has(HerokuFault::SsoReplay) {
        return forbidden();
    }
    let session = random_hex(16);
    books.sessions.insert(session.clone());
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/dashboard".to_string()),
            (
                header::SET_COOKIE,
                format!("__Host-session={session}; Path=/; HttpOnly; Secure; SameSite=Lax"),
            ),
        ],
    )
        .into_response()
}

fn strip_field(body: &[u8], name: &str) -> Vec<u8> {
    form_urlencoded::parse(body)
        .filter(|(field, _)| field != name)
        .fold(
            form_urlencoded::Serializer::new(String::new()),
            |mut out, (field, value)| {
                out.append_pair(&field, &value);
                out
            },
        )
        .finish()
        .into_bytes()
}

async fn dashboard(State(state): State<Arc<StandIn>>, headers: HeaderMap) -> Response {
    let session = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|cookie| {
            cookie
                .split(';')
                .find_map(|pair| pair.trim().strip_prefix("__Host-session="))
        })
        .unwrap_or_default()
        .to_string();
    if state.books.lock().unwrap().sessions.contains(&session) {
        (StatusCode::OK, "<p>panel</p>").into_response()
    } else {
        StatusCode::UNAUTHORIZED.into_response()
    }
}
