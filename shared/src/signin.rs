//! The sessions kernel both platforms' single sign-on share: the reasons a
//! sign-in is refused (each a small page in plain words), opening a session
//! with a single-use token (a cookie the panel reads), and the token cookies.
//! The `sso-login` routes that use it live in [`crate::sso_login`].

use crate::html;
use crate::model::{Platform, Resource, Session, SignedInIdentity, Timestamp};
use crate::secret::random_hex;
use crate::store::{OpenOutcome, SessionStore, StoreError};
use lambda_http::http::{header, HeaderMap, HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use maud::html;
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "__Host-addon_session";
/// Where a signed-in browser lands.
pub const PANEL_PATH: &str = "/dashboard";
/// Bytes of randomness in a session id (256 bits).
const SESSION_ID_BYTES: usize = 32;

/// Why a sign-in was refused. The messages are for the person in front of
/// the browser: they say what happened and what to do, and reveal nothing
/// about keys, salts or internals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("The sign-in request is incomplete or malformed.")]
    MalformedRequest,
    #[error("This sign-in link could not be read.")]
    Malformed,
    #[error("This sign-in link was not issued by the platform.")]
    BadSignature,
    #[error("This sign-in link has expired.")]
    Expired,
    #[error("This sign-in link is dated in the future.")]
    FromTheFuture,
    #[error("This sign-in link has already been used.")]
    Replayed,
    #[error("This add-on does not exist or has been deleted.")]
    UnknownResource,
    #[error("Sign-in from this platform is not set up for this service.")]
    NotConfigured,
    #[error("This account's email address cannot be used here: only plain (ASCII) addresses are accepted.")]
    UnusableEmail,
    #[error("This sign-in was not started in this browser, or took longer than five minutes.")]
    NotStartedHere,
    #[error("This add-on is suspended by the platform (a payment is due, or a trial has ended). It opens again once the platform resumes it.")]
    Suspended,
}

impl Refusal {
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::MalformedRequest => StatusCode::BAD_REQUEST,
            Refusal::NotConfigured => StatusCode::NOT_FOUND,
            _ => StatusCode::FORBIDDEN,
        }
    }

    pub fn page(self) -> Response<Body> {
        tracing::info!(reason = ?self, "sign-in refused");
        html::page(
            self.status(),
            "Sign-in refused",
            html! {
                p { (self.to_string()) }
                @if self == Refusal::NotStartedHere {
                    p { a href="/cloud66/sso/start" { "Sign in with Cloud 66 again" } }
                } @else {
                    p { "Open the add-on again from your platform's console to sign in." }
                }
            },
        )
    }
}

/// A failed sign-in: refused, or storage was unavailable.
#[derive(Debug)]
pub enum SignInError {
    Refused(Refusal),
    Store(StoreError),
}

impl From<Refusal> for SignInError {
    fn from(refusal: Refusal) -> Self {
        Self::Refused(refusal)
    }
}

impl From<StoreError> for SignInError {
    fn from(err: StoreError) -> Self {
        Self::Store(err)
    }
}

impl SignInError {
    pub fn into_response(self) -> Response<Body> {
        match self {
            SignInError::Refused(refusal) => refusal.page(),
            SignInError::Store(err) => {
                tracing::warn!(error = %err, "sign-in could not reach storage");
                html::unavailable()
            }
        }
    }
}

/// A stable, non-reversible name for a token, so the table holds no token.
pub fn fingerprint(token: &str) -> String {
    hex::encode(Sha256::digest(token))
}

/// Opens sessions for verified sign-ins.
pub struct Sessions<S> {
    store: S,
    ttl_seconds: i64,
}

impl<S> Sessions<S> {
    pub fn new(store: S, ttl_seconds: i64) -> Self {
        Self { store, ttl_seconds }
    }

    /// The store the sessions live in, for the sign-in flows' other reads.
    pub fn store(&self) -> &S {
        &self.store
    }
}

/// How far ahead of our clock a marketplace's sign-in timestamp may be
/// (clock skew).
pub const FUTURE_TOLERANCE_SECONDS: i64 = 60;

/// A signed sign-in form issued at `issued` (Unix seconds) is fresh at
/// `now`: at most `max_age_seconds` old, at most
/// [`FUTURE_TOLERANCE_SECONDS`] ahead.
pub fn check_fresh(issued: i64, now: i64, max_age_seconds: i64) -> Result<(), Refusal> {
    if issued > now + FUTURE_TOLERANCE_SECONDS {
        return Err(Refusal::FromTheFuture);
    }
    if now - issued > max_age_seconds {
        return Err(Refusal::Expired);
    }
    Ok(())
}

