//! The marketplace-neutral lifecycle: provision once per marketplace id,
//! change plans without losing concurrent updates, deprovision
//! idempotently, audit every change. Each marketplace's protocol module
//! (`crate::clevercloud`, `crate::heroku`) turns its wire format into these
//! calls and their answers back into its own.

use crate::config::{self, ConfigError, Environment};
use crate::http::ApiError;
use crate::model::{
    AuditAction, AuditEvent, ConfigMap, Platform, Resource, ResourceStatus, SubjectKind, SyncMark, Timestamp,
};
use crate::provisioner::{ProvisionContext, Provisioner, ProvisionerError, Provisioning, VendorProvisioner};
use crate::refresh::SecretSource;
use crate::store::{
    change_resource, AlsoWrite, Change, CreateOutcome, DynamoStore, ProvisionStore, ResourceWriter,
    StoreError, UpdateOutcome,
};
use lambda_http::http::StatusCode;
use std::future::Future;

/// What every lifecycle function starts from, whatever the marketplace:
/// its configuration (the secret's values over the environment's), the
/// DynamoDB store on `TABLE_NAME`, and the vendor's provisioner
/// (`PROVISIONER_*`, or `RESOURCE_BASE_URL`), its signing secrets
/// following the secret.
pub async fn parts_from_env(
    function: &str,
) -> Result<(Option<SecretSource>, Environment, DynamoStore, VendorProvisioner), ConfigError> {
    parts_from_sdk(&config::aws_sdk_config(function).await, function).await
}

/// [`parts_from_env`] on an SDK configuration the caller loaded (and uses
/// for its other clients too).
pub async fn parts_from_sdk(
    aws: &aws_config::SdkConfig,
    function: &str,
) -> Result<(Option<SecretSource>, Environment, DynamoStore, VendorProvisioner), ConfigError> {
    let (source, environment) = SecretSource::load(aws, function).await?;
    let (table, mut provisioner) = {
        let lookup = environment.lookup();
        let addon_id = config::required(&lookup, "ADDON_ID")?;
        let table = config::required(&lookup, "TABLE_NAME")?;
        (table, VendorProvisioner::from_lookup(&lookup, &addon_id)?)
    };
    provisioner.follow_secret(source.clone(), &environment)?;
    let store = DynamoStore::ready(aws, table).await;
    Ok((source, environment, store, provisioner))
}

/// Checks a call from the vendor's service to the stack (the completion
/// route, the usage route), signed as this provider signs its calls to it
/// (docs/provisioner.md, "The signature"). The path names the resource,
/// so it is under the signature: a call signed for one resource never acts
/// on another. 404 when no vendor service is configured, 401 for a bad
/// signature.
pub async fn verify_vendor_call<P: Provisioner>(
    provisioner: &P,
    request: &lambda_http::Request,
) -> Result<(), ApiError> {
    let header = request
        .headers()
        .get(crate::provisioner::signature::HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let call = crate::provisioner::signature::Signed::Call {
        method: request.method().as_str(),
        path: request.uri().path(),
        body: request.body().as_ref(),
    };
    match provisioner
        .verify_vendor_call(header, call, Timestamp::now().unix())
        .await
    {
        None => Err(ApiError::not_found(
            "no vendor service is configured to call this stack",
        )),
        Some(Err(err)) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            err.to_string(),
        )),
        Some(Ok(())) => Ok(()),
    }
}

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
    #[error("the add-on is still being provisioned; try again once it is ready")]
    StillProvisioning,
    #[error("the resource is not waiting for its provision to finish (it is {0})")]
    NotProvisioning(&'static str),
    #[error("the resource was provisioned with another config")]
    ProvisionedOtherwise,
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
    #[error("what the provision was decided on changed while it ran; decide again")]
    Changed,
}

