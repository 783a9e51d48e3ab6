//! `provider try` against the running stack, through its printed manifests
//! (docs/trying.md): each marketplace's provision, plan change and
//! deprovision as the marketplace sends them, Scalingo's suspend and resume,
//! an asynchronous provision, a Scalingo sign-in link that signs in, and a
//! `--curl` command that, run, gets the same answer.

use serde_json::Value;
use tests::*;

/// `provider try ARGS…`: exit code and report.
fn try_(args: &[&str]) -> (i32, Value) {
    provider_json(&[&["try"], args].concat())
}

fn manifest_of(marketplace: &str) -> String {
    stack_var(match marketplace {
        "clevercloud" => "MANIFEST",
        "heroku" => "HEROKU_MANIFEST",
        _ => "SCALINGO_MANIFEST",
    })
}

/// `provider try ACTION --marketplace M [ID] EXTRA…`, with the stack's manifest.
fn call(action: &str, marketplace: &str, id: Option<&str>, extra: &[&str]) -> (i32, Value) {
    let manifest = manifest_of(marketplace);
    let mut args = vec![action, "--marketplace", marketplace, "--manifest", &manifest];
    args.extend(id);
    args.extend(extra);
    try_(&args)
}

#[tokio::test]
async fn every_marketplaces_lifecycle_can_be_tried_one_call_at_a_time() {
    for marketplace in ["clevercloud", "heroku", "scalingo"] {
        let (code, provisioned) = call("provision", marketplace, None, &["--plan", "basic"]);
        assert_eq!(code, 0, "{marketplace}: {provisioned}");
        let status = provisioned["answer"]["status"].as_u64().unwrap();
        assert!([200, 201].contains(&status), "{marketplace}: {provisioned}");
        let resource_id = provisioned["answer"]["body"]["id"].as_str().unwrap().to_string();
        // Heroku names its add-ons by the uuid it sent.
        let id = match marketplace {
            "heroku" => provisioned["request"]["body"]["uuid"]
                .as_str()
                .unwrap()
                .to_string(),
            _ => resource_id.clone(),
        };
        let addon_id = provisioned["request"]["body"]["addon_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut plan = vec!["--plan", "premium"];
        if marketplace == "clevercloud" {
            plan.extend(["--addon-id", &addon_id]);
        }
        let (code, changed) = call("plan", marketplace, Some(&id), &plan);
        assert_eq!(
            (code, &changed["answer"]["status"]),
            (0, &Value::from(200)),
            "{marketplace}: {changed}"
        );
        assert_eq!(
            stored_resource(&resource_id).await.plan,
            "premium",
            "{marketplace}"
        );
        // `provider list --marketplace` shows it, on its plan, and no other marketplace's.
        let stored_as = stored_resource(&resource_id).await.platform.as_str();
        let (_, listed) = provider_json(&["list", "--marketplace", stored_as]);
        let rows = listed["resources"].as_array().unwrap();
        assert!(rows.iter().all(|row| row["marketplace"] == stored_as), "{listed}");
        let row = rows
            .iter()
            .find(|row| row["id"] == resource_id.as_str())
            .expect("listed");
        assert_eq!(
            (&row["plan"], &row["status"]),
            (&Value::from("premium"), &Value::from("active"))
        );
        if marketplace == "scalingo" {
            for action in ["suspend", "resume"] {
                let (code, answer) = call(action, marketplace, Some(&id), &[]);
                assert_eq!(code, 0, "{action}: {answer}");
            }
        }
        let (code, ended) = call("deprovision", marketplace, Some(&id), &[]);
        assert_eq!(code, 0, "{marketplace}: {ended}");
        let (code, again) = call("suspend", "heroku", Some(&id), &[]);
        assert_eq!(
            (code, again["error"].is_string()),
            (2, true),
            "Heroku has no suspend: {again}"
        );
    }
}

#[tokio::test]
async fn an_asynchronous_provision_answers_202_and_waits_for_the_vendor() {
    for marketplace in ["heroku", "scalingo"] {
        let (code, answer) = call("provision", marketplace, None, &["--async"]);
        assert_eq!(code, 0, "{answer}");
        assert_eq!(answer["answer"]["status"], 202, "{marketplace}: {answer}");
        let id = answer["answer"]["body"]["id"].as_str().unwrap();
        assert_eq!(
            stored_resource(id).await.status,
            shared::model::ResourceStatus::Provisioning
        );
    }
}

#[tokio::test]
async fn a_tried_scalingo_sign_in_link_signs_in_once() {
    let (_, provisioned) = call("provision", "scalingo", None, &[]);
    let id = provisioned["answer"]["body"]["id"].as_str().unwrap().to_string();
    let manifest = manifest_of("scalingo");
    let (code, link) = try_(&["sso", "--marketplace", "scalingo", &id, "--manifest", &manifest]);
    assert_eq!((code, &link["method"]), (0, &Value::from("GET")), "{link}");
    let url = link["url"].as_str().unwrap();
    let follow = || async { browser().get(url).send().await.unwrap().status().as_u16() };
    assert_eq!(follow().await, 303, "signed in");
    assert_ne!(follow().await, 303, "a link is spent once used");
}

#[tokio::test]
async fn the_curl_command_is_the_same_call() {
    let (code, printed) = call("provision", "clevercloud", None, &["--curl"]);
    assert_eq!(code, 0, "{printed}");
    let command = printed["curl"].as_str().unwrap();
    assert!(command.contains("$ADDON_PASSWORD") && !command.contains(&stack_var("ADDON_PASSWORD")));
    let output = std::process::Command::new("bash")
        .args(["-c", &format!("{command} -o /dev/null -w '%{{http_code}}'")])
        .env("ADDON_PASSWORD", stack_var("ADDON_PASSWORD"))
        .output()
        .expect("run curl");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "200", "{command}");
}

