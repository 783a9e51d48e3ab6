//! An in-memory [`MeteringStore`] for the metering module's unit tests,
//! with the conditions the DynamoDB store's writes carry
//! (shared/src/store/dynamo/usage.rs).

use crate::model::{AuditEvent, MeterState, Resource, UsageCounter};
use crate::store::{DueUsage, MeteringStore, StoreError, UsageAdd, UsageReader, UsageWrite};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A counter as stored, with what the model leaves to the store.
#[derive(Debug, Clone)]
pub struct Stored {
    pub counter: UsageCounter,
    pub queued_since: Option<String>,
    pub claimed_by: Option<String>,
    pub claim_until: Option<i64>,
}

/// One `add_usage` call: (resource, records, ending_after, keys_expire_at).
pub type Add = (String, Vec<UsageAdd>, String, i64);

#[derive(Default)]
pub struct FakeStore {
    /// (resource, hour, dimension) → counter.
    pub counters: Mutex<BTreeMap<(String, String, String), Stored>>,
    /// Ended agreements' marks: resource → since.
    pub finals: Mutex<BTreeMap<String, String>>,
    pub resources: Mutex<Vec<Resource>>,
    pub audits: Mutex<Vec<AuditEvent>>,
    /// Every `add_usage` call.
    pub adds: Mutex<Vec<Add>>,
    /// What `add_usage` answers.
    pub add_answer: Mutex<Option<UsageWrite>>,
    /// `add_usage` fails so.
    pub add_fails: Mutex<Option<StoreError>>,
    /// Every claim asked for: (run, now, until).
    pub claims: Mutex<Vec<(String, i64, i64)>>,
    /// `claim_usage` fails so.
    pub claim_fails: Mutex<Option<StoreError>>,
}

impl FakeStore {
    pub fn with_counter(
        self,
        resource_id: &str,
        dimension: &str,
        hour: &str,
        quantity: u64,
        due_since: &str,
    ) -> Self {
        self.counters.lock().unwrap().insert(
            (resource_id.into(), hour.into(), dimension.into()),
            Stored {
                counter: UsageCounter {
                    resource_id: resource_id.into(),
                    dimension: dimension.into(),
                    hour: hour.into(),
                    quantity,
                    state: MeterState::Open,
                    sealed_at: None,
                    attempts: 0,
                    outcome: None,
                    metering_record_id: None,
                    finished_at: None,
                },
                queued_since: Some(due_since.into()),
                claimed_by: None,
                claim_until: None,
            },
        );
        self
    }

    pub fn with_resource(self, resource: Resource) -> Self {
        self.resources.lock().unwrap().push(resource);
        self
    }

    pub fn stored(&self, resource_id: &str, dimension: &str) -> Stored {
        self.counters
            .lock()
            .unwrap()
            .values()
            .find(|stored| stored.counter.resource_id == resource_id && stored.counter.dimension == dimension)
            .cloned()
            .expect("the counter")
    }
}

fn key_of(due: &DueUsage) -> Option<(String, String, String)> {
    match due {
        DueUsage::Counter {
            resource_id,
            dimension,
            hour,
        } => Some((resource_id.clone(), hour.clone(), dimension.clone())),
        DueUsage::Final { .. } => None,
    }
}

fn key(counter: &UsageCounter) -> (String, String, String) {
    (
        counter.resource_id.clone(),
        counter.hour.clone(),
        counter.dimension.clone(),
    )
}

impl UsageReader for FakeStore {
    async fn usage_since(&self, resource_id: &str, from: &str) -> Result<Vec<UsageCounter>, StoreError> {
        Ok(self
            .counters
            .lock()
            .unwrap()
            .values()
            .filter(|stored| {
                stored.counter.resource_id == resource_id && stored.counter.hour.as_str() >= from
            })
            .map(|stored| stored.counter.clone())
            .collect())
    }
}

