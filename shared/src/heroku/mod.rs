//! Heroku's Add-on Partner API v3 (docs/heroku.md): provision, plan change
//! and deprovision over HTTP Basic auth, keyed by Heroku's add-on `uuid`,
//! and single sign-on (`sso`).
//!
//! `config` holds the add-on's Heroku identity, `protocol` the wire types
//! exactly as Heroku sends and expects them, `routes` the HTTP handlers the
//! lifecycle functions run over the marketplace-neutral `crate::lifecycle`.

mod config;
pub mod platform;
mod protocol;
pub mod reseal;
pub mod routes;
pub mod sso;
pub mod tokens;

pub use config::{HerokuConfig, HerokuNames};
pub use protocol::{PlanChangeRequest, ProvisionRequest};

/// The audit `actor` for changes Heroku asked for.
pub const ACTOR: &str = "heroku";

/// This provider's id for Heroku add-on `uuid`: derived, not drawn, so that
/// the later calls, which carry only the uuid, find the resource with one
/// read, and so that every delivery of a provision names the same resource.
/// It is the uuid's 32 hex digits after [`RESOURCE_ID_PREFIX`], the same
/// shape as every other resource id (`res_`, a marketplace's mark, 32 hex).
pub fn resource_id(uuid: &str) -> Option<String> {
    protocol::canonical_uuid(uuid).map(|uuid| format!("{RESOURCE_ID_PREFIX}{}", uuid.replace('-', "")))
}

/// Every Heroku resource's id starts so (the IAM policies narrow on it).
pub const RESOURCE_ID_PREFIX: &str = "res_hk_";
