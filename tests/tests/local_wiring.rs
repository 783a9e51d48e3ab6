//! The local stack runs the template's wiring (scripts/local_triggers.py,
//! docs/sync.md "Running locally"): the DynamoDB stream drives the platform
//! sync through `cargo lambda watch`'s Invoke API, with the template's
//! batching, retries and dead-letter queue; the rule that infra/template.yaml
//! puts on the lifecycle bus is made on the local EventBridge, so what the
//! bus receives reaches the rule's log group, and `provider events` lists it,
//! newest first, as it would on AWS.
//!
//! Nothing here runs the sync in process: every effect is the runner's.
//! These tests run on a stack of their own with the runner on (`make test`'s
//! second stage, scripts/e2e_wired.sh), one at a time: `provider dlq redrive`
//! settles the whole table, which no other test may be leaving owed.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tests::*;

/// `provider events --limit 100` on the stack: the events it lists.
fn listed() -> Vec<serde_json::Value> {
    let (code, report) = provider_json(&["events", "--limit", "100"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["log_group"], stack_var("EVENTS_LOG_GROUP").as_str());
    report["events"].as_array().cloned().unwrap_or_default()
}

/// Puts one event on the local default bus, as a function or AWS would.
async fn put_on_bus(source: &str, detail_type: &str, detail: Value) {
    let bus = aws_sdk_eventbridge::Client::new(&shared::config::aws_sdk_config("tests").await);
    let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
        .event_bus_name("default")
        .source(source)
        .detail_type(detail_type)
        .detail(detail.to_string())
        .build();
    let answer = bus
        .put_events()
        .entries(entry)
        .send()
        .await
        .expect("the local EventBridge");
    assert_eq!(answer.failed_entry_count(), 0);
}

#[tokio::test]
async fn provider_events_lists_what_the_lifecycle_bus_received_newest_first() {
    let marker = unique("events");
    let put = |source: &'static str, detail_type: &'static str, n: usize| {
        put_on_bus(
            source,
            detail_type,
            json!({ "resource_id": format!("{marker}-{n}") }),
        )
    };
    // One at a time, so that each is the newest when it arrives.
    for n in 0..3 {
        put(shared::events::SOURCE, "Resource Provisioned", n).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Not the stack's: the template's rule does not match it.
    put("someone-else", "Resource Provisioned", 9).await;

    let ours = |events: &[serde_json::Value]| -> Vec<String> {
        events
            .iter()
            .filter_map(|event| event["detail"]["resource_id"].as_str())
            .filter(|id| id.starts_with(&marker))
            .map(str::to_string)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = ours(&listed());
    while seen.len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        seen = ours(&listed());
    }
    assert_eq!(
        seen,
        [
            format!("{marker}-2"),
            format!("{marker}-1"),
            format!("{marker}-0")
        ],
        "every event of the stack's source, newest first, and no other"
    );
    let events = listed();
    let newest = events
        .iter()
        .find(|event| event["detail"]["resource_id"] == format!("{marker}-2").as_str())
        .unwrap();
    assert_eq!(newest["source"], shared::events::SOURCE);
    assert_eq!(newest["detail-type"], "Resource Provisioned");
}

/// Polls `probe` every 250 ms until it gives `Some`, for at most `seconds`;
/// panics naming `what` otherwise. The runner delivers within a second or
/// two; the bound is for a loaded machine.
async fn within<T, F, Fut>(seconds: u64, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "not within {seconds} s: {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What a stand-in recorded under `key` (`GET {url}/received/{key}`).
async fn received(url_var: &str, key: &str) -> Vec<Value> {
    reqwest::get(format!(
        "{}/received/{key}",
        stack_var(url_var).trim_end_matches("/v2")
    ))
    .await
    .expect("the stand-in")
    .json()
    .await
    .expect("JSON")
}

fn vendor_config(id: &str) -> Value {
    json!({"config": {"ADDON_NAME_URL": format!("https://db.example/{id}"), "ADDON_NAME_TOKEN": "from-the-vendor"}})
}

#[tokio::test]
async fn a_heroku_provision_has_its_grant_exchanged_by_the_stream_within_seconds() {
    let uuid = shared::secret::random_uuid();
    let code = format!("ok-{uuid}");
    let (status, answer) = heroku_provision(&uuid, &code, false).await;
    assert_eq!(status, 200, "{answer}");
    let exchanges = within(30, "the grant exchange at the stand-in Heroku", || async {
        Some(received("E2E_HEROKU_URL", &format!("tokens-{code}")).await).filter(|calls| !calls.is_empty())
    })
    .await;
    assert_eq!(exchanges.len(), 1, "exchanged once: {exchanges:?}");
    assert_eq!(
        (
            exchanges[0]["grant_type"].as_str(),
            exchanges[0]["status"].as_u64()
        ),
        (Some("authorization_code"), Some(200))
    );
    let id = shared::heroku::resource_id(&uuid).unwrap();
    within(30, "the add-on owing nothing", || async {
        (!stored_resource(&id).await.sync.is_owed()).then_some(())
    })
    .await;
    assert_eq!(
        received("E2E_HEROKU_URL", &format!("tokens-{code}")).await.len(),
        1,
        "and never again"
    );
}

#[tokio::test]
async fn an_asynchronous_completion_reaches_heroku_config_then_provision_and_scalingo_config() {
    // Heroku: 202, the grant exchanged, then the vendor finishes.
    let uuid = shared::secret::random_uuid();
    let id = shared::heroku::resource_id(&uuid).unwrap();
    let code = format!("ok-{uuid}");
    let (status, answer) = heroku_provision(&uuid, &code, true).await;
    assert_eq!(status, 202, "{answer}");
    within(30, "the grant exchange", || async {
        Some(received("E2E_HEROKU_URL", &format!("tokens-{code}")).await).filter(|calls| !calls.is_empty())
    })
    .await;
    assert!(
        received("E2E_HEROKU_URL", &uuid).await.is_empty(),
        "nothing set before the vendor finishes"
    );
    assert_eq!(
        vendor_finishes(&id, &vendor_config(&id), &stack_var("PROVISIONER_SIGNING_SECRET"))
            .await
            .0,
        200
    );
    let calls = within(30, "Heroku's config PATCH and provision action", || async {
        Some(received("E2E_HEROKU_URL", &uuid).await).filter(|calls| calls.len() >= 2)
    })
    .await;
    let order: Vec<(&str, u64)> = calls
        .iter()
        .map(|call| {
            (
                call["call"].as_str().unwrap_or(""),
                call["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(order, [("config", 200), ("provision", 200)], "{calls:?}");
    assert!(calls[0]["body"].to_string().contains("from-the-vendor"));

    // Scalingo: 202, then the vendor's config, PATCHed onto the app.
    let app = unique("app");
    let response = scalingo_authed(reqwest::Method::POST, "")
        .json(&json!({"plan": "basic", "app_id": app, "uuid": shared::secret::random_uuid(), "options": {"stand-in": "pending"}}))
        .send()
        .await
        .unwrap();
    let (status, answer) = json(response).await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["id"].as_str().unwrap().to_string();
    let config = vendor_config(&id);
    assert_eq!(
        vendor_finishes(&id, &config, &stack_var("PROVISIONER_SIGNING_SECRET"))
            .await
            .0,
        200
    );
    let calls = within(30, "Scalingo's config PATCH", || async {
        Some(received("E2E_SCALINGO_URL", &app).await).filter(|calls| !calls.is_empty())
    })
    .await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        (calls[0]["status"].as_u64(), &calls[0]["body"]),
        (Some(200), &config)
    );
}

#[tokio::test]
async fn a_clever_cloud_plan_change_that_rotates_config_reaches_the_vendor_api() {
    let market = Marketplace::from_env();
    let (addon_id, id) = market.provisioned("basic").await;
    let (status, body) = market.changed_plan(&id, &addon_id, "premium").await;
    assert_eq!(status, 200, "{body}");
    let resource = stored_resource(&id).await;
    assert_eq!(resource.config_version, 2, "the plan change rotated the config");
    let puts = within(30, "the config PUT at the stand-in Clever Cloud", || async {
        let calls = received("E2E_CLEVERCLOUD_URL", &addon_id).await;
        let puts: Vec<Value> = calls
            .into_iter()
            .filter(|call| call["call"] == "config")
            .collect();
        Some(puts).filter(|puts| !puts.is_empty())
    })
    .await;
    assert_eq!(puts.len(), 1, "{puts:?}");
    assert_eq!(puts[0]["status"], 200);
    assert_eq!(
        puts[0]["body"]["config"],
        serde_json::to_value(&resource.config.0).unwrap(),
        "the rotated config, as stored"
    );
    let settled = within(30, "the add-on owing nothing", || async {
        let resource = stored_resource(&id).await;
        (!resource.sync.is_owed()).then_some(resource)
    })
    .await;
    assert_eq!(settled.pushed_config_version, 2);
}

#[tokio::test]
async fn provider_events_shows_a_provision_a_plan_change_and_a_deprovision_newest_first() {
    let market = Marketplace::from_env();
    let (addon_id, id) = market.provisioned("basic").await;
    let (status, body) = market.changed_plan(&id, &addon_id, "premium").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(market.deprovision(&id).await.status(), 200);
    let kinds = within(30, "three lifecycle events in `provider events`", || async {
        let kinds: Vec<String> = listed()
            .iter()
            .filter(|event| event["detail"]["resource_id"] == id.as_str())
            .map(|event| event["detail-type"].as_str().unwrap_or("").to_string())
            .collect();
        Some(kinds).filter(|kinds| kinds.len() >= 3)
    })
    .await;
    assert_eq!(
        kinds,
        [
            "Resource Deprovisioned",
            "Resource Plan Changed",
            "Resource Provisioned"
        ]
    );
}

/// `provider --json dlq <command>`: its exit code and report.
fn dlq(command: &str) -> (i32, Value) {
    provider_json(&["dlq", command])
}

/// Sets the resource item's `status` by hand, and marks it owed, as a bad
/// manual edit (or a bug) would: its stream record is one the sync cannot read.
async fn set_status_by_hand(id: &str, status: &str) {
    use aws_sdk_dynamodb::types::AttributeValue;
    dynamo_client()
        .await
        .update_item()
        .table_name(table_name())
        .key("pk", AttributeValue::S(format!("RESOURCE#{id}")))
        .key("sk", AttributeValue::S("RESOURCE".into()))
        .update_expression("SET #status = :status, sync_queue = :pending, sync_since = :since")
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":status", AttributeValue::S(status.into()))
        .expression_attribute_values(":pending", AttributeValue::S("pending".into()))
        .expression_attribute_values(":since", AttributeValue::S(chrono::Utc::now().to_rfc3339()))
        .send()
        .await
        .expect("update the item");
}

#[tokio::test]
async fn a_poison_record_is_retried_then_dead_lettered_listed_and_settled_by_redrive() {
    let market = Marketplace::from_env();
    let (_, id) = market.provisioned("basic").await;
    within(30, "the provision settled", || async {
        (!stored_resource(&id).await.sync.is_owed()).then_some(())
    })
    .await;

    set_status_by_hand(&id, "no-such-status").await;
    // Retried as the template says (bisected, 5 retries), then dead-lettered.
    let listed = within(60, "the batch in the local dead-letter queue", || async {
        let (code, report) = dlq("list");
        (code == 1).then_some(report)
    })
    .await;
    assert_eq!(listed["messages"], 1, "{listed}");
    let batch = &listed["batches"][0];
    assert_eq!(batch["condition"], "RetryAttemptsExhausted", "{batch}");
    assert_eq!(
        batch["invocations"], 6,
        "the first try and the template's MaximumRetryAttempts (5): {batch}"
    );
    assert!(
        batch["shard_id"].is_string() && batch["start_sequence_number"].is_string(),
        "{batch}"
    );

    // The operator repairs the item, then redrives: settled, the queue empty.
    set_status_by_hand(&id, "active").await;
    let (code, report) = dlq("redrive");
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["deleted"], 1, "{report}");
    assert!(!stored_resource(&id).await.sync.is_owed());
    let (code, report) = dlq("list");
    assert_eq!((code, &report["messages"]), (0, &json!(0)), "{report}");
}

/// AWS Marketplace's events reach `marketplace-events` through the local
/// bus, by the template's rule (its pattern, its relay), as AWS delivers
/// them to the deployed stack; another source's do not.
#[tokio::test]
async fn an_aws_marketplace_event_put_on_the_local_bus_reaches_marketplace_events() {
    let (license_arn, _) = aws_registered().await;
    let id = shared::aws_marketplace::resource_id(shared::model::aws_license_id(&license_arn));
    let put = |source: &'static str| {
        put_on_bus(
            source,
            "License Deprovisioned - Manufacturer",
            json!({"license": {"arn": license_arn}}),
        )
    };
    put("someone-else").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        stored_resource(&id).await.status,
        shared::model::ResourceStatus::Active
    );
    put(shared::aws_marketplace::events::SOURCE).await;
    within(30, "the deprovision by the relayed event", || async {
        (stored_resource(&id).await.status == shared::model::ResourceStatus::Deprovisioned).then_some(())
    })
    .await;
}
