//! The Cloud 66 link flow (cloud66-partner-integration.md): Cloud 66 sends
//! its user to `GET /cloud66/link?uid=…&email=…&callback=…`; we find or
//! create the account by email, provision its partner-side resource once,
//! POST `link_uid`, `user_email` and that resource's details to our partner
//! endpoint, and send the user back to `callback`.
//!
//! The query comes from a browser and proves nothing: Cloud 66's answer to
//! the POST decides whether the link holds, and the pages never show account
//! data. `callback` must be an `https` URL on an allowed host, or nobody is
//! redirected anywhere.

use super::pending::{self, PendingLink};
use super::sso::ACTOR;
use crate::config::{self, ConfigError};
use crate::html::{self, page, redirect};
use crate::model::{
    canonical_email, Account, AuditAction, AuditEvent, Cloud66Link, ConfigMap, LinkStatus, Platform,
    Resource, SubjectKind, Timestamp,
};
use crate::provisioner::{ProvisionContext, Provisioner, ProvisionerError, VendorProvisioner};
use crate::secret::random_hex;
use crate::signin;
use crate::store::{DynamoStore, LinkStore, ResourceReader, SessionStore, StoreError, UpdateOutcome};
use lambda_http::http::{header, HeaderMap, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use maud::html;
use reqwest::Url;
use std::convert::Infallible;
use std::time::{Duration, Instant};

/// The plan recorded on resources provisioned through Cloud 66.
const CLOUD66_PLAN: &str = "cloud66";
/// How often saving a link's outcome is retried after a concurrent save.
const SAVE_ATTEMPTS: u32 = 5;

/// A validated link request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRequest {
    pub uid: String,
    /// Normalised.
    pub email: String,
    pub callback: Url,
}

/// Checks the three query parameters; every problem found is listed, in
/// words a person can act on.
pub fn parse_link_query(
    uid: Option<&str>,
    email: Option<&str>,
    callback: Option<&str>,
    allowed_hosts: &[String],
) -> Result<LinkRequest, Vec<String>> {
    let mut problems = Vec::new();
    let uid = uid.map(str::trim).unwrap_or("");
    if !(1..=128).contains(&uid.len())
        || !uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        problems.push("`uid` is missing or is not a Cloud 66 user id.".to_string());
    }
    let email = canonical_email(email.unwrap_or("")).unwrap_or_default();
    if email.is_empty() {
        problems.push("`email` is missing or is not a plain (ASCII) email address.".to_string());
    }
    let callback = match callback.map(Url::parse) {
        Some(Ok(url)) if is_allowed_callback(&url, allowed_hosts) => Some(url),
        _ => {
            problems.push("`callback` is missing or is not an https address on Cloud 66.".to_string());
            None
        }
    };
    match callback {
        Some(callback) if problems.is_empty() => Ok(LinkRequest {
            uid: uid.to_string(),
            email,
            callback,
        }),
        _ => Err(problems),
    }
}

/// `https`, no user name or password (`https://app.cloud66.com@evil.example/`
/// names the host `evil.example`), the default port, and a host that is one
/// of `allowed_hosts` exactly (so `app.cloud66.com.evil.example` is not).
fn is_allowed_callback(url: &Url, allowed_hosts: &[String]) -> bool {
    url.scheme() == "https"
        && url.username().is_empty()
        && url.password().is_none()
        && url.port().is_none()
        && url.host_str().is_some_and(|host| {
            allowed_hosts
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(host))
        })
}

/// How the partner endpoint wants its POST body (`CLOUD66_PARTNER_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    Json,
    Form,
}

/// What Cloud 66 said to the link POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartnerAnswer {
    Linked,
    /// 403 "… is already linked to this account": the link holds.
    AlreadyLinked(String),
    /// Any other refusal, with Cloud 66's message.
    Refused(String),
    /// No usable answer within the time limit (network errors, 5xx, time-out).
    NoAnswer(String),
}

