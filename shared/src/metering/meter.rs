//! The meter (docs/metering.md, "What is sent when"): every few minutes,
//! every counter whose hour and grace have passed, and every counter of a
//! resource whose agreement ended, is sealed, claimed for this run, and
//! sent through the marketplace's adapter; each answer is kept on its
//! counter. A record is exactly once per (resource, dimension, hour):
//!
//! - sealing is a conditional write, so no report changes what is sent;
//! - a run claims a counter until its lease ends, so overlapping runs
//!   share the work instead of repeating it;
//! - what is sent is the sealed counter alone (its quantity and its
//!   hour), so a resend after a run died between the call and the write is
//!   identical, and the marketplace answers it `DuplicateRecord`: done.

use super::hour_text;
use crate::model::{
    AuditAction, AuditEvent, MeterState, Platform, Resource, SubjectKind, Timestamp, UsageCounter,
};
use crate::store::{DueUsage, MeteringStore, StoreError};
use chrono::{DateTime, Duration, Utc};
use futures_util::stream::{self, StreamExt};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::time::Instant;

/// A run holds the counters it claimed this long; past it, another run
/// may take them (the holder died). Longer than the function's timeout.
pub const LEASE: Duration = Duration::minutes(15);
/// A counter not sent this long before the marketplace's window closes
/// is given up as lost rather than failing a whole batch.
pub const WINDOW_MARGIN: Duration = Duration::minutes(10);
/// Claims and writes in flight at once.
const CONCURRENCY: usize = 16;
/// The audit actor of the meter's outcomes.
pub const ACTOR: &str = "metering";
/// The CloudWatch namespace of the meter's metrics (the template's alarms use it).
pub const METRICS_NAMESPACE: &str = "AddonProvider/Metering";

/// How the marketplace answered one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// Billed now, or before (`status` says which: `Success`, `DuplicateRecord`).
    Accepted {
        status: String,
        record_id: Option<String>,
    },
    /// Refused for good (`CustomerNotSubscribed`, an invalid license).
    Refused(String),
    /// Not processed: to be sent again, as it is.
    Again(String),
}

/// Why a whole call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Throttled, the marketplace's own failure, no answer: send again.
    Again(String),
    /// Refused for good.
    Refused(String),
}

/// A marketplace that bills usage: the adapter the meter sends through.
pub trait UsageMarketplace: Send + Sync {
    type Record: Clone + Send + Sync;
    /// The marketplace whose resources it meters.
    fn platform(&self) -> Platform;
    /// At most this many records per call.
    fn batch_size(&self) -> usize;
    /// How long after its hour began a record is still taken.
    fn window(&self) -> Duration;
    /// The record of `counter`, for `resource`'s customer; why not, if it
    /// cannot be made (the resource lacks what the marketplace needs).
    fn record(&self, resource: &Resource, counter: &UsageCounter) -> Result<Self::Record, String>;
    /// Sends `records` (at most [`Self::batch_size`]): one answer each, in order.
    fn send(&self, records: &[Self::Record]) -> impl Future<Output = Result<Vec<Sent>, SendError>> + Send;
}

/// What a run did, as its answer and its metrics say.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MeterReport {
    /// The clock the run went by.
    pub now: String,
    /// Counters due (or of an ended agreement) when it began.
    pub due: usize,
    /// Accepted by the marketplace now (`Success`).
    pub metered: usize,
    /// Accepted before (`DuplicateRecord`): a resend, counted once.
    pub duplicates: usize,
    /// Refused for good.
    pub failed: usize,
    /// Not sent within the marketplace's window.
    pub lost: usize,
    /// To be sent again by the next run.
    pub retried: usize,
    /// Held by another run, or final already.
    pub skipped: usize,
    /// Not reached before the invocation's deadline.
    pub left: usize,
    /// How long ago the oldest hour still unsent began (0: none).
    pub oldest_unmetered_seconds: i64,
}

impl MeterReport {
    /// The CloudWatch metrics (embedded metric format) the alarms watch.
    pub fn metrics_line(&self, timestamp_millis: i64) -> serde_json::Value {
        let names = [
            ("UsageRecordsMetered", "Count", self.metered + self.duplicates),
            ("UsageMeteringFailures", "Count", self.failed),
            ("UsageRecordsLost", "Count", self.lost),
            ("UsageRecordsRetried", "Count", self.retried),
            ("UsageRecordsLeft", "Count", self.left),
        ];
        let mut line = serde_json::json!({
            "OldestUnmeteredUsageSeconds": self.oldest_unmetered_seconds,
        });
        let mut metrics = vec![serde_json::json!({"Name": "OldestUnmeteredUsageSeconds", "Unit": "Seconds"})];
        for (name, unit, value) in names {
            line[name] = value.into();
            metrics.push(serde_json::json!({"Name": name, "Unit": unit}));
        }
        line["_aws"] = serde_json::json!({
            "Timestamp": timestamp_millis,
            "CloudWatchMetrics": [{"Namespace": METRICS_NAMESPACE, "Dimensions": [[]], "Metrics": metrics}],
        });
        line
    }
}

