//! How `provider try` calls a stack, a marketplace's way: one HTTP client
//! (no redirect followed, a bounded time) and one reading of an answer.

use crate::Failure;
use serde_json::Value;

/// The client every `try` call is sent with: a redirect is an answer to
/// show, never followed.
pub fn client() -> Result<reqwest::Client, Failure> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|err| Failure::Failed(err.to_string()))
}

/// The answer's status and body: its JSON, else its text. `what` names
/// the call in an error.
pub async fn answer(response: reqwest::Response, what: &str) -> Result<(u16, Value), Failure> {
    let status = response.status().as_u16();
    let text = response
        .text()
        .await
        .map_err(|err| Failure::Unreachable(format!("{what}: {err}")))?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}
