//! The single-table DynamoDB layout and the store implementation.
//!
//! | item                 | pk                          | sk                       |
//! |----------------------|-----------------------------|--------------------------|
//! | resource             | `RESOURCE#<id>`             | `RESOURCE`               |
//! | audit event          | `RESOURCE#<id>`             | `AUDIT#<time>#<random>`  |
//! | add-on id claim      | `CLEVERCLOUD_ADDON#<addon>` | `CLEVERCLOUD_ADDON`      |
//! | Heroku add-on claim  | `HEROKU_ADDON#<uuid>`       | `HEROKU_ADDON`           |
//! | Scalingo add-on claim | `SCALINGO_ADDON#<uuid or id>` | `SCALINGO_ADDON`       |
//! | AWS license claim    | `AWS_LICENSE#<l-…>`         | `AWS_LICENSE`            |
//! | AWS license state    | `AWS_SUBSCRIPTION#<l-…>`    | `AWS_SUBSCRIPTION`       |
//! | AWS agreement state  | `AWS_AGREEMENT#<agmt-…>`    | `AWS_AGREEMENT`          |
//! | AWS registration token | `AWS_TOKEN#<sha256>`      | `AWS_TOKEN`              |
//! | AWS event handled    | `AWS_EVENT#<event id>`      | `AWS_EVENT`              |
//! | account              | `ACCOUNT#<id>`              | `ACCOUNT`                |
//! | account audit event  | `ACCOUNT#<id>`              | `AUDIT#<time>#<random>`  |
//! | email claim          | `EMAIL#<normalised email>`  | `EMAIL`                  |
//! | account's resource claim | `CLOUD66_ACCOUNT#<account>` | `CLOUD66_ACCOUNT`    |
//! | Cloud 66 link        | `CLOUD66_LINK#<uid>`        | `CLOUD66_LINK`           |
//! | Clever Cloud owner   | `CLEVERCLOUD_OWNER#<owner>` | `CLEVERCLOUD_OWNER`      |
//! | spent sign-in token  | `SSO_TOKEN#<sha256>`        | `SSO_TOKEN`              |
//! | session              | `SESSION#<sha256 of id>`    | `SESSION`                |
//! | Cloud 66 sign-in state | `SIGNIN_STATE#<sha256>`   | `SIGNIN_STATE`           |
//! | pending Cloud 66 link | `PENDING_LINK#<sha256>`    | `PENDING_LINK`           |
//! | OIDC authorization code | `OIDC_CODE#<sha256>`     | `OIDC_CODE`              |
//! | OIDC access token    | `OIDC_TOKEN#<sha256>`       | `OIDC_TOKEN`             |
//! | usage counter, report key | see [`usage`]          |                          |
//!
//! The sparse index `PendingSync` (`sync_queue`, `sync_since`) lists the
//! resources and accounts the platform sync still owes a push.
//!
//! A subject and its history share a partition, so one query returns both.
//! Claim items make marketplace ids and emails unique: each is created with
//! `attribute_not_exists` in the same transaction as what it points to.
//! Tokens and sessions are stored under hashes, so a reader of the table
//! cannot replay or hijack them; both expire through the TTL attribute.

mod usage;

use super::{
    AccountStore, AlsoWrite, AuditKey, AuditReader, AwsEventState, AwsMarketplaceStore, CreateOutcome,
    LinkStore, OidcStore, OpenOutcome, Owed, OwnerClaim, ProvisionStore, ResourceReader, ResourceScan,
    ResourceWriter, SessionStore, SpentCode, StoreError, SyncStore, SyncSubject, UpdateOutcome,
    OWNER_CLAIM_SECONDS,
};
use crate::model::{
    Account, AuditAction, AuditEvent, AwsCustomer, AwsLicense, Cloud66Link, CodeBinding, OidcGrant,
    PendingLink, Platform, Resource, Session, SubjectKind, SyncMark, SyncQueue, Timestamp,
};
use crate::secret::random_hex;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::Duration;

type Item = HashMap<String, AttributeValue>;

/// Attribute names of the table's key, as declared in infra/template.yaml.
pub struct TableKeys;

impl TableKeys {
    pub const PARTITION: &'static str = "pk";
    pub const SORT: &'static str = "sk";
    /// Epoch seconds after which DynamoDB's TTL deletes the item.
    pub const TTL: &'static str = "expires_at";
    /// The sparse index of what the platform sync owes (`sync_queue`, `sync_since`).
    pub const SYNC_INDEX: &'static str = "PendingSync";
}

/// The attributes of a [`SyncMark`], as stored.
const SYNC_ATTRIBUTES: &[&str] = &["sync_queue", "sync_since", "sync_retry_at", "sync_error"];

/// How many times a transaction that collided with a concurrent one is tried.
const TRANSACTION_ATTEMPTS: u32 = 8;

