//! The vendor's own service as the provisioner: each marketplace event
//! becomes a signed JSON POST to `PROVISIONER_URL`, and the answer's
//! `{"config": {...}}` is what the marketplace receives. The request and
//! answer schema is `docs/provisioner.schema.json`.
//!
//! - Every request carries `Addon-Signature` (see [`super::signature`]) and an
//!   `idempotency_key` that is the same for every delivery of the same
//!   marketplace event, so the vendor acts once however often it is called.
//! - The answer is checked against `ADDON_CONFIG_VARS` (each var present, a
//!   string, nothing else) before anything is stored.
//! - A timeout, a network error, a 5xx or an unreadable 2xx is
//!   [`ProvisionerError::Unavailable`] (the marketplace retries); a 4xx is
//!   [`ProvisionerError::Refused`] with the vendor's `message`. For
//!   deprovision, 404 means already gone, and only 2xx/404 end the retries.
//! - One quick retry when the connection could not be made, within the time
//!   budget (`PROVISIONER_TIMEOUT_MS`).
//! - Nothing here logs or returns a config value, the secret or a signature.

use super::{signature, ProvisionContext, Provisioner, ProvisionerError, Provisioning};
use crate::config::{self, ConfigError, Environment};
use crate::model::{ConfigMap, Platform, Resource, ResourceStatus};
use crate::refresh::{Fresh, SecretSource};
use crate::secret::{Rotating, Secret};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default time budget for one call, retries included: well inside the
/// functions' 10 s timeout and the marketplaces' own patience.
const DEFAULT_TIMEOUT_MS: u64 = 4_000;
/// Longest vendor message passed on to a marketplace.
const MAX_MESSAGE_CHARS: usize = 500;
/// Largest answer read from the vendor.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Shortest signing secret accepted (128 bits as hex).
const MIN_SECRET_CHARS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Provision,
    ChangePlan,
    Rotate,
    Deprovision,
    Suspend,
    Resume,
}

/// The JSON body of every call (`docs/provisioner.schema.json`).
#[derive(Debug, Clone, Serialize)]
pub struct VendorRequest<'a> {
    pub action: Action,
    /// Hex SHA-256 of the event's identity: the same for each delivery of
    /// one marketplace event, different for every other event.
    pub idempotency_key: String,
    /// This provider's id; may differ between deliveries of one provision
    /// until one of them is stored (key on `idempotency_key`).
    pub resource_id: &'a str,
    /// `clevercloud`, `cloud66`, `heroku`, `scalingo` or `aws`.
    pub marketplace: &'static str,
    /// The marketplace's own ids (`addon_id`, `owner_id`, `user_id` from
    /// Clever Cloud; `account_id` for Cloud 66; `uuid` for Heroku;
    /// `license_arn` and `aws_account_id` for AWS Marketplace).
    pub marketplace_ids: BTreeMap<&'static str, &'a str>,
    pub plan: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_plan: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<&'a str>,
    /// The marketplace's name for the add-on (Heroku).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    pub options: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
    /// The current config, for changes of an existing resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<&'a ConfigMap>,
}

fn marketplace(platform: Platform) -> &'static str {
    match platform {
        Platform::CleverCloud => "clevercloud",
        Platform::Cloud66 => "cloud66",
        Platform::Heroku => "heroku",
        Platform::Scalingo => "scalingo",
        Platform::Aws => "aws",
    }
}

/// What makes a marketplace event itself: a redelivery repeats all of it.
/// An unconfirmed resource (an unverified Cloud 66 link's draft, whose
/// marketplace id is a uid anyone may type) is its own event: were its key
/// the uid's alone, whoever claimed it first, with their own email, would
/// have the vendor replay their tenant to the uid's real owner.
fn idempotency_key(action: Action, resource: &Resource, extra: &[&str]) -> String {
    let mut digest = Sha256::new();
    let action = serde_json::to_string(&action).unwrap_or_default();
    let unconfirmed = (resource.status == ResourceStatus::Unconfirmed).then_some(resource.id.as_str());
    for part in [
        action.as_str(),
        marketplace(resource.platform),
        resource.addon_id.as_str(),
    ]
    .into_iter()
    .chain(unconfirmed)
    .chain(extra.iter().copied())
    {
        // Length-prefixed, so no two different lists hash alike.
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part.as_bytes());
    }
    hex::encode(digest.finalize())
}

