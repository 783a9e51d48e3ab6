//! `oidc` Lambda: the OpenID Connect provider that signs customers in to the
//! vendor's own app, wired to [`shared::oidc::route`].

use lambda_http::{run, service_fn, Error};
use shared::oidc::{self, OidcApi};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let api = OidcApi::from_env(env!("CARGO_PKG_NAME")).await?;
    run(service_fn(|request| oidc::route(&api, request))).await
}
