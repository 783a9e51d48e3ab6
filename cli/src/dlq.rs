//! `provider dlq`: the platform sync's dead-letter queue (stack output
//! `SyncDeadLetterQueueUrl`). Lambda puts there, for a stream batch that
//! failed five times, a record of the batch (its shard and sequence numbers),
//! not the records themselves; what each item is owed is written on the item
//! (docs/sync.md). So a redrive settles everything owed now, as
//! `provider sync` does, and only then removes the messages (docs/runbook.md).

use crate::{aws_failure, Failure, Outcome};
use clap::Subcommand;
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Subcommand)]
pub enum DlqCommand {
    /// List the dead-lettered batches. Changes nothing (each message is
    /// hidden for a few seconds while read); exits 1 when there are any.
    List,
    /// Settle everything the platforms are owed (as `provider sync`), publish
    /// lifecycle events the stream missed, then delete the messages. Changes:
    /// the platforms, the items' sync marks, the queue. Exits 1, keeping the
    /// messages, while something is still owed.
    Redrive,
}

/// A message: its receipt handle (to delete it) and what it says.
struct Letter {
    receipt: String,
    summary: Value,
}

pub async fn run(command: DlqCommand) -> Result<Outcome, Failure> {
    let queue = shared::config::required(&shared::config::process_env, "SYNC_DEAD_LETTER_QUEUE_URL")?;
    let client = aws_sdk_sqs::Client::new(&shared::config::aws_sdk_config("provider").await);
    let letters = read_all(&client, &queue).await?;
    match command {
        DlqCommand::List => {
            release(&client, &queue, &letters).await?;
            let report = json!({
                "messages": letters.len(),
                "batches": letters.iter().map(|letter| letter.summary.clone()).collect::<Vec<_>>(),
            });
            Ok(if letters.is_empty() {
                Outcome::Done(report)
            } else {
                Outcome::Findings(report)
            })
        }
        DlqCommand::Redrive => {
            let platforms = shared::sync::PlatformSync::from_env("provider").await?;
            let swept = platforms.sweep(true, None).await?;
            let published = platforms
                .publish_unpublished(shared::sync::UNPUBLISHED_AGE, None)
                .await?;
            let owed = swept.pending + swept.failed;
            let report = |deleted: usize| json!({ "messages": letters.len(), "deleted": deleted, "sweep": swept, "published": published });
            if owed > 0 {
                release(&client, &queue, &letters).await?;
                return Ok(Outcome::Findings(report(0)));
            }
            for letter in &letters {
                client
                    .delete_message()
                    .queue_url(&queue)
                    .receipt_handle(&letter.receipt)
                    .send()
                    .await
                    .map_err(|err| aws_failure("delete a message", err))?;
            }
            Ok(Outcome::Done(report(letters.len())))
        }
    }
}

/// Every message in the queue, each hidden while read so no batch comes
/// twice (at most 1000).
async fn read_all(client: &aws_sdk_sqs::Client, queue: &str) -> Result<Vec<Letter>, Failure> {
    let mut letters: BTreeMap<String, Letter> = BTreeMap::new();
    for _ in 0..100 {
        let received = client
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .wait_time_seconds(0)
            .send()
            .await
            .map_err(|err| aws_failure("read the queue", err))?;
        let messages = received.messages();
        if messages.is_empty() {
            break;
        }
        for message in messages {
            let (Some(id), Some(receipt)) = (message.message_id(), message.receipt_handle()) else {
                continue;
            };
            letters.insert(
                id.to_string(),
                Letter {
                    receipt: receipt.to_string(),
                    summary: summary(id, message.body().unwrap_or_default()),
                },
            );
        }
    }
    Ok(letters.into_values().collect())
}

/// What Lambda's failure record says about the batch, without the
/// function's ARN or anything else.
fn summary(id: &str, body: &str) -> Value {
    let record: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let batch = &record["DDBStreamBatchInfo"];
    json!({
        "message_id": id,
        "at": record["timestamp"],
        "condition": record["requestContext"]["condition"],
        "invocations": record["requestContext"]["approximateInvokeCount"],
        "batch_size": batch["batchSize"],
        "shard_id": batch["shardId"],
        "start_sequence_number": batch["startSequenceNumber"],
        "end_sequence_number": batch["endSequenceNumber"],
        "first_record_at": batch["approximateArrivalOfFirstRecord"],
    })
}

/// Makes the messages read visible again at once.
async fn release(client: &aws_sdk_sqs::Client, queue: &str, letters: &[Letter]) -> Result<(), Failure> {
    for letter in letters {
        client
            .change_message_visibility()
            .queue_url(queue)
            .receipt_handle(&letter.receipt)
            .visibility_timeout(0)
            .send()
            .await
            .map_err(|err| aws_failure("release a message", err))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_record_is_summarised_by_its_batch_and_nothing_else() {
        let body = r#"{"requestContext":{"requestId":"r","functionArn":"arn:aws:lambda:eu-west-1:1:function:sync","condition":"RetryAttemptsExhausted","approximateInvokeCount":6},
            "responseContext":{"statusCode":200,"functionError":"Unhandled"},"version":"1.0","timestamp":"2026-12-03T10:00:00Z",
            "DDBStreamBatchInfo":{"shardId":"shard-1","startSequenceNumber":"100","endSequenceNumber":"120","approximateArrivalOfFirstRecord":"2026-12-03T09:59:00Z","approximateArrivalOfLastRecord":"2026-12-03T09:59:01Z","batchSize":3,"streamArn":"arn:aws:dynamodb:eu-west-1:1:table/t/stream/x"}}"#;
        let shown = summary("m-1", body);
        assert_eq!(shown["batch_size"], 3);
        assert_eq!(shown["shard_id"], "shard-1");
        assert_eq!(shown["start_sequence_number"], "100");
        assert_eq!(shown["condition"], "RetryAttemptsExhausted");
        assert_eq!(shown["invocations"], 6);
        assert!(!shown.to_string().contains("arn:aws:lambda"), "{shown}");
        assert_eq!(
            summary("m-2", "not json")["batch_size"],
            Value::Null,
            "an odd message is listed, not fatal"
        );
    }
}
