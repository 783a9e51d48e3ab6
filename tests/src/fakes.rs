//! In-process stand-ins for the platforms' APIs the platform sync calls,
//! each on its own port and thread, recording what they receive.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Json, Router};
use base64::Engine as _;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Serves `router` on a free loopback port from its own thread (so it
/// outlives any one test's runtime); returns its base URL.
pub fn serve(router: Router) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.set_nonblocking(true).expect("non-blocking listener");
    let address = listener.local_addr().expect("local address");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            axum::serve(listener, router).await.expect("serve");
        });
    });
    format!("http://{address}")
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(value).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// A stand-in binary's one argument, its port (the usage line names `program`).
pub fn port_argument(program: &str) -> u16 {
    std::env::args()
        .nth(1)
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("usage: {program} PORT"))
}

/// What a stand-in binary received, by key (an add-on, a grant, …), served
/// at `GET /received/{key}` ([`Received::routes`]) for tests and people to
/// read; an unknown key (`ready`, say) lists nothing.
#[derive(Default)]
pub struct Received(Mutex<HashMap<String, Vec<serde_json::Value>>>);

impl Received {
    pub fn record(&self, key: &str, entry: serde_json::Value) {
        self.0
            .lock()
            .unwrap()
            .entry(key.to_string())
            .or_default()
            .push(entry);
    }

    /// The entries recorded under `key`, oldest first.
    pub fn of(&self, key: &str) -> Vec<serde_json::Value> {
        self.0.lock().unwrap().get(key).cloned().unwrap_or_default()
    }

    /// `GET /received/{key}`, to merge into the stand-in's router.
    pub fn routes(received: Arc<Self>) -> Router {
        Router::new()
            .route(
                "/received/{key}",
                get(
                    |State(received): State<Arc<Self>>, Path(key): Path<String>| async move {
                        Json(received.of(&key))
                    },
                ),
            )
            .with_state(received)
    }
}

/// Serves `router` on loopback `port` until the process is stopped.
pub async fn serve_on(port: u16, router: Router) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    axum::serve(listener, router).await.expect("serve");
}

/// Clever Cloud's vendor API: `GET /vendor/apps` (pages of 2, `offset`),
/// `GET /vendor/apps/{id}`, `PUT /vendor/apps/{id}`, Basic auth.
#[derive(Default)]
pub struct FakeVendor {
    pub user: String,
    pub password: String,
    pub apps: Mutex<BTreeMap<String, serde_json::Value>>,
    pub gets: Mutex<Vec<String>>,
    pub puts: Mutex<Vec<(String, serde_json::Value)>>,
    /// Answers for the next calls to an add-on (GET or PUT), in order,
    /// instead of serving them: a status and an optional `Retry-After`.
    pub outage: Mutex<std::collections::VecDeque<(u16, Option<&'static str>)>>,
    /// Calls answered from `outage`.
    pub refused_calls: Mutex<usize>,
}

/// The scripted "status" of a call that hangs ([`FakeVendor::hang_next`]).
const HANG: u16 = 0;

/// Add-ons per `GET /vendor/apps` page, small so paging is exercised.
pub const VENDOR_PAGE_SIZE: usize = 2;

impl FakeVendor {
    pub fn spawn(user: &str, password: &str) -> (Arc<Self>, String) {
        let state = Arc::new(Self {
            user: user.into(),
            password: password.into(),
            ..Default::default()
        });
        let router = Router::new()
            .route("/v2/vendor/apps", get(Self::list))
            .route("/v2/vendor/apps/{id}", get(Self::app).put(Self::put))
            .with_state(state.clone());
        (state, format!("{}/v2", serve(router)))
    }

    pub fn add_app(&self, addon_id: &str, app: serde_json::Value) {
        self.apps.lock().unwrap().insert(addon_id.into(), app);
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        basic(headers) == Some((self.user.clone(), self.password.clone()))
    }

    /// Scripts the next `count` calls to hang (no answer for a minute).
    pub fn hang_next(&self, count: usize) {
        self.fail_next(count, HANG, None);
    }

    /// Scripts the next `count` calls to answer `status` (with `retry_after`).
    pub fn fail_next(&self, count: usize, status: u16, retry_after: Option<&'static str>) {
        let mut outage = self.outage.lock().unwrap();
        outage.extend(std::iter::repeat_n((status, retry_after), count));
    }

