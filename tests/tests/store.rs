//! The lifecycle rules against real DynamoDB Local, in-process: races,
//! version conditions, transactional audit events, and an unreachable table.

use lambda_http::http::StatusCode;
use shared::clevercloud::routes::{self, CleverCloudApi};
use shared::clevercloud::{Lifecycle, PlanChangeRequest, ProvisionRequest};
use shared::config::CleverCloudConfig;
use shared::model::{AuditAction, AuditEvent, SubjectKind, Timestamp};
use shared::provisioner::DefaultProvisioner;
use shared::store::{
    CreateOutcome, DynamoStore, ProvisionStore, ResourceReader, ResourceWriter, UpdateOutcome,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use tests::*;

fn config_without_plan_list() -> CleverCloudConfig {
    test_addon("store-test-password")
}

fn lifecycle(store: DynamoStore) -> Lifecycle<DynamoStore, DefaultProvisioner> {
    let config = config_without_plan_list();
    let provisioner = DefaultProvisioner::new("https://resources.example", config.config_vars.clone());
    Lifecycle::new(store, provisioner, config)
}

fn provision_request(addon_id: &str, plan: &str) -> ProvisionRequest {
    serde_json::from_value(provision_body(addon_id, plan)).unwrap()
}

#[tokio::test]
async fn concurrent_plan_changes_never_lose_an_update() {
    let lifecycle = Arc::new(lifecycle(store().await));
    let addon_id = unique("plans");
    let id = lifecycle
        .provision(provision_request(&addon_id, "plan-start"))
        .await
        .unwrap()
        .id;
    let writers = 20;
    let tasks: Vec<_> = (0..writers)
        .map(|n| {
            let lifecycle = lifecycle.clone();
            let (id, addon_id) = (id.clone(), addon_id.clone());
            tokio::spawn(async move {
                let request = PlanChangeRequest {
                    addon_id,
                    plan: format!("plan-{n}"),
                };
                lifecycle.change_plan(&id, request).await
            })
        })
        .collect();
    for task in tasks {
        task.await
            .unwrap()
            .expect("every concurrent plan change succeeds");
    }

    let client = dynamo_client().await;
    let (resource, audits) = resource_partition(&client, &id).await;
    let resource = resource.unwrap();
    assert_eq!(
        string(&resource, "version"),
        (1 + writers).to_string(),
        "one version per change"
    );

    // The audit trail must be one unbroken chain from plan-start through all
    // twenty plans: a lost update would show as a fork or a gap.
    let mut changes: Vec<(String, String)> = audits
        .iter()
        .filter(|event| string(event, "action") == "plan_changed")
        .map(|event| {
            let aws_sdk_dynamodb::types::AttributeValue::M(details) = &event["details"] else {
                panic!("details")
            };
            (string(details, "from_plan"), string(details, "to_plan"))
        })
        .collect();
    assert_eq!(changes.len(), writers);
    let mut plan = "plan-start".to_string();
    while let Some(position) = changes.iter().position(|(from, _)| *from == plan) {
        plan = changes.remove(position).1;
    }
    assert!(changes.is_empty(), "changes not on the chain: {changes:?}");
    assert_eq!(plan, string(&resource, "plan"));
}

#[tokio::test]
async fn racing_creates_for_one_add_on_id_store_one_resource() {
    let store = Arc::new(store().await);
    let addon_id = unique("create-race");
    let lifecycle = lifecycle(store.as_ref().clone());
    // Twenty distinct candidate resources for the same add-on id, written at once.
    let template = lifecycle
        .provision(provision_request(&unique("template"), "basic"))
        .await
        .unwrap();
    let template = store.get_resource(&template.id).await.unwrap().unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|n| {
            let store = store.clone();
            let mut resource = template.clone();
            resource.id = format!("res_candidate_{n}_{}", shared::secret::random_hex(4));
            resource.addon_id = addon_id.clone();
            tokio::spawn(async move {
                let event = AuditEvent::new(
                    SubjectKind::Resource,
                    &resource.id,
                    AuditAction::Provisioned,
                    "test",
                    &Timestamp::now(),
                );
                (
                    resource.id.clone(),
                    store.create_resource(&resource, &event, &[]).await.unwrap(),
                )
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut reported = Vec::new();
    for task in tasks {
        let (candidate, outcome) = task.await.unwrap();
        match outcome {
            CreateOutcome::Created => winners.push(candidate),
            CreateOutcome::Existing(existing) => reported.push(existing.id),
            CreateOutcome::Stale => panic!("nothing else was written"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one create wins");
    assert!(
        reported.iter().all(|id| *id == winners[0]),
        "losers are told the winner"
    );
    let client = dynamo_client().await;
    assert_eq!(resources_with_addon_id(&client, &addon_id).await, 1);
    let claim = partition(&client, &format!("CLEVERCLOUD_ADDON#{addon_id}")).await;
    assert_eq!(string(&claim[0], "owner_id"), winners[0]);
}

#[tokio::test]
async fn a_stale_update_writes_neither_the_resource_nor_its_audit_event() {
    let store = store().await;
    let lifecycle = lifecycle(store.clone());
    let id = lifecycle
        .provision(provision_request(&unique("stale"), "basic"))
        .await
        .unwrap()
        .id;
    let mut resource = store.get_resource(&id).await.unwrap().unwrap();
    resource.plan = "premium".into();
    resource.version = 7;
    let event = AuditEvent::new(
        SubjectKind::Resource,
        &id,
        AuditAction::PlanChanged,
        "test",
        &Timestamp::now(),
    );
    assert_eq!(
        store.update_resource(&resource, 6, &event, &[]).await.unwrap(),
        UpdateOutcome::Stale
    );

    let (stored, audits) = resource_partition(&dynamo_client().await, &id).await;
    assert_eq!(string(&stored.unwrap(), "plan"), "basic");
    assert_eq!(
        audits.len(),
        1,
        "the audit event must not be written without the change"
    );
}

#[tokio::test]
async fn an_unreachable_table_answers_503_with_retry_after_and_no_partial_state() {
    let shared_config = aws_config::from_env().load().await;
    let unreachable = aws_sdk_dynamodb::config::Builder::from(&shared_config)
        .endpoint_url("http://127.0.0.1:1")
        .build();
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(unreachable), table_name());
    let config = config_without_plan_list();
    let provisioner = DefaultProvisioner::new("https://resources.example", config.config_vars.clone());
    let api = CleverCloudApi::new(store, provisioner, config);
    let addon_id = unique("unreachable");

    let request = lambda_http::http::Request::builder()
        .method("POST")
        .uri("/clevercloud/resources")
        .header("content-type", "application/json")
        .header("authorization", basic("addon-name", "store-test-password"))
        .body(lambda_http::Body::Text(
            provision_body(&addon_id, "basic").to_string(),
        ))
        .unwrap();
    let response = routes::provision(&api, request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: serde_json::Value = serde_json::from_slice(response.body().as_ref()).unwrap();
    assert_eq!(body["error"], "storage_unavailable");
    assert_eq!(
        resources_with_addon_id(&dynamo_client().await, &addon_id).await,
        0
    );
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[test]
fn a_function_with_a_missing_variable_stops_at_start_up_naming_it() {
    let binary = workspace_binary("provision");
    let complete: BTreeMap<&str, &str> = BTreeMap::from([
        ("TABLE_NAME", "t"),
        ("ADDON_ID", "addon-name"),
        ("ADDON_PASSWORD", "pw"),
        ("ADDON_CONFIG_VARS", "ADDON_NAME_URL"),
        ("RESOURCE_BASE_URL", "https://r.example"),
    ]);
    for missing in complete.keys() {
        let output = std::process::Command::new(&binary)
            .env_clear()
            .envs(complete.iter().filter(|(name, _)| *name != missing))
            .output()
            .unwrap();
        assert!(!output.status.success(), "started without {missing}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(missing),
            "the error must name {missing}: {stderr}"
        );
    }
    let invalid = std::process::Command::new(&binary)
        .env_clear()
        .envs(complete.iter().map(|(k, v)| {
            (
                *k,
                if *k == "ADDON_CONFIG_VARS" {
                    "OTHER_URL"
                } else {
                    *v
                },
            )
        }))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&invalid.stderr).contains("ADDON_CONFIG_VARS"));
}

/// The link flow read the account, then the platform sync changed it (its
/// Cloudmore organisation): creating the account's resource reads it again
/// instead of failing, and keeps the sync's change.
#[tokio::test]
async fn an_account_changed_since_it_was_read_is_read_again_not_refused() {
    use shared::model::{ConfigMap, Platform, Resource};
    use shared::store::{AccountStore, LinkStore, SyncStore};
    let store = store().await;
    let email = format!("{}@example.com", unique("stale"));
    let read_by_link = store
        .find_or_create_account(&email, None, "cloud66")
        .await
        .unwrap();
    let now = Timestamp::now();
    let by_sync = shared::model::Account {
        cloudmore_organization_id: Some("org_1".into()),
        version: read_by_link.version + 1,
        ..read_by_link.clone()
    };
    let event = AuditEvent::new(
        SubjectKind::Account,
        &by_sync.id,
        AuditAction::CloudmoreOrganizationRecorded,
        "platform-sync",
        &now,
    );
    assert_eq!(
        store.update_account(&by_sync, &event).await.unwrap(),
        UpdateOutcome::Updated
    );

    let resource = Resource::new(
        format!("res_{}", shared::secret::random_hex(16)),
        Platform::Cloud66,
        read_by_link.id.clone(),
        "cloud66".into(),
        ConfigMap::default(),
        &now,
    );
    let event = AuditEvent::new(
        SubjectKind::Resource,
        &resource.id,
        AuditAction::Provisioned,
        "cloud66",
        &now,
    );
    let stored = store
        .ensure_account_resource(&read_by_link, &resource, &event)
        .await
        .expect("a stale account is read again, not reported as unavailable");
    assert_eq!(stored.id, resource.id);
    let account = store.get_account(&read_by_link.id).await.unwrap().unwrap();
    assert_eq!(account.resource_ids, vec![resource.id.clone()]);
    assert_eq!(account.cloudmore_organization_id.as_deref(), Some("org_1"));
    assert_eq!(account.version, read_by_link.version + 2);
}

fn oidc_grant(expires_at: i64) -> shared::model::OidcGrant {
    use shared::model::{Platform, SignedInIdentity};
    shared::model::OidcGrant {
        client_id: "app".into(),
        scope: "openid email".into(),
        nonce: Some("n".into()),
        identity: SignedInIdentity {
            subject: SignedInIdentity::subject_of(Platform::CleverCloud, "user:store"),
            platform: Platform::CleverCloud,
            email: Some("store@example.com".into()),
            email_verified: true,
            unverified_email: None,
            name: None,
            resource_id: Some("res_store".into()),
            plan: Some("basic".into()),
            marketplace_id: Some("addon_store".into()),
            aws_account_id: None,
            auth_time: 0,
        },
        expires_at,
    }
}

#[tokio::test]
async fn an_oidc_code_is_redeemed_once_only_by_its_binding_and_never_after_it_expires() {
    use shared::model::CodeBinding;
    use shared::store::OidcStore;
    let store = acting_as("oidc", &store().await).await;
    let now = chrono::Utc::now().timestamp();
    let binding = CodeBinding {
        client_id: "app".into(),
        redirect_uri: "https://app.example/cb".into(),
        code_challenge: "challenge".into(),
    };
    let code = unique("code");
    store
        .save_code(&code, &binding, &oidc_grant(now + 60))
        .await
        .unwrap();
    let token = unique("token");
    let spent_for = shared::store::SpentCode {
        access_token_fingerprint: token.clone(),
        expires_at: now + 600,
    };
    for other in [
        CodeBinding {
            client_id: "other".into(),
            ..binding.clone()
        },
        CodeBinding {
            redirect_uri: "https://app.example/other".into(),
            ..binding.clone()
        },
        CodeBinding {
            code_challenge: "another".into(),
            ..binding.clone()
        },
    ] {
        assert_eq!(
            store.redeem_code(&code, &other, now, &spent_for).await.unwrap(),
            None,
            "{other:?}"
        );
    }
    assert_eq!(
        store.redeem_code(&code, &binding, now, &spent_for).await.unwrap(),
        Some(oidc_grant(now + 60)),
        "the wrong attempts left it unspent"
    );
    store
        .save_access_token(&token, &oidc_grant(now + 600))
        .await
        .unwrap();
    assert_eq!(
        store.redeem_code(&code, &binding, now, &spent_for).await.unwrap(),
        None,
        "spent"
    );
    // Presented again: another client's attempt revokes nothing; its own
    // client's revokes the token the first redemption bought, once.
    assert!(!store.revoke_reused_code(&code, "other").await.unwrap());
    assert!(store.get_access_token(&token, now).await.unwrap().is_some());
    assert!(store.revoke_reused_code(&code, "app").await.unwrap());
    assert_eq!(store.get_access_token(&token, now).await.unwrap(), None);
    assert!(!store.revoke_reused_code(&code, "app").await.unwrap());
    assert!(!store.revoke_reused_code(&unique("code"), "app").await.unwrap());

    // Expired, though DynamoDB's TTL has not removed it yet: refused, and kept
    // for the TTL to remove.
    let expired = unique("code");
    store
        .save_code(&expired, &binding, &oidc_grant(now - 1))
        .await
        .unwrap();
    assert_eq!(
        store
            .redeem_code(&expired, &binding, now, &spent_for)
            .await
            .unwrap(),
        None
    );
    let item = partition(&dynamo_client().await, &format!("OIDC_CODE#{expired}")).await;
    assert_eq!(item.len(), 1);
    assert!(!item[0].contains_key("code"), "stored under its fingerprint only");
}

#[tokio::test]
async fn an_oidc_access_token_answers_until_it_expires() {
    use shared::store::OidcStore;
    let store = acting_as("oidc", &store().await).await;
    let now = chrono::Utc::now().timestamp();
    let token = unique("token");
    store
        .save_access_token(&token, &oidc_grant(now + 600))
        .await
        .unwrap();
    assert_eq!(
        store.get_access_token(&token, now).await.unwrap(),
        Some(oidc_grant(now + 600))
    );
    assert_eq!(store.get_access_token(&token, now + 600).await.unwrap(), None);
    assert_eq!(store.get_access_token(&unique("token"), now).await.unwrap(), None);
}
