//! Heroku's Add-on Partner API v3 end to end (docs/heroku.md): the lifecycle
//! calls and single sign-on through `cargo lambda watch`, state checked in
//! DynamoDB Local.

use base64::Engine;
use reqwest::{header, Method, StatusCode};
use serde_json::json;
use shared::heroku::sso::{parse_form, HerokuSso};
use shared::heroku::{resource_id as heroku_id, HerokuNames};
use shared::secret::Secret;
use tests::*;

use tests::HEROKU_V3 as V3;

fn resource_id(uuid: &str) -> String {
    heroku_id(uuid).expect("a uuid")
}

fn new_uuid() -> String {
    shared::secret::random_uuid()
}

/// The body Heroku's v3 documentation shows, for `uuid`.
fn provision_body(uuid: &str, plan: &str) -> serde_json::Value {
    json!({
        "uuid": uuid,
        "name": "acme-inc-primary-database",
        "plan": plan,
        "region": "amazon-web-services::us-east-1",
        "callback_url": format!("https://api.heroku.com/addons/{uuid}"),
        "oauth_grant": {"code": "01234567-89ab-cdef-0123-456789abcdef", "expires_at": "2026-12-03T05:00:00+00:00", "type": "authorization_code"},
        "options": {"foo": "bar", "baz": "true"},
        "log_input_url": "https://token:t.01234567@1.us.logplex.io/logs",
        "log_drain_token": "d.01234567",
    })
}

/// Heroku's names for the config vars, as the functions were started with.
fn heroku_names() -> Vec<String> {
    let names = HerokuNames::from_lookup(&shared::config::process_env).expect("the stack's config vars");
    let mut names: Vec<String> = names.heroku_names().map(str::to_string).collect();
    names.sort();
    names
}

#[tokio::test]
async fn every_heroku_route_answers_401_with_a_challenge_before_anything_else() {
    let heroku = HerokuApi::from_env();
    let unknown = new_uuid();
    for (method, path) in [
        (Method::POST, String::new()),
        (Method::PUT, format!("/{unknown}")),
        (Method::DELETE, format!("/{unknown}")),
        (Method::DELETE, "/not-a-uuid".to_string()),
    ] {
        let url = format!("{}{path}", heroku.base);
        let attempts = [
            heroku.http.request(method.clone(), &url),
            heroku
                .http
                .request(method.clone(), &url)
                .basic_auth(stack_var("HEROKU_ADDON_ID"), Some("wrong")),
            // Clever Cloud's credentials are not Heroku's.
            heroku
                .http
                .request(method.clone(), &url)
                .basic_auth(stack_var("ADDON_ID"), Some(stack_var("ADDON_PASSWORD"))),
        ];
        for request in attempts {
            let response = request
                .header(header::CONTENT_TYPE, "application/json")
                .body("{not json")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
            let challenge = response.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
            assert!(challenge.starts_with("Basic "), "{challenge}");
        }
    }
}

#[tokio::test]
async fn a_provision_answers_the_id_and_herokus_config_and_redeliveries_the_same() {
    let heroku = HerokuApi::from_env();
    let uuid = new_uuid();
    let body = provision_body(&uuid.to_uppercase(), "basic");
    // Twenty deliveries at once, as a retrying platform might make them.
    let mut deliveries = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (heroku, body) = (heroku.clone(), body.clone());
        deliveries.spawn(async move { heroku.provision(&body).await });
    }
    let answers = deliveries.join_all().await;
    let (status, first) = &answers[0];
    assert_eq!(*status, 200, "{first}");
    let id = first["id"].as_str().unwrap();
    assert_eq!(id, format!("res_hk_{}", uuid.replace('-', "")));
    assert!(first["message"].as_str().unwrap().contains("basic"));
    let config = first["config"].as_object().unwrap();
    let mut names: Vec<String> = config.keys().cloned().collect();
    names.sort();
    assert_eq!(names, heroku_names());
    for (status, answer) in &answers {
        assert_eq!((*status, answer), (200, first), "every delivery answers alike");
    }
    // One resource, one claim, one audit event.
    let client = dynamo_client().await;
    let resource = partition(&client, &format!("RESOURCE#{id}")).await;
    assert_eq!(
        resource.len(),
        2,
        "the resource and one audit event: {resource:?}"
    );
    assert_eq!(partition(&client, &format!("HEROKU_ADDON#{uuid}")).await.len(), 1);
    let item = resource
        .iter()
        .find(|item| string(item, "sk") == "RESOURCE")
        .unwrap();
    assert_eq!(string(item, "platform"), "heroku");
    assert_eq!(string(item, "addon_id"), uuid);
    assert_eq!(string(item, "name"), "acme-inc-primary-database");
    assert_eq!(string(item, "region"), "amazon-web-services::us-east-1");
    let stored = format!("{:?}", item);
    assert!(
        !stored.contains("01234567-89ab-cdef-0123-456789abcdef"),
        "the OAuth grant is not stored in plain"
    );
}

