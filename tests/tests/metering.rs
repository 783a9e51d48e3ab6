//! Usage billing through the stack (docs/metering.md): the vendor's signed
//! reports to `POST /vendor/resources/{id}/usage`, and the `metering`
//! function run through watch's Invoke API with a scheduled event whose
//! `time` makes the hours pass. AWS Marketplace is the stand-in
//! (tests/src/bin/fake_aws_marketplace.rs), which bills each (license,
//! dimension, hour) once and records every call.
//!
//! The meter sends every due counter of the table, so the tests take turns
//! (one lock) and look only at their own licenses.

use chrono::{DateTime, Duration, Utc};
use futures_util::future::join_all;
use serde_json::{json, Value};
use tests::*;

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn standin() -> String {
    stack_var("E2E_AWS_MARKETPLACE_URL")
}

fn grace() -> Duration {
    Duration::seconds(stack_var("METERING_GRACE_SECONDS").parse().expect("seconds"))
}

/// The hour reports go to: the current one.
fn this_hour() -> DateTime<Utc> {
    shared::metering::hour_of(Utc::now())
}

fn hour_text(hour: DateTime<Utc>) -> String {
    shared::metering::hour_text(hour)
}

/// When the meter sends `hour`: its end and the grace, and a second.
fn sent_at(hour: DateTime<Utc>) -> DateTime<Utc> {
    hour + Duration::hours(1) + grace() + Duration::seconds(1)
}

fn resource_of(license_arn: &str) -> String {
    shared::aws_marketplace::resource_id(shared::model::aws_license_id(license_arn))
}

fn record(dimension: &str, quantity: u64, hour: DateTime<Utc>, key: &str) -> Value {
    json!({"dimension": dimension, "quantity": quantity, "hour": hour_text(hour), "key": key})
}

/// The stand-in's switches; its clock set to `now`.
async fn set_metering(body: Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/metering", standin()))
        .json(&body)
        .send()
        .await
        .expect("the stand-in AWS Marketplace");
    assert_eq!(response.status(), 204);
}

