//! The platform sync: real stream records read from DynamoDB Local after real
//! writes, handed to the handler as Lambda would, against in-process stand-ins
//! for Clever Cloud's vendor API and Cloudmore.

use serde_json::{json, Value};
use shared::clevercloud::vendor::VendorClient;
use shared::clevercloud::{Lifecycle, ProvisionRequest};
use shared::cloud66::link::PayloadFormat;
use shared::config::CleverCloudConfig;
use shared::model::{Resource, Timestamp};
use shared::provisioner::DefaultProvisioner;
use shared::secret::Secret;
use shared::store::{AccountStore, DynamoStore, LinkStore, ResourceReader};
use shared::sync;
use std::time::Duration;
use tests::fakes::{FakeCloudmore, SyncWorld};

type World = SyncWorld;
use tests::stream::{event, records_for};
use tests::*;

const VENDOR_PASSWORD: &str = "sync-test-password";

fn addon() -> CleverCloudConfig {
    test_addon(VENDOR_PASSWORD)
}

fn provisioner() -> DefaultProvisioner {
    DefaultProvisioner::new("https://resources.example", addon().config_vars)
}

async fn world() -> World {
    let cloudmore = FakeCloudmore::new(3600, Duration::from_secs(3600), None);
    SyncWorld::new(store().await, VENDOR_PASSWORD, cloudmore).await
}

/// Hands `records` to the sync as one batch; every record must succeed.
async fn deliver(world: &World, records: &[Value]) {
    let response = world.sync.handle(event(records), None).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
}

/// Provisions through the real lifecycle; returns (addon_id, owner_id, resource id).
async fn provisioned(world: &World) -> (String, String, String) {
    let addon_id = unique("sync");
    let owner_id = unique("orga");
    let mut body = provision_body(&addon_id, "basic");
    body["owner_id"] = owner_id.clone().into();
    let request: ProvisionRequest = serde_json::from_value(body).unwrap();
    let lifecycle = Lifecycle::new(world.store.clone(), provisioner(), addon());
    let id = lifecycle.provision(request).await.unwrap().id;
    world.vendor.add_app(
        &addon_id,
        json!({"id": addon_id, "name": "My addon-name instance", "owner_id": owner_id,
               "owner_email": "user@example.com", "owner_emails": ["user@example.com", "foobar@baz.com"],
               "region": "eu", "plan": "basic", "config": {}, "domains": []}),
    );
    (addon_id, owner_id, id)
}

/// The stream records of a subject's own item (not its audit events).
async fn item_records(pk: &str, sk: &str, event_name: &str) -> Vec<Value> {
    records_for(pk)
        .await
        .into_iter()
        .filter(|r| r["eventName"] == event_name && r["dynamodb"]["Keys"]["sk"]["S"] == sk)
        .collect()
}

