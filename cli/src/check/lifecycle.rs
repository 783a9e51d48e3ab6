//! The Clever Cloud lifecycle, as the platform calls it: authentication first,
//! provision (new, repeated, concurrent), plan change, deprovision, and
//! hostile bodies.

use super::probe::{Answer, Probe};
use super::report::Report;
use super::target::Target;
use reqwest::header;
use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};
use shared::secret::random_hex;
use tokio::task::JoinSet;

/// A resource this run provisioned: what later checks act on, and what the
/// run must deprovision before it ends.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub id: String,
    pub addon_id: String,
    pub config: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Credentials {
    Right,
    Missing,
    WrongPassword,
    WrongUser,
}

/// `request` with the manifest's Basic credentials, or missing or wrong ones.
pub(super) fn with_credentials(
    request: RequestBuilder,
    target: &Target,
    credentials: Credentials,
) -> RequestBuilder {
    let (user, password) = (&target.addon_id, target.password.expose());
    match credentials {
        Credentials::Right => request.basic_auth(user, Some(password)),
        Credentials::Missing => request,
        Credentials::WrongPassword => request.basic_auth(user, Some(format!("{password}-wrong"))),
        Credentials::WrongUser => request.basic_auth(format!("{user}-wrong"), Some(password)),
    }
}

/// Sends lifecycle calls for one target and remembers every id it was given.
pub struct Lifecycle<'a> {
    probe: &'a Probe,
    target: &'a Target,
    provisioned: Vec<String>,
}

/// A marketplace add-on id no other run uses.
pub fn fresh_addon_id() -> String {
    format!("addon_check_{}", random_hex(8))
}

/// An id this provider never handed out.
fn unknown_id() -> String {
    format!("check-unknown-{}", random_hex(8))
}

impl<'a> Lifecycle<'a> {
    pub fn new(probe: &'a Probe, target: &'a Target) -> Self {
        Self {
            probe,
            target,
            provisioned: Vec::new(),
        }
    }

    fn request(&self, method: Method, id: Option<&str>, credentials: Credentials) -> RequestBuilder {
        let url = match id {
            Some(id) => format!("{}/{id}", self.target.base_url),
            None => self.target.base_url.clone(),
        };
        with_credentials(self.probe.http.request(method, url), self.target, credentials)
    }

    /// The documented provision body.
    fn provision_body(&self, addon_id: &str) -> Value {
        json!({
            "addon_id": addon_id,
            "owner_id": shared::sync::CHECK_OWNER_ID,
            "owner_name": "provider check",
            "user_id": "user_provider_check",
            "plan": self.target.plan,
            "region": "EU",
            "callback_url": format!("https://api.clever-cloud.com/v2/vendor/apps/{addon_id}"),
            "logplex_token": "logtoken_provider_check",
            "options": {},
        })
    }

    async fn provision(&mut self, addon_id: &str, credentials: Credentials) -> Result<Answer, String> {
        let request = self
            .request(Method::POST, None, credentials)
            .json(&self.provision_body(addon_id));
        let answer = self.probe.send(request).await?;
        self.remember(&answer);
        Ok(answer)
    }

    /// Any id a 2xx provision answer names is deprovisioned at the end, even
    /// one a faulty provider should not have created.
    fn remember(&mut self, answer: &Answer) {
        if (200..300).contains(&answer.status) {
            if let Some(id) = answer.json().as_ref().and_then(|body| body["id"].as_str()) {
                if !self.provisioned.iter().any(|known| known == id) {
                    self.provisioned.push(id.to_string());
                }
            }
        }
    }

