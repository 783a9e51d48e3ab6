//! The Cloud 66 link flow end to end: browser GETs through `cargo lambda
//! watch`, the stand-in partner endpoint (tests/src/bin/fake_partner.rs)
//! answering as scripted by the `link_uid` prefix, state in DynamoDB Local.

use aws_sdk_dynamodb::types::AttributeValue;
use reqwest::{header, StatusCode};
use shared::cloud66::link::{self, Cloud66LinkApi, PartnerClient, PayloadFormat, Verification};
use shared::provisioner::DefaultProvisioner;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tests::*;

const CALLBACK: &str = "https://app.cloud66.com/partners/callback?state=1";

fn link_url(uid: &str, email: &str, callback: &str) -> String {
    reqwest::Url::parse_with_params(
        &format!("{}/cloud66/link", base_url()),
        &[("uid", uid), ("email", email), ("callback", callback)],
    )
    .unwrap()
    .to_string()
}

/// The link as its own user opens it: signing in with Cloud 66 when asked.
async fn open_link(uid: &str, email: &str, callback: &str) -> reqwest::Response {
    cloud66_link_as(uid, email, callback, email).await
}

/// What the stand-in partner endpoint received for a uid.
async fn received(uid: &str) -> Vec<serde_json::Value> {
    reqwest::get(format!("{}/received/{uid}", stack_var("E2E_PARTNER_URL")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn email_address() -> String {
    format!("{}@example.com", unique("user"))
}

async fn link_item(uid: &str) -> Item {
    let items = partition(&dynamo_client().await, &format!("CLOUD66_LINK#{uid}")).await;
    items.into_iter().next().expect("a link record")
}

async fn account_for(email: &str) -> (String, Item, Vec<Item>) {
    let client = dynamo_client().await;
    let claim = partition(&client, &format!("EMAIL#{email}")).await;
    assert_eq!(claim.len(), 1, "one email claim");
    let account_id = string(&claim[0], "owner_id");
    let items = partition(&client, &format!("ACCOUNT#{account_id}")).await;
    let (accounts, audits): (Vec<Item>, Vec<Item>) =
        items.into_iter().partition(|i| string(i, "sk") == "ACCOUNT");
    (account_id, accounts.into_iter().next().unwrap(), audits)
}

fn actions(audits: &[Item]) -> Vec<String> {
    audits.iter().map(|audit| string(audit, "action")).collect()
}

/// The exact fields Cloud 66 must receive: the link, and the account's
/// provisioned config (the partner payload).
async fn assert_payload(record: &serde_json::Value, uid: &str, email: &str, content_type: &str) {
    assert!(
        record["content_type"].as_str().unwrap().starts_with(content_type),
        "{record}"
    );
    let fields = record["fields"].as_object().unwrap();
    let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        ["ADDON_NAME_TOKEN", "ADDON_NAME_URL", "link_uid", "user_email"]
    );
    assert_eq!(fields["link_uid"], uid);
    assert_eq!(fields["user_email"], email);
    let (account_id, account, _) = account_for(email).await;
    let AttributeValue::L(resource_ids) = &account["resource_ids"] else {
        panic!("resource_ids")
    };
    let AttributeValue::S(resource_id) = &resource_ids[0] else {
        panic!("resource id")
    };
    let client = dynamo_client().await;
    let (resource, _) = resource_partition(&client, resource_id).await;
    let resource = resource.unwrap();
    assert_eq!(string(&resource, "platform"), "cloud66");
    assert_eq!(string(&resource, "addon_id"), account_id);
    let AttributeValue::M(config) = &resource["config"] else {
        panic!("config")
    };
    for name in ["ADDON_NAME_URL", "ADDON_NAME_TOKEN"] {
        assert_eq!(fields[name], string(config, name), "{name}");
    }
}

#[tokio::test]
async fn a_link_is_posted_as_json_recorded_and_redirected_and_a_reload_posts_nothing() {
    let (uid, email) = (unique("ok"), email_address());
    let response = open_link(&uid, &email.to_uppercase(), CALLBACK).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()[header::LOCATION], CALLBACK);

    let records = received(&uid).await;
    assert_eq!(records.len(), 1);
    assert_payload(&records[0], &uid, &email, "application/json").await;
    let link = link_item(&uid).await;
    assert_eq!(string(&link, "status"), "linked");
    assert!(string(&link, "linked_at").starts_with("20"));
    let (account_id, _, audits) = account_for(&email).await;
    assert_eq!(string(&link, "account_id"), account_id);
    assert_eq!(
        actions(&audits).iter().filter(|a| *a == "cloud66_linked").count(),
        1
    );

    let reload = open_link(&uid, &email, CALLBACK).await;
    assert_eq!(reload.status(), StatusCode::FOUND);
    assert_eq!(reload.headers()[header::LOCATION], CALLBACK);
    assert_eq!(received(&uid).await.len(), 1, "a reload must not POST again");
    let (_, _, audits_after) = account_for(&email).await;
    assert_eq!(audits_after.len(), audits.len(), "a reload creates nothing");
}

#[tokio::test]
async fn a_link_can_be_posted_as_a_form() {
    let config = addon_config();
    let provisioner = DefaultProvisioner::new(stack_var("RESOURCE_BASE_URL"), config.config_vars.clone());
    let partner = PartnerClient::new(
        format!("{}/partner", stack_var("E2E_PARTNER_URL")),
        PayloadFormat::Form,
        Duration::from_secs(3),
    );
    // In process, with the documented opt-out: `CLOUD66_LINK_VERIFY=none`
    // acts for whoever opens the link, as Cloud 66's own document has it.
    let api = Cloud66LinkApi::new(
        store().await,
        provisioner,
        partner,
        vec!["app.cloud66.com".into()],
        Verification::Unverified,
    );
    let (uid, email) = (unique("ok"), email_address());
    use lambda_http::RequestExt;
    let request = lambda_http::http::Request::builder()
        .uri("/cloud66/link")
        .body(lambda_http::Body::Empty)
        .unwrap()
        .with_query_string_parameters(HashMap::from([
            ("uid".to_string(), uid.clone()),
            ("email".to_string(), email.clone()),
            ("callback".to_string(), CALLBACK.to_string()),
        ]));
    let response = link::route(&api, request).await.unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()["location"], CALLBACK);
    let records = received(&uid).await;
    assert_eq!(records.len(), 1);
    assert_payload(&records[0], &uid, &email, "application/x-www-form-urlencoded").await;
}

