//! The link's confirmation step (docs/cloud66.md, docs/security.md).
//!
//! A link posts an account's credentials to Cloud 66 for a uid that arrives
//! in a URL anyone can craft, and a signed-in user's browser follows a
//! cross-site link with its `SameSite=Lax` session. So no `GET` links
//! anything: the user sees a page naming the email, the Cloud 66 uid and the
//! callback's host, and only its form's `POST` acts. That POST must be
//! same-origin (`Sec-Fetch-Site`, or else `Origin`) and carry a token that
//! is an HMAC-SHA256, keyed by a secret only this browser holds (its session
//! id, or in the unverified setting a `__Host-` cookie of its own), over
//! exactly (uid, email, callback): another browser's token, or a changed
//! uid, does not verify.

use super::request::LinkRequest;
use crate::html;
use hmac::{Hmac, Mac};
use lambda_http::http::{header, HeaderMap, HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use maud::html;
use sha2::Sha256;

/// Where the confirmation form posts (the link's own path).
pub const FORM_PATH: &str = "/cloud66/link";
/// In the unverified setting, the cookie whose value keys the token: a
/// browser secret set with the confirmation page (`SameSite=Strict`, so no
/// other site's request carries it).
pub const BROWSER_COOKIE: &str = "__Host-cloud66_link_confirm";
/// Bytes of randomness in that cookie (256 bits).
pub const BROWSER_SECRET_BYTES: usize = 32;
/// How long the confirmation page may stay open before its form is refused.
pub const BROWSER_SECRET_TTL_SECONDS: i64 = 600;
/// The largest confirmation form read.
pub const MAX_FORM_BYTES: usize = 8 * 1024;

fn mac(binding: &str, request: &LinkRequest) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(binding.as_bytes()).expect("HMAC accepts keys of any length");
    // A JSON array: no choice of fields can make two tuples one message.
    let message = serde_json::json!([
        "cloud66-link-confirm",
        request.uid,
        request.email,
        request.callback.as_str()
    ]);
    mac.update(message.to_string().as_bytes());
    mac
}

/// The form's token for `request` in the browser that holds `binding`.
pub fn token(binding: &str, request: &LinkRequest) -> String {
    hex::encode(mac(binding, request).finalize().into_bytes())
}

