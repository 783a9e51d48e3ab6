//! The vendor's panel: what a signed-in customer sees of their resource
//! (Clever Cloud) or account (Cloud 66). Server-rendered; every value from
//! outside is escaped by `maud`; a config value is in no page: the panel's
//! script fetches one when the customer asks (`POST /dashboard/config`).

use crate::config::{self, ConfigError};
use crate::html::{self, page, redirect};
use crate::http::json_response;
use crate::model::{Account, AuditEvent, Platform, Resource, ResourceStatus, Session, SignedInIdentity};
use crate::signin::{clearing_cookie, is_same_origin, session_id};
use crate::store::{
    AccountStore, AuditReader, DynamoStore, ResourceReader, SessionStore, StoreError, UsageReader,
};
use hmac::{Hmac, Mac};
use lambda_http::http::{header, HeaderMap, Method, StatusCode};
use lambda_http::{Body, Request, Response};
use maud::{html, Markup, PreEscaped};
use sha2::Sha256;
use std::convert::Infallible;

/// Where a browser without a valid session is sent.
pub const SIGNED_OUT_PATH: &str = "/dashboard/signed-out";
/// Where the panel asks for one config value (a same-origin POST).
pub const CONFIG_PATH: &str = "/dashboard/config";
/// The header carrying the panel's CSRF token on that POST.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How many audit events the panel lists per resource.
pub const RECENT_EVENTS: i32 = 20;
/// Largest config request read.
const MAX_CONFIG_FORM_BYTES: usize = 4 * 1024;

/// The panel's only script: a config value is fetched when asked for (shown,
/// or copied), never put in the page before. Allowed by its hash alone.
const SCRIPT: &str = r#"
const token = document.querySelector('meta[name="csrf-token"]').content;
async function reveal(row) {
  if (row.dataset.value !== undefined) return row.dataset.value;
  const response = await fetch("/dashboard/config", {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", "x-csrf-token": token },
    body: new URLSearchParams({ resource_id: row.dataset.resource, name: row.dataset.name }),
  });
  const cell = row.querySelector(".value");
  if (!response.ok) { cell.textContent = "could not be read; reload the page"; return undefined; }
  const value = (await response.json()).value;
  row.dataset.value = value;
  cell.textContent = value;
  return value;
}
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const value = await reveal(button.closest("tr"));
  if (button.dataset.action === "copy" && value !== undefined) {
    await navigator.clipboard.writeText(value);
    button.textContent = "Copied";
  }
});
"#;

/// The platform's console, for the way back.
fn console_url(session: &Session) -> String {
    match session.platform {
        Platform::CleverCloud => "https://console.clever-cloud.com/".to_string(),
        Platform::Cloud66 => "https://app.cloud66.com/".to_string(),
        Platform::Heroku => crate::heroku::sso::dashboard_url(session.nav_data.as_deref()),
        Platform::Scalingo => "https://dashboard.scalingo.com/".to_string(),
        Platform::Aws => "https://console.aws.amazon.com/marketplace/home#/subscriptions".to_string(),
    }
}

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
pub async fn route<S: SessionStore + ResourceReader + AccountStore + AuditReader + UsageReader>(
    api: &DashboardApi<S>,
    request: Request,
) -> Result<Response<Body>, Infallible> {
    let result = match (request.method(), request.uri().path()) {
        (&Method::GET, "/dashboard") => panel(api, &request).await,
        (&Method::POST, CONFIG_PATH) => config_value(api, &request).await,
        (&Method::POST, "/dashboard/logout") => logout(api, &request).await,
        (&Method::GET, SIGNED_OUT_PATH) => Ok(signed_out()),
        _ => Ok(html::not_found()),
    };
    Ok(result.unwrap_or_else(|err| {
        tracing::warn!(error = %err, "panel could not reach storage");
        html::unavailable()
    }))
}

/// The token the panel's config requests carry: an HMAC keyed by the
/// session id, which only this browser holds (in an `HttpOnly` cookie), so
/// no other site can make one.
fn csrf_token(session_id: &str) -> String {
    hex::encode(csrf_mac(session_id).finalize().into_bytes())
}

fn csrf_mac(session_id: &str) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(session_id.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(b"dashboard-config");
    mac
}

