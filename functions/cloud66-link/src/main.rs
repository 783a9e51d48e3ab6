//! `cloud66-link` Lambda: the Cloud 66 link redirect, wired to
//! [`shared::cloud66::link::route`].

use lambda_http::{run, service_fn, Error};
use shared::cloud66::link::{self, Cloud66LinkApi};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let api = Cloud66LinkApi::from_env(env!("CARGO_PKG_NAME")).await?;
    run(service_fn(|request| link::route(&api, request))).await
}
