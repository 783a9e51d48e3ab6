//! Server-rendered pages for the browser flows (SSO refusals, the panel).
//! Markup is built with `maud`, which escapes every interpolated value, so
//! text from outside (names, emails, ids) can only ever render as text.

use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use maud::{html, Markup, DOCTYPE};

/// Nothing on these pages needs scripts, frames or third-party resources.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The page's policy with `origin` added to `form-action`: a form whose
/// POST is answered by a redirect elsewhere (the Cloud 66 link's, back to
/// Cloud 66) is blocked by browsers unless the redirect's target is allowed
/// there too. `origin` must be a scheme and host this service checked.
pub fn allow_form_redirect_to(response: &mut Response<Body>, origin: &str) {
    let policy =
        CONTENT_SECURITY_POLICY.replace("form-action 'self'", &format!("form-action 'self' {origin}"));
    if let Ok(value) = HeaderValue::from_str(&policy) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, value);
    }
}

/// The page's policy with one inline script allowed, by its SHA-256 (and
/// `fetch` to this origin): no other script, whatever an injection adds,
/// can run.
pub fn allow_inline_script(response: &mut Response<Body>, script: &str) {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(script));
    let policy = format!("{CONTENT_SECURITY_POLICY}; script-src 'sha256-{hash}'; connect-src 'self'");
    if let Ok(value) = HeaderValue::from_str(&policy) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, value);
    }
}

/// A complete HTML page with the headers every page here carries.
pub fn page(status: StatusCode, title: &str, content: Markup) -> Response<Body> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (maud::PreEscaped(STYLE)) }
            }
            body { main { h1 { (title) } (content) } }
        }
    };
    let mut response = Response::new(Body::Text(markup.into_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A redirect to `location` (302 or 303), with no body to render.
pub fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // A sign-in link's token may be in the URL redirected from: the next
    // page must not be told it.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// A page for a path no route serves.
pub fn not_found() -> Response<Body> {
    page(
        StatusCode::NOT_FOUND,
        "Not found",
        html! { p { "There is nothing here." } },
    )
}

/// A 503 page with `Retry-After`: the same request may simply be sent again.
pub fn retry_later(title: &str, message: &str, retry_after_seconds: u32) -> Response<Body> {
    let mut response = page(StatusCode::SERVICE_UNAVAILABLE, title, html! { p { (message) } });
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
    response
}

/// A page saying a dependency is down; the browser may simply retry.
pub fn unavailable() -> Response<Body> {
    retry_later(
        "Temporarily unavailable",
        "The service could not complete this request. Please try again in a moment.",
        1,
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}\
main{max-width:44rem;margin:3rem auto;padding:2rem;background:#fff;border-radius:8px;box-shadow:0 1px 4px #0002}\
h1{font-size:1.4rem;margin-top:0}dl{display:grid;grid-template-columns:max-content 1fr;gap:.4rem 1rem}\
dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}code{background:#eef0f3;padding:0 .3rem;border-radius:3px}\
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3rem;border-bottom:1px solid #e3e6ea}\
button{padding:.4rem 1rem}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolated_text_is_escaped() {
        let hostile = "<script>alert(1)</script>";
        let response = page(StatusCode::OK, hostile, html! { p { (hostile) } });
        let body = std::str::from_utf8(response.body().as_ref()).unwrap().to_string();
        assert!(!body.contains("<script>"), "{body}");
        assert!(body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(response.headers().contains_key(header::CONTENT_SECURITY_POLICY));
    }

    #[test]
    fn a_form_may_be_allowed_to_redirect_to_one_more_origin() {
        let mut response = page(StatusCode::OK, "t", html! {});
        allow_form_redirect_to(&mut response, "https://app.cloud66.com");
        let policy = response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            policy.contains("form-action 'self' https://app.cloud66.com;"),
            "{policy}"
        );
        assert!(policy.starts_with("default-src 'none'"), "{policy}");
    }
}
