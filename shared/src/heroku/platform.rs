//! This provider's calls to Heroku (docs/heroku.md): the OAuth token
//! endpoint (`{HEROKU_ID_URL}/oauth/token`), to exchange an add-on's grant
//! and refresh its tokens, and the Platform API (`{HEROKU_API_URL}`), to set
//! an add-on's config and mark it provisioned. Every call goes through the
//! shared outbound client: no redirect followed, `https` only (loopback
//! aside), bounded in time and size.

use crate::config::{self, ConfigError, Environment};
use crate::outbound::PlatformError;
use crate::refresh::{Fresh, SecretSource};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The Platform API's media type and version.
const PLATFORM_ACCEPT: &str = "application/vnd.heroku+json; version=3";
/// Longest access-token lifetime believed (Heroku's are 8 hours).
const MAX_TOKEN_SECONDS: i64 = 24 * 60 * 60;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HerokuError {
    /// Network trouble, time-outs, 5xx, 429: worth retrying later, not
    /// before `retry_after` seconds when Heroku said so.
    #[error("Heroku is unavailable: {reason}")]
    Unavailable {
        reason: String,
        retry_after: Option<u64>,
    },
    /// Any other 4xx: Heroku's word, kept for the operator.
    #[error("Heroku answered {status}: {message}")]
    Rejected { status: u16, message: String },
}

/// An add-on's OAuth tokens, as sealed on its resource (`super::tokens`).
#[derive(Clone, Serialize, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens(..)")
    }
}

/// What the token endpoint answered: the tokens and their lifetime.
#[derive(Debug, Clone)]
pub struct Issued {
    pub tokens: Tokens,
    pub expires_in: i64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    refresh_token: Option<String>,
    expires_in: Option<i64>,
}

/// `HEROKU_CLIENT_SECRET` and, during its rotation, the previous one: tried
/// when Heroku refuses the current.
struct ClientSecrets {
    current: Secret,
    previous: Option<Secret>,
}

impl ClientSecrets {
    fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            current: Secret::new(config::required(lookup, "HEROKU_CLIENT_SECRET")?),
            previous: config::optional(lookup, "HEROKU_CLIENT_SECRET_PREVIOUS").map(Secret::new),
        })
    }
}

#[derive(Clone)]
pub struct HerokuClient {
    http: reqwest::Client,
    api_url: String,
    id_url: String,
    secrets: Arc<Fresh<ClientSecrets>>,
}

impl HerokuClient {
    /// `HEROKU_API_URL` (default `https://api.heroku.com`), `HEROKU_ID_URL`
    /// (default `https://id.heroku.com`) and `HEROKU_CLIENT_SECRET`, which
    /// follows the secret.
    pub fn from_secret(source: Option<SecretSource>, environment: &Environment) -> Result<Self, ConfigError> {
        let lookup = environment.lookup();
        let url = |var: &'static str, default: &str| {
            config::outbound_base_url(
                var,
                config::optional(&lookup, var).unwrap_or_else(|| default.to_string()),
            )
        };
        Ok(Self {
            http: crate::outbound::platform_client(),
            api_url: url("HEROKU_API_URL", "https://api.heroku.com")?,
            id_url: url("HEROKU_ID_URL", "https://id.heroku.com")?,
            secrets: Arc::new(Fresh::new(source, environment, |environment| {
                ClientSecrets::from_lookup(&environment.lookup())
            })?),
        })
    }

    /// Exchanges an add-on's grant `code` (within its few minutes).
    pub async fn exchange(&self, code: &str) -> Result<Issued, HerokuError> {
        self.token(&[("grant_type", "authorization_code"), ("code", code)])
            .await
    }

    /// New tokens for `refresh_token` (before the access token ends).
    pub async fn refresh(&self, refresh_token: &str) -> Result<Issued, HerokuError> {
        let issued = self
            .token(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)])
            .await?;
        Ok(Issued {
            tokens: Tokens {
                // Heroku may keep the refresh token: keep ours then.
                refresh_token: Some(issued.tokens.refresh_token)
                    .filter(|token| !token.is_empty())
                    .unwrap_or_else(|| refresh_token.to_string()),
                ..issued.tokens
            },
            ..issued
        })
    }

    /// `POST {HEROKU_ID_URL}/oauth/token` with a form body, the client
    /// secret last; the previous secret is tried when Heroku refuses the
    /// current one (401, or 400 `invalid_client`).
    async fn token(&self, fields: &[(&str, &str)]) -> Result<Issued, HerokuError> {
        let secrets = self.secrets.get().await;
        let answer = self.token_with(fields, &secrets.current).await;
        let answer = match (answer, &secrets.previous) {
            (
                Err(HerokuError::Rejected {
                    status: 400 | 401, ..
                }),
                Some(previous),
            ) => {
                tracing::info!("Heroku refused the current client secret; trying the previous one");
                self.token_with(fields, previous).await
            }
            (answer, _) => answer,
        }?;
        let tokens: TokenAnswer = serde_json::from_slice(&answer).map_err(|_| HerokuError::Unavailable {
            reason: "the token answer is not the expected JSON".into(),
            retry_after: None,
        })?;
        Ok(Issued {
            tokens: Tokens {
                access_token: tokens.access_token,
                refresh_token: tokens.refresh_token.unwrap_or_default(),
            },
            expires_in: tokens.expires_in.unwrap_or(3600).clamp(60, MAX_TOKEN_SECONDS),
        })
    }

    async fn token_with(&self, fields: &[(&str, &str)], secret: &Secret) -> Result<Vec<u8>, HerokuError> {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("client_secret", secret.expose()));
        let request = self
            .http
            .post(format!("{}/oauth/token", self.id_url))
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form);
        send(request).await
    }

    /// `PATCH /addons/{uuid}/config` with every var (Heroku's names).
    pub async fn set_config(
        &self,
        uuid: &str,
        access_token: &str,
        config: &BTreeMap<String, String>,
    ) -> Result<(), HerokuError> {
        let vars: Vec<serde_json::Value> = config
            .iter()
            .map(|(name, value)| serde_json::json!({"name": name, "value": value}))
            .collect();
        let request = self
            .platform(
                reqwest::Method::PATCH,
                &format!("/addons/{uuid}/config"),
                access_token,
            )
            .json(&serde_json::json!({ "config": vars }));
        send(request).await.map(drop)
    }

    /// `POST /addons/{uuid}/actions/provision`: the add-on is ready.
    pub async fn mark_provisioned(&self, uuid: &str, access_token: &str) -> Result<(), HerokuError> {
        let request = self.platform(
            reqwest::Method::POST,
            &format!("/addons/{uuid}/actions/provision"),
            access_token,
        );
        send(request).await.map(drop)
    }

    fn platform(&self, method: reqwest::Method, path: &str, access_token: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.api_url))
            .header(reqwest::header::ACCEPT, PLATFORM_ACCEPT)
            .bearer_auth(access_token)
    }
}

/// Sends, and sorts the answer (`crate::outbound::send_to_platform`).
async fn send(request: reqwest::RequestBuilder) -> Result<Vec<u8>, HerokuError> {
    crate::outbound::send_to_platform(request)
        .await
        .map_err(|err| match err {
            PlatformError::Unavailable { reason, retry_after } => {
                HerokuError::Unavailable { reason, retry_after }
            }
            PlatformError::Rejected { status, message } => HerokuError::Rejected { status, message },
        })
}
