//! Clever Cloud single sign-on: the console POSTs a form to the manifest's
//! `sso_url`. Two schemes are in use (docs/clevercloud.md):
//! - current: `signature` = hex SHA-512 of `id:user_id:email:nav-data:sso_salt:timestamp`;
//! - legacy: `token` = hex SHA-1 of `id:sso_salt:timestamp`.
//!
//! The timestamp is hashed exactly as received; it may be seconds or
//! milliseconds (above 10^12), even fractional seconds (the docs' sample).

use crate::config::{self, ConfigError};
use crate::http::has_media_type;
use crate::model::{Platform, Resource};
use crate::secret::{constant_time_eq, Rotating, Secret};
use crate::signin::{check_fresh, spent_until, Refusal, ResourceSignIn, Sessions, SignInError};
use crate::store::{ResourceReader, SessionStore};
use chrono::{DateTime, Utc};
use lambda_http::{Body, Request, Response};
use sha1::Sha1;
use sha2::{Digest, Sha512};
use std::collections::HashMap;

/// Largest SSO form read.
const MAX_FORM_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    Signature(String),
    Token(String),
}

/// The SSO form's fields, URL-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoForm {
    pub id: String,
    pub timestamp: String,
    pub nav_data: String,
    pub email: String,
    pub user_id: String,
    pub proof: Proof,
}

impl SsoForm {
    /// The proof as compared (lower-case hex).
    fn proof_text(&self) -> String {
        match &self.proof {
            Proof::Signature(text) | Proof::Token(text) => text.trim().to_ascii_lowercase(),
        }
    }
}

/// Parses an `application/x-www-form-urlencoded` SSO body. Missing `id`,
/// `timestamp`, or both `signature` and `token`, or a field given twice, is
/// malformed.
pub fn parse_form(body: &[u8]) -> Result<SsoForm, Refusal> {
    if body.len() > MAX_FORM_BYTES {
        return Err(Refusal::MalformedRequest);
    }
    let mut fields: HashMap<String, String> = HashMap::new();
    for (name, value) in form_urlencoded::parse(body) {
        if fields.insert(name.into_owned(), value.into_owned()).is_some() {
            return Err(Refusal::MalformedRequest);
        }
    }
    let mut take = |name: &str| fields.remove(name).unwrap_or_default();
    let (id, timestamp) = (take("id"), take("timestamp"));
    let (signature, token) = (take("signature"), take("token"));
    let proof = match (signature.is_empty(), token.is_empty()) {
        (false, _) => Proof::Signature(signature),
        (true, false) => Proof::Token(token),
        (true, true) => return Err(Refusal::MalformedRequest),
    };
    if id.is_empty() || timestamp.is_empty() {
        return Err(Refusal::MalformedRequest);
    }
    Ok(SsoForm {
        id,
        timestamp,
        nav_data: take("nav-data"),
        email: take("email"),
        user_id: take("user_id"),
        proof,
    })
}

/// Seconds since the epoch from a timestamp in seconds or milliseconds,
/// possibly with a fractional part.
fn parse_timestamp(text: &str) -> Option<i64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |part: &str| part.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty() || whole.len() > 16 || !digits(whole) || !digits(fraction) {
        return None;
    }
    let value: i64 = whole.parse().ok()?;
    Some(if value > 1_000_000_000_000 {
        value / 1000
    } else {
        value
    })
}

/// The add-on's SSO salt and freshness rule.
#[derive(Debug, Clone)]
pub struct CleverCloudSso {
    /// `ADDON_SSO_SALT`, and during a rotation `ADDON_SSO_SALT_PREVIOUS`:
    /// Clever Cloud signs with the manifest's salt, which changes after the
    /// secret does.
    salt: Rotating,
    max_age_seconds: i64,
}

impl CleverCloudSso {
    pub fn new(salt: Secret, max_age_seconds: i64) -> Self {
        Self {
            salt: Rotating::new(salt, None),
            max_age_seconds,
        }
    }

    /// Accepts sign-ins made with `previous` too.
    pub fn with_previous_salt(mut self, previous: Option<Secret>) -> Self {
        self.salt.previous = previous;
        self
    }