#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The store a function uses, ready before its first request: the
    /// client is built from the environment and one read of an item that
    /// cannot exist resolves the credentials and opens the connection
    /// (on AWS, the TLS handshake) during the Lambda init phase, which is
    /// observed to run unthrottled even at small memory sizes, so the first
    /// invocation costs what a warm one does. The read itself is one more
    /// round trip in a cold start (`make perf`'s `floor+warm-up` row shows
    /// what it costs against DynamoDB Local). A failure here only loses
    /// that head start.
    pub async fn ready(aws: &aws_config::SdkConfig, table: String) -> Self {
        // Resource ids are `res_` + hex: this key is never an item.
        Self::warmed_up(aws, table, Self::resource_key("warm-up")).await
    }

    /// [`Self::ready`] for a function that may read sessions but no
    /// resource (the `oidc` function): the warm-up reads a session key,
    /// which its IAM policy allows.
    pub async fn ready_for_sessions(aws: &aws_config::SdkConfig, table: String) -> Self {
        // Session ids are 64 hex characters: this key is never an item.
        Self::warmed_up(aws, table, Self::session_key("warm-up")).await
    }

    async fn warmed_up(aws: &aws_config::SdkConfig, table: String, never_an_item: Item) -> Self {
        let store = Self::new(Client::new(aws), table);
        if let Err(err) = store.get_item(never_an_item).await {
            tracing::warn!(error = %err, "DynamoDB could not be reached during init");
        }
        store
    }

    /// The SDK client, for callers outside the store (`make perf`'s floor).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// A client on a configuration of its own ([`crate::config::aws_sdk_config`]).
    pub async fn client_from_env(caller: &str) -> Client {
        Client::new(&crate::config::aws_sdk_config(caller).await)
    }

    fn key(pk: String, sk: &str) -> Item {
        HashMap::from([
            (TableKeys::PARTITION.to_string(), AttributeValue::S(pk)),
            (TableKeys::SORT.to_string(), AttributeValue::S(sk.to_string())),
        ])
    }

    fn resource_key(id: &str) -> Item {
        Self::key(format!("RESOURCE#{id}"), "RESOURCE")
    }

    /// Each marketplace's ids are claimed under its own prefix: two
    /// marketplaces may use the same id for different add-ons.
    fn addon_claim_key(platform: Platform, addon_id: &str) -> Item {
        match platform {
            Platform::Heroku => Self::key(format!("HEROKU_ADDON#{addon_id}"), "HEROKU_ADDON"),
            Platform::Scalingo => Self::key(format!("SCALINGO_ADDON#{addon_id}"), "SCALINGO_ADDON"),
            // One resource per purchase: the license (`l-…`), whatever the
            // ARN's spelling (docs/aws-marketplace.md).
            Platform::Aws => Self::key(
                format!("AWS_LICENSE#{}", crate::model::aws_license_id(addon_id)),
                "AWS_LICENSE",
            ),
            Platform::CleverCloud | Platform::Cloud66 => {
                Self::key(format!("CLEVERCLOUD_ADDON#{addon_id}"), "CLEVERCLOUD_ADDON")
            }
        }
    }

    fn entity_item<T: serde::Serialize>(value: &T, key: Item, entity: &str) -> Result<Item, StoreError> {
        let mut item: Item = serde_dynamo::to_item(value)
            .map_err(|err| StoreError::Internal(format!("encoding {entity}: {err}")))?;
        item.extend(key);
        item.insert("entity".to_string(), AttributeValue::S(entity.to_string()));
        Ok(item)
    }

    fn resource_item(resource: &Resource) -> Result<Item, StoreError> {
        Self::entity_item(resource, Self::resource_key(&resource.id), "resource")
    }

    fn audit_item(event: &AuditEvent) -> Result<Item, StoreError> {
        let partition = match event.subject_kind {
            SubjectKind::Resource => format!("RESOURCE#{}", event.subject_id),
            SubjectKind::Account => format!("ACCOUNT#{}", event.subject_id),
        };
        // The random suffix keeps two events of the same millisecond apart.
        let sort = format!("AUDIT#{}#{}", event.at, random_hex(4));
        let mut item = Self::entity_item(event, Self::key(partition, &sort), "audit")?;
        // An event to publish waits in the sparse index until it is: the
        // sweep publishes what the stream did not (a dead-lettered record).
        if event.action.detail_type().is_some() {
            item.insert("sync_queue".into(), AttributeValue::S(UNPUBLISHED_QUEUE.into()));
            item.insert("sync_since".into(), AttributeValue::S(event.at.clone()));
        }
        Ok(item)
    }

    fn account_key(id: &str) -> Item {
        Self::key(format!("ACCOUNT#{id}"), "ACCOUNT")
    }

    fn email_claim_key(email: &str) -> Item {
        Self::key(format!("EMAIL#{email}"), "EMAIL")
    }

    /// Creates an item whose key is fresh (a new token's fingerprint, a new
    /// id); a collision is an error, never an overwrite.
    async fn put_fresh(&self, item: Item) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|err| classify("PutItem", err))?;
        Ok(())
    }

    /// Deletes a single-use item and returns it, if it exists and has not
    /// expired by `now`. One conditional delete: two requests racing with the
    /// same token cannot both use it, and TTL deletion is not waited for.
    async fn take_single_use(&self, key: Item, now: i64) -> Result<Option<Item>, StoreError> {
        let taken = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .condition_expression("attribute_exists(pk) AND expires_at > :now")
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await;
        match taken {
            Ok(output) => Ok(Some(output.attributes.unwrap_or_default())),
            Err(SdkError::ServiceError(err)) if err.err().is_conditional_check_failed_exception() => Ok(None),
            Err(err) => Err(classify("DeleteItem", err)),
        }
    }

    fn signin_state_key(state_fingerprint: &str) -> Item {
        Self::key(format!("SIGNIN_STATE#{state_fingerprint}"), "SIGNIN_STATE")
    }

    fn session_key(session_id: &str) -> Item {
        Self::key(
            format!("SESSION#{}", hex::encode(Sha256::digest(session_id))),
            "SESSION",
        )
    }

    /// Follows a claim item to the id it names, if the claim exists.
    async fn claim_owner(&self, claim: Item) -> Result<Option<String>, StoreError> {
        let Some(item) = self.get_item(claim).await? else {
            return Ok(None);
        };
        match item.get("owner_id") {
            Some(AttributeValue::S(owner)) => Ok(Some(owner.clone())),
            _ => Err(StoreError::Internal("claim item without owner_id".into())),
        }
    }

    /// Runs `actions` together with a claim on `claim` naming `owner`, all or
    /// nothing. If someone else holds the claim, writes nothing and returns
    /// the owner their claim names: the loser of a race learns the winner.
    /// If another action's condition failed (a version read earlier has
    /// moved on), writes nothing and says so: the caller reads again.
    async fn create_claimed(
        &self,
        claim: Item,
        owner: &str,
        actions: Vec<TransactWriteItem>,
    ) -> Result<Claimed, StoreError> {
        // A taken claim comes back with the cancellation, so the loser learns
        // the winner without reading it (one round trip fewer).
        let put_claim = Put::builder()
            .table_name(&self.table)
            .set_item(Some(Self::claim_item(claim.clone(), owner)))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|err| StoreError::Internal(err.to_string()))?;
        for attempt in 0..TRANSACTION_ATTEMPTS {
            let mut all = vec![TransactWriteItem::builder().put(put_claim.clone()).build()];
            all.extend(actions.iter().cloned());
            let Some(cancelled) = self.transact_returning(all).await? else {
                return Ok(Claimed::Created);
            };
            let winner = cancelled
                .first()
                .and_then(|(_, item)| item.as_ref())
                .and_then(|item| match item.get("owner_id") {
                    Some(AttributeValue::S(owner)) => Some(owner.clone()),
                    _ => None,
                });
            if let Some(winner) = winner {
                return Ok(Claimed::Taken(winner));
            }
            let reasons: Vec<String> = cancelled.into_iter().map(|(code, _)| code).collect();
            let claim_taken = reasons
                .first()
                .is_some_and(|code| code == "ConditionalCheckFailed");
            let other_condition_failed = reasons
                .iter()
                .skip(1)
                .any(|code| code == "ConditionalCheckFailed");
            if !claim_taken && other_condition_failed {
                return Ok(Claimed::Stale);
            }
            if !claim_taken && !is_conflict(&reasons) {
                return Err(StoreError::Internal(format!(
                    "claimed create cancelled: {reasons:?}"
                )));
            }
            if !claim_taken {
                backoff(attempt).await;
            }
            if let Some(winner) = self.claim_owner(claim.clone()).await? {
                return Ok(Claimed::Taken(winner));
            }
        }
        Err(StoreError::Unavailable(
            "claimed create kept colliding with concurrent writes".into(),
        ))
    }

    /// A claim item: `claim`'s key naming `owner`.
    fn claim_item(mut claim: Item, owner: &str) -> Item {
        claim.insert("owner_id".into(), AttributeValue::S(owner.to_string()));
        claim.insert("entity".into(), AttributeValue::S("claim".into()));
        claim
    }

    /// A transaction action that replaces `item`, failing unless the stored
    /// version is `expected_version` (0: unless there is no stored item).
    fn put_versioned(&self, item: Item, expected_version: u64) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder().table_name(&self.table).set_item(Some(item));
        let put = if expected_version == 0 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("attribute_exists(pk) AND #version = :expected")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":expected", AttributeValue::N(expected_version.to_string()))
        };
        let put = put.build().map_err(|err| StoreError::Internal(err.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A transaction action that creates `item` and fails if it exists.
    fn put_new(&self, item: Item) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|err| StoreError::Internal(err.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    async fn get_item(&self, key: Item) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|err| classify("GetItem", err))?;
        Ok(output.item)
    }

    /// Runs a transaction; `Ok(None)` on success, `Ok(Some(reasons))` with
    /// one cancellation code per action when DynamoDB cancelled it.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<Option<Vec<String>>, StoreError> {
        Ok(self
            .transact_returning(items)
            .await?
            .map(|cancelled| cancelled.into_iter().map(|(code, _)| code).collect()))
    }

    /// [`Self::transact`], with each cancelled action's stored item when the
    /// action asked for it (`ReturnValuesOnConditionCheckFailure`).
    async fn transact_returning(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<Option<Vec<(String, Option<Item>)>>, StoreError> {
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(None),
            Err(err) => match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => Ok(Some(
                    cancelled
                        .cancellation_reasons()
                        .iter()
                        .map(|reason| {
                            (
                                reason.code().unwrap_or("None").to_string(),
                                reason.item().cloned(),
                            )
                        })
                        .collect(),
                )),
                _ => Err(classify("TransactWriteItems", err)),
            },
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(item: Item, entity: &str) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|err| StoreError::Internal(format!("decoding {entity}: {err}")))
}

