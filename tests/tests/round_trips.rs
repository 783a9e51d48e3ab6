//! How many DynamoDB round trips each call makes, counted on the real SDK
//! client against DynamoDB Local (a logging interceptor): each one is
//! milliseconds on real DynamoDB, so the rule is the fewest the protocol
//! allows (docs/performance.md).

use lambda_http::{Body, Request};
use shared::clevercloud::sso::CleverCloudSso;
use shared::clevercloud::{Lifecycle, PlanChangeRequest, ProvisionRequest};
use shared::dashboard::{self, DashboardApi};
use shared::provisioner::DefaultProvisioner;
use shared::secret::Secret;
use shared::signin::Sessions;
use shared::sso_login::{self, SignInApi};
use tests::*;

/// The lifecycle as `make run` configures it (the default provisioner).
fn lifecycle(store: shared::store::DynamoStore) -> Lifecycle<shared::store::DynamoStore, DefaultProvisioner> {
    let addon = addon_config();
    Lifecycle::new(
        store,
        DefaultProvisioner::new(stack_var("RESOURCE_BASE_URL"), addon.config_vars.clone()),
        addon,
    )
}

fn provision_request(addon_id: &str) -> ProvisionRequest {
    serde_json::from_value(provision_body(addon_id, "basic")).unwrap()
}

#[tokio::test]
async fn a_new_provision_is_one_transaction_and_a_redelivery_adds_one_read() {
    let (store, log) = counting_store("provision").await;
    let lifecycle = lifecycle(store);
    let addon_id = unique("trips");
    let first = lifecycle.provision(provision_request(&addon_id)).await.unwrap();
    assert_eq!(log.take(), ["TransactWriteItems"]);
    let again = lifecycle.provision(provision_request(&addon_id)).await.unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(
        log.take(),
        ["TransactWriteItems", "GetItem"],
        "the winner is known from the cancellation"
    );
}

#[tokio::test]
async fn a_deprovision_is_one_transaction_and_reads_only_when_its_condition_fails() {
    let (store, log) = counting_store("deprovision").await;
    let id = lifecycle(acting_as("provision", &store).await)
        .provision(provision_request(&unique("trips")))
        .await
        .unwrap()
        .id;
    let lifecycle = lifecycle(store);
    lifecycle.deprovision(&id).await.unwrap();
    assert_eq!(log.take(), ["TransactWriteItems"]);
    // A repeat: 200 after one read.
    lifecycle.deprovision(&id).await.unwrap();
    assert_eq!(log.take(), ["TransactWriteItems", "GetItem"]);
    // Unknown: 404 after one read.
    let unknown = format!("res_{}", shared::secret::random_hex(16));
    assert!(lifecycle.deprovision(&unknown).await.is_err());
    assert_eq!(log.take(), ["TransactWriteItems", "GetItem"]);
    let client = dynamo_client().await;
    let (_, audits) = resource_partition(&client, &unknown).await;
    assert!(audits.is_empty(), "nothing written for an unknown id");
}

#[tokio::test]
async fn a_plan_change_reads_once_and_writes_once_and_a_repeat_writes_nothing() {
    let (store, log) = counting_store("plan-change").await;
    let addon_id = unique("trips");
    let id = lifecycle(acting_as("provision", &store).await)
        .provision(provision_request(&addon_id))
        .await
        .unwrap()
        .id;
    let lifecycle = lifecycle(store);
    let change = || -> PlanChangeRequest {
        serde_json::from_value(serde_json::json!({"addon_id": addon_id, "plan": "premium"})).unwrap()
    };
    lifecycle.change_plan(&id, change()).await.unwrap();
    assert_eq!(log.take(), ["GetItem", "TransactWriteItems"]);
    lifecycle.change_plan(&id, change()).await.unwrap();
    assert_eq!(log.take(), ["GetItem"]);
}

