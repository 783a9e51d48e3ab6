//! `oidc.*`: the OpenID Connect provider, checked as a relying party meets
//! it (docs/oidc.md), when the deployment publishes a discovery document:
//! discovery and keys, the whole code flow after a Clever Cloud sign-in
//! (PKCE, nonce, the ID token verified against the JWKS, userinfo), and the
//! refusals (a code used twice, a wrong secret, a wrong verifier, an
//! unregistered redirect URI, an unknown client, no session) and `sub`
//! across accounts.
//!
//! The client is the deployment's registration of one of the vendor's apps:
//! `OIDC_CHECK_CLIENT_ID`, `OIDC_CHECK_CLIENT_SECRET` and
//! `OIDC_CHECK_REDIRECT_URI` (secrets from the environment, never flags).

use super::lifecycle::Provisioned;
use super::probe::{Answer, Probe};
use super::report::Report;
use super::sso::SsoChecks;
use super::target::Target;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use reqwest::header;
use reqwest::Url;
use serde_json::Value;
use sha2::{Digest, Sha256};
use shared::secret::random_hex;

const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
const NAMES: [&str; 10] = [
    "oidc.discovery",
    "oidc.jwks",
    "oidc.flow",
    "oidc.code_reuse",
    "oidc.wrong_secret",
    "oidc.wrong_verifier",
    "oidc.unregistered_redirect",
    "oidc.unknown_client",
    "oidc.no_session",
    "oidc.sub_stability",
];

/// The registered client the checks act as.
struct Client {
    id: String,
    secret: String,
    redirect_uri: String,
}

/// What discovery said.
struct Provider {
    issuer: String,
    authorize: String,
    token: String,
    userinfo: String,
    jwks: jsonwebtoken::jwk::JwkSet,
}

/// One authorization request's secrets and its answer.
struct Flow {
    verifier: String,
    state: String,
    nonce: String,
    answer: Answer,
}

impl Flow {
    fn location(&self) -> Option<Url> {
        self.answer
            .header(header::LOCATION)
            .and_then(|location| Url::parse(location).ok())
    }

    fn param(&self, name: &str) -> Option<String> {
        self.location()?
            .query_pairs()
            .find(|(held, _)| held == name)
            .map(|(_, value)| value.into_owned())
    }
}

pub struct OidcChecks<'a> {
    probe: &'a Probe,
    target: &'a Target,
    sso: &'a SsoChecks<'a>,
    client: Option<Client>,
}

impl<'a> OidcChecks<'a> {
    pub fn new(
        probe: &'a Probe,
        target: &'a Target,
        sso: &'a SsoChecks<'a>,
        lookup: &impl Fn(&str) -> Option<String>,
    ) -> Self {
        let var = |name: &str| shared::config::optional(lookup, name);
        let client = match (
            var("OIDC_CHECK_CLIENT_ID"),
            var("OIDC_CHECK_CLIENT_SECRET"),
            var("OIDC_CHECK_REDIRECT_URI"),
        ) {
            (Some(id), Some(secret), Some(redirect_uri)) => Some(Client {
                id,
                secret,
                redirect_uri,
            }),
            _ => None,
        };
        Self {
            probe,
            target,
            sso,
            client,
        }
    }

