//! The HTTP face of Heroku's lifecycle calls: Basic auth first, then the
//! marketplace-neutral lifecycle keyed by the add-on's `uuid`.

use super::config::{HerokuConfig, HerokuNames};
use super::protocol::{PlanChangeRequest, PlanChangeResponse, ProvisionRequest, ProvisionResponse};
use super::{resource_id, ACTOR};
use crate::config::{self, ConfigError, Environment};
use crate::http::{json_response, read_json, respond, ApiError, BasicCredentials};
use crate::lifecycle::{Lifecycle, LifecycleError, Marketplace};
use crate::model::{ConfigMap, Platform, Resource, Timestamp};
use crate::provisioner::Provisioner;
use crate::refresh::{Fresh, SecretSource};
use crate::store::{ProvisionStore, ResourceWriter};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use std::future::Future;

/// Heroku's side of a lifecycle function, built once at cold start; the
/// Basic-auth credentials follow the secret (`crate::refresh`).
pub struct HerokuApi<S, P> {
    credentials: Fresh<BasicCredentials>,
    lifecycle: Lifecycle<S, P>,
    names: HerokuNames,
}

fn credentials(config: &HerokuConfig) -> BasicCredentials {
    BasicCredentials::new(config.addon_id.clone(), config.password.clone())
        .with_previous(config.previous_password.clone())
}

/// Heroku's share of the manifest: the vendor's config vars (renamed on
/// the way out) and the plans sold on Heroku.
fn marketplace(config: &HerokuConfig, vendor_config_vars: Vec<String>) -> Marketplace {
    Marketplace {
        platform: Platform::Heroku,
        actor: ACTOR,
        config_vars: vendor_config_vars,
        plans: config.plans.clone(),
    }
}

impl<S, P: Provisioner> HerokuApi<S, P> {
    /// With fixed credentials (tests).
    pub fn new(store: S, provisioner: P, config: HerokuConfig, vendor_config_vars: Vec<String>) -> Self {
        Self {
            credentials: Fresh::fixed(credentials(&config)),
            lifecycle: Lifecycle::new(store, provisioner, marketplace(&config, vendor_config_vars)),
            names: config.names,
        }
    }

    /// `None` when the deployment does not sell on Heroku
    /// (`HEROKU_ADDON_ID` unset); the credentials follow the secret.
    pub fn from_environment(
        source: Option<SecretSource>,
        environment: &Environment,
        store: S,
        provisioner: P,
    ) -> Result<Option<Self>, ConfigError> {
        let lookup = environment.lookup();
        let Some(heroku) = HerokuConfig::from_lookup(&lookup)? else {
            return Ok(None);
        };
        let vendor_config_vars = config::comma_list(&config::required(&lookup, "ADDON_CONFIG_VARS")?);
        let fresh = Fresh::new(source, environment, |environment| {
            let heroku = HerokuConfig::from_lookup(&environment.lookup())?
                .ok_or_else(|| ConfigError::new("HEROKU_ADDON_ID", "was removed from the secret"))?;
            Ok(credentials(&heroku))
        })?;
        Ok(Some(Self {
            credentials: fresh,
            lifecycle: Lifecycle::new(store, provisioner, marketplace(&heroku, vendor_config_vars)),
            names: heroku.names,
        }))
    }
}

/// Authenticates, then runs `action`; credentials come first, so a caller
/// without them learns nothing about uuids or bodies.
async fn authenticated(
    credentials: &BasicCredentials,
    request: &Request,
    // A future does nothing until awaited, so `action` runs only after the check.
    action: impl Future<Output = Result<Response<Body>, ApiError>>,
) -> Response<Body> {
    respond(
        async {
            credentials.verify(request.headers())?;
            action.await
        }
        .await,
    )
}

/// The resource a later call's path names: Heroku's uuid, which cannot
/// name a resource unless it is one.
fn path_resource_id(request: &Request) -> Result<String, ApiError> {
    request
        .path_parameters_ref()
        .and_then(|params| params.first("id"))
        .and_then(resource_id)
        .ok_or_else(|| LifecycleError::NotFound.into())
}

/// `POST /heroku/resources`: 200 with the config; a redelivery, however
/// many at once, answers the same `id` and config.
pub async fn provision<S: ProvisionStore, P: Provisioner>(
    api: &HerokuApi<S, P>,
    request: Request,
) -> Response<Body> {
    authenticated(&*api.credentials.get().await, &request, async {
        let body: ProvisionRequest = read_json(&request)?;
        let now = Timestamp::now();
        let id = resource_id(&body.uuid).ok_or_else(ApiError::internal)?;
        let resource = Resource {
            name: body.name,
            region: body.region,
            callback_url: body.callback_url,
            options: body.options,
            ..Resource::new(
                id,
                Platform::Heroku,
                body.uuid,
                body.plan,
                ConfigMap::default(),
                &now,
            )
        };
        let resource = api.lifecycle.provision(resource, &now).await?;
        Ok(json_response(
            StatusCode::OK,
            &ProvisionResponse {
                config: api.names.rename(&resource.config),
                message: format!("Your add-on is ready on plan {}.", resource.plan),
                id: resource.id,
            },
        ))
    })
    .await
}

/// `PUT /heroku/resources/{uuid}`: 200 with the config on the new plan
/// (the current plan again changes nothing).
pub async fn change_plan<S: ResourceWriter, P: Provisioner>(
    api: &HerokuApi<S, P>,
    request: Request,
) -> Response<Body> {
    authenticated(&*api.credentials.get().await, &request, async {
        let id = path_resource_id(&request)?;
        let body: PlanChangeRequest = read_json(&request)?;
        let config = api.lifecycle.change_plan(&id, &body.plan, None).await?;
        Ok(json_response(
            StatusCode::OK,
            &PlanChangeResponse {
                config: api.names.rename(&config),
                message: format!("Your add-on is now on plan {}.", body.plan),
            },
        ))
    })
    .await
}

/// `DELETE /heroku/resources/{uuid}`: 204, again 204 on a repeat; 404 for
/// a uuid never provisioned here.
pub async fn deprovision<S: ResourceWriter, P: Provisioner>(
    api: &HerokuApi<S, P>,
    request: Request,
) -> Response<Body> {
    authenticated(&*api.credentials.get().await, &request, async {
        let id = path_resource_id(&request)?;
        api.lifecycle.deprovision(&id).await?;
        let mut response = Response::new(Body::Empty);
        *response.status_mut() = StatusCode::NO_CONTENT;
        Ok(response)
    })
    .await
}