    /// 401 with `WWW-Authenticate` on each route, for missing and wrong
    /// credentials, before the id is even looked at.
    pub async fn authentication(&mut self, report: &mut Report) {
        let cases = [
            ("missing", Credentials::Missing),
            ("wrong_password", Credentials::WrongPassword),
            ("wrong_user", Credentials::WrongUser),
        ];
        for (case, credentials) in cases {
            let answer = self.provision(&fresh_addon_id(), credentials).await;
            report.record(&format!("auth.provision.{case}"), refused(answer));
            let body = json!({"addon_id": fresh_addon_id(), "plan": self.target.new_plan});
            let request = self
                .request(Method::PUT, Some(&unknown_id()), credentials)
                .json(&body);
            let answer = self.probe.send(request).await;
            report.record(&format!("auth.plan_change.{case}"), refused(answer));
            let request = self.request(Method::DELETE, Some(&unknown_id()), credentials);
            let answer = self.probe.send(request).await;
            report.record(&format!("auth.deprovision.{case}"), refused(answer));
        }
    }

    /// A new add-on: the provider's own string id and exactly the manifest's
    /// config vars.
    pub async fn provision_new(&mut self, report: &mut Report) -> Option<Provisioned> {
        let addon_id = fresh_addon_id();
        let result = async {
            let answer = self.provision(&addon_id, Credentials::Right).await?;
            self.read_provision(&addon_id, &answer)
        }
        .await;
        let detail = result
            .as_ref()
            .map(|resource| format!("id {:?}, config {}", resource.id, self.var_names()));
        report.record("provision.new", detail.map_err(Clone::clone));
        result.ok()
    }

    fn var_names(&self) -> String {
        self.target.config_vars.join(", ")
    }

    fn read_provision(&self, addon_id: &str, answer: &Answer) -> Result<Provisioned, String> {
        answer.expect_status(200)?;
        let body = answer.json().ok_or("the answer is not JSON")?;
        let id = match &body["id"] {
            Value::String(id) if !id.is_empty() => id.clone(),
            Value::Null => return Err("the answer has no id".into()),
            other => return Err(format!("id must be a non-empty string, got {other}")),
        };
        if id == addon_id {
            return Err("id echoes the marketplace's addon_id; it must be the provider's own id".into());
        }
        let config = self.read_config(&body)?;
        Ok(Provisioned {
            id,
            addon_id: addon_id.to_string(),
            config,
        })
    }

    /// `config` holds each manifest config var, as a string, and nothing else.
    fn read_config(&self, body: &Value) -> Result<serde_json::Map<String, Value>, String> {
        let config = body["config"].as_object().ok_or("config is not an object")?;
        let missing: Vec<&String> = self
            .target
            .config_vars
            .iter()
            .filter(|var| !config.contains_key(*var))
            .collect();
        if !missing.is_empty() {
            return Err(format!("config lacks {missing:?}"));
        }
        let extra: Vec<&String> = config
            .keys()
            .filter(|key| !self.target.config_vars.contains(key))
            .collect();
        if !extra.is_empty() {
            return Err(format!("config has vars the manifest does not list: {extra:?}"));
        }
        if let Some((name, _)) = config.iter().find(|(_, value)| !value.is_string()) {
            return Err(format!("config value of {name} is not a string"));
        }
        if body.get("message").is_some_and(|message| !message.is_string()) {
            return Err("message is not a string".into());
        }
        Ok(config.clone())
    }

    /// The same provision again: the same id and config, nothing new.
    pub async fn provision_repeat(&mut self, resource: &Provisioned, report: &mut Report) {
        let result = async {
            let answer = self.provision(&resource.addon_id, Credentials::Right).await?;
            let again = self.read_provision(&resource.addon_id, &answer)?;
            if again.id != resource.id {
                return Err(format!(
                    "the repeat created another resource ({:?}, first {:?})",
                    again.id, resource.id
                ));
            }
            if again.config != resource.config {
                return Err("the repeat answered other config values".into());
            }
            Ok("same id and config".to_string())
        }
        .await;
        report.record("provision.repeat", result);
    }

