//! `POST /aws/register`: the listing's fulfillment URL (docs/aws-marketplace.md,
//! "Registration"). The buyer's browser posts AWS's registration token
//! here; it is resolved server-side (never put in a URL or a log), the
//! purchase is provisioned once through the lifecycle, and the buyer is
//! signed in to the vendor's app (or the panel).

use super::seller::{MeteringClient, ResolveCustomer, SellerError};
use super::{resource_id, AwsMarketplaceConfig};
use crate::config::{self, ConfigError};
use crate::html;
use crate::lifecycle::{Lifecycle, LifecycleError};
use crate::model::{
    aws_license_id, AwsCustomer, AwsLicense, Platform, Resource, ResourceStatus, Session, SignedInIdentity,
    Timestamp,
};
use crate::oidc::{Clients, Issuer};
use crate::provisioner::{Provisioner, VendorProvisioner};
use crate::refresh::Fresh;
use crate::signin::{fingerprint, Refusal, SignInError, PANEL_PATH};
use crate::signin::{Sessions, FUTURE_TOLERANCE_SECONDS};
use crate::store::{
    AlsoWrite, AwsMarketplaceStore, DynamoStore, ProvisionStore, ResourceWriter, SessionStore,
};
use lambda_http::http::{header, HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, Response};
use maud::html;
use std::convert::Infallible;

/// The form field AWS Marketplace posts the token in.
pub const TOKEN_FIELD: &str = "x-amzn-marketplace-token";
/// How long AWS lets a token resolve; its resolution is kept that long.
pub const TOKEN_LIFETIME_SECONDS: i64 = 4 * 3600;
/// Larger bodies are no registration form.
const MAX_FORM_BYTES: usize = 16 * 1024;
/// Longer tokens are no token AWS issued.
const MAX_TOKEN_CHARS: usize = 4096;

/// The registration function, built once at cold start.
pub struct RegisterApi<S, P, R> {
    sold: Option<Sold<S, P, R>>,
    sessions: Sessions<S>,
    /// The vendor's apps (`OIDC_CLIENTS`): one with an `initiate_login_uri`
    /// takes the buyer over, as after any sign-in.
    clients: Fresh<Clients>,
    issuer: Issuer,
}

/// What serves the route when the add-on is sold on AWS Marketplace.
struct Sold<S, P, R> {
    config: AwsMarketplaceConfig,
    lifecycle: Lifecycle<S, P>,
    resolver: R,
}

impl<S, P: Provisioner, R> RegisterApi<S, P, R> {
    /// With fixed clients (tests).
    pub fn new(
        config: Option<AwsMarketplaceConfig>,
        store: S,
        provisioner: P,
        resolver: R,
        config_vars: Vec<String>,
        session_ttl_seconds: i64,
    ) -> Self
    where
        S: Clone,
    {
        Self {
            sold: config.map(|config| Sold {
                lifecycle: Lifecycle::new(store.clone(), provisioner, config.marketplace(config_vars)),
                config,
                resolver,
            }),
            sessions: Sessions::new(store, session_ttl_seconds),
            clients: Fresh::fixed(Clients::default()),
            issuer: Issuer::FromApiGateway,
        }
    }
}

impl RegisterApi<DynamoStore, VendorProvisioner, MeteringClient> {
    /// `AWS_MARKETPLACE_*`, `ADDON_*`, `PROVISIONER_*`, `SESSION_TTL_SECONDS`,
    /// `PUBLIC_URL` and `OIDC_CLIENTS`.
    pub async fn from_env(function: &str) -> Result<Self, ConfigError> {
        let parts = super::Parts::from_env(function).await?;
        let lookup = parts.environment.lookup();
        let session_ttl = config::seconds(&lookup, "SESSION_TTL_SECONDS", 3600)?;
        let issuer = Issuer::from_lookup(&lookup)?;
        let region = parts.config.as_ref().and_then(|aws| aws.region.as_deref());
        let resolver = MeteringClient::new(&parts.sdk, region);
        let clients = Fresh::new(parts.source, &parts.environment, |environment| {
            Clients::from_lookup(&environment.lookup())
        })?;
        let mut api = Self::new(
            parts.config,
            parts.store,
            parts.provisioner,
            resolver,
            parts.config_vars,
            session_ttl,
        );
        (api.clients, api.issuer) = (clients, issuer);
        Ok(api)
    }
}

