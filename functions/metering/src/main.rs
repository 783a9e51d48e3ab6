//! `metering` Lambda: the meter's schedule, wired to
//! [`shared::metering::meter::Meter::run`] (docs/metering.md). Each
//! invocation is one run, on the clock of the scheduled event's `time`.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use shared::aws_marketplace::metering::MeterApi;
use shared::metering::meter::clock_of;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let api = MeterApi::from_env(env!("CARGO_PKG_NAME")).await?;
    run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let api = &api;
        // Stop before Lambda's deadline, reporting what is left.
        let deadline = shared::sync::deadline_from(event.context.deadline, std::time::SystemTime::now());
        async move {
            let Some(meter) = &api.meter else {
                return Ok::<_, Error>(
                    serde_json::json!({"metering": "off: AWS_MARKETPLACE_PRODUCT_CODE is empty"}),
                );
            };
            let report = meter
                .run(clock_of(&event.payload, chrono::Utc::now()), deadline)
                .await?;
            println!("{}", report.metrics_line(chrono::Utc::now().timestamp_millis()));
            Ok(serde_json::to_value(&report)?)
        }
    }))
    .await
}