fn csrf_token_matches(session_id: &str, headers: &HeaderMap) -> bool {
    let Some(token) = headers.get(CSRF_HEADER).and_then(|value| value.to_str().ok()) else {
        return false;
    };
    hex::decode(token).is_ok_and(|bytes| csrf_mac(session_id).verify_slice(&bytes).is_ok())
}

/// The session and the resources it may see: its Clever Cloud resource, or
/// its Cloud 66 account's (with the account).
async fn visible<S: SessionStore + ResourceReader + AccountStore>(
    store: &S,
    headers: &HeaderMap,
) -> Result<Option<(String, Session, Option<Account>, Vec<Resource>)>, StoreError> {
    let Some(id) = session_id(headers) else {
        return Ok(None);
    };
    let Some(session) = store.get_session(&id).await? else {
        return Ok(None);
    };
    let (account, resources) = match session.platform {
        Platform::CleverCloud | Platform::Heroku | Platform::Scalingo | Platform::Aws => {
            match store.get_resource(&session.subject_id).await? {
                Some(resource) => (None, vec![resource]),
                None => return Ok(None),
            }
        }
        Platform::Cloud66 => match store.get_account(&session.subject_id).await? {
            Some(account) => {
                let mut resources = Vec::new();
                for id in &account.resource_ids {
                    resources.extend(store.get_resource(id).await?);
                }
                (Some(account), resources)
            }
            None => return Ok(None),
        },
    };
    Ok(Some((id, session, account, resources)))
}

