//! Cloudmore's Systems API (docs/cloudmore.md): an OAuth 2.0 client
//! using the password grant, with JWT bearer tokens cached until shortly
//! before they expire, used to keep the vendor's customer organisations in
//! its Cloudmore reseller account.
//!
//! Enabled only when `CLOUDMORE_CLIENT_SECRET`, `CLOUDMORE_USERNAME`,
//! `CLOUDMORE_PASSWORD` and `CLOUDMORE_RESELLER_ID` are set. The secret and
//! the password never appear in a log line or an error.

use crate::config::{self, ConfigError, Environment};
use crate::refresh::{Fresh, SecretSource};
use crate::secret::{Rotating, Secret};
use reqwest::{Method, StatusCode};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Cloudmore's public client id for the password grant.
pub const CLIENT_ID: &str = "ro.customer.client";
/// A token is replaced this long before Cloudmore says it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// Cloudmore's tokens live about 24 hours; a longer claim is not believed.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// How the client credentials travel to the token endpoint
/// (`CLOUDMORE_CLIENT_AUTH`): Cloudmore's sample code puts them in the form,
/// its docs in HTTP Basic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Form,
    Basic,
}

#[derive(Debug, Clone)]
pub struct CloudmoreConfig {
    pub base_url: String,
    /// With the password, during a rotation (`CLOUDMORE_CLIENT_SECRET_PREVIOUS`,
    /// `CLOUDMORE_PASSWORD_PREVIOUS`), the previous values are tried when
    /// Cloudmore refuses the current ones, so the secret can change before
    /// Cloudmore does.
    pub client_secret: Rotating,
    pub username: String,
    pub password: Rotating,
    pub reseller_id: String,
    pub client_auth: ClientAuth,
}

impl CloudmoreConfig {
    /// `None` when none of the Cloudmore variables is set; an error naming
    /// the first missing one when only some are.
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        const REQUIRED: [&str; 4] = [
            "CLOUDMORE_CLIENT_SECRET",
            "CLOUDMORE_USERNAME",
            "CLOUDMORE_PASSWORD",
            "CLOUDMORE_RESELLER_ID",
        ];
        if REQUIRED.iter().all(|var| config::optional(lookup, var).is_none()) {
            return Ok(None);
        }
        let client_auth = match config::optional(lookup, "CLOUDMORE_CLIENT_AUTH").as_deref() {
            None | Some("form") => ClientAuth::Form,
            Some("basic") => ClientAuth::Basic,
            Some(_) => {
                return Err(ConfigError::new(
                    "CLOUDMORE_CLIENT_AUTH",
                    "must be `form` or `basic`",
                ))
            }
        };
        let reseller_id = config::required(lookup, "CLOUDMORE_RESELLER_ID")?;
        if !reseller_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(ConfigError::new(
                "CLOUDMORE_RESELLER_ID",
                "must be a Cloudmore id (letters, digits, '-')",
            ));
        }
        Ok(Some(Self {
            base_url: config::outbound_base_url(
                "CLOUDMORE_API_URL",
                config::optional(lookup, "CLOUDMORE_API_URL")
                    .unwrap_or_else(|| "https://api.cloudmore.com".into()),
            )?,
            client_secret: config::rotating(
                lookup,
                "CLOUDMORE_CLIENT_SECRET",
                "CLOUDMORE_CLIENT_SECRET_PREVIOUS",
            )?,
            username: config::required(lookup, "CLOUDMORE_USERNAME")?,
            password: config::rotating(lookup, "CLOUDMORE_PASSWORD", "CLOUDMORE_PASSWORD_PREVIOUS")?,
            reseller_id,
            client_auth,
        }))
    }
}

