//! Helpers for the tests that run against the local stack that
//! `scripts/stack.sh test` starts (`make test`): DynamoDB Local and every
//! function behind `cargo lambda watch`. The stack's addresses and the
//! add-on's settings arrive in environment variables.

pub mod broken_aws;
pub mod broken_heroku;
pub mod broken_provider;
pub mod broken_scalingo;
pub mod fakes;
pub mod stream;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use shared::config::{self, CleverCloudConfig};
use shared::store::DynamoStore;
use std::collections::HashMap;

pub type Item = HashMap<String, AttributeValue>;

/// A variable the stack script sets; its absence means the tests were not
/// started through `make test`, which is a setup error worth failing on.
pub fn stack_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run these tests through `make test` (scripts/stack.sh test), which starts DynamoDB Local and cargo lambda watch")
    })
}

/// A binary of another workspace crate (a function, the CLI), as built by
/// the stack script's `cargo build --bins`.
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/debug")
        .join(name);
    assert!(
        path.exists(),
        "{} is not built: run through `make test`",
        path.display()
    );
    path
}

/// Add-on settings for in-process tests (`addon-name`, two config vars, any
/// plan), independent of the running stack's.
pub fn test_addon(password: &str) -> CleverCloudConfig {
    CleverCloudConfig::from_lookup(&|name: &str| match name {
        "ADDON_ID" => Some("addon-name".into()),
        "ADDON_PASSWORD" => Some(password.into()),
        "ADDON_CONFIG_VARS" => Some("ADDON_NAME_URL,ADDON_NAME_TOKEN".into()),
        _ => None,
    })
    .expect("a valid test configuration")
}

/// The add-on settings the functions under test were started with.
pub fn addon_config() -> CleverCloudConfig {
    CleverCloudConfig::from_lookup(&config::process_env).expect("the stack's ADDON_* variables")
}

pub fn base_url() -> String {
    stack_var("E2E_BASE_URL")
}

pub fn table_name() -> String {
    stack_var("TABLE_NAME")
}

/// The timestamp of a new marketplace sign-in to `resource_id`: the latest
/// second not yet used for that add-on by this test binary. The stack spends
/// a sign-in by its add-on and timestamp (one form is one sign-in, whatever
/// proofs it carries), so two sign-ins of a test to one add-on within a
/// second must not share a timestamp.
pub fn sign_in_timestamp(resource_id: &str) -> i64 {
    static USED: std::sync::Mutex<Vec<(String, i64)>> = std::sync::Mutex::new(Vec::new());
    let now = chrono::Utc::now().timestamp();
    let mut used = USED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let timestamp = (0..)
        .map(|back| now - back)
        .find(|candidate| !used.iter().any(|(id, at)| id == resource_id && at == candidate))
        .expect("an unused second");
    used.push((resource_id.to_string(), timestamp));
    timestamp
}

/// A unique marketplace id, so tests never see each other's resources.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", shared::secret::random_hex(8))
}

/// The tests' own client: its calls (set-up, inspection) are no function's,
/// so scripts/check_aws_calls.py does not hold them to a function's grants.
pub async fn dynamo_client() -> aws_sdk_dynamodb::Client {
    stack_var("AWS_ENDPOINT_URL_DYNAMODB");
    DynamoStore::client_from_env("tests").await
}

/// `store`'s table through a client that names `function` in its user
/// agent, for code run in process that stands for that function (the
/// platform sync, the unverified link): its recorded calls are then held to
/// that function's grants in the template, as the deployed function's are.
pub async fn acting_as(function: &str, store: &DynamoStore) -> DynamoStore {
    DynamoStore::new(DynamoStore::client_from_env(function).await, store.table())
}

pub async fn store() -> DynamoStore {
    DynamoStore::new(dynamo_client().await, table_name())
}

/// Every item in a partition, in sort-key order.
pub async fn partition(client: &aws_sdk_dynamodb::Client, pk: &str) -> Vec<Item> {
    client
        .query()
        .table_name(table_name())
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(pk.to_string()))
        .consistent_read(true)
        .send()
        .await
        .expect("query DynamoDB Local")
        .items
        .unwrap_or_default()
}

