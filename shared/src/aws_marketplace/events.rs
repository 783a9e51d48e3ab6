//! The `marketplace-events` function: AWS Marketplace's subscription
//! events (source `aws.agreement-marketplace`, docs/aws-marketplace.md
//! "Events"), as EventBridge delivers them.
//!
//! Events come at least once and in any order, sometimes before the
//! buyer's registration. So each is kept as state of its license or its
//! agreement (never replayed as a command), each transition is
//! conditional and only moves forward (a late `Created` after `Ended`
//! changes nothing), and a handled event's id is recorded so a redelivery
//! does no work twice.

use super::seller::{EntitlementClient, Entitlements, SellerError};
use super::{resource_id, AwsMarketplaceConfig};
use crate::config::{self, ConfigError};
use crate::lifecycle::{Lifecycle, LifecycleError};
use crate::model::{aws_license_id, AwsAgreement, AwsLicense, Timestamp};
use crate::provisioner::{Provisioner, VendorProvisioner};
use crate::store::{AwsMarketplaceStore, DynamoStore, ResourceWriter, StoreError, UpdateOutcome};
use serde::Deserialize;
use serde_json::{json, Value};

/// The source AWS Marketplace's agreement and license events carry.
pub const SOURCE: &str = "aws.agreement-marketplace";
/// How long a handled event's id is remembered: longer than EventBridge
/// retries a delivery (24 hours at most).
const HANDLED_FOR_SECONDS: i64 = 7 * 24 * 3600;
/// Rounds of read-modify-write lost to a concurrent event before giving up
/// (EventBridge then delivers again).
const ATTEMPTS: u32 = 8;

/// The EventBridge envelope, as AWS delivers it. What this handler does not
/// act on may be absent: a missing `account` must not drop a deprovision.
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope {
    #[serde(default)]
    pub version: String,
    /// The event's id: the same on every delivery of it.
    pub id: String,
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub source: String,
    #[serde(default)]
    pub account: String,
    #[serde(default)]
    pub time: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub resources: Vec<String>,
    pub detail: Value,
}

/// The events acted on, by their `detail-type` before ` - Manufacturer` or
/// ` - Proposer` (a seller that is its own proposer gets only the
/// Proposer agreement events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    AgreementCreated,
    AgreementAmended,
    AgreementEnded,
    LicenseUpdated,
    LicenseDeprovisioned,
}

impl Kind {
    /// Every kind and its `detail-type` base, as the rule lists them
    /// (infra/template.yaml).
    pub const ALL: [(Kind, &'static str); 5] = [
        (Kind::AgreementCreated, "Purchase Agreement Created"),
        (Kind::AgreementAmended, "Purchase Agreement Amended"),
        (Kind::AgreementEnded, "Purchase Agreement Ended"),
        (Kind::LicenseUpdated, "License Updated"),
        (Kind::LicenseDeprovisioned, "License Deprovisioned"),
    ];

    pub fn of(detail_type: &str) -> Option<Kind> {
        let (base, suffix) = detail_type.rsplit_once(" - ")?;
        if !matches!(suffix, "Manufacturer" | "Proposer") {
            return None;
        }
        Self::ALL
            .iter()
            .find(|(_, name)| *name == base)
            .map(|(kind, _)| *kind)
    }
}

/// Why an event must be delivered again (EventBridge retries, then its
/// dead-letter queue keeps it).
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error(transparent)]
    Seller(#[from] SellerError),
    #[error("the state kept changing under concurrent events")]
    Contended,
}

/// What serves the events when the add-on is sold on AWS Marketplace.
pub struct EventsApi<S, P, E> {
    sold: Option<(AwsMarketplaceConfig, Lifecycle<S, P>, E)>,
    store: S,
}

impl<S: Clone, P: Provisioner, E> EventsApi<S, P, E> {
    pub fn new(
        config: Option<AwsMarketplaceConfig>,
        store: S,
        provisioner: P,
        entitlements: E,
        config_vars: Vec<String>,
    ) -> Self {
        Self {
            sold: config.map(|config| {
                let lifecycle = Lifecycle::new(store.clone(), provisioner, config.marketplace(config_vars));
                (config, lifecycle, entitlements)
            }),
            store,
        }
    }
}

impl EventsApi<DynamoStore, VendorProvisioner, EntitlementClient> {
    /// `AWS_MARKETPLACE_*`, `ADDON_*` and `PROVISIONER_*`.
    pub async fn from_env(function: &str) -> Result<Self, ConfigError> {
        let parts = super::Parts::from_env(function).await?;
        let entitlements = EntitlementClient::new(&config::aws_sdk_config(function).await);
        Ok(Self::new(
            parts.config,
            parts.store,
            parts.provisioner,
            entitlements,
            parts.config_vars,
        ))
    }
}

/// The detail's fields this handler reads.
fn text<'a>(detail: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(detail, |node, key| node.get(key))
        .and_then(Value::as_str)
        .filter(|text| !text.is_empty() && text.len() <= 2048)
}

