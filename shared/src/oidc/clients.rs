//! The vendor's apps registered as OpenID Connect clients (`OIDC_CLIENTS`, a
//! JSON array in the deployment's secret; docs/oidc.md "Registering your
//! app"): who may ask for a sign-in, where the answer may go, and where a
//! marketplace sign-in hands the customer over. A client secret rotates
//! with an overlap: `client_secret_previous` is accepted beside the new one.

use crate::config::{self, ConfigError};
use crate::secret::Secret;
use serde::Deserialize;

const VAR: &str = "OIDC_CLIENTS";
/// A client secret shorter than this is refused at start: it would be
/// guessable against the token endpoint.
const MIN_SECRET_CHARS: usize = 16;

/// One registered app.
#[derive(Debug, Clone)]
pub struct OidcClient {
    pub id: String,
    secret: Secret,
    /// Still accepted while the app moves to `secret` (a rotation's overlap).
    previous_secret: Option<Secret>,
    /// Compared exactly (RFC 6749 §3.1.2.3, OIDC Core §3.1.2.1).
    pub redirect_uris: Vec<String>,
    /// Where a marketplace sign-in sends the customer to start the code flow
    /// (OIDC Core §4, third-party-initiated login).
    pub initiate_login_uri: Option<String>,
    /// The `target_link_uri` sent there: where the app should land the
    /// customer; the app's origin unless set.
    pub target_link_uri: Option<String>,
}

impl OidcClient {
    /// Whether `secret` is this client's (or, during a rotation, its
    /// previous one), each compared in constant time.
    pub fn secret_matches(&self, secret: &str) -> bool {
        let previous = self
            .previous_secret
            .as_ref()
            .is_some_and(|previous| previous.matches(secret.as_bytes()));
        self.secret.matches(secret.as_bytes()) | previous
    }

    pub fn allows_redirect_uri(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|registered| registered == uri)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    client_id: String,
    client_secret: String,
    #[serde(default)]
    client_secret_previous: Option<String>,
    redirect_uris: Vec<String>,
    #[serde(default)]
    initiate_login_uri: Option<String>,
    #[serde(default)]
    target_link_uri: Option<String>,
}

/// Every registered app.
#[derive(Debug, Clone, Default)]
pub struct Clients(Vec<OidcClient>);

