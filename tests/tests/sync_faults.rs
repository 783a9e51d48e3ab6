//! The platform sync under faults: Clever Cloud or Cloudmore down, slow to
//! know an add-on, throttling, or racing. Each test runs on a table of its
//! own in DynamoDB Local (the sweep reads the whole `PendingSync` index)
//! against in-process stand-ins, and ends with nothing lost and nothing
//! duplicated, asserted on what the stand-ins received and on the table.

use serde_json::json;
use shared::clevercloud::vendor::VendorClient;
use shared::clevercloud::{Lifecycle, ProvisionRequest};
use shared::model::{Resource, SyncQueue, Timestamp};
use shared::provisioner::DefaultProvisioner;
use shared::secret::Secret;
use shared::store::{AccountStore, ResourceReader, SyncStore, SyncSubject};
use shared::sync::{self, Settled};
use std::time::Duration;
use tests::fakes::{FakeCloudmore, SyncWorld};
use tests::stream::{event, records_in};
use tests::*;

const VENDOR_PASSWORD: &str = "fault-test-password";

async fn world_with(cloudmore: FakeCloudmore) -> World {
    SyncWorld::new(isolated_store().await, VENDOR_PASSWORD, cloudmore).await
}

async fn world() -> World {
    world_with(FakeCloudmore::new(3600, Duration::from_secs(3600), None)).await
}

/// This file's steps on the shared world.
trait Steps {
    async fn provision(&self, owner_id: &str, known: bool) -> Resource;
    fn know(&self, addon_id: &str, owner_id: &str);
    async fn resource(&self, id: &str) -> Resource;
    async fn rotate(&self, id: &str) -> Resource;
    fn puts_for(&self, addon_id: &str) -> Vec<serde_json::Value>;
}

type World = SyncWorld;

impl Steps for World {
    /// A provision through the real lifecycle, for `owner_id`; Clever Cloud
    /// knows the add-on only if `known`.
    async fn provision(&self, owner_id: &str, known: bool) -> Resource {
        let addon_id = unique("fault");
        let mut body = provision_body(&addon_id, "basic");
        body["owner_id"] = owner_id.into();
        let request: ProvisionRequest = serde_json::from_value(body).unwrap();
        let addon = test_addon(VENDOR_PASSWORD);
        let provisioner = DefaultProvisioner::new("https://resources.example", addon.config_vars.clone());
        let id = Lifecycle::new(self.store.clone(), provisioner, addon)
            .provision(request)
            .await
            .unwrap()
            .id;
        if known {
            self.know(&addon_id, owner_id);
        }
        self.resource(&id).await
    }

    fn know(&self, addon_id: &str, owner_id: &str) {
        self.vendor.add_app(
            addon_id,
            json!({"id": addon_id, "name": "My instance", "owner_id": owner_id,
                   "owner_email": "owner@example.com", "region": "eu", "plan": "basic", "config": {}}),
        );
    }

    async fn resource(&self, id: &str) -> Resource {
        self.store.get_resource(id).await.unwrap().unwrap()
    }

    async fn rotate(&self, id: &str) -> Resource {
        let addon = test_addon(VENDOR_PASSWORD);
        let provisioner = DefaultProvisioner::new("https://resources.example", addon.config_vars);
        sync::rotate_credentials(&self.store, &provisioner, id)
            .await
            .unwrap();
        self.resource(id).await
    }

    fn puts_for(&self, addon_id: &str) -> Vec<serde_json::Value> {
        let puts = self.vendor.puts.lock().unwrap();
        puts.iter()
            .filter(|(id, _)| id == addon_id)
            .map(|(_, body)| body.clone())
            .collect()
    }
}

fn subject(resource: &Resource) -> SyncSubject {
    SyncSubject::Resource(resource.id.clone())
}