/// The client of the vendor's Cloud 66 partner endpoint.
#[derive(Debug, Clone)]
pub struct PartnerClient {
    http: reqwest::Client,
    endpoint: String,
    format: PayloadFormat,
    time_limit: Duration,
}

/// First pause between retries; it doubles after each.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);

impl PartnerClient {
    pub fn new(endpoint: String, format: PayloadFormat, time_limit: Duration) -> Self {
        Self {
            http: reqwest::Client::new(),
            endpoint,
            format,
            time_limit,
        }
    }

    /// POSTs the link, retrying network errors and 5xx with backoff until
    /// `time_limit` has passed in all.
    pub async fn post_link(&self, fields: &[(String, String)]) -> PartnerAnswer {
        let deadline = Instant::now() + self.time_limit;
        let mut delay = FIRST_RETRY_DELAY;
        let mut last_failure = "no attempt was made".to_string();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return PartnerAnswer::NoAnswer(last_failure);
            }
            let request = match self.format {
                PayloadFormat::Json => {
                    let body: serde_json::Map<String, serde_json::Value> = fields
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone().into()))
                        .collect();
                    self.http.post(&self.endpoint).json(&body)
                }
                PayloadFormat::Form => self.http.post(&self.endpoint).form(fields),
            };
            let attempt = async {
                let response = request.send().await?;
                let status = response.status();
                Ok::<_, reqwest::Error>((status, response.text().await?))
            };
            match tokio::time::timeout(remaining, attempt).await {
                Err(_) => return PartnerAnswer::NoAnswer("Cloud 66 did not answer in time".into()),
                Ok(Err(err)) => last_failure = format!("could not reach Cloud 66: {}", err.without_url()),
                Ok(Ok((status, _))) if status.is_success() => return PartnerAnswer::Linked,
                Ok(Ok((status, body))) if status.is_server_error() => {
                    last_failure = format!("Cloud 66 answered {status}: {}", partner_message(&body));
                }
                Ok(Ok((status, body))) => {
                    let message = partner_message(&body);
                    if status == reqwest::StatusCode::FORBIDDEN
                        && message.to_lowercase().contains("already linked")
                    {
                        return PartnerAnswer::AlreadyLinked(message);
                    }
                    return PartnerAnswer::Refused(if status == reqwest::StatusCode::FORBIDDEN {
                        message
                    } else {
                        format!("Cloud 66 answered {status}: {message}")
                    });
                }
            }
            tracing::info!(failure = %last_failure, "retrying the Cloud 66 link");
            tokio::time::sleep(delay.min(deadline.saturating_duration_since(Instant::now()))).await;
            delay *= 2;
        }
    }
}

/// Cloud 66's reason from a refusal body: a JSON `message`/`error`, or the
/// text itself, kept short.
fn partner_message(body: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|value| {
            ["message", "error", "errors", "description"]
                .iter()
                .find_map(|key| value.get(*key))
                .map(|field| match field {
                    serde_json::Value::String(text) => text.clone(),
                    other => other.to_string(),
                })
        });
    let message = from_json.unwrap_or_else(|| body.trim().to_string());
    let message: String = message.chars().filter(|c| !c.is_control()).take(500).collect();
    if message.is_empty() {
        "no reason given".into()
    } else {
        message
    }
}

/// Everything the `cloud66-link` function needs, built once at cold start.
pub struct Cloud66LinkApi<S, P> {
    store: S,
    provisioner: P,
    partner: PartnerClient,
    callback_hosts: Vec<String>,
    verification: Verification,
}

/// Who the link acts for (`CLOUD66_LINK_VERIFY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// `sso` (the default): only for a user who signed in with Cloud 66 as
    /// the email being linked; nothing is created or posted before that.
    CloudSignIn,
    /// `none`: for whoever opens the link, as Cloud 66's own document has it;
    /// only Cloud 66's check of the uid and email stands in the way.
    Unverified,
}

