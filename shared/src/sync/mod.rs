//! Platform sync, off the request path: what the marketplaces only allow
//! afterwards, or what may be slow.
//!
//! ```text
//!  provision / rotate / new account ──► item marked owed (model::SyncMark) ──► table
//!      stream (NEW_AND_OLD_IMAGES): an owed resource or account ──► settle (settle.rs)
//!      schedule (every few minutes) and `provider sync` ──► sweep of the PendingSync index ──► settle
//!      stream: audit INSERT (a state change) ──► EventBridge: one lifecycle event (crate::events)
//! ```
//!
//! Settling is idempotent and may run any number of times, concurrently:
//! details already fetched are not fetched again, a config version once
//! confirmed is not pushed again, organisation ids once recorded are reused
//! (and a lost reply is covered by looking the organisation up by name
//! before creating it). A stream record fails (reported in
//! `batchItemFailures`, the rest of the batch still processed) only when the
//! table or the event bus cannot be reached or an image cannot be decoded: a
//! platform's failure is kept on the item, for the sweep.

mod heroku;
mod scalingo;
mod settle;

pub use heroku::{HerokuSync, PROVISION_LIMIT_SECONDS};
pub use scalingo::ScalingoSync;
pub use settle::{Settled, PROVISIONING_GRACE_SECONDS};

use crate::clevercloud::vendor::{VendorAppSummary, VendorClient, VendorError};
use crate::cloudmore::CloudmoreClient;
use crate::config::{self, CleverCloudConfig, ConfigError};
use crate::deadline::time_left;
use crate::events::{lifecycle_event, EventPublisher, PublishError};
use crate::heroku::platform::HerokuClient;
use crate::heroku::tokens::TokenKeys;
use crate::heroku::HerokuNames;
use crate::model::{
    Account, AuditAction, AuditEvent, Platform, Resource, ResourceStatus, SubjectKind, SyncQueue, Timestamp,
};
use crate::provisioner::{Provisioner, ProvisionerError, VendorProvisioner};
use crate::refresh::{Fresh, SecretSource};
use crate::scalingo::platform::ScalingoClient;
use crate::store::{change_resource, AuditKey, Change, DynamoStore, StoreError, SyncStore, SyncSubject};
use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The Clever Cloud owner every provision of `provider check` names, and the
/// Cloud 66 email it signs in with by default: test traffic, never a
/// customer, so no Cloudmore organisation is made for either (a check must
/// leave nothing behind, docs/checking.md).
pub const CHECK_OWNER_ID: &str = "orga_provider_check";
pub const CHECK_EMAIL: &str = "provider-check@example.com";

