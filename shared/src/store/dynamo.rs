//! The single-table DynamoDB layout and the store implementation.
//!
//! | item                 | pk                          | sk                       |
//! |----------------------|-----------------------------|--------------------------|
//! | resource             | `RESOURCE#<id>`             | `RESOURCE`               |
//! | audit event          | `RESOURCE#<id>`             | `AUDIT#<time>#<random>`  |
//! | add-on id claim      | `CLEVERCLOUD_ADDON#<addon>` | `CLEVERCLOUD_ADDON`      |
//!
//! A resource and its history share a partition, so one query returns both.
//! The claim item makes the marketplace id unique: it is created with
//! `attribute_not_exists` in the same transaction as the resource.

use super::{CreateOutcome, ProvisionStore, ResourceReader, ResourceWriter, StoreError, UpdateOutcome};
use crate::model::{AuditEvent, Resource};
use crate::secret::random_hex;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
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
}

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

    /// A client from the default AWS configuration chain (on Lambda, the
    /// function's role; locally, `AWS_ENDPOINT_URL_DYNAMODB` points it at
    /// DynamoDB Local), with time limits well inside a function's timeout.
    pub async fn client_from_env() -> Client {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(1))
            .operation_attempt_timeout(Duration::from_secs(2))
            .operation_timeout(Duration::from_secs(5))
            .build();
        let config = aws_config::from_env().timeout_config(timeouts).load().await;
        Client::new(&config)
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

    fn addon_claim_key(addon_id: &str) -> Item {
        Self::key(format!("CLEVERCLOUD_ADDON#{addon_id}"), "CLEVERCLOUD_ADDON")
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
        // The random suffix keeps two events of the same millisecond apart.
        let sort = format!("AUDIT#{}#{}", event.at, random_hex(4));
        Self::entity_item(
            event,
            Self::key(format!("RESOURCE#{}", event.resource_id), &sort),
            "audit",
        )
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
                        .map(|reason| reason.code().unwrap_or("None").to_string())
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

impl ProvisionStore for DynamoStore {
    async fn find_by_addon_id(&self, addon_id: &str) -> Result<Option<Resource>, StoreError> {
        let Some(claim) = self.get_item(Self::addon_claim_key(addon_id)).await? else {
            return Ok(None);
        };
        let Some(AttributeValue::S(resource_id)) = claim.get("resource_id") else {
            return Err(StoreError::Internal(format!(
                "add-on claim {addon_id} has no resource_id"
            )));
        };
        match self.get_resource(resource_id).await? {
            Some(resource) => Ok(Some(resource)),
            None => Err(StoreError::Internal(format!(
                "add-on claim {addon_id} points at missing resource {resource_id}"
            ))),
        }
    }

    async fn create_resource(
        &self,
        resource: &Resource,
        event: &AuditEvent,
    ) -> Result<CreateOutcome, StoreError> {
        let mut claim = Self::addon_claim_key(&resource.addon_id);
        claim.insert("resource_id".into(), AttributeValue::S(resource.id.clone()));
        claim.insert(
            "entity".into(),
            AttributeValue::S("clevercloud_addon_claim".into()),
        );
        for attempt in 0..TRANSACTION_ATTEMPTS {
            let items = vec![
                self.put_new(claim.clone())?,
                self.put_new(Self::resource_item(resource)?)?,
                self.put_new(Self::audit_item(event)?)?,
            ];
            let Some(reasons) = self.transact(items).await? else {
                return Ok(CreateOutcome::Created);
            };
            let claim_taken = reasons
                .first()
                .is_some_and(|code| code == "ConditionalCheckFailed");
            if !claim_taken && !is_conflict(&reasons) {
                return Err(StoreError::Internal(format!(
                    "provision transaction cancelled: {reasons:?}"
                )));
            }
            if !claim_taken {
                backoff(attempt).await;
            }
            // Either the claim is taken or a concurrent claim is in flight:
            // whoever won, their resource is the answer.
            if let Some(existing) = self.find_by_addon_id(&resource.addon_id).await? {
                return Ok(CreateOutcome::Existing(Box::new(existing)));
            }
        }
        Err(StoreError::Unavailable(
            "provision transaction kept colliding with concurrent writes".into(),
        ))
    }
}

impl ResourceWriter for DynamoStore {
    async fn update_resource(
        &self,
        resource: &Resource,
        expected_version: u64,
        event: &AuditEvent,
    ) -> Result<UpdateOutcome, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(Self::resource_item(resource)?))
            .condition_expression("attribute_exists(pk) AND #version = :expected")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":expected", AttributeValue::N(expected_version.to_string()))
            .build()
            .map_err(|err| StoreError::Internal(err.to_string()))?;
        let items = vec![
            TransactWriteItem::builder().put(put).build(),
            self.put_new(Self::audit_item(event)?)?,
        ];
        match self.transact(items).await? {
            None => Ok(UpdateOutcome::Updated),
            Some(reasons)
                if is_conflict(&reasons)
                    || reasons
                        .first()
                        .is_some_and(|code| code == "ConditionalCheckFailed") =>
            {
                Ok(UpdateOutcome::Stale)
            }
            Some(reasons) => Err(StoreError::Internal(format!(
                "update transaction cancelled: {reasons:?}"
            ))),
        }
    }
}
