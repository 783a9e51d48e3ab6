//! A deliberately breakable stand-in Scalingo add-on provider, for testing
//! `provider check --marketplace scalingo`: with no fault it speaks
//! Scalingo's add-on provider API correctly (in memory, its SSO verified
//! by the real `shared::scalingo::sso`), and each [`ScalingoFault`] breaks
//! one rule the way a real provider might; the tests assert each is named.

use crate::fakes::serve;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use shared::scalingo::sso::{parse_query, ScalingoSso};
use shared::secret::{random_hex, Secret};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

pub const USERNAME: &str = "check-scalingo-standin";
pub const PASSWORD: &str = "stand-in-scalingo-password-0123456789";
pub const SSO_SALT: &str = "stand-in-scalingo-sso-salt-0123456789";
pub const CONFIG_VARS: [&str; 2] = ["CHECK_SCALINGO_URL", "CHECK_SCALINGO_TOKEN"];
const PLANS: [&str; 2] = ["basic", "premium"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalingoFault {
    /// 401 without `WWW-Authenticate`.
    NoChallenge,
    /// Checks the user name only.
    PasswordIgnored,
    /// A repeated provision of one uuid makes another add-on.
    NotIdempotent,
    /// Refuses the documented body, which has no `uuid`.
    NeedsUuid,
    /// Answers config vars the manifest does not list.
    WrongConfigNames,
    /// Provisions any plan.
    AnyPlan,
    /// A spent sign-in link signs in again.
    SsoReplay,
    /// No maximum age for a link.
    SsoNoAgeLimit,
    /// The landing page shows the link's token, with no `Referrer-Policy`.
    SsoTokenInPage,
    /// Plan changes by `PUT` only: `PATCH` is a 405.
    PutOnly,
    /// A plan change without a plan is a 400, not Scalingo's 422.
    NoPlan400,
    /// A second suspend is a 409.
    SuspendRepeat409,
    /// A suspended add-on still signs in.
    SuspendedSignsIn,
    /// The tester's `null` deprovision body is a 400.
    NullBodyRefused,
    /// A repeated deprovision answers 404.
    DeprovisionRepeat404,
    /// A deprovisioned add-on still signs in.
    DeprovisionedSignsIn,
}

impl ScalingoFault {
    pub const ALL: [ScalingoFault; 16] = [
        ScalingoFault::NoChallenge,
        ScalingoFault::PasswordIgnored,
        ScalingoFault::NotIdempotent,
        ScalingoFault::NeedsUuid,
        ScalingoFault::WrongConfigNames,
        ScalingoFault::AnyPlan,
        ScalingoFault::SsoReplay,
        ScalingoFault::SsoNoAgeLimit,
        ScalingoFault::SsoTokenInPage,
        ScalingoFault::PutOnly,
        ScalingoFault::NoPlan400,
        ScalingoFault::SuspendRepeat409,
        ScalingoFault::SuspendedSignsIn,
        ScalingoFault::NullBodyRefused,
        ScalingoFault::DeprovisionRepeat404,
        ScalingoFault::DeprovisionedSignsIn,
    ];

    /// The check that must fail against this fault.
    pub fn expected_failure(self) -> &'static str {
        match self {
            ScalingoFault::NoChallenge => "scalingo.auth.provision.missing",
            ScalingoFault::PasswordIgnored => "scalingo.auth.provision.wrong_password",
            ScalingoFault::NotIdempotent => "scalingo.provision.repeat",
            ScalingoFault::NeedsUuid => "scalingo.provision.without_uuid",
            ScalingoFault::WrongConfigNames => "scalingo.provision.new",
            ScalingoFault::AnyPlan => "scalingo.provision.unknown_plan",
            ScalingoFault::SsoReplay => "scalingo.sso.replay",
            ScalingoFault::SsoNoAgeLimit => "scalingo.sso.stale",
            ScalingoFault::SsoTokenInPage => "scalingo.sso.no_referrer",
            ScalingoFault::PutOnly => "scalingo.plan_change.patch",
            ScalingoFault::NoPlan400 => "scalingo.plan_change.no_plan",
            ScalingoFault::SuspendRepeat409 => "scalingo.suspend.repeat",
            ScalingoFault::SuspendedSignsIn => "scalingo.sso.suspended",
            ScalingoFault::NullBodyRefused => "scalingo.deprovision.null_body",
            ScalingoFault::DeprovisionRepeat404 => "scalingo.deprovision.repeat",
            ScalingoFault::DeprovisionedSignsIn => "scalingo.sso.deprovisioned",
        }
    }
}