/// The audit `actor` for changes the sync makes.
pub const ACTOR: &str = "platform-sync";
/// Re-reads after losing a version race, per record.
const VERSION_ATTEMPTS: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("the record's image is not a valid {entity}: {reason}")]
    Undecodable { entity: &'static str, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Vendor(#[from] VendorError),
    #[error(transparent)]
    Provisioner(#[from] ProvisionerError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("the record has no {0} key")]
    MissingKey(&'static str),
    #[error("{0} kept changing under concurrent writes")]
    Contended(String),
    #[error("no resource {0}")]
    NotFound(String),
    #[error("the invocation's deadline came first")]
    OutOfTime,
}

pub struct PlatformSync<S> {
    store: S,
    vendor: VendorClient,
    cloudmore: Option<CloudmoreClient>,
    events: Option<EventPublisher>,
    /// Tells the vendor's service about unconfirmed resources whose TTL
    /// removed them ([`PlatformSync::with_provisioner`]).
    provisioner: Option<VendorProvisioner>,
    /// `None` when the add-on is not sold on Heroku.
    heroku: Option<HerokuSync>,
    /// `None` when the add-on is not sold on Scalingo.
    scalingo: Option<ScalingoSync>,
    /// What time it is: the system's, or a test's.
    clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
}

impl PlatformSync<DynamoStore> {
    /// Reads `TABLE_NAME`, the add-on's id and password (`ADDON_ID`,
    /// `ADDON_PASSWORD`, `ADDON_CONFIG_VARS`), `CLEVERCLOUD_API_URL`, the
    /// optional `CLOUDMORE_*` variables and `EVENT_BUS_NAME`.
    pub async fn from_env(function: &str) -> Result<Self, ConfigError> {
        let aws = config::aws_sdk_config(function).await;
        // The platforms' credentials and the provisioner's signing secrets
        // follow the secret (re-read every SECRETS_TTL_SECONDS), so a
        // rotation needs no redeploy.
        let (source, environment) = SecretSource::load(&aws, function).await?;
        let lookup = environment.lookup();
        let addon = CleverCloudConfig::from_lookup(&lookup)?;
        let mut vendor = VendorClient::from_lookup(&lookup, &addon)?;
        vendor.follow_secret(source.clone(), &environment)?;
        let cloudmore = CloudmoreClient::from_secret(source.clone(), &environment)?;
        let table = config::required(&lookup, "TABLE_NAME")?;
        let store = DynamoStore::ready(&aws, table).await;
        let events = EventPublisher::from_env(&aws)?;
        let mut provisioner = VendorProvisioner::from_lookup(&lookup, &addon.addon_id)?;
        provisioner.follow_secret(source.clone(), &environment)?;
        let heroku = match config::optional(&lookup, "HEROKU_ADDON_ID") {
            Some(_) => Some(HerokuSync {
                client: HerokuClient::from_secret(source.clone(), &environment)?,
                keys: Arc::new(Fresh::new(source.clone(), &environment, |environment| {
                    TokenKeys::from_lookup(&environment.lookup())
                })?),
                names: HerokuNames::from_lookup(&lookup)?,
            }),
            None => None,
        };
        let scalingo = match config::optional(&lookup, "SCALINGO_USERNAME") {
            Some(_) => Some(ScalingoSync {
                client: ScalingoClient::from_secret(source.clone(), &environment)?,
            }),
            None => None,
        };
        Ok(Self::new(store, vendor, cloudmore, Some(events))
            .with_provisioner(provisioner)
            .with_heroku(heroku)
            .with_scalingo(scalingo))
    }
}

impl<S: SyncStore> PlatformSync<S> {
    pub fn new(
        store: S,
        vendor: VendorClient,
        cloudmore: Option<CloudmoreClient>,
        events: Option<EventPublisher>,
    ) -> Self {
        Self {
            store,
            vendor,
            cloudmore,
            events,
            provisioner: None,
            heroku: None,
            scalingo: None,
            clock: Arc::new(Timestamp::now),
        }
    }

    /// Heroku's side (`None`: the add-on is not sold there).
    pub fn with_heroku(self, heroku: Option<HerokuSync>) -> Self {
        Self { heroku, ..self }
    }

    /// Scalingo's side (`None`: the add-on is not sold there).
    pub fn with_scalingo(self, scalingo: Option<ScalingoSync>) -> Self {
        Self { scalingo, ..self }
    }

    /// Settles as if it were the time `clock` says (tests of deadlines).
    pub fn with_clock(self, clock: Arc<dyn Fn() -> Timestamp + Send + Sync>) -> Self {
        Self { clock, ..self }
    }

    fn now(&self) -> Timestamp {
        (self.clock)()
    }

    /// Processes a batch in order, until `deadline`. A record that fails
    /// stops the batch: it and every record after it are reported (by
    /// sequence number), so Lambda resumes from it and never runs a later
    /// record, a later lifecycle event say, before an earlier one. Records
    /// not reached before the deadline are reported the same way, so a
    /// hanging platform never times the whole batch out unreported.
    pub async fn handle(&self, event: Event, deadline: Option<Instant>) -> DynamoDbEventResponse {
        let mut failures = Vec::new();
        for record in &event.records {
            if !failures.is_empty() {
                failures.push(batch_item_failure(record));
                continue;
            }
            // Boxed: the nested futures below are deep enough to exceed the
            // compiler's layout depth when inlined into the runtime's future.
            let applied = match time_left(deadline) {
                Some(left) => tokio::time::timeout(left, Box::pin(self.apply(record)))
                    .await
                    .unwrap_or(Err(SyncError::OutOfTime)),
                None => Box::pin(self.apply(record)).await,
            };
            if let Err(err) = applied {
                tracing::warn!(event_id = %record.event_id, error = %err, "stream record failed; it and the rest of the batch are retried");
                failures.push(batch_item_failure(record));
            }
        }
        let mut response = DynamoDbEventResponse::default();
        response.batch_item_failures = failures;
        response
    }

    /// One invocation of the function, to finish before `deadline` (the
    /// invocation's, less a margin): a batch of stream records, or the
    /// schedule's event, which sweeps and always emits its metrics.
    pub async fn invoke(
        &self,
        payload: serde_json::Value,
        deadline: Option<Instant>,
    ) -> Result<serde_json::Value, SyncError> {
        if payload.get("Records").is_some() {
            let event: Event = serde_json::from_value(payload).map_err(|err| SyncError::Undecodable {
                entity: "stream event",
                reason: err.to_string(),
            })?;
            return Ok(serde_json::to_value(self.handle(event, deadline).await).unwrap_or_default());
        }
        match self.sweep(false, deadline).await {
            Ok(mut report) => {
                // Events the stream did not publish (a dead-lettered record);
                // the metrics go out whatever happens to them.
                let published = self.publish_unpublished(UNPUBLISHED_AGE, deadline).await;
                report.published = *published.as_ref().unwrap_or(&0);
                report.emit_metrics();
                published?;
                Ok(serde_json::to_value(&report).unwrap_or_default())
            }
            Err(err) => {
                // The index could not be read: say so in the metrics too.
                SweepReport {
                    unreadable: true,
                    ..SweepReport::default()
                }
                .emit_metrics();
                Err(err)
            }
        }
    }

    /// Settles everything owed (by the sparse index, oldest first), as the
    /// schedule does every few minutes: whatever the stream could not
    /// deliver, after an outage of any length. `include_failed` (an
    /// operator's `provider sync`) also retries final failures, and does
    /// not wait for a `Retry-After`.
    /// Items not reached before `deadline` are counted in `left`.
    pub async fn sweep(
        &self,
        include_failed: bool,
        deadline: Option<Instant>,
    ) -> Result<SweepReport, SyncError> {
        let mut owed = self.store.owed(SyncQueue::Pending).await?;
        if include_failed {
            owed.extend(self.store.owed(SyncQueue::Failed).await?);
        }
        let now = Timestamp::now();
        let mut report = SweepReport::default();
        let total = owed.len();
        for (index, item) in owed.into_iter().enumerate() {
            let Some(left) = time_left(deadline)
                .or(Some(Duration::MAX))
                .filter(|left| !left.is_zero())
            else {
                report.left = total - index;
                break;
            };
            let settling = async {
                if include_failed {
                    self.settle_now(&item.subject).await
                } else {
                    self.settle(&item.subject).await
                }
            };
            let settled = match tokio::time::timeout(left, settling).await {
                Ok(settled) => settled,
                Err(_) => {
                    report.left = total - index;
                    break;
                }
            };
            let settled = match settled {
                Ok(settled) => settled,
                Err(err) => {
                    // One item's storage trouble does not stop the others.
                    tracing::warn!(subject = ?item.subject, error = %err, "could not settle");
                    Settled::Pending {
                        error: err.to_string(),
                        retry_at: None,
                    }
                }
            };
            let age = chrono::DateTime::parse_from_rfc3339(&item.since)
                .map(|since| now.unix() - since.timestamp())
                .unwrap_or(0)
                .max(0);
            match settled {
                Settled::Done => report.settled += 1,
                Settled::Scheduled { .. } => report.scheduled += 1,
                Settled::Failed { .. } => report.failed += 1,
                Settled::Pending { .. } | Settled::Waiting { .. } => {
                    report.pending += 1;
                    report.oldest_pending_seconds = report.oldest_pending_seconds.max(age);
                }
            }
        }
        tracing::info!(?report, "sweep done");
        Ok(report)
    }

    /// The provisioner that deprovisions, at the vendor, the unconfirmed
    /// resources (an unverified Cloud 66 link's drafts, which Cloud 66 never
    /// confirmed) that DynamoDB's TTL removes: a stranger's attempts leave
    /// no tenant behind.
    pub fn with_provisioner(self, provisioner: VendorProvisioner) -> Self {
        Self {
            provisioner: Some(provisioner),
            ..self
        }
    }

    /// A removed item: an unconfirmed resource is deprovisioned at the
    /// vendor (the stream record is its only trace, so a failure fails the
    /// record: Lambda retries it, then dead-letters it, which alarms).
    async fn removed(&self, record: &EventRecord) -> Result<(), SyncError> {
        let image = &record.change.old_image;
        if !matches!(image.get("entity"), Some(serde_dynamo::AttributeValue::S(entity)) if entity == "resource")
        {
            return Ok(());
        }
        let resource: Resource = decode(image, "resource")?;
        if resource.status != ResourceStatus::Unconfirmed {
            return Ok(());
        }
        let Some(provisioner) = &self.provisioner else {
            tracing::warn!(resource_id = %resource.id, "an expired unconfirmed resource, but no provisioner to tell");
            return Ok(());
        };
        provisioner.deprovision(&resource).await?;
        tracing::info!(resource_id = %resource.id, "an expired unconfirmed resource was deprovisioned at the vendor");
        Ok(())
    }

    async fn apply(&self, record: &EventRecord) -> Result<(), SyncError> {
        if record.event_name == "REMOVE" {
            return self.removed(record).await;
        }
        let image = &record.change.new_image;
        let entity = match image.get("entity") {
            Some(serde_dynamo::AttributeValue::S(entity)) => entity.as_str(),
            _ => return Ok(()),
        };
        // What a resource or account is owed is written on the item itself
        // by the change that made it owed; the stream is the quick way to
        // settle it, the scheduled sweep the sure one.
        let owed = |image: &serde_dynamo::Item| matches!(image.get("sync_queue"), Some(serde_dynamo::AttributeValue::S(queue)) if queue == "pending");
        match (entity, record.event_name.as_str()) {
            ("resource", "INSERT" | "MODIFY") if owed(image) => {
                let resource: Resource = decode(image, "resource")?;
                self.settle(&SyncSubject::Resource(resource.id)).await.map(drop)
            }
            ("account", "INSERT" | "MODIFY") if owed(image) => {
                let account: Account = decode(image, "account")?;
                self.settle(&SyncSubject::Account(account.id)).await.map(drop)
            }
            ("audit", "INSERT") => self.publish(record).await,
            _ => Ok(()),
        }
    }

    /// The lifecycle event of an audit item, once (see [`crate::events`]).
    async fn publish(&self, record: &EventRecord) -> Result<(), SyncError> {
        let Some(events) = &self.events else {
            return Ok(());
        };
        let audit: AuditEvent = decode(&record.change.new_image, "audit")?;
        let key_part = |name: &'static str| match record.change.keys.get(name) {
            Some(serde_dynamo::AttributeValue::S(value)) => Ok(value.clone()),
            _ => Err(SyncError::MissingKey(name)),
        };
        let key = AuditKey {
            pk: key_part("pk")?,
            sk: key_part("sk")?,
        };
        if self.store.audit_published(&key).await? {
            return Ok(());
        }
        self.publish_audit(events, &key, &audit).await
    }

    /// Publishes one audit item's event and marks the item published.
    async fn publish_audit(
        &self,
        events: &EventPublisher,
        key: &AuditKey,
        audit: &AuditEvent,
    ) -> Result<(), SyncError> {
        let Some(event) = lifecycle_event(key, audit) else {
            return Ok(());
        };
        events.publish(&event).await?;
        self.store.mark_audit_published(key).await?;
        tracing::info!(detail_type = event.detail_type, subject_id = %audit.subject_id, "published a lifecycle event");
        Ok(())
    }

    /// Publishes the events of audit items older than `age` whose stream
    /// record never published them (it was dead-lettered, say), oldest
    /// first, until `deadline`: the sweep's second half. How many it
    /// published.
    pub async fn publish_unpublished(
        &self,
        age: Duration,
        deadline: Option<Instant>,
    ) -> Result<usize, SyncError> {
        let Some(events) = &self.events else {
            return Ok(0);
        };
        let age = chrono::Duration::from_std(age).unwrap_or(chrono::Duration::zero());
        let before = Timestamp(chrono::Utc::now() - age).to_string();
        let mut published = 0;
        for (key, audit) in self.store.unpublished_audits(&before).await? {
            if time_left(deadline).is_some_and(|left| left.is_zero()) {
                break;
            }
            self.publish_audit(events, &key, &audit).await?;
            published += 1;
        }
        Ok(published)
    }
}

/// How old an unpublished audit item is before the sweep publishes it: the
/// stream normally does within seconds, and its retries take minutes.
pub const UNPUBLISHED_AGE: Duration = Duration::from_secs(10 * 60);

/// What a sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Items whose every push landed.
    pub settled: usize,
    /// Items still owed something, to be retried.
    pub pending: usize,
    /// Items a platform refused for good (or a marketplace's deadline
    /// passed): the `FailedSyncs` alarm.
    pub failed: usize,
    /// Items with nothing to do yet (a provision the vendor's service is
    /// still finishing), not failing and not counted as pending.
    pub scheduled: usize,
    /// How long the oldest still-pending item has been owed.
    pub oldest_pending_seconds: i64,
    /// Items not reached before the invocation's deadline (the next sweep's).
    pub left: usize,
    /// The index of owed items could not be read at all.
    pub unreadable: bool,
    /// Lifecycle events the stream had not published, published now.
    pub published: usize,
}

