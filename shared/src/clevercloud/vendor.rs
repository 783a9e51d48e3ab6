//! Clever Cloud's vendor API (`CLEVERCLOUD_API_URL`, default
//! `https://api.clever-cloud.com/v2`), with the add-on's own Basic
//! credentials. Not usable during the provision call, so only the
//! asynchronous sync calls it.

use crate::config::{self, CleverCloudConfig, ConfigError, Environment};
use crate::model::ConfigMap;
use crate::refresh::{Fresh, SecretSource};
use crate::secret::{Rotating, Secret};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `GET /vendor/apps/{addonId}` (the fields this provider keeps).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorApp {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub owner_id: Option<String>,
    #[serde(default)]
    pub owner_email: Option<String>,
    #[serde(default)]
    pub owner_emails: Vec<String>,
    #[serde(default)]
    pub region: Option<String>,
}

/// One entry of `GET /vendor/apps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorAppSummary {
    pub addon_id: String,
    #[serde(default)]
    pub plan: Option<String>,
    #[serde(default)]
    pub owner_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum VendorError {
    /// Network trouble, time-outs, 5xx, 429: worth retrying later, not before
    /// `retry_after` seconds when the API said so (`Retry-After`).
    #[error("Clever Cloud's vendor API is unavailable: {reason}")]
    Unavailable {
        reason: String,
        retry_after: Option<u64>,
    },
    #[error("Clever Cloud's vendor API answered {status}: {message}")]
    Rejected { status: u16, message: String },
}

#[derive(Clone)]
pub struct VendorClient {
    http: reqwest::Client,
    base_url: String,
    user: String,
    passwords: Arc<Fresh<Passwords>>,
}

impl std::fmt::Debug for VendorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VendorClient")
            .field("base_url", &self.base_url)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// `ADDON_PASSWORD` and, during its rotation, `ADDON_PASSWORD_PREVIOUS`:
/// until Clever Cloud has the new manifest it knows only the previous one.
type Passwords = Rotating;

impl VendorClient {
    pub fn new(base_url: String, user: String, password: Secret) -> Self {
        Self::with_passwords(base_url, user, Rotating::new(password, None))
    }

    fn with_passwords(base_url: String, user: String, passwords: Passwords) -> Self {
        Self {
            http: crate::outbound::platform_client(),
            base_url,
            user,
            passwords: Arc::new(Fresh::fixed(passwords)),
        }
    }

    /// A client that, during a password rotation, tries `previous` when
    /// Clever Cloud refuses `current` with a 401.
    pub fn rotating(base_url: String, user: String, current: Secret, previous: Option<Secret>) -> Self {
        Self::with_passwords(base_url, user, Rotating::new(current, previous))
    }

    /// Re-reads the passwords with the rest of the secret (every
    /// `SECRETS_TTL_SECONDS`), so a rotation needs no redeploy.
    pub fn follow_secret(
        &mut self,
        source: Option<SecretSource>,
        environment: &Environment,
    ) -> Result<(), ConfigError> {
        self.passwords = Arc::new(Fresh::new(source, environment, |environment| {
            Ok(CleverCloudConfig::from_lookup(&environment.lookup())?.password)
        })?);
        Ok(())
    }

    /// `CLEVERCLOUD_API_URL` with the add-on's id and password.
    pub fn from_lookup(
        lookup: &impl Fn(&str) -> Option<String>,
        addon: &CleverCloudConfig,
    ) -> Result<Self, ConfigError> {
        let base_url = config::outbound_base_url(
            "CLEVERCLOUD_API_URL",
            config::optional(lookup, "CLEVERCLOUD_API_URL")
                .unwrap_or_else(|| "https://api.clever-cloud.com/v2".into()),
        )?;
        Ok(Self::with_passwords(
            base_url,
            addon.addon_id.clone(),
            addon.password.clone(),
        ))
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<Option<T>, VendorError> {
        let unreachable = |err: reqwest::Error| VendorError::Unavailable {
            reason: err.without_url().to_string(),
            retry_after: None,
        };
        let passwords = self.passwords.get().await;
        // The previous password's request is made before the first is sent:
        // a body can be cloned only while the builder is unsent.
        let with_previous = passwords.previous.as_ref().and_then(|previous| {
            request
                .try_clone()
                .map(|request| request.basic_auth(&self.user, Some(previous.expose())))
        });
        let mut response = request
            .basic_auth(&self.user, Some(passwords.current.expose()))
            .send()
            .await
            .map_err(unreachable)?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            if let Some(request) = with_previous {
                // During a password rotation Clever Cloud may still hold the
                // previous manifest (docs/operating.md, "Rotating secrets").
                tracing::info!("the vendor API refused the current password; trying the previous one");
                response = request.send().await.map_err(unreachable)?;
            }
        }
        let status = response.status();
        let retry_after = crate::outbound::retry_after(&response);
        let body = crate::outbound::read_text(response, crate::outbound::MAX_PLATFORM_ANSWER_BYTES)
            .await
            .map_err(|err| VendorError::Unavailable {
                reason: err.to_string(),
                retry_after: None,
            })?;
        // A redirect is not followed (crate::outbound): no answer, retried.
        if status.is_server_error()
            || status.is_redirection()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        {
            return Err(VendorError::Unavailable {
                reason: format!("HTTP {status}"),
                retry_after,
            });
        }
        if !status.is_success() {
            let message: String = body.chars().take(300).collect();
            return Err(VendorError::Rejected {
                status: status.as_u16(),
                message,
            });
        }
        if body.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&body)
            .map(Some)
            .map_err(|err| VendorError::Rejected {
                status: status.as_u16(),
                message: format!("unreadable body: {err}"),
            })
    }

    /// `GET /vendor/apps/{addonId}`
    pub async fn app(&self, addon_id: &str) -> Result<VendorApp, VendorError> {
        let url = format!("{}/vendor/apps/{}", self.base_url, urlencode(addon_id));
        self.call(self.http.get(url)).await?.ok_or(VendorError::Rejected {
            status: 200,
            message: "empty body".into(),
        })
    }

    /// `PUT /vendor/apps/{addonId}` with `{"config": {...}}`.
    pub async fn put_config(&self, addon_id: &str, config: &ConfigMap) -> Result<(), VendorError> {
        let url = format!("{}/vendor/apps/{}", self.base_url, urlencode(addon_id));
        let body = serde_json::json!({ "config": config });
        self.call::<serde_json::Value>(self.http.put(url).json(&body))
            .await?;
        Ok(())
    }

    /// Every add-on Clever Cloud knows for this provider, paging with `offset`
    /// until a page comes back empty.
    pub async fn all_apps(&self) -> Result<Vec<VendorAppSummary>, VendorError> {
        const MAX_PAGES: usize = 10_000;
        let mut apps = Vec::new();
        for _ in 0..MAX_PAGES {
            let url = format!("{}/vendor/apps", self.base_url);
            let page: Vec<VendorAppSummary> = self
                .call(self.http.get(url).query(&[("offset", apps.len())]))
                .await?
                .unwrap_or_default();
            if page.is_empty() {
                return Ok(apps);
            }
            apps.extend(page);
        }
        Err(VendorError::Unavailable {
            reason: "more pages than expected".into(),
            retry_after: None,
        })
    }
}

