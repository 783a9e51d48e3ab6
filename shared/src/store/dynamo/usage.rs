//! Usage counters and the meter's queue (shared::metering, docs/metering.md).
//!
//! | item            | pk                              | sk                    |
//! |-----------------|---------------------------------|-----------------------|
//! | usage counter   | `USAGE#<resource id>`           | `<hour>#<dimension>`  |
//! | agreement ended | `USAGE#<resource id>`           | `FINAL`               |
//! | report key      | `USAGE_KEY#<resource id>#<key>` | `USAGE_KEY`           |
//!
//! A counter waits in the `metering` queue of the sparse `PendingSync`
//! index from its hour's end until it is final; an ended agreement waits
//! there from its end.

use super::{backoff, classify, decode, is_conflict, DynamoStore, Item, TableKeys, TRANSACTION_ATTEMPTS};
use crate::model::{AuditEvent, MeterState, Platform, Resource, ResourceStatus, UsageCounter};
use crate::store::{DueUsage, MeteringStore, StoreError, UsageAdd, UsageReader, UsageWrite};
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, KeysAndAttributes, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};

/// The `PendingSync` queue the meter reads.
pub(crate) const METERING_QUEUE: &str = "metering";
/// The sort key of a resource's "agreement ended" mark.
const FINAL: &str = "FINAL";
/// Counters are kept this long after their hour: a year of billing
/// evidence and a month for the last invoice's questions.
const COUNTER_SECONDS: i64 = 400 * 24 * 3600;

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_string())
}

fn n(number: impl ToString) -> AttributeValue {
    AttributeValue::N(number.to_string())
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Some(value),
        _ => None,
    }
}

fn internal(err: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(err.to_string())
}

impl DynamoStore {
    pub(super) fn usage_partition(resource_id: &str) -> String {
        // Spelled out: scripts/check_policies.py reads the store's
        // partition prefixes from its `format!` calls.
        format!("USAGE#{resource_id}")
    }

    fn counter_key(resource_id: &str, hour: &str, dimension: &str) -> Item {
        Self::key(Self::usage_partition(resource_id), &format!("{hour}#{dimension}"))
    }

    fn usage_key_key(resource_id: &str, key: &str) -> Item {
        Self::key(format!("USAGE_KEY#{resource_id}#{key}"), "USAGE_KEY")
    }

    /// The mark an ended agreement leaves for the meter (`AlsoWrite::UsageFinal`).
    pub(super) fn usage_final_action(
        &self,
        resource_id: &str,
        at: &str,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut item = Self::key(Self::usage_partition(resource_id), FINAL);
        item.insert("entity".into(), s("usage_final"));
        item.insert("sync_queue".into(), s(METERING_QUEUE));
        item.insert("sync_since".into(), s(at));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .map_err(internal)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// The check that `resource_id` takes usage: a marketplace that bills
    /// by it, and active, or ending since after `ending_after`.
    fn takes_usage(&self, resource_id: &str, ending_after: &str) -> Result<TransactWriteItem, StoreError> {
        let platforms: Vec<Platform> = Platform::ALL.into_iter().filter(|p| p.bills_by_usage()).collect();
        let names: Vec<String> = (0..platforms.len()).map(|i| format!(":platform{i}")).collect();
        let mut check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(Self::resource_key(resource_id)))
            .condition_expression(format!(
                "attribute_exists(pk) AND #platform IN ({}) AND (#status = :active OR (#status = :ending AND #updated > :ending_after))",
                names.join(", ")
            ))
            .expression_attribute_names("#platform", "platform")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#updated", "updated_at")
            .expression_attribute_values(":active", s(&status_name(ResourceStatus::Active)))
            .expression_attribute_values(":ending", s(&status_name(ResourceStatus::Ending)))
            .expression_attribute_values(":ending_after", s(ending_after))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (name, platform) in names.iter().zip(&platforms) {
            check = check.expression_attribute_values(name, s(platform.as_str()));
        }
        Ok(TransactWriteItem::builder()
            .condition_check(check.build().map_err(internal)?)
            .build())
    }

