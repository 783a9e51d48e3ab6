//! A stand-in for the vendor's provisioning endpoint (`PROVISIONER_URL`), for
//! `make run` and the tests: it verifies `Addon-Signature` with
//! `PROVISIONER_SIGNING_SECRET` (a bad one gets 401), answers each
//! idempotency key once and then the same way every time, and records what it
//! receives.
//!
//! Config it chooses: each `*_URL` var is `RESOURCE_BASE_URL/<resource_id>`
//! (kept as it is on rotation), every other var a random 256-bit hex secret.
//!
//! Behaviour is scripted per resource: by the Clever Cloud option
//! `stand-in`, or for Cloud 66 by the email's local part up to `+`
//! (`vendor-refuse+x@example.com` → `refuse`). A script is `BEHAVIOUR` (every
//! action) or `BEHAVIOUR:ACTION` (only that action):
//!
//! | behaviour | answer |
//! |---|---|
//! | `slow` | nothing for 30 s |
//! | `error` | 500 |
//! | `bad-body` | 200 with a config lacking its vars |
//! | `refuse` | 422 `{"message": "The plan is full for this organisation."}` |
//! | `flaky` | 500 the first time for an idempotency key, then as usual |
//! | `gone` | 404 |
//! | `pending` | 202 `{"message": "provisioning"}`: a provision finished later by a signed completion call; a plan change finished on the vendor's side, the config kept |
//!
//! `GET /received` lists every request, as JSON, with `signature_valid` and
//! the `answer` it got (status, and body when 200); `GET /held` the
//! resource ids it holds a tenant for (provisioned and not deprovisioned).
//!
//! Usage: fake_vendor PORT   (with PROVISIONER_SIGNING_SECRET, ADDON_CONFIG_VARS, RESOURCE_BASE_URL)

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use shared::provisioner::signature;
use shared::secret::{random_hex, Secret};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tests::fakes::{port_argument, serve_on};

struct Vendor {
    secret: Secret,
    config_vars: Vec<String>,
    resource_base_url: String,
    /// Idempotency key → the config answered for it.
    answered: Mutex<HashMap<String, Value>>,
    /// Idempotency keys that have failed once (`flaky`).
    failed_once: Mutex<Vec<String>>,
    received: Mutex<Vec<Value>>,
    /// Resource ids with a tenant: provisioned, not yet deprovisioned.
    held: Mutex<std::collections::BTreeSet<String>>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port = port_argument("fake_vendor");
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("fake_vendor needs {name}"));
    let vendor = Arc::new(Vendor {
        secret: Secret::new(var("PROVISIONER_SIGNING_SECRET")),
        config_vars: shared::config::comma_list(&var("ADDON_CONFIG_VARS")),
        resource_base_url: var("RESOURCE_BASE_URL").trim_end_matches('/').to_string(),
        answered: Mutex::default(),
        failed_once: Mutex::default(),
        received: Mutex::default(),
        held: Mutex::default(),
    });
    let app = Router::new()
        .route("/provision", post(provision))
        .route("/received", get(received))
        .route("/held", get(held))
        .with_state(vendor);
    serve_on(port, app).await;
}

/// The script for this request, if it names this action.
fn behaviour(request: &Value) -> Option<String> {
    let script = request["options"]["stand-in"]
        .as_str()
        .map(str::to_string)
        .or_else(|| {
            let local = request["email"].as_str()?.split('@').next()?;
            Some(local.split('+').next()?.strip_prefix("vendor-")?.to_string())
        })?;
    let action = request["action"].as_str().unwrap_or_default();
    match script.split_once(':') {
        Some((behaviour, only)) if only == action => Some(behaviour.to_string()),
        Some(_) => None,
        None => Some(script),
    }
}

async fn provision(State(vendor): State<Arc<Vendor>>, headers: HeaderMap, body: Bytes) -> Response {
    let header = headers
        .get(signature::HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let now = chrono::Utc::now().timestamp();
    let signature_valid = signature::verify(
        &vendor.secret,
        header,
        &body,
        now,
        signature::DEFAULT_TOLERANCE_SECONDS,
    )
    .is_ok();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    // Recorded on arrival, so a request still being answered (`slow`) shows.
    let index = {
        let mut received = vendor.received.lock().unwrap();
        received.push(json!({
            "signature_valid": signature_valid,
            "idempotency_key_header": headers.get("idempotency-key").and_then(|v| v.to_str().ok()),
            "body": request,
            "answer": null,
        }));
        received.len() - 1
    };
    let (status, answer) = if signature_valid {
        vendor.answer(&request).await
    } else {
        (StatusCode::UNAUTHORIZED, json!({"message": "bad signature"}))
    };
    vendor.received.lock().unwrap()[index]["answer"] = json!({"status": status.as_u16(), "body": answer});
    (status, Json(answer)).into_response()
}

impl Vendor {
    /// The answer to a request whose signature holds.
    async fn answer(&self, request: &Value) -> (StatusCode, Value) {
        let key = request["idempotency_key"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match behaviour(request).as_deref() {
            Some("slow") => tokio::time::sleep(Duration::from_secs(30)).await,
            Some("error") => return (StatusCode::INTERNAL_SERVER_ERROR, json!({})),
            Some("bad-body") => return (StatusCode::OK, json!({"config": {}})),
            Some("gone") => return (StatusCode::NOT_FOUND, json!({})),
            Some("pending") if request["action"] == "provision" => {
                let resource_id = request["resource_id"].as_str().unwrap_or_default().to_string();
                self.held.lock().unwrap().insert(resource_id);
                return (StatusCode::ACCEPTED, json!({"message": "provisioning"}));
            }
            Some("pending") if request["action"] == "change_plan" => {
                return (StatusCode::ACCEPTED, json!({"message": "changing plan"}));
            }
            Some("refuse") => {
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"message": "The plan is full for this organisation."}),
                )
            }
            Some("flaky") => {
                let mut failed = self.failed_once.lock().unwrap();
                if !failed.contains(&key) {
                    failed.push(key);
                    return (StatusCode::INTERNAL_SERVER_ERROR, json!({}));
                }
            }
            _ => {}
        }
        let resource_id = request["resource_id"].as_str().unwrap_or_default().to_string();
        if request["action"] == "deprovision" {
            self.held.lock().unwrap().remove(&resource_id);
            return (StatusCode::OK, json!({}));
        }
        if request["action"] == "provision" {
            self.held.lock().unwrap().insert(resource_id);
        }
        let config = self
            .answered
            .lock()
            .unwrap()
            .entry(key)
            .or_insert_with(|| self.config_for(request))
            .clone();
        (StatusCode::OK, json!({"config": config, "message": "ready"}))
    }

    fn config_for(&self, request: &Value) -> Value {
        let resource_id = request["resource_id"].as_str().unwrap_or_default();
        let config: serde_json::Map<String, Value> = self
            .config_vars
            .iter()
            .map(|var| {
                let current = request["config"][var].as_str();
                let value = match current {
                    Some(url) if var.ends_with("_URL") => url.to_string(),
                    _ if var.ends_with("_URL") => format!("{}/{resource_id}", self.resource_base_url),
                    _ => random_hex(32),
                };
                (var.clone(), Value::String(value))
            })
            .collect();
        Value::Object(config)
    }
}

async fn held(State(vendor): State<Arc<Vendor>>) -> Json<Vec<String>> {
    Json(vendor.held.lock().unwrap().iter().cloned().collect())
}

async fn received(State(vendor): State<Arc<Vendor>>) -> Json<Vec<Value>> {
    Json(vendor.received.lock().unwrap().clone())
}