impl<'a> VendorRequest<'a> {
    fn new(action: Action, resource: &'a Resource, extra: &[&str]) -> Self {
        let mut marketplace_ids = BTreeMap::new();
        match resource.platform {
            Platform::CleverCloud => {
                marketplace_ids.insert("addon_id", resource.addon_id.as_str());
                if let Some(owner) = &resource.owner_id {
                    marketplace_ids.insert("owner_id", owner.as_str());
                }
                if let Some(user) = &resource.user_id {
                    marketplace_ids.insert("user_id", user.as_str());
                }
            }
            Platform::Cloud66 => {
                marketplace_ids.insert("account_id", resource.addon_id.as_str());
            }
            Platform::Heroku => {
                marketplace_ids.insert("uuid", resource.addon_id.as_str());
            }
            Platform::Scalingo => {
                // `uuid` only when Scalingo sent one: otherwise the add-on
                // id is this provider's own (docs/scalingo.md).
                if resource.addon_id != resource.id {
                    marketplace_ids.insert("uuid", resource.addon_id.as_str());
                }
                if let Some(app) = &resource.app_id {
                    marketplace_ids.insert("app_id", app.as_str());
                }
            }
            Platform::Aws => {
                marketplace_ids.insert("license_arn", resource.addon_id.as_str());
                if let Some(account) = &resource.owner_id {
                    marketplace_ids.insert("aws_account_id", account.as_str());
                }
                // Legacy listings' buyer id; new listings have none.
                if let Some(customer) = resource.user_id.as_deref().filter(|id| !id.is_empty()) {
                    marketplace_ids.insert("customer_identifier", customer);
                }
            }
        }
        Self {
            action,
            idempotency_key: idempotency_key(action, resource, extra),
            resource_id: &resource.id,
            marketplace: marketplace(resource.platform),
            marketplace_ids,
            plan: &resource.plan,
            previous_plan: None,
            region: resource.region.as_deref(),
            name: resource.name.as_deref(),
            options: &resource.options,
            owner_name: resource.owner_name.as_deref(),
            email: None,
            config: (action != Action::Provision).then_some(&resource.config),
        }
    }
}

/// The vendor's endpoint, its signing secrets and the time budget.
#[derive(Clone)]
pub struct HttpProvisioner {
    client: reqwest::Client,
    url: String,
    secrets: Arc<Fresh<SigningSecrets>>,
    config_vars: Vec<String>,
    timeout: Duration,
}

/// `PROVISIONER_SIGNING_SECRET` and, during its rotation,
/// `PROVISIONER_SIGNING_SECRET_PREVIOUS`: every request is then signed with
/// both (docs/operating.md, "Rotating secrets").
pub struct SigningSecrets(Rotating);

impl SigningSecrets {
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let read = |var: &'static str, value: String| {
            if value.chars().count() < MIN_SECRET_CHARS {
                return Err(ConfigError::new(
                    var,
                    format!("must be at least {MIN_SECRET_CHARS} characters"),
                ));
            }
            Ok(Secret::new(value))
        };
        config::rotating_with(
            lookup,
            "PROVISIONER_SIGNING_SECRET",
            "PROVISIONER_SIGNING_SECRET_PREVIOUS",
            read,
        )
        .map(Self)
    }

    fn header(&self, timestamp: i64, body: &[u8]) -> String {
        let secrets: Vec<&Secret> = self.0.each().collect();
        signature::sign_with_each(&secrets, timestamp, signature::Signed::Body(body))
    }

    /// A call from the vendor's service, signed with either secret during a
    /// rotation: the worst answer is the current secret's.
    fn verify(
        &self,
        header: &str,
        call: signature::Signed<'_>,
        now: i64,
    ) -> Result<(), signature::SignatureError> {
        let tolerance = signature::DEFAULT_TOLERANCE_SECONDS;
        let check = |secret| signature::verify_signed(secret, header, call, now, tolerance);
        check(&self.0.current).or_else(|err| match &self.0.previous {
            Some(previous) if check(previous).is_ok() => Ok(()),
            _ => Err(err),
        })
    }
}

