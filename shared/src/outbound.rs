//! HTTP clients for calls out to the platforms and the vendor's service.
//!
//! Every client shares one TLS configuration, built once per process from
//! Mozilla's root certificates compiled into the binary (`webpki-roots`).
//! Loading the system's trust store instead reads and parses the system's
//! bundle and every certificate file beside it (about 150 here) for each
//! client built — milliseconds of every cold start, on top of the AWS SDK,
//! which loads it once for itself. The
//! endpoints called (Clever Cloud, Cloudmore, Cloud 66 and the vendor's
//! `PROVISIONER_URL`) must therefore present a certificate from a public CA.
//!
//! No client follows a redirect: a 307/308 would re-send the body, with its
//! credentials or config, to whatever host `Location` names, and a 2xx
//! landing page after a 301/302/303 would pass for the platform's answer.
//! Each caller treats a 3xx as "no usable answer" (retried where the call
//! is retried, never success). Answers are read with a size limit that holds
//! while the body arrives ([`read_limited`]), and endpoints are `https`
//! except on this machine (`config::outbound_url`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The process's one client TLS configuration.
fn tls_config() -> rustls::ClientConfig {
    static CONFIG: OnceLock<rustls::ClientConfig> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("aws-lc-rs supports rustls' default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth()
        })
        .clone()
}

/// A client builder with the shared TLS configuration and no redirect
/// followed; callers add their own time limits.
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config())
        .redirect(reqwest::redirect::Policy::none())
}

/// Builds a client from [`client_builder`]. It fails only if the TLS
/// configuration cannot be used, at cold start: never fall back on a
/// default client, which would follow redirects.
pub fn build(builder: reqwest::ClientBuilder) -> reqwest::Client {
    builder
        .build()
        .expect("an HTTP client on the shared TLS configuration")
}

/// A client for calls to a platform's API, with a time limit per request so
/// a hanging platform cannot hold a function to its timeout.
pub fn platform_client() -> reqwest::Client {
    build(client_builder().timeout(Duration::from_secs(10)))
}

/// The most of a platform's answer that is read (an organisation list is
/// the largest expected).
pub const MAX_PLATFORM_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// Why an answer's body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the answer was cut short: {0}")]
    Cut(String),
}

/// The body of `response`, read chunk by chunk and abandoned as soon as it
/// passes `limit` bytes: a huge or endless answer costs at most `limit`
/// bytes of memory, whatever `Content-Length` says or does not say.
pub async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(ReadError::TooLarge(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| ReadError::Cut(err.without_url().to_string()))?
    {
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// [`read_limited`] as text (invalid UTF-8 replaced).
pub async fn read_text(response: reqwest::Response, limit: usize) -> Result<String, ReadError> {
    Ok(String::from_utf8_lossy(&read_limited(response, limit).await?).into_owned())
}

/// Longest `Retry-After` believed: a larger one waits for the next sweep anyway.
const MAX_RETRY_AFTER_SECONDS: u64 = 60 * 60;

/// `Retry-After` as seconds from `now`: delta-seconds or an HTTP date
/// (RFC 9110), capped at an hour; `None` if unreadable.
pub fn retry_after_seconds(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<u64> {
    let value = value.trim();
    let seconds = match value.parse::<u64>() {
        Ok(seconds) => seconds,
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            u64::try_from((at.with_timezone(&chrono::Utc) - now).num_seconds()).unwrap_or(0)
        }
    };
    Some(seconds.min(MAX_RETRY_AFTER_SECONDS))
}

/// The `Retry-After` of a platform's answer, in seconds from now.
pub fn retry_after(response: &reqwest::Response) -> Option<u64> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| retry_after_seconds(value, chrono::Utc::now()))
}

/// A raw HTTP/1.1 server on loopback for the outbound clients' tests: it
/// answers every connection with one fixed response and records each
/// request's first line, so a test sees both what a client did with an
/// answer and whether it went anywhere else.
/// Why a platform's API call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformError {
    /// Network trouble, time-outs, 5xx, 429: worth retrying later, not
    /// before `retry_after` seconds when the platform said so.
    Unavailable {
        reason: String,
        retry_after: Option<u64>,
    },
    /// Any other 4xx: the platform's word, kept for the operator.
    Rejected { status: u16, message: String },
}

/// Sends a call to a platform's API, and sorts the answer: a 2xx's body, or why not.
pub async fn send_to_platform(request: reqwest::RequestBuilder) -> Result<Vec<u8>, PlatformError> {
    let response = request.send().await.map_err(|err| PlatformError::Unavailable {
        reason: err.without_url().to_string(),
        retry_after: None,
    })?;
    let status = response.status();
    let retry_after = retry_after(&response);
    let body = read_limited(response, MAX_PLATFORM_ANSWER_BYTES)
        .await
        .map_err(|err| PlatformError::Unavailable {
            reason: err.to_string(),
            retry_after: None,
        })?;
    match status.as_u16() {
        200..=299 => Ok(body),
        429 => Err(PlatformError::Unavailable {
            reason: "rate limited (429)".into(),
            retry_after,
        }),
        status @ 400..=499 => Err(PlatformError::Rejected {
            status,
            message: message(&body),
        }),
        // A 3xx is not followed, and is no answer: retry.
        status => Err(PlatformError::Unavailable {
            reason: format!("answered {status}"),
            retry_after,
        }),
    }
}