    /// `ADDON_SSO_SALT`, `ADDON_SSO_SALT_PREVIOUS` and `SSO_MAX_AGE_SECONDS`
    /// (default 300).
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let salt = config::rotating(lookup, "ADDON_SSO_SALT", "ADDON_SSO_SALT_PREVIOUS")?;
        let max_age_seconds = config::seconds(lookup, "SSO_MAX_AGE_SECONDS", 300)?;
        Ok(Self {
            salt,
            max_age_seconds,
        })
    }

    /// The current scheme's `signature`.
    pub fn signature(&self, id: &str, user_id: &str, email: &str, nav_data: &str, timestamp: &str) -> String {
        signature_with(&self.salt.current, id, user_id, email, nav_data, timestamp)
    }

    /// The legacy scheme's `token`.
    pub fn token(&self, id: &str, timestamp: &str) -> String {
        token_with(&self.salt.current, id, timestamp)
    }

    /// Whether `form`'s proof was made with `salt` (in constant time).
    fn signed_with(salt: &Secret, form: &SsoForm) -> bool {
        let expected = match form.proof {
            Proof::Signature(_) => signature_with(
                salt,
                &form.id,
                &form.user_id,
                &form.email,
                &form.nav_data,
                &form.timestamp,
            ),
            Proof::Token(_) => token_with(salt, &form.id, &form.timestamp),
        };
        constant_time_eq(expected.as_bytes(), form.proof_text().as_bytes())
    }

    /// Checks the proof (in constant time) with the salt, or the previous
    /// one during a rotation, then the timestamp's age.
    pub fn verify(&self, form: &SsoForm, now: DateTime<Utc>) -> Result<(), Refusal> {
        if !self.salt.either(|salt| Self::signed_with(salt, form)) {
            return Err(Refusal::BadSignature);
        }
        let issued = parse_timestamp(&form.timestamp).ok_or(Refusal::MalformedRequest)?;
        check_fresh(issued, now.timestamp(), self.max_age_seconds)
    }

    /// Until when a token must stay spent: past that it is refused as expired.
    fn token_lifetime_end(&self, form: &SsoForm) -> i64 {
        spent_until(
            parse_timestamp(&form.timestamp).unwrap_or_default(),
            self.max_age_seconds,
        )
    }
}

fn signature_with(
    salt: &Secret,
    id: &str,
    user_id: &str,
    email: &str,
    nav_data: &str,
    timestamp: &str,
) -> String {
    let salt = salt.expose();
    hex::encode(Sha512::digest(format!(
        "{id}:{user_id}:{email}:{nav_data}:{salt}:{timestamp}"
    )))
}

fn token_with(salt: &Secret, id: &str, timestamp: &str) -> String {
    hex::encode(Sha1::digest(format!("{id}:{}:{timestamp}", salt.expose())))
}

/// `POST /clevercloud/sso/login`: verify, check the resource, open a session.
pub async fn login<S: ResourceReader + SessionStore>(
    sso: &CleverCloudSso,
    sessions: &Sessions<S>,
    request: &Request,
) -> Result<Response<Body>, SignInError> {
    if !has_media_type(request.headers(), "application/x-www-form-urlencoded") {
        return Err(Refusal::MalformedRequest.into());
    }
    let form = parse_form(request.body().as_ref())?;
    sso.verify(&form, Utc::now())?;
    let resource = if super::is_valid_resource_id(&form.id) {
        sessions.store().get_resource(&form.id).await?
    } else {
        None
    };
    // Only Clever Cloud's own resources: a Cloud 66 account's resource is
    // not Clever Cloud's to sign in to, even with a valid salt.
    let resource = resource
        .filter(|r| r.is_active() && r.platform == Platform::CleverCloud)
        .ok_or(Refusal::UnknownResource)?;
    let sign_in = ResourceSignIn {
        account: account_of(&form, &resource),
        resource,
        email: &form.email,
        // Only the current scheme signs the email (and the user id).
        email_signed: matches!(form.proof, Proof::Signature(_)),
        nav_data: &form.nav_data,
    };
    sessions
        .open_on_resource(&form.timestamp, sso.token_lifetime_end(&form), sign_in)
        .await
}

