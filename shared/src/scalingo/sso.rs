//! Scalingo single sign-on: the dashboard links the customer to the
//! manifest's `sso_url` with `?id=<id>&timestamp=<unix s>&token=<hex
//! sha1(id:sso_salt:timestamp)>` (docs/scalingo.md, "Single sign-on"),
//! `id` being this provider's id for the add-on. Scalingo says the link
//! lasts an hour; each is spent on first use.
//!
//! The link is a GET, so its token sits in the URL: the answer is always a
//! redirect or a page sent with `Referrer-Policy: no-referrer`, and no
//! page shows the token.

use super::is_resource_id;
use crate::config::{self, ConfigError};
use crate::model::{Platform, ResourceStatus};
use crate::secret::{constant_time_eq, Rotating, Secret};
use crate::signin::{check_fresh, spent_until, unix_seconds, Refusal, ResourceSignIn, Sessions, SignInError};
use crate::store::{ResourceReader, SessionStore};
use chrono::{DateTime, Utc};
use lambda_http::{Body, Request, Response};
use sha1::{Digest, Sha1};
use std::collections::HashMap;

/// Longest query string read.
const MAX_QUERY_BYTES: usize = 2048;

/// The link's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoLink {
    pub id: String,
    pub timestamp: String,
    token: String,
}

/// Parses the link's query: each of `id`, `timestamp` and `token` exactly once.
pub fn parse_query(query: &str) -> Result<SsoLink, Refusal> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(Refusal::MalformedRequest);
    }
    let mut fields: HashMap<String, String> = HashMap::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if fields.insert(name.into_owned(), value.into_owned()).is_some() {
            return Err(Refusal::MalformedRequest);
        }
    }
    let mut take = |name: &str| fields.remove(name).filter(|value| !value.is_empty());
    match (take("id"), take("timestamp"), take("token")) {
        (Some(id), Some(timestamp), Some(token)) => Ok(SsoLink {
            id,
            timestamp,
            token: token.trim().to_ascii_lowercase(),
        }),
        _ => Err(Refusal::MalformedRequest),
    }
}

/// The add-on's Scalingo SSO salt and freshness rule.
#[derive(Debug, Clone)]
pub struct ScalingoSso {
    /// `SCALINGO_SSO_SALT`, and `SCALINGO_SSO_SALT_PREVIOUS` during a rotation.
    salt: Rotating,
    max_age_seconds: i64,
}

impl ScalingoSso {
    pub fn new(salt: Secret, previous_salt: Option<Secret>, max_age_seconds: i64) -> Self {
        Self {
            salt: Rotating::new(salt, previous_salt),
            max_age_seconds,
        }
    }

    /// `SCALINGO_SSO_SALT` (+ `_PREVIOUS`) and `SCALINGO_SSO_MAX_AGE_SECONDS`
    /// (default 3600: Scalingo's links last an hour); `None` without
    /// `SCALINGO_USERNAME` (Scalingo not sold).
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        if config::optional(lookup, "SCALINGO_USERNAME").is_none() {
            return Ok(None);
        }
        let salt = config::rotating(lookup, "SCALINGO_SSO_SALT", "SCALINGO_SSO_SALT_PREVIOUS")?;
        let max_age_seconds = config::seconds(lookup, "SCALINGO_SSO_MAX_AGE_SECONDS", 3600)?;
        Ok(Some(Self {
            salt,
            max_age_seconds,
        }))
    }

    fn expected(salt: &Secret, id: &str, timestamp: &str) -> String {
        hex::encode(Sha1::digest(format!("{id}:{}:{timestamp}", salt.expose())))
    }

    /// The token Scalingo would put in the link (tests and `provider check`).
    pub fn sign(&self, id: &str, timestamp: &str) -> String {
        Self::expected(&self.salt.current, id, timestamp)
    }

    /// Checks the token (in constant time) with the salt, or the previous
    /// one during a rotation, then the timestamp's age.
    pub fn verify(&self, link: &SsoLink, now: DateTime<Utc>) -> Result<(), Refusal> {
        let signed_with = |salt: &Secret| {
            constant_time_eq(
                Self::expected(salt, &link.id, &link.timestamp).as_bytes(),
                link.token.as_bytes(),
            )
        };
        if !self.salt.either(signed_with) {
            return Err(Refusal::BadSignature);
        }
        let issued = unix_seconds(&link.timestamp).ok_or(Refusal::MalformedRequest)?;
        check_fresh(issued, now.timestamp(), self.max_age_seconds)
    }
}