#[tokio::test]
async fn clever_cloud_down_longer_than_the_streams_retries_then_back_gets_the_rotated_config_exactly_once() {
    let world = world().await;
    let owner = unique("owner");
    let provisioned = world.provision(&owner, true).await;
    assert_eq!(world.sync.sweep(false, None).await.unwrap().settled, 1);
    let rotated = world.rotate(&provisioned.id).await;

    // Down through every delivery of the rotation's real stream record (the
    // template allows 5 retries) and a sweep: each attempt fails, none is
    // lost, and the record itself does not fail (the item keeps what is owed).
    world.vendor.fail_next(7, 503, None);
    let modifies: Vec<_> = records_in(world.store.table(), &format!("RESOURCE#{}", rotated.id))
        .await
        .into_iter()
        .filter(|record| {
            record["eventName"] == "MODIFY" && record["dynamodb"]["NewImage"]["config_version"]["N"] == "2"
        })
        .collect();
    assert_eq!(modifies.len(), 1);
    for _ in 0..6 {
        let response = world.sync.handle(event(&modifies), None).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        let owed = world.resource(&rotated.id).await;
        assert!(
            owed.sync.sync_error.as_deref().unwrap().contains("503"),
            "{:?}",
            owed.sync
        );
    }
    assert_eq!(*world.vendor.refused_calls.lock().unwrap(), 6);
    let report = world.sync.sweep(false, None).await.unwrap();
    assert_eq!((report.pending, report.settled), (1, 0), "{report:?}");
    assert!(world.puts_for(&rotated.addon_id).is_empty());
    let owed = world.resource(&rotated.id).await;
    assert_eq!(owed.sync.sync_queue, Some(SyncQueue::Pending));
    assert!(owed.sync.sync_error.as_deref().unwrap().contains("503"));
    assert_eq!(owed.pushed_config_version, 1);

    // Reconcile sees the drift.
    let vendor = VendorClient::new(
        world.vendor_url.clone(),
        "addon-name".into(),
        Secret::new(VENDOR_PASSWORD),
    );
    let drift = sync::reconcile(&world.store, &vendor).await.unwrap();
    assert_eq!(drift.config_behind, vec![rotated.addon_id.clone()]);

    // Back: the sweep pushes it once; later sweeps push nothing.
    world.vendor.outage.lock().unwrap().clear();
    assert_eq!(world.sync.sweep(false, None).await.unwrap().settled, 1);
    assert_eq!(
        world.sync.sweep(false, None).await.unwrap(),
        sync::SweepReport::default()
    );
    assert_eq!(
        world.puts_for(&rotated.addon_id),
        [json!({ "config": rotated.config })]
    );
    let healed = world.resource(&rotated.id).await;
    assert_eq!(healed.pushed_config_version, 2);
    assert!(!healed.sync.is_owed());
    assert!(sync::reconcile(&world.store, &vendor)
        .await
        .unwrap()
        .config_behind
        .is_empty());
}

#[tokio::test]
async fn a_404_while_provisioning_is_retried_and_a_later_200_lands() {
    let world = world().await;
    let owner = unique("owner");
    let resource = world.provision(&owner, false).await;
    let settled = world.sync.settle(&subject(&resource)).await.unwrap();
    assert!(
        matches!(settled, Settled::Pending { ref error, .. } if error.contains("404")),
        "{settled:?}"
    );
    // The Cloudmore step did not wait for the details.
    assert_eq!(
        world
            .cloudmore
            .organizations_named(&format!("My Company ({owner})"))
            .len(),
        1
    );

    world.know(&resource.addon_id, &owner);
    assert_eq!(
        world.sync.settle(&subject(&resource)).await.unwrap(),
        Settled::Done
    );
    let settled = world.resource(&resource.id).await;
    assert_eq!(settled.vendor.unwrap().region.as_deref(), Some("eu"));
    assert!(!settled.sync.is_owed());
    assert_eq!(*world.cloudmore.organization_posts.lock().unwrap(), 1);
}

#[tokio::test]
async fn a_429_is_not_retried_before_its_retry_after() {
    let world = world().await;
    let resource = world.provision(&unique("owner"), true).await;
    world.vendor.fail_next(1, 429, Some("120"));
    let before = Timestamp::now().unix();
    let settled = world.sync.settle(&subject(&resource)).await.unwrap();
    let Settled::Pending {
        retry_at: Some(retry_at),
        ..
    } = settled
    else {
        panic!("{settled:?}")
    };
    assert!((before + 120..=before + 125).contains(&retry_at), "{retry_at}");
    let calls = *world.vendor.refused_calls.lock().unwrap() + world.vendor.gets.lock().unwrap().len();
    assert_eq!(
        world.sync.settle(&subject(&resource)).await.unwrap(),
        Settled::Waiting { retry_at }
    );
    assert_eq!(
        *world.vendor.refused_calls.lock().unwrap() + world.vendor.gets.lock().unwrap().len(),
        calls,
        "nothing asked of Clever Cloud before Retry-After"
    );
    // An operator need not wait.
    assert_eq!(
        world.sync.settle_now(&subject(&resource)).await.unwrap(),
        Settled::Done
    );
}