impl<S, P> Cloud66LinkApi<S, P> {
    pub fn new(
        store: S,
        provisioner: P,
        partner: PartnerClient,
        callback_hosts: Vec<String>,
        verification: Verification,
    ) -> Self {
        Self {
            store,
            provisioner,
            partner,
            callback_hosts,
            verification,
        }
    }
}

impl Cloud66LinkApi<DynamoStore, VendorProvisioner> {
    /// Reads `TABLE_NAME`, `CLOUD66_PARTNER_ENDPOINT`, `CLOUD66_CALLBACK_HOSTS`,
    /// `CLOUD66_PARTNER_FORMAT`, `CLOUD66_PARTNER_TIME_LIMIT_SECONDS`,
    /// `CLOUD66_LINK_VERIFY` (with `CLOUD66_PROVIDER`) and the
    /// provisioner's variables (`ADDON_ID`, `ADDON_CONFIG_VARS`, `RESOURCE_BASE_URL`).
    pub async fn from_env() -> Result<Self, ConfigError> {
        let environment = config::Environment::load().await?;
        let lookup = environment.lookup();
        let endpoint = config::base_url(
            "CLOUD66_PARTNER_ENDPOINT",
            config::required(&lookup, "CLOUD66_PARTNER_ENDPOINT")?,
        )?;
        let callback_hosts = config::comma_list(
            &config::optional(&lookup, "CLOUD66_CALLBACK_HOSTS").unwrap_or_else(|| "app.cloud66.com".into()),
        );
        if callback_hosts.is_empty() {
            return Err(ConfigError::new("CLOUD66_CALLBACK_HOSTS", "lists no host"));
        }
        let format = match config::optional(&lookup, "CLOUD66_PARTNER_FORMAT").as_deref() {
            None | Some("json") => PayloadFormat::Json,
            Some("form") => PayloadFormat::Form,
            Some(_) => {
                return Err(ConfigError::new(
                    "CLOUD66_PARTNER_FORMAT",
                    "must be `json` or `form`",
                ))
            }
        };
        let time_limit = config::seconds(&lookup, "CLOUD66_PARTNER_TIME_LIMIT_SECONDS", 6)?;
        let verification = match config::optional(&lookup, "CLOUD66_LINK_VERIFY").as_deref() {
            None | Some("sso") => Verification::CloudSignIn,
            Some("none") => Verification::Unverified,
            Some(_) => return Err(ConfigError::new("CLOUD66_LINK_VERIFY", "must be `sso` or `none`")),
        };
        if verification == Verification::CloudSignIn
            && config::optional(&lookup, "CLOUD66_PROVIDER").is_none()
        {
            return Err(ConfigError::new(
                "CLOUD66_LINK_VERIFY",
                "is `sso` (the default), but Cloud 66 SSO is not configured (CLOUD66_PROVIDER): configure it, or set `none`",
            ));
        }
        let addon_id = config::required(&lookup, "ADDON_ID")?;
        let provisioner = VendorProvisioner::from_lookup(&lookup, &addon_id)?;
        let table = config::required(&lookup, "TABLE_NAME")?;
        let store = DynamoStore::new(DynamoStore::client_from_env().await, table);
        let partner = PartnerClient::new(endpoint, format, Duration::from_secs(time_limit.unsigned_abs()));
        Ok(Self::new(
            store,
            provisioner,
            partner,
            callback_hosts,
            verification,
        ))
    }
}

/// What the browser is told.
enum Outcome {
    Linked,
    Refused(String),
    Pending,
    OtherAccount,
}

#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Provisioner(#[from] ProvisionerError),
}

/// The `cloud66-link` function's routes.
pub async fn route<S: LinkStore + ResourceReader + SessionStore, P: Provisioner>(
    api: &Cloud66LinkApi<S, P>,
    request: Request,
) -> Result<Response<Body>, Infallible> {
    Ok(match request.uri().path() {
        pending::RESUME_PATH => resume(api, &request).await,
        _ => link(api, &request).await,
    })
}

