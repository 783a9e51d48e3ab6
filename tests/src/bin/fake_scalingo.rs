//! A stand-in for Scalingo's provider API (docs/scalingo.md, "Config
//! later"), for `make run` and the tests: `PATCH /v1/provider/apps/{app_id}`
//! with `{"config": {…}}`, what `SCALINGO_API_URL` names. It checks what
//! Scalingo would: Basic auth with the manifest's username and password
//! (`SCALINGO_USERNAME`, `SCALINGO_PASSWORD`), a JSON object of strings,
//! and only the manifest's config vars (`ADDON_CONFIG_VARS`); and it records
//! every call it receives.
//!
//! An app id scripts the answer by its first word (up to `-`):
//!
//! | app id | answer |
//! |---|---|
//! | `down-…` | 503 with `Retry-After: 30` |
//! | `gone-…` | 404 (no such app) |
//! | anything else | 200 with the app's config |
//!
//! `GET /received/{app_id}` lists the calls for an app (status and body).
//!
//! Usage: fake_scalingo PORT   (with SCALINGO_USERNAME, SCALINGO_PASSWORD, ADDON_CONFIG_VARS)

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::patch;
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};
use std::sync::Arc;
use tests::fakes::{port_argument, serve_on, Received};

struct Scalingo {
    /// `Basic base64(username:password)`, as Scalingo expects it.
    authorization: String,
    config_vars: Vec<String>,
    received: Arc<Received>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port = port_argument("fake_scalingo");
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("fake_scalingo needs {name}"));
    let credentials = format!("{}:{}", var("SCALINGO_USERNAME"), var("SCALINGO_PASSWORD"));
    let scalingo = Arc::new(Scalingo {
        authorization: format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        ),
        config_vars: shared::config::comma_list(&var("ADDON_CONFIG_VARS")),
        received: Arc::default(),
    });
    let app = Router::new()
        .route("/v1/provider/apps/{app_id}", patch(set_config))
        .with_state(scalingo.clone())
        .merge(Received::routes(scalingo.received.clone()));
    serve_on(port, app).await;
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

/// Scalingo's checks, in order: credentials, the app, the body.
fn answer(scalingo: &Scalingo, app_id: &str, headers: &HeaderMap, body: &Value) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    if authorization != Some(scalingo.authorization.as_str()) {
        return error(StatusCode::UNAUTHORIZED, "invalid credentials");
    }
    match app_id.split('-').next().unwrap_or_default() {
        "down" => {
            let mut response = error(StatusCode::SERVICE_UNAVAILABLE, "try again later");
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
            return response;
        }
        "gone" => return error(StatusCode::NOT_FOUND, "app not found"),
        _ => {}
    }
    let Some(config) = body["config"].as_object() else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "config must be an object");
    };
    if let Some(name) = config.keys().find(|name| !scalingo.config_vars.contains(name)) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("{name} is not one of the add-on's config vars"),
        );
    }
    if config.values().any(|value| !value.is_string()) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "config values must be strings");
    }
    Json(json!({"app": {"id": app_id, "config": config}})).into_response()
}

async fn set_config(
    State(scalingo): State<Arc<Scalingo>>,
    Path(app_id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let response = answer(&scalingo, &app_id, &headers, &parsed);
    scalingo.received.record(
        &app_id,
        json!({"call": "config", "body": parsed, "status": response.status().as_u16()}),
    );
    response
}