/// The meter: a store and the marketplace it sends to.
pub struct Meter<S, M> {
    pub store: S,
    pub marketplace: M,
    pub grace: Duration,
}

/// A counter settled for good this run: its state, the marketplace's
/// word, and which counter.
type Finished = (MeterState, String, DueUsage);

/// How one claimed counter ends this run.
enum Settle {
    Final(MeterState, String, Option<String>),
    Again(String),
}

impl<S: MeteringStore, M: UsageMarketplace> Meter<S, M> {
    /// One run at `now` (the schedule's time), stopping before `deadline`.
    pub async fn run(
        &self,
        now: DateTime<Utc>,
        deadline: Option<Instant>,
    ) -> Result<MeterReport, StoreError> {
        let run = crate::secret::random_hex(8);
        let now_text = Timestamp(now).to_string();
        let mut report = MeterReport {
            now: now_text.clone(),
            ..MeterReport::default()
        };
        let mut work: Vec<DueUsage> = Vec::new();
        let mut ended: Vec<String> = Vec::new();
        for due in self.store.due_usage(&hour_text(now - self.grace)).await? {
            match due {
                DueUsage::Final { resource_id } => ended.push(resource_id),
                counter => work.push(counter),
            }
        }
        // An ended agreement's counters are all due, whatever their hour.
        for resource_id in &ended {
            for counter in self.store.usage_since(resource_id, "0").await? {
                let due = DueUsage::Counter {
                    resource_id: counter.resource_id,
                    dimension: counter.dimension,
                    hour: counter.hour,
                };
                if !counter.state.is_final() && !work.contains(&due) {
                    work.push(due);
                }
            }
        }
        report.due = work.len();

        let claim_until = (now + LEASE).timestamp();
        let claims: Vec<Result<Option<UsageCounter>, StoreError>> = stream::iter(work.iter())
            .map(|due| async {
                if past(deadline) {
                    return Err(StoreError::Unavailable("deadline".into()));
                }
                self.store
                    .claim_usage(due, &run, &now_text, now.timestamp(), claim_until)
                    .await
            })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        let mut claimed = Vec::new();
        for claim in claims {
            match claim {
                Ok(Some(counter)) => claimed.push(counter),
                Ok(None) => report.skipped += 1,
                Err(_) if past(deadline) => report.left += 1,
                Err(err) => return Err(err),
            }
        }

        let mut released_left = 0;
        let ids: Vec<String> = claimed
            .iter()
            .map(|counter| counter.resource_id.clone())
            .collect();
        let resources: HashMap<String, Resource> = self
            .store
            .get_resources(&ids)
            .await?
            .into_iter()
            .map(|resource| (resource.id.clone(), resource))
            .collect();
        let mut settled: Vec<(UsageCounter, Settle)> = Vec::new();
        let mut sendable: Vec<(UsageCounter, M::Record)> = Vec::new();
        for counter in claimed {
            let too_late = parse(&counter.hour)
                .is_none_or(|hour| now >= hour + self.marketplace.window() - WINDOW_MARGIN);
            let settle = match resources.get(&counter.resource_id) {
                _ if too_late => Settle::Final(
                    MeterState::Lost,
                    "not sent within the marketplace's window".into(),
                    None,
                ),
                None => Settle::Final(MeterState::Failed, "the resource is gone".into(), None),
                Some(resource) if resource.platform != self.marketplace.platform() => Settle::Final(
                    MeterState::Failed,
                    format!("{} does not bill by usage", resource.platform.as_str()),
                    None,
                ),
                Some(resource) => match self.marketplace.record(resource, &counter) {
                    Ok(record) => {
                        sendable.push((counter, record));
                        continue;
                    }
                    Err(reason) => Settle::Final(MeterState::Failed, reason, None),
                },
            };
            settled.push((counter, settle));
        }

        for chunk in sendable.chunks(self.marketplace.batch_size().max(1)) {
            if past(deadline) {
                settled.extend(
                    chunk
                        .iter()
                        .map(|(counter, _)| (counter.clone(), Settle::Again("left for the next run".into()))),
                );
                report.left += chunk.len();
                released_left += chunk.len();
                continue;
            }
            let records: Vec<M::Record> = chunk.iter().map(|(_, record)| record.clone()).collect();
            match self.marketplace.send(&records).await {
                Ok(answers) => {
                    for (index, (counter, _)) in chunk.iter().enumerate() {
                        let settle = match answers.get(index) {
                            Some(Sent::Accepted { status, record_id }) => {
                                Settle::Final(MeterState::Metered, status.clone(), record_id.clone())
                            }
                            Some(Sent::Refused(reason)) => {
                                Settle::Final(MeterState::Failed, reason.clone(), None)
                            }
                            Some(Sent::Again(reason)) => Settle::Again(reason.clone()),
                            None => Settle::Again("the marketplace did not answer for it".into()),
                        };
                        settled.push((counter.clone(), settle));
                    }
                }
                Err(SendError::Again(reason)) => {
                    settled.extend(
                        chunk
                            .iter()
                            .map(|(counter, _)| (counter.clone(), Settle::Again(reason.clone()))),
                    );
                }
                Err(SendError::Refused(reason)) => settled.extend(chunk.iter().map(|(counter, _)| {
                    (
                        counter.clone(),
                        Settle::Final(MeterState::Failed, reason.clone(), None),
                    )
                })),
            }
        }

        let outcomes: Vec<Result<Option<Finished>, StoreError>> = stream::iter(settled)
            .map(|(counter, settle)| self.settle(counter, settle, &run, now))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut finished: BTreeSet<DueUsage> = BTreeSet::new();
        for outcome in outcomes {
            let Some((state, status, due)) = outcome? else {
                report.retried += 1;
                continue;
            };
            match state {
                MeterState::Metered if status == "DuplicateRecord" => report.duplicates += 1,
                MeterState::Metered => report.metered += 1,
                MeterState::Lost => report.lost += 1,
                _ => report.failed += 1,
            }
            finished.insert(due);
        }
        // Counters left for the next run were released too: counted once, as left.
        report.retried -= released_left;
        report.oldest_unmetered_seconds = work
            .iter()
            .filter(|due| !finished.contains(*due))
            .filter_map(|due| match due {
                DueUsage::Counter { hour, .. } => parse(hour),
                DueUsage::Final { .. } => None,
            })
            .min()
            .map_or(0, |hour| (now - hour).num_seconds().max(0));

        for resource_id in &ended {
            let counters = self.store.usage_since(resource_id, "0").await?;
            if counters.iter().all(|counter| counter.state.is_final()) {
                self.store.clear_usage_final(resource_id).await?;
            }
        }
        Ok(report)
    }

