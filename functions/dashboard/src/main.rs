//! `dashboard` Lambda: the signed-in panel, wired to
//! [`shared::dashboard::route`].

use lambda_http::{run, service_fn, Error};
use shared::dashboard::{self, DashboardApi};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let api = DashboardApi::from_env(env!("CARGO_PKG_NAME")).await?;
    run(service_fn(|request| dashboard::route(&api, request))).await
}
