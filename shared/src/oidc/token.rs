//! `POST /oidc/token` (the `authorization_code` grant, OIDC Core §3.1.3)
//! and `GET|POST /oidc/userinfo` (§5.3), and the claims both tell.
//! Errors are RFC 6749 §5.2 JSON, never cached.

use super::authorize::{current_identity, is_pkce_value, single_valued};
use super::{OidcClient, Provider};
use crate::http::{has_media_type, json_response};
use crate::model::{CodeBinding, OidcGrant};
use crate::secret::random_hex;
use crate::signin::fingerprint;
use crate::store::{OidcStore, ResourceReader, SpentCode};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use lambda_http::http::{header, HeaderMap, HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// The claim for an email the marketplace's sign-in form carried but no
/// proof signs.
pub const UNVERIFIED_EMAIL_CLAIM: &str = "marketplace_unverified_email";
/// How long an access token, and an ID token, stay valid.
pub const TOKEN_TTL_SECONDS: i64 = 600;
/// Bytes of randomness in an access token (256 bits).
const ACCESS_TOKEN_BYTES: usize = 32;
/// Largest token request read.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// An RFC 6749 §5.2 error.
struct TokenError {
    status: StatusCode,
    code: &'static str,
    description: &'static str,
    /// `WWW-Authenticate` (a failed Basic or Bearer authentication).
    challenge: Option<&'static str>,
}

impl TokenError {
    fn bad(code: &'static str, description: &'static str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            description,
            challenge: None,
        }
    }

    fn invalid_client(basic: bool) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            code: "invalid_client",
            description: "client authentication failed",
            challenge: basic.then_some("Basic realm=\"oidc\", charset=\"UTF-8\""),
        }
    }

    fn unavailable() -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "temporarily_unavailable",
            description: "storage could not be reached; try again",
            challenge: None,
        }
    }

    fn into_response(self) -> Response<Body> {
        tracing::info!(error = self.code, "token request refused");
        let mut response = no_store(json_response(
            self.status,
            &json!({"error": self.code, "error_description": self.description}),
        ));
        if let Some(challenge) = self.challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}

