//! Scalingo's add-on provider API end to end (docs/scalingo.md): the
//! lifecycle calls, suspend and resume, and single sign-on through `cargo
//! lambda watch`; the platform sync run in process (as its stream handler
//! runs it) against the stand-in Scalingo, which records what it receives;
//! state checked in DynamoDB Local.

use reqwest::{header, redirect::Policy, Method, StatusCode};
use serde_json::{json, Value};
use shared::config::Environment;
use shared::model::{Platform, ResourceStatus};
use shared::scalingo::platform::ScalingoClient;
use shared::scalingo::resource_id_for_uuid;
use shared::scalingo::sso::ScalingoSso;
use shared::secret::Secret;
use shared::store::{DynamoStore, SyncSubject};
use shared::sync::{PlatformSync, ScalingoSync, Settled};
use std::sync::{Arc, OnceLock};
use tests::fakes::FakeEventBridge;
use tests::scalingo_authed as authed;
use tests::stream::{event, records_for};
use tests::*;

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

fn new_uuid() -> String {
    shared::secret::random_uuid()
}

fn new_app() -> String {
    unique("app")
}

/// Scalingo's own client's body (`uuid`), or the documented one without.
fn body(uuid: Option<&str>, app: &str, options: Value) -> Value {
    let mut body = json!({"plan": "basic", "app_id": app, "options": options});
    if let Some(uuid) = uuid {
        body["uuid"] = uuid.into();
        body["shard_id"] = 2.into();
    }
    body
}

async fn provision(body: &Value) -> (u16, Value) {
    json(authed(Method::POST, "").json(body).send().await.unwrap()).await
}

/// A provisioned add-on's id, with `options`.
async fn provisioned(options: Value) -> (String, String) {
    let app = new_app();
    let (status, answer) = provision(&body(Some(&new_uuid()), &app, options)).await;
    assert_eq!(status, 201, "{answer}");
    (answer["id"].as_str().unwrap().to_string(), app)
}

