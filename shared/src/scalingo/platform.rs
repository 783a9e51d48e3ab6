//! This provider's calls to Scalingo's provider API (docs/scalingo.md,
//! "Config later"): `PATCH {SCALINGO_API_URL}/v1/provider/apps/{app_id}`
//! with `{"config": {…}}`, over Basic with the manifest's username and
//! password. Through the shared outbound client: no redirect followed,
//! `https` only (loopback aside), bounded in time and size.

use super::config::ScalingoConfig;
use crate::config::{self, ConfigError, Environment};
use crate::model::ConfigMap;
use crate::outbound::PlatformError;
use crate::refresh::{Fresh, SecretSource};
use crate::secret::{Rotating, Secret};
use std::sync::Arc;

/// The manifest's credentials, following the secret.
struct Credentials {
    username: String,
    /// The previous password is tried when Scalingo refuses the current
    /// one: during a rotation, Scalingo holds the old password until the
    /// manifest is updated.
    password: Rotating,
}

#[derive(Clone)]
pub struct ScalingoClient {
    http: reqwest::Client,
    api_url: String,
    credentials: Arc<Fresh<Credentials>>,
}

impl ScalingoClient {
    /// `SCALINGO_API_URL` (the region's API, e.g.
    /// `https://api.osc-fr1.scalingo.com`), and the manifest's username and
    /// password, which follow the secret.
    pub fn from_secret(source: Option<SecretSource>, environment: &Environment) -> Result<Self, ConfigError> {
        let lookup = environment.lookup();
        let api_url =
            config::outbound_base_url("SCALINGO_API_URL", config::required(&lookup, "SCALINGO_API_URL")?)?;
        Ok(Self {
            http: crate::outbound::platform_client(),
            api_url,
            credentials: Arc::new(Fresh::new(source, environment, |environment| {
                let scalingo = ScalingoConfig::from_lookup(&environment.lookup())?
                    .ok_or_else(|| ConfigError::new("SCALINGO_USERNAME", "was removed from the secret"))?;
                Ok(Credentials {
                    username: scalingo.username,
                    password: scalingo.password,
                })
            })?),
        })
    }

    /// Sets every config var of the add-on's app; Scalingo restarts the app.
    pub async fn set_config(&self, app_id: &str, config: &ConfigMap) -> Result<(), PlatformError> {
        let credentials = self.credentials.get().await;
        let answer = self
            .patch_config(
                app_id,
                config,
                &credentials.username,
                &credentials.password.current,
            )
            .await;
        match (answer, &credentials.password.previous) {
            (Err(PlatformError::Rejected { status: 401, .. }), Some(previous)) => {
                tracing::info!("Scalingo refused the current password; trying the previous one");
                self.patch_config(app_id, config, &credentials.username, previous)
                    .await
            }
            (answer, _) => answer,
        }
    }

    async fn patch_config(
        &self,
        app_id: &str,
        config: &ConfigMap,
        username: &str,
        password: &Secret,
    ) -> Result<(), PlatformError> {
        let request = self
            .http
            .patch(app_url(&self.api_url, app_id)?)
            .basic_auth(username, Some(password.expose()))
            .header(reqwest::header::ACCEPT, "application/json")
            .json(&serde_json::json!({ "config": config.0 }));
        crate::outbound::send_to_platform(request).await.map(drop)
    }
}

/// `{api_url}/v1/provider/apps/{app_id}`, the app id percent-encoded as one
/// path segment: Scalingo's ids may hold `@`, `/`, spaces or any letter.
fn app_url(api_url: &str, app_id: &str) -> Result<reqwest::Url, PlatformError> {
    let unusable = || PlatformError::Rejected {
        status: 0,
        message: format!("SCALINGO_API_URL {api_url} cannot take a path"),
    };
    // A segment of dots is a step in the path in every URL (WHATWG reads
    // `%2E%2E` as `..` too): no encoding makes it one segment, so the
    // protocol refuses such an id and this never sends one elsewhere.
    if crate::scalingo::protocol::is_dot_segment(app_id) {
        return Err(PlatformError::Rejected {
            status: 0,
            message: "an app id of dots cannot be one URL path segment".into(),
        });
    }
    let mut url = reqwest::Url::parse(api_url).map_err(|_| unusable())?;
    url.path_segments_mut()
        .map_err(|_| unusable())?
        .pop_if_empty()
        .extend(["v1", "provider", "apps", app_id]);
    Ok(url)
}

#[cfg(test)]
mod app_url_tests {
    use super::app_url;

    #[test]
    fn an_app_id_is_one_percent_encoded_path_segment() {
        for (id, path) in [
            ("my-app", "/v1/provider/apps/my-app"),
            ("app456@heroku.com", "/v1/provider/apps/app456@heroku.com"),
            (
                "galápagos-penguin-12",
                "/v1/provider/apps/gal%C3%A1pagos-penguin-12",
            ),
            ("../admin", "/v1/provider/apps/..%2Fadmin"),
            ("a b?c#d", "/v1/provider/apps/a%20b%3Fc%23d"),
            ("100%", "/v1/provider/apps/100%25"),
            ("...", "/v1/provider/apps/..."),
        ] {
            let url = app_url("https://api.osc-fr1.scalingo.com", id).unwrap();
            assert_eq!(url.path(), path, "{id}");
            assert_eq!(url.query(), None);
            let url = app_url("http://127.0.0.1:9005/", id).unwrap();
            assert_eq!(url.path(), path, "{id}");
        }
        for dots in [".", ".."] {
            assert!(
                app_url("https://api.osc-fr1.scalingo.com", dots).is_err(),
                "{dots}"
            );
        }
    }
}
