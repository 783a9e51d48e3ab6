//! AWS Marketplace through the stack (docs/aws-marketplace.md): the buyer's
//! registration post, signed in to the vendor's app; and the subscription
//! events, in any order and with duplicates, as EventBridge hands them to
//! `marketplace-events`. AWS is the stand-in
//! (tests/src/bin/fake_aws_marketplace.rs), the vendor the stand-in vendor.

use reqwest::header;
use serde_json::{json, Value};
use tests::*;

async fn set_entitlements(license_arn: &str, dimensions: &[&str], empty_first_page: bool) {
    let entitlements: Vec<Value> = dimensions
        .iter()
        .map(|dimension| json!({"Dimension": dimension, "Value": {"IntegerValue": 1}}))
        .collect();
    let status = reqwest::Client::new()
        .put(format!("{}/entitlements", stack_var("E2E_AWS_MARKETPLACE_URL")))
        .json(&json!({"license_arn": license_arn, "entitlements": entitlements, "empty_first_page": empty_first_page, "page_size": 1}))
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "{status}");
}

/// The buyer's browser posting AWS's form to the fulfillment URL.
async fn register(token: &str, jar: &mut CookieJar) -> reqwest::Response {
    let response = browser()
        .post(format!("{}/aws/register", base_url()))
        .header(header::COOKIE, jar.header())
        .form(&[("x-amzn-marketplace-token", token)])
        .send()
        .await
        .expect("the stack answers");
    jar.take_from(&response);
    response
}

/// The stand-in vendor's calls about `license_arn`, oldest first.
async fn vendor_calls(license_arn: &str) -> Vec<Value> {
    let all: Vec<Value> = reqwest::get(format!("{}/received", stack_var("E2E_VENDOR_URL")))
        .await
        .expect("the stand-in vendor")
        .json()
        .await
        .unwrap();
    all.into_iter()
        .map(|entry| entry["body"].clone())
        .filter(|body| body["marketplace_ids"]["license_arn"] == license_arn)
        .collect()
}

