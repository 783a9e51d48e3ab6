//! HTTP clients for calls out to the platforms and the vendor's service.
//!
//! Every client shares one TLS configuration, built once per process from
//! Mozilla's root certificates compiled into the binary (`webpki-roots`).
//! Loading the system's trust store instead reads and parses the system's
//! bundle and every certificate file beside it (about 150 here) for each
//! client built — milliseconds of every cold start, on top of the AWS SDK,
//! which loads it once for itself. The
//! endpoints called (Clever Cloud, Cloudmore, Cloud 66 and the vendor's
//! `PROVISIONER_URL`) must therefore present a certificate from a public CA.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The process's one client TLS configuration.
fn tls_config() -> rustls::ClientConfig {
    static CONFIG: OnceLock<rustls::ClientConfig> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("aws-lc-rs supports rustls' default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth()
        })
        .clone()
}

/// A client builder with the shared TLS configuration; callers add their
/// own time limits and redirect policy.
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().tls_backend_preconfigured(tls_config())
}

/// A client for calls to a platform's API, with a time limit per request so
/// a hanging platform cannot hold a function to its timeout.
pub fn platform_client() -> reqwest::Client {
    client_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default()
}
