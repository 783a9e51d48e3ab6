//! The Clever Cloud add-on provider API end to end: HTTP through
//! `cargo lambda watch`, state checked in DynamoDB Local.

use aws_sdk_dynamodb::types::AttributeValue;
use reqwest::{header, Method, StatusCode};
use serde_json::json;
use tests::*;

#[tokio::test]
async fn wrong_or_missing_credentials_get_401_on_every_route_before_anything_else() {
    let market = Marketplace::from_env();
    let attempts = [
        (Method::POST, String::new()),
        (Method::PUT, "/res_doesnotexist".to_string()),
        (Method::DELETE, "/res_doesnotexist".to_string()),
        (Method::DELETE, "/this%20id%20is%20not%20even%20valid".to_string()),
    ];
    for (method, path) in attempts {
        let url = format!("{}{path}", market.base);
        let no_auth = market.http.request(method.clone(), &url);
        let wrong_password = market
            .http
            .request(method.clone(), &url)
            .basic_auth(&market.user, Some("wrong"));
        let wrong_user = market
            .http
            .request(method.clone(), &url)
            .basic_auth("someone", Some(&market.password));
        let not_basic = market
            .http
            .request(method.clone(), &url)
            .bearer_auth(&market.password);
        for request in [no_auth, wrong_password, wrong_user, not_basic] {
            // A malformed body too: authentication must come first.
            let response = request
                .header(header::CONTENT_TYPE, "application/json")
                .body("{not json")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
            let challenge = response.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .to_string();
            assert!(challenge.starts_with("Basic "), "{challenge}");
            let (_, body) = json(response).await;
            assert_eq!(body["error"], "unauthorized");
        }
    }
}

#[tokio::test]
async fn provision_answers_the_documented_body_with_exactly_the_config_vars() {
    let market = Marketplace::from_env();
    let config = addon_config();
    let addon_id = unique("addon");
    let (status, body) = json(market.provision(provision_body(&addon_id, "basic")).await).await;
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_str().expect("id must be a string");
    assert_ne!(
        id, addon_id,
        "the id must be the provider's own, not the add-on id"
    );
    assert!(body["message"].is_string());
    let returned = body["config"].as_object().unwrap();
    let mut names: Vec<&String> = returned.keys().collect();
    names.sort();
    let mut expected: Vec<&String> = config.config_vars.iter().collect();
    expected.sort();
    assert_eq!(names, expected);
    for (name, value) in returned {
        let value = value.as_str().unwrap();
        if name.ends_with("_URL") {
            assert_eq!(
                value,
                format!("{}/{id}", stack_var("RESOURCE_BASE_URL").trim_end_matches('/'))
            );
        } else {
            assert!(
                value.len() >= 32 && value.chars().all(|c| c.is_ascii_hexdigit()),
                "{name} is not a 128-bit secret"
            );
        }
    }

    let client = dynamo_client().await;
    let (resource, audits) = resource_partition(&client, id).await;
    let resource = resource.expect("the resource is stored");
    assert_eq!(string(&resource, "addon_id"), addon_id);
    assert_eq!(string(&resource, "owner_name"), "My Company");
    assert_eq!(string(&resource, "status"), "active");
    assert_eq!(audits.len(), 1);
    assert_eq!(string(&audits[0], "action"), "provisioned");
}

#[tokio::test]
async fn provision_accepts_the_older_heroku_id() {
    let market = Marketplace::from_env();
    let heroku_id = unique("heroku");
    let (status, body) = json(
        market
            .provision(json!({"heroku_id": heroku_id, "plan": "basic", "uuid": "x"}))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        resources_with_addon_id(&dynamo_client().await, &heroku_id).await,
        1
    );
}