impl std::fmt::Debug for HttpProvisioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProvisioner")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpProvisioner {
    pub fn from_lookup(
        lookup: &impl Fn(&str) -> Option<String>,
        config_vars: Vec<String>,
    ) -> Result<Self, ConfigError> {
        let url = config::outbound_url("PROVISIONER_URL", config::required(lookup, "PROVISIONER_URL")?)?;
        let secrets = SigningSecrets::from_lookup(lookup)?;
        let timeout_ms = match config::optional(lookup, "PROVISIONER_TIMEOUT_MS") {
            None => DEFAULT_TIMEOUT_MS,
            Some(value) => value
                .parse::<u64>()
                .ok()
                .filter(|ms| (100..=8_000).contains(ms))
                .ok_or_else(|| {
                    ConfigError::new(
                        "PROVISIONER_TIMEOUT_MS",
                        "must be a whole number of milliseconds from 100 to 8000 (inside the 10 s function timeout)",
                    )
                })?,
        };
        Ok(Self::signing_with(
            url,
            secrets,
            config_vars,
            Duration::from_millis(timeout_ms),
        ))
    }

    pub fn new(url: String, secret: Secret, config_vars: Vec<String>, timeout: Duration) -> Self {
        let secrets = SigningSecrets(Rotating::new(secret, None));
        Self::signing_with(url, secrets, config_vars, timeout)
    }

    fn signing_with(
        url: String,
        secrets: SigningSecrets,
        config_vars: Vec<String>,
        timeout: Duration,
    ) -> Self {
        Self {
            client: crate::outbound::build(crate::outbound::client_builder().connect_timeout(timeout)),
            url,
            secrets: Arc::new(Fresh::fixed(secrets)),
            config_vars,
            timeout,
        }
    }

    /// Re-reads the signing secrets with the rest of the secret (every
    /// `SECRETS_TTL_SECONDS`), so a rotation needs no redeploy.
    pub fn follow_secret(
        &mut self,
        source: Option<SecretSource>,
        environment: &Environment,
    ) -> Result<(), ConfigError> {
        self.secrets = Arc::new(Fresh::new(source, environment, |environment| {
            SigningSecrets::from_lookup(&environment.lookup())
        })?);
        Ok(())
    }

    /// Sends the signed request within the time budget and sorts the answer.
    async fn call(&self, request: Encoded) -> Result<Answer, ProvisionerError> {
        let EncodedRequest {
            body,
            idempotency_key,
        } = request?;
        let deadline = Instant::now() + self.timeout;
        let secrets = self.secrets.get().await;
        let mut retried = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let signed = secrets.header(chrono::Utc::now().timestamp(), &body);
            let sent = self
                .client
                .post(&self.url)
                .timeout(left)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(signature::HEADER, signed)
                .header("Idempotency-Key", &idempotency_key)
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(response) => return read_answer(response).await,
                // A refused or reset connection never reached the vendor's
                // code: one quick retry is safe and often enough.
                Err(err) if err.is_connect() && !retried && deadline > Instant::now() => {
                    retried = true;
                    tokio::time::sleep(Duration::from_millis(50).min(left)).await;
                }
                Err(err) if err.is_timeout() => {
                    return Err(ProvisionerError::Unavailable(format!(
                        "no answer within {} ms",
                        self.timeout.as_millis()
                    )))
                }
                Err(err) => {
                    return Err(ProvisionerError::Unavailable(format!(
                        "request failed: {}",
                        err.without_url()
                    )))
                }
            }
        }
    }

    /// The answer's config, checked against the manifest's vars.
    async fn config_call(&self, request: Encoded) -> Result<ConfigMap, ProvisionerError> {
        match self.call(request).await? {
            Answer::Ok(body) => self.read_config(&body),
            Answer::Accepted => Err(ProvisionerError::Unavailable(
                "the vendor answered 202 (pending), but this marketplace needs the config in its answer"
                    .into(),
            )),
            Answer::NotFound => Err(unknown_to_vendor()),
        }
    }

    /// The answer's config, or `Pending` for a 202 (a marketplace that can
    /// wait: the vendor's service finishes later).
    async fn config_or_pending_call(&self, request: Encoded) -> Result<Provisioning, ProvisionerError> {
        match self.call(request).await? {
            Answer::Accepted => Ok(Provisioning::Pending),
            Answer::Ok(body) => self.read_config(&body).map(Provisioning::Ready),
            Answer::NotFound => Err(unknown_to_vendor()),
        }
    }

    fn read_config(&self, body: &[u8]) -> Result<ConfigMap, ProvisionerError> {
        let bad = |why: &str| ProvisionerError::Unavailable(format!("the vendor's answer {why}"));
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| bad("is not JSON"))?;
        let config = value
            .get("config")
            .and_then(serde_json::Value::as_object)
            .ok_or_else(|| bad("has no \"config\" object"))?;
        let mut values = BTreeMap::new();
        for (name, value) in config {
            if !self.config_vars.contains(name) {
                return Err(bad(&format!(
                    "names {name:?}, which ADDON_CONFIG_VARS does not list"
                )));
            }
            let value = value
                .as_str()
                .ok_or_else(|| bad(&format!("gives {name:?} a value that is not a string")))?;
            values.insert(name.clone(), value.to_string());
        }
        if let Some(missing) = self.config_vars.iter().find(|var| !values.contains_key(*var)) {
            return Err(bad(&format!("lacks {missing:?}")));
        }
        Ok(ConfigMap(values))
    }
}

