//! The `oidc` function: an OpenID Connect provider (OIDC Core 1.0,
//! authorization-code flow with PKCE) that signs the customer in to the
//! vendor's own app after a marketplace sign-in (docs/oidc.md). Any
//! maintained OIDC library is the app's side; no marketplace code there.
//!
//! - `GET /.well-known/openid-configuration` and `GET /oidc/jwks`: discovery;
//! - `GET /oidc/authorize` ([`authorize`]): a code for the signed-in session;
//! - `POST /oidc/token` and `GET|POST /oidc/userinfo` ([`token`]).
//!
//! The issuer is `PUBLIC_URL`; without it (a stack on API Gateway's own
//! URL, which the template cannot name without a dependency cycle) it is
//! `https://` and the domain API Gateway reports for the request, which no
//! client can set.

pub mod authorize;
pub mod clients;
pub mod keys;
pub mod token;

pub use clients::{Clients, OidcClient};
pub use keys::{SigningKey, SigningKeys};

use crate::config::{self, ConfigError};
use crate::html;
use crate::http::json_response;
use crate::refresh::{Fresh, SecretSource};
use crate::store::{DynamoStore, OidcStore, ResourceReader, SessionStore};
use lambda_http::http::{header, HeaderValue, Method, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use std::convert::Infallible;

pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
pub const AUTHORIZE_PATH: &str = "/oidc/authorize";
pub const TOKEN_PATH: &str = "/oidc/token";
pub const USERINFO_PATH: &str = "/oidc/userinfo";
pub const JWKS_PATH: &str = "/oidc/jwks";

/// The scopes served; `openid` is required.
pub const SCOPES: [&str; 3] = ["openid", "email", "profile"];
/// The claims an ID token or userinfo answer may carry.
pub const CLAIMS: [&str; 17] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "email",
    "email_verified",
    "marketplace_unverified_email",
    "name",
    "resource_id",
    "platform",
    "marketplace",
    "plan",
    "marketplace_id",
    "aws_account_id",
];

/// Who the provider is: `PUBLIC_URL`, or API Gateway's domain per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issuer {
    Fixed(String),
    FromApiGateway,
}

impl Issuer {
    /// `PUBLIC_URL` (an absolute URL, no trailing slash), else API Gateway's.
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        match config::optional(lookup, "PUBLIC_URL") {
            Some(url) => {
                let url = config::base_url("PUBLIC_URL", url)?;
                let parsed = reqwest::Url::parse(&url)
                    .map_err(|_| ConfigError::new("PUBLIC_URL", "must be an absolute URL"))?;
                if parsed.scheme() != "https" && !config::is_loopback(&parsed) {
                    return Err(ConfigError::new(
                        "PUBLIC_URL",
                        "must be https (plain http only on localhost, 127.0.0.0/8 or [::1])",
                    ));
                }
                if parsed.query().is_some() || parsed.fragment().is_some() {
                    return Err(ConfigError::new("PUBLIC_URL", "must have no query or fragment"));
                }
                Ok(Self::Fixed(url))
            }
            None => Ok(Self::FromApiGateway),
        }
    }

    /// The issuer URL for `request`, if it can be known.
    pub fn for_request(&self, request: &Request) -> Option<String> {
        match self {
            Self::Fixed(url) => Some(url.clone()),
            Self::FromApiGateway => match request.request_context_ref()? {
                RequestContext::ApiGatewayV2(context) => context
                    .domain_name
                    .as_deref()
                    .filter(|domain| {
                        !domain.is_empty()
                            && domain
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
                    })
                    .map(|domain| format!("https://{domain}")),
                #[allow(unreachable_patterns)]
                _ => None,
            },
        }
    }
}

/// What the provider is configured with (from the secret, kept fresh).
pub struct ProviderKeys {
    pub clients: Clients,
    /// `None`: no `OIDC_SIGNING_KEY`, so no provider is published.
    pub signing: Option<SigningKeys>,
}

impl ProviderKeys {
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let clients = Clients::from_lookup(lookup)?;
        let signing = SigningKeys::from_lookup(lookup)?;
        if signing.is_none() && !clients.is_empty() {
            return Err(ConfigError::new(
                keys::SIGNING_KEY_VAR,
                "is missing, but OIDC_CLIENTS registers clients (`provider oidc-key` prints a new key)",
            ));
        }
        Ok(Self { clients, signing })
    }
}

/// Everything the `oidc` function needs, built once at cold start.
pub struct OidcApi<S> {
    pub store: S,
    pub issuer: Issuer,
    keys: Fresh<ProviderKeys>,
}

impl<S> OidcApi<S> {
    /// With fixed keys (tests).
    pub fn new(store: S, issuer: Issuer, keys: ProviderKeys) -> Self {
        Self {
            store,
            issuer,
            keys: Fresh::fixed(keys),
        }
    }
}

