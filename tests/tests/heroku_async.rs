//! Heroku's asynchronous provisioning and OAuth grant end to end
//! (docs/heroku.md): the provision and the vendor's completion call through
//! `cargo lambda watch`, the platform sync run in process (as its stream
//! handler runs it) against the stand-in Heroku, which records what it
//! receives; state checked in DynamoDB Local.

use reqwest::{header, StatusCode};
use serde_json::{json, Value};
use shared::config::Environment;
use shared::heroku::platform::HerokuClient;
use shared::heroku::tokens::TokenKeys;
use shared::heroku::HerokuNames;
use shared::model::{ResourceStatus, Timestamp};
use shared::provisioner::signature;
use shared::secret::Secret;
use shared::store::{ResourceReader, SyncSubject};
use shared::sync::{HerokuSync, PlatformSync, Settled, PROVISION_LIMIT_SECONDS};
use std::sync::Arc;
use tests::*;

fn new_uuid() -> String {
    shared::secret::random_uuid()
}

fn resource_id(uuid: &str) -> String {
    shared::heroku::resource_id(uuid).unwrap()
}

/// The sync as the platform-sync function builds it, with `clock`.
async fn sync(clock: Option<Timestamp>) -> PlatformSync<shared::store::DynamoStore> {
    let environment = Environment::default();
    let lookup = environment.lookup();
    let heroku = HerokuSync {
        client: HerokuClient::from_secret(None, &environment).expect("the stack's HEROKU_* variables"),
        keys: Arc::new(shared::refresh::Fresh::fixed(
            TokenKeys::from_lookup(&lookup).expect("HEROKU_TOKEN_KEY"),
        )),
        names: HerokuNames::from_lookup(&lookup).unwrap(),
    };
    let vendor = shared::clevercloud::vendor::VendorClient::new(
        "http://127.0.0.1:9".into(),
        "addon-name".into(),
        Secret::new("unused"),
    );
    let sync = PlatformSync::new(
        acting_as("platform-sync", &store().await).await,
        vendor,
        None,
        None,
    )
    .with_provisioner(stack_provisioner())
    .with_heroku(Some(heroku));
    match clock {
        Some(at) => sync.with_clock(Arc::new(move || at)),
        None => sync,
    }
}

async fn settle(sync: &PlatformSync<shared::store::DynamoStore>, id: &str) -> Settled {
    sync.settle(&SyncSubject::Resource(id.to_string()))
        .await
        .expect("settled")
}

