//! `provider events`: the lifecycle events this stack published, as the bus
//! received them, newest first: the view a vendor needs to write its own
//! EventBridge rules (docs/events.md). A rule of the stack's own copies
//! every event to a log group (stack output `LifecycleEventsLogGroup`,
//! `EVENTS_LOG_GROUP`); this reads that group, so what it shows is what a
//! rule on the bus would have matched.

use crate::{aws_failure, Failure, Outcome};
use clap::Args;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;

#[derive(Args)]
pub struct EventsArgs {
    /// How many of the latest events, newest first.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=1000))]
    limit: u16,
    /// Only events of the last SECONDS.
    #[arg(long, default_value_t = 86_400, value_parser = clap::value_parser!(u32).range(1..=1_209_600))]
    since: u32,
    /// Then keep printing each new event, one JSON line each, until
    /// interrupted.
    #[arg(long)]
    follow: bool,
}

/// At most this many log events are read for one listing.
const MAX_READ: usize = 10_000;
/// How often `--follow` looks again.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);

/// One event as the bus received it, or the log line as it was when it is
/// not an event's JSON.
fn event_of(message: &str) -> Value {
    serde_json::from_str(message).unwrap_or_else(|_| json!({ "unreadable": message }))
}

/// A logged event: when it was logged, its log event id, the event.
type Logged = (i64, String, Value);

/// `found` in the order the bus received it (by time, then log event id).
fn oldest_first(mut found: Vec<Logged>) -> Vec<Logged> {
    found.sort_by(|(at, id, _), (other_at, other_id, _)| (at, id).cmp(&(other_at, other_id)));
    found
}

/// The newest `limit` of `found`, newest first.
fn newest_first(found: Vec<Logged>, limit: usize) -> Vec<Value> {
    oldest_first(found)
        .into_iter()
        .rev()
        .take(limit)
        .map(|(_, _, event)| event)
        .collect()
}

pub async fn run(args: EventsArgs) -> Result<Outcome, Failure> {
    let group = shared::config::required(&shared::config::process_env, "EVENTS_LOG_GROUP")?;
    let client = aws_sdk_cloudwatchlogs::Client::new(&shared::config::aws_sdk_config("provider").await);
    let since_ms = chrono::Utc::now().timestamp_millis() - i64::from(args.since) * 1000;
    let (found, mut latest) = read_since(&client, &group, since_ms).await?;
    let mut seen: HashSet<String> = found.iter().map(|(_, id, _)| id.clone()).collect();
    let events = newest_first(found, usize::from(args.limit));
    if !args.follow {
        return Ok(Outcome::Done(json!({ "log_group": group, "events": events })));
    }
    for event in events.iter().rev() {
        println!("{event}");
    }
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        let (found, newest) = read_since(&client, &group, latest).await?;
        let fresh = found
            .into_iter()
            .filter(|(_, id, _)| seen.insert(id.clone()))
            .collect();
        for (_, _, event) in oldest_first(fresh) {
            println!("{event}");
        }
        latest = latest.max(newest);
    }
}

/// Every log event of `group` from `start_ms` on (at most [`MAX_READ`],
/// each once), and the latest time seen.
async fn read_since(
    client: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    start_ms: i64,
) -> Result<(Vec<Logged>, i64), Failure> {
    let mut found = Vec::new();
    let mut ids = HashSet::new();
    let mut latest = start_ms;
    let mut token: Option<String> = None;
    loop {
        let page = client
            .filter_log_events()
            .log_group_name(group)
            .start_time(start_ms)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|err| aws_failure(&format!("read the log group {group}"), err))?;
        for logged in page.events() {
            let id = logged.event_id().unwrap_or_default().to_string();
            let at = logged.timestamp().unwrap_or_default();
            latest = latest.max(at);
            if ids.insert(id.clone()) {
                found.push((at, id, event_of(logged.message().unwrap_or_default())));
            }
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() || found.len() >= MAX_READ {
            return Ok((found, latest));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_come_first_and_only_as_many_as_asked() {
        let found = vec![
            (3, "c".to_string(), json!({"n": 3})),
            (1, "a".to_string(), json!({"n": 1})),
            (2, "b".to_string(), json!({"n": 2})),
        ];
        assert_eq!(
            newest_first(found.clone(), 10),
            [json!({"n": 3}), json!({"n": 2}), json!({"n": 1})]
        );
        assert_eq!(newest_first(found, 2), [json!({"n": 3}), json!({"n": 2})]);
    }

    #[test]
    fn a_line_that_is_not_an_event_is_shown_as_it_was() {
        assert_eq!(
            event_of(r#"{"detail-type":"Resource Provisioned"}"#)["detail-type"],
            "Resource Provisioned"
        );
        assert_eq!(event_of("not json")["unreadable"], "not json");
    }
}