/// A resource id this provider could have issued; anything else cannot exist,
/// and is answered 404 without a lookup (DynamoDB rejects oversized keys).
pub fn is_valid_resource_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// What the lifecycle needs to know of the marketplace it serves.
#[derive(Debug, Clone)]
pub struct Marketplace {
    pub platform: Platform,
    /// The audit `actor` for changes this marketplace asked for.
    pub actor: &'static str,
    /// The config vars the vendor's provisioner answers, in the manifest's
    /// order: a marketplace gets exactly these, no more, no less.
    pub config_vars: Vec<String>,
    /// Plan slugs the vendor sells here; `None` accepts any.
    pub plans: Option<Vec<String>>,
    /// Whether the marketplace can wait for a provision the vendor's
    /// service finishes later (Heroku's 202; docs/provisioner.md).
    pub asynchronous: bool,
}

impl Marketplace {
    pub fn accepts_plan(&self, plan: &str) -> bool {
        self.plans
            .as_ref()
            .is_none_or(|plans| plans.iter().any(|allowed| allowed == plan))
    }
}

pub struct Lifecycle<S, P> {
    store: S,
    provisioner: P,
    marketplace: Marketplace,
}

impl<S, P: Provisioner> Lifecycle<S, P> {
    pub fn new(store: S, provisioner: P, marketplace: Marketplace) -> Self {
        Self {
            store,
            provisioner,
            marketplace,
        }
    }

    pub fn marketplace(&self) -> &Marketplace {
        &self.marketplace
    }

    /// The vendor's provisioner, to check its calls.
    pub fn provisioner(&self) -> &P {
        &self.provisioner
    }

    fn check_plan(&self, plan: &str) -> Result<(), LifecycleError> {
        if self.marketplace.accepts_plan(plan) {
            Ok(())
        } else {
            Err(LifecycleError::PlanNotAllowed(plan.to_string()))
        }
    }

    /// The marketplace gets exactly the manifest's config vars, no more, no less.
    fn check_config(&self, config: &ConfigMap) -> Result<(), LifecycleError> {
        let mut expected = self.marketplace.config_vars.clone();
        expected.sort();
        let returned: Vec<String> = config.names().map(str::to_string).collect();
        if returned == expected {
            Ok(())
        } else {
            Err(LifecycleError::ConfigMismatch { returned, expected })
        }
    }

    /// An audit event naming the marketplace: the lifecycle events carry
    /// it, so the vendor's systems tell a Heroku add-on from a Clever Cloud one.
    fn event(&self, id: &str, action: AuditAction, now: &Timestamp) -> AuditEvent {
        AuditEvent::new(SubjectKind::Resource, id, action, self.marketplace.actor, now)
            .with_detail("marketplace", self.marketplace.platform.as_str())
    }
}

/// The 202 `{id, message}` a marketplace that can wait (Heroku, Scalingo)
/// gets while the vendor's service finishes provisioning `resource`; it
/// hears of the config later, through the platform sync.
pub fn pending_answer(resource: &Resource) -> lambda_http::Response<lambda_http::Body> {
    crate::http::json_response(
        StatusCode::ACCEPTED,
        &serde_json::json!({
            "id": resource.id,
            "message": format!("Your add-on is being provisioned on plan {}.", resource.plan),
        }),
    )
}

/// A provision's answer: the resource, ready or still provisioning.
fn still_live(resource: Resource) -> Result<Resource, LifecycleError> {
    match resource.status {
        ResourceStatus::Active | ResourceStatus::Provisioning | ResourceStatus::Suspended => Ok(resource),
        _ => Err(LifecycleError::AlreadyDeprovisioned),
    }
}

/// A resource a marketplace may change (its plan, or suspend or resume
/// it): active, or suspended (the customer may move to another plan to be
/// resumed); one still provisioning must wait.
fn changeable(current: Option<Resource>) -> Result<Resource, LifecycleError> {
    let current = current
        .filter(|r| {
            matches!(
                r.status,
                ResourceStatus::Active | ResourceStatus::Provisioning | ResourceStatus::Suspended
            )
        })
        .ok_or(LifecycleError::NotFound)?;
    if current.status == ResourceStatus::Provisioning {
        return Err(LifecycleError::StillProvisioning);
    }
    Ok(current)
}

