//! Heroku single sign-on: the dashboard POSTs a form to the manifest's
//! `sso_url` (docs/heroku.md, "Single sign-on"). Three proofs, strongest
//! first; the first one present is the one checked, so a forged strong
//! proof is never rescued by a weaker one beside it:
//! - `user_scoped_resource_token` = hex SHA-256 of `uuid:salt:timestamp:user_id:email`;
//! - `resource_token` = hex SHA-1 of `uuid:salt:timestamp`;
//! - `token` (legacy) = hex SHA-1 of `id:salt:timestamp`, `id` being this
//!   provider's id for the add-on.

use super::resource_id;
use crate::config::{self, ConfigError};
use crate::http::has_media_type;
use crate::model::Platform;
use crate::secret::{constant_time_eq, Rotating, Secret};
use crate::signin::{check_fresh, spent_until, unix_seconds, Refusal, ResourceSignIn, Sessions, SignInError};
use crate::store::{ResourceReader, SessionStore};
use base64::Engine;
use chrono::{DateTime, Utc};
use lambda_http::{Body, Request, Response};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Largest SSO form read.
const MAX_FORM_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofKind {
    UserScoped,
    Resource,
    Legacy,
}

/// The SSO form's fields, URL-decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoForm {
    /// This provider's id (`id`), checked by the legacy token only.
    pub id: String,
    /// Heroku's add-on uuid (`resource_id`).
    pub uuid: String,
    pub timestamp: String,
    pub email: String,
    pub user_id: String,
    pub nav_data: String,
    pub kind: ProofKind,
    proof: String,
}

/// Parses an `application/x-www-form-urlencoded` SSO body: no proof, no
/// timestamp, no id for the proof given, or a field given twice, is malformed.
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
    let (user_scoped, resource_token, token) = (
        take("user_scoped_resource_token"),
        take("resource_token"),
        take("token"),
    );
    let (kind, proof) = if !user_scoped.is_empty() {
        (ProofKind::UserScoped, user_scoped)
    } else if !resource_token.is_empty() {
        (ProofKind::Resource, resource_token)
    } else if !token.is_empty() {
        (ProofKind::Legacy, token)
    } else {
        return Err(Refusal::MalformedRequest);
    };
    let form = SsoForm {
        id: take("id"),
        uuid: take("resource_id"),
        timestamp: take("timestamp"),
        email: take("email"),
        user_id: take("user_id"),
        nav_data: take("nav-data"),
        kind,
        proof: proof.trim().to_ascii_lowercase(),
    };
    let names_its_resource = match kind {
        ProofKind::Legacy => !form.id.is_empty(),
        ProofKind::UserScoped | ProofKind::Resource => !form.uuid.is_empty(),
    };
    if form.timestamp.is_empty() || !names_its_resource {
        return Err(Refusal::MalformedRequest);
    }
    Ok(form)
}

/// The add-on's Heroku SSO salt and freshness rule.
#[derive(Debug, Clone)]
pub struct HerokuSso {
    /// `HEROKU_SSO_SALT`, and `HEROKU_SSO_SALT_PREVIOUS` during a rotation:
    /// Heroku signs with the manifest's salt, which changes after the secret does.
    salt: Rotating,
    max_age_seconds: i64,
}

impl HerokuSso {
    pub fn new(salt: Secret, previous_salt: Option<Secret>, max_age_seconds: i64) -> Self {
        Self {
            salt: Rotating::new(salt, previous_salt),
            max_age_seconds,
        }
    }