impl SweepReport {
    /// The CloudWatch metrics (embedded metric format: one JSON log line)
    /// that the template's alarms watch. A sweep that could not read the
    /// index reports no `OldestPendingSyncSeconds` (the pending-age alarm
    /// treats missing data as breaching) and `SweepsUnreadable` 1.
    pub fn emit_metrics(&self) {
        println!("{}", self.metrics_line(chrono::Utc::now().timestamp_millis()));
    }

    fn metrics_line(&self, timestamp_millis: i64) -> serde_json::Value {
        let mut metrics = vec![
            serde_json::json!({"Name": "PendingSyncs", "Unit": "Count"}),
            serde_json::json!({"Name": "FailedSyncs", "Unit": "Count"}),
            serde_json::json!({"Name": "SyncsLeftForNextSweep", "Unit": "Count"}),
            serde_json::json!({"Name": "SweepsUnreadable", "Unit": "Count"}),
        ];
        let mut line = serde_json::json!({
            "PendingSyncs": self.pending,
            "FailedSyncs": self.failed,
            "SyncsLeftForNextSweep": self.left,
            "SweepsUnreadable": u8::from(self.unreadable),
        });
        if !self.unreadable {
            metrics.insert(
                0,
                serde_json::json!({"Name": "OldestPendingSyncSeconds", "Unit": "Seconds"}),
            );
            line["OldestPendingSyncSeconds"] = self.oldest_pending_seconds.into();
        }
        line["_aws"] = serde_json::json!({
            "Timestamp": timestamp_millis,
            "CloudWatchMetrics": [{
                "Namespace": METRICS_NAMESPACE,
                "Dimensions": [[]],
                "Metrics": metrics,
            }],
        });
        line
    }
}

