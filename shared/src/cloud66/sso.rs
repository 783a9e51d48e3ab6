//! Cloud 66 SSO: `/sso/signin/PROVIDER` on Cloud 66, then a callback carrying
//! `multipass` and `signature`.

use super::multipass::{self, MultipassKey};
use super::pending;
use crate::config::{self, ConfigError};
use crate::model::{canonical_email, Platform, Session, SignedInIdentity, Timestamp};
use crate::secret::random_hex;
use crate::secret::{constant_time_eq, Secret};
use crate::signin::{self, fingerprint, Refusal, Sessions, SignInError};
use crate::store::{AccountStore, ResourceReader, SessionStore};
use chrono::{DateTime, NaiveDateTime, Utc};
use lambda_http::http::{header, HeaderMap, HeaderValue, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use sha2::{Digest, Sha256};

/// The audit `actor` for accounts created by a Cloud 66 flow.
pub const ACTOR: &str = "cloud66";

/// How the multipass key is derived from the provider UID (`CLOUD66_MULTIPASS_KEY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDerivation {
    /// `uid`: the first 16 characters of the UID, as bytes (Cloud 66's text).
    Uid,
    /// `gem`: SHA-1(api_key + site_key)[0..16] as the multipass gem does, with
    /// api_key = the first 16 characters of the UID, site_key = the provider.
    Gem,
}

/// Cloud 66 SSO settings and checks. This project reads Cloud 66's text as:
/// `signature` = lowercase hex SHA-256 of UID characters 17–32 followed by
/// the multipass exactly as received; the multipass is the gem's format under
/// the key chosen by [`KeyDerivation`].
#[derive(Debug, Clone)]
pub struct Cloud66Sso {
    base_url: String,
    provider: String,
    signing_key: Secret,
    key: MultipassKey,
    /// During a rotation of the UID (`CLOUD66_PROVIDER_UID_PREVIOUS`): the
    /// previous UID's signing and multipass keys, tried when the current
    /// one's signature does not match.
    previous: Option<(Secret, MultipassKey)>,
}

/// What a valid multipass says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cloud66Identity {
    pub email: String,
    pub name: Option<String>,
    pub expires: DateTime<Utc>,
}

const MIN_UID_CHARS: usize = 32;