/// Sorts SDK failures into "try again later" and "broken". Throttling, time-outs,
/// connection failures and DynamoDB's own 5xx are transient.
fn classify<E>(operation: &str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let transient = match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(service) => {
            service.raw().status().is_server_error()
                || matches!(
                    service.err().code(),
                    Some(
                        "ThrottlingException"
                            | "ProvisionedThroughputExceededException"
                            | "RequestLimitExceeded"
                            | "TransactionInProgressException"
                            | "InternalServerError"
                            | "ServiceUnavailable"
                    )
                )
        }
        _ => false,
    };
    let message = format!("{operation}: {}", DisplayErrorContext(&err));
    if transient {
        StoreError::Unavailable(message)
    } else {
        StoreError::Internal(message)
    }
}

/// How a claimed create ended.
enum Claimed {
    Created,
    /// Someone else holds the claim; it names this owner.
    Taken(String),
    /// Another action's condition failed: what it was based on changed.
    Stale,
}

/// A short random pause before retrying a transaction that collided, so
/// racing writers spread out instead of colliding again in lock step.
async fn backoff(attempt: u32) {
    let jitter = u64::from_str_radix(&random_hex(1), 16).unwrap_or(0) % 20;
    tokio::time::sleep(Duration::from_millis(5 + jitter + 10 * u64::from(attempt))).await;
}

fn is_conflict(reasons: &[String]) -> bool {
    reasons.iter().any(|code| code == "TransactionConflict")
}

impl ResourceReader for DynamoStore {
    async fn get_resource(&self, id: &str) -> Result<Option<Resource>, StoreError> {
        self.get_item(Self::resource_key(id))
            .await?
            .map(|item| decode(item, "resource"))
            .transpose()
    }
}

impl AuditReader for DynamoStore {
    async fn recent_events(&self, resource_id: &str, limit: i32) -> Result<Vec<AuditEvent>, StoreError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :audit)")
            .expression_attribute_values(":pk", AttributeValue::S(format!("RESOURCE#{resource_id}")))
            .expression_attribute_values(":audit", AttributeValue::S("AUDIT#".into()))
            .scan_index_forward(false)
            .limit(limit)
            .send()
            .await
            .map_err(|err| classify("Query", err))?;
        page.items
            .unwrap_or_default()
            .into_iter()
            .map(|item| decode(item, "audit event"))
            .collect()
    }
}

impl ProvisionStore for DynamoStore {
    async fn create_resource(
        &self,
        resource: &Resource,
        event: &AuditEvent,
        also: &[AlsoWrite<'_>],
    ) -> Result<CreateOutcome, StoreError> {
        let mut actions = vec![
            self.put_new(Self::resource_item(resource)?)?,
            self.put_new(Self::audit_item(event)?)?,
        ];
        for write in also {
            actions.extend(self.also_actions(write)?);
        }
        match self
            .create_claimed(
                Self::addon_claim_key(resource.platform, &resource.addon_id),
                &resource.id,
                actions,
            )
            .await?
        {
            Claimed::Created => Ok(CreateOutcome::Created),
            Claimed::Taken(winner) => match self.get_resource(&winner).await? {
                Some(existing) => Ok(CreateOutcome::Existing(Box::new(existing))),
                None => Err(StoreError::Internal(format!(
                    "add-on claim points at missing resource {winner}"
                ))),
            },
            // What it also wrote was conditional: one of those conditions.
            Claimed::Stale if !also.is_empty() => Ok(CreateOutcome::Stale),
            Claimed::Stale => Err(StoreError::Internal(format!(
                "resource {} or its audit event already existed",
                resource.id
            ))),
        }
    }
}

impl DynamoStore {
    /// The transaction actions of one [`AlsoWrite`].
    fn also_actions(&self, write: &AlsoWrite<'_>) -> Result<Vec<TransactWriteItem>, StoreError> {
        Ok(match write {
            AlsoWrite::Session {
                token_fingerprint,
                token_expires_at,
                session_id,
                session,
            } => self.session_actions(token_fingerprint, *token_expires_at, session_id, session)?,
            AlsoWrite::AwsToken {
                token_fingerprint,
                customer,
                expires_at,
            } => {
                let mut item =
                    Self::entity_item(*customer, Self::aws_token_key(token_fingerprint), "aws_token")?;
                item.insert(TableKeys::TTL.into(), AttributeValue::N(expires_at.to_string()));
                // The same token resolves to the same buyer: a concurrent
                // post's record is this one.
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .build()
                    .map_err(|err| StoreError::Internal(err.to_string()))?;
                vec![TransactWriteItem::builder().put(put).build()]
            }
            AlsoWrite::AwsLicenseAt { license_id, version } => {
                let check = ConditionCheck::builder()
                    .table_name(&self.table)
                    .set_key(Some(Self::aws_license_key(license_id)));
                let check = if *version == 0 {
                    check.condition_expression("attribute_not_exists(pk)")
                } else {
                    check
                        .condition_expression("#version = :expected")
                        .expression_attribute_names("#version", "version")
                        .expression_attribute_values(":expected", AttributeValue::N(version.to_string()))
                };
                let check = check
                    .build()
                    .map_err(|err| StoreError::Internal(err.to_string()))?;
                vec![TransactWriteItem::builder().condition_check(check).build()]
            }
            AlsoWrite::AwsLicense(license) => {
                let item = Self::entity_item(
                    *license,
                    Self::aws_license_key(&license.license_id),
                    "aws_license",
                )?;
                vec![self.put_versioned(item, license.version.saturating_sub(1))?]
            }
            AlsoWrite::AwsAgreement(agreement) => {
                let item = Self::entity_item(
                    *agreement,
                    Self::aws_agreement_key(&agreement.agreement_id),
                    "aws_agreement",
                )?;
                vec![self.put_versioned(item, agreement.version.saturating_sub(1))?]
            }
            AlsoWrite::AwsEventHandled { event_id, expires_at } => {
                let mut item = Self::aws_event_key(event_id);
                item.insert(TableKeys::TTL.into(), AttributeValue::N(expires_at.to_string()));
                item.insert("entity".into(), AttributeValue::S("aws_event".into()));
                vec![self.put_new(item)?]
            }
            AlsoWrite::UsageFinal { resource_id, at } => vec![self.usage_final_action(resource_id, at)?],
        })
    }

