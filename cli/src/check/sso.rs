//! Single sign-on as the platforms send it: Clever Cloud's two form schemes
//! and Cloud 66's multipass callback, each accepted once, and every forged,
//! stale, future or replayed one refused with 403.

use super::lifecycle::Provisioned;
use super::probe::{cookie_header, Answer, Probe};
use super::report::Report;
use super::target::Target;
use chrono::{Duration, Utc};
use reqwest::header;
use shared::clevercloud::sso::CleverCloudSso;
use shared::cloud66::sso::{Cloud66Sso, KeyDerivation};
use shared::secret::{random_hex, Secret};

/// The timestamp of a new sign-in to `resource_id` at `offset` seconds from
/// now: with no offset, the latest second not yet used for that add-on in
/// this run. A stack spends a sign-in by its add-on and timestamp (one form
/// is one sign-in, whatever proofs it carries), so two of the check's own
/// sign-ins to one add-on within a second must not share a timestamp, or
/// the second is refused as used. A stale or future form is refused
/// before anything is spent, so it keeps its exact offset.
pub fn sign_in_timestamp(resource_id: &str, offset: i64) -> i64 {
    static USED: std::sync::Mutex<Vec<(String, i64)>> = std::sync::Mutex::new(Vec::new());
    let now = Utc::now().timestamp();
    if offset != 0 {
        return now + offset;
    }
    let mut used = USED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let timestamp = (0..)
        .map(|back| now - back)
        .find(|candidate| !used.iter().any(|(id, at)| id == resource_id && at == candidate))
        .unwrap_or(now);
    used.push((resource_id.to_string(), timestamp));
    timestamp
}

/// A timestamp this old must be refused (Heroku's checker used the same).
const STALE_SECONDS: i64 = 6 * 60;
/// A timestamp this far ahead must be refused.
const FUTURE_SECONDS: i64 = 60 * 60;

pub struct SsoChecks<'a> {
    probe: &'a Probe,
    target: &'a Target,
}

/// The form fields of one Clever Cloud sign-in.
use crate::signin::Form;

impl<'a> SsoChecks<'a> {
    pub fn new(probe: &'a Probe, target: &'a Target) -> Self {
        Self { probe, target }
    }

    fn signer(&self) -> Option<CleverCloudSso> {
        let salt = self.target.sso_salt.clone()?;
        // The age limit is the deployment's; signing does not use it.
        Some(CleverCloudSso::new(salt, 0))
    }

    /// The current scheme: `signature` = SHA-512 over the fields, timestamp in
    /// seconds.
    fn signed_form(&self, signer: &CleverCloudSso, id: &str, offset: i64) -> Form {
        let timestamp = sign_in_timestamp(id, offset).to_string();
        // A user id and a timestamp of its own make each form unique even
        // within one second, so a refusal is never just the replay guard at work.
        let user_id = format!("user_provider_check_{}", random_hex(4));
        let user = crate::signin::User {
            email: "provider-check@example.com",
            user_id: &user_id,
        };
        crate::signin::clevercloud_form(signer, id, &user, &timestamp)
    }

    /// The legacy scheme: `token` = SHA-1 of `id:salt:timestamp`, timestamp in
    /// milliseconds as the old documentation has it.
    fn token_form(&self, signer: &CleverCloudSso, id: &str) -> Form {
        let timestamp = Utc::now().timestamp_millis().to_string();
        crate::signin::clevercloud_legacy_form(signer, id, "provider-check@example.com", &timestamp)
    }

    async fn post(&self, form: &Form) -> Result<Answer, String> {
        let request = self.probe.http.post(&self.target.sso_url).form(form);
        self.probe.send(request).await
    }

    /// A sign-in that opens a session: a 2xx, or a redirect that, followed
    /// with the cookies it set, answers 200.
    pub async fn signed_in(&self, answer: Result<Answer, String>, base: &str) -> Result<String, String> {
        let answer = answer?;
        let cookies = answer.cookies();
        if cookies.is_empty() {
            return Err(format!("no session cookie; answer {}", answer.describe()));
        }
        if (200..300).contains(&answer.status) {
            return Ok(format!("{} with a session cookie", answer.status));
        }
        if !(300..400).contains(&answer.status) {
            return Err(format!(
                "expected a redirect to the panel, got {}",
                answer.describe()
            ));
        }
        let location = answer
            .header(header::LOCATION)
            .ok_or(format!("{} without Location", answer.status))?;
        // Handed to the vendor's app (an OpenID Connect client registered
        // with an initiate_login_uri, docs/oidc.md): the app is not the
        // deployment's to check, the session cookie is (oidc.* use it).
        if let Ok(app) = reqwest::Url::parse(location) {
            let has = |name: &str| app.query_pairs().any(|(held, _)| held == name);
            if has("iss") && has("target_link_uri") {
                return Ok(format!(
                    "{} to the vendor's app ({}), with a session cookie",
                    answer.status,
                    app.origin().ascii_serialization()
                ));
            }
        }
        let panel = reqwest::Url::parse(base)
            .and_then(|base| base.join(location))
            .map_err(|err| format!("Location {location:?}: {err}"))?;
        let request = self
            .probe
            .http
            .get(panel.clone())
            .header(header::COOKIE, cookie_header(&cookies));
        let page = self.probe.send(request).await?;
        page.expect_status(200)
            .map_err(|why| format!("the panel ({}) with the session cookie: {why}", panel.path()))?;
        Ok(format!(
            "{} to {}, which answers 200 with the cookie",
            answer.status,
            panel.path()
        ))
    }

