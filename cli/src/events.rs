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
    // Also `provider logs`'s: how many, since when, and --follow.
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
    /// Only the lines CloudWatch Logs' filter pattern matches (e.g.
    /// `"configuration error"`, with the quotes, for the phrase).
    #[arg(long, value_name = "PATTERN")]
    filter: Option<String>,
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
    read_group(&group, "events", &args).await
}

/// The functions `provider logs` reads: every function of the stack, by its
/// binary name (the one list the secret's grants use too).
pub fn functions() -> Vec<&'static str> {
    shared::secret_parts::READERS
        .iter()
        .map(|(function, _)| *function)
        .collect()
}

#[derive(Args)]
pub struct LogsArgs {
    /// The function, by its binary name.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(functions()))]
    function: String,
    #[command(flatten)]
    read: EventsArgs,
}

/// The template's logical id of a function: `plan-change` → `PlanChangeFunction`.
fn logical_id(function: &str) -> String {
    let mut id: String = function
        .split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    id.push_str("Function");
    id
}

/// `provider logs FUNCTION`: the function's log lines (JSON), newest first,
/// from its log group, `/aws/lambda/<its name in the stack>`.
pub async fn logs(stack: Option<&str>, args: LogsArgs) -> Result<Outcome, Failure> {
    let stack = stack.ok_or_else(|| {
        Failure::Usage(
            "give --stack NAME: the functions' log groups are named by the stack (locally, their logs are in .run/current/watch.log)"
                .into(),
        )
    })?;
    let aws = shared::config::aws_sdk_config("provider").await;
    let logical = logical_id(&args.function);
    let described = aws_sdk_cloudformation::Client::new(&aws)
        .describe_stack_resource()
        .stack_name(stack)
        .logical_resource_id(&logical)
        .send()
        .await
        .map_err(|err| aws_failure(&format!("find {logical} in stack {stack}"), err))?;
    let name = described
        .stack_resource_detail()
        .and_then(|detail| detail.physical_resource_id())
        .ok_or_else(|| Failure::Failed(format!("stack {stack} has no {logical}")))?;
    read_group(&format!("/aws/lambda/{name}"), "lines", &args.read).await
}

/// The newest of `group`'s log events under `key`, or with `--follow` each
/// new one as it comes.
async fn read_group(group: &str, key: &str, args: &EventsArgs) -> Result<Outcome, Failure> {
    let group = group.to_string();
    let client = aws_sdk_cloudwatchlogs::Client::new(&shared::config::aws_sdk_config("provider").await);
    let since_ms = chrono::Utc::now().timestamp_millis() - i64::from(args.since) * 1000;
    let filter = args.filter.as_deref();
    let (found, mut latest) = read_since(&client, &group, since_ms, filter).await?;
    let mut seen: HashSet<String> = found.iter().map(|(_, id, _)| id.clone()).collect();
    let events = newest_first(found, usize::from(args.limit));
    if !args.follow {
        return Ok(Outcome::Done(json!({ "log_group": group, key: events })));
    }
    for event in events.iter().rev() {
        println!("{event}");
    }
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        let (found, newest) = read_since(&client, &group, latest, filter).await?;
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
    filter: Option<&str>,
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
            .set_filter_pattern(filter.map(str::to_string))
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
    fn a_function_is_found_by_the_templates_logical_id() {
        assert_eq!(logical_id("plan-change"), "PlanChangeFunction");
        assert_eq!(logical_id("cloud66-link"), "Cloud66LinkFunction");
        assert_eq!(logical_id("oidc"), "OidcFunction");
        let template =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml")).unwrap();
        for function in functions() {
            assert!(
                template.contains(&format!("\n  {}:\n", logical_id(function))),
                "{function}: no {} in the template",
                logical_id(function)
            );
        }
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