/// What can go wrong. The four documented token errors carry the document's
/// advice.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CloudmoreError {
    #[error(
        "Cloudmore token request refused (invalid_grant): verify that the username and password are correct"
    )]
    InvalidGrant,
    #[error("Cloudmore token request refused (invalid_scope): verify that the POST parameter \"scope\" has the correct value")]
    InvalidScope,
    #[error("Cloudmore token request refused (unsupported_grant_type): verify that the POST parameter \"grant_type\" has the correct value")]
    UnsupportedGrantType,
    #[error("Cloudmore token request refused (invalid_client): verify that the POST parameters \"client_secret\" and \"client_id\" have correct values")]
    InvalidClient,
    #[error("Cloudmore token request failed: {0}")]
    Token(String),
    /// Network trouble, time-outs, 5xx, 429: worth retrying later.
    #[error("Cloudmore is unavailable: {0}")]
    Unavailable(String),
    #[error("Cloudmore answered {status}: {message}")]
    Api { status: u16, message: String },
}

struct CachedToken {
    value: Secret,
    replace_after: Instant,
}

/// The client; build it once (at cold start) so its token is reused across
/// invocations of a warm function.
pub struct CloudmoreClient {
    http: reqwest::Client,
    config: Fresh<CloudmoreConfig>,
    token: Mutex<Option<CachedToken>>,
}

impl CloudmoreClient {
    pub fn new(config: CloudmoreConfig) -> Self {
        Self::following(Fresh::fixed(config))
    }

    /// A client whose credentials follow the secret (re-read every
    /// `SECRETS_TTL_SECONDS`), or `None` when Cloudmore is not configured.
    /// A re-read that turns Cloudmore off keeps the credentials in hand
    /// until the next cold start.
    pub fn from_secret(
        source: Option<SecretSource>,
        environment: &Environment,
    ) -> Result<Option<Self>, ConfigError> {
        if CloudmoreConfig::from_lookup(&environment.lookup())?.is_none() {
            return Ok(None);
        }
        let config = Fresh::new(source, environment, |environment| {
            CloudmoreConfig::from_lookup(&environment.lookup())?.ok_or_else(|| {
                ConfigError::new(
                    "CLOUDMORE_CLIENT_SECRET",
                    "is no longer set; Cloudmore stays on until the next cold start",
                )
            })
        })?;
        Ok(Some(Self::following(config)))
    }

    fn following(config: Fresh<CloudmoreConfig>) -> Self {
        Self {
            http: crate::outbound::platform_client(),
            config,
            token: Mutex::new(None),
        }
    }

