//! The built-in provisioner, for trying the project out and for vendors whose
//! service reads its tenants from this table: URLs from `RESOURCE_BASE_URL`,
//! fresh random secrets, nothing called.

use super::{ProvisionContext, Provisioner, ProvisionerError};
use crate::config::{self, ConfigError};
use crate::model::{ConfigMap, Resource};
use crate::secret::random_hex;
use std::future::{ready, Future};

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
    /// `RESOURCE_BASE_URL`, for `config_vars` already read and checked.
    pub fn from_lookup(
        lookup: &impl Fn(&str) -> Option<String>,
        config_vars: Vec<String>,
    ) -> Result<Self, ConfigError> {
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
        ready(Ok(self.config_for(&context.resource.id)))
    }

    /// Nothing to release: the values were made here and live only on the item.
    fn deprovision_reads_resource(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Platform, Timestamp};

    #[tokio::test]
    async fn default_provisioner_gives_urls_and_fresh_secrets() {
        let provisioner = DefaultProvisioner::new(
            "https://db.example.com",
            vec!["ADDON_NAME_URL".into(), "ADDON_NAME_TOKEN".into()],
        );
        let resource = Resource::new(
            "res_1".into(),
            Platform::CleverCloud,
            "addon_1".into(),
            "basic".into(),
            ConfigMap::default(),
            &Timestamp::now(),
        );
        let context = ProvisionContext {
            resource: &resource,
            email: None,
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
