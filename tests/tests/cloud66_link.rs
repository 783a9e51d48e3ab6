//! The Cloud 66 link flow end to end: browser GETs through `cargo lambda
//! watch`, the stand-in partner endpoint (tests/src/bin/fake_partner.rs)
//! answering as scripted by the `link_uid` prefix, state in DynamoDB Local.

use aws_sdk_dynamodb::types::AttributeValue;
use reqwest::{header, StatusCode};
use shared::cloud66::link::unverified::UNCONFIRMED_TTL_SECONDS;
use shared::cloud66::link::PayloadFormat;
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
    let client = dynamo_client().await;
    let (resource, _) = resource_partition(&client, &string_list(&account, "resource_ids")[0]).await;
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
    let api = unverified_link_api(store().await, PayloadFormat::Form, Duration::from_secs(3)).await;
    let (uid, email) = (unique("ok"), email_address());
    let (status, location, _) = open_in_process(&api, &uid, &email, CALLBACK).await;
    assert_eq!(status, 302);
    assert_eq!(location.as_deref(), Some(CALLBACK));
    let records = received(&uid).await;
    assert_eq!(records.len(), 1);
    assert_payload(&records[0], &uid, &email, "application/x-www-form-urlencoded").await;
}

#[tokio::test]
async fn an_already_linked_answer_sends_the_user_back_but_binds_nothing() {
    let (uid, email) = (unique("already"), email_address());
    let response = open_link(&uid, &email, CALLBACK).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()[header::LOCATION], CALLBACK);
    let link = link_item(&uid).await;
    assert_eq!(string(&link, "status"), "already_linked");
    assert!(string(&link, "message").contains("already linked"));
    assert!(!link.contains_key("linked_at"));
    let (_, _, audits) = account_for(&email).await;
    assert!(
        !actions(&audits).contains(&"cloud66_linked".to_string()),
        "no Cloud 66 Linked event"
    );
    // Not bound: another email's attempt on the uid is tried (and posted), not refused with 409.
    let other = email_address();
    let again = open_link(&uid, &other, CALLBACK).await;
    assert_eq!(again.status(), StatusCode::FOUND);
    let posted: Vec<_> = received(&uid)
        .await
        .into_iter()
        .map(|r| r["fields"]["user_email"].clone())
        .collect();
    assert_eq!(posted, [email.as_str(), other.as_str()]);
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
    // Only the pending request exists, and it expires.
    let token = cookie
        .trim_start_matches("__Host-cloud66_link=")
        .split(';')
        .next()
        .unwrap();
    let waiting = partition(
        &client,
        &format!("PENDING_LINK#{}", shared::signin::fingerprint(token)),
    )
    .await;
    assert_eq!(waiting.len(), 1);
    let expires: i64 = string(&waiting[0], "expires_at").parse().unwrap();
    assert!(expires > unix_now() && expires <= unix_now() + 600, "{expires}");
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

/// A browser signed in with Cloud 66 as `email` (a session in the jar).
async fn signed_in_as(email: &str) -> CookieJar {
    let mut jar = CookieJar::default();
    visit(&mut jar, "/cloud66/sso/start").await;
    let sso = shared::cloud66::sso::Cloud66Sso::from_lookup(&shared::config::process_env)
        .unwrap()
        .unwrap();
    let expires = (chrono::Utc::now() + chrono::Duration::minutes(1))
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string();
    let (multipass, signature) = sso.sign_in_as(email, &unique("Signed In"), &expires);
    let callback = reqwest::Url::parse_with_params(
        &format!("{}/cloud66/sso/callback", base_url()),
        &[("multipass", multipass), ("signature", signature)],
    )
    .unwrap();
    assert_eq!(
        visit(&mut jar, callback.as_str()).await.status(),
        StatusCode::SEE_OTHER
    );
    assert!(jar.holds("__Host-addon_session"));
    jar
}

