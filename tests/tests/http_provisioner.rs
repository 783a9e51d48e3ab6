//! The HTTP provisioner end to end: the stack's functions call the stand-in
//! vendor endpoint (tests/src/bin/fake_vendor.rs) that `make test` starts and
//! points `PROVISIONER_URL` at. Each failure mode of the vendor becomes the
//! marketplace answer docs/provisioner.md states, and nothing is stored on failure.

use serde_json::{json, Value};
use shared::provisioner::signature;
use shared::secret::Secret;
use shared::store::ResourceReader;
use tests::{
    assert_valid, dynamo_client, json, provision_body, provisioner_schema, resource_partition,
    resources_with_addon_id, stack_var, string, unique, Marketplace,
};

/// What the stand-in vendor received about one Clever Cloud add-on (or, with
/// `email`, one Cloud 66 user), oldest first.
async fn vendor_received(matches: impl Fn(&Value) -> bool) -> Vec<Value> {
    let url = format!("{}/received", stack_var("E2E_VENDOR_URL"));
    let all: Vec<Value> = reqwest::get(url)
        .await
        .expect("the stand-in vendor answers")
        .json()
        .await
        .expect("JSON");
    all.into_iter().filter(|entry| matches(&entry["body"])).collect()
}

fn for_addon(addon_id: &str) -> impl Fn(&Value) -> bool + '_ {
    move |body| body["marketplace_ids"]["addon_id"] == addon_id
}

async fn provision_with_script(market: &Marketplace, script: &str) -> (String, u16, Value) {
    let addon_id = unique("addon_vendor");
    let mut body = provision_body(&addon_id, "basic");
    body["options"] = json!({"stand-in": script});
    let (status, answer) = json(market.provision(body).await).await;
    (addon_id, status, answer)
}

#[tokio::test]
async fn a_provision_returns_the_config_the_vendor_chose_from_a_signed_request() {
    let market = Marketplace::from_env();
    let (addon_id, status, answer) = provision_with_script(&market, "none").await;
    assert_eq!(status, 200, "{answer}");
    let received = vendor_received(for_addon(&addon_id)).await;
    assert_eq!(received.len(), 1, "{received:#?}");
    let call = &received[0];
    assert_eq!(call["signature_valid"], true);
    let body = &call["body"];
    assert_valid(&provisioner_schema("request"), body);
    assert_valid(&provisioner_schema("response"), &call["answer"]["body"]);
    assert_eq!(body["action"], "provision");
    assert_eq!(body["marketplace"], "clevercloud");
    assert_eq!(body["marketplace_ids"]["owner_id"], "orga_xxx");
    assert_eq!(body["marketplace_ids"]["user_id"], "user_yyy");
    assert_eq!(body["plan"], "basic");
    assert_eq!(body["region"], "EU");
    assert_eq!(body["owner_name"], "My Company");
    assert_eq!(body["options"]["stand-in"], "none");
    assert_eq!(body["resource_id"], answer["id"]);
    assert_eq!(call["idempotency_key_header"], body["idempotency_key"]);
    // The marketplace gets exactly what the vendor answered, and so does the table.
    assert_eq!(answer["config"], call["answer"]["body"]["config"]);
    let id = answer["id"].as_str().unwrap();
    let stored = tests::store()
        .await
        .get_resource(id)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(serde_json::to_value(&stored.config).unwrap(), answer["config"]);
}

#[tokio::test]
async fn a_redelivery_after_a_vendor_failure_reuses_the_idempotency_key() {
    let market = Marketplace::from_env();
    let addon_id = unique("addon_flaky");
    let mut body = provision_body(&addon_id, "basic");
    body["options"] = json!({"stand-in": "flaky"});
    let first = market.provision(body.clone()).await;
    assert_eq!(first.status(), 503);
    assert!(first.headers().contains_key("retry-after"));
    assert_eq!(
        resources_with_addon_id(&dynamo_client().await, &addon_id).await,
        0
    );
    let (status, answer) = json(market.provision(body).await).await;
    assert_eq!(status, 200, "{answer}");
    let received = vendor_received(for_addon(&addon_id)).await;
    assert_eq!(received.len(), 2);
    assert_eq!(
        received[0]["body"]["idempotency_key"], received[1]["body"]["idempotency_key"],
        "both deliveries are one marketplace event"
    );
    assert_eq!(answer["config"], received[1]["answer"]["body"]["config"]);
    assert_eq!(
        resources_with_addon_id(&dynamo_client().await, &addon_id).await,
        1
    );
}