    /// `HEROKU_SSO_SALT` (+ `_PREVIOUS`) and `SSO_MAX_AGE_SECONDS`; `None`
    /// without `HEROKU_ADDON_ID` (Heroku not sold).
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        if config::optional(lookup, "HEROKU_ADDON_ID").is_none() {
            return Ok(None);
        }
        let salt = config::rotating(lookup, "HEROKU_SSO_SALT", "HEROKU_SSO_SALT_PREVIOUS")?;
        let max_age_seconds = config::seconds(lookup, "SSO_MAX_AGE_SECONDS", 300)?;
        Ok(Some(Self {
            salt,
            max_age_seconds,
        }))
    }

    /// The proof Heroku would send, made with `salt`, for `form`'s fields.
    fn expected(salt: &Secret, form: &SsoForm) -> String {
        let (salt, timestamp) = (salt.expose(), &form.timestamp);
        match form.kind {
            ProofKind::UserScoped => hex::encode(Sha256::digest(format!(
                "{}:{salt}:{timestamp}:{}:{}",
                form.uuid, form.user_id, form.email
            ))),
            ProofKind::Resource => hex::encode(Sha1::digest(format!("{}:{salt}:{timestamp}", form.uuid))),
            ProofKind::Legacy => hex::encode(Sha1::digest(format!("{}:{salt}:{timestamp}", form.id))),
        }
    }

    /// `form`'s proof, as Heroku makes it with the current salt (tests and
    /// `provider check`).
    pub fn sign(&self, form: &SsoForm) -> String {
        Self::expected(&self.salt.current, form)
    }

    /// Checks the proof (in constant time) with the salt, or the previous
    /// one during a rotation, then the timestamp's age.
    pub fn verify(&self, form: &SsoForm, now: DateTime<Utc>) -> Result<(), Refusal> {
        let signed_with =
            |salt: &Secret| constant_time_eq(Self::expected(salt, form).as_bytes(), form.proof.as_bytes());
        if !self.salt.either(signed_with) {
            return Err(Refusal::BadSignature);
        }
        let issued = unix_seconds(&form.timestamp).ok_or(Refusal::MalformedRequest)?;
        check_fresh(issued, now.timestamp(), self.max_age_seconds)
    }

    /// Until when a proof must stay spent: past that it is refused as expired.
    fn proof_lifetime_end(&self, form: &SsoForm) -> i64 {
        spent_until(
            unix_seconds(&form.timestamp).unwrap_or_default(),
            self.max_age_seconds,
        )
    }
}

/// `POST /heroku/sso/login`: verify, find the active Heroku resource, open
/// a session (the panel, or the vendor's app: `crate::sso_login`).
pub async fn login<S: ResourceReader + SessionStore>(
    sso: Option<&HerokuSso>,
    sessions: &Sessions<S>,
    request: &Request,
) -> Result<Response<Body>, SignInError> {
    let sso = sso.ok_or(Refusal::NotConfigured)?;
    if !has_media_type(request.headers(), "application/x-www-form-urlencoded") {
        return Err(Refusal::MalformedRequest.into());
    }
    let form = parse_form(request.body().as_ref())?;
    sso.verify(&form, Utc::now())?;
    // The resource the proof signs: the uuid's, or for the legacy token
    // this provider's own id (an id it could not have issued is not looked up).
    let id = match form.kind {
        ProofKind::Legacy => Some(form.id.clone()).filter(|id| crate::lifecycle::is_valid_resource_id(id)),
        ProofKind::UserScoped | ProofKind::Resource => resource_id(&form.uuid),
    };
    let resource = match id {
        Some(id) => sessions.store().get_resource(&id).await?,
        None => None,
    };
    // Only Heroku's own resources: another marketplace's is not Heroku's to
    // sign in to, even with a valid salt.
    let resource = resource
        .filter(|r| r.is_active() && r.platform == Platform::Heroku)
        .ok_or(Refusal::UnknownResource)?;
    let user_scoped = form.kind == ProofKind::UserScoped;
    // Only the user-scoped token signs the user and the email; the others
    // vouch for the add-on alone (docs/oidc.md "Claims").
    let account = if user_scoped && !form.user_id.is_empty() {
        format!("user:{}", form.user_id)
    } else {
        format!("resource:{}", resource.id)
    };
    let sign_in = ResourceSignIn {
        resource,
        account,
        email: &form.email,
        email_signed: user_scoped,
        nav_data: &form.nav_data,
    };
    sessions
        .open_on_resource(&form.timestamp, sso.proof_lifetime_end(&form), sign_in)
        .await
}