    /// A Clever Cloud sign-in to `resource_id` as `user`: the session's
    /// `Cookie` header (for the `oidc.*` checks).
    pub async fn session(&self, resource_id: &str, user: &str) -> Result<String, String> {
        let signer = self.signer().ok_or("no SSO salt")?;
        let timestamp = sign_in_timestamp(resource_id, 0).to_string();
        let email = format!("{user}@example.com");
        // Navigation data of its own makes a second sign-in as the same user
        // within the same second another form, not a replay.
        let nav_data = random_hex(4);
        let signature = signer.signature(resource_id, user, &email, &nav_data, &timestamp);
        let form: Form = vec![
            ("id", resource_id.to_string()),
            ("timestamp", timestamp),
            ("nav-data", nav_data),
            ("email", email),
            ("user_id", user.to_string()),
            ("signature", signature),
        ];
        let answer = self.post(&form).await?;
        let cookies = answer.cookies();
        if !(300..400).contains(&answer.status) || cookies.is_empty() {
            return Err(format!(
                "expected a redirect with a session cookie, got {}",
                answer.describe()
            ));
        }
        Ok(cookie_header(&cookies))
    }

    /// Both schemes, a replay, a wrong signature, stale and future timestamps,
    /// an id never provisioned, and a malformed form.
    pub async fn clevercloud(&self, resource: Option<&Provisioned>, report: &mut Report) {
        let names = [
            "sso.clevercloud.signature",
            "sso.clevercloud.legacy_token",
            "sso.clevercloud.replay",
            "sso.clevercloud.wrong_signature",
            "sso.clevercloud.stale",
            "sso.clevercloud.future",
            "sso.clevercloud.unknown_resource",
        ];
        let Some(signer) = self.signer() else {
            for name in names {
                report.skip(
                    name,
                    "no SSO salt: set ADDON_SSO_SALT or give a manifest with api.sso_salt",
                );
            }
            return;
        };
        let sso_url = &self.target.sso_url;
        match resource {
            Some(resource) => {
                let form = self.signed_form(&signer, &resource.id, 0);
                let answer = self.post(&form).await;
                let cookie = answer.clone().and_then(|answer| answer.cookie_attributes());
                report.record(names[0], self.signed_in(answer, sso_url).await);
                report.record("sso.clevercloud.cookie", cookie);
                let legacy = self.token_form(&signer, &resource.id);
                report.record(names[1], self.signed_in(self.post(&legacy).await, sso_url).await);
                report.record(names[2], forbidden(self.post(&form).await));
                let forger = CleverCloudSso::new(Secret::new("not-the-sso-salt"), 0);
                let forged = self.signed_form(&forger, &resource.id, 0);
                report.record(names[3], forbidden(self.post(&forged).await));
                let stale = self.signed_form(&signer, &resource.id, -STALE_SECONDS);
                report.record(names[4], forbidden(self.post(&stale).await));
                let future = self.signed_form(&signer, &resource.id, FUTURE_SECONDS);
                report.record(names[5], forbidden(self.post(&future).await));
            }
            None => {
                for name in names[..6].iter().chain(&["sso.clevercloud.cookie"]) {
                    report.skip(name, "needs a provisioned resource (provision.new failed)");
                }
            }
        }
        let unknown = self.signed_form(&signer, "res_never_provisioned_by_check", 0);
        report.record(names[6], forbidden(self.post(&unknown).await));
        let garbage = self
            .probe
            .http
            .post(sso_url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(b"id=%zz&&&timestamp=\xff\xfe&signature".to_vec());
        report.record(
            "hostile.sso.malformed_form",
            client_error(self.probe.send(garbage).await),
        );
        let oversized = self
            .probe
            .http
            .post(sso_url)
            .form(&[("id", "x".repeat(256 * 1024))]);
        report.record(
            "hostile.sso.oversized_form",
            client_error(self.probe.send(oversized).await),
        );
    }

    /// After deprovision, a well-signed sign-in for the resource is refused.
    pub async fn deprovisioned(&self, resource: Option<&Provisioned>, report: &mut Report) {
        let name = "sso.clevercloud.deprovisioned";
        match (self.signer(), resource) {
            (Some(signer), Some(resource)) => {
                let form = self.signed_form(&signer, &resource.id, 0);
                report.record(name, forbidden(self.post(&form).await));
            }
            (None, _) => report.skip(name, "no SSO salt"),
            (_, None) => report.skip(name, "needs a provisioned resource (provision.new failed)"),
        }
    }

    /// Cloud 66: start redirects to Cloud 66's sign-in; a callback with a
    /// multipass this check builds opens a session once; a replay, a wrong
    /// signature and an expired multipass are refused. The cookies `start`
    /// sets go with every callback, as the user's browser would send them.
    pub async fn cloud66(&self, report: &mut Report) {
        let names = [
            "sso.cloud66.start",
            "sso.cloud66.multipass",
            "sso.cloud66.replay",
            "sso.cloud66.wrong_signature",
            "sso.cloud66.expired",
        ];
        let Some(sso) = &self.target.cloud66 else {
            for name in names.iter().chain(&["sso.cloud66.cookie"]) {
                report.skip(
                    name,
                    "Cloud 66 not configured here (CLOUD66_PROVIDER, CLOUD66_PROVIDER_UID)",
                );
            }
            return;
        };
        let start = self
            .probe
            .send(self.probe.http.get(self.target.url("/cloud66/sso/start")))
            .await;
        let cookies = start.as_ref().map(Answer::cookies).unwrap_or_default();
        report.record(names[0], redirects_to(start.clone(), &sso.signin_url()));

        let expires = |minutes| {
            (Utc::now() + Duration::minutes(minutes))
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string()
        };
        let email = &self.target.cloud66_email;
        let (multipass, signature) = sso.sign_in_as(email, "provider check", &expires(5));
        let callback = self.target.url("/cloud66/sso/callback");
        let answer = self.callback(&cookies, &multipass, &signature).await;
        // The sign-in state `start` set, and the session the callback set.
        let cookie = match (&start, &answer) {
            (Ok(start), Ok(answer)) => start
                .cookie_attributes()
                .and_then(|state| Ok(format!("{state}; {}", answer.cookie_attributes()?))),
            (Err(why), _) | (_, Err(why)) => Err(why.clone()),
        };
        report.record(names[1], self.signed_in(answer, &callback).await);
        report.record("sso.cloud66.cookie", cookie);
        // The start is repeated for each refusal, so that a refusal is about
        // the callback alone and not about a spent sign-in state.
        let fresh_start = || async {
            let start = self
                .probe
                .send(self.probe.http.get(self.target.url("/cloud66/sso/start")))
                .await;
            start.map(|answer| answer.cookies()).unwrap_or_default()
        };
        let cookies = fresh_start().await;
        report.record(
            names[2],
            forbidden(self.callback(&cookies, &multipass, &signature).await),
        );
        // A fresh multipass (the gem's encryption is deterministic, so it
        // must differ in content, or this would test the replay guard), signed
        // with a UID that is not the partner's.
        let (fresh, _) = sso.sign_in_as(email, "provider check (forged)", &expires(5));
        let forger = Cloud66Sso::new(
            "https://app.cloud66.com".into(),
            "forger".into(),
            "forged-uid-not-the-partners-0123456789",
            KeyDerivation::Uid,
        )
        .map_err(|err| err.to_string());
        let forged = forger.map(|forger| forger.signature(&fresh));
        let cookies = fresh_start().await;
        let answer = match &forged {
            Ok(signature) => self.callback(&cookies, &fresh, signature).await,
            Err(why) => Err(why.clone()),
        };
        report.record(names[3], forbidden(answer));
        let (expired, expired_signature) = sso.sign_in_as(email, "provider check", &expires(-5));
        let cookies = fresh_start().await;
        report.record(
            names[4],
            forbidden(self.callback(&cookies, &expired, &expired_signature).await),
        );
    }

    async fn callback(&self, cookies: &[String], multipass: &str, signature: &str) -> Result<Answer, String> {
        let mut request = self
            .probe
            .http
            .get(self.target.url("/cloud66/sso/callback"))
            .query(&[("multipass", multipass), ("signature", signature)]);
        if !cookies.is_empty() {
            request = request.header(header::COOKIE, cookie_header(cookies));
        }
        self.probe.send(request).await
    }
}

/// What the platform's documentation asks of a refused sign-in.
fn forbidden(answer: Result<Answer, String>) -> Result<String, String> {
    let answer = answer?;
    answer.expect_status(403)?;
    if !answer.cookies().is_empty() {
        return Err("403, but it sets a cookie".into());
    }
    Ok("403".into())
}

fn client_error(answer: Result<Answer, String>) -> Result<String, String> {
    let answer = answer?;
    if (400..500).contains(&answer.status) {
        Ok(format!("{}", answer.status))
    } else {
        Err(format!("expected a 4xx, got {}", answer.describe()))
    }
}

fn redirects_to(answer: Result<Answer, String>, expected: &str) -> Result<String, String> {
    let answer = answer?;
    if !(300..400).contains(&answer.status) {
        return Err(format!("expected a redirect, got {}", answer.describe()));
    }
    match answer.header(header::LOCATION) {
        Some(location) if location == expected => Ok(format!("{} to {expected}", answer.status)),
        other => Err(format!("redirects to {other:?}, not {expected:?}")),
    }
}
