//! Validation of `/cloud66/link`'s query: it comes from a browser, so every
//! parameter is checked, and `callback` must be an `https` URL on an allowed
//! host, or nobody is redirected anywhere.

use crate::model::canonical_email;
use reqwest::Url;

/// A validated link request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRequest {
    pub uid: String,
    /// Normalised.
    pub email: String,
    pub callback: Url,
}

/// Checks the three query parameters; every problem found is listed, in
/// words a person can act on.
pub fn parse_link_query(
    uid: Option<&str>,
    email: Option<&str>,
    callback: Option<&str>,
    allowed_hosts: &[String],
) -> Result<LinkRequest, Vec<String>> {
    let mut problems = Vec::new();
    let uid = uid.map(str::trim).unwrap_or("");
    if !(1..=128).contains(&uid.len())
        || !uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        problems.push("`uid` is missing or is not a Cloud 66 user id.".to_string());
    }
    let email = canonical_email(email.unwrap_or("")).unwrap_or_default();
    if email.is_empty() {
        problems.push("`email` is missing or is not a plain (ASCII) email address.".to_string());
    }
    let callback = match callback.map(Url::parse) {
        Some(Ok(url)) if is_allowed_callback(&url, allowed_hosts) => Some(url),
        _ => {
            problems.push("`callback` is missing or is not an https address on Cloud 66.".to_string());
            None
        }
    };
    match callback {
        Some(callback) if problems.is_empty() => Ok(LinkRequest {
            uid: uid.to_string(),
            email,
            callback,
        }),
        _ => Err(problems),
    }
}

/// `https`, no user name or password (`https://app.cloud66.com@evil.example/`
/// names the host `evil.example`), the default port, and a host that is one
/// of `allowed_hosts` exactly (so `app.cloud66.com.evil.example` is not).
fn is_allowed_callback(url: &Url, allowed_hosts: &[String]) -> bool {
    url.scheme() == "https"
        && url.username().is_empty()
        && url.password().is_none()
        && url.port().is_none()
        && url.host_str().is_some_and(|host| {
            allowed_hosts
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(host))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hosts() -> Vec<String> {
        vec!["app.cloud66.com".into()]
    }

    fn parse(uid: &str, email: &str, callback: &str) -> Result<LinkRequest, Vec<String>> {
        parse_link_query(Some(uid), Some(email), Some(callback), &hosts())
    }

    #[test]
    fn accepts_the_documented_redirect() {
        let request = parse("abc123", " Jon@Smith.com ", "https://app.cloud66.com/url").unwrap();
        assert_eq!(request.email, "jon@smith.com");
        assert_eq!(request.callback.as_str(), "https://app.cloud66.com/url");
        assert!(parse("abc123", "jon@smith.com", "https://APP.cloud66.com/url?x=1#y").is_ok());
    }

    #[test]
    fn refuses_callbacks_that_could_lead_elsewhere() {
        for callback in [
            "https://evil.example/url",
            "http://app.cloud66.com/url",
            "https://app.cloud66.com@evil.example/",
            "https://user:pass@app.cloud66.com/",
            "https://app.cloud66.com.evil.example/",
            "https://app-cloud66.com/",
            "https://evil.example\\@app.cloud66.com/",
            "https://app.cloud66.com:8443/",
            "//app.cloud66.com/url",
            "javascript:alert(1)",
            "/relative",
            "",
        ] {
            let problems = parse("abc123", "jon@smith.com", callback).unwrap_err();
            assert_eq!(problems.len(), 1, "{callback}");
            assert!(problems[0].contains("callback"), "{callback}");
        }
    }

    #[test]
    fn names_every_problem() {
        let problems = parse_link_query(None, Some("not-an-email"), None, &hosts()).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(parse("a b", "jon@smith.com", "https://app.cloud66.com/").is_err());
    }

    #[test]
    fn emails_follow_the_one_ascii_rule() {
        let problems = parse_link_query(
            Some("u1"),
            Some("\u{212A}im@corp.com"),
            Some("https://app.cloud66.com/"),
            &hosts(),
        )
        .unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("ASCII"), "{problems:?}");
        assert_eq!(
            parse("u1", " Jon@Smith.COM ", "https://app.cloud66.com/")
                .unwrap()
                .email,
            "jon@smith.com"
        );
    }

    proptest! {
        #[test]
        fn random_queries_never_panic_and_only_allowed_hosts_pass(
            uid in ".{0,40}", email in ".{0,40}", callback in ".{0,80}",
        ) {
            if let Ok(request) = parse(&uid, &email, &callback) {
                prop_assert_eq!(request.callback.host_str(), Some("app.cloud66.com"));
                prop_assert_eq!(request.callback.scheme(), "https");
            }
        }
    }
}