#[tokio::test]
async fn a_clever_cloud_sign_in_reads_the_resource_and_opens_the_session_and_the_panel_and_oidc_make_the_fewest_round_trips(
) {
    let (store, log) = counting_store("sso-login").await;
    let id = lifecycle(acting_as("provision", &store).await)
        .provision(provision_request(&unique("trips")))
        .await
        .unwrap()
        .id;
    let sso = CleverCloudSso::new(Secret::new(stack_var("ADDON_SSO_SALT")), 300);
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let signature = sso.signature(&id, "user_1", "jane@example.com", "", &timestamp);
    let form = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("id", id.as_str()),
            ("timestamp", &timestamp),
            ("nav-data", ""),
            ("email", "jane@example.com"),
            ("user_id", "user_1"),
            ("signature", &signature),
        ])
        .finish();
    let api = SignInApi::new(Sessions::new(store.clone(), 3600), sso, None);
    let login = lambda_http::http::Request::builder()
        .method("POST")
        .uri("/clevercloud/sso/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap();
    let response = sso_login::route(&api, Request::from(login)).await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        log.take(),
        ["GetItem", "TransactWriteItems"],
        "the resource, then token + session"
    );
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();

    let panel = lambda_http::http::Request::builder()
        .uri("/dashboard")
        .header("cookie", &cookie)
        .body(Body::Empty)
        .unwrap();
    let (panel_store, panel_log) = counting_store("dashboard").await;
    let response = dashboard::route(&DashboardApi::new(panel_store), Request::from(panel))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        panel_log.take(),
        ["GetItem", "GetItem", "Query"],
        "the session, then its resource, then its latest audit events"
    );

    // The OpenID Connect provider on the same session: an authorize is the
    // session's read, its resource's (a sign-in lasts only while the add-on
    // does) and the code's write; redeeming the code is one conditional
    // update (spent, naming the token), then the access token's write.
    let secret = "round-trips-client-secret-0123";
    let redirect = "https://app.example/cb";
    let keys = shared::oidc::ProviderKeys {
        clients: shared::oidc::Clients::from_json(&format!(
            r#"[{{"client_id":"app","client_secret":"{secret}","redirect_uris":["{redirect}"]}}]"#
        ))
        .unwrap(),
        signing: shared::oidc::SigningKeys::from_lookup(&|var: &str| {
            (var == "OIDC_SIGNING_KEY").then(|| shared::oidc::new_signing_key_pem().unwrap())
        })
        .unwrap(),
    };
    let (oidc_store, oidc_log) = counting_store("oidc").await;
    let issuer = shared::oidc::Issuer::Fixed("https://addon.example".into());
    let oidc = shared::oidc::OidcApi::new(oidc_store, issuer, keys);
    let verifier = "round-trips-verifier-0123456789-0123456789-0123456789";
    use base64::Engine as _;
    use sha2::Digest as _;
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier));
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("client_id", "app"),
            ("redirect_uri", redirect),
            ("response_type", "code"),
            ("scope", "openid"),
            ("state", "s"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
        .finish();
    let authorize = lambda_http::http::Request::builder()
        .uri(format!("https://addon.example/oidc/authorize?{query}"))
        .header("cookie", &cookie)
        .body(Body::Empty)
        .unwrap();
    let response = shared::oidc::route(&oidc, authorize).await.unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(
        oidc_log.take(),
        ["GetItem", "GetItem", "PutItem"],
        "the session, its resource, then the code"
    );
    let location = reqwest::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(name, _)| name == "code")
        .unwrap()
        .1
        .into_owned();
    let form = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
            ("client_id", "app"),
            ("client_secret", secret),
        ])
        .finish();
    let token = lambda_http::http::Request::builder()
        .method("POST")
        .uri("https://addon.example/oidc/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap();
    let response = shared::oidc::route(&oidc, token).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        oidc_log.take(),
        ["UpdateItem", "PutItem"],
        "the code, then the access token"
    );
}