    /// Every `oidc.*` check; all skipped when no discovery document is
    /// published, the flow's when no client or resource is at hand.
    pub async fn run(&self, resource: Option<&Provisioned>, report: &mut Report) {
        let discovery = match self
            .probe
            .send(self.probe.http.get(self.target.url(DISCOVERY_PATH)))
            .await
        {
            Ok(answer) if answer.status == 200 => answer,
            _ => {
                for name in NAMES {
                    report.skip(
                        name,
                        "the deployment publishes no OpenID Connect discovery document",
                    );
                }
                return;
            }
        };
        let provider = self.discovery(&discovery).await;
        report.record(
            NAMES[0],
            provider
                .as_ref()
                .map(|_| "every field, consistent".to_string())
                .map_err(Clone::clone),
        );
        let provider = match provider {
            Ok(provider) => provider,
            Err(_) => {
                for name in &NAMES[1..] {
                    report.skip(name, "needs a valid discovery document (oidc.discovery failed)");
                }
                return;
            }
        };
        report.record(NAMES[1], jwks_shape(&provider.jwks));
        let (Some(client), Some(resource)) = (&self.client, resource) else {
            let why = if self.client.is_none() {
                "no client: set OIDC_CHECK_CLIENT_ID, OIDC_CHECK_CLIENT_SECRET and OIDC_CHECK_REDIRECT_URI"
            } else {
                "needs a provisioned resource (provision.new failed)"
            };
            for name in &NAMES[2..] {
                report.skip(name, why);
            }
            return;
        };
        let user = format!("user_oidc_check_{}", random_hex(4));
        let cookie = match self.sso.session(&resource.id, &user).await {
            Ok(cookie) => cookie,
            Err(why) => {
                for name in &NAMES[2..] {
                    report.record(
                        name,
                        Err(format!("no session from a Clever Cloud sign-in: {why}")),
                    );
                }
                return;
            }
        };
        // The full flow, then the same code again.
        let flow = self.authorize(&provider, client, Some(&cookie), &[]).await;
        let full = match &flow {
            Ok(flow) => {
                self.redeem(&provider, client, flow, &client.secret, &flow.verifier)
                    .await
            }
            Err(why) => Err(why.clone()),
        };
        let sub = match (&flow, &full) {
            (Ok(flow), Ok(answer)) => self.verify(&provider, client, flow, answer, resource).await,
            (_, Err(why)) | (Err(why), _) => Err(why.clone()),
        };
        report.record(NAMES[2], sub.clone().map(|sub| format!("signed in as sub {sub}")));
        match &flow {
            Ok(flow) if full.is_ok() => {
                let again = self
                    .redeem(&provider, client, flow, &client.secret, &flow.verifier)
                    .await;
                report.record(NAMES[3], token_error(again, 400, "invalid_grant"));
            }
            _ => report.skip(NAMES[3], "needs a redeemed code (oidc.flow failed)"),
        }
        // Refusals of a fresh code; the rightful redemption after them shows
        // they spent nothing.
        let fresh = self.authorize(&provider, client, Some(&cookie), &[]).await;
        match fresh {
            Ok(flow) if flow.param("code").is_some() => {
                let wrong_secret = self
                    .redeem(
                        &provider,
                        client,
                        &flow,
                        "not-the-client-secret-0123",
                        &flow.verifier,
                    )
                    .await;
                report.record(NAMES[4], token_error(wrong_secret, 401, "invalid_client"));
                let other_verifier = random_hex(32);
                let wrong_verifier = self
                    .redeem(&provider, client, &flow, &client.secret, &other_verifier)
                    .await;
                report.record(NAMES[5], token_error(wrong_verifier, 400, "invalid_grant"));
            }
            _ => {
                report.skip(NAMES[4], "needs a code (oidc.flow failed)");
                report.skip(NAMES[5], "needs a code (oidc.flow failed)");
            }
        }
        let unregistered = self
            .authorize(
                &provider,
                client,
                Some(&cookie),
                &[("redirect_uri", "https://attacker.invalid/callback")],
            )
            .await;
        report.record(NAMES[6], refused_without_redirect(unregistered));
        let unknown = self
            .authorize(
                &provider,
                client,
                Some(&cookie),
                &[("client_id", "no-such-client-provider-check")],
            )
            .await;
        report.record(NAMES[7], refused_without_redirect(unknown));
        report.record(NAMES[8], self.no_session(&provider, client).await);
        report.record(
            NAMES[9],
            self.sub_stability(&provider, client, resource, &user, sub.ok())
                .await,
        );
    }

    async fn discovery(&self, answer: &Answer) -> Result<Provider, String> {
        let document = answer.json().ok_or("the discovery document is not JSON")?;
        let text = |name: &str| {
            document[name]
                .as_str()
                .map(str::to_string)
                .ok_or(format!("{name} is missing"))
        };
        let listed = |name: &str, value: &str| {
            document[name]
                .as_array()
                .is_some_and(|values| values.iter().any(|held| held == value))
                .then_some(())
                .ok_or(format!("{name} does not list {value:?}"))
        };
        let issuer = text("issuer")?;
        let endpoints = [
            text("authorization_endpoint")?,
            text("token_endpoint")?,
            text("userinfo_endpoint")?,
            text("jwks_uri")?,
        ];
        for endpoint in &endpoints {
            if !endpoint.starts_with(&issuer) {
                return Err(format!("{endpoint} is not under the issuer {issuer}"));
            }
        }
        listed("response_types_supported", "code")?;
        listed("subject_types_supported", "public")?;
        listed("id_token_signing_alg_values_supported", "RS256")?;
        listed("code_challenge_methods_supported", "S256")?;
        listed("token_endpoint_auth_methods_supported", "client_secret_basic")?;
        listed("token_endpoint_auth_methods_supported", "client_secret_post")?;
        for scope in ["openid", "email", "profile"] {
            listed("scopes_supported", scope)?;
        }
        if document["claims_supported"].as_array().is_none_or(Vec::is_empty) {
            return Err("claims_supported is missing".into());
        }
        if document["authorization_response_iss_parameter_supported"] != true {
            return Err("authorization_response_iss_parameter_supported is not true".into());
        }
        let [authorize, token, userinfo, jwks_uri] = endpoints;
        let jwks = self.probe.send(self.probe.http.get(&jwks_uri)).await?;
        jwks.expect_status(200)
            .map_err(|why| format!("the JWKS: {why}"))?;
        let jwks =
            serde_json::from_slice(&jwks.body).map_err(|err| format!("the JWKS is not a JWK set: {err}"))?;
        Ok(Provider {
            issuer,
            authorize,
            token,
            userinfo,
            jwks,
        })
    }

