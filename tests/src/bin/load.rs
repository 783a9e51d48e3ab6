//! `make load`: N provision → plan change → deprovision cycles through the
//! local stack at concurrency C, then N bare DynamoDB PutItem calls from the
//! same machine at the same concurrency. The ratio of the two is the
//! handler's overhead over the storage it cannot avoid.
//!
//! Usage: load [--cycles N] [--concurrency C]   (inside scripts/stack.sh test)

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tests::*;
use tokio::sync::Mutex;

#[derive(Default)]
struct Samples {
    latencies: Vec<Duration>,
    errors: usize,
}

impl Samples {
    fn record(&mut self, started: Instant, ok: bool) {
        self.latencies.push(started.elapsed());
        if !ok {
            self.errors += 1;
        }
    }

    fn report(&mut self, name: &str) {
        self.latencies.sort();
        let percentile = |p: f64| {
            let index =
                ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len()) - 1;
            self.latencies[index].as_secs_f64() * 1000.0
        };
        println!(
            "{name:<22} n={:<6} p50={:>8.2} ms  p99={:>8.2} ms  errors={}",
            self.latencies.len(),
            percentile(0.50),
            percentile(0.99),
            self.errors
        );
    }
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number")))
        .unwrap_or(default)
}

/// Runs `total` jobs on `concurrency` workers, each job numbered from 0.
async fn run_workers<F, Fut>(total: usize, concurrency: usize, job: F)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let job = Arc::new(job);
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, job) = (next.clone(), job.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        break;
                    }
                    job(n).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("load worker");
    }
}

#[tokio::main]
async fn main() {
    let cycles = arg("--cycles", 200);
    let concurrency = arg("--concurrency", 8);
    println!(
        "load: {cycles} cycles at concurrency {concurrency} against {}",
        base_url()
    );

    let market = Arc::new(Marketplace::from_env());
    let samples: Arc<[Mutex<Samples>; 4]> = Arc::new(Default::default());
    let started = Instant::now();
    {
        let (market, samples) = (market.clone(), samples.clone());
        run_workers(cycles, concurrency, move |_| {
            let (market, samples) = (market.clone(), samples.clone());
            async move {
                let addon_id = unique("load");
                let t = Instant::now();
                let (status, body) = json(market.provision(provision_body(&addon_id, "basic")).await).await;
                samples[0].lock().await.record(t, status == 200);
                let Some(id) = body["id"].as_str() else { return };
                let t = Instant::now();
                let ok = market
                    .change_plan(id, json!({"addon_id": addon_id, "plan": "premium"}))
                    .await
                    .status()
                    == 200;
                samples[1].lock().await.record(t, ok);
                let t = Instant::now();
                let ok = market.deprovision(id).await.status() == 200;
                samples[2].lock().await.record(t, ok);
            }
        })
        .await;
    }
    let elapsed = started.elapsed();

    let client = dynamo_client().await;
    let table = table_name();
    {
        let samples = samples.clone();
        run_workers(cycles, concurrency, move |n| {
            let (client, table, samples) = (client.clone(), table.clone(), samples.clone());
            async move {
                let t = Instant::now();
                let ok = client
                    .put_item()
                    .table_name(table)
                    .item("pk", AttributeValue::S(format!("LOAD#{}", unique("put"))))
                    .item("sk", AttributeValue::S(n.to_string()))
                    .send()
                    .await
                    .is_ok();
                samples[3].lock().await.record(t, ok);
            }
        })
        .await;
    }

    for (index, name) in ["provision", "plan change", "deprovision", "bare PutItem"]
        .iter()
        .enumerate()
    {
        samples[index].lock().await.report(name);
    }
    println!(
        "load: {} cycles in {:.1} s ({:.0} requests/s)",
        cycles,
        elapsed.as_secs_f64(),
        (3 * cycles) as f64 / elapsed.as_secs_f64()
    );
    let errors: usize = total_errors(&samples).await;
    if errors > 0 {
        std::process::exit(1);
    }
}

async fn total_errors(samples: &[Mutex<Samples>; 4]) -> usize {
    let mut errors = 0;
    for sample in samples {
        errors += sample.lock().await.errors;
    }
    errors
}