fn actions(calls: &[Value]) -> Vec<String> {
    calls
        .iter()
        .map(|call| call["action"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Follows the hand-off from `location` through the vendor's app, as a
/// browser would: the app's login, the provider's authorize (with the
/// session), the app's callback. The app's record of the sign-in.
async fn through_the_app(jar: &mut CookieJar, location: &str) -> Value {
    let mut next = location.to_string();
    for _ in 0..6 {
        let response = visit(jar, &next).await;
        if !response.status().is_redirection() {
            break;
        }
        let location = response.headers()[header::LOCATION].to_str().unwrap().to_string();
        next = if location.starts_with("http") {
            location
        } else {
            let base = reqwest::Url::parse(&next).unwrap();
            base.join(&location).unwrap().to_string()
        };
        if next.ends_with("/app/") {
            break;
        }
    }
    let received: Vec<Value> = reqwest::get(format!("{}/app/received", stack_var("E2E_APP_URL")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    received.last().cloned().expect("the app recorded a sign-in")
}

#[tokio::test]
async fn a_registration_provisions_once_and_signs_the_buyer_in_to_the_vendors_app() {
    let (token, license_arn, account) = aws_mint(json!({})).await;
    let mut jar = CookieJar::default();
    let response = register(&token, &mut jar).await;
    assert_eq!(response.status(), 303, "{:?}", response.text().await);
    assert!(jar.holds("__Host-addon_session"), "a session is opened");
    let location = response.headers()[header::LOCATION].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!("{}/app/login?", stack_var("E2E_APP_URL"))),
        "{location}"
    );

    let signed_in = through_the_app(&mut jar, &location).await;
    let claims = &signed_in["claims"];
    assert_eq!(claims["marketplace"], "aws", "{claims}");
    assert_eq!(claims["aws_account_id"], account.as_str(), "{claims}");
    assert_eq!(claims["marketplace_id"], license_arn.as_str(), "{claims}");
    assert_eq!(claims["plan"], "basic", "the listing's first plan: {claims}");
    assert!(claims.get("email").is_none(), "AWS gives no email: {claims}");
    let resource_id = claims["resource_id"].as_str().unwrap().to_string();
    assert!(resource_id.starts_with("res_aws_"), "{resource_id}");
    assert_eq!(actions(&vendor_calls(&license_arn).await), ["provision"]);
    let stored = stored_resource(&resource_id).await;
    assert_eq!(stored.owner_id.as_deref(), Some(account.as_str()));

    // The same form again (a reload): the same landing, no new session,
    // nothing provisioned again.
    let mut again_jar = CookieJar::default();
    let again = register(&token, &mut again_jar).await;
    assert_eq!(again.status(), 303);
    assert!(
        !again_jar.holds("__Host-addon_session"),
        "a re-post opens no second session"
    );
    assert_eq!(actions(&vendor_calls(&license_arn).await), ["provision"]);
    assert_eq!(stored_resource(&resource_id).await.version, stored.version);
}

#[tokio::test]
async fn a_second_purchase_by_the_same_account_is_a_second_resource() {
    let (first, first_license, account) = aws_mint(json!({})).await;
    let (second, second_license, _) = aws_mint(json!({"account": account})).await;
    for token in [&first, &second] {
        assert_eq!(register(token, &mut CookieJar::default()).await.status(), 303);
    }
    assert_ne!(first_license, second_license);
    assert_eq!(actions(&vendor_calls(&first_license).await), ["provision"]);
    assert_eq!(actions(&vendor_calls(&second_license).await), ["provision"]);
}

async fn page(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let content_type = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn invalid_expired_and_foreign_tokens_get_pages_that_say_what_to_do() {
    let (status, html) = page(register("tok-never-minted", &mut CookieJar::default()).await).await;
    assert_eq!(status, 400);
    assert!(
        html.contains("did not recognise") && html.contains("Set up your account"),
        "{html}"
    );

    let (stale, license, _) = aws_mint(json!({"expires_in": 0})).await;
    let (status, html) = page(register(&stale, &mut CookieJar::default()).await).await;
    assert_eq!(status, 400);
    assert!(
        html.contains("expired") && html.contains("Set up your account"),
        "{html}"
    );
    assert!(vendor_calls(&license).await.is_empty());

    let (foreign, license, _) = aws_mint(json!({"product_code": "someoneelses1"})).await;
    let (status, html) = page(register(&foreign, &mut CookieJar::default()).await).await;
    assert_eq!(status, 403, "{html}");
    // Again (a reload): the same page, not AWS's answer to a resubmitted token.
    let (status, html) = page(register(&foreign, &mut CookieJar::default()).await).await;
    assert_eq!(status, 403, "{html}");
    assert!(vendor_calls(&license).await.is_empty());

    let response = browser()
        .post(format!("{}/aws/register", base_url()))
        .header(header::CONTENT_TYPE, "application/json")
        .body(r#"{"x-amzn-marketplace-token":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(page(response).await.0, 400);
}

#[tokio::test]
async fn throttling_gets_a_try_again_page_and_the_retry_finishes_the_registration() {
    let (token, license, _) = aws_mint(json!({})).await;
    let status = reqwest::Client::new()
        .post(format!("{}/throttle", stack_var("E2E_AWS_MARKETPLACE_URL")))
        .json(&json!({"operation": "ResolveCustomer", "next": 10}))
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success());
    let response = register(&token, &mut CookieJar::default()).await;
    assert_eq!(response.headers()[header::RETRY_AFTER], "5");
    let (status, html) = page(response).await;
    assert_eq!(status, 503);
    assert!(
        html.contains("try again") && html.contains(r#"name="x-amzn-marketplace-token""#),
        "{html}"
    );
    assert!(vendor_calls(&license).await.is_empty(), "nothing half-written");
    // The stand-in throttled the SDK's own retries too; once AWS answers
    // again, the same form finishes the registration.
    reqwest::Client::new()
        .post(format!("{}/throttle", stack_var("E2E_AWS_MARKETPLACE_URL")))
        .json(&json!({"operation": "ResolveCustomer", "next": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(register(&token, &mut CookieJar::default()).await.status(), 303);
    assert_eq!(actions(&vendor_calls(&license).await), ["provision"]);
}

/// An EventBridge delivery to `marketplace-events`, through watch's Invoke API.
async fn deliver(event: &Value) -> (u16, Value) {
    invoke("marketplace-events", event).await
}

fn event(id: &str, detail_type: &str, detail: Value) -> Value {
    json!({
        "version": "0",
        "id": id,
        "detail-type": detail_type,
        "source": "aws.agreement-marketplace",
        "account": "123456789012",
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": "us-east-1",
        "resources": ["arn:aws:aws-marketplace::aws:agreement:agmt-e2e"],
        "detail": detail,
    })
}

/// The license's agreement and license events, as AWS would send them.
struct Events {
    created: Value,
    updated: Value,
    ended: Value,
    deprovisioned: Value,
    ending: Value,
}

fn events_of(license_arn: &str) -> Events {
    let agreement = unique("agmt");
    let product = stack_var("AWS_MARKETPLACE_PRODUCT_CODE");
    // License events print the ARN without its `arn:`.
    let printed_arn = license_arn.trim_start_matches("arn:").to_string();
    Events {
        created: event(
            &unique("ev"),
            "Purchase Agreement Created - Proposer",
            json!({"agreement": {"id": agreement}}),
        ),
        updated: event(
            &unique("ev"),
            "License Updated - Manufacturer",
            json!({"agreement": {"id": agreement}, "license": {"arn": printed_arn}, "product": {"code": product}}),
        ),
        ended: event(
            &unique("ev"),
            "Purchase Agreement Ended - Manufacturer",
            json!({"agreement": {"id": agreement}}),
        ),
        deprovisioned: event(
            &unique("ev"),
            "License Deprovisioned - Manufacturer",
            json!({"license": {"arn": printed_arn}, "product": {"code": product}}),
        ),
        ending: event(
            &unique("ev"),
            "Purchase Agreement Ending - Proposer",
            json!({"agreement": {"id": agreement}}),
        ),
    }
}

async fn deliver_all(events: &[&Value]) {
    for delivery in events {
        let (status, answer) = deliver(delivery).await;
        assert_eq!(status, 200, "{answer}");
    }
}

/// The audit actions of `resource_id`'s history.
async fn audited(resource_id: &str) -> Vec<String> {
    let (_, audits) = resource_partition(&dynamo_client().await, resource_id).await;
    audits.iter().map(|item| string(item, "action")).collect()
}

fn resource_of(license_arn: &str) -> String {
    shared::aws_marketplace::resource_id(shared::model::aws_license_id(license_arn))
}

#[tokio::test]
async fn events_in_any_order_with_duplicates_end_in_one_plan_change_and_one_deprovision_audited_once() {
    let (token, license_arn, _) = aws_mint(json!({})).await;
    let mut jar = CookieJar::default();
    assert_eq!(register(&token, &mut jar).await.status(), 303);
    let id = resource_of(&license_arn);
    let events = events_of(&license_arn);
    // A new dimension, over three pages, the first of them empty.
    set_entitlements(&license_arn, &["basic_seats", "premium_seats"], true).await;
    deliver_all(&[
        &events.updated,
        &events.created,
        &events.updated,
        &events.ending,
        &events.created,
    ])
    .await;
    assert_eq!(stored_resource(&id).await.plan, "premium");
    let pages = reqwest::get(format!(
        "{}/received/GetEntitlements",
        stack_var("E2E_AWS_MARKETPLACE_URL")
    ))
    .await
    .unwrap()
    .json::<Vec<Value>>()
    .await
    .unwrap()
    .into_iter()
    .filter(|call| call.to_string().contains(&license_arn))
    .count();
    assert_eq!(pages, 3, "every page read, the empty first one included, once");
    // The end, each delivered twice, with a late Created and Updated after it.
    deliver_all(&[
        &events.ended,
        &events.deprovisioned,
        &events.created,
        &events.ended,
        &events.deprovisioned,
        &events.updated,
    ])
    .await;
    assert_eq!(
        actions(&vendor_calls(&license_arn).await),
        ["provision", "change_plan", "deprovision"]
    );
    let resource = stored_resource(&id).await;
    assert_eq!(resource.status, shared::model::ResourceStatus::Deprovisioned);
    assert_eq!(resource.plan, "premium");
    let history = audited(&id).await;
    for action in ["plan_changed", "deprovisioned"] {
        assert_eq!(
            history.iter().filter(|held| *held == action).count(),
            1,
            "{history:?}"
        );
    }
    // The session the registration opened ends with the add-on.
    let panel = visit(&mut jar, "/dashboard").await;
    let html = panel.text().await.unwrap();
    assert!(!html.contains("ADDON_NAME_TOKEN"), "{html}");
}

#[tokio::test]
async fn events_before_the_registration_set_the_plan_it_provisions() {
    let (token, license_arn, _) = aws_mint(json!({})).await;
    let events = events_of(&license_arn);
    set_entitlements(&license_arn, &["premium_seats"], false).await;
    deliver_all(&[&events.updated, &events.created, &events.updated]).await;
    assert!(
        vendor_calls(&license_arn).await.is_empty(),
        "nothing to act on before the buyer registers"
    );
    assert_eq!(register(&token, &mut CookieJar::default()).await.status(), 303);
    let calls = vendor_calls(&license_arn).await;
    assert_eq!(actions(&calls), ["provision"]);
    assert_eq!(
        calls[0]["plan"], "premium",
        "the entitled plan is the one provisioned"
    );
}

#[tokio::test]
async fn a_license_deprovisioned_before_the_registration_provisions_nothing() {
    let (token, license_arn, _) = aws_mint(json!({})).await;
    let events = events_of(&license_arn);
    deliver_all(&[&events.deprovisioned]).await;
    let (status, html) = page(register(&token, &mut CookieJar::default()).await).await;
    assert_eq!(status, 403);
    assert!(html.contains("ended"), "{html}");
    assert!(vendor_calls(&license_arn).await.is_empty());
}

#[tokio::test]
async fn an_ended_agreement_stops_sign_ins_before_the_deprovision() {
    let (token, license_arn, _) = aws_mint(json!({})).await;
    let agreement = unique("agmt");
    let mut jar = CookieJar::default();
    assert_eq!(register(&token, &mut jar).await.status(), 303);
    set_entitlements(&license_arn, &["basic_seats"], false).await;
    let linked = event(
        &unique("ev"),
        "License Updated - Manufacturer",
        json!({"agreement": {"id": agreement}, "license": {"arn": license_arn}}),
    );
    assert_eq!(deliver(&linked).await.0, 200);
    let ended = event(
        &unique("ev"),
        "Purchase Agreement Ended - Proposer",
        json!({"agreement": {"id": agreement}}),
    );
    assert_eq!(deliver(&ended).await.0, 200);
    let id = resource_of(&license_arn);
    assert_eq!(
        stored_resource(&id).await.status,
        shared::model::ResourceStatus::Ending
    );
    assert_eq!(
        audited(&id)
            .await
            .iter()
            .filter(|action| *action == "ending")
            .count(),
        1
    );
    // The registration's session no longer signs in to the app.
    let url = oidc_authorize(&jar.header(), "openid").await;
    assert!(query_param(&url, "code").is_none(), "{url}");
    assert_eq!(
        actions(&vendor_calls(&license_arn).await),
        ["provision"],
        "the vendor hears at the deprovision"
    );
}

#[tokio::test]
async fn events_that_are_not_aws_marketplaces_or_not_envelopes_change_nothing() {
    let (status, answer) = deliver(&json!({"hello": "world"})).await;
    assert_eq!(status, 200);
    assert!(answer["ignored"].is_string(), "{answer}");
    let mut forged = event(
        &unique("ev"),
        "License Deprovisioned - Manufacturer",
        json!({"license": {"arn": "l-x"}}),
    );
    forged["source"] = json!("my.app");
    assert!(deliver(&forged).await.1["ignored"].is_string());
}
