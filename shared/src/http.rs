//! HTTP helpers shared by the API functions: JSON error bodies, strict JSON
//! request parsing, and HTTP Basic authentication.

use crate::secret::{Rotating, Secret};
use base64::Engine as _;
use lambda_http::http::{header, HeaderMap, HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest request body any API function reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Seconds a client is asked to wait after a 503.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// An error answer: a status, a stable machine-readable `error` code and a
/// human `message`, rendered as `{"error": ..., "message": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    challenge: Option<&'static str>,
    retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            challenge: None,
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 401 with a `WWW-Authenticate: Basic` challenge.
    pub fn unauthorized() -> Self {
        Self {
            challenge: Some("Basic realm=\"add-on provider\", charset=\"UTF-8\""),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong HTTP Basic credentials",
            )
        }
    }

    /// 503 with `Retry-After`: a dependency is down or throttling; nothing was
    /// changed, so the caller can safely send the same request again.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(RETRY_AFTER_SECONDS),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the request could not be completed; it was logged",
        )
    }

    pub fn into_response(self) -> Response<Body> {
        let mut response = json_response(
            self.status,
            &serde_json::json!({ "error": self.code, "message": self.message }),
        );
        let headers = response.headers_mut();
        if let Some(challenge) = self.challenge {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A JSON response. Serialising our own response types cannot fail; if it
/// ever did, the client still gets a well-formed 500 rather than a panic.
pub fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let (status, body) = match serde_json::to_string(value) {
        Ok(body) => (status, body),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":"internal_error","message":"response could not be encoded"}"#.to_string(),
        ),
    };
    let mut response = Response::new(Body::Text(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// 204 with no body (a deprovision's answer on Heroku and Scalingo).
pub fn no_content() -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// Turns a handler's result into the response sent.
pub fn respond(result: Result<Response<Body>, ApiError>) -> Response<Body> {
    result.unwrap_or_else(ApiError::into_response)
}

/// Whether `Content-Type` names `media_type` (parameters such as `charset`
/// are allowed; case does not matter).
pub fn has_media_type(headers: &HeaderMap, media_type: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|value| value.trim().eq_ignore_ascii_case(media_type))
}

/// Parses a JSON object body into `T`, refusing (with a 4xx that names the
/// problem) a wrong content type, an empty or oversized body, malformed JSON,
/// a non-object, and missing or mistyped fields. Unknown fields are allowed.
pub fn read_json<T: DeserializeOwned>(request: &Request) -> Result<T, ApiError> {
    if !has_media_type(request.headers(), "application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON sent with Content-Type: application/json",
        ));
    }
    let bytes = request.body().as_ref();
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than {MAX_BODY_BYTES} bytes"),
        ));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("empty_body", "the request body is empty"));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|err| {
        ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {err}"))
    })?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the body must be a JSON object",
        ));
    }
    serde_json::from_value(value).map_err(|err| ApiError::bad_request("invalid_body", err.to_string()))
}

/// The expected HTTP Basic credentials of a caller (a marketplace).
#[derive(Debug, Clone)]
pub struct BasicCredentials {
    user: String,
    /// The password, and the one being rotated away, also accepted.
    password: Rotating,
}

impl BasicCredentials {
    pub fn new(user: impl Into<String>, password: Secret) -> Self {
        Self::rotating(user, Rotating::new(password, None))
    }

    /// `user` with either of `password`'s values.
    pub fn rotating(user: impl Into<String>, password: Rotating) -> Self {
        Self {
            user: user.into(),
            password,
        }
    }

    /// Also accepts `previous` (a password being rotated away).
    pub fn with_previous(self, previous: Option<Secret>) -> Self {
        Self::rotating(self.user, Rotating::new(self.password.current, previous))
    }

    /// Checks the `Authorization` header. Both the user and the password are
    /// compared in constant time, and both always are, so the answer's timing
    /// says nothing about which one was wrong.
    pub fn verify(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_basic)
            .ok_or_else(ApiError::unauthorized)?;
        let user_ok = crate::secret::constant_time_eq(self.user.as_bytes(), presented.0.as_bytes());
        // Both passwords are compared whether or not the current one
        // matched, so the timing does not tell which of the two a caller holds.
        let password_ok = self
            .password
            .either(|password| password.matches(presented.1.as_bytes()));
        if user_ok & password_ok {
            Ok(())
        } else {
            Err(ApiError::unauthorized())
        }
    }
}