#[tokio::test]
async fn cloudmore_refusing_does_not_stop_clever_cloud_and_is_recorded_as_final() {
    let world = world_with(FakeCloudmore::new(
        3600,
        Duration::from_secs(3600),
        Some("invalid_grant"),
    ))
    .await;
    let resource = world.provision(&unique("owner"), true).await;
    let settled = world.sync.settle(&subject(&resource)).await.unwrap();
    assert!(
        matches!(settled, Settled::Failed { ref error, .. } if error.contains("Cloudmore")),
        "{settled:?}"
    );
    let stored = world.resource(&resource.id).await;
    assert!(
        stored.vendor.is_some(),
        "Clever Cloud's details were fetched all the same"
    );
    assert_eq!(stored.sync.sync_queue, Some(SyncQueue::Failed));
    // The schedule leaves a final failure alone; reconcile reports it.
    assert_eq!(world.sync.sweep(false, None).await.unwrap().settled, 0);
    let owed = world.store.owed(SyncQueue::Failed).await.unwrap();
    assert_eq!(owed.len(), 1);
    assert_eq!(owed[0].subject, subject(&resource));
}

#[tokio::test]
async fn two_resources_of_one_owner_settled_at_once_create_one_organization() {
    let world = world().await;
    let owner = unique("owner");
    let first = world.provision(&owner, true).await;
    let second = world.provision(&owner, true).await;
    *world.cloudmore.list_delay.lock().unwrap() = Duration::from_millis(300);
    let (first_subject, second_subject) = (subject(&first), subject(&second));
    let (a, b) = tokio::join!(
        world.sync.settle(&first_subject),
        world.sync.settle(&second_subject)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a == Settled::Done || b == Settled::Done, "{a:?} {b:?}");
    // The loser (if it met the claim) is settled by the next sweep.
    world.sync.sweep(false, None).await.unwrap();
    for resource in [&first, &second] {
        assert!(!world.resource(&resource.id).await.sync.is_owed());
    }
    let name = format!("My Company ({owner})");
    assert_eq!(world.cloudmore.organizations_named(&name).len(), 1);
    assert_eq!(*world.cloudmore.organization_posts.lock().unwrap(), 1);
}

#[tokio::test]
async fn a_token_answer_with_an_absurd_expires_in_does_not_panic() {
    let world = world_with(FakeCloudmore::new(1 << 63, Duration::from_secs(3600), None)).await;
    let email = format!("{}@example.com", unique("huge"));
    let account = world
        .store
        .find_or_create_account(&email, None, "cloud66")
        .await
        .unwrap();
    let subject = SyncSubject::Account(account.id.clone());
    assert_eq!(world.sync.settle(&subject).await.unwrap(), Settled::Done);
    let stored = world.store.get_account(&account.id).await.unwrap().unwrap();
    assert!(stored.cloudmore_organization_id.is_some());
    assert!(!stored.sync.is_owed());
}

/// `provider check`'s own test owner and Cloud 66 email are test traffic:
/// settled with no Cloudmore organisation, so a check leaves none behind;
/// any other owner of the same run gets one.
#[tokio::test]
async fn the_checks_own_test_identities_get_no_cloudmore_organisation() {
    let world = world().await;
    let checked = world.provision(shared::sync::CHECK_OWNER_ID, true).await;
    assert_eq!(
        world.sync.settle(&subject(&checked)).await.unwrap(),
        Settled::Done
    );
    let account = world
        .store
        .find_or_create_account(shared::sync::CHECK_EMAIL, None, "cloud66")
        .await
        .unwrap();
    let account_subject = SyncSubject::Account(account.id.clone());
    assert_eq!(world.sync.settle(&account_subject).await.unwrap(), Settled::Done);
    assert!(!world
        .store
        .get_account(&account.id)
        .await
        .unwrap()
        .unwrap()
        .sync
        .is_owed());
    assert_eq!(*world.cloudmore.organization_posts.lock().unwrap(), 0);
    assert!(world.cloudmore.organizations.lock().unwrap().is_empty());

    let customer = world.provision(&unique("owner"), true).await;
    assert_eq!(
        world.sync.settle(&subject(&customer)).await.unwrap(),
        Settled::Done
    );
    assert_eq!(
        *world.cloudmore.organization_posts.lock().unwrap(),
        1,
        "a customer's owner gets one"
    );
}