/// `GET /scalingo/sso`: verify, find the Scalingo resource, spend the
/// token and open a session (the panel, or the vendor's app:
/// `crate::sso_login`). A suspended add-on opens nothing.
pub async fn login<S: ResourceReader + SessionStore>(
    sso: Option<&ScalingoSso>,
    sessions: &Sessions<S>,
    request: &Request,
) -> Result<Response<Body>, SignInError> {
    let sso = sso.ok_or(Refusal::NotConfigured)?;
    let link = parse_query(request.uri().query().unwrap_or_default())?;
    let now = Utc::now();
    sso.verify(&link, now)?;
    let resource = match is_resource_id(&link.id) {
        true => sessions.store().get_resource(&link.id).await?,
        false => None,
    };
    // Only Scalingo's own resources: another marketplace's is not
    // Scalingo's to sign in to, even with a valid salt.
    let resource = resource
        .filter(|r| r.platform == Platform::Scalingo)
        .filter(|r| matches!(r.status, ResourceStatus::Active | ResourceStatus::Suspended))
        .ok_or(Refusal::UnknownResource)?;
    if resource.status == ResourceStatus::Suspended {
        return Err(Refusal::Suspended.into());
    }
    let sign_in = ResourceSignIn {
        account: format!("resource:{}", resource.id),
        resource,
        email: "",
        email_signed: false,
        nav_data: "",
    };
    let issued = unix_seconds(&link.timestamp).unwrap_or_default();
    sessions
        .open_on_resource(&link.timestamp, spent_until(issued, sso.max_age_seconds), sign_in)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: &str = "9a8b7c6d5e4f3a2b1c0d";
    const NOW: i64 = 1_700_000_000;

    fn sso() -> ScalingoSso {
        ScalingoSso::new(Secret::new(SALT), None, 3600)
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    fn link(signer: &ScalingoSso, id: &str, timestamp: i64) -> SsoLink {
        let token = signer.sign(id, &timestamp.to_string());
        parse_query(&format!("id={id}&timestamp={timestamp}&token={token}")).unwrap()
    }

    #[test]
    fn the_token_is_the_documented_sha1() {
        assert_eq!(
            sso().sign("example_app_3083", "1600073910"),
            hex::encode(Sha1::digest(format!("example_app_3083:{SALT}:1600073910")))
        );
    }

    #[test]
    fn a_fresh_link_verifies_in_either_case_for_an_hour_by_default() {
        let good = link(&sso(), "res_sc_1", NOW);
        assert_eq!(sso().verify(&good, at(NOW)), Ok(()));
        assert_eq!(sso().verify(&good, at(NOW + 3600)), Ok(()), "an hour old");
        assert_eq!(sso().verify(&good, at(NOW + 3601)), Err(Refusal::Expired));
        assert_eq!(sso().verify(&good, at(NOW - 61)), Err(Refusal::FromTheFuture));
        let upper = parse_query(&format!(
            "id=res_sc_1&timestamp={NOW}&token={}",
            sso().sign("res_sc_1", &NOW.to_string()).to_uppercase()
        ))
        .unwrap();
        assert_eq!(sso().verify(&upper, at(NOW)), Ok(()));
    }

    #[test]
    fn another_id_time_or_salt_is_refused_and_the_previous_salt_still_verifies() {
        let good = link(&sso(), "res_sc_1", NOW);
        let mut other_id = good.clone();
        other_id.id = "res_sc_2".into();
        assert_eq!(sso().verify(&other_id, at(NOW)), Err(Refusal::BadSignature));
        let mut other_time = good.clone();
        other_time.timestamp = (NOW + 1).to_string();
        assert_eq!(sso().verify(&other_time, at(NOW)), Err(Refusal::BadSignature));
        let stranger = ScalingoSso::new(Secret::new("another salt"), None, 3600);
        assert_eq!(stranger.verify(&good, at(NOW)), Err(Refusal::BadSignature));
        let rotating = ScalingoSso::new(Secret::new("new salt"), Some(Secret::new(SALT)), 3600);
        assert_eq!(rotating.verify(&good, at(NOW)), Ok(()));
    }

    #[test]
    fn the_salt_and_the_hour_come_from_the_environment_once_scalingo_is_sold() {
        use crate::config::tests::lookup_from;
        assert!(
            ScalingoSso::from_lookup(&lookup_from(&[("SCALINGO_SSO_SALT", SALT)]))
                .unwrap()
                .is_none()
        );
        let err = ScalingoSso::from_lookup(&lookup_from(&[("SCALINGO_USERNAME", "u")])).unwrap_err();
        assert_eq!(err.var, "SCALINGO_SSO_SALT");
        let sold = [("SCALINGO_USERNAME", "u"), ("SCALINGO_SSO_SALT", SALT)];
        let sso = ScalingoSso::from_lookup(&lookup_from(&sold)).unwrap().unwrap();
        assert_eq!(sso.max_age_seconds, 3600, "Scalingo's hour by default");
        let good = link(&sso, "res_sc_1", NOW);
        assert_eq!(sso.verify(&good, at(NOW)), Ok(()));
        let mut shorter = sold.to_vec();
        shorter.extend([
            ("SCALINGO_SSO_MAX_AGE_SECONDS", "300"),
            ("SCALINGO_SSO_SALT_PREVIOUS", "old salt"),
        ]);
        let sso = ScalingoSso::from_lookup(&lookup_from(&shorter)).unwrap().unwrap();
        assert_eq!(sso.max_age_seconds, 300);
        let old = link(
            &ScalingoSso::new(Secret::new("old salt"), None, 0),
            "res_sc_1",
            NOW,
        );
        assert_eq!(
            sso.verify(&old, at(NOW)),
            Ok(()),
            "the previous salt during a rotation"
        );
    }

    #[test]
    fn a_query_is_read_up_to_its_limit() {
        let base = format!("id=res_sc_1&timestamp={NOW}&token=ab&pad=");
        let exact = format!("{base}{}", "x".repeat(MAX_QUERY_BYTES - base.len()));
        assert_eq!(exact.len(), MAX_QUERY_BYTES);
        assert!(parse_query(&exact).is_ok());
        assert_eq!(parse_query(&format!("{exact}x")), Err(Refusal::MalformedRequest));
    }

    #[test]
    fn a_query_missing_or_repeating_a_field_is_malformed() {
        for query in [
            "",
            "id=a&timestamp=1",
            "id=a&token=b",
            "timestamp=1&token=b",
            "id=a&id=b&timestamp=1&token=c",
            "id=&timestamp=1&token=c",
        ] {
            assert_eq!(parse_query(query), Err(Refusal::MalformedRequest), "{query}");
        }
        let signed_nonsense = ScalingoSso::new(Secret::new(SALT), None, 3600);
        let token = signed_nonsense.sign("a", "12x");
        let nonsense = parse_query(&format!("id=a&timestamp=12x&token={token}")).unwrap();
        assert_eq!(
            signed_nonsense.verify(&nonsense, at(NOW)),
            Err(Refusal::MalformedRequest)
        );
        // Whole seconds of at most 12 digits: a 13-digit one is no timestamp.
        let far = link(&signed_nonsense, "a", 1_000_000_000_000);
        assert_eq!(
            signed_nonsense.verify(&far, at(NOW)),
            Err(Refusal::MalformedRequest)
        );
    }

    mod login {
        use super::*;
        use crate::model::{ConfigMap, Resource, Session, SignedInIdentity, Timestamp};
        use crate::store::memory::MemoryStore;
        use lambda_http::http::{header, StatusCode};

        const ID: &str = "res_sc_0123456789abcdef0123456789abcdef";

        fn get(query: &str) -> Request {
            lambda_http::http::Request::builder()
                .method("GET")
                .uri(format!("/scalingo/sso?{query}"))
                .body(Body::Empty)
                .unwrap()
        }

        fn resource(platform: Platform, status: ResourceStatus) -> Resource {
            Resource {
                status,
                ..Resource::new(
                    ID.into(),
                    platform,
                    "uuid-1".into(),
                    "basic".into(),
                    ConfigMap::default(),
                    &Timestamp::now(),
                )
            }
        }

        fn sessions(resource: Resource) -> Sessions<MemoryStore> {
            Sessions::new(MemoryStore::with_resource(resource), 3600)
        }

        /// Scalingo's link for `id`, issued `age` seconds ago.
        fn link(id: &str, age: i64) -> String {
            let timestamp = (Utc::now().timestamp() - age).to_string();
            format!(
                "id={id}&timestamp={timestamp}&token={}",
                sso().sign(id, &timestamp)
            )
        }

        async fn sign_in(
            sessions: &Sessions<MemoryStore>,
            query: &str,
        ) -> Result<Response<Body>, SignInError> {
            login(Some(&sso()), sessions, &get(query)).await
        }

        fn stored(sessions: &Sessions<MemoryStore>) -> Vec<Session> {
            sessions.store().stored_sessions()
        }

        fn refused(answer: Result<Response<Body>, SignInError>) -> Option<Refusal> {
            match answer {
                Err(SignInError::Refused(refusal)) => Some(refusal),
                _ => None,
            }
        }

        #[tokio::test]
        async fn a_link_opens_one_session_on_the_add_on_and_is_spent_for_its_hour() {
            let sessions = sessions(resource(Platform::Scalingo, ResourceStatus::Active));
            let query = link(ID, 10);
            let response = sign_in(&sessions, &query).await.expect("signed in");
            assert_eq!(response.status(), StatusCode::SEE_OTHER);
            assert_eq!(response.headers()[header::REFERRER_POLICY], "no-referrer");
            let stored = stored(&sessions);
            assert_eq!(stored.len(), 1);
            assert_eq!(
                (stored[0].platform, stored[0].subject_id.as_str()),
                (Platform::Scalingo, ID)
            );
            let identity = stored[0].identity.clone().unwrap();
            assert_eq!(
                identity.subject,
                SignedInIdentity::subject_of(Platform::Scalingo, &format!("resource:{ID}"))
            );
            assert!(!identity.email_verified && identity.email.is_none());
            let issued = parse_query(&query).unwrap().timestamp.parse::<i64>().unwrap();
            let spent: Vec<i64> = sessions
                .store()
                .spent_tokens
                .lock()
                .unwrap()
                .values()
                .copied()
                .collect();
            assert_eq!(spent, [issued + 3600 + 60]);
            assert_eq!(refused(sign_in(&sessions, &query).await), Some(Refusal::Replayed));
        }

        #[tokio::test]
        async fn only_an_active_scalingo_add_on_signs_in_and_a_suspended_one_says_so() {
            for (resource, expected) in [
                (
                    resource(Platform::Scalingo, ResourceStatus::Suspended),
                    Refusal::Suspended,
                ),
                (
                    resource(Platform::Scalingo, ResourceStatus::Deprovisioned),
                    Refusal::UnknownResource,
                ),
                (
                    resource(Platform::Scalingo, ResourceStatus::Provisioning),
                    Refusal::UnknownResource,
                ),
                (
                    resource(Platform::Heroku, ResourceStatus::Active),
                    Refusal::UnknownResource,
                ),
            ] {
                let sessions = sessions(resource);
                assert_eq!(refused(sign_in(&sessions, &link(ID, 0)).await), Some(expected));
                assert!(stored(&sessions).is_empty());
                assert!(
                    sessions.store().spent_tokens.lock().unwrap().is_empty(),
                    "nothing spent"
                );
            }
            let sessions = sessions(resource(Platform::Scalingo, ResourceStatus::Active));
            let other = "res_sc_ffffffffffffffffffffffffffffffff";
            assert_eq!(
                refused(sign_in(&sessions, &link(other, 0)).await),
                Some(Refusal::UnknownResource)
            );
            assert_eq!(
                refused(sign_in(&sessions, &link("res_0", 0)).await),
                Some(Refusal::UnknownResource)
            );
            assert_eq!(
                refused(sign_in(&sessions, &link(ID, 3601)).await),
                Some(Refusal::Expired)
            );
            assert_eq!(
                refused(sign_in(&sessions, "id=x").await),
                Some(Refusal::MalformedRequest)
            );
            let unconfigured = login(None, &sessions, &get(&link(ID, 0))).await;
            assert_eq!(refused(unconfigured), Some(Refusal::NotConfigured));
            assert!(stored(&sessions).is_empty());
        }
    }
}