/// `Basic base64(user:password)` → (user, password). The scheme name is
/// case-insensitive (RFC 7617); the password may itself contain ':'.
fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Checks Basic auth, then runs `action`, rendering its error as JSON:
/// credentials come first, so a caller without them learns nothing about
/// ids or bodies. A future does nothing until awaited, so `action` runs
/// only after the check.
pub async fn authenticated(
    credentials: &BasicCredentials,
    request: &Request,
    action: impl std::future::Future<Output = Result<Response<Body>, ApiError>>,
) -> Response<Body> {
    respond(
        async {
            credentials.verify(request.headers())?;
            action.await
        }
        .await,
    )
}

/// A marketplace's text field `field`, if acceptable: non-empty, without
/// control characters, at most `max` bytes; else why not, naming it.
pub fn bounded(field: &str, value: String, max: usize) -> Result<String, String> {
    if value.trim().is_empty() {
        Err(format!("field `{field}` must not be empty"))
    } else if value.len() > max {
        Err(format!("field `{field}` is longer than {max} bytes"))
    } else if value.chars().any(char::is_control) {
        Err(format!("field `{field}` contains control characters"))
    } else {
        Ok(value)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use lambda_http::http::Method;

    #[tokio::test]
    async fn authenticated_runs_the_action_only_for_the_right_credentials() {
        let credentials = BasicCredentials::new("addon-name", Secret::new("password"));
        let ran = std::sync::atomic::AtomicUsize::new(0);
        let request = |authorization: &str| {
            lambda_http::http::Request::builder()
                .header(header::AUTHORIZATION, authorization)
                .body(Body::Empty)
                .unwrap()
        };
        let action = || async {
            ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(json_response(
                StatusCode::CREATED,
                &serde_json::json!({"done": true}),
            ))
        };
        let answer = authenticated(
            &credentials,
            &request(&basic_header("addon-name", "password")),
            action(),
        )
        .await;
        assert_eq!(answer.status(), StatusCode::CREATED);
        assert_eq!(body_json(&answer)["done"], true);
        let refused = authenticated(
            &credentials,
            &request(&basic_header("addon-name", "wrong")),
            action(),
        )
        .await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert!(refused.headers().contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(
            ran.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "not run without credentials"
        );
        let failing = authenticated(
            &credentials,
            &request(&basic_header("addon-name", "password")),
            async { Err(ApiError::not_found("no such add-on")) },
        )
        .await;
        assert_eq!(failing.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn a_bounded_field_may_be_exactly_its_limit_and_no_longer() {
        assert_eq!(bounded("plan", "abcd".into(), 4), Ok("abcd".to_string()));
        assert!(bounded("plan", "abcde".into(), 4)
            .unwrap_err()
            .contains("longer than 4 bytes"));
        assert!(bounded("plan", " ".into(), 4).unwrap_err().contains("empty"));
        assert!(bounded("plan", "a\u{7}".into(), 4)
            .unwrap_err()
            .contains("control"));
    }

    #[test]
    fn no_content_is_a_204_with_no_body() {
        let response = no_content();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert!(response.body().is_empty());
    }

    pub fn basic_header(user: &str, password: &str) -> String {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}")
    }

    pub fn body_json(response: &Response<Body>) -> serde_json::Value {
        serde_json::from_slice(response.body().as_ref()).unwrap()
    }

    fn headers_with(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(authorization).unwrap(),
        );
        headers
    }

    #[test]
    fn basic_auth_accepts_only_the_exact_credentials() {
        let expected = BasicCredentials::new("addon-name", Secret::new("p:ss"));
        assert!(expected
            .verify(&headers_with(&basic_header("addon-name", "p:ss")))
            .is_ok());
        assert!(expected
            .verify(&headers_with(&basic_header("addon-name", "p:s")))
            .is_err());
        assert!(expected
            .verify(&headers_with(&basic_header("other", "p:ss")))
            .is_err());
        assert!(expected.verify(&headers_with("Bearer abc")).is_err());
        assert!(expected.verify(&headers_with("Basic !!!not-base64")).is_err());
        assert!(expected.verify(&HeaderMap::new()).is_err());
        let lower_scheme = basic_header("addon-name", "p:ss").replace("Basic", "basic");
        assert!(expected.verify(&headers_with(&lower_scheme)).is_ok());
    }

    #[test]
    fn during_a_rotation_both_passwords_are_accepted_and_no_other() {
        let rotating = BasicCredentials::new("addon-name", Secret::new("new-password"))
            .with_previous(Some(Secret::new("old-password")));
        for password in ["new-password", "old-password"] {
            assert!(rotating
                .verify(&headers_with(&basic_header("addon-name", password)))
                .is_ok());
        }
        assert!(rotating
            .verify(&headers_with(&basic_header("addon-name", "older-password")))
            .is_err());
        assert!(rotating
            .verify(&headers_with(&basic_header("other", "old-password")))
            .is_err());
        // A rotation that has not begun yet (previous = current) still accepts it.
        let unchanged = BasicCredentials::new("addon-name", Secret::new("same-password"))
            .with_previous(Some(Secret::new("same-password")));
        assert!(unchanged
            .verify(&headers_with(&basic_header("addon-name", "same-password")))
            .is_ok());
    }

    #[test]
    fn unauthorized_carries_a_basic_challenge() {
        let response = ApiError::unauthorized().into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenge = response.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.starts_with("Basic "));
        assert_eq!(body_json(&response)["error"], "unauthorized");
    }

    #[test]
    fn unavailable_carries_retry_after() {
        let response = ApiError::unavailable("storage_unavailable", "down").into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[derive(serde::Deserialize, Debug)]
    struct Sample {
        #[allow(dead_code)]
        name: String,
    }

    fn parse(content_type: Option<&str>, body: Body) -> Result<Sample, ApiError> {
        let mut builder = lambda_http::http::Request::builder()
            .method(Method::POST)
            .uri("/");
        if let Some(content_type) = content_type {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        read_json(&builder.body(body).unwrap())
    }

    #[test]
    fn read_json_names_each_kind_of_bad_input() {
        let json = Some("application/json");
        let cases: Vec<(Option<&str>, Body, StatusCode, &str)> = vec![
            (
                None,
                Body::Text(r#"{"name":"a"}"#.into()),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            (
                Some("text/plain"),
                Body::Text(r#"{"name":"a"}"#.into()),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            (json, Body::Empty, StatusCode::BAD_REQUEST, "empty_body"),
            (
                json,
                Body::Text("  ".into()),
                StatusCode::BAD_REQUEST,
                "empty_body",
            ),
            (
                json,
                Body::Text("{".into()),
                StatusCode::BAD_REQUEST,
                "malformed_json",
            ),
            (
                json,
                Body::Binary(vec![0xff, 0xfe]),
                StatusCode::BAD_REQUEST,
                "malformed_json",
            ),
            (
                json,
                Body::Text("[1]".into()),
                StatusCode::BAD_REQUEST,
                "invalid_body",
            ),
            (
                json,
                Body::Text("{}".into()),
                StatusCode::BAD_REQUEST,
                "invalid_body",
            ),
            (
                json,
                Body::Text(r#"{"name":5}"#.into()),
                StatusCode::BAD_REQUEST,
                "invalid_body",
            ),
            (
                json,
                Body::Text(format!(r#"{{"name":"{}"}}"#, "a".repeat(MAX_BODY_BYTES))),
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
            ),
        ];
        for (content_type, body, status, code) in cases {
            let err = parse(content_type, body).unwrap_err();
            assert_eq!((err.status, err.code), (status, code), "{}", err.message);
        }
        // Exactly at the limit (64 KiB, written out) is read; one byte more is refused.
        let at_limit = format!(r#"{{"name":"{}"}}"#, "a".repeat(64 * 1024 - 11));
        assert_eq!(at_limit.len(), 64 * 1024);
        assert!(parse(json, Body::Text(at_limit.clone())).is_ok());
        let over = at_limit.replacen('a', "aa", 1);
        assert_eq!(parse(json, Body::Text(over)).unwrap_err().code, "body_too_large");
        let missing = parse(json, Body::Text("{}".into())).unwrap_err();
        assert!(missing.message.contains("name"), "{}", missing.message);
    }

    #[test]
    fn respond_passes_a_response_through_and_turns_an_error_into_its_json() {
        let mut created = Response::new(Body::Text("made".into()));
        *created.status_mut() = StatusCode::CREATED;
        let passed = respond(Ok(created));
        assert_eq!(passed.status(), StatusCode::CREATED);
        assert_eq!(passed.body().as_ref(), b"made");

        let refused = respond(Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such thing",
        )));
        assert_eq!(refused.status(), StatusCode::NOT_FOUND);
        assert_eq!(refused.headers()[header::CONTENT_TYPE], "application/json");
        let body: serde_json::Value = serde_json::from_slice(refused.body().as_ref()).unwrap();
        assert_eq!(body["error"], "not_found");
    }

    #[test]
    fn read_json_accepts_charset_and_unknown_fields() {
        let sample = parse(
            Some("Application/JSON; charset=utf-8"),
            Body::Text(r#"{"name":"a","extra":[1,2]}"#.into()),
        );
        assert!(sample.is_ok());
    }
}
