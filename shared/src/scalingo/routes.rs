//! The HTTP face of Scalingo's lifecycle calls: Basic auth first (the
//! manifest's username and password), then the marketplace-neutral
//! lifecycle keyed by this provider's id.

use super::config::ScalingoConfig;
use super::protocol::{
    MessageResponse, PlanChangeRequest, PlanChangeResponse, ProvisionRequest, ProvisionResponse,
};
use super::{is_resource_id, new_resource_id, resource_id_for_uuid, ACTOR};
use crate::config::{self, ConfigError, Environment};
use crate::http::{authenticated, json_response, read_json, ApiError, BasicCredentials, MAX_BODY_BYTES};
use crate::lifecycle::{Lifecycle, LifecycleError, Marketplace};
use crate::model::{ConfigMap, Platform, Resource, ResourceStatus, Timestamp};
use crate::provisioner::{Provisioner, Provisioning};
use crate::refresh::{Fresh, SecretSource};
use crate::store::{ProvisionStore, ResourceWriter};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};

/// Scalingo's side of a lifecycle function, built once at cold start; the
/// Basic-auth credentials follow the secret (`crate::refresh`).
pub struct ScalingoApi<S, P> {
    credentials: Fresh<BasicCredentials>,
    lifecycle: Lifecycle<S, P>,
}

fn credentials(config: &ScalingoConfig) -> BasicCredentials {
    BasicCredentials::rotating(config.username.clone(), config.password.clone())
}

impl<S, P> ScalingoApi<S, P> {
    /// The lifecycle it serves Scalingo's calls with.
    pub fn lifecycle(&self) -> &Lifecycle<S, P> {
        &self.lifecycle
    }
}

impl<S, P: Provisioner> ScalingoApi<S, P> {
    /// `None` when the deployment does not sell on Scalingo
    /// (`SCALINGO_USERNAME` unset).
    pub fn from_environment(
        source: Option<SecretSource>,
        environment: &Environment,
        store: S,
        provisioner: P,
    ) -> Result<Option<Self>, ConfigError> {
        let lookup = environment.lookup();
        let Some(scalingo) = ScalingoConfig::from_lookup(&lookup)? else {
            return Ok(None);
        };
        let marketplace = Marketplace {
            platform: Platform::Scalingo,
            actor: ACTOR,
            config_vars: config::comma_list(&config::required(&lookup, "ADDON_CONFIG_VARS")?),
            plans: scalingo.plans.clone(),
            // Scalingo takes a 202 and the config later (docs/scalingo.md).
            asynchronous: true,
        };
        let credentials = Fresh::new(source, environment, |environment| {
            ScalingoConfig::from_lookup(&environment.lookup())?
                .map(|config| credentials(&config))
                .ok_or_else(|| ConfigError::new("SCALINGO_USERNAME", "was removed from the secret"))
        })?;
        Ok(Some(Self {
            credentials,
            lifecycle: Lifecycle::new(store, provisioner, marketplace),
        }))
    }
}

/// The resource a later call's path names: an id this provider gave a
/// Scalingo add-on, or nothing.
fn path_resource_id(request: &Request) -> Result<String, ApiError> {
    request
        .path_parameters_ref()
        .and_then(|params| params.first("id"))
        .filter(|id| is_resource_id(id))
        .map(str::to_string)
        .ok_or_else(|| LifecycleError::NotFound.into())
}

