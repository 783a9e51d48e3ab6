//! Platform sync, off the request path: the table's DynamoDB stream drives
//! what the marketplaces only allow afterwards or what may be slow.
//!
//! ```text
//!  provision / plan change / rotate ──► table ──► stream (NEW_AND_OLD_IMAGES) ──► platform-sync
//!                                                                                  │
//!   resource INSERT (Clever Cloud)  ── GET /vendor/apps/{addonId} ──► name, owner emails, region on the resource
//!                                   └─ Cloudmore: find or create the owner's organisation ──► owner record
//!   resource MODIFY, config changed ── PUT /vendor/apps/{addonId} {config}
//!   account INSERT (Cloud 66)       ── Cloudmore: find or create the organisation ──► id on the account
//!   audit INSERT (a state change)   ── EventBridge: one lifecycle event (crate::events)
//! ```
//!
//! The stream delivers at least once, so every action is idempotent: details
//! already fetched are not fetched again, organisation ids once recorded are
//! reused (and a lost reply is covered by looking the organisation up by name
//! before creating it), and a config PUT is the same PUT when repeated. A
//! record that fails is reported in `batchItemFailures`; the others in the
//! batch are still processed.

use crate::clevercloud::vendor::{VendorAppSummary, VendorClient, VendorError};
use crate::cloudmore::{CloudmoreClient, CloudmoreConfig, CloudmoreError};
use crate::config::{self, CleverCloudConfig, ConfigError};
use crate::events::{lifecycle_event, EventPublisher, PublishError};
use crate::model::{
    Account, AuditAction, AuditEvent, Platform, Resource, SubjectKind, Timestamp, VendorDetails,
};
use crate::provisioner::{Provisioner, ProvisionerError};
use crate::store::{change_resource, AuditKey, Change, DynamoStore, StoreError, SyncStore, UpdateOutcome};
use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

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
    Cloudmore(#[from] CloudmoreError),
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
}

pub struct PlatformSync<S> {
    store: S,
    vendor: VendorClient,
    cloudmore: Option<CloudmoreClient>,
    events: Option<EventPublisher>,
}