/// `GET /cloud66/link?uid=…&email=…&callback=…`
async fn link<S: LinkStore + ResourceReader + SessionStore, P: Provisioner>(
    api: &Cloud66LinkApi<S, P>,
    request: &Request,
) -> Response<Body> {
    let query = request.query_string_parameters_ref();
    let param = |name: &str| query.and_then(|query| query.first(name));
    let parsed = parse_link_query(
        param("uid"),
        param("email"),
        param("callback"),
        &api.callback_hosts,
    );
    let link_request = match parsed {
        Ok(link_request) => link_request,
        Err(problems) => return invalid_request_page(&problems),
    };
    // A uid already linked needs no sign-in to say so (reads only).
    match api.store.get_link(&link_request.uid).await {
        Ok(Some(existing)) => {
            if let Some(outcome) = settled(&existing, &link_request) {
                return respond(&link_request, Ok(outcome));
            }
        }
        Ok(None) => {}
        Err(err) => return respond(&link_request, Err(err.into())),
    }
    if api.verification == Verification::Unverified {
        return respond(&link_request, run(api, &link_request).await);
    }
    match signed_in_as(api, request.headers(), &link_request.email).await {
        // Already signed in with Cloud 66 as this email: no round trip.
        Ok(true) => respond(&link_request, run(api, &link_request).await),
        Ok(false) => match await_signin(api, &link_request).await {
            Ok(response) => response,
            Err(err) => respond(&link_request, Err(err)),
        },
        Err(err) => respond(&link_request, Err(err.into())),
    }
}

/// Whether the browser holds a Cloud 66 session for `email`.
async fn signed_in_as<S: SessionStore>(
    api: &Cloud66LinkApi<S, impl Provisioner>,
    headers: &HeaderMap,
    email: &str,
) -> Result<bool, StoreError> {
    let Some(session_id) = signin::session_id(headers) else {
        return Ok(false);
    };
    let session = api.store.get_session(&session_id).await?;
    Ok(session.is_some_and(|session| {
        session.platform == Platform::Cloud66 && session.email.as_deref() == Some(email)
    }))
}

