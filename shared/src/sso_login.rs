//! The `sso-login` function: its configuration and routes, over the
//! sessions kernel ([`crate::signin`]) and each platform's own sign-in.

use crate::clevercloud::sso::{self as clevercloud_sso, CleverCloudSso};
use crate::cloud66::sso::{self as cloud66_sso, Cloud66Sso};
use crate::config::{self, ConfigError};
use crate::heroku::sso::{self as heroku_sso, HerokuSso};
use crate::html;
use crate::oidc::{self, Clients, Issuer};
use crate::refresh::{Fresh, SecretSource};
use crate::scalingo::sso::{self as scalingo_sso, ScalingoSso};
use crate::signin::{Sessions, SignInError, PANEL_PATH};
use crate::store::{AccountStore, DynamoStore, ResourceReader, SessionStore};
use lambda_http::http::{header, HeaderValue, Method};
use lambda_http::{Body, Request, Response};
use std::convert::Infallible;

/// Everything the `sso-login` function needs, built once at cold start; the
/// keys follow the secret (`crate::refresh`), so a salt or UID replaced in
/// it stops verifying within `SECRETS_TTL_SECONDS`.
pub struct SignInApi<S> {
    pub sessions: Sessions<S>,
    keys: Fresh<SignInKeys>,
    /// The OpenID Connect provider's issuer, for the hand-off to the app.
    issuer: Issuer,
}

/// What verifies each platform's sign-in.
pub struct SignInKeys {
    pub clevercloud: CleverCloudSso,
    /// `None` when Cloud 66 SSO is not configured.
    pub cloud66: Option<Cloud66Sso>,
    /// `None` when the add-on is not sold on Heroku.
    pub heroku: Option<HerokuSso>,
    /// `None` when the add-on is not sold on Scalingo.
    pub scalingo: Option<ScalingoSso>,
    /// The vendor's apps (`OIDC_CLIENTS`): one with an `initiate_login_uri`
    /// takes the customer over after sign-in, instead of the panel.
    pub clients: Clients,
}

impl SignInKeys {
    /// `ADDON_SSO_SALT`, `SSO_MAX_AGE_SECONDS`, the `CLOUD66_*` and the
    /// `HEROKU_*` variables.
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let clients = Clients::from_lookup(lookup)?;
        // An app to hand customers to, with no provider to sign them in
        // there, would strand every sign-in: refuse it here too, as the
        // `oidc` function does.
        if !clients.is_empty() && config::optional(lookup, oidc::keys::SIGNING_KEY_VAR).is_none() {
            return Err(ConfigError::new(
                oidc::keys::SIGNING_KEY_VAR,
                "is missing, but OIDC_CLIENTS registers clients (`provider oidc-key` prints a new key)",
            ));
        }
        Ok(Self {
            clevercloud: CleverCloudSso::from_lookup(lookup)?,
            cloud66: Cloud66Sso::from_lookup(lookup)?,
            heroku: HerokuSso::from_lookup(lookup)?,
            scalingo: ScalingoSso::from_lookup(lookup)?,
            clients,
        })
    }
}

impl<S> SignInApi<S> {
    /// With fixed keys and no app to hand off to (tests).
    pub fn new(sessions: Sessions<S>, clevercloud: CleverCloudSso, cloud66: Option<Cloud66Sso>) -> Self {
        Self::with_keys(
            sessions,
            SignInKeys {
                clevercloud,
                cloud66,
                heroku: None,
                scalingo: None,
                clients: Clients::default(),
            },
            Issuer::FromApiGateway,
        )
    }

    /// With fixed keys (tests).
    pub fn with_keys(sessions: Sessions<S>, keys: SignInKeys, issuer: Issuer) -> Self {
        Self {
            sessions,
            keys: Fresh::fixed(keys),
            issuer,
        }
    }
}

impl SignInApi<DynamoStore> {
    /// Reads `TABLE_NAME`, `ADDON_SSO_SALT`, `SSO_MAX_AGE_SECONDS`,
    /// `SESSION_TTL_SECONDS` and the `CLOUD66_*` variables.
    pub async fn from_env(function: &str) -> Result<Self, ConfigError> {
        let aws = config::aws_sdk_config(function).await;
        let (source, environment) = SecretSource::load(&aws, function).await?;
        let lookup = environment.lookup();
        let keys = Fresh::new(source, &environment, |environment| {
            SignInKeys::from_lookup(&environment.lookup())
        })?;
        let session_ttl = config::seconds(&lookup, "SESSION_TTL_SECONDS", 3600)?;
        let issuer = Issuer::from_lookup(&lookup)?;
        let table = config::required(&lookup, "TABLE_NAME")?;
        let store = DynamoStore::ready(&aws, table).await;
        Ok(Self {
            sessions: Sessions::new(store, session_ttl),
            keys,
            issuer,
        })
    }
}

