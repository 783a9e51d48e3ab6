//! `marketplace-events` Lambda: AWS Marketplace's subscription events, as
//! the EventBridge rule delivers them, wired to
//! [`shared::aws_marketplace::events::handle`].

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::aws_marketplace::events::{self, EventsApi};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let api = EventsApi::from_env(env!("CARGO_PKG_NAME")).await?;
    run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let api = &api;
        // An error fails the invocation: EventBridge delivers the event again.
        async move { Ok::<_, Error>(events::handle(api, event.payload).await?) }
    }))
    .await
}