impl OidcApi<DynamoStore> {
    /// Reads `TABLE_NAME`, `PUBLIC_URL`, and from the secret `OIDC_CLIENTS`,
    /// `OIDC_SIGNING_KEY` and `OIDC_SIGNING_KEY_PREVIOUS`.
    pub async fn from_env(function: &str) -> Result<Self, ConfigError> {
        let aws = config::aws_sdk_config(function).await;
        let (source, environment) = SecretSource::load(&aws, function).await?;
        let lookup = environment.lookup();
        let keys = Fresh::new(source, &environment, |environment| {
            ProviderKeys::from_lookup(&environment.lookup())
        })?;
        let issuer = Issuer::from_lookup(&lookup)?;
        let table = config::required(&lookup, "TABLE_NAME")?;
        Ok(Self {
            store: DynamoStore::ready_for_sessions(&aws, table).await,
            issuer,
            keys,
        })
    }
}

/// The `oidc` function's routes.
pub async fn route<S: SessionStore + OidcStore + ResourceReader>(
    api: &OidcApi<S>,
    request: Request,
) -> Result<Response<Body>, Infallible> {
    let keys = api.keys.get().await;
    let (Some(signing), Some(issuer)) = (keys.signing.as_ref(), api.issuer.for_request(&request)) else {
        // No provider published: every route is absent, as it would be
        // without this function.
        return Ok(html::page(
            StatusCode::NOT_FOUND,
            "Not found",
            maud::html! { p { "This service does not sign in to other apps." } },
        ));
    };
    let provider = Provider {
        issuer: &issuer,
        clients: &keys.clients,
        signing,
    };
    let response = match (request.method(), request.uri().path()) {
        (&Method::GET, DISCOVERY_PATH) => public_json(discovery(&issuer)),
        (&Method::GET, JWKS_PATH) => public_json(serde_json::to_value(signing.jwks()).unwrap_or_default()),
        (&Method::GET, AUTHORIZE_PATH) => authorize::authorize(&provider, &api.store, &request).await,
        (&Method::POST, TOKEN_PATH) => token::token(&provider, &api.store, &request).await,
        (&Method::GET | &Method::POST, USERINFO_PATH) => token::userinfo(&api.store, &request).await,
        _ => html::not_found(),
    };
    Ok(response)
}

/// One request's view of the provider.
pub struct Provider<'a> {
    pub issuer: &'a str,
    pub clients: &'a Clients,
    pub signing: &'a SigningKeys,
}

/// The discovery document (OpenID Connect Discovery 1.0 §3).
pub fn discovery(issuer: &str) -> serde_json::Value {
    serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}{AUTHORIZE_PATH}"),
        "token_endpoint": format!("{issuer}{TOKEN_PATH}"),
        "userinfo_endpoint": format!("{issuer}{USERINFO_PATH}"),
        "jwks_uri": format!("{issuer}{JWKS_PATH}"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": SCOPES,
        "claims_supported": CLAIMS,
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
    })
}