impl<S: ProvisionStore, P: Provisioner> Lifecycle<S, P> {
    /// Provisions `resource` (built by the marketplace's protocol, its
    /// config still empty), or returns the one already provisioned for the
    /// same marketplace id (the platforms deliver at least once).
    ///
    /// One round trip for a new add-on: the transaction's claim condition
    /// tells a redelivery from a new add-on, so nothing is read first (a
    /// redelivery costs the transaction and one read of the winner).
    pub async fn provision(&self, resource: Resource, now: &Timestamp) -> Result<Resource, LifecycleError> {
        let (resource, _) = self.provision_with(resource, now, &[]).await?;
        Ok(resource)
    }

    /// [`Self::provision`], writing `also` in the same transaction as a new
    /// resource (`true`), or not at all when the resource was provisioned
    /// before (`false`). `LifecycleError::Changed`: a condition of `also` no
    /// longer held, and nothing was written.
    pub async fn provision_with(
        &self,
        mut resource: Resource,
        now: &Timestamp,
        also: &[AlsoWrite<'_>],
    ) -> Result<(Resource, bool), LifecycleError> {
        self.check_plan(&resource.plan)?;
        debug_assert_eq!(resource.platform, self.marketplace.platform);
        let context = ProvisionContext {
            resource: &resource,
            email: None,
        };
        let outcome = if self.marketplace.asynchronous {
            self.provisioner.provision_or_pending(context).await?
        } else {
            Provisioning::Ready(self.provisioner.provision(context).await?)
        };
        let action = match outcome {
            Provisioning::Ready(config) => {
                self.check_config(&config)?;
                resource.config = config;
                AuditAction::Provisioned
            }
            Provisioning::Pending => {
                // Nothing to give the marketplace yet: the vendor calls
                // back ([`Lifecycle::finish_provision`]), then the sync
                // tells the marketplace; until then the sync watches the
                // marketplace's deadline.
                resource.status = ResourceStatus::Provisioning;
                resource.config = ConfigMap::default();
                resource.sync = SyncMark::owed(now);
                AuditAction::ProvisionStarted
            }
        };
        let event = self
            .event(&resource.id, action, now)
            .with_detail("plan", &resource.plan);
        match self.store.create_resource(&resource, &event, also).await? {
            CreateOutcome::Created => {
                tracing::info!(resource_id = %resource.id, plan = %resource.plan, status = ?resource.status, "resource provisioned");
                Ok((still_live(resource)?, true))
            }
            CreateOutcome::Existing(existing) => {
                tracing::info!(resource_id = %existing.id, "provision redelivered; answering with the existing resource");
                Ok((still_live(*existing)?, false))
            }
            CreateOutcome::Stale => Err(LifecycleError::Changed),
        }
    }
}

impl<S: ResourceWriter, P: Provisioner> Lifecycle<S, P> {
    /// A version-conditional change of one of this marketplace's resources
    /// (see [`change_resource`]); another marketplace's resource is not its
    /// to change, and is as unknown to it as an id never issued.
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
        let platform = self.marketplace.platform;
        change_resource(&self.store, id, VERSION_ATTEMPTS, |current: Option<Resource>| {
            decide(current.filter(|r| r.platform == platform))
        })
        .await?
        .ok_or(LifecycleError::Contended)
    }

    /// Moves active resource `id` to `plan` and answers its config then.
    /// `addon_id`, when the marketplace sends it, must be the resource's.
    /// The current plan again is a redelivery: answered, nothing written.
    pub async fn change_plan(
        &self,
        id: &str,
        plan: &str,
        addon_id: Option<&str>,
    ) -> Result<ConfigMap, LifecycleError> {
        match self.change_plan_as(id, plan, addon_id, false).await? {
            Provisioning::Ready(config) => Ok(config),
            // Never asked for: the vendor was called as one that answers now.
            Provisioning::Pending => Err(LifecycleError::Provisioner(ProvisionerError::Unavailable(
                "the vendor's service answered 202 to a plan change this marketplace needs at once".into(),
            ))),
        }
    }

