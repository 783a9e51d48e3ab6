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
use crate::config::ConfigError;
use crate::lifecycle::{Lifecycle, LifecycleError, ResourceAction};
use crate::model::{aws_license_id, AwsAgreement, AwsLicense, Timestamp};
use crate::provisioner::{Provisioner, VendorProvisioner};
use crate::store::{AlsoWrite, AwsMarketplaceStore, DynamoStore, ResourceWriter, StoreError, UpdateOutcome};
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
        let entitlements = EntitlementClient::new(&parts.sdk);
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
    let detail = &envelope.detail;
    let agreement_id = text(detail, &["agreement", "id"]);
    let license_id = text(detail, &["license", "arn"]).map(aws_license_id);
    let names_its_subject = match kind {
        Kind::AgreementCreated | Kind::AgreementAmended | Kind::AgreementEnded => agreement_id.is_some(),
        Kind::LicenseUpdated | Kind::LicenseDeprovisioned => license_id.is_some(),
    };
    if !names_its_subject {
        return ignored("it names no agreement or license");
    }
    // The license's entitlements, read once whatever the retries below.
    let mut dimensions: Option<Vec<String>> = None;
    let handled_until = Timestamp::now().unix() + HANDLED_FOR_SECONDS;
    for _ in 0..ATTEMPTS {
        // One read: the event's mark, and the states it may change.
        let resource_of = license_id.map(resource_id);
        let mut state = api
            .store
            .get_aws_event_state(&envelope.id, agreement_id, license_id, resource_of.as_deref())
            .await?;
        if state.handled {
            return ignored("already handled (a redelivery)");
        }
        // The license it changes: its own, or for an ended agreement the
        // license a license event named (read now); a created or amended
        // agreement changes no license.
        let license = match kind {
            Kind::LicenseUpdated | Kind::LicenseDeprovisioned => license_id.map(str::to_string),
            Kind::AgreementEnded => state
                .agreement
                .as_ref()
                .and_then(|agreement| agreement.license_id.clone()),
            Kind::AgreementCreated | Kind::AgreementAmended => None,
        };
        if kind == Kind::AgreementEnded {
            if let Some(license) = &license {
                let more = api
                    .store
                    .get_aws_event_state(&envelope.id, None, Some(license), Some(&resource_id(license)))
                    .await?;
                (state.license, state.resource) = (more.license, more.resource);
            }
        }
        if kind == Kind::LicenseUpdated && dimensions.is_none() {
            let arn = text(detail, &["license", "arn"]).unwrap_or_default();
            let arn = if arn.starts_with("arn:") {
                arn.to_string()
            } else {
                format!("arn:{arn}")
            };
            dimensions = Some(
                entitlements
                    .entitled_dimensions(&config.product_code, &arn)
                    .await?,
            );
        }
        let agreement_before = agreement_id.map(|id| {
            state.agreement.clone().unwrap_or_else(|| AwsAgreement {
                agreement_id: id.to_string(),
                ..AwsAgreement::default()
            })
        });
        let agreement_after = agreement_before.clone().map(|mut agreement| {
            match kind {
                Kind::AgreementEnded => agreement.ended = true,
                Kind::LicenseUpdated => agreement.license_id = license.clone(),
                _ => {}
            }
            agreement
        });
        let license_before = license.as_ref().map(|id| {
            state.license.clone().unwrap_or_else(|| AwsLicense {
                license_id: id.clone(),
                ..AwsLicense::default()
            })
        });
        let license_after = license_before.clone().map(|mut license| {
            match kind {
                Kind::LicenseUpdated => {
                    let held = dimensions.as_deref().unwrap_or_default();
                    match config.plan_for(held.iter().map(String::as_str)) {
                        Some(plan) => license.entitled_plan = Some(plan.to_string()),
                        None => tracing::warn!(license_id = %license.license_id, ?held, "no entitled dimension maps to a plan (AWS_MARKETPLACE_PLANS); the plan stays"),
                    }
                    if let Some(agreement) = agreement_id {
                        license.agreement_id = Some(agreement.to_string());
                    }
                    license.ended |= agreement_after.as_ref().is_some_and(|agreement| agreement.ended);
                }
                Kind::AgreementEnded => license.ended = true,
                Kind::LicenseDeprovisioned => license.deprovisioned = true,
                _ => {}
            }
            license
        });
        let now = Timestamp::now().to_string();
        let agreement_after = forward(agreement_before.as_ref(), agreement_after, &now);
        let license_after = forward(license_before.as_ref(), license_after, &now);
        let mut also: Vec<AlsoWrite<'_>> = Vec::new();
        also.extend(agreement_after.as_ref().map(AlsoWrite::AwsAgreement));
        also.extend(license_after.as_ref().map(AlsoWrite::AwsLicense));
        also.push(AlsoWrite::AwsEventHandled {
            event_id: &envelope.id,
            expires_at: handled_until,
        });
        // What the license's resource, if the buyer registered, must become.
        let settled = license_after.as_ref().or(license_before.as_ref());
        let action = settled.and_then(|license| {
            if license.deprovisioned {
                Some(ResourceAction::Deprovision)
            } else if license.ended {
                Some(ResourceAction::Ending)
            } else {
                license.entitled_plan.as_deref().map(ResourceAction::ChangePlan)
            }
        });
        // An ended agreement leaves the meter a mark: the resource's last
        // usage is sealed and sent once the grace after now has passed
        // (docs/metering.md, "When an agreement ends").
        let ending_id = match (&action, &state.resource) {
            (Some(ResourceAction::Ending), Some(resource))
                if resource.status == crate::model::ResourceStatus::Active =>
            {
                Some(resource.id.clone())
            }
            _ => None,
        };
        if let Some(resource_id) = &ending_id {
            also.push(AlsoWrite::UsageFinal {
                resource_id,
                at: &now,
            });
        }
        let written = match (action, state.resource) {
            (Some(action), Some(resource)) => match lifecycle.apply_with(Some(resource), action, &also).await
            {
                Ok(true) => true,
                // Nothing to change on the resource (or already past what
                // this asks): the states alone.
                Ok(false) | Err(LifecycleError::NotFound | LifecycleError::AlreadyDeprovisioned) => {
                    api.store.save_aws_states(&also).await? == UpdateOutcome::Updated
                }
                Err(LifecycleError::Changed) => false,
                Err(err) => return Err(err.into()),
            },
            // Not registered yet: the registration applies the state.
            _ => api.store.save_aws_states(&also).await? == UpdateOutcome::Updated,
        };
        if written {
            let acted = match kind {
                Kind::AgreementCreated | Kind::AgreementAmended => "recorded",
                Kind::AgreementEnded => "ended",
                Kind::LicenseUpdated => "entitlements applied",
                Kind::LicenseDeprovisioned => "deprovisioned",
            };
            tracing::info!(event_id = %envelope.id, ?kind, acted, "AWS Marketplace event handled");
            return Ok(json!({"id": envelope.id, "handled": acted}));
        }
        // Another event (or a redelivery of this one) wrote first: decide
        // again on what it left.
    }
    Err(EventError::Contended)
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

/// The state to write after `before`: `after` kept moving forward and
/// stamped with the next version, or `None` when it says nothing new.
fn forward<T: Forward>(before: Option<&T>, after: Option<T>, at: &str) -> Option<T> {
    let (before, mut after) = (before?, after?);
    after.keep_forward(before);
    if after == *before && before.version() > 0 {
        return None;
    }
    after.stamp(before.version() + 1, at.to_string());
    Some(after)
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
