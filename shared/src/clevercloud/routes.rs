//! The HTTP face of the lifecycle: one handler per route, each checking
//! Basic auth before it looks at anything else.

use super::lifecycle::Lifecycle;
use super::protocol::{PlanChangeRequest, ProvisionRequest};
use crate::config::{CleverCloudConfig, ConfigError, Environment};
use crate::http::{self, json_response, read_json, ApiError, BasicCredentials};
use crate::provisioner::{Provisioner, VendorProvisioner};
use crate::refresh::{Fresh, SecretSource};
use crate::store::{DynamoStore, ProvisionStore, ResourceWriter};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use std::convert::Infallible;
use std::future::Future;

/// Everything a lifecycle function needs, built once at cold start; the
/// Basic-auth credentials follow the secret (`crate::refresh`), so a
/// password removed from it stops working within `SECRETS_TTL_SECONDS`.
pub struct CleverCloudApi<S, P> {
    credentials: Fresh<BasicCredentials>,
    lifecycle: Lifecycle<S, P>,
}

fn credentials(config: &CleverCloudConfig) -> BasicCredentials {
    BasicCredentials::rotating(config.addon_id.clone(), config.password.clone())
}

impl<S, P: Provisioner> CleverCloudApi<S, P> {
    pub fn new(store: S, provisioner: P, config: CleverCloudConfig) -> Self {
        Self {
            credentials: Fresh::fixed(credentials(&config)),
            lifecycle: Lifecycle::new(store, provisioner, config),
        }
    }
}

impl<S, P: Provisioner> CleverCloudApi<S, P> {
    /// Reads the `ADDON_*` variables; the credentials follow the secret.
    pub fn from_environment(
        source: Option<SecretSource>,
        environment: &Environment,
        store: S,
        provisioner: P,
    ) -> Result<Self, ConfigError> {
        let addon = CleverCloudConfig::from_lookup(&environment.lookup())?;
        let fresh = Fresh::new(source, environment, |environment| {
            Ok(credentials(&CleverCloudConfig::from_lookup(
                &environment.lookup(),
            )?))
        })?;
        Ok(Self {
            credentials: fresh,
            lifecycle: Lifecycle::new(store, provisioner, addon),
        })
    }
}

impl CleverCloudApi<DynamoStore, VendorProvisioner> {
    /// Reads `TABLE_NAME`, the `ADDON_*` variables and the provisioner's
    /// (`PROVISIONER_*` or `RESOURCE_BASE_URL`), and builds the DynamoDB client. A vendor with its own provisioner
    /// calls [`CleverCloudApi::new`] with it instead.
    pub async fn from_env(function: &str) -> Result<Self, ConfigError> {
        let (source, environment, store, provisioner) = crate::lifecycle::parts_from_env(function).await?;
        Self::from_environment(source, &environment, store, provisioner)
    }
}

fn path_id(request: &Request) -> String {
    request
        .path_parameters_ref()
        .and_then(|params| params.first("id"))
        .unwrap_or_default()
        .to_string()
}

/// Authenticates ([`http::authenticated`]), runs `action`, and renders its answer as 200 JSON or its
/// error as the matching 4xx/5xx JSON error. Credentials come first, so an
/// unauthenticated caller learns nothing about ids or bodies.
async fn authenticated<T: Serialize>(
    credentials: &BasicCredentials,
    request: &Request,
    action: impl Future<Output = Result<T, ApiError>>,
) -> Result<Response<Body>, Infallible> {
    Ok(http::authenticated(credentials, request, async {
        Ok(json_response(StatusCode::OK, &action.await?))
    })
    .await)
}

/// `POST /clevercloud/resources`
pub async fn provision<S: ProvisionStore, P: Provisioner>(
    api: &CleverCloudApi<S, P>,
    request: Request,
) -> Result<Response<Body>, Infallible> {
    authenticated(&*api.credentials.get().await, &request, async {
        let body: ProvisionRequest = read_json(&request)?;
        Ok(api.lifecycle.provision(body).await?)
    })
    .await
}

/// `PUT /clevercloud/resources/{id}`
pub async fn change_plan<S: ResourceWriter, P: Provisioner>(
    api: &CleverCloudApi<S, P>,
    request: Request,
) -> Result<Response<Body>, Infallible> {
    authenticated(&*api.credentials.get().await, &request, async {
        let body: PlanChangeRequest = read_json(&request)?;
        Ok(api.lifecycle.change_plan(&path_id(&request), body).await?)
    })
    .await
}

/// `DELETE /clevercloud/resources/{id}` (no body; any sent is ignored)
pub async fn deprovision<S: ResourceWriter, P: Provisioner>(
    api: &CleverCloudApi<S, P>,
    request: Request,
) -> Result<Response<Body>, Infallible> {
    authenticated(&*api.credentials.get().await, &request, async {
        Ok(api.lifecycle.deprovision(&path_id(&request)).await?)
    })
    .await
}
