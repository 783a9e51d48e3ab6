//! The vendor's extension point: what a new resource's config values are, and
//! what happens on the vendor's side when a plan changes, credentials rotate
//! or a resource goes.
//!
//! Two implementations ship: [`HttpProvisioner`] calls the vendor's own HTTPS
//! endpoint with signed JSON (any language can answer it), and
//! [`DefaultProvisioner`] invents the values here. [`VendorProvisioner`]
//! picks one from the environment (`PROVISIONER_URL`).
//!
//! Delivery from the marketplaces is at least once, and concurrent duplicate
//! deliveries race; the store makes sure only one resource is ever recorded,
//! but a `Provisioner` may still be called more than once for the same
//! marketplace event. Implementations must therefore be idempotent: the HTTP
//! provisioner sends an idempotency key for that.

mod default;
mod http;
pub mod signature;

pub use default::DefaultProvisioner;
pub use http::{HttpProvisioner, VendorRequest};

use crate::config::{self, ConfigError};
use crate::model::{ConfigMap, Resource};
use std::future::{ready, Future};

/// What the provisioner is told about a resource being created.
#[derive(Debug, Clone, Copy)]
pub struct ProvisionContext<'a> {
    /// The resource about to be stored: its id, marketplace, marketplace ids,
    /// plan, region, owner and options; `config` is still empty.
    pub resource: &'a Resource,
    /// The user's email, where the marketplace gave one (Cloud 66).
    pub email: Option<&'a str>,
}

/// Why the vendor's system did not do what was asked. Nothing is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvisionerError {
    /// Down, slow, failing or answering nonsense: the marketplace gets a 503
    /// with `Retry-After` and retries.
    #[error("the vendor's service is unavailable: {0}")]
    Unavailable(String),
    /// The vendor refused (a 4xx) with a message meant for the customer: the
    /// marketplace gets it with a 422.
    #[error("the vendor's service refused: {message}")]
    Refused { status: u16, message: String },
}

/// What a provision came to, where the marketplace can wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provisioning {
    /// Ready now, with these config values.
    Ready(ConfigMap),
    /// The vendor's service finishes later and then calls the stack with
    /// the config (docs/provisioner.md, "Asynchronous provisioning").
    Pending,
}

pub trait Provisioner: Send + Sync {
    /// Config values for a new resource: exactly one per configured config var.
    fn provision(
        &self,
        context: ProvisionContext<'_>,
    ) -> impl Future<Output = Result<ConfigMap, ProvisionerError>> + Send;

    /// As [`Self::provision`], for a marketplace that can wait (Heroku): the
    /// vendor's service may answer that it finishes later. By default every
    /// provision is ready at once.
    fn provision_or_pending(
        &self,
        context: ProvisionContext<'_>,
    ) -> impl Future<Output = Result<Provisioning, ProvisionerError>> + Send {
        let ready = self.provision(context);
        async move { ready.await.map(Provisioning::Ready) }
    }

    /// Config values after a plan change. By default they stay as they are.
    fn change_plan(
        &self,
        resource: &Resource,
        _new_plan: &str,
    ) -> impl Future<Output = Result<ConfigMap, ProvisionerError>> + Send {
        ready(Ok(resource.config.clone()))
    }

    /// As [`Self::change_plan`], for a marketplace that can wait (Scalingo):
    /// the vendor's service may answer that it finishes the change later,
    /// the config staying as it is. By default every change is done at once.
    fn change_plan_or_pending(
        &self,
        resource: &Resource,
        new_plan: &str,
    ) -> impl Future<Output = Result<Provisioning, ProvisionerError>> + Send {
        let changed = self.change_plan(resource, new_plan);
        async move { changed.await.map(Provisioning::Ready) }
    }

    /// Tells the vendor's service the marketplace suspended the resource
    /// (`suspended`), or resumed it. By default there is no one to tell.
    fn set_suspended(
        &self,
        _resource: &Resource,
        _suspended: bool,
    ) -> impl Future<Output = Result<(), ProvisionerError>> + Send {
        ready(Ok(()))
    }

    /// Fresh secret values for a resource's config (credential rotation).
    /// By default rotation is not supported.
    fn rotate(
        &self,
        _resource: &Resource,
    ) -> impl Future<Output = Result<ConfigMap, ProvisionerError>> + Send {
        ready(Err(ProvisionerError::Unavailable(
            "this provisioner cannot rotate credentials".into(),
        )))
    }

    /// Releases the vendor-side resource. Called before the record is marked
    /// deprovisioned, and again if the marketplace retries after a failure.
    fn deprovision(&self, _resource: &Resource) -> impl Future<Output = Result<(), ProvisionerError>> + Send {
        ready(Ok(()))
    }

