//! `provider check --marketplace heroku`: Heroku's Add-on Partner API v3 as
//! Heroku calls it (docs/heroku.md): authentication first, provision (new,
//! repeated, concurrent, any `Accept`), hostile bodies, single sign-on in
//! each token form and each refusal, plan change and deprovision with
//! Heroku's codes, and sign-in refused once the add-on is gone.

use super::lifecycle::{with_credentials, Credentials};
use super::probe::{Answer, Probe};
use super::report::Report;
use super::sso::SsoChecks;
use super::target::Target;
use reqwest::{header, Method, RequestBuilder};
use serde_json::{json, Value};
use shared::heroku::sso::HerokuSso;
use shared::secret::{random_hex, Secret};
use tokio::task::JoinSet;

/// Heroku's media type for its calls to an add-on provider.
use crate::listing::HEROKU_ADDONS_V3 as V3;
/// A timestamp this old must be refused.
const STALE_SECONDS: i64 = 6 * 60;
/// A timestamp this far ahead must be refused.
const FUTURE_SECONDS: i64 = 60 * 60;

/// An add-on this run provisioned: its uuid, the id and config answered.
struct Provisioned {
    uuid: String,
    id: String,
}

/// A uuid no other run uses.
fn fresh_uuid() -> String {
    shared::secret::random_uuid()
}

struct HerokuChecks<'a> {
    probe: &'a Probe,
    target: &'a Target,
    /// Uuids a provision answered 2xx for: deprovisioned at the end.
    provisioned: Vec<String>,
}

/// Every Heroku check, in the order Heroku would meet them.
pub async fn run(target: &Target, probe: &Probe, report: &mut Report) {
    let mut checks = HerokuChecks {
        probe,
        target,
        provisioned: Vec::new(),
    };
    report.record("heroku.manifest.version", target.manifest_version_3());
    checks.authentication(report).await;
    let resource = checks.provision_new(report).await;
    checks.provision_repeat(resource.as_ref(), report).await;
    checks.provision_concurrent(report).await;
    checks.hostile_bodies(report).await;
    checks.sso(resource.as_ref(), report).await;
    checks.plan_change(resource.as_ref(), report).await;
    checks.deprovision(resource.as_ref(), report).await;
    checks.sso_after_deprovision(resource.as_ref(), report).await;
    checks.clean_up().await;
    report.record("timing.budget", probe.within(super::probe::RESPONSE_BUDGET));
}