async fn resource(store: &DynamoStore, id: &str) -> Resource {
    store.get_resource(id).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_provisioned_resource_gets_clever_clouds_details_and_its_owner_one_organization() {
    let world = world().await;
    let (addon_id, owner_id, id) = provisioned(&world).await;
    let inserts = item_records(&format!("RESOURCE#{id}"), "RESOURCE", "INSERT").await;
    assert_eq!(inserts.len(), 1, "one INSERT for the new resource");

    deliver(&world, &inserts).await;
    let details = resource(&world.store, &id).await.vendor.expect("details stored");
    assert_eq!(details.name.as_deref(), Some("My addon-name instance"));
    assert_eq!(details.owner_emails, ["user@example.com", "foobar@baz.com"]);
    assert_eq!(details.region.as_deref(), Some("eu"));
    let organization_name = format!("My Company ({owner_id})");
    assert_eq!(world.cloudmore.organizations_named(&organization_name).len(), 1);

    // At-least-once delivery: the same record again changes nothing.
    deliver(&world, &inserts).await;
    assert_eq!(
        world
            .vendor
            .gets
            .lock()
            .unwrap()
            .iter()
            .filter(|g| **g == addon_id)
            .count(),
        1
    );
    assert_eq!(world.cloudmore.organizations_named(&organization_name).len(), 1);
    assert_eq!(*world.cloudmore.organization_posts.lock().unwrap(), 1);

    // Storing the details is itself a MODIFY; its config did not change, so no PUT.
    let modifies = item_records(&format!("RESOURCE#{id}"), "RESOURCE", "MODIFY").await;
    assert_eq!(modifies.len(), 1);
    deliver(&world, &modifies).await;
    assert!(world.vendor.puts.lock().unwrap().is_empty());
}

#[tokio::test]
async fn rotated_credentials_reach_clever_cloud_through_the_stream() {
    let world = world().await;
    let (addon_id, _, id) = provisioned(&world).await;
    let before = resource(&world.store, &id).await.config;

    // The provider CLI, as a vendor would run it.
    let output = std::process::Command::new(workspace_binary("provider"))
        .args(["rotate", &id])
        .env("ADDON_CONFIG_VARS", "ADDON_NAME_URL,ADDON_NAME_TOKEN")
        .env("RESOURCE_BASE_URL", "https://resources.example")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    let report: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(report["rotated"], json!(["ADDON_NAME_TOKEN", "ADDON_NAME_URL"]));
    let after = resource(&world.store, &id).await.config;
    assert_ne!(after.0["ADDON_NAME_TOKEN"], before.0["ADDON_NAME_TOKEN"]);
    assert_eq!(after.0["ADDON_NAME_URL"], before.0["ADDON_NAME_URL"]);
    assert!(
        !printed.contains(&after.0["ADDON_NAME_TOKEN"]),
        "the CLI must not print secrets"
    );

    let rotated = resource(&world.store, &id).await;
    assert_eq!(rotated.config_version, 2);
    assert_eq!(
        rotated.pushed_config_version, 1,
        "owed until Clever Cloud confirms it"
    );
    assert!(rotated.sync.is_owed());

    let modifies = item_records(&format!("RESOURCE#{id}"), "RESOURCE", "MODIFY").await;
    assert_eq!(modifies.len(), 1);
    for _ in 0..2 {
        deliver(&world, &modifies).await;
    }
    let puts = world.vendor.puts.lock().unwrap().clone();
    assert_eq!(puts.len(), 1, "pushed once; a redelivery finds nothing owed");
    assert_eq!(
        puts[0],
        (addon_id, json!({ "config": after })),
        "exactly the stored config"
    );
    let settled = resource(&world.store, &id).await;
    assert_eq!(settled.pushed_config_version, 2);
    assert!(!settled.sync.is_owed());
}

#[tokio::test]
async fn a_new_cloud66_account_gets_one_cloudmore_organization_even_when_redelivered() {
    let world = world().await;
    let email = format!("{}@example.com", unique("c66"));
    let account = world
        .store
        .find_or_create_account(&email, Some("Dev"), "cloud66")
        .await
        .unwrap();
    let inserts = item_records(&format!("ACCOUNT#{}", account.id), "ACCOUNT", "INSERT").await;
    assert_eq!(inserts.len(), 1);
    for _ in 0..2 {
        deliver(&world, &inserts).await;
    }
    let organizations = world.cloudmore.organizations_named(&email);
    assert_eq!(organizations.len(), 1);
    let stored = world.store.get_account(&account.id).await.unwrap().unwrap();
    assert_eq!(stored.cloudmore_organization_id.as_ref(), Some(&organizations[0]));

    // A retry after Cloudmore created the organisation but its answer was lost:
    // the organisation is found by name, not created twice.
    let email = format!("{}@example.com", unique("lost"));
    world.cloudmore.add_organization("org-made-before", &email);
    let account = world
        .store
        .find_or_create_account(&email, None, "cloud66")
        .await
        .unwrap();
    let inserts = item_records(&format!("ACCOUNT#{}", account.id), "ACCOUNT", "INSERT").await;
    let posts_before = *world.cloudmore.organization_posts.lock().unwrap();
    deliver(&world, &inserts).await;
    assert_eq!(*world.cloudmore.organization_posts.lock().unwrap(), posts_before);
    let stored = world.store.get_account(&account.id).await.unwrap().unwrap();
    assert_eq!(
        stored.cloudmore_organization_id.as_deref(),
        Some("org-made-before")
    );
}

#[tokio::test]
async fn a_poison_record_stops_its_batch_and_it_and_every_later_record_are_reported_in_order() {
    let world = world().await;
    let (_, _, first) = provisioned(&world).await;
    let poison = unique("poison");
    let client = dynamo_client().await;
    client
        .put_item()
        .table_name(table_name())
        .item(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("RESOURCE#{poison}")),
        )
        .item(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("RESOURCE".into()),
        )
        .item(
            "entity",
            aws_sdk_dynamodb::types::AttributeValue::S("resource".into()),
        )
        .item("id", aws_sdk_dynamodb::types::AttributeValue::N("12".into()))
        .item(
            "sync_queue",
            aws_sdk_dynamodb::types::AttributeValue::S("pending".into()),
        )
        .item(
            "sync_since",
            aws_sdk_dynamodb::types::AttributeValue::S(Timestamp::now().to_string()),
        )
        .send()
        .await
        .unwrap();
    let (_, _, second) = provisioned(&world).await;
    let mut batch = item_records(&format!("RESOURCE#{first}"), "RESOURCE", "INSERT").await;
    let poison_record = item_records(&format!("RESOURCE#{poison}"), "RESOURCE", "INSERT").await;
    batch.extend(poison_record.clone());
    batch.extend(item_records(&format!("RESOURCE#{second}"), "RESOURCE", "INSERT").await);
    assert_eq!(batch.len(), 3);

    let response = world.sync.handle(event(&batch), None).await;
    let failed: Vec<Option<String>> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    let sequence = |record: &Value| record["dynamodb"]["SequenceNumber"].as_str().map(str::to_string);
    assert_eq!(
        failed,
        [sequence(&batch[1]), sequence(&batch[2])],
        "the poison record and the one after it, so Lambda resumes from the poison and never runs a later record first"
    );
    assert!(
        resource(&world.store, &first).await.vendor.is_some(),
        "the record before the poison is processed"
    );
    assert!(
        resource(&world.store, &second).await.vendor.is_none(),
        "the record after the poison waits for its turn"
    );
    // Its turn: the retry from the poison on (once the poison is gone, as
    // after its dead-lettering) processes the rest.
    let response = world.sync.handle(event(&batch[2..]), None).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert!(resource(&world.store, &second).await.vendor.is_some());
}

