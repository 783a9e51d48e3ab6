//! Single sign-on end to end: Clever Cloud's form post and Cloud 66's
//! callback through `cargo lambda watch`, sessions checked in DynamoDB Local,
//! and the panel they open.

use reqwest::{header, redirect::Policy, StatusCode};
use sha2::{Digest, Sha256};
use shared::clevercloud::sso::CleverCloudSso;
use shared::cloud66::sso::Cloud66Sso;
use shared::config;
use shared::secret::Secret;
use tests::*;

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

fn clevercloud_sso() -> CleverCloudSso {
    CleverCloudSso::new(Secret::new(stack_var("ADDON_SSO_SALT")), 300)
}

fn cloud66_sso() -> Cloud66Sso {
    Cloud66Sso::from_lookup(&config::process_env)
        .expect("the stack's CLOUD66_* variables")
        .expect("the test stack configures Cloud 66 SSO")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The form Clever Cloud's console posts for the current scheme.
fn current_form(id: &str, timestamp: &str) -> Vec<(String, String)> {
    let (user_id, email, nav_data) = ("user_yyy", "Jane@Example.com", "");
    let signature = clevercloud_sso().signature(id, user_id, email, nav_data, timestamp);
    [
        ("id", id),
        ("timestamp", timestamp),
        ("nav-data", nav_data),
        ("email", email),
        ("user_id", user_id),
        ("signature", &signature),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec()
}

async fn post_sso(form: &[(String, String)]) -> reqwest::Response {
    browser()
        .post(format!("{}/clevercloud/sso/login", base_url()))
        .form(form)
        .send()
        .await
        .unwrap()
}

async fn page_text(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let is_html = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html");
    assert!(is_html, "browser flows answer HTML");
    (status, response.text().await.unwrap())
}

/// The session cookie from a sign-in answer, after checking its attributes.
fn session_cookie(response: &reqwest::Response) -> String {
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    // The stack registers a vendor app with an initiate_login_uri: the
    // sign-in hands the customer to it (OIDC Core §4), not to the panel.
    let location = response.headers()[header::LOCATION].to_str().unwrap();
    let expected = format!(
        "{}/app/login?iss={}&target_link_uri=",
        stack_var("E2E_APP_URL"),
        form_urlencoded::byte_serialize(stack_var("PUBLIC_URL").as_bytes()).collect::<String>()
    );
    assert!(location.starts_with(&expected), "{location}");
    let cookie = response.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=3600"] {
        assert!(cookie.contains(attribute), "cookie lacks {attribute}: {cookie}");
    }
    let pair = cookie.split(';').next().unwrap().to_string();
    let value = pair.split_once('=').unwrap().1;
    assert!(value.len() * 4 >= 128, "session id must carry at least 128 bits");
    pair
}

async fn panel(cookie: Option<&str>) -> reqwest::Response {
    let mut request = browser().get(format!("{}/dashboard", base_url()));
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    request.send().await.unwrap()
}

async fn provisioned_with_owner(owner_name: &str) -> String {
    let market = Marketplace::from_env();
    let mut body = provision_body(&unique("sso"), "basic");
    body["owner_name"] = owner_name.into();
    let (status, answer) = json(market.provision(body).await).await;
    assert_eq!(status, 200);
    answer["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn clevercloud_sso_opens_a_stored_session_on_the_resource_panel() {
    let id = provisioned_with_owner("<script>alert('owner')</script>").await;
    let response = post_sso(&current_form(&id, &now().to_string())).await;
    let cookie = session_cookie(&response);

    // The session is stored under a hash of its id, with a TTL an hour out.
    let session_id = cookie.split_once('=').unwrap().1;
    let pk = format!("SESSION#{}", hex_sha256(session_id));
    let items = partition(&dynamo_client().await, &pk).await;
    assert_eq!(items.len(), 1);
    let expires: i64 = string(&items[0], "expires_at").parse().unwrap();
    assert!((expires - now() - 3600).abs() < 30, "TTL {expires}");
    assert_eq!(string(&items[0], "email"), "Jane@Example.com");

    let (status, html) = page_text(panel(Some(&cookie)).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(&id) && html.contains(">basic<"), "{html}");
    assert!(!html.contains("<script>alert"), "owner_name must render as text");
    assert!(html.contains("&lt;script&gt;"));
    assert!(html.contains("ADDON_NAME_TOKEN") && html.contains("••••••••"));
}

fn hex_sha256(text: &str) -> String {
    Sha256::digest(text).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn clevercloud_legacy_token_and_millisecond_timestamps_sign_in() {
    let id = provisioned_with_owner("Acme").await;
    let timestamp = (chrono::Utc::now().timestamp_millis()).to_string();
    let token = clevercloud_sso().token(&id, &timestamp);
    let form: Vec<(String, String)> = [
        ("id", id.as_str()),
        ("token", &token),
        ("timestamp", &timestamp),
        ("nav-data", "x"),
        ("email", "a@b.c"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec();
    session_cookie(&post_sso(&form).await);
}

#[tokio::test]
async fn a_replayed_sso_form_is_refused() {
    let id = provisioned_with_owner("Acme").await;
    let form = current_form(&id, &now().to_string());
    session_cookie(&post_sso(&form).await);
    let replay = post_sso(&form).await;
    assert!(replay.headers().get(header::SET_COOKIE).is_none());
    let (status, html) = page_text(replay).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("already been used"), "{html}");
}

#[tokio::test]
async fn forged_stale_future_and_unknown_sso_forms_are_refused() {
    let market = Marketplace::from_env();
    let id = provisioned_with_owner("Acme").await;
    let mut forged = current_form(&id, &now().to_string());
    forged[5].1 = "0".repeat(128);
    let mut other_resource = current_form(&id, &now().to_string());
    other_resource[0].1 = "res_neverexisted".into();
    let gone = provisioned_with_owner("Gone").await;
    assert_eq!(market.deprovision(&gone).await.status(), 200);
    let cases = [
        ("forged signature", forged, "not issued by the platform"),
        (
            "six minutes old",
            current_form(&id, &(now() - 360).to_string()),
            "expired",
        ),
        (
            "two minutes ahead",
            current_form(&id, &(now() + 120).to_string()),
            "in the future",
        ),
        (
            "signature for another id",
            other_resource,
            "not issued by the platform",
        ),
        (
            "unknown resource",
            current_form("res_neverexisted", &now().to_string()),
            "does not exist",
        ),
        (
            "deprovisioned resource",
            current_form(&gone, &now().to_string()),
            "does not exist",
        ),
    ];
    for (case, form, reason) in cases {
        let response = post_sso(&form).await;
        assert!(response.headers().get(header::SET_COOKIE).is_none(), "{case}");
        let (status, html) = page_text(response).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{case}");
        assert!(html.contains(reason), "{case}: {html}");
        assert!(!html.contains(&stack_var("ADDON_SSO_SALT")));
    }
}

#[tokio::test]
async fn malformed_sso_requests_get_400_pages() {
    let url = format!("{}/clevercloud/sso/login", base_url());
    let client = browser();
    let requests = [
        client.post(&url).form(&[("id", "res_1")]),
        client.post(&url).form(&[
            ("id", "res_1"),
            ("id", "res_2"),
            ("timestamp", "1"),
            ("token", "ab"),
        ]),
        client
            .post(&url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(r#"{"id":"res_1"}"#),
        client
            .post(&url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(vec![0xff, 0x00, 0x25]),
    ];
    for request in requests {
        let (status, html) = page_text(request.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{html}");
        assert!(html.contains("malformed"));
    }
}

#[tokio::test]
async fn cloud66_start_redirects_to_cloud66_signin() {
    let response = browser()
        .get(format!("{}/cloud66/sso/start", base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let expected = format!(
        "https://app.cloud66.com/sso/signin/{}",
        stack_var("CLOUD66_PROVIDER")
    );
    assert_eq!(response.headers()[header::LOCATION], expected.as_str());
}

/// Starts a Cloud 66 sign-in as a browser would: the `Cookie` value that
/// carries the state `/cloud66/sso/start` set.
async fn started_signin() -> String {
    let response = browser()
        .get(format!("{}/cloud66/sso/start", base_url()))
        .send()
        .await
        .unwrap();
    let cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .expect("start sets the sign-in state cookie")
        .to_str()
        .unwrap();
    assert!(
        cookie.starts_with("__Host-cloud66_signin=")
            && cookie.contains("HttpOnly")
            && cookie.contains("Secure")
            && cookie.contains("SameSite=Lax")
            && cookie.contains("Path=/")
            && cookie.contains("Max-Age=300"),
        "{cookie}"
    );
    cookie.split(';').next().unwrap().to_string()
}

/// A callback from the browser that started the sign-in.
async fn signed_callback(multipass: &str, signature: &str) -> reqwest::Response {
    browser()
        .get(callback_url(multipass, signature))
        .header(header::COOKIE, started_signin().await)
        .send()
        .await
        .unwrap()
}

fn callback_url(multipass: &str, signature: &str) -> String {
    let query: String = form_encode(&[("multipass", multipass), ("signature", signature)]);
    format!("{}/cloud66/sso/callback?{query}", base_url())
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    reqwest::Url::parse_with_params("http://x/", pairs)
        .unwrap()
        .query()
        .unwrap()
        .to_string()
}

fn in_a_minute() -> String {
    (chrono::Utc::now() + chrono::Duration::minutes(1))
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

#[tokio::test]
async fn cloud66_callback_signs_in_to_one_account_per_email_and_refuses_replays() {
    let sso = cloud66_sso();
    let email = format!("{}@Example.com", unique("Dev"));
    let (multipass, signature) = sso.sign_in_as(&email, "Dev <b>One</b>", &in_a_minute());
    let response = signed_callback(&multipass, &signature).await;
    let cookie = session_cookie(&response);
    let (status, html) = page_text(panel(Some(&cookie)).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(&email.to_lowercase()), "{html}");
    assert!(html.contains("Dev &lt;b&gt;One&lt;/b&gt;"));

    let replay = signed_callback(&multipass, &signature).await;
    let (status, html) = page_text(replay).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.contains("already been used"));

    // The same person again, with the email in another case: the same account.
    let (multipass, signature) = sso.sign_in_as(&email.to_uppercase(), "Dev", &in_a_minute());
    session_cookie(&signed_callback(&multipass, &signature).await);
    let client = dynamo_client().await;
    let claim = partition(&client, &format!("EMAIL#{}", email.to_lowercase())).await;
    assert_eq!(claim.len(), 1);
    let account_id = string(&claim[0], "owner_id");
    let account = partition(&client, &format!("ACCOUNT#{account_id}")).await;
    let created: Vec<_> = account
        .iter()
        .filter(|item| item.contains_key("action"))
        .collect();
    assert_eq!(created.len(), 1, "one account, created once, audited once");
    assert_eq!(string(created[0], "action"), "account_created");
}

#[tokio::test]
async fn a_cloud66_callback_from_a_browser_that_did_not_start_the_signin_opens_nothing() {
    let sso = cloud66_sso();
    let email = format!("{}@example.com", unique("csrf"));
    let (multipass, signature) = sso.sign_in_as(&email, "Attacker", &in_a_minute());
    // The attacker's fresh, valid callback URL, opened by a victim's browser
    // (no state cookie), then with a state already spent, then with one
    // this stack never issued.
    let spent = started_signin().await;
    // (The gem's encryption is deterministic: another name, another multipass.)
    let (other_multipass, other_signature) = sso.sign_in_as(&email, "Attacker's first", &in_a_minute());
    let first = browser()
        .get(callback_url(&other_multipass, &other_signature))
        .header(header::COOKIE, &spent)
        .send()
        .await
        .unwrap();
    assert_eq!(
        first.status(),
        StatusCode::SEE_OTHER,
        "the state's own browser signs in"
    );
    let forged = format!("__Host-cloud66_signin={}", "ab".repeat(32));
    for cookie in [None, Some(spent), Some(forged)] {
        let mut request = browser().get(callback_url(&multipass, &signature));
        if let Some(cookie) = &cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let response = request.send().await.unwrap();
        let set_cookies: Vec<_> = response.headers().get_all(header::SET_COOKIE).iter().collect();
        assert!(
            !set_cookies
                .iter()
                .any(|c| c.to_str().unwrap().starts_with("__Host-addon_session=")),
            "{cookie:?}"
        );
        let (status, html) = page_text(response).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{cookie:?}: {html}");
        assert!(html.contains("not started in this browser"), "{html}");
        assert!(
            html.contains(r#"href="/cloud66/sso/start""#),
            "a way to start again: {html}"
        );
    }
    // A refused callback spends nothing: from a browser that started a
    // sign-in, the same callback still signs in.
    assert_eq!(
        signed_callback(&multipass, &signature).await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn a_cloud66_identity_with_a_non_ascii_email_is_refused_and_creates_nothing() {
    let sso = cloud66_sso();
    let local = unique("kim");
    // U+212A KELVIN SIGN lower-cases to an ASCII "k" under Unicode rules.
    let lookalike = format!("\u{212A}{local}@example.com");
    let (multipass, signature) = sso.sign_in_as(&lookalike, "Kim", &in_a_minute());
    let (status, html) = page_text(signed_callback(&multipass, &signature).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{html}");
    assert!(html.contains("ASCII"), "{html}");
    let client = dynamo_client().await;
    let target = format!("k{}@example.com", local.to_ascii_lowercase());
    assert!(partition(&client, &format!("EMAIL#{target}")).await.is_empty());
}

#[tokio::test]
async fn bad_cloud66_callbacks_are_refused_with_a_403_page() {
    let sso = cloud66_sso();
    let (multipass, signature) = sso.sign_in_as("a@example.com", "A", &in_a_minute());
    let (expired, expired_signature) = sso.sign_in_as("a@example.com", "A", "2001-01-01 00:00:00 UTC");
    let (no_expiry, no_expiry_signature) = sso.sign_in_as("a@example.com", "A", "whenever");
    let garbage = "not-base64-%%%";
    let cases = [
        (
            "wrong signature",
            callback_url(&multipass, &"0".repeat(64)),
            "not issued by the platform",
        ),
        (
            "tampered multipass",
            callback_url(&format!("A{multipass}"), &signature),
            "not issued by the platform",
        ),
        ("expired", callback_url(&expired, &expired_signature), "expired"),
        (
            "unparseable expiry",
            callback_url(&no_expiry, &no_expiry_signature),
            "expired",
        ),
        (
            "bad base64, signed",
            callback_url(garbage, &sso.signature(garbage)),
            "could not be read",
        ),
        (
            "wrong length, signed",
            callback_url("QUJD", &sso.signature("QUJD")),
            "could not be read",
        ),
        (
            "no parameters",
            format!("{}/cloud66/sso/callback", base_url()),
            "could not be read",
        ),
    ];
    for (case, url, reason) in cases {
        let response = browser().get(&url).send().await.unwrap();
        assert!(response.headers().get(header::SET_COOKIE).is_none(), "{case}");
        let (status, html) = page_text(response).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{case}: {html}");
        assert!(html.contains(reason), "{case}: {html}");
    }
}

#[tokio::test]
async fn the_panel_needs_a_valid_session_and_logout_ends_it() {
    for cookie in [
        None,
        Some("__Host-addon_session=forged"),
        Some(&*format!("__Host-addon_session={}", "ab".repeat(32))),
    ] {
        let response = panel(cookie).await;
        assert_eq!(response.status(), StatusCode::FOUND, "{cookie:?}");
        assert_eq!(response.headers()[header::LOCATION], "/dashboard/signed-out");
    }
    let (status, html) = page_text(
        browser()
            .get(format!("{}/dashboard/signed-out", base_url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("console"));

    let id = provisioned_with_owner("Acme").await;
    let cookie = session_cookie(&post_sso(&current_form(&id, &now().to_string())).await);
    assert_eq!(panel(Some(&cookie)).await.status(), StatusCode::OK);
    let logout = browser()
        .post(format!("{}/dashboard/logout", base_url()))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    let cleared = logout.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cleared.starts_with("__Host-addon_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let after = panel(Some(&cookie)).await;
    assert_eq!(
        after.status(),
        StatusCode::FOUND,
        "the session must be gone from the table"
    );
}

/// A Cloud 66 account's resource (made by a link) is not Clever Cloud's to
/// sign in to, whatever the form's signature.
#[tokio::test]
async fn clever_cloud_sso_refuses_a_resource_of_another_platform() {
    let email = format!("{}@example.com", unique("sso_other"));
    let linked = cloud66_link_as(&unique("ok"), &email, "https://app.cloud66.com/back", &email).await;
    assert_eq!(linked.status(), StatusCode::FOUND);
    let client = dynamo_client().await;
    let claim = partition(&client, &format!("EMAIL#{email}")).await;
    let account = partition(&client, &format!("ACCOUNT#{}", string(&claim[0], "owner_id"))).await;
    let account = account
        .iter()
        .find(|item| string(item, "sk") == "ACCOUNT")
        .unwrap();
    let resource_id = string_list(account, "resource_ids")[0].clone();
    assert!(resource_id.starts_with(shared::cloud66::link::CLOUD66_RESOURCE_ID_PREFIX));
    let response = post_sso(&current_form(&resource_id, &now().to_string())).await;
    let (status, page) = page_text(response).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("does not exist"), "{page}");
}