/// This month's usage of `resource` per dimension (docs/metering.md), for
/// a marketplace that bills by usage: (dimension, quantity reported,
/// quantity the marketplace accepted).
async fn month_usage<S: UsageReader>(
    store: &S,
    resource: &Resource,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Vec<(String, u64, u64)>>, StoreError> {
    if !resource.platform.bills_by_usage() {
        return Ok(None);
    }
    let month = now.format("%Y-%m-01T00:00:00Z").to_string();
    let counters = store.usage_since(&resource.id, &month).await?;
    Ok(Some(crate::metering::totals(&counters)))
}

async fn panel<S: SessionStore + ResourceReader + AccountStore + AuditReader + UsageReader>(
    api: &DashboardApi<S>,
    request: &Request,
) -> Result<Response<Body>, StoreError> {
    let Some((id, session, account, resources)) = visible(&api.store, request.headers()).await? else {
        return Ok(redirect(StatusCode::FOUND, SIGNED_OUT_PATH));
    };
    let mut sections = Vec::with_capacity(resources.len());
    for resource in &resources {
        let events = api.store.recent_events(&resource.id, RECENT_EVENTS).await?;
        let usage = month_usage(&api.store, resource, chrono::Utc::now()).await?;
        sections.push(resource_panel(resource, &events, usage.as_deref()));
    }
    let content = html! {
        @if let Some(identity) = &session.identity { (signed_in_as(identity)) }
        @if let Some(account) = &account { (account_summary(account)) }
        @if account.is_some() { h2 { "Resources" } }
        @if resources.is_empty() { p #no-resources { "No resources yet." } }
        @for section in sections { section { (section) } }
        p { a #console href=(console_url(&session)) { "Back to the platform's console" } }
        form method="post" action="/dashboard/logout" { button type="submit" { "Sign out" } }
        script { (PreEscaped(SCRIPT)) }
    };
    let mut response = page(
        StatusCode::OK,
        "Your add-on",
        html! { meta name="csrf-token" content=(csrf_token(&id)); (content) },
    );
    html::allow_inline_script(&mut response, SCRIPT);
    Ok(response)
}

fn status_text(status: ResourceStatus) -> &'static str {
    match status {
        ResourceStatus::Active => "active",
        ResourceStatus::Deprovisioned => "deprovisioned",
        ResourceStatus::Unconfirmed => "unconfirmed",
        ResourceStatus::Provisioning => "provisioning",
        ResourceStatus::Expired => "expired",
        ResourceStatus::Suspended => "suspended",
        ResourceStatus::Ending => "ending",
    }
}

fn platform_text(platform: Platform) -> &'static str {
    match platform {
        Platform::CleverCloud => "Clever Cloud",
        Platform::Cloud66 => "Cloud 66",
        Platform::Heroku => "Heroku",
        Platform::Scalingo => "Scalingo",
        Platform::Aws => "AWS Marketplace",
    }
}

fn resource_panel(
    resource: &Resource,
    events: &[AuditEvent],
    usage: Option<&[(String, u64, u64)]>,
) -> Markup {
    html! {
        dl {
            dt { "Resource" } dd { code { (resource.id) } }
            @if let Some(owner) = &resource.owner_name { dt { "Owner" } dd { (owner) } }
            dt { "Plan" } dd #plan { (resource.plan) }
            dt { "Status" } dd #status { (status_text(resource.status)) }
            dt { "Marketplace" } dd #marketplace { (platform_text(resource.platform)) }
            dt { "Marketplace id" } dd #marketplace-id { code { (resource.addon_id) } }
            dt { "Created" } dd { (resource.created_at) }
        }
        h2 { "Config vars" }
        @match resource.status {
            ResourceStatus::Active => {}
            ResourceStatus::Suspended => p #suspended { "This add-on is suspended by the marketplace; its config is hidden until it is resumed." },
            _ => p #inactive { "This add-on is " (status_text(resource.status)) "; its config is not shown." },
        }
        table.config {
            @for name in resource.config.names().filter(|_| resource.is_active()) {
                tr data-resource=(resource.id) data-name=(name) {
                    td { code { (name) } }
                    td { code.value { "••••••••" } }
                    td {
                        button type="button" data-action="show" { "Show" } " "
                        button type="button" data-action="copy" { "Copy" }
                    }
                }
            }
        }
        @if let Some(usage) = usage {
            h2 { "Usage this month" }
            @if usage.is_empty() { p #no-usage { "None reported yet." } }
            table.usage {
                @if !usage.is_empty() { tr { th { "Dimension" } th { "Reported" } th { "Billed by the marketplace" } } }
                @for (dimension, reported, accepted) in usage {
                    tr data-dimension=(dimension) {
                        td { code { (dimension) } }
                        td.reported { (reported) }
                        td.billed { (accepted) }
                    }
                }
            }
        }
        h2 { "Recent events" }
        @if events.is_empty() { p { "None yet." } }
        table.events {
            @for event in events {
                tr {
                    td { (event.at) }
                    td { (action_name(event)) }
                    td { (event.actor) }
                }
            }
        }
    }
}

/// An audit action's stored name (`plan_changed`, …).
fn action_name(event: &AuditEvent) -> String {
    serde_json::to_value(event.action)
        .ok()
        .and_then(|value| value.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Who the marketplace says signed in, and whether it vouched for the
/// email: the same line the OpenID Connect claims draw (docs/oidc.md).
fn signed_in_as(identity: &SignedInIdentity) -> Markup {
    html! {
        p #signed-in-as {
            @match (&identity.email, &identity.unverified_email) {
                (Some(email), _) if identity.email_verified => {
                    "Signed in as " (email) " (signed by " (platform_text(identity.platform)) ")."
                }
                (Some(email), _) | (None, Some(email)) => {
                    "Signed in to this add-on by " (platform_text(identity.platform))
                    ". The sign-in named " (email) ", but " (platform_text(identity.platform))
                    " did not sign it: it is not verified."
                }
                (None, None) => {
                    "Signed in to this add-on by " (platform_text(identity.platform)) ", which named no user."
                }
            }
        }
    }
}

fn account_summary(account: &Account) -> Markup {
    html! {
        dl {
            dt { "Account" } dd { code { (account.id) } }
            dt { "Email" } dd #email { (account.email) }
            @if let Some(name) = &account.name { dt { "Name" } dd { (name) } }
            dt { "Created" } dd { (account.created_at) }
        }
    }
}

/// `POST /dashboard/config` (`resource_id`, `name`): one config value of a
/// resource this session may see, for the panel's script; same-origin,
/// with the panel's CSRF token, never cached.
async fn config_value<S: SessionStore + ResourceReader + AccountStore>(
    api: &DashboardApi<S>,
    request: &Request,
) -> Result<Response<Body>, StoreError> {
    let refuse = |status: StatusCode, error: &str| {
        let mut response = json_response(status, &serde_json::json!({ "error": error }));
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        response
    };
    if !is_same_origin(request.headers()) {
        return Ok(refuse(StatusCode::FORBIDDEN, "cross_site_request"));
    }
    let Some((id, _, _, resources)) = visible(&api.store, request.headers()).await? else {
        return Ok(refuse(StatusCode::UNAUTHORIZED, "not_signed_in"));
    };
    if !csrf_token_matches(&id, request.headers()) {
        return Ok(refuse(StatusCode::FORBIDDEN, "bad_csrf_token"));
    }
    let body = request.body().as_ref();
    if body.len() > MAX_CONFIG_FORM_BYTES {
        return Ok(refuse(StatusCode::PAYLOAD_TOO_LARGE, "too_large"));
    }
    let field = |wanted: &str| {
        form_urlencoded::parse(body)
            .find(|(name, _)| name == wanted)
            .map(|(_, value)| value.into_owned())
    };
    let (Some(resource_id), Some(name)) = (field("resource_id"), field("name")) else {
        return Ok(refuse(StatusCode::BAD_REQUEST, "resource_id_and_name_required"));
    };
    let value = resources
        .iter()
        .find(|resource| resource.id == resource_id)
        // Only an active add-on's config: a suspended one's stays hidden
        // (docs/scalingo.md), a removed one's is gone (docs/security.md).
        .filter(|resource| resource.is_active())
        .and_then(|resource| resource.config.0.get(&name));
    let Some(value) = value else {
        return Ok(refuse(StatusCode::NOT_FOUND, "no_such_config_var"));
    };
    tracing::info!(resource_id = %resource_id, name = %name, "config value shown");
    let mut response = json_response(
        StatusCode::OK,
        &serde_json::json!({ "name": name, "value": value }),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(response)
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
    use crate::model::MeterState;
    use std::collections::BTreeMap;

    /// A premium Clever Cloud resource with one secret config value.
    fn resource_with_secret() -> Resource {
        Resource {
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
        }
    }

    #[test]
    fn the_resource_panel_escapes_outside_text_and_masks_config_values() {
        let resource = Resource {
            owner_name: Some("<script>alert(1)</script>".into()),
            ..resource_with_secret()
        };
        let markup = resource_panel(&resource, &[], None).into_string();
        assert!(
            markup.contains("&lt;script&gt;") && !markup.contains("<script>"),
            "{markup}"
        );
        assert!(markup.contains("ADDON_NAME_TOKEN") && !markup.contains("s3cret-value"));
        assert!(markup.contains("premium"));
    }

    const SESSION_ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn signed_in_api() -> DashboardApi<crate::store::memory::MemoryStore> {
        let store = crate::store::memory::MemoryStore::with_resource(resource_with_secret());
        store.sessions.lock().unwrap().insert(
            SESSION_ID.into(),
            Session {
                platform: Platform::CleverCloud,
                subject_id: "res_1".into(),
                email: None,
                nav_data: None,
                created_at: "2026-12-01T00:00:00.000Z".into(),
                expires_at: i64::MAX,
                identity: None,
            },
        );
        DashboardApi::new(store)
    }

    fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Request {
        let mut builder = lambda_http::http::Request::builder()
            .method(method)
            .uri(format!("https://addon.example{path}"))
            .header(
                header::COOKIE,
                format!("{}={SESSION_ID}", crate::signin::SESSION_COOKIE),
            );
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Body::Text(body.into())).unwrap()
    }

    fn counter(
        resource_id: &str,
        dimension: &str,
        hour: &str,
        quantity: u64,
        state: MeterState,
    ) -> crate::model::UsageCounter {
        crate::model::UsageCounter {
            resource_id: resource_id.into(),
            dimension: dimension.into(),
            hour: hour.into(),
            quantity,
            state,
            sealed_at: None,
            attempts: 0,
            outcome: None,
            metering_record_id: None,
            finished_at: None,
        }
    }

    #[tokio::test]
    async fn this_months_usage_is_summed_per_dimension_for_a_marketplace_that_bills_by_it() {
        let store = crate::store::memory::MemoryStore::default();
        store.usage.lock().unwrap().extend([
            counter(
                "res_aws_1",
                "gb",
                "2026-11-30T23:00:00Z",
                1000,
                MeterState::Metered,
            ),
            counter("res_aws_1", "gb", "2026-12-01T00:00:00Z", 5, MeterState::Metered),
            counter("res_aws_1", "gb", "2026-12-07T10:00:00Z", 7, MeterState::Open),
            counter(
                "res_aws_1",
                "calls",
                "2026-12-07T10:00:00Z",
                2,
                MeterState::Metered,
            ),
            counter("res_aws_2", "gb", "2026-12-07T10:00:00Z", 99, MeterState::Metered),
        ]);
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-07T11:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let mut resource = Resource::new(
            "res_aws_1".into(),
            Platform::Aws,
            "arn".into(),
            "basic".into(),
            Default::default(),
            &crate::model::Timestamp::now(),
        );
        let usage = month_usage(&store, &resource, now).await.unwrap();
        assert_eq!(usage, Some(vec![("calls".into(), 2, 2), ("gb".into(), 12, 5)]));
        let markup = resource_panel(&resource, &[], usage.as_deref()).into_string();
        assert!(
            markup.contains("Usage this month") && markup.contains(r#"data-dimension="gb""#),
            "{markup}"
        );
        assert!(
            markup.contains(r#"<td class="reported">12</td><td class="billed">5</td>"#),
            "{markup}"
        );
        assert!(!resource_panel(&resource, &[], Some(&[]))
            .into_string()
            .contains("<th>"));
        assert!(resource_panel(&resource, &[], Some(&[]))
            .into_string()
            .contains("None reported yet."));
        resource.platform = Platform::Heroku;
        assert_eq!(month_usage(&store, &resource, now).await.unwrap(), None);
        assert!(!resource_panel(&resource, &[], None)
            .into_string()
            .contains("Usage this month"));
    }

    #[tokio::test]
    async fn the_panel_shows_the_resource_and_no_config_value_and_allows_only_its_script() {
        let api = signed_in_api();
        let response = route(&api, request("GET", "/dashboard", &[], "")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = std::str::from_utf8(response.body().as_ref()).unwrap();
        assert!(
            body.contains("ADDON_NAME_TOKEN") && !body.contains("s3cret-value"),
            "{body}"
        );
        for shown in [
            "premium",
            "addon_1",
            "Clever Cloud",
            "active",
            "console.clever-cloud.com",
        ] {
            assert!(body.contains(shown), "{shown}");
        }
        assert!(body.contains(&csrf_token(SESSION_ID)));
        let policy = response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        use base64::Engine as _;
        use sha2::Digest as _;
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(SCRIPT));
        assert!(
            policy.contains(&format!("script-src 'sha256-{hash}'")),
            "{policy}"
        );
        assert!(policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"));
    }

    #[tokio::test]
    async fn a_config_value_is_given_same_origin_with_the_token_for_a_resource_the_session_sees() {
        let api = signed_in_api();
        let token = csrf_token(SESSION_ID);
        let form = "resource_id=res_1&name=ADDON_NAME_TOKEN";
        let same_origin = ("sec-fetch-site", "same-origin");
        let ok = route(
            &api,
            request("POST", CONFIG_PATH, &[same_origin, (CSRF_HEADER, &token)], form),
        )
        .await
        .unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        assert!(std::str::from_utf8(ok.body().as_ref())
            .unwrap()
            .contains("s3cret-value"));
        assert_eq!(ok.headers()[header::CACHE_CONTROL], "no-store");
        for (headers, body, status) in [
            (
                vec![("sec-fetch-site", "cross-site"), (CSRF_HEADER, token.as_str())],
                form,
                StatusCode::FORBIDDEN,
            ),
            (vec![same_origin], form, StatusCode::FORBIDDEN),
            (
                vec![same_origin, (CSRF_HEADER, &"00".repeat(32))],
                form,
                StatusCode::FORBIDDEN,
            ),
            (
                vec![same_origin, (CSRF_HEADER, &token)],
                "resource_id=res_2&name=ADDON_NAME_TOKEN",
                StatusCode::NOT_FOUND,
            ),
            (
                vec![same_origin, (CSRF_HEADER, &token)],
                "resource_id=res_1&name=OTHER",
                StatusCode::NOT_FOUND,
            ),
            (
                vec![same_origin, (CSRF_HEADER, &token)],
                "name=ADDON_NAME_TOKEN",
                StatusCode::BAD_REQUEST,
            ),
        ] {
            let response = route(&api, request("POST", CONFIG_PATH, &headers, body))
                .await
                .unwrap();
            assert_eq!(response.status(), status, "{headers:?} {body}");
            assert!(!std::str::from_utf8(response.body().as_ref())
                .unwrap()
                .contains("s3cret-value"));
        }
    }
}
