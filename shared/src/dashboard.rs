//! The vendor's panel: what a signed-in customer sees of their resource
//! (Clever Cloud) or account (Cloud 66). Server-rendered; every value from
//! outside is escaped by `maud`; config values are never shown.

use crate::config::{self, ConfigError};
use crate::html::{self, page, redirect};
use crate::model::{Account, Platform, Resource, ResourceStatus};
use crate::signin::{clearing_cookie, session_id};
use crate::store::{AccountStore, DynamoStore, ResourceReader, SessionStore, StoreError};
use lambda_http::http::{header, Method, StatusCode};
use lambda_http::{Body, Request, Response};
use maud::{html, Markup};
use std::convert::Infallible;

/// Where a browser without a valid session is sent.
pub const SIGNED_OUT_PATH: &str = "/dashboard/signed-out";

pub struct DashboardApi<S> {
    store: S,
}

impl<S> DashboardApi<S> {
    pub fn new(store: S) -> Self {
        Self { store }
    }
}

impl DashboardApi<DynamoStore> {
    pub async fn from_env(function: &str) -> Result<Self, ConfigError> {
        let table = config::required(&config::process_env, "TABLE_NAME")?;
        Ok(Self::new(
            DynamoStore::ready(&config::aws_sdk_config(function).await, table).await,
        ))
    }
}

/// The `dashboard` function's routes.
pub async fn route<S: SessionStore + ResourceReader + AccountStore>(
    api: &DashboardApi<S>,
    request: Request,
) -> Result<Response<Body>, Infallible> {
    let result = match (request.method(), request.uri().path()) {
        (&Method::GET, "/dashboard") => panel(api, &request).await,
        (&Method::POST, "/dashboard/logout") => logout(api, &request).await,
        (&Method::GET, SIGNED_OUT_PATH) => Ok(signed_out()),
        _ => Ok(html::not_found()),
    };
    Ok(result.unwrap_or_else(|err| {
        tracing::warn!(error = %err, "panel could not reach storage");
        html::unavailable()
    }))
}

async fn panel<S: SessionStore + ResourceReader + AccountStore>(
    api: &DashboardApi<S>,
    request: &Request,
) -> Result<Response<Body>, StoreError> {
    let Some(id) = session_id(request.headers()) else {
        return Ok(redirect(StatusCode::FOUND, SIGNED_OUT_PATH));
    };
    let Some(session) = api.store.get_session(&id).await? else {
        return Ok(redirect(StatusCode::FOUND, SIGNED_OUT_PATH));
    };
    let content = match session.platform {
        Platform::CleverCloud => api
            .store
            .get_resource(&session.subject_id)
            .await?
            .map(|r| resource_panel(&r)),
        Platform::Cloud66 => match api.store.get_account(&session.subject_id).await? {
            Some(account) => {
                let mut resources = Vec::new();
                for id in &account.resource_ids {
                    resources.extend(api.store.get_resource(id).await?);
                }
                Some(account_panel(&account, &resources))
            }
            None => None,
        },
    };
    let Some(content) = content else {
        return Ok(redirect(StatusCode::FOUND, SIGNED_OUT_PATH));
    };
    Ok(page(
        StatusCode::OK,
        "Your add-on",
        html! {
            (content)
            form method="post" action="/dashboard/logout" { button type="submit" { "Sign out" } }
        },
    ))
}

fn resource_panel(resource: &Resource) -> Markup {
    let status = match resource.status {
        ResourceStatus::Active => "active",
        ResourceStatus::Deprovisioned => "deprovisioned",
        ResourceStatus::Unconfirmed => "unconfirmed",
    };
    html! {
        dl {
            dt { "Resource" } dd { code { (resource.id) } }
            @if let Some(owner) = &resource.owner_name { dt { "Owner" } dd { (owner) } }
            dt { "Plan" } dd #plan { (resource.plan) }
            dt { "Status" } dd { (status) }
            dt { "Created" } dd { (resource.created_at) }
        }
        h2 { "Config vars" }
        table {
            @for name in resource.config.names() {
                tr { td { code { (name) } } td { "••••••••" } }
            }
        }
    }
}

fn account_panel(account: &Account, resources: &[Resource]) -> Markup {
    html! {
        dl {
            dt { "Account" } dd { code { (account.id) } }
            dt { "Email" } dd #email { (account.email) }
            @if let Some(name) = &account.name { dt { "Name" } dd { (name) } }
            dt { "Created" } dd { (account.created_at) }
        }
        h2 { "Resources" }
        @if resources.is_empty() {
            p #no-resources { "No resources yet." }
        }
        @for resource in resources {
            section { (resource_panel(resource)) }
        }
    }
}

async fn logout<S: SessionStore>(
    api: &DashboardApi<S>,
    request: &Request,
) -> Result<Response<Body>, StoreError> {
    if let Some(id) = session_id(request.headers()) {
        api.store.end_session(&id).await?;
    }
    let mut response = redirect(StatusCode::SEE_OTHER, SIGNED_OUT_PATH);
    response
        .headers_mut()
        .insert(header::SET_COOKIE, clearing_cookie());
    Ok(response)
}

fn signed_out() -> Response<Body> {
    page(
        StatusCode::OK,
        "Open the add-on from your console",
        html! { p { "To see your add-on, open it from your platform's console (Clever Cloud or Cloud 66); you will be signed in from there." } },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ConfigMap;
    use std::collections::BTreeMap;

    #[test]
    fn the_resource_panel_escapes_outside_text_and_masks_config_values() {
        let resource = Resource {
            owner_name: Some("<script>alert(1)</script>".into()),
            config: ConfigMap(BTreeMap::from([(
                "ADDON_NAME_TOKEN".into(),
                "s3cret-value".into(),
            )])),
            ..Resource::new(
                "res_1".into(),
                Platform::CleverCloud,
                "addon_1".into(),
                "premium".into(),
                ConfigMap::default(),
                &crate::model::Timestamp::now(),
            )
        };
        let markup = resource_panel(&resource).into_string();
        assert!(
            markup.contains("&lt;script&gt;") && !markup.contains("<script>"),
            "{markup}"
        );
        assert!(markup.contains("ADDON_NAME_TOKEN") && !markup.contains("s3cret-value"));
        assert!(markup.contains("premium"));
    }
}
