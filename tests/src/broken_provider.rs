//! A deliberately breakable stand-in add-on provider, for testing
//! `provider check` itself: with no fault it speaks Clever Cloud's and
//! Cloud 66's protocols correctly (in memory), and each [`Fault`] breaks one
//! rule the way a real provider might. A check that passes against every
//! fault would be worthless; the tests assert each fault is named.
//!
//! Its OpenID Connect provider is the real one (`shared::oidc::route`) over
//! an in-memory store of its own; the `Oidc*` faults break it from outside:
//! in that store, or in front of the route.

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
use shared::model::{CodeBinding, OidcGrant, Platform, Session, SignedInIdentity};
use shared::oidc::{Clients, Issuer, OidcApi, ProviderKeys, SigningKeys};
use shared::secret::{random_hex, Secret};
use shared::store::{OidcStore, OpenOutcome, SessionStore, StoreError};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub const ADDON_ID: &str = "check-standin";
pub const PASSWORD: &str = "stand-in-password-0123456789abcdef";
pub const SSO_SALT: &str = "stand-in-sso-salt-0123456789abcdef";
pub const CONFIG_VARS: [&str; 2] = ["CHECK_STANDIN_URL", "CHECK_STANDIN_TOKEN"];
pub const CLOUD66_PROVIDER: &str = "check-standin";
pub const CLOUD66_UID: &str = "standin-cloud66-uid-0123456789abcdef";
/// The app registered with the stand-in's OpenID Connect provider.
pub const OIDC_CLIENT_ID: &str = "check-app";
pub const OIDC_CLIENT_SECRET: &str = "stand-in-oidc-client-secret-0123";
pub const OIDC_REDIRECT_URI: &str = "https://app.check.example/callback";

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
    /// An authorization code redeems more than once.
    OidcCodeReusable,
    /// The PKCE verifier is not checked.
    OidcPkceIgnored,
    /// Any client secret is accepted.
    OidcSecretIgnored,
    /// Authorize redirects to an unregistered redirect URI.
    OidcRedirectsAnywhere,
    /// Authorize redirects an unknown client back to the URI it names.
    OidcUnknownClientRedirected,
    /// `prompt=none` without a session shows a page instead of `login_required`.
    OidcNoLoginRequired,
    /// A new `sub` for every sign-in.
    OidcSubPerSignIn,
    /// The JWKS does not publish the key that signs.
    OidcKeyNotPublished,
    /// The session cookie is readable by scripts (no `HttpOnly`).
    SessionCookieScriptReadable,
    /// The session cookie has no `__Host-` prefix and names a `Domain`.
    SessionCookieSharedWithSubdomains,
    /// A plan change takes longer than the response budget.
    SlowPlanChange,
}

impl Fault {
    pub const ALL: [Fault; 29] = [
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
        Fault::OidcCodeReusable,
        Fault::OidcPkceIgnored,
        Fault::OidcSecretIgnored,
        Fault::OidcRedirectsAnywhere,
        Fault::OidcUnknownClientRedirected,
        Fault::OidcNoLoginRequired,
        Fault::OidcSubPerSignIn,
        Fault::OidcKeyNotPublished,
        Fault::SessionCookieScriptReadable,
        Fault::SessionCookieSharedWithSubdomains,
        Fault::SlowPlanChange,
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
            Fault::OidcCodeReusable => "oidc.code_reuse",
            Fault::OidcPkceIgnored => "oidc.wrong_verifier",
            Fault::OidcSecretIgnored => "oidc.wrong_secret",
            Fault::OidcRedirectsAnywhere => "oidc.unregistered_redirect",
            Fault::OidcUnknownClientRedirected => "oidc.unknown_client",
            Fault::OidcNoLoginRequired => "oidc.no_session",
            Fault::OidcSubPerSignIn => "oidc.sub_stability",
            Fault::OidcKeyNotPublished => "oidc.flow",
            Fault::SessionCookieScriptReadable => "sso.clevercloud.cookie",
            Fault::SessionCookieSharedWithSubdomains => "sso.cloud66.cookie",
            Fault::SlowPlanChange => "timing.budget",
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
    sessions: HashMap<String, Session>,
    oidc_codes: HashMap<String, (CodeBinding, OidcGrant)>,
    oidc_tokens: HashMap<String, OidcGrant>,
}

/// The stand-in's books as the OpenID Connect provider's store.
#[derive(Clone)]
struct Store {
    books: Arc<Mutex<Books>>,
    fault: Option<Fault>,
}

impl SessionStore for Store {
    async fn open_session(&self, _: &str, _: i64, _: &str, _: &Session) -> Result<OpenOutcome, StoreError> {
        Err(StoreError::Internal("the stand-in opens sessions itself".into()))
    }

