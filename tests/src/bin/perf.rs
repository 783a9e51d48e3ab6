//! `make perf`: each function's release binary run as one Lambda instance —
//! a stand-in for the Lambda Runtime API hands it API Gateway HTTP API v2
//! events one after the other — beside a floor binary (lambda_http + one
//! `TransactWriteItems` of three puts) and `hello` (lambda_http alone), all
//! built with the same profile and all on the same DynamoDB Local (the floor
//! again with the functions' init-time warm-up read, and again with the
//! vendor's round trip when `PROVISIONER_URL` is set). Several rounds; per
//! binary: warm p50 and p99 and peak RSS of one instance, then init (spawn →
//! first `/next`) and first invocation, medians of several cold starts, and
//! each as a ratio to the floor in the same round. Absolute times vary with
//! the machine; the ratios are the result.
//!
//! Run inside `scripts/stack.sh test` (it provides DynamoDB Local, the table
//! and the variables `make run` uses); `make perf` does.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use clap::Parser;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Notify};

#[derive(Parser)]
#[command(
    name = "perf",
    about = "Lambda instances of each function against a floor binary, as ratios"
)]
struct Args {
    /// Warm invocations per binary and round (after the first).
    #[arg(long, default_value_t = 300)]
    invocations: usize,
    /// Rounds; each starts every binary afresh.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Cold starts per binary and round, after its warm invocations (each a
    /// fresh process handed one event); init and first are their medians.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    cold_starts: u16,
    /// Where the release binaries are.
    #[arg(long, default_value = "target/release")]
    dir: PathBuf,
    /// Run the functions with the built-in default provisioner (no
    /// `PROVISIONER_URL`), leaving out the vendor's own round trip.
    #[arg(long)]
    default_provisioner: bool,
}

/// The Runtime API stand-in's state for one instance.
struct RuntimeApi {
    queue: tokio::sync::Mutex<mpsc::Receiver<(String, Value)>>,
    answers: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    first_poll: Mutex<Option<Instant>>,
    polled: Notify,
}

impl RuntimeApi {
    async fn next(State(api): State<Arc<Self>>) -> Response {
        api.first_poll.lock().unwrap().get_or_insert_with(Instant::now);
        api.polled.notify_one();
        let Some((id, event)) = api.queue.lock().await.recv().await else {
            return StatusCode::GONE.into_response();
        };
        let mut headers = HeaderMap::new();
        let value = |text: &str| HeaderValue::from_str(text).unwrap();
        headers.insert("lambda-runtime-aws-request-id", value(&id));
        let deadline = chrono::Utc::now().timestamp_millis() + 10_000;
        headers.insert("lambda-runtime-deadline-ms", value(&deadline.to_string()));
        headers.insert(
            "lambda-runtime-invoked-function-arn",
            value("arn:aws:lambda:us-east-1:123456789012:function:perf"),
        );
        headers.insert(
            "lambda-runtime-trace-id",
            value("Root=1-00000000-000000000000000000000000"),
        );
        (headers, event.to_string()).into_response()
    }

    async fn answer(State(api): State<Arc<Self>>, Path(id): Path<String>, body: String) -> StatusCode {
        let answer = serde_json::from_str(&body).unwrap_or(json!({ "unreadable": body }));
        if let Some(waiting) = api.answers.lock().unwrap().remove(&id) {
            let _ = waiting.send(answer);
        }
        StatusCode::ACCEPTED
    }

    async fn error(State(api): State<Arc<Self>>, Path(id): Path<String>, body: String) -> StatusCode {
        if let Some(waiting) = api.answers.lock().unwrap().remove(&id) {
            let _ = waiting.send(json!({ "statusCode": 599, "error": body }));
        }
        StatusCode::ACCEPTED
    }

    async fn init_error(body: String) -> StatusCode {
        eprintln!("perf: init error: {body}");
        StatusCode::ACCEPTED
    }
}

/// One instance's numbers.
struct Run {
    init: Duration,
    first: Duration,
    warm: Vec<Duration>,
    peak_rss_kb: u64,
}

/// A binary running as a Lambda instance, fed by its own Runtime API
/// stand-in.
struct Instance {
    name: String,
    api: Arc<RuntimeApi>,
    sender: mpsc::Sender<(String, Value)>,
    child: Child,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    init: Duration,
    latencies: Vec<Duration>,
}

