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
                let (action, detail) = match state {
                    MeterState::Metered => (AuditAction::UsageMetered, "status"),
                    _ => {
                        tracing::warn!(resource_id = %counter.resource_id, dimension = %counter.dimension, hour = %counter.hour, quantity = counter.quantity, %outcome, "usage not metered");
                        (AuditAction::UsageMeteringFailed, "reason")
                    }
                };
                let audit = AuditEvent::new(SubjectKind::Resource, &counter.resource_id, action, ACTOR, &at)
                    .with_detail("dimension", &counter.dimension)
                    .with_detail("hour", &counter.hour)
                    .with_detail("quantity", &counter.quantity.to_string())
                    .with_detail(detail, &outcome);
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

/// How far a scheduled event's `time` may be from this machine's clock and
/// still be the run's clock: a schedule's time is the invocation's, so a
/// larger gap is a hand-made event, and a clock hours ahead would seal
/// open hours and give up unsent ones as lost.
pub const MAX_CLOCK_GAP: Duration = Duration::hours(3);

/// The run's clock: the scheduled event's `time` (EventBridge's, or a
/// test's making an hour pass), else, or when it is more than
/// [`MAX_CLOCK_GAP`] from `machine`, the machine's.
pub fn clock_of(event: &serde_json::Value, machine: DateTime<Utc>) -> DateTime<Utc> {
    match event
        .get("time")
        .and_then(serde_json::Value::as_str)
        .and_then(parse)
    {
        Some(time) if (time - machine).abs() <= MAX_CLOCK_GAP => time,
        Some(time) => {
            tracing::warn!(%time, %machine, "the event's time is too far from this machine's clock; the machine's is used");
            machine
        }
        None => machine,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metering::fake::FakeStore;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// (resource, dimension, hour, quantity)
    type Record = (String, String, String, u64);

    struct FakeMarket {
        platform: Platform,
        answers: Mutex<VecDeque<Result<Vec<Sent>, SendError>>>,
        calls: Mutex<Vec<Vec<Record>>>,
        /// Each call takes this long.
        delay: std::time::Duration,
    }

    impl FakeMarket {
        fn new() -> Self {
            Self {
                platform: Platform::Aws,
                answers: Mutex::new(VecDeque::new()),
                calls: Mutex::new(Vec::new()),
                delay: std::time::Duration::ZERO,
            }
        }

        fn answering(self, answer: Result<Vec<Sent>, SendError>) -> Self {
            self.answers.lock().unwrap().push_back(answer);
            self
        }

        fn calls(&self) -> Vec<Vec<Record>> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl UsageMarketplace for FakeMarket {
        type Record = Record;

        fn platform(&self) -> Platform {
            self.platform
        }

        fn batch_size(&self) -> usize {
            25
        }

        fn window(&self) -> Duration {
            Duration::hours(6)
        }

        fn record(&self, resource: &Resource, counter: &UsageCounter) -> Result<Record, String> {
            if resource.addon_id == "no-customer" {
                return Err("no customer".into());
            }
            Ok((
                resource.id.clone(),
                counter.dimension.clone(),
                counter.hour.clone(),
                counter.quantity,
            ))
        }

        async fn send(&self, records: &[Record]) -> Result<Vec<Sent>, SendError> {
            self.calls.lock().unwrap().push(records.to_vec());
            tokio::time::sleep(self.delay).await;
            let answer = self.answers.lock().unwrap().pop_front();
            answer.unwrap_or_else(|| {
                Ok(records
                    .iter()
                    .map(|_| Sent::Accepted {
                        status: "Success".into(),
                        record_id: Some("mr-1".into()),
                    })
                    .collect())
            })
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn resource(id: &str) -> Resource {
        Resource::new(
            id.into(),
            Platform::Aws,
            "arn:aws:license-manager::1:license:l-1".into(),
            "basic".into(),
            Default::default(),
            &Timestamp::now(),
        )
    }

    const HOUR: &str = "2026-12-07T10:00:00Z";
    const HOUR_END: &str = "2026-12-07T11:00:00Z";

    /// A store with one due counter of resource `res_aws_a`.
    fn one_counter(quantity: u64) -> FakeStore {
        FakeStore::default()
            .with_resource(resource("res_aws_a"))
            .with_counter("res_aws_a", "gb", HOUR, quantity, HOUR_END)
    }

    fn meter(store: FakeStore, market: FakeMarket) -> Meter<FakeStore, FakeMarket> {
        Meter {
            store,
            marketplace: market,
            grace: Duration::minutes(10),
        }
    }

    /// Thirty resources' due counters: more than one call's worth.
    fn thirty_counters() -> FakeStore {
        let mut store = FakeStore::default();
        for n in 0..30 {
            let id = format!("res_aws_{n:02}");
            store = store
                .with_resource(resource(&id))
                .with_counter(&id, "gb", HOUR, n, HOUR_END);
        }
        store
    }

    /// Past the hour and its grace.
    fn due_now() -> DateTime<Utc> {
        at("2026-12-07T11:10:01Z")
    }

    #[tokio::test]
    async fn a_due_counter_is_sealed_sent_once_and_settled_with_an_audit_event() {
        let meter = meter(one_counter(42), FakeMarket::new());
        let report = meter.run(due_now(), None).await.unwrap();
        assert_eq!(
            report,
            MeterReport {
                now: "2026-12-07T11:10:01.000Z".into(),
                due: 1,
                metered: 1,
                ..MeterReport::default()
            }
        );
        assert_eq!(
            meter.marketplace.calls(),
            vec![vec![(
                "res_aws_a".to_string(),
                "gb".to_string(),
                HOUR.to_string(),
                42
            )]]
        );
        let stored = meter.store.stored("res_aws_a", "gb");
        assert_eq!(stored.counter.state, MeterState::Metered);
        assert_eq!(stored.counter.outcome.as_deref(), Some("Success"));
        assert_eq!(stored.counter.metering_record_id.as_deref(), Some("mr-1"));
        assert_eq!(
            stored.counter.sealed_at.as_deref(),
            Some("2026-12-07T11:10:01.000Z")
        );
        assert_eq!(
            stored.counter.finished_at.as_deref(),
            Some("2026-12-07T11:10:01.000Z")
        );
        assert_eq!(stored.queued_since, None, "out of the queue");
        let audits = meter.store.audits.lock().unwrap().clone();
        assert_eq!(audits.len(), 1);
        assert_eq!(audits[0].action, AuditAction::UsageMetered);
        assert_eq!(audits[0].subject_id, "res_aws_a");
        assert_eq!(audits[0].actor, ACTOR);
        assert_eq!(audits[0].details["dimension"], "gb");
        assert_eq!(audits[0].details["hour"], HOUR);
        assert_eq!(audits[0].details["quantity"], "42");
        assert_eq!(audits[0].details["status"], "Success");
        // Nothing is sent again.
        let again = meter.run(due_now() + Duration::minutes(5), None).await.unwrap();
        assert_eq!((again.due, again.metered), (0, 0));
        assert_eq!(meter.marketplace.calls().len(), 1);
    }

    #[tokio::test]
    async fn an_hour_is_due_only_once_its_grace_has_passed() {
        let meter = meter(one_counter(1), FakeMarket::new());
        let report = meter.run(at("2026-12-07T11:10:00Z"), None).await.unwrap();
        assert_eq!((report.due, report.metered), (0, 0), "{report:?}");
        assert!(meter.marketplace.calls().is_empty());
        let report = meter.run(at("2026-12-07T11:10:01Z"), None).await.unwrap();
        assert_eq!(report.metered, 1);
    }

    #[tokio::test]
    async fn records_go_in_calls_of_at_most_the_batch_size() {
        let store = thirty_counters();
        let meter = meter(store, FakeMarket::new());
        let report = meter.run(due_now(), None).await.unwrap();
        assert_eq!((report.due, report.metered), (30, 30));
        let sizes: Vec<usize> = meter.marketplace.calls().iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![25, 5]);
    }

    #[tokio::test]
    async fn what_is_not_processed_is_sent_again_next_run_as_it_was() {
        let market = FakeMarket::new().answering(Ok(vec![Sent::Again("UnprocessedRecords".into())]));
        let meter = meter(one_counter(7), market);
        let first = meter.run(due_now(), None).await.unwrap();
        assert_eq!((first.retried, first.metered), (1, 0), "{first:?}");
        assert_eq!(first.oldest_unmetered_seconds, 70 * 60 + 1);
        let stored = meter.store.stored("res_aws_a", "gb");
        assert_eq!(stored.counter.state, MeterState::Sealed);
        assert_eq!(stored.counter.attempts, 1);
        assert_eq!(stored.counter.outcome.as_deref(), Some("UnprocessedRecords"));
        assert_eq!(
            (stored.claimed_by, stored.claim_until),
            (None, None),
            "given back"
        );
        assert!(meter.store.audits.lock().unwrap().is_empty());
        let second = meter.run(due_now() + Duration::minutes(5), None).await.unwrap();
        assert_eq!(
            (second.metered, second.retried, second.oldest_unmetered_seconds),
            (1, 0, 0)
        );
        let calls = meter.marketplace.calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0], calls[1], "the same record");
    }

    #[tokio::test]
    async fn a_failed_call_is_retried_whole_and_a_refused_one_fails_whole() {
        let market = FakeMarket::new().answering(Err(SendError::Again("ThrottlingException".into())));
        let meter = meter(one_counter(3), market);
        let report = meter.run(due_now(), None).await.unwrap();
        assert_eq!((report.retried, report.failed), (1, 0));
        assert_eq!(
            meter.store.stored("res_aws_a", "gb").counter.outcome.as_deref(),
            Some("ThrottlingException")
        );

        let market =
            FakeMarket::new().answering(Err(SendError::Refused("InvalidProductCodeException".into())));
        let meter = super::tests::meter(one_counter(3), market);
        let report = meter.run(due_now(), None).await.unwrap();
        assert_eq!((report.retried, report.failed), (0, 1));
        let stored = meter.store.stored("res_aws_a", "gb");
        assert_eq!(stored.counter.state, MeterState::Failed);
        assert_eq!(
            stored.counter.outcome.as_deref(),
            Some("InvalidProductCodeException")
        );
    }

    #[tokio::test]
    async fn a_refusal_is_final_audited_and_never_retried() {
        let market = FakeMarket::new().answering(Ok(vec![Sent::Refused("CustomerNotSubscribed".into())]));
        let meter = meter(one_counter(4), market);
        let report = meter.run(due_now(), None).await.unwrap();
        assert_eq!((report.failed, report.metered, report.retried), (1, 0, 0));
        let stored = meter.store.stored("res_aws_a", "gb");
        assert_eq!(stored.counter.state, MeterState::Failed);
        assert_eq!(stored.queued_since, None);
        let audits = meter.store.audits.lock().unwrap().clone();
        assert_eq!(audits[0].action, AuditAction::UsageMeteringFailed);
        assert_eq!(audits[0].details["reason"], "CustomerNotSubscribed");
        assert!(!audits[0].details.contains_key("status"));
        meter.run(due_now() + Duration::minutes(5), None).await.unwrap();
        assert_eq!(meter.marketplace.calls().len(), 1, "not sent again");
    }

    #[tokio::test]
    async fn a_duplicate_is_done_and_counted_apart() {
        let market = FakeMarket::new().answering(Ok(vec![Sent::Accepted {
            status: "DuplicateRecord".into(),
            record_id: None,
        }]));
        let meter = meter(one_counter(4), market);
        let report = meter.run(due_now(), None).await.unwrap();
        assert_eq!((report.duplicates, report.metered), (1, 0));
        let stored = meter.store.stored("res_aws_a", "gb");
        assert_eq!(stored.counter.state, MeterState::Metered);
        assert_eq!(stored.counter.metering_record_id, None);
    }

    #[tokio::test]
    async fn a_record_without_an_answer_is_sent_again() {
        let market = FakeMarket::new().answering(Ok(vec![]));
        let meter = meter(one_counter(4), market);
        let report = meter.run(due_now(), None).await.unwrap();
        assert_eq!(report.retried, 1);
        assert_eq!(
            meter.store.stored("res_aws_a", "gb").counter.outcome.as_deref(),
            Some("the marketplace did not answer for it")
        );
    }

    #[tokio::test]
    async fn a_counter_too_old_to_send_is_lost_and_counted() {
        // The window (6 h from the hour) less the margin: lost from then.
        let last_chance = at(HOUR) + Duration::hours(6) - WINDOW_MARGIN;
        let meter1 = meter(one_counter(9), FakeMarket::new());
        let report = meter1
            .run(last_chance - Duration::seconds(1), None)
            .await
            .unwrap();
        assert_eq!((report.metered, report.lost), (1, 0));
        let meter2 = meter(one_counter(9), FakeMarket::new());
        let report = meter2.run(last_chance, None).await.unwrap();
        assert_eq!((report.metered, report.lost), (0, 1));
        assert!(meter2.marketplace.calls().is_empty());
        let stored = meter2.store.stored("res_aws_a", "gb");
        assert_eq!(stored.counter.state, MeterState::Lost);
        assert_eq!(
            meter2.store.audits.lock().unwrap()[0].action,
            AuditAction::UsageMeteringFailed
        );
    }

    #[tokio::test]
    async fn counters_that_cannot_be_billed_fail_for_good() {
        let mut other = resource("res_aws_b");
        other.platform = Platform::Heroku;
        let mut nameless = resource("res_aws_c");
        nameless.addon_id = "no-customer".into();
        let store = FakeStore::default()
            .with_counter("res_aws_gone", "gb", HOUR, 1, HOUR_END)
            .with_resource(other)
            .with_counter("res_aws_b", "gb", HOUR, 1, HOUR_END)
            .with_resource(nameless)
            .with_counter("res_aws_c", "gb", HOUR, 1, HOUR_END);
        let meter = meter(store, FakeMarket::new());
        let report = meter.run(due_now(), None).await.unwrap();
        assert_eq!((report.failed, report.metered), (3, 0));
        assert!(meter.marketplace.calls().is_empty());
        let outcome = |id: &str| meter.store.stored(id, "gb").counter.outcome.unwrap();
        assert_eq!(outcome("res_aws_gone"), "the resource is gone");
        assert_eq!(outcome("res_aws_b"), "heroku does not bill by usage");
        assert_eq!(outcome("res_aws_c"), "no customer");
    }

    #[tokio::test]
    async fn another_runs_claim_is_left_alone_until_its_lease_ends() {
        let store = one_counter(5);
        {
            let mut counters = store.counters.lock().unwrap();
            let stored = counters.values_mut().next().unwrap();
            stored.claimed_by = Some("other".into());
            stored.claim_until = Some(due_now().timestamp() + 60);
        }
        let meter = meter(store, FakeMarket::new());
        let report = meter.run(due_now(), None).await.unwrap();
        assert_eq!((report.skipped, report.metered), (1, 0));
        assert_eq!(report.oldest_unmetered_seconds, 70 * 60 + 1, "still unsent");
        let report = meter.run(due_now() + Duration::seconds(61), None).await.unwrap();
        assert_eq!(
            (report.skipped, report.metered),
            (0, 1),
            "the holder died: taken over"
        );
        let stored = meter.store.stored("res_aws_a", "gb");
        assert_eq!(stored.counter.state, MeterState::Metered);
    }

    #[tokio::test]
    async fn a_claim_lasts_the_lease() {
        let meter = meter(
            one_counter(5),
            FakeMarket::new().answering(Err(SendError::Again("x".into()))),
        );
        let now = due_now();
        // Claims are given back on retry; look at one while it is held.
        let due = meter
            .store
            .due_usage(&hour_text(now - meter.grace))
            .await
            .unwrap();
        let claimed = meter
            .store
            .claim_usage(&due[0], "run", "t", now.timestamp(), (now + LEASE).timestamp())
            .await
            .unwrap();
        assert!(claimed.is_some());
        assert_eq!(LEASE, Duration::minutes(15));
        let report = meter.run(now + LEASE - Duration::seconds(1), None).await.unwrap();
        assert_eq!(report.skipped, 1, "{report:?}");
    }

    #[tokio::test]
    async fn a_run_claims_for_its_lease_and_a_failed_claim_fails_the_run() {
        let meter1 = meter(one_counter(5), FakeMarket::new());
        meter1.run(due_now(), None).await.unwrap();
        let claims = meter1.store.claims.lock().unwrap().clone();
        assert_eq!(claims.len(), 1);
        let (_, now, until) = claims[0];
        assert_eq!(
            (now, until),
            (due_now().timestamp(), (due_now() + LEASE).timestamp())
        );

        let meter2 = meter(one_counter(5), FakeMarket::new());
        *meter2.store.claim_fails.lock().unwrap() = Some(StoreError::Unavailable("throttled".into()));
        let err = meter2.run(due_now(), None).await.unwrap_err();
        assert!(err.to_string().contains("throttled"), "{err}");
        assert!(meter2.marketplace.calls().is_empty(), "nothing sent");
    }

    #[tokio::test]
    async fn an_ended_agreements_counters_are_all_sent_at_once_and_its_mark_then_cleared() {
        let store = one_counter(2).with_counter(
            "res_aws_a",
            "calls",
            "2026-12-07T11:00:00Z",
            8,
            "2026-12-07T12:00:00Z",
        );
        store
            .finals
            .lock()
            .unwrap()
            .insert("res_aws_a".into(), "2026-12-07T11:20:00.000Z".into());
        let market = FakeMarket::new()
            .answering(Ok(vec![Sent::Again("x".into())]))
            .answering(Ok(vec![Sent::Again("x".into()), Sent::Again("y".into())]));
        let meter = meter(store, market);
        // Before the end's grace: the closed hour only.
        let report = meter.run(at("2026-12-07T11:25:00Z"), None).await.unwrap();
        assert_eq!((report.due, report.retried), (1, 1), "{report:?}");
        // After: the open hour too, and the mark stays while one is unsent.
        let report = meter.run(at("2026-12-07T11:30:01Z"), None).await.unwrap();
        assert_eq!((report.due, report.retried), (2, 2), "{report:?}");
        assert!(meter.store.finals.lock().unwrap().contains_key("res_aws_a"));
        let report = meter.run(at("2026-12-07T11:35:00Z"), None).await.unwrap();
        assert_eq!((report.due, report.metered), (2, 2), "{report:?}");
        assert!(meter.store.finals.lock().unwrap().is_empty(), "cleared");
        let report = meter.run(at("2026-12-07T11:40:00Z"), None).await.unwrap();
        assert_eq!(report.due, 0);
    }

    #[tokio::test]
    async fn a_run_stops_at_its_deadline_and_says_what_is_left() {
        let meter1 = meter(one_counter(1), FakeMarket::new());
        let report = meter1.run(due_now(), Some(Instant::now())).await.unwrap();
        assert_eq!((report.due, report.left, report.metered), (1, 1, 0));
        assert!(meter1.marketplace.calls().is_empty());
        assert_eq!(
            meter1.store.stored("res_aws_a", "gb").claimed_by,
            None,
            "not claimed"
        );

        // The first call outlasts the deadline: the second batch waits.
        let store = thirty_counters();
        let mut market = FakeMarket::new();
        market.delay = std::time::Duration::from_millis(300);
        let meter2 = meter(store, market);
        let deadline = Instant::now() + std::time::Duration::from_millis(150);
        let report = meter2.run(due_now(), Some(deadline)).await.unwrap();
        assert_eq!(
            (report.metered, report.left, report.retried),
            (25, 5, 0),
            "{report:?}"
        );
        assert_eq!(meter2.marketplace.calls().len(), 1);
        let left = meter2.store.stored("res_aws_29", "gb");
        assert_eq!(
            (left.counter.state, left.claimed_by),
            (MeterState::Sealed, None),
            "given back"
        );
        assert_eq!(left.counter.outcome.as_deref(), Some("left for the next run"));
    }

    #[test]
    fn the_metrics_line_carries_what_the_alarms_watch() {
        let report = MeterReport {
            metered: 2,
            duplicates: 1,
            failed: 3,
            lost: 4,
            retried: 5,
            left: 6,
            oldest_unmetered_seconds: 7,
            ..MeterReport::default()
        };
        let line = report.metrics_line(1_000);
        assert_eq!(line["UsageRecordsMetered"], 3);
        assert_eq!(line["UsageMeteringFailures"], 3);
        assert_eq!(line["UsageRecordsLost"], 4);
        assert_eq!(line["UsageRecordsRetried"], 5);
        assert_eq!(line["UsageRecordsLeft"], 6);
        assert_eq!(line["OldestUnmeteredUsageSeconds"], 7);
        assert_eq!(line["_aws"]["Timestamp"], 1_000);
        let declared = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declared["Namespace"], METRICS_NAMESPACE);
        let names: Vec<&str> = declared["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|metric| metric["Name"].as_str().unwrap())
            .collect();
        for name in [
            "OldestUnmeteredUsageSeconds",
            "UsageRecordsMetered",
            "UsageMeteringFailures",
            "UsageRecordsLost",
            "UsageRecordsRetried",
            "UsageRecordsLeft",
        ] {
            assert!(names.contains(&name), "{name}");
        }
    }

    #[test]
    fn the_clock_is_the_scheduled_events_time_within_the_gap() {
        let machine = at("2026-12-07T11:00:00Z");
        let event = |time: &str| serde_json::json!({ "time": time });
        assert_eq!(
            clock_of(&event("2026-12-07T11:10:00Z"), machine),
            at("2026-12-07T11:10:00Z")
        );
        assert_eq!(
            clock_of(&event("2026-12-07T14:00:00Z"), machine),
            at("2026-12-07T14:00:00Z")
        );
        assert_eq!(
            clock_of(&event("2026-12-07T08:00:00Z"), machine),
            at("2026-12-07T08:00:00Z")
        );
        assert_eq!(
            clock_of(&event("2026-12-07T14:00:01Z"), machine),
            machine,
            "too far ahead"
        );
        assert_eq!(
            clock_of(&event("2026-12-07T07:59:59Z"), machine),
            machine,
            "too far behind"
        );
        assert_eq!(clock_of(&event("soon"), machine), machine);
        assert_eq!(clock_of(&serde_json::json!({}), machine), machine);
    }
}