/// One meter run at `now`, as the schedule invokes it: its report.
async fn meter_at(now: DateTime<Utc>) -> Value {
    set_metering(json!({"now": now.timestamp()})).await;
    let (status, body) = invoke(
        "metering",
        &json!({
            "version": "0",
            "id": unique("sched"),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "region": "us-east-1",
            "resources": [],
            "detail": {},
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// What the stand-in billed for `license_arn`.
async fn billed(license_arn: &str) -> Vec<Value> {
    let all: Vec<Value> = reqwest::Client::new()
        .get(format!("{}/billed", standin()))
        .send()
        .await
        .expect("the stand-in")
        .json()
        .await
        .expect("billed records");
    all.into_iter()
        .filter(|record| record["LicenseArn"] == license_arn)
        .collect()
}

/// Every record of `license_arn` sent in any BatchMeterUsage call.
async fn sent(license_arn: &str) -> Vec<Value> {
    let calls: Vec<Value> = reqwest::Client::new()
        .get(format!("{}/received/BatchMeterUsage", standin()))
        .send()
        .await
        .expect("the stand-in")
        .json()
        .await
        .expect("received calls");
    calls
        .iter()
        .flat_map(|call| call["UsageRecords"].as_array().cloned().unwrap_or_default())
        .filter(|record| record["LicenseArn"] == license_arn)
        .collect()
}

/// The stored counters of `resource_id`.
async fn counters(resource_id: &str) -> Vec<Item> {
    partition(&dynamo_client().await, &format!("USAGE#{resource_id}"))
        .await
        .into_iter()
        .filter(|item| string(item, "sk") != "FINAL")
        .collect()
}

fn counter<'a>(counters: &'a [Item], dimension: &str) -> &'a Item {
    counters
        .iter()
        .find(|item| string(item, "sk").ends_with(&format!("#{dimension}")))
        .unwrap_or_else(|| panic!("no {dimension} counter in {counters:?}"))
}

/// The audit actions of `resource_id`'s history.
async fn audited(resource_id: &str) -> Vec<String> {
    let (_, audits) = resource_partition(&dynamo_client().await, resource_id).await;
    audits.iter().map(|item| string(item, "action")).collect()
}

/// A report that must be counted: retried while the stack says 503 (a
/// hot counter's transactions collide), as a vendor retries.
async fn report(resource_id: &str, records: Vec<Value>) -> Value {
    let body = json!({ "records": records });
    for _ in 0..20 {
        let (status, answer) = vendor_reports_usage(resource_id, &body).await;
        match status {
            200 => return answer,
            503 => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            _ => panic!("{status}: {answer}"),
        }
    }
    panic!("the report kept answering 503");
}

#[tokio::test]
async fn a_thousand_records_from_twenty_reporters_with_retries_are_one_record_per_license_dimension_and_hour()
{
    let _turn = TURN.lock().await;
    let mut licenses = Vec::new();
    for _ in 0..4 {
        licenses.push(aws_registered().await.0);
    }
    let hour = this_hour();
    let dimensions = ["api_calls", "storage_gb"];
    // 1,000 records: reporter r sends 50, in reports of 5; every tenth
    // report is sent twice (the vendor's retry after a lost answer).
    let reporters = (0..20).map(|reporter| {
        let licenses = licenses.clone();
        async move {
            let mut sums: Vec<((String, &str), u64)> = Vec::new();
            for batch in 0..10 {
                let license = &licenses[(reporter + batch) % licenses.len()];
                let records: Vec<Value> = (0..5)
                    .map(|i| {
                        let dimension = dimensions[(batch + i) % 2];
                        let quantity = (reporter * 7 + batch * 3 + i) as u64 % 97;
                        sums.push(((license.clone(), dimension), quantity));
                        record(dimension, quantity, hour, &format!("r{reporter}-b{batch}-i{i}"))
                    })
                    .collect();
                let id = resource_of(license);
                let first = report(&id, records.clone()).await;
                assert_eq!(first["counted"].as_array().unwrap().len(), 5, "{first}");
                if batch == 0 {
                    let again = report(&id, records).await;
                    assert_eq!(again["counted"], json!([]), "{again}");
                    assert_eq!(again["already_counted"].as_array().unwrap().len(), 5, "{again}");
                }
            }
            sums
        }
    });
    let mut expected: std::collections::BTreeMap<(String, &str), u64> = Default::default();
    for sums in join_all(reporters).await {
        for (key, quantity) in sums {
            *expected.entry(key).or_default() += quantity;
        }
    }
    assert_eq!(expected.len(), 8, "4 licenses × 2 dimensions");

    let run = meter_at(sent_at(hour)).await;
    assert!(run["metered"].as_u64().unwrap() >= 8, "{run}");
    for license in &licenses {
        let billed = billed(license).await;
        assert_eq!(billed.len(), 2, "one record per dimension and hour: {billed:?}");
        for record in &billed {
            let dimension = record["Dimension"].as_str().unwrap();
            assert_eq!(
                record["Quantity"].as_u64(),
                Some(expected[&(license.clone(), dimension)]),
                "{record}"
            );
            assert_eq!(
                record["Timestamp"].as_i64(),
                Some(hour.timestamp()),
                "stamped with its hour"
            );
            assert_eq!(record["CustomerAWSAccountId"].as_str().map(str::len), Some(12));
        }
        assert_eq!(sent(license).await.len(), 2, "nothing sent twice");
        let id = resource_of(license);
        let stored = counters(&id).await;
        for dimension in dimensions {
            let item = counter(&stored, dimension);
            assert_eq!(string(item, "state"), "metered");
            assert_eq!(string(item, "outcome"), "Success");
            assert_eq!(
                string(item, "quantity"),
                expected[&(license.clone(), dimension)].to_string()
            );
        }
        let audits = audited(&id).await;
        assert_eq!(
            audits.iter().filter(|a| *a == "usage_metered").count(),
            2,
            "{audits:?}"
        );
    }
    // A later run sends nothing again.
    meter_at(sent_at(hour) + Duration::minutes(5)).await;
    for license in &licenses {
        assert_eq!(sent(license).await.len(), 2);
    }
}

#[tokio::test]
async fn a_run_that_dies_between_the_call_and_the_write_is_resent_identically_and_billed_once() {
    let _turn = TURN.lock().await;
    let (license, _) = aws_registered().await;
    let id = resource_of(&license);
    let hour = this_hour();
    report(&id, vec![record("api_calls", 41, hour, "k1")]).await;
    // AWS bills the call, and its answer never arrives.
    set_metering(json!({"garble_call": 1})).await;
    let first = meter_at(sent_at(hour)).await;
    assert!(first["retried"].as_u64().unwrap() >= 1, "{first}");
    assert_eq!(billed(&license).await.len(), 1, "billed by the first call");
    assert_eq!(
        string(counter(&counters(&id).await, "api_calls"), "state"),
        "sealed"
    );

    let second = meter_at(sent_at(hour) + Duration::minutes(5)).await;
    assert!(second["duplicates"].as_u64().unwrap() >= 1, "{second}");
    let sent = sent(&license).await;
    assert_eq!(sent.len(), 2, "sent once more");
    assert_eq!(sent[0], sent[1], "identical: the same quantity and timestamp");
    let billed = billed(&license).await;
    assert_eq!(billed.len(), 1, "billed once");
    assert_eq!(billed[0]["Quantity"], 41);
    let stored = counters(&id).await;
    let item = counter(&stored, "api_calls");
    assert_eq!(
        (string(item, "state"), string(item, "outcome")),
        ("metered".into(), "DuplicateRecord".into())
    );
}

#[tokio::test]
async fn unprocessed_records_are_sent_on_the_next_run_with_the_same_quantity() {
    let _turn = TURN.lock().await;
    let mut buyer = CookieJar::default();
    let (license, _) = aws_registered_in(&mut buyer).await;
    let id = resource_of(&license);
    let hour = this_hour();
    report(
        &id,
        vec![
            record("storage_gb", 7, hour, "a"),
            record("storage_gb", 5, hour, "b"),
        ],
    )
    .await;
    set_metering(json!({"unprocessed_call": 1})).await;
    let first = meter_at(sent_at(hour)).await;
    assert!(first["retried"].as_u64().unwrap() >= 1, "{first}");
    assert!(billed(&license).await.is_empty());
    let item = counters(&id).await;
    assert_eq!(
        string(counter(&item, "storage_gb"), "outcome"),
        "UnprocessedRecords"
    );

    let second = meter_at(sent_at(hour) + Duration::minutes(5)).await;
    assert!(second["metered"].as_u64().unwrap() >= 1, "{second}");
    let sent = sent(&license).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], sent[1], "the same quantity and timestamp");
    assert_eq!(billed(&license).await[0]["Quantity"], 12);
    let (code, shown) = provider_usage(&id);
    assert_eq!(code, Some(0), "{shown}");
    assert_eq!(shown["counters"][0]["state"], "metered");
    assert_eq!(shown["counters"][0]["attempts"], 1);
    assert_eq!(shown["counters"][0]["quantity"], 12);
    // The buyer's panel shows this month's usage.
    let panel = visit(&mut buyer, "/dashboard").await.text().await.unwrap();
    assert!(panel.contains("Usage this month"), "{panel}");
    assert!(
        panel.contains(r#"<td class="reported">12</td><td class="billed">12</td>"#),
        "{panel}"
    );
}

#[tokio::test]
async fn a_late_report_for_a_sealed_hour_is_refused_and_changes_nothing() {
    let _turn = TURN.lock().await;
    let (license, _) = aws_registered().await;
    let id = resource_of(&license);
    let hour = this_hour();
    report(&id, vec![record("api_calls", 3, hour, "early")]).await;
    meter_at(sent_at(hour)).await;
    let before = counters(&id).await;
    let (status, answer) =
        vendor_reports_usage(&id, &json!({"records": [record("api_calls", 9, hour, "late")]})).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"], "hour_sealed");
    assert!(
        answer["message"].as_str().unwrap().contains(&hour_text(hour)),
        "{answer}"
    );
    assert_eq!(counters(&id).await, before, "nothing changed");
    assert_eq!(billed(&license).await[0]["Quantity"], 3);
}

/// The License Updated and Purchase Agreement Ended of a purchase, in the
/// stand-in's words (docs/aws-marketplace.md).
async fn agreement_events(license_arn: &str) -> (Value, Value) {
    let agreement = unique("agmt");
    let product = stack_var("AWS_MARKETPLACE_PRODUCT_CODE");
    let envelope = |detail_type: &str, detail: Value| {
        json!({
            "version": "0", "id": unique("ev"), "detail-type": detail_type,
            "source": "aws.agreement-marketplace", "account": "123456789012",
            "time": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "region": "us-east-1", "resources": [], "detail": detail,
        })
    };
    let printed = license_arn.trim_start_matches("arn:");
    (
        envelope(
            "License Updated - Manufacturer",
            json!({"agreement": {"id": agreement}, "license": {"arn": printed}, "product": {"code": product}}),
        ),
        envelope(
            "Purchase Agreement Ended - Manufacturer",
            json!({"agreement": {"id": agreement}}),
        ),
    )
}

async fn deliver(event: &Value) {
    let (status, answer) = invoke("marketplace-events", event).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn an_ended_agreements_last_hour_is_sent_within_the_hour_and_a_deprovisioned_one_takes_no_usage() {
    let _turn = TURN.lock().await;
    let (license, _) = aws_registered().await;
    let id = resource_of(&license);
    let hour = this_hour();
    report(&id, vec![record("api_calls", 10, hour, "before-end")]).await;
    let (updated, ended) = agreement_events(&license).await;
    deliver(&updated).await;
    deliver(&ended).await;
    // The last usage is still taken for the grace after the end.
    report(&id, vec![record("api_calls", 5, hour, "after-end")]).await;
    // Not due by its hour yet: sent because the agreement ended.
    let end = Utc::now();
    let run = meter_at(end + grace() + Duration::seconds(5)).await;
    assert!(run["metered"].as_u64().unwrap() >= 1, "{run}");
    let billed = billed(&license).await;
    assert_eq!(billed.len(), 1, "{billed:?}");
    assert_eq!(billed[0]["Quantity"], 15);
    assert_eq!(billed[0]["Timestamp"].as_i64(), Some(hour.timestamp()));
    let marks = partition(&dynamo_client().await, &format!("USAGE#{id}")).await;
    assert!(
        !marks.iter().any(|item| string(item, "sk") == "FINAL"),
        "the end's mark is taken off"
    );

    let (status, answer) = vendor_reports_usage(
        &id,
        &json!({"records": [record("api_calls", 1, hour, "after-send")]}),
    )
    .await;
    assert_eq!(status, 409, "{answer}");

    let printed = license.trim_start_matches("arn:");
    deliver(&json!({
        "version": "0", "id": unique("ev"), "detail-type": "License Deprovisioned - Manufacturer",
        "source": "aws.agreement-marketplace", "account": "123456789012",
        "time": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": "us-east-1", "resources": [],
        "detail": {"license": {"arn": printed}, "product": {"code": stack_var("AWS_MARKETPLACE_PRODUCT_CODE")}},
    }))
    .await;
    let (status, answer) =
        vendor_reports_usage(&id, &json!({"records": [record("storage_gb", 1, hour, "gone")]})).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (409, Some("resource_deprovisioned")),
        "{answer}"
    );
}

#[tokio::test]
async fn customer_not_subscribed_fails_for_good_with_the_metric_and_an_audit_event_and_is_not_retried() {
    let _turn = TURN.lock().await;
    let (license, _) = aws_registered().await;
    let id = resource_of(&license);
    let hour = this_hour();
    report(&id, vec![record("api_calls", 4, hour, "k")]).await;
    set_metering(json!({"not_subscribed": [license]})).await;
    let run = meter_at(sent_at(hour)).await;
    assert!(
        run["failed"].as_u64().unwrap() >= 1,
        "the alarm's metric, UsageMeteringFailures: {run}"
    );
    let stored = counters(&id).await;
    let item = counter(&stored, "api_calls");
    assert_eq!(
        (string(item, "state"), string(item, "outcome")),
        ("failed".into(), "CustomerNotSubscribed".into())
    );
    assert!(audited(&id).await.contains(&"usage_metering_failed".to_string()));
    meter_at(sent_at(hour) + Duration::minutes(5)).await;
    assert_eq!(sent(&license).await.len(), 1, "not retried");
    assert!(billed(&license).await.is_empty());
    // What an operator sees: a finding, exit 1.
    let (code, shown) = provider_usage(&id);
    assert_eq!(code, Some(1), "{shown}");
    assert_eq!(shown["failed_or_lost"], 1);
    assert_eq!(shown["counters"][0]["state"], "failed");
    assert_eq!(shown["counters"][0]["outcome"], "CustomerNotSubscribed");
    assert_eq!(shown["totals"]["api_calls"], 4);
}

/// `provider usage ID --json`: its exit status and document.
fn provider_usage(id: &str) -> (Option<i32>, Value) {
    let output = std::process::Command::new(workspace_binary("provider"))
        .args(["usage", id, "--hours", "2", "--json"])
        .output()
        .expect("provider runs");
    let shown = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code(), shown)
}