/// The `provider` command line against the isolated table and stand-ins,
/// with the secrets in plain variables (as `make run` has them): its exit
/// status and the JSON it printed on standard output (reports and, with
/// `--json`, errors: the CLI's one convention).
fn provider_with(world: &World, args: &[&str], env: &[(&str, &str)]) -> (i32, serde_json::Value) {
    let mut command = std::process::Command::new(workspace_binary("provider"));
    command
        .args(args)
        .env_remove("SECRETS_NAME")
        .env("TABLE_NAME", world.store.table())
        .env("CLEVERCLOUD_API_URL", &world.vendor_url)
        .env("ADDON_ID", "addon-name")
        .env("ADDON_PASSWORD", VENDOR_PASSWORD)
        .env("ADDON_CONFIG_VARS", "ADDON_NAME_URL,ADDON_NAME_TOKEN")
        .env_remove("CLOUDMORE_API_URL");
    for (name, value) in env {
        match *value {
            "" => command.env_remove(name),
            value => command.env(name, value),
        };
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|_| panic!("stdout {stdout} stderr {stderr}"));
    (output.status.code().unwrap_or(-1), value)
}

fn provider(world: &World, args: &[&str]) -> (i32, serde_json::Value) {
    provider_with(world, args, &[])
}

#[tokio::test]
async fn provider_reconcile_lists_an_unpushed_config_and_provider_sync_heals_it() {
    let world = world().await;
    let resource = world.provision(&unique("owner"), true).await;
    world.sync.settle(&subject(&resource)).await.unwrap();
    let rotated = world.rotate(&resource.id).await;
    world.vendor.fail_next(1, 500, None);
    world.sync.settle(&subject(&rotated)).await.unwrap();

    // Drift is a finding: exit 1, the report on standard output.
    let (status, drift) = provider(&world, &["reconcile"]);
    assert_eq!(status, 1, "{drift}");
    assert_eq!(drift["config_behind"], json!([rotated.addon_id]));

    let (status, report) = provider(&world, &["sync"]);
    assert_eq!(status, 0, "{report}");
    assert_eq!(report["settled"], 1);
    assert_eq!(
        world.puts_for(&rotated.addon_id),
        [json!({ "config": rotated.config })]
    );
    let (_, drift) = provider(&world, &["reconcile"]);
    assert_eq!(drift["config_behind"], json!([]));

    // One item, refused for good: reported, exit status 1.
    world.vendor.fail_next(1, 400, None);
    let again = world.rotate(&resource.id).await;
    let (status, outcome) = provider(&world, &["sync", &again.id]);
    assert_eq!(status, 1, "{outcome}");
    assert_eq!(outcome["outcome"]["state"], "failed", "{outcome}");
    let (status, drift) = provider(&world, &["reconcile"]);
    assert_eq!(status, 1);
    assert!(
        drift["sync_failed"][&again.addon_id]
            .as_str()
            .unwrap()
            .contains("400"),
        "{drift}"
    );
}

/// The CLI's exit codes: 0 ok, 1 findings, 2 usage or configuration, 3
/// unreachable; with `--json` every error is a JSON document on stdout.
#[tokio::test]
async fn provider_exit_codes_follow_one_convention() {
    let world = world().await;
    let resource = world.provision(&unique("owner"), true).await;

    let (status, shown) = provider(&world, &["show", &resource.id, "--json"]);
    assert_eq!(status, 0, "{shown}");
    assert_eq!(shown["resource"]["id"], json!(resource.id));
    assert_eq!(
        shown["resource"]["config"],
        json!(["ADDON_NAME_TOKEN", "ADDON_NAME_URL"]),
        "names, never values"
    );
    assert_eq!(shown["events"][0]["action"], "provisioned", "{shown}");

    let (status, plan) = provider(&world, &["rotate", &resource.id, "--dry-run"]);
    assert_eq!(status, 0, "{plan}");
    assert_eq!(
        plan["would_write_config_version"],
        json!(resource.config_version + 1)
    );
    let (_, after) = provider(&world, &["show", &resource.id]);
    assert_eq!(
        after["resource"]["config_version"],
        json!(resource.config_version),
        "a dry run writes nothing"
    );

    let (status, missing) = provider(&world, &["show", "res_missing", "--json"]);
    assert_eq!((status, missing["exit"].clone()), (1, json!(1)), "{missing}");

    let (status, usage) = provider_with(&world, &["--json", "reconcile"], &[("ADDON_ID", "")]);
    assert_eq!(status, 2, "{usage}");
    assert!(usage["error"].as_str().unwrap().contains("ADDON_ID"), "{usage}");

    let (status, unreachable) = provider_with(
        &world,
        &["show", &resource.id, "--json"],
        &[("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9")],
    );
    assert_eq!(status, 3, "{unreachable}");

    let (status, unreachable) = provider_with(
        &world,
        &["reconcile", "--json"],
        &[("CLEVERCLOUD_API_URL", "http://127.0.0.1:9")],
    );
    assert_eq!(status, 3, "{unreachable}");

    let clap = std::process::Command::new(workspace_binary("provider"))
        .args(["show"])
        .output()
        .unwrap();
    assert_eq!(clap.status.code(), Some(2), "a missing argument is a usage error");
}

