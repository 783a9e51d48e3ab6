//! `GET /oidc/authorize` (OIDC Core §3.1.2): the vendor's app asks for a
//! code for the customer signed in here by a marketplace. PKCE (S256) is
//! always required. A request that cannot be trusted to name its own
//! redirect URI (unknown client, unregistered URI) gets a page here and is
//! never redirected; any other error goes back to the app as RFC 6749
//! §4.1.2.1 says, with `iss` (RFC 9207).

use super::Provider;
use crate::html;
use crate::model::{CodeBinding, OidcGrant, ResourceStatus, SignedInIdentity};
use crate::secret::random_hex;
use crate::signin::{fingerprint, session_id};
use crate::store::{OidcStore, ResourceReader, SessionStore, StoreError};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use maud::html;
use std::collections::HashMap;

/// How long a code may wait to be redeemed.
pub const CODE_TTL_SECONDS: i64 = 60;
/// Bytes of randomness in a code (256 bits).
const CODE_BYTES: usize = 32;
/// Longest value read for any one parameter.
const MAX_PARAMETER_CHARS: usize = 2048;

/// The request's query, each parameter once (OAuth 2.0: a parameter sent
/// twice makes the request invalid); `None` if one is repeated or too long.
pub fn single_valued(query: &str) -> Option<HashMap<String, String>> {
    let mut parameters = HashMap::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if value.len() > MAX_PARAMETER_CHARS
            || parameters.insert(name.into_owned(), value.into_owned()).is_some()
        {
            return None;
        }
    }
    Some(parameters)
}

/// A PKCE challenge or verifier's alphabet and length (RFC 7636 §4.1-4.2):
/// 43 to 128 unreserved characters.
pub fn is_pkce_value(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The scopes granted of those asked for: the ones served, each once, in
/// the order of [`super::SCOPES`]; an unknown scope is dropped, never
/// echoed as granted (RFC 6749 §3.3).
pub fn granted_scope(asked: &str) -> String {
    let asked: Vec<&str> = asked.split(' ').collect();
    super::SCOPES
        .iter()
        .filter(|scope| asked.contains(scope))
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Refusal page for a request that must not be sent back to its redirect URI.
fn refused(message: &str) -> Response<Body> {
    tracing::info!(reason = message, "authorization request refused");
    html::page(
        StatusCode::BAD_REQUEST,
        "Sign-in request refused",
        html! {
            p { (message) }
            p { "The app that sent you here is not set up to sign in with this service. Tell its operator." }
        },
    )
}

/// The authorization response, to the app's registered redirect URI.
fn respond_to(
    redirect_uri: &str,
    issuer: &str,
    state: Option<&str>,
    outcome: &[(&str, &str)],
) -> Response<Body> {
    let Ok(mut url) = reqwest::Url::parse(redirect_uri) else {
        return refused("The redirect URI is not a URL.");
    };
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in outcome {
            query.append_pair(name, value);
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", issuer);
    }
    html::redirect(StatusCode::FOUND, url.as_str())
}

/// Why a signed-in identity no longer signs anyone in: its add-on is not
/// active any more (docs/security.md, "Sessions end with the add-on").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Suspended,
    Removed,
}

impl Ended {
    pub fn description(self) -> &'static str {
        match self {
            Ended::Suspended => "the add-on is suspended by the marketplace",
            Ended::Removed => "the add-on has been removed or is not ready",
        }
    }
}

/// `identity` as its add-on stands now: the current plan when the add-on is
/// active, else why it no longer signs in. An identity of no add-on (a
/// Cloud 66 account's) is taken as it is.
pub async fn current_identity<S: ResourceReader>(
    store: &S,
    mut identity: SignedInIdentity,
) -> Result<Result<SignedInIdentity, Ended>, StoreError> {
    let Some(resource_id) = identity.resource_id.as_deref() else {
        return Ok(Ok(identity));
    };
    Ok(match store.get_resource(resource_id).await? {
        Some(resource) if resource.is_active() => {
            identity.plan = Some(resource.plan);
            Ok(identity)
        }
        Some(resource) if resource.status == ResourceStatus::Suspended => Err(Ended::Suspended),
        _ => Err(Ended::Removed),
    })
}

/// `GET /oidc/authorize`.
pub async fn authorize<S: SessionStore + OidcStore + ResourceReader>(
    provider: &Provider<'_>,
    store: &S,
    request: &Request,
) -> Response<Body> {
    authorize_at(provider, store, request, chrono::Utc::now().timestamp()).await
}