    /// One consistent `BatchGetItem` of `keys` (asked again for what the
    /// batch leaves unprocessed): the items found.
    async fn batch_get(&self, keys: KeysAndAttributes) -> Result<Vec<Item>, StoreError> {
        let mut wanted = HashMap::from([(self.table.clone(), keys)]);
        let mut found = Vec::new();
        for attempt in 0..TRANSACTION_ATTEMPTS {
            let output = self
                .client
                .batch_get_item()
                .set_request_items(Some(wanted))
                .send()
                .await
                .map_err(|err| classify("BatchGetItem", err))?;
            found.extend(
                output
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default(),
            );
            match output.unprocessed_keys.filter(|keys| !keys.is_empty()) {
                Some(left) => {
                    wanted = left;
                    backoff(attempt).await;
                }
                None => return Ok(found),
            }
        }
        Err(StoreError::Unavailable(
            "BatchGetItem kept leaving keys unprocessed".into(),
        ))
    }

    /// A session's actions: its spent sign-in token and the session.
    fn session_actions(
        &self,
        token_fingerprint: &str,
        token_expires_at: i64,
        session_id: &str,
        session: &Session,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let mut token = Self::key(format!("SSO_TOKEN#{token_fingerprint}"), "SSO_TOKEN");
        token.insert("entity".into(), AttributeValue::S("spent_sso_token".into()));
        token.insert(
            TableKeys::TTL.into(),
            AttributeValue::N(token_expires_at.to_string()),
        );
        Ok(vec![
            self.put_new(token)?,
            self.put_new(Self::entity_item(
                session,
                Self::session_key(session_id),
                "session",
            )?)?,
        ])
    }
}

impl ResourceWriter for DynamoStore {
    async fn deprovision_unread(
        &self,
        id: &str,
        platform: Platform,
        at: &Timestamp,
        event: &AuditEvent,
    ) -> Result<UpdateOutcome, StoreError> {
        let value = |text: &str| AttributeValue::S(text.to_string());
        // Resources written before they carried a platform are Clever Cloud's.
        let owned = if platform == Platform::CleverCloud {
            "(platform = :platform OR attribute_not_exists(platform))"
        } else {
            "platform = :platform"
        };
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::resource_key(id)))
            .update_expression(
                "SET #status = :deprovisioned, deprovisioned_at = :at, updated_at = :at, #version = #version + :one",
            )
            .condition_expression(format!("#status = :active AND {owned}"))
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":deprovisioned", value("deprovisioned"))
            .expression_attribute_values(":active", value("active"))
            .expression_attribute_values(":platform", value(platform.as_str()))
            .expression_attribute_values(":at", value(&at.to_string()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .build()
            .map_err(|err| StoreError::Internal(err.to_string()))?;
        let items = vec![
            TransactWriteItem::builder().update(update).build(),
            self.put_new(Self::audit_item(event)?)?,
        ];
        self.transact_versioned(items).await
    }

    async fn update_resource(
        &self,
        resource: &Resource,
        expected_version: u64,
        event: &AuditEvent,
        also: &[AlsoWrite<'_>],
    ) -> Result<UpdateOutcome, StoreError> {
        let mut items = vec![
            self.put_versioned(Self::resource_item(resource)?, expected_version)?,
            self.put_new(Self::audit_item(event)?)?,
        ];
        for write in also {
            items.extend(self.also_actions(write)?);
        }
        self.transact_versioned(items).await
    }
}

impl DynamoStore {
    /// Runs a transaction of version-conditional actions: a lost race on any
    /// of their conditions is `Stale`, not an error; the caller reads again.
    async fn transact_versioned(&self, items: Vec<TransactWriteItem>) -> Result<UpdateOutcome, StoreError> {
        match self.transact(items).await? {
            None => Ok(UpdateOutcome::Updated),
            Some(reasons)
                if is_conflict(&reasons) || reasons.iter().any(|code| code == "ConditionalCheckFailed") =>
            {
                Ok(UpdateOutcome::Stale)
            }
            Some(reasons) => Err(StoreError::Internal(format!(
                "update transaction cancelled: {reasons:?}"
            ))),
        }
    }
}

impl AccountStore for DynamoStore {
    async fn find_or_create_account(
        &self,
        email: &str,
        name: Option<&str>,
        actor: &str,
    ) -> Result<Account, StoreError> {
        if let Some(id) = self.claim_owner(Self::email_claim_key(email)).await? {
            return self.account_named_by_claim(&id).await;
        }
        let now = Timestamp::now();
        let account = Account::new(format!("acc_{}", random_hex(16)), email, name, &now);
        let event = AuditEvent::new(
            SubjectKind::Account,
            &account.id,
            AuditAction::AccountCreated,
            actor,
            &now,
        );
        let actions = vec![
            self.put_new(Self::entity_item(
                &account,
                Self::account_key(&account.id),
                "account",
            )?)?,
            self.put_new(Self::audit_item(&event)?)?,
        ];
        match self
            .create_claimed(Self::email_claim_key(email), &account.id, actions)
            .await?
        {
            Claimed::Created => {
                tracing::info!(account_id = %account.id, "account created");
                Ok(account)
            }
            Claimed::Taken(winner) => self.account_named_by_claim(&winner).await,
            Claimed::Stale => Err(StoreError::Internal(format!(
                "account {} or its audit event already existed",
                account.id
            ))),
        }
    }

    async fn get_account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        self.get_item(Self::account_key(id))
            .await?
            .map(|item| decode(item, "account"))
            .transpose()
    }
}

