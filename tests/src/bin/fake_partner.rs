//! A stand-in for the vendor's Cloud 66 partner endpoint, for `make run` and
//! the tests. It answers the link POST as scripted by the first word of the
//! `link_uid` (up to `-` or `_`) and records every request it receives.
//!
//! | first word of `link_uid` | answer |
//! |---|---|
//! | `already` | 403 `<email> is already linked to this account` |
//! | `invalid` | 403 `{"error": "invalid link_uid"}` |
//! | `flaky`   | 500 the first time, then 200 |
//! | `down`    | always 500 |
//! | `hang`    | no answer for 60 s |
//! | `redirect` | 307 to `/stolen/<uid>`, which records what reaches it |
//! | anything else | 200 |
//!
//! except that a `user_email` starting with `not-the-owner` is refused with
//! 403 `user_email does not match link_uid`, as Cloud 66 refuses a uid sent
//! with someone else's email.
//!
//! `GET /received/{uid}` lists what was received for that uid, as JSON.
//!
//! Usage: fake_partner PORT

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tests::fakes::{port_argument, serve_on};

type Received = Arc<Mutex<HashMap<String, Vec<serde_json::Value>>>>;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let port = port_argument("fake_partner");
    let received: Received = Arc::default();
    let app = Router::new()
        .route("/partner", post(link))
        .route("/received/{uid}", get(list))
        .route("/stolen/{uid}", post(stolen))
        .with_state(received);
    serve_on(port, app).await;
}

/// Where `redirect` points: a client that follows it re-sends the body here.
async fn stolen(State(received): State<Received>, Path(uid): Path<String>, body: String) -> StatusCode {
    let mut received = received.lock().unwrap();
    received
        .entry(format!("stolen-{uid}"))
        .or_default()
        .push(serde_json::json!({"body": body}));
    StatusCode::OK
}

async fn link(
    State(received): State<Received>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_string();
    let fields: serde_json::Map<String, serde_json::Value> = if content_type.starts_with("application/json") {
        serde_json::from_str(&body).unwrap_or_default()
    } else {
        url_decoded(&body)
    };
    let uid = fields
        .get("link_uid")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let email = fields
        .get("user_email")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let earlier = {
        let mut received = received.lock().unwrap();
        let list = received.entry(uid.clone()).or_default();
        list.push(serde_json::json!({"content_type": content_type, "fields": fields}));
        list.len() - 1
    };
    if email.starts_with("not-the-owner") {
        return (
            StatusCode::FORBIDDEN,
            "user_email does not match link_uid".to_string(),
        )
            .into_response();
    }
    let answer = match uid.split(['-', '_']).next().unwrap_or("") {
        "redirect" => {
            return (
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, format!("/stolen/{uid}"))],
            )
                .into_response()
        }
        "hang" => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            (StatusCode::OK, r#"{"ok":true}"#.to_string())
        }
        "already" => (
            StatusCode::FORBIDDEN,
            format!("{email} is already linked to this account"),
        ),
        "invalid" => (
            StatusCode::FORBIDDEN,
            r#"{"error":"invalid link_uid"}"#.to_string(),
        ),
        "down" => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "temporarily broken".to_string(),
        ),
        "flaky" if earlier == 0 => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "temporarily broken".to_string(),
        ),
        _ => (StatusCode::OK, r#"{"ok":true}"#.to_string()),
    };
    answer.into_response()
}

fn url_decoded(body: &str) -> serde_json::Map<String, serde_json::Value> {
    reqwest::Url::parse(&format!("http://x/?{body}"))
        .map(|url| {
            url.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned().into()))
                .collect()
        })
        .unwrap_or_default()
}

async fn list(State(received): State<Received>, Path(uid): Path<String>) -> Json<Vec<serde_json::Value>> {
    Json(received.lock().unwrap().get(&uid).cloned().unwrap_or_default())
}