/// The platform's error `message` (or OAuth's `error_description`),
/// bounded, one line: never the request's credentials, which no error
/// answer echoes.
fn message(body: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let text = ["message", "error_description", "error", "id"]
        .iter()
        .find_map(|field| value.get(field).and_then(serde_json::Value::as_str))
        .unwrap_or("no message");
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect()
}
#[cfg(test)]
pub(crate) mod test_server {
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    pub(crate) struct Server {
        pub url: String,
        pub requests: Arc<Mutex<Vec<String>>>,
        pub heads: Arc<Mutex<Vec<String>>>,
    }

    impl Server {
        /// Each request's first line.
        pub(crate) fn requests(&self) -> Vec<String> {
            self.requests.lock().unwrap().clone()
        }

        /// Each request's line and headers.
        pub(crate) fn heads(&self) -> Vec<String> {
            self.heads.lock().unwrap().clone()
        }
    }

    /// Serves `answer`, a whole response (status line, headers, body).
    pub(crate) async fn serve(answer: Vec<u8>) -> Server {
        serve_each(vec![answer]).await
    }

    /// Answers the n-th connection with `answers[n]`, and every one after
    /// the last with the last.
    pub(crate) async fn serve_each(answers: Vec<Vec<u8>>) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (log, head_log) = (requests.clone(), heads.clone());
        tokio::spawn(async move {
            let mut served = 0;
            while let Ok((mut socket, _)) = listener.accept().await {
                let answer = answers[served.min(answers.len() - 1)].clone();
                served += 1;
                let log = log.clone();
                let head_log = head_log.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).await.unwrap_or(0) == 1 {
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).to_string();
                    log.lock()
                        .unwrap()
                        .push(head.lines().next().unwrap_or_default().to_string());
                    head_log.lock().unwrap().push(head);
                    let _ = socket.write_all(&answer).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Server { url, requests, heads }
    }

    /// A server that accepts connections and never answers.
    pub(crate) async fn silent() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        url
    }

    /// A redirect to `location` that re-sends the body (307).
    pub(crate) fn redirect_to(location: &str) -> Vec<u8> {
        format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .into_bytes()
    }

    /// A 200 whose chunked body is `size` bytes, with no `Content-Length`.
    pub(crate) fn chunked(size: usize) -> Vec<u8> {
        let mut answer =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                .to_vec();
        let chunk = vec![b' '; 8192];
        let mut left = size;
        while left > 0 {
            let part = left.min(chunk.len());
            answer.extend_from_slice(format!("{part:x}\r\n").as_bytes());
            answer.extend_from_slice(&chunk[..part]);
            answer.extend_from_slice(b"\r\n");
            left -= part;
        }
        answer.extend_from_slice(b"0\r\n\r\n");
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date_and_capped() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(retry_after_seconds("120", now), Some(120));
        assert_eq!(retry_after_seconds(" 0 ", now), Some(0));
        assert_eq!(
            retry_after_seconds("Mon, 23 Nov 2026 10:02:00 GMT", now),
            Some(120)
        );
        assert_eq!(
            retry_after_seconds("Mon, 23 Nov 2026 09:00:00 GMT", now),
            Some(0),
            "a past date"
        );
        assert_eq!(retry_after_seconds("99999999999999999999", now), None);
        assert_eq!(retry_after_seconds("18446744073709551615", now), Some(3600));
        assert_eq!(retry_after_seconds("soon", now), None);
    }

    #[tokio::test]
    async fn no_client_follows_a_redirect_and_the_body_goes_nowhere_else() {
        let elsewhere = test_server::serve(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()).await;
        let redirecting =
            test_server::serve(test_server::redirect_to(&format!("{}/stolen", elsewhere.url))).await;
        let answer = platform_client()
            .post(format!("{}/token", redirecting.url))
            .body("secret=1")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 307);
        assert_eq!(redirecting.requests(), ["POST /token HTTP/1.1"]);
        assert!(elsewhere.requests().is_empty(), "nothing re-sent to Location");
    }

    #[tokio::test]
    async fn a_body_is_refused_as_soon_as_it_passes_the_limit_chunked_or_not() {
        let server = test_server::serve(test_server::chunked(100_000)).await;
        let client = platform_client();
        let response = client.get(&server.url).send().await.unwrap();
        assert!(matches!(
            read_limited(response, 99_999).await,
            Err(ReadError::TooLarge(99_999))
        ));
        let response = client.get(&server.url).send().await.unwrap();
        assert_eq!(read_limited(response, 100_000).await.unwrap().len(), 100_000);
        let declared =
            test_server::serve(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world".to_vec()).await;
        let response = client.get(&declared.url).send().await.unwrap();
        assert!(matches!(
            read_limited(response, 10).await,
            Err(ReadError::TooLarge(10))
        ));
        let response = client.get(&declared.url).send().await.unwrap();
        assert_eq!(read_text(response, 11).await.unwrap(), "hello world");
    }
}