impl DynamoStore {
    async fn account_named_by_claim(&self, id: &str) -> Result<Account, StoreError> {
        self.get_account(id)
            .await?
            .ok_or_else(|| StoreError::Internal(format!("email claim points at missing account {id}")))
    }
}

impl SessionStore for DynamoStore {
    async fn open_session(
        &self,
        token_fingerprint: &str,
        token_expires_at: i64,
        session_id: &str,
        session: &Session,
    ) -> Result<OpenOutcome, StoreError> {
        let actions = self.session_actions(token_fingerprint, token_expires_at, session_id, session)?;
        match self.transact(actions).await? {
            None => Ok(OpenOutcome::Opened),
            // Spent already, or being spent by a concurrent request right now:
            // either way this presentation of the token is a replay.
            Some(reasons)
                if is_conflict(&reasons)
                    || reasons
                        .first()
                        .is_some_and(|code| code == "ConditionalCheckFailed") =>
            {
                Ok(OpenOutcome::Replayed)
            }
            Some(reasons) => Err(StoreError::Internal(format!(
                "session transaction cancelled: {reasons:?}"
            ))),
        }
    }

    async fn get_session(&self, session_id: &str) -> Result<Option<Session>, StoreError> {
        let Some(item) = self.get_item(Self::session_key(session_id)).await? else {
            return Ok(None);
        };
        let session: Session = decode(item, "session")?;
        // DynamoDB deletes expired items lazily (within days): check here too.
        Ok(Some(session).filter(|session| session.expires_at > chrono::Utc::now().timestamp()))
    }

    async fn end_session(&self, session_id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::session_key(session_id)))
            .send()
            .await
            .map_err(|err| classify("DeleteItem", err))?;
        Ok(())
    }

    async fn begin_signin(&self, state_fingerprint: &str, expires_at: i64) -> Result<(), StoreError> {
        let mut item = Self::signin_state_key(state_fingerprint);
        item.insert("entity".into(), AttributeValue::S("signin_state".into()));
        item.insert("expires_at".into(), AttributeValue::N(expires_at.to_string()));
        self.put_fresh(item).await
    }

    async fn finish_signin(&self, state_fingerprint: &str, now: i64) -> Result<bool, StoreError> {
        Ok(self
            .take_single_use(Self::signin_state_key(state_fingerprint), now)
            .await?
            .is_some())
    }
}

impl DynamoStore {
    fn oidc_code_key(code_fingerprint: &str) -> Item {
        Self::key(format!("OIDC_CODE#{code_fingerprint}"), "OIDC_CODE")
    }

    fn oidc_token_key(token_fingerprint: &str) -> Item {
        Self::key(format!("OIDC_TOKEN#{token_fingerprint}"), "OIDC_TOKEN")
    }
}

impl OidcStore for DynamoStore {
    async fn save_code(
        &self,
        code_fingerprint: &str,
        binding: &CodeBinding,
        grant: &OidcGrant,
    ) -> Result<(), StoreError> {
        let mut item = Self::entity_item(grant, Self::oidc_code_key(code_fingerprint), "oidc_code")?;
        item.insert(
            "redirect_uri".into(),
            AttributeValue::S(binding.redirect_uri.clone()),
        );
        item.insert(
            "code_challenge".into(),
            AttributeValue::S(binding.code_challenge.clone()),
        );
        self.put_fresh(item).await
    }

    async fn redeem_code(
        &self,
        code_fingerprint: &str,
        binding: &CodeBinding,
        now: i64,
        spent_for: &SpentCode,
    ) -> Result<Option<OidcGrant>, StoreError> {
        // Every check is in the condition, so redemption is one round trip
        // and a wrong client, redirect URI or verifier leaves the code
        // unspent. The spent code stays as long as the token it bought,
        // naming it, so that a second redemption can revoke it.
        let taken = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::oidc_code_key(code_fingerprint)))
            .condition_expression(
                "attribute_exists(pk) AND attribute_not_exists(spent_for) AND expires_at > :now \
                 AND client_id = :client AND redirect_uri = :redirect AND code_challenge = :challenge",
            )
            .update_expression("SET spent_for = :token, expires_at = :until")
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .expression_attribute_values(":client", AttributeValue::S(binding.client_id.clone()))
            .expression_attribute_values(":redirect", AttributeValue::S(binding.redirect_uri.clone()))
            .expression_attribute_values(":challenge", AttributeValue::S(binding.code_challenge.clone()))
            .expression_attribute_values(
                ":token",
                AttributeValue::S(spent_for.access_token_fingerprint.clone()),
            )
            .expression_attribute_values(":until", AttributeValue::N(spent_for.expires_at.to_string()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await;
        match taken {
            Ok(output) => Ok(Some(decode(output.attributes.unwrap_or_default(), "oidc code")?)),
            Err(SdkError::ServiceError(err)) if err.err().is_conditional_check_failed_exception() => Ok(None),
            Err(err) => Err(classify("UpdateItem", err)),
        }
    }

    async fn revoke_reused_code(&self, code_fingerprint: &str, client_id: &str) -> Result<bool, StoreError> {
        let Some(code) = self.get_item(Self::oidc_code_key(code_fingerprint)).await? else {
            return Ok(false);
        };
        let text = |name: &str| match code.get(name) {
            Some(AttributeValue::S(value)) => Some(value.clone()),
            _ => None,
        };
        let (Some(token), Some(client)) = (text("spent_for"), text("client_id")) else {
            return Ok(false);
        };
        if client != client_id {
            return Ok(false);
        }
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::oidc_token_key(&token)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|err| classify("DeleteItem", err))?;
        Ok(deleted.attributes.is_some_and(|item| !item.is_empty()))
    }

    async fn save_access_token(&self, token_fingerprint: &str, grant: &OidcGrant) -> Result<(), StoreError> {
        let item = Self::entity_item(grant, Self::oidc_token_key(token_fingerprint), "oidc_token")?;
        self.put_fresh(item).await
    }

    async fn get_access_token(
        &self,
        token_fingerprint: &str,
        now: i64,
    ) -> Result<Option<OidcGrant>, StoreError> {
        let Some(item) = self.get_item(Self::oidc_token_key(token_fingerprint)).await? else {
            return Ok(None);
        };
        let grant: OidcGrant = decode(item, "oidc token")?;
        // DynamoDB deletes expired items lazily (within days): check here too.
        Ok(Some(grant).filter(|grant| grant.expires_at > now))
    }
}