#[tokio::test]
async fn already_linked_counts_as_linked() {
    let (uid, email) = (unique("already"), email_address());
    let response = open_link(&uid, &email, CALLBACK).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()[header::LOCATION], CALLBACK);
    let link = link_item(&uid).await;
    assert_eq!(string(&link, "status"), "linked");
    assert!(string(&link, "message").contains("already linked"));
}

#[tokio::test]
async fn a_refused_link_is_recorded_and_shown_with_a_way_back() {
    let (uid, email) = (unique("invalid"), email_address());
    let response = open_link(&uid, &email, CALLBACK).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get(header::LOCATION).is_none());
    let html = response.text().await.unwrap();
    assert!(html.contains("invalid link_uid"), "{html}");
    assert!(
        html.contains(r#"href="https://app.cloud66.com/partners/callback?state=1""#),
        "{html}"
    );
    let (account_id, _, audits) = account_for(&email).await;
    assert!(
        !html.contains(&account_id) && !html.contains("ADDON_NAME"),
        "no account data on the page"
    );

    let link = link_item(&uid).await;
    assert_eq!(string(&link, "status"), "refused");
    assert_eq!(string(&link, "message"), "invalid link_uid");
    let refused = audits
        .iter()
        .find(|a| string(a, "action") == "cloud66_link_refused")
        .expect("audited");
    let AttributeValue::M(details) = &refused["details"] else {
        panic!("details")
    };
    assert_eq!(string(details, "message"), "invalid link_uid");
}

#[tokio::test]
async fn a_5xx_is_retried_within_the_time_limit() {
    let (uid, email) = (unique("flaky"), email_address());
    let response = open_link(&uid, &email, CALLBACK).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(
        received(&uid).await.len(),
        2,
        "one 500, then the retry that succeeded"
    );
    assert_eq!(string(&link_item(&uid).await, "status"), "linked");
}