impl Instance {
    /// Starts `binary` from `dir` and waits until it polls for its first
    /// event; without `PROVISIONER_URL` unless the binary runs with it.
    async fn start(dir: &std::path::Path, binary: &Binary) -> Self {
        let (sender, receiver) = mpsc::channel(1);
        let api = Arc::new(RuntimeApi {
            queue: tokio::sync::Mutex::new(receiver),
            answers: Mutex::default(),
            first_poll: Mutex::default(),
            polled: Notify::new(),
        });
        let router = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(RuntimeApi::next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(RuntimeApi::answer),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(RuntimeApi::error),
            )
            .route("/2018-06-01/runtime/init/error", post(RuntimeApi::init_error))
            .with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, router).await });

        let name = binary.name.to_string();
        let log = std::fs::File::create(std::env::temp_dir().join(format!("perf-{name}.log"))).unwrap();
        let started = Instant::now();
        let path = dir.join(binary.file);
        let mut command = Command::new(&path);
        if !binary.vendor {
            command.env_remove("PROVISIONER_URL");
        }
        if binary.warm_up {
            command.env("FLOOR_WARM_UP", "1");
        }
        if let Some(mode) = binary.floor_mode {
            command.env("FLOOR_MODE", mode);
        }
        let child: Child = command
            .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "perf")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "perf")
            // The configuration `make run` uses: plain development values.
            .env_remove("SECRETS_NAME")
            .env_remove("ADDON_PASSWORD_PREVIOUS")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|err| panic!("{}: {err} (run `make perf`, which builds it)", path.display()));
        tokio::time::timeout(Duration::from_secs(30), api.polled.notified())
            .await
            .unwrap_or_else(|_| panic!("{name} never polled for an event; see its log in the temp dir"));
        let init = api.first_poll.lock().unwrap().unwrap() - started;
        Self {
            name,
            api,
            sender,
            child,
            server,
            init,
            latencies: Vec::new(),
        }
    }

    /// Hands the instance one event and waits for its answer.
    async fn invoke(&mut self, event: Value) -> Value {
        let id = format!("perf-{}", self.latencies.len());
        let (waiting, answer) = oneshot::channel();
        self.api.answers.lock().unwrap().insert(id.clone(), waiting);
        let handed = Instant::now();
        self.sender.send((id, event)).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(30), answer)
            .await
            .unwrap_or_else(|_| panic!("{} did not answer", self.name))
            .unwrap();
        self.latencies.push(handed.elapsed());
        let status = answer["statusCode"].as_u64().unwrap_or(200);
        // An authorize answers 302 with its code.
        assert!(status < 400, "{} answered {answer}", self.name);
        answer
    }

    /// Stops the instance: its first and warm latencies and peak RSS.
    fn finish(mut self) -> Run {
        let peak_rss_kb = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix("VmHWM:"))
                    .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0);
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.server.abort();
        let first = self.latencies.remove(0);
        Run {
            init: self.init,
            first,
            warm: self.latencies,
            peak_rss_kb,
        }
    }
}

/// An API Gateway HTTP API (payload 2.0) event.
fn http_event(method: &str, path: &str, route: &str, id: Option<&str>, body: Option<Value>) -> Value {
    // Each marketplace's own credentials, as it sends them.
    let (user, password) = if path.starts_with("/heroku/") {
        ("HEROKU_ADDON_ID", "HEROKU_PASSWORD")
    } else if path.starts_with("/scalingo/") {
        ("SCALINGO_USERNAME", "SCALINGO_PASSWORD")
    } else {
        ("ADDON_ID", "ADDON_PASSWORD")
    };
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        std::env::var(user).unwrap_or_default(),
        std::env::var(password).unwrap_or_default()
    ));
    let mut event = json!({
        "version": "2.0",
        "routeKey": format!("{method} {route}"),
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "authorization": format!("Basic {basic}"),
            "content-type": "application/json",
            "host": "perf.local",
        },
        "requestContext": {
            "accountId": "123456789012", "apiId": "perf", "domainName": "perf.local",
            "domainPrefix": "perf", "requestId": "perf", "routeKey": format!("{method} {route}"),
            "stage": "$default", "time": "23/Nov/2026:00:00:00 +0000", "timeEpoch": 0,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "perf"},
        },
        "isBase64Encoded": false,
    });
    if let Some(id) = id {
        event["pathParameters"] = json!({ "id": id });
    }
    if let Some(body) = body {
        event["body"] = body.to_string().into();
    }
    event
}

/// The OpenID Connect client and session the `oidc` rows use: the stack's
/// test client, and a session opened here as a marketplace sign-in would.
struct OidcSetup {
    cookie: String,
    client_id: String,
    client_secret: String,
    redirect_uri: String,
}

/// A PKCE verifier, the same for every code (each code is new).
const VERIFIER: &str = "perf-verifier-0123456789-0123456789-0123456789";