/// A stream record's report to Lambda: retry from this one.
fn batch_item_failure(record: &EventRecord) -> DynamoDbBatchItemFailure {
    let mut failure = DynamoDbBatchItemFailure::default();
    failure.item_identifier = record.change.sequence_number.clone();
    failure
}

/// How long before the invocation's own deadline the sync stops, to answer
/// (and report what is left) before Lambda ends it.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(3);

/// The invocation's deadline (`deadline_ms`, Unix milliseconds, as Lambda
/// gives it), less [`DEADLINE_MARGIN`], on this process's clock (`None`
/// where it is not a time: see [`crate::deadline::from_lambda`]).
pub fn deadline_from(deadline_ms: u64, now: std::time::SystemTime) -> Option<Instant> {
    crate::deadline::from_lambda(deadline_ms, now, DEADLINE_MARGIN)
}

/// The CloudWatch namespace of the sweep's metrics (the template's alarms use it).
pub const METRICS_NAMESPACE: &str = "AddonProvider/Sync";

fn decode<T: serde::de::DeserializeOwned>(
    image: &serde_dynamo::Item,
    entity: &'static str,
) -> Result<T, SyncError> {
    serde_dynamo::from_item(image.clone()).map_err(|err| SyncError::Undecodable {
        entity,
        reason: err.to_string(),
    })
}