/// AWS Marketplace's registration of a new purchase: a read for an earlier
/// post of the token, one batch read of the license's state and its
/// resource, and one transaction creating the resource with the session and
/// the token's resolution (ResolveCustomer and the vendor between, not
/// counted here). A re-post of the token: its read, the batch, the license
/// again, and the spent session's transaction, cancelled.
#[tokio::test]
async fn a_new_aws_marketplace_purchase_is_two_reads_and_one_transaction() {
    use shared::aws_marketplace::register::{self, RegisterApi};
    let (store, log) = counting_store("marketplace-register").await;
    let aws = shared::aws_marketplace::AwsMarketplaceConfig::from_lookup(&shared::config::process_env)
        .unwrap()
        .expect("the stack sells on AWS Marketplace");
    let addon = addon_config();
    let sdk = shared::config::aws_sdk_config("marketplace-register").await;
    let api = RegisterApi::new(
        Some(aws),
        store,
        DefaultProvisioner::new(stack_var("RESOURCE_BASE_URL"), addon.config_vars.clone()),
        shared::aws_marketplace::seller::MeteringClient::new(&sdk, None),
        addon.config_vars.clone(),
        3600,
    );
    let (token, _, _) = aws_mint(serde_json::json!({})).await;
    let post = || {
        let mut request = Request::new(Body::from(format!("x-amzn-marketplace-token={token}")));
        *request.method_mut() = lambda_http::http::Method::POST;
        *request.uri_mut() = "/aws/register".parse().unwrap();
        request.headers_mut().insert(
            lambda_http::http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        request
    };
    let first = register::route(&api, post()).await.unwrap();
    assert_eq!(first.status(), 303);
    assert_eq!(log.take(), ["GetItem", "BatchGetItem", "TransactWriteItems"]);
    let again = register::route(&api, post()).await.unwrap();
    assert_eq!(again.status(), 303);
    assert_eq!(
        log.take(),
        ["GetItem", "BatchGetItem", "GetItem", "TransactWriteItems"]
    );
}

/// AWS Marketplace's `License Updated` for a registered purchase whose plan
/// it changes: one batch read of the event's mark, its agreement's and
/// license's states and the resource, then one transaction (GetEntitlements
/// and the vendor between, not counted here). Delivered again: the batch
/// alone.
#[tokio::test]
async fn a_license_update_is_one_read_and_one_transaction() {
    use shared::aws_marketplace::events::{self, EventsApi};
    let (license_arn, _) = aws_registered().await;
    let premium = stack_var("AWS_MARKETPLACE_PLANS")
        .split(',')
        .find_map(|pair| pair.strip_suffix(":premium").map(str::to_string))
        .expect("a dimension for premium");
    reqwest::Client::new()
        .put(format!("{}/entitlements", stack_var("E2E_AWS_MARKETPLACE_URL")))
        .json(&serde_json::json!({"license_arn": license_arn,
            "entitlements": [{"Dimension": premium, "Value": {"IntegerValue": 1}}]}))
        .send()
        .await
        .unwrap();
    let (store, log) = counting_store("marketplace-events").await;
    let aws =
        shared::aws_marketplace::AwsMarketplaceConfig::from_lookup(&shared::config::process_env).unwrap();
    let addon = addon_config();
    let sdk = shared::config::aws_sdk_config("marketplace-events").await;
    let api = EventsApi::new(
        aws,
        store,
        DefaultProvisioner::new(stack_var("RESOURCE_BASE_URL"), addon.config_vars.clone()),
        shared::aws_marketplace::seller::EntitlementClient::new(&sdk),
        addon.config_vars.clone(),
    );
    let event = serde_json::json!({
        "version": "0", "id": unique("trips"), "detail-type": "License Updated - Manufacturer",
        "source": "aws.agreement-marketplace", "account": "123456789012",
        "time": "2026-12-07T00:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {"agreement": {"id": unique("agmt")}, "license": {"arn": license_arn}},
    });
    let answer = events::handle(&api, event.clone()).await.unwrap();
    assert_eq!(answer["handled"], "entitlements applied", "{answer}");
    assert_eq!(log.take(), ["BatchGetItem", "TransactWriteItems"]);
    let again = events::handle(&api, event).await.unwrap();
    assert!(again["ignored"].is_string(), "{again}");
    assert_eq!(log.take(), ["BatchGetItem"]);
}
