//! Scalingo's add-on provider API (docs/scalingo.md): provision, plan
//! change (PUT or PATCH), deprovision, suspend and resume over HTTP Basic
//! auth with the manifest's own username, single sign-on by a GET link
//! (`sso`), and config set later through Scalingo's provider API
//! (`platform`, the platform sync's).
//!
//! `config` holds the add-on's Scalingo identity, `protocol` the wire types
//! as Scalingo's documents and clients send them, `routes` the HTTP
//! handlers over the marketplace-neutral `crate::lifecycle`.

mod config;
pub mod platform;
mod protocol;
pub mod routes;
pub mod sso;

pub use config::ScalingoConfig;
pub use protocol::{PlanChangeRequest, ProvisionRequest};

use sha2::{Digest, Sha256};

/// The audit `actor` for changes Scalingo asked for.
pub const ACTOR: &str = "scalingo";

/// Every Scalingo resource's id starts so (the IAM policies narrow on it).
pub const RESOURCE_ID_PREFIX: &str = "res_sc_";

/// This provider's id for the add-on Scalingo names `uuid`: derived, so
/// that every delivery of one provision names the same resource (the
/// claim on the uuid then tells a redelivery from a new add-on). Scalingo
/// does not say what shape its uuid has, so it is hashed, not copied.
pub fn resource_id_for_uuid(uuid: &str) -> String {
    let digest = Sha256::digest(format!("scalingo-addon-uuid:{uuid}"));
    format!("{RESOURCE_ID_PREFIX}{}", hex::encode(&digest[..16]))
}

/// A new id for a provision without `uuid`: each such call is a new
/// add-on (docs/scalingo.md, "Idempotency").
pub fn new_resource_id() -> String {
    format!("{RESOURCE_ID_PREFIX}{}", crate::secret::random_hex(16))
}

/// Whether `id` is one this provider could have given a Scalingo add-on:
/// anything else names nothing, and is not looked up.
pub fn is_resource_id(id: &str) -> bool {
    id.strip_prefix(RESOURCE_ID_PREFIX).is_some_and(|hex| {
        hex.len() == 32
            && hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_derived_from_the_uuid_or_drawn_and_always_recognised() {
        let derived = resource_id_for_uuid("7c8f1a2e-0000-4000-8000-000000000001");
        assert_eq!(
            derived,
            resource_id_for_uuid("7c8f1a2e-0000-4000-8000-000000000001")
        );
        assert_ne!(
            derived,
            resource_id_for_uuid("7c8f1a2e-0000-4000-8000-000000000002")
        );
        assert!(is_resource_id(&derived), "{derived}");
        let drawn = new_resource_id();
        assert!(is_resource_id(&drawn), "{drawn}");
        assert_ne!(drawn, new_resource_id());
        assert!(derived.len() <= 255);
        for bad in [
            "res_sc_",
            "res_hk_0123456789abcdef0123456789abcdef",
            "res_sc_0123456789ABCDEF0123456789abcdef",
            "res_sc_0123456789abcdef0123456789abcdef0",
        ] {
            assert!(!is_resource_id(bad), "{bad}");
        }
    }
}