#[tokio::test]
async fn a_repeated_provision_returns_the_same_resource_and_creates_nothing() {
    let market = Marketplace::from_env();
    let addon_id = unique("addon");
    let (_, first) = json(market.provision(provision_body(&addon_id, "basic")).await).await;
    let (status, second) = json(market.provision(provision_body(&addon_id, "basic")).await).await;
    assert_eq!(status, 200);
    assert_eq!(first, second);
    let client = dynamo_client().await;
    let (_, audits) = resource_partition(&client, first["id"].as_str().unwrap()).await;
    assert_eq!(audits.len(), 1, "a repeat must not write another event");
    assert_eq!(resources_with_addon_id(&client, &addon_id).await, 1);
}

#[tokio::test]
async fn twenty_concurrent_identical_provisions_create_exactly_one_resource() {
    let market = std::sync::Arc::new(Marketplace::from_env());
    let addon_id = unique("race");
    let calls = (0..20).map(|_| {
        let market = market.clone();
        let body = provision_body(&addon_id, "basic");
        tokio::spawn(async move { json(market.provision(body).await).await })
    });
    let mut answers = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        answers.push(call.await.unwrap());
    }
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(
            body, &answers[0].1,
            "every delivery must get the same id and config"
        );
    }
    let client = dynamo_client().await;
    assert_eq!(resources_with_addon_id(&client, &addon_id).await, 1);
    let (_, audits) = resource_partition(&client, answers[0].1["id"].as_str().unwrap()).await;
    assert_eq!(audits.len(), 1);
}

#[tokio::test]
async fn plan_change_answers_config_and_message_and_audits_the_change() {
    let market = Marketplace::from_env();
    let (addon_id, id) = market.provisioned("basic").await;
    let (status, body) = market.changed_plan(&id, &addon_id, "premium").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["config"].is_object() && body["message"].is_string());
    assert!(body.get("id").is_none());

    let client = dynamo_client().await;
    let (resource, audits) = resource_partition(&client, &id).await;
    let resource = resource.unwrap();
    assert_eq!(string(&resource, "plan"), "premium");
    assert_eq!(string(&resource, "version"), "2");
    // The vendor answered new secrets: a new config version, owed to Clever
    // Cloud's vendor API (the answer alone may not reach the app).
    assert_eq!(
        (
            string(&resource, "config_version"),
            string(&resource, "pushed_config_version")
        ),
        ("2".to_string(), "1".to_string())
    );
    assert_eq!(string(&resource, "sync_queue"), "pending");
    let change = audits
        .iter()
        .find(|a| string(a, "action") == "plan_changed")
        .expect("plan change event");
    let AttributeValue::M(details) = &change["details"] else {
        panic!("details")
    };
    assert_eq!(details["from_plan"], AttributeValue::S("basic".into()));
    assert_eq!(details["to_plan"], AttributeValue::S("premium".into()));

    // heroku_id works for plan changes too.
    let (status, _) = json(
        market
            .change_plan(&id, json!({"heroku_id": addon_id, "plan": "basic"}))
            .await,
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn plan_change_refusals() {
    let market = Marketplace::from_env();
    let (addon_id, id) = market.provisioned("basic").await;

    let (status, body) = json(
        market
            .change_plan(
                "res_neverexisted",
                json!({"addon_id": addon_id, "plan": "premium"}),
            )
            .await,
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));

    let (status, body) = json(
        market
            .change_plan(&id, json!({"addon_id": "addon_someone_else", "plan": "premium"}))
            .await,
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("addon_id_mismatch")));

    assert!(
        addon_config().plans.is_some(),
        "the test stack must set ADDON_PLANS so the 422 path is exercised"
    );
    let (status, body) = json(
        market
            .change_plan(&id, json!({"addon_id": addon_id, "plan": "no-such-plan"}))
            .await,
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (422, Some("plan_not_allowed")));

    let client = dynamo_client().await;
    let (resource, _) = resource_partition(&client, &id).await;
    assert_eq!(
        string(&resource.unwrap(), "version"),
        "1",
        "refusals must write nothing"
    );

    assert_eq!(market.deprovision(&id).await.status(), 200);
    let (status, _) = market.changed_plan(&id, &addon_id, "premium").await;
    assert_eq!(status, 404, "a deprovisioned resource cannot change plan");
}

