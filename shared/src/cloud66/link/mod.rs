//! The Cloud 66 link flow (docs/cloud66.md): Cloud 66 sends
//! its user to `GET /cloud66/link?uid=…&email=…&callback=…`; the partner
//! POSTs `link_uid`, `user_email` and the resource's config to its partner
//! endpoint and sends the user back to `callback`.
//!
//! The query comes from a browser and proves nothing, so who the link acts
//! for is a setting ([`Verification`]): by default only a user who signed in
//! with Cloud 66 as the email being linked ([`verified`]); with the opt-out,
//! whoever opens it, but then nothing of an existing account is sent and
//! nothing lasting is created before Cloud 66 answers 200 ([`unverified`]).
//! Either way Cloud 66's answer decides whether the link holds, the pages
//! never show account data, and `callback` must be an `https` URL on an
//! allowed host ([`request`]), or nobody is redirected anywhere.
//!
//! This module routes; [`request`] validates, [`partner`] talks to Cloud 66,
//! [`verified`] and [`unverified`] hold the account logic of each setting.

mod attempt;
pub mod confirm;
pub mod partner;
pub mod request;
pub mod unverified;
mod verified;

pub use attempt::CLOUD66_RESOURCE_ID_PREFIX;
pub use partner::{PartnerAnswer, PartnerClient, PayloadFormat};
pub use request::{parse_link_query, LinkRequest};

