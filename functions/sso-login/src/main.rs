//! `sso-login` Lambda: Clever Cloud and Cloud 66 single sign-on, wired to
//! [`shared::signin::route`].

use lambda_http::{run, service_fn, Error};
use shared::signin::{self, SignInApi};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let api = SignInApi::from_env().await?;
    run(service_fn(|request| signin::route(&api, request))).await
}