#[tokio::test]
async fn reconcile_reports_drift_both_ways_and_deletes_nothing() {
    let world = world().await;
    let (in_step, _, _) = provisioned(&world).await;
    let (gone_here, _, gone_id) = provisioned(&world).await;
    let lifecycle = Lifecycle::new(world.store.clone(), provisioner(), addon());
    lifecycle.deprovision(&gone_id).await.unwrap();
    let (only_here, _, only_here_id) = provisioned(&world).await;
    world.vendor.apps.lock().unwrap().remove(&only_here);
    let only_there = unique("only_there");
    world
        .vendor
        .add_app(&only_there, json!({"id": only_there, "plan": "basic"}));

    let vendor = VendorClient::new(
        world.vendor_url.clone(),
        "addon-name".into(),
        Secret::new(VENDOR_PASSWORD),
    );
    let report = sync::reconcile(&world.store, &vendor).await.unwrap();
    assert_eq!(report.unknown_here, [only_there]);
    assert_eq!(report.deprovisioned_here, [gone_here]);
    assert!(report.unknown_there.contains(&only_here));
    assert!(!report.unknown_there.contains(&in_step));
    assert!(report.plan_mismatch.is_empty());
    // Other tests leave a deliberately corrupt resource item in the table:
    // reported, not fatal.
    assert!(report
        .unreadable_here
        .iter()
        .all(|key| key.starts_with("RESOURCE#poison")));
    assert!(
        resource(&world.store, &only_here_id).await.is_active(),
        "reconcile deletes nothing"
    );
}

#[tokio::test]
async fn an_unverified_cloud66_link_reaches_cloudmore_only_once_cloud66_answers_200() {
    const CALLBACK: &str = "https://app.cloud66.com/partners/callback";
    let world = world().await;
    let api = unverified_link_api(world.store.clone(), PayloadFormat::Json, Duration::from_secs(3)).await;
    let email = format!("{}@example.com", unique("unverified"));
    let posts_before = *world.cloudmore.organization_posts.lock().unwrap();

    // Refused by Cloud 66: everything the attempt wrote goes through the sync.
    let refused = unique("invalid");
    assert_eq!(open_in_process(&api, &refused, &email, CALLBACK).await.0, 403);
    let link = world.store.get_link(&refused).await.unwrap().unwrap();
    let mut records = records_for(&format!("CLOUD66_LINK#{refused}")).await;
    records.extend(records_for(&format!("RESOURCE#{}", link.resource_id.unwrap())).await);
    assert!(records.len() >= 2, "{records:?}");
    deliver(&world, &records).await;
    assert!(world.cloudmore.organizations_named(&email).is_empty());
    assert_eq!(*world.cloudmore.organization_posts.lock().unwrap(), posts_before);

    // Linked: the account exists only now, and its INSERT makes one organisation.
    let linked = unique("ok");
    assert_eq!(open_in_process(&api, &linked, &email, CALLBACK).await.0, 302);
    let link = world.store.get_link(&linked).await.unwrap().unwrap();
    let account_id = link.account_id.expect("linked to an account");
    let mut records = records_for(&format!("ACCOUNT#{account_id}")).await;
    records.extend(records_for(&format!("RESOURCE#{}", link.resource_id.unwrap())).await);
    deliver(&world, &records).await;
    assert_eq!(world.cloudmore.organizations_named(&email).len(), 1);
}

/// The function's own start-up, as Lambda runs it: the configuration and the
/// secret (the parts it reads, through SECRETS_NAME, as deployed), the table's warm-up read; then
/// an empty batch. Its AWS calls are recorded as the function's, so the
/// template's grants for them are checked too (scripts/check_aws_calls.py).
#[tokio::test]
async fn the_sync_starts_from_the_deployments_configuration_and_secret() {
    assert!(
        std::env::var("SECRETS_NAME").is_ok(),
        "make test serves the secrets from a Secrets Manager secret"
    );
    let sync = sync::PlatformSync::from_env("platform-sync")
        .await
        .expect("the deployment's configuration");
    let answer = sync
        .invoke(json!({"Records": []}), None)
        .await
        .expect("an empty batch");
    assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
}