    /// A valid bearer token, from the cache or freshly requested.
    async fn token(&self) -> Result<Secret, CloudmoreError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| Instant::now() < t.replace_after) {
            return Ok(token.value.clone());
        }
        let fresh = self.request_token().await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    /// A token for the current credentials or, when Cloudmore refuses
    /// them (`invalid_grant`, `invalid_client`) and a rotation is under way,
    /// for the previous ones.
    async fn request_token(&self) -> Result<CachedToken, CloudmoreError> {
        let config = self.config.get().await;
        let current = self
            .request_token_with(&config, &config.client_secret.current, &config.password.current)
            .await;
        match current {
            Err(CloudmoreError::InvalidGrant | CloudmoreError::InvalidClient)
                if config.client_secret.previous.is_some() || config.password.previous.is_some() =>
            {
                tracing::info!("Cloudmore refused the current credentials; trying the previous ones");
                let secret = config.client_secret.previous_or_current();
                let password = config.password.previous_or_current();
                self.request_token_with(&config, secret, password).await
            }
            other => other,
        }
    }

    /// `POST /connect/token` with the password grant, exactly as documented.
    async fn request_token_with(
        &self,
        config: &CloudmoreConfig,
        client_secret: &Secret,
        password: &Secret,
    ) -> Result<CachedToken, CloudmoreError> {
        let mut form = vec![
            ("grant_type", "password"),
            ("scope", "api"),
            ("username", config.username.as_str()),
            ("password", password.expose()),
        ];
        let mut request = self.http.post(format!("{}/connect/token", config.base_url));
        match config.client_auth {
            ClientAuth::Form => {
                form.push(("client_id", CLIENT_ID));
                form.push(("client_secret", client_secret.expose()));
            }
            ClientAuth::Basic => request = request.basic_auth(CLIENT_ID, Some(client_secret.expose())),
        }
        let response = request
            .form(&form)
            .send()
            .await
            .map_err(|err| CloudmoreError::Unavailable(err.without_url().to_string()))?;
        let status = response.status();
        // Read leniently: a 5xx's HTML is sorted by status below.
        let body: serde_json::Value = serde_json::from_slice(&read_body(response).await?).unwrap_or_default();
        if status == StatusCode::BAD_REQUEST {
            return Err(match body["error"].as_str() {
                Some("invalid_grant") => CloudmoreError::InvalidGrant,
                Some("invalid_scope") => CloudmoreError::InvalidScope,
                Some("unsupported_grant_type") => CloudmoreError::UnsupportedGrantType,
                Some("invalid_client") => CloudmoreError::InvalidClient,
                other => CloudmoreError::Token(format!("400 {}", other.unwrap_or("without an error code"))),
            });
        }
        // A redirect is not followed (crate::outbound): no answer, retried.
        if status.is_server_error() || status.is_redirection() {
            return Err(CloudmoreError::Unavailable(format!(
                "token endpoint answered {status}"
            )));
        }
        let (Some(token), Some(expires_in)) = (body["access_token"].as_str(), body["expires_in"].as_u64())
        else {
            return Err(CloudmoreError::Token(format!(
                "{status} without access_token and expires_in"
            )));
        };
        Ok(CachedToken {
            value: Secret::new(token),
            replace_after: replace_after(Instant::now(), expires_in),
        })
    }

    /// Calls the API with the bearer token; a 401 (token invalid or expired)
    /// gets one fresh token and one retry.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response, CloudmoreError> {
        for attempt in 0..2 {
            let token = self.token().await?;
            let base_url = self.config.get().await.base_url.clone();
            let mut request = self
                .http
                .request(method.clone(), format!("{base_url}{path}"))
                .bearer_auth(token.expose());
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request
                .send()
                .await
                .map_err(|err| CloudmoreError::Unavailable(err.without_url().to_string()))?;
            match response.status() {
                StatusCode::UNAUTHORIZED if attempt == 0 => self.forget_token().await,
                status
                    if status.is_server_error()
                        || status.is_redirection()
                        || status == StatusCode::TOO_MANY_REQUESTS =>
                {
                    return Err(CloudmoreError::Unavailable(format!(
                        "{method} {path} answered {status}"
                    )))
                }
                status if !status.is_success() => {
                    let message: String = crate::outbound::read_text(response, MAX_MESSAGE_BYTES)
                        .await
                        .unwrap_or_default()
                        .chars()
                        .take(300)
                        .collect();
                    return Err(CloudmoreError::Api {
                        status: status.as_u16(),
                        message,
                    });
                }
                _ => return Ok(response),
            }
        }
        Err(CloudmoreError::Api {
            status: 401,
            message: "a fresh token was refused too".into(),
        })
    }

    async fn organizations_path(&self) -> String {
        format!(
            "/api/resellers/{}/Organizations",
            self.config.get().await.reseller_id
        )
    }

    /// The id of the organisation named `name`, creating it if the reseller
    /// has none: a retry after a lost reply finds the one created before.
    pub async fn find_or_create_organization(
        &self,
        name: &str,
        email: Option<&str>,
    ) -> Result<String, CloudmoreError> {
        let path = self.organizations_path().await;
        let list = read_json(self.call(Method::GET, &path, None).await?, "organisation list").await?;
        let existing = list
            .as_array()
            .into_iter()
            .flatten()
            .find(|org| field(org, "Name") == Some(name));
        if let Some(id) = existing.and_then(|org| field(org, "Id")) {
            return Ok(id.to_string());
        }
        let mut body = serde_json::json!({ "Name": name });
        if let Some(email) = email {
            body["Email"] = email.into();
        }
        let response = self.call(Method::POST, &path, Some(&body)).await?;
        // A 201 names the new organisation in `Location`; fall back on the body's id.
        let from_location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|location| location.trim_end_matches('/').rsplit('/').next())
            .filter(|id| !id.is_empty())
            .map(str::to_string);
        if let Some(id) = from_location {
            return Ok(id);
        }
        let created = read_json(response, "new organisation").await?;
        field(&created, "Id")
            .map(str::to_string)
            .ok_or(CloudmoreError::Api {
                status: 201,
                message: "the new organisation's id is in neither Location nor the body".into(),
            })
    }
}