/// A plan change of `resource` to `new_plan`, its own event per version.
fn change_plan_request(resource: &Resource, new_plan: &str) -> Encoded {
    let version = resource.version.to_string();
    VendorRequest {
        plan: new_plan,
        previous_plan: Some(&resource.plan),
        ..VendorRequest::new(Action::ChangePlan, resource, &[&version, new_plan])
    }
    .encode()
}

/// A 404 where the vendor's service must know the resource: a refusal.
fn unknown_to_vendor() -> ProvisionerError {
    ProvisionerError::Refused {
        status: 404,
        message: "the vendor does not know this resource".into(),
    }
}

enum Answer {
    Ok(Vec<u8>),
    Accepted,
    NotFound,
}

/// A request ready to send, owning its bytes (the call outlives the borrow
/// of the resource it was made from).
struct EncodedRequest {
    body: Vec<u8>,
    idempotency_key: String,
}

type Encoded = Result<EncodedRequest, ProvisionerError>;

impl VendorRequest<'_> {
    fn encode(&self) -> Encoded {
        Ok(EncodedRequest {
            body: serde_json::to_vec(self)
                .map_err(|err| ProvisionerError::Unavailable(format!("request not encodable: {err}")))?,
            idempotency_key: self.idempotency_key.clone(),
        })
    }
}

async fn read_answer(response: reqwest::Response) -> Result<Answer, ProvisionerError> {
    let status = response.status();
    let body = crate::outbound::read_limited(response, MAX_ANSWER_BYTES)
        .await
        .map_err(|err| ProvisionerError::Unavailable(err.to_string()))?;
    // A 3xx is not followed (crate::outbound) and is no answer: retryable.
    match status.as_u16() {
        // Accepted: the vendor's service finishes the provision later and
        // calls back (docs/provisioner.md, "Asynchronous provisioning").
        202 => Ok(Answer::Accepted),
        200..=299 => Ok(Answer::Ok(body)),
        404 => Ok(Answer::NotFound),
        status @ 400..=499 => Err(ProvisionerError::Refused {
            status,
            message: vendor_message(&body)
                .unwrap_or_else(|| format!("the vendor's service refused ({status})")),
        }),
        status => Err(ProvisionerError::Unavailable(format!(
            "the vendor answered {status}"
        ))),
    }
}

/// The vendor's `{"message": ...}`, as plain one-line text of bounded length.
fn vendor_message(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let text: String = value
        .get("message")?
        .as_str()?
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE_CHARS)
        .collect();
    Some(text.trim().to_string()).filter(|text| !text.is_empty())
}

impl Provisioner for HttpProvisioner {
    fn provision(
        &self,
        context: ProvisionContext<'_>,
    ) -> impl Future<Output = Result<ConfigMap, ProvisionerError>> + Send {
        let request = VendorRequest {
            email: context.email,
            ..VendorRequest::new(Action::Provision, context.resource, &[])
        }
        .encode();
        self.config_call(request)
    }

    fn provision_or_pending(
        &self,
        context: ProvisionContext<'_>,
    ) -> impl Future<Output = Result<Provisioning, ProvisionerError>> + Send {
        let request = VendorRequest {
            email: context.email,
            ..VendorRequest::new(Action::Provision, context.resource, &[])
        }
        .encode();
        self.config_or_pending_call(request)
    }