/// Gives a resource fresh secret config values through the provisioner and
/// stores them (version-conditional, audited); the stream then pushes them to
/// Clever Cloud. Returns the names of the config vars (never the values).
pub async fn rotate_credentials<S: SyncStore, P: Provisioner>(
    store: &S,
    provisioner: &P,
    resource_id: &str,
) -> Result<Vec<String>, SyncError> {
    change_resource::<_, _, SyncError, _>(store, resource_id, VERSION_ATTEMPTS, |current| async move {
        let current = current
            .filter(Resource::is_active)
            .ok_or_else(|| SyncError::NotFound(resource_id.into()))?;
        let config = provisioner.rotate(&current).await?;
        let names = config.names().map(str::to_string).collect();
        let now = Timestamp::now();
        let event = AuditEvent::new(
            SubjectKind::Resource,
            resource_id,
            AuditAction::CredentialsRotated,
            ACTOR,
            &now,
        );
        // Owed to Clever Cloud until a push of this version succeeds.
        let updated = Resource {
            config,
            config_version: current.config_version + 1,
            sync: current.sync.still_owed(&now),
            version: current.version + 1,
            updated_at: now.to_string(),
            ..current
        };
        Ok(Change::Write(updated, event, names))
    })
    .await?
    .ok_or_else(|| SyncError::Contended(format!("resource {resource_id}")))
}