/// The registration function's routes.
pub async fn route<S, P, R>(
    api: &RegisterApi<S, P, R>,
    request: Request,
) -> Result<Response<Body>, Infallible>
where
    S: ProvisionStore + ResourceWriter + SessionStore + AwsMarketplaceStore,
    P: Provisioner,
    R: ResolveCustomer,
{
    let response = match (request.method(), request.uri().path()) {
        (&Method::POST, "/aws/register") => match &api.sold {
            Some(sold) => register(api, sold, &request).await,
            None => html::not_found(),
        },
        _ => html::not_found(),
    };
    Ok(response)
}

/// Why a registration got no sign-in, each a page that says what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Unreadable,
    InvalidToken,
    ExpiredToken,
    OtherProduct,
    Ended,
    /// AWS or this stack could not answer now: the same post may be sent again.
    TryAgain,
}

/// `app_origin`: where a retried post's success hands the buyer off (the
/// vendor's app), which the retry form's policy must allow.
fn stop_page(stop: Stop, token: Option<&str>, app_origin: Option<&str>) -> Response<Body> {
    tracing::info!(reason = ?stop, "registration stopped");
    let back = html! {
        p { "Go back to the product's page on AWS Marketplace (Your Marketplace software, in the AWS console) and choose " strong { "Set up your account" } " again: AWS then issues a new registration." }
    };
    let (status, title, message) = match stop {
        Stop::Unreadable => (
            StatusCode::BAD_REQUEST,
            "Registration not readable",
            "This page expects the registration AWS Marketplace posts after a purchase, and none came with it.",
        ),
        Stop::InvalidToken => (
            StatusCode::BAD_REQUEST,
            "Registration not valid",
            "AWS Marketplace did not recognise this registration.",
        ),
        Stop::ExpiredToken => (
            StatusCode::BAD_REQUEST,
            "Registration expired",
            "This registration has expired or was already used.",
        ),
        Stop::OtherProduct => (
            StatusCode::FORBIDDEN,
            "Registration for another product",
            "This registration is for a product this service does not sell.",
        ),
        Stop::Ended => (
            StatusCode::FORBIDDEN,
            "Subscription ended",
            "This subscription has ended on AWS Marketplace. Subscribe again there to use the service.",
        ),
        Stop::TryAgain => {
            // The same form again: the token stays in the body, as it came.
            let mut response = html::page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again",
                html! {
                    p { "Your subscription could not be set up just now. Nothing was lost: try again in a moment." }
                    @if let Some(token) = token {
                        form method="post" action="/aws/register" {
                            input type="hidden" name=(TOKEN_FIELD) value=(token);
                            button type="submit" { "Try again" }
                        }
                    }
                },
            );
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(5));
            if let Some(origin) = app_origin {
                html::allow_form_redirect_to(&mut response, origin);
            }
            return response;
        }
    };
    html::page(status, title, html! { p { (message) } (back) })
}

/// The token from AWS's form post, if the post is one.
fn token(request: &Request) -> Option<String> {
    let body = request.body().as_ref();
    if body.len() > MAX_FORM_BYTES
        || !crate::http::has_media_type(request.headers(), "application/x-www-form-urlencoded")
    {
        return None;
    }
    form_urlencoded::parse(body)
        .find(|(name, _)| name == TOKEN_FIELD)
        .map(|(_, value)| value.into_owned())
        .filter(|token| {
            (1..=MAX_TOKEN_CHARS).contains(&token.len()) && token.chars().all(|c| c.is_ascii_graphic())
        })
}

async fn register<S, P, R>(
    api: &RegisterApi<S, P, R>,
    sold: &Sold<S, P, R>,
    request: &Request,
) -> Response<Body>
where
    S: ProvisionStore + ResourceWriter + SessionStore + AwsMarketplaceStore,
    P: Provisioner,
    R: ResolveCustomer,
{
    let Some(token) = token(request) else {
        return stop_page(Stop::Unreadable, None, None);
    };
    let clients = api.clients.get().await;
    match registered(api, sold, &token).await {
        Ok(landing) => crate::sso_login::hand_off(landing, &clients, &api.issuer, request),
        Err(stop) => {
            let app_origin = clients
                .handoff()
                .and_then(|client| client.initiate_login_uri.as_deref())
                .and_then(|uri| reqwest::Url::parse(uri).ok())
                .map(|url| url.origin().ascii_serialization());
            stop_page(stop, Some(&token), app_origin.as_deref())
        }
    }
}

