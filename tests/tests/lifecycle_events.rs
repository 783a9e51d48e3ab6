//! Lifecycle events: real audit records from DynamoDB Local's stream, after
//! real lifecycle writes, handed to the sync as Lambda would; the real AWS SDK
//! EventBridge client reaches a stand-in through AWS_ENDPOINT_URL_EVENTBRIDGE.

use serde_json::Value;
use shared::clevercloud::vendor::VendorClient;
use shared::clevercloud::{Lifecycle, PlanChangeRequest, ProvisionRequest};
use shared::config::CleverCloudConfig;
use shared::events::EventPublisher;
use shared::provisioner::DefaultProvisioner;
use shared::secret::Secret;
use shared::store::{AccountStore, DynamoStore};
use shared::sync::PlatformSync;
use std::sync::{Arc, OnceLock};
use tests::fakes::FakeEventBridge;
use tests::stream::{event, records_for};
use tests::*;

/// One stand-in per test process: the endpoint variable is read by every
/// client built after it is set, as in a Lambda environment.
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

fn addon() -> CleverCloudConfig {
    test_addon("events-test-password")
}

async fn sync(store: &DynamoStore) -> PlatformSync<DynamoStore> {
    event_bridge();
    let vendor = VendorClient::new(
        "http://127.0.0.1:9/v2".into(),
        "addon-name".into(),
        Secret::new("unused"),
    );
    let events = EventPublisher::from_env(&shared::config::aws_sdk_config("platform-sync").await)
        .expect("event publisher");
    PlatformSync::new(
        acting_as("platform-sync", store).await,
        vendor,
        None,
        Some(events),
    )
}

/// The stream records of a subject's audit items.
async fn audit_records(pk: &str) -> Vec<Value> {
    records_for(pk)
        .await
        .into_iter()
        .filter(|record| {
            record["dynamodb"]["Keys"]["sk"]["S"]
                .as_str()
                .is_some_and(|sk| sk.starts_with("AUDIT#"))
        })
        .collect()
}

async fn deliver(sync: &PlatformSync<DynamoStore>, records: &[Value]) {
    let response = sync.handle(event(records), None).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
}

#[tokio::test]
async fn each_change_of_a_resource_is_published_once_in_order_without_secrets() {
    let store = store().await;
    let sync = sync(&store).await;
    let lifecycle = Lifecycle::new(
        store.clone(),
        DefaultProvisioner::new("https://resources.example", addon().config_vars),
        addon(),
    );
    let addon_id = unique("events");
    let request: ProvisionRequest = serde_json::from_value(provision_body(&addon_id, "basic")).unwrap();
    let provisioned = lifecycle.provision(request).await.unwrap();
    let id = provisioned.id.clone();
    let change: PlanChangeRequest =
        serde_json::from_value(serde_json::json!({"addon_id": addon_id, "plan": "premium"})).unwrap();
    lifecycle.change_plan(&id, change).await.unwrap();
    lifecycle.deprovision(&id).await.unwrap();

    let records = audit_records(&format!("RESOURCE#{id}")).await;
    let inserts: Vec<Value> = records
        .iter()
        .filter(|record| record["eventName"] == "INSERT")
        .cloned()
        .collect();
    assert_eq!(inserts.len(), 3);
    deliver(&sync, &inserts).await;

    let published = event_bridge().about(&id);
    let kinds: Vec<&str> = published
        .iter()
        .map(|entry| entry["DetailType"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "Resource Provisioned",
            "Resource Plan Changed",
            "Resource Deprovisioned"
        ]
    );
    for entry in &published {
        assert_eq!(entry["Source"], "addon-provider");
        assert_eq!(entry["EventBusName"], "default");
        assert!(entry["Detail"]["event_id"].is_string());
    }
    assert_eq!(published[1]["Detail"]["details"]["from_plan"], "basic");
    assert_eq!(published[1]["Detail"]["details"]["to_plan"], "premium");
    assert_eq!(published[1]["Detail"]["details"]["marketplace"], "clever_cloud");
    let everything = serde_json::to_string(&published).unwrap();
    for value in provisioned.config.0.values() {
        assert!(
            !everything.contains(value.as_str()),
            "a config value was published"
        );
    }

    // Redelivery of the same records (and of the marks' own MODIFY records)
    // publishes nothing again.
    deliver(&sync, &inserts).await;
    deliver(&sync, &audit_records(&format!("RESOURCE#{id}")).await).await;
    assert_eq!(event_bridge().about(&id).len(), 3);
}

#[tokio::test]
async fn a_new_account_is_published_and_internal_bookkeeping_is_not() {
    let store = store().await;
    let sync = sync(&store).await;
    let email = format!("{}@example.com", unique("events"));
    let account = store
        .find_or_create_account(&email, Some("Events Test"), "cloud66")
        .await
        .unwrap();
    let records = audit_records(&format!("ACCOUNT#{}", account.id)).await;
    assert_eq!(records.len(), 1);
    deliver(&sync, &records).await;
    let published = event_bridge().about(&account.id);
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["DetailType"], "Account Created");
    assert!(
        !serde_json::to_string(&published).unwrap().contains(&email),
        "no email in events"
    );
}

/// A stream record that never reached the sync (dead-lettered, say): the
/// sweep publishes its audit item's event once it is old enough, once.
#[tokio::test]
async fn an_event_the_stream_never_published_is_published_by_the_sweep_once() {
    // A table of its own: the sweep reads every unpublished audit item.
    let store = isolated_store().await;
    let sync = sync(&store).await;
    let lifecycle = Lifecycle::new(
        store.clone(),
        DefaultProvisioner::new("https://resources.example", addon().config_vars),
        addon(),
    );
    let request: ProvisionRequest =
        serde_json::from_value(provision_body(&unique("events"), "basic")).unwrap();
    let id = lifecycle.provision(request).await.unwrap().id;
    // Not yet old enough: nothing.
    assert_eq!(
        sync.publish_unpublished(std::time::Duration::from_secs(600), None)
            .await
            .unwrap(),
        0
    );
    assert!(event_bridge().about(&id).is_empty());
    // Old enough (an age of zero stands for ten minutes later).
    assert_eq!(
        sync.publish_unpublished(std::time::Duration::ZERO, None)
            .await
            .unwrap(),
        1
    );
    let published = event_bridge().about(&id);
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["DetailType"], "Resource Provisioned");
    // Out of the queue: a second sweep publishes nothing, nor does the
    // stream record arriving late.
    assert_eq!(
        sync.publish_unpublished(std::time::Duration::ZERO, None)
            .await
            .unwrap(),
        0
    );
    let late: Vec<Value> = tests::stream::records_in(store.table(), &format!("RESOURCE#{id}"))
        .await
        .into_iter()
        .filter(|record| {
            record["eventName"] == "INSERT"
                && record["dynamodb"]["Keys"]["sk"]["S"]
                    .as_str()
                    .is_some_and(|sk| sk.starts_with("AUDIT#"))
        })
        .collect();
    assert_eq!(late.len(), 1);
    deliver(&sync, &late).await;
    assert_eq!(event_bridge().about(&id).len(), 1);
}
