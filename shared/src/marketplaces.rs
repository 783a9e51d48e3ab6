//! The lifecycle functions' one face to every marketplace: each action's
//! function (provision, plan change, deprovision) serves that action's
//! route for each marketplace, through the marketplace's protocol module
//! over the one marketplace-neutral lifecycle (`crate::lifecycle`).

use crate::clevercloud::routes::{self as clevercloud, CleverCloudApi};
use crate::config::ConfigError;
use crate::heroku::routes::{self as heroku, HerokuApi};
use crate::http::ApiError;
use crate::provisioner::{Provisioner, VendorProvisioner};
use crate::store::{DynamoStore, ProvisionStore, ResourceWriter};
use lambda_http::{Body, Request, Response};
use std::convert::Infallible;

/// Every marketplace's side of a lifecycle function, built once at cold
/// start over one store and one provisioner.
pub struct LifecycleApis<S, P> {
    pub clevercloud: CleverCloudApi<S, P>,
    /// `None` when the add-on is not sold on Heroku.
    pub heroku: Option<HerokuApi<S, P>>,
}

impl LifecycleApis<DynamoStore, VendorProvisioner> {
    /// The `ADDON_*`, `HEROKU_*`, `PROVISIONER_*` variables and
    /// `TABLE_NAME` (`crate::lifecycle::parts_from_env`).
    pub async fn from_env(function: &str) -> Result<Self, ConfigError> {
        let (source, environment, store, provisioner) = crate::lifecycle::parts_from_env(function).await?;
        let heroku =
            HerokuApi::from_environment(source.clone(), &environment, store.clone(), provisioner.clone())?;
        Ok(Self {
            clevercloud: CleverCloudApi::from_environment(source, &environment, store, provisioner)?,
            heroku,
        })
    }
}

/// Which marketplace a route belongs to, by its first path segment.
enum Route<'a, S, P> {
    CleverCloud(&'a CleverCloudApi<S, P>),
    Heroku(&'a HerokuApi<S, P>),
    /// A marketplace this deployment does not sell on.
    NotSold,
}

fn route<'a, S, P>(apis: &'a LifecycleApis<S, P>, request: &Request) -> Route<'a, S, P> {
    let path = request.uri().path();
    // The vendor's completion calls: only Heroku waits for a provision.
    if path.starts_with("/heroku/") || path.starts_with("/vendor/") {
        apis.heroku.as_ref().map_or(Route::NotSold, Route::Heroku)
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
        Route::Heroku(api) if request.uri().path().starts_with("/vendor/") => {
            Ok(heroku::vendor_finished(api, request).await)
        }
        Route::Heroku(api) => Ok(heroku::provision(api, request).await),
        Route::NotSold => Ok(not_sold()),
    }
}

/// `PUT /{marketplace}/resources/{id}`
pub async fn change_plan<S: ResourceWriter, P: Provisioner>(
    apis: &LifecycleApis<S, P>,
    request: Request,
) -> Result<Response<Body>, Infallible> {
    match route(apis, &request) {
        Route::CleverCloud(api) => clevercloud::change_plan(api, request).await,
        Route::Heroku(api) => Ok(heroku::change_plan(api, request).await),
        Route::NotSold => Ok(not_sold()),
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
        Route::NotSold => Ok(not_sold()),
    }
}
