//! The lifecycle functions' one face to every marketplace: each action's
//! function (provision, plan change, deprovision) serves that action's
//! route for each marketplace, through the marketplace's protocol module
//! over the one marketplace-neutral lifecycle (`crate::lifecycle`).

use crate::clevercloud::routes::{self as clevercloud, CleverCloudApi};
use crate::config::ConfigError;
use crate::heroku::routes::{self as heroku, HerokuApi};
use crate::http::{json_response, read_json, respond, ApiError};
use crate::lifecycle::{Lifecycle, LifecycleError};
use crate::model::ConfigMap;
use crate::provisioner::{Provisioner, VendorProvisioner};
use crate::scalingo::routes::{self as scalingo, ScalingoApi};
use crate::store::{DynamoStore, ProvisionStore, ResourceWriter};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use std::convert::Infallible;

/// Every marketplace's side of a lifecycle function, built once at cold
/// start over one store and one provisioner.
pub struct LifecycleApis<S, P> {
    pub clevercloud: CleverCloudApi<S, P>,
    /// `None` when the add-on is not sold on Heroku.
    pub heroku: Option<HerokuApi<S, P>>,
    /// `None` when the add-on is not sold on Scalingo.
    pub scalingo: Option<ScalingoApi<S, P>>,
}

impl LifecycleApis<DynamoStore, VendorProvisioner> {
    /// The `ADDON_*`, `HEROKU_*`, `SCALINGO_*`, `PROVISIONER_*` variables and
    /// `TABLE_NAME` (`crate::lifecycle::parts_from_env`).
    pub async fn from_env(function: &str) -> Result<Self, ConfigError> {
        let (source, environment, store, provisioner) = crate::lifecycle::parts_from_env(function).await?;
        let heroku =
            HerokuApi::from_environment(source.clone(), &environment, store.clone(), provisioner.clone())?;
        let scalingo =
            ScalingoApi::from_environment(source.clone(), &environment, store.clone(), provisioner.clone())?;
        Ok(Self {
            scalingo,
            clevercloud: CleverCloudApi::from_environment(source, &environment, store, provisioner)?,
            heroku,
        })
    }
}

/// Which marketplace a route belongs to, by its first path segment.
enum Route<'a, S, P> {
    CleverCloud(&'a CleverCloudApi<S, P>),
    Heroku(&'a HerokuApi<S, P>),
    Scalingo(&'a ScalingoApi<S, P>),
    /// The vendor's completion call, for the marketplace its id names.
    Vendor(&'a Lifecycle<S, P>),
    /// A marketplace this deployment does not sell on.
    NotSold,
}

fn route<'a, S, P>(apis: &'a LifecycleApis<S, P>, request: &Request) -> Route<'a, S, P> {
    let path = request.uri().path();
    if path.starts_with("/vendor/") {
        // Only the marketplaces that wait for a provision (Heroku, Scalingo)
        // have one to finish; the id says which (an id of neither is then
        // unknown to the one asked, after the signature is checked).
        let id = request
            .path_parameters_ref()
            .and_then(|params| params.first("id"))
            .unwrap_or_default();
        let heroku = apis.heroku.as_ref().map(HerokuApi::lifecycle);
        let scalingo = apis.scalingo.as_ref().map(ScalingoApi::lifecycle);
        let lifecycle = if id.starts_with(crate::scalingo::RESOURCE_ID_PREFIX) {
            scalingo.or(heroku)
        } else {
            heroku.or(scalingo)
        };
        lifecycle.map_or(Route::NotSold, Route::Vendor)
    } else if path.starts_with("/heroku/") {
        apis.heroku.as_ref().map_or(Route::NotSold, Route::Heroku)
    } else if path.starts_with("/scalingo/") {
        apis.scalingo.as_ref().map_or(Route::NotSold, Route::Scalingo)
    } else {
        Route::CleverCloud(&apis.clevercloud)
    }
}

fn not_sold() -> Response<Body> {
    ApiError::not_found("this add-on is not sold on this marketplace").into_response()
}

/// `POST /{marketplace}/resources`, and the vendor's
/// `POST /vendor/resources/{id}/provisioned` that finishes a pending one.
pub async fn provision<S: ProvisionStore + ResourceWriter, P: Provisioner>(
    apis: &LifecycleApis<S, P>,
    request: Request,
) -> Result<Response<Body>, Infallible> {
    match route(apis, &request) {
        Route::CleverCloud(api) => clevercloud::provision(api, request).await,
        Route::Vendor(lifecycle) => Ok(vendor_finished(lifecycle, request).await),
        Route::Heroku(api) => Ok(heroku::provision(api, request).await),
        Route::Scalingo(api) => Ok(scalingo::provision(api, request).await),
        Route::NotSold => Ok(not_sold()),
    }
}

/// The vendor's completion call: exactly the config, nothing else.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Completion {
    config: std::collections::BTreeMap<String, String>,
}

