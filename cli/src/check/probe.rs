//! The HTTP side of the checks: requests sent as a marketplace would send them,
//! answers kept whole (status, headers, body) so each check can judge them.
//! Redirects are never followed: where they lead is part of what is checked.

use super::cleanup::Traces;
use reqwest::header::{self, HeaderMap};
use reqwest::RequestBuilder;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest a deployment may take to answer one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// An answer slower than this is flagged (`timing.budget`): marketplaces
/// time out, and customers leave, well before the request timeout.
pub const RESPONSE_BUDGET: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub struct Probe {
    pub http: reqwest::Client,
    /// How long each request sent through [`Probe::send`] took to answer.
    timings: Arc<Mutex<Vec<(String, Duration)>>>,
    /// What names the records the run makes, for `--cleanup`.
    pub traces: Arc<Traces>,
}

impl Probe {
    pub fn new() -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|err| format!("could not build the HTTP client: {err}"))?;
        Ok(Self {
            http,
            timings: Arc::default(),
            traces: Arc::default(),
        })
    }

    /// Sends and reads the whole answer; a transport failure is the reason a
    /// check fails. The time to the whole answer is recorded.
    pub async fn send(&self, request: RequestBuilder) -> Result<Answer, String> {
        let (client, request) = request.build_split();
        let request = request.map_err(|err| format!("no request: {}", err.without_url()))?;
        let label = format!("{} {}", request.method(), request.url().path());
        self.traces.request(&request);
        let started = Instant::now();
        let answer = self.read(client.execute(request).await).await;
        if let Ok(answer) = &answer {
            self.traces.answer(answer);
        }
        self.timings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((label, started.elapsed()));
        answer
    }

    /// Every answer within `budget`, or the ones that were not.
    pub fn within(&self, budget: Duration) -> Result<String, String> {
        let timings = self
            .timings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        judge_timings(&timings, budget)
    }

    async fn read(&self, response: Result<reqwest::Response, reqwest::Error>) -> Result<Answer, String> {
        let response = response.map_err(|err| format!("no answer: {}", err.without_url()))?;
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

    /// Each `Set-Cookie` header that sets a value (a cleared cookie is left
    /// out), whole.
    fn cookies_set(&self) -> impl Iterator<Item = &str> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .filter(|cookie| {
                let pair = cookie.split(';').next().unwrap_or_default().trim();
                pair.contains('=') && !pair.ends_with('=')
            })
    }

    /// `name=value` of each cookie the answer sets, attributes dropped.
    pub fn cookies(&self) -> Vec<String> {
        self.cookies_set()
            .map(|cookie| cookie.split(';').next().unwrap_or_default().trim().to_string())
            .collect()
    }

    /// The cookies this answer sets hold a session or sign-in state: each
    /// must be `__Host-` (this host only, over HTTPS, the whole site),
    /// `HttpOnly`, `Secure` and `SameSite` Lax or Strict, with `Path=/` and
    /// no `Domain`.
    pub fn cookie_attributes(&self) -> Result<String, String> {
        let set: Vec<&str> = self.cookies_set().collect();
        if set.is_empty() {
            return Err(format!("no cookie set; answer {}", self.describe()));
        }
        let mut faults = Vec::new();
        let mut names = Vec::new();
        for cookie in &set {
            let mut parts = cookie.split(';').map(str::trim);
            let name = parts
                .next()
                .unwrap_or_default()
                .split('=')
                .next()
                .unwrap_or_default();
            let attributes: Vec<String> = parts.map(str::to_ascii_lowercase).collect();
            let has = |wanted: &str| attributes.iter().any(|attribute| attribute == wanted);
            let value_of = |key: &str| {
                attributes
                    .iter()
                    .find_map(|attribute| attribute.strip_prefix(&format!("{key}=")).map(str::to_string))
            };
            let mut missing = Vec::new();
            if !name.starts_with("__Host-") {
                missing.push("the __Host- prefix");
            }
            if !has("httponly") {
                missing.push("HttpOnly");
            }
            if !has("secure") {
                missing.push("Secure");
            }
            if !matches!(value_of("samesite").as_deref(), Some("lax" | "strict")) {
                missing.push("SameSite=Lax or Strict");
            }
            if value_of("path").as_deref() != Some("/") {
                missing.push("Path=/");
            }
            if value_of("domain").is_some() {
                missing.push("no Domain");
            }
            if !missing.is_empty() {
                faults.push(format!("{name} lacks {}", missing.join(", ")));
            }
            names.push(name.to_string());
        }
        if faults.is_empty() {
            Ok(format!(
                "{}: __Host-, HttpOnly, Secure, SameSite, Path=/",
                names.join(", ")
            ))
        } else {
            Err(faults.join("; "))
        }
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

/// Whether every call answered within `budget`, naming the ones that did not.
fn judge_timings(timings: &[(String, Duration)], budget: Duration) -> Result<String, String> {
    let slow: Vec<String> = timings
        .iter()
        .filter(|(_, took)| *took > budget)
        .map(|(label, took)| format!("{label} {} ms", took.as_millis()))
        .collect();
    if !slow.is_empty() {
        return Err(format!(
            "{} of {} answers over {} s: {}",
            slow.len(),
            timings.len(),
            budget.as_secs(),
            slow.join(", ")
        ));
    }
    let slowest = timings.iter().max_by_key(|(_, took)| *took);
    Ok(match slowest {
        Some((label, took)) => format!(
            "{} answers, each within {} s (slowest {} ms, {label})",
            timings.len(),
            budget.as_secs(),
            took.as_millis()
        ),
        None => "no answer to time".to_string(),
    })
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

    #[test]
    fn a_session_cookie_needs_every_attribute_and_each_lack_is_named() {
        let good = "__Host-addon_session=abc; Max-Age=3600; Path=/; HttpOnly; Secure; SameSite=Lax";
        let cleared = "__Host-cloud66_signin=; Max-Age=0; Path=/";
        let ok = answer(
            303,
            &[(header::SET_COOKIE, good), (header::SET_COOKIE, cleared)],
            "",
        );
        assert_eq!(
            ok.cookie_attributes().unwrap(),
            "__Host-addon_session: __Host-, HttpOnly, Secure, SameSite, Path=/"
        );
        for (cookie, lack) in [
            (
                "addon_session=abc; Path=/; HttpOnly; Secure; SameSite=Lax",
                "the __Host- prefix",
            ),
            ("__Host-s=abc; Path=/; Secure; SameSite=Lax", "HttpOnly"),
            ("__Host-s=abc; Path=/; HttpOnly; SameSite=Strict", "Secure"),
            ("__Host-s=abc; Path=/; HttpOnly; Secure", "SameSite=Lax or Strict"),
            (
                "__Host-s=abc; Path=/; HttpOnly; Secure; SameSite=None",
                "SameSite=Lax or Strict",
            ),
            (
                "__Host-s=abc; Path=/app; HttpOnly; Secure; SameSite=Lax",
                "Path=/",
            ),
            (
                "__Host-s=abc; Path=/; Domain=example.com; HttpOnly; Secure; SameSite=Lax",
                "no Domain",
            ),
        ] {
            let err = answer(303, &[(header::SET_COOKIE, cookie)], "")
                .cookie_attributes()
                .unwrap_err();
            assert!(err.contains(lack), "{cookie}: {err}");
        }
        assert!(
            answer(303, &[(header::SET_COOKIE, cleared)], "")
                .cookie_attributes()
                .is_err(),
            "nothing set"
        );
    }

    #[test]
    fn an_answer_over_the_budget_is_named_and_one_within_is_not() {
        let quick = ("GET /a".to_string(), Duration::from_millis(2999));
        let slow = ("PUT /b".to_string(), Duration::from_millis(3001));
        let verdict = judge_timings(std::slice::from_ref(&quick), RESPONSE_BUDGET).unwrap();
        assert!(verdict.contains("slowest 2999 ms, GET /a"), "{verdict}");
        let verdict = judge_timings(&[quick, slow], RESPONSE_BUDGET).unwrap_err();
        assert_eq!(verdict, "1 of 2 answers over 3 s: PUT /b 3001 ms");
    }
}