#[derive(PartialEq)]
enum Status {
    Active,
    Suspended,
    Gone,
}

struct AddOn {
    config: Value,
    status: Status,
}

#[derive(Default)]
struct Books {
    /// id → add-on.
    addons: HashMap<String, AddOn>,
    /// uuid → id.
    uuids: HashMap<String, String>,
    spent: HashSet<String>,
    sessions: HashSet<String>,
}

struct StandIn {
    fault: Option<ScalingoFault>,
    sso: ScalingoSso,
    books: Mutex<Books>,
}

/// Serves the stand-in on a free loopback port; returns its base URL.
pub fn spawn(fault: Option<ScalingoFault>) -> String {
    let state = Arc::new(StandIn {
        fault,
        sso: ScalingoSso::new(Secret::new(SSO_SALT), None, 3600),
        books: Mutex::default(),
    });
    let router = Router::new()
        .route("/scalingo/resources", post(provision))
        .route(
            "/scalingo/resources/{id}",
            put(change_plan).patch(change_plan_by_patch).delete(deprovision),
        )
        .route("/scalingo/resources/{id}/{action}", post(suspend_or_resume))
        .route("/scalingo/sso", get(sso))
        .route("/dashboard", get(dashboard))
        .with_state(state);
    serve(router)
}

/// The stand-in's manifest, as `make run` prints one.
pub fn manifest(base: &str) -> Value {
    let urls =
        json!({"base_url": format!("{base}/scalingo/resources"), "sso_url": format!("{base}/scalingo/sso")});
    json!({
        "name": USERNAME, "username": USERNAME, "password": PASSWORD, "sso_salt": SSO_SALT,
        "config_vars": CONFIG_VARS, "production": urls, "test": urls,
        "plans": PLANS.iter().map(|plan| json!({"name": plan, "display_name": plan, "price": 0, "description": plan})).collect::<Vec<_>>(),
    })
}

fn refusal(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        [
            (header::CONTENT_TYPE, "text/html"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        "<p>Sign-in refused</p>",
    )
        .into_response()
}

impl StandIn {
    fn has(&self, fault: ScalingoFault) -> bool {
        self.fault == Some(fault)
    }

    /// Basic auth, as the fault allows: the refusal, if any.
    fn refuse(&self, headers: &HeaderMap) -> Option<Response> {
        use base64::Engine as _;
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|value| value.strip_prefix("Basic "))
            .and_then(|encoded| base64::engine::general_purpose::STANDARD.decode(encoded).ok())
            .and_then(|decoded| String::from_utf8(decoded).ok())
            .unwrap_or_default();
        let (user, password) = given.split_once(':').unwrap_or_default();
        if user == USERNAME && (password == PASSWORD || self.has(ScalingoFault::PasswordIgnored)) {
            return None;
        }
        let mut response = refusal(StatusCode::UNAUTHORIZED, "unauthorized");
        if !self.has(ScalingoFault::NoChallenge) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Basic realm=\"add-on\"".parse().unwrap(),
            );
        }
        Some(response)
    }

    fn config(&self, id: &str) -> Value {
        let mut config =
            json!({CONFIG_VARS[0]: format!("https://check.example/{id}"), CONFIG_VARS[1]: random_hex(16)});
        if self.has(ScalingoFault::WrongConfigNames) {
            config["OTHER_VAR"] = "x".into();
        }
        config
    }
}

async fn provision(State(state): State<Arc<StandIn>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refused) = state.refuse(&headers) {
        return refused;
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return refusal(StatusCode::BAD_REQUEST, "the body is not JSON");
    };
    let Some(plan) = request["plan"].as_str() else {
        return refusal(StatusCode::BAD_REQUEST, "plan is required");
    };
    let uuid = request["uuid"].as_str();
    if uuid.is_none() && state.has(ScalingoFault::NeedsUuid) {
        return refusal(StatusCode::BAD_REQUEST, "uuid is required");
    }
    if !PLANS.contains(&plan) && !state.has(ScalingoFault::AnyPlan) {
        return refusal(StatusCode::UNPROCESSABLE_ENTITY, "no such plan");
    }
    let mut books = state.books.lock().unwrap();
    let known = uuid
        .filter(|_| !state.has(ScalingoFault::NotIdempotent))
        .and_then(|uuid| books.uuids.get(uuid).cloned());
    let id = match known {
        Some(id) => id,
        None => {
            let id = format!("res_sc_{}", random_hex(16));
            let addon = AddOn {
                config: state.config(&id),
                status: Status::Active,
            };
            books.addons.insert(id.clone(), addon);
            if let Some(uuid) = uuid {
                books.uuids.insert(uuid.to_string(), id.clone());
            }
            id
        }
    };
    let config = books.addons[&id].config.clone();
    (
        StatusCode::CREATED,
        Json(json!({"id": id, "config": config, "message": "ready"})),
    )
        .into_response()
}