/// When to stop using a token the server said lives `expires_in` seconds:
/// a little before that, and never later than [`MAX_TOKEN_LIFETIME`] from
/// `now`, whatever number the server sends (no arithmetic on it can overflow).
fn replace_after(now: Instant, expires_in: u64) -> Instant {
    let lifetime = Duration::from_secs(expires_in)
        .min(MAX_TOKEN_LIFETIME)
        .saturating_sub(EXPIRY_MARGIN);
    now.checked_add(lifetime).unwrap_or(now)
}

/// The most of an error message that is read.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// An answer's body, within [`crate::outbound::MAX_PLATFORM_ANSWER_BYTES`].
async fn read_body(response: reqwest::Response) -> Result<Vec<u8>, CloudmoreError> {
    crate::outbound::read_limited(response, crate::outbound::MAX_PLATFORM_ANSWER_BYTES)
        .await
        .map_err(|err| CloudmoreError::Unavailable(err.to_string()))
}

/// A successful answer's JSON; unreadable JSON is an error, never taken for
/// an empty answer (an empty organisation list would create a duplicate).
async fn read_json(response: reqwest::Response, what: &str) -> Result<serde_json::Value, CloudmoreError> {
    let status = response.status().as_u16();
    serde_json::from_slice(&read_body(response).await?).map_err(|err| CloudmoreError::Api {
        status,
        message: format!("unreadable {what}: {err}"),
    })
}

/// A string field, whatever the case of its name (`Id`, `id`).
fn field<'a>(value: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    value
        .as_object()?
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .and_then(|(_, value)| value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_follows_the_secret_only_when_cloudmore_is_configured() {
        assert!(CloudmoreClient::from_secret(None, &Environment::default())
            .unwrap()
            .is_none());
        // Half a configuration (the secret's password, no user name or
        // reseller) stops the function, naming what is missing.
        let half = Environment::from_part_string(
            crate::secret_parts::Part::Platforms,
            r#"{"CLOUDMORE_PASSWORD": "pw"}"#,
        )
        .unwrap();
        let err = CloudmoreClient::from_secret(None, &half)
            .err()
            .expect("half a configuration");
        assert!(err.var.starts_with("CLOUDMORE_"), "{err}");
    }
    use crate::outbound::test_server;

    #[tokio::test]
    async fn a_redirected_token_request_is_retryable_and_its_credentials_go_nowhere_else() {
        let elsewhere = test_server::serve(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec()).await;
        let cloudmore =
            test_server::serve(test_server::redirect_to(&format!("{}/stolen", elsewhere.url))).await;
        let lookup = |name: &str| match name {
            "CLOUDMORE_API_URL" => Some(cloudmore.url.clone()),
            "CLOUDMORE_CLIENT_SECRET" | "CLOUDMORE_PASSWORD" => Some("secret".into()),
            "CLOUDMORE_USERNAME" => Some("admin".into()),
            "CLOUDMORE_RESELLER_ID" => Some("reseller-1".into()),
            _ => None,
        };
        let client = CloudmoreClient::new(CloudmoreConfig::from_lookup(&lookup).unwrap().unwrap());
        let err = client.find_or_create_organization("Org", None).await.unwrap_err();
        assert!(matches!(err, CloudmoreError::Unavailable(_)), "{err:?}");
        assert_eq!(cloudmore.requests(), ["POST /connect/token HTTP/1.1"]);
        assert!(elsewhere.requests().is_empty());
    }

    #[test]
    fn token_lifetimes_are_clamped_and_never_overflow() {
        let now = Instant::now();
        assert_eq!(replace_after(now, 3600), now + Duration::from_secs(3540));
        let day = now + MAX_TOKEN_LIFETIME - EXPIRY_MARGIN;
        assert_eq!(replace_after(now, 24 * 60 * 60), day);
        assert_eq!(replace_after(now, 24 * 60 * 60 + 1), day);
        assert_eq!(replace_after(now, 1 << 63), day);
        assert_eq!(replace_after(now, u64::MAX), day);
        assert_eq!(
            replace_after(now, 30),
            now,
            "shorter than the margin: replace at once"
        );
    }
}