    async fn get_session(&self, session_id: &str) -> Result<Option<Session>, StoreError> {
        Ok(self.books.lock().unwrap().sessions.get(session_id).cloned())
    }

    async fn end_session(&self, session_id: &str) -> Result<(), StoreError> {
        self.books.lock().unwrap().sessions.remove(session_id);
        Ok(())
    }

    async fn begin_signin(&self, _: &str, _: i64) -> Result<(), StoreError> {
        Ok(())
    }

    async fn finish_signin(&self, _: &str, _: i64) -> Result<bool, StoreError> {
        Ok(false)
    }
}

impl OidcStore for Store {
    async fn save_code(
        &self,
        code: &str,
        binding: &CodeBinding,
        grant: &OidcGrant,
    ) -> Result<(), StoreError> {
        let entry = (binding.clone(), grant.clone());
        self.books.lock().unwrap().oidc_codes.insert(code.into(), entry);
        Ok(())
    }

    async fn redeem_code(
        &self,
        code: &str,
        binding: &CodeBinding,
        now: i64,
        _spent_for: &shared::store::SpentCode,
    ) -> Result<Option<OidcGrant>, StoreError> {
        let mut books = self.books.lock().unwrap();
        let matches = books.oidc_codes.get(code).is_some_and(|(bound, grant)| {
            let challenge_ok =
                bound.code_challenge == binding.code_challenge || self.fault == Some(Fault::OidcPkceIgnored);
            bound.client_id == binding.client_id
                && bound.redirect_uri == binding.redirect_uri
                && challenge_ok
                && grant.expires_at > now
        });
        if !matches {
            return Ok(None);
        }
        if self.fault == Some(Fault::OidcCodeReusable) {
            return Ok(books.oidc_codes.get(code).map(|(_, grant)| grant.clone()));
        }
        Ok(books.oidc_codes.remove(code).map(|(_, grant)| grant))
    }

    async fn save_access_token(&self, token: &str, grant: &OidcGrant) -> Result<(), StoreError> {
        self.books
            .lock()
            .unwrap()
            .oidc_tokens
            .insert(token.into(), grant.clone());
        Ok(())
    }

    async fn get_access_token(&self, token: &str, now: i64) -> Result<Option<OidcGrant>, StoreError> {
        let books = self.books.lock().unwrap();
        Ok(books
            .oidc_tokens
            .get(token)
            .filter(|grant| grant.expires_at > now)
            .cloned())
    }

    /// The stand-in revokes nothing on a reused code (no check asks yet).
    async fn revoke_reused_code(&self, _: &str, _: &str) -> Result<bool, StoreError> {
        Ok(false)
    }
}

/// The stand-in's resources as the provider reads them: the active ones,
/// on the stand-in's one plan.
impl shared::store::ResourceReader for Store {
    async fn get_resource(&self, id: &str) -> Result<Option<shared::model::Resource>, StoreError> {
        let books = self.books.lock().unwrap();
        Ok(books.resources.get(id).map(|resource| {
            let mut read = shared::model::Resource::new(
                id.to_string(),
                Platform::CleverCloud,
                resource.addon_id.clone(),
                "basic".into(),
                shared::model::ConfigMap::default(),
                &shared::model::Timestamp::now(),
            );
            if !resource.active {
                read.status = shared::model::ResourceStatus::Deprovisioned;
            }
            read
        }))
    }
}

/// Two signing keys, made once per test process: the one that signs, and
/// (for [`Fault::OidcKeyNotPublished`]) another.
fn signing_pems() -> &'static [String; 2] {
    static PEMS: OnceLock<[String; 2]> = OnceLock::new();
    PEMS.get_or_init(|| {
        let key = || shared::oidc::new_signing_key_pem().expect("an RSA key");
        [key(), key()]
    })
}