impl LinkStore for DynamoStore {
    async fn get_link(&self, uid: &str) -> Result<Option<Cloud66Link>, StoreError> {
        self.get_item(Self::link_key(uid))
            .await?
            .map(|item| decode(item, "cloud66 link"))
            .transpose()
    }

    async fn save_link(
        &self,
        link: &Cloud66Link,
        events: &[AuditEvent],
    ) -> Result<UpdateOutcome, StoreError> {
        let mut items = vec![self.link_action(link)?];
        items.extend(self.audit_actions(events)?);
        self.transact_versioned(items).await
    }

    async fn start_unconfirmed_link(
        &self,
        link: &Cloud66Link,
        resource: &Resource,
    ) -> Result<UpdateOutcome, StoreError> {
        let items = vec![
            self.link_action(link)?,
            self.put_new(Self::resource_item(resource)?)?,
        ];
        self.transact_versioned(items).await
    }

    async fn confirm_link(
        &self,
        link: &Cloud66Link,
        resource: &Resource,
        account: &Account,
        events: &[AuditEvent],
    ) -> Result<UpdateOutcome, StoreError> {
        let mut items = vec![
            self.link_action(link)?,
            self.put_versioned(Self::resource_item(resource)?, resource.version.saturating_sub(1))?,
            self.put_versioned(
                Self::entity_item(account, Self::account_key(&account.id), "account")?,
                account.version.saturating_sub(1),
            )?,
        ];
        if account.resource_ids.len() == 1 {
            // The account's first resource is its partner-side one, as
            // `ensure_account_resource` would have claimed it.
            items.push(self.put_new(Self::claim_item(
                Self::cloud66_account_claim_key(&account.id),
                &resource.id,
            ))?);
        }
        items.extend(self.audit_actions(events)?);
        self.transact_versioned(items).await
    }

    async fn save_pending_link(&self, token_fingerprint: &str, link: &PendingLink) -> Result<(), StoreError> {
        let item = Self::entity_item(link, Self::pending_link_key(token_fingerprint), "pending_link")?;
        self.put_fresh(item).await
    }

    async fn get_pending_link(
        &self,
        token_fingerprint: &str,
        now: i64,
    ) -> Result<Option<PendingLink>, StoreError> {
        let Some(item) = self.get_item(Self::pending_link_key(token_fingerprint)).await? else {
            return Ok(None);
        };
        let link: PendingLink = decode(item, "pending link")?;
        // DynamoDB's TTL deletes expired items only eventually.
        Ok((link.expires_at > now).then_some(link))
    }

    async fn ensure_account_resource(
        &self,
        account: &Account,
        resource: &Resource,
        event: &AuditEvent,
    ) -> Result<Resource, StoreError> {
        let claim = Self::cloud66_account_claim_key(&account.id);
        let mut account = account.clone();
        for _ in 0..TRANSACTION_ATTEMPTS {
            if let Some(existing) = self.claim_owner(claim.clone()).await? {
                return self.resource_named_by_claim(&existing).await;
            }
            let mut updated = account.clone();
            updated.resource_ids.push(resource.id.clone());
            updated.version += 1;
            let actions = vec![
                self.put_new(Self::resource_item(resource)?)?,
                self.put_new(Self::audit_item(event)?)?,
                self.put_versioned(
                    Self::entity_item(&updated, Self::account_key(&account.id), "account")?,
                    account.version,
                )?,
            ];
            match self.create_claimed(claim.clone(), &resource.id, actions).await? {
                Claimed::Created => return Ok(resource.clone()),
                Claimed::Taken(winner) => return self.resource_named_by_claim(&winner).await,
                // The account changed since it was read (the platform sync
                // recorded its Cloudmore organisation, say): read it again.
                Claimed::Stale => {
                    account = self
                        .get_account(&account.id)
                        .await?
                        .ok_or_else(|| StoreError::Internal(format!("account {} vanished", account.id)))?;
                }
            }
        }
        Err(StoreError::Unavailable(
            "the account kept changing under concurrent writes".into(),
        ))
    }
}

impl DynamoStore {
    fn pending_link_key(token_fingerprint: &str) -> Item {
        Self::key(format!("PENDING_LINK#{token_fingerprint}"), "PENDING_LINK")
    }

    fn link_key(uid: &str) -> Item {
        Self::key(format!("CLOUD66_LINK#{uid}"), "CLOUD66_LINK")
    }

    /// Names the account's partner-side resource: one per account.
    fn cloud66_account_claim_key(account_id: &str) -> Item {
        Self::key(format!("CLOUD66_ACCOUNT#{account_id}"), "CLOUD66_ACCOUNT")
    }

    /// Writes `link`, conditional on the version before it.
    fn link_action(&self, link: &Cloud66Link) -> Result<TransactWriteItem, StoreError> {
        let item = Self::entity_item(link, Self::link_key(&link.uid), "cloud66_link")?;
        self.put_versioned(item, link.version.saturating_sub(1))
    }

    fn audit_actions(&self, events: &[AuditEvent]) -> Result<Vec<TransactWriteItem>, StoreError> {
        events
            .iter()
            .map(|event| self.put_new(Self::audit_item(event)?))
            .collect()
    }

    async fn resource_named_by_claim(&self, id: &str) -> Result<Resource, StoreError> {
        self.get_resource(id)
            .await?
            .ok_or_else(|| StoreError::Internal(format!("claim points at missing resource {id}")))
    }
}

impl SyncStore for DynamoStore {
    async fn update_account(
        &self,
        account: &Account,
        event: &AuditEvent,
    ) -> Result<UpdateOutcome, StoreError> {
        let item = Self::entity_item(account, Self::account_key(&account.id), "account")?;
        let items = vec![
            self.put_versioned(item, account.version.saturating_sub(1))?,
            self.put_new(Self::audit_item(event)?)?,
        ];
        self.transact_versioned(items).await
    }

    async fn owner_organization(&self, owner_id: &str) -> Result<Option<String>, StoreError> {
        let item = self.get_item(Self::owner_key(owner_id)).await?;
        Ok(item.and_then(|item| match item.get("cloudmore_organization_id") {
            Some(AttributeValue::S(id)) => Some(id.clone()),
            _ => None,
        }))
    }