impl HerokuChecks<'_> {
    fn request(&self, method: Method, uuid: Option<&str>, credentials: Credentials) -> RequestBuilder {
        self.request_accepting(method, uuid, credentials, V3)
    }

    fn request_accepting(
        &self,
        method: Method,
        uuid: Option<&str>,
        credentials: Credentials,
        accept: &str,
    ) -> RequestBuilder {
        let url = match uuid {
            Some(uuid) => format!("{}/{uuid}", self.target.base_url),
            None => self.target.base_url.clone(),
        };
        let request = self
            .probe
            .http
            .request(method, url)
            .header(header::ACCEPT, accept);
        with_credentials(request, self.target, credentials)
    }

    /// The body Heroku's documentation shows.
    fn provision_body(&self, uuid: &str, plan: &str) -> Value {
        json!({
            "uuid": uuid,
            "name": "provider-check",
            "plan": plan,
            "region": "amazon-web-services::us-east-1",
            "callback_url": format!("https://api.heroku.com/addons/{uuid}"),
            "oauth_grant": null,
            "options": {},
            "log_input_url": "https://token:t.provider-check@1.us.logplex.io/logs",
            "log_drain_token": "d.provider-check",
        })
    }

    async fn provision(&mut self, uuid: &str, credentials: Credentials) -> Result<Answer, String> {
        let request = self
            .request(Method::POST, None, credentials)
            .json(&self.provision_body(uuid, &self.target.plan));
        let answer = self.probe.send(request).await?;
        if (200..300).contains(&answer.status) && !self.provisioned.iter().any(|known| known == uuid) {
            self.provisioned.push(uuid.to_string());
        }
        Ok(answer)
    }

    /// 401 with a Basic challenge on each route, before anything is looked at.
    async fn authentication(&mut self, report: &mut Report) {
        for (case, credentials) in [
            ("missing", Credentials::Missing),
            ("wrong_password", Credentials::WrongPassword),
            ("wrong_user", Credentials::WrongUser),
        ] {
            let answer = self.provision(&fresh_uuid(), credentials).await;
            report.record(&format!("heroku.auth.provision.{case}"), refused(answer));
            let request = self
                .request(Method::PUT, Some(&fresh_uuid()), credentials)
                .json(&json!({"plan": self.target.new_plan}));
            report.record(
                &format!("heroku.auth.plan_change.{case}"),
                refused(self.probe.send(request).await),
            );
            let request = self.request(Method::DELETE, Some(&fresh_uuid()), credentials);
            report.record(
                &format!("heroku.auth.deprovision.{case}"),
                refused(self.probe.send(request).await),
            );
        }
    }

    /// 200 with the id and exactly the manifest's config vars (or 202 with
    /// the id: the vendor finishes later).
    async fn provision_new(&mut self, report: &mut Report) -> Option<Provisioned> {
        let uuid = fresh_uuid();
        let answer = self.provision(&uuid, Credentials::Right).await;
        let checked = answer.and_then(|answer| self.provision_answer(&answer));
        let id = checked.as_ref().ok().map(|(id, _)| id.clone());
        report.record("heroku.provision.new", checked.map(|(_, why)| why));
        id.map(|id| Provisioned { uuid, id })
    }

    fn provision_answer(&self, answer: &Answer) -> Result<(String, String), String> {
        let body = answer
            .json()
            .ok_or_else(|| format!("not JSON: {}", answer.describe()))?;
        let id = body["id"]
            .as_str()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| format!("no id: {}", answer.describe()))?
            .to_string();
        match answer.status {
            202 => Ok((id, "202 with an id: provisioning asynchronously".into())),
            200 => {
                config_is_the_manifests(self.target, &body)?;
                Ok((id, "200 with an id and exactly the manifest's config vars".into()))
            }
            _ => Err(format!("expected 200 or 202, got {}", answer.describe())),
        }
    }

    /// The same uuid again: the same id and config.
    async fn provision_repeat(&mut self, resource: Option<&Provisioned>, report: &mut Report) {
        let Some(resource) = resource else {
            return report.skip(
                "heroku.provision.repeat",
                "needs a provisioned add-on (heroku.provision.new failed)",
            );
        };
        let first = self.provision(&resource.uuid, Credentials::Right).await;
        let second = self.provision(&resource.uuid, Credentials::Right).await;
        report.record(
            "heroku.provision.repeat",
            first
                .and_then(|first| second.map(|second| (first, second)))
                .and_then(|(first, second)| {
                    let (a, b) = (first.json(), second.json());
                    if !(200..300).contains(&first.status) || first.status != second.status || a != b {
                        return Err(format!(
                            "two deliveries answered {} and {}",
                            first.describe(),
                            second.describe()
                        ));
                    }
                    match a.as_ref().and_then(|a| a["id"].as_str()) {
                        Some(id) if id == resource.id => {
                            Ok(format!("{} with the same id and config", first.status))
                        }
                        other => Err(format!(
                            "a redelivery answered id {other:?}, first {:?}",
                            resource.id
                        )),
                    }
                }),
        );
    }

    /// Many deliveries of one uuid at once: one add-on.
    async fn provision_concurrent(&mut self, report: &mut Report) {
        let uuid = fresh_uuid();
        let mut deliveries = JoinSet::new();
        for _ in 0..self.target.concurrency {
            let request = self
                .request(Method::POST, None, Credentials::Right)
                .json(&self.provision_body(&uuid, &self.target.plan));
            let probe = self.probe.clone();
            deliveries.spawn(async move { probe.send(request).await });
        }
        let mut answers = Vec::new();
        for answer in deliveries.join_all().await {
            // A 503 with Retry-After is a provider asking to be retried, as
            // Heroku would.
            answers.push(match answer {
                Ok(answer) if answer.status == 503 && answer.header(header::RETRY_AFTER).is_some() => {
                    let request = self
                        .request(Method::POST, None, Credentials::Right)
                        .json(&self.provision_body(&uuid, &self.target.plan));
                    self.probe.send(request).await
                }
                other => other,
            });
        }
        self.provisioned.push(uuid);
        let mut ids = std::collections::BTreeSet::new();
        let mut failures = Vec::new();
        for answer in &answers {
            match answer {
                Ok(answer) if (200..300).contains(&answer.status) => {
                    ids.insert(
                        answer
                            .json()
                            .and_then(|body| body["id"].as_str().map(str::to_string)),
                    );
                }
                Ok(answer) => failures.push(answer.describe()),
                Err(why) => failures.push(why.clone()),
            }
        }
        report.record(
            "heroku.provision.concurrent",
            if !failures.is_empty() {
                Err(format!(
                    "{} of {} deliveries failed: {}",
                    failures.len(),
                    answers.len(),
                    failures[0]
                ))
            } else if ids.len() != 1 {
                Err(format!(
                    "{} deliveries of one uuid answered {} ids",
                    answers.len(),
                    ids.len()
                ))
            } else {
                Ok(format!("{} deliveries at once answered one id", answers.len()))
            },
        );
    }

    /// Bad bodies get a JSON 4xx; an unknown plan 422; no `Accept` is refused.
    async fn hostile_bodies(&mut self, report: &mut Report) {
        let bad_uuid = self
            .request(Method::POST, None, Credentials::Right)
            .json(&self.provision_body("not-a-uuid", &self.target.plan));
        report.record(
            "heroku.provision.bad_uuid",
            self.probe
                .send(bad_uuid)
                .await
                .and_then(|answer| answer.expect_json_client_error()),
        );
        let bad_json = self
            .request(Method::POST, None, Credentials::Right)
            .header(header::CONTENT_TYPE, "application/json")
            .body("{\"uuid\": ");
        report.record(
            "heroku.provision.bad_json",
            self.probe
                .send(bad_json)
                .await
                .and_then(|answer| answer.expect_json_client_error()),
        );
        let uuid = fresh_uuid();
        let unknown_plan = self
            .request(Method::POST, None, Credentials::Right)
            .json(&self.provision_body(&uuid, "provider-check-no-such-plan"));
        let answer = self.probe.send(unknown_plan).await;
        if answer
            .as_ref()
            .is_ok_and(|answer| (200..300).contains(&answer.status))
        {
            self.provisioned.push(uuid);
        }
        report.record(
            "heroku.provision.unknown_plan",
            answer.and_then(|answer| answer.expect_status(422).map(|()| "422".to_string())),
        );
        let mut outcomes = Vec::new();
        for accept in ["application/json", "text/plain", "*/*"] {
            let uuid = fresh_uuid();
            let request = self
                .request_accepting(Method::POST, None, Credentials::Right, accept)
                .json(&self.provision_body(&uuid, &self.target.plan));
            let answer = self.probe.send(request).await;
            if answer
                .as_ref()
                .is_ok_and(|answer| (200..300).contains(&answer.status))
            {
                self.provisioned.push(uuid);
            }
            outcomes.push((accept, answer));
        }
        report.record(
            "heroku.provision.any_accept",
            outcomes
                .into_iter()
                .map(|(accept, answer)| {
                    let answer = answer?;
                    if (200..300).contains(&answer.status) {
                        Ok(())
                    } else {
                        Err(format!("Accept: {accept} answered {}", answer.describe()))
                    }
                })
                .collect::<Result<Vec<()>, String>>()
                .map(|_| "no Accept header is refused".to_string()),
        );
    }

    fn signer(&self) -> Option<HerokuSso> {
        Some(HerokuSso::new(self.target.sso_salt.clone()?, None, 0))
    }

    /// The form Heroku's dashboard posts, its `field` proof made with `signer`.
    fn sso_form(signer: &HerokuSso, resource: &Provisioned, field: &'static str, offset: i64) -> String {
        let timestamp = super::sso::sign_in_timestamp(&resource.id, offset);
        // A timestamp of its own makes each form a sign-in of its own (the
        // stack spends the add-on and the timestamp), so a refusal is never
        // just the replay guard at work.
        let user_id = format!("user-provider-check-{}", random_hex(4));
        let user = crate::signin::User {
            email: "provider-check@example.com",
            user_id: &user_id,
        };
        let form = crate::signin::heroku_form(
            signer,
            &resource.id,
            &resource.uuid,
            &user,
            &timestamp.to_string(),
            field,
        );
        crate::signin::encode(&form)
    }

    async fn post_sso(&self, form: String) -> Result<Answer, String> {
        let request = self
            .probe
            .http
            .post(&self.target.sso_url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form);
        self.probe.send(request).await
    }

    async fn sso(&self, resource: Option<&Provisioned>, report: &mut Report) {
        const NAMES: [&str; 9] = [
            "heroku.sso.user_scoped",
            "heroku.sso.resource_token",
            "heroku.sso.legacy_token",
            "heroku.sso.cookie",
            "heroku.sso.replay",
            "heroku.sso.stale",
            "heroku.sso.future",
            "heroku.sso.forged",
            "heroku.sso.forged_beside_valid",
        ];
        let (Some(resource), Some(signer)) = (resource, self.signer()) else {
            for name in NAMES {
                report.skip(name, "needs a provisioned add-on and the manifest's sso_salt");
            }
            return;
        };
        let base = self.target.sso_url.clone();
        let signed_in = SsoChecks::new(self.probe, self.target);
        let mut replayable = None;
        for (name, field) in [
            ("heroku.sso.user_scoped", "user_scoped_resource_token"),
            ("heroku.sso.resource_token", "resource_token"),
            ("heroku.sso.legacy_token", "token"),
        ] {
            let form = Self::sso_form(&signer, resource, field, 0);
            let answer = self.post_sso(form.clone()).await;
            if name == "heroku.sso.user_scoped" {
                report.record(
                    "heroku.sso.cookie",
                    answer.clone().and_then(|answer| answer.cookie_attributes()),
                );
                replayable = Some(form);
            }
            report.record(name, signed_in.signed_in(answer, &base).await);
        }
        let replay = match replayable {
            Some(form) => refused_page(self.post_sso(form).await),
            None => Err("no form to replay".into()),
        };
        report.record("heroku.sso.replay", replay);
        let stale = Self::sso_form(&signer, resource, "resource_token", -STALE_SECONDS);
        report.record("heroku.sso.stale", refused_page(self.post_sso(stale).await));
        let future = Self::sso_form(&signer, resource, "resource_token", FUTURE_SECONDS);
        report.record("heroku.sso.future", refused_page(self.post_sso(future).await));
        let stranger = HerokuSso::new(Secret::new(format!("not-the-salt-{}", random_hex(8))), None, 0);
        let forged = Self::sso_form(&stranger, resource, "user_scoped_resource_token", 0);
        report.record("heroku.sso.forged", refused_page(self.post_sso(forged).await));
        // A valid weaker proof must not rescue a forged stronger one.
        let beside = format!(
            "{}&user_scoped_resource_token={}",
            Self::sso_form(&signer, resource, "resource_token", 0),
            "0".repeat(64)
        );
        report.record(
            "heroku.sso.forged_beside_valid",
            refused_page(self.post_sso(beside).await),
        );
    }

    async fn plan_change(&self, resource: Option<&Provisioned>, report: &mut Report) {
        let Some(resource) = resource else {
            for name in [
                "heroku.plan_change.new",
                "heroku.plan_change.same",
                "heroku.plan_change.unknown_plan",
            ] {
                report.skip(name, "needs a provisioned add-on");
            }
            report.record(
                "heroku.plan_change.unknown_uuid",
                self.unknown_plan_change().await,
            );
            return;
        };
        let change = |plan: &str| {
            self.request(Method::PUT, Some(&resource.uuid), Credentials::Right)
                .json(&json!({"plan": plan}))
        };
        let checked = |answer: Result<Answer, String>| {
            let answer = answer?;
            answer.expect_status(200)?;
            let body = answer.json().ok_or("not JSON")?;
            config_is_the_manifests(self.target, &body)?;
            if !body["message"].is_string() {
                return Err("no message".into());
            }
            Ok("200 with the config and a message".to_string())
        };
        report.record(
            "heroku.plan_change.new",
            checked(self.probe.send(change(&self.target.new_plan)).await),
        );
        report.record(
            "heroku.plan_change.same",
            checked(self.probe.send(change(&self.target.new_plan)).await),
        );
        let unknown = self.probe.send(change("provider-check-no-such-plan")).await;
        report.record(
            "heroku.plan_change.unknown_plan",
            unknown.and_then(|answer| answer.expect_status(422).map(|()| "422".to_string())),
        );
        report.record(
            "heroku.plan_change.unknown_uuid",
            self.unknown_plan_change().await,
        );
    }

    async fn unknown_plan_change(&self) -> Result<String, String> {
        let request = self
            .request(Method::PUT, Some(&fresh_uuid()), Credentials::Right)
            .json(&json!({"plan": self.target.new_plan}));
        let answer = self.probe.send(request).await?;
        answer.expect_status(404)?;
        Ok("404 for a uuid never provisioned".into())
    }

    async fn deprovision(&mut self, resource: Option<&Provisioned>, report: &mut Report) {
        let unknown = self.request(Method::DELETE, Some(&fresh_uuid()), Credentials::Right);
        report.record(
            "heroku.deprovision.unknown",
            self.probe.send(unknown).await.and_then(|answer| {
                answer.expect_status(404)?;
                Ok("404 for a uuid never provisioned".into())
            }),
        );
        let Some(resource) = resource else {
            report.skip("heroku.deprovision.first", "needs a provisioned add-on");
            return report.skip("heroku.deprovision.repeat", "needs a provisioned add-on");
        };
        let gone = |answer: Result<Answer, String>| {
            let answer = answer?;
            answer.expect_status(204)?;
            Ok("204".to_string())
        };
        let first = self.request(Method::DELETE, Some(&resource.uuid), Credentials::Right);
        report.record("heroku.deprovision.first", gone(self.probe.send(first).await));
        let repeat = self.request(Method::DELETE, Some(&resource.uuid), Credentials::Right);
        report.record("heroku.deprovision.repeat", gone(self.probe.send(repeat).await));
        self.provisioned.retain(|uuid| *uuid != resource.uuid);
    }

    async fn sso_after_deprovision(&self, resource: Option<&Provisioned>, report: &mut Report) {
        let (Some(resource), Some(signer)) = (resource, self.signer()) else {
            return report.skip(
                "heroku.sso.deprovisioned",
                "needs a provisioned add-on and the sso_salt",
            );
        };
        let form = Self::sso_form(&signer, resource, "user_scoped_resource_token", 0);
        report.record(
            "heroku.sso.deprovisioned",
            refused_page(self.post_sso(form).await),
        );
    }

    /// Every add-on the run made goes; failures here are the cleanup's.
    async fn clean_up(&self) {
        for uuid in &self.provisioned {
            let request = self.request(Method::DELETE, Some(uuid), Credentials::Right);
            let _ = self.probe.send(request).await;
        }
    }
}

