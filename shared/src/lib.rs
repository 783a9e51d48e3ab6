//! Everything the Lambda functions share: configuration, the data model, the
//! DynamoDB store, the vendor's provisioning hook, HTTP helpers and one module
//! per marketplace protocol.
//!
//! The function binaries under `functions/` only wire these pieces together, so
//! every behaviour can be tested here without a Lambda runtime.

pub mod aws_marketplace;
pub mod clevercloud;
pub mod cloud66;
pub mod cloudmore;
pub mod config;
pub mod dashboard;
pub mod deadline;
pub mod events;
pub mod heroku;
pub mod html;
pub mod http;
pub mod lifecycle;
pub mod marketplaces;
pub mod metering;
pub mod model;
pub mod oidc;
pub mod outbound;
pub mod provisioner;
pub mod refresh;
pub mod scalingo;
pub mod secret;
pub mod secret_parts;
pub mod signin;
pub mod sso_login;
pub mod store;
pub mod sync;
pub mod telemetry;