/// What a registration token, by its digest, spends when it opens the
/// buyer's session: one session per token, whatever the re-posts.
pub fn spent_key(token_fingerprint: &str) -> String {
    format!("aws-register\n{token_fingerprint}")
}

/// The purchase behind `token`, provisioned once, and the buyer's session.
///
/// A new purchase costs the contract's round trips and no more: a read for
/// an earlier post of the token, `ResolveCustomer`, one read of what events
/// said of the license and of its resource, the vendor's provision, and one
/// transaction that creates the resource, keeps the token's resolution,
/// opens the session and holds the license's state to what was read (an
/// event handled meanwhile fails it: then it is decided again, the slow way).
async fn registered<S, P, R>(
    api: &RegisterApi<S, P, R>,
    sold: &Sold<S, P, R>,
    token: &str,
) -> Result<Response<Body>, Stop>
where
    S: ProvisionStore + ResourceWriter + SessionStore + AwsMarketplaceStore,
    P: Provisioner,
    R: ResolveCustomer,
{
    let store = api.sessions.store();
    let digest = fingerprint(token);
    let now = Timestamp::now();
    let keep_until = now.unix() + TOKEN_LIFETIME_SECONDS + FUTURE_TOLERANCE_SECONDS;
    let (customer, resolved_now) = match store.get_aws_token(&digest).await.map_err(unavailable)? {
        Some(customer) => (customer, false),
        None => (resolve(sold, token).await?, true),
    };
    // Once AWS answered, a stop below keeps its answer: the same form again
    // (a retry, a reload) must get the same page, not AWS's `ExpiredToken`
    // for a resubmitted token.
    let kept = |stop: Stop| {
        let resolution = resolved_now.then(|| (digest.clone(), customer.clone()));
        async move {
            if let Some((digest, customer)) = resolution {
                if let Err(err) = store.save_aws_token(&digest, &customer, keep_until).await {
                    tracing::warn!(error = %err, "the token's resolution could not be kept");
                }
            }
            stop
        }
    };
    if customer.product_code != sold.config.product_code {
        return Err(kept(Stop::OtherProduct).await);
    }
    let license_id = aws_license_id(&customer.license_arn);
    let id = resource_id(license_id);
    let (mut events_said, mut existing) = match store.get_aws_purchase(license_id, &id).await {
        Ok(found) => found,
        Err(err) => return Err(kept(unavailable(err)).await),
    };
    if events_said
        .as_ref()
        .is_some_and(|license| license.ended || license.deprovisioned)
    {
        return Err(kept(Stop::Ended).await);
    }
    let spent = spent_key(&digest);
    let spent_until = keep_until;
    let mut plan_asked = None;
    if existing.is_none() {
        let plan = events_said
            .as_ref()
            .and_then(|license| license.entitled_plan.clone())
            .unwrap_or_else(|| sold.config.default_plan().to_string());
        plan_asked = Some(plan.clone());
        let resource = new_resource(&customer, id.clone(), plan, &now);
        let (session_id, session) = api.sessions.fresh(session_for(&customer, &resource, &now));
        let spent_fingerprint = fingerprint(&spent);
        let mut also = vec![
            AlsoWrite::Session {
                token_fingerprint: &spent_fingerprint,
                token_expires_at: spent_until,
                session_id: &session_id,
                session: &session,
            },
            AlsoWrite::AwsLicenseAt {
                license_id,
                version: events_said.as_ref().map_or(0, |license| license.version),
            },
        ];
        if resolved_now {
            also.push(AlsoWrite::AwsToken {
                token_fingerprint: &digest,
                customer: &customer,
                expires_at: keep_until,
            });
        }
        match sold.lifecycle.provision_with(resource, &now, &also).await {
            Ok((resource, true)) => {
                tracing::info!(resource_id = %resource.id, plan = %resource.plan, "AWS Marketplace purchase registered");
                return Ok(api.sessions.landing(&session_id));
            }
            // Another post of the purchase provisioned it, or an event
            // changed its license: decide again on what is stored now.
            Ok((_, false)) | Err(LifecycleError::Changed) => {
                (events_said, existing) = match store.get_aws_purchase(license_id, &id).await {
                    Ok(found) => found,
                    Err(err) => return Err(kept(unavailable(err)).await),
                };
            }
            Err(err) => return Err(kept(lifecycle_stop(err)).await),
        }
    }
    // A purchase registered before (a re-post, a second tab, a new token
    // for it), or one whose license an event changed while this ran.
    if resolved_now {
        store
            .save_aws_token(&digest, &customer, keep_until)
            .await
            .map_err(unavailable)?;
    }
    let resource = settled(sold, store, &customer, (events_said, existing), plan_asked, &now).await?;
    match api
        .sessions
        .open(&spent, spent_until, session_for(&customer, &resource, &now))
        .await
    {
        Ok(landing) => Ok(landing),
        // One session per token: a re-post (a reload) lands where the first
        // did, in the session that one opened, and opens none.
        Err(SignInError::Refused(Refusal::Replayed)) => Ok(html::redirect(StatusCode::SEE_OTHER, PANEL_PATH)),
        Err(SignInError::Refused(_)) => Err(Stop::TryAgain),
        Err(SignInError::Store(err)) => Err(unavailable(err)),
    }
}