/// The INSERT stream record of each resource, in order.
async fn inserts(world: &World, resources: &[&Resource]) -> Vec<serde_json::Value> {
    let mut batch = Vec::new();
    for resource in resources {
        batch.extend(
            records_in(world.store.table(), &format!("RESOURCE#{}", resource.id))
                .await
                .into_iter()
                .filter(|record| {
                    record["eventName"] == "INSERT" && record["dynamodb"]["Keys"]["sk"]["S"] == "RESOURCE"
                }),
        );
    }
    batch
}

#[tokio::test]
async fn a_hanging_clever_cloud_stops_a_batch_before_the_deadline_with_every_unfinished_record_reported() {
    let world = world().await;
    let owner = unique("owner");
    let (first, second) = (
        world.provision(&owner, true).await,
        world.provision(&owner, true).await,
    );
    let batch = inserts(&world, &[&first, &second]).await;
    assert_eq!(batch.len(), 2);
    world.vendor.hang_next(10);
    let started = std::time::Instant::now();
    let deadline = started + Duration::from_secs(2);
    let response = world.sync.handle(event(&batch), Some(deadline)).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "answered {took:?} after a 2 s deadline"
    );
    let reported: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    let sequences: Vec<_> = batch
        .iter()
        .map(|record| record["dynamodb"]["SequenceNumber"].as_str().map(str::to_string))
        .collect();
    assert_eq!(reported, sequences, "both records, to be retried");
}

#[tokio::test]
async fn a_hanging_clever_cloud_stops_the_sweep_before_the_deadline_and_it_says_what_is_left() {
    let world = world().await;
    let owner = unique("owner");
    world.provision(&owner, true).await;
    world.provision(&owner, true).await;
    world.vendor.hang_next(10);
    let started = std::time::Instant::now();
    let report = world
        .sync
        .sweep(false, Some(started + Duration::from_secs(2)))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((report.settled, report.left), (0, 2), "{report:?}");
    // An invocation past its deadline settles nothing and leaves everything.
    let late = world
        .sync
        .sweep(false, Some(std::time::Instant::now()))
        .await
        .unwrap();
    assert_eq!(late.left, 2, "{late:?}");
}

#[tokio::test]
async fn two_settles_of_one_account_at_once_create_one_organization() {
    let world = world().await;
    let email = format!("{}@example.com", unique("race"));
    let account = world
        .store
        .find_or_create_account(&email, None, "cloud66")
        .await
        .unwrap();
    // Slow enough that both settles are in flight together.
    *world.cloudmore.list_delay.lock().unwrap() = Duration::from_millis(300);
    let subject = SyncSubject::Account(account.id.clone());
    let (a, b) = tokio::join!(world.sync.settle(&subject), world.sync.settle(&subject));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a == Settled::Done || b == Settled::Done, "{a:?} {b:?}");
    // The loser, which met the claim, is settled by the next sweep.
    world.sync.sweep(false, None).await.unwrap();
    let stored = world.store.get_account(&account.id).await.unwrap().unwrap();
    assert!(stored.cloudmore_organization_id.is_some());
    assert!(!stored.sync.is_owed(), "{:?}", stored.sync);
    assert_eq!(world.cloudmore.organizations_named(&email).len(), 1);
    assert_eq!(*world.cloudmore.organization_posts.lock().unwrap(), 1);
}