#[tokio::test]
async fn a_user_already_signed_in_with_cloud66_as_that_email_confirms_without_a_round_trip() {
    let email = email_address();
    let mut jar = signed_in_as(&email).await;
    let uid = unique("ok");
    let page = visit(&mut jar, &link_url(&uid, &email, CALLBACK)).await;
    assert_eq!(page.status(), StatusCode::OK, "the confirmation page");
    assert!(
        received(&uid).await.is_empty(),
        "nothing posted before the confirmation"
    );
    let response = confirm_link(&mut jar, page).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()[header::LOCATION], CALLBACK);
    assert_eq!(received(&uid).await.len(), 1);
    // The same session is not enough for another email.
    let other = visit(&mut jar, &link_url(&unique("ok"), &email_address(), CALLBACK)).await;
    assert_eq!(other.headers()[header::LOCATION], "/cloud66/sso/start");
}

/// What an attack left: nothing posted to Cloud 66 for `uid`, no link record.
async fn assert_nothing_linked(uid: &str) {
    assert!(received(uid).await.is_empty(), "nothing posted for {uid}");
    assert!(
        partition(&dynamo_client().await, &format!("CLOUD66_LINK#{uid}"))
            .await
            .is_empty(),
        "no link record for {uid}"
    );
}

#[tokio::test]
async fn a_cross_site_get_carrying_the_victims_session_links_nothing() {
    let victim = email_address();
    let mut jar = signed_in_as(&victim).await;
    let (_, account, _) = account_for(&victim).await;
    let attacker_uid = unique("ok");
    // The attacker's page sends the signed-in victim's browser to the link.
    let response = browser()
        .get(link_url(&attacker_uid, &victim, CALLBACK))
        .header(header::COOKIE, jar.header())
        .header("sec-fetch-site", "cross-site")
        .header(header::REFERER, "https://attacker.example/")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "only the confirmation page");
    let page = response.text().await.unwrap();
    assert!(
        page.contains(&attacker_uid) && page.contains(&victim),
        "it names the uid and the email"
    );
    assert_nothing_linked(&attacker_uid).await;
    let (_, after, _) = account_for(&victim).await;
    assert_eq!(
        string_list(&after, "resource_ids"),
        string_list(&account, "resource_ids"),
        "nothing provisioned"
    );
    // Nor does an auto-submitted cross-site POST of the fields, token or not.
    let fields = confirmation_fields(&page);
    let forged = browser()
        .post(format!("{}/cloud66/link", base_url()))
        .header(header::COOKIE, jar.header())
        .header(header::ORIGIN, "https://attacker.example")
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_nothing_linked(&attacker_uid).await;
    jar.take_from(&forged);
}