impl OidcSetup {
    async fn open() -> Self {
        use shared::model::{Platform, Session, SignedInIdentity};
        use shared::store::SessionStore;
        let store = tests::store().await;
        let session_id = shared::secret::random_hex(32);
        let now = chrono::Utc::now().timestamp();
        let session = Session {
            platform: Platform::CleverCloud,
            subject_id: "res_perf".into(),
            email: Some("perf@example.com".into()),
            nav_data: None,
            created_at: chrono::Utc::now().to_rfc3339(),
            expires_at: now + 3600,
            identity: Some(SignedInIdentity {
                subject: SignedInIdentity::subject_of(Platform::CleverCloud, "user:perf"),
                platform: Platform::CleverCloud,
                email: Some("perf@example.com".into()),
                email_verified: true,
                unverified_email: None,
                name: None,
                resource_id: Some("res_perf".into()),
                plan: Some("basic".into()),
                marketplace_id: Some("addon_perf".into()),
                aws_account_id: None,
                auth_time: now,
            }),
        };
        store
            .open_session(&shared::secret::random_hex(32), now + 60, &session_id, &session)
            .await
            .expect("a session for the oidc rows");
        // The add-on the session signs in to, active (an authorize reads it).
        let resource = shared::model::Resource::new(
            "res_perf".into(),
            Platform::CleverCloud,
            "addon_perf".into(),
            "basic".into(),
            shared::model::ConfigMap::default(),
            &shared::model::Timestamp::now(),
        );
        let event = shared::model::AuditEvent::new(
            shared::model::SubjectKind::Resource,
            "res_perf",
            shared::model::AuditAction::Provisioned,
            "perf",
            &shared::model::Timestamp::now(),
        );
        let _ = shared::store::ProvisionStore::create_resource(&store, &resource, &event, &[])
            .await
            .expect("the session's add-on for the oidc rows");
        Self {
            cookie: format!("{}={session_id}", shared::signin::SESSION_COOKIE),
            client_id: tests::stack_var("OIDC_TEST_CLIENT_ID"),
            client_secret: tests::stack_var("OIDC_TEST_CLIENT_SECRET"),
            redirect_uri: tests::stack_var("OIDC_TEST_REDIRECT_URI"),
        }
    }

    fn authorize_event(&self) -> Value {
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(<sha2::Sha256 as sha2::Digest>::digest(VERIFIER));
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("client_id", self.client_id.as_str()),
                ("redirect_uri", &self.redirect_uri),
                ("response_type", "code"),
                ("scope", "openid email"),
                ("state", "perf"),
                ("nonce", "perf"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ])
            .finish();
        let mut event = oidc_event("GET", "/oidc/authorize");
        event["rawQueryString"] = query.into();
        event["headers"]["cookie"] = self.cookie.clone().into();
        event
    }

    fn token_event(&self, code: &str) -> Value {
        let form = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &self.redirect_uri),
                ("code_verifier", VERIFIER),
                ("client_id", &self.client_id),
                ("client_secret", &self.client_secret),
            ])
            .finish();
        let mut event = oidc_event("POST", "/oidc/token");
        event["headers"]["content-type"] = "application/x-www-form-urlencoded".into();
        event["body"] = form.into();
        event
    }
}

/// An event for the OpenID Connect provider: no marketplace credentials.
fn oidc_event(method: &str, path: &str) -> Value {
    let mut event = http_event(method, path, path, None, None);
    if let Some(headers) = event["headers"].as_object_mut() {
        headers.remove("authorization");
    }
    event
}

/// The code in an authorize answer's `Location`.
fn code_of(answer: &Value) -> String {
    let location = answer["headers"]["location"]
        .as_str()
        .or_else(|| answer["multiValueHeaders"]["location"][0].as_str())
        .unwrap_or_else(|| panic!("no Location in the authorize answer {answer}"));
    reqwest::Url::parse(location)
        .expect("an absolute Location")
        .query_pairs()
        .find(|(name, _)| name == "code")
        .map(|(_, code)| code.into_owned())
        .expect("a code in the authorize answer")
}

fn provision_event(addon_id: &str) -> Value {
    http_event(
        "POST",
        "/clevercloud/resources",
        "/clevercloud/resources",
        None,
        Some(tests::provision_body(addon_id, "basic")),
    )
}

/// Heroku's provision for a new add-on, with its OAuth grant (sealed by the
/// function as it is in production).
fn heroku_provision_event() -> (String, Value) {
    let uuid = shared::secret::random_uuid();
    let body = json!({
        "uuid": uuid, "name": "perf", "plan": "basic", "region": "amazon-web-services::us-east-1",
        "callback_url": format!("https://api.heroku.com/addons/{uuid}"),
        "oauth_grant": {"code": format!("perf-{uuid}"), "expires_at": "2099-01-01T00:00:00Z", "type": "authorization_code"},
        "options": {},
    });
    let event = http_event("POST", "/heroku/resources", "/heroku/resources", None, Some(body));
    (uuid, event)
}

