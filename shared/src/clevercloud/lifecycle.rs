//! Clever Cloud's bodies in and answers out of the marketplace-neutral
//! lifecycle (`crate::lifecycle`).

use super::protocol::{
    DeprovisionResponse, PlanChangeRequest, PlanChangeResponse, ProvisionRequest, ProvisionResponse,
};
use super::ACTOR;
use crate::config::CleverCloudConfig;
use crate::lifecycle::{self, LifecycleError, Marketplace};
use crate::model::{ConfigMap, Platform, Resource, SyncMark, Timestamp};
use crate::provisioner::Provisioner;
use crate::secret::random_hex;
use crate::store::{ProvisionStore, ResourceWriter};

/// The lifecycle as Clever Cloud sees it.
pub struct Lifecycle<S, P>(lifecycle::Lifecycle<S, P>);

/// Clever Cloud's share of the manifest: its config vars and plans.
pub fn marketplace(config: &CleverCloudConfig) -> Marketplace {
    Marketplace {
        platform: Platform::CleverCloud,
        actor: ACTOR,
        config_vars: config.config_vars.clone(),
        plans: config.plans.clone(),
        // Clever Cloud waits for no provision: a vendor's "pending" is a 503,
        // and Clever Cloud's retry asks again.
        asynchronous: false,
    }
}

impl<S, P: Provisioner> Lifecycle<S, P> {
    pub fn new(store: S, provisioner: P, config: CleverCloudConfig) -> Self {
        Self(lifecycle::Lifecycle::new(
            store,
            provisioner,
            marketplace(&config),
        ))
    }
}

impl<S: ProvisionStore, P: Provisioner> Lifecycle<S, P> {
    /// Provisions a resource, or answers with the one already provisioned
    /// for the same `addon_id` (Clever Cloud delivers at least once).
    pub async fn provision(&self, request: ProvisionRequest) -> Result<ProvisionResponse, LifecycleError> {
        let now = Timestamp::now();
        let resource = Resource {
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
        let resource = self.0.provision(resource, &now).await?;
        Ok(ProvisionResponse {
            message: format!("Your add-on is ready on plan {}.", resource.plan),
            id: resource.id,
            config: resource.config,
        })
    }
}

impl<S: ResourceWriter, P: Provisioner> Lifecycle<S, P> {
    pub async fn change_plan(
        &self,
        id: &str,
        request: PlanChangeRequest,
    ) -> Result<PlanChangeResponse, LifecycleError> {
        let config = self
            .0
            .change_plan(id, &request.plan, Some(&request.addon_id))
            .await?;
        Ok(PlanChangeResponse {
            config,
            message: format!("Your add-on is now on plan {}.", request.plan),
        })
    }

    /// A repeat answers success; an id that never existed is `NotFound`.
    pub async fn deprovision(&self, id: &str) -> Result<DeprovisionResponse, LifecycleError> {
        self.0.deprovision(id).await?;
        Ok(DeprovisionResponse {
            message: "The add-on was deprovisioned.".to_string(),
        })
    }
}