/// `POST /vendor/resources/{id}/provisioned`: the vendor's service finished
/// a provision it answered 202 to, and sends the config, signed as this
/// provider signs its calls to it (docs/provisioner.md, "Asynchronous
/// provisioning"). The signature comes first; then 200, again 200 for the
/// same config, 409 for a resource not waiting (or finished otherwise),
/// 422 for a config that is not exactly the manifest's vars.
async fn vendor_finished<S: ResourceWriter, P: Provisioner>(
    lifecycle: &Lifecycle<S, P>,
    request: Request,
) -> Response<Body> {
    respond(
        async {
            crate::lifecycle::verify_vendor_call(lifecycle.provisioner(), &request).await?;
            let id = request
                .path_parameters_ref()
                .and_then(|params| params.first("id"))
                .map(str::to_string)
                .ok_or_else(|| ApiError::from(LifecycleError::NotFound))?;
            let body: Completion = read_json(&request)?;
            match lifecycle.finish_provision(&id, ConfigMap(body.config)).await {
                Ok(_) => Ok(json_response(
                    StatusCode::OK,
                    &serde_json::json!({"id": id, "status": "provisioned"}),
                )),
                Err(err @ LifecycleError::ConfigMismatch { .. }) => Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "config_mismatch",
                    err.to_string(),
                )),
                Err(err) => Err(err.into()),
            }
        }
        .await,
    )
}

/// `PUT /{marketplace}/resources/{id}` (Scalingo's `PATCH` too), and
/// Scalingo's `POST /scalingo/resources/{id}/suspend` and `…/resume`.
pub async fn change_plan<S: ResourceWriter, P: Provisioner>(
    apis: &LifecycleApis<S, P>,
    request: Request,
) -> Result<Response<Body>, Infallible> {
    match route(apis, &request) {
        Route::CleverCloud(api) => clevercloud::change_plan(api, request).await,
        Route::Heroku(api) => Ok(heroku::change_plan(api, request).await),
        Route::Scalingo(api) => {
            let path = request.uri().path();
            Ok(if path.ends_with("/suspend") {
                scalingo::set_suspended(api, request, true).await
            } else if path.ends_with("/resume") {
                scalingo::set_suspended(api, request, false).await
            } else {
                scalingo::change_plan(api, request).await
            })
        }
        Route::Vendor(_) | Route::NotSold => Ok(not_sold()),
    }
}

/// `DELETE /{marketplace}/resources/{id}`
pub async fn deprovision<S: ResourceWriter, P: Provisioner>(
    apis: &LifecycleApis<S, P>,
    request: Request,
) -> Result<Response<Body>, Infallible> {
    match route(apis, &request) {
        Route::CleverCloud(api) => clevercloud::deprovision(api, request).await,
        Route::Heroku(api) => Ok(heroku::deprovision(api, request).await),
        Route::Scalingo(api) => Ok(scalingo::deprovision(api, request).await),
        Route::Vendor(_) | Route::NotSold => Ok(not_sold()),
    }
}