/// The way back to Heroku: the app's resources page when `nav-data` (base64
/// JSON from Heroku) names the app, Heroku's dashboard otherwise.
pub fn dashboard_url(nav_data: Option<&str>) -> String {
    const DASHBOARD: &str = "https://dashboard.heroku.com/";
    let app = nav_data
        .and_then(|data| {
            let data = data.trim_end_matches('=');
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(data)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(data))
                .ok()
        })
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
        .and_then(|value| value.get("appname")?.as_str().map(str::to_string))
        // An app name is lower-case letters, digits and dashes: nothing else
        // reaches the link.
        .filter(|app| {
            (1..=100).contains(&app.len())
                && app
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        });
    match app {
        Some(app) => format!("{DASHBOARD}apps/{app}/resources"),
        None => DASHBOARD.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "01234567-89ab-cdef-0123-456789abcdef";
    const SALT: &str = "2f97bfa52ca102f8874716e2eb1d3b4920ad0be4";
    const NOW: i64 = 1_700_000_000;

    fn sso() -> HerokuSso {
        HerokuSso::new(Secret::new(SALT), None, 300)
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    /// A form with `field`=proof, the proof made by `signer` over the form.
    fn signed(signer: &HerokuSso, field: &str, timestamp: i64, uppercase: bool) -> SsoForm {
        let body = |proof: &str| {
            format!(
                "id=res_hk_{UUID}&resource_id={UUID}&timestamp={timestamp}&email=a%40b.c&user_id=u-1&app=my-app&nav-data=x&{field}={proof}"
            )
        };
        let unsigned = parse_form(body("0").as_bytes()).unwrap();
        let proof = signer.sign(&unsigned);
        let proof = if uppercase { proof.to_uppercase() } else { proof };
        parse_form(body(&proof).as_bytes()).unwrap()
    }

    #[test]
    fn the_legacy_token_matches_herokus_published_answer() {
        let form = parse_form(b"id=123&timestamp=1267597772&token=0").unwrap();
        assert_eq!(sso().sign(&form), "bb466eb1d6bc345d11072c3cd25c311f21be130d");
    }

    #[test]
    fn each_proof_is_the_documented_digest() {
        let timestamp = NOW.to_string();
        let user_scoped = signed(&sso(), "user_scoped_resource_token", NOW, false);
        assert_eq!(
            sso().sign(&user_scoped),
            hex::encode(Sha256::digest(format!("{UUID}:{SALT}:{timestamp}:u-1:a@b.c")))
        );
        let resource = signed(&sso(), "resource_token", NOW, false);
        assert_eq!(
            sso().sign(&resource),
            hex::encode(Sha1::digest(format!("{UUID}:{SALT}:{timestamp}")))
        );
    }

    #[test]
    fn every_proof_verifies_in_either_case_and_the_strongest_decides() {
        for field in ["user_scoped_resource_token", "resource_token", "token"] {
            for uppercase in [false, true] {
                let form = signed(&sso(), field, NOW, uppercase);
                assert_eq!(sso().verify(&form, at(NOW)), Ok(()), "{field} {uppercase}");
            }
        }
        // A valid resource_token beside a forged user-scoped one: refused.
        let resource_token = signed(&sso(), "resource_token", NOW, false).proof;
        let body = format!(
            "resource_id={UUID}&timestamp={NOW}&email=a%40b.c&user_id=u-1&resource_token={resource_token}&user_scoped_resource_token=00"
        );
        let form = parse_form(body.as_bytes()).unwrap();
        assert_eq!(form.kind, ProofKind::UserScoped);
        assert_eq!(sso().verify(&form, at(NOW)), Err(Refusal::BadSignature));
    }

    #[test]
    fn a_changed_field_a_wrong_salt_and_stale_or_future_times_are_refused() {
        let form = signed(&sso(), "user_scoped_resource_token", NOW, false);
        let mut other_user = form.clone();
        other_user.email = "b@b.c".into();
        assert_eq!(sso().verify(&other_user, at(NOW)), Err(Refusal::BadSignature));
        let stranger = HerokuSso::new(Secret::new("another salt"), None, 300);
        assert_eq!(stranger.verify(&form, at(NOW)), Err(Refusal::BadSignature));
        assert_eq!(
            sso().verify(&form, at(NOW + 300)),
            Ok(()),
            "exactly the maximum age"
        );
        assert_eq!(sso().verify(&form, at(NOW + 301)), Err(Refusal::Expired));
        assert_eq!(
            sso().verify(&form, at(NOW - 60)),
            Ok(()),
            "exactly the skew allowed"
        );
        assert_eq!(sso().verify(&form, at(NOW - 61)), Err(Refusal::FromTheFuture));
    }

    #[test]
    fn during_a_salt_rotation_both_salts_verify() {
        let old = HerokuSso::new(Secret::new("old salt"), None, 300);
        let rotating = HerokuSso::new(Secret::new("new salt"), Some(Secret::new("old salt")), 300);
        let new = HerokuSso::new(Secret::new("new salt"), None, 300);
        let form = signed(&old, "resource_token", NOW, false);
        assert_eq!(rotating.verify(&form, at(NOW)), Ok(()));
        assert_eq!(new.verify(&form, at(NOW)), Err(Refusal::BadSignature));
        let lookup = |name: &str| match name {
            "HEROKU_ADDON_ID" => Some("myaddon".to_string()),
            "HEROKU_SSO_SALT" => Some("new salt".to_string()),
            "HEROKU_SSO_SALT_PREVIOUS" => Some("old salt".to_string()),
            _ => None,
        };
        let configured = HerokuSso::from_lookup(&lookup).unwrap().unwrap();
        assert_eq!(configured.verify(&form, at(NOW)), Ok(()));
        assert!(HerokuSso::from_lookup(&|_: &str| None).unwrap().is_none());
    }

    #[test]
    fn malformed_forms_are_refused_before_any_check() {
        for body in [
            format!("resource_id={UUID}&timestamp={NOW}"),
            format!("timestamp={NOW}&resource_token=ab"),
            format!("resource_id={UUID}&resource_token=ab"),
            format!("timestamp={NOW}&resource_id={UUID}&token=ab"),
            format!("resource_id={UUID}&timestamp={NOW}&resource_token=ab&resource_token=cd"),
        ] {
            assert_eq!(
                parse_form(body.as_bytes()),
                Err(Refusal::MalformedRequest),
                "{body}"
            );
        }
        // Up to the limit exactly, a form is read; one byte more, refused.
        let head = format!("resource_id={UUID}&timestamp={NOW}&resource_token=ab&app=");
        let at_limit = format!("{head}{}", "a".repeat(MAX_FORM_BYTES - head.len()));
        assert_eq!(at_limit.len(), 16 * 1024);
        assert!(parse_form(at_limit.as_bytes()).is_ok());
        let over = format!("{at_limit}a");
        assert_eq!(parse_form(over.as_bytes()), Err(Refusal::MalformedRequest));
        for timestamp in ["", "1e9", "-5", "1700000000.5", "9999999999999"] {
            assert_eq!(unix_seconds(timestamp), None, "{timestamp}");
        }
    }

    mod login {
        use super::*;
        use crate::model::{ConfigMap, Resource, ResourceStatus, Session, SignedInIdentity, Timestamp};
        use crate::store::memory::MemoryStore;
        use lambda_http::http::StatusCode;

        fn post(content_type: &str, body: String) -> Request {
            lambda_http::http::Request::builder()
                .method("POST")
                .uri("/heroku/sso/login")
                .header("content-type", content_type)
                .body(Body::from(body))
                .unwrap()
        }

        fn resource(platform: Platform, status: ResourceStatus) -> Resource {
            Resource {
                status,
                ..Resource::new(
                    resource_id(UUID).unwrap(),
                    platform,
                    UUID.into(),
                    "basic".into(),
                    ConfigMap::default(),
                    &Timestamp::now(),
                )
            }
        }

        fn sessions(resource: Resource) -> Sessions<MemoryStore> {
            Sessions::new(MemoryStore::with_resource(resource), 3600)
        }

        /// Heroku's form, signed now, as `user_id` (empty: none sent).
        fn form(field: &str, user_id: &str, id: &str) -> String {
            let body = |proof: &str| {
                format!(
                    "id={id}&resource_id={UUID}&timestamp={}&email=jane%40example.com&user_id={user_id}&nav-data=nav&{field}={proof}",
                    Utc::now().timestamp()
                )
            };
            body(&sso().sign(&parse_form(body("0").as_bytes()).unwrap()))
        }

        async fn sign_in(
            sessions: &Sessions<MemoryStore>,
            body: String,
        ) -> Result<Response<Body>, SignInError> {
            login(
                Some(&sso()),
                sessions,
                &post("application/x-www-form-urlencoded", body),
            )
            .await
        }

        fn stored(sessions: &Sessions<MemoryStore>) -> Vec<Session> {
            sessions.store().stored_sessions()
        }

        #[tokio::test]
        async fn each_proof_opens_one_session_on_the_heroku_resource_and_says_what_it_vouches_for() {
            let id = resource_id(UUID).unwrap();
            for (field, user, subject, verified) in [
                ("user_scoped_resource_token", "u-1", "user:u-1".to_string(), true),
                ("user_scoped_resource_token", "", format!("resource:{id}"), true),
                ("resource_token", "u-1", format!("resource:{id}"), false),
                ("token", "u-1", format!("resource:{id}"), false),
            ] {
                let sessions = sessions(resource(Platform::Heroku, ResourceStatus::Active));
                let body = form(field, user, &id);
                let response = sign_in(&sessions, body.clone()).await.expect("signed in");
                assert_eq!(response.status(), StatusCode::SEE_OTHER, "{field}");
                let stored = stored(&sessions);
                assert_eq!(stored.len(), 1);
                let session = &stored[0];
                assert_eq!(
                    (session.platform, session.subject_id.as_str()),
                    (Platform::Heroku, id.as_str())
                );
                assert_eq!(session.nav_data.as_deref(), Some("nav"));
                let identity = session.identity.clone().unwrap();
                assert_eq!(
                    identity.subject,
                    SignedInIdentity::subject_of(Platform::Heroku, &subject),
                    "{field} {user:?}"
                );
                assert_eq!(identity.email_verified, verified, "{field}");
                // Only a proof that signs the email makes it the email.
                let (email, unverified) = match verified {
                    true => (Some("jane@example.com"), None),
                    false => (None, Some("jane@example.com")),
                };
                assert_eq!(identity.email.as_deref(), email, "{field}");
                assert_eq!(identity.unverified_email.as_deref(), unverified, "{field}");
                assert_eq!(identity.marketplace_id.as_deref(), Some(UUID));
                // The proof stays spent for as long as it could be accepted.
                let issued = parse_form(body.as_bytes())
                    .unwrap()
                    .timestamp
                    .parse::<i64>()
                    .unwrap();
                let spent: Vec<i64> = sessions
                    .store()
                    .spent_tokens
                    .lock()
                    .unwrap()
                    .values()
                    .copied()
                    .collect();
                assert_eq!(spent, [issued + 300 + 60], "{field}");
                let replay = sign_in(&sessions, body).await;
                assert!(
                    matches!(replay, Err(SignInError::Refused(Refusal::Replayed))),
                    "{field}"
                );
            }
        }

        /// One form carrying all three proofs opens one session: re-posted
        /// without its strongest proof, then without the next, it is the
        /// same sign-in and refused as used.
        #[tokio::test]
        async fn a_form_is_spent_whole_whatever_proofs_it_carries() {
            let id = resource_id(UUID).unwrap();
            let sessions = sessions(resource(Platform::Heroku, ResourceStatus::Active));
            let timestamp = Utc::now().timestamp();
            let fields = format!(
                "id={id}&resource_id={UUID}&timestamp={timestamp}&email=jane%40example.com&user_id=u-1"
            );
            let proof =
                |field: &str| sso().sign(&parse_form(format!("{fields}&{field}=0").as_bytes()).unwrap());
            let (user_scoped, resource_token, token) = (
                proof("user_scoped_resource_token"),
                proof("resource_token"),
                proof("token"),
            );
            let all = format!(
                "{fields}&user_scoped_resource_token={user_scoped}&resource_token={resource_token}&token={token}"
            );
            sign_in(&sessions, all).await.expect("signed in");
            for weaker in [
                format!("{fields}&resource_token={resource_token}&token={token}"),
                format!("{fields}&token={token}"),
            ] {
                let again = sign_in(&sessions, weaker.clone()).await;
                assert!(
                    matches!(again, Err(SignInError::Refused(Refusal::Replayed))),
                    "{weaker}"
                );
            }
            assert_eq!(stored(&sessions).len(), 1);
        }

        #[tokio::test]
        async fn only_an_active_heroku_resource_signs_in() {
            let id = resource_id(UUID).unwrap();
            for (resource, why) in [
                (
                    resource(Platform::Heroku, ResourceStatus::Deprovisioned),
                    "deprovisioned",
                ),
                (
                    resource(Platform::Heroku, ResourceStatus::Provisioning),
                    "still provisioning",
                ),
                (
                    resource(Platform::CleverCloud, ResourceStatus::Active),
                    "another marketplace's",
                ),
            ] {
                let sessions = sessions(resource);
                for field in ["user_scoped_resource_token", "token"] {
                    let answer = sign_in(&sessions, form(field, "u-1", &id)).await;
                    assert!(
                        matches!(answer, Err(SignInError::Refused(Refusal::UnknownResource))),
                        "{why} {field}"
                    );
                }
                assert!(stored(&sessions).is_empty());
            }
            // The legacy token names this provider's id: another one is not this add-on.
            let sessions = sessions(resource(Platform::Heroku, ResourceStatus::Active));
            for other in ["res_0123456789abcdef0123456789abcdef", "res_hk_no such id"] {
                let answer = sign_in(&sessions, form("token", "u-1", other)).await;
                assert!(
                    matches!(answer, Err(SignInError::Refused(Refusal::UnknownResource))),
                    "{other}"
                );
            }
            let json = login(
                Some(&sso()),
                &sessions,
                &post("application/json", form("token", "u-1", &id)),
            )
            .await;
            assert!(matches!(
                json,
                Err(SignInError::Refused(Refusal::MalformedRequest))
            ));
            let unconfigured = login(
                None,
                &sessions,
                &post("application/x-www-form-urlencoded", form("token", "u-1", &id)),
            )
            .await;
            assert!(matches!(
                unconfigured,
                Err(SignInError::Refused(Refusal::NotConfigured))
            ));
            assert!(stored(&sessions).is_empty());
        }
    }

    #[test]
    fn the_way_back_is_the_apps_page_only_for_a_plain_app_name() {
        let encode = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        assert_eq!(
            dashboard_url(Some(&encode(
                r#"{"addon":"My Add-on","appname":"my-app-42","addons":[]}"#
            ))),
            "https://dashboard.heroku.com/apps/my-app-42/resources"
        );
        for nav in [
            encode(r#"{"appname":"evil.example/x"}"#),
            encode("not json"),
            "%%%".to_string(),
        ] {
            assert_eq!(dashboard_url(Some(&nav)), "https://dashboard.heroku.com/");
        }
        assert_eq!(dashboard_url(None), "https://dashboard.heroku.com/");
    }
}