/// Handles one delivery; `Ok` says what was done (or why nothing was), an
/// error asks for the delivery again.
pub async fn handle<S, P, E>(api: &EventsApi<S, P, E>, event: Value) -> Result<Value, EventError>
where
    S: ResourceWriter + AwsMarketplaceStore,
    P: Provisioner,
    E: Entitlements,
{
    let envelope: Envelope = match serde_json::from_value(event) {
        Ok(envelope) => envelope,
        Err(err) => {
            tracing::warn!(error = %err, "not an EventBridge event; ignored");
            return Ok(json!({"ignored": "not an EventBridge event"}));
        }
    };
    let ignored = |why: &str| {
        tracing::info!(event_id = %envelope.id, detail_type = %envelope.detail_type, why, "event ignored");
        Ok(json!({"id": envelope.id, "ignored": why}))
    };
    if envelope.source != SOURCE {
        return ignored("not from AWS Marketplace");
    }
    let Some(kind) = Kind::of(&envelope.detail_type) else {
        return ignored("a detail-type this stack does not act on");
    };
    let Some((config, lifecycle, entitlements)) = &api.sold else {
        return ignored("this add-on is not sold on AWS Marketplace (AWS_MARKETPLACE_PRODUCT_CODE is empty)");
    };
    if text(&envelope.detail, &["product", "code"]).is_some_and(|code| code != config.product_code) {
        return ignored("another product's");
    }
    if envelope.id.is_empty() || envelope.id.len() > 256 {
        return ignored("no event id");
    }
    if api.store.aws_event_handled(&envelope.id).await? {
        return ignored("already handled (a redelivery)");
    }
    let detail = &envelope.detail;
    let agreement_id = text(detail, &["agreement", "id"]);
    let license_id = text(detail, &["license", "arn"]).map(aws_license_id);
    let acted = match (kind, agreement_id, license_id) {
        (Kind::AgreementCreated | Kind::AgreementAmended, Some(agreement), _) => {
            update_agreement(&api.store, agreement, |_| {}).await?;
            "recorded"
        }
        (Kind::AgreementEnded, Some(agreement), _) => {
            let agreement =
                update_agreement(&api.store, agreement, |agreement| agreement.ended = true).await?;
            if let Some(license) = agreement.license_id {
                let license = update_license(&api.store, &license, |license| license.ended = true).await?;
                settle(lifecycle, &license).await?;
            }
            "ended"
        }
        (Kind::LicenseUpdated, _, Some(license)) => {
            let ended = match agreement_id {
                Some(agreement) => {
                    let license = license.to_string();
                    update_agreement(&api.store, agreement, move |agreement| {
                        agreement.license_id = Some(license.clone())
                    })
                    .await?
                    .ended
                }
                None => false,
            };
            let arn = text(detail, &["license", "arn"]).unwrap_or(license);
            let arn = if arn.starts_with("arn:") {
                arn.to_string()
            } else {
                format!("arn:{arn}")
            };
            let dimensions = entitlements
                .entitled_dimensions(&config.product_code, &arn)
                .await?;
            let plan = config
                .plan_for(dimensions.iter().map(String::as_str))
                .map(str::to_string);
            if plan.is_none() {
                tracing::warn!(license_id = %license, ?dimensions, "no entitled dimension maps to a plan (AWS_MARKETPLACE_PLANS); the plan stays");
            }
            let agreement = agreement_id.map(str::to_string);
            let license = update_license(&api.store, license, move |license| {
                if plan.is_some() {
                    license.entitled_plan = plan.clone();
                }
                if agreement.is_some() {
                    license.agreement_id = agreement.clone();
                }
                license.ended |= ended;
            })
            .await?;
            settle(lifecycle, &license).await?;
            "entitlements applied"
        }
        (Kind::LicenseDeprovisioned, _, Some(license)) => {
            let license = update_license(&api.store, license, |license| license.deprovisioned = true).await?;
            settle(lifecycle, &license).await?;
            "deprovisioned"
        }
        _ => return ignored("it names no agreement or license"),
    };
    let now = Timestamp::now().unix();
    api.store
        .mark_aws_event_handled(&envelope.id, now + HANDLED_FOR_SECONDS)
        .await?;
    tracing::info!(event_id = %envelope.id, ?kind, acted, "AWS Marketplace event handled");
    Ok(json!({"id": envelope.id, "handled": acted}))
}

/// Brings the license's resource, if the buyer has registered, to what the
/// events said: deprovisioned, ending, or on the entitled plan. Each step
/// is the lifecycle's own conditional, idempotent change.
async fn settle<S: ResourceWriter, P: Provisioner>(
    lifecycle: &Lifecycle<S, P>,
    license: &AwsLicense,
) -> Result<(), EventError> {
    let id = resource_id(&license.license_id);
    let outcome = if license.deprovisioned {
        lifecycle.deprovision(&id).await
    } else if license.ended {
        lifecycle.mark_ending(&id).await.map(|_| ())
    } else if let Some(plan) = &license.entitled_plan {
        lifecycle.change_plan(&id, plan, None).await.map(|_| ())
    } else {
        Ok(())
    };
    match outcome {
        // Not registered yet (the registration applies the state), or
        // already past what this asks.
        Err(LifecycleError::NotFound | LifecycleError::AlreadyDeprovisioned) => Ok(()),
        other => Ok(other?),
    }
}