async fn vendor_requests(id: &str) -> Vec<Value> {
    let all: Vec<Value> = reqwest::get(format!("{}/received", stack_var("E2E_VENDOR_URL")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    all.into_iter()
        .filter(|request| request["body"]["resource_id"] == id)
        .collect()
}

fn signer() -> ScalingoSso {
    ScalingoSso::new(Secret::new(stack_var("SCALINGO_SSO_SALT")), None, 3600)
}

/// The link Scalingo's dashboard opens for `id`, issued `age` seconds ago.
fn sso_link(signer: &ScalingoSso, id: &str, age: i64) -> String {
    let timestamp = (chrono::Utc::now().timestamp() - age).to_string();
    let token = signer.sign(id, &timestamp);
    format!(
        "{}/scalingo/sso?id={id}&timestamp={timestamp}&token={token}",
        base_url()
    )
}

async fn page(response: reqwest::Response) -> (StatusCode, bool, String) {
    let status = response.status();
    let cookie = response.headers().get(header::SET_COOKIE).is_some();
    (status, cookie, response.text().await.unwrap())
}

#[tokio::test]
async fn provisions_once_per_uuid_and_anew_without_one() {
    let (uuid, app) = (new_uuid(), new_app());
    let (status, first) = provision(&body(Some(&uuid), &app, json!({"size": 2}))).await;
    assert_eq!(status, 201, "{first}");
    let id = first["id"].as_str().unwrap().to_string();
    assert_eq!(id, resource_id_for_uuid(&uuid));
    assert!(id.len() <= 255);
    assert!(first["message"].is_string());
    let mut names: Vec<&str> = first["config"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    let mut expected = shared::config::comma_list(&stack_var("ADDON_CONFIG_VARS"));
    expected.sort();
    assert_eq!(names, expected);

    let (status, again) = provision(&body(Some(&uuid), &app, json!({"size": 2}))).await;
    assert_eq!(
        (status, &again),
        (201, &first),
        "a redelivery answers the same add-on"
    );
    let claims = partition(&dynamo_client().await, &format!("SCALINGO_ADDON#{uuid}")).await;
    assert_eq!(claims.len(), 1);
    let resource = stored_resource(&id).await;
    assert_eq!(resource.platform, Platform::Scalingo);
    assert_eq!(
        (resource.addon_id.as_str(), resource.app_id.as_deref()),
        (uuid.as_str(), Some(app.as_str()))
    );
    assert_eq!(resource.options["size"], "2");
    assert_eq!(resource.options["shard_id"], "2");
    // Each delivery reaches the vendor as the same event (one idempotency key).
    let calls = vendor_requests(&id).await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(
        calls[0]["body"]["idempotency_key"],
        calls[1]["body"]["idempotency_key"]
    );
    let call = &calls[0]["body"];
    assert_eq!(call["marketplace"], "scalingo");
    assert_eq!(call["marketplace_ids"], json!({"uuid": uuid, "app_id": app}));

    // The documented body has no uuid: each call is an add-on of its own.
    let app = new_app();
    let (one, a) = provision(&body(None, &app, json!({}))).await;
    let (two, b) = provision(&body(None, &app, json!({}))).await;
    assert_eq!((one, two), (201, 201), "{a} {b}");
    assert_ne!(a["id"], b["id"]);
    let resource = stored_resource(a["id"].as_str().unwrap()).await;
    assert_eq!(resource.addon_id, resource.id, "claimed under its own id");
    let call = &vendor_requests(&resource.id).await[0]["body"];
    assert_eq!(call["marketplace_ids"], json!({"app_id": app}));

    let (status, answer) = provision(&json!({"plan": "no-such-plan", "app_id": new_app()})).await;
    assert_eq!(status, 422, "{answer}");
    let (status, answer) = provision(&json!({"app_id": new_app()})).await;
    assert_eq!(status, 400, "{answer}");
    for unusable in ["app\u{1}", "..", &"a".repeat(256)] {
        let (status, answer) = provision(&json!({"plan": "basic", "app_id": unusable})).await;
        assert_eq!(status, 400, "{unusable:?}: {answer}");
    }
    let refused = http()
        .post(format!("{}/scalingo/resources", base_url()))
        .basic_auth(stack_var("SCALINGO_USERNAME"), Some("wrong"))
        .json(&body(Some(&new_uuid()), &new_app(), json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn plan_changes_come_by_put_or_patch_and_may_finish_later() {
    let (id, _) = provisioned(json!({})).await;
    let (status, answer) = json(
        authed(Method::PUT, &format!("/{id}"))
            .json(&json!({"plan": "premium", "options": {}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["message"].is_string() && answer["config"].is_object(),
        "{answer}"
    );
    assert_eq!(stored_resource(&id).await.plan, "premium");
    let (status, answer) = json(
        authed(Method::PATCH, &format!("/{id}"))
            .json(&json!({"plan": "basic"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(stored_resource(&id).await.plan, "basic");
    let (status, answer) = json(
        authed(Method::PUT, &format!("/{id}"))
            .json(&json!({"options": {}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, answer["error"].as_str()), (422, Some("plan_required")));
    let (status, _) = json(
        authed(Method::PATCH, &format!("/{id}"))
            .json(&json!({"plan": "gold"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    let unknown = shared::scalingo::new_resource_id();
    let (status, _) = json(
        authed(Method::PATCH, &format!("/{unknown}"))
            .json(&json!({"plan": "basic"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);

    // The vendor's service answers 202: the plan is recorded, the config kept.
    let (id, _) = provisioned(json!({"stand-in": "pending:change_plan"})).await;
    let before = stored_resource(&id).await;
    let (status, answer) = json(
        authed(Method::PATCH, &format!("/{id}"))
            .json(&json!({"plan": "premium"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert!(
        answer["message"].is_string() && answer.get("config").is_none(),
        "{answer}"
    );
    let after = stored_resource(&id).await;
    assert_eq!((after.plan.as_str(), &after.config), ("premium", &before.config));
}

#[tokio::test]
async fn deprovision_takes_the_testers_null_body_and_a_repeat() {
    let (id, _) = provisioned(json!({})).await;
    for round in ["first", "repeat"] {
        // Exactly what Scalingo's tester sends: `null`, no content type.
        let response = authed(Method::DELETE, &format!("/{id}"))
            .body("null")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{round}");
        assert!(
            response.bytes().await.unwrap().is_empty(),
            "{round}: an empty body"
        );
    }
    let resource = stored_resource(&id).await;
    assert_eq!(resource.status, ResourceStatus::Deprovisioned);
    let deprovisions = vendor_requests(&id)
        .await
        .into_iter()
        .filter(|call| call["body"]["action"] == "deprovision")
        .count();
    assert_eq!(deprovisions, 1, "the vendor is told once");
    let unknown = shared::scalingo::new_resource_id();
    let response = authed(Method::DELETE, &format!("/{unknown}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // Another marketplace's resource is not Scalingo's to remove.
    let heroku = shared::heroku::resource_id(&new_uuid()).unwrap();
    let response = authed(Method::DELETE, &format!("/{heroku}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

/// One stand-in EventBridge per test process (as lifecycle_events.rs).
fn event_bridge() -> Arc<FakeEventBridge> {
    static STAND_IN: OnceLock<Arc<FakeEventBridge>> = OnceLock::new();
    STAND_IN
        .get_or_init(|| {
            let (stand_in, url) = FakeEventBridge::spawn();
            std::env::set_var("AWS_ENDPOINT_URL_EVENTBRIDGE", url);
            stand_in
        })
        .clone()
}

/// The sync as the platform-sync function builds it, Scalingo's side on
/// the stand-in; publishing to the stand-in EventBridge.
async fn sync() -> PlatformSync<DynamoStore> {
    event_bridge();
    let vendor = shared::clevercloud::vendor::VendorClient::new(
        "http://127.0.0.1:9".into(),
        "addon-name".into(),
        Secret::new("unused"),
    );
    let events =
        shared::events::EventPublisher::from_env(&shared::config::aws_sdk_config("platform-sync").await)
            .expect("event publisher");
    let client =
        ScalingoClient::from_secret(None, &Environment::default()).expect("the stack's SCALINGO_* variables");
    PlatformSync::new(
        acting_as("platform-sync", &store().await).await,
        vendor,
        None,
        Some(events),
    )
    .with_provisioner(stack_provisioner())
    .with_scalingo(Some(ScalingoSync { client }))
}

#[tokio::test]
async fn suspend_and_resume_reach_the_vendor_the_audit_and_eventbridge_and_gate_sign_in() {
    let (id, _) = provisioned(json!({})).await;
    let call = |action: &str, body: Option<&str>| {
        let request = authed(Method::POST, &format!("/{id}/{action}"));
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.to_string()),
            None => request,
        };
        async move { json(request.send().await.unwrap()).await }
    };
    let (status, answer) = call("suspend", Some("{}")).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["message"].is_string());
    assert_eq!(stored_resource(&id).await.status, ResourceStatus::Suspended);
    let (status, _) = call("suspend", None).await;
    assert_eq!(status, 200, "a repeat is a no-op 200");
    let (status, _) = call("suspend", Some("[1]")).await;
    assert_eq!(status, 400, "a body that is not an object");

    // Suspended: the sign-in link opens nothing.
    let (status, cookie, text) = page(http().get(sso_link(&signer(), &id, 0)).send().await.unwrap()).await;
    assert_eq!((status, cookie), (StatusCode::FORBIDDEN, false));
    assert!(text.contains("suspended"), "{text}");

    let (status, _) = call("resume", None).await;
    assert_eq!(status, 200);
    let (status, _) = call("resume", Some("{}")).await;
    assert_eq!(status, 200, "a repeat is a no-op 200");
    assert_eq!(stored_resource(&id).await.status, ResourceStatus::Active);
    let response = http().get(sso_link(&signer(), &id, 1)).send().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "resumed: signs in again"
    );

    let actions: Vec<String> = vendor_requests(&id)
        .await
        .iter()
        .map(|call| call["body"]["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        actions,
        ["provision", "suspend", "resume"],
        "each transition told once, signed"
    );
    for call in vendor_requests(&id).await {
        assert_eq!(call["signature_valid"], true);
        assert_valid(&provisioner_schema("request"), &call["body"]);
    }

    // Each transition is an audit event, published once to EventBridge.
    let sync = sync().await;
    let inserts: Vec<Value> = records_for(&format!("RESOURCE#{id}"))
        .await
        .into_iter()
        .filter(|record| record["eventName"] == "INSERT")
        .filter(|record| {
            record["dynamodb"]["Keys"]["sk"]["S"]
                .as_str()
                .is_some_and(|sk| sk.starts_with("AUDIT#"))
        })
        .collect();
    let response = sync.handle(event(&inserts), None).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let kinds: Vec<String> = event_bridge()
        .about(&id)
        .iter()
        .map(|entry| entry["DetailType"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        ["Resource Provisioned", "Resource Suspended", "Resource Resumed"]
    );
    assert_eq!(
        event_bridge().about(&id)[1]["Detail"]["details"]["marketplace"],
        "scalingo"
    );

    let unknown = shared::scalingo::new_resource_id();
    let (status, _) = json(
        authed(Method::POST, &format!("/{unknown}/suspend"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
}

async fn scalingo_received(app: &str) -> Vec<Value> {
    reqwest::get(format!("{}/received/{app}", stack_var("E2E_SCALINGO_URL")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn settle(sync: &PlatformSync<DynamoStore>, id: &str) -> Settled {
    sync.settle(&SyncSubject::Resource(id.to_string()))
        .await
        .expect("settled")
}

/// Scalingo types `app_id` as a string: its docs' `app456@heroku.com`, its
/// tester's `galápagos-penguin-12`, and any other non-empty string without a
/// control character are accepted, and reach Scalingo's API as one
/// percent-encoded path segment.
#[tokio::test]
async fn scalingos_own_app_ids_are_provisioned_and_reached_as_one_path_segment() {
    let sync = sync().await;
    let suffix = shared::secret::random_hex(4);
    for app in [
        format!("app{suffix}@heroku.com"),
        format!("galápagos-penguin-{suffix}"),
        format!("a b/{suffix}?x#y"),
    ] {
        let (status, answer) = provision(&body(Some(&new_uuid()), &app, json!({}))).await;
        assert_eq!(status, 201, "{app}: {answer}");
        let id = answer["id"].as_str().unwrap().to_string();
        assert_eq!(stored_resource(&id).await.app_id.as_deref(), Some(app.as_str()));
        shared::sync::rotate_credentials(&store().await, &stack_provisioner(), &id)
            .await
            .unwrap();
        assert_eq!(settle(&sync, &id).await, Settled::Done, "{app}");
        let encoded: String = form_urlencoded::byte_serialize(app.as_bytes()).collect();
        let calls = scalingo_received(&encoded.replace('+', "%20")).await;
        assert_eq!(calls.len(), 1, "{app}: {calls:?}");
        assert_eq!(calls[0]["status"], 200, "{app}");
    }
}

#[tokio::test]
async fn config_reaches_scalingo_after_a_rotation_and_after_an_asynchronous_completion() {
    let sync = sync().await;
    // A rotation: the new config, set once on the app.
    let (id, app) = provisioned(json!({})).await;
    assert_eq!(settle(&sync, &id).await, Settled::Done);
    assert!(
        scalingo_received(&app).await.is_empty(),
        "the provision answer carried version 1"
    );
    shared::sync::rotate_credentials(&store().await, &stack_provisioner(), &id)
        .await
        .unwrap();
    assert_eq!(settle(&sync, &id).await, Settled::Done);
    let calls = scalingo_received(&app).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["status"], 200);
    let resource = stored_resource(&id).await;
    assert_eq!(
        calls[0]["body"]["config"],
        serde_json::to_value(&resource.config.0).unwrap()
    );
    assert_eq!((resource.config_version, resource.pushed_config_version), (2, 2));
    assert_eq!(settle(&sync, &id).await, Settled::Done);
    assert_eq!(scalingo_received(&app).await.len(), 1, "nothing sent twice");

    // An asynchronous provision: 202, then the vendor's config, then Scalingo's.
    let (uuid, app) = (new_uuid(), new_app());
    let (status, answer) = provision(&body(Some(&uuid), &app, json!({"stand-in": "pending"}))).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["id"].as_str().unwrap().to_string();
    assert!(
        answer["message"].is_string() && answer.get("config").is_none(),
        "{answer}"
    );
    assert_eq!(stored_resource(&id).await.status, ResourceStatus::Provisioning);
    assert_eq!(
        settle(&sync, &id).await,
        Settled::Done,
        "nothing owed before the vendor finishes"
    );
    let config = json!({"config": {"ADDON_NAME_URL": format!("https://db.example/{id}"), "ADDON_NAME_TOKEN": "from-the-vendor"}});
    let (status, answer) = vendor_finishes(&id, &config, &stack_var("PROVISIONER_SIGNING_SECRET")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(settle(&sync, &id).await, Settled::Done);
    let calls = scalingo_received(&app).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        (calls[0]["status"].as_u64(), &calls[0]["body"]),
        (Some(200), &config)
    );
    let resource = stored_resource(&id).await;
    assert_eq!(resource.status, ResourceStatus::Active);
    assert_eq!(resource.pushed_config_version, 1);
    assert!(!resource.sync.is_owed());

    // Scalingo down: owed, retried after its Retry-After.
    let app = format!("down-{}", shared::secret::random_hex(4));
    let (status, answer) = provision(&body(Some(&new_uuid()), &app, json!({}))).await;
    assert_eq!(status, 201, "{answer}");
    let id = answer["id"].as_str().unwrap().to_string();
    shared::sync::rotate_credentials(&store().await, &stack_provisioner(), &id)
        .await
        .unwrap();
    match settle(&sync, &id).await {
        Settled::Pending { error, retry_at } => {
            assert!(error.contains("Scalingo"), "{error}");
            assert!(retry_at.is_some_and(|at| at >= chrono::Utc::now().timestamp() + 20));
        }
        other => panic!("expected a pending retry, got {other:?}"),
    }
    assert!(
        stored_resource(&id).await.sync.is_owed(),
        "still owed, for the sweep"
    );
}

#[tokio::test]
async fn sso_is_accepted_once_and_refused_for_age_the_future_forgery_and_unknown_ids() {
    let (id, _) = provisioned(json!({})).await;
    let link = sso_link(&signer(), &id, 0);
    let token = link.rsplit("token=").next().unwrap().to_string();
    let response = http().get(&link).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let headers = response.headers().clone();
    assert!(headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .starts_with("__Host-addon_session="));
    assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
    assert!(
        !headers[header::LOCATION].to_str().unwrap().contains(&token),
        "the token goes no further"
    );

    let (status, cookie, text) = page(http().get(&link).send().await.unwrap()).await;
    assert_eq!((status, cookie), (StatusCode::FORBIDDEN, false));
    assert!(text.contains("already been used"), "{text}");
    assert!(!text.contains(&token), "no page shows the token");

    // An hour is Scalingo's stated lifetime: 59 minutes old still signs in.
    let response = http()
        .get(sso_link(&signer(), &id, 59 * 60))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "59 minutes old");
    let (status, _, text) = page(
        http()
            .get(sso_link(&signer(), &id, 3600 + 120))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(text.contains("expired"), "{text}");
    let (status, _, text) = page(http().get(sso_link(&signer(), &id, -600)).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(text.contains("future"), "{text}");
    let stranger = ScalingoSso::new(Secret::new("not-the-salt-0123456789"), None, 3600);
    let (status, _, text) = page(http().get(sso_link(&stranger, &id, 2)).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(text.contains("not issued by the platform"), "{text}");
    let unknown = shared::scalingo::new_resource_id();
    let (status, _, text) = page(http().get(sso_link(&signer(), &unknown, 3)).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(text.contains("does not exist"), "{text}");
    let (status, _, _) = page(
        http()
            .get(format!("{}/scalingo/sso?id={id}", base_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Security review 3, finding 4: a session opened before a suspension
/// signs no one in to the app and reveals no config while the add-on is
/// suspended, and does again once it is resumed.
#[tokio::test]
async fn a_session_opened_before_a_suspension_serves_nothing_until_the_resume() {
    let (id, _) = provisioned(json!({})).await;
    let response = http().get(sso_link(&signer(), &id, 0)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let name = stored_resource(&id)
        .await
        .config
        .names()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(reveal_config(&cookie, &id, &name).await.0, 200);
    assert!(query_param(&oidc_authorize(&cookie, "openid").await, "code").is_some());

    let suspend = authed(Method::POST, &format!("/{id}/suspend"))
        .send()
        .await
        .unwrap();
    assert_eq!(suspend.status(), StatusCode::OK);
    let redirect = oidc_authorize(&cookie, "openid").await;
    assert_eq!(query_param(&redirect, "error").as_deref(), Some("access_denied"));
    assert!(query_param(&redirect, "error_description")
        .unwrap()
        .contains("suspended"));
    assert_eq!(reveal_config(&cookie, &id, &name).await.0, 404);

    let resume = authed(Method::POST, &format!("/{id}/resume"))
        .send()
        .await
        .unwrap();
    assert_eq!(resume.status(), StatusCode::OK);
    assert!(query_param(&oidc_authorize(&cookie, "openid").await, "code").is_some());
    assert_eq!(reveal_config(&cookie, &id, &name).await.0, 200);
}