#[tokio::test]
async fn a_partner_that_hangs_leaves_the_link_pending_and_a_reload_retries() {
    let limit: u64 = stack_var("CLOUD66_PARTNER_TIME_LIMIT_SECONDS").parse().unwrap();
    let (uid, email) = (unique("hang"), email_address());
    let started = Instant::now();
    let response = open_link(&uid, &email, CALLBACK).await;
    let took = started.elapsed();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().get(header::LOCATION).is_none());
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    assert!(response.text().await.unwrap().contains("Reload this page"));
    assert!(
        took >= Duration::from_secs(limit) && took < Duration::from_secs(limit + 5),
        "{took:?}"
    );
    let link = link_item(&uid).await;
    assert_eq!(string(&link, "status"), "pending");
    let (_, _, audits) = account_for(&email).await;
    assert!(actions(&audits).contains(&"cloud66_link_pending".to_string()));

    let reload = open_link(&uid, &email, CALLBACK).await;
    assert_eq!(reload.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(received(&uid).await.len(), 2, "the reload tried again");
    assert_eq!(string(&link_item(&uid).await, "attempts"), "2");
}

#[tokio::test]
async fn callbacks_that_lead_elsewhere_are_refused_without_any_redirect() {
    for callback in [
        "https://evil.example/callback",
        "http://app.cloud66.com/callback",
        "https://app.cloud66.com@evil.example/",
        "https://app.cloud66.com.evil.example/callback",
        "https://app-cloud66.com/callback",
    ] {
        let (uid, email) = (unique("ok"), email_address());
        let response = open_link(&uid, &email, callback).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{callback}");
        assert!(response.headers().get(header::LOCATION).is_none(), "{callback}");
        let html = response.text().await.unwrap();
        assert!(html.contains("callback"), "{html}");
        assert!(!html.contains("href=\"http"), "no link anywhere: {html}");
        assert!(
            received(&uid).await.is_empty(),
            "nothing may be posted for {callback}"
        );
        let claims = partition(&dynamo_client().await, &format!("EMAIL#{email}")).await;
        assert!(claims.is_empty(), "no account may be created for {callback}");
    }
}

#[tokio::test]
async fn bad_uids_and_emails_are_refused_with_a_page_naming_them() {
    for (uid, email, named) in [
        ("", "a@example.com", "uid"),
        ("a b<c>", "a@example.com", "uid"),
        ("ok-1", "not-an-email", "email"),
    ] {
        let response = open_link(uid, email, CALLBACK).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(response.headers().get(header::LOCATION).is_none());
        assert!(response.text().await.unwrap().contains(named));
    }
}

#[tokio::test]
async fn a_linked_uid_with_another_email_is_refused() {
    let (uid, email) = (unique("ok"), email_address());
    assert_eq!(
        open_link(&uid, &email, CALLBACK).await.status(),
        StatusCode::FOUND
    );
    let other = open_link(&uid, &email_address(), CALLBACK).await;
    assert_eq!(other.status(), StatusCode::CONFLICT);
    assert!(other.headers().get(header::LOCATION).is_none());
    assert_eq!(received(&uid).await.len(), 1);
}

#[tokio::test]
async fn a_refused_attempt_with_someone_elses_email_does_not_squat_the_uid() {
    let uid = unique("victim");
    let attacker = format!("not-the-owner-{}@example.com", unique("x"));
    let refused = open_link(&uid, &attacker, CALLBACK).await;
    assert_eq!(
        refused.status(),
        StatusCode::FORBIDDEN,
        "Cloud 66 refuses the pair"
    );
    assert_eq!(string(&link_item(&uid).await, "status"), "refused");

    // The uid's real owner links it afterwards: the refused attempt is replaced.
    let owner = email_address();
    let linked = open_link(&uid, &owner, CALLBACK).await;
    assert_eq!(linked.status(), StatusCode::FOUND);
    let link = link_item(&uid).await;
    assert_eq!(string(&link, "status"), "linked");
    assert_eq!(string(&link, "email"), owner);
    let (account_id, _, _) = account_for(&owner).await;
    assert_eq!(string(&link, "account_id"), account_id);
    // And now it is bound: the other email gets 409, with nothing posted.
    let again = open_link(&uid, &attacker, CALLBACK).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert_eq!(received(&uid).await.len(), 2);
}

