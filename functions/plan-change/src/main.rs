//! `plan-change` Lambda: wires configuration, the DynamoDB store and the default
//! provisioner into [`shared::marketplaces::change_plan`].

use lambda_http::{run, service_fn, Error};
use shared::marketplaces::{self, LifecycleApis};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let apis = LifecycleApis::from_env(env!("CARGO_PKG_NAME")).await?;
    run(service_fn(|request| marketplaces::change_plan(&apis, request))).await
}