/// The resource item and its audit events, which share its partition.
pub async fn resource_partition(
    client: &aws_sdk_dynamodb::Client,
    resource_id: &str,
) -> (Option<Item>, Vec<Item>) {
    let items = partition(client, &format!("RESOURCE#{resource_id}")).await;
    let (resources, audits): (Vec<Item>, Vec<Item>) = items
        .into_iter()
        .partition(|item| string(item, "sk") == "RESOURCE");
    (resources.into_iter().next(), audits)
}

/// How many resource items carry this marketplace add-on id.
pub async fn resources_with_addon_id(client: &aws_sdk_dynamodb::Client, addon_id: &str) -> usize {
    count_entities(client, "resource", "addon_id", addon_id).await
}

/// How many items of an entity kind have `attribute` = `value` (a full scan:
/// fine for DynamoDB Local's small test tables).
pub async fn count_entities(
    client: &aws_sdk_dynamodb::Client,
    entity: &str,
    attribute: &str,
    value: &str,
) -> usize {
    let mut count = 0;
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table_name())
            .filter_expression("entity = :entity AND #attribute = :value")
            .expression_attribute_names("#attribute", attribute)
            .expression_attribute_values(":entity", AttributeValue::S(entity.into()))
            .expression_attribute_values(":value", AttributeValue::S(value.into()))
            .set_exclusive_start_key(start)
            .consistent_read(true)
            .send()
            .await
            .expect("scan DynamoDB Local");
        count += page.items.unwrap_or_default().len();
        start = page.last_evaluated_key;
        if start.is_none() {
            return count;
        }
    }
}

pub fn string(item: &Item, attribute: &str) -> String {
    match item.get(attribute) {
        Some(AttributeValue::S(value)) => value.clone(),
        Some(AttributeValue::N(value)) => value.clone(),
        other => panic!("attribute {attribute} is {other:?}"),
    }
}

/// A list-of-strings attribute (an account's `resource_ids`, say).
pub fn string_list(item: &Item, attribute: &str) -> Vec<String> {
    match item.get(attribute) {
        Some(AttributeValue::L(values)) => values
            .iter()
            .map(|value| match value {
                AttributeValue::S(text) => text.clone(),
                other => panic!("{attribute} holds {other:?}"),
            })
            .collect(),
        other => panic!("attribute {attribute} is {other:?}"),
    }
}

/// An HTTP client for the local API, and the calls the platform makes.
pub struct Marketplace {
    pub http: reqwest::Client,
    pub base: String,
    pub user: String,
    pub password: String,
}

impl Marketplace {
    pub fn from_env() -> Self {
        let config = addon_config();
        Self {
            http: reqwest::Client::new(),
            base: format!("{}/clevercloud/resources", base_url()),
            user: config.addon_id,
            password: stack_var("ADDON_PASSWORD"),
        }
    }

    pub fn authed(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(&self.user, Some(&self.password))
    }

    pub async fn provision(&self, body: serde_json::Value) -> reqwest::Response {
        self.authed(reqwest::Method::POST, "")
            .json(&body)
            .send()
            .await
            .expect("POST provision")
    }

    pub async fn change_plan(&self, id: &str, body: serde_json::Value) -> reqwest::Response {
        self.authed(reqwest::Method::PUT, &format!("/{id}"))
            .json(&body)
            .send()
            .await
            .expect("PUT plan change")
    }

    pub async fn deprovision(&self, id: &str) -> reqwest::Response {
        self.authed(reqwest::Method::DELETE, &format!("/{id}"))
            .send()
            .await
            .expect("DELETE deprovision")
    }

    /// Clever Cloud's plan change of add-on `id` (its `addon_id`) to `plan`:
    /// status and JSON answer.
    pub async fn changed_plan(&self, id: &str, addon_id: &str, plan: &str) -> (u16, serde_json::Value) {
        json(
            self.change_plan(id, serde_json::json!({"addon_id": addon_id, "plan": plan}))
                .await,
        )
        .await
    }

