//! `platform-sync` Lambda: the table's DynamoDB stream and the sweep's
//! schedule, wired to [`shared::sync::PlatformSync::invoke`].

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::sync::PlatformSync;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let sync = PlatformSync::from_env(env!("CARGO_PKG_NAME")).await?;
    run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        // Stop before Lambda's deadline, reporting what is left.
        let deadline = shared::sync::deadline_from(event.context.deadline, std::time::SystemTime::now());
        let sync = &sync;
        async move { Ok::<_, Error>(sync.invoke(event.payload, deadline).await?) }
    }))
    .await
}
