//! The client of the vendor's Cloud 66 partner endpoint: the POST of
//! `link_uid`, `user_email` and the partner's fields, and what Cloud 66's
//! answer means (docs/cloud66.md).

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

/// The most of Cloud 66's answer that is read (a message, at most).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// First pause between retries; it doubles after each.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);

impl PartnerClient {
    pub fn new(endpoint: String, format: PayloadFormat, time_limit: Duration) -> Self {
        Self {
            http: crate::outbound::build(crate::outbound::client_builder()),
            endpoint,
            format,
            time_limit,
        }
    }

    /// POSTs `link_uid`, `user_email` and the partner's fields (`config`),
    /// retrying network errors and 5xx with backoff until `time_limit` has
    /// passed in all, or `deadline` (the invocation's, less a margin) came,
    /// whichever is first.
    pub async fn post_link(
        &self,
        uid: &str,
        email: &str,
        config: &ConfigMap,
        deadline: Option<Instant>,
    ) -> PartnerAnswer {
        let mut fields = vec![
            ("link_uid".to_string(), uid.to_string()),
            ("user_email".to_string(), email.to_string()),
        ];
        fields.extend(config.0.iter().map(|(k, v)| (k.clone(), v.clone())));
        let deadline = crate::deadline::within(self.time_limit, deadline);
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
                let response = request
                    .send()
                    .await
                    .map_err(|err| format!("could not reach Cloud 66: {}", err.without_url()))?;
                let status = response.status();
                let body = crate::outbound::read_text(response, MAX_ANSWER_BYTES)
                    .await
                    .map_err(|err| format!("Cloud 66's answer could not be read: {err}"))?;
                Ok::<_, String>((status, body))
            };
            match tokio::time::timeout(remaining, attempt).await {
                Err(_) => return PartnerAnswer::NoAnswer("Cloud 66 did not answer in time".into()),
                Ok(Err(failure)) => last_failure = failure,
                Ok(Ok((status, _))) if status.is_success() => return PartnerAnswer::Linked,
                // Not followed (crate::outbound): a redirect is no answer.
                Ok(Ok((status, _))) if status.is_redirection() => {
                    last_failure = format!("Cloud 66 answered {status}, a redirect, which is not followed");
                }
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
    use crate::outbound::test_server;

    #[tokio::test]
    async fn the_invocations_deadline_cuts_the_time_limit_short() {
        let client = PartnerClient::new(
            format!("{}/partner", test_server::silent().await),
            PayloadFormat::Json,
            Duration::from_secs(20),
        );
        let started = Instant::now();
        let deadline = Some(started + Duration::from_millis(300));
        let answer = client
            .post_link("uid_1", "a@example.com", &ConfigMap::default(), deadline)
            .await;
        assert!(matches!(answer, PartnerAnswer::NoAnswer(_)), "{answer:?}");
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "gave up {took:?} after a 300 ms deadline"
        );
    }

    #[tokio::test]
    async fn a_redirect_is_no_answer_and_nothing_is_sent_where_it_points() {
        let elsewhere = test_server::serve(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec()).await;
        let partner =
            test_server::serve(test_server::redirect_to(&format!("{}/stolen", elsewhere.url))).await;
        let client = PartnerClient::new(
            format!("{}/partner", partner.url),
            PayloadFormat::Json,
            Duration::from_millis(300),
        );
        let config = ConfigMap(std::collections::BTreeMap::from([(
            "A_TOKEN".into(),
            "secret".into(),
        )]));
        let answer = client.post_link("uid_1", "a@example.com", &config, None).await;
        let PartnerAnswer::NoAnswer(reason) = answer else {
            panic!("a redirect must be no answer, not {answer:?}")
        };
        assert!(reason.contains("redirect"), "{reason}");
        assert!(!partner.requests().is_empty());
        assert!(elsewhere.requests().is_empty(), "the config went nowhere else");
    }

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