use super::pending::{self, PendingLink};
use crate::config::{self, ConfigError};
use crate::html::{self, page, redirect};
use crate::model::Platform;
use crate::provisioner::{Provisioner, ProvisionerError, VendorProvisioner};
use crate::refresh::SecretSource;
use crate::secret::random_hex;
use crate::signin;
use crate::store::{DynamoStore, LinkStore, ResourceReader, SessionStore, StoreError};
use attempt::{LinkError, Outcome};
use lambda_http::http::{header, HeaderMap, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use maud::html;
use reqwest::Url;
use std::convert::Infallible;
use std::time::Duration;

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
    pub async fn from_env(function: &str) -> Result<Self, ConfigError> {
        let aws = config::aws_sdk_config(function).await;
        // The provisioner's signing secrets follow the secret (re-read every
        // SECRETS_TTL_SECONDS); the rest is kept until the next cold start.
        let (source, environment) = SecretSource::load(&aws, function).await?;
        let lookup = environment.lookup();
        let endpoint = config::outbound_base_url(
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
        let mut provisioner = VendorProvisioner::from_lookup(&lookup, &addon_id)?;
        provisioner.follow_secret(source, &environment)?;
        let table = config::required(&lookup, "TABLE_NAME")?;
        let store = DynamoStore::ready(&aws, table).await;
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

/// How long before Lambda's deadline the link stops waiting for Cloud 66,
/// to record its answer (or its silence) and reply in time.
const DEADLINE_MARGIN: Duration = Duration::from_secs(3);

/// The `cloud66-link` function's routes.
pub async fn route<S: LinkStore + ResourceReader + SessionStore, P: Provisioner>(
    api: &Cloud66LinkApi<S, P>,
    request: Request,
) -> Result<Response<Body>, Infallible> {
    Ok(match (request.method(), request.uri().path()) {
        (&Method::GET, pending::RESUME_PATH) => resume(api, &request).await,
        (&Method::POST, confirm::FORM_PATH) => confirmed(api, &request).await,
        (&Method::GET, _) => link(api, &request).await,
        _ => html::not_found(),
    })
}

/// `GET /cloud66/link?uid=…&email=…&callback=…`: links nothing. It shows the
/// confirmation page ([`confirm`]) to a user who may link (signed in with
/// Cloud 66 as `email`, or anyone in the unverified setting), or sends the
/// user to sign in first. It answers the same whatever the uid's state, so
/// it tells a stranger nothing about who owns a uid.
async fn link<S: LinkStore + SessionStore, P: Provisioner>(
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
    if api.verification == Verification::Unverified {
        let secret = confirm::browser_secret(request.headers())
            .unwrap_or_else(|| random_hex(confirm::BROWSER_SECRET_BYTES));
        let mut response = confirm::page(&link_request, &confirm::token(&secret, &link_request));
        confirm::set_browser_secret(&mut response, &secret);
        return response;
    }
    match signed_in_as(api, request.headers(), &link_request.email).await {
        // Already signed in with Cloud 66 as this email: no round trip.
        Ok(Some(session_id)) => confirm::page(&link_request, &confirm::token(&session_id, &link_request)),
        Ok(None) => match await_signin(api, &link_request).await {
            Ok(response) => response,
            Err(err) => respond(&link_request, Err(err)),
        },
        Err(err) => respond(&link_request, Err(err.into())),
    }
}

/// `POST /cloud66/link`, the confirmation page's form: the one request that
/// provisions, posts to Cloud 66 and redirects, and only when it is
/// same-origin and its token is this browser's for exactly this request.
async fn confirmed<S: LinkStore + ResourceReader + SessionStore, P: Provisioner>(
    api: &Cloud66LinkApi<S, P>,
    request: &Request,
) -> Response<Body> {
    if !confirm::is_same_origin(request.headers()) {
        tracing::info!("link confirmation refused: not same-origin");
        return confirm::refused_page();
    }
    let Some(form) = confirm::ConfirmForm::parse(request.body().as_ref()) else {
        return invalid_request_page(&["The confirmation form could not be read.".to_string()]);
    };
    let link_request = match parse_link_query(
        form.uid.as_deref(),
        form.email.as_deref(),
        form.callback.as_deref(),
        &api.callback_hosts,
    ) {
        Ok(link_request) => link_request,
        Err(problems) => return invalid_request_page(&problems),
    };
    let binding = match api.verification {
        Verification::Unverified => confirm::browser_secret(request.headers()),
        Verification::CloudSignIn => signin::session_id(request.headers()),
    };
    let token = form.token.unwrap_or_default();
    if !binding.is_some_and(|binding| confirm::token_matches(&binding, &link_request, &token)) {
        tracing::info!(uid = %link_request.uid, "link confirmation refused: not this browser's token for this request");
        return confirm::refused_page();
    }
    if api.verification == Verification::CloudSignIn {
        match signed_in_as(api, request.headers(), &link_request.email).await {
            Ok(Some(_)) => {}
            Ok(None) => return signed_in_as_someone_else(&link_request),
            Err(err) => return respond(&link_request, Err(err.into())),
        }
    }
    // Cloud 66's answer must come (and be recorded) before Lambda's deadline.
    let deadline = request.lambda_context_ref().and_then(|context| {
        crate::deadline::from_lambda(context.deadline, std::time::SystemTime::now(), DEADLINE_MARGIN)
    });
    tracing::info!(
        uid = %link_request.uid,
        budget_ms = crate::deadline::time_left(deadline).map(|left| left.as_millis() as u64),
        "link confirmed; linking"
    );
    respond(&link_request, run(api, &link_request, deadline).await)
}

/// The browser's session id, if it holds a Cloud 66 session for `email`.
async fn signed_in_as<S: SessionStore>(
    api: &Cloud66LinkApi<S, impl Provisioner>,
    headers: &HeaderMap,
    email: &str,
) -> Result<Option<String>, StoreError> {
    let Some(session_id) = signin::session_id(headers) else {
        return Ok(None);
    };
    let session = api.store.get_session(&session_id).await?;
    let for_email = session.is_some_and(|session| {
        session.platform == Platform::Cloud66 && session.email.as_deref() == Some(email)
    });
    Ok(for_email.then_some(session_id))
}

fn signed_in_as_someone_else(link_request: &LinkRequest) -> Response<Body> {
    tracing::info!(uid = %link_request.uid, "link refused: not signed in as the link's Cloud 66 user");
    page(
        StatusCode::FORBIDDEN,
        "Signed in as someone else",
        html! { p { "You signed in to Cloud 66 as a different user than the one this link is for, so nothing was linked. Start the integration again from your Cloud 66 dashboard." } },
    )
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
/// with a pending link: shows its confirmation page if the user signed in
/// as its email (it links nothing itself).
async fn resume<S: LinkStore + SessionStore, P: Provisioner>(
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

async fn resume_link<S: LinkStore + SessionStore, P: Provisioner>(
    api: &Cloud66LinkApi<S, P>,
    request: &Request,
) -> Result<Response<Body>, LinkError> {
    let now = chrono::Utc::now().timestamp();
    let waiting = match pending::token(request.headers()) {
        Some(token) => {
            api.store
                .get_pending_link(&signin::fingerprint(&token), now)
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
    match signed_in_as(api, request.headers(), &link_request.email).await? {
        Some(session_id) => Ok(confirm::page(
            &link_request,
            &confirm::token(&session_id, &link_request),
        )),
        None => Ok(signed_in_as_someone_else(&link_request)),
    }
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

/// Runs the link in the flow the setting chooses.
async fn run<S: LinkStore + ResourceReader, P: Provisioner>(
    api: &Cloud66LinkApi<S, P>,
    request: &LinkRequest,
    deadline: Option<std::time::Instant>,
) -> Result<Outcome, LinkError> {
    match api.verification {
        Verification::CloudSignIn => {
            verified::run(&api.store, &api.provisioner, &api.partner, request, deadline).await
        }
        Verification::Unverified => {
            unverified::run(&api.store, &api.provisioner, &api.partner, request, deadline).await
        }
    }
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