    /// The scripted answer for this call, if any is left.
    async fn scripted(&self) -> Option<Response> {
        let (status, retry_after) = self.outage.lock().unwrap().pop_front()?;
        *self.refused_calls.lock().unwrap() += 1;
        if status == HANG {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        }
        let mut response = (StatusCode::from_u16(status).ok()?, "scripted failure").into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static(seconds));
        }
        Some(response)
    }

    async fn list(
        State(state): State<Arc<Self>>,
        headers: HeaderMap,
        Query(query): Query<HashMap<String, usize>>,
    ) -> Response {
        if !state.authorized(&headers) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let offset = query.get("offset").copied().unwrap_or(0);
        let page: Vec<serde_json::Value> = state
            .apps
            .lock()
            .unwrap()
            .iter()
            .skip(offset)
            .take(VENDOR_PAGE_SIZE)
            .map(|(id, app)| serde_json::json!({"addon_id": id, "provider_id": state.user, "plan": app["plan"], "owner_id": app["owner_id"]}))
            .collect();
        Json(page).into_response()
    }

    async fn app(State(state): State<Arc<Self>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
        if !state.authorized(&headers) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        if let Some(scripted) = state.scripted().await {
            return scripted;
        }
        state.gets.lock().unwrap().push(id.clone());
        match state.apps.lock().unwrap().get(&id) {
            Some(app) => Json(app.clone()).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        }
    }

    async fn put(
        State(state): State<Arc<Self>>,
        headers: HeaderMap,
        Path(id): Path<String>,
        Json(body): Json<serde_json::Value>,
    ) -> Response {
        if !state.authorized(&headers) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        if let Some(scripted) = state.scripted().await {
            return scripted;
        }
        state.puts.lock().unwrap().push((id, body));
        StatusCode::OK.into_response()
    }
}

/// How a token request carried the client credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub client_auth: &'static str,
    pub fields: BTreeMap<String, String>,
}

/// Cloudmore: `POST /connect/token` (password grant, JWTs that really stop
/// working after `token_validity`, whatever `expires_in` says) and the
/// reseller's Organizations.
pub struct FakeCloudmore {
    pub client_secret: String,
    pub username: String,
    pub password: String,
    pub reseller_id: String,
    /// What the token answer says in `expires_in`.
    pub reported_expires_in: u64,
    /// How long a token is accepted for.
    pub token_validity: Duration,
    /// Answer every token request with this documented 400 error.
    pub forced_error: Option<&'static str>,
    pub tokens: Mutex<HashMap<String, Instant>>,
    pub token_requests: Mutex<Vec<TokenRequest>>,
    pub organizations: Mutex<Vec<serde_json::Value>>,
    pub organization_posts: Mutex<usize>,
    pub unauthorized_answers: Mutex<usize>,
    /// How long the organisation list takes to answer.
    pub list_delay: Mutex<Duration>,
}

impl FakeCloudmore {
    pub fn new(
        reported_expires_in: u64,
        token_validity: Duration,
        forced_error: Option<&'static str>,
    ) -> Self {
        Self {
            client_secret: "cloudmore-api-secret-xyz".into(),
            username: "admin@vendor.example".into(),
            password: "cloudmore-password-abc".into(),
            reseller_id: "ca6430d3-7f6a-0049-8075-72921f062eb8".into(),
            reported_expires_in,
            token_validity,
            forced_error,
            tokens: Mutex::default(),
            token_requests: Mutex::default(),
            organizations: Mutex::default(),
            organization_posts: Mutex::default(),
            unauthorized_answers: Mutex::default(),
            list_delay: Mutex::default(),
        }
    }

    pub fn spawn(self) -> (Arc<Self>, String) {
        let state = Arc::new(self);
        let path = format!("/api/resellers/{}/Organizations", state.reseller_id);
        let router = Router::new()
            .route("/connect/token", axum::routing::post(Self::token))
            .route(&path, get(Self::list).post(Self::create))
            .with_state(state.clone());
        (state, serve(router))
    }

    /// The lookup `CloudmoreConfig::from_lookup` reads, pointed at this fake.
    pub fn lookup(&self, base_url: &str, client_auth: &str) -> impl Fn(&str) -> Option<String> {
        let values: HashMap<&str, String> = HashMap::from([
            ("CLOUDMORE_API_URL", base_url.to_string()),
            ("CLOUDMORE_CLIENT_SECRET", self.client_secret.clone()),
            ("CLOUDMORE_USERNAME", self.username.clone()),
            ("CLOUDMORE_PASSWORD", self.password.clone()),
            ("CLOUDMORE_RESELLER_ID", self.reseller_id.clone()),
            ("CLOUDMORE_CLIENT_AUTH", client_auth.to_string()),
        ]);
        move |name| values.get(name).cloned()
    }