#[tokio::test]
async fn deprovision_is_idempotent_and_keeps_the_record() {
    let market = Marketplace::from_env();
    let (_, id) = market.provisioned("basic").await;
    let first = market.deprovision(&id).await;
    assert_eq!(first.status(), 200);
    let (status, body) = json(market.deprovision(&id).await).await;
    assert_eq!(status, 200, "{body}");

    let client = dynamo_client().await;
    let (resource, audits) = resource_partition(&client, &id).await;
    let resource = resource.expect("the record is kept");
    assert_eq!(string(&resource, "status"), "deprovisioned");
    assert!(string(&resource, "deprovisioned_at").starts_with("20"));
    let actions: Vec<String> = audits.iter().map(|a| string(a, "action")).collect();
    assert_eq!(
        actions.iter().filter(|a| *a == "deprovisioned").count(),
        1,
        "{actions:?}"
    );

    let (status, body) = json(market.deprovision("res_neverexisted").await).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, _) = json(market.deprovision(&"x".repeat(5000)).await).await;
    assert_eq!(status, 404, "an id that could never exist is simply not found");
}

#[tokio::test]
async fn a_deprovisioned_add_on_id_is_not_provisioned_again() {
    let market = Marketplace::from_env();
    let (addon_id, id) = market.provisioned("basic").await;
    assert_eq!(market.deprovision(&id).await.status(), 200);
    let (status, body) = json(market.provision(provision_body(&addon_id, "basic")).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("deprovisioned")),
        "{body}"
    );
}