/// What events say of a license or an agreement: written conditionally on
/// its version, and only ever moving forward.
trait Forward: Clone + PartialEq {
    fn version(&self) -> u64;
    fn stamp(&mut self, version: u64, at: String);
    /// Keeps what `before` said that no later event takes back.
    fn keep_forward(&mut self, before: &Self);
}

impl Forward for AwsLicense {
    fn version(&self) -> u64 {
        self.version
    }

    fn stamp(&mut self, version: u64, at: String) {
        (self.version, self.updated_at) = (version, at);
    }

    fn keep_forward(&mut self, before: &Self) {
        // Once gone, nothing comes back: a late event changes nothing.
        self.deprovisioned |= before.deprovisioned;
        self.ended |= before.ended;
    }
}

impl Forward for AwsAgreement {
    fn version(&self) -> u64 {
        self.version
    }

    fn stamp(&mut self, version: u64, at: String) {
        (self.version, self.updated_at) = (version, at);
    }

    fn keep_forward(&mut self, before: &Self) {
        self.ended |= before.ended;
        if self.license_id.is_none() {
            self.license_id = before.license_id.clone();
        }
    }
}

/// Reads the state (`blank` when there is none), applies `change`, and
/// writes it if it changed, conditionally on the version read; a lost race
/// reads again.
async fn update_forward<T, Load, Loaded, Save, Saved>(
    blank: T,
    load: Load,
    save: Save,
    change: impl Fn(&mut T),
) -> Result<T, EventError>
where
    T: Forward,
    Load: Fn() -> Loaded,
    Loaded: std::future::Future<Output = Result<Option<T>, StoreError>>,
    Save: Fn(T) -> Saved,
    Saved: std::future::Future<Output = Result<UpdateOutcome, StoreError>>,
{
    for _ in 0..ATTEMPTS {
        let current = load().await?.unwrap_or_else(|| blank.clone());
        let mut next = current.clone();
        change(&mut next);
        next.keep_forward(&current);
        if next == current && current.version() > 0 {
            return Ok(current);
        }
        next.stamp(current.version() + 1, Timestamp::now().to_string());
        if save(next.clone()).await? == UpdateOutcome::Updated {
            return Ok(next);
        }
    }
    Err(EventError::Contended)
}

async fn update_license<S: AwsMarketplaceStore>(
    store: &S,
    license_id: &str,
    change: impl Fn(&mut AwsLicense),
) -> Result<AwsLicense, EventError> {
    let blank = AwsLicense {
        license_id: license_id.to_string(),
        ..AwsLicense::default()
    };
    update_forward(
        blank,
        || store.get_aws_license(license_id),
        |license| async move { store.save_aws_license(&license).await },
        change,
    )
    .await
}

async fn update_agreement<S: AwsMarketplaceStore>(
    store: &S,
    agreement_id: &str,
    change: impl Fn(&mut AwsAgreement),
) -> Result<AwsAgreement, EventError> {
    let blank = AwsAgreement {
        agreement_id: agreement_id.to_string(),
        ..AwsAgreement::default()
    };
    update_forward(
        blank,
        || store.get_aws_agreement(agreement_id),
        |agreement| async move { store.save_aws_agreement(&agreement).await },
        change,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_suffixes_name_a_kind_and_anything_else_is_none() {
        assert_eq!(
            Kind::of("Purchase Agreement Created - Proposer"),
            Some(Kind::AgreementCreated)
        );
        assert_eq!(
            Kind::of("Purchase Agreement Ended - Manufacturer"),
            Some(Kind::AgreementEnded)
        );
        assert_eq!(
            Kind::of("License Updated - Manufacturer"),
            Some(Kind::LicenseUpdated)
        );
        assert_eq!(
            Kind::of("License Deprovisioned - Manufacturer"),
            Some(Kind::LicenseDeprovisioned)
        );
        assert_eq!(Kind::of("Purchase Agreement Ending - Proposer"), None);
        assert_eq!(Kind::of("License Updated - Acceptor"), None);
        assert_eq!(Kind::of("License Updated"), None);
    }

    #[test]
    fn detail_fields_are_read_bounded() {
        let detail = json!({"agreement": {"id": "agmt-1"}, "license": {"arn": ""}, "product": {"code": 7}});
        assert_eq!(text(&detail, &["agreement", "id"]), Some("agmt-1"));
        assert_eq!(text(&detail, &["license", "arn"]), None);
        assert_eq!(text(&detail, &["product", "code"]), None);
        assert_eq!(
            text(
                &json!({"agreement": {"id": "a".repeat(3000)}}),
                &["agreement", "id"]
            ),
            None
        );
    }
}