    /// A new add-on on `plan`, provisioned through the stack: (addon_id, id).
    pub async fn provisioned(&self, plan: &str) -> (String, String) {
        let addon_id = unique("addon");
        let (status, body) = json(self.provision(provision_body(&addon_id, plan)).await).await;
        assert_eq!(status, 200, "{body}");
        (addon_id, body["id"].as_str().unwrap().to_string())
    }
}

/// `provider --json ARGS…` with the stack's environment: its exit code and
/// the one JSON document it printed.
pub fn provider_json(args: &[&str]) -> (i32, serde_json::Value) {
    let output = std::process::Command::new(workspace_binary("provider"))
        .arg("--json")
        .args(args)
        .output()
        .expect("run provider");
    let printed = String::from_utf8_lossy(&output.stdout).to_string();
    let report = serde_json::from_str(&printed).unwrap_or_else(|err| {
        panic!(
            "not JSON ({err}): {printed} {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), report)
}

/// The resource `id` as the table holds it.
pub async fn stored_resource(id: &str) -> shared::model::Resource {
    use shared::store::ResourceReader;
    store()
        .await
        .get_resource(id)
        .await
        .expect("read the resource")
        .expect("the resource")
}

/// The `Accept` header of Heroku's add-on calls (docs/heroku.md).
pub const HEROKU_V3: &str = "application/vnd.heroku-addons+json; version=3";

/// Heroku's calls to the stack's `/heroku/resources`, as Heroku makes them:
/// Basic auth with the manifest id and password, `Accept` version 3, no
/// redirect followed.
#[derive(Clone)]
pub struct HerokuApi {
    pub http: reqwest::Client,
    pub base: String,
}

impl HerokuApi {
    pub fn from_env() -> Self {
        Self {
            http: browser(),
            base: format!("{}/heroku/resources", base_url()),
        }
    }

    pub fn authed(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(stack_var("HEROKU_ADDON_ID"), Some(stack_var("HEROKU_PASSWORD")))
            .header(reqwest::header::ACCEPT, HEROKU_V3)
    }

    pub async fn provision(&self, body: &serde_json::Value) -> (u16, serde_json::Value) {
        json(
            self.authed(reqwest::Method::POST, "")
                .json(body)
                .send()
                .await
                .expect("POST a Heroku provision"),
        )
        .await
    }

    pub async fn change_plan(&self, uuid: &str, plan: &str) -> (u16, serde_json::Value) {
        let request = self
            .authed(reqwest::Method::PUT, &format!("/{uuid}"))
            .json(&serde_json::json!({ "plan": plan }));
        json(request.send().await.expect("PUT a Heroku plan change")).await
    }

    pub async fn deprovision(&self, uuid: &str) -> reqwest::Response {
        self.authed(reqwest::Method::DELETE, &format!("/{uuid}"))
            .send()
            .await
            .expect("DELETE a Heroku add-on")
    }
}

/// Scalingo's call to the stack's `/scalingo/resources{path}`: Basic auth
/// with the manifest's username and password.
pub fn scalingo_authed(method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    browser()
        .request(method, format!("{}/scalingo/resources{path}", base_url()))
        .basic_auth(
            stack_var("SCALINGO_USERNAME"),
            Some(stack_var("SCALINGO_PASSWORD")),
        )
}

/// A Heroku provision as Heroku sends it, with an OAuth grant `code`;
/// `pending` asks the stand-in vendor to finish later (202).
pub async fn heroku_provision(uuid: &str, code: &str, pending: bool) -> (u16, serde_json::Value) {
    let mut options = serde_json::json!({});
    if pending {
        options["stand-in"] = "pending".into();
    }
    let body = serde_json::json!({
        "uuid": uuid, "name": "acme-db", "plan": "basic", "region": "amazon-web-services::us-east-1",
        "callback_url": format!("https://api.heroku.com/addons/{uuid}"),
        "oauth_grant": {"code": code, "expires_at": (chrono::Utc::now() + chrono::Duration::minutes(5)).to_rfc3339(), "type": "authorization_code"},
        "options": options,
    });
    HerokuApi::from_env().provision(&body).await
}

/// The vendor's completion call for resource `id` (docs/provisioner.md),
/// signed with `secret` over its method, path and body.
pub async fn vendor_finishes(id: &str, body: &serde_json::Value, secret: &str) -> (u16, serde_json::Value) {
    vendor_posts(&format!("/vendor/resources/{id}/provisioned"), body, secret).await
}

/// The vendor's usage report for resource `id` (docs/metering.md), signed
/// with the stack's vendor secret.
pub async fn vendor_reports_usage(id: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    vendor_posts(
        &format!("/vendor/resources/{id}/usage"),
        body,
        &stack_var("PROVISIONER_SIGNING_SECRET"),
    )
    .await
}

/// A call from the vendor's service to the stack, signed with `secret`.
pub async fn vendor_posts(path: &str, body: &serde_json::Value, secret: &str) -> (u16, serde_json::Value) {
    use shared::provisioner::signature;
    let body = serde_json::to_vec(body).expect("JSON");
    let now = chrono::Utc::now().timestamp();
    let signed = signature::sign_call(&shared::secret::Secret::new(secret), now, "POST", path, &body);
    let response = reqwest::Client::new()
        .post(format!("{}{path}", base_url()))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(signature::HEADER, signed)
        .body(body)
        .send()
        .await
        .expect("POST to the stack");
    json(response).await
}

/// One invocation of `function` with `payload`, as EventBridge or a
/// schedule invokes it, through `cargo lambda watch`'s Invoke API: the
/// status and the function's answer.
pub async fn invoke(function: &str, payload: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/2015-03-31/functions/{function}/invocations",
            base_url()
        ))
        .json(payload)
        .send()
        .await
        .expect("watch's Invoke API");
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// Status and JSON body of a response.
pub async fn json(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("response body");
    let body = serde_json::from_str(&text).unwrap_or_else(|err| panic!("body is not JSON ({err}): {text}"));
    (status, body)
}

/// The documented provision body, for a given marketplace add-on id.
pub fn provision_body(addon_id: &str, plan: &str) -> serde_json::Value {
    serde_json::json!({
        "addon_id": addon_id,
        "owner_id": "orga_xxx",
        "owner_name": "My Company",
        "user_id": "user_yyy",
        "plan": plan,
        "region": "EU",
        "callback_url": format!("https://api.clever-cloud.com/v2/vendor/apps/{addon_id}"),
        "logplex_token": "logtoken_yyy",
        "options": {}
    })
}

/// The cookies a browser holds for the local stack, as `Set-Cookie` answers
/// leave them (an empty value or `Max-Age=0` removes one).
#[derive(Debug, Default, Clone)]
pub struct CookieJar(Vec<(String, String)>);

impl CookieJar {
    pub fn take_from(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all(reqwest::header::SET_COOKIE) {
            let Some(pair) = value.to_str().ok().and_then(|cookie| cookie.split(';').next()) else {
                continue;
            };
            let Some((name, value)) = pair.trim().split_once('=') else {
                continue;
            };
            self.0.retain(|(held, _)| held != name);
            if !value.is_empty() {
                self.0.push((name.to_string(), value.to_string()));
            }
        }
    }

    pub fn header(&self) -> String {
        self.0
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn holds(&self, name: &str) -> bool {
        self.0.iter().any(|(held, _)| held == name)
    }
}

/// A browser that follows no redirect by itself.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client")
}

/// `GET path` on the stack with the jar's cookies, keeping what it sets.
pub async fn visit(jar: &mut CookieJar, path_and_query: &str) -> reqwest::Response {
    let url = if path_and_query.starts_with("http") {
        path_and_query.to_string()
    } else {
        format!("{}{path_and_query}", base_url())
    };
    let response = browser()
        .get(url)
        .header(reqwest::header::COOKIE, jar.header())
        .send()
        .await
        .expect("the stack answers");
    jar.take_from(&response);
    response
}

/// The hidden fields of the link's confirmation form in `page`, unescaped.
pub fn confirmation_fields(page: &str) -> Vec<(String, String)> {
    let unescape = |text: &str| {
        text.replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
    };
    page.split("<input ")
        .skip(1)
        .filter_map(|input| {
            let attribute = |name: &str| {
                let start = input.find(&format!("{name}=\""))? + name.len() + 2;
                let length = input[start..].find('"')?;
                Some(unescape(&input[start..start + length]))
            };
            Some((attribute("name")?, attribute("value")?))
        })
        .collect()
}

/// `POST /cloud66/link` from the stack's own page, as a browser sends the
/// confirmation form: its `Origin`, the jar's cookies, `fields`.
pub async fn post_confirmation(jar: &mut CookieJar, fields: &[(String, String)]) -> reqwest::Response {
    let response = browser()
        .post(format!("{}/cloud66/link", base_url()))
        .header(reqwest::header::COOKIE, jar.header())
        .header(reqwest::header::ORIGIN, base_url())
        .form(fields)
        .send()
        .await
        .expect("the stack answers");
    jar.take_from(&response);
    response
}

/// Confirms the link on the confirmation page `page` answered, as its user
/// would by clicking; any other answer is returned as it is.
pub async fn confirm_link(jar: &mut CookieJar, page: reqwest::Response) -> reqwest::Response {
    if page.status() != reqwest::StatusCode::OK {
        return page;
    }
    let fields = confirmation_fields(&page.text().await.expect("the confirmation page"));
    assert!(
        fields.iter().any(|(name, _)| name == "token"),
        "a confirmation form: {fields:?}"
    );
    post_confirmation(jar, &fields).await
}

/// A Cloud 66 user opening the link as Cloud 66 sends them, signing in with
/// Cloud 66 as `signs_in_as` when asked to, and confirming the link: the
/// answer the browser ends on (a redirect to `callback`, or a page).
pub async fn cloud66_link_as(uid: &str, email: &str, callback: &str, signs_in_as: &str) -> reqwest::Response {
    let mut jar = CookieJar::default();
    let link = reqwest::Url::parse_with_params(
        &format!("{}/cloud66/link", base_url()),
        &[("uid", uid), ("email", email), ("callback", callback)],
    )
    .expect("link URL");
    let first = visit(&mut jar, link.as_str()).await;
    let to_signin = first.status() == reqwest::StatusCode::FOUND
        && first
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            == Some("/cloud66/sso/start");
    if !to_signin {
        return confirm_link(&mut jar, first).await;
    }
    let started = visit(&mut jar, "/cloud66/sso/start").await;
    assert_eq!(started.status(), reqwest::StatusCode::FOUND, "sign-in starts");
    let sso = shared::cloud66::sso::Cloud66Sso::from_lookup(&config::process_env)
        .expect("CLOUD66_* variables")
        .expect("Cloud 66 SSO configured");
    let expires = (chrono::Utc::now() + chrono::Duration::minutes(1))
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string();
    // Unique per call: the gem's encryption is deterministic.
    let (multipass, signature) = sso.sign_in_as(signs_in_as, &unique("Linking user"), &expires);
    let callback_url = reqwest::Url::parse_with_params(
        &format!("{}/cloud66/sso/callback", base_url()),
        &[("multipass", multipass), ("signature", signature)],
    )
    .expect("callback URL");
    let signed_in = visit(&mut jar, callback_url.as_str()).await;
    assert_eq!(signed_in.status(), reqwest::StatusCode::SEE_OTHER, "signed in");
    assert_eq!(
        signed_in.headers()[reqwest::header::LOCATION],
        "/cloud66/link/resume",
        "a pending link comes next"
    );
    let confirmation = visit(&mut jar, "/cloud66/link/resume").await;
    confirm_link(&mut jar, confirmation).await
}

/// The link with the documented opt-out (`CLOUD66_LINK_VERIFY=none`), run in
/// process against DynamoDB Local and the stack's stand-in partner endpoint
/// (the stack's own function runs the default, verified link).
pub async fn unverified_link_api(
    store: DynamoStore,
    format: shared::cloud66::link::PayloadFormat,
    time_limit: std::time::Duration,
) -> shared::cloud66::link::Cloud66LinkApi<DynamoStore, shared::provisioner::DefaultProvisioner> {
    let provisioner = shared::provisioner::DefaultProvisioner::new(
        stack_var("RESOURCE_BASE_URL"),
        addon_config().config_vars,
    );
    unverified_link_api_with(store, provisioner, format, time_limit).await
}

/// [`unverified_link_api`] with the stack's own provisioner (the stand-in
/// vendor behind `PROVISIONER_URL`).
pub async fn unverified_link_api_through_vendor(
    store: DynamoStore,
) -> shared::cloud66::link::Cloud66LinkApi<DynamoStore, shared::provisioner::VendorProvisioner> {
    unverified_link_api_with(
        store,
        stack_provisioner(),
        shared::cloud66::link::PayloadFormat::Json,
        std::time::Duration::from_secs(3),
    )
    .await
}

/// The provisioner the stack's functions are configured with.
pub fn stack_provisioner() -> shared::provisioner::VendorProvisioner {
    shared::provisioner::VendorProvisioner::from_lookup(&config::process_env, &addon_config().addon_id)
        .expect("the stack's PROVISIONER_* variables")
}

async fn unverified_link_api_with<P: shared::provisioner::Provisioner>(
    store: DynamoStore,
    provisioner: P,
    format: shared::cloud66::link::PayloadFormat,
    time_limit: std::time::Duration,
) -> shared::cloud66::link::Cloud66LinkApi<DynamoStore, P> {
    use shared::cloud66::link::{Cloud66LinkApi, PartnerClient, Verification};
    let partner = PartnerClient::new(
        format!("{}/partner", stack_var("E2E_PARTNER_URL")),
        format,
        time_limit,
    );
    Cloud66LinkApi::new(
        acting_as("cloud66-link", &store).await,
        provisioner,
        partner,
        vec!["app.cloud66.com".into()],
        Verification::Unverified,
    )
}

/// `GET /cloud66/link?uid=…&email=…&callback=…` handed to `api` as a
/// `lambda_http::Request` and, when it answers the confirmation page, the
/// page's form posted back as the browser that got it would (its cookie, a
/// same-origin `Origin`): the final status, `Location` and page.
pub async fn open_in_process<P: shared::provisioner::Provisioner>(
    api: &shared::cloud66::link::Cloud66LinkApi<DynamoStore, P>,
    uid: &str,
    email: &str,
    callback: &str,
) -> (u16, Option<String>, String) {
    use lambda_http::RequestExt;
    let request = lambda_http::http::Request::builder()
        .uri("/cloud66/link")
        .body(lambda_http::Body::Empty)
        .expect("request")
        .with_query_string_parameters(HashMap::from([
            ("uid".to_string(), uid.to_string()),
            ("email".to_string(), email.to_string()),
            ("callback".to_string(), callback.to_string()),
        ]));
    let page = shared::cloud66::link::route(api, request)
        .await
        .unwrap_or_else(|never| match never {});
    if page.status() != 200 {
        return answer_of(page);
    }
    let cookie = page.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("cookie pair")
        .to_string();
    let fields = confirmation_fields(&String::from_utf8_lossy(page.body().as_ref()));
    let form = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&fields)
        .finish();
    let confirmation = lambda_http::http::Request::builder()
        .method("POST")
        .uri("/cloud66/link")
        .header("host", "link.test")
        .header("origin", "https://link.test")
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(lambda_http::Body::from(form))
        .expect("request");
    answer_of(
        shared::cloud66::link::route(api, lambda_http::Request::from(confirmation))
            .await
            .unwrap_or_else(|never| match never {}),
    )
}

fn answer_of(response: lambda_http::Response<lambda_http::Body>) -> (u16, Option<String>, String) {
    let location = response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let page = String::from_utf8_lossy(response.body().as_ref()).into_owned();
    (response.status().as_u16(), location, page)
}

/// A table of its own in DynamoDB Local, keyed, indexed and streamed like
/// the stack's (pk/sk, the sparse `PendingSync` index, `NEW_AND_OLD_IMAGES`),
/// for tests that sweep the whole index and must not meet other tests' items.
pub async fn isolated_store() -> DynamoStore {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
        ProjectionType, ScalarAttributeType,
    };
    let client = dynamo_client().await;
    let table = unique("isolated");
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attribute")
    };
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("key")
    };
    client
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(
            ["pk", "sk", "sync_queue", "sync_since"].map(attribute).to_vec(),
        ))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .stream_specification(
            aws_sdk_dynamodb::types::StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(aws_sdk_dynamodb::types::StreamViewType::NewAndOldImages)
                .build()
                .expect("stream"),
        )
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(shared::store::TableKeys::SYNC_INDEX)
                .key_schema(key("sync_queue", KeyType::Hash))
                .key_schema(key("sync_since", KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::KeysOnly)
                        .build(),
                )
                .build()
                .expect("index"),
        )
        .send()
        .await
        .expect("create an isolated table");
    DynamoStore::new(client, table)
}