/// Bodies that must be refused with a 4xx JSON error naming the problem.
fn bad_bodies(addon_id: &str) -> Vec<(&'static str, Option<&'static str>, String, u16, &'static str)> {
    let json_type = Some("application/json");
    vec![
        (
            "malformed JSON",
            json_type,
            "{\"addon_id\": ".into(),
            400,
            "malformed_json",
        ),
        ("not an object", json_type, "[1,2,3]".into(), 400, "invalid_body"),
        ("a string", json_type, "\"hello\"".into(), 400, "invalid_body"),
        (
            "wrong type",
            json_type,
            r#"{"addon_id": 42, "plan": "basic"}"#.into(),
            400,
            "invalid_body",
        ),
        (
            "missing plan",
            json_type,
            format!(r#"{{"addon_id": "{addon_id}"}}"#),
            400,
            "invalid_body",
        ),
        (
            "missing id",
            json_type,
            r#"{"plan": "basic"}"#.into(),
            400,
            "invalid_body",
        ),
        ("empty body", json_type, String::new(), 400, "empty_body"),
        (
            "form content type",
            Some("application/x-www-form-urlencoded"),
            format!("addon_id={addon_id}&plan=basic"),
            415,
            "unsupported_media_type",
        ),
        (
            "no content type",
            None,
            format!(r#"{{"addon_id": "{addon_id}", "plan": "basic"}}"#),
            415,
            "unsupported_media_type",
        ),
        (
            "over 64 KiB",
            json_type,
            format!(
                r#"{{"addon_id": "{addon_id}", "plan": "basic", "owner_name": "{}"}}"#,
                "x".repeat(70 * 1024)
            ),
            413,
            "body_too_large",
        ),
    ]
}

async fn send_raw(
    market: &Marketplace,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: String,
) -> (u16, serde_json::Value) {
    let mut request = market.authed(method, path).body(body);
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    json(request.send().await.unwrap()).await
}

#[tokio::test]
async fn bad_provision_input_gets_a_4xx_json_error_and_writes_nothing() {
    let market = Marketplace::from_env();
    let client = dynamo_client().await;
    let addon_id = unique("bad");
    let mut cases = bad_bodies(&addon_id);
    cases.push((
        "wrong options type",
        Some("application/json"),
        format!(r#"{{"addon_id": "{addon_id}", "plan": "basic", "options": {{"a": 1}}}}"#),
        400,
        "invalid_body",
    ));
    for (case, content_type, body, expected_status, expected_error) in cases {
        let (status, answer) = send_raw(&market, Method::POST, "", content_type, body).await;
        assert_eq!(status, expected_status, "{case}: {answer}");
        assert_eq!(answer["error"], expected_error, "{case}: {answer}");
        assert!(
            answer["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{case}"
        );
    }
    assert_eq!(resources_with_addon_id(&client, &addon_id).await, 0);
    let (status, answer) = json(market.provision(provision_body(&addon_id, "no-such-plan")).await).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (422, Some("plan_not_allowed"))
    );
    assert_eq!(resources_with_addon_id(&client, &addon_id).await, 0);
}

#[tokio::test]
async fn bad_plan_change_input_gets_a_4xx_json_error_and_writes_nothing() {
    let market = Marketplace::from_env();
    let (addon_id, id) = market.provisioned("basic").await;
    for (case, content_type, body, expected_status, expected_error) in bad_bodies(&addon_id) {
        let (status, answer) = send_raw(&market, Method::PUT, &format!("/{id}"), content_type, body).await;
        assert_eq!(status, expected_status, "{case}: {answer}");
        assert_eq!(answer["error"], expected_error, "{case}: {answer}");
    }
    let (resource, audits) = resource_partition(&dynamo_client().await, &id).await;
    assert_eq!(string(&resource.unwrap(), "version"), "1");
    assert_eq!(audits.len(), 1);
}

#[tokio::test]
async fn logs_are_json_with_the_request_id_and_carry_no_secret() {
    let market = Marketplace::from_env();
    let (addon_id, id) = market.provisioned("basic").await;
    let (_, body) = json(market.provision(provision_body(&addon_id, "basic")).await).await;
    let log_path = stack_var("E2E_FUNCTION_LOG");
    // The log line is written before the response leaves the function, but
    // watch forwards output asynchronously: wait for it.
    let mut log = String::new();
    for _ in 0..50 {
        log = std::fs::read_to_string(&log_path).unwrap();
        if log.contains(&id) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let lines: Vec<&str> = log.lines().filter(|line| line.contains(&id)).collect();
    assert!(!lines.is_empty(), "no log line mentions {id}");
    for line in &lines {
        let entry: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(entry["span"]["requestId"].is_string(), "no request id: {line}");
    }
    let password = stack_var("ADDON_PASSWORD");
    let mut secrets = vec![password.clone()];
    secrets.extend(
        body["config"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| !k.ends_with("_URL"))
            .map(|(_, v)| v.as_str().unwrap().to_string()),
    );
    use base64::Engine as _;
    secrets.push(base64::engine::general_purpose::STANDARD.encode(format!("{}:{password}", market.user)));
    for secret in secrets {
        assert!(!log.contains(&secret), "a secret appears in the function log");
    }
}

/// The functions read their secrets from the stack's Secrets Manager secret
/// only (scripts/stack.sh keeps the plain variables from them); during a
/// rotation the previous password still authenticates, and nothing else does.
#[tokio::test]
async fn the_previous_password_from_the_secret_is_accepted_during_a_rotation() {
    let market = Marketplace::from_env();
    let previous = stack_var("ADDON_PASSWORD_PREVIOUS");
    assert_ne!(previous, market.password);
    let body = provision_body(&unique("addon_rotation"), "basic");
    let with = |password: String| {
        market
            .http
            .post(&market.base)
            .basic_auth(&market.user, Some(password))
            .json(&body)
            .send()
    };
    assert_eq!(with(previous.clone()).await.unwrap().status(), 200);
    assert_eq!(with(market.password.clone()).await.unwrap().status(), 200);
    assert_eq!(with(format!("{previous}x")).await.unwrap().status(), 401);
}