    /// Many identical provisions at once: one resource. A 503 with
    /// `Retry-After` is a fair answer to a race (the platform retries), so
    /// such answers are retried here once all have arrived.
    pub async fn provision_concurrent(&mut self, report: &mut Report) {
        let addon_id = fresh_addon_id();
        let copies = self.target.concurrency;
        let mut requests = JoinSet::new();
        for _ in 0..copies {
            let request = self
                .request(Method::POST, None, Credentials::Right)
                .json(&self.provision_body(&addon_id));
            let probe = self.probe.clone();
            requests.spawn(async move { probe.send(request).await });
        }
        let mut answers = Vec::new();
        while let Some(joined) = requests.join_next().await {
            answers.push(joined.unwrap_or_else(|err| Err(format!("request task failed: {err}"))));
        }
        let mut ids = Vec::new();
        let mut retried = 0;
        let mut failure = None;
        for answer in answers {
            let answer = match answer {
                Ok(answer) if answer.status == 503 && answer.header(header::RETRY_AFTER).is_some() => {
                    retried += 1;
                    self.provision(&addon_id, Credentials::Right).await
                }
                other => other,
            };
            match answer.and_then(|answer| {
                self.remember(&answer);
                self.read_provision(&addon_id, &answer)
            }) {
                Ok(resource) => ids.push(resource.id),
                Err(why) => failure = failure.or(Some(why)),
            }
        }
        ids.sort();
        ids.dedup();
        let result = match (failure, ids.as_slice()) {
            (Some(why), _) => Err(format!("one of {copies} identical provisions: {why}")),
            (None, [id]) => Ok(format!(
                "{copies} identical provisions answered one id {id:?} ({retried} after a 503)"
            )),
            (None, ids) => Err(format!(
                "{copies} identical provisions created {} resources: {ids:?}",
                ids.len()
            )),
        };
        report.record("provision.concurrent", result);
    }

