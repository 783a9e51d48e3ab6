//! A stand-in for Heroku's side of an add-on (docs/heroku.md), for
//! `make run` and the tests: the OAuth token endpoint (`POST /oauth/token`,
//! what `HEROKU_ID_URL` names) and the Platform API calls a provider makes
//! (`PATCH /addons/{uuid}/config`, `POST /addons/{uuid}/actions/provision`,
//! what `HEROKU_API_URL` names). It checks what Heroku would: the client
//! secret (`HEROKU_CLIENT_SECRET`, or `HEROKU_CLIENT_SECRET_PREVIOUS` while
//! it is being rotated out here too), that each grant is exchanged once, the
//! bearer token, and the Platform API's `Accept` version; and it records
//! everything it receives, never a secret.
//!
//! A grant's code scripts the answer by its first word (up to `-`):
//!
//! | code | answer |
//! |---|---|
//! | `shortlived-…` | tokens that end in 60 s (the next use refreshes them) |
//! | `down-…` | 503 |
//! | `refused-…` | 400 `invalid_grant` |
//! | anything else | tokens for 28799 s, as Heroku's fixture |
//!
//! `GET /received/{uuid}` lists the Platform API calls for an add-on,
//! `GET /received/tokens` the token requests (grant type and outcome), and
//! `GET /received/tokens-{code}` those of one grant (its exchange and the
//! refreshes of the tokens it gave).
//!
//! Usage: fake_heroku PORT   (with HEROKU_CLIENT_SECRET)

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use shared::secret::random_hex;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tests::fakes::{port_argument, serve_on, Received};

const PLATFORM_ACCEPT: &str = "application/vnd.heroku+json; version=3";

#[derive(Default)]
struct Heroku {
    client_secrets: Vec<String>,
    /// Codes already exchanged: a grant works once.
    spent_codes: Mutex<HashSet<String>>,
    /// Live access tokens → their end (Unix seconds).
    access_tokens: Mutex<HashMap<String, i64>>,
    /// Live refresh tokens → the grant code they descend from.
    refresh_tokens: Mutex<HashMap<String, String>>,
    received: Arc<Received>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port = port_argument("fake_heroku");
    let secret = std::env::var("HEROKU_CLIENT_SECRET").expect("fake_heroku needs HEROKU_CLIENT_SECRET");
    let mut client_secrets = vec![secret];
    client_secrets.extend(std::env::var("HEROKU_CLIENT_SECRET_PREVIOUS").ok());
    let heroku = Arc::new(Heroku {
        client_secrets,
        ..Heroku::default()
    });
    let app = Router::new()
        .route("/oauth/token", post(token))
        .route("/addons/{uuid}/config", patch(set_config))
        .route("/addons/{uuid}/actions/provision", post(mark_provisioned))
        .with_state(heroku.clone())
        .merge(Received::routes(heroku.received.clone()));
    serve_on(port, app).await;
}

fn error(status: StatusCode, id: &str, message: &str) -> Response {
    (status, Json(json!({"id": id, "error": id, "message": message}))).into_response()
}

impl Heroku {
    fn record(&self, key: &str, entry: Value) {
        self.received.record(key, entry);
    }

    fn issue(&self, seconds: i64, code: &str) -> Value {
        let (access, refresh) = (
            format!("hk-access-{}", random_hex(16)),
            format!("hk-refresh-{}", random_hex(16)),
        );
        let end = chrono::Utc::now().timestamp() + seconds;
        self.access_tokens.lock().unwrap().insert(access.clone(), end);
        self.refresh_tokens
            .lock()
            .unwrap()
            .insert(refresh.clone(), code.to_string());
        json!({
            "access_token": access, "refresh_token": refresh, "expires_in": seconds,
            "token_type": "Bearer", "user_id": "01234567-0000-0000-0000-000000000000", "session_nonce": null,
        })
    }

    /// Whether the request carries a live access token.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default();
        self.access_tokens
            .lock()
            .unwrap()
            .get(token)
            .is_some_and(|end| *end > chrono::Utc::now().timestamp())
    }
}

async fn token(State(heroku): State<Arc<Heroku>>, body: String) -> Response {
    let fields: HashMap<String, String> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
    let grant_type = field("grant_type");
    let secret_ok = heroku.client_secrets.contains(&field("client_secret"));
    // The grant each request concerns: its code, or the code the refresh
    // token descends from.
    let code = if grant_type == "refresh_token" {
        heroku
            .refresh_tokens
            .lock()
            .unwrap()
            .get(&field("refresh_token"))
            .cloned()
    } else {
        Some(field("code"))
    };
    let answer = if !secret_ok {
        error(StatusCode::UNAUTHORIZED, "unauthorized", "Invalid client secret")
    } else if grant_type == "authorization_code" {
        let code = field("code");
        let fresh = heroku.spent_codes.lock().unwrap().insert(code.clone());
        match code.split('-').next().unwrap_or_default() {
            _ if !fresh => error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "This grant was already exchanged",
            ),
            "down" => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Try again later"),
            "refused" => error(StatusCode::BAD_REQUEST, "invalid_grant", "The grant is invalid"),
            "shortlived" => Json(heroku.issue(60, &code)).into_response(),
            _ => Json(heroku.issue(28799, &code)).into_response(),
        }
    } else if grant_type == "refresh_token" {
        match &code {
            Some(code) => Json(heroku.issue(28799, code)).into_response(),
            None => error(StatusCode::BAD_REQUEST, "invalid_grant", "Unknown refresh token"),
        }
    } else {
        error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Unsupported grant type",
        )
    };
    let entry = json!({"grant_type": grant_type, "client_secret_valid": secret_ok, "status": answer.status().as_u16()});
    heroku.record("tokens", entry.clone());
    if let Some(code) = code {
        heroku.record(&format!("tokens-{code}"), entry);
    }
    answer
}

/// The Platform API's checks, in Heroku's order: the token, then the version.
fn platform_check(heroku: &Heroku, headers: &HeaderMap) -> Option<Response> {
    if !heroku.authorized(headers) {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Invalid credentials provided.",
        ));
    }
    let accept = headers.get(header::ACCEPT).and_then(|value| value.to_str().ok());
    if accept != Some(PLATFORM_ACCEPT) {
        return Some(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Accept must name version 3",
        ));
    }
    None
}

async fn set_config(
    State(heroku): State<Arc<Heroku>>,
    Path(uuid): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let refused = platform_check(&heroku, &headers);
    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let status = refused
        .as_ref()
        .map_or(200, |response| response.status().as_u16());
    heroku.record(&uuid, json!({"call": "config", "body": parsed, "status": status}));
    if let Some(refused) = refused {
        return refused;
    }
    match parsed["config"].as_array() {
        Some(vars) => Json(Value::Array(vars.clone())).into_response(),
        None => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_params",
            "config must be a list",
        ),
    }
}

async fn mark_provisioned(
    State(heroku): State<Arc<Heroku>>,
    Path(uuid): Path<String>,
    headers: HeaderMap,
) -> Response {
    let refused = platform_check(&heroku, &headers);
    let status = refused
        .as_ref()
        .map_or(200, |response| response.status().as_u16());
    heroku.record(&uuid, json!({"call": "provision", "status": status}));
    refused.unwrap_or_else(|| Json(json!({"id": uuid, "state": "provisioned"})).into_response())
}