    /// An authorization request with PKCE, a state and a nonce, with
    /// `changes` to its parameters.
    async fn authorize(
        &self,
        provider: &Provider,
        client: &Client,
        cookie: Option<&str>,
        changes: &[(&str, &str)],
    ) -> Result<Flow, String> {
        let verifier = random_hex(32);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(&verifier));
        let (state, nonce) = (random_hex(8), random_hex(8));
        let mut parameters = vec![
            ("client_id", client.id.as_str()),
            ("redirect_uri", client.redirect_uri.as_str()),
            ("response_type", "code"),
            ("scope", "openid email profile"),
            ("state", state.as_str()),
            ("nonce", nonce.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        for (name, value) in changes {
            match parameters.iter_mut().find(|(held, _)| held == name) {
                Some(parameter) => parameter.1 = value,
                None => parameters.push((name, value)),
            }
        }
        let url = Url::parse_with_params(&provider.authorize, &parameters)
            .map_err(|err| format!("authorization URL: {err}"))?;
        let mut request = self.probe.http.get(url);
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let answer = self.probe.send(request).await?;
        Ok(Flow {
            verifier,
            state,
            nonce,
            answer,
        })
    }

    /// The token request for `flow`'s code, authenticated with Basic.
    async fn redeem(
        &self,
        provider: &Provider,
        client: &Client,
        flow: &Flow,
        secret: &str,
        verifier: &str,
    ) -> Result<Answer, String> {
        let code = flow
            .param("code")
            .ok_or_else(|| format!("authorize answered without a code: {}", flow.answer.describe()))?;
        let basic = STANDARD.encode(format!("{}:{secret}", form_encode(&client.id)));
        let request = self
            .probe
            .http
            .post(&provider.token)
            .header(header::AUTHORIZATION, format!("Basic {basic}"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", client.redirect_uri.as_str()),
                ("code_verifier", verifier),
            ]);
        self.probe.send(request).await
    }

    /// The authorization response and tokens of a full flow, judged; `sub`.
    async fn verify(
        &self,
        provider: &Provider,
        client: &Client,
        flow: &Flow,
        answer: &Answer,
        resource: &Provisioned,
    ) -> Result<String, String> {
        let location = flow.location().ok_or("authorize gave no Location")?;
        if !location.as_str().starts_with(&client.redirect_uri) {
            return Err(format!(
                "authorize redirected to {location}, not the redirect URI"
            ));
        }
        if flow.param("state").as_deref() != Some(flow.state.as_str()) {
            return Err("authorize did not return the state".into());
        }
        if flow.param("iss").as_deref() != Some(provider.issuer.as_str()) {
            return Err("authorize did not return iss (RFC 9207)".into());
        }
        answer.expect_status(200).map_err(|why| format!("token: {why}"))?;
        if answer.header(header::CACHE_CONTROL) != Some("no-store") {
            return Err("the token answer is not Cache-Control: no-store".into());
        }
        let tokens = answer.json().ok_or("the token answer is not JSON")?;
        if !tokens["token_type"]
            .as_str()
            .is_some_and(|kind| kind.eq_ignore_ascii_case("bearer"))
        {
            return Err("token_type is not Bearer".into());
        }
        let id_token = tokens["id_token"].as_str().ok_or("no id_token")?;
        let access_token = tokens["access_token"].as_str().ok_or("no access_token")?;
        let kid = jsonwebtoken::decode_header(id_token)
            .map_err(|err| format!("the ID token's header: {err}"))?
            .kid
            .ok_or("the ID token has no kid")?;
        let jwk = provider
            .jwks
            .find(&kid)
            .ok_or(format!("the ID token's kid {kid} is not in the JWKS"))?;
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|err| format!("the JWK: {err}"))?;
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&[&client.id]);
        validation.set_issuer(&[&provider.issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Value>(id_token, &key, &validation)
            .map_err(|err| format!("the ID token does not verify: {err}"))?
            .claims;
        let number = |name: &str| claims[name].as_i64().ok_or(format!("no {name}"));
        if number("exp")? - number("iat")? > 600 {
            return Err("the ID token lives over 10 minutes".into());
        }
        number("auth_time")?;
        if claims["nonce"] != flow.nonce.as_str() {
            return Err("the ID token does not echo the nonce".into());
        }
        if claims["resource_id"] != resource.id.as_str() {
            return Err(format!(
                "resource_id is {}, not {}",
                claims["resource_id"], resource.id
            ));
        }
        for name in ["platform", "plan", "marketplace_id", "email"] {
            if !claims[name].is_string() {
                return Err(format!("the ID token has no {name}"));
            }
        }
        // The check signs in with the SHA-512 form, which signs the email.
        if claims["email_verified"] != true {
            return Err("a signed email is not email_verified: true".into());
        }
        let sub = claims["sub"].as_str().ok_or("no sub")?.to_string();
        let userinfo = self
            .probe
            .send(self.probe.http.get(&provider.userinfo).bearer_auth(access_token))
            .await?;
        userinfo
            .expect_status(200)
            .map_err(|why| format!("userinfo: {why}"))?;
        let info = userinfo.json().ok_or("userinfo is not JSON")?;
        if info["sub"] != sub.as_str() || info["resource_id"] != resource.id.as_str() {
            return Err("userinfo's claims differ from the ID token's".into());
        }
        Ok(sub)
    }

    async fn no_session(&self, provider: &Provider, client: &Client) -> Result<String, String> {
        let silent = self
            .authorize(provider, client, None, &[("prompt", "none")])
            .await?;
        if !(300..400).contains(&silent.answer.status)
            || silent.param("error").as_deref() != Some("login_required")
        {
            return Err(format!(
                "prompt=none without a session: expected a redirect with error=login_required, got {}",
                silent.answer.describe()
            ));
        }
        if silent.param("state").as_deref() != Some(silent.state.as_str()) {
            return Err("login_required did not return the state".into());
        }
        let page = self.authorize(provider, client, None, &[]).await?;
        if page.answer.status != 200 || page.answer.header(header::LOCATION).is_some() {
            return Err(format!(
                "without a session: expected a page (200, no redirect), got {}",
                page.answer.describe()
            ));
        }
        Ok("login_required with prompt=none, a page otherwise".into())
    }

    async fn sub_stability(
        &self,
        provider: &Provider,
        client: &Client,
        resource: &Provisioned,
        user: &str,
        first: Option<String>,
    ) -> Result<String, String> {
        let first = first.ok_or("needs a sub (oidc.flow failed)")?;
        let sub_of = |user: String| async move {
            let cookie = self.sso.session(&resource.id, &user).await?;
            let flow = self.authorize(provider, client, Some(&cookie), &[]).await?;
            let answer = self
                .redeem(provider, client, &flow, &client.secret, &flow.verifier)
                .await?;
            let tokens = answer.json().ok_or(format!("token: {}", answer.describe()))?;
            let id_token = tokens["id_token"].as_str().ok_or("no id_token")?;
            let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(id_token)
                .map_err(|err| format!("the ID token: {err}"))?
                .claims;
            claims["sub"]
                .as_str()
                .map(str::to_string)
                .ok_or("no sub".to_string())
        };
        if sub_of(user.to_string()).await? != first {
            return Err("the same account signed in again got another sub".into());
        }
        if sub_of(format!("user_oidc_check_other_{}", random_hex(4))).await? == first {
            return Err("another account got the same sub".into());
        }
        Ok("the same for one account, different for another".into())
    }
}

/// `client_id` as Basic authentication encodes it (RFC 6749 §2.3.1).
fn form_encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn jwks_shape(jwks: &jsonwebtoken::jwk::JwkSet) -> Result<String, String> {
    if jwks.keys.is_empty() {
        return Err("the JWKS has no key".into());
    }
    for key in &jwks.keys {
        if key.common.key_id.is_none() {
            return Err("a key has no kid".into());
        }
        if !matches!(key.algorithm, jsonwebtoken::jwk::AlgorithmParameters::RSA(_)) {
            return Err("a key is not RSA".into());
        }
    }
    Ok(format!("{} RSA key(s), each with a kid", jwks.keys.len()))
}

/// An RFC 6749 §5.2 error with this status and code.
fn token_error(answer: Result<Answer, String>, status: u16, code: &str) -> Result<String, String> {
    let answer = answer?;
    let error = answer
        .json()
        .and_then(|body| body["error"].as_str().map(str::to_string));
    if answer.status == status && error.as_deref() == Some(code) {
        Ok(format!("{status} {code}"))
    } else {
        Err(format!("expected {status} {code}, got {}", answer.describe()))
    }
}

/// A 4xx page, never a redirect (the URI cannot be trusted).
fn refused_without_redirect(flow: Result<Flow, String>) -> Result<String, String> {
    let flow = flow?;
    if (400..500).contains(&flow.answer.status) && flow.answer.header(header::LOCATION).is_none() {
        Ok(format!("{} page, no redirect", flow.answer.status))
    } else {
        Err(format!(
            "expected a 4xx page and no redirect, got {} to {:?}",
            flow.answer.describe(),
            flow.answer.header(header::LOCATION)
        ))
    }
}