impl Cloud66Sso {
    /// `None` when Cloud 66 SSO is not configured (neither `CLOUD66_PROVIDER`
    /// nor `CLOUD66_PROVIDER_UID` set); an error when it is half configured.
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let provider = config::optional(lookup, "CLOUD66_PROVIDER");
        let uid = config::optional(lookup, "CLOUD66_PROVIDER_UID");
        let (provider, uid) = match (provider, uid) {
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "CLOUD66_PROVIDER_UID",
                    "is missing but CLOUD66_PROVIDER is set",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "CLOUD66_PROVIDER",
                    "is missing but CLOUD66_PROVIDER_UID is set",
                ))
            }
            (Some(provider), Some(uid)) => (provider, uid),
        };
        if !provider
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::new(
                "CLOUD66_PROVIDER",
                "must be letters, digits, '-' or '_'",
            ));
        }
        let derivation = match config::optional(lookup, "CLOUD66_MULTIPASS_KEY").as_deref() {
            None | Some("uid") => KeyDerivation::Uid,
            Some("gem") => KeyDerivation::Gem,
            Some(_) => {
                return Err(ConfigError::new(
                    "CLOUD66_MULTIPASS_KEY",
                    "must be `uid` or `gem`",
                ))
            }
        };
        let base_url = config::base_url(
            "CLOUD66_BASE_URL",
            config::optional(lookup, "CLOUD66_BASE_URL").unwrap_or_else(|| "https://app.cloud66.com".into()),
        )?;
        let sso = Self::new(base_url, provider, &uid, derivation)?;
        match config::optional(lookup, "CLOUD66_PROVIDER_UID_PREVIOUS") {
            None => Ok(Some(sso)),
            Some(previous) => sso
                .with_previous_uid(&previous, derivation)
                .map_err(|err| ConfigError::new("CLOUD66_PROVIDER_UID_PREVIOUS", err.problem))
                .map(Some),
        }
    }

    /// Accepts callbacks signed and encrypted with the previous UID too.
    pub fn with_previous_uid(mut self, uid: &str, derivation: KeyDerivation) -> Result<Self, ConfigError> {
        let previous = Self::new(self.base_url.clone(), self.provider.clone(), uid, derivation)?;
        self.previous = Some((previous.signing_key, previous.key));
        Ok(self)
    }

    /// The UID must be at least 32 ASCII characters: its first 16 make the
    /// key, the next 16 sign.
    pub fn new(
        base_url: String,
        provider: String,
        uid: &str,
        derivation: KeyDerivation,
    ) -> Result<Self, ConfigError> {
        if uid.len() < MIN_UID_CHARS || !uid.is_ascii() {
            return Err(ConfigError::new(
                "CLOUD66_PROVIDER_UID",
                format!("must be at least {MIN_UID_CHARS} ASCII characters"),
            ));
        }
        let api_key = &uid[..16];
        let key = match derivation {
            KeyDerivation::Uid => {
                let mut bytes = [0u8; 16];
                bytes.copy_from_slice(api_key.as_bytes());
                MultipassKey::from_bytes(bytes)
            }
            KeyDerivation::Gem => MultipassKey::gem(api_key, &provider),
        };
        Ok(Self {
            base_url,
            signing_key: Secret::new(&uid[16..32]),
            provider,
            key,
            previous: None,
        })
    }

    /// Where `/cloud66/sso/start` sends the browser.
    pub fn signin_url(&self) -> String {
        format!("{}/sso/signin/{}", self.base_url, self.provider)
    }

    /// The signature Cloud 66 sends beside `multipass`.
    pub fn signature(&self, multipass: &str) -> String {
        signature_with(&self.signing_key, multipass)
    }

    /// The multipass key of the UID that signed `multipass`, if one did:
    /// the current UID's, or during a rotation the previous one's.
    fn key_that_signed(&self, multipass: &str, signature: &str) -> Option<&MultipassKey> {
        let signature = signature.trim().to_ascii_lowercase();
        let signed = |signing_key: &Secret| {
            constant_time_eq(
                signature_with(signing_key, multipass).as_bytes(),
                signature.as_bytes(),
            )
        };
        if signed(&self.signing_key) {
            return Some(&self.key);
        }
        self.previous
            .as_ref()
            .filter(|(signing_key, _)| signed(signing_key))
            .map(|(_, key)| key)
    }

    /// Checks the signature (before any decryption), decrypts, and reads the
    /// identity. Every failure is a [`Refusal`]; nothing here can panic.
    pub fn verify(
        &self,
        multipass: &str,
        signature: &str,
        now: DateTime<Utc>,
    ) -> Result<Cloud66Identity, Refusal> {
        let key = self
            .key_that_signed(multipass, signature)
            .ok_or(Refusal::BadSignature)?;
        let plaintext = multipass::decode(key, multipass).map_err(|_| Refusal::Malformed)?;
        let claims: serde_json::Value = serde_json::from_slice(&plaintext).map_err(|_| Refusal::Malformed)?;
        let email = claims
            .get("email")
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|email| email.contains('@') && email.len() <= 254)
            .ok_or(Refusal::Malformed)?
            .to_string();
        let name = claims.get("name").and_then(|v| v.as_str()).map(str::to_string);
        let expires = claims
            .get("expires")
            .and_then(parse_expires)
            .ok_or(Refusal::Expired)?;
        if expires <= now {
            return Err(Refusal::Expired);
        }
        Ok(Cloud66Identity { email, name, expires })
    }

    /// A real callback's `(multipass, signature)`, as Cloud 66 would send it:
    /// for tests and tooling.
    pub fn sign_in_as(&self, email: &str, name: &str, expires: &str) -> (String, String) {
        let plaintext = serde_json::json!({"email": email, "name": name, "expires": expires}).to_string();
        let multipass = multipass::encode(&self.key, plaintext.as_bytes());
        let signature = self.signature(&multipass);
        (multipass, signature)
    }
}

fn signature_with(signing_key: &Secret, multipass: &str) -> String {
    let digest = Sha256::new()
        .chain_update(signing_key.expose())
        .chain_update(multipass)
        .finalize();
    hex::encode(digest)
}

/// The cookie that binds a Cloud 66 sign-in to the browser that started it.
/// `__Host-`: only ever set by this host, over HTTPS, for the whole site.
pub const STATE_COOKIE: &str = "__Host-cloud66_signin";
/// How long a started sign-in may take to come back.
const STATE_TTL_SECONDS: i64 = 300;
/// Bytes of randomness in a sign-in state (256 bits).
const STATE_BYTES: usize = 32;