/// Keeps the request server-side, bound to this browser, and sends the
/// browser to sign in with Cloud 66; nothing else is written.
async fn await_signin<S: LinkStore, P>(
    api: &Cloud66LinkApi<S, P>,
    link_request: &LinkRequest,
) -> Result<Response<Body>, LinkError> {
    let token = random_hex(pending::TOKEN_BYTES);
    let pending_link = PendingLink {
        uid: link_request.uid.clone(),
        email: link_request.email.clone(),
        callback: link_request.callback.to_string(),
        expires_at: chrono::Utc::now().timestamp() + pending::PENDING_TTL_SECONDS,
    };
    api.store
        .save_pending_link(&signin::fingerprint(&token), &pending_link)
        .await?;
    tracing::info!(uid = %link_request.uid, "link waiting for the user's Cloud 66 sign-in");
    let mut response = redirect(StatusCode::FOUND, "/cloud66/sso/start");
    if let Some(cookie) = pending::cookie(&token, pending::PENDING_TTL_SECONDS) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// `GET /cloud66/link/resume`, where the Cloud 66 sign-in sends a browser
/// with a pending link: finishes it if the user signed in as its email.
async fn resume<S: LinkStore + ResourceReader + SessionStore, P: Provisioner>(
    api: &Cloud66LinkApi<S, P>,
    request: &Request,
) -> Response<Body> {
    let mut response = match resume_link(api, request).await {
        Ok(response) => response,
        Err(err) => {
            tracing::warn!(error = %err, "a pending Cloud 66 link could not be resumed");
            html::unavailable()
        }
    };
    if let Some(spent) = pending::cookie("", 0) {
        response.headers_mut().append(header::SET_COOKIE, spent);
    }
    response
}

async fn resume_link<S: LinkStore + ResourceReader + SessionStore, P: Provisioner>(
    api: &Cloud66LinkApi<S, P>,
    request: &Request,
) -> Result<Response<Body>, LinkError> {
    let now = chrono::Utc::now().timestamp();
    let waiting = match pending::token(request.headers()) {
        Some(token) => {
            api.store
                .take_pending_link(&signin::fingerprint(&token), now)
                .await?
        }
        None => None,
    };
    let Some(waiting) = waiting else {
        return Ok(page(
            StatusCode::BAD_REQUEST,
            "No link is waiting",
            html! { p { "This link request has expired or was already used. Start the integration again from your Cloud 66 dashboard." } },
        ));
    };
    // Parsed again as strictly as the first time: the stored request is ours,
    // but the rules may have changed since it was stored.
    let link_request = match parse_link_query(
        Some(&waiting.uid),
        Some(&waiting.email),
        Some(&waiting.callback),
        &api.callback_hosts,
    ) {
        Ok(link_request) => link_request,
        Err(problems) => return Ok(invalid_request_page(&problems)),
    };
    if !signed_in_as(api, request.headers(), &link_request.email).await? {
        tracing::info!(uid = %link_request.uid, "link refused: signed in as another Cloud 66 user");
        return Ok(page(
            StatusCode::FORBIDDEN,
            "Signed in as someone else",
            html! { p { "You signed in to Cloud 66 as a different user than the one this link is for, so nothing was linked. Start the integration again from your Cloud 66 dashboard." } },
        ));
    }
    Ok(respond(&link_request, run(api, &link_request).await))
}

/// The page or redirect for a link's outcome.
fn respond(link_request: &LinkRequest, outcome: Result<Outcome, LinkError>) -> Response<Body> {
    match outcome {
        Ok(Outcome::Linked) => redirect(StatusCode::FOUND, link_request.callback.as_str()),
        Ok(Outcome::Refused(message)) => refused_page(&message, &link_request.callback),
        Ok(Outcome::Pending) => pending_page(),
        Ok(Outcome::OtherAccount) => page(
            StatusCode::CONFLICT,
            "Already linked",
            html! { p { "This Cloud 66 user is already linked to a different account." } },
        ),
        Err(LinkError::Provisioner(ProvisionerError::Refused { status, message })) => {
            tracing::info!(vendor_status = status, uid = %link_request.uid, "the vendor's service refused the account");
            page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Not set up",
                html! { p { "The service could not set up your account: " (message) } },
            )
        }
        Err(err) => {
            tracing::warn!(error = %err, uid = %link_request.uid, "Cloud 66 link could not complete");
            html::unavailable()
        }
    }
}

async fn run<S: LinkStore + ResourceReader, P: Provisioner>(
    api: &Cloud66LinkApi<S, P>,
    request: &LinkRequest,
) -> Result<Outcome, LinkError> {
    let existing = api.store.get_link(&request.uid).await?;
    // A uid is bound to an email only once Cloud 66 said linked: a refused or
    // pending attempt (perhaps someone else's, with another email) is
    // replaced by the next one, so nobody can squat a uid.
    if let Some(outcome) = existing.as_ref().and_then(|link| settled(link, request)) {
        return Ok(outcome);
    }
    let account = api
        .store
        .find_or_create_account(&request.email, None, ACTOR)
        .await?;
    let resource = account_resource(api, &account).await?;
    let mut fields = vec![
        ("link_uid".to_string(), request.uid.clone()),
        ("user_email".to_string(), request.email.clone()),
    ];
    fields.extend(resource.config.0.iter().map(|(k, v)| (k.clone(), v.clone())));
    let answer = api.partner.post_link(&fields).await;
    tracing::info!(uid = %request.uid, account_id = %account.id, answer = ?answer, "Cloud 66 answered the link");
    record(api, request, &account, existing, answer).await
}