#[tokio::test]
async fn a_confirmation_without_this_browsers_token_for_this_request_links_nothing() {
    let email = email_address();
    let mut jar = signed_in_as(&email).await;
    let uid = unique("ok");
    let page = visit(&mut jar, &link_url(&uid, &email, CALLBACK)).await;
    let fields = confirmation_fields(&page.text().await.unwrap());
    let with = |name: &str, value: Option<String>| -> Vec<(String, String)> {
        let mut changed: Vec<(String, String)> = fields.iter().filter(|(n, _)| n != name).cloned().collect();
        if let Some(value) = value {
            changed.push((name.to_string(), value));
        }
        changed
    };
    // No token.
    let response = post_confirmation(&mut jar, &with("token", None)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // Another session's token for the same request (the attacker's own).
    let mut other = signed_in_as(&email).await;
    let other_page = visit(&mut other, &link_url(&uid, &email, CALLBACK)).await;
    let other_token = confirmation_fields(&other_page.text().await.unwrap())
        .into_iter()
        .find(|(name, _)| name == "token")
        .unwrap()
        .1;
    let response = post_confirmation(&mut jar, &with("token", Some(other_token))).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // This browser's token, with the uid changed.
    let changed_uid = unique("ok");
    let response = post_confirmation(&mut jar, &with("uid", Some(changed_uid.clone()))).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_nothing_linked(&changed_uid).await;
    // Everything right but no session cookie.
    let response = post_confirmation(&mut CookieJar::default(), &fields).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_nothing_linked(&uid).await;
    // The confirmed POST links once; posting it again posts nothing more.
    let linked = post_confirmation(&mut jar, &fields).await;
    assert_eq!(linked.status(), StatusCode::FOUND);
    assert_eq!(linked.headers()[header::LOCATION], CALLBACK);
    let again = post_confirmation(&mut jar, &fields).await;
    assert_eq!(again.status(), StatusCode::FOUND);
    assert_eq!(received(&uid).await.len(), 1, "linked once");
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
    assert_eq!(string_list(&account, "resource_ids").len(), 1);
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

/// The config values a partner POST carried (everything but the link's own fields).
fn posted_config(record: &serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    let mut fields = record["fields"].as_object().unwrap().clone();
    fields.remove("link_uid");
    fields.remove("user_email");
    assert!(!fields.is_empty(), "{record}");
    fields
}

/// A resource item's config, as the partner POST would carry it.
fn stored_config(resource: &Item) -> serde_json::Map<String, serde_json::Value> {
    let AttributeValue::M(config) = &resource["config"] else {
        panic!("config")
    };
    config
        .keys()
        .map(|name| (name.clone(), string(config, name).into()))
        .collect()
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn an_unverified_link_never_sends_an_existing_accounts_credentials_to_a_uid_not_linked_to_it() {
    // The victim linked (and so has an account and credentials).
    let victim = email_address();
    assert_eq!(
        open_link(&unique("ok"), &victim, CALLBACK).await.status(),
        StatusCode::FOUND
    );
    let (victim_account, account, _) = account_for(&victim).await;
    let client = dynamo_client().await;
    let (resource, _) = resource_partition(&client, &string_list(&account, "resource_ids")[0]).await;
    let victim_config = stored_config(&resource.unwrap());

    // An attacker's uid with the victim's email, where nobody signs in.
    let api = unverified_link_api(store().await, PayloadFormat::Json, Duration::from_secs(3)).await;
    let uid = unique("invalid");
    let (status, location, page) = open_in_process(&api, &uid, &victim, CALLBACK).await;
    assert_eq!(status, 403, "{page}");
    assert!(location.is_none());
    let sent = received(&uid).await;
    assert_eq!(sent.len(), 1);
    let sent_config = posted_config(&sent[0]);
    for (name, value) in &victim_config {
        assert_ne!(
            sent_config.get(name),
            Some(value),
            "{name} of the victim's was sent"
        );
    }
    // The victim's account is as it was; the attempt's resource is apart and expiring.
    let (_, account_after, _) = account_for(&victim).await;
    assert_eq!(
        string_list(&account_after, "resource_ids"),
        string_list(&account, "resource_ids")
    );
    let link = link_item(&uid).await;
    assert_eq!(string(&link, "status"), "refused");
    assert!(!link.contains_key("account_id"), "linked to no account");
    let (attempt_resource, audits) = resource_partition(&client, &string(&link, "resource_id")).await;
    let attempt_resource = attempt_resource.unwrap();
    assert_eq!(string(&attempt_resource, "status"), "unconfirmed");
    assert_ne!(string(&attempt_resource, "addon_id"), victim_account);
    assert_eq!(stored_config(&attempt_resource), sent_config);
    assert!(
        audits.is_empty(),
        "no audit event announces an unconfirmed resource"
    );
}

#[tokio::test]
async fn an_unverified_link_leaves_only_expiring_unconfirmed_items_until_cloud66_answers_200() {
    let email = email_address();
    let api = unverified_link_api(store().await, PayloadFormat::Json, Duration::from_secs(1)).await;
    let client = dynamo_client().await;

    // Cloud 66 down: pending, with nothing but two expiring items.
    let uid = unique("down");
    let before = unix_now();
    let (status, _, page) = open_in_process(&api, &uid, &email, CALLBACK).await;
    assert_eq!(status, 503, "{page}");
    assert!(
        partition(&client, &format!("EMAIL#{email}")).await.is_empty(),
        "no account, so nothing for Cloudmore"
    );
    let link = link_item(&uid).await;
    assert_eq!(string(&link, "status"), "pending");
    let expires: i64 = string(&link, "expires_at").parse().unwrap();
    assert!(
        expires > before && expires <= unix_now() + UNCONFIRMED_TTL_SECONDS,
        "{expires}"
    );
    let resource_id = string(&link, "resource_id");
    let (resource, _) = resource_partition(&client, &resource_id).await;
    let resource = resource.unwrap();
    assert_eq!(string(&resource, "status"), "unconfirmed");
    assert_eq!(string(&resource, "expires_at"), expires.to_string());

    // A reload sends the same unconfirmed resource again, not a new one.
    assert_eq!(open_in_process(&api, &uid, &email, CALLBACK).await.0, 503);
    let sent = received(&uid).await;
    assert!(sent.len() >= 2);
    assert_eq!(posted_config(&sent[0]), posted_config(sent.last().unwrap()));
    assert_eq!(string(&link_item(&uid).await, "resource_id"), resource_id);
    assert_eq!(string(&link_item(&uid).await, "attempts"), "2");

    // Cloud 66 answers 200 for another uid of this email: the account is
    // created only now, with the confirmed resource, and nothing expires.
    let uid = unique("ok");
    let (status, location, _) = open_in_process(&api, &uid, &email, CALLBACK).await;
    assert_eq!(status, 302);
    assert_eq!(location.as_deref(), Some(CALLBACK));
    let (account_id, account, audits) = account_for(&email).await;
    let link = link_item(&uid).await;
    assert_eq!(string(&link, "status"), "linked");
    assert_eq!(string(&link, "account_id"), account_id);
    assert!(!link.contains_key("expires_at"));
    let confirmed_id = string(&link, "resource_id");
    assert_eq!(string_list(&account, "resource_ids"), vec![confirmed_id.clone()]);
    let (confirmed, resource_audits) = resource_partition(&client, &confirmed_id).await;
    let confirmed = confirmed.unwrap();
    assert_eq!(string(&confirmed, "status"), "active");
    assert_eq!(string(&confirmed, "addon_id"), account_id);
    assert!(!confirmed.contains_key("expires_at"));
    assert_eq!(stored_config(&confirmed), posted_config(&received(&uid).await[0]));
    assert_eq!(actions(&resource_audits), ["provisioned"]);
    assert!(actions(&audits).contains(&"cloud66_linked".to_string()));
    // The down uid's attempt stays apart, expiring.
    assert_ne!(confirmed_id, resource_id);
}

/// One round of the race: the uid's owner and someone else, at once.
async fn race_for_one_uid<F, Fut>(open: F)
where
    F: Fn(String, String) -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    for _ in 0..4 {
        let uid = unique("ok");
        let owner = email_address();
        let other = format!("not-the-owner-{}", email_address());
        let (owner_status, other_status) =
            tokio::join!(open(uid.clone(), owner.clone()), open(uid.clone(), other.clone()));
        assert_eq!(owner_status, 302, "the owner is linked");
        assert!([403, 409].contains(&other_status), "{other_status}");
        let link = link_item(&uid).await;
        assert_eq!(string(&link, "status"), "linked");
        assert_eq!(string(&link, "email"), owner);
        let (account_id, account, _) = account_for(&owner).await;
        assert_eq!(string(&link, "account_id"), account_id);
        // What Cloud 66 accepted for the owner is what the owner's account holds.
        let owner_post = received(&uid)
            .await
            .into_iter()
            .find(|record| record["fields"]["user_email"] == owner.as_str())
            .unwrap();
        let client = dynamo_client().await;
        let (resource, _) = resource_partition(&client, &string_list(&account, "resource_ids")[0]).await;
        assert_eq!(stored_config(&resource.unwrap()), posted_config(&owner_post));
        // And it stays bound: the other email is refused from now on.
        assert_eq!(open(uid.clone(), other.clone()).await, 409);
    }
}

#[tokio::test]
async fn two_concurrent_attempts_on_one_uid_with_different_emails_bind_it_to_the_one_cloud66_confirms() {
    race_for_one_uid(|uid, email| async move { open_link(&uid, &email, CALLBACK).await.status().as_u16() })
        .await;
    let api = unverified_link_api(store().await, PayloadFormat::Json, Duration::from_secs(3)).await;
    let api = &api;
    race_for_one_uid(|uid, email| async move { open_in_process(api, &uid, &email, CALLBACK).await.0 }).await;
}

/// The resource ids the stand-in vendor holds a tenant for.
async fn held_at_vendor() -> Vec<String> {
    reqwest::get(format!("{}/held", stack_var("E2E_VENDOR_URL")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// What the stand-in vendor was asked to provision for a uid, and answered.
async fn vendor_provisions_for(uid: &str) -> Vec<serde_json::Value> {
    let received: Vec<serde_json::Value> = reqwest::get(format!("{}/received", stack_var("E2E_VENDOR_URL")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    received
        .into_iter()
        .filter(|request| {
            request["body"]["action"] == "provision"
                && request["body"]["marketplace_ids"]["account_id"] == uid
        })
        .collect()
}

#[tokio::test]
async fn an_unverified_attempt_leaves_no_tenant_at_the_vendor_once_its_ttl_removes_it() {
    let store = store().await;
    let api = unverified_link_api_through_vendor(store.clone()).await;
    let (uid, email) = (unique("invalid"), email_address());
    let (status, _, page) = open_in_process(&api, &uid, &email, CALLBACK).await;
    assert_eq!(status, 403, "Cloud 66 refuses: {page}");
    let resource_id = string(&link_item(&uid).await, "resource_id");
    assert!(
        held_at_vendor().await.contains(&resource_id),
        "the attempt's tenant exists"
    );

    // Its TTL passes. DynamoDB Local does not expire items, so the delete
    // DynamoDB's TTL would make is made by hand; the stream says the same.
    let client = dynamo_client().await;
    client
        .delete_item()
        .table_name(table_name())
        .key("pk", AttributeValue::S(format!("RESOURCE#{resource_id}")))
        .key("sk", AttributeValue::S("RESOURCE".into()))
        .send()
        .await
        .unwrap();
    let removed: Vec<_> = tests::stream::records_for(&format!("RESOURCE#{resource_id}"))
        .await
        .into_iter()
        .filter(|record| record["eventName"] == "REMOVE")
        .collect();
    assert_eq!(removed.len(), 1);
    let sync = shared::sync::PlatformSync::new(
        acting_as("platform-sync", &store).await,
        shared::clevercloud::vendor::VendorClient::new(
            "http://127.0.0.1:9/v2".into(),
            "addon-name".into(),
            shared::secret::Secret::new("unused"),
        ),
        None,
        None,
    )
    .with_provisioner(stack_provisioner());
    let response = sync.handle(tests::stream::event(&removed), None).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert!(
        !held_at_vendor().await.contains(&resource_id),
        "the vendor holds nothing for the expired attempt"
    );
}

#[tokio::test]
async fn two_unverified_attempts_on_one_uid_get_tenants_of_their_own_from_the_vendor() {
    let api = unverified_link_api_through_vendor(store().await).await;
    // A stranger types the uid first, with their own email; then its owner.
    let uid = unique("invalid");
    let (stranger, owner) = (email_address(), email_address());
    assert_eq!(open_in_process(&api, &uid, &stranger, CALLBACK).await.0, 403);
    assert_eq!(open_in_process(&api, &uid, &owner, CALLBACK).await.0, 403);
    let provisions = vendor_provisions_for(&uid).await;
    assert_eq!(provisions.len(), 2, "{provisions:#?}");
    let keys: std::collections::BTreeSet<String> = provisions
        .iter()
        .map(|request| request["body"]["idempotency_key"].to_string())
        .collect();
    assert_eq!(keys.len(), 2, "one idempotency key per attempt, not per uid");
    let configs: std::collections::BTreeSet<String> = provisions
        .iter()
        .map(|request| request["answer"]["body"]["config"].to_string())
        .collect();
    assert_eq!(
        configs.len(),
        2,
        "the owner is never replayed the stranger's tenant"
    );
}

/// `GET /cloud66/link` alone, handed to `api` in process: its status and page.
async fn get_only<P: shared::provisioner::Provisioner>(
    api: &shared::cloud66::link::Cloud66LinkApi<shared::store::DynamoStore, P>,
    uid: &str,
    email: &str,
) -> (u16, String) {
    use lambda_http::RequestExt;
    let request = lambda_http::http::Request::builder()
        .uri("/cloud66/link")
        .body(lambda_http::Body::Empty)
        .unwrap()
        .with_query_string_parameters(std::collections::HashMap::from([
            ("uid".to_string(), uid.to_string()),
            ("email".to_string(), email.to_string()),
            ("callback".to_string(), CALLBACK.to_string()),
        ]));
    let response = shared::cloud66::link::route(api, request)
        .await
        .unwrap_or_else(|never| match never {});
    (
        response.status().as_u16(),
        String::from_utf8_lossy(response.body().as_ref()).into_owned(),
    )
}

#[tokio::test]
async fn an_unverified_link_reaches_neither_cloud66_nor_the_vendor_before_its_confirmation() {
    let api = unverified_link_api_through_vendor(store().await).await;
    let (uid, email) = (unique("ok"), email_address());
    let (status, page) = get_only(&api, &uid, &email).await;
    assert_eq!(status, 200, "the confirmation page: {page}");
    assert!(page.contains("Link my account"));
    assert!(received(&uid).await.is_empty(), "nothing posted to Cloud 66");
    assert!(
        vendor_provisions_for(&uid).await.is_empty(),
        "nothing asked of the vendor"
    );
    assert_nothing_linked(&uid).await;
    assert!(partition(&dynamo_client().await, &format!("EMAIL#{email}"))
        .await
        .is_empty());
}

#[tokio::test]
async fn a_link_opened_without_a_session_answers_the_same_whatever_the_uids_state() {
    // A uid linked to someone, and a uid nobody has used.
    let (linked_uid, owner) = (unique("ok"), email_address());
    assert_eq!(
        open_link(&linked_uid, &owner, CALLBACK).await.status(),
        StatusCode::FOUND
    );
    let stranger = email_address();
    let mut answers = Vec::new();
    for uid in [linked_uid.clone(), unique("ok")] {
        let response = visit(&mut CookieJar::default(), &link_url(&uid, &stranger, CALLBACK)).await;
        answers.push((
            response.status(),
            response.headers().get(header::LOCATION).cloned(),
        ));
    }
    assert_eq!(
        answers[0], answers[1],
        "a stranger learns nothing of who owns a uid"
    );
    assert_eq!(answers[0].0, StatusCode::FOUND);
    assert_eq!(answers[0].1.as_ref().unwrap(), "/cloud66/sso/start");
    // In the unverified setting, the page is the same too (but for the token).
    let api = unverified_link_api(store().await, PayloadFormat::Json, Duration::from_secs(3)).await;
    let strip_token = |page: String| page.split("name=\"token\"").next().unwrap().to_string();
    let (linked_status, linked_page) = get_only(&api, &linked_uid, &stranger).await;
    let fresh_uid = unique("ok");
    let (fresh_status, fresh_page) = get_only(&api, &fresh_uid, &stranger).await;
    assert_eq!(linked_status, fresh_status);
    assert_eq!(
        strip_token(linked_page.replace(&linked_uid, "UID")),
        strip_token(fresh_page.replace(&fresh_uid, "UID"))
    );
}

#[tokio::test]
async fn a_partner_that_redirects_gets_no_credentials_re_sent_and_links_nothing() {
    let (uid, email) = (unique("redirect"), email_address());
    let started = Instant::now();
    let response = open_link(&uid, &email, CALLBACK).await;
    // A redirect is no answer: retried until the time limit, then pending.
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        !received(&uid).await.is_empty(),
        "the POST reached the partner endpoint"
    );
    assert!(
        received(&format!("stolen-{uid}")).await.is_empty(),
        "nothing re-sent to where the redirect pointed"
    );
    assert_eq!(string(&link_item(&uid).await, "status"), "pending");
}