fn heroku_resource_event(method: &str, uuid: &str, body: Option<Value>) -> Value {
    http_event(
        method,
        &format!("/heroku/resources/{uuid}"),
        "/heroku/resources/{id}",
        Some(uuid),
        body,
    )
}

/// Scalingo's provision, as its own client sends it (with a `uuid`).
fn scalingo_provision_event() -> Value {
    let body = json!({
        "plan": "basic", "app_id": tests::unique("perf-app"), "uuid": shared::secret::random_uuid(),
        "shard_id": 1, "options": {},
    });
    http_event(
        "POST",
        "/scalingo/resources",
        "/scalingo/resources",
        None,
        Some(body),
    )
}

/// A Scalingo call on resource `id`: `suffix` is "" or "/suspend", "/resume".
fn scalingo_resource_event(method: &str, id: &str, suffix: &str, body: Option<Value>) -> Value {
    http_event(
        method,
        &format!("/scalingo/resources/{id}{suffix}"),
        &format!("/scalingo/resources/{{id}}{suffix}"),
        Some(id),
        body,
    )
}

fn resource_event(method: &str, id: &str, body: Option<Value>) -> Value {
    http_event(
        method,
        &format!("/clevercloud/resources/{id}"),
        "/clevercloud/resources/{id}",
        Some(id),
        body,
    )
}

/// What a binary is handed each time its turn comes.
#[derive(Clone, Copy)]
enum Workload {
    Get,
    Post,
    Provision,
    PlanChange,
    Deprovision,
    HerokuProvision,
    HerokuPlanChange,
    HerokuDeprovision,
    ScalingoProvision,
    ScalingoPlanChange,
    ScalingoSuspend,
    ScalingoDeprovision,
    Authorize,
    Token,
    /// AWS Marketplace's registration of a new purchase.
    Register,
    /// AWS Marketplace's `License Updated` that changes a registered
    /// purchase's plan (basic and premium in turn).
    LicenseUpdated,
    /// A vendor's usage report of one record, with a new key, for a
    /// registered purchase (docs/metering.md).
    Usage,
}

/// A binary of the table: its row name, its file, whether it runs with
/// `PROVISIONER_URL`, whether the floor makes the functions' warm-up read
/// at init (`FLOOR_WARM_UP`), which floor it is (`FLOOR_MODE`), its
/// workload, and the row its ratios are taken against.
struct Binary {
    name: &'static str,
    file: &'static str,
    vendor: bool,
    warm_up: bool,
    floor_mode: Option<&'static str>,
    workload: Workload,
    floor: &'static str,
}

/// The events of a round, shared by its warm and cold phases: plan changes
/// alternate on one resource of their own, so each is a real change; a
/// deprovision removes the resource the provision before it in the same
/// turn created.
struct Events {
    plan_resource: (String, String),
    premium: bool,
    provisioned: Option<String>,
    /// The same for Heroku's rows, by uuid.
    heroku_plan_uuid: String,
    heroku_premium: bool,
    heroku_provisioned: Option<String>,
    heroku_provisioning: Option<String>,
    /// Scalingo's: one resource for plan changes, one suspended and resumed
    /// in turn, and the provision a deprovision removes.
    scalingo_plan_id: String,
    scalingo_premium: bool,
    scalingo_suspend_id: String,
    scalingo_suspended: bool,
    scalingo_provisioned: Option<String>,
    oidc: OidcSetup,
    /// The code each binary file's authorize issued earlier in the turn
    /// (the function's, and the floor's for the token floor).
    codes: HashMap<&'static str, String>,
    /// Registration tokens not yet posted, one per registration.
    aws_tokens: Vec<String>,
    /// Each binary file's purchase for `License Updated`: its license ARN
    /// and agreement, and whether it is entitled to premium now.
    aws_licenses: HashMap<&'static str, (String, String, bool)>,
    /// The registered purchase the usage rows report for.
    usage_resource: String,
}