fn provider_keys(pem: &str) -> ProviderKeys {
    ProviderKeys {
        clients: Clients::from_json(&format!(
            r#"[{{"client_id":"{OIDC_CLIENT_ID}","client_secret":"{OIDC_CLIENT_SECRET}","redirect_uris":["{OIDC_REDIRECT_URI}"]}}]"#
        ))
        .expect("the stand-in's client"),
        signing: SigningKeys::from_lookup(&|var: &str| (var == "OIDC_SIGNING_KEY").then(|| pem.to_string()))
            .expect("the stand-in's key"),
    }
}

/// The status and error code of a refused request.
type Refusal = (StatusCode, &'static str);

struct StandIn {
    fault: Option<Fault>,
    clevercloud: CleverCloudSso,
    cloud66: Cloud66Sso,
    books: Arc<Mutex<Books>>,
    /// The real provider, once the stand-in knows its own address (the issuer).
    oidc: OnceLock<OidcApi<Store>>,
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
        books: Arc::default(),
        oidc: OnceLock::new(),
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
        .route("/.well-known/openid-configuration", get(oidc))
        .route("/oidc/authorize", get(oidc))
        .route("/oidc/token", post(oidc))
        .route("/oidc/userinfo", get(oidc).post(oidc))
        .route("/oidc/jwks", get(oidc))
        .with_state(state.clone());
    let base = serve(router);
    let store = Store {
        books: state.books.clone(),
        fault,
    };
    let api = OidcApi::new(
        store,
        Issuer::Fixed(base.clone()),
        provider_keys(&signing_pems()[0]),
    );
    assert!(state.oidc.set(api).is_ok(), "set once");
    base
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

    /// A session (with who signed in, for the OpenID Connect provider), its
    /// cookie, and a 303 to the panel.
    fn open_session(&self, identity: Option<SignedInIdentity>) -> Response {
        let session = random_hex(32);
        let identity = identity.map(|mut identity| {
            if self.has(Fault::OidcSubPerSignIn) {
                identity.subject = random_hex(20);
            }
            identity
        });
        self.books.lock().unwrap().sessions.insert(
            session.clone(),
            Session {
                platform: identity
                    .as_ref()
                    .map_or(Platform::Cloud66, |identity| identity.platform),
                subject_id: String::new(),
                email: None,
                nav_data: None,
                created_at: Utc::now().to_rfc3339(),
                expires_at: i64::MAX,
                identity,
            },
        );
        let cookie = if self.has(Fault::SessionCookieScriptReadable) {
            format!("__Host-addon_session={session}; Path=/; Secure; SameSite=Lax")
        } else if self.has(Fault::SessionCookieSharedWithSubdomains) {
            format!("addon_session={session}; Path=/; Domain=example.com; HttpOnly; Secure; SameSite=Lax")
        } else {
            format!("__Host-addon_session={session}; Path=/; HttpOnly; Secure; SameSite=Lax")
        };
        (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, "/dashboard".to_string()),
                (header::SET_COOKIE, cookie),
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
    if api.has(Fault::SlowPlanChange) {
        tokio::time::sleep(std::time::Duration::from_millis(3300)).await;
    }
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
    let addon_id = {
        let mut books = api.books.lock().unwrap();
        let resource = books
            .resources
            .get(&form.id)
            .filter(|resource| resource.active || api.has(Fault::DeprovisionedSignsIn));
        let Some(addon_id) = resource.map(|resource| resource.addon_id.clone()) else {
            return forbidden();
        };
        if !books.spent.insert(given.clone()) && !api.has(Fault::SsoReplay) {
            return forbidden();
        }
        addon_id
    };
    let account = if form.user_id.is_empty() {
        format!("resource:{}", form.id)
    } else {
        format!("user:{}", form.user_id)
    };
    let signed = matches!(form.proof, Proof::Signature(_));
    api.open_session(Some(SignedInIdentity {
        subject: SignedInIdentity::subject_of(Platform::CleverCloud, &account),
        platform: Platform::CleverCloud,
        email: Some(form.email.clone()).filter(|email| !email.is_empty() && signed),
        email_verified: signed,
        unverified_email: Some(form.email.clone()).filter(|email| !email.is_empty() && !signed),
        name: None,
        resource_id: Some(form.id.clone()),
        plan: Some("basic".into()),
        marketplace_id: Some(addon_id),
        aws_account_id: None,
        auth_time: now,
    }))
}

async fn cloud66_start(State(api): State<Arc<StandIn>>) -> Response {
    let state = format!(
        "__Host-cloud66_signin={}; Max-Age=300; Path=/; HttpOnly; Secure; SameSite=Lax",
        random_hex(32)
    );
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, api.cloud66.signin_url()),
            (header::SET_COOKIE, state),
        ],
    )
        .into_response()
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
        return api.open_session(None);
    }
    if api.cloud66.verify(multipass, signature, Utc::now()).is_err() {
        return forbidden();
    }
    if !api.books.lock().unwrap().spent.insert(multipass.clone()) {
        return forbidden();
    }
    api.open_session(None)
}