#[tokio::test]
async fn the_link_acts_only_after_its_user_signs_in_with_cloud66_as_that_email() {
    let (uid, email) = (unique("ok"), email_address());
    // Opened by anyone: nothing is created or posted; the browser is sent to sign in.
    let mut jar = CookieJar::default();
    let first = visit(&mut jar, &link_url(&uid, &email, CALLBACK)).await;
    assert_eq!(first.status(), StatusCode::FOUND);
    assert_eq!(first.headers()[header::LOCATION], "/cloud66/sso/start");
    let cookie = first.headers()[header::SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        cookie.starts_with("__Host-cloud66_link=") && cookie.contains("HttpOnly; Secure; SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        received(&uid).await.is_empty(),
        "nothing posted before the sign-in"
    );
    let client = dynamo_client().await;
    assert!(
        partition(&client, &format!("EMAIL#{email}")).await.is_empty(),
        "no account"
    );
    assert!(
        partition(&client, &format!("CLOUD66_LINK#{uid}"))
            .await
            .is_empty(),
        "no link record"
    );

    // Signed in as someone else: refused, nothing posted, the pending link spent.
    let attacker = email_address();
    let wrong = cloud66_link_as(&uid, &email, CALLBACK, &attacker).await;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    assert!(wrong.text().await.unwrap().contains("different user"));
    assert!(received(&uid).await.is_empty());
    assert!(partition(&client, &format!("EMAIL#{email}")).await.is_empty());

    // Signed in as the email being linked: linked, back to Cloud 66.
    let linked = cloud66_link_as(&uid, &email, CALLBACK, &email).await;
    assert_eq!(linked.status(), StatusCode::FOUND);
    assert_eq!(linked.headers()[header::LOCATION], CALLBACK);
    assert_eq!(received(&uid).await.len(), 1);
}

#[tokio::test]
async fn a_user_already_signed_in_with_cloud66_as_that_email_links_without_a_round_trip() {
    let email = email_address();
    // A Cloud 66 sign-in (through another link) leaves a session in the jar.
    let mut jar = CookieJar::default();
    visit(&mut jar, "/cloud66/sso/start").await;
    let sso = shared::cloud66::sso::Cloud66Sso::from_lookup(&shared::config::process_env)
        .unwrap()
        .unwrap();
    let expires = (chrono::Utc::now() + chrono::Duration::minutes(1))
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string();
    let (multipass, signature) = sso.sign_in_as(&email, "Signed In", &expires);
    let callback = reqwest::Url::parse_with_params(
        &format!("{}/cloud66/sso/callback", base_url()),
        &[("multipass", multipass), ("signature", signature)],
    )
    .unwrap();
    assert_eq!(
        visit(&mut jar, callback.as_str()).await.status(),
        StatusCode::SEE_OTHER
    );
    assert!(jar.holds("addon_session"));
    let uid = unique("ok");
    let response = visit(&mut jar, &link_url(&uid, &email, CALLBACK)).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()[header::LOCATION], CALLBACK);
    assert_eq!(received(&uid).await.len(), 1);
    // The same session is not enough for another email.
    let other = visit(&mut jar, &link_url(&unique("ok"), &email_address(), CALLBACK)).await;
    assert_eq!(other.headers()[header::LOCATION], "/cloud66/sso/start");
}

#[tokio::test]
async fn a_resume_without_a_pending_link_links_nothing() {
    let mut jar = CookieJar::default();
    let response = visit(&mut jar, "/cloud66/link/resume").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().get(header::LOCATION).is_none());
}

#[tokio::test]
async fn twenty_concurrent_requests_for_one_email_create_one_account_and_one_resource() {
    let email = email_address();
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let (uid, email) = (unique("ok"), email.clone());
            tokio::spawn(async move { open_link(&uid, &email, CALLBACK).await.status() })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), StatusCode::FOUND);
    }
    let client = dynamo_client().await;
    assert_eq!(count_entities(&client, "account", "email", &email).await, 1);
    let (account_id, account, audits) = account_for(&email).await;
    let AttributeValue::L(resource_ids) = &account["resource_ids"] else {
        panic!("resource_ids")
    };
    assert_eq!(resource_ids.len(), 1);
    assert_eq!(resources_with_addon_id(&client, &account_id).await, 1);
    assert_eq!(
        actions(&audits)
            .iter()
            .filter(|a| *a == "account_created")
            .count(),
        1
    );
    assert_eq!(
        actions(&audits).iter().filter(|a| *a == "cloud66_linked").count(),
        20
    );
}
