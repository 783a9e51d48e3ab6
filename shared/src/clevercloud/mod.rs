//! Clever Cloud's add-on provider API (the Heroku-style protocol): provision,
//! plan change and deprovision over HTTP Basic auth, and single sign-on
//! into the vendor's panel (`sso`).
//!
//! `protocol` holds the wire types exactly as the platform sends and expects
//! them, `lifecycle` their way into and out of the marketplace-neutral rules
//! (`crate::lifecycle`), and `routes`
//! the HTTP handlers the Lambda functions run.

mod lifecycle;
mod protocol;
pub mod routes;
pub mod sso;
pub mod vendor;

pub use crate::lifecycle::{is_valid_resource_id, LifecycleError};
pub use lifecycle::Lifecycle;
pub use protocol::{
    DeprovisionResponse, PlanChangeRequest, PlanChangeResponse, ProvisionRequest, ProvisionResponse,
};

/// The audit `actor` for changes the platform asked for.
pub const ACTOR: &str = "clevercloud";