/// [`authorize`] at `now` (Unix seconds).
pub async fn authorize_at<S: SessionStore + OidcStore + ResourceReader>(
    provider: &Provider<'_>,
    store: &S,
    request: &Request,
    now: i64,
) -> Response<Body> {
    let Some(query) = single_valued(request.uri().query().unwrap_or_default()) else {
        return refused("A parameter is repeated or too long.");
    };
    let param = |name: &str| {
        query
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    };
    let Some(client) = param("client_id").and_then(|id| provider.clients.get(id)) else {
        return refused("The app is not registered (unknown client_id).");
    };
    let Some(redirect_uri) = param("redirect_uri").filter(|uri| client.allows_redirect_uri(uri)) else {
        return refused("The redirect URI is not one registered for this app.");
    };
    // From here the app is known and the URI is its own: errors go back to it.
    let state = param("state");
    let error = |code: &str, description: &str| {
        tracing::info!(client_id = %client.id, error = code, "authorization request answered with an error");
        respond_to(
            redirect_uri,
            provider.issuer,
            state,
            &[("error", code), ("error_description", description)],
        )
    };
    if param("request").is_some() {
        return error("request_not_supported", "request objects are not supported");
    }
    if param("request_uri").is_some() {
        return error("request_uri_not_supported", "request_uri is not supported");
    }
    if param("response_type") != Some("code") {
        return error("unsupported_response_type", "response_type must be code");
    }
    let scope = param("scope").unwrap_or_default();
    if !scope.split(' ').any(|scope| scope == "openid") {
        return error("invalid_scope", "scope must include openid");
    }
    if state.is_none() {
        return error("invalid_request", "state is required");
    }
    if param("code_challenge_method") != Some("S256") {
        return error(
            "invalid_request",
            "PKCE is required: code_challenge_method must be S256",
        );
    }
    let Some(code_challenge) = param("code_challenge").filter(|challenge| is_pkce_value(challenge)) else {
        return error(
            "invalid_request",
            "PKCE is required: code_challenge is missing or malformed",
        );
    };
    if param("response_mode").is_some_and(|mode| mode != "query") {
        return error("invalid_request", "response_mode must be query");
    }
    let prompts: Vec<&str> = param("prompt").unwrap_or_default().split(' ').collect();
    let max_age = match param("max_age").map(str::parse::<i64>) {
        None => None,
        Some(Ok(seconds)) if seconds >= 0 => Some(seconds),
        Some(_) => return error("invalid_request", "max_age must be a whole number of seconds"),
    };

    let session = match session_id(request.headers()) {
        Some(id) => match store.get_session(&id).await {
            Ok(session) => session,
            Err(err) => {
                tracing::warn!(error = %err, "authorization could not reach storage");
                return html::unavailable();
            }
        },
        None => None,
    };
    // Signing in happens at the marketplace only: this service cannot ask
    // the customer again, so a sign-in that must be fresh (prompt=login, an
    // exceeded max_age) is one the app must get from the console.
    let Some(identity) = session.and_then(|session| session.identity) else {
        if prompts.contains(&"none") {
            return error("login_required", "the customer is not signed in here");
        }
        return html::page(
            StatusCode::OK,
            "Open the add-on from your console",
            html! {
                p { "To sign in, open the add-on from your platform's console (Clever Cloud or Cloud 66): you will be signed in from there and sent back to the app." }
            },
        );
    };
    if prompts.contains(&"login") || max_age.is_some_and(|max_age| now - identity.auth_time > max_age) {
        return error(
            "login_required",
            "a fresh sign-in is needed: open the add-on again from the platform's console",
        );
    }
    // The sign-in was for an add-on: it lasts only while the add-on does.
    let identity = match current_identity(store, identity).await {
        Ok(Ok(identity)) => identity,
        Ok(Err(ended)) => return error("access_denied", ended.description()),
        Err(err) => {
            tracing::warn!(error = %err, "authorization could not reach storage");
            return html::unavailable();
        }
    };

    let code = random_hex(CODE_BYTES);
    let binding = CodeBinding {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.to_string(),
        code_challenge: code_challenge.to_string(),
    };
    let grant = OidcGrant {
        client_id: client.id.clone(),
        scope: granted_scope(scope),
        nonce: param("nonce").map(str::to_string),
        identity,
        expires_at: now + CODE_TTL_SECONDS,
    };
    if let Err(err) = store.save_code(&fingerprint(&code), &binding, &grant).await {
        tracing::warn!(error = %err, "authorization code could not be stored");
        return html::unavailable();
    }
    tracing::info!(client_id = %client.id, subject = %grant.identity.subject, "authorization code issued");
    respond_to(redirect_uri, provider.issuer, state, &[("code", &code)])
}