async fn dashboard(State(api): State<Arc<StandIn>>, headers: HeaderMap) -> Response {
    let session = headers
        .get(header::COOKIE)
        .and_then(|value| value.to_str().ok())
        .and_then(|cookies| {
            cookies
                .split(';')
                .find_map(|pair| pair.trim().strip_prefix("__Host-addon_session="))
        })
        .map(str::to_string);
    let signed_in = session.is_some_and(|session| api.books.lock().unwrap().sessions.contains_key(&session));
    if signed_in {
        (StatusCode::OK, "<p>panel</p>").into_response()
    } else {
        (StatusCode::FOUND, [(header::LOCATION, "/dashboard/signed-out")]).into_response()
    }
}

/// The OpenID Connect routes: the real provider, with the `Oidc*` faults
/// that act in front of it.
async fn oidc(State(api): State<Arc<StandIn>>, request: axum::extract::Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .map(|query| form_urlencoded::parse(query.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let param = |name: &str| query.get(name).map(String::as_str);
    let path = parts.uri.path().to_string();
    if path == "/oidc/authorize" {
        let redirect = param("redirect_uri").unwrap_or_default();
        let misdirected = (api.has(Fault::OidcRedirectsAnywhere) && redirect != OIDC_REDIRECT_URI)
            || (api.has(Fault::OidcUnknownClientRedirected) && param("client_id") != Some(OIDC_CLIENT_ID));
        if misdirected {
            return (
                StatusCode::FOUND,
                [(header::LOCATION, format!("{redirect}?code=stolen"))],
            )
                .into_response();
        }
        let no_session = !parts.headers.contains_key(header::COOKIE);
        if api.has(Fault::OidcNoLoginRequired) && no_session && param("prompt") == Some("none") {
            return (StatusCode::OK, "<p>open the console</p>").into_response();
        }
    }
    if path == "/oidc/token" && api.has(Fault::OidcSecretIgnored) {
        let right = base64::engine::general_purpose::STANDARD
            .encode(format!("{OIDC_CLIENT_ID}:{OIDC_CLIENT_SECRET}"));
        parts
            .headers
            .insert(header::AUTHORIZATION, format!("Basic {right}").parse().unwrap());
    }
    if path == "/oidc/jwks" && api.has(Fault::OidcKeyNotPublished) {
        let other = provider_keys(&signing_pems()[1]);
        return Json(other.signing.expect("a key").jwks()).into_response();
    }
    let request = lambda_http::http::Request::from_parts(parts, lambda_http::Body::from(body.to_vec()));
    let Some(provider) = api.oidc.get() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let response = shared::oidc::route(provider, request)
        .await
        .unwrap_or_else(|never| match never {});
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, axum::body::Body::from(body.to_vec()))
}
