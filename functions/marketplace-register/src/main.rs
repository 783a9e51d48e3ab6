//! `marketplace-register` Lambda: AWS Marketplace's fulfillment URL
//! (`POST /aws/register`), wired to [`shared::aws_marketplace::register::route`].

use lambda_http::{run, service_fn, Error};
use shared::aws_marketplace::register::{self, RegisterApi};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let api = RegisterApi::from_env(env!("CARGO_PKG_NAME")).await?;
    run(service_fn(|request| register::route(&api, request))).await
}