    async fn record_owner_organization(
        &self,
        owner_id: &str,
        organization_id: &str,
        event: &AuditEvent,
    ) -> Result<String, StoreError> {
        let mut owner = Self::owner_key(owner_id);
        owner.insert("entity".into(), AttributeValue::S("clevercloud_owner".into()));
        owner.insert("owner_id".into(), AttributeValue::S(owner_id.into()));
        owner.insert(
            "cloudmore_organization_id".into(),
            AttributeValue::S(organization_id.into()),
        );
        // Replaces a claim (crate::store::OwnerClaim), never a recorded organisation.
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(owner))
            .condition_expression("attribute_not_exists(cloudmore_organization_id)")
            .build()
            .map_err(|err| StoreError::Internal(err.to_string()))?;
        let actions = vec![
            TransactWriteItem::builder().put(put).build(),
            self.put_new(Self::audit_item(event)?)?,
        ];
        match self.transact(actions).await? {
            None => Ok(organization_id.to_string()),
            Some(_) => self
                .owner_organization(owner_id)
                .await?
                .ok_or_else(|| StoreError::Unavailable("owner record is being written concurrently".into())),
        }
    }

    async fn claim_owner_organization(&self, owner_id: &str, now: i64) -> Result<OwnerClaim, StoreError> {
        let mut claim = Self::owner_key(owner_id);
        claim.insert("entity".into(), AttributeValue::S("clevercloud_owner".into()));
        claim.insert("owner_id".into(), AttributeValue::S(owner_id.into()));
        claim.insert("claimed_at".into(), AttributeValue::N(now.to_string()));
        let claimed = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(claim))
            .condition_expression(
                "attribute_not_exists(pk) OR (attribute_not_exists(cloudmore_organization_id) AND claimed_at < :abandoned)",
            )
            .expression_attribute_values(
                ":abandoned",
                AttributeValue::N((now - OWNER_CLAIM_SECONDS).to_string()),
            )
            .send()
            .await;
        match claimed {
            Ok(_) => Ok(OwnerClaim::Claimed),
            Err(SdkError::ServiceError(err)) if err.err().is_conditional_check_failed_exception() => {
                Ok(match self.owner_organization(owner_id).await? {
                    Some(organization) => OwnerClaim::Recorded(organization),
                    None => OwnerClaim::Busy,
                })
            }
            Err(err) => Err(classify("PutItem", err)),
        }
    }

    async fn claim_account_organization(&self, account_id: &str, now: i64) -> Result<OwnerClaim, StoreError> {
        let claimed = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::account_key(account_id)))
            .update_expression("SET cloudmore_claimed_at = :now")
            .condition_expression(
                "attribute_exists(pk) AND attribute_not_exists(cloudmore_organization_id) \
                 AND (attribute_not_exists(cloudmore_claimed_at) OR cloudmore_claimed_at < :abandoned)",
            )
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .expression_attribute_values(
                ":abandoned",
                AttributeValue::N((now - OWNER_CLAIM_SECONDS).to_string()),
            )
            .send()
            .await;
        match claimed {
            Ok(_) => Ok(OwnerClaim::Claimed),
            Err(SdkError::ServiceError(err)) if err.err().is_conditional_check_failed_exception() => {
                Ok(match self.get_account(account_id).await? {
                    Some(Account {
                        cloudmore_organization_id: Some(organization),
                        ..
                    }) => OwnerClaim::Recorded(organization),
                    _ => OwnerClaim::Busy,
                })
            }
            Err(err) => Err(classify("UpdateItem", err)),
        }
    }

    async fn mark_sync(
        &self,
        subject: &SyncSubject,
        expected_version: u64,
        mark: &SyncMark,
    ) -> Result<UpdateOutcome, StoreError> {
        let key = match subject {
            SyncSubject::Resource(id) => Self::resource_key(id),
            SyncSubject::Account(id) => Self::account_key(id),
        };
        let values: Item = serde_dynamo::to_item(mark)
            .map_err(|err| StoreError::Internal(format!("encoding a sync mark: {err}")))?;
        let mut set = Vec::new();
        let mut remove = Vec::new();
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .condition_expression("attribute_exists(pk) AND #version = :expected")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":expected", AttributeValue::N(expected_version.to_string()));
        for name in SYNC_ATTRIBUTES {
            match values.get(*name) {
                Some(value) => {
                    set.push(format!("{name} = :{name}"));
                    request = request.expression_attribute_values(format!(":{name}"), value.clone());
                }
                None => remove.push(name.to_string()),
            }
        }
        let mut expression = String::new();
        if !set.is_empty() {
            expression.push_str(&format!("SET {}", set.join(", ")));
        }
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        match request.update_expression(expression.trim()).send().await {
            Ok(_) => Ok(UpdateOutcome::Updated),
            // Changed or gone since it was read: the caller reads again.
            Err(SdkError::ServiceError(err)) if err.err().is_conditional_check_failed_exception() => {
                Ok(UpdateOutcome::Stale)
            }
            Err(err) => Err(classify("UpdateItem", err)),
        }
    }

    async fn owed(&self, queue: SyncQueue) -> Result<Vec<Owed>, StoreError> {
        let queue = match queue {
            SyncQueue::Pending => "pending",
            SyncQueue::Failed => "failed",
        };
        let mut subjects = Vec::new();
        for item in self.queued(queue, None).await? {
            let (Some(AttributeValue::S(pk)), Some(AttributeValue::S(since))) =
                (item.get(TableKeys::PARTITION), item.get("sync_since"))
            else {
                continue;
            };
            let subject = if let Some(id) = pk.strip_prefix("RESOURCE#") {
                SyncSubject::Resource(id.to_string())
            } else if let Some(id) = pk.strip_prefix("ACCOUNT#") {
                SyncSubject::Account(id.to_string())
            } else {
                continue;
            };
            subjects.push(Owed {
                subject,
                since: since.clone(),
            });
        }
        Ok(subjects)
    }

    async fn all_resources(&self) -> Result<ResourceScan, StoreError> {
        let mut scan = ResourceScan::default();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("entity = :resource")
                .expression_attribute_values(":resource", AttributeValue::S("resource".into()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|err| classify("Scan", err))?;
            for item in page.items.unwrap_or_default() {
                let key = match item.get(TableKeys::PARTITION) {
                    Some(AttributeValue::S(pk)) => pk.clone(),
                    _ => String::new(),
                };
                match decode(item, "resource") {
                    Ok(resource) => scan.resources.push(resource),
                    Err(_) => scan.unreadable.push(key),
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(scan);
            }
        }
    }

    async fn audit_published(&self, key: &AuditKey) -> Result<bool, StoreError> {
        let item = self.get_item(Self::key(key.pk.clone(), &key.sk)).await?;
        Ok(item.is_some_and(|item| item.contains_key(PUBLISHED_AT)))
    }

    async fn unpublished_audits(&self, before: &str) -> Result<Vec<(AuditKey, AuditEvent)>, StoreError> {
        let mut found = Vec::new();
        for keys in self.queued(UNPUBLISHED_QUEUE, Some(before)).await? {
            let (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) =
                (keys.get(TableKeys::PARTITION), keys.get(TableKeys::SORT))
            else {
                continue;
            };
            // The index is eventually consistent: read the item itself.
            let Some(item) = self.get_item(Self::key(pk.clone(), sk)).await? else {
                continue;
            };
            if item.contains_key(PUBLISHED_AT) {
                continue;
            }
            let audit: AuditEvent = decode(item, "audit")?;
            found.push((
                AuditKey {
                    pk: pk.clone(),
                    sk: sk.clone(),
                },
                audit,
            ));
        }
        Ok(found)
    }

    async fn mark_audit_published(&self, key: &AuditKey) -> Result<(), StoreError> {
        let marked = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(key.pk.clone(), &key.sk)))
            .update_expression("SET #published = :at REMOVE sync_queue, sync_since")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#published", PUBLISHED_AT)
            .expression_attribute_values(":at", AttributeValue::S(Timestamp::now().to_string()))
            .send()
            .await;
        match marked {
            Ok(_) => Ok(()),
            // An audit item is never deleted, so a missing one was never
            // ours to mark: nothing to remember.
            Err(SdkError::ServiceError(err)) if err.err().is_conditional_check_failed_exception() => Ok(()),
            Err(err) => Err(classify("UpdateItem", err)),
        }
    }
}