async fn change_plan_by_patch(
    state: State<Arc<StandIn>>,
    id: Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if state.has(ScalingoFault::PutOnly) {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    change_plan(state, id, headers, body).await
}

async fn change_plan(
    State(state): State<Arc<StandIn>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = state.refuse(&headers) {
        return refused;
    }
    let Some(plan) = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|body| body["plan"].as_str().map(str::to_string))
    else {
        let status = if state.has(ScalingoFault::NoPlan400) {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        return refusal(status, "plan is required");
    };
    if !PLANS.contains(&plan.as_str()) {
        return refusal(StatusCode::UNPROCESSABLE_ENTITY, "no such plan");
    }
    let books = state.books.lock().unwrap();
    match books.addons.get(&id).filter(|addon| addon.status != Status::Gone) {
        Some(addon) => Json(json!({"config": addon.config, "message": "changed"})).into_response(),
        None => refusal(StatusCode::NOT_FOUND, "no such add-on"),
    }
}

async fn suspend_or_resume(
    State(state): State<Arc<StandIn>>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = state.refuse(&headers) {
        return refused;
    }
    let target = match action.as_str() {
        "suspend" => Status::Suspended,
        "resume" => Status::Active,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let mut books = state.books.lock().unwrap();
    let Some(addon) = books
        .addons
        .get_mut(&id)
        .filter(|addon| addon.status != Status::Gone)
    else {
        return refusal(StatusCode::NOT_FOUND, "no such add-on");
    };
    if addon.status == target && state.has(ScalingoFault::SuspendRepeat409) {
        return refusal(StatusCode::CONFLICT, "already so");
    }
    addon.status = target;
    Json(json!({"message": format!("{action}d")})).into_response()
}

async fn deprovision(
    State(state): State<Arc<StandIn>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = state.refuse(&headers) {
        return refused;
    }
    if !body.is_empty() && state.has(ScalingoFault::NullBodyRefused) {
        return refusal(StatusCode::BAD_REQUEST, "unexpected body");
    }
    let mut books = state.books.lock().unwrap();
    let Some(addon) = books.addons.get_mut(&id) else {
        return refusal(StatusCode::NOT_FOUND, "no such add-on");
    };
    if addon.status == Status::Gone && state.has(ScalingoFault::DeprovisionRepeat404) {
        return refusal(StatusCode::NOT_FOUND, "no such add-on");
    }
    addon.status = Status::Gone;
    StatusCode::NO_CONTENT.into_response()
}

async fn sso(State(state): State<Arc<StandIn>>, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let Ok(link) = parse_query(&query) else {
        return (StatusCode::BAD_REQUEST, "malformed").into_response();
    };
    let now = if state.has(ScalingoFault::SsoNoAgeLimit) {
        // Judged as of its own time: never too old.
        link.timestamp
            .parse()
            .ok()
            .and_then(|at| chrono::DateTime::from_timestamp(at, 0))
            .unwrap_or_default()
    } else {
        chrono::Utc::now()
    };
    if state.sso.verify(&link, now).is_err() {
        return forbidden();
    }
    let mut books = state.books.lock().unwrap();
    let signs_in = books
        .addons
        .get(&link.id)
        .is_some_and(|addon| match addon.status {
            Status::Active => true,
            Status::Suspended => state.has(ScalingoFault::SuspendedSignsIn),
            Status::Gone => state.has(ScalingoFault::DeprovisionedSignsIn),
        });
    if !signs_in {
        return forbidden();
    }
    if !books.spent.insert(query.clone()) && !state.has(ScalingoFault::SsoReplay) {
        return forbidden();
    }
    let session = random_hex(16);
    books.sessions.insert(session.clone());
    let cookie = format!("__Host-session={session}; Path=/; HttpOnly; Secure; SameSite=Lax");
    if state.has(ScalingoFault::SsoTokenInPage) {
        // A page at the link's own URL, which shows it (and whose links
        // would send it on as Referer).
        return (
            StatusCode::OK,
            [(header::SET_COOKIE, cookie)],
            format!("<p>Welcome</p><a href=\"/dashboard?from={query}\">panel</a>"),
        )
            .into_response();
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/dashboard".to_string()),
            (header::SET_COOKIE, cookie),
            (header::REFERRER_POLICY, "no-referrer".to_string()),
        ],
    )
        .into_response()
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