/// The `sso-login` function's routes.
pub async fn route<S: ResourceReader + AccountStore + SessionStore>(
    api: &SignInApi<S>,
    request: Request,
) -> Result<Response<Body>, Infallible> {
    let keys = api.keys.get().await;
    let result = match (request.method(), request.uri().path()) {
        (&Method::POST, "/clevercloud/sso/login") => {
            clevercloud_sso::login(&keys.clevercloud, &api.sessions, &request).await
        }
        (&Method::POST, "/heroku/sso/login") => {
            heroku_sso::login(keys.heroku.as_ref(), &api.sessions, &request).await
        }
        (&Method::GET, "/scalingo/sso") => {
            scalingo_sso::login(keys.scalingo.as_ref(), &api.sessions, &request).await
        }
        (&Method::GET, "/cloud66/sso/start") => {
            cloud66_sso::start(keys.cloud66.as_ref(), &api.sessions).await
        }
        (&Method::GET, "/cloud66/sso/callback") => {
            cloud66_sso::callback(keys.cloud66.as_ref(), &api.sessions, &request).await
        }
        _ => Ok(html::not_found()),
    };
    Ok(match result {
        Ok(response) => hand_off(response, &keys.clients, &api.issuer, &request),
        Err(err) => SignInError::into_response(err),
    })
}

/// A sign-in that lands on the panel lands in the vendor's app instead
/// when one is registered to take the customer over (OIDC Core §4,
/// third-party-initiated login; docs/oidc.md "The hand-off"). Anything
/// else (a Cloud 66 link resuming, say) keeps its way.
pub fn hand_off(
    mut response: Response<Body>,
    clients: &Clients,
    issuer: &Issuer,
    request: &Request,
) -> Response<Body> {
    let lands_on_panel = response
        .headers()
        .get(header::LOCATION)
        .is_some_and(|location| location == PANEL_PATH);
    let app_login = clients
        .handoff()
        .zip(issuer.for_request(request))
        .and_then(|(client, issuer)| oidc::third_party_login_url(client, &issuer))
        .and_then(|url| HeaderValue::from_str(&url).ok());
    if let (true, Some(app_login)) = (lands_on_panel, app_login) {
        response.headers_mut().insert(header::LOCATION, app_login);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::html::redirect;
    use lambda_http::http::StatusCode;

    const SECRET: &str = "app-secret-0123456789";

    fn clients(initiate_login_uri: Option<&str>) -> Clients {
        let extra = initiate_login_uri
            .map(|uri| format!(r#","initiate_login_uri":"{uri}""#))
            .unwrap_or_default();
        Clients::from_json(&format!(
            r#"[{{"client_id":"app","client_secret":"{SECRET}","redirect_uris":["https://app.example/cb"]{extra}}}]"#
        ))
        .unwrap()
    }

    fn location(response: &Response<Body>) -> &str {
        response.headers()[header::LOCATION].to_str().unwrap()
    }

    #[test]
    fn registered_apps_without_a_signing_key_stop_the_cold_start() {
        let registration = format!(
            r#"[{{"client_id":"app","client_secret":"{SECRET}","redirect_uris":["https://app.example/cb"]}}]"#
        );
        let lookup = |key: Option<&'static str>| {
            let registration = registration.clone();
            move |var: &str| match var {
                "ADDON_SSO_SALT" => Some("salt-0123456789abcdef".to_string()),
                "OIDC_CLIENTS" => Some(registration.clone()),
                "OIDC_SIGNING_KEY" => key.map(str::to_string),
                _ => None,
            }
        };
        let err = SignInKeys::from_lookup(&lookup(None)).err().expect("refused");
        assert!(err.to_string().contains("OIDC_SIGNING_KEY"), "{err}");
        assert!(SignInKeys::from_lookup(&lookup(Some("-----BEGIN PRIVATE KEY-----"))).is_ok());
    }

    #[test]
    fn a_sign_in_bound_for_the_panel_goes_to_the_app_that_takes_over() {
        let issuer = Issuer::Fixed("https://addon.example".into());
        let request = Request::default();
        let handed = hand_off(
            redirect(StatusCode::SEE_OTHER, PANEL_PATH),
            &clients(Some("https://app.example/login")),
            &issuer,
            &request,
        );
        assert_eq!(
            location(&handed),
            "https://app.example/login?iss=https%3A%2F%2Faddon.example&target_link_uri=https%3A%2F%2Fapp.example%2F"
        );
        // No app with an initiate_login_uri: the panel stays the landing.
        let kept = hand_off(
            redirect(StatusCode::SEE_OTHER, PANEL_PATH),
            &clients(None),
            &issuer,
            &request,
        );
        assert_eq!(location(&kept), PANEL_PATH);
        // A Cloud 66 link resuming keeps its way.
        let resuming = hand_off(
            redirect(StatusCode::SEE_OTHER, "/cloud66/link/resume"),
            &clients(Some("https://app.example/login")),
            &issuer,
            &request,
        );
        assert_eq!(location(&resuming), "/cloud66/link/resume");
        // No issuer known (no PUBLIC_URL, no API Gateway domain): the panel.
        let unknown = hand_off(
            redirect(StatusCode::SEE_OTHER, PANEL_PATH),
            &clients(Some("https://app.example/login")),
            &Issuer::FromApiGateway,
            &request,
        );
        assert_eq!(location(&unknown), PANEL_PATH);
    }
}
