//! Lifecycle events for the vendor's own systems, on EventBridge: each state
//! change's audit item, as it arrives on the table's stream, becomes one event
//! with `source` [`SOURCE`] and a `detail-type` per change. The vendor
//! subscribes with an ordinary rule (`{"source": ["addon-provider"]}`).
//!
//! - Once per change: an event is published only for an audit item not yet
//!   marked as published, and marked right after, so a redelivered stream
//!   record publishes nothing again. (Were the function to stop between the
//!   two, the record's redelivery would publish it a second time with the
//!   same `detail.event_id`; consumers that must never see a repeat dedupe
//!   on it.)
//! - In order per resource: a resource's audit items share its partition, and
//!   the stream keeps a partition's records in order.
//! - Never a secret: the detail is the audit event (ids, action, time,
//!   non-secret details such as plans), never config values.

use crate::config::{self, ConfigError};
use crate::model::{AuditAction, AuditEvent, SubjectKind};
use crate::store::AuditKey;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde_json::json;
use sha2::{Digest, Sha256};

pub const SOURCE: &str = "addon-provider";

/// The `detail-type` of each published change; other audit actions (link
/// attempts, sync bookkeeping) stay internal.
pub fn detail_type(action: AuditAction) -> Option<&'static str> {
    action.detail_type()
}

/// The audit details an event may carry.
const PUBLISHED_DETAILS: &[&str] = &[
    "account_id",
    "config_version",
    "dimension",
    "hour",
    "quantity",
    "reason",
    "status",
    "from_plan",
    "marketplace",
    "to_plan",
    "plan",
    "organization_id",
    "owner_id",
    "uid",
];

/// One event, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleEvent {
    pub detail_type: &'static str,
    pub detail: serde_json::Value,
}

/// The event for an audit item, if its action is one that is published.
pub fn lifecycle_event(key: &AuditKey, audit: &AuditEvent) -> Option<LifecycleEvent> {
    let detail_type = detail_type(audit.action)?;
    let subject = match audit.subject_kind {
        SubjectKind::Resource => "resource_id",
        SubjectKind::Account => "account_id",
    };
    // Stable across redeliveries: the audit item's own key.
    let event_id = hex::encode(Sha256::digest(format!("{}\n{}", key.pk, key.sk)));
    let mut detail = json!({
        "event_id": event_id,
        "action": audit.action,
        "subject_kind": audit.subject_kind,
        subject: audit.subject_id,
        "at": audit.at,
        "actor": audit.actor,
    });
    // Ids and plans only: never an email, a config value or a partner's
    // free text (Cloud 66's `message` can hold an address).
    let details: std::collections::BTreeMap<&String, &String> = audit
        .details
        .iter()
        .filter(|(name, _)| PUBLISHED_DETAILS.contains(&name.as_str()))
        .collect();
    if !details.is_empty() {
        detail["details"] = json!(details);
    }
    Some(LifecycleEvent { detail_type, detail })
}

#[derive(Debug, thiserror::Error)]
#[error("EventBridge did not take the event: {0}")]
pub struct PublishError(String);

/// Sends lifecycle events to one bus.
#[derive(Debug, Clone)]
pub struct EventPublisher {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventPublisher {
    /// `EVENT_BUS_NAME` (default: the account's `default` bus); the client
    /// honours `AWS_ENDPOINT_URL_EVENTBRIDGE`, as every AWS SDK client does.
    pub fn from_env(aws: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        let bus =
            config::optional(&config::process_env, "EVENT_BUS_NAME").unwrap_or_else(|| "default".into());
        Ok(Self::new(aws_sdk_eventbridge::Client::new(aws), bus))
    }

    pub fn new(client: aws_sdk_eventbridge::Client, bus: String) -> Self {
        Self { client, bus }
    }

    pub async fn publish(&self, event: &LifecycleEvent) -> Result<(), PublishError> {
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(event.detail_type)
            .detail(event.detail.to_string())
            .build();
        let output = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|err| PublishError(aws_sdk_eventbridge::error::DisplayErrorContext(&err).to_string()))?;
        if output.failed_entry_count > 0 {
            let reason = output
                .entries()
                .iter()
                .filter_map(|entry| entry.error_code())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(PublishError(format!("entry failed: {reason}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;

    fn key() -> AuditKey {
        AuditKey {
            pk: "RESOURCE#res_1".into(),
            sk: "AUDIT#2026-01-01T00:00:00.000Z#abcd".into(),
        }
    }

    #[test]
    fn a_plan_change_becomes_an_event_with_the_audit_fields() {
        let audit = AuditEvent::new(
            SubjectKind::Resource,
            "res_1",
            AuditAction::PlanChanged,
            "clevercloud",
            &Timestamp::now(),
        )
        .with_detail("from_plan", "basic")
        .with_detail("to_plan", "premium");
        let event = lifecycle_event(&key(), &audit).unwrap();
        assert_eq!(event.detail_type, "Resource Plan Changed");
        assert_eq!(event.detail["resource_id"], "res_1");
        assert_eq!(event.detail["action"], "plan_changed");
        assert_eq!(event.detail["details"]["to_plan"], "premium");
        assert_eq!(event.detail["event_id"].as_str().unwrap().len(), 64);
        // The id is the audit item's: the same however often it is built.
        assert_eq!(lifecycle_event(&key(), &audit).unwrap().detail, event.detail);
    }

    #[test]
    fn only_the_documented_changes_are_published() {
        let audit = |action| {
            AuditEvent::new(
                SubjectKind::Account,
                "acc_1",
                action,
                "cloud66",
                &Timestamp::now(),
            )
        };
        let created = lifecycle_event(&key(), &audit(AuditAction::AccountCreated)).unwrap();
        assert_eq!(created.detail["account_id"], "acc_1");
        assert!(lifecycle_event(&key(), &audit(AuditAction::Cloud66LinkPending)).is_none());
        assert!(lifecycle_event(&key(), &audit(AuditAction::VendorDetailsFetched)).is_none());
        assert!(lifecycle_event(&key(), &audit(AuditAction::Cloud66AlreadyLinked)).is_none());
    }

    #[test]
    fn no_event_carries_an_email_or_a_partners_free_text() {
        let linked = AuditEvent::new(
            SubjectKind::Account,
            "acc_1",
            AuditAction::Cloud66Linked,
            "cloud66",
            &Timestamp::now(),
        )
        .with_detail("uid", "uid_1")
        .with_detail("message", "jane@example.com is already linked")
        .with_detail("email", "jane@example.com");
        let event = lifecycle_event(&key(), &linked).unwrap();
        assert_eq!(event.detail["details"], serde_json::json!({"uid": "uid_1"}));
        assert!(!event.detail.to_string().contains("jane@"), "{}", event.detail);
    }
}