    fn claim_key_action(
        &self,
        resource_id: &str,
        record: &UsageAdd,
        expires_at: i64,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut item = Self::usage_key_key(resource_id, &record.key);
        item.insert("entity".into(), s("usage_key"));
        item.insert(TableKeys::TTL.into(), n(expires_at));
        self.put_new(item)
    }

    /// Adds `quantity` to a counter that is not sealed, creating it in the
    /// meter's queue from its hour's end. Only what a report changes is
    /// written: the counter's resource, hour and dimension are its key, an
    /// absent state is `open`, and the meter sets its TTL when it seals it.
    fn add_action(&self, resource_id: &str, counter: &UsageAdd) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::counter_key(
                resource_id,
                &counter.hour,
                &counter.dimension,
            )))
            .update_expression("ADD quantity :quantity SET sync_queue = :queue, sync_since = :hour_end")
            .condition_expression("attribute_not_exists(sealed_at)")
            .expression_attribute_values(":quantity", n(counter.quantity))
            .expression_attribute_values(":queue", s(METERING_QUEUE))
            .expression_attribute_values(":hour_end", s(&counter.hour_end))
            .build()
            .map_err(internal)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    async fn query_usage(&self, resource_id: &str, from: &str) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":pk", s(&Self::usage_partition(resource_id)))
                .expression_attribute_values(":from", s(from))
                // Counters' sort keys are hours, which begin with a digit;
                // the end mark's (`FINAL`) sorts after them all.
                .expression_attribute_values(":to", s(":"))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|err| classify("Query", err))?;
            items.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(items);
            }
        }
    }
}

/// What a usage item's key names: the queue's work, read from
/// `USAGE#<resource>` / `<hour>#<dimension>` (a counter) or `FINAL` (an
/// ended agreement's mark); `None` for any other key.
fn due_of(key: &Item) -> Option<DueUsage> {
    let resource_id = text(key, "pk")?
        .strip_prefix(&DynamoStore::usage_partition(""))?
        .to_string();
    let sort = text(key, "sk")?;
    if sort == FINAL {
        return Some(DueUsage::Final { resource_id });
    }
    let (hour, dimension) = sort.split_once('#')?;
    Some(DueUsage::Counter {
        resource_id,
        dimension: dimension.to_string(),
        hour: hour.to_string(),
    })
}

/// A counter as stored: its resource, hour and dimension are read from its
/// key ([`due_of`]).
fn counter_of(mut item: Item) -> Result<UsageCounter, StoreError> {
    let Some(DueUsage::Counter {
        resource_id,
        dimension,
        hour,
    }) = due_of(&item)
    else {
        return Err(StoreError::Internal(
            "a usage counter's key is not USAGE#<resource> / <hour>#<dimension>".into(),
        ));
    };
    item.insert("resource_id".into(), s(&resource_id));
    item.insert("hour".into(), s(&hour));
    item.insert("dimension".into(), s(&dimension));
    decode(item, "usage counter")
}

