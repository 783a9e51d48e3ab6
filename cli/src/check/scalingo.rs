//! `provider check --marketplace scalingo`: Scalingo's add-on provider API
//! as Scalingo and its clients call it (docs/scalingo.md): authentication
//! first, provision with and without `uuid` (new, repeated, concurrent),
//! hostile bodies, the GET sign-in link and each refusal, plan change by
//! PUT and PATCH, suspend and resume (and sign-in refused while
//! suspended), deprovision with the tester's literal `null` body, and
//! sign-in refused once the add-on is gone.

use super::heroku::{refused, refused_page};
use super::lifecycle::{with_credentials, Credentials};
use super::probe::{Answer, Probe};
use super::report::Report;
use super::sso::SsoChecks;
use super::target::Target;
use reqwest::{header, Method, RequestBuilder};
use serde_json::{json, Value};
use shared::scalingo::sso::ScalingoSso;
use shared::secret::{random_hex, Secret};
use tokio::task::JoinSet;

/// Older than Scalingo's hour: must be refused.
const STALE_SECONDS: i64 = 2 * 60 * 60;
/// This far ahead: must be refused.
const FUTURE_SECONDS: i64 = 60 * 60;
/// Scalingo's limit on the id answered.
const MAX_ID_CHARS: usize = 255;

/// A Scalingo add-on uuid and app id no other run uses.
fn fresh_uuid() -> String {
    shared::secret::random_uuid()
}

fn fresh_app_id() -> String {
    format!("provider-check-{}", random_hex(6))
}

struct ScalingoChecks<'a> {
    probe: &'a Probe,
    target: &'a Target,
    /// Ids a provision answered 2xx with: deprovisioned at the end.
    provisioned: Vec<String>,
}

/// Every Scalingo check, in the order Scalingo would meet them.
pub async fn run(target: &Target, probe: &Probe, report: &mut Report) {
    let mut checks = ScalingoChecks {
        probe,
        target,
        provisioned: Vec::new(),
    };
    checks.authentication(report).await;
    let uuid = fresh_uuid();
    let resource = checks.provision_new(&uuid, report).await;
    checks.provision_repeat(&uuid, resource.as_deref(), report).await;
    checks.provision_without_uuid(report).await;
    checks.provision_concurrent(report).await;
    checks.hostile_bodies(report).await;
    checks.sso(resource.as_deref(), report).await;
    checks.plan_change(resource.as_deref(), report).await;
    checks.suspend_and_resume(resource.as_deref(), report).await;
    checks.deprovision(resource.as_deref(), report).await;
    checks
        .sso_refused(resource.as_deref(), "scalingo.sso.deprovisioned", report)
        .await;
    checks.clean_up().await;
    report.record("timing.budget", probe.within(super::probe::RESPONSE_BUDGET));
}