async fn heroku_received(key: &str) -> Vec<Value> {
    reqwest::get(format!("{}/received/{key}", stack_var("E2E_HEROKU_URL")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The token requests about one grant (its exchange, then refreshes).
async fn token_requests(code: &str) -> Vec<Value> {
    heroku_received(&format!("tokens-{code}")).await
}

fn vendor_config(id: &str) -> Value {
    json!({"config": {"ADDON_NAME_URL": format!("https://db.example/{id}"), "ADDON_NAME_TOKEN": "t0k3n-from-the-vendor"}})
}

async fn raw_item(id: &str) -> String {
    let items = partition(&dynamo_client().await, &format!("RESOURCE#{id}")).await;
    let item = items
        .iter()
        .find(|item| string(item, "sk") == "RESOURCE")
        .expect("the resource");
    format!("{item:?}")
}

#[tokio::test]
async fn a_pending_provision_is_finished_by_the_vendor_then_set_and_announced_on_heroku() {
    let uuid = new_uuid();
    let id = resource_id(&uuid);
    let code = format!("ok-{uuid}");
    let (status, body) = heroku_provision(&uuid, &code, true).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["id"], id.as_str());
    assert!(
        body.get("config").is_none(),
        "no config before the vendor's call: {body}"
    );
    let (status, again) = heroku_provision(&uuid, &code, true).await;
    assert_eq!((status, &again), (202, &body), "a redelivery answers alike");
    let stored = store().await.get_resource(&id).await.unwrap().unwrap();
    assert_eq!(stored.status, ResourceStatus::Provisioning);
    assert!(
        !raw_item(&id).await.contains(&code),
        "the grant is sealed, never in plain"
    );

    // The stream's settle exchanges the grant, once.
    let sync = sync(None).await;
    let settled = settle(&sync, &id).await;
    assert!(matches!(settled, Settled::Scheduled { .. }), "{settled:?}");
    assert_eq!(
        settle(&sync, &id).await,
        settled,
        "nothing more until the vendor calls"
    );
    let exchanges = token_requests(&code).await;
    assert_eq!(exchanges.len(), 1, "{exchanges:?}");
    assert_eq!(exchanges[0]["grant_type"], "authorization_code");
    assert_eq!(exchanges[0]["status"], 200);
    assert!(
        !raw_item(&id).await.contains("hk-access-"),
        "the tokens are sealed too"
    );
    assert!(
        heroku_received(&uuid).await.is_empty(),
        "nothing set before the vendor finishes"
    );

    // A plan change must wait.
    let response = HerokuApi::from_env()
        .authed(reqwest::Method::PUT, &format!("/{uuid}"))
        .json(&json!({"plan": "premium"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // The vendor's call: signed, exactly the config vars.
    let secret = stack_var("PROVISIONER_SIGNING_SECRET");
    let (status, _) = vendor_finishes(
        &id,
        &vendor_config(&id),
        "not-the-signing-secret-0123456789abcdef",
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = vendor_finishes(&id, &json!({"config": {"ADDON_NAME_URL": "u"}}), &secret).await;
    assert_eq!(status, 422);
    let (status, _) = vendor_finishes(&resource_id(&new_uuid()), &vendor_config(&id), &secret).await;
    assert_eq!(status, 404);
    let (status, body) = vendor_finishes(&id, &vendor_config(&id), &secret).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = vendor_finishes(&id, &vendor_config(&id), &secret).await;
    assert_eq!(status, 200, "the same call again changes nothing");
    let (status, _) = vendor_finishes(
        &id,
        &json!({"config": {"ADDON_NAME_URL": "v", "ADDON_NAME_TOKEN": "w"}}),
        &secret,
    )
    .await;
    assert_eq!(status, 409, "finished otherwise");

    // The sync sets the config, then marks the add-on provisioned.
    assert_eq!(settle(&sync, &id).await, Settled::Done);
    let calls = heroku_received(&uuid).await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0]["call"], "config");
    assert_eq!(calls[0]["status"], 200);
    let names: Vec<String> = HerokuNames::from_lookup(&shared::config::process_env)
        .unwrap()
        .heroku_names()
        .map(str::to_string)
        .collect();
    let sent: Vec<&str> = calls[0]["body"]["config"]
        .as_array()
        .unwrap()
        .iter()
        .map(|var| var["name"].as_str().unwrap())
        .collect();
    for name in &names {
        assert!(sent.contains(&name.as_str()), "{name} in {sent:?}");
    }
    assert!(calls[0]["body"].to_string().contains("t0k3n-from-the-vendor"));
    assert_eq!(calls[1]["call"], "provision");
    assert_eq!(calls[1]["status"], 200);
    let stored = store().await.get_resource(&id).await.unwrap().unwrap();
    assert_eq!(stored.status, ResourceStatus::Active);
    assert!(!stored.announce_ready && stored.pushed_config_version == 1 && !stored.sync.is_owed());
    assert_eq!(settle(&sync, &id).await, Settled::Done);
    assert_eq!(heroku_received(&uuid).await.len(), 2, "nothing sent twice");
}

/// docs/security.md: the vendor's completion signs its path, so a signed
/// completion for A, replayed at B's path (by a logging proxy, say), is
/// refused and changes nothing; B's own completion still works.
#[tokio::test]
async fn a_completion_signed_for_one_resource_never_finishes_another() {
    let (uuid_a, uuid_b) = (new_uuid(), new_uuid());
    let (a, b) = (resource_id(&uuid_a), resource_id(&uuid_b));
    for uuid in [&uuid_a, &uuid_b] {
        let (status, body) = heroku_provision(uuid, &format!("ok-{uuid}"), true).await;
        assert_eq!(status, 202, "{body}");
    }
    let secret = Secret::new(stack_var("PROVISIONER_SIGNING_SECRET"));
    let body = serde_json::to_vec(&vendor_config(&a)).unwrap();
    let now = chrono::Utc::now().timestamp();
    let for_a = signature::sign_call(
        &secret,
        now,
        "POST",
        &format!("/vendor/resources/{a}/provisioned"),
        &body,
    );
    let send = |id: &str, signed: String| {
        reqwest::Client::new()
            .post(format!("{}/vendor/resources/{id}/provisioned", base_url()))
            .header(header::CONTENT_TYPE, "application/json")
            .header(signature::HEADER, signed)
            .body(body.clone())
            .send()
    };
    let (status, answer) = json(send(&b, for_a.clone()).await.unwrap()).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["error"], "bad_signature");
    let b_stored = store().await.get_resource(&b).await.unwrap().unwrap();
    assert_eq!(b_stored.status, ResourceStatus::Provisioning, "B is untouched");
    assert!(b_stored.config.0.is_empty(), "B got none of A's config");
    // The signature of the old form (over the body alone) no longer passes.
    let (status, _) = json(send(&a, signature::sign(&secret, now, &body)).await.unwrap()).await;
    assert_eq!(status, 401);
    // Each genuine completion finishes its own resource.
    let (status, answer) = json(send(&a, for_a).await.unwrap()).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) =
        vendor_finishes(&b, &vendor_config(&b), &stack_var("PROVISIONER_SIGNING_SECRET")).await;
    assert_eq!(status, 200, "{answer}");
    let b_stored = store().await.get_resource(&b).await.unwrap().unwrap();
    assert_eq!(b_stored.status, ResourceStatus::Active);
    assert!(
        b_stored.config.0.values().any(|value| value.contains(&b)),
        "B's own config"
    );
}

#[tokio::test]
async fn tokens_about_to_end_are_refreshed_before_a_rotated_config_is_set() {
    let uuid = new_uuid();
    let id = resource_id(&uuid);
    let code = format!("shortlived-{uuid}");
    let (status, body) = heroku_provision(&uuid, &code, false).await;
    assert_eq!(status, 200, "{body}");
    let sync = sync(None).await;
    assert_eq!(
        settle(&sync, &id).await,
        Settled::Done,
        "the grant exchanged, nothing else owed"
    );
    assert_eq!(token_requests(&code).await.len(), 1, "the exchange");
    let names = shared::sync::rotate_credentials(&store().await, &stack_provisioner(), &id)
        .await
        .unwrap();
    assert!(!names.is_empty());
    assert_eq!(settle(&sync, &id).await, Settled::Done);
    let requests = token_requests(&code).await;
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[1]["grant_type"], "refresh_token");
    assert_eq!(requests[1]["status"], 200);
    let calls = heroku_received(&uuid).await;
    assert_eq!(calls.len(), 1, "the rotated config, set once: {calls:?}");
    assert_eq!(
        (calls[0]["call"].as_str(), calls[0]["status"].as_u64()),
        (Some("config"), Some(200))
    );
    let stored = store().await.get_resource(&id).await.unwrap().unwrap();
    assert_eq!((stored.config_version, stored.pushed_config_version), (2, 2));
}

#[tokio::test]
async fn a_provision_unfinished_after_twelve_hours_is_given_up_and_deprovisioned_at_the_vendor() {
    let uuid = new_uuid();
    let id = resource_id(&uuid);
    let (status, _) = heroku_provision(&uuid, &format!("ok-{uuid}"), true).await;
    assert_eq!(status, 202);
    let created = store().await.get_resource(&id).await.unwrap().unwrap().created_at;
    let created = chrono::DateTime::parse_from_rfc3339(&created).unwrap().to_utc();
    let at = |seconds: i64| Timestamp(created + chrono::Duration::seconds(seconds));
    assert!(matches!(
        settle(&sync(None).await, &id).await,
        Settled::Scheduled { .. }
    ));
    let almost = settle(&sync(Some(at(PROVISION_LIMIT_SECONDS - 60))).await, &id).await;
    assert!(matches!(almost, Settled::Scheduled { .. }), "{almost:?}");
    let held = |ids: Vec<String>| ids.contains(&id);
    let vendor_holds = || async {
        let ids: Vec<String> = reqwest::get(format!("{}/held", stack_var("E2E_VENDOR_URL")))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        held(ids)
    };
    assert!(
        vendor_holds().await,
        "the vendor holds a tenant while it provisions"
    );
    let expired = settle(&sync(Some(at(PROVISION_LIMIT_SECONDS + 1))).await, &id).await;
    match &expired {
        Settled::Failed { error } => assert!(error.contains("12 hours"), "{error}"),
        other => panic!("expected a final failure (it alarms), got {other:?}"),
    }
    assert!(!vendor_holds().await, "the vendor was told to deprovision it");
    let stored = store().await.get_resource(&id).await.unwrap().unwrap();
    assert_eq!(stored.status, ResourceStatus::Expired);
    // Reported once: the expired add-on owes nothing, so `provider sync`
    // does not keep failing on it.
    assert!(!stored.sync.is_owed(), "{:?}", stored.sync);
    let again = sync(Some(at(PROVISION_LIMIT_SECONDS + 120))).await;
    assert_eq!(
        again
            .settle_now(&SyncSubject::Resource(id.clone()))
            .await
            .unwrap(),
        Settled::Done
    );
    // The vendor calling late changes nothing; Heroku's DELETE still ends it.
    let (status, _) =
        vendor_finishes(&id, &vendor_config(&id), &stack_var("PROVISIONER_SIGNING_SECRET")).await;
    assert_eq!(status, 409);
    let response = HerokuApi::from_env().deprovision(&uuid).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_refused_grant_fails_for_good_and_a_down_token_server_is_retried() {
    let sync = sync(None).await;
    let refused = new_uuid();
    assert_eq!(
        heroku_provision(&refused, &format!("refused-{refused}"), false)
            .await
            .0,
        200
    );
    match settle(&sync, &resource_id(&refused)).await {
        Settled::Failed { error } => assert!(error.contains("exchange") && error.contains("400"), "{error}"),
        other => panic!("expected a final failure, got {other:?}"),
    }
    let down = new_uuid();
    assert_eq!(
        heroku_provision(&down, &format!("down-{down}"), false).await.0,
        200
    );
    match settle(&sync, &resource_id(&down)).await {
        Settled::Pending { error, .. } => assert!(error.contains("503"), "{error}"),
        other => panic!("expected a retry, got {other:?}"),
    }
    // Deprovisioned before its grant was exchanged: owed nothing, Heroku not asked.
    let gone = new_uuid();
    assert_eq!(heroku_provision(&gone, &format!("ok-{gone}"), false).await.0, 200);
    let response = HerokuApi::from_env().deprovision(&gone).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(settle(&sync, &resource_id(&gone)).await, Settled::Done);
    assert!(
        token_requests(&format!("ok-{gone}")).await.is_empty(),
        "no exchange for a deprovisioned add-on"
    );
}

#[tokio::test]
async fn reconcile_names_heroku_add_ons_behind_or_without_tokens_until_sync_settles_them() {
    // The table's Clever Cloud side is judged against a vendor API of its
    // own; only the Heroku findings are this test's.
    let (_, vendor_url) = tests::fakes::FakeVendor::spawn("addon-name", "reconcile-password");
    let vendor = shared::clevercloud::vendor::VendorClient::new(
        vendor_url,
        "addon-name".into(),
        Secret::new("reconcile-password"),
    );
    let reconcile = || async { shared::sync::reconcile(&store().await, &vendor).await.unwrap() };
    let refused = new_uuid();
    assert_eq!(
        heroku_provision(&refused, &format!("refused-{refused}"), false)
            .await
            .0,
        200
    );
    let pending = new_uuid();
    assert_eq!(
        heroku_provision(&pending, &format!("ok-{pending}"), true).await.0,
        202
    );
    let report = reconcile().await;
    assert!(report.heroku_without_tokens.contains(&refused), "{report:?}");
    assert!(
        report.heroku_without_tokens.contains(&pending),
        "not exchanged yet: {report:?}"
    );
    assert!(report.has_drift());
    let sync = sync(None).await;
    settle(&sync, &resource_id(&pending)).await;
    let id = resource_id(&pending);
    let (status, _) =
        vendor_finishes(&id, &vendor_config(&id), &stack_var("PROVISIONER_SIGNING_SECRET")).await;
    assert_eq!(status, 200);
    let report = reconcile().await;
    assert!(!report.heroku_without_tokens.contains(&pending), "{report:?}");
    assert!(
        report.heroku_behind.contains(&pending),
        "finished, not yet sent: {report:?}"
    );
    assert_eq!(settle(&sync, &id).await, Settled::Done);
    let report = reconcile().await;
    assert!(!report.heroku_behind.contains(&pending), "{report:?}");
    assert!(
        report.heroku_without_tokens.contains(&refused),
        "still: nothing can reach Heroku for it"
    );
}