impl MeteringStore for FakeStore {
    async fn add_usage(
        &self,
        resource_id: &str,
        records: &[UsageAdd],
        ending_after: &str,
        keys_expire_at: i64,
    ) -> Result<UsageWrite, StoreError> {
        self.adds.lock().unwrap().push((
            resource_id.into(),
            records.to_vec(),
            ending_after.into(),
            keys_expire_at,
        ));
        if let Some(err) = self.add_fails.lock().unwrap().take() {
            return Err(err);
        }
        Ok(self
            .add_answer
            .lock()
            .unwrap()
            .take()
            .unwrap_or(UsageWrite::Counted { already: vec![] }))
    }

    async fn due_usage(&self, before: &str) -> Result<Vec<DueUsage>, StoreError> {
        let mut due: Vec<(String, DueUsage)> = self
            .counters
            .lock()
            .unwrap()
            .values()
            .filter_map(|stored| {
                let since = stored.queued_since.clone()?;
                (since.as_str() < before).then(|| {
                    (
                        since,
                        DueUsage::Counter {
                            resource_id: stored.counter.resource_id.clone(),
                            dimension: stored.counter.dimension.clone(),
                            hour: stored.counter.hour.clone(),
                        },
                    )
                })
            })
            .collect();
        due.extend(
            self.finals
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, since)| since.as_str() < before)
                .map(|(resource_id, since)| {
                    (
                        since.clone(),
                        DueUsage::Final {
                            resource_id: resource_id.clone(),
                        },
                    )
                }),
        );
        due.sort();
        Ok(due.into_iter().map(|(_, due)| due).collect())
    }

    async fn claim_usage(
        &self,
        due: &DueUsage,
        run: &str,
        now: &str,
        now_unix: i64,
        claim_until: i64,
    ) -> Result<Option<UsageCounter>, StoreError> {
        self.claims
            .lock()
            .unwrap()
            .push((run.into(), now_unix, claim_until));
        if let Some(err) = self.claim_fails.lock().unwrap().take() {
            return Err(err);
        }
        let Some(key) = key_of(due) else {
            return Ok(None);
        };
        let mut counters = self.counters.lock().unwrap();
        let Some(stored) = counters.get_mut(&key) else {
            return Ok(None);
        };
        let claimable = matches!(stored.counter.state, MeterState::Open | MeterState::Sealed)
            && stored.claim_until.is_none_or(|until| until < now_unix);
        if !claimable {
            return Ok(None);
        }
        stored.counter.state = MeterState::Sealed;
        stored.counter.sealed_at.get_or_insert_with(|| now.to_string());
        stored.claimed_by = Some(run.into());
        stored.claim_until = Some(claim_until);
        Ok(Some(stored.counter.clone()))
    }

    async fn finish_usage(
        &self,
        counter: &UsageCounter,
        run: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut counters = self.counters.lock().unwrap();
        let Some(stored) = counters.get_mut(&key(counter)) else {
            return Ok(false);
        };
        if stored.claimed_by.as_deref() != Some(run) {
            return Ok(false);
        }
        stored.counter.state = counter.state;
        stored.counter.outcome = counter.outcome.clone();
        stored.counter.metering_record_id = counter.metering_record_id.clone();
        stored.counter.finished_at = counter.finished_at.clone();
        stored.claimed_by = None;
        stored.claim_until = None;
        stored.queued_since = None;
        self.audits.lock().unwrap().push(audit.clone());
        Ok(true)
    }

    async fn release_usage(
        &self,
        counter: &UsageCounter,
        run: &str,
        outcome: &str,
    ) -> Result<(), StoreError> {
        let mut counters = self.counters.lock().unwrap();
        if let Some(stored) = counters.get_mut(&key(counter)) {
            if stored.claimed_by.as_deref() == Some(run) {
                stored.counter.outcome = Some(outcome.into());
                stored.counter.attempts += 1;
                stored.claimed_by = None;
                stored.claim_until = None;
            }
        }
        Ok(())
    }

    async fn clear_usage_final(&self, resource_id: &str) -> Result<(), StoreError> {
        self.finals.lock().unwrap().remove(resource_id);
        Ok(())
    }

    async fn get_resources(&self, ids: &[String]) -> Result<Vec<Resource>, StoreError> {
        Ok(self
            .resources
            .lock()
            .unwrap()
            .iter()
            .filter(|resource| ids.contains(&resource.id))
            .cloned()
            .collect())
    }
}