#[tokio::test]
async fn bad_provisions_are_refused_with_the_right_status_and_store_nothing() {
    let heroku = HerokuApi::from_env();
    let uuid = new_uuid();
    let (status, body) = heroku.provision(&provision_body(&uuid, "no-such-plan")).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["message"].as_str().unwrap().contains("no-such-plan"));
    let (status, body) = heroku
        .provision(&json!({"uuid": "not-a-uuid", "plan": "basic"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("uuid"));
    let (status, _) = heroku.provision(&json!({"uuid": uuid})).await;
    assert_eq!(status, 400);
    let client = dynamo_client().await;
    assert!(partition(&client, &format!("HEROKU_ADDON#{uuid}"))
        .await
        .is_empty());
    assert!(partition(&client, &format!("RESOURCE#{}", resource_id(&uuid)))
        .await
        .is_empty());
}

#[tokio::test]
async fn no_accept_header_is_refused() {
    let heroku = HerokuApi::from_env();
    for accept in [V3, "application/json", "text/plain", "*/*", ""] {
        let uuid = new_uuid();
        let response = heroku
            .authed(Method::POST, "")
            .header(header::ACCEPT, accept)
            .json(&provision_body(&uuid, "basic"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "Accept: {accept}");
        let deprovision = heroku
            .authed(Method::DELETE, &format!("/{uuid}"))
            .header(header::ACCEPT, accept)
            .send()
            .await
            .unwrap();
        assert_eq!(deprovision.status(), StatusCode::NO_CONTENT, "Accept: {accept}");
    }
}

#[tokio::test]
async fn plan_changes_and_deprovisions_answer_herokus_codes() {
    let heroku = HerokuApi::from_env();
    let uuid = new_uuid();
    let (status, provisioned) = heroku.provision(&provision_body(&uuid, "basic")).await;
    assert_eq!(status, 200, "{provisioned}");

    let (status, changed) = heroku.change_plan(&uuid, "premium").await;
    assert_eq!(status, 200, "{changed}");
    assert!(changed["message"].as_str().unwrap().contains("premium"));
    let mut names: Vec<String> = changed["config"].as_object().unwrap().keys().cloned().collect();
    names.sort();
    assert_eq!(names, heroku_names());
    // The current plan again: a no-op, answered alike, nothing written.
    let client = dynamo_client().await;
    let before = partition(&client, &format!("RESOURCE#{}", resource_id(&uuid)))
        .await
        .len();
    let (status, again) = heroku.change_plan(&uuid.to_uppercase(), "premium").await;
    assert_eq!((status, &again["config"]), (200, &changed["config"]));
    assert_eq!(
        partition(&client, &format!("RESOURCE#{}", resource_id(&uuid)))
            .await
            .len(),
        before
    );
    let (status, refused) = heroku.change_plan(&uuid, "gold").await;
    assert_eq!(status, 422, "{refused}");
    let (status, _) = heroku.change_plan(&new_uuid(), "premium").await;
    assert_eq!(status, 404);
    let (status, _) = heroku.change_plan("not-a-uuid", "premium").await;
    assert_eq!(status, 404);

    let gone = heroku.deprovision(&uuid).await;
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    assert!(gone.bytes().await.unwrap().is_empty(), "204 has no body");
    assert_eq!(
        heroku.deprovision(&uuid).await.status(),
        StatusCode::NO_CONTENT,
        "a repeat"
    );
    assert_eq!(
        heroku.deprovision(&new_uuid()).await.status(),
        StatusCode::NOT_FOUND
    );
    let (status, _) = heroku.change_plan(&uuid, "basic").await;
    assert_eq!(status, 404, "a deprovisioned add-on has no plan to change");
}

#[tokio::test]
async fn heroku_and_clever_cloud_cannot_touch_each_others_resources() {
    let heroku = HerokuApi::from_env();
    let market = Marketplace::from_env();
    let (status, clevercloud) = json(
        market
            .provision(tests::provision_body(&unique("cc"), "basic"))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    let clevercloud_id = clevercloud["id"].as_str().unwrap();
    let uuid = new_uuid();
    let (status, _) = heroku.provision(&provision_body(&uuid, "basic")).await;
    assert_eq!(status, 200);
    // Clever Cloud's routes with the Heroku resource's id: unknown to them.
    let response = market.deprovision(&resource_id(&uuid)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // And Heroku's cannot name a Clever Cloud resource at all.
    assert_eq!(
        heroku.deprovision(clevercloud_id).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(heroku.deprovision(&uuid).await.status(), StatusCode::NO_CONTENT);
}

fn sso() -> HerokuSso {
    HerokuSso::new(Secret::new(stack_var("HEROKU_SSO_SALT")), None, 300)
}

fn nav_data() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(r#"{"addon":"Addon Name","appname":"my-app-42","addons":[]}"#)
}

/// The form Heroku's dashboard posts, its `field` proof made with `signer`.
fn sso_form(uuid: &str, field: &str, timestamp: i64, signer: &HerokuSso) -> String {
    let body = |proof: &str| {
        format!(
            "id={}&resource_id={uuid}&timestamp={timestamp}&email=jane%40example.com&user_id=0f1e2d3c-user&app=my-app-42&context_app=my-app-42&nav-data={}&{field}={proof}",
            resource_id(uuid),
            nav_data()
        )
    };
    let proof = signer.sign(&parse_form(body("0").as_bytes()).unwrap());
    body(&proof)
}

async fn post_sso(form: String) -> reqwest::Response {
    HerokuApi::from_env()
        .http
        .post(format!("{}/heroku/sso/login", base_url()))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap()
}

async fn provisioned() -> String {
    let uuid = new_uuid();
    let (status, body) = HerokuApi::from_env()
        .provision(&provision_body(&uuid, "basic"))
        .await;
    assert_eq!(status, 200, "{body}");
    uuid
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn each_sso_proof_signs_in_once_and_the_panel_links_back_to_the_app() {
    for field in ["user_scoped_resource_token", "resource_token", "token"] {
        let uuid = provisioned().await;
        let form = sso_form(&uuid, field, now(), &sso());
        let response = post_sso(form.clone()).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{field}");
        let cookie = response.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .to_string();
        for attribute in ["__Host-", "HttpOnly", "Secure", "SameSite=Lax"] {
            assert!(cookie.contains(attribute), "{field}: {cookie}");
        }
        let pair = cookie.split(';').next().unwrap().to_string();
        let panel = HerokuApi::from_env()
            .http
            .get(format!("{}/dashboard", base_url()))
            .header(header::COOKIE, &pair)
            .send()
            .await
            .unwrap();
        assert_eq!(panel.status(), StatusCode::OK);
        let html = panel.text().await.unwrap();
        assert!(html.contains(&resource_id(&uuid)), "{field}: {html}");
        assert!(
            html.contains("https://dashboard.heroku.com/apps/my-app-42/resources"),
            "{html}"
        );
        // Single use.
        assert_eq!(
            post_sso(form).await.status(),
            StatusCode::FORBIDDEN,
            "{field} replayed"
        );
    }
}

#[tokio::test]
async fn forged_stale_future_and_foreign_sso_forms_are_refused() {
    let uuid = provisioned().await;
    let stranger = HerokuSso::new(Secret::new("not the salt"), None, 300);
    for field in ["user_scoped_resource_token", "resource_token", "token"] {
        for (form, why) in [
            (sso_form(&uuid, field, now(), &stranger), "another salt"),
            (sso_form(&uuid, field, now() - 301, &sso()), "too old"),
            (sso_form(&uuid, field, now() + 120, &sso()), "from the future"),
            (
                sso_form(&new_uuid(), field, now(), &sso()),
                "an add-on never provisioned",
            ),
        ] {
            let response = post_sso(form).await;
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{field}: {why}");
            assert!(response.headers().get(header::SET_COOKIE).is_none());
        }
    }
    // A Heroku proof over a deprovisioned add-on signs nobody in.
    assert_eq!(
        HerokuApi::from_env().deprovision(&uuid).await.status(),
        StatusCode::NO_CONTENT
    );
    let response = post_sso(sso_form(&uuid, "resource_token", now(), &sso())).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // A valid weaker proof does not rescue a forged user-scoped one.
    let live = provisioned().await;
    let form = format!(
        "{}&user_scoped_resource_token=00",
        sso_form(&live, "resource_token", now(), &sso())
    );
    assert_eq!(post_sso(form).await.status(), StatusCode::FORBIDDEN);
    // Malformed: no proof at all.
    let response = post_sso(format!("resource_id={live}&timestamp={}", now())).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_vendors_refusal_is_a_422_and_its_outage_a_503_to_retry_with_nothing_stored() {
    let heroku = HerokuApi::from_env();
    let refused = new_uuid();
    let mut body = provision_body(&refused, "basic");
    body["options"] = json!({"stand-in": "refuse"});
    let (status, answer) = heroku.provision(&body).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["message"], "The plan is full for this organisation.");
    let down = new_uuid();
    body["uuid"] = down.clone().into();
    body["options"] = json!({"stand-in": "error"});
    let response = heroku.authed(Method::POST, "").json(&body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    let client = dynamo_client().await;
    for uuid in [&refused, &down] {
        assert!(partition(&client, &format!("HEROKU_ADDON#{uuid}"))
            .await
            .is_empty());
        assert!(partition(&client, &format!("RESOURCE#{}", resource_id(uuid)))
            .await
            .is_empty());
    }
}

/// The session cookie (`name=value`) a sign-in answer sets.
fn session_pair(response: &reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    response.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// Security review 3, finding 5: one form carrying all three proofs opens
/// one session. Re-posted without its strongest proof, then without the
/// next, it is the same sign-in, refused as used.
#[tokio::test]
async fn one_form_is_one_sign_in_whatever_proofs_it_carries() {
    let uuid = provisioned().await;
    let timestamp = sign_in_timestamp(&resource_id(&uuid));
    let proof = |field: &str| {
        let form = sso_form(&uuid, field, timestamp, &sso());
        form.rsplit_once('=').unwrap().1.to_string()
    };
    let fields = sso_form(&uuid, "token", timestamp, &sso())
        .rsplit_once("&token=")
        .unwrap()
        .0
        .to_string();
    let (user_scoped, resource_token, token) = (
        proof("user_scoped_resource_token"),
        proof("resource_token"),
        proof("token"),
    );
    let all = format!(
        "{fields}&user_scoped_resource_token={user_scoped}&resource_token={resource_token}&token={token}"
    );
    session_pair(&post_sso(all).await);
    for weaker in [
        format!("{fields}&resource_token={resource_token}&token={token}"),
        format!("{fields}&token={token}"),
    ] {
        let again = post_sso(weaker.clone()).await;
        assert_eq!(again.status(), StatusCode::FORBIDDEN, "{weaker}");
        assert!(again.headers().get(header::SET_COOKIE).is_none());
        assert!(again.text().await.unwrap().contains("already been used"));
    }
}

/// Security review 3, finding 2: the `email` of an ID token and of
/// userinfo is only ever one a marketplace proof signed. A resource token
/// signs no email: the form's (anyone's pick) travels only as
/// `marketplace_unverified_email`; the user-scoped token signs it.
#[tokio::test]
async fn an_email_nobody_signed_never_becomes_the_apps_email_claim() {
    for (field, signed) in [("resource_token", false), ("user_scoped_resource_token", true)] {
        let uuid = provisioned().await;
        let form = sso_form(&uuid, field, sign_in_timestamp(&resource_id(&uuid)), &sso());
        let cookie = session_pair(&post_sso(form).await);
        let redirect = oidc_authorize(&cookie, "openid email profile").await;
        let code = query_param(&redirect, "code").expect("a code");
        let (status, tokens) = oidc_redeem(&code).await;
        assert_eq!(status, 200, "{tokens}");
        let claims = id_token_claims(tokens["id_token"].as_str().unwrap());
        let (_, userinfo) = oidc_userinfo(tokens["access_token"].as_str().unwrap()).await;
        for told in [&claims, &userinfo] {
            assert_eq!(
                told["resource_id"],
                resource_id(&uuid).as_str(),
                "{field}: {told}"
            );
            if signed {
                assert_eq!(told["email"], "jane@example.com", "{field}: {told}");
                assert_eq!(told["email_verified"], true, "{field}: {told}");
                assert!(told.get("marketplace_unverified_email").is_none(), "{told}");
            } else {
                assert!(told.get("email").is_none(), "{field}: {told}");
                assert!(told.get("email_verified").is_none(), "{field}: {told}");
                assert_eq!(told["marketplace_unverified_email"], "jane@example.com", "{told}");
            }
        }
    }
}

/// Security review 3, findings 4 and 7: a session, and the tokens it bought,
/// end with the add-on. After a deprovision, a session opened before gets
/// no code, its access token no claims, and the panel reveals no config.
/// Also: a code redeemed twice revokes the token the first redemption
/// bought, and a scope the provider does not serve is not granted.
#[tokio::test]
async fn a_session_and_its_tokens_end_with_the_add_on() {
    let uuid = provisioned().await;
    let id = resource_id(&uuid);
    let form = sso_form(
        &uuid,
        "user_scoped_resource_token",
        sign_in_timestamp(&id),
        &sso(),
    );
    let cookie = session_pair(&post_sso(form).await);
    // Active: a code, its tokens, and the panel's reveal.
    let redirect = oidc_authorize(&cookie, "openid email admin:write").await;
    let code = query_param(&redirect, "code").expect("a code while active");
    let (status, tokens) = oidc_redeem(&code).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["scope"], "openid email", "the unknown scope is dropped");
    let access_token = tokens["access_token"].as_str().unwrap().to_string();
    assert_eq!(oidc_userinfo(&access_token).await.0, 200);
    let stored = store().await;
    let resource = shared::store::ResourceReader::get_resource(&stored, &id)
        .await
        .unwrap()
        .unwrap();
    let name = resource.config.names().next().unwrap().to_string();
    let (status, revealed) = reveal_config(&cookie, &id, &name).await;
    assert_eq!(status, 200, "{revealed}");

    // The code again: refused, and the token it bought is revoked.
    let (status, again) = oidc_redeem(&code).await;
    assert_eq!((status, again["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(oidc_userinfo(&access_token).await.0, 401, "revoked by the reuse");

    // A fresh token, then the add-on goes.
    let code = query_param(&oidc_authorize(&cookie, "openid").await, "code").unwrap();
    let access_token = oidc_redeem(&code).await.1["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        HerokuApi::from_env().deprovision(&uuid).await.status(),
        StatusCode::NO_CONTENT
    );
    let redirect = oidc_authorize(&cookie, "openid").await;
    assert_eq!(query_param(&redirect, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_param(&redirect, "code"), None);
    let (status, answer) = oidc_userinfo(&access_token).await;
    assert_eq!((status, answer["error"].as_str()), (401, Some("invalid_token")));
    let (status, answer) = reveal_config(&cookie, &id, &name).await;
    assert_eq!(status, 404, "{answer}");
    let panel = browser()
        .get(format!("{}/dashboard", base_url()))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        panel.contains("deprovisioned") && !panel.contains(r#"data-action="show""#),
        "{panel}"
    );
}
