//! The provision path without storage: Basic auth, body parsing and
//! validation, the default provisioner, and the JSON response — everything a
//! provision costs on Lambda apart from the DynamoDB round trips (which
//! `make load` measures against DynamoDB Local).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use lambda_http::{Body, Request};
use shared::clevercloud::routes::{self, CleverCloudApi};
use shared::config::CleverCloudConfig;
use shared::model::{AuditEvent, Resource};
use shared::provisioner::DefaultProvisioner;
use shared::store::{CreateOutcome, ProvisionStore, StoreError};
use std::hint::black_box;

/// Answers as an empty table would, instantly: the benchmark leaves storage out.
struct NoStorage;

impl ProvisionStore for NoStorage {
    async fn create_resource(
        &self,
        _resource: &Resource,
        _event: &AuditEvent,
        _also: &[shared::store::AlsoWrite<'_>],
    ) -> Result<CreateOutcome, StoreError> {
        Ok(CreateOutcome::Created)
    }
}

const BODY: &str = r#"{"addon_id":"addon_xxx","owner_id":"orga_xxx","owner_name":"My Company",
"user_id":"user_yyy","plan":"basic","region":"EU",
"callback_url":"https://api.clever-cloud.com/v2/vendor/apps/addon_xxx",
"logplex_token":"logtoken_yyy","options":{}}"#;

fn request() -> Request {
    lambda_http::http::Request::builder()
        .method("POST")
        .uri("/clevercloud/resources")
        .header("content-type", "application/json")
        // addon-name:44ca82ddf8d4e74d52494ce2895152ee, the platform docs' example.
        .header(
            "authorization",
            "Basic YWRkb24tbmFtZTo0NGNhODJkZGY4ZDRlNzRkNTI0OTRjZTI4OTUxNTJlZQ==",
        )
        .body(Body::Text(BODY.to_string()))
        .unwrap()
}

fn provision_without_storage(c: &mut Criterion) {
    let config = CleverCloudConfig::from_lookup(&|name: &str| match name {
        "ADDON_ID" => Some("addon-name".into()),
        "ADDON_PASSWORD" => Some("44ca82ddf8d4e74d52494ce2895152ee".into()),
        "ADDON_CONFIG_VARS" => Some("ADDON_NAME_URL,ADDON_NAME_TOKEN".into()),
        "ADDON_PLANS" => Some("basic,premium".into()),
        _ => None,
    })
    .unwrap();
    let provisioner = DefaultProvisioner::new("https://resources.example.com", config.config_vars.clone());
    let api = CleverCloudApi::new(NoStorage, provisioner, config);
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();

    // Fail loudly rather than measure an error path.
    let response = runtime.block_on(routes::provision(&api, request())).unwrap();
    assert_eq!(response.status(), 200);

    c.bench_function("provision handler without storage", |b| {
        b.iter_batched(
            request,
            |request| black_box(runtime.block_on(routes::provision(&api, request)).unwrap()),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, provision_without_storage);
criterion_main!(benches);
