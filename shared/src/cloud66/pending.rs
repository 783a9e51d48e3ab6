//! A link request waiting for its user: `/cloud66/link`'s query comes from a
//! browser and proves nothing, so before anything is created or sent to
//! Cloud 66 the user signs in with Cloud 66 as the email being linked. The
//! request waits server-side (only its token's SHA-256 is stored, for
//! [`PENDING_TTL_SECONDS`]), bound to the browser by a `__Host-` cookie; the
//! Cloud 66 sign-in callback sends a browser carrying it to
//! `/cloud66/link/resume`, which finishes the link only for that email.

pub use crate::model::PendingLink;
use crate::signin;
use lambda_http::http::{HeaderMap, HeaderValue};

/// The cookie that carries a pending link's token.
pub const COOKIE: &str = "__Host-cloud66_link";
/// Where the Cloud 66 sign-in sends a browser with a pending link.
pub const RESUME_PATH: &str = "/cloud66/link/resume";
/// How long a link may wait for its user's sign-in.
pub const PENDING_TTL_SECONDS: i64 = 600;
/// Bytes of randomness in a pending link's token (256 bits).
pub const TOKEN_BYTES: usize = 32;

/// The pending link's token the request's cookies carry, if well formed.
pub fn token(headers: &HeaderMap) -> Option<String> {
    signin::random_cookie(headers, COOKIE, TOKEN_BYTES)
}

/// `Set-Cookie` for the token (`max_age` 0 removes it).
pub fn cookie(token: &str, max_age: i64) -> Option<HeaderValue> {
    signin::token_cookie(COOKIE, token, max_age)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http::header;

    #[test]
    fn the_token_is_read_from_the_cookie_and_checked() {
        let token_value = "cd".repeat(TOKEN_BYTES);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=1; {COOKIE}={token_value}")).unwrap(),
        );
        assert_eq!(token(&headers), Some(token_value.clone()));
        let mut short = HeaderMap::new();
        short.insert(
            header::COOKIE,
            HeaderValue::from_static("__Host-cloud66_link=abc"),
        );
        assert_eq!(token(&short), None);
        let set = cookie(&token_value, PENDING_TTL_SECONDS).unwrap();
        let set = set.to_str().unwrap();
        assert!(set.starts_with("__Host-cloud66_link=") && set.contains("HttpOnly; Secure; SameSite=Lax"));
        assert!(set.contains("Path=/") && !set.contains("Domain"), "__Host- rules");
    }
}