impl Events {
    fn next(&mut self, binary: &Binary) -> Value {
        match binary.workload {
            Workload::Get => http_event("GET", "/", "/", None, None),
            Workload::Post => http_event("POST", "/", "/", None, None),
            Workload::Provision => provision_event(&tests::unique("perf")),
            Workload::PlanChange => {
                self.premium = !self.premium;
                let plan = if self.premium { "premium" } else { "basic" };
                let (id, addon_id) = &self.plan_resource;
                resource_event("PUT", id, Some(json!({"addon_id": addon_id, "plan": plan})))
            }
            Workload::Deprovision => {
                let id = self.provisioned.take().expect("a provision earlier in the turn");
                resource_event("DELETE", &id, None)
            }
            Workload::HerokuProvision => {
                let (uuid, event) = heroku_provision_event();
                self.heroku_provisioning = Some(uuid);
                event
            }
            Workload::HerokuPlanChange => {
                self.heroku_premium = !self.heroku_premium;
                let plan = if self.heroku_premium { "premium" } else { "basic" };
                heroku_resource_event("PUT", &self.heroku_plan_uuid, Some(json!({ "plan": plan })))
            }
            Workload::HerokuDeprovision => {
                let uuid = self
                    .heroku_provisioned
                    .take()
                    .expect("a Heroku provision earlier in the turn");
                heroku_resource_event("DELETE", &uuid, None)
            }
            Workload::ScalingoProvision => scalingo_provision_event(),
            Workload::ScalingoPlanChange => {
                self.scalingo_premium = !self.scalingo_premium;
                let plan = if self.scalingo_premium { "premium" } else { "basic" };
                scalingo_resource_event("PATCH", &self.scalingo_plan_id, "", Some(json!({ "plan": plan })))
            }
            Workload::ScalingoSuspend => {
                self.scalingo_suspended = !self.scalingo_suspended;
                let action = if self.scalingo_suspended {
                    "/suspend"
                } else {
                    "/resume"
                };
                scalingo_resource_event("POST", &self.scalingo_suspend_id, action, Some(json!({})))
            }
            Workload::ScalingoDeprovision => {
                let id = self
                    .scalingo_provisioned
                    .take()
                    .expect("a Scalingo provision earlier in the turn");
                scalingo_resource_event("DELETE", &id, "", None)
            }
            Workload::Authorize => self.oidc.authorize_event(),
            Workload::LicenseUpdated => {
                let (license, agreement, _) = &self.aws_licenses[binary.file];
                json!({
                    "version": "0", "id": tests::unique("perf-event"),
                    "detail-type": "License Updated - Manufacturer",
                    "source": "aws.agreement-marketplace", "account": "123456789012",
                    "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "region": "us-east-1", "resources": [],
                    "detail": {"agreement": {"id": agreement}, "license": {"arn": license.trim_start_matches("arn:")}},
                })
            }
            Workload::Usage => {
                let id = &self.usage_resource;
                let path = format!("/vendor/resources/{id}/usage");
                let hour = shared::metering::hour_text(shared::metering::hour_of(chrono::Utc::now()));
                let body = json!({"records": [{
                    "dimension": "api_calls", "quantity": 3, "hour": hour, "key": tests::unique("perf"),
                }]});
                let signed = shared::provisioner::signature::sign_call(
                    &shared::secret::Secret::new(
                        std::env::var("PROVISIONER_SIGNING_SECRET").unwrap_or_default(),
                    ),
                    chrono::Utc::now().timestamp(),
                    "POST",
                    &path,
                    body.to_string().as_bytes(),
                );
                let mut event = http_event(
                    "POST",
                    &path,
                    "/vendor/resources/{id}/usage",
                    Some(id),
                    Some(body),
                );
                event["headers"][shared::provisioner::signature::HEADER.to_ascii_lowercase()] = signed.into();
                event
            }
            Workload::Register => {
                let token = self.aws_tokens.pop().expect("tokens minted for the round");
                let mut event = http_event("POST", "/aws/register", "/aws/register", None, None);
                event["headers"]["content-type"] = "application/x-www-form-urlencoded".into();
                event["body"] = format!("x-amzn-marketplace-token={token}").into();
                event
            }
            Workload::Token => {
                let code = self
                    .codes
                    .remove(binary.file)
                    .expect("an authorize earlier in the turn");
                self.oidc.token_event(&code)
            }
        }
    }

    /// What a turn needs set up before it is timed: a `License Updated`
    /// needs the license's entitlements changed at the stand-in AWS
    /// Marketplace (premium and basic in turn).
    async fn prepare(&mut self, binary: &Binary) {
        if !matches!(binary.workload, Workload::LicenseUpdated) {
            return;
        }
        let (license, _, premium) = self.aws_licenses.get_mut(binary.file).expect("a purchase");
        *premium = !*premium;
        let dimension = aws_dimension(if *premium { "premium" } else { "basic" });
        let status = reqwest::Client::new()
            .put(format!("{}/entitlements", tests::stack_var("E2E_AWS_MARKETPLACE_URL")))
            .json(&json!({"license_arn": license, "entitlements": [{"Dimension": dimension, "Value": {"IntegerValue": 1}}]}))
            .send()
            .await
            .expect("the stand-in AWS Marketplace")
            .status();
        assert!(status.is_success(), "entitlements: {status}");
    }