#[tokio::test]
async fn a_slow_failing_or_nonsensical_vendor_is_a_503_and_nothing_is_stored() {
    let market = Marketplace::from_env();
    for script in ["slow", "error", "bad-body"] {
        let (addon_id, status, answer) = provision_with_script(&market, script).await;
        assert_eq!(status, 503, "{script}: {answer}");
        assert_eq!(answer["error"], "provisioner_unavailable", "{script}");
        assert_eq!(
            resources_with_addon_id(&dynamo_client().await, &addon_id).await,
            0,
            "{script}: nothing stored"
        );
        assert_eq!(vendor_received(for_addon(&addon_id)).await.len(), 1, "{script}");
    }
}

#[tokio::test]
async fn a_vendor_refusal_reaches_the_marketplace_with_its_message() {
    let market = Marketplace::from_env();
    let (addon_id, status, answer) = provision_with_script(&market, "refuse").await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"], "vendor_refused");
    assert_eq!(answer["message"], "The plan is full for this organisation.");
    assert_eq!(
        resources_with_addon_id(&dynamo_client().await, &addon_id).await,
        0
    );
}

#[tokio::test]
async fn plan_changes_and_deprovisions_go_through_the_vendor() {
    let market = Marketplace::from_env();
    let (addon_id, status, answer) = provision_with_script(&market, "refuse:change_plan").await;
    assert_eq!(status, 200, "{answer}");
    let id = answer["id"].as_str().unwrap().to_string();
    let change = json!({"addon_id": addon_id, "plan": "premium"});
    let (status, refused) = json(market.change_plan(&id, change).await).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["message"], "The plan is full for this organisation.");
    let client = dynamo_client().await;
    let (resource, _) = resource_partition(&client, &id).await;
    assert_eq!(string(&resource.unwrap(), "plan"), "basic", "nothing changed");
    let call = vendor_received(for_addon(&addon_id)).await.pop().unwrap();
    assert_eq!(call["body"]["action"], "change_plan");
    assert_eq!(call["body"]["previous_plan"], "basic");
    assert_eq!(call["body"]["plan"], "premium");
    assert_eq!(call["body"]["config"], answer["config"]);
    assert_valid(&provisioner_schema("request"), &call["body"]);

    // A vendor that fails a deprovision keeps the resource active; the
    // marketplace retries until the vendor says 2xx or 404.
    let (addon_id, _, answer) = provision_with_script(&market, "error:deprovision").await;
    let id = answer["id"].as_str().unwrap();
    assert_eq!(market.deprovision(id).await.status(), 503);
    let (resource, _) = resource_partition(&client, id).await;
    assert_eq!(string(&resource.unwrap(), "status"), "active");
    let call = vendor_received(for_addon(&addon_id)).await.pop().unwrap();
    assert_eq!(call["body"]["action"], "deprovision");
    assert_valid(&provisioner_schema("request"), &call["body"]);

    let (_, _, answer) = provision_with_script(&market, "gone:deprovision").await;
    let id = answer["id"].as_str().unwrap();
    assert_eq!(
        market.deprovision(id).await.status(),
        200,
        "404 from the vendor: already gone"
    );
    let (resource, _) = resource_partition(&client, id).await;
    assert_eq!(string(&resource.unwrap(), "status"), "deprovisioned");
}

#[tokio::test]
async fn a_cloud66_link_posts_the_credentials_the_vendor_chose() {
    let uid = unique("vendorlink");
    let email = format!("{uid}@example.com");
    let callback = "https://app.cloud66.com/partner/done";
    let response = tests::cloud66_link_as(&uid, &email, callback, &email).await;
    assert_eq!(response.status(), 302);
    let calls = vendor_received(|body| body["email"] == email.as_str()).await;
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let call = &calls[0];
    assert_eq!(call["signature_valid"], true);
    assert_eq!(call["body"]["marketplace"], "cloud66");
    assert!(call["body"]["marketplace_ids"]["account_id"].is_string());
    assert_valid(&provisioner_schema("request"), &call["body"]);
    let partner = format!("{}/received/{uid}", stack_var("E2E_PARTNER_URL"));
    let posts: Vec<Value> = reqwest::get(partner).await.unwrap().json().await.unwrap();
    let fields = &posts[0]["fields"];
    for (name, value) in call["answer"]["body"]["config"].as_object().unwrap() {
        assert_eq!(&fields[name], value, "{name} is the vendor's");
    }
}