/// The DynamoDB operations a client sent, one entry per HTTP request (a
/// retry counts again: each is a round trip).
#[derive(Debug, Default, Clone)]
pub struct RequestLog(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl RequestLog {
    /// The operations sent since the last call, emptying the log.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().expect("request log"))
    }
}

impl aws_sdk_dynamodb::config::Intercept for RequestLog {
    fn name(&self) -> &'static str {
        "RequestLog"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_dynamodb::config::RuntimeComponents,
        _bag: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        // `X-Amz-Target: DynamoDB_20120810.TransactWriteItems`
        let operation = context
            .request()
            .headers()
            .get("x-amz-target")
            .and_then(|target| target.rsplit('.').next())
            .unwrap_or("unknown")
            .to_string();
        self.0.lock().expect("request log").push(operation);
        Ok(())
    }
}

/// The stack's table through a client that logs every request it sends.
///
/// Its client names `function` in its user agent, as that function's own
/// does (see [`acting_as`]).
pub async fn counting_store(function: &str) -> (DynamoStore, RequestLog) {
    let log = RequestLog::default();
    let base = DynamoStore::client_from_env(function).await;
    let config = base.config().to_builder().interceptor(log.clone()).build();
    (
        DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config), table_name()),
        log,
    )
}

/// `docs/provisioner.schema.json`, compiled for one of its definitions.
pub fn provisioner_schema(definition: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/provisioner.schema.json"
    ))
    .expect("the schema file");
    let mut schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
    schema["$ref"] = serde_json::json!(format!("#/$defs/{definition}"));
    schema.as_object_mut().unwrap().remove("oneOf");
    jsonschema::validator_for(&schema).expect("a valid JSON Schema")
}