    fn change_plan(
        &self,
        resource: &Resource,
        new_plan: &str,
    ) -> impl Future<Output = Result<ConfigMap, ProvisionerError>> + Send {
        self.config_call(change_plan_request(resource, new_plan))
    }

    fn change_plan_or_pending(
        &self,
        resource: &Resource,
        new_plan: &str,
    ) -> impl Future<Output = Result<Provisioning, ProvisionerError>> + Send {
        self.config_or_pending_call(change_plan_request(resource, new_plan))
    }

    /// `suspend` or `resume`: any 2xx is done; a refusal (a 404 included:
    /// the vendor must know the resource) is the marketplace's 422.
    fn set_suspended(
        &self,
        resource: &Resource,
        suspended: bool,
    ) -> impl Future<Output = Result<(), ProvisionerError>> + Send {
        let action = if suspended {
            Action::Suspend
        } else {
            Action::Resume
        };
        let version = resource.version.to_string();
        let request = VendorRequest::new(action, resource, &[&version]).encode();
        async move {
            match self.call(request).await? {
                Answer::Ok(_) | Answer::Accepted => Ok(()),
                Answer::NotFound => Err(unknown_to_vendor()),
            }
        }
    }

    fn rotate(
        &self,
        resource: &Resource,
    ) -> impl Future<Output = Result<ConfigMap, ProvisionerError>> + Send {
        let version = resource.version.to_string();
        let request = VendorRequest::new(Action::Rotate, resource, &[&resource.id, &version]).encode();
        self.config_call(request)
    }

    async fn verify_vendor_call(
        &self,
        header: &str,
        call: signature::Signed<'_>,
        now: i64,
    ) -> Option<Result<(), signature::SignatureError>> {
        Some(self.secrets.get().await.verify(header, call, now))
    }

