//! Revocation without a redeploy: the functions re-read their secret at most
//! every `SECRETS_TTL_SECONDS` (scripts/stack.sh sets it low for `make test`),
//! so a previous password removed from the secret stops working within that
//! time in the warm instances `cargo lambda watch` keeps, and one put back
//! works again. Its own test binary: no other test runs while the stack's
//! secret is changed, and it is restored before this binary ends.

use aws_sdk_secretsmanager::Client;
use std::time::{Duration, Instant};
use tests::*;

async fn secrets() -> Client {
    Client::new(&shared::config::aws_sdk_config("tests").await)
}

async fn secret_values(client: &Client) -> serde_json::Map<String, serde_json::Value> {
    let output = client
        .get_secret_value()
        .secret_id(stack_var("SECRETS_ARN"))
        .send()
        .await
        .expect("the stack's secret");
    serde_json::from_str(output.secret_string().unwrap()).unwrap()
}

async fn put_secret(client: &Client, values: &serde_json::Map<String, serde_json::Value>) {
    client
        .put_secret_value()
        .secret_id(stack_var("SECRETS_ARN"))
        .secret_string(serde_json::Value::Object(values.clone()).to_string())
        .send()
        .await
        .expect("a new version of the secret");
}

/// The status a provision authenticated with `password` gets.
async fn provision_with(market: &Marketplace, password: &str) -> u16 {
    market
        .http
        .post(&market.base)
        .basic_auth(&market.user, Some(password))
        .json(&provision_body(&unique("addon_revoked"), "basic"))
        .send()
        .await
        .expect("the stack answers")
        .status()
        .as_u16()
}

/// Polls until `password` gets `expected`, for at most the TTL and a margin;
/// the seconds it took.
async fn until(market: &Marketplace, password: &str, expected: u16) -> f64 {
    let ttl: u64 = stack_var("SECRETS_TTL_SECONDS").parse().unwrap();
    let started = Instant::now();
    loop {
        let status = provision_with(market, password).await;
        if status == expected {
            return started.elapsed().as_secs_f64();
        }
        assert!(
            started.elapsed() < Duration::from_secs(ttl + 5),
            "still {status}, not {expected}, {ttl} s after the secret changed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_previous_password_removed_from_the_secret_stops_working_within_the_ttl() {
    let market = Marketplace::from_env();
    let client = secrets().await;
    let original = secret_values(&client).await;
    let previous = original["ADDON_PASSWORD_PREVIOUS"].as_str().unwrap().to_string();
    assert_eq!(provision_with(&market, &previous).await, 200, "accepted before");

    let mut revoked = original.clone();
    revoked.remove("ADDON_PASSWORD_PREVIOUS");
    put_secret(&client, &revoked).await;
    let took = until(&market, &previous, 401).await;
    eprintln!("the previous password was refused {took:.1} s after it left the secret");
    assert_eq!(
        provision_with(&market, &market.password).await,
        200,
        "the current one still works"
    );

    put_secret(&client, &original).await;
    until(&market, &previous, 200).await;
}