/// `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1).
fn no_store(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// `POST /oidc/token`.
pub async fn token<S: OidcStore>(provider: &Provider<'_>, store: &S, request: &Request) -> Response<Body> {
    match redeem(provider, store, request).await {
        Ok(response) => response,
        Err(err) => err.into_response(),
    }
}

async fn redeem<S: OidcStore>(
    provider: &Provider<'_>,
    store: &S,
    request: &Request,
) -> Result<Response<Body>, TokenError> {
    let body = request.body().as_ref();
    if !has_media_type(request.headers(), "application/x-www-form-urlencoded") || body.len() > MAX_FORM_BYTES
    {
        return Err(TokenError::bad(
            "invalid_request",
            "the body must be an application/x-www-form-urlencoded form of at most 16 KiB",
        ));
    }
    let form = std::str::from_utf8(body)
        .ok()
        .and_then(single_valued)
        .ok_or(TokenError::bad(
            "invalid_request",
            "a parameter is repeated or malformed",
        ))?;
    let param = |name: &str| {
        form.get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    };
    let client = authenticate(
        provider,
        request.headers(),
        param("client_id"),
        param("client_secret"),
    )?;
    if param("grant_type") != Some("authorization_code") {
        return Err(TokenError::bad(
            "unsupported_grant_type",
            "grant_type must be authorization_code",
        ));
    }
    let (Some(code), Some(redirect_uri), Some(verifier)) =
        (param("code"), param("redirect_uri"), param("code_verifier"))
    else {
        return Err(TokenError::bad(
            "invalid_request",
            "code, redirect_uri and code_verifier are required",
        ));
    };
    if !is_pkce_value(verifier) {
        return Err(TokenError::bad("invalid_grant", "the code_verifier is malformed"));
    }
    let binding = CodeBinding {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.to_string(),
        code_challenge: URL_SAFE_NO_PAD.encode(Sha256::digest(verifier)),
    };
    let now = chrono::Utc::now().timestamp();
    let unavailable = |err: crate::store::StoreError| {
        tracing::warn!(error = %err, "token request could not reach storage");
        TokenError::unavailable()
    };
    let access_token = random_hex(ACCESS_TOKEN_BYTES);
    let spent_for = SpentCode {
        access_token_fingerprint: fingerprint(&access_token),
        expires_at: now + TOKEN_TTL_SECONDS,
    };
    let code_fingerprint = fingerprint(code);
    let Some(grant) = store
        .redeem_code(&code_fingerprint, &binding, now, &spent_for)
        .await
        .map_err(unavailable)?
    else {
        // A code used twice may have been stolen: the token its first
        // redemption bought is revoked too (RFC 6749 §4.1.2).
        if store
            .revoke_reused_code(&code_fingerprint, &client.id)
            .await
            .map_err(unavailable)?
        {
            tracing::warn!(client_id = %client.id, "a spent code came again: its access token is revoked");
        }
        return Err(TokenError::bad(
            "invalid_grant",
            "the code is unknown, used, expired, or was issued for another client, redirect_uri or code_challenge",
        ));
    };

    let access = OidcGrant {
        expires_at: spent_for.expires_at,
        ..grant.clone()
    };
    store
        .save_access_token(&spent_for.access_token_fingerprint, &access)
        .await
        .map_err(|err| {
            tracing::warn!(error = %err, "access token could not be stored");
            TokenError::unavailable()
        })?;
    let id_token = provider
        .signing
        .current
        .sign(&id_token_claims(provider.issuer, &grant, now))
        .map_err(|err| {
            tracing::error!(error = %err, "ID token could not be signed");
            TokenError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "server_error",
                description: "the ID token could not be signed",
                challenge: None,
            }
        })?;
    tracing::info!(client_id = %client.id, subject = %grant.identity.subject, "tokens issued");
    Ok(no_store(json_response(
        StatusCode::OK,
        &json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": TOKEN_TTL_SECONDS,
            "id_token": id_token,
            "scope": grant.scope,
        }),
    )))
}

/// The client, authenticated by HTTP Basic (`client_secret_basic`) or by the
/// form (`client_secret_post`), never both.
fn authenticate<'a>(
    provider: &Provider<'a>,
    headers: &HeaderMap,
    form_id: Option<&str>,
    form_secret: Option<&str>,
) -> Result<&'a OidcClient, TokenError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Basic ")
                .or_else(|| value.strip_prefix("basic "))
        });
    let (client_id, secret, by_basic) = match (basic, form_secret) {
        (Some(_), Some(_)) => {
            return Err(TokenError::bad(
                "invalid_request",
                "use one client authentication method, not two",
            ))
        }
        (Some(credentials), None) => {
            let (id, secret) = basic_credentials(credentials).ok_or(TokenError::invalid_client(true))?;
            if form_id.is_some_and(|form_id| form_id != id) {
                return Err(TokenError::bad(
                    "invalid_request",
                    "client_id differs from the Basic user",
                ));
            }
            (id, secret, true)
        }
        (None, Some(secret)) => (
            form_id.ok_or(TokenError::invalid_client(false))?.to_string(),
            secret.to_string(),
            false,
        ),
        (None, None) => return Err(TokenError::invalid_client(false)),
    };
    provider
        .clients
        .authenticate(&client_id, &secret)
        .ok_or(TokenError::invalid_client(by_basic))
}