fn state_cookie(value: &str, max_age: i64) -> Option<HeaderValue> {
    signin::token_cookie(STATE_COOKIE, value, max_age)
}

/// The sign-in state the request's cookies carry, if well formed.
fn state_from(headers: &HeaderMap) -> Option<String> {
    signin::random_cookie(headers, STATE_COOKIE, STATE_BYTES)
}

/// `GET /cloud66/sso/start`: records a fresh sign-in state, sets it as a
/// cookie on this browser, and sends the browser to Cloud 66 to sign in.
/// Only a callback that brings the cookie back opens a session, so a
/// callback URL someone else sends cannot sign this browser in (login CSRF).
pub async fn start<S: SessionStore>(
    sso: Option<&Cloud66Sso>,
    sessions: &Sessions<S>,
) -> Result<Response<Body>, SignInError> {
    let sso = sso.ok_or(Refusal::NotConfigured)?;
    let state = random_hex(STATE_BYTES);
    let expires_at = Utc::now().timestamp() + STATE_TTL_SECONDS;
    sessions
        .store()
        .begin_signin(&fingerprint(&state), expires_at)
        .await?;
    let mut response = crate::html::redirect(StatusCode::FOUND, &sso.signin_url());
    if let Some(cookie) = state_cookie(&state, STATE_TTL_SECONDS) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// `GET /cloud66/sso/callback?multipass=…&signature=…`: verify, check that
/// this browser started the sign-in, find or create the account by email,
/// open a session.
pub async fn callback<S: AccountStore + ResourceReader + SessionStore>(
    sso: Option<&Cloud66Sso>,
    sessions: &Sessions<S>,
    request: &Request,
) -> Result<Response<Body>, SignInError> {
    let sso = sso.ok_or(Refusal::NotConfigured)?;
    let query = request.query_string_parameters_ref();
    let param = |name: &str| query.and_then(|query| query.first(name)).map(str::to_string);
    let (Some(multipass), Some(signature)) = (param("multipass"), param("signature")) else {
        return Err(Refusal::Malformed.into());
    };
    let identity = sso.verify(&multipass, &signature, Utc::now())?;
    let email = canonical_email(&identity.email).ok_or(Refusal::UnusableEmail)?;
    let started_here = match state_from(request.headers()) {
        Some(state) => {
            sessions
                .store()
                .finish_signin(&fingerprint(&state), Utc::now().timestamp())
                .await?
        }
        None => false,
    };
    if !started_here {
        return Err(Refusal::NotStartedHere.into());
    }
    let account = sessions
        .store()
        .find_or_create_account(&email, identity.name.as_deref(), ACTOR)
        .await?;
    // The account's resource, for the claims of the vendor's app (crate::oidc).
    let resource = match account.resource_ids.first() {
        Some(id) => sessions.store().get_resource(id).await?,
        None => None,
    };
    let now = Timestamp::now();
    let signed_in = SignedInIdentity {
        subject: SignedInIdentity::subject_of(Platform::Cloud66, &format!("account:{}", account.id)),
        platform: Platform::Cloud66,
        aws_account_id: None,
        email: Some(account.email.clone()),
        // The multipass is signed and encrypted by Cloud 66: it vouches for the email.
        email_verified: true,
        unverified_email: None,
        name: identity.name.clone(),
        resource_id: None,
        plan: None,
        marketplace_id: None,
        auth_time: now.0.timestamp(),
    }
    .with_resource(resource.as_ref().filter(|resource| resource.is_active()));
    let session = Session {
        platform: Platform::Cloud66,
        subject_id: account.id,
        email: Some(account.email),
        nav_data: None,
        created_at: now.to_string(),
        expires_at: 0,
        identity: Some(signed_in),
    };
    let mut response = sessions
        .open(&multipass, identity.expires.timestamp() + 60, session)
        .await?;
    if let Some(spent) = state_cookie("", 0) {
        response.headers_mut().append(header::SET_COOKIE, spent);
    }
    // A link waits for this sign-in: it, not the panel, comes next.
    if pending::token(request.headers()).is_some() {
        response
            .headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static(pending::RESUME_PATH));
    }
    Ok(response)
}

