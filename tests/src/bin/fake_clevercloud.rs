//! A stand-in for Clever Cloud's vendor API (docs/clevercloud.md), for
//! `make run`: what `CLEVERCLOUD_API_URL` names there, so that the platform
//! sync, `provider sync` and `provider reconcile` never leave the machine.
//! It checks what Clever Cloud would: Basic auth with the add-on's id and
//! password (`ADDON_ID`, `ADDON_PASSWORD`, or `ADDON_PASSWORD_PREVIOUS`
//! during a rotation), and a config of the manifest's variables only
//! (`ADDON_CONFIG_VARS`); and it records every call it receives.
//!
//! - `GET /v2/vendor/apps/{addonId}`: the add-on as Clever Cloud describes it
//!   (Clever Cloud knows every add-on it provisioned, so any id is one: a
//!   local organization owns it), with the last config put;
//! - `PUT /v2/vendor/apps/{addonId}` with `{"config": {…}}`: 200;
//! - `GET /v2/vendor/apps?offset=N`: the add-ons seen so far, by pages;
//! - `GET /received/{addonId}`: the calls for an add-on (`ready`: none).
//!
//! An add-on id scripts the answer by its first word after `addon_` (up to
//! `-`): `addon_down-…` answers 503 with `Retry-After: 30`, `addon_gone-…`
//! 404; anything else is served.
//!
//! Usage: fake_clevercloud PORT   (with ADDON_ID, ADDON_PASSWORD, ADDON_CONFIG_VARS)

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tests::fakes::{port_argument, serve_on, Received};

/// Add-ons per `GET /vendor/apps` page, as small as the tests' stand-in's,
/// so that paging is exercised locally too.
const PAGE_SIZE: usize = 2;

struct CleverCloud {
    /// `Basic base64(id:password)` for the password and, during a rotation,
    /// the previous one.
    authorizations: Vec<String>,
    addon_id: String,
    config_vars: Vec<String>,
    /// Each add-on seen, with the last config put.
    apps: Mutex<BTreeMap<String, Value>>,
    received: Arc<Received>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port = port_argument("fake_clevercloud");
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("fake_clevercloud needs {name}"));
    let addon_id = var("ADDON_ID");
    let basic = |password: String| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{addon_id}:{password}"))
        )
    };
    let mut authorizations = vec![basic(var("ADDON_PASSWORD"))];
    if let Some(previous) = std::env::var("ADDON_PASSWORD_PREVIOUS")
        .ok()
        .filter(|p| !p.is_empty())
    {
        authorizations.push(basic(previous));
    }
    let clevercloud = Arc::new(CleverCloud {
        authorizations,
        addon_id: addon_id.clone(),
        config_vars: shared::config::comma_list(&var("ADDON_CONFIG_VARS")),
        apps: Mutex::default(),
        received: Arc::default(),
    });
    let app = Router::new()
        .route("/v2/vendor/apps", get(list))
        .route("/v2/vendor/apps/{id}", get(describe).put(put_config))
        .with_state(clevercloud.clone())
        .merge(Received::routes(clevercloud.received.clone()));
    serve_on(port, app).await;
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

impl CleverCloud {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        given.is_some_and(|given| self.authorizations.iter().any(|expected| expected == given))
    }

    /// The scripted refusal an add-on id asks for, if any.
    fn scripted(id: &str) -> Option<Response> {
        match id.strip_prefix("addon_")?.split('-').next()? {
            "down" => {
                let mut response = error(StatusCode::SERVICE_UNAVAILABLE, "try again later");
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
                Some(response)
            }
            "gone" => Some(error(StatusCode::NOT_FOUND, "no such add-on")),
            _ => None,
        }
    }

    /// `change` applied to the add-on as Clever Cloud describes it (known
    /// from its first call on).
    fn with_app<R>(&self, id: &str, change: impl FnOnce(&mut Value) -> R) -> R {
        let mut apps = self.apps.lock().unwrap();
        let app = apps.entry(id.to_string()).or_insert_with(|| {
            json!({
                "id": id,
                "name": format!("{} instance", self.addon_id),
                "owner_id": "orga_local",
                "owner_email": "owner@example.com",
                "owner_emails": ["owner@example.com"],
                "region": "eu",
                "config": {},
            })
        });
        change(app)
    }

    /// Why Clever Cloud would refuse this config update, if it would.
    fn refusal(&self, body: &Value) -> Option<Response> {
        let Some(config) = body["config"].as_object() else {
            return Some(error(StatusCode::BAD_REQUEST, "config must be an object"));
        };
        if config.values().any(|value| !value.is_string()) {
            return Some(error(StatusCode::BAD_REQUEST, "config values must be strings"));
        }
        let name = config.keys().find(|name| !self.config_vars.contains(name))?;
        Some(error(
            StatusCode::BAD_REQUEST,
            &format!("{name} is not one of the add-on's config vars"),
        ))
    }

    fn record(&self, id: &str, call: &str, body: Value, status: StatusCode) {
        self.received
            .record(id, json!({"call": call, "body": body, "status": status.as_u16()}));
    }
}

async fn describe(
    State(cc): State<Arc<CleverCloud>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let response = if !cc.authorized(&headers) {
        error(StatusCode::UNAUTHORIZED, "invalid credentials")
    } else if let Some(scripted) = CleverCloud::scripted(&id) {
        scripted
    } else {
        Json(cc.with_app(&id, |app| app.clone())).into_response()
    };
    cc.record(&id, "describe", Value::Null, response.status());
    response
}

async fn put_config(
    State(cc): State<Arc<CleverCloud>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let response = if !cc.authorized(&headers) {
        error(StatusCode::UNAUTHORIZED, "invalid credentials")
    } else if let Some(scripted) = CleverCloud::scripted(&id) {
        scripted
    } else if let Some(refused) = cc.refusal(&parsed) {
        refused
    } else {
        cc.with_app(&id, |app| app["config"] = parsed["config"].clone());
        StatusCode::OK.into_response()
    };
    cc.record(&id, "config", parsed, response.status());
    response
}

async fn list(
    State(cc): State<Arc<CleverCloud>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !cc.authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "invalid credentials");
    }
    let offset = query
        .get("offset")
        .and_then(|o| o.parse::<usize>().ok())
        .unwrap_or(0);
    let page: Vec<Value> = cc
        .apps
        .lock()
        .unwrap()
        .iter()
        .skip(offset)
        .take(PAGE_SIZE)
        .map(|(id, app)| json!({"addon_id": id, "provider_id": cc.addon_id, "owner_id": app["owner_id"]}))
        .collect();
    Json(page).into_response()
}