/// Public, cacheable JSON (discovery and keys): a rotation's new key is
/// published ahead of use, so five minutes of caching is safe.
fn public_json(value: serde_json::Value) -> Response<Body> {
    let mut response = json_response(StatusCode::OK, &value);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

/// Where a marketplace sign-in sends the customer when an app is registered
/// with an `initiate_login_uri` (OIDC Core §4): that URI with `iss` and
/// `target_link_uri`, from which the app starts the code flow.
pub fn third_party_login_url(client: &OidcClient, issuer: &str) -> Option<String> {
    let mut url = reqwest::Url::parse(client.initiate_login_uri.as_deref()?).ok()?;
    let target = match &client.target_link_uri {
        Some(target) => target.clone(),
        None => url.origin().ascii_serialization() + "/",
    };
    url.query_pairs_mut()
        .append_pair("iss", issuer)
        .append_pair("target_link_uri", &target);
    Some(url.into())
}

/// A new 2048-bit RSA private key as PKCS#8 PEM, for `OIDC_SIGNING_KEY`
/// (`provider oidc-key`, and `make run` when none is set).
pub fn new_signing_key_pem() -> Result<String, String> {
    use aws_lc_rs::encoding::AsDer;
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .map_err(|_| "RSA key generation failed".to_string())?;
    let der = pair
        .as_der()
        .map_err(|_| "the key could not be encoded".to_string())?;
    Ok(pem::encode_config(
        &pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Platform, Session, SignedInIdentity};
    use crate::signin::SESSION_COOKIE;
    use crate::store::memory::MemoryStore;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    use jsonwebtoken::{DecodingKey, Validation};
    use lambda_http::http::header;
    use sha2::{Digest, Sha256};

    const ISSUER: &str = "https://addon.example.com";
    const SECRET: &str = "app-secret-0123456789";
    const REDIRECT: &str = "https://app.example.com/cb";
    const VERIFIER: &str = "verifier-verifier-verifier-verifier-verifier-0123";
    const SESSION_ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn api(with_session: bool) -> OidcApi<MemoryStore> {
        let clients = Clients::from_json(&format!(
            r#"[{{"client_id":"app","client_secret":"{SECRET}","redirect_uris":["{REDIRECT}"]}}]"#
        ))
        .unwrap();
        let signing = SigningKeys::from_lookup(&|var: &str| {
            (var == keys::SIGNING_KEY_VAR).then(|| keys::tests::test_pem(0).to_string())
        })
        .unwrap();
        let store = MemoryStore::default();
        store
            .resources
            .lock()
            .unwrap()
            .insert("res_1".into(), active_resource());
        if with_session {
            store.sessions.lock().unwrap().insert(
                SESSION_ID.into(),
                Session {
                    platform: Platform::CleverCloud,
                    subject_id: "res_1".into(),
                    email: Some("jane@example.com".into()),
                    nav_data: None,
                    created_at: "2026-12-01T00:00:00.000Z".into(),
                    expires_at: i64::MAX,
                    identity: Some(SignedInIdentity {
                        subject: SignedInIdentity::subject_of(Platform::CleverCloud, "user:user_1"),
                        platform: Platform::CleverCloud,
                        email: Some("jane@example.com".into()),
                        email_verified: true,
                        unverified_email: None,
                        name: None,
                        resource_id: Some("res_1".into()),
                        plan: Some("premium".into()),
                        marketplace_id: Some("addon_1".into()),
                        aws_account_id: None,
                        auth_time: chrono::Utc::now().timestamp() - 5,
                    }),
                },
            );
        }
        OidcApi::new(
            store,
            Issuer::Fixed(ISSUER.into()),
            ProviderKeys { clients, signing },
        )
    }

    fn challenge() -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER))
    }

    fn authorize_query(changes: &[(&str, Option<&str>)]) -> String {
        let challenge = challenge();
        let mut params: Vec<(&str, Option<&str>)> = vec![
            ("client_id", Some("app")),
            ("redirect_uri", Some(REDIRECT)),
            ("response_type", Some("code")),
            ("scope", Some("openid email")),
            ("state", Some("st4te")),
            ("nonce", Some("n0nce")),
            ("code_challenge", Some(&challenge)),
            ("code_challenge_method", Some("S256")),
        ];
        for (name, value) in changes {
            match params.iter_mut().find(|(held, _)| held == name) {
                Some(param) => param.1 = *value,
                None => params.push((name, *value)),
            }
        }
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in params {
            if let Some(value) = value {
                query.append_pair(name, value);
            }
        }
        query.finish()
    }

    async fn authorize(api: &OidcApi<MemoryStore>, query: &str, signed_in: bool) -> Response<Body> {
        let mut request = lambda_http::http::Request::builder()
            .method("GET")
            .uri(format!("{ISSUER}{AUTHORIZE_PATH}?{query}"));
        if signed_in {
            request = request.header(header::COOKIE, format!("{SESSION_COOKIE}={SESSION_ID}"));
        }
        route(api, request.body(Body::Empty).unwrap()).await.unwrap()
    }

    fn location(response: &Response<Body>) -> reqwest::Url {
        reqwest::Url::parse(response.headers()[header::LOCATION].to_str().unwrap()).unwrap()
    }

    fn param(url: &reqwest::Url, name: &str) -> Option<String> {
        url.query_pairs()
            .find(|(held, _)| held == name)
            .map(|(_, value)| value.into_owned())
    }

    async fn code(api: &OidcApi<MemoryStore>) -> String {
        let response = authorize(api, &authorize_query(&[]), true).await;
        assert_eq!(response.status(), StatusCode::FOUND);
        let url = location(&response);
        assert!(url.as_str().starts_with(REDIRECT), "{url}");
        assert_eq!(param(&url, "state").as_deref(), Some("st4te"));
        assert_eq!(param(&url, "iss").as_deref(), Some(ISSUER));
        param(&url, "code").expect("a code")
    }

    async fn token(
        api: &OidcApi<MemoryStore>,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Response<Body> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut request = lambda_http::http::Request::builder()
            .method("POST")
            .uri(format!("{ISSUER}{TOKEN_PATH}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some((user, password)) = basic {
            request = request.header(
                header::AUTHORIZATION,
                format!("Basic {}", STANDARD.encode(format!("{user}:{password}"))),
            );
        }
        route(api, request.body(Body::Text(body)).unwrap()).await.unwrap()
    }

    fn json(response: &Response<Body>) -> serde_json::Value {
        serde_json::from_slice(response.body().as_ref()).unwrap()
    }

    fn grant<'a>(code: &'a str, verifier: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ]
    }

    #[tokio::test]
    async fn discovery_names_the_endpoints_and_what_is_supported() {
        let api = api(false);
        let request = lambda_http::http::Request::builder()
            .uri(format!("{ISSUER}{DISCOVERY_PATH}"))
            .body(Body::Empty)
            .unwrap();
        let response = route(&api, request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let document = json(&response);
        assert_eq!(document["issuer"], ISSUER);
        assert_eq!(document["token_endpoint"], format!("{ISSUER}/oidc/token"));
        assert_eq!(document["jwks_uri"], format!("{ISSUER}/oidc/jwks"));
        assert_eq!(
            document["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert_eq!(document["authorization_response_iss_parameter_supported"], true);
        assert_eq!(
            document["id_token_signing_alg_values_supported"],
            serde_json::json!(["RS256"])
        );
    }

    #[tokio::test]
    async fn the_code_flow_issues_a_verifiable_id_token_and_userinfo_answers_the_same_claims() {
        let api = api(true);
        let code = code(&api).await;
        let response = token(&api, &grant(&code, VERIFIER), Some(("app", SECRET))).await;
        assert_eq!(response.status(), StatusCode::OK, "{:?}", response.body());
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        let answer = json(&response);
        assert_eq!(answer["token_type"], "Bearer");
        assert_eq!(answer["expires_in"], 600);
        let id_token = answer["id_token"].as_str().unwrap();
        let kid = jsonwebtoken::decode_header(id_token).unwrap().kid.unwrap();
        let jwks = api.keys.get().await.signing.as_ref().unwrap().jwks();
        let mut validation = Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&["app"]);
        validation.set_issuer(&[ISSUER]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(
            id_token,
            &DecodingKey::from_jwk(jwks.find(&kid).unwrap()).unwrap(),
            &validation,
        )
        .unwrap()
        .claims;
        assert_eq!(claims["nonce"], "n0nce");
        assert_eq!(claims["email"], "jane@example.com");
        assert_eq!(claims["email_verified"], true);
        assert_eq!(claims["resource_id"], "res_1");
        assert_eq!(claims["platform"], "clever_cloud");
        assert_eq!(claims["plan"], "premium");
        assert_eq!(claims["marketplace_id"], "addon_1");
        let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
        assert!((1..=600).contains(&lifetime), "{lifetime}");
        assert!(claims["auth_time"].as_i64().unwrap() <= claims["iat"].as_i64().unwrap());

        let access_token = answer["access_token"].as_str().unwrap();
        // Stored only as a fingerprint.
        assert!(!api.store.oidc_tokens.lock().unwrap().contains_key(access_token));
        let request = lambda_http::http::Request::builder()
            .uri(format!("{ISSUER}{USERINFO_PATH}"))
            .header(header::AUTHORIZATION, format!("Bearer {access_token}"))
            .body(Body::Empty)
            .unwrap();
        let userinfo = route(&api, request).await.unwrap();
        assert_eq!(userinfo.status(), StatusCode::OK);
        let userinfo = json(&userinfo);
        assert_eq!(userinfo["sub"], claims["sub"]);
        assert_eq!(userinfo["resource_id"], "res_1");
        assert_eq!(userinfo["email"], "jane@example.com");
        assert!(userinfo.get("nonce").is_none());
    }

    #[tokio::test]
    async fn a_code_is_spent_once_and_only_by_its_client_redirect_and_verifier() {
        let api = api(true);
        let code = code(&api).await;
        let wrong_verifier = "x".repeat(43);
        let refused = token(&api, &grant(&code, &wrong_verifier), Some(("app", SECRET))).await;
        assert_eq!(
            (refused.status(), json(&refused)["error"].clone()),
            (StatusCode::BAD_REQUEST, "invalid_grant".into())
        );
        let mut other_redirect = grant(&code, VERIFIER);
        other_redirect[2].1 = "https://app.example.com/other";
        let refused = token(&api, &other_redirect, Some(("app", SECRET))).await;
        assert_eq!(json(&refused)["error"], "invalid_grant");
        // A wrong attempt leaves the code to its rightful holder, once.
        let mut by_form = grant(&code, VERIFIER);
        by_form.extend([("client_id", "app"), ("client_secret", SECRET)]);
        assert_eq!(token(&api, &by_form, None).await.status(), StatusCode::OK);
        let reused = token(&api, &grant(&code, VERIFIER), Some(("app", SECRET))).await;
        assert_eq!(
            (reused.status(), json(&reused)["error"].clone()),
            (StatusCode::BAD_REQUEST, "invalid_grant".into())
        );
    }

    fn userinfo_request(access_token: &str) -> Request {
        lambda_http::http::Request::builder()
            .uri(format!("{ISSUER}{USERINFO_PATH}"))
            .header(header::AUTHORIZATION, format!("Bearer {access_token}"))
            .body(Body::Empty)
            .unwrap()
    }

    #[tokio::test]
    async fn a_code_presented_again_revokes_the_access_token_it_bought() {
        let api = api(true);
        let code = code(&api).await;
        let first = token(&api, &grant(&code, VERIFIER), Some(("app", SECRET))).await;
        assert_eq!(first.status(), StatusCode::OK);
        let access_token = json(&first)["access_token"].as_str().unwrap().to_string();
        let userinfo = route(&api, userinfo_request(&access_token)).await.unwrap();
        assert_eq!(userinfo.status(), StatusCode::OK);
        let again = token(&api, &grant(&code, VERIFIER), Some(("app", SECRET))).await;
        assert_eq!(json(&again)["error"], "invalid_grant");
        let userinfo = route(&api, userinfo_request(&access_token)).await.unwrap();
        assert_eq!(userinfo.status(), StatusCode::UNAUTHORIZED, "revoked");
        assert!(api.store.oidc_tokens.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn unknown_scopes_are_dropped_from_the_grant() {
        let api = api(true);
        let query = authorize_query(&[("scope", Some("admin openid email openid write:all"))]);
        let response = authorize(&api, &query, true).await;
        let code = param(&location(&response), "code").expect("a code");
        let answer = token(&api, &grant(&code, VERIFIER), Some(("app", SECRET))).await;
        assert_eq!(json(&answer)["scope"], "openid email");
        assert_eq!(
            super::authorize::granted_scope("profile openid"),
            "openid profile"
        );
        assert_eq!(super::authorize::granted_scope("openid"), "openid");
    }

    #[tokio::test]
    async fn a_session_signs_in_to_the_app_only_while_its_add_on_is_active() {
        use crate::model::ResourceStatus;
        let api = api(true);
        let set_status = |status: ResourceStatus| {
            api.store
                .resources
                .lock()
                .unwrap()
                .get_mut("res_1")
                .unwrap()
                .status = status;
        };
        // The plan claim is the add-on's current one, not the sign-in's.
        api.store.resources.lock().unwrap().get_mut("res_1").unwrap().plan = "gold".into();
        let code = code(&api).await;
        let answer = token(&api, &grant(&code, VERIFIER), Some(("app", SECRET))).await;
        let access_token = json(&answer)["access_token"].as_str().unwrap().to_string();
        let userinfo = json(&route(&api, userinfo_request(&access_token)).await.unwrap());
        assert_eq!(userinfo["plan"], "gold");
        // And userinfo tells the plan of the moment, not the token's.
        api.store.resources.lock().unwrap().get_mut("res_1").unwrap().plan = "platinum".into();
        let userinfo = json(&route(&api, userinfo_request(&access_token)).await.unwrap());
        assert_eq!(userinfo["plan"], "platinum");
        for (status, says) in [
            (ResourceStatus::Suspended, "suspended"),
            (ResourceStatus::Deprovisioned, "removed"),
            (ResourceStatus::Expired, "removed"),
        ] {
            set_status(status);
            let response = authorize(&api, &authorize_query(&[]), true).await;
            assert_eq!(response.status(), StatusCode::FOUND, "{status:?}");
            let url = location(&response);
            assert_eq!(
                param(&url, "error").as_deref(),
                Some("access_denied"),
                "{status:?}"
            );
            assert!(
                param(&url, "error_description").unwrap().contains(says),
                "{status:?}"
            );
            assert_eq!(param(&url, "code"), None);
            let userinfo = route(&api, userinfo_request(&access_token)).await.unwrap();
            assert_eq!(userinfo.status(), StatusCode::UNAUTHORIZED, "{status:?}");
            assert!(json(&userinfo).to_string().contains(says), "{status:?}");
        }
        api.store.resources.lock().unwrap().remove("res_1");
        let response = authorize(&api, &authorize_query(&[]), true).await;
        assert_eq!(
            param(&location(&response), "error").as_deref(),
            Some("access_denied")
        );
        api.store
            .resources
            .lock()
            .unwrap()
            .insert("res_1".into(), active_resource());
        assert!(param(
            &location(&authorize(&api, &authorize_query(&[]), true).await),
            "code"
        )
        .is_some());
    }

    /// The session's add-on, active, on the plan `premium`.
    fn active_resource() -> crate::model::Resource {
        crate::model::Resource::new(
            "res_1".into(),
            Platform::CleverCloud,
            "addon_1".into(),
            "premium".into(),
            crate::model::ConfigMap::default(),
            &crate::model::Timestamp::now(),
        )
    }

    #[tokio::test]
    async fn an_email_no_proof_signed_is_never_the_email_claim() {
        let api = api(true);
        {
            let mut sessions = api.store.sessions.lock().unwrap();
            let identity = sessions.get_mut(SESSION_ID).unwrap().identity.as_mut().unwrap();
            // As a legacy form's session is stored: the email unsigned.
            identity.email = None;
            identity.email_verified = false;
            identity.unverified_email = Some("victim@example.com".into());
        }
        let first = code(&api).await;
        let answer = json(&token(&api, &grant(&first, VERIFIER), Some(("app", SECRET))).await);
        let payload = answer["id_token"]
            .as_str()
            .unwrap()
            .split('.')
            .nth(1)
            .unwrap()
            .to_string();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert!(claims.get("email").is_none(), "{claims}");
        assert!(claims.get("email_verified").is_none(), "{claims}");
        assert_eq!(claims["marketplace_unverified_email"], "victim@example.com");
        let access_token = answer["access_token"].as_str().unwrap();
        let userinfo = json(&route(&api, userinfo_request(access_token)).await.unwrap());
        assert!(userinfo.get("email").is_none(), "{userinfo}");
        assert_eq!(userinfo["marketplace_unverified_email"], "victim@example.com");
        // A session stored before the rule (an unsigned email in `email`)
        // tells it as unverified too.
        {
            let mut sessions = api.store.sessions.lock().unwrap();
            let identity = sessions.get_mut(SESSION_ID).unwrap().identity.as_mut().unwrap();
            identity.email = Some("old@example.com".into());
            identity.unverified_email = None;
        }
        let second = code(&api).await;
        let answer = json(&token(&api, &grant(&second, VERIFIER), Some(("app", SECRET))).await);
        let access_token = answer["access_token"].as_str().unwrap();
        let userinfo = json(&route(&api, userinfo_request(access_token)).await.unwrap());
        assert!(userinfo.get("email").is_none(), "{userinfo}");
        assert_eq!(userinfo["marketplace_unverified_email"], "old@example.com");
    }

    #[tokio::test]
    async fn client_authentication_failures_are_invalid_client_401() {
        let api = api(true);
        let code = code(&api).await;
        for basic in [
            Some(("app", "app-secret-wrong-012345")),
            Some(("nobody", SECRET)),
            None,
        ] {
            let refused = token(&api, &grant(&code, VERIFIER), basic).await;
            assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{basic:?}");
            assert_eq!(json(&refused)["error"], "invalid_client");
        }
        let mut both = grant(&code, VERIFIER);
        both.push(("client_secret", SECRET));
        let refused = token(&api, &both, Some(("app", SECRET))).await;
        assert_eq!(
            (refused.status(), json(&refused)["error"].clone()),
            (StatusCode::BAD_REQUEST, "invalid_request".into())
        );
        let mut wrong_grant = grant(&code, VERIFIER);
        wrong_grant[0].1 = "client_credentials";
        assert_eq!(
            json(&token(&api, &wrong_grant, Some(("app", SECRET))).await)["error"],
            "unsupported_grant_type"
        );
        // None of it spent the code.
        assert_eq!(
            token(&api, &grant(&code, VERIFIER), Some(("app", SECRET)))
                .await
                .status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn an_expired_code_is_invalid_grant() {
        let api = api(true);
        let code = code(&api).await;
        for (_, grant) in api.store.oidc_codes.lock().unwrap().values_mut() {
            grant.expires_at = chrono::Utc::now().timestamp();
        }
        let refused = token(&api, &grant(&code, VERIFIER), Some(("app", SECRET))).await;
        assert_eq!(json(&refused)["error"], "invalid_grant");
    }

    #[tokio::test]
    async fn an_unknown_client_or_unregistered_redirect_gets_a_page_never_a_redirect() {
        let api = api(true);
        for query in [
            authorize_query(&[("client_id", Some("nobody"))]),
            authorize_query(&[("client_id", None)]),
            authorize_query(&[("redirect_uri", Some("https://evil.example/cb"))]),
            authorize_query(&[("redirect_uri", Some("https://app.example.com/cb/"))]),
            authorize_query(&[("redirect_uri", None)]),
            format!("{}&client_id=app", authorize_query(&[])),
        ] {
            let response = authorize(&api, &query, true).await;
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
            assert!(response.headers().get(header::LOCATION).is_none(), "{query}");
        }
    }

    #[tokio::test]
    async fn other_authorize_errors_go_back_to_the_app_with_state_and_iss() {
        let api = api(true);
        for (change, error) in [
            (("response_type", Some("token")), "unsupported_response_type"),
            (("scope", Some("email")), "invalid_scope"),
            (("code_challenge", None), "invalid_request"),
            (("code_challenge_method", Some("plain")), "invalid_request"),
            (("code_challenge", Some("short")), "invalid_request"),
            (("prompt", Some("login")), "login_required"),
            (("request", Some("eyJ")), "request_not_supported"),
        ] {
            let response = authorize(&api, &authorize_query(&[change]), true).await;
            assert_eq!(response.status(), StatusCode::FOUND, "{change:?}");
            let url = location(&response);
            assert!(url.as_str().starts_with(REDIRECT));
            assert_eq!(param(&url, "error").as_deref(), Some(error), "{change:?}");
            assert_eq!(param(&url, "state").as_deref(), Some("st4te"));
            assert_eq!(param(&url, "iss").as_deref(), Some(ISSUER));
            assert!(param(&url, "code").is_none());
        }
        assert!(api.store.oidc_codes.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn without_a_session_prompt_none_is_login_required_and_otherwise_a_page() {
        let api = api(true);
        let response = authorize(&api, &authorize_query(&[("prompt", Some("none"))]), false).await;
        assert_eq!(
            param(&location(&response), "error").as_deref(),
            Some("login_required")
        );
        let response = authorize(&api, &authorize_query(&[]), false).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get(header::LOCATION).is_none());
        let body = std::str::from_utf8(response.body().as_ref()).unwrap();
        assert!(body.contains("open the add-on from your platform"), "{body}");
        assert!(api.store.oidc_codes.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn userinfo_refuses_a_missing_or_unknown_token() {
        let api = api(true);
        for authorization in [None, Some("Bearer nope"), Some("Basic abc")] {
            let mut request = lambda_http::http::Request::builder().uri(format!("{ISSUER}{USERINFO_PATH}"));
            if let Some(value) = authorization {
                request = request.header(header::AUTHORIZATION, value);
            }
            let response = route(&api, request.body(Body::Empty).unwrap()).await.unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{authorization:?}");
            assert!(response.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer"));
        }
    }

    #[tokio::test]
    async fn without_a_signing_key_nothing_is_published() {
        let api = OidcApi::new(
            MemoryStore::default(),
            Issuer::Fixed(ISSUER.into()),
            ProviderKeys::from_lookup(&|_: &str| None).unwrap(),
        );
        let request = lambda_http::http::Request::builder()
            .uri(format!("{ISSUER}{DISCOVERY_PATH}"))
            .body(Body::Empty)
            .unwrap();
        assert_eq!(
            route(&api, request).await.unwrap().status(),
            StatusCode::NOT_FOUND
        );
        let clients_without_key = ProviderKeys::from_lookup(&|var: &str| {
            (var == "OIDC_CLIENTS").then(|| {
                format!(
                    r#"[{{"client_id":"app","client_secret":"{SECRET}","redirect_uris":["{REDIRECT}"]}}]"#
                )
            })
        });
        assert!(clients_without_key
            .err()
            .unwrap()
            .to_string()
            .contains("OIDC_SIGNING_KEY"));
    }

    #[test]
    fn the_issuer_is_public_url_or_https_on_api_gateways_domain() {
        let fixed =
            Issuer::from_lookup(&|var: &str| (var == "PUBLIC_URL").then(|| "https://a.example/".into()));
        assert_eq!(fixed.unwrap(), Issuer::Fixed("https://a.example".into()));
        for bad in ["http://a.example", "https://a.example/?x=1", "a.example"] {
            let err = Issuer::from_lookup(&|var: &str| (var == "PUBLIC_URL").then(|| bad.to_string()));
            assert!(err.is_err(), "{bad}");
        }
        assert_eq!(
            Issuer::from_lookup(&|_: &str| None).unwrap(),
            Issuer::FromApiGateway
        );
        let request = lambda_http::http::Request::builder()
            .uri("/x")
            .body(Body::Empty)
            .unwrap();
        assert_eq!(Issuer::FromApiGateway.for_request(&request), None);
    }

    #[test]
    fn the_hand_off_url_carries_iss_and_the_target() {
        let clients = Clients::from_json(&format!(
            r#"[{{"client_id":"app","client_secret":"{SECRET}","redirect_uris":["{REDIRECT}"],"initiate_login_uri":"https://app.example.com/login?from=addon"}}]"#
        ))
        .unwrap();
        let url =
            reqwest::Url::parse(&third_party_login_url(clients.handoff().unwrap(), ISSUER).unwrap()).unwrap();
        assert_eq!(url.path(), "/login");
        assert_eq!(param(&url, "from").as_deref(), Some("addon"));
        assert_eq!(param(&url, "iss").as_deref(), Some(ISSUER));
        assert_eq!(
            param(&url, "target_link_uri").as_deref(),
            Some("https://app.example.com/")
        );
    }

    /// The provider `api` serves, for calling a route's handler directly.
    async fn with_provider<T>(api: &OidcApi<MemoryStore>, call: impl AsyncFnOnce(&Provider<'_>) -> T) -> T {
        let keys = api.keys.get().await;
        let provider = Provider {
            issuer: ISSUER,
            clients: &keys.clients,
            signing: keys.signing.as_ref().unwrap(),
        };
        call(&provider).await
    }

    async fn authorize_at(api: &OidcApi<MemoryStore>, query: &str, now: i64) -> Response<Body> {
        let request = lambda_http::http::Request::builder()
            .uri(format!("{ISSUER}{AUTHORIZE_PATH}?{query}"))
            .header(header::COOKIE, format!("{SESSION_COOKIE}={SESSION_ID}"))
            .body(Body::Empty)
            .unwrap();
        with_provider(api, async |provider| {
            authorize::authorize_at(provider, &api.store, &request, now).await
        })
        .await
    }

    #[tokio::test]
    async fn max_age_counts_from_the_marketplace_sign_in_and_must_be_a_whole_number() {
        let api = api(true);
        let auth_time = api.store.sessions.lock().unwrap()[SESSION_ID]
            .identity
            .as_ref()
            .unwrap()
            .auth_time;
        let outcome = |response: Response<Body>| {
            let url = location(&response);
            param(&url, "error").unwrap_or_else(|| "code".into())
        };
        for (max_age, elapsed, expected) in [
            ("60", 60, "code"),
            ("60", 61, "login_required"),
            ("0", 0, "code"),
            ("0", 1, "login_required"),
            ("-1", 0, "invalid_request"),
            ("soon", 0, "invalid_request"),
        ] {
            let query = authorize_query(&[("max_age", Some(max_age))]);
            let response = authorize_at(&api, &query, auth_time + elapsed).await;
            assert_eq!(
                outcome(response),
                expected,
                "max_age {max_age}, {elapsed} s after sign-in"
            );
        }
    }

    #[tokio::test]
    async fn a_code_lives_exactly_sixty_seconds_and_only_query_responses_are_served() {
        let api = api(true);
        let now = 1_800_000_000;
        let response = authorize_at(&api, &authorize_query(&[("response_mode", Some("query"))]), now).await;
        assert!(param(&location(&response), "code").is_some());
        let expiries: Vec<i64> = api
            .store
            .oidc_codes
            .lock()
            .unwrap()
            .values()
            .map(|(_, grant)| grant.expires_at)
            .collect();
        assert_eq!(expiries, [now + 60]);
        let fragment = authorize_at(
            &api,
            &authorize_query(&[("response_mode", Some("fragment"))]),
            now,
        )
        .await;
        assert_eq!(
            param(&location(&fragment), "error").as_deref(),
            Some("invalid_request")
        );
    }

    #[tokio::test]
    async fn a_parameter_may_be_2048_characters_and_no_longer() {
        let api = api(true);
        let state = |length: usize| "s".repeat(length);
        let longest = authorize(&api, &authorize_query(&[("state", Some(&state(2048)))]), true).await;
        assert_eq!(longest.status(), StatusCode::FOUND);
        assert_eq!(param(&location(&longest), "state"), Some(state(2048)));
        let longer = authorize(&api, &authorize_query(&[("state", Some(&state(2049)))]), true).await;
        assert_eq!(longer.status(), StatusCode::BAD_REQUEST);
        assert!(longer.headers().get(header::LOCATION).is_none());
    }

    #[tokio::test]
    async fn a_token_request_may_be_16_kib_and_no_larger() {
        let api = api(true);
        // The grant, padded with filler fields to exactly `size` bytes.
        let form_of = |code: &str, size: usize| {
            let mut form = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(grant(code, VERIFIER))
                .extend_pairs([("client_id", "app"), ("client_secret", SECRET)])
                .finish();
            let mut filler = 0;
            while form.len() < size {
                let room = size - form.len();
                let head = format!("&f{filler}=");
                let take = room.saturating_sub(head.len()).min(2000);
                form.push_str(&head);
                form.push_str(&"a".repeat(take));
                filler += 1;
            }
            assert_eq!(form.len(), size, "a form of the size wanted");
            form
        };
        let post = |body: String| {
            lambda_http::http::Request::builder()
                .method("POST")
                .uri(format!("{ISSUER}{TOKEN_PATH}"))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::Text(body))
                .unwrap()
        };
        let code = code(&api).await;
        let refused = route(&api, post(form_of(&code, 16 * 1024 + 1))).await.unwrap();
        assert_eq!(json(&refused)["error"], "invalid_request");
        let redeemed = route(&api, post(form_of(&code, 16 * 1024))).await.unwrap();
        assert_eq!(redeemed.status(), StatusCode::OK, "{:?}", redeemed.body());
    }

    #[tokio::test]
    async fn an_access_token_lives_ten_minutes_and_odd_requests_are_invalid() {
        let api = api(true);
        let code = code(&api).await;
        // Basic for one client, the form naming another.
        let mut other = grant(&code, VERIFIER);
        other.push(("client_id", "someone-else"));
        let refused = token(&api, &other, Some(("app", SECRET))).await;
        assert_eq!(
            (refused.status(), json(&refused)["error"].clone()),
            (StatusCode::BAD_REQUEST, "invalid_request".into())
        );
        // Not a form.
        let request = lambda_http::http::Request::builder()
            .method("POST")
            .uri(format!("{ISSUER}{TOKEN_PATH}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::Text("{}".into()))
            .unwrap();
        assert_eq!(
            json(&route(&api, request).await.unwrap())["error"],
            "invalid_request"
        );
        let before = chrono::Utc::now().timestamp();
        assert_eq!(
            token(&api, &grant(&code, VERIFIER), Some(("app", SECRET)))
                .await
                .status(),
            StatusCode::OK
        );
        let after = chrono::Utc::now().timestamp();
        let expiries: Vec<i64> = api
            .store
            .oidc_tokens
            .lock()
            .unwrap()
            .values()
            .map(|grant| grant.expires_at)
            .collect();
        assert_eq!(expiries.len(), 1);
        assert!(
            (before + 600..=after + 600).contains(&expiries[0]),
            "{expiries:?}"
        );
    }

    #[tokio::test]
    async fn the_jwks_route_publishes_the_keys_for_caches() {
        let api = api(false);
        let request = lambda_http::http::Request::builder()
            .uri(format!("{ISSUER}{JWKS_PATH}"))
            .body(Body::Empty)
            .unwrap();
        let response = route(&api, request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CACHE_CONTROL], "public, max-age=300");
        let keys = json(&response)["keys"].as_array().cloned().unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0]["kty"], "RSA");
        assert!(keys[0].get("d").is_none(), "no private part");
    }

    #[test]
    fn without_public_url_the_issuer_is_api_gateways_reported_domain() {
        use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;
        use lambda_http::RequestExt as _;
        let with_domain = |domain: Option<&str>| {
            let mut context = ApiGatewayV2httpRequestContext::default();
            context.domain_name = domain.map(str::to_string);
            lambda_http::http::Request::builder()
                .uri("/x")
                .body(Body::Empty)
                .unwrap()
                .with_request_context(lambda_http::request::RequestContext::ApiGatewayV2(context))
        };
        let issuer = Issuer::FromApiGateway;
        assert_eq!(
            issuer.for_request(&with_domain(Some("abc.execute-api.eu-west-1.amazonaws.com"))),
            Some("https://abc.execute-api.eu-west-1.amazonaws.com".into())
        );
        for odd in [
            None,
            Some(""),
            Some("evil.example/path"),
            Some("a b"),
            Some("x_y"),
        ] {
            assert_eq!(issuer.for_request(&with_domain(odd)), None, "{odd:?}");
        }
        // A fixed issuer ignores what the request says.
        let fixed = Issuer::Fixed(ISSUER.into());
        assert_eq!(
            fixed.for_request(&with_domain(Some("other.example"))),
            Some(ISSUER.into())
        );
    }
}