/// The account's partner-side resource, provisioned on first need.
async fn account_resource<S: LinkStore + ResourceReader, P: Provisioner>(
    api: &Cloud66LinkApi<S, P>,
    account: &Account,
) -> Result<Resource, LinkError> {
    if let Some(id) = account.resource_ids.first() {
        if let Some(resource) = api.store.get_resource(id).await? {
            return Ok(resource);
        }
    }
    let now = Timestamp::now();
    let mut resource = Resource {
        owner_id: Some(account.id.clone()),
        owner_name: account.name.clone(),
        ..Resource::new(
            format!("res_{}", random_hex(16)),
            Platform::Cloud66,
            account.id.clone(),
            CLOUD66_PLAN.into(),
            ConfigMap::default(),
            &now,
        )
    };
    resource.config = api
        .provisioner
        .provision(ProvisionContext {
            resource: &resource,
            email: Some(&account.email),
        })
        .await?;
    let event = AuditEvent::new(
        SubjectKind::Resource,
        &resource.id,
        AuditAction::Provisioned,
        ACTOR,
        &now,
    )
    .with_detail("account_id", &account.id);
    Ok(api
        .store
        .ensure_account_resource(account, &resource, &event)
        .await?)
}

/// What a stored link settles for `request`, if anything: a linked uid is
/// linked for its own email and taken for every other.
fn settled(link: &Cloud66Link, request: &LinkRequest) -> Option<Outcome> {
    match link.status {
        LinkStatus::Linked if link.email == request.email => Some(Outcome::Linked),
        LinkStatus::Linked => Some(Outcome::OtherAccount),
        LinkStatus::Pending | LinkStatus::Refused => None,
    }
}

/// Saves Cloud 66's answer on the link, with its audit event on the account,
/// never turning a link that holds back into one that does not.
async fn record<S: LinkStore, P>(
    api: &Cloud66LinkApi<S, P>,
    request: &LinkRequest,
    account: &Account,
    mut stored: Option<Cloud66Link>,
    answer: PartnerAnswer,
) -> Result<Outcome, LinkError> {
    let (status, message, action, outcome) = match answer {
        PartnerAnswer::Linked => (
            LinkStatus::Linked,
            None,
            AuditAction::Cloud66Linked,
            Outcome::Linked,
        ),
        PartnerAnswer::AlreadyLinked(message) => (
            LinkStatus::Linked,
            Some(message),
            AuditAction::Cloud66Linked,
            Outcome::Linked,
        ),
        PartnerAnswer::Refused(message) => (
            LinkStatus::Refused,
            Some(message.clone()),
            AuditAction::Cloud66LinkRefused,
            Outcome::Refused(message),
        ),
        PartnerAnswer::NoAnswer(reason) => (
            LinkStatus::Pending,
            Some(reason),
            AuditAction::Cloud66LinkPending,
            Outcome::Pending,
        ),
    };
    for _ in 0..SAVE_ATTEMPTS {
        let now = Timestamp::now();
        // A concurrent request may have linked the uid meanwhile, perhaps for
        // another email: its answer stands, and this one is not recorded on it.
        if let Some(outcome) = stored.as_ref().and_then(|link| settled(link, request)) {
            return Ok(outcome);
        }
        let (version, attempts, created_at) = stored
            .as_ref()
            .map(|link| (link.version, link.attempts, link.created_at.clone()))
            .unwrap_or((0, 0, now.to_string()));
        let link = Cloud66Link {
            uid: request.uid.clone(),
            account_id: account.id.clone(),
            email: request.email.clone(),
            status,
            message: message.clone(),
            attempts: attempts + 1,
            created_at,
            updated_at: now.to_string(),
            linked_at: (status == LinkStatus::Linked).then(|| now.to_string()),
            version: version + 1,
        };
        let mut event = AuditEvent::new(SubjectKind::Account, &account.id, action, ACTOR, &now)
            .with_detail("uid", &request.uid);
        if let Some(message) = &message {
            event = event.with_detail("message", message);
        }
        if api.store.save_link(&link, &event).await? == UpdateOutcome::Updated {
            return Ok(outcome);
        }
        stored = api.store.get_link(&request.uid).await?;
    }
    Err(StoreError::Unavailable("the link kept changing under concurrent requests".into()).into())
}