    /// Checks the `Addon-Signature` of a call from the vendor's service
    /// (docs/provisioner.md, "The signature"): over the method,
    /// the path and the body. `None` when no vendor service is configured
    /// to make one.
    fn verify_vendor_call(
        &self,
        _header: &str,
        _call: signature::Signed<'_>,
        _now: i64,
    ) -> impl Future<Output = Option<Result<(), signature::SignatureError>>> + Send {
        ready(None)
    }

    /// Whether [`Self::deprovision`] needs the stored resource (to tell the
    /// vendor's service about it). When it does not, a deprovision is one
    /// conditional write with nothing read first.
    fn deprovision_reads_resource(&self) -> bool {
        true
    }
}

/// The provisioner a deployment is configured with: the vendor's endpoint
/// when `PROVISIONER_URL` is set, the built-in default otherwise.
#[derive(Debug, Clone)]
pub enum VendorProvisioner {
    Default(DefaultProvisioner),
    Http(HttpProvisioner),
}

impl VendorProvisioner {
    /// `PROVISIONER_URL` (+ `PROVISIONER_SIGNING_SECRET`,
    /// `PROVISIONER_TIMEOUT_MS`), or else `RESOURCE_BASE_URL`; both check
    /// their answers against `ADDON_CONFIG_VARS`.
    pub fn from_lookup(
        lookup: &impl Fn(&str) -> Option<String>,
        addon_id: &str,
    ) -> Result<Self, ConfigError> {
        let config_vars = config::config_vars(lookup, addon_id)?;
        match config::optional(lookup, "PROVISIONER_URL") {
            Some(_) => HttpProvisioner::from_lookup(lookup, config_vars).map(Self::Http),
            None => DefaultProvisioner::from_lookup(lookup, config_vars).map(Self::Default),
        }
    }
}

impl VendorProvisioner {
    /// The vendor's signing secrets follow the secret (re-read every
    /// `SECRETS_TTL_SECONDS`); the default provisioner holds no secret.
    pub fn follow_secret(
        &mut self,
        source: Option<crate::refresh::SecretSource>,
        environment: &crate::config::Environment,
    ) -> Result<(), ConfigError> {
        match self {
            Self::Default(_) => Ok(()),
            Self::Http(provisioner) => provisioner.follow_secret(source, environment),
        }
    }
}

impl Provisioner for VendorProvisioner {
    async fn provision(&self, context: ProvisionContext<'_>) -> Result<ConfigMap, ProvisionerError> {
        match self {
            Self::Default(provisioner) => provisioner.provision(context).await,
            Self::Http(provisioner) => provisioner.provision(context).await,
        }
    }

    async fn provision_or_pending(
        &self,
        context: ProvisionContext<'_>,
    ) -> Result<Provisioning, ProvisionerError> {
        match self {
            Self::Default(provisioner) => provisioner.provision_or_pending(context).await,
            Self::Http(provisioner) => provisioner.provision_or_pending(context).await,
        }
    }

    async fn change_plan(&self, resource: &Resource, new_plan: &str) -> Result<ConfigMap, ProvisionerError> {
        match self {
            Self::Default(provisioner) => provisioner.change_plan(resource, new_plan).await,
            Self::Http(provisioner) => provisioner.change_plan(resource, new_plan).await,
        }
    }

    async fn change_plan_or_pending(
        &self,
        resource: &Resource,
        new_plan: &str,
    ) -> Result<Provisioning, ProvisionerError> {
        match self {
            Self::Default(provisioner) => provisioner.change_plan_or_pending(resource, new_plan).await,
            Self::Http(provisioner) => provisioner.change_plan_or_pending(resource, new_plan).await,
        }
    }

    async fn set_suspended(&self, resource: &Resource, suspended: bool) -> Result<(), ProvisionerError> {
        match self {
            Self::Default(provisioner) => provisioner.set_suspended(resource, suspended).await,
            Self::Http(provisioner) => provisioner.set_suspended(resource, suspended).await,
        }
    }

    async fn rotate(&self, resource: &Resource) -> Result<ConfigMap, ProvisionerError> {
        match self {
            Self::Default(provisioner) => provisioner.rotate(resource).await,
            Self::Http(provisioner) => provisioner.rotate(resource).await,
        }
    }

    async fn deprovision(&self, resource: &Resource) -> Result<(), ProvisionerError> {
        match self {
            Self::Default(provisioner) => provisioner.deprovision(resource).await,
            Self::Http(provisioner) => provisioner.deprovision(resource).await,
        }
    }

    async fn verify_vendor_call(
        &self,
        header: &str,
        call: signature::Signed<'_>,
        now: i64,
    ) -> Option<Result<(), signature::SignatureError>> {
        match self {
            Self::Default(_) => None,
            Self::Http(provisioner) => provisioner.verify_vendor_call(header, call, now).await,
        }
    }

    fn deprovision_reads_resource(&self) -> bool {
        match self {
            Self::Default(provisioner) => provisioner.deprovision_reads_resource(),
            Self::Http(provisioner) => provisioner.deprovision_reads_resource(),
        }
    }
}