/// `client_id:client_secret`, each form-urlencoded (RFC 6749 §2.3.1).
fn basic_credentials(encoded: &str) -> Option<(String, String)> {
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |text: &str| -> Option<String> {
        let pair = format!("v={}", text.replace('&', "%26").replace('=', "%3D"));
        form_urlencoded::parse(pair.as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

/// What the grant tells about the customer: `sub`, the sale's claims, and
/// the email (with the `email` scope) and name (with `profile`).
fn identity_claims(grant: &OidcGrant) -> Map<String, Value> {
    let identity = &grant.identity;
    let scopes: Vec<&str> = grant.scope.split(' ').collect();
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(identity.subject));
    claims.insert("platform".into(), json!(identity.platform.as_str()));
    // The same, under the name the vendor's app reads it by across
    // marketplaces (docs/oidc.md "Claims").
    claims.insert("marketplace".into(), json!(identity.platform.as_str()));
    for (name, value) in [
        ("resource_id", &identity.resource_id),
        ("plan", &identity.plan),
        ("marketplace_id", &identity.marketplace_id),
        ("aws_account_id", &identity.aws_account_id),
    ] {
        if let Some(value) = value {
            claims.insert(name.into(), json!(value));
        }
    }
    if scopes.contains(&"email") {
        // `email` only when a proof signed it; what no one signed travels
        // under a name no relying party takes for a verified address.
        match (&identity.email, &identity.unverified_email) {
            (Some(email), _) if identity.email_verified => {
                claims.insert("email".into(), json!(email));
                claims.insert("email_verified".into(), json!(true));
            }
            (Some(email), _) | (None, Some(email)) => {
                claims.insert(UNVERIFIED_EMAIL_CLAIM.into(), json!(email));
            }
            (None, None) => {}
        }
    }
    if scopes.contains(&"profile") {
        if let Some(name) = &identity.name {
            claims.insert("name".into(), json!(name));
        }
    }
    claims
}

/// The ID token's claims (OIDC Core §2).
pub fn id_token_claims(issuer: &str, grant: &OidcGrant, now: i64) -> Value {
    let mut claims = identity_claims(grant);
    claims.insert("iss".into(), json!(issuer));
    claims.insert("aud".into(), json!(grant.client_id));
    claims.insert("exp".into(), json!(now + TOKEN_TTL_SECONDS));
    claims.insert("iat".into(), json!(now));
    claims.insert("auth_time".into(), json!(grant.identity.auth_time));
    if let Some(nonce) = &grant.nonce {
        claims.insert("nonce".into(), json!(nonce));
    }
    Value::Object(claims)
}

/// `GET|POST /oidc/userinfo` with `Authorization: Bearer <access token>`.
pub async fn userinfo<S: OidcStore + ResourceReader>(store: &S, request: &Request) -> Response<Body> {
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|token| !token.is_empty());
    let Some(token) = bearer else {
        return TokenError {
            status: StatusCode::UNAUTHORIZED,
            code: "invalid_request",
            description: "an access token is required as a Bearer token",
            challenge: Some("Bearer realm=\"oidc\""),
        }
        .into_response();
    };
    let invalid = |description| {
        TokenError {
            status: StatusCode::UNAUTHORIZED,
            code: "invalid_token",
            description,
            challenge: Some("Bearer realm=\"oidc\", error=\"invalid_token\""),
        }
        .into_response()
    };
    let grant = match store
        .get_access_token(&fingerprint(token), chrono::Utc::now().timestamp())
        .await
    {
        Ok(Some(grant)) => grant,
        Ok(None) => return invalid("the access token is unknown or expired"),
        Err(err) => {
            tracing::warn!(error = %err, "userinfo could not reach storage");
            return TokenError::unavailable().into_response();
        }
    };
    // The claims of an add-on that is suspended or gone are not told: the
    // token ends with the add-on it was for.
    match current_identity(store, grant.identity.clone()).await {
        Ok(Ok(identity)) => no_store(json_response(
            StatusCode::OK,
            &Value::Object(identity_claims(&OidcGrant { identity, ..grant })),
        )),
        Ok(Err(ended)) => invalid(ended.description()),
        Err(err) => {
            tracing::warn!(error = %err, "userinfo could not reach storage");
            TokenError::unavailable().into_response()
        }
    }
}