    /// Writes how `counter` ended: its final state with an audit event,
    /// or back to the queue. The final state and hour, if it was final.
    async fn settle(
        &self,
        mut counter: UsageCounter,
        settle: Settle,
        run: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Finished>, StoreError> {
        match settle {
            Settle::Again(reason) => {
                self.store.release_usage(&counter, run, &reason).await?;
                Ok(None)
            }
            Settle::Final(state, outcome, record_id) => {
                let at = Timestamp(now);
                counter.state = state;
                counter.outcome = Some(outcome.clone());
                counter.metering_record_id = record_id;
                counter.finished_at = Some(at.to_string());
                let action = if state == MeterState::Metered {
                    AuditAction::UsageMetered
                } else {
                    AuditAction::UsageMeteringFailed
                };
                let detail = if state == MeterState::Metered {
                    "status"
                } else {
                    "reason"
                };
                let audit = AuditEvent::new(SubjectKind::Resource, &counter.resource_id, action, ACTOR, &at)
                    .with_detail("dimension", &counter.dimension)
                    .with_detail("hour", &counter.hour)
                    .with_detail("quantity", &counter.quantity.to_string())
                    .with_detail(detail, &outcome);
                if state != MeterState::Metered {
                    tracing::warn!(resource_id = %counter.resource_id, dimension = %counter.dimension, hour = %counter.hour, quantity = counter.quantity, %outcome, "usage not metered");
                }
                Ok(self.store.finish_usage(&counter, run, &audit).await?.then(|| {
                    let due = DueUsage::Counter {
                        resource_id: counter.resource_id,
                        dimension: counter.dimension,
                        hour: counter.hour,
                    };
                    (state, outcome, due)
                }))
            }
        }
    }
}

fn parse(hour: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(hour)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

fn past(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|deadline| Instant::now() >= deadline)
}

/// The run's clock: the scheduled event's `time` (EventBridge's, or a
/// test's making hours pass), else this machine's.
pub fn clock_of(event: &serde_json::Value) -> DateTime<Utc> {
    event
        .get("time")
        .and_then(serde_json::Value::as_str)
        .and_then(parse)
        .unwrap_or_else(Utc::now)
}