impl ScalingoChecks<'_> {
    fn request(&self, method: Method, path: &str, credentials: Credentials) -> RequestBuilder {
        let request = self
            .probe
            .http
            .request(method, format!("{}{path}", self.target.base_url))
            .header(header::ACCEPT, "application/json");
        with_credentials(request, self.target, credentials)
    }

    /// The body Scalingo's own client sends (`uuid` given), or the
    /// documented one (`app_id`, `plan`, `options`).
    fn provision_body(uuid: Option<&str>, plan: &str) -> Value {
        let mut body = json!({"plan": plan, "app_id": fresh_app_id(), "options": {}});
        if let Some(uuid) = uuid {
            body["uuid"] = uuid.into();
            body["shard_id"] = 1.into();
        }
        body
    }

    fn remember(&mut self, answer: &Answer) {
        if (200..300).contains(&answer.status) {
            if let Some(id) = answer.json().as_ref().and_then(|body| body["id"].as_str()) {
                if !self.provisioned.iter().any(|known| known == id) {
                    self.provisioned.push(id.to_string());
                }
            }
        }
    }

    async fn provision(&mut self, body: Value, credentials: Credentials) -> Result<Answer, String> {
        let request = self.request(Method::POST, "", credentials).json(&body);
        let answer = self.probe.send(request).await?;
        self.remember(&answer);
        Ok(answer)
    }

    /// 401 with a Basic challenge on each route, before anything is looked at.
    async fn authentication(&mut self, report: &mut Report) {
        let unknown = format!("/{}", shared::scalingo::new_resource_id());
        for (case, credentials) in [
            ("missing", Credentials::Missing),
            ("wrong_password", Credentials::WrongPassword),
            ("wrong_user", Credentials::WrongUser),
        ] {
            let body = Self::provision_body(Some(&fresh_uuid()), &self.target.plan);
            let answer = self.provision(body, credentials).await;
            report.record(&format!("scalingo.auth.provision.{case}"), refused(answer));
            let calls = [
                (
                    "plan_change",
                    Method::PATCH,
                    unknown.clone(),
                    Some(json!({"plan": self.target.new_plan})),
                ),
                (
                    "suspend",
                    Method::POST,
                    format!("{unknown}/suspend"),
                    Some(json!({})),
                ),
                ("deprovision", Method::DELETE, unknown.clone(), None),
            ];
            for (name, method, path, body) in calls {
                let mut request = self.request(method, &path, credentials);
                if let Some(body) = body {
                    request = request.json(&body);
                }
                report.record(
                    &format!("scalingo.auth.{name}.{case}"),
                    refused(self.probe.send(request).await),
                );
            }
        }
    }

    /// 201 with an id, a message and exactly the manifest's config vars, or
    /// 202 with an id (the vendor finishes later).
    fn provision_answer(&self, answer: &Answer) -> Result<(String, String), String> {
        let body = answer
            .json()
            .ok_or_else(|| format!("not JSON: {}", answer.describe()))?;
        let id = body["id"]
            .as_str()
            .filter(|id| !id.is_empty() && id.chars().count() <= MAX_ID_CHARS)
            .ok_or_else(|| format!("no id of 1 to {MAX_ID_CHARS} characters: {}", answer.describe()))?
            .to_string();
        match answer.status {
            202 => Ok((id, "202 with an id: provisioning asynchronously".into())),
            200 | 201 => {
                self.config_is_the_manifests(&body)?;
                Ok((
                    id,
                    format!(
                        "{} with an id and exactly the manifest's config vars",
                        answer.status
                    ),
                ))
            }
            _ => Err(format!("expected 201 or 202, got {}", answer.describe())),
        }
    }

    /// Heroku's rule (exactly the manifest's vars, as strings), and a message.
    fn config_is_the_manifests(&self, body: &Value) -> Result<(), String> {
        super::heroku::config_is_the_manifests(self.target, body)?;
        if !body["message"].is_string() {
            return Err("no message".into());
        }
        Ok(())
    }

    async fn provision_new(&mut self, uuid: &str, report: &mut Report) -> Option<String> {
        let answer = self
            .provision(
                Self::provision_body(Some(uuid), &self.target.plan),
                Credentials::Right,
            )
            .await;
        let checked = answer.and_then(|answer| self.provision_answer(&answer));
        let id = checked.as_ref().ok().map(|(id, _)| id.clone());
        report.record("scalingo.provision.new", checked.map(|(_, why)| why));
        id
    }

    /// The same uuid again: the same id.
    async fn provision_repeat(&mut self, uuid: &str, resource: Option<&str>, report: &mut Report) {
        let Some(resource) = resource else {
            return report.skip("scalingo.provision.repeat", "needs a provisioned add-on");
        };
        let answer = self
            .provision(
                Self::provision_body(Some(uuid), &self.target.plan),
                Credentials::Right,
            )
            .await;
        report.record(
            "scalingo.provision.repeat",
            answer.and_then(|answer| {
                let (id, _) = self.provision_answer(&answer)?;
                if id == resource {
                    Ok(format!("{} with the same id", answer.status))
                } else {
                    Err(format!("a redelivery answered id {id:?}, first {resource:?}"))
                }
            }),
        );
    }

    /// The documented body, no uuid: a new add-on each time.
    async fn provision_without_uuid(&mut self, report: &mut Report) {
        let first = self
            .provision(Self::provision_body(None, &self.target.plan), Credentials::Right)
            .await;
        let second = self
            .provision(Self::provision_body(None, &self.target.plan), Credentials::Right)
            .await;
        report.record(
            "scalingo.provision.without_uuid",
            first.and_then(|first| {
                let (a, _) = self.provision_answer(&first)?;
                let (b, _) = self.provision_answer(&second?)?;
                if a == b {
                    Err(format!("two add-ons without uuid answered one id {a:?}"))
                } else {
                    Ok("the documented body provisions; two calls, two add-ons".into())
                }
            }),
        );
    }

    /// Many deliveries of one uuid at once: one add-on.
    async fn provision_concurrent(&mut self, report: &mut Report) {
        let uuid = fresh_uuid();
        let body = Self::provision_body(Some(&uuid), &self.target.plan);
        let mut deliveries = JoinSet::new();
        for _ in 0..self.target.concurrency {
            let request = self.request(Method::POST, "", Credentials::Right).json(&body);
            let probe = self.probe.clone();
            deliveries.spawn(async move { probe.send(request).await });
        }
        let mut answers = Vec::new();
        for answer in deliveries.join_all().await {
            // A 503 with Retry-After asks to be retried, as Scalingo would.
            answers.push(match answer {
                Ok(answer) if answer.status == 503 && answer.header(header::RETRY_AFTER).is_some() => {
                    let request = self.request(Method::POST, "", Credentials::Right).json(&body);
                    self.probe.send(request).await
                }
                other => other,
            });
        }
        let mut ids = std::collections::BTreeSet::new();
        let mut failures = Vec::new();
        for answer in &answers {
            match answer {
                Ok(answer) if (200..300).contains(&answer.status) => {
                    self.remember(answer);
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
            "scalingo.provision.concurrent",
            if let Some(failure) = failures.first() {
                Err(format!(
                    "{} of {} deliveries failed: {failure}",
                    failures.len(),
                    answers.len()
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

    /// Bad JSON, no plan: a JSON 4xx; an unknown plan: 422.
    async fn hostile_bodies(&mut self, report: &mut Report) {
        let bad_json = self
            .request(Method::POST, "", Credentials::Right)
            .header(header::CONTENT_TYPE, "application/json")
            .body("{\"plan\": ");
        report.record(
            "scalingo.provision.bad_json",
            self.probe
                .send(bad_json)
                .await
                .and_then(|answer| answer.expect_json_client_error()),
        );
        let no_plan = self
            .request(Method::POST, "", Credentials::Right)
            .json(&json!({"app_id": fresh_app_id()}));
        report.record(
            "scalingo.provision.no_plan",
            self.probe
                .send(no_plan)
                .await
                .and_then(|answer| answer.expect_json_client_error()),
        );
        let answer = self
            .provision(
                Self::provision_body(Some(&fresh_uuid()), "provider-check-no-such-plan"),
                Credentials::Right,
            )
            .await;
        report.record(
            "scalingo.provision.unknown_plan",
            answer.and_then(|answer| answer.expect_status(422).map(|()| "422".to_string())),
        );
    }

    fn signer(&self) -> Option<ScalingoSso> {
        Some(ScalingoSso::new(self.target.sso_salt.clone()?, None, 0))
    }

    /// The link Scalingo's dashboard opens, signed by `signer`.
    fn sso_link(&self, signer: &ScalingoSso, id: &str, offset: i64) -> String {
        let timestamp = super::sso::sign_in_timestamp(id, offset).to_string();
        crate::signin::scalingo_link(signer, &self.target.sso_url, id, &timestamp)
    }

    async fn get(&self, url: &str) -> Result<Answer, String> {
        self.probe.send(self.probe.http.get(url)).await
    }

    async fn sso(&self, resource: Option<&str>, report: &mut Report) {
        const NAMES: [&str; 8] = [
            "scalingo.sso.link",
            "scalingo.sso.cookie",
            "scalingo.sso.no_referrer",
            "scalingo.sso.replay",
            "scalingo.sso.stale",
            "scalingo.sso.future",
            "scalingo.sso.forged",
            "scalingo.sso.unknown_id",
        ];
        let (Some(resource), Some(signer)) = (resource, self.signer()) else {
            for name in NAMES {
                report.skip(name, "needs a provisioned add-on and the manifest's sso_salt");
            }
            return;
        };
        // A second apart at most: each link below differs by its time.
        let link = self.sso_link(&signer, resource, 0);
        let answer = self.get(&link).await;
        report.record(
            "scalingo.sso.cookie",
            answer.clone().and_then(|answer| answer.cookie_attributes()),
        );
        report.record(
            "scalingo.sso.no_referrer",
            answer.clone().and_then(|answer| no_referrer(&answer, &link)),
        );
        report.record(
            "scalingo.sso.link",
            SsoChecks::new(self.probe, self.target)
                .signed_in(answer, &self.target.sso_url)
                .await,
        );
        report.record("scalingo.sso.replay", refused_page(self.get(&link).await));
        let stale = self.sso_link(&signer, resource, -STALE_SECONDS);
        report.record("scalingo.sso.stale", refused_page(self.get(&stale).await));
        let future = self.sso_link(&signer, resource, FUTURE_SECONDS);
        report.record("scalingo.sso.future", refused_page(self.get(&future).await));
        let stranger = ScalingoSso::new(Secret::new(format!("not-the-salt-{}", random_hex(8))), None, 0);
        let forged = self.sso_link(&stranger, resource, -1);
        report.record("scalingo.sso.forged", refused_page(self.get(&forged).await));
        let unknown = self.sso_link(&signer, &shared::scalingo::new_resource_id(), -2);
        report.record("scalingo.sso.unknown_id", refused_page(self.get(&unknown).await));
    }

    /// A fresh link for `resource` must be refused with 403 and no session.
    async fn sso_refused(&self, resource: Option<&str>, name: &str, report: &mut Report) {
        let (Some(resource), Some(signer)) = (resource, self.signer()) else {
            return report.skip(name, "needs a provisioned add-on and the sso_salt");
        };
        let link = self.sso_link(&signer, resource, -3);
        report.record(name, refused_page(self.get(&link).await));
    }

    async fn plan_change(&self, resource: Option<&str>, report: &mut Report) {
        let names = [
            "scalingo.plan_change.put",
            "scalingo.plan_change.patch",
            "scalingo.plan_change.same",
            "scalingo.plan_change.no_plan",
            "scalingo.plan_change.unknown_plan",
        ];
        let unknown = self
            .request(
                Method::PUT,
                &format!("/{}", shared::scalingo::new_resource_id()),
                Credentials::Right,
            )
            .json(&json!({"plan": self.target.new_plan, "options": {}}));
        report.record(
            "scalingo.plan_change.unknown_id",
            self.probe.send(unknown).await.and_then(|answer| {
                answer.expect_status(404)?;
                Ok("404 for an id never provisioned".into())
            }),
        );
        let Some(resource) = resource else {
            for name in names {
                report.skip(name, "needs a provisioned add-on");
            }
            return;
        };
        let change = |method: Method, body: Value| {
            self.request(method, &format!("/{resource}"), Credentials::Right)
                .json(&body)
        };
        let checked = |answer: Result<Answer, String>| {
            let answer = answer?;
            if answer.status == 202 {
                return Ok("202: the vendor finishes the change later".to_string());
            }
            answer.expect_status(200)?;
            self.config_is_the_manifests(&answer.json().ok_or("not JSON")?)?;
            Ok("200 with the config and a message".to_string())
        };
        let (plan, new_plan) = (&self.target.plan, &self.target.new_plan);
        report.record(
            names[0],
            checked(
                self.probe
                    .send(change(Method::PUT, json!({"plan": new_plan, "options": {}})))
                    .await,
            ),
        );
        report.record(
            names[1],
            checked(
                self.probe
                    .send(change(Method::PATCH, json!({"plan": plan})))
                    .await,
            ),
        );
        report.record(
            names[2],
            checked(
                self.probe
                    .send(change(Method::PATCH, json!({"plan": plan})))
                    .await,
            ),
        );
        let no_plan = self.probe.send(change(Method::PUT, json!({"options": {}}))).await;
        report.record(
            names[3],
            no_plan.and_then(|answer| answer.expect_status(422).map(|()| "422".to_string())),
        );
        let unknown = self
            .probe
            .send(change(
                Method::PUT,
                json!({"plan": "provider-check-no-such-plan"}),
            ))
            .await;
        report.record(
            names[4],
            unknown.and_then(|answer| answer.expect_status(422).map(|()| "422".to_string())),
        );
    }

    /// `suspend` then `resume`, each twice (a repeat is a 200 too), with
    /// `{}` and with no body; sign-in is refused while suspended.
    async fn suspend_and_resume(&self, resource: Option<&str>, report: &mut Report) {
        let Some(resource) = resource else {
            for name in [
                "suspend.first",
                "suspend.repeat",
                "sso.suspended",
                "resume.first",
                "resume.repeat",
                "sso.resumed",
            ] {
                report.skip(&format!("scalingo.{name}"), "needs a provisioned add-on");
            }
            return;
        };
        let call = |action: &str, body: bool| {
            let request = self.request(Method::POST, &format!("/{resource}/{action}"), Credentials::Right);
            if body {
                request.json(&json!({}))
            } else {
                request
            }
        };
        let ok = |answer: Result<Answer, String>| {
            let answer = answer?;
            answer.expect_status(200)?;
            match answer
                .json()
                .and_then(|body| body["message"].as_str().map(str::to_string))
            {
                Some(_) => Ok("200 with a message".to_string()),
                None => Err(format!("200 without a message: {}", answer.describe())),
            }
        };
        report.record(
            "scalingo.suspend.first",
            ok(self.probe.send(call("suspend", true)).await),
        );
        report.record(
            "scalingo.suspend.repeat",
            ok(self.probe.send(call("suspend", false)).await),
        );
        self.sso_refused(Some(resource), "scalingo.sso.suspended", report)
            .await;
        report.record(
            "scalingo.resume.first",
            ok(self.probe.send(call("resume", false)).await),
        );
        report.record(
            "scalingo.resume.repeat",
            ok(self.probe.send(call("resume", true)).await),
        );
        let resumed = match self.signer() {
            Some(signer) => {
                let link = self.sso_link(&signer, resource, -4);
                SsoChecks::new(self.probe, self.target)
                    .signed_in(self.get(&link).await, &self.target.sso_url)
                    .await
            }
            None => Err("no sso_salt".into()),
        };
        report.record("scalingo.sso.resumed", resumed);
    }

    /// The tester's deprovision: a body of `null` with no content type,
    /// answered 204 with an empty body; again 204; 404 for an unknown id.
    async fn deprovision(&mut self, resource: Option<&str>, report: &mut Report) {
        let unknown = self.request(
            Method::DELETE,
            &format!("/{}", shared::scalingo::new_resource_id()),
            Credentials::Right,
        );
        report.record(
            "scalingo.deprovision.unknown",
            self.probe.send(unknown).await.and_then(|answer| {
                answer.expect_status(404)?;
                Ok("404 for an id never provisioned".into())
            }),
        );
        let Some(resource) = resource else {
            report.skip("scalingo.deprovision.null_body", "needs a provisioned add-on");
            return report.skip("scalingo.deprovision.repeat", "needs a provisioned add-on");
        };
        let gone = |answer: Result<Answer, String>| {
            let answer = answer?;
            answer.expect_status(204)?;
            if answer.body.is_empty() {
                Ok("204 with an empty body".to_string())
            } else {
                Err(format!("204 with a body: {}", answer.describe()))
            }
        };
        let first = self
            .request(Method::DELETE, &format!("/{resource}"), Credentials::Right)
            .body("null");
        report.record(
            "scalingo.deprovision.null_body",
            gone(self.probe.send(first).await),
        );
        let repeat = self
            .request(Method::DELETE, &format!("/{resource}"), Credentials::Right)
            .body("null");
        report.record("scalingo.deprovision.repeat", gone(self.probe.send(repeat).await));
        self.provisioned.retain(|id| id != resource);
    }

    /// Every add-on the run made goes; failures here are the cleanup's.
    async fn clean_up(&self) {
        for id in &self.provisioned {
            let request = self.request(Method::DELETE, &format!("/{id}"), Credentials::Right);
            let _ = self.probe.send(request).await;
        }
    }
}

/// The link's token must not travel on: the answer forbids `Referer`
/// (`Referrer-Policy: no-referrer`), and neither its `Location` nor its
/// page holds the token.
fn no_referrer(answer: &Answer, link: &str) -> Result<String, String> {
    let token = reqwest::Url::parse(link)
        .ok()
        .and_then(|url| {
            url.query_pairs()
                .find(|(name, _)| name == "token")
                .map(|(_, token)| token.into_owned())
        })
        .ok_or("the check's own link has no token")?;
    match answer.header(header::REFERRER_POLICY) {
        Some(policy) if policy.eq_ignore_ascii_case("no-referrer") => {}
        other => return Err(format!("Referrer-Policy is {other:?}, not no-referrer")),
    }
    if answer
        .header(header::LOCATION)
        .is_some_and(|location| location.contains(&token))
    {
        return Err("the redirect carries the token on".into());
    }
    if String::from_utf8_lossy(&answer.body).contains(&token) {
        return Err("the page shows the token".into());
    }
    Ok("no-referrer, and the token is neither in Location nor in the page".into())
}