fn invalid_request_page(problems: &[String]) -> Response<Body> {
    page(
        StatusCode::BAD_REQUEST,
        "This link request is not valid",
        html! {
            ul { @for problem in problems { li { (problem) } } }
            p { "Start the integration again from your Cloud 66 dashboard." }
        },
    )
}

fn refused_page(message: &str, callback: &Url) -> Response<Body> {
    page(
        StatusCode::FORBIDDEN,
        "Cloud 66 did not accept the link",
        html! {
            p { "Cloud 66 said: " q #reason { (message) } }
            p { a href=(callback.as_str()) { "Back to Cloud 66" } }
        },
    )
}

fn pending_page() -> Response<Body> {
    html::retry_later(
        "Cloud 66 did not answer",
        "Cloud 66 did not confirm the link in time. Reload this page to try again.",
        5,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hosts() -> Vec<String> {
        vec!["app.cloud66.com".into()]
    }

    fn parse(uid: &str, email: &str, callback: &str) -> Result<LinkRequest, Vec<String>> {
        parse_link_query(Some(uid), Some(email), Some(callback), &hosts())
    }

    #[test]
    fn accepts_the_documented_redirect() {
        let request = parse("abc123", " Jon@Smith.com ", "https://app.cloud66.com/url").unwrap();
        assert_eq!(request.email, "jon@smith.com");
        assert_eq!(request.callback.as_str(), "https://app.cloud66.com/url");
        assert!(parse("abc123", "jon@smith.com", "https://APP.cloud66.com/url?x=1#y").is_ok());
    }

    #[test]
    fn refuses_callbacks_that_could_lead_elsewhere() {
        for callback in [
            "https://evil.example/url",
            "http://app.cloud66.com/url",
            "https://app.cloud66.com@evil.example/",
            "https://user:pass@app.cloud66.com/",
            "https://app.cloud66.com.evil.example/",
            "https://app-cloud66.com/",
            "https://evil.example\\@app.cloud66.com/",
            "https://app.cloud66.com:8443/",
            "//app.cloud66.com/url",
            "javascript:alert(1)",
            "/relative",
            "",
        ] {
            let problems = parse("abc123", "jon@smith.com", callback).unwrap_err();
            assert_eq!(problems.len(), 1, "{callback}");
            assert!(problems[0].contains("callback"), "{callback}");
        }
    }

    #[test]
    fn names_every_problem() {
        let problems = parse_link_query(None, Some("not-an-email"), None, &hosts()).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(parse("a b", "jon@smith.com", "https://app.cloud66.com/").is_err());
    }

    #[test]
    fn emails_follow_the_one_ascii_rule() {
        let problems = parse_link_query(
            Some("u1"),
            Some("\u{212A}im@corp.com"),
            Some("https://app.cloud66.com/"),
            &hosts(),
        )
        .unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("ASCII"), "{problems:?}");
        assert_eq!(
            parse("u1", " Jon@Smith.COM ", "https://app.cloud66.com/")
                .unwrap()
                .email,
            "jon@smith.com"
        );
    }

    #[test]
    fn partner_messages_are_read_from_json_or_text() {
        assert_eq!(
            partner_message(r#"{"error":"invalid link_uid"}"#),
            "invalid link_uid"
        );
        assert_eq!(
            partner_message("jon@smith.com is already linked to this account"),
            "jon@smith.com is already linked to this account"
        );
        assert_eq!(partner_message(""), "no reason given");
        assert_eq!(partner_message(&"x".repeat(2000)).len(), 500);
    }

    proptest! {
        #[test]
        fn random_queries_never_panic_and_only_allowed_hosts_pass(
            uid in ".{0,40}", email in ".{0,40}", callback in ".{0,80}",
        ) {
            if let Ok(request) = parse(&uid, &email, &callback) {
                prop_assert_eq!(request.callback.host_str(), Some("app.cloud66.com"));
                prop_assert_eq!(request.callback.scheme(), "https");
            }
        }
    }
}