/// `ResolveCustomer`, its refusals as the pages they get.
async fn resolve<S, P, R: ResolveCustomer>(sold: &Sold<S, P, R>, token: &str) -> Result<AwsCustomer, Stop> {
    sold.resolver.resolve_customer(token).await.map_err(|err| match err {
        SellerError::InvalidToken => Stop::InvalidToken,
        SellerError::ExpiredToken => Stop::ExpiredToken,
        SellerError::Unavailable(detail) => {
            tracing::warn!(%detail, "ResolveCustomer unavailable");
            Stop::TryAgain
        }
        SellerError::Refused(detail) => {
            tracing::error!(%detail, "ResolveCustomer refused: check the function's role and the listing");
            Stop::TryAgain
        }
    })
}

/// The session the buyer gets: who AWS vouched for, and the purchase.
fn session_for(customer: &AwsCustomer, resource: &Resource, now: &Timestamp) -> Session {
    let identity = SignedInIdentity {
        subject: SignedInIdentity::subject_of(Platform::Aws, &format!("account:{}", customer.aws_account_id)),
        platform: Platform::Aws,
        // AWS gives no email: the vendor's app asks the buyer if it needs one.
        email: None,
        email_verified: false,
        unverified_email: None,
        name: None,
        resource_id: None,
        plan: None,
        marketplace_id: None,
        aws_account_id: Some(customer.aws_account_id.clone()),
        auth_time: now.unix(),
    }
    .with_resource(Some(resource));
    Session {
        platform: Platform::Aws,
        subject_id: resource.id.clone(),
        email: None,
        nav_data: None,
        created_at: now.to_string(),
        expires_at: 0,
        identity: Some(identity),
    }
}

fn new_resource(customer: &AwsCustomer, id: String, plan: String, now: &Timestamp) -> Resource {
    Resource {
        owner_id: Some(customer.aws_account_id.clone()),
        user_id: Some(customer.customer_identifier.clone()).filter(|id| !id.is_empty()),
        ..Resource::new(
            id,
            Platform::Aws,
            customer.license_arn.clone(),
            plan,
            Default::default(),
            now,
        )
    }
}

/// The purchase's resource, as events left it: provisioned if it is not
/// yet (on `plan_asked`, the plan the vendor was already asked for, else
/// the entitled plan, else the listing's first), then brought to what the
/// events said while it ran (it provisioned before it reads; an event
/// writes before it reads).
async fn settled<S, P, R>(
    sold: &Sold<S, P, R>,
    store: &S,
    customer: &AwsCustomer,
    (events_said, existing): (Option<AwsLicense>, Option<Resource>),
    plan_asked: Option<String>,
    now: &Timestamp,
) -> Result<Resource, Stop>
where
    S: ProvisionStore + ResourceWriter + AwsMarketplaceStore,
    P: Provisioner,
{
    let license_id = aws_license_id(&customer.license_arn);
    let id = resource_id(license_id);
    let entitled = events_said
        .as_ref()
        .and_then(|license| license.entitled_plan.clone());
    let mut resource = match existing {
        Some(existing) if existing.is_active() || existing.status == ResourceStatus::Suspended => existing,
        Some(_) => return Err(Stop::Ended),
        None if events_said
            .as_ref()
            .is_some_and(|license| license.ended || license.deprovisioned) =>
        {
            return Err(Stop::Ended)
        }
        None => {
            let plan = plan_asked
                .or(entitled)
                .unwrap_or_else(|| sold.config.default_plan().to_string());
            sold.lifecycle
                .provision(new_resource(customer, id, plan, now), now)
                .await
                .map_err(lifecycle_stop)?
        }
    };
    let Some(latest) = store.get_aws_license(license_id).await.map_err(unavailable)? else {
        return Ok(resource);
    };
    if latest.deprovisioned {
        sold.lifecycle
            .deprovision(&resource.id)
            .await
            .map_err(lifecycle_stop)?;
        return Err(Stop::Ended);
    }
    if latest.ended {
        sold.lifecycle
            .mark_ending(&resource.id)
            .await
            .map_err(lifecycle_stop)?;
        return Err(Stop::Ended);
    }
    if let Some(entitled) = latest.entitled_plan.filter(|plan| *plan != resource.plan) {
        sold.lifecycle
            .change_plan(&resource.id, &entitled, None)
            .await
            .map_err(lifecycle_stop)?;
        resource.plan = entitled;
    }
    Ok(resource)
}