pub fn assert_valid(validator: &jsonschema::Validator, value: &Value) {
    let errors: Vec<String> = validator.iter_errors(value).map(|err| err.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?} in {value:#}");
}

/// The PKCE verifier of the OpenID Connect flows the tests run as the
/// stack's test client (`OIDC_TEST_CLIENT_ID`).
const OIDC_VERIFIER: &str = "e2e-pkce-verifier-0123456789-0123456789-0123456789";

/// `GET /oidc/authorize` as the stack's test client, for the session in
/// `cookie`: where the stack sends the browser (a `code`, or an `error`).
pub async fn oidc_authorize(cookie: &str, scope: &str) -> reqwest::Url {
    use base64::Engine as _;
    use sha2::Digest as _;
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(OIDC_VERIFIER));
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("client_id", stack_var("OIDC_TEST_CLIENT_ID").as_str()),
            ("redirect_uri", &stack_var("OIDC_TEST_REDIRECT_URI")),
            ("response_type", "code"),
            ("scope", scope),
            ("state", "e2e-state"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
        .finish();
    let response = browser()
        .get(format!("{}/oidc/authorize?{query}", base_url()))
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await
        .expect("the stack answers");
    assert_eq!(response.status(), 302, "authorize redirects to the test client");
    let location = response.headers()[reqwest::header::LOCATION].to_str().unwrap();
    reqwest::Url::parse(location).expect("an absolute redirect")
}

/// A query parameter of `url`.
pub fn query_param(url: &reqwest::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(held, _)| held == name)
        .map(|(_, value)| value.into_owned())
}