/// `expires` as the gem writes it (`2030-01-01 00:00:00 UTC`,
/// `2029-12-31 19:00:00 -0500`), as RFC 3339, or as Unix seconds.
pub fn parse_expires(value: &serde_json::Value) -> Option<DateTime<Utc>> {
    if let Some(seconds) = value.as_i64() {
        return DateTime::from_timestamp(seconds, 0);
    }
    let text = value.as_str()?.trim();
    if let Ok(seconds) = text.parse::<i64>() {
        return DateTime::from_timestamp(seconds, 0);
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    if let Ok(time) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S %z") {
        return Some(time.with_timezone(&Utc));
    }
    let naive = text.strip_suffix(" UTC").or_else(|| text.strip_suffix(" GMT"))?;
    NaiveDateTime::parse_from_str(naive, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|time| time.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const UID: &str = "0123456789abcdefGHIJKLMNOPQRSTUV-rest-of-uid";

    fn sso(derivation: KeyDerivation) -> Cloud66Sso {
        Cloud66Sso::new("https://app.cloud66.com".into(), "acme".into(), UID, derivation).unwrap()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2029-06-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn signature_is_sha256_of_uid_characters_17_to_32_then_the_multipass() {
        let expected = hex::encode(Sha256::digest(b"GHIJKLMNOPQRSTUVabc"));
        assert_eq!(sso(KeyDerivation::Uid).signature("abc"), expected);
    }

    #[test]
    fn a_signed_callback_verifies_under_both_key_derivations() {
        for derivation in [KeyDerivation::Uid, KeyDerivation::Gem] {
            let sso = sso(derivation);
            let (multipass, signature) = sso.sign_in_as("Jon@Smith.com", "Jon", "2030-01-01 00:00:00 UTC");
            let identity = sso.verify(&multipass, &signature, now()).unwrap();
            assert_eq!(identity.email, "Jon@Smith.com");
            assert_eq!(identity.name.as_deref(), Some("Jon"));
        }
    }

    #[test]
    fn the_key_derivations_differ() {
        let (multipass, _) = sso(KeyDerivation::Gem).sign_in_as("a@b.c", "A", "2030-01-01 00:00:00 UTC");
        let uid = sso(KeyDerivation::Uid);
        let signature = uid.signature(&multipass);
        assert_eq!(uid.verify(&multipass, &signature, now()), Err(Refusal::Malformed));
    }

    #[test]
    fn refusals() {
        let sso = sso(KeyDerivation::Uid);
        let (multipass, signature) = sso.sign_in_as("a@b.c", "A", "2030-01-01 00:00:00 UTC");
        assert_eq!(sso.verify(&multipass, "00", now()), Err(Refusal::BadSignature));
        assert_eq!(
            sso.verify(&format!("{multipass}A"), &signature, now()),
            Err(Refusal::BadSignature)
        );
        let (expired, signature) = sso.sign_in_as("a@b.c", "A", "2029-05-31 23:59:59 UTC");
        assert_eq!(sso.verify(&expired, &signature, now()), Err(Refusal::Expired));
        let (garbage_time, signature) = sso.sign_in_as("a@b.c", "A", "next tuesday");
        assert_eq!(
            sso.verify(&garbage_time, &signature, now()),
            Err(Refusal::Expired)
        );
        let not_json = multipass::encode(&sso.key, b"not json");
        assert_eq!(
            sso.verify(&not_json, &sso.signature(&not_json), now()),
            Err(Refusal::Malformed)
        );
        let no_expiry = multipass::encode(&sso.key, br#"{"email":"a@b.c","name":"A"}"#);
        assert_eq!(
            sso.verify(&no_expiry, &sso.signature(&no_expiry), now()),
            Err(Refusal::Expired)
        );
        let bad_base64 = "%%%";
        assert_eq!(
            sso.verify(bad_base64, &sso.signature(bad_base64), now()),
            Err(Refusal::Malformed)
        );
    }

    #[test]
    fn expires_is_parsed_leniently() {
        let expected = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        for value in [
            serde_json::json!("2030-01-01 00:00:00 UTC"),
            serde_json::json!("2029-12-31 19:00:00 -0500"),
            serde_json::json!("2030-01-01T00:00:00Z"),
            serde_json::json!("2030-01-01T01:00:00+01:00"),
            serde_json::json!(1893456000),
            serde_json::json!("1893456000"),
        ] {
            assert_eq!(parse_expires(&value), Some(expected), "{value}");
        }
        assert_eq!(parse_expires(&serde_json::json!("soon")), None);
        assert_eq!(parse_expires(&serde_json::json!(null)), None);
    }

    #[test]
    fn during_a_uid_rotation_callbacks_of_either_uid_sign_in_and_no_other() {
        const NEW_UID: &str = "ZYXWVUTSRQPONMLKjihgfedcba987654-the-new-one";
        for derivation in [KeyDerivation::Uid, KeyDerivation::Gem] {
            let old = sso(derivation);
            let new = Cloud66Sso::new(
                "https://app.cloud66.com".into(),
                "acme".into(),
                NEW_UID,
                derivation,
            )
            .unwrap();
            let rotating = Cloud66Sso::new(
                "https://app.cloud66.com".into(),
                "acme".into(),
                NEW_UID,
                derivation,
            )
            .unwrap()
            .with_previous_uid(UID, derivation)
            .unwrap();
            for (who, issuer) in [("old", &old), ("new", &new)] {
                let (multipass, signature) =
                    issuer.sign_in_as(&format!("{who}@corp.com"), "K", "2030-01-01 00:00:00 UTC");
                let identity = rotating.verify(&multipass, &signature, now()).unwrap();
                assert_eq!(identity.email, format!("{who}@corp.com"));
            }
            let (multipass, signature) = old.sign_in_as("old@corp.com", "K", "2030-01-01 00:00:00 UTC");
            assert_eq!(
                new.verify(&multipass, &signature, now()),
                Err(Refusal::BadSignature),
                "after the rotation"
            );
            // The previous UID's signature with the current UID's encryption is no callback at all.
            let (mixed, _) = new.sign_in_as("mixed@corp.com", "K", "2030-01-01 00:00:00 UTC");
            let mixed_signature = old.signature(&mixed);
            assert_eq!(
                rotating.verify(&mixed, &mixed_signature, now()),
                Err(Refusal::Malformed)
            );
        }
        let lookup = |name: &str| match name {
            "CLOUD66_PROVIDER" => Some("acme".to_string()),
            "CLOUD66_PROVIDER_UID" => Some(NEW_UID_FOR_LOOKUP.to_string()),
            "CLOUD66_PROVIDER_UID_PREVIOUS" => Some("too-short".to_string()),
            _ => None,
        };
        const NEW_UID_FOR_LOOKUP: &str = "ZYXWVUTSRQPONMLKjihgfedcba987654-the-new-one";
        let err = Cloud66Sso::from_lookup(&lookup).unwrap_err();
        assert_eq!(err.var, "CLOUD66_PROVIDER_UID_PREVIOUS");
    }

    #[test]
    fn configuration_is_checked_at_start_up() {
        let lookup = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        assert!(Cloud66Sso::from_lookup(&lookup(&[])).unwrap().is_none());
        let short = Cloud66Sso::from_lookup(&lookup(&[
            ("CLOUD66_PROVIDER", "acme"),
            ("CLOUD66_PROVIDER_UID", "short"),
        ]));
        assert_eq!(short.unwrap_err().var, "CLOUD66_PROVIDER_UID");
        let half = Cloud66Sso::from_lookup(&lookup(&[("CLOUD66_PROVIDER", "acme")]));
        assert_eq!(half.unwrap_err().var, "CLOUD66_PROVIDER_UID");
        let bad_mode = Cloud66Sso::from_lookup(&lookup(&[
            ("CLOUD66_PROVIDER", "acme"),
            ("CLOUD66_PROVIDER_UID", UID),
            ("CLOUD66_MULTIPASS_KEY", "sha1"),
        ]));
        assert_eq!(bad_mode.unwrap_err().var, "CLOUD66_MULTIPASS_KEY");
        let ok = Cloud66Sso::from_lookup(&lookup(&[
            ("CLOUD66_PROVIDER", "acme"),
            ("CLOUD66_PROVIDER_UID", UID),
        ]));
        assert_eq!(
            ok.unwrap().unwrap().signin_url(),
            "https://app.cloud66.com/sso/signin/acme"
        );
    }

    proptest! {
        #[test]
        fn random_callbacks_never_panic_and_never_verify(multipass in ".{0,120}", signature in "[0-9a-f]{0,64}") {
            prop_assert!(sso(KeyDerivation::Uid).verify(&multipass, &signature, now()).is_err());
        }

        #[test]
        fn correctly_signed_garbage_is_refused(bytes in prop::collection::vec(any::<u8>(), 0..96)) {
            use base64::Engine as _;
            let sso = sso(KeyDerivation::Uid);
            let multipass = base64::engine::general_purpose::URL_SAFE.encode(bytes);
            let signature = sso.signature(&multipass);
            prop_assert!(sso.verify(&multipass, &signature, now()).is_err());
        }
    }

    fn lookup(provider: &str) -> impl Fn(&str) -> Option<String> + '_ {
        move |name| match name {
            "CLOUD66_PROVIDER" => Some(provider.to_string()),
            "CLOUD66_PROVIDER_UID" => Some(UID.to_string()),
            _ => None,
        }
    }

    #[test]
    fn a_provider_name_is_letters_digits_dashes_and_underscores_only() {
        for good in ["acme", "acme-local", "acme_local", "Acme-2_x"] {
            assert!(
                matches!(Cloud66Sso::from_lookup(&lookup(good)), Ok(Some(_))),
                "{good}"
            );
        }
        for bad in ["acme.local", "acme local", "acme/x", "acme?x=1", "ac\u{e9}me"] {
            let Err(err) = Cloud66Sso::from_lookup(&lookup(bad)) else {
                panic!("{bad} was accepted")
            };
            assert_eq!(err.var, "CLOUD66_PROVIDER", "{bad}");
        }
    }

    #[test]
    fn an_identity_needs_an_address_with_an_at_sign_of_at_most_254_characters() {
        let sso = sso(KeyDerivation::Uid);
        let verify = |email: &str| {
            let (multipass, signature) = sso.sign_in_as(email, "Jon", "2030-01-01 00:00:00 UTC");
            sso.verify(&multipass, &signature, now())
                .map(|identity| identity.email)
        };
        let longest = format!("{}@example.com", "a".repeat(254 - "@example.com".len()));
        assert_eq!(verify(&longest), Ok(longest.clone()));
        let too_long = format!("a{longest}");
        assert_eq!(verify(&too_long), Err(Refusal::Malformed));
        assert_eq!(verify("jon.example.com"), Err(Refusal::Malformed));
    }

    #[test]
    fn the_state_is_read_only_from_its_own_cookie_and_only_when_well_formed() {
        let state = "ab".repeat(STATE_BYTES);
        let headers = |cookie: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
            headers
        };
        let own = headers(&format!("other=1; {STATE_COOKIE}={state}"));
        assert_eq!(state_from(&own), Some(state.clone()));
        assert_eq!(state_from(&headers(&format!("not_the_state={state}"))), None);
        assert_eq!(
            state_from(&headers(&format!("{STATE_COOKIE}={}", &state[2..]))),
            None
        );
        assert_eq!(state_from(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn start_records_a_fresh_state_and_sets_it_as_the_host_cookie() {
        let sso = sso(KeyDerivation::Uid);
        let sessions = Sessions::new(crate::store::memory::MemoryStore::default(), 3600);
        let response = start(Some(&sso), &sessions).await.unwrap();
        assert_eq!(response.status(), StatusCode::FOUND);
        assert_eq!(response.headers()[header::LOCATION], sso.signin_url().as_str());
        let cookie = response.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .to_string();
        let mut sent = HeaderMap::new();
        sent.insert(
            header::COOKIE,
            HeaderValue::from_str(cookie.split(';').next().unwrap()).unwrap(),
        );
        let state = state_from(&sent).expect("the cookie carries a well-formed state");
        assert!(
            cookie.contains(&format!("Max-Age={STATE_TTL_SECONDS}")),
            "{cookie}"
        );
        let recorded = sessions.store().signin_states.lock().unwrap().clone();
        let expires_at = recorded[&fingerprint(&state)];
        let now = Utc::now().timestamp();
        assert!(
            expires_at > now && expires_at <= now + STATE_TTL_SECONDS,
            "{expires_at}"
        );
    }

    mod callback {
        use super::*;
        use crate::store::memory::MemoryStore;
        use std::collections::HashMap;

        /// A callback request as the browser sends it, with `cookie` if any.
        fn request(sso: &Cloud66Sso, email: &str, cookie: Option<String>) -> Request {
            let (multipass, signature) = sso.sign_in_as(email, "Jon", "2099-01-01 00:00:00 UTC");
            let query: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("multipass", &multipass)
                .append_pair("signature", &signature)
                .finish();
            let mut builder =
                lambda_http::http::Request::builder().uri(format!("/cloud66/sso/callback?{query}"));
            if let Some(cookie) = cookie {
                builder = builder.header(header::COOKIE, cookie);
            }
            let query = url_query(&query);
            builder
                .body(Body::Empty)
                .unwrap()
                .with_query_string_parameters(query)
        }

        fn url_query(query: &str) -> HashMap<String, Vec<String>> {
            let mut map: HashMap<String, Vec<String>> = HashMap::new();
            for (name, value) in form_urlencoded::parse(query.as_bytes()) {
                map.entry(name.into_owned()).or_default().push(value.into_owned());
            }
            map
        }

        /// Starts a sign-in on `sessions`: the `Cookie` value its answer set.
        async fn started(sso: &Cloud66Sso, sessions: &Sessions<MemoryStore>) -> String {
            let response = start(Some(sso), sessions).await.unwrap();
            let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
            cookie.split(';').next().unwrap().to_string()
        }

        #[tokio::test]
        async fn a_callback_from_the_browser_that_started_opens_a_session_on_the_emails_account() {
            let sso = sso(KeyDerivation::Uid);
            let sessions = Sessions::new(MemoryStore::default(), 3600);
            let cookie = started(&sso, &sessions).await;
            let response = callback(
                Some(&sso),
                &sessions,
                &request(&sso, "Jon@Smith.com", Some(cookie)),
            )
            .await
            .unwrap();
            assert_eq!(response.status(), StatusCode::SEE_OTHER);
            assert_eq!(response.headers()[header::LOCATION], signin::PANEL_PATH);
            let cookies: Vec<&str> = response
                .headers()
                .get_all(header::SET_COOKIE)
                .iter()
                .map(|value| value.to_str().unwrap())
                .collect();
            assert!(
                cookies
                    .iter()
                    .any(|c| c.starts_with(&format!("{STATE_COOKIE}=;")) && c.contains("Max-Age=0")),
                "{cookies:?}"
            );
            let store = sessions.store();
            assert_eq!(
                store.accounts.lock().unwrap()["jon@smith.com"].email,
                "jon@smith.com"
            );
            assert_eq!(store.sessions.lock().unwrap().len(), 1);
            assert!(
                store.signin_states.lock().unwrap().is_empty(),
                "the state is spent"
            );
            // The multipass is remembered a minute past its own expiry, as
            // long as it could be accepted.
            let remembered: Vec<i64> = store.spent_tokens.lock().unwrap().values().copied().collect();
            let expires = DateTime::parse_from_rfc3339("2099-01-01T00:00:00Z")
                .unwrap()
                .timestamp();
            assert_eq!(remembered, vec![expires + 60]);
        }

        #[tokio::test]
        async fn a_callback_without_the_state_this_browser_was_given_opens_nothing() {
            let sso = sso(KeyDerivation::Uid);
            let sessions = Sessions::new(MemoryStore::default(), 3600);
            let _someone_elses = started(&sso, &sessions).await;
            let forged_state = format!("{STATE_COOKIE}={}", "ab".repeat(STATE_BYTES));
            for cookie in [None, Some(forged_state)] {
                let Err(refused) =
                    callback(Some(&sso), &sessions, &request(&sso, "jon@smith.com", cookie)).await
                else {
                    panic!("a session was opened")
                };
                assert!(
                    matches!(refused, SignInError::Refused(Refusal::NotStartedHere)),
                    "{refused:?}"
                );
            }
            assert!(sessions.store().accounts.lock().unwrap().is_empty());
            assert!(sessions.store().sessions.lock().unwrap().is_empty());
        }

        #[tokio::test]
        async fn a_callback_waited_for_by_a_link_goes_on_to_resume_it() {
            let sso = sso(KeyDerivation::Uid);
            let sessions = Sessions::new(MemoryStore::default(), 3600);
            let cookie = started(&sso, &sessions).await;
            let link = format!("{}={}", pending::COOKIE, "cd".repeat(32));
            let response = callback(
                Some(&sso),
                &sessions,
                &request(&sso, "jon@smith.com", Some(format!("{cookie}; {link}"))),
            )
            .await
            .unwrap();
            assert_eq!(response.headers()[header::LOCATION], pending::RESUME_PATH);
        }
    }
}
