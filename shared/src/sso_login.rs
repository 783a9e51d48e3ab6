//! The `sso-login` function: its configuration and routes, over the
//! sessions kernel ([`crate::signin`]) and each platform's own sign-in.

use crate::clevercloud::sso::{self as clevercloud_sso, CleverCloudSso};
use crate::cloud66::sso::{self as cloud66_sso, Cloud66Sso};
use crate::config::{self, ConfigError};
use crate::html;
use crate::refresh::{Fresh, SecretSource};
use crate::signin::{Sessions, SignInError};
use crate::store::{AccountStore, DynamoStore, ResourceReader, SessionStore};
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use std::convert::Infallible;

/// Everything the `sso-login` function needs, built once at cold start; the
/// keys follow the secret (`crate::refresh`), so a salt or UID replaced in
/// it stops verifying within `SECRETS_TTL_SECONDS`.
pub struct SignInApi<S> {
    pub sessions: Sessions<S>,
    keys: Fresh<SignInKeys>,
}

/// What verifies each platform's sign-in.
pub struct SignInKeys {
    pub clevercloud: CleverCloudSso,
    /// `None` when Cloud 66 SSO is not configured.
    pub cloud66: Option<Cloud66Sso>,
}

impl SignInKeys {
    /// `ADDON_SSO_SALT`, `SSO_MAX_AGE_SECONDS` and the `CLOUD66_*` variables.
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            clevercloud: CleverCloudSso::from_lookup(lookup)?,
            cloud66: Cloud66Sso::from_lookup(lookup)?,
        })
    }
}

impl<S> SignInApi<S> {
    /// With fixed keys (tests, or a deployment without a secret).
    pub fn new(sessions: Sessions<S>, clevercloud: CleverCloudSso, cloud66: Option<Cloud66Sso>) -> Self {
        Self {
            sessions,
            keys: Fresh::fixed(SignInKeys { clevercloud, cloud66 }),
        }
    }
}

impl SignInApi<DynamoStore> {
    /// Reads `TABLE_NAME`, `ADDON_SSO_SALT`, `SSO_MAX_AGE_SECONDS`,
    /// `SESSION_TTL_SECONDS` and the `CLOUD66_*` variables.
    pub async fn from_env(function: &str) -> Result<Self, ConfigError> {
        let aws = config::aws_sdk_config(function).await;
        let (source, environment) = SecretSource::load(&aws).await?;
        let lookup = environment.lookup();
        let keys = Fresh::new(source, &environment, |environment| {
            SignInKeys::from_lookup(&environment.lookup())
        })?;
        let session_ttl = config::seconds(&lookup, "SESSION_TTL_SECONDS", 3600)?;
        let table = config::required(&lookup, "TABLE_NAME")?;
        let store = DynamoStore::ready(&aws, table).await;
        Ok(Self {
            sessions: Sessions::new(store, session_ttl),
            keys,
        })
    }
}

/// The `sso-login` function's routes.
pub async fn route<S: ResourceReader + AccountStore + SessionStore>(
    api: &SignInApi<S>,
    request: Request,
) -> Result<Response<Body>, Infallible> {
    let keys = api.keys.get().await;
    let result = match (request.method(), request.uri().path()) {
        (&Method::POST, "/clevercloud/sso/login") => {
            clevercloud_sso::login(&keys.clevercloud, &api.sessions, &request).await
        }
        (&Method::GET, "/cloud66/sso/start") => {
            cloud66_sso::start(keys.cloud66.as_ref(), &api.sessions).await
        }
        (&Method::GET, "/cloud66/sso/callback") => {
            cloud66_sso::callback(keys.cloud66.as_ref(), &api.sessions, &request).await
        }
        _ => Ok(html::not_found()),
    };
    Ok(result.unwrap_or_else(SignInError::into_response))
}
