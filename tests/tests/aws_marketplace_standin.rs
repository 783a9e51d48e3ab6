//! The stand-in AWS Marketplace (tests/src/bin/fake_aws_marketplace.rs)
//! through the real AWS SDK, as the stack's functions will call it (issue
//! 33): the wire protocol and every answer the registration and the
//! entitlement reads must handle.

use aws_sdk_marketplaceentitlement::types::GetEntitlementFilterName;
use serde_json::{json, Value};
use tests::*;

async fn metering() -> aws_sdk_marketplacemetering::Client {
    aws_sdk_marketplacemetering::Client::new(&shared::config::aws_sdk_config("tests").await)
}

async fn entitlement() -> aws_sdk_marketplaceentitlement::Client {
    aws_sdk_marketplaceentitlement::Client::new(&shared::config::aws_sdk_config("tests").await)
}

async fn control(method: reqwest::Method, path: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .request(method, format!("{}{path}", stack_var("E2E_AWS_MARKETPLACE_URL")))
        .json(&body)
        .send()
        .await
        .expect("the stand-in")
}

/// A new registration token: (token, license ARN, account).
async fn mint(body: Value) -> (String, String, String) {
    let minted: Value = control(reqwest::Method::POST, "/mint", body)
        .await
        .json()
        .await
        .unwrap();
    let field = |name: &str| minted[name].as_str().unwrap().to_string();
    (field("token"), field("license_arn"), field("account"))
}

async fn resolve(
    token: &str,
) -> Result<aws_sdk_marketplacemetering::operation::resolve_customer::ResolveCustomerOutput, String> {
    metering()
        .await
        .resolve_customer()
        .registration_token(token)
        .send()
        .await
        .map_err(|err| {
            err.into_service_error()
                .meta()
                .code()
                .unwrap_or("no code")
                .to_string()
        })
}

#[tokio::test]
async fn a_token_resolves_once_to_its_buyer_and_purchase() {
    let (token, license, account) = mint(json!({"product_code": "prod-abc"})).await;
    let resolved = resolve(&token).await.expect("resolved");
    assert_eq!(resolved.customer_aws_account_id(), Some(account.as_str()));
    assert_eq!(resolved.license_arn(), Some(license.as_str()));
    assert_eq!(resolved.product_code(), Some("prod-abc"));
    assert_eq!(resolved.customer_identifier(), Some(""), "new listings get none");
    assert_eq!(
        resolve(&token).await.unwrap_err(),
        "ExpiredTokenException",
        "a resubmitted token"
    );
    assert_eq!(
        resolve("tok-never-minted").await.unwrap_err(),
        "InvalidTokenException"
    );
    let (stale, _, _) = mint(json!({"expires_in": 0})).await;
    assert_eq!(resolve(&stale).await.unwrap_err(), "ExpiredTokenException");
    let (legacy, _, _) = mint(json!({"legacy": true})).await;
    assert!(!resolve(&legacy)
        .await
        .unwrap()
        .customer_identifier()
        .unwrap_or_default()
        .is_empty());

    // Throttled once: the SDK retries by itself, and the second attempt resolves.
    let (token, _, _) = mint(json!({})).await;
    let throttled = control(
        reqwest::Method::POST,
        "/throttle",
        json!({"next": 1, "operation": "ResolveCustomer"}),
    )
    .await;
    assert_eq!(throttled.status(), 204);
    let resolved = resolve(&token).await;
    assert!(resolved.is_ok(), "{resolved:?}");
    let calls: Vec<Value> = reqwest::get(format!(
        "{}/received/ResolveCustomer",
        stack_var("E2E_AWS_MARKETPLACE_URL")
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let tries = calls
        .iter()
        .filter(|call| call["RegistrationToken"] == token.as_str())
        .count();
    assert_eq!(tries, 2, "throttled once, then retried");
}

#[tokio::test]
async fn entitlements_come_by_pages_past_an_empty_one() {
    let (_, license, _) = mint(json!({})).await;
    let entitlements: Vec<Value> = (1..=3)
        .map(|n| json!({"Dimension": format!("dim-{n}"), "Value": {"IntegerValue": n}}))
        .collect();
    let set = control(
        reqwest::Method::PUT,
        "/entitlements",
        json!({"license_arn": license, "entitlements": entitlements, "empty_first_page": true}),
    )
    .await;
    assert_eq!(set.status(), 204);
    let client = entitlement().await;
    let mut dimensions = Vec::new();
    let mut pages = 0;
    let mut token: Option<String> = None;
    loop {
        let page = client
            .get_entitlements()
            .product_code("prod-standin")
            .filter(GetEntitlementFilterName::LicenseArn, vec![license.clone()])
            .max_results(2)
            .set_next_token(token.clone())
            .send()
            .await
            .expect("a page");
        pages += 1;
        dimensions.extend(
            page.entitlements()
                .iter()
                .filter_map(|e| e.dimension().map(str::to_string)),
        );
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(dimensions, ["dim-1", "dim-2", "dim-3"]);
    assert_eq!(pages, 3, "an empty page, then two");
}
