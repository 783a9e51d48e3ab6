//! The vendor's extension point: what a new resource's config values are, and
//! what happens on the vendor's side when a plan changes or a resource goes.
//!
//! Delivery from the marketplaces is at least once, and concurrent duplicate
//! deliveries race; the store makes sure only one resource is ever recorded,
//! but a `Provisioner` may still be called more than once for the same
//! marketplace id. Implementations must therefore be idempotent (or free of
//! side effects, as the default is).

use crate::config::{self, ConfigError};
use crate::model::{ConfigMap, Resource};
use crate::secret::random_hex;
use std::collections::BTreeMap;
use std::future::{ready, Future};

/// What the provisioner is told about a resource being created.
#[derive(Debug, Clone, Copy)]
pub struct ProvisionContext<'a> {
    /// This provider's id for the new resource.
    pub resource_id: &'a str,
    pub plan: &'a str,
    /// Marketplace-specific options (Clever Cloud's `options`).
    pub options: &'a BTreeMap<String, String>,
}

/// The vendor's system could not do what was asked; the caller answers 503 so
/// the marketplace retries, and nothing is stored.
#[derive(Debug, thiserror::Error)]
#[error("provisioner failed: {0}")]
pub struct ProvisionerError(pub String);

pub trait Provisioner: Send + Sync {
    /// Config values for a new resource: exactly one per configured config var.
    fn provision(
        &self,
        context: ProvisionContext<'_>,
    ) -> impl Future<Output = Result<ConfigMap, ProvisionerError>> + Send;

    /// Config values after a plan change. By default they stay as they are.
    fn change_plan(
        &self,
        resource: &Resource,
        _new_plan: &str,
    ) -> impl Future<Output = Result<ConfigMap, ProvisionerError>> + Send {
        ready(Ok(resource.config.clone()))
    }

    /// Fresh secret values for a resource's config (credential rotation).
    /// By default rotation is not supported.
    fn rotate(
        &self,
        _resource: &Resource,
    ) -> impl Future<Output = Result<ConfigMap, ProvisionerError>> + Send {
        ready(Err(ProvisionerError(
            "this provisioner cannot rotate credentials".into(),
        )))
    }

    /// Releases the vendor-side resource. Called before the record is marked
    /// deprovisioned, and again if the marketplace retries after a failure.
    fn deprovision(&self, _resource: &Resource) -> impl Future<Output = Result<(), ProvisionerError>> + Send {
        ready(Ok(()))
    }
}

/// Bytes of randomness in each generated secret (256 bits).
const SECRET_BYTES: usize = 32;

/// Gives every config var ending in `_URL` the value `RESOURCE_BASE_URL/<id>`
/// and every other one a fresh random secret.
#[derive(Debug, Clone)]
pub struct DefaultProvisioner {
    resource_base_url: String,
    config_vars: Vec<String>,
}

impl DefaultProvisioner {
    /// `ADDON_CONFIG_VARS` (checked against `addon_id`) and `RESOURCE_BASE_URL`.
    pub fn from_lookup(
        lookup: &impl Fn(&str) -> Option<String>,
        addon_id: &str,
    ) -> Result<Self, ConfigError> {
        let config_vars = config::config_vars(lookup, addon_id)?;
        let base_url = config::base_url(
            "RESOURCE_BASE_URL",
            config::required(lookup, "RESOURCE_BASE_URL")?,
        )?;
        Ok(Self::new(base_url, config_vars))
    }

    pub fn new(resource_base_url: impl Into<String>, config_vars: Vec<String>) -> Self {
        Self {
            resource_base_url: resource_base_url.into(),
            config_vars,
        }
    }
}

impl DefaultProvisioner {
    /// `*_URL` vars keep `RESOURCE_BASE_URL/<id>`; every other var gets a fresh secret.
    fn config_for(&self, resource_id: &str) -> ConfigMap {
        ConfigMap(
            self.config_vars
                .iter()
                .map(|var| {
                    let value = if var.ends_with("_URL") {
                        format!("{}/{}", self.resource_base_url, resource_id)
                    } else {
                        random_hex(SECRET_BYTES)
                    };
                    (var.clone(), value)
                })
                .collect(),
        )
    }
}

impl Provisioner for DefaultProvisioner {
    fn rotate(
        &self,
        resource: &Resource,
    ) -> impl Future<Output = Result<ConfigMap, ProvisionerError>> + Send {
        ready(Ok(self.config_for(&resource.id)))
    }

    fn provision(
        &self,
        context: ProvisionContext<'_>,
    ) -> impl Future<Output = Result<ConfigMap, ProvisionerError>> + Send {
        ready(Ok(self.config_for(context.resource_id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn default_provisioner_gives_urls_and_fresh_secrets() {
        let provisioner = DefaultProvisioner::new(
            "https://db.example.com",
            vec!["ADDON_NAME_URL".into(), "ADDON_NAME_TOKEN".into()],
        );
        let options = BTreeMap::new();
        let context = ProvisionContext {
            resource_id: "res_1",
            plan: "basic",
            options: &options,
        };
        let first = provisioner.provision(context).await.unwrap();
        let second = provisioner.provision(context).await.unwrap();
        assert_eq!(first.0["ADDON_NAME_URL"], "https://db.example.com/res_1");
        assert_eq!(first.0.len(), 2);
        let token = &first.0["ADDON_NAME_TOKEN"];
        assert!(token.len() * 4 >= 128, "secret must carry at least 128 bits");
        assert_ne!(token, &second.0["ADDON_NAME_TOKEN"]);
    }
}