fn unavailable(err: crate::store::StoreError) -> Stop {
    tracing::warn!(error = %err, "registration could not reach storage");
    Stop::TryAgain
}

fn lifecycle_stop(err: LifecycleError) -> Stop {
    match err {
        LifecycleError::AlreadyDeprovisioned | LifecycleError::NotFound => Stop::Ended,
        err => {
            tracing::warn!(error = %err, "registration could not provision");
            Stop::TryAgain
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http::HeaderValue;

    fn post(content_type: &str, body: &str) -> Request {
        let mut request = Request::new(Body::from(body.to_string()));
        *request.method_mut() = Method::POST;
        request
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        request
    }

    const FORM: &str = "application/x-www-form-urlencoded";

    #[test]
    fn only_a_form_post_with_one_plain_token_is_read() {
        assert_eq!(
            token(&post(FORM, "x-amzn-marketplace-token=tok%2Babc%3D%3D&other=1")).as_deref(),
            Some("tok+abc==")
        );
        assert_eq!(
            token(&post("application/json", r#"{"x-amzn-marketplace-token":"t"}"#)),
            None
        );
        assert_eq!(token(&post(FORM, "x-amzn-marketplace-token=")), None);
        assert_eq!(
            token(&post(FORM, "x-amzn-marketplace-token=a%20b")),
            None,
            "no spaces"
        );
        assert_eq!(
            token(&post(FORM, "x-amzn-marketplace-token=a%0Ab")),
            None,
            "no controls"
        );
        let long = format!("x-amzn-marketplace-token={}", "a".repeat(MAX_TOKEN_CHARS + 1));
        assert_eq!(token(&post(FORM, &long)), None);
        let huge = format!("x-amzn-marketplace-token=t&pad={}", "a".repeat(MAX_FORM_BYTES));
        assert_eq!(token(&post(FORM, &huge)), None);
    }

    fn text(response: &Response<Body>) -> String {
        String::from_utf8_lossy(response.body().as_ref()).to_string()
    }

    #[test]
    fn each_stop_is_a_page_that_says_what_to_do_and_only_a_retry_carries_the_form() {
        for (stop, status) in [
            (Stop::Unreadable, 400),
            (Stop::InvalidToken, 400),
            (Stop::ExpiredToken, 400),
            (Stop::OtherProduct, 403),
            (Stop::Ended, 403),
        ] {
            let page = stop_page(stop, Some("tok-secret"), None);
            assert_eq!(page.status(), status, "{stop:?}");
            assert!(text(&page).contains("AWS Marketplace"), "{stop:?}");
            assert!(
                !text(&page).contains("tok-secret"),
                "{stop:?}: no token on a refusal"
            );
        }
        let retry = stop_page(Stop::TryAgain, Some("tok-<secret>"), Some("https://app.example"));
        assert_eq!(retry.status(), 503);
        assert_eq!(retry.headers()[header::RETRY_AFTER], "5");
        let html = text(&retry);
        assert!(
            html.contains(r#"value="tok-&lt;secret&gt;""#),
            "escaped, in the body: {html}"
        );
        let policy = retry.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            policy.contains("form-action 'self' https://app.example"),
            "{policy}"
        );
    }

    #[test]
    fn a_token_spends_one_session_whatever_its_reposts() {
        assert_eq!(spent_key("abc"), spent_key("abc"));
        assert_ne!(spent_key("abc"), spent_key("abd"));
        assert!(
            !spent_key("abc").starts_with("signin\n"),
            "apart from the marketplaces' sign-ins"
        );
    }
}
