//! The lifecycle rules: provision once per add-on id, change plans without
//! losing concurrent updates, deprovision idempotently, audit every change.

use super::protocol::{
    DeprovisionResponse, PlanChangeRequest, PlanChangeResponse, ProvisionRequest, ProvisionResponse,
};
use super::ACTOR;
use crate::config::CleverCloudConfig;
use crate::model::{
    AuditAction, AuditEvent, ConfigMap, Platform, Resource, ResourceStatus, SubjectKind, SyncMark, Timestamp,
};
use crate::provisioner::{ProvisionContext, Provisioner, ProvisionerError};
use crate::secret::random_hex;
use crate::store::{
    change_resource, Change, CreateOutcome, ProvisionStore, ResourceWriter, StoreError, UpdateOutcome,
};
use std::future::Future;

/// How often a plan change or deprovision re-reads and retries after losing
/// a race on the resource's version. Each lost round means another writer
/// won, so this bounds the number of concurrent writers served in one call.
const VERSION_ATTEMPTS: u32 = 32;

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("no active resource with this id")]
    NotFound,
    #[error("addon_id does not match the resource's add-on id")]
    AddonIdMismatch,
    #[error("plan {0:?} is not one of this add-on's plans")]
    PlanNotAllowed(String),
    #[error("this add-on id was provisioned and has since been deprovisioned")]
    AlreadyDeprovisioned,
    #[error(transparent)]
    Provisioner(#[from] ProvisionerError),
    #[error("the provisioner returned config vars {returned:?}, but the manifest lists {expected:?}")]
    ConfigMismatch {
        returned: Vec<String>,
        expected: Vec<String>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the resource kept changing under concurrent requests")]
    Contended,
}

/// A resource id this provider could have issued; anything else cannot exist,
/// and is answered 404 without a lookup (DynamoDB rejects oversized keys).
pub fn is_valid_resource_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub struct Lifecycle<S, P> {
    store: S,
    provisioner: P,
    config: CleverCloudConfig,
}

impl<S, P: Provisioner> Lifecycle<S, P> {
    pub fn new(store: S, provisioner: P, config: CleverCloudConfig) -> Self {
        Self {
            store,
            provisioner,
            config,
        }
    }

    pub fn config(&self) -> &CleverCloudConfig {
        &self.config
    }

    fn check_plan(&self, plan: &str) -> Result<(), LifecycleError> {
        if self.config.accepts_plan(plan) {
            Ok(())
        } else {
            Err(LifecycleError::PlanNotAllowed(plan.to_string()))
        }
    }

    /// The marketplace gets exactly the manifest's config vars, no more, no less.
    fn check_config(&self, config: &ConfigMap) -> Result<(), LifecycleError> {
        let mut expected = self.config.config_vars.clone();
        expected.sort();
        let returned: Vec<String> = config.names().map(str::to_string).collect();
        if returned == expected {
            Ok(())
        } else {
            Err(LifecycleError::ConfigMismatch { returned, expected })
        }
    }
}

fn provision_response(resource: Resource) -> Result<ProvisionResponse, LifecycleError> {
    if !resource.is_active() {
        return Err(LifecycleError::AlreadyDeprovisioned);
    }
    Ok(ProvisionResponse {
        id: resource.id,
        config: resource.config,
        message: format!("Your add-on is ready on plan {}.", resource.plan),
    })
}

impl<S: ProvisionStore, P: Provisioner> Lifecycle<S, P> {
    /// Provisions a resource, or returns the one already provisioned for the
    /// same `addon_id` (the platform delivers at least once).
    ///
    /// One round trip for a new add-on: the transaction's claim condition
    /// tells a redelivery from a new add-on, so nothing is read first (a
    /// redelivery costs the transaction and one read of the winner).
    pub async fn provision(&self, request: ProvisionRequest) -> Result<ProvisionResponse, LifecycleError> {
        self.check_plan(&request.plan)?;
        let now = Timestamp::now();
        let mut resource = Resource {
            owner_id: request.owner_id,
            owner_name: request.owner_name,
            user_id: request.user_id,
            region: request.region,
            callback_url: request.callback_url,
            options: request.options,
            // Clever Cloud's vendor details and the owner's Cloudmore
            // organisation are owed (crate::sync).
            sync: SyncMark::owed(&now),
            ..Resource::new(
                format!("res_{}", random_hex(16)),
                Platform::CleverCloud,
                request.addon_id,
                request.plan,
                ConfigMap::default(),
                &now,
            )
        };
        resource.config = self
            .provisioner
            .provision(ProvisionContext {
                resource: &resource,
                email: None,
            })
            .await?;
        self.check_config(&resource.config)?;
        let event = AuditEvent::new(
            SubjectKind::Resource,
            &resource.id,
            AuditAction::Provisioned,
            ACTOR,
            &now,
        )
        .with_detail("plan", &resource.plan);
        match self.store.create_resource(&resource, &event).await? {
            CreateOutcome::Created => {
                tracing::info!(resource_id = %resource.id, plan = %resource.plan, "resource provisioned");
                provision_response(resource)
            }
            CreateOutcome::Existing(existing) => {
                tracing::info!(resource_id = %existing.id, "provision redelivered; answering with the existing resource");
                provision_response(*existing)
            }
        }
    }
}

impl<S: ResourceWriter, P: Provisioner> Lifecycle<S, P> {
    /// A version-conditional change of a Clever Cloud resource (see
    /// [`change_resource`]); only resources Clever Cloud sold are its to change.
    async fn change<T, Decision>(
        &self,
        id: &str,
        mut decide: impl FnMut(Option<Resource>) -> Decision,
    ) -> Result<T, LifecycleError>
    where
        Decision: Future<Output = Result<Change<T>, LifecycleError>>,
    {
        if !is_valid_resource_id(id) {
            return Err(LifecycleError::NotFound);
        }
        change_resource(&self.store, id, VERSION_ATTEMPTS, |current: Option<Resource>| {
            decide(current.filter(|r| r.platform == Platform::CleverCloud))
        })
        .await?
        .ok_or(LifecycleError::Contended)
    }

    pub async fn change_plan(
        &self,
        id: &str,
        request: PlanChangeRequest,
    ) -> Result<PlanChangeResponse, LifecycleError> {
        self.check_plan(&request.plan)?;
        let message = &format!("Your add-on is now on plan {}.", request.plan);
        let request = &request;
        self.change(id, |current| async move {
            let current = current
                .filter(Resource::is_active)
                .ok_or(LifecycleError::NotFound)?;
            if current.addon_id != request.addon_id {
                return Err(LifecycleError::AddonIdMismatch);
            }
            if current.plan == request.plan {
                // A redelivery of a change already applied: nothing to write.
                let config = current.config;
                return Ok(Change::Done(PlanChangeResponse {
                    config,
                    message: message.clone(),
                }));
            }
            let config = self.provisioner.change_plan(&current, &request.plan).await?;
            self.check_config(&config)?;
            let now = Timestamp::now();
            let event = AuditEvent::new(SubjectKind::Resource, id, AuditAction::PlanChanged, ACTOR, &now)
                .with_detail("from_plan", &current.plan)
                .with_detail("to_plan", &request.plan);
            let answer = PlanChangeResponse {
                config: config.clone(),
                message: message.clone(),
            };
            let updated = Resource {
                plan: request.plan.clone(),
                config,
                version: current.version + 1,
                updated_at: now.to_string(),
                ..current
            };
            Ok(Change::Write(updated, event, answer))
        })
        .await
    }

    /// Marks the resource deprovisioned (the record stays, with the time).
    /// A repeat answers success; an id that never existed is `NotFound`.
    pub async fn deprovision(&self, id: &str) -> Result<DeprovisionResponse, LifecycleError> {
        let done = || DeprovisionResponse {
            message: "The add-on was deprovisioned.".to_string(),
        };
        if !self.provisioner.deprovision_reads_resource() && is_valid_resource_id(id) {
            // One round trip for an active resource; only when its condition
            // fails is the resource read, to tell a repeat (200) from an
            // unknown id (404).
            let now = Timestamp::now();
            let event = AuditEvent::new(SubjectKind::Resource, id, AuditAction::Deprovisioned, ACTOR, &now);
            if self.store.deprovision_unread(id, &now, &event).await? == UpdateOutcome::Updated {
                tracing::info!(resource_id = %id, "resource deprovisioned");
                return Ok(done());
            }
        }
        self.change(id, |current| async move {
            let current = current.ok_or(LifecycleError::NotFound)?;
            if !current.is_active() {
                return Ok(Change::Done(done()));
            }
            self.provisioner.deprovision(&current).await?;
            let now = Timestamp::now();
            let event = AuditEvent::new(SubjectKind::Resource, id, AuditAction::Deprovisioned, ACTOR, &now);
            let updated = Resource {
                status: ResourceStatus::Deprovisioned,
                deprovisioned_at: Some(now.to_string()),
                version: current.version + 1,
                updated_at: now.to_string(),
                ..current
            };
            Ok(Change::Write(updated, event, done()))
        })
        .await
    }
}