/// A marketplace's sign-in timestamp in whole Unix seconds (Heroku's,
/// Scalingo's): at most 12 digits, nothing else.
pub fn unix_seconds(text: &str) -> Option<i64> {
    (!text.is_empty() && text.len() <= 12 && text.chars().all(|c| c.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// Until when a proof issued at `issued` must stay spent: past that it is
/// refused as expired anyway.
pub fn spent_until(issued: i64, max_age_seconds: i64) -> i64 {
    issued + max_age_seconds + FUTURE_TOLERANCE_SECONDS
}

/// A verified marketplace sign-in to one resource, and what its proof
/// vouches for (docs/oidc.md "Claims").
pub struct ResourceSignIn<'a> {
    /// The active resource the proof signs, of the signing marketplace.
    pub resource: Resource,
    /// Who signs in, as [`SignedInIdentity::subject_of`] takes it
    /// (`user:…` when the proof signs the user, else the add-on's).
    pub account: String,
    /// The email the form gave (empty: none).
    pub email: &'a str,
    /// Whether the proof signs that email.
    pub email_signed: bool,
    /// The marketplace's navigation data (empty: none).
    pub nav_data: &'a str,
}

/// What a verified marketplace sign-in to a resource spends: the resource
/// and the form's timestamp, whatever proofs the form carries. Spending
/// only the proof checked would let one form, re-posted without its
/// strongest proof and then without the next, open a session each time.
pub fn resource_signin_key(platform: Platform, resource_id: &str, timestamp: &str) -> String {
    format!("signin\n{}\n{resource_id}\n{timestamp}", platform.as_str())
}

impl<S: SessionStore> Sessions<S> {
    /// Spends the sign-in of `sign_in` issued at `timestamp` (the text the
    /// proof signs; until `proof_expires_at`) and opens its session, with
    /// the identity the OpenID Connect provider tells the vendor's app.
    pub async fn open_on_resource(
        &self,
        timestamp: &str,
        proof_expires_at: i64,
        sign_in: ResourceSignIn<'_>,
    ) -> Result<Response<Body>, SignInError> {
        let spent = resource_signin_key(sign_in.resource.platform, &sign_in.resource.id, timestamp);
        let now = Timestamp::now();
        let platform = sign_in.resource.platform;
        let email = Some(sign_in.email.to_string()).filter(|email| !email.is_empty());
        // Only an email the proof signs is the customer's `email`; an unsigned
        // one is whatever the form's sender chose (docs/security.md).
        let (signed_email, unverified_email) = match sign_in.email_signed {
            true => (email.clone(), None),
            false => (None, email.clone()),
        };
        let identity = SignedInIdentity {
            subject: SignedInIdentity::subject_of(platform, &sign_in.account),
            platform,
            email_verified: signed_email.is_some(),
            email: signed_email,
            unverified_email,
            name: None,
            resource_id: None,
            plan: None,
            marketplace_id: None,
            aws_account_id: None,
            auth_time: now.0.timestamp(),
        }
        .with_resource(Some(&sign_in.resource));
        let session = Session {
            platform,
            subject_id: sign_in.resource.id,
            email,
            nav_data: Some(sign_in.nav_data.to_string()).filter(|nav| !nav.is_empty()),
            created_at: now.to_string(),
            expires_at: 0,
            identity: Some(identity),
        };
        self.open(&spent, proof_expires_at, session).await
    }

    /// Spends the sign-in token and opens `session` (its expiry set here);
    /// answers 303 to the panel with the session cookie.
    pub async fn open(
        &self,
        token: &str,
        token_expires_at: i64,
        session: Session,
    ) -> Result<Response<Body>, SignInError> {
        let (session_id, session) = self.fresh(session);
        match self
            .store
            .open_session(&fingerprint(token), token_expires_at, &session_id, &session)
            .await?
        {
            OpenOutcome::Replayed => Err(Refusal::Replayed.into()),
            OpenOutcome::Opened => {
                tracing::info!(platform = ?session.platform, subject_id = %session.subject_id, "session opened");
                Ok(self.landing(&session_id))
            }
        }
    }
}

impl<S> Sessions<S> {
    /// A new session's id, and `session` with its expiry set: for a caller
    /// that writes it in a transaction of its own (`AlsoWrite::Session`).
    pub fn fresh(&self, mut session: Session) -> (String, Session) {
        session.expires_at = chrono::Utc::now().timestamp() + self.ttl_seconds;
        (random_hex(SESSION_ID_BYTES), session)
    }

    /// The answer once session `session_id` is stored: 303 to the panel with
    /// its cookie.
    pub fn landing(&self, session_id: &str) -> Response<Body> {
        let mut response = html::redirect(StatusCode::SEE_OTHER, PANEL_PATH);
        if let Some(cookie) = token_cookie(SESSION_COOKIE, session_id, self.ttl_seconds) {
            response.headers_mut().insert(header::SET_COOKIE, cookie);
        }
        response
    }
}

/// Whether a POST comes from a page of this site: `Sec-Fetch-Site:
/// same-origin` where the browser sends it, else an `Origin` whose host is
/// the request's own `Host` (over `https`, or `http` on loopback). A request
/// with neither is refused: every browser sends `Origin` on a form POST.
pub fn is_same_origin(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return site.eq_ignore_ascii_case("same-origin");
    }
    let (Some(origin), Some(host)) = (text(header::ORIGIN.as_str()), text(header::HOST.as_str())) else {
        return false;
    };
    let Ok(origin) = reqwest::Url::parse(origin) else {
        return false;
    };
    let Some(origin_host) = origin.host_str() else {
        return false;
    };
    let origin_authority = match origin.port() {
        Some(port) => format!("{origin_host}:{port}"),
        None => origin_host.to_string(),
    };
    let loopback = matches!(origin_host, "localhost" | "127.0.0.1" | "[::1]");
    let scheme_ok = origin.scheme() == "https" || (origin.scheme() == "http" && loopback);
    scheme_ok && origin.path() == "/" && origin_authority.eq_ignore_ascii_case(host)
}

/// The session id from the request's cookies, if it carries one.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    random_cookie(headers, SESSION_COOKIE, SESSION_ID_BYTES)
}