impl PlatformSync<DynamoStore> {
    /// Reads `TABLE_NAME`, the add-on's id and password (`ADDON_ID`,
    /// `ADDON_PASSWORD`, `ADDON_CONFIG_VARS`), `CLEVERCLOUD_API_URL`, the
    /// optional `CLOUDMORE_*` variables and `EVENT_BUS_NAME`.
    pub async fn from_env() -> Result<Self, ConfigError> {
        let environment = config::Environment::load().await?;
        let lookup = environment.lookup();
        let addon = CleverCloudConfig::from_lookup(&lookup)?;
        let vendor = VendorClient::from_lookup(&lookup, &addon)?;
        let cloudmore = CloudmoreConfig::from_lookup(&lookup)?.map(CloudmoreClient::new);
        let table = config::required(&lookup, "TABLE_NAME")?;
        let store = DynamoStore::new(DynamoStore::client_from_env().await, table);
        let events = EventPublisher::from_env().await?;
        Ok(Self::new(store, vendor, cloudmore, Some(events)))
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
        }
    }

    /// Processes a batch; failed records are reported by sequence number so
    /// Lambda retries them (bisecting, then dead-lettering after its limit).
    pub async fn handle(&self, event: Event) -> DynamoDbEventResponse {
        let mut failures = Vec::new();
        for record in &event.records {
            // Boxed: the nested futures below are deep enough to exceed the
            // compiler's layout depth when inlined into the runtime's future.
            if let Err(err) = Box::pin(self.apply(record)).await {
                tracing::warn!(event_id = %record.event_id, error = %err, "stream record failed");
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = record.change.sequence_number.clone();
                failures.push(failure);
            }
        }
        let mut response = DynamoDbEventResponse::default();
        response.batch_item_failures = failures;
        response
    }

    async fn apply(&self, record: &EventRecord) -> Result<(), SyncError> {
        let image = &record.change.new_image;
        let entity = match image.get("entity") {
            Some(serde_dynamo::AttributeValue::S(entity)) => entity.as_str(),
            _ => return Ok(()),
        };
        match (entity, record.event_name.as_str()) {
            ("resource", "INSERT") => {
                let resource: Resource = decode(image, "resource")?;
                if resource.platform == Platform::CleverCloud && resource.is_active() {
                    self.fetch_vendor_details(&resource.id).await?;
                    self.record_owner_organization(&resource).await?;
                }
                Ok(())
            }
            ("resource", "MODIFY") => {
                let after: Resource = decode(image, "resource")?;
                let before: Resource = decode(&record.change.old_image, "resource")?;
                if after.platform == Platform::CleverCloud
                    && after.is_active()
                    && before.config != after.config
                {
                    self.vendor.put_config(&after.addon_id, &after.config).await?;
                    tracing::info!(resource_id = %after.id, "pushed the new config to Clever Cloud");
                }
                Ok(())
            }
            ("account", "INSERT") => {
                let account: Account = decode(image, "account")?;
                self.record_account_organization(&account.id).await
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
        let Some(event) = lifecycle_event(&key, &audit) else {
            return Ok(());
        };
        if self.store.audit_published(&key).await? {
            return Ok(());
        }
        events.publish(&event).await?;
        self.store.mark_audit_published(&key).await?;
        tracing::info!(detail_type = event.detail_type, subject_id = %audit.subject_id, "published a lifecycle event");
        Ok(())
    }

    /// Stores `GET /vendor/apps/{addonId}`'s details on the resource, once.
    async fn fetch_vendor_details(&self, resource_id: &str) -> Result<(), SyncError> {
        change_resource::<_, _, SyncError, _>(
            &self.store,
            resource_id,
            VERSION_ATTEMPTS,
            |current| async move {
                let current = current.ok_or_else(|| SyncError::NotFound(resource_id.into()))?;
                if current.vendor.is_some() {
                    return Ok(Change::Done(()));
                }
                let app = self.vendor.app(&current.addon_id).await?;
                let mut owner_emails = app.owner_emails;
                if owner_emails.is_empty() {
                    owner_emails.extend(app.owner_email);
                }
                let now = Timestamp::now();
                let event = AuditEvent::new(
                    SubjectKind::Resource,
                    resource_id,
                    AuditAction::VendorDetailsFetched,
                    ACTOR,
                    &now,
                );
                let updated = Resource {
                    vendor: Some(VendorDetails {
                        name: app.name,
                        owner_emails,
                        region: app.region,
                        fetched_at: now.to_string(),
                    }),
                    version: current.version + 1,
                    updated_at: now.to_string(),
                    ..current
                };
                Ok(Change::Write(updated, event, ()))
            },
        )
        .await?
        .ok_or_else(|| SyncError::Contended(format!("resource {resource_id}")))
    }

    async fn record_owner_organization(&self, resource: &Resource) -> Result<(), SyncError> {
        let (Some(cloudmore), Some(owner_id)) = (&self.cloudmore, &resource.owner_id) else {
            return Ok(());
        };
        if self.store.owner_organization(owner_id).await?.is_some() {
            return Ok(());
        }
        let name = format!(
            "{} ({owner_id})",
            resource.owner_name.as_deref().unwrap_or("Clever Cloud owner")
        );
        let organization = cloudmore.find_or_create_organization(&name, None).await?;
        let event = AuditEvent::new(
            SubjectKind::Resource,
            &resource.id,
            AuditAction::CloudmoreOrganizationRecorded,
            ACTOR,
            &Timestamp::now(),
        )
        .with_detail("owner_id", owner_id)
        .with_detail("organization_id", &organization);
        self.store
            .record_owner_organization(owner_id, &organization, &event)
            .await?;
        Ok(())
    }

    async fn record_account_organization(&self, account_id: &str) -> Result<(), SyncError> {
        let Some(cloudmore) = &self.cloudmore else {
            return Ok(());
        };
        for _ in 0..VERSION_ATTEMPTS {
            let Some(account) = self.store.get_account(account_id).await? else {
                return Ok(());
            };
            if account.cloudmore_organization_id.is_some() {
                return Ok(());
            }
            let organization = cloudmore
                .find_or_create_organization(&account.email, Some(&account.email))
                .await?;
            let event = AuditEvent::new(
                SubjectKind::Account,
                account_id,
                AuditAction::CloudmoreOrganizationRecorded,
                ACTOR,
                &Timestamp::now(),
            )
            .with_detail("organization_id", &organization);
            let updated = Account {
                cloudmore_organization_id: Some(organization),
                version: account.version + 1,
                ..account
            };
            if self.store.update_account(&updated, &event).await? == UpdateOutcome::Updated {
                tracing::info!(account_id, "recorded the Cloudmore organisation");
                return Ok(());
            }
        }
        Err(SyncError::Contended(format!("account {account_id}")))
    }
}

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
        let updated = Resource {
            config,
            version: current.version + 1,
            updated_at: now.to_string(),
            ..current
        };
        Ok(Change::Write(updated, event, names))
    })
    .await?
    .ok_or_else(|| SyncError::Contended(format!("resource {resource_id}")))
}

/// Drift between Clever Cloud's list of add-ons and the table. Reports only;
/// nothing is deleted.
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
}

pub async fn reconcile<S: SyncStore>(store: &S, vendor: &VendorClient) -> Result<ReconcileReport, SyncError> {
    let there: Vec<VendorAppSummary> = vendor.all_apps().await?;
    let scan = store.all_resources().await?;
    let here: BTreeMap<String, Resource> = scan
        .resources
        .into_iter()
        .filter(|resource| resource.platform == Platform::CleverCloud)
        .map(|resource| (resource.addon_id.clone(), resource))
        .collect();
    let mut report = ReconcileReport {
        unreadable_here: scan.unreadable,
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
    report.unknown_there = here
        .values()
        .filter(|resource| resource.is_active() && !listed.contains(resource.addon_id.as_str()))
        .map(|resource| resource.addon_id.clone())
        .collect();
    Ok(report)
}