    fn answered(&mut self, binary: &Binary, answer: &Value) {
        match binary.workload {
            Workload::Provision => self.provisioned = Some(id_of(answer)),
            Workload::HerokuProvision => {
                id_of(answer);
                self.heroku_provisioned = self.heroku_provisioning.take();
            }
            Workload::ScalingoProvision => self.scalingo_provisioned = Some(id_of(answer)),
            Workload::Authorize => {
                self.codes.insert(binary.file, code_of(answer));
            }
            _ => {}
        }
    }
}

/// The listing's dimension for `plan` (`AWS_MARKETPLACE_PLANS`).
fn aws_dimension(plan: &str) -> String {
    tests::stack_var("AWS_MARKETPLACE_PLANS")
        .split(',')
        .find_map(|pair| pair.strip_suffix(&format!(":{plan}")).map(str::to_string))
        .unwrap_or_else(|| panic!("AWS_MARKETPLACE_PLANS maps no dimension to {plan}"))
}

/// The purchases the `License Updated` rows change: the function's,
/// registered through the stack; the floor's, a license alone.
async fn aws_licenses() -> HashMap<&'static str, (String, String, bool)> {
    let (function_license, _) = tests::aws_registered().await;
    let (_, floor_license, _) = tests::aws_mint(json!({})).await;
    HashMap::from([
        (
            "marketplace-events",
            (function_license, tests::unique("agmt-perf"), false),
        ),
        ("perf_floor", (floor_license, tests::unique("agmt-perf"), false)),
    ])
}