/// Exactly the manifest's config vars, each a string (Scalingo's
/// answers too: `super::scalingo`).
pub(super) fn config_is_the_manifests(target: &Target, body: &Value) -> Result<(), String> {
    let config = body["config"].as_object().ok_or("no config object")?;
    let mut names: Vec<&str> = config.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut expected: Vec<&str> = target.config_vars.iter().map(String::as_str).collect();
    expected.sort_unstable();
    if names != expected {
        return Err(format!("config vars {names:?}, the manifest lists {expected:?}"));
    }
    if config.values().any(|value| !value.is_string()) {
        return Err("a config value is not a string".into());
    }
    Ok(())
}

/// 401 with a Basic challenge.
pub(super) fn refused(answer: Result<Answer, String>) -> Result<String, String> {
    let answer = answer?;
    answer.expect_status(401)?;
    match answer.header(header::WWW_AUTHENTICATE) {
        Some(challenge) if challenge.to_ascii_lowercase().starts_with("basic") => {
            Ok("401 with a Basic challenge".into())
        }
        other => Err(format!(
            "401 without a Basic challenge (WWW-Authenticate {other:?})"
        )),
    }
}

/// 403, and no session cookie.
pub(super) fn refused_page(answer: Result<Answer, String>) -> Result<String, String> {
    let answer = answer?;
    answer.expect_status(403)?;
    if answer.cookies().is_empty() {
        Ok("403, no session".into())
    } else {
        Err("403, yet a cookie was set".into())
    }
}