/// Whether `token` is [`token`]`(binding, request)`, compared in constant time.
pub fn token_matches(binding: &str, request: &LinkRequest, token: &str) -> bool {
    match hex::decode(token) {
        Ok(bytes) => mac(binding, request).verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

pub use crate::signin::is_same_origin;

/// The confirmation form as posted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConfirmForm {
    pub uid: Option<String>,
    pub email: Option<String>,
    pub callback: Option<String>,
    pub token: Option<String>,
}

impl ConfirmForm {
    /// The form's fields; `None` for a body over [`MAX_FORM_BYTES`]. A field
    /// given twice is refused as absent, so no parser disagreement can pick
    /// another value than the token covered.
    pub fn parse(body: &[u8]) -> Option<Self> {
        if body.len() > MAX_FORM_BYTES {
            return None;
        }
        let mut form = Self::default();
        let mut repeated = false;
        for (name, value) in form_urlencoded::parse(body) {
            let slot = match name.as_ref() {
                "uid" => &mut form.uid,
                "email" => &mut form.email,
                "callback" => &mut form.callback,
                "token" => &mut form.token,
                _ => continue,
            };
            repeated |= slot.is_some();
            *slot = Some(value.into_owned());
        }
        (!repeated).then_some(form)
    }
}

/// The page that asks the user to confirm, with the form that does.
pub fn page(request: &LinkRequest, token: &str) -> Response<Body> {
    let host = request.callback.host_str().unwrap_or_default();
    let mut response = html::page(
        StatusCode::OK,
        "Link your Cloud 66 account",
        html! {
            p { "Cloud 66 asks to link this service to a Cloud 66 user. Linking sends this account's access details to Cloud 66 for that user." }
            dl {
                dt { "Your email" } dd #email { (request.email) }
                dt { "Cloud 66 user id" } dd #uid { code { (request.uid) } }
                dt { "Then back to" } dd #callback-host { (host) }
            }
            p { "Only continue if you started this from your own Cloud 66 dashboard just now." }
            form method="post" action=(FORM_PATH) {
                input type="hidden" name="uid" value=(request.uid);
                input type="hidden" name="email" value=(request.email);
                input type="hidden" name="callback" value=(request.callback.as_str());
                input type="hidden" name="token" value=(token);
                button type="submit" #confirm { "Link my account" }
            }
        },
    );
    // The POST ends in a redirect to the callback (https, an allowed host).
    html::allow_form_redirect_to(&mut response, &format!("https://{host}"));
    response
}

/// Adds `Set-Cookie` for the unverified setting's browser secret.
pub fn set_browser_secret(response: &mut Response<Body>, secret: &str) {
    let cookie = format!(
        "{BROWSER_COOKIE}={secret}; Max-Age={BROWSER_SECRET_TTL_SECONDS}; Path=/; HttpOnly; Secure; SameSite=Strict"
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// The unverified setting's browser secret the request carries, if well formed.
pub fn browser_secret(headers: &HeaderMap) -> Option<String> {
    crate::signin::random_cookie(headers, BROWSER_COOKIE, BROWSER_SECRET_BYTES)
}

/// The page for a POST that is not this browser's confirmation.
pub fn refused_page() -> Response<Body> {
    html::page(
        StatusCode::FORBIDDEN,
        "Link not confirmed",
        html! {
            p { "This confirmation did not come from the page this browser was shown, or that page has expired, so nothing was linked." }
            p { "Start the integration again from your Cloud 66 dashboard." }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uid: &str) -> LinkRequest {
        LinkRequest {
            uid: uid.into(),
            email: "jane@example.com".into(),
            callback: reqwest::Url::parse("https://app.cloud66.com/back").unwrap(),
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn a_token_verifies_only_for_its_binding_and_its_exact_request() {
        let token = token("session-a", &request("uid_1"));
        assert_eq!(token.len(), 64);
        assert!(token_matches("session-a", &request("uid_1"), &token));
        assert!(
            !token_matches("session-b", &request("uid_1"), &token),
            "another browser"
        );
        assert!(
            !token_matches("session-a", &request("uid_2"), &token),
            "a changed uid"
        );
        let mut other_email = request("uid_1");
        other_email.email = "eve@example.com".into();
        assert!(
            !token_matches("session-a", &other_email, &token),
            "a changed email"
        );
        let mut other_callback = request("uid_1");
        other_callback.callback = reqwest::Url::parse("https://app.cloud66.com/elsewhere").unwrap();
        assert!(
            !token_matches("session-a", &other_callback, &token),
            "a changed callback"
        );
        assert!(!token_matches("session-a", &request("uid_1"), ""), "empty");
        assert!(!token_matches("session-a", &request("uid_1"), "zz"), "not hex");
        assert!(
            !token_matches("session-a", &request("uid_1"), &token[..62]),
            "truncated"
        );
    }

    #[test]
    fn only_same_origin_posts_are_accepted() {
        assert!(is_same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
        for site in ["cross-site", "same-site", "none"] {
            let mut map = headers(&[("origin", "https://api.example"), ("host", "api.example")]);
            map.insert("sec-fetch-site", HeaderValue::from_static(site));
            assert!(!is_same_origin(&map), "Sec-Fetch-Site {site} wins over Origin");
        }
        assert!(is_same_origin(&headers(&[
            ("origin", "https://api.example"),
            ("host", "api.example")
        ])));
        assert!(is_same_origin(&headers(&[
            ("origin", "http://127.0.0.1:9000"),
            ("host", "127.0.0.1:9000")
        ])));
        assert!(
            !is_same_origin(&headers(&[
                ("origin", "http://api.example"),
                ("host", "api.example")
            ])),
            "http off loopback"
        );
        assert!(!is_same_origin(&headers(&[
            ("origin", "https://evil.example"),
            ("host", "api.example")
        ])));
        assert!(!is_same_origin(&headers(&[
            ("origin", "https://api.example:8443"),
            ("host", "api.example")
        ])));
        assert!(!is_same_origin(&headers(&[
            ("origin", "null"),
            ("host", "api.example")
        ])));
        assert!(
            !is_same_origin(&headers(&[("host", "api.example")])),
            "neither header"
        );
        assert!(
            !is_same_origin(&headers(&[("origin", "https://api.example")])),
            "no host"
        );
    }

    #[test]
    fn the_form_is_read_with_limits_and_no_repeated_field() {
        let form =
            ConfirmForm::parse(b"uid=u1&email=a%40b.c&callback=https%3A%2F%2Fx&token=ab&other=1").unwrap();
        assert_eq!(form.uid.as_deref(), Some("u1"));
        assert_eq!(form.email.as_deref(), Some("a@b.c"));
        assert_eq!(form.callback.as_deref(), Some("https://x"));
        assert_eq!(form.token.as_deref(), Some("ab"));
        assert_eq!(ConfirmForm::parse(b"uid=u1&uid=u2"), None);
        assert_eq!(MAX_FORM_BYTES, 8192, "the written limit");
        assert!(ConfirmForm::parse(&vec![b'a'; MAX_FORM_BYTES]).is_some());
        assert_eq!(ConfirmForm::parse(&vec![b'a'; MAX_FORM_BYTES + 1]), None);
    }

    #[test]
    fn the_page_names_what_is_linked_and_posts_the_token() {
        let response = page(&request("uid_1"), "abcd");
        assert_eq!(response.status(), StatusCode::OK);
        let body = String::from_utf8_lossy(response.body().as_ref()).to_string();
        for expected in [
            "jane@example.com",
            "uid_1",
            "app.cloud66.com",
            r#"method="post""#,
            r#"action="/cloud66/link""#,
            r#"name="token" value="abcd""#,
        ] {
            assert!(body.contains(expected), "{expected} in {body}");
        }
        let policy = response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            policy.contains("form-action 'self' https://app.cloud66.com;"),
            "{policy}"
        );
    }

    #[test]
    fn the_browser_secret_cookie_is_host_prefixed_strict_and_read_back() {
        let mut response = Response::new(Body::Empty);
        let secret = "ef".repeat(BROWSER_SECRET_BYTES);
        set_browser_secret(&mut response, &secret);
        let cookie = response.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .to_string();
        assert!(cookie.starts_with("__Host-cloud66_link_confirm="), "{cookie}");
        assert!(
            cookie.contains("Max-Age=600; Path=/; HttpOnly; Secure; SameSite=Strict"),
            "{cookie}"
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{BROWSER_COOKIE}={secret}")).unwrap(),
        );
        assert_eq!(browser_secret(&headers), Some(secret));
        assert_eq!(refused_page().status(), StatusCode::FORBIDDEN);
    }
}