/// `count` registration tokens from the stand-in AWS Marketplace, each
/// for a new purchase.
async fn mint_tokens(count: usize) -> Vec<String> {
    let mut tokens = Vec::with_capacity(count);
    for _ in 0..count {
        tokens.push(tests::aws_mint(json!({})).await.0);
    }
    tokens
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// The numbers a table row shows, for one binary in one round.
#[derive(Clone, Copy)]
struct Numbers {
    init: f64,
    first: f64,
    cold: f64,
    p50: f64,
    p99: f64,
    rss: f64,
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

impl Numbers {
    /// The warm instance's latencies and memory; init, first and cold from
    /// the separate cold starts (`Run`s of one invocation each).
    fn of(run: &Run, cold_starts: &[Run]) -> Self {
        let mut warm = run.warm.clone();
        warm.sort();
        let column = |f: fn(&Run) -> f64| median(&cold_starts.iter().map(f).collect::<Vec<f64>>());
        Self {
            init: column(|run| ms(run.init)),
            first: column(|run| ms(run.first)),
            cold: column(|run| ms(run.init + run.first)),
            p50: ms(percentile(&warm, 0.50)),
            p99: ms(percentile(&warm, 0.99)),
            rss: run.peak_rss_kb as f64 / 1024.0,
        }
    }
}

fn id_of(answer: &Value) -> String {
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap_or("{}")).unwrap_or_default();
    body["id"]
        .as_str()
        .expect("an id in the provision answer")
        .to_string()
}

fn range(values: &[f64], digits: usize) -> String {
    let low = values.iter().cloned().fold(f64::INFINITY, f64::min);
    let high = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    format!("{low:.digits$}–{high:.digits$}")
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    // The floor alone; with the warm-up read every function makes at init
    // (its share of a cold start); and with the vendor's round trip that
    // every provision makes when PROVISIONER_URL is set.
    let vendor = !args.default_provisioner;
    let binary = |name, file, vendor, warm_up, workload| Binary {
        name,
        file,
        vendor,
        warm_up,
        floor_mode: None,
        workload,
        floor: "floor",
    };
    let mut binaries = vec![
        binary("hello", "perf_hello", false, false, Workload::Get),
        binary("floor", "perf_floor", false, false, Workload::Post),
        binary("floor+warm-up", "perf_floor", false, true, Workload::Post),
    ];
    if vendor {
        binaries.push(binary("floor+vendor", "perf_floor", true, false, Workload::Post));
    }
    // A change's floor (plan change, suspend or resume, deprovision): a
    // read, the vendor's round trip when there is one, a transaction.
    binaries.push(Binary {
        floor_mode: Some("change"),
        ..binary("floor change", "perf_floor", vendor, false, Workload::Post)
    });
    let change = |name, file, workload| Binary {
        floor: "floor change",
        ..binary(name, file, vendor, false, workload)
    };
    // A provision: the vendor's round trip (when there is one) and one
    // transaction.
    let provision_floor = if vendor { "floor+vendor" } else { "floor" };
    let provision = |name, workload| Binary {
        floor: provision_floor,
        ..binary(name, "provision", vendor, false, workload)
    };
    // A deprovision reads first only to tell the vendor's service; with the
    // default provisioner it is one transaction, the provision's floor.
    let gone = |name, workload| Binary {
        floor: if vendor { "floor change" } else { "floor" },
        ..binary(name, "deprovision", vendor, false, workload)
    };
    binaries.extend([
        provision("provision", Workload::Provision),
        change("plan-change", "plan-change", Workload::PlanChange),
        gone("deprovision", Workload::Deprovision),
        // Heroku's routes of the same functions, under the same rule.
        provision("heroku provision", Workload::HerokuProvision),
        change("heroku plan-change", "plan-change", Workload::HerokuPlanChange),
        gone("heroku deprovision", Workload::HerokuDeprovision),
        // Scalingo's routes of the same functions, under the same rule:
        // its suspend and resume, a read, the vendor and a transaction, as
        // a plan change.
        provision("scalingo provision", Workload::ScalingoProvision),
        change(
            "scalingo plan-change",
            "plan-change",
            Workload::ScalingoPlanChange,
        ),
        change(
            "scalingo suspend-resume",
            "plan-change",
            Workload::ScalingoSuspend,
        ),
        gone("scalingo deprovision", Workload::ScalingoDeprovision),
        // The OpenID Connect provider's calls, each against a floor of its
        // own round trips (perf_floor's FLOOR_MODE), with the warm-up read.
        Binary {
            floor_mode: Some("authorize"),
            ..binary("floor authorize", "perf_floor", false, true, Workload::Authorize)
        },
        Binary {
            floor_mode: Some("token"),
            ..binary("floor token", "perf_floor", false, true, Workload::Token)
        },
        Binary {
            floor: "floor authorize",
            ..binary("oidc authorize", "oidc", false, false, Workload::Authorize)
        },
        Binary {
            floor: "floor token",
            ..binary("oidc token", "oidc", false, false, Workload::Token)
        },
        // AWS Marketplace's registration of a new purchase, against the
        // floor of its contract (perf_floor's FLOOR_MODE=register), with
        // the warm-up read the function makes at init.
        Binary {
            floor_mode: Some("register"),
            ..binary("floor register", "perf_floor", vendor, true, Workload::Register)
        },
        Binary {
            floor: "floor register",
            ..binary(
                "aws register",
                "marketplace-register",
                vendor,
                false,
                Workload::Register,
            )
        },
        // AWS Marketplace's License Updated changing a registered purchase's
        // plan, against the floor of its contract (FLOOR_MODE=event), with
        // the warm-up read.
        Binary {
            floor_mode: Some("event"),
            ..binary(
                "floor event",
                "perf_floor",
                vendor,
                true,
                Workload::LicenseUpdated,
            )
        },
        Binary {
            floor: "floor event",
            ..binary(
                "aws license updated",
                "marketplace-events",
                vendor,
                false,
                Workload::LicenseUpdated,
            )
        },
        // A vendor's usage report, against the floor of its contract
        // (FLOOR_MODE=usage: the signature, the key's claim and the
        // counter's ADD in one transaction), with the warm-up read. Both
        // keep PROVISIONER_URL's signing secret, which signs the report:
        // the vendor is called by neither.
        Binary {
            floor_mode: Some("usage"),
            ..binary("floor usage", "perf_floor", true, true, Workload::Usage)
        },
        // The same with the resource's check in the transaction, which the
        // contract needs too (a removed or ended purchase takes no usage).
        Binary {
            floor_mode: Some("usage-check"),
            floor: "floor usage",
            ..binary("floor usage+check", "perf_floor", true, true, Workload::Usage)
        },
        Binary {
            floor: "floor usage+check",
            ..binary("usage report", "usage", true, false, Workload::Usage)
        },
    ]);
    let provision = binaries
        .iter()
        .position(|binary| matches!(binary.workload, Workload::Provision))
        .expect("a provision binary");
    let mut rounds: HashMap<&str, Vec<Numbers>> = HashMap::new();
    for round in 0..args.rounds {
        let mut instances = Vec::new();
        for binary in &binaries {
            instances.push(Instance::start(&args.dir, binary).await);
        }
        // The plan resource is the provision instance's first invocation.
        let addon_id = tests::unique("perf");
        let plan_id = id_of(&instances[provision].invoke(provision_event(&addon_id)).await);
        let heroku = binaries
            .iter()
            .position(|binary| matches!(binary.workload, Workload::HerokuProvision))
            .expect("a Heroku provision binary");
        let (heroku_plan_uuid, event) = heroku_provision_event();
        id_of(&instances[heroku].invoke(event).await);
        let scalingo = binaries
            .iter()
            .position(|binary| matches!(binary.workload, Workload::ScalingoProvision))
            .expect("a Scalingo provision binary");
        let scalingo_plan_id = id_of(&instances[scalingo].invoke(scalingo_provision_event()).await);
        let scalingo_suspend_id = id_of(&instances[scalingo].invoke(scalingo_provision_event()).await);
        let mut events = Events {
            plan_resource: (plan_id, addon_id),
            premium: false,
            provisioned: None,
            heroku_plan_uuid,
            heroku_premium: false,
            heroku_provisioned: None,
            heroku_provisioning: None,
            scalingo_plan_id,
            scalingo_premium: false,
            scalingo_suspend_id,
            scalingo_suspended: false,
            scalingo_provisioned: None,
            oidc: OidcSetup::open().await,
            codes: HashMap::new(),
            aws_tokens: mint_tokens(2 * (args.invocations + 1 + usize::from(args.cold_starts))).await,
            aws_licenses: aws_licenses().await,
            usage_resource: shared::aws_marketplace::resource_id(shared::model::aws_license_id(
                &tests::aws_registered().await.0,
            )),
        };

        // The binaries take turns, one invocation each, so all of them meet
        // DynamoDB Local in the same state (its table grows, its JVM warms
        // up) and none is favoured by its place in the round.
        for _ in 0..=args.invocations {
            for (binary, instance) in binaries.iter().zip(&mut instances) {
                events.prepare(binary).await;
                let answer = instance.invoke(events.next(binary)).await;
                events.answered(binary, &answer);
            }
        }
        let warm: Vec<Run> = instances.into_iter().map(Instance::finish).collect();

        // Cold starts, the binaries again taking turns: a fresh process, one
        // event, stopped. DynamoDB Local is warm by now, so these measure
        // the binaries' own start and first request rather than the JVM's
        // first transaction, which the first instance of a round may meet.
        let mut cold_starts: Vec<Vec<Run>> = binaries.iter().map(|_| Vec::new()).collect();
        for _ in 0..args.cold_starts {
            for (binary, runs) in binaries.iter().zip(&mut cold_starts) {
                let mut instance = Instance::start(&args.dir, binary).await;
                events.prepare(binary).await;
                let answer = instance.invoke(events.next(binary)).await;
                events.answered(binary, &answer);
                runs.push(instance.finish());
            }
        }
        for ((binary, run), cold) in binaries.iter().zip(&warm).zip(&cold_starts) {
            rounds
                .entry(binary.name)
                .or_default()
                .push(Numbers::of(run, cold));
        }
        eprintln!("perf: round {} of {} done", round + 1, args.rounds);
    }

    let provisioner = if args.default_provisioner {
        "the default provisioner"
    } else {
        "PROVISIONER_URL as set"
    };
    println!(
        "{} rounds × ({} warm invocations of one instance + {} cold starts), release builds, one DynamoDB Local, {provisioner}\n",
        args.rounds, args.invocations, args.cold_starts
    );
    println!("| binary | init ms | first ms | warm p50 ms | warm p99 ms | RSS MB | against | p50 / floor | cold / floor | RSS / floor |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, floor_name) in binaries.iter().map(|binary| (binary.name, binary.floor)) {
        let numbers = &rounds[name];
        let floor = &rounds[floor_name];
        let column = |f: fn(&Numbers) -> f64| numbers.iter().map(f).collect::<Vec<f64>>();
        let ratio = |f: fn(&Numbers) -> f64| {
            let ratios: Vec<f64> = numbers.iter().zip(floor).map(|(n, fl)| f(n) / f(fl)).collect();
            format!("{:.2} ({})", median(&ratios), range(&ratios, 2))
        };
        println!(
            "| {name} | {} | {} | {} | {} | {} | {floor_name} | {} | {} | {} |",
            range(&column(|n| n.init), 1),
            range(&column(|n| n.first), 1),
            range(&column(|n| n.p50), 2),
            range(&column(|n| n.p99), 2),
            range(&column(|n| n.rss), 1),
            ratio(|n| n.p50),
            ratio(|n| n.cold),
            ratio(|n| n.rss),
        );
    }
    println!("\nRatios: median over the rounds (range), each binary against its floor (`against`) in the same round.");
}
