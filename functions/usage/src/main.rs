//! `usage` Lambda: the vendor's usage reports
//! (`POST /vendor/resources/{id}/usage`), wired to
//! [`shared::metering::report::handle`].

use lambda_http::{run, service_fn, Error};
use shared::metering::report::{self, UsageApi};
use std::convert::Infallible;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let api = UsageApi::from_env(env!("CARGO_PKG_NAME")).await?;
    run(service_fn(|request| {
        let api = &api;
        async move { Ok::<_, Infallible>(report::handle(api, request).await) }
    }))
    .await
}