/// The attribute that marks an audit item's lifecycle event as published.
const PUBLISHED_AT: &str = "published_at";
/// The `PendingSync` queue of audit items whose event is not yet published.
const UNPUBLISHED_QUEUE: &str = "unpublished";

impl DynamoStore {
    /// Every key in one queue of the sparse `PendingSync` index, oldest
    /// first, owed since before `before` (RFC 3339) if given.
    async fn queued(&self, queue: &str, before: Option<&str>) -> Result<Vec<Item>, StoreError> {
        let mut keys = Vec::new();
        let mut start = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(TableKeys::SYNC_INDEX)
                .key_condition_expression(match before {
                    Some(_) => "sync_queue = :queue AND sync_since < :before",
                    None => "sync_queue = :queue",
                })
                .expression_attribute_values(":queue", AttributeValue::S(queue.into()));
            if let Some(before) = before {
                query = query.expression_attribute_values(":before", AttributeValue::S(before.into()));
            }
            let page = query
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|err| classify("Query", err))?;
            keys.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(keys);
            }
        }
    }
}

impl DynamoStore {
    fn owner_key(owner_id: &str) -> Item {
        Self::key(format!("CLEVERCLOUD_OWNER#{owner_id}"), "CLEVERCLOUD_OWNER")
    }
}

impl DynamoStore {
    fn aws_token_key(token_fingerprint: &str) -> Item {
        Self::key(format!("AWS_TOKEN#{token_fingerprint}"), "AWS_TOKEN")
    }

    fn aws_license_key(license_id: &str) -> Item {
        Self::key(format!("AWS_SUBSCRIPTION#{license_id}"), "AWS_SUBSCRIPTION")
    }

    fn aws_agreement_key(agreement_id: &str) -> Item {
        Self::key(format!("AWS_AGREEMENT#{agreement_id}"), "AWS_AGREEMENT")
    }

    fn aws_event_key(event_id: &str) -> Item {
        Self::key(format!("AWS_EVENT#{event_id}"), "AWS_EVENT")
    }

    async fn get_entity<T: serde::de::DeserializeOwned>(
        &self,
        key: Item,
        entity: &str,
    ) -> Result<Option<T>, StoreError> {
        self.get_item(key)
            .await?
            .map(|item| decode(item, entity))
            .transpose()
    }
}

impl AwsMarketplaceStore for DynamoStore {
    async fn get_aws_token(&self, token_fingerprint: &str) -> Result<Option<AwsCustomer>, StoreError> {
        self.get_entity(Self::aws_token_key(token_fingerprint), "aws_token")
            .await
    }

    async fn save_aws_token(
        &self,
        token_fingerprint: &str,
        customer: &AwsCustomer,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let mut item = Self::entity_item(customer, Self::aws_token_key(token_fingerprint), "aws_token")?;
        item.insert(TableKeys::TTL.into(), AttributeValue::N(expires_at.to_string()));
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // A concurrent post of the same token resolved it first: the
            // same buyer, kept once.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|service| service.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(err) => Err(classify("PutItem", err)),
        }
    }

    async fn get_aws_license(&self, license_id: &str) -> Result<Option<AwsLicense>, StoreError> {
        self.get_entity(Self::aws_license_key(license_id), "aws_license")
            .await
    }

    async fn get_aws_purchase(
        &self,
        license_id: &str,
        resource_id: &str,
    ) -> Result<(Option<AwsLicense>, Option<Resource>), StoreError> {
        let keys = KeysAndAttributes::builder()
            .keys(Self::aws_license_key(license_id))
            .keys(Self::resource_key(resource_id))
            .consistent_read(true)
            .build()
            .map_err(|err| StoreError::Internal(err.to_string()))?;
        let (mut license, mut resource) = (None, None);
        for item in self.batch_get(keys).await? {
            match item.get("entity") {
                Some(AttributeValue::S(entity)) if entity == "resource" => {
                    resource = Some(decode(item, "resource")?);
                }
                _ => license = Some(decode(item, "aws_license")?),
            }
        }
        Ok((license, resource))
    }

    async fn get_aws_event_state(
        &self,
        event_id: &str,
        agreement_id: Option<&str>,
        license_id: Option<&str>,
        resource_id: Option<&str>,
    ) -> Result<AwsEventState, StoreError> {
        let mut keys = KeysAndAttributes::builder()
            .keys(Self::aws_event_key(event_id))
            .consistent_read(true);
        if let Some(agreement) = agreement_id {
            keys = keys.keys(Self::aws_agreement_key(agreement));
        }
        if let Some(license) = license_id {
            keys = keys.keys(Self::aws_license_key(license));
        }
        if let Some(resource) = resource_id {
            keys = keys.keys(Self::resource_key(resource));
        }
        let keys = keys
            .build()
            .map_err(|err| StoreError::Internal(err.to_string()))?;
        let mut state = AwsEventState::default();
        for item in self.batch_get(keys).await? {
            match item.get("entity") {
                Some(AttributeValue::S(entity)) if entity == "resource" => {
                    state.resource = Some(decode(item, "resource")?);
                }
                Some(AttributeValue::S(entity)) if entity == "aws_license" => {
                    state.license = Some(decode(item, "aws_license")?);
                }
                Some(AttributeValue::S(entity)) if entity == "aws_agreement" => {
                    state.agreement = Some(decode(item, "aws_agreement")?);
                }
                _ => state.handled = true,
            }
        }
        Ok(state)
    }

    async fn save_aws_states(&self, writes: &[AlsoWrite<'_>]) -> Result<UpdateOutcome, StoreError> {
        let mut items = Vec::new();
        for write in writes {
            items.extend(self.also_actions(write)?);
        }
        self.transact_versioned(items).await
    }
}