    /// As [`Self::change_plan`], for a marketplace that can wait for the
    /// vendor's service to finish the change (Scalingo's 202): `Pending`
    /// records the new plan, the config as it was.
    pub async fn change_plan_or_pending(&self, id: &str, plan: &str) -> Result<Provisioning, LifecycleError> {
        self.change_plan_as(id, plan, None, true).await
    }

    async fn change_plan_as(
        &self,
        id: &str,
        plan: &str,
        addon_id: Option<&str>,
        may_wait: bool,
    ) -> Result<Provisioning, LifecycleError> {
        self.check_plan(plan)?;
        self.change(id, |current| {
            self.plan_change_of(current, plan, addon_id, may_wait)
        })
        .await
    }

    /// A plan change's decision on `current`: the vendor asked, the
    /// resource to write (or the answer when already on `plan`).
    async fn plan_change_of(
        &self,
        current: Option<Resource>,
        plan: &str,
        addon_id: Option<&str>,
        may_wait: bool,
    ) -> Result<Change<Provisioning>, LifecycleError> {
        let current = changeable(current)?;
        if addon_id.is_some_and(|addon_id| current.addon_id != addon_id) {
            return Err(LifecycleError::AddonIdMismatch);
        }
        if current.plan == plan {
            return Ok(Change::Done(Provisioning::Ready(current.config)));
        }
        let outcome = if may_wait {
            self.provisioner.change_plan_or_pending(&current, plan).await?
        } else {
            Provisioning::Ready(self.provisioner.change_plan(&current, plan).await?)
        };
        let config = match &outcome {
            Provisioning::Ready(config) => {
                self.check_config(config)?;
                config.clone()
            }
            Provisioning::Pending => current.config.clone(),
        };
        let now = Timestamp::now();
        let mut event = self
            .event(&current.id, AuditAction::PlanChanged, &now)
            .with_detail("from_plan", &current.plan)
            .with_detail("to_plan", plan);
        if outcome == Provisioning::Pending {
            event = event.with_detail("finishing", "later");
        }
        // A plan change that changed the config is a new config version,
        // owed to the marketplace's config API like a rotation: the answer
        // carries it too, but not every marketplace documents applying a
        // plan change's config (docs/sync.md).
        let (config_version, sync) = if config == current.config {
            (current.config_version, current.sync.clone())
        } else {
            (current.config_version + 1, current.sync.still_owed(&now))
        };
        let updated = Resource {
            plan: plan.to_string(),
            config,
            config_version,
            sync,
            version: current.version + 1,
            updated_at: now.to_string(),
            ..current
        };
        Ok(Change::Write(updated, event, outcome))
    }

    /// Suspends (`suspended`) or resumes resource `id`, telling the
    /// vendor's service first. Already so is a redelivery: `false`, nothing
    /// written, the vendor not called again.
    pub async fn set_suspended(&self, id: &str, suspended: bool) -> Result<bool, LifecycleError> {
        self.change(id, |current| async move {
            let current = changeable(current)?;
            let target = if suspended {
                ResourceStatus::Suspended
            } else {
                ResourceStatus::Active
            };
            if current.status == target {
                return Ok(Change::Done(false));
            }
            self.provisioner.set_suspended(&current, suspended).await?;
            let now = Timestamp::now();
            let action = if suspended {
                AuditAction::Suspended
            } else {
                AuditAction::Resumed
            };
            let event = self.event(id, action, &now);
            let updated = Resource {
                status: target,
                version: current.version + 1,
                updated_at: now.to_string(),
                ..current
            };
            Ok(Change::Write(updated, event, true))
        })
        .await
    }

    /// The marketplace ended resource `id`'s agreement (AWS Marketplace's
    /// `Purchase Agreement Ended`): it stops signing in, and its last
    /// usage may still be sent until the deprovision that follows. Already
    /// ending or gone is a redelivery: `false`, nothing written.
    pub async fn mark_ending(&self, id: &str) -> Result<bool, LifecycleError> {
        self.change(id, |current| async move { self.ending_of(current) })
            .await
    }