    /// Bodies a marketplace never sends: a 4xx JSON error each, never a 5xx.
    pub async fn hostile_bodies(&mut self, resource: Option<&Provisioned>, report: &mut Report) {
        let valid = serde_json::to_vec(&self.provision_body(&fresh_addon_id())).unwrap_or_default();
        let oversized =
            json!({"addon_id": fresh_addon_id(), "plan": "basic", "options": {"x": "y".repeat(1 << 20)}});
        let cases: Vec<(&str, &str, Vec<u8>)> = vec![
            ("wrong_media_type", "text/plain", valid),
            ("empty_body", "application/json", Vec::new()),
            (
                "malformed_json",
                "application/json",
                br#"{"addon_id": "x", "#.to_vec(),
            ),
            (
                "not_an_object",
                "application/json",
                br#"["addon_id", "plan"]"#.to_vec(),
            ),
            (
                "mistyped_field",
                "application/json",
                br#"{"addon_id": 42, "plan": ["basic"]}"#.to_vec(),
            ),
            ("missing_fields", "application/json", b"{}".to_vec()),
            // Valid UTF-8 that no JSON string may hold. (Raw non-UTF-8 bytes
            // would test the gateway: `cargo lambda watch` answers them 500
            // itself, before the function runs.)
            (
                "lone_surrogate",
                "application/json",
                br#"{"addon_id": "\ud800", "plan": "basic"}"#.to_vec(),
            ),
            ("deeply_nested", "application/json", nested(10_000)),
            (
                "oversized",
                "application/json",
                serde_json::to_vec(&oversized).unwrap_or_default(),
            ),
        ];
        for (case, media_type, body) in cases {
            let request = self
                .request(Method::POST, None, Credentials::Right)
                .header(header::CONTENT_TYPE, media_type)
                .body(body);
            let answer = self.probe.send(request).await;
            if let Ok(answer) = &answer {
                self.remember(answer);
            }
            let result = answer.and_then(|answer| answer.expect_json_client_error());
            report.record(&format!("hostile.provision.{case}"), result);
        }
        let name = "hostile.plan_change.malformed_json";
        match resource {
            Some(resource) => {
                let request = self
                    .request(Method::PUT, Some(&resource.id), Credentials::Right)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(r#"{"plan": "#);
                let answer = self.probe.send(request).await;
                report.record(name, answer.and_then(|answer| answer.expect_json_client_error()));
            }
            None => report.skip(name, "needs a provisioned resource (provision.new failed)"),
        }
    }

    /// The documented plan change, and an unknown id.
    pub async fn plan_change(&mut self, resource: Option<&Provisioned>, report: &mut Report) {
        match resource {
            Some(resource) => {
                let body = json!({"addon_id": resource.addon_id, "plan": self.target.new_plan});
                let request = self
                    .request(Method::PUT, Some(&resource.id), Credentials::Right)
                    .json(&body);
                let result = async {
                    let answer = self.probe.send(request).await?;
                    answer.expect_status(200)?;
                    let body = answer.json().ok_or("the answer is not JSON")?;
                    self.read_config(&body)?;
                    Ok(format!(
                        "to {:?}: config {}",
                        self.target.new_plan,
                        self.var_names()
                    ))
                }
                .await;
                report.record("plan_change.new_plan", result);
            }
            None => report.skip(
                "plan_change.new_plan",
                "needs a provisioned resource (provision.new failed)",
            ),
        }
        let body = json!({"addon_id": fresh_addon_id(), "plan": self.target.new_plan});
        let request = self
            .request(Method::PUT, Some(&unknown_id()), Credentials::Right)
            .json(&body);
        let answer = self.probe.send(request).await;
        report.record("plan_change.unknown_id", status_is(answer, 404));
    }

    /// Deprovision answers 200, again 200 for a repeat, 404 for an id never
    /// handed out.
    pub async fn deprovision(&mut self, resource: Option<&Provisioned>, report: &mut Report) {
        match resource {
            Some(resource) => {
                let first = self
                    .probe
                    .send(self.request(Method::DELETE, Some(&resource.id), Credentials::Right))
                    .await;
                report.record("deprovision.active", status_is(first, 200));
                let repeat = self
                    .probe
                    .send(self.request(Method::DELETE, Some(&resource.id), Credentials::Right))
                    .await;
                report.record("deprovision.repeat", status_is(repeat, 200));
                self.provisioned.retain(|id| id != &resource.id);
            }
            None => {
                for name in ["deprovision.active", "deprovision.repeat"] {
                    report.skip(name, "needs a provisioned resource (provision.new failed)");
                }
            }
        }
        let unknown = self
            .probe
            .send(self.request(Method::DELETE, Some(&unknown_id()), Credentials::Right))
            .await;
        report.record("deprovision.unknown_id", status_is(unknown, 404));
    }

    /// Deprovisions everything else this run provisioned.
    pub async fn clean_up(&mut self, report: &mut Report) {
        let ids = std::mem::take(&mut self.provisioned);
        let mut left = Vec::new();
        for id in &ids {
            let answer = self
                .probe
                .send(self.request(Method::DELETE, Some(id), Credentials::Right))
                .await;
            if let Err(why) = status_is(answer, 200) {
                left.push(format!("{id:?}: {why}"));
            }
        }
        let result = if left.is_empty() {
            Ok(format!("{} more resources deprovisioned", ids.len()))
        } else {
            Err(format!("left behind: {}", left.join("; ")))
        };
        report.record("cleanup", result);
    }
}

/// `[[[…]]]`, `depth` deep: a parser that recurses without a limit overflows
/// its stack.
fn nested(depth: usize) -> Vec<u8> {
    let mut body = vec![b'['; depth];
    body.resize(2 * depth, b']');
    body
}

fn status_is(answer: Result<Answer, String>, status: u16) -> Result<String, String> {
    answer?.expect_status(status)?;
    Ok(format!("{status}"))
}

/// 401 with a Basic challenge.
fn refused(answer: Result<Answer, String>) -> Result<String, String> {
    let answer = answer?;
    answer.expect_status(401)?;
    match answer.header(header::WWW_AUTHENTICATE) {
        Some(challenge) if challenge.trim_start().to_ascii_lowercase().starts_with("basic") => {
            Ok("401 with a Basic challenge".into())
        }
        Some(other) => Err(format!("401, but WWW-Authenticate is {other:?}, not Basic")),
        None => Err("401 without WWW-Authenticate".into()),
    }
}
