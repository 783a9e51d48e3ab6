//! `sso-login` Lambda: Clever Cloud and Cloud 66 single sign-on, wired to
//! [`shared::sso_login::route`].

use lambda_http::{run, service_fn, Error};
use shared::sso_login::{self, SignInApi};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let api = SignInApi::from_env(env!("CARGO_PKG_NAME")).await?;
    run(service_fn(|request| sso_login::route(&api, request))).await
}