/// Drift between Clever Cloud's list of add-ons and the table, config
/// versions Clever Cloud or Heroku has not confirmed, Heroku add-ons that
/// cannot be reached, and pushes that ended in a final error. Reports only;
/// `provider sync` heals what it can.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Add-on ids Clever Cloud knows that have no resource here.
    pub unknown_here: Vec<String>,
    /// Add-on ids Clever Cloud knows whose resource here is deprovisioned.
    pub deprovisioned_here: Vec<String>,
    /// Add-on ids active here that Clever Cloud does not list.
    pub unknown_there: Vec<String>,
    /// Add-on ids whose plan differs: here → there.
    pub plan_mismatch: BTreeMap<String, String>,
    /// Keys of resource items in the table that could not be read.
    pub unreadable_here: Vec<String>,
    /// Add-on ids whose stored config is newer than what Clever Cloud last
    /// confirmed: `provider sync` pushes it.
    pub config_behind: Vec<String>,
    /// Items a platform refused for good, with its words: add-on id or
    /// account id → error.
    pub sync_failed: BTreeMap<String, String>,
    /// Heroku add-ons (uuids) whose config or provisioned mark Heroku has
    /// not been given yet: `provider sync` sends them.
    pub heroku_behind: Vec<String>,
    /// Heroku add-ons (uuids) with no OAuth tokens (the grant never came,
    /// or could not be exchanged): nothing can be sent to Heroku for them.
    pub heroku_without_tokens: Vec<String>,
    /// Scalingo add-ons (this provider's ids) whose config Scalingo has not
    /// confirmed.
    pub scalingo_behind: Vec<String>,
}

impl ReconcileReport {
    /// Whether anything differs, is behind or failed: what an operator acts on.
    pub fn has_drift(&self) -> bool {
        !(self.unknown_here.is_empty()
            && self.deprovisioned_here.is_empty()
            && self.unknown_there.is_empty()
            && self.plan_mismatch.is_empty()
            && self.unreadable_here.is_empty()
            && self.config_behind.is_empty()
            && self.sync_failed.is_empty()
            && self.heroku_behind.is_empty()
            && self.heroku_without_tokens.is_empty()
            && self.scalingo_behind.is_empty())
    }
}