    fn ending_of(&self, current: Option<Resource>) -> Result<Change<bool>, LifecycleError> {
        let current = current.ok_or(LifecycleError::NotFound)?;
        if !matches!(current.status, ResourceStatus::Active | ResourceStatus::Suspended) {
            return Ok(Change::Done(false));
        }
        let now = Timestamp::now();
        let event = self.event(&current.id, AuditAction::Ending, &now);
        let updated = Resource {
            status: ResourceStatus::Ending,
            version: current.version + 1,
            updated_at: now.to_string(),
            ..current
        };
        Ok(Change::Write(updated, event, true))
    }

    /// The vendor's service finished provision `id` with `config`: the
    /// resource becomes active, and the marketplace is owed the config and
    /// word that it is ready (the sync's: `crate::sync`). Idempotent: the
    /// same config again changes nothing.
    pub async fn finish_provision(&self, id: &str, config: ConfigMap) -> Result<Resource, LifecycleError> {
        self.check_config(&config)?;
        let config = &config;
        self.change(id, |current| async move {
            let current = current.ok_or(LifecycleError::NotFound)?;
            match current.status {
                ResourceStatus::Provisioning => {}
                ResourceStatus::Active if current.config == *config => return Ok(Change::Done(current)),
                ResourceStatus::Active => return Err(LifecycleError::ProvisionedOtherwise),
                ResourceStatus::Deprovisioned => {
                    return Err(LifecycleError::NotProvisioning("deprovisioned"))
                }
                ResourceStatus::Expired => return Err(LifecycleError::NotProvisioning("expired")),
                ResourceStatus::Unconfirmed => return Err(LifecycleError::NotProvisioning("unconfirmed")),
                ResourceStatus::Suspended => return Err(LifecycleError::NotProvisioning("suspended")),
                ResourceStatus::Ending => return Err(LifecycleError::NotProvisioning("ending")),
            }
            let now = Timestamp::now();
            let event = self
                .event(id, AuditAction::Provisioned, &now)
                .with_detail("plan", &current.plan);
            let updated = Resource {
                status: ResourceStatus::Active,
                config: config.clone(),
                config_version: 1,
                // Version 1 is owed: the marketplace's answer carried none.
                pushed_config_version: 0,
                announce_ready: true,
                sync: current.sync.still_owed(&now),
                version: current.version + 1,
                updated_at: now.to_string(),
                ..current
            };
            Ok(Change::Write(updated.clone(), event, updated))
        })
        .await
    }

    /// Marks the resource deprovisioned (the record stays, with the time).
    /// A repeat succeeds; an id that never existed is `NotFound`.
    pub async fn deprovision(&self, id: &str) -> Result<(), LifecycleError> {
        if !self.provisioner.deprovision_reads_resource() && is_valid_resource_id(id) {
            // One round trip for an active resource; only when its condition
            // fails is the resource read, to tell a repeat from an unknown id.
            let now = Timestamp::now();
            let event = self.event(id, AuditAction::Deprovisioned, &now);
            if self
                .store
                .deprovision_unread(id, self.marketplace.platform, &now, &event)
                .await?
                == UpdateOutcome::Updated
            {
                tracing::info!(resource_id = %id, "resource deprovisioned");
                return Ok(());
            }
        }
        self.change(id, |current| self.deprovision_of(current)).await
    }

    async fn deprovision_of(&self, current: Option<Resource>) -> Result<Change<()>, LifecycleError> {
        let current = current.ok_or(LifecycleError::NotFound)?;
        if current.status == ResourceStatus::Deprovisioned {
            return Ok(Change::Done(()));
        }
        // A provision still pending, or given up on, goes too: the
        // vendor's service hears of it (again; it answers 404 if gone).
        self.provisioner.deprovision(&current).await?;
        let now = Timestamp::now();
        let event = self.event(&current.id, AuditAction::Deprovisioned, &now);
        let updated = Resource {
            status: ResourceStatus::Deprovisioned,
            deprovisioned_at: Some(now.to_string()),
            version: current.version + 1,
            updated_at: now.to_string(),
            ..current
        };
        Ok(Change::Write(updated, event, ()))
    }

