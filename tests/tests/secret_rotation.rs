//! Revocation without a redeploy: the lifecycle and sign-in functions re-read their secret at most
//! every `SECRETS_TTL_SECONDS` (scripts/stack.sh sets it low for `make test`),
//! so a previous password removed from the secret stops working within that
//! time in the warm instances `cargo lambda watch` keeps, and one put back
//! works again. Its own test binary: no other test runs while the stack's
//! secret is changed, and it is restored before this binary ends.

use aws_sdk_secretsmanager::Client;
use std::time::{Duration, Instant};
use tests::*;

/// The tests here change the stack's one secret: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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

/// Polls `attempt` until it answers `expected`, for at most the TTL and a
/// margin; the seconds it took.
async fn until<F, Fut, T>(attempt: F, expected: T) -> f64
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = T>,
    T: PartialEq + std::fmt::Debug,
{
    let ttl: u64 = stack_var("SECRETS_TTL_SECONDS").parse().unwrap();
    let started = Instant::now();
    loop {
        let answer = attempt().await;
        if answer == expected {
            return started.elapsed().as_secs_f64();
        }
        assert!(
            started.elapsed() < Duration::from_secs(ttl + 5),
            "still {answer:?}, not {expected:?}, {ttl} s after the secret changed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits one TTL more: `cargo lambda watch` keeps several warm instances,
/// and one that read the secret while it was changed holds that until its
/// own TTL passes; the tests that follow see the stack's own secret.
async fn every_instance_reads_again() {
    let ttl: u64 = stack_var("SECRETS_TTL_SECONDS").parse().unwrap();
    tokio::time::sleep(Duration::from_secs(ttl + 1)).await;
}

/// A Clever Cloud SSO form for `id` signed with `salt` (a user id of its
/// own, so no two forms are one spent token): 303, or the refusal's reason.
async fn sign_in_with(salt: &str, id: &str) -> Result<u16, String> {
    let sso = shared::clevercloud::sso::CleverCloudSso::new(shared::secret::Secret::new(salt), 300);
    let (user_id, timestamp) = (unique("user"), chrono::Utc::now().timestamp().to_string());
    let signature = sso.signature(id, &user_id, "jane@example.com", "", &timestamp);
    let response = browser()
        .post(format!("{}/clevercloud/sso/login", base_url()))
        .form(&[
            ("id", id),
            ("timestamp", &timestamp),
            ("nav-data", ""),
            ("email", "jane@example.com"),
            ("user_id", &user_id),
            ("signature", &signature),
        ])
        .send()
        .await
        .expect("the stack answers");
    match response.status().as_u16() {
        303 => Ok(303),
        status
            if response
                .text()
                .await
                .unwrap_or_default()
                .contains("not issued by the platform") =>
        {
            Err(format!("{status} bad signature"))
        }
        status => Err(format!("{status} for another reason")),
    }
}

/// A new resource's id, to sign in to.
async fn provisioned(market: &Marketplace) -> String {
    let (status, answer) = json(
        market
            .provision(provision_body(&unique("addon_salt"), "basic"))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_previous_password_removed_from_the_secret_stops_working_within_the_ttl() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let market = Marketplace::from_env();
    let client = secrets().await;
    let original = secret_values(&client).await;
    let previous = original["ADDON_PASSWORD_PREVIOUS"].as_str().unwrap().to_string();
    assert_eq!(provision_with(&market, &previous).await, 200, "accepted before");

    let mut revoked = original.clone();
    revoked.remove("ADDON_PASSWORD_PREVIOUS");
    put_secret(&client, &revoked).await;
    let took = until(|| provision_with(&market, &previous), 401).await;
    eprintln!("the previous password was refused {took:.1} s after it left the secret");
    assert_eq!(
        provision_with(&market, &market.password).await,
        200,
        "the current one still works"
    );

    put_secret(&client, &original).await;
    until(|| provision_with(&market, &previous), 200).await;
    every_instance_reads_again().await;
}

#[tokio::test]
async fn a_replaced_sso_salt_stops_verifying_within_the_ttl() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let market = Marketplace::from_env();
    let client = secrets().await;
    let original = secret_values(&client).await;
    let old_salt = original["ADDON_SSO_SALT"].as_str().unwrap().to_string();
    let new_salt = format!("{old_salt}-rotated");
    let id = provisioned(&market).await;
    assert_eq!(sign_in_with(&old_salt, &id).await, Ok(303), "the salt in use");

    let mut replaced = original.clone();
    replaced.insert("ADDON_SSO_SALT".into(), new_salt.clone().into());
    put_secret(&client, &replaced).await;
    until(
        || sign_in_with(&old_salt, &id),
        Err("403 bad signature".to_string()),
    )
    .await;
    assert_eq!(
        sign_in_with(&new_salt, &id).await,
        Ok(303),
        "the new salt verifies"
    );

    put_secret(&client, &original).await;
    until(|| sign_in_with(&old_salt, &id), Ok(303)).await;
    every_instance_reads_again().await;
}

#[tokio::test]
async fn a_salt_rotation_accepts_both_salts_until_the_previous_one_leaves_the_secret() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let market = Marketplace::from_env();
    let client = secrets().await;
    let original = secret_values(&client).await;
    let old_salt = original["ADDON_SSO_SALT"].as_str().unwrap().to_string();
    let new_salt = format!("{old_salt}-next");
    let id = provisioned(&market).await;

    // Step 1: the new salt in the secret, the old one as the previous.
    let mut rotating = original.clone();
    rotating.insert("ADDON_SSO_SALT".into(), new_salt.clone().into());
    rotating.insert("ADDON_SSO_SALT_PREVIOUS".into(), old_salt.clone().into());
    put_secret(&client, &rotating).await;
    until(|| sign_in_with(&new_salt, &id), Ok(303)).await;
    assert_eq!(
        sign_in_with(&old_salt, &id).await,
        Ok(303),
        "the manifest's salt still verifies"
    );

    // Step 2 (once Clever Cloud has the new manifest): the previous one leaves.
    let mut done = rotating.clone();
    done.remove("ADDON_SSO_SALT_PREVIOUS");
    put_secret(&client, &done).await;
    until(
        || sign_in_with(&old_salt, &id),
        Err("403 bad signature".to_string()),
    )
    .await;
    assert_eq!(sign_in_with(&new_salt, &id).await, Ok(303));

    put_secret(&client, &original).await;
    until(|| sign_in_with(&old_salt, &id), Ok(303)).await;
    every_instance_reads_again().await;
}

/// The stand-in vendor keeps the signing secret it started with: during a
/// rotation requests are signed with the new and the previous secret, so it
/// still accepts them; once the previous one leaves the secret (before the
/// vendor changed), it refuses them and the marketplace gets a 422.
#[tokio::test]
async fn a_signing_secret_rotation_signs_with_both_until_it_ends() {
    let _alone = ONE_AT_A_TIME.lock().await;
    if std::env::var("PROVISIONER_URL").is_err() {
        eprintln!("skipped: the stack runs the default provisioner");
        return;
    }
    let market = Marketplace::from_env();
    let client = secrets().await;
    let original = secret_values(&client).await;
    let old_secret = original["PROVISIONER_SIGNING_SECRET"]
        .as_str()
        .unwrap()
        .to_string();
    let provision = || async {
        market
            .provision(provision_body(&unique("addon_signing"), "basic"))
            .await
            .status()
            .as_u16()
    };
    assert_eq!(provision().await, 200);

    let mut rotating = original.clone();
    rotating.insert(
        "PROVISIONER_SIGNING_SECRET".into(),
        format!("{old_secret}-next-signing-secret").into(),
    );
    rotating.insert(
        "PROVISIONER_SIGNING_SECRET_PREVIOUS".into(),
        old_secret.clone().into(),
    );
    put_secret(&client, &rotating).await;
    // Every instance reads the rotating secret; the vendor accepts throughout.
    let ttl: u64 = stack_var("SECRETS_TTL_SECONDS").parse().unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(ttl + 1) {
        assert_eq!(provision().await, 200, "a request the vendor could not verify");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let mut ended = rotating.clone();
    ended.remove("PROVISIONER_SIGNING_SECRET_PREVIOUS");
    put_secret(&client, &ended).await;
    until(provision, 422).await;

    put_secret(&client, &original).await;
    until(provision, 200).await;
    every_instance_reads_again().await;
}

/// `provider secrets rotate VAR --stdin` on a secret of its own: a first
/// value (a marketplace taken up after the secret was made) is set with no
/// previous one; a later value keeps the first as `_PREVIOUS` until
/// `--finish`. The values never reach the output.
#[tokio::test]
async fn the_cli_sets_a_first_value_then_rotates_it_with_an_overlap() {
    let client = secrets().await;
    let arn = client
        .create_secret()
        .name(format!("rotation-cli-{}", unique("s")))
        .secret_string(r#"{"ADDON_PASSWORD":"a-password-0123456789"}"#)
        .send()
        .await
        .expect("a secret of the test's own")
        .arn()
        .unwrap()
        .to_string();
    // The CLI as an operator runs it (blocking: a few quick runs).
    let rotate = |stdin: Option<&'static str>, finish: bool| {
        let mut child = std::process::Command::new(workspace_binary("provider"))
            .args(["secrets", "rotate", "HEROKU_CLIENT_SECRET"])
            .args(stdin.map(|_| "--stdin"))
            .args(finish.then_some("--finish"))
            .env("SECRETS_ARN", &arn)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run provider");
        let mut input = child.stdin.take().unwrap();
        if let Some(value) = stdin {
            std::io::Write::write_all(&mut input, value.as_bytes()).unwrap();
        }
        drop(input);
        let output = child.wait_with_output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).to_string(),
        )
    };
    let values = |arn: String| {
        let client = client.clone();
        async move {
            let output = client.get_secret_value().secret_id(arn).send().await.unwrap();
            serde_json::from_str::<serde_json::Value>(output.secret_string().unwrap()).unwrap()
        }
    };
    let (status, printed) = rotate(Some("first-client-secret"), false);
    assert_eq!(status, Some(0), "{printed}");
    assert!(
        printed.contains("nothing to finish") && !printed.contains("first-client-secret"),
        "{printed}"
    );
    let held = values(arn.clone()).await;
    assert_eq!(held["HEROKU_CLIENT_SECRET"], "first-client-secret");
    assert!(held.get("HEROKU_CLIENT_SECRET_PREVIOUS").is_none());
    assert_eq!(
        held["ADDON_PASSWORD"], "a-password-0123456789",
        "the rest is kept"
    );
    let (status, printed) = rotate(Some("second-client-secret"), false);
    assert_eq!(status, Some(0), "{printed}");
    let held = values(arn.clone()).await;
    assert_eq!(
        (
            &held["HEROKU_CLIENT_SECRET"],
            &held["HEROKU_CLIENT_SECRET_PREVIOUS"]
        ),
        (&"second-client-secret".into(), &"first-client-secret".into())
    );
    assert_eq!(rotate(None, true).0, Some(0));
    let held = values(arn).await;
    assert!(held.get("HEROKU_CLIENT_SECRET_PREVIOUS").is_none());
    assert_eq!(held["HEROKU_CLIENT_SECRET"], "second-client-secret");
}