    fn error(code: &str) -> Response {
        let mut body = serde_json::json!({ "error": code });
        if code == "invalid_grant" {
            body["error_description"] = "The user name or password is incorrect.".into();
        }
        (StatusCode::BAD_REQUEST, Json(body)).into_response()
    }

    async fn token(
        State(state): State<Arc<Self>>,
        headers: HeaderMap,
        Form(fields): Form<BTreeMap<String, String>>,
    ) -> Response {
        let (client_auth, client) = match basic(&headers) {
            Some(credentials) => ("basic", Some(credentials)),
            None => (
                "form",
                fields
                    .get("client_id")
                    .cloned()
                    .zip(fields.get("client_secret").cloned()),
            ),
        };
        state.token_requests.lock().unwrap().push(TokenRequest {
            client_auth,
            fields: fields.clone(),
        });
        if let Some(code) = state.forced_error {
            return Self::error(code);
        }
        let field = |name: &str| fields.get(name).map(String::as_str);
        if client != Some(("ro.customer.client".into(), state.client_secret.clone())) {
            return Self::error("invalid_client");
        }
        if field("grant_type") != Some("password") {
            return Self::error("unsupported_grant_type");
        }
        if field("scope") != Some("api") {
            return Self::error("invalid_scope");
        }
        if field("username") != Some(&state.username) || field("password") != Some(&state.password) {
            return Self::error("invalid_grant");
        }
        let encode = |json: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
        };
        let now = chrono::Utc::now().timestamp();
        let token = format!(
            "{}.{}.{}",
            encode(serde_json::json!({"alg": "RS256", "typ": "JWT"})),
            encode(
                serde_json::json!({"sub": state.username, "iat": now, "exp": now + state.reported_expires_in as i64, "jti": shared::secret::random_hex(8)})
            ),
            shared::secret::random_hex(16)
        );
        state
            .tokens
            .lock()
            .unwrap()
            .insert(token.clone(), Instant::now() + state.token_validity);
        Json(serde_json::json!({"access_token": token, "expires_in": state.reported_expires_in, "token_type": "Bearer"}))
            .into_response()
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let valid = bearer.is_some_and(|token| {
            self.tokens
                .lock()
                .unwrap()
                .get(token)
                .is_some_and(|until| Instant::now() < *until)
        });
        if !valid {
            *self.unauthorized_answers.lock().unwrap() += 1;
        }
        valid
    }

    async fn list(State(state): State<Arc<Self>>, headers: HeaderMap) -> Response {
        if !state.authorized(&headers) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let organizations = state.organizations.lock().unwrap().clone();
        // Answered late, so that callers racing to create one organisation
        // all see the empty list before any of them creates it.
        let delay = *state.list_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        Json(organizations).into_response()
    }

    async fn create(
        State(state): State<Arc<Self>>,
        headers: HeaderMap,
        Json(body): Json<serde_json::Value>,
    ) -> Response {
        if !state.authorized(&headers) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        *state.organization_posts.lock().unwrap() += 1;
        let id = format!("org-{}", shared::secret::random_hex(8));
        state.add_organization(&id, body["Name"].as_str().unwrap_or(""));
        let location = format!("/api/resellers/{}/Organizations/{id}", state.reseller_id);
        (StatusCode::CREATED, [(header::LOCATION, location)]).into_response()
    }

    pub fn add_organization(&self, id: &str, name: &str) {
        self.organizations
            .lock()
            .unwrap()
            .push(serde_json::json!({"Id": id, "Name": name}));
    }

    pub fn organizations_named(&self, name: &str) -> Vec<String> {
        self.organizations
            .lock()
            .unwrap()
            .iter()
            .filter(|org| org["Name"] == name)
            .map(|org| org["Id"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// Amazon EventBridge's `PutEvents` (AWS JSON 1.1, `X-Amz-Target:
/// AWSEvents.PutEvents`), as the real SDK client sends it once
/// `AWS_ENDPOINT_URL_EVENTBRIDGE` points here; it records every entry.
#[derive(Default)]
pub struct FakeEventBridge {
    pub entries: Mutex<Vec<serde_json::Value>>,
}

impl FakeEventBridge {
    pub fn spawn() -> (Arc<Self>, String) {
        let state = Arc::new(Self::default());
        let router = Router::new()
            .route("/", axum::routing::post(Self::handle))
            .with_state(state.clone());
        (state, serve(router))
    }

    async fn handle(State(state): State<Arc<Self>>, headers: HeaderMap, body: String) -> Response {
        let target = headers.get("x-amz-target").and_then(|value| value.to_str().ok());
        if target != Some("AWSEvents.PutEvents") {
            return (StatusCode::BAD_REQUEST, format!("unexpected target {target:?}")).into_response();
        }
        let request: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let entries = request["Entries"].as_array().cloned().unwrap_or_default();
        record_aws_call(&headers, &entries);
        let answers: Vec<serde_json::Value> = entries
            .iter()
            .map(|_| serde_json::json!({"EventId": shared::secret::random_hex(16)}))
            .collect();
        state.entries.lock().unwrap().extend(entries);
        (
            [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
            serde_json::json!({"FailedEntryCount": 0, "Entries": answers}).to_string(),
        )
            .into_response()
    }

    /// The recorded entries about one subject (`detail.resource_id` or
    /// `detail.account_id`), in arrival order, with `Detail` parsed.
    pub fn about(&self, subject_id: &str) -> Vec<serde_json::Value> {
        self.entries
            .lock()
            .unwrap()
            .iter()
            .map(|entry| {
                let mut entry = entry.clone();
                entry["Detail"] =
                    serde_json::from_str(entry["Detail"].as_str().unwrap_or("null")).unwrap_or_default();
                entry
            })
            .filter(|entry| {
                entry["Detail"]["resource_id"] == subject_id || entry["Detail"]["account_id"] == subject_id
            })
            .collect()
    }
}

/// Appends the `PutEvents` call to the stack's recording of AWS calls
/// (scripts/aws_call_recorder.py's format), as the recorder in front of
/// DynamoDB Local does for the table: the template must grant it too.
fn record_aws_call(headers: &HeaderMap, entries: &[serde_json::Value]) {
    use std::io::Write;
    let Ok(path) = std::env::var("AWS_CALL_RECORDING") else {
        return;
    };
    let user_agent = ["x-amz-user-agent", "user-agent"]
        .iter()
        .filter_map(|name| headers.get(*name).and_then(|value| value.to_str().ok()))
        .collect::<Vec<_>>()
        .join(" ");
    let caller = user_agent
        .split_whitespace()
        .find_map(|part| part.strip_prefix("app/"))
        .unwrap_or("unknown");
    let buses: std::collections::BTreeSet<String> = entries
        .iter()
        .map(|entry| entry["EventBusName"].as_str().unwrap_or("default").to_string())
        .collect();
    let checks: Vec<serde_json::Value> = buses
        .iter()
        .map(|bus| serde_json::json!({"action": "events:PutEvents", "resource": "event-bus", "key": bus}))
        .collect();
    let line = serde_json::json!({"caller": caller, "service": "events", "operation": "PutEvents", "checks": checks});
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("the AWS call recording");
    // One write of the whole line: other processes append to the file too.
    file.write_all(format!("{line}\n").as_bytes())
        .expect("append to the AWS call recording");
}

/// The platform sync wired to stand-ins for Clever Cloud's vendor API (user
/// `addon-name`, `vendor_password`) and for Cloudmore, on `store`.
pub struct SyncWorld {
    pub store: shared::store::DynamoStore,
    pub vendor_url: String,
    pub vendor: Arc<FakeVendor>,
    pub cloudmore: Arc<FakeCloudmore>,
    pub sync: shared::sync::PlatformSync<shared::store::DynamoStore>,
}

impl SyncWorld {
    pub async fn new(
        store: shared::store::DynamoStore,
        vendor_password: &str,
        cloudmore: FakeCloudmore,
    ) -> Self {
        let (vendor, vendor_url) = FakeVendor::spawn("addon-name", vendor_password);
        let (cloudmore, cloudmore_url) = cloudmore.spawn();
        let cloudmore_config =
            shared::cloudmore::CloudmoreConfig::from_lookup(&cloudmore.lookup(&cloudmore_url, "form"))
                .expect("Cloudmore settings")
                .expect("Cloudmore configured");
        let sync = shared::sync::PlatformSync::new(
            crate::acting_as("platform-sync", &store).await,
            shared::clevercloud::vendor::VendorClient::new(
                vendor_url.clone(),
                "addon-name".into(),
                shared::secret::Secret::new(vendor_password),
            ),
            Some(shared::cloudmore::CloudmoreClient::new(cloudmore_config)),
            None,
        );
        Self {
            store,
            vendor_url,
            vendor,
            cloudmore,
            sync,
        }
    }
}