pub async fn reconcile<S: SyncStore>(store: &S, vendor: &VendorClient) -> Result<ReconcileReport, SyncError> {
    let there: Vec<VendorAppSummary> = vendor.all_apps().await?;
    let (mut heroku_without_tokens, mut heroku_behind) = (Vec::new(), Vec::new());
    let scan = store.all_resources().await?;
    // Heroku offers providers no list of their add-ons: its side is judged
    // from the table alone (what is owed to it, and what cannot be sent).
    for resource in scan.resources.iter().filter(|r| r.platform == Platform::Heroku) {
        let live = matches!(
            resource.status,
            ResourceStatus::Active | ResourceStatus::Provisioning
        );
        let tokens = resource.heroku.as_ref().is_some_and(|auth| auth.tokens.is_some());
        if live && !tokens {
            heroku_without_tokens.push(resource.addon_id.clone());
        }
        if resource.is_active()
            && (resource.pushed_config_version < resource.config_version || resource.announce_ready)
        {
            heroku_behind.push(resource.addon_id.clone());
        }
    }
    let scalingo_behind = scan
        .resources
        .iter()
        .filter(|r| r.platform == Platform::Scalingo && scalingo::owes(r))
        .map(|r| r.id.clone())
        .collect();
    let here: BTreeMap<String, Resource> = scan
        .resources
        .into_iter()
        .filter(|resource| resource.platform == Platform::CleverCloud)
        .map(|resource| (resource.addon_id.clone(), resource))
        .collect();
    let mut report = ReconcileReport {
        unreadable_here: scan.unreadable,
        heroku_without_tokens,
        heroku_behind,
        scalingo_behind,
        ..ReconcileReport::default()
    };
    let listed: BTreeSet<&str> = there.iter().map(|app| app.addon_id.as_str()).collect();
    for app in &there {
        match here.get(&app.addon_id) {
            None => report.unknown_here.push(app.addon_id.clone()),
            Some(resource) if !resource.is_active() => report.deprovisioned_here.push(app.addon_id.clone()),
            Some(resource) => {
                if let Some(plan) = app.plan.as_ref().filter(|plan| **plan != resource.plan) {
                    report
                        .plan_mismatch
                        .insert(app.addon_id.clone(), format!("{} → {plan}", resource.plan));
                }
            }
        }
    }
    for resource in here.values().filter(|resource| resource.is_active()) {
        if resource.pushed_config_version < resource.config_version {
            report.config_behind.push(resource.addon_id.clone());
        }
    }
    for owed in store.owed(SyncQueue::Failed).await? {
        let error = match &owed.subject {
            SyncSubject::Resource(id) => store
                .get_resource(id)
                .await?
                .map(|r| (r.addon_id, r.sync.sync_error)),
            SyncSubject::Account(id) => store.get_account(id).await?.map(|a| (a.id, a.sync.sync_error)),
        };
        if let Some((name, error)) = error {
            report.sync_failed.insert(name, error.unwrap_or_default());
        }
    }
    report.unknown_there = here
        .values()
        .filter(|resource| resource.is_active() && !listed.contains(resource.addon_id.as_str()))
        .map(|resource| resource.addon_id.clone())
        .collect();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sync_stops_three_seconds_before_lambdas_deadline() {
        let now = std::time::SystemTime::now();
        let in_ten_seconds = now.duration_since(std::time::UNIX_EPOCH).unwrap() + Duration::from_secs(10);
        let deadline = deadline_from(in_ten_seconds.as_millis() as u64, now).unwrap();
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            left <= Duration::from_secs(7) && left > Duration::from_millis(6_900),
            "{left:?}"
        );
    }

    #[test]
    fn an_unreadable_sweep_reports_no_pending_age_so_its_alarm_breaches() {
        let read = SweepReport {
            pending: 2,
            oldest_pending_seconds: 90,
            left: 1,
            ..SweepReport::default()
        }
        .metrics_line(1);
        assert_eq!(read["OldestPendingSyncSeconds"], 90);
        assert_eq!(read["SyncsLeftForNextSweep"], 1);
        assert_eq!(read["SweepsUnreadable"], 0);
        let names = |line: &serde_json::Value| -> Vec<String> {
            line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .iter()
                .map(|metric| metric["Name"].as_str().unwrap().to_string())
                .collect()
        };
        assert!(names(&read).contains(&"OldestPendingSyncSeconds".to_string()));
        let unreadable = SweepReport {
            unreadable: true,
            ..SweepReport::default()
        }
        .metrics_line(1);
        assert!(unreadable.get("OldestPendingSyncSeconds").is_none());
        assert!(!names(&unreadable).contains(&"OldestPendingSyncSeconds".to_string()));
        assert_eq!(unreadable["SweepsUnreadable"], 1);
    }
}