/// `POST /oidc/token` redeeming `code` as the stack's test client.
pub async fn oidc_redeem(code: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/oidc/token", base_url()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &stack_var("OIDC_TEST_REDIRECT_URI")),
            ("code_verifier", OIDC_VERIFIER),
            ("client_id", &stack_var("OIDC_TEST_CLIENT_ID")),
            ("client_secret", &stack_var("OIDC_TEST_CLIENT_SECRET")),
        ])
        .send()
        .await
        .expect("the stack answers");
    json(response).await
}

/// `GET /oidc/userinfo` with `access_token`.
pub async fn oidc_userinfo(access_token: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}/oidc/userinfo", base_url()))
        .bearer_auth(access_token)
        .send()
        .await
        .expect("the stack answers");
    json(response).await
}

/// An ID token's claims, read without checking its signature (the OIDC
/// tests check that against the JWKS).
pub fn id_token_claims(id_token: &str) -> Value {
    use base64::Engine as _;
    let payload = id_token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// `POST /dashboard/config` for one config var, as the panel's script sends
/// it (same-origin, with the page's CSRF token), for the session in
/// `cookie`: the status and the answer.
pub async fn reveal_config(cookie: &str, resource_id: &str, name: &str) -> (u16, Value) {
    let page = browser()
        .get(format!("{}/dashboard", base_url()))
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await
        .expect("the stack answers")
        .text()
        .await
        .unwrap();
    let token = page
        .split(r#"name="csrf-token" content=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_string();
    let response = browser()
        .post(format!("{}/dashboard/config", base_url()))
        .header(reqwest::header::COOKIE, cookie)
        .header("sec-fetch-site", "same-origin")
        .header("x-csrf-token", token)
        .form(&[("resource_id", resource_id), ("name", name)])
        .send()
        .await
        .expect("the stack answers");
    json(response).await
}

/// A purchase the stand-in AWS Marketplace minted, as `(registration
/// token, license ARN, AWS account)` (tests/src/bin/fake_aws_marketplace.rs).
pub async fn aws_mint(body: Value) -> (String, String, String) {
    let minted: Value = reqwest::Client::new()
        .post(format!("{}/mint", stack_var("E2E_AWS_MARKETPLACE_URL")))
        .json(&body)
        .send()
        .await
        .expect("the stand-in AWS Marketplace")
        .json()
        .await
        .expect("a minted purchase");
    let field = |name: &str| minted[name].as_str().expect("minted fields").to_string();
    (field("token"), field("license_arn"), field("account"))
}

/// A new AWS Marketplace purchase, registered as the buyer's browser posts
/// AWS's form to the stack: its license ARN and AWS account.
pub async fn aws_registered() -> (String, String) {
    aws_registered_in(&mut CookieJar::default()).await
}

/// [`aws_registered`], by a browser keeping its cookies (the session the
/// registration opens) in `jar`.
pub async fn aws_registered_in(jar: &mut CookieJar) -> (String, String) {
    let (token, license_arn, account) = aws_mint(serde_json::json!({})).await;
    let registered = browser()
        .post(format!("{}/aws/register", base_url()))
        .header(reqwest::header::COOKIE, jar.header())
        .form(&[("x-amzn-marketplace-token", token.as_str())])
        .send()
        .await
        .expect("the stack answers");
    assert_eq!(registered.status(), 303, "the purchase registers");
    jar.take_from(&registered);
    (license_arn, account)
}
