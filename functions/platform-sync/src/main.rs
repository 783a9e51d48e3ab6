//! `platform-sync` Lambda: the table's DynamoDB stream, wired to
//! [`shared::sync::PlatformSync`].

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::sync::PlatformSync;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let sync = PlatformSync::from_env().await?;
    run(service_fn(|event: LambdaEvent<Event>| async {
        Ok::<_, Error>(sync.handle(event.payload).await)
    }))
    .await
}
