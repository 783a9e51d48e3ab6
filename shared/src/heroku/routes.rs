//! The HTTP face of Heroku's lifecycle calls: Basic auth first, then the
//! marketplace-neutral lifecycle keyed by the add-on's `uuid`.

use super::config::{HerokuConfig, HerokuNames};
use super::protocol::{PlanChangeRequest, PlanChangeResponse, ProvisionRequest, ProvisionResponse};
use super::tokens::TokenKeys;
use super::{resource_id, ACTOR};
use crate::config::{self, ConfigError, Environment};
use crate::http::{authenticated, json_response, read_json, ApiError, BasicCredentials};
use crate::lifecycle::{Lifecycle, LifecycleError, Marketplace};
use crate::model::{ConfigMap, HerokuAuthorization, Platform, Resource, ResourceStatus, SyncMark, Timestamp};
use crate::provisioner::Provisioner;
use crate::refresh::{Fresh, SecretSource};
use crate::secret_parts::Part;
use crate::store::{ProvisionStore, ResourceWriter};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};

/// Heroku's side of a lifecycle function, built once at cold start; the
/// Basic-auth credentials follow the secret (`crate::refresh`).
pub struct HerokuApi<S, P> {
    secrets: Fresh<HerokuSecrets>,
    lifecycle: Lifecycle<S, P>,
    names: HerokuNames,
}

/// What follows the secret: Heroku's Basic-auth credentials and the keys
/// that seal its OAuth grants.
pub struct HerokuSecrets {
    credentials: BasicCredentials,
    /// Only where the function reads the token key (provision seals the
    /// grant; a plan change or deprovision never touches it:
    /// `crate::secret_parts`).
    keys: Option<TokenKeys>,
}

impl HerokuSecrets {
    fn from_environment(config: &HerokuConfig, environment: &Environment) -> Result<Self, ConfigError> {
        let keys = if environment.holds(Part::Tokens) {
            Some(TokenKeys::from_lookup(&environment.lookup())?)
        } else {
            None
        };
        Ok(Self {
            credentials: BasicCredentials::rotating(config.addon_id.clone(), config.password.clone()),
            keys,
        })
    }
}

/// Heroku's share of the manifest: the vendor's config vars (renamed on
/// the way out) and the plans sold on Heroku.
fn marketplace(config: &HerokuConfig, vendor_config_vars: Vec<String>) -> Marketplace {
    Marketplace {
        platform: Platform::Heroku,
        actor: ACTOR,
        config_vars: vendor_config_vars,
        plans: config.plans.clone(),
        asynchronous: true,
    }
}

impl<S, P> HerokuApi<S, P> {
    /// The lifecycle it serves Heroku's calls with (the vendor's completion
    /// call goes straight to it: `crate::marketplaces`).
    pub fn lifecycle(&self) -> &Lifecycle<S, P> {
        &self.lifecycle
    }
}

impl<S, P: Provisioner> HerokuApi<S, P> {
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
            let lookup = environment.lookup();
            let heroku = HerokuConfig::from_lookup(&lookup)?
                .ok_or_else(|| ConfigError::new("HEROKU_ADDON_ID", "was removed from the secret"))?;
            HerokuSecrets::from_environment(&heroku, environment)
        })?;
        Ok(Some(Self {
            secrets: fresh,
            lifecycle: Lifecycle::new(store, provisioner, marketplace(&heroku, vendor_config_vars)),
            names: heroku.names,
        }))
    }
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

/// `POST /heroku/resources`: 200 with the config, or 202 when the vendor's
/// service finishes later; a redelivery, however many at once, answers the
/// same. The OAuth grant is sealed onto the resource and owed an exchange
/// (the sync's, within the grant's minutes).
pub async fn provision<S: ProvisionStore, P: Provisioner>(
    api: &HerokuApi<S, P>,
    request: Request,
) -> Response<Body> {
    let secrets = api.secrets.get().await;
    authenticated(&secrets.credentials, &request, async {
        let body: ProvisionRequest = read_json(&request)?;
        let now = Timestamp::now();
        let id = resource_id(&body.uuid).ok_or_else(ApiError::internal)?;
        let authorization = match body.oauth_grant {
            Some(grant) => {
                // The provision function always reads the key
                // (`crate::secret_parts::READERS`); without it, nothing is written.
                let keys = secrets.keys.as_ref().ok_or_else(ApiError::internal)?;
                Some(HerokuAuthorization {
                    grant: Some(keys.seal(&id, grant.code.as_bytes())),
                    grant_expires_at: Some(grant.expires_at_unix(now.unix())),
                    tokens: None,
                    access_expires_at: None,
                })
            }
            None => None,
        };
        let resource = Resource {
            name: body.name,
            region: body.region,
            callback_url: body.callback_url,
            options: body.options,
            sync: if authorization.is_some() {
                SyncMark::owed(&now)
            } else {
                SyncMark::default()
            },
            heroku: authorization,
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
        if resource.status == ResourceStatus::Provisioning {
            return Ok(crate::lifecycle::pending_answer(&resource));
        }
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
    authenticated(&api.secrets.get().await.credentials, &request, async {
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
    authenticated(&api.secrets.get().await.credentials, &request, async {
        let id = path_resource_id(&request)?;
        api.lifecycle.deprovision(&id).await?;
        Ok(crate::http::no_content())
    })
    .await
}
