//! The local stack runs the template's wiring (scripts/local_triggers.py,
//! docs/sync.md "Running locally"): the rule that infra/template.yaml puts on
//! the lifecycle bus is made on the local EventBridge, so what the bus
//! receives reaches the rule's log group, and `provider events` lists it,
//! newest first, as it would on AWS.

use std::time::{Duration, Instant};
use tests::*;

/// `provider events --limit 100` on the stack: the events it lists.
fn listed() -> Vec<serde_json::Value> {
    let output = std::process::Command::new(workspace_binary("provider"))
        .args(["--json", "events", "--limit", "100"])
        .output()
        .expect("run provider");
    let printed = String::from_utf8_lossy(&output.stdout).to_string();
    assert_eq!(output.status.code(), Some(0), "{printed}");
    let report: serde_json::Value = serde_json::from_str(&printed).expect("JSON");
    assert_eq!(report["log_group"], stack_var("EVENTS_LOG_GROUP").as_str());
    report["events"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn provider_events_lists_what_the_lifecycle_bus_received_newest_first() {
    let bus = aws_sdk_eventbridge::Client::new(&shared::config::aws_sdk_config("tests").await);
    let marker = unique("events");
    let put = |source: &'static str, detail_type: &'static str, n: usize| {
        let (bus, marker) = (bus.clone(), marker.clone());
        async move {
            let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .event_bus_name("default")
                .source(source)
                .detail_type(detail_type)
                .detail(serde_json::json!({ "resource_id": format!("{marker}-{n}") }).to_string())
                .build();
            let answer = bus
                .put_events()
                .entries(entry)
                .send()
                .await
                .expect("the local EventBridge");
            assert_eq!(answer.failed_entry_count(), 0);
        }
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
