//! The client of the vendor's Cloud 66 partner endpoint: the POST of
//! `link_uid`, `user_email` and the partner's fields, and what Cloud 66's
//! answer means (cloud66-partner-integration.md).

use crate::model::ConfigMap;
use std::time::{Duration, Instant};

/// How the partner endpoint wants its POST body (`CLOUD66_PARTNER_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    Json,
    Form,
}

/// What Cloud 66 said to the link POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartnerAnswer {
    Linked,
    /// 403 "… is already linked to this account": the link holds.
    AlreadyLinked(String),
    /// Any other refusal, with Cloud 66's message.
    Refused(String),
    /// No usable answer within the time limit (network errors, 5xx, time-out).
    NoAnswer(String),
}

/// The client of the vendor's Cloud 66 partner endpoint.
#[derive(Debug, Clone)]
pub struct PartnerClient {
    http: reqwest::Client,
    endpoint: String,
    format: PayloadFormat,
    time_limit: Duration,
}

/// First pause between retries; it doubles after each.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);

impl PartnerClient {
    pub fn new(endpoint: String, format: PayloadFormat, time_limit: Duration) -> Self {
        Self {
            http: crate::outbound::client_builder().build().unwrap_or_default(),
            endpoint,
            format,
            time_limit,
        }
    }

    /// POSTs `link_uid`, `user_email` and the partner's fields (`config`),
    /// retrying network errors and 5xx with backoff until `time_limit` has
    /// passed in all.
    pub async fn post_link(&self, uid: &str, email: &str, config: &ConfigMap) -> PartnerAnswer {
        let mut fields = vec![
            ("link_uid".to_string(), uid.to_string()),
            ("user_email".to_string(), email.to_string()),
        ];
        fields.extend(config.0.iter().map(|(k, v)| (k.clone(), v.clone())));
        let deadline = Instant::now() + self.time_limit;
        let mut delay = FIRST_RETRY_DELAY;
        let mut last_failure = "no attempt was made".to_string();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return PartnerAnswer::NoAnswer(last_failure);
            }
            let request = match self.format {
                PayloadFormat::Json => {
                    let body: serde_json::Map<String, serde_json::Value> = fields
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone().into()))
                        .collect();
                    self.http.post(&self.endpoint).json(&body)
                }
                PayloadFormat::Form => self.http.post(&self.endpoint).form(&fields),
            };
            let attempt = async {
                let response = request.send().await?;
                let status = response.status();
                Ok::<_, reqwest::Error>((status, response.text().await?))
            };
            match tokio::time::timeout(remaining, attempt).await {
                Err(_) => return PartnerAnswer::NoAnswer("Cloud 66 did not answer in time".into()),
                Ok(Err(err)) => last_failure = format!("could not reach Cloud 66: {}", err.without_url()),
                Ok(Ok((status, _))) if status.is_success() => return PartnerAnswer::Linked,
                Ok(Ok((status, body))) if status.is_server_error() => {
                    last_failure = format!("Cloud 66 answered {status}: {}", partner_message(&body));
                }
                Ok(Ok((status, body))) => {
                    let message = partner_message(&body);
                    if status == reqwest::StatusCode::FORBIDDEN
                        && message.to_lowercase().contains("already linked")
                    {
                        return PartnerAnswer::AlreadyLinked(message);
                    }
                    return PartnerAnswer::Refused(if status == reqwest::StatusCode::FORBIDDEN {
                        message
                    } else {
                        format!("Cloud 66 answered {status}: {message}")
                    });
                }
            }
            tracing::info!(failure = %last_failure, "retrying the Cloud 66 link");
            tokio::time::sleep(delay.min(deadline.saturating_duration_since(Instant::now()))).await;
            delay *= 2;
        }
    }
}

/// Cloud 66's reason from a refusal body: a JSON `message`/`error`, or the
/// text itself, kept short.
fn partner_message(body: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|value| {
            ["message", "error", "errors", "description"]
                .iter()
                .find_map(|key| value.get(*key))
                .map(|field| match field {
                    serde_json::Value::String(text) => text.clone(),
                    other => other.to_string(),
                })
        });
    let message = from_json.unwrap_or_else(|| body.trim().to_string());
    let message: String = message.chars().filter(|c| !c.is_control()).take(500).collect();
    if message.is_empty() {
        "no reason given".into()
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partner_messages_are_read_from_json_or_text() {
        assert_eq!(
            partner_message(r#"{"error":"invalid link_uid"}"#),
            "invalid link_uid"
        );
        assert_eq!(
            partner_message("jon@smith.com is already linked to this account"),
            "jon@smith.com is already linked to this account"
        );
        assert_eq!(partner_message(""), "no reason given");
        assert_eq!(partner_message(&"x".repeat(2000)).len(), 500);
    }
}
