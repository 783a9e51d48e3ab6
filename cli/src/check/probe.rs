//! The HTTP side of the checks: requests sent as a marketplace would send them,
//! answers kept whole (status, headers, body) so each check can judge them.
//! Redirects are never followed: where they lead is part of what is checked.

use reqwest::header::{self, HeaderMap};
use reqwest::RequestBuilder;
use std::time::Duration;

/// Longest a deployment may take to answer one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Probe {
    pub http: reqwest::Client,
}

impl Probe {
    pub fn new() -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|err| format!("could not build the HTTP client: {err}"))?;
        Ok(Self { http })
    }

    /// Sends and reads the whole answer; a transport failure is the reason a
    /// check fails.
    pub async fn send(&self, request: RequestBuilder) -> Result<Answer, String> {
        let response = request
            .send()
            .await
            .map_err(|err| format!("no answer: {}", err.without_url()))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|err| format!("answer cut short: {}", err.without_url()))?
            .to_vec();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// `status` exactly, or why not.
    pub fn expect_status(&self, status: u16) -> Result<(), String> {
        if self.status == status {
            Ok(())
        } else {
            Err(format!("expected {status}, got {}", self.describe()))
        }
    }

    /// A 4xx whose body is a JSON object served as `application/json`: what a
    /// marketplace (and its logs) can read.
    pub fn expect_json_client_error(&self) -> Result<String, String> {
        if !(400..500).contains(&self.status) {
            return Err(format!("expected a 4xx, got {}", self.describe()));
        }
        let media_type = self.header(header::CONTENT_TYPE).unwrap_or_default();
        if !media_type.to_ascii_lowercase().starts_with("application/json") {
            return Err(format!(
                "{} served as {media_type:?}, not application/json",
                self.status
            ));
        }
        match self.json() {
            Some(serde_json::Value::Object(_)) => Ok(format!("{} with a JSON error", self.status)),
            _ => Err(format!("{} whose body is not a JSON object", self.status)),
        }
    }

    /// `name=value` of each cookie the answer sets, attributes dropped.
    pub fn cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .filter_map(|cookie| cookie.split(';').next())
            .map(|pair| pair.trim().to_string())
            .filter(|pair| pair.contains('=') && !pair.ends_with('='))
            .collect()
    }

    /// The status and a short piece of the body, for a failure's reason.
    pub fn describe(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text: String = text.chars().take(160).collect();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() {
            format!("{}", self.status)
        } else {
            format!("{} {text:?}", self.status)
        }
    }
}

/// The `Cookie` header that sends back `cookies`.
pub fn cookie_header(cookies: &[String]) -> String {
    cookies.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn answer(status: u16, headers: &[(header::HeaderName, &str)], body: &str) -> Answer {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        Answer {
            status,
            headers: map,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_json_client_error_needs_4xx_json_media_type_and_an_object() {
        let json = [(header::CONTENT_TYPE, "application/json; charset=utf-8")];
        assert!(answer(400, &json, r#"{"error":"x"}"#)
            .expect_json_client_error()
            .is_ok());
        assert!(answer(500, &json, r#"{"error":"x"}"#)
            .expect_json_client_error()
            .is_err());
        assert!(
            answer(400, &[(header::CONTENT_TYPE, "text/plain")], r#"{"error":"x"}"#)
                .expect_json_client_error()
                .is_err()
        );
        assert!(answer(400, &json, "[1]").expect_json_client_error().is_err());
    }

    #[test]
    fn cookies_keep_name_and_value_only_and_drop_cleared_ones() {
        let answer = answer(
            303,
            &[
                (header::SET_COOKIE, "a=1; Path=/; HttpOnly"),
                (header::SET_COOKIE, "b=; Max-Age=0"),
                (header::SET_COOKIE, "c=3"),
            ],
            "",
        );
        assert_eq!(answer.cookies(), ["a=1", "c=3"]);
        assert_eq!(cookie_header(&answer.cookies()), "a=1; c=3");
    }

    #[test]
    fn describe_shortens_the_body() {
        let long = "x".repeat(500);
        let described = answer(500, &[], &long).describe();
        assert!(described.starts_with("500 \""));
        assert!(described.len() < 200);
        assert_eq!(answer(204, &[], "").describe(), "204");
    }
}