fn urlencode(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::test_server;

    #[tokio::test]
    async fn a_redirect_is_a_retryable_no_answer_and_the_config_goes_nowhere_else() {
        let elsewhere = test_server::serve(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec()).await;
        let api = test_server::serve(test_server::redirect_to(&format!("{}/stolen", elsewhere.url))).await;
        let client = VendorClient::new(api.url.clone(), "addon-name".into(), Secret::new("password"));
        let config = ConfigMap(std::collections::BTreeMap::from([(
            "A_TOKEN".into(),
            "secret".into(),
        )]));
        let err = client.put_config("addon_1", &config).await.unwrap_err();
        assert!(matches!(err, VendorError::Unavailable { .. }), "{err:?}");
        assert!(elsewhere.requests().is_empty());
        let huge = test_server::serve(test_server::chunked(
            crate::outbound::MAX_PLATFORM_ANSWER_BYTES + 1,
        ))
        .await;
        let client = VendorClient::new(huge.url.clone(), "addon-name".into(), Secret::new("password"));
        let err = client.app("addon_1").await.unwrap_err();
        assert!(matches!(err, VendorError::Unavailable { .. }), "{err:?}");
    }

    #[test]
    fn following_a_secret_that_cannot_make_the_credentials_is_refused() {
        let mut client = VendorClient::new(
            "https://api.example/v2".into(),
            "addon-name".into(),
            Secret::new("pw"),
        );
        // No ADDON_ID or ADDON_PASSWORD anywhere: a cold start stops, naming one.
        let err = client
            .follow_secret(None, &Environment::default())
            .expect_err("nothing to make the credentials from");
        assert!(err.var.starts_with("ADDON_"), "{err}");
    }

    #[test]
    fn debug_output_names_the_api_and_never_a_password() {
        let client = VendorClient::rotating(
            "https://api.example/v2".into(),
            "addon-name".into(),
            Secret::new("current-password-xyz"),
            Some(Secret::new("previous-password-xyz")),
        );
        let printed = format!("{client:?}");
        assert!(
            printed.contains("https://api.example/v2") && printed.contains("addon-name"),
            "{printed}"
        );
        assert!(!printed.contains("password-xyz"), "{printed}");
    }

    #[tokio::test]
    async fn a_401_with_the_current_password_is_tried_again_with_the_previous_one() {
        let refused = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec();
        let app = br#"{"id":"addon_1","name":"app"}"#;
        let found = [
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                app.len()
            )
            .into_bytes(),
            app.to_vec(),
        ]
        .concat();
        let api = test_server::serve_each(vec![refused.clone(), found]).await;
        let client = VendorClient::rotating(
            api.url.clone(),
            "addon-name".into(),
            Secret::new("new-password"),
            Some(Secret::new("old-password")),
        );
        assert_eq!(client.app("addon_1").await.unwrap().name.as_deref(), Some("app"));
        let sent: Vec<String> = api.heads().iter().map(|head| authorization(head)).collect();
        assert_eq!(sent, [basic("new-password"), basic("old-password")]);

        // Without a previous password a 401 is final, and asked once.
        let api = test_server::serve_each(vec![refused.clone(), refused]).await;
        let client = VendorClient::new(api.url.clone(), "addon-name".into(), Secret::new("new-password"));
        let err = client.app("addon_1").await.unwrap_err();
        assert!(
            matches!(err, VendorError::Rejected { status: 401, .. }),
            "{err:?}"
        );
        assert_eq!(api.requests().len(), 1);
    }

    fn basic(password: &str) -> String {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("addon-name:{password}"))
        )
    }

    fn authorization(head: &str) -> String {
        head.lines()
            .find_map(|line| {
                line.strip_prefix("authorization: ")
                    .or_else(|| line.strip_prefix("Authorization: "))
            })
            .unwrap_or_default()
            .to_string()
    }
}