/// The Clever Cloud account signing in, as far as the form vouches for it:
/// the user its signature covers (current scheme); the legacy scheme signs
/// only the resource, so there it is the add-on's owner (the organisation
/// or user the marketplace provisioned it for; docs/oidc.md "Claims").
fn account_of(form: &SsoForm, resource: &Resource) -> String {
    match (&form.proof, resource.owner_id.as_deref()) {
        (Proof::Signature(_), _) if !form.user_id.is_empty() => format!("user:{}", form.user_id),
        (_, Some(owner)) if !owner.is_empty() => format!("owner:{owner}"),
        _ => format!("resource:{}", resource.id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `sub` is the account the proof vouches for, and nothing the form
    /// could add without it.
    #[test]
    fn the_account_is_the_signed_user_else_the_owner_else_the_add_on() {
        let form = |proof: Proof, user_id: &str| SsoForm {
            id: "res_1".into(),
            timestamp: "1".into(),
            nav_data: String::new(),
            email: String::new(),
            user_id: user_id.into(),
            proof,
        };
        let resource = |owner: Option<&str>| Resource {
            owner_id: owner.map(str::to_string),
            ..Resource::new(
                "res_1".into(),
                Platform::CleverCloud,
                "addon_1".into(),
                "basic".into(),
                crate::model::ConfigMap::default(),
                &crate::model::Timestamp::now(),
            )
        };
        let signed = || Proof::Signature("s".into());
        let legacy = || Proof::Token("t".into());
        for (form, owner, account) in [
            (form(signed(), "user_1"), Some("orga_1"), "user:user_1"),
            (form(signed(), "user_1"), None, "user:user_1"),
            (form(signed(), ""), Some("orga_1"), "owner:orga_1"),
            (form(signed(), ""), Some(""), "resource:res_1"),
            (form(signed(), ""), None, "resource:res_1"),
            // The legacy token signs no user: a user id beside it is ignored.
            (form(legacy(), "user_1"), Some("orga_1"), "owner:orga_1"),
            (form(legacy(), "user_1"), Some(""), "resource:res_1"),
            (form(legacy(), "user_1"), None, "resource:res_1"),
        ] {
            assert_eq!(account_of(&form, &resource(owner)), account, "{form:?} {owner:?}");
        }
    }

    fn sso() -> CleverCloudSso {
        CleverCloudSso::new(Secret::new("2f97bfa52ca102f8874716e2eb1d3b4920ad0be4"), 300)
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    #[test]
    fn legacy_token_matches_herokus_published_answer() {
        assert_eq!(
            sso().token("123", "1267597772"),
            "bb466eb1d6bc345d11072c3cd25c311f21be130d"
        );
    }

    #[test]
    fn current_signature_is_sha512_over_the_documented_fields() {
        let expected = hex::encode(Sha512::digest(
            "res_1:user_1:a@b.c:nav:2f97bfa52ca102f8874716e2eb1d3b4920ad0be4:1700000000",
        ));
        assert_eq!(
            sso().signature("res_1", "user_1", "a@b.c", "nav", "1700000000"),
            expected
        );
    }

    fn form(body: &str) -> SsoForm {
        parse_form(body.as_bytes()).unwrap()
    }

    #[test]
    fn both_schemes_verify_with_seconds_or_milliseconds() {
        let sso = sso();
        let now = 1_700_000_100;
        for timestamp in ["1700000000", "1700000000123", "1700000000.25"] {
            let signature = sso.signature("res_1", "user_1", "a@b.c", "", timestamp);
            let current = form(&format!(
                "id=res_1&timestamp={timestamp}&nav-data=&email=a%40b.c&user_id=user_1&signature={signature}"
            ));
            assert_eq!(sso.verify(&current, at(now)), Ok(()), "{timestamp}");
            let token = sso.token("res_1", timestamp).to_uppercase();
            let legacy = form(&format!(
                "id=res_1&token={token}&timestamp={timestamp}&nav-data=&email=a%40b.c"
            ));
            assert_eq!(sso.verify(&legacy, at(now)), Ok(()), "{timestamp}");
        }
    }

    #[test]
    fn wrong_stale_and_future_tokens_are_refused() {
        let sso = sso();
        let token = |ts: i64| sso.token("res_1", &ts.to_string());
        let legacy = |ts: i64, token: &str| form(&format!("id=res_1&token={token}&timestamp={ts}"));
        let now = 1_700_000_000;
        assert_eq!(
            sso.verify(&legacy(now, "00"), at(now)),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            sso.verify(&legacy(now - 1, &token(now)), at(now)),
            Err(Refusal::BadSignature)
        );
        // The reference checker sends a token six minutes old.
        assert_eq!(
            sso.verify(&legacy(now - 360, &token(now - 360)), at(now)),
            Err(Refusal::Expired)
        );
        assert_eq!(sso.verify(&legacy(now - 299, &token(now - 299)), at(now)), Ok(()));
        assert_eq!(
            sso.verify(&legacy(now + 61, &token(now + 61)), at(now)),
            Err(Refusal::FromTheFuture)
        );
        assert_eq!(sso.verify(&legacy(now + 59, &token(now + 59)), at(now)), Ok(()));
        let other_salt = CleverCloudSso::new(Secret::new("another salt"), 300);
        assert_eq!(
            other_salt.verify(&legacy(now, &token(now)), at(now)),
            Err(Refusal::BadSignature)
        );
    }

    #[test]
    fn during_a_salt_rotation_both_salts_verify_and_only_they_do() {
        let now = 1_700_000_000;
        let old = CleverCloudSso::new(Secret::new("the previous salt"), 300);
        let new = CleverCloudSso::new(Secret::new("the new salt"), 300);
        let rotating = CleverCloudSso::new(Secret::new("the new salt"), 300)
            .with_previous_salt(Some(Secret::new("the previous salt")));
        let stranger = CleverCloudSso::new(Secret::new("a stranger's salt"), 300);
        let signed_by = |sso: &CleverCloudSso| {
            let signature = sso.signature("res_1", "user_1", "a@b.c", "", &now.to_string());
            let token = sso.token("res_1", &now.to_string());
            [
                form(&format!(
                    "id=res_1&timestamp={now}&nav-data=&email=a%40b.c&user_id=user_1&signature={signature}"
                )),
                form(&format!("id=res_1&token={token}&timestamp={now}")),
            ]
        };
        for form in signed_by(&old).iter().chain(&signed_by(&new)) {
            assert_eq!(rotating.verify(form, at(now)), Ok(()));
        }
        for form in &signed_by(&stranger) {
            assert_eq!(rotating.verify(form, at(now)), Err(Refusal::BadSignature));
        }
        for form in &signed_by(&old) {
            assert_eq!(
                new.verify(form, at(now)),
                Err(Refusal::BadSignature),
                "once the rotation ends"
            );
        }
        let from_lookup = CleverCloudSso::from_lookup(&|name: &str| match name {
            "ADDON_SSO_SALT" => Some("the new salt".to_string()),
            "ADDON_SSO_SALT_PREVIOUS" => Some("the previous salt".to_string()),
            _ => None,
        })
        .unwrap();
        assert_eq!(from_lookup.verify(&signed_by(&old)[0], at(now)), Ok(()));
    }

    #[test]
    fn the_age_and_skew_limits_hold_to_the_second() {
        let sso = sso();
        let verify_at = |ts: i64, now: i64| {
            let body = format!(
                "id=res_1&token={}&timestamp={ts}",
                sso.token("res_1", &ts.to_string())
            );
            sso.verify(&form(&body), at(now))
        };
        let now = 1_700_000_000;
        assert_eq!(verify_at(now - 300, now), Ok(()), "exactly the maximum age");
        assert_eq!(
            verify_at(now - 301, now),
            Err(Refusal::Expired),
            "one second past it"
        );
        assert_eq!(verify_at(now + 60, now), Ok(()), "exactly the future tolerance");
        assert_eq!(
            verify_at(now + 61, now),
            Err(Refusal::FromTheFuture),
            "one second past it"
        );
    }

    #[test]
    fn timestamps_are_read_in_seconds_or_milliseconds_up_to_sixteen_digits() {
        assert_eq!(parse_timestamp("1700000000"), Some(1_700_000_000));
        assert_eq!(parse_timestamp("1700000000.25"), Some(1_700_000_000));
        assert_eq!(parse_timestamp("1700000000."), Some(1_700_000_000));
        assert_eq!(
            parse_timestamp("1700000000123"),
            Some(1_700_000_000),
            "milliseconds"
        );
        assert_eq!(
            parse_timestamp("1000000000000"),
            Some(1_000_000_000_000),
            "the boundary is seconds"
        );
        assert_eq!(
            parse_timestamp("1000000000001"),
            Some(1_000_000_000),
            "one past it is milliseconds"
        );
        assert_eq!(
            parse_timestamp("1234567890123456"),
            Some(1_234_567_890_123),
            "16 digits"
        );
        assert_eq!(parse_timestamp("12345678901234567"), None, "17 digits");
        for refused in [
            "",
            ".5",
            "-5",
            "1e9",
            "17000000a0",
            "1700000000.2x",
            " 1700000000",
            "0x10",
        ] {
            assert_eq!(parse_timestamp(refused), None, "{refused:?}");
        }
    }

    #[test]
    fn a_spent_token_is_remembered_exactly_as_long_as_it_could_be_accepted() {
        let sso = sso();
        let issued = 1_700_000_000;
        let body = format!(
            "id=res_1&token={}&timestamp={issued}",
            sso.token("res_1", &issued.to_string())
        );
        let legacy = form(&body);
        let end = sso.token_lifetime_end(&legacy);
        assert_eq!(end, issued + 300 + 60);
        // The last instant it is accepted is within what is remembered...
        assert_eq!(sso.verify(&legacy, at(issued + 300)), Ok(()));
        assert!(end >= issued + 300);
        // ...and past the end it is refused on its own.
        assert_eq!(sso.verify(&legacy, at(end + 1)), Err(Refusal::Expired));
    }

    #[test]
    fn a_form_may_be_as_large_as_the_limit_and_no_larger() {
        let padding = |total: usize| {
            let head = "id=res_1&token=00&timestamp=1&nav-data=";
            format!("{head}{}", "a".repeat(total - head.len()))
        };
        // 16 KiB, written out: the limit itself is what is pinned.
        assert!(parse_form(padding(16 * 1024).as_bytes()).is_ok());
        assert_eq!(
            parse_form(padding(16 * 1024 + 1).as_bytes()).err(),
            Some(Refusal::MalformedRequest)
        );
    }

    mod login {
        use super::*;
        use crate::model::{ConfigMap, Platform, Resource, SignedInIdentity, Timestamp};
        use crate::store::memory::MemoryStore;

        fn post(content_type: &str, body: String) -> Request {
            lambda_http::http::Request::builder()
                .method("POST")
                .uri("/clevercloud/sso/login")
                .header("content-type", content_type)
                .body(Body::from(body))
                .unwrap()
        }

        fn signed_form(sso: &CleverCloudSso, id: &str) -> String {
            let timestamp = Utc::now().timestamp().to_string();
            let signature = sso.signature(id, "user_1", "jane@example.com", "", &timestamp);
            format!("id={id}&timestamp={timestamp}&nav-data=&email=jane%40example.com&user_id=user_1&signature={signature}")
        }

        fn sessions() -> Sessions<MemoryStore> {
            let resource = Resource::new(
                "res_0123456789abcdef0123456789abcdef".into(),
                Platform::CleverCloud,
                "addon_1".into(),
                "basic".into(),
                ConfigMap::default(),
                &Timestamp::now(),
            );
            Sessions::new(MemoryStore::with_resource(resource), 3600)
        }

        #[tokio::test]
        async fn a_signed_form_opens_a_session_once_and_sends_the_browser_to_the_panel() {
            let (sso, sessions) = (sso(), sessions());
            let form = signed_form(&sso, "res_0123456789abcdef0123456789abcdef");
            let response = login(
                &sso,
                &sessions,
                &post("application/x-www-form-urlencoded", form.clone()),
            )
            .await
            .expect("signed in");
            assert_eq!(response.status(), lambda_http::http::StatusCode::SEE_OTHER);
            assert_eq!(response.headers()["location"], "/dashboard");
            let cookie = response.headers()["set-cookie"].to_str().unwrap();
            assert!(cookie.starts_with("__Host-addon_session="), "{cookie}");
            let stored = sessions.store().stored_sessions();
            assert_eq!(stored.len(), 1);
            assert_eq!(stored[0].email.as_deref(), Some("jane@example.com"));
            assert_eq!(stored[0].nav_data, None, "an empty nav-data is not kept");
            assert_eq!(stored[0].subject_id, "res_0123456789abcdef0123456789abcdef");

            let replay = login(&sso, &sessions, &post("application/x-www-form-urlencoded", form)).await;
            assert!(matches!(replay, Err(SignInError::Refused(Refusal::Replayed))));
        }

        #[tokio::test]
        async fn the_session_carries_what_each_scheme_vouches_for() {
            let id = "res_0123456789abcdef0123456789abcdef";
            let sso = sso();
            let identity_after = |form: String| {
                let sessions = sessions();
                let sso = sso.clone();
                async move {
                    login(&sso, &sessions, &post("application/x-www-form-urlencoded", form))
                        .await
                        .expect("signed in");
                    let stored = sessions.store().sessions.lock().unwrap().values().next().cloned();
                    stored.and_then(|session| session.identity).expect("an identity")
                }
            };
            let current = identity_after(signed_form(&sso, id)).await;
            assert_eq!(
                current.subject,
                SignedInIdentity::subject_of(Platform::CleverCloud, "user:user_1")
            );
            assert!(current.email_verified, "the SHA-512 form signs the email");
            assert_eq!(current.resource_id.as_deref(), Some(id));
            assert_eq!(current.plan.as_deref(), Some("basic"));
            assert_eq!(current.marketplace_id.as_deref(), Some("addon_1"));
            let timestamp = (Utc::now().timestamp() - 1).to_string();
            let other_user = sso.signature(id, "user_2", "jane@example.com", "", &timestamp);
            let other = identity_after(format!(
                "id={id}&timestamp={timestamp}&nav-data=&email=jane%40example.com&user_id=user_2&signature={other_user}"
            ))
            .await;
            assert_ne!(other.subject, current.subject, "another account, another sub");
            // The legacy form signs only the resource: its email is not vouched
            // for, and the account is the add-on's (here, the resource itself:
            // it was provisioned with no owner).
            let token = sso.token(id, &timestamp);
            let legacy = identity_after(format!(
                "id={id}&token={token}&timestamp={timestamp}&nav-data=&email=jane%40example.com"
            ))
            .await;
            assert!(!legacy.email_verified);
            assert_eq!(legacy.email, None, "an email no proof signs is never `email`");
            assert_eq!(legacy.unverified_email.as_deref(), Some("jane@example.com"));
            assert_eq!(
                legacy.subject,
                SignedInIdentity::subject_of(Platform::CleverCloud, &format!("resource:{id}"))
            );
        }

        #[tokio::test]
        async fn anything_but_a_signed_form_for_an_active_resource_opens_nothing() {
            let (sso, sessions) = (sso(), sessions());
            let form = signed_form(&sso, "res_0123456789abcdef0123456789abcdef");
            let json = login(&sso, &sessions, &post("application/json", form)).await;
            assert!(matches!(
                json,
                Err(SignInError::Refused(Refusal::MalformedRequest))
            ));
            let unknown = signed_form(&sso, "res_ffffffffffffffffffffffffffffffff");
            let unknown = login(
                &sso,
                &sessions,
                &post("application/x-www-form-urlencoded", unknown),
            )
            .await;
            assert!(matches!(
                unknown,
                Err(SignInError::Refused(Refusal::UnknownResource))
            ));
            assert!(sessions.store().sessions.lock().unwrap().is_empty());
        }

        #[tokio::test]
        async fn a_resource_of_another_platform_opens_nothing() {
            let id = "res_c66_0123456789abcdef0123456789abcdef";
            let cloud66 = Resource::new(
                id.into(),
                Platform::Cloud66,
                "acc_1".into(),
                "cloud66".into(),
                ConfigMap::default(),
                &Timestamp::now(),
            );
            let sso = sso();
            let sessions = Sessions::new(MemoryStore::with_resource(cloud66), 3600);
            let form = signed_form(&sso, id);
            let answer = login(&sso, &sessions, &post("application/x-www-form-urlencoded", form)).await;
            assert!(matches!(
                answer,
                Err(SignInError::Refused(Refusal::UnknownResource))
            ));
            assert!(sessions.store().sessions.lock().unwrap().is_empty());
        }
    }

    #[test]
    fn malformed_forms_are_refused() {
        for body in [
            "",
            "id=1",
            "id=1&timestamp=2",
            "timestamp=2&token=ab",
            "id=1&id=2&timestamp=2&token=ab",
        ] {
            assert_eq!(
                parse_form(body.as_bytes()),
                Err(Refusal::MalformedRequest),
                "{body}"
            );
        }
        let sso = sso();
        let bad_time = form(&format!("id=1&timestamp=soon&token={}", sso.token("1", "soon")));
        assert_eq!(sso.verify(&bad_time, at(0)), Err(Refusal::MalformedRequest));
    }

    proptest! {
        #[test]
        fn random_forms_never_panic_and_never_verify(body in prop::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(form) = parse_form(&body) {
                prop_assert!(sso().verify(&form, at(1_700_000_000)).is_err());
            }
        }

        #[test]
        fn forged_fields_never_verify(id in "[a-z0-9_]{1,20}", token in "[0-9a-f]{40}", ts in 1_699_999_800i64..1_700_000_000) {
            let form = form(&format!("id={id}&token={token}&timestamp={ts}"));
            prop_assume!(token != sso().token(&id, &ts.to_string()));
            prop_assert_eq!(sso().verify(&form, at(1_700_000_000)), Err(Refusal::BadSignature));
        }
    }
}