#[tokio::test]
async fn two_overlapping_runs_send_nothing_twice() {
    let _turn = TURN.lock().await;
    let mut licenses = Vec::new();
    for _ in 0..3 {
        licenses.push(aws_registered().await.0);
    }
    let hour = this_hour();
    for (n, license) in licenses.iter().enumerate() {
        let records: Vec<Value> = (0..20)
            .map(|i| {
                record(
                    ["api_calls", "storage_gb"][i % 2],
                    (n * 20 + i) as u64,
                    hour,
                    &format!("k{i}"),
                )
            })
            .collect();
        report(&resource_of(license), records).await;
    }
    // Two meters in this process, as two Lambda instances would be, both
    // reading the queue before either claims: watch hands one function's
    // invocations to one instance in turn, so it cannot make them overlap.
    let at = sent_at(hour);
    set_metering(json!({"now": at.timestamp()})).await;
    let meter = || async {
        shared::aws_marketplace::metering::MeterApi::from_env("metering")
            .await
            .expect("the meter's configuration")
            .meter
            .expect("AWS Marketplace is sold")
    };
    let (first, second) = (meter().await, meter().await);
    let (a, b) = tokio::join!(first.run(at, None), second.run(at, None));
    let (a, b) = (a.expect("a run"), b.expect("a run"));
    assert!(
        a.due >= 6 && b.due >= 6,
        "both found the counters due: {a:?} {b:?}"
    );
    assert!(
        a.skipped + b.skipped >= 6,
        "each counter claimed by one run: {a:?} {b:?}"
    );
    assert!(a.metered + b.metered >= 6, "{a:?} {b:?}");
    for license in &licenses {
        assert_eq!(sent(license).await.len(), 2, "each record sent once");
        assert_eq!(billed(license).await.len(), 2);
    }
}