impl Clients {
    /// `OIDC_CLIENTS`, or no client when it is unset.
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        match config::optional(lookup, VAR) {
            Some(text) => Self::from_json(&text),
            None => Ok(Self::default()),
        }
    }

    /// Parses and checks the registrations; any fault names the client.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let entries: Vec<Entry> = serde_json::from_str(text).map_err(|err| {
            ConfigError::new(
                VAR,
                format!(
                    "must be a JSON array of {{client_id, client_secret, client_secret_previous?, redirect_uris, initiate_login_uri?, target_link_uri?}}: {err}"
                ),
            )
        })?;
        let mut clients: Vec<OidcClient> = Vec::with_capacity(entries.len());
        for entry in entries {
            let id = entry.client_id.trim().to_string();
            let fault = |problem: String| ConfigError::new(VAR, format!("client {id:?}: {problem}"));
            if id.is_empty() || id.contains(':') || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(fault("client_id must be non-empty, without spaces or ':'".into()));
            }
            if clients.iter().any(|client| client.id == id) {
                return Err(fault("client_id is registered twice".into()));
            }
            let previous = entry
                .client_secret_previous
                .filter(|previous| !previous.is_empty());
            for secret in std::iter::once(&entry.client_secret).chain(previous.as_ref()) {
                if secret.chars().count() < MIN_SECRET_CHARS {
                    return Err(fault(format!(
                        "client_secret and client_secret_previous must be at least {MIN_SECRET_CHARS} characters"
                    )));
                }
            }
            if entry.redirect_uris.is_empty() {
                return Err(fault("redirect_uris must list at least one URI".into()));
            }
            for uri in entry
                .redirect_uris
                .iter()
                .chain(entry.initiate_login_uri.iter())
                .chain(entry.target_link_uri.iter())
            {
                check_app_uri(uri).map_err(|problem| fault(format!("{uri:?} {problem}")))?;
            }
            clients.push(OidcClient {
                id,
                secret: Secret::new(entry.client_secret),
                previous_secret: previous.map(Secret::new),
                redirect_uris: entry.redirect_uris,
                initiate_login_uri: entry.initiate_login_uri,
                target_link_uri: entry.target_link_uri,
            });
        }
        Ok(Self(clients))
    }

    pub fn get(&self, client_id: &str) -> Option<&OidcClient> {
        self.0.iter().find(|client| client.id == client_id)
    }

    /// The client authenticated by `client_id` and `secret`, if they match.
    pub fn authenticate(&self, client_id: &str, secret: &str) -> Option<&OidcClient> {
        let client = self.get(client_id)?;
        client.secret_matches(secret).then_some(client)
    }

    /// The app a marketplace sign-in hands the customer to: the first
    /// client registered with an `initiate_login_uri`.
    pub fn handoff(&self) -> Option<&OidcClient> {
        self.0.iter().find(|client| client.initiate_login_uri.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An app's URI: absolute, `https` (plain `http` only on loopback, for
/// local development), with no fragment (RFC 6749 §3.1.2).
fn check_app_uri(uri: &str) -> Result<(), &'static str> {
    let parsed = reqwest::Url::parse(uri).map_err(|_| "is not an absolute URI")?;
    if parsed.fragment().is_some() {
        return Err("must not have a fragment");
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if config::is_loopback(&parsed) => Ok(()),
        _ => Err("must be https (plain http only on localhost, 127.0.0.0/8 or [::1])"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "app-secret-0123456789";

    fn registration(extra: &str) -> String {
        format!(
            r#"[{{"client_id":"app","client_secret":"{SECRET}","redirect_uris":["https://app.example.com/cb"]{extra}}}]"#
        )
    }

    #[test]
    fn a_registered_client_authenticates_with_its_secret_only() {
        let clients = Clients::from_json(&registration("")).unwrap();
        assert_eq!(
            clients.authenticate("app", SECRET).map(|c| c.id.as_str()),
            Some("app")
        );
        assert!(clients.authenticate("app", "app-secret-0123456780").is_none());
        assert!(clients.authenticate("other", SECRET).is_none());
        let client = clients.get("app").unwrap();
        assert!(client.allows_redirect_uri("https://app.example.com/cb"));
        assert!(!client.allows_redirect_uri("https://app.example.com/cb/"));
        assert!(!client.allows_redirect_uri("https://app.example.com/cb?x=1"));
        assert!(clients.handoff().is_none());
    }

    #[test]
    fn during_a_rotation_the_previous_client_secret_is_accepted_too() {
        let text = format!(
            r#"[{{"client_id":"app","client_secret":"{SECRET}","client_secret_previous":"old-secret-0123456789","redirect_uris":["https://a.example/cb"]}}]"#
        );
        let clients = Clients::from_json(&text).unwrap();
        assert!(clients.authenticate("app", SECRET).is_some());
        assert!(clients.authenticate("app", "old-secret-0123456789").is_some());
        assert!(clients.authenticate("app", "old-secret-012345678").is_none());
        let short = text.replace("old-secret-0123456789", "old");
        assert!(Clients::from_json(&short)
            .unwrap_err()
            .to_string()
            .contains("at least 16"));
        // Emptied once the rotation is over: only the new secret.
        let over = text.replace("old-secret-0123456789", "");
        let clients = Clients::from_json(&over).unwrap();
        assert!(clients.authenticate("app", SECRET).is_some());
        assert!(clients.authenticate("app", "").is_none());
    }

    #[test]
    fn a_secret_of_16_characters_is_enough_and_one_given_twice_still_matches() {
        let text = r#"[{"client_id":"app","client_secret":"sixteen-chars-ok","client_secret_previous":"sixteen-chars-ok","redirect_uris":["https://a.example/cb"]}]"#;
        let clients = Clients::from_json(text).unwrap();
        assert!(clients.authenticate("app", "sixteen-chars-ok").is_some());
    }

    #[test]
    fn the_handoff_is_the_first_client_with_an_initiate_login_uri() {
        let text = format!(
            r#"[{{"client_id":"a","client_secret":"{SECRET}","redirect_uris":["https://a.example/cb"]}},
               {{"client_id":"b","client_secret":"{SECRET}","redirect_uris":["https://b.example/cb"],"initiate_login_uri":"https://b.example/login"}}]"#
        );
        let clients = Clients::from_json(&text).unwrap();
        assert_eq!(clients.handoff().map(|c| c.id.as_str()), Some("b"));
    }

    #[test]
    fn bad_registrations_fail_naming_the_variable_and_the_client() {
        for (text, says) in [
            ("{}".to_string(), "JSON array"),
            (registration(r#","extra":1"#), "JSON array"),
            (
                r#"[{"client_id":"app","client_secret":"short","redirect_uris":["https://a.example/cb"]}]"#
                    .into(),
                "at least 16",
            ),
            (
                format!(r#"[{{"client_id":"app","client_secret":"{SECRET}","redirect_uris":[]}}]"#),
                "at least one",
            ),
            (
                format!(
                    r#"[{{"client_id":"app","client_secret":"{SECRET}","redirect_uris":["http://app.example.com/cb"]}}]"#
                ),
                "must be https",
            ),
            (
                format!(
                    r#"[{{"client_id":"app","client_secret":"{SECRET}","redirect_uris":["https://a.example/cb#x"]}}]"#
                ),
                "fragment",
            ),
            (
                format!(r#"[{{"client_id":"app","client_secret":"{SECRET}","redirect_uris":["/cb"]}}]"#),
                "absolute",
            ),
            (
                registration(r#","initiate_login_uri":"http://evil.example/login""#),
                "must be https",
            ),
            (
                format!(
                    r#"[{{"client_id":"a","client_secret":"{SECRET}","redirect_uris":["https://a.example/cb"]}},{{"client_id":"a","client_secret":"{SECRET}","redirect_uris":["https://a.example/cb"]}}]"#
                ),
                "twice",
            ),
            (
                format!(
                    r#"[{{"client_id":"a b","client_secret":"{SECRET}","redirect_uris":["https://a.example/cb"]}}]"#
                ),
                "without spaces",
            ),
            (
                format!(
                    r#"[{{"client_id":"a:b","client_secret":"{SECRET}","redirect_uris":["https://a.example/cb"]}}]"#
                ),
                "without spaces or ':'",
            ),
            (
                format!(
                    r#"[{{"client_id":" ","client_secret":"{SECRET}","redirect_uris":["https://a.example/cb"]}}]"#
                ),
                "non-empty",
            ),
        ] {
            let err = Clients::from_json(&text).expect_err(&text).to_string();
            assert!(
                err.contains("OIDC_CLIENTS") && err.contains(says),
                "{text}: {err}"
            );
            assert!(!err.contains(SECRET), "{err}");
        }
    }

    #[test]
    fn loopback_http_is_allowed_for_local_apps() {
        let text = format!(
            r#"[{{"client_id":"app","client_secret":"{SECRET}","redirect_uris":["http://127.0.0.1:9002/app/callback","http://localhost:9002/cb"]}}]"#
        );
        assert!(Clients::from_json(&text).is_ok());
        let unset = Clients::from_lookup(&|_: &str| None).unwrap();
        assert!(unset.is_empty());
    }
}