/// The value of cookie `name`, if it is `bytes` random bytes as hex: the
/// shape of every token this service sets, so anything else is refused
/// before it reaches storage.
pub fn random_cookie(headers: &HeaderMap, name: &str, bytes: usize) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(held, _)| *held == name)
        .map(|(_, value)| value.trim().to_string())
        .filter(|value| value.len() == 2 * bytes && value.chars().all(|c| c.is_ascii_hexdigit()))
}

/// `Set-Cookie` for a token cookie (the session, or a `__Host-` one): HTTPS
/// only, the whole site, out of scripts' reach, sent on top-level navigations
/// from the platform (`SameSite=Lax`). `max_age` 0 removes it.
pub fn token_cookie(name: &str, value: &str, max_age: i64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{name}={value}; Max-Age={max_age}; Path=/; HttpOnly; Secure; SameSite=Lax"
    ))
    .ok()
}

/// A `Set-Cookie` value that removes the session cookie.
pub fn clearing_cookie() -> HeaderValue {
    HeaderValue::from_static("__Host-addon_session=; Max-Age=0; Path=/; HttpOnly; Secure; SameSite=Lax")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sign_in_is_spent_by_its_marketplace_add_on_and_timestamp_alone() {
        let key = resource_signin_key(Platform::Heroku, "res_hk_1", "1700000000");
        assert_eq!(key, "signin\nheroku\nres_hk_1\n1700000000");
        assert_ne!(
            key,
            resource_signin_key(Platform::Scalingo, "res_hk_1", "1700000000")
        );
        assert_ne!(
            key,
            resource_signin_key(Platform::Heroku, "res_hk_2", "1700000000")
        );
        assert_ne!(
            key,
            resource_signin_key(Platform::Heroku, "res_hk_1", "1700000001")
        );
    }

    #[test]
    fn a_fingerprint_is_the_tokens_sha256_in_hex() {
        assert_eq!(
            fingerprint("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn each_refusal_has_its_status_and_storage_trouble_is_a_503_page() {
        assert_eq!(Refusal::MalformedRequest.status(), StatusCode::BAD_REQUEST);
        assert_eq!(Refusal::NotConfigured.status(), StatusCode::NOT_FOUND);
        assert_eq!(Refusal::Replayed.status(), StatusCode::FORBIDDEN);
        let refused = SignInError::Refused(Refusal::Expired).into_response();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert!(String::from_utf8_lossy(refused.body().as_ref()).contains("has expired"));
        let unavailable = SignInError::Store(StoreError::Unavailable("down".into())).into_response();
        assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn a_session_lives_exactly_its_ttl() {
        let sessions = Sessions::new(crate::store::memory::MemoryStore::default(), 3600);
        let session = crate::model::Session {
            platform: crate::model::Platform::CleverCloud,
            subject_id: "res_1".into(),
            email: None,
            nav_data: None,
            created_at: "2026-11-23T00:00:00.000Z".into(),
            expires_at: 0,
            identity: None,
        };
        let before = chrono::Utc::now().timestamp();
        sessions
            .open("token", before + 360, session)
            .await
            .expect("opened");
        let after = chrono::Utc::now().timestamp();
        let stored = sessions
            .store()
            .sessions
            .lock()
            .unwrap()
            .values()
            .next()
            .cloned()
            .unwrap();
        assert!(
            (before + 3600..=after + 3600).contains(&stored.expires_at),
            "{}",
            stored.expires_at
        );
    }

    #[test]
    fn session_id_is_read_from_any_cookie_header_and_checked() {
        let id = "ab".repeat(SESSION_ID_BYTES);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=1; {SESSION_COOKIE}={id}; b=2")).unwrap(),
        );
        assert_eq!(session_id(&headers), Some(id));
        let mut forged = HeaderMap::new();
        forged.insert(
            header::COOKIE,
            HeaderValue::from_static("__Host-addon_session=<script>"),
        );
        assert_eq!(session_id(&forged), None);
        assert_eq!(session_id(&HeaderMap::new()), None);
    }

    #[test]
    fn refusal_pages_say_why_with_the_right_status() {
        let page = Refusal::Replayed.page();
        assert_eq!(page.status(), StatusCode::FORBIDDEN);
        let body = std::str::from_utf8(page.body().as_ref()).unwrap().to_string();
        assert!(body.contains("already been used"), "{body}");
        assert_eq!(Refusal::MalformedRequest.status(), StatusCode::BAD_REQUEST);
    }
}