/// What Lambda sends the dead-letter queue for a stream batch that failed.
const DEAD_LETTER: &str = r#"{"requestContext":{"requestId":"0f2c","functionArn":"arn:aws:lambda:us-east-1:123456789012:function:sync","condition":"RetryAttemptsExhausted","approximateInvokeCount":6},"responseContext":{"statusCode":200,"executedVersion":"$LATEST","functionError":"Unhandled"},"version":"1.0","timestamp":"2026-12-03T10:00:00.000Z","DDBStreamBatchInfo":{"shardId":"shardId-000001","startSequenceNumber":"1000","endSequenceNumber":"1002","approximateArrivalOfFirstRecord":"2026-12-03T09:58:00Z","approximateArrivalOfLastRecord":"2026-12-03T09:58:01Z","batchSize":3,"streamArn":"arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026"}}"#;

#[tokio::test]
async fn provider_dlq_lists_the_batches_and_redrives_them_once_nothing_is_owed() {
    let moto = std::env::var("MOTO_URL").expect("the test stack's local AWS (scripts/stack.sh)");
    let world = world().await;
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&shared::config::aws_sdk_config("tests").await)
            .endpoint_url(&moto)
            .build(),
    );
    let queue = sqs
        .create_queue()
        .queue_name(unique("dead-letters"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    sqs.send_message()
        .queue_url(&queue)
        .message_body(DEAD_LETTER)
        .send()
        .await
        .unwrap();
    let env = [
        ("SYNC_DEAD_LETTER_QUEUE_URL", queue.as_str()),
        ("AWS_ENDPOINT_URL_SQS", moto.as_str()),
    ];

    let (status, listed) = provider_with(&world, &["dlq", "list"], &env);
    assert_eq!(status, 1, "a dead letter is a finding: {listed}");
    assert_eq!(listed["messages"], 1);
    assert_eq!(listed["batches"][0]["batch_size"], 3);
    assert_eq!(listed["batches"][0]["shard_id"], "shardId-000001");

    // Clever Cloud refuses the owed fetch for good: the redrive keeps the letter.
    world.provision(&unique("owner"), true).await;
    world.vendor.fail_next(1, 400, None);
    let (status, kept) = provider_with(&world, &["dlq", "redrive"], &env);
    assert_eq!(status, 1, "{kept}");
    assert_eq!(kept["deleted"], 0);
    assert_eq!(kept["sweep"]["failed"], 1, "{kept}");
    let (_, listed) = provider_with(&world, &["dlq", "list"], &env);
    assert_eq!(listed["messages"], 1, "kept, and visible again");

    // Clever Cloud answers now: everything settles, and the letter goes.
    let (status, done) = provider_with(&world, &["dlq", "redrive"], &env);
    assert_eq!(status, 0, "{done}");
    assert_eq!(done["deleted"], 1);
    let (status, listed) = provider_with(&world, &["dlq", "list"], &env);
    assert_eq!((status, listed["messages"].clone()), (0, json!(0)), "{listed}");

    let (status, usage) = provider_with(
        &world,
        &["dlq", "list", "--json"],
        &[("SYNC_DEAD_LETTER_QUEUE_URL", "")],
    );
    assert_eq!(status, 2, "{usage}");
}

/// `--stack NAME` reads the table, the queue and the add-on's settings from
/// a stack's outputs and parameters (moto's CloudFormation here), with none
/// of them in the environment.
#[tokio::test]
async fn provider_aims_at_a_stack_by_its_name() {
    let moto = std::env::var("MOTO_URL").expect("the test stack's local AWS (scripts/stack.sh)");
    let world = world().await;
    let resource = world.provision(&unique("owner"), true).await;
    // CreateStack is not idempotent, and moto can take longer than the
    // functions' 2 s attempt limit on a loaded machine: a retried attempt
    // would find its own stack "already exists". One attempt, time to answer.
    let cloudformation = aws_sdk_cloudformation::Client::from_conf(
        aws_sdk_cloudformation::config::Builder::from(&shared::config::aws_sdk_config("tests").await)
            .endpoint_url(&moto)
            .retry_config(aws_sdk_cloudformation::config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_sdk_cloudformation::config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(60))
                    .operation_timeout(Duration::from_secs(60))
                    .build(),
            )
            .build(),
    );
    let name = unique("stack").replace('_', "-");
    let template = json!({
        "Parameters": {
            "AddonId": {"Type": "String"},
            "AddonConfigVars": {"Type": "String"},
            "ProvisionerUrl": {"Type": "String", "Default": ""},
        },
        "Resources": {
            "DeadLetters": {"Type": "AWS::SQS::Queue"},
            // Stands for the function: `provider logs` asks the stack for
            // ProvisionFunction's physical name, as on AWS.
            "ProvisionFunction": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": format!("{name}-provision")}},
        },
        "Outputs": {
            "TableName": {"Value": world.store.table()},
            "SyncDeadLetterQueueUrl": {"Value": {"Ref": "DeadLetters"}},
        },
    });
    let parameter = |key: &str, value: &str| {
        aws_sdk_cloudformation::types::Parameter::builder()
            .parameter_key(key)
            .parameter_value(value)
            .build()
    };
    cloudformation
        .create_stack()
        .stack_name(&name)
        .template_body(template.to_string())
        .parameters(parameter("AddonId", "addon-name"))
        .parameters(parameter("AddonConfigVars", "ADDON_NAME_URL,ADDON_NAME_TOKEN"))
        .send()
        .await
        .unwrap();
    let nothing_set = [
        ("TABLE_NAME", ""),
        ("ADDON_ID", ""),
        ("ADDON_CONFIG_VARS", ""),
        ("PROVISIONER_URL", ""),
        ("AWS_ENDPOINT_URL_CLOUDFORMATION", moto.as_str()),
        ("AWS_ENDPOINT_URL_SQS", moto.as_str()),
    ];
    let (status, shown) = provider_with(&world, &["--stack", &name, "show", &resource.id], &nothing_set);
    assert_eq!(status, 0, "{shown}");
    assert_eq!(shown["resource"]["id"], json!(resource.id));
    let (status, plan) = provider_with(
        &world,
        &["rotate", &resource.id, "--dry-run", "--stack", &name],
        &nothing_set,
    );
    assert_eq!(
        status, 0,
        "the add-on's settings come from the parameters: {plan}"
    );
    let (status, letters) = provider_with(&world, &["dlq", "list", "--stack", &name], &nothing_set);
    assert_eq!((status, letters["messages"].clone()), (0, json!(0)), "{letters}");

    // `provider logs FUNCTION`: the function's log group, found through the stack.
    let logs = aws_sdk_cloudwatchlogs::Client::new(&shared::config::aws_sdk_config("tests").await);
    let group = format!("/aws/lambda/{name}-provision");
    logs.create_log_group()
        .log_group_name(&group)
        .send()
        .await
        .unwrap();
    logs.create_log_stream()
        .log_group_name(&group)
        .log_stream_name("instance")
        .send()
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let line = |at: i64, message: &str| {
        aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
            .timestamp(at)
            .message(message)
            .build()
            .unwrap()
    };
    logs.put_log_events()
        .log_group_name(&group)
        .log_stream_name("instance")
        .log_events(line(
            now - 1,
            r#"{"level":"WARN","message":"configuration error: environment variable X is missing"}"#,
        ))
        .log_events(line(now, r#"{"level":"INFO","message":"hello from provision"}"#))
        .send()
        .await
        .unwrap();
    let (status, filtered) = provider_with(
        &world,
        &["--stack", &name, "logs", "provision", "--filter", "configuration"],
        &nothing_set,
    );
    assert_eq!(status, 0, "{filtered}");
    assert_eq!(filtered["lines"].as_array().map(Vec::len), Some(1), "{filtered}");
    assert_eq!(filtered["lines"][0]["level"], "WARN", "{filtered}");
    let (status, read) = provider_with(&world, &["--stack", &name, "logs", "provision"], &nothing_set);
    assert_eq!(status, 0, "{read}");
    assert_eq!(read["log_group"], json!(group));
    assert_eq!(read["lines"][0]["message"], "hello from provision", "{read}");
    let (status, refused) = provider_with(&world, &["logs", "provision", "--json"], &nothing_set);
    assert_eq!(status, 2, "no stack, no log group: {refused}");

    let (status, missing) = provider_with(
        &world,
        &["--stack", "no-such-stack", "show", &resource.id, "--json"],
        &nothing_set,
    );
    assert_eq!(status, 2, "{missing}");
    assert!(
        missing["error"].as_str().unwrap().contains("no-such-stack"),
        "{missing}"
    );
}