    /// `action` on `current`, which the caller read with the rest of what
    /// it decides on, written with `also` in one transaction (AWS
    /// Marketplace's events: docs/aws-marketplace.md). `Ok(false)`: the
    /// resource needs no change, and nothing was written. `Changed`: the
    /// resource or what `also` holds changed since it was read, and
    /// nothing was written.
    pub async fn apply_with(
        &self,
        current: Option<Resource>,
        action: ResourceAction<'_>,
        also: &[AlsoWrite<'_>],
    ) -> Result<bool, LifecycleError> {
        let current = current.filter(|resource| resource.platform == self.marketplace.platform);
        let read_version = current.as_ref().map_or(0, |resource| resource.version);
        let (updated, event) = match action {
            ResourceAction::ChangePlan(plan) => {
                self.check_plan(plan)?;
                match self.plan_change_of(current, plan, None, false).await? {
                    Change::Done(_) => return Ok(false),
                    Change::Write(updated, event, _) => (updated, event),
                }
            }
            ResourceAction::Ending => match self.ending_of(current)? {
                Change::Done(_) => return Ok(false),
                Change::Write(updated, event, _) => (updated, event),
            },
            ResourceAction::Deprovision => match self.deprovision_of(current).await? {
                Change::Done(_) => return Ok(false),
                Change::Write(updated, event, _) => (updated, event),
            },
        };
        match self
            .store
            .update_resource(&updated, read_version, &event, also)
            .await?
        {
            UpdateOutcome::Updated => {
                tracing::info!(resource_id = %updated.id, action = ?event.action, "resource changed");
                Ok(true)
            }
            UpdateOutcome::Stale => Err(LifecycleError::Changed),
        }
    }
}

/// What a marketplace's event asks of a resource ([`Lifecycle::apply_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceAction<'a> {
    ChangePlan(&'a str),
    Ending,
    Deprovision,
}

/// Every marketplace hears the same statuses: 404 for an unknown id, 422
/// for a plan or an answer it cannot have, 503 with `Retry-After` for
/// anything worth retrying.
impl From<LifecycleError> for ApiError {
    fn from(err: LifecycleError) -> Self {
        let message = err.to_string();
        match err {
            LifecycleError::NotFound => ApiError::not_found(message),
            LifecycleError::AddonIdMismatch => ApiError::bad_request("addon_id_mismatch", message),
            LifecycleError::PlanNotAllowed(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "plan_not_allowed", message)
            }
            LifecycleError::AlreadyDeprovisioned => {
                ApiError::new(StatusCode::CONFLICT, "deprovisioned", message)
            }
            LifecycleError::StillProvisioning => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "still_provisioning", message)
            }
            LifecycleError::NotProvisioning(_) | LifecycleError::ProvisionedOtherwise => {
                ApiError::new(StatusCode::CONFLICT, "not_provisioning", message)
            }
            LifecycleError::Store(StoreError::Unavailable(detail)) => {
                tracing::warn!(%detail, "storage unavailable");
                ApiError::unavailable("storage_unavailable", "storage is unavailable; retry later")
            }
            LifecycleError::Provisioner(ProvisionerError::Refused { status, message }) => {
                tracing::info!(vendor_status = status, "the vendor's service refused");
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "vendor_refused", message)
            }
            LifecycleError::Provisioner(ProvisionerError::Unavailable(detail)) => {
                tracing::warn!(%detail, "provisioner failed");
                ApiError::unavailable(
                    "provisioner_unavailable",
                    "the service could not act on the resource; retry later",
                )
            }
            LifecycleError::Contended | LifecycleError::Changed => ApiError::unavailable("busy", message),
            LifecycleError::Store(StoreError::Internal(_)) | LifecycleError::ConfigMismatch { .. } => {
                tracing::error!(error = %message, "lifecycle request failed");
                ApiError::internal()
            }
        }
    }
}