#[tokio::test]
async fn a_tried_cloud66_callback_signs_its_user_in() {
    let email = format!("{}@example.com", unique("try"));
    let (code, link) = try_(&["sso", "--marketplace", "cloud66", "--email", &email]);
    assert_eq!(code, 0, "{link}");
    let url = link["url"].as_str().unwrap();
    assert!(url.contains("/cloud66/sso/callback?multipass="), "{url}");
    let callback = |jar: &CookieJar, url: &str| {
        browser()
            .get(url)
            .header(reqwest::header::COOKIE, jar.header())
            .send()
    };
    // Not started in this browser: refused (docs/cloud66.md).
    let stranger = CookieJar::default();
    assert_eq!(callback(&stranger, url).await.unwrap().status().as_u16(), 403);
    // Started as the report says (start_url, then url, one browser): signed in.
    let mut jar = CookieJar::default();
    let start = link["start_url"].as_str().unwrap();
    visit(&mut jar, start).await;
    let answer = callback(&jar, url).await.unwrap();
    assert_eq!(answer.status().as_u16(), 303, "signed in");
    let forged = url.replace("signature=", "signature=00");
    let mut jar = CookieJar::default();
    visit(&mut jar, start).await;
    let refused = callback(&jar, &forged).await.unwrap();
    assert!(refused.status().is_client_error(), "{}", refused.status());
}

/// `provider try register` registers a purchase as the buyer's browser does;
/// `provider try event` then walks it through AWS's events to its end.
#[tokio::test]
async fn an_aws_marketplace_purchase_can_be_tried_from_registration_to_its_end() {
    let (code, registered) = try_(&["register", "--marketplace", "aws"]);
    assert_eq!(code, 0, "{registered}");
    assert_eq!(registered["answer"]["status"], 303, "{registered}");
    assert_eq!(registered["answer"]["session_opened"], true, "{registered}");
    let license = registered["license_arn"].as_str().unwrap().to_string();
    let id = registered["resource_id"].as_str().unwrap().to_string();
    assert_eq!(stored_resource(&id).await.plan, "basic");

    let premium = stack_var("AWS_MARKETPLACE_PLANS")
        .split(',')
        .find(|pair| pair.ends_with(":premium"))
        .and_then(|pair| pair.split_once(':'))
        .map(|(dimension, _)| dimension.to_string())
        .expect("a dimension for premium");
    let (code, updated) = try_(&[
        "event",
        "--marketplace",
        "aws",
        "updated",
        &license,
        "--dimension",
        &premium,
    ]);
    assert_eq!(code, 0, "{updated}");
    assert_eq!(stored_resource(&id).await.plan, "premium");
    for (event, status) in [
        ("ended", shared::model::ResourceStatus::Ending),
        ("deprovisioned", shared::model::ResourceStatus::Deprovisioned),
    ] {
        let (code, answer) = try_(&["event", "--marketplace", "aws", event, &license]);
        assert_eq!(code, 0, "{event}: {answer}");
        assert_eq!(stored_resource(&id).await.status, status, "{event}");
    }
    let (code, refused) = try_(&["event", "--marketplace", "aws", "ended", "not-a-license"]);
    assert_eq!(code, 2, "{refused}");
}
