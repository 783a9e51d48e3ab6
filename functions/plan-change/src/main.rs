//! `plan-change` Lambda: wires configuration, the DynamoDB store and the default
//! provisioner into [`shared::clevercloud::routes::change_plan`].

use lambda_http::{run, service_fn, Error};
use shared::clevercloud::routes::{self, CleverCloudApi};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let api = CleverCloudApi::from_env(env!("CARGO_PKG_NAME")).await?;
    run(service_fn(|request| routes::change_plan(&api, request))).await
}