/// A status as stored.
fn status_name(status: ResourceStatus) -> String {
    match serde_json::to_value(status) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

/// Sums the records per counter (two records of one hour and dimension
/// are one `ADD`: a transaction touches an item once), in first-seen order.
fn per_counter(records: &[UsageAdd]) -> Vec<UsageAdd> {
    let mut counters: Vec<UsageAdd> = Vec::new();
    for record in records {
        match counters
            .iter_mut()
            .find(|counter| counter.hour == record.hour && counter.dimension == record.dimension)
        {
            Some(counter) => counter.quantity += record.quantity,
            None => counters.push(record.clone()),
        }
    }
    counters
}

impl UsageReader for DynamoStore {
    async fn usage_since(&self, resource_id: &str, from: &str) -> Result<Vec<UsageCounter>, StoreError> {
        self.query_usage(resource_id, from)
            .await?
            .into_iter()
            .filter(|item| text(item, "sk").is_some_and(|sk| sk.contains('#')))
            .map(counter_of)
            .collect()
    }
}

impl MeteringStore for DynamoStore {
    async fn add_usage(
        &self,
        resource_id: &str,
        records: &[UsageAdd],
        ending_after: &str,
        keys_expire_at: i64,
    ) -> Result<UsageWrite, StoreError> {
        let mut left: Vec<UsageAdd> = records.to_vec();
        let mut already: Vec<String> = Vec::new();
        for attempt in 0..TRANSACTION_ATTEMPTS {
            if left.is_empty() {
                return Ok(UsageWrite::Counted { already });
            }
            let counters = per_counter(&left);
            let mut actions = vec![self.takes_usage(resource_id, ending_after)?];
            for record in &left {
                actions.push(self.claim_key_action(resource_id, record, keys_expire_at)?);
            }
            for counter in &counters {
                actions.push(self.add_action(resource_id, counter)?);
            }
            let Some(reasons) = self.transact_returning(actions).await? else {
                return Ok(UsageWrite::Counted { already });
            };
            let failed = |index: usize| {
                reasons
                    .get(index)
                    .is_some_and(|(code, _)| code == "ConditionalCheckFailed")
            };
            if failed(0) {
                let resource = match reasons.into_iter().next().and_then(|(_, item)| item) {
                    Some(item) => Some(Box::new(decode::<Resource>(item, "resource")?)),
                    None => None,
                };
                return Ok(UsageWrite::Refused(resource));
            }
            // A retry of a report counted before: those records are done;
            // the others are counted without them.
            let (counted_before, rest): (Vec<_>, Vec<_>) =
                left.iter().enumerate().partition(|(index, _)| failed(1 + index));
            if !counted_before.is_empty() {
                already.extend(counted_before.into_iter().map(|(_, record)| record.key.clone()));
                left = rest.into_iter().map(|(_, record)| record.clone()).collect();
                continue;
            }
            if let Some(sealed) = (0..counters.len()).find(|i| failed(1 + left.len() + i)) {
                return Ok(UsageWrite::Sealed(counters[sealed].hour.clone()));
            }
            let codes: Vec<String> = reasons.into_iter().map(|(code, _)| code).collect();
            if !is_conflict(&codes) {
                return Err(StoreError::Internal(format!(
                    "usage transaction cancelled: {codes:?}"
                )));
            }
            backoff(attempt).await;
        }
        Err(StoreError::Unavailable("usage transaction kept colliding".into()))
    }

    async fn due_usage(&self, before: &str) -> Result<Vec<DueUsage>, StoreError> {
        let keys = self.queued(METERING_QUEUE, Some(before)).await?;
        Ok(keys.iter().filter_map(due_of).collect())
    }

    async fn claim_usage(
        &self,
        due: &DueUsage,
        run: &str,
        now: &str,
        now_unix: i64,
        claim_until: i64,
    ) -> Result<Option<UsageCounter>, StoreError> {
        let DueUsage::Counter {
            resource_id,
            dimension,
            hour,
        } = due
        else {
            return Ok(None);
        };
        let kept_until = chrono::DateTime::parse_from_rfc3339(hour)
            .map(|hour| hour.timestamp() + COUNTER_SECONDS)
            .map_err(internal)?;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::counter_key(resource_id, hour, dimension)))
            .update_expression(
                "SET #state = :sealed, sealed_at = if_not_exists(sealed_at, :now), claimed_by = :run, \
                 claim_until = :until, #ttl = if_not_exists(#ttl, :ttl)",
            )
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(#state) OR #state IN (:open, :sealed)) \
                 AND (attribute_not_exists(claim_until) OR claim_until < :now_unix)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#ttl", TableKeys::TTL)
            .expression_attribute_values(":ttl", n(kept_until))
            .expression_attribute_values(":sealed", s(MeterState::Sealed.as_str()))
            .expression_attribute_values(":open", s(MeterState::Open.as_str()))
            .expression_attribute_values(":now", s(now))
            .expression_attribute_values(":run", s(run))
            .expression_attribute_values(":until", n(claim_until))
            .expression_attribute_values(":now_unix", n(now_unix))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(output) => Ok(Some(counter_of(output.attributes.unwrap_or_default())?)),
            Err(SdkError::ServiceError(err)) if err.err().is_conditional_check_failed_exception() => Ok(None),
            Err(err) => Err(classify("UpdateItem", err)),
        }
    }

    async fn finish_usage(
        &self,
        counter: &UsageCounter,
        run: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::counter_key(
                &counter.resource_id,
                &counter.hour,
                &counter.dimension,
            )))
            .condition_expression("claimed_by = :run")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":run", s(run))
            .expression_attribute_values(":state", s(counter.state.as_str()))
            .expression_attribute_values(":finished", s(counter.finished_at.as_deref().unwrap_or_default()))
            .expression_attribute_values(":outcome", s(counter.outcome.as_deref().unwrap_or_default()));
        let mut set = "SET #state = :state, finished_at = :finished, outcome = :outcome".to_string();
        if let Some(id) = &counter.metering_record_id {
            set.push_str(", metering_record_id = :record");
            update = update.expression_attribute_values(":record", s(id));
        }
        let update = update
            .update_expression(format!(
                "{set} REMOVE claimed_by, claim_until, sync_queue, sync_since"
            ))
            .build()
            .map_err(internal)?;
        let actions = vec![
            TransactWriteItem::builder().update(update).build(),
            self.put_new(Self::audit_item(audit)?)?,
        ];
        for attempt in 0..TRANSACTION_ATTEMPTS {
            match self.transact(actions.clone()).await? {
                None => return Ok(true),
                Some(reasons) if is_conflict(&reasons) => backoff(attempt).await,
                Some(_) => return Ok(false),
            }
        }
        Err(StoreError::Unavailable("usage outcome kept colliding".into()))
    }

    async fn release_usage(
        &self,
        counter: &UsageCounter,
        run: &str,
        outcome: &str,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::counter_key(
                &counter.resource_id,
                &counter.hour,
                &counter.dimension,
            )))
            .update_expression("SET outcome = :outcome ADD attempts :one REMOVE claimed_by, claim_until")
            .condition_expression("claimed_by = :run")
            .expression_attribute_values(":run", s(run))
            .expression_attribute_values(":outcome", s(outcome))
            .expression_attribute_values(":one", n(1))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Another run holds it now: its outcome stands.
            Err(SdkError::ServiceError(err)) if err.err().is_conditional_check_failed_exception() => Ok(()),
            Err(err) => Err(classify("UpdateItem", err)),
        }
    }

    async fn clear_usage_final(&self, resource_id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(Self::usage_partition(resource_id), FINAL)))
            .send()
            .await
            .map_err(|err| classify("DeleteItem", err))?;
        Ok(())
    }

    async fn get_resources(&self, ids: &[String]) -> Result<Vec<Resource>, StoreError> {
        let mut resources = Vec::new();
        let mut unique: Vec<&String> = ids.iter().collect();
        unique.sort();
        unique.dedup();
        for chunk in unique.chunks(100) {
            let keys = KeysAndAttributes::builder()
                .set_keys(Some(chunk.iter().map(|id| Self::resource_key(id)).collect()))
                .consistent_read(true)
                .build()
                .map_err(internal)?;
            for item in self.batch_get(keys).await? {
                resources.push(decode(item, "resource")?);
            }
        }
        Ok(resources)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(hour: &str, dimension: &str, quantity: u64, key: &str) -> UsageAdd {
        UsageAdd {
            dimension: dimension.into(),
            hour: hour.into(),
            hour_end: String::new(),
            quantity,
            key: key.into(),
        }
    }

    #[test]
    fn records_of_one_hour_and_dimension_are_one_addition() {
        let counters = per_counter(&[
            record("h1", "gb", 2, "a"),
            record("h1", "calls", 5, "b"),
            record("h1", "gb", 3, "c"),
            record("h2", "gb", 7, "d"),
        ]);
        let sums: Vec<(&str, &str, u64)> = counters
            .iter()
            .map(|c| (c.hour.as_str(), c.dimension.as_str(), c.quantity))
            .collect();
        assert_eq!(sums, vec![("h1", "gb", 5), ("h1", "calls", 5), ("h2", "gb", 7)]);
    }

    #[test]
    fn statuses_are_named_as_stored() {
        assert_eq!(status_name(ResourceStatus::Active), "active");
        assert_eq!(status_name(ResourceStatus::Ending), "ending");
    }

    #[test]
    fn an_item_kept_for_the_meter_sorts_between_the_hours_and_the_end_mark() {
        assert!("2026-12-07T10:00:00Z#gb" < ":" && ":" < FINAL);
        assert!("0" < "2026");
    }
}