#[tokio::test]
async fn bad_reports_are_refused_with_what_is_wrong() {
    let (license, _) = aws_registered().await;
    let id = resource_of(&license);
    let hour = this_hour();
    for (records, status, error) in [
        (
            json!([record("bandwidth", 1, hour, "a")]),
            422,
            "unknown_dimension",
        ),
        (
            json!([{"dimension": "api_calls", "quantity": -1, "hour": hour_text(hour), "key": "a"}]),
            422,
            "invalid_quantity",
        ),
        (
            json!([record("api_calls", 1, hour + Duration::hours(1), "a")]),
            422,
            "future_hour",
        ),
        (
            json!([record("api_calls", 1, hour - Duration::hours(3), "a")]),
            409,
            "hour_sealed",
        ),
        (json!([record("api_calls", 1, hour, "a b")]), 422, "invalid_key"),
    ] {
        let (got, answer) = vendor_reports_usage(&id, &json!({ "records": records })).await;
        assert_eq!(
            (got, answer["error"].as_str().unwrap_or_default()),
            (status, error),
            "{answer}"
        );
    }
    assert!(counters(&id).await.is_empty(), "nothing counted");
    // Signed for another resource: refused before anything is read.
    let other = resource_of(&aws_registered().await.0);
    let body = serde_json::to_vec(&json!({"records": [record("api_calls", 1, hour, "x")]})).unwrap();
    let signed = shared::provisioner::signature::sign_call(
        &shared::secret::Secret::new(stack_var("PROVISIONER_SIGNING_SECRET")),
        Utc::now().timestamp(),
        "POST",
        &format!("/vendor/resources/{other}/usage"),
        &body,
    );
    let response = reqwest::Client::new()
        .post(format!("{}/vendor/resources/{id}/usage", base_url()))
        .header("content-type", "application/json")
        .header(shared::provisioner::signature::HEADER, signed)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(counters(&id).await.is_empty() && counters(&other).await.is_empty());
    // A resource of a marketplace that does not bill by usage.
    let (_, clever) = Marketplace::from_env().provisioned("basic").await;
    let (status, answer) =
        vendor_reports_usage(&clever, &json!({"records": [record("api_calls", 1, hour, "c")]})).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (409, Some("not_billed_by_usage")),
        "{answer}"
    );
    let (status, _) = vendor_reports_usage(
        "res_nosuchresource",
        &json!({"records": [record("api_calls", 1, hour, "d")]}),
    )
    .await;
    assert_eq!(status, 404);
}
