//! Revocation without a redeploy: the lifecycle and sign-in functions re-read their secret at most
//! every `SECRETS_TTL_SECONDS` (scripts/stack.sh sets it low for `make test`),
//! so a previous password removed from the secret stops working within that
//! time in the warm instances `cargo lambda watch` keeps, and one put back
//! works again. Its own test binary: no other test runs while the stack's
//! secret is changed, and it is restored before this binary ends.

use aws_sdk_secretsmanager::Client;
use shared::secret_parts::Part;
use std::time::{Duration, Instant};
use tests::*;

/// The tests here change the stack's one secret: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn secrets() -> Client {
    Client::new(&shared::config::aws_sdk_config("tests").await)
}

/// Every part of the stack's secret, merged.
async fn secret_values(client: &Client) -> serde_json::Map<String, serde_json::Value> {
    let mut values = serde_json::Map::new();
    for part in Part::ALL {
        values.extend(part_values(client, &part.secret_name(&stack_var("SECRETS_NAME"))).await);
    }
    values
}

async fn part_values(client: &Client, id: &str) -> serde_json::Map<String, serde_json::Value> {
    let output = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .expect("a part of the secret");
    serde_json::from_str(output.secret_string().unwrap()).unwrap()
}

/// `values` split into the stack secret's parts, each written anew.
async fn put_secret(client: &Client, values: &serde_json::Map<String, serde_json::Value>) {
    for part in Part::ALL {
        let held: serde_json::Map<_, _> = values
            .iter()
            .filter(|(var, _)| Part::of(var) == Some(part))
            .map(|(var, value)| (var.clone(), value.clone()))
            .collect();
        client
            .put_secret_value()
            .secret_id(part.secret_name(&stack_var("SECRETS_NAME")))
            .secret_string(serde_json::Value::Object(held).to_string())
            .send()
            .await
            .expect("a new version of the secret's part");
    }
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

/// A Clever Cloud SSO form for `id` signed with `salt` (a timestamp of its
/// own, so no two forms are one spent sign-in): 303, or the refusal's reason.
async fn sign_in_with(salt: &str, id: &str) -> Result<u16, String> {
    let sso = shared::clevercloud::sso::CleverCloudSso::new(shared::secret::Secret::new(salt), 300);
    let (user_id, timestamp) = (unique("user"), sign_in_timestamp(id).to_string());
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

/// A secret of the test's own with one `part`, holding `values` (JSON):
/// the secret's name (SECRETS_NAME) and the part's.
async fn secret_of_its_own(client: &Client, name: &str, part: Part, values: &str) -> (String, String) {
    let prefix = format!("{name}-{}", unique("s"));
    let id = part.secret_name(&prefix);
    client
        .create_secret()
        .name(&id)
        .secret_string(values)
        .send()
        .await
        .expect("a secret of the test's own");
    (prefix, id)
}

/// `provider secrets rotate VAR --stdin` on a secret of its own: a first
/// value (a marketplace taken up after the secret was made) is set with no
/// previous one; a later value keeps the first as `_PREVIOUS` until
/// `--finish`. The values never reach the output.
#[tokio::test]
async fn the_cli_sets_a_first_value_then_rotates_it_with_an_overlap() {
    let client = secrets().await;
    let (prefix, arn) = secret_of_its_own(
        &client,
        "rotation-cli",
        Part::Platforms,
        r#"{"CLOUDMORE_PASSWORD":"a-password-0123456789"}"#,
    )
    .await;
    // The CLI as an operator runs it (blocking: a few quick runs).
    let rotate = |stdin: Option<&'static str>, finish: bool| {
        let mut child = std::process::Command::new(workspace_binary("provider"))
            .args(["secrets", "rotate", "HEROKU_CLIENT_SECRET"])
            .args(stdin.map(|_| "--stdin"))
            .args(finish.then_some("--finish"))
            .env("SECRETS_NAME", &prefix)
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
    let (status, printed) = rotate(Some("first-client-secret"), false);
    assert_eq!(status, Some(0), "{printed}");
    assert!(
        printed.contains("nothing to finish") && !printed.contains("first-client-secret"),
        "{printed}"
    );
    let held = part_values(&client, &arn).await;
    assert_eq!(held["HEROKU_CLIENT_SECRET"], "first-client-secret");
    assert!(held.get("HEROKU_CLIENT_SECRET_PREVIOUS").is_none());
    assert_eq!(
        held["CLOUDMORE_PASSWORD"], "a-password-0123456789",
        "the rest of the part is kept"
    );
    let (status, printed) = rotate(Some("second-client-secret"), false);
    assert_eq!(status, Some(0), "{printed}");
    let held = part_values(&client, &arn).await;
    assert_eq!(
        (
            &held["HEROKU_CLIENT_SECRET"],
            &held["HEROKU_CLIENT_SECRET_PREVIOUS"]
        ),
        (&"second-client-secret".into(), &"first-client-secret".into())
    );
    assert_eq!(rotate(None, true).0, Some(0));
    let held = part_values(&client, &arn).await;
    assert!(held.get("HEROKU_CLIENT_SECRET_PREVIOUS").is_none());
    assert_eq!(held["HEROKU_CLIENT_SECRET"], "second-client-secret");
}

/// `provider secrets rotate HEROKU_TOKEN_KEY`, on a secret and a table of
/// its own: quiet Heroku add-ons (no sync owed, so the platform sync never
/// touches them) are sealed anew under the new key when the rotation
/// starts; `--finish` refuses while any add-on's tokens open only with the
/// previous key, naming how many; `--reseal` resumes; and after `--finish`
/// every add-on's tokens open with the new key alone.
#[tokio::test]
async fn a_token_key_rotation_reseals_quiet_add_ons_and_finishes_only_when_none_is_left() {
    use shared::heroku::tokens::TokenKeys;
    use shared::model::{ConfigMap, HerokuAuthorization, Platform, Resource, Timestamp};
    use shared::store::{ProvisionStore, ResourceReader};
    let (old_key, new_key) = (shared::secret::random_hex(32), shared::secret::random_hex(32));
    let keys_of = |current: &str, previous: Option<&str>| {
        let (current, previous) = (current.to_string(), previous.map(str::to_string));
        TokenKeys::from_lookup(&move |name: &str| match name {
            "HEROKU_TOKEN_KEY" => Some(current.clone()),
            "HEROKU_TOKEN_KEY_PREVIOUS" => previous.clone(),
            _ => None,
        })
        .unwrap()
    };
    let client = secrets().await;
    let (prefix, arn) = secret_of_its_own(
        &client,
        "token-key",
        Part::Tokens,
        &serde_json::json!({ "HEROKU_TOKEN_KEY": old_key }).to_string(),
    )
    .await;
    let store = isolated_store().await;
    // A Heroku add-on whose grant and tokens `keys` sealed, as the sync leaves a quiet one.
    let quiet_add_on = |keys: TokenKeys| {
        let store = &store;
        async move {
            let id = shared::heroku::resource_id(&shared::secret::random_uuid()).unwrap();
            let mut resource = Resource::new(
                id.clone(),
                Platform::Heroku,
                id.clone(),
                "basic".into(),
                ConfigMap::default(),
                &Timestamp::now(),
            );
            resource.heroku = Some(HerokuAuthorization {
                grant: None,
                grant_expires_at: None,
                tokens: Some(keys.seal(&id, br#"{"access_token":"a","refresh_token":"r"}"#)),
                access_expires_at: Some(i64::MAX),
            });
            let event = shared::model::AuditEvent::new(
                shared::model::SubjectKind::Resource,
                &id,
                shared::model::AuditAction::Provisioned,
                "tests",
                &Timestamp::now(),
            );
            store.create_resource(&resource, &event, &[]).await.unwrap();
            id
        }
    };
    let mut quiet = Vec::new();
    for _ in 0..3 {
        quiet.push(quiet_add_on(keys_of(&old_key, None)).await);
    }
    let provider = |args: &[&str]| {
        let output = std::process::Command::new(workspace_binary("provider"))
            .args(["--json", "secrets", "rotate", "HEROKU_TOKEN_KEY"])
            .args(args)
            .env("SECRETS_NAME", &prefix)
            .env("TABLE_NAME", store.table())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run provider");
        let printed = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(
            !printed.contains(&old_key) && !printed.contains(&new_key),
            "no key printed"
        );
        (output.status.code(), printed)
    };
    let opens_with = |keys: TokenKeys| {
        let (store, quiet) = (&store, quiet.clone());
        async move {
            let mut opened = 0;
            for id in &quiet {
                let resource = store.get_resource(id).await.unwrap().unwrap();
                let sealed = resource.heroku.unwrap().tokens.unwrap();
                opened += usize::from(keys.open(id, &sealed).is_some());
            }
            opened
        }
    };

    // Start: a new key (generated), and every quiet add-on sealed anew.
    let (status, printed) = provider(&[]);
    assert_eq!(status, Some(0), "{printed}");
    let report: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(report["reseal"]["resealed"], 3, "{printed}");
    assert_eq!(report["reseal"]["previous_only"], 0, "{printed}");
    let held = part_values(&client, &arn).await;
    assert_eq!(held["HEROKU_TOKEN_KEY_PREVIOUS"], old_key.as_str());
    let generated = held["HEROKU_TOKEN_KEY"].as_str().unwrap().to_string();
    assert_ne!(generated, old_key);
    assert_eq!(
        opens_with(keys_of(&generated, None)).await,
        3,
        "sealed under the new key"
    );

    // A function that had not read the new key yet seals one more under the old one.
    let straggler = quiet_add_on(keys_of(&old_key, None)).await;
    let (status, printed) = provider(&["--finish"]);
    assert_eq!(status, Some(1), "{printed}");
    assert!(printed.contains("1 Heroku add-on"), "{printed}");
    let output = client.get_secret_value().secret_id(&arn).send().await.unwrap();
    assert!(
        output
            .secret_string()
            .unwrap()
            .contains("HEROKU_TOKEN_KEY_PREVIOUS"),
        "the previous key stays"
    );
    // --reseal resumes (and is idempotent), then --finish ends it.
    let (status, printed) = provider(&["--reseal"]);
    assert_eq!(status, Some(0), "{printed}");
    assert!(printed.contains(r#""resealed":1"#), "{printed}");
    let (status, printed) = provider(&["--reseal"]);
    assert_eq!(status, Some(0), "{printed}");
    assert!(
        printed.contains(r#""resealed":0"#) && printed.contains(r#""current":4"#),
        "{printed}"
    );
    let (status, printed) = provider(&["--finish"]);
    assert_eq!(status, Some(0), "{printed}");
    let output = client.get_secret_value().secret_id(&arn).send().await.unwrap();
    assert!(!output
        .secret_string()
        .unwrap()
        .contains("HEROKU_TOKEN_KEY_PREVIOUS"));
    let finished = keys_of(&generated, None);
    assert_eq!(opens_with(keys_of(&generated, None)).await, 3);
    let resource = store.get_resource(&straggler).await.unwrap().unwrap();
    assert!(finished
        .open(&straggler, &resource.heroku.unwrap().tokens.unwrap())
        .is_some());
}

/// Two rotations that read the same version of the secret: the second
/// write is refused (nothing overwritten unseen).
#[tokio::test]
async fn a_rotation_that_lost_a_race_writes_nothing() {
    let client = secrets().await;
    let (_, arn) = secret_of_its_own(
        &client,
        "rotation-race",
        Part::Lifecycle,
        r#"{"ADDON_PASSWORD":"a-password-0123456789"}"#,
    )
    .await;
    let read = client.get_secret_value().secret_id(&arn).send().await.unwrap();
    let version = read.version_id().unwrap().to_string();
    // Another operator's rotation, written as the CLI writes, after reading the same version.
    client
        .put_secret_value()
        .secret_id(&arn)
        .client_request_token(shared::secret::write_token(&version))
        .secret_string(r#"{"ADDON_PASSWORD":"someone-elses-0123456789"}"#)
        .send()
        .await
        .unwrap();
    let again = client
        .put_secret_value()
        .secret_id(&arn)
        .client_request_token(shared::secret::write_token(&version))
        .secret_string(r#"{"ADDON_PASSWORD":"mine-0123456789abcdef"}"#)
        .send()
        .await;
    assert!(
        again.is_err(),
        "the second write with the same read version is refused"
    );
    let held = client.get_secret_value().secret_id(&arn).send().await.unwrap();
    assert!(held.secret_string().unwrap().contains("someone-elses"));
}

/// `provider secrets init --from ARN`: an earlier version's one secret is
/// split into the six parts, each holding its own variables only, what it
/// lacked generated; the earlier secret is left as it was; a second init
/// under the same name creates nothing new and says what exists.
#[tokio::test]
async fn init_splits_an_earlier_secret_into_its_parts() {
    let client = secrets().await;
    let earlier = serde_json::json!({
        "ADDON_PASSWORD": "earlier-password-0123456789",
        "HEROKU_TOKEN_KEY": shared::secret::random_hex(32),
        "OIDC_CLIENTS": "[]",
        "CLOUDMORE_PASSWORD": "earlier-cloudmore-0123456789",
    });
    let earlier_arn = client
        .create_secret()
        .name(unique("earlier-secret"))
        .secret_string(earlier.to_string())
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let name = format!("split-{}", unique("s"));
    let init = || {
        let mut command = std::process::Command::new(workspace_binary("provider"));
        command.args([
            "--json",
            "secrets",
            "init",
            "--name",
            &name,
            "--from",
            &earlier_arn,
        ]);
        // Only the earlier secret gives values: none from this environment.
        for var in shared::config::SECRET_VARS {
            command.env_remove(var);
        }
        let output = command.output().expect("run provider");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).to_string(),
        )
    };
    let (status, printed) = init();
    assert_eq!(status, Some(0), "{printed}");
    assert!(
        !printed.contains("earlier-password"),
        "no value printed: {printed}"
    );
    let report: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(report["SecretsName"], name.as_str());
    for part in Part::ALL {
        let held = part_values(&client, &part.secret_name(&name)).await;
        for var in held.keys() {
            assert_eq!(Part::of(var), Some(part), "{var} is in part {}", part.name());
        }
        assert!(report["parts"][part.name()].is_string(), "{printed}");
    }
    let lifecycle = part_values(&client, &Part::Lifecycle.secret_name(&name)).await;
    assert_eq!(lifecycle["ADDON_PASSWORD"], "earlier-password-0123456789");
    assert_eq!(
        lifecycle["HEROKU_PASSWORD"].as_str().unwrap().len(),
        48,
        "generated"
    );
    let tokens = part_values(&client, &Part::Tokens.secret_name(&name)).await;
    assert_eq!(tokens["HEROKU_TOKEN_KEY"], earlier["HEROKU_TOKEN_KEY"]);
    let platforms = part_values(&client, &Part::Platforms.secret_name(&name)).await;
    assert_eq!(platforms["CLOUDMORE_PASSWORD"], "earlier-cloudmore-0123456789");
    let oidc = part_values(&client, &Part::Oidc.secret_name(&name)).await;
    assert!(oidc["OIDC_SIGNING_KEY"].as_str().unwrap().contains("PRIVATE KEY"));
    let kept = client
        .get_secret_value()
        .secret_id(&earlier_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(kept.secret_string().unwrap()).unwrap(),
        earlier
    );

    let (status, printed) = init();
    assert_eq!(status, Some(1), "the parts exist already: {printed}");
    let again = part_values(&client, &Part::Lifecycle.secret_name(&name)).await;
    assert_eq!(again, lifecycle, "nothing overwritten");
}