#[tokio::test]
async fn the_stand_in_vendor_refuses_a_forged_signature() {
    let url = format!("{}/provision", stack_var("E2E_VENDOR_URL"));
    let body = br#"{"action":"deprovision","idempotency_key":"x"}"#;
    let client = reqwest::Client::new();
    let send = |header: String| {
        client
            .post(&url)
            .header(signature::HEADER, header)
            .body(body.to_vec())
            .send()
    };
    let now = chrono::Utc::now().timestamp();
    let forged = signature::sign(&Secret::new("not the signing secret"), now, body);
    assert_eq!(send(forged).await.unwrap().status(), 401);
    let stale = signature::sign(
        &Secret::new(stack_var("PROVISIONER_SIGNING_SECRET")),
        now - 3600,
        body,
    );
    assert_eq!(send(stale).await.unwrap().status(), 401);
    let good = signature::sign(&Secret::new(stack_var("PROVISIONER_SIGNING_SECRET")), now, body);
    assert_eq!(send(good).await.unwrap().status(), 200);
}

#[tokio::test]
async fn no_signature_or_signing_secret_reaches_the_function_logs() {
    let market = Marketplace::from_env();
    let (_, status, _) = provision_with_script(&market, "refuse").await;
    assert_eq!(status, 422);
    let log = std::fs::read_to_string(stack_var("E2E_FUNCTION_LOG")).expect("the function log");
    assert!(!log.contains(&stack_var("PROVISIONER_SIGNING_SECRET")));
    assert!(!log.contains("v1="), "a signature reached the log");
    assert!(!log.contains("Addon-Signature"));
}

/// docs/provisioner.md's signers of the vendor's calls (Python, Node) make
/// exactly the header the stack checks: over the method, the path and the body.
#[test]
fn the_documented_call_signers_agree_with_the_stack() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let secret = "docs-check-secret-0123456789abcdef";
    let body = br#"{"config":{"ADDON_NAME_URL":"u"}}"#;
    let path = "/vendor/resources/res_hk_0123/provisioned";
    let expected = signature::sign_call(&Secret::new(secret), 1_700_000_000, "POST", path, body);
    let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs");
    for (program, script) in [
        ("python3", "verify_signature.py"),
        ("node", "verify_signature.mjs"),
    ] {
        let mut child = Command::new(program)
            .arg(format!("{docs}/{script}"))
            .args(["--sign", "post", path])
            .env("PROVISIONER_SIGNING_SECRET", secret)
            .env("SIGNATURE_TIME", "1700000000")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("{program}: {err}"));
        child.stdin.take().unwrap().write_all(body).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{program}");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            expected,
            "{program}"
        );
    }
}

/// docs/provisioner.md's verifiers (Python, Node) and `provider verify-signature`
/// accept a real signature and refuse a tampered body, a wrong secret and a
/// stale timestamp.
#[test]
fn the_documented_verifiers_agree_with_the_signer() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let secret = "docs-check-secret-0123456789abcdef";
    let body = br#"{"action":"provision","plan":"basic"}"#;
    let now = chrono::Utc::now().timestamp();
    let good = signature::sign(&Secret::new(secret), now, body);
    let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs");
    let provider = tests::workspace_binary("provider");
    let verifiers: Vec<(&str, Vec<String>)> = vec![
        ("python3", vec![format!("{docs}/verify_signature.py")]),
        ("node", vec![format!("{docs}/verify_signature.mjs")]),
        (
            provider.to_str().unwrap(),
            vec!["verify-signature".into(), "--header".into()],
        ),
    ];
    let cases = [
        (good.clone(), &body[..], secret, true),
        (
            good.clone(),
            &br#"{"action":"provision","plan":"gold"}"#[..],
            secret,
            false,
        ),
        (good, &body[..], "another-secret-0123456789abcdef", false),
        (
            signature::sign(&Secret::new(secret), now - 3600, body),
            &body[..],
            secret,
            false,
        ),
    ];
    for (program, args) in &verifiers {
        for (header, body, secret, valid) in &cases {
            let mut child = Command::new(program)
                .args(args)
                .arg(header)
                .env("PROVISIONER_SIGNING_SECRET", secret)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|err| panic!("{program}: {err}"));
            child.stdin.take().unwrap().write_all(body).unwrap();
            let status = child.wait().unwrap();
            assert_eq!(
                status.success(),
                *valid,
                "{program} on {header} / {}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