/// `POST /scalingo/resources`: 201 with the config, or 202 when the
/// vendor's service finishes later. With `uuid`, a redelivery answers the
/// same add-on; without it, each call is a new add-on.
pub async fn provision<S: ProvisionStore, P: Provisioner>(
    api: &ScalingoApi<S, P>,
    request: Request,
) -> Response<Body> {
    authenticated(&*api.credentials.get().await, &request, async {
        let body: ProvisionRequest = read_json(&request)?;
        let now = Timestamp::now();
        let (id, addon_id) = match &body.uuid {
            Some(uuid) => (resource_id_for_uuid(uuid), uuid.clone()),
            // No key from Scalingo: the add-on is claimed under its own id.
            None => {
                let id = new_resource_id();
                (id.clone(), id)
            }
        };
        let mut options = body.options;
        if let Some(shard) = body.shard_id {
            options.entry("shard_id".into()).or_insert(shard);
        }
        let resource = Resource {
            app_id: body.app_id,
            options,
            ..Resource::new(
                id,
                Platform::Scalingo,
                addon_id,
                body.plan,
                ConfigMap::default(),
                &now,
            )
        };
        let resource = api.lifecycle.provision(resource, &now).await?;
        if resource.status == ResourceStatus::Provisioning {
            return Ok(crate::lifecycle::pending_answer(&resource));
        }
        Ok(json_response(
            StatusCode::CREATED,
            &ProvisionResponse {
                message: format!("Your add-on is ready on plan {}.", resource.plan),
                config: resource.config.0,
                id: resource.id,
            },
        ))
    })
    .await
}

/// `PUT` or `PATCH /scalingo/resources/{id}`: 200 with the config on the
/// new plan, 202 when the vendor's service finishes the change later, 422
/// without a plan.
pub async fn change_plan<S: ResourceWriter, P: Provisioner>(
    api: &ScalingoApi<S, P>,
    request: Request,
) -> Response<Body> {
    authenticated(&*api.credentials.get().await, &request, async {
        let id = path_resource_id(&request)?;
        let body: PlanChangeRequest = read_json(&request)?;
        let plan = body.plan.ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "plan_required",
                "the body names no plan",
            )
        })?;
        match api.lifecycle.change_plan_or_pending(&id, &plan).await? {
            Provisioning::Ready(config) => Ok(json_response(
                StatusCode::OK,
                &PlanChangeResponse {
                    message: format!("Your add-on is now on plan {plan}."),
                    config: config.0,
                },
            )),
            Provisioning::Pending => Ok(json_response(
                StatusCode::ACCEPTED,
                &MessageResponse {
                    message: format!("Your add-on is moving to plan {plan}."),
                },
            )),
        }
    })
    .await
}

/// `DELETE /scalingo/resources/{id}`: 204 with no body, again 204 on a
/// repeat; the body is not read (Scalingo's tester sends the literal
/// `null`, with no content type).
pub async fn deprovision<S: ResourceWriter, P: Provisioner>(
    api: &ScalingoApi<S, P>,
    request: Request,
) -> Response<Body> {
    authenticated(&*api.credentials.get().await, &request, async {
        let id = path_resource_id(&request)?;
        api.lifecycle.deprovision(&id).await?;
        Ok(crate::http::no_content())
    })
    .await
}

/// A suspend or resume body: none, `{}`, `null` or any JSON object (with or
/// without a content type); anything else is a 400.
fn check_empty_body(request: &Request) -> Result<(), ApiError> {
    let bytes = request.body().as_ref();
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than {MAX_BODY_BYTES} bytes"),
        ));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Null | serde_json::Value::Object(_)) => Ok(()),
        _ => Err(ApiError::bad_request(
            "invalid_body",
            "the body must be empty or a JSON object",
        )),
    }
}

/// `POST /scalingo/resources/{id}/suspend` (`suspended`) or `…/resume`:
/// 200 with a message, the same on a repeat (nothing done again).
pub async fn set_suspended<S: ResourceWriter, P: Provisioner>(
    api: &ScalingoApi<S, P>,
    request: Request,
    suspended: bool,
) -> Response<Body> {
    authenticated(&*api.credentials.get().await, &request, async {
        let id = path_resource_id(&request)?;
        check_empty_body(&request)?;
        let changed = api.lifecycle.set_suspended(&id, suspended).await?;
        let message = match (suspended, changed) {
            (true, true) => "The add-on is suspended.",
            (true, false) => "The add-on was already suspended.",
            (false, true) => "The add-on is resumed.",
            (false, false) => "The add-on was already active.",
        };
        Ok(json_response(
            StatusCode::OK,
            &MessageResponse {
                message: message.to_string(),
            },
        ))
    })
    .await
}