    /// Gone is gone: 2xx or 404. Anything else, a refusal included, leaves
    /// the resource active and the marketplace retrying.
    fn deprovision(&self, resource: &Resource) -> impl Future<Output = Result<(), ProvisionerError>> + Send {
        let request = VendorRequest::new(Action::Deprovision, resource, &[]).encode();
        async move {
            match self.call(request).await {
                Ok(_) => Ok(()),
                Err(ProvisionerError::Refused { status, .. }) => Err(ProvisionerError::Unavailable(format!(
                    "the vendor answered {status} to deprovision; only 2xx or 404 ends it"
                ))),
                Err(err) => Err(err),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn during_a_rotation_the_header_carries_a_signature_for_each_secret() {
        let current = "current-signing-secret-0123456789abcdef";
        let previous = "previous-signing-secret-0123456789abcdef";
        let lookup = |name: &str| match name {
            "PROVISIONER_SIGNING_SECRET" => Some(current.to_string()),
            "PROVISIONER_SIGNING_SECRET_PREVIOUS" => Some(previous.to_string()),
            _ => None,
        };
        let header = SigningSecrets::from_lookup(&lookup)
            .unwrap()
            .header(1_700_000_000, b"{}");
        assert_eq!(header.matches("v1=").count(), 2, "{header}");
        for secret in [current, previous] {
            assert_eq!(
                signature::verify(&Secret::new(secret), &header, b"{}", 1_700_000_000, 300),
                Ok(())
            );
        }
        let short = |name: &str| match name {
            "PROVISIONER_SIGNING_SECRET" => Some(current.to_string()),
            "PROVISIONER_SIGNING_SECRET_PREVIOUS" => Some("short".to_string()),
            _ => None,
        };
        let err = SigningSecrets::from_lookup(&short)
            .err()
            .expect("a short previous secret");
        assert_eq!(err.var, "PROVISIONER_SIGNING_SECRET_PREVIOUS");
    }

    #[test]
    fn following_a_secret_that_holds_no_signing_secret_is_refused() {
        let mut provisioner = HttpProvisioner::new(
            "https://vendor.example/provision".into(),
            Secret::new("current-signing-secret-0123456789abcdef"),
            vec![],
            Duration::from_secs(1),
        );
        let err = provisioner
            .follow_secret(None, &Environment::default())
            .expect_err("no PROVISIONER_SIGNING_SECRET in the secret");
        assert_eq!(err.var, "PROVISIONER_SIGNING_SECRET");
    }
    use crate::model::Timestamp;

    fn resource(platform: Platform) -> Resource {
        Resource {
            owner_id: Some("orga_1".into()),
            user_id: Some("user_1".into()),
            region: Some("EU".into()),
            ..Resource::new(
                "res_1".into(),
                platform,
                "addon_1".into(),
                "basic".into(),
                ConfigMap(BTreeMap::from([("A_URL".into(), "https://x".into())])),
                &Timestamp::now(),
            )
        }
    }

    #[test]
    fn the_idempotency_key_is_the_events_identity() {
        let clevercloud = resource(Platform::CleverCloud);
        let key = |action, resource: &Resource, extra: &[&str]| {
            VendorRequest::new(action, resource, extra).idempotency_key
        };
        let provision = key(Action::Provision, &clevercloud, &[]);
        // Another delivery of the same provision, even with another resource id.
        let redelivered = Resource {
            id: "res_2".into(),
            ..clevercloud.clone()
        };
        assert_eq!(provision, key(Action::Provision, &redelivered, &[]));
        assert_eq!(provision.len(), 64);
        // Any other event differs.
        assert_ne!(provision, key(Action::Deprovision, &clevercloud, &[]));
        assert_ne!(
            provision,
            key(Action::Provision, &resource(Platform::Cloud66), &[])
        );
        assert_ne!(
            key(Action::ChangePlan, &clevercloud, &["1", "premium"]),
            key(Action::ChangePlan, &clevercloud, &["2", "premium"])
        );
        assert_ne!(
            key(Action::ChangePlan, &clevercloud, &["1", "premium"]),
            key(Action::ChangePlan, &clevercloud, &["1premium"])
        );
        // Two unconfirmed drafts for one uid (two people typing it) are two
        // events; each is the same event on every delivery.
        let draft = |id: &str| Resource {
            id: id.into(),
            status: ResourceStatus::Unconfirmed,
            ..resource(Platform::Cloud66)
        };
        assert_ne!(
            key(Action::Provision, &draft("res_a"), &[]),
            key(Action::Provision, &draft("res_b"), &[])
        );
        assert_eq!(
            key(Action::Provision, &draft("res_a"), &[]),
            key(Action::Provision, &draft("res_a"), &[])
        );
    }

    #[test]
    fn the_body_carries_the_marketplace_ids_and_current_config_for_changes() {
        let clevercloud = resource(Platform::CleverCloud);
        let body = serde_json::to_value(VendorRequest::new(Action::Provision, &clevercloud, &[])).unwrap();
        assert_eq!(body["action"], "provision");
        assert_eq!(body["marketplace"], "clevercloud");
        assert_eq!(body["marketplace_ids"]["addon_id"], "addon_1");
        assert_eq!(body["marketplace_ids"]["owner_id"], "orga_1");
        assert_eq!(body["region"], "EU");
        assert!(body.get("config").is_none(), "a new resource has no config yet");
        let cloud66 = resource(Platform::Cloud66);
        let body = serde_json::to_value(VendorRequest::new(Action::Rotate, &cloud66, &[])).unwrap();
        assert_eq!(body["marketplace"], "cloud66");
        assert_eq!(body["marketplace_ids"]["account_id"], "addon_1");
        assert_eq!(body["config"]["A_URL"], "https://x");
    }

    #[tokio::test]
    async fn a_redirect_or_an_oversized_chunked_answer_is_a_retryable_failure() {
        let elsewhere =
            crate::outbound::test_server::serve(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec())
                .await;
        let redirecting = crate::outbound::test_server::serve(crate::outbound::test_server::redirect_to(
            &format!("{}/stolen", elsewhere.url),
        ))
        .await;
        let huge =
            crate::outbound::test_server::serve(crate::outbound::test_server::chunked(MAX_ANSWER_BYTES + 1))
                .await;
        for (url, expected) in [(&redirecting.url, "307"), (&huge.url, "larger than")] {
            let provisioner = HttpProvisioner::new(
                url.clone(),
                Secret::new("s".repeat(32)),
                vec!["A_URL".into()],
                Duration::from_secs(2),
            );
            let resource = resource(Platform::CleverCloud);
            let err = provisioner
                .provision(ProvisionContext {
                    resource: &resource,
                    email: None,
                })
                .await
                .unwrap_err();
            let ProvisionerError::Unavailable(reason) = err else {
                panic!("{err:?}")
            };
            assert!(reason.contains(expected), "{reason}");
        }
        assert!(elsewhere.requests().is_empty(), "nothing re-sent to Location");
    }

    fn provisioner() -> HttpProvisioner {
        HttpProvisioner::new(
            "https://vendor.example/addon".into(),
            Secret::new("s".repeat(32)),
            vec!["A_URL".into(), "A_TOKEN".into()],
            Duration::from_secs(1),
        )
    }

    #[test]
    fn answers_must_hold_exactly_the_config_vars_as_strings() {
        let provisioner = provisioner();
        let config = provisioner
            .read_config(br#"{"config": {"A_URL": "u", "A_TOKEN": "t"}, "message": "ok"}"#)
            .unwrap();
        assert_eq!(config.0.len(), 2);
        for bad in [
            &b"not json"[..],
            br#"{"config": []}"#,
            br#"{"config": {"A_URL": "u"}}"#,
            br#"{"config": {"A_URL": "u", "A_TOKEN": 5}}"#,
            br#"{"config": {"A_URL": "u", "A_TOKEN": "t", "B": "x"}}"#,
            br#"{"A_URL": "u", "A_TOKEN": "t"}"#,
        ] {
            let err = provisioner.read_config(bad).unwrap_err();
            assert!(matches!(err, ProvisionerError::Unavailable(_)), "{bad:?}");
        }
        // The reasons name vars, never values.
        let err = provisioner
            .read_config(br#"{"config": {"A_URL": "secret-value", "A_TOKEN": 5}}"#)
            .unwrap_err();
        assert!(!err.to_string().contains("secret-value"), "{err}");
    }

    #[test]
    fn vendor_messages_are_one_bounded_line() {
        assert_eq!(
            vendor_message(br#"{"message": "plan\nfull"}"#).as_deref(),
            Some("plan full")
        );
        let long = format!(r#"{{"message": "{}"}}"#, "x".repeat(2000));
        assert_eq!(vendor_message(long.as_bytes()).unwrap().len(), MAX_MESSAGE_CHARS);
        assert_eq!(vendor_message(br#"{"message": 5}"#), None);
        assert_eq!(vendor_message(b"<html>"), None);
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn the_endpoint_is_https_or_loopback_and_the_secret_long() {
        let lookup = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        let vars = || vec!["A_URL".to_string()];
        assert!(HttpProvisioner::from_lookup(
            &lookup(&[
                ("PROVISIONER_URL", "https://v.example/p"),
                ("PROVISIONER_SIGNING_SECRET", SECRET)
            ]),
            vars()
        )
        .is_ok());
        assert!(HttpProvisioner::from_lookup(
            &lookup(&[
                ("PROVISIONER_URL", "http://127.0.0.1:9/p"),
                ("PROVISIONER_SIGNING_SECRET", SECRET)
            ]),
            vars()
        )
        .is_ok());
        let err = HttpProvisioner::from_lookup(
            &lookup(&[
                ("PROVISIONER_URL", "http://v.example/p"),
                ("PROVISIONER_SIGNING_SECRET", SECRET),
            ]),
            vars(),
        )
        .unwrap_err();
        assert_eq!(err.var, "PROVISIONER_URL");
        let err =
            HttpProvisioner::from_lookup(&lookup(&[("PROVISIONER_URL", "https://v.example/p")]), vars())
                .unwrap_err();
        assert_eq!(err.var, "PROVISIONER_SIGNING_SECRET");
        let err = HttpProvisioner::from_lookup(
            &lookup(&[
                ("PROVISIONER_URL", "https://v.example/p"),
                ("PROVISIONER_SIGNING_SECRET", "short"),
            ]),
            vars(),
        )
        .unwrap_err();
        assert_eq!(err.var, "PROVISIONER_SIGNING_SECRET");
        let err = HttpProvisioner::from_lookup(
            &lookup(&[
                ("PROVISIONER_URL", "https://v.example/p"),
                ("PROVISIONER_SIGNING_SECRET", SECRET),
                ("PROVISIONER_TIMEOUT_MS", "20000"),
            ]),
            vars(),
        )
        .unwrap_err();
        assert_eq!(err.var, "PROVISIONER_TIMEOUT_MS");
        assert!(!format!("{:?}", provisioner()).contains(&"s".repeat(32)));
    }
}
