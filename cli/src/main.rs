//! `provider`: the vendor's command line, with the same configuration as the
//! functions (environment variables, AWS credentials from the usual chain).
//!
//! ```text
//! provider check --manifest FILE   test a deployment against the marketplaces' contracts
//! provider show ID                 a resource (or account) and its audit history
//! provider usage ID [--hours 48]   a resource's usage counters and how their metering went
//! provider rotate RESOURCE_ID      fresh secret config values; the stream pushes them to Clever Cloud
//! provider reconcile               compare Clever Cloud's add-on list with the table, report drift
//! provider sync [ID]               perform every pending or failed push now (or one item's)
//! provider secrets init|rotate     create the deployment's secret, rotate one of its values
//! provider dlq list|redrive        the platform sync's dead-letter queue
//! provider verify-signature ...    check an Addon-Signature header against a request body
//! provider oidc-key                a new signing key for the OpenID Connect provider
//! ```
//!
//! One convention for every command (docs/operating.md, "The provider
//! command"): exit 0 when all is well; 1 for findings, drift or something
//! still owed; 2 for a usage or configuration error; 3 when AWS or a
//! platform cannot be reached. `--json` prints one JSON document on stdout,
//! errors included (`{"error": …, "exit": N}`). Config values and secrets
//! are never printed.

mod aws_try;
mod calls;
mod check;
mod dlq;
mod events;
mod listing;
mod manifest;
mod secrets;
mod signin;
mod stack;
mod tryout;

use clap::{Parser, Subcommand};
use shared::clevercloud::vendor::{VendorClient, VendorError};
use shared::config::{self, CleverCloudConfig, ConfigError};
use shared::model::MeterState;
use shared::provisioner::{signature, ProvisionerError, VendorProvisioner};
use shared::secret::Secret;
use shared::store::{AuditReader, DynamoStore, ResourceReader, StoreError, SyncSubject};
use shared::sync::{self, SyncError};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "provider", version, about = "The add-on provider's command line")]
struct Cli {
    /// Print one JSON document on standard output, errors included.
    #[arg(long, global = true)]
    json: bool,
    /// Aim at this deployed stack: the table, the secret, the queue and the
    /// rest are read from its outputs and parameters (and, for `check`, the
    /// URLs and the secret's values), not from the environment.
    #[arg(long, global = true, value_name = "NAME")]
    stack: Option<String>,
    /// The AWS region (AWS_REGION otherwise).
    #[arg(long, global = true)]
    region: Option<String>,
    /// The AWS profile (AWS_PROFILE otherwise).
    #[arg(long, global = true)]
    profile: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Test a deployment (local, staging, production) against the
    /// marketplaces' contracts. Changes: provisions, signs in to and
    /// deprovisions test resources on it (docs/checking.md); exits 1 when
    /// any check fails.
    Check(check::CheckArgs),
    /// Show a resource (`res_…`) with its latest audit events. Changes
    /// nothing; config values are not shown, only their names.
    Show {
        /// This provider's resource id.
        id: String,
        /// How many audit events, newest first.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i32).range(1..=1000))]
        events: i32,
    },
    /// List the add-ons the stack holds (TABLE_NAME), oldest first, with
    /// marketplace, plan and status. Changes nothing (a full read of the
    /// table).
    List {
        /// Only this marketplace's, as stored.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(PLATFORMS.map(|p| p.as_str())))]
        marketplace: Option<String>,
    },
    /// A resource's usage counters (docs/metering.md), oldest hour first:
    /// each (hour, dimension) with its quantity and how its metering went
    /// (open, sealed, metered, failed, lost), and the totals per
    /// dimension. Changes nothing; exits 1 when any hour failed or was
    /// lost.
    Usage {
        /// This provider's resource id (`res_…`).
        id: String,
        /// How many hours back, the current one included.
        #[arg(long, default_value_t = 48, value_parser = clap::value_parser!(u32).range(1..=24 * 400))]
        hours: u32,
    },
    /// Give a resource fresh secret config values. Changes: the resource's
    /// config (and the vendor's, through PROVISIONER_URL); the stream then
    /// pushes it to the add-on's marketplace (Clever Cloud's vendor API,
    /// Heroku's or Scalingo's config API). Prints the names of the vars
    /// rotated.
    Rotate {
        /// This provider's resource id (`res_…`).
        resource_id: String,
        /// Print what would change and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Compare Clever Cloud's add-on list with the table, with config
    /// versions a marketplace has not confirmed (Clever Cloud, Heroku,
    /// Scalingo), Heroku add-ons without OAuth tokens and pushes that failed
    /// for good. Changes nothing; exits 1 on any drift.
    Reconcile,
    /// Perform everything the platforms are owed now (config pushes to
    /// Clever Cloud, Heroku and Scalingo, Heroku's grant exchanges and
    /// provision actions, Cloudmore organisations), pending or failed,
    /// whatever a platform said before. Changes: the platforms, and the
    /// items' sync marks; idempotent. Exits 1 when something is still owed.
    Sync {
        /// Only this resource (`res_…`) or Cloud 66 account (`acc_…`).
        id: Option<String>,
    },
    /// Create the deployment's secret, or rotate one of its values.
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// The platform sync's dead-letter queue (SYNC_DEAD_LETTER_QUEUE_URL,
    /// the stack output SyncDeadLetterQueueUrl): list, or redrive.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// The lifecycle events this stack published, as the bus received them,
    /// newest first (EVENTS_LOG_GROUP, the stack output
    /// LifecycleEventsLogGroup). Changes nothing; --follow keeps printing
    /// new ones.
    Events(events::EventsArgs),
    /// One function's log lines, newest first, from its log group in the
    /// stack (--stack NAME). Changes nothing; --follow keeps printing new
    /// ones.
    Logs(events::LogsArgs),
    /// Try one marketplace call as the marketplace makes it, against the
    /// stack a manifest names (docs/trying.md).
    #[command(subcommand)]
    Try(tryout::TryCommand),
    /// Print a marketplace's add-on manifest (JSON, stdout only), from the
    /// listing (marketplace.toml) and the stack (--stack, or the
    /// environment `make run` exports). Changes nothing; it holds the
    /// passwords and salts: keep it out of version control.
    Manifest(manifest::ManifestArgs),
    /// Check a provisioning request's `Addon-Signature` header against its
    /// body, with the secret from PROVISIONER_SIGNING_SECRET. Changes
    /// nothing; exits 1 when it does not hold.
    VerifySignature {
        /// The header's value: `t=<unix seconds>,v1=<hex>`.
        #[arg(long)]
        header: String,
        /// The request body, exactly as received (default: standard input).
        #[arg(long, value_name = "FILE")]
        body: Option<std::path::PathBuf>,
        /// How old or far ahead the timestamp may be, in seconds.
        #[arg(long, default_value_t = signature::DEFAULT_TOLERANCE_SECONDS)]
        tolerance: i64,
    },
    /// Print a new signing key for the OpenID Connect provider
    /// (`OIDC_SIGNING_KEY`: 2048-bit RSA, PKCS#8 PEM). Changes nothing;
    /// `provider secrets rotate OIDC_SIGNING_KEY` puts one in the secret.
    /// With --json: `{"OIDC_SIGNING_KEY": "<pem>", "kid": "<key id>"}`.
    OidcKey,
}

/// The marketplaces a resource can come from (`provider list --marketplace`).
const PLATFORMS: [shared::model::Platform; 5] = shared::model::Platform::ALL;

/// What a command found: all well (exit 0), or something to act on (exit 1),
/// its report printed either way.
pub enum Outcome {
    Done(serde_json::Value),
    Findings(serde_json::Value),
}

/// Why a command could not do its work.
#[derive(Debug)]
pub enum Failure {
    /// Exit 1: the command ran and failed (a refusal, a missing resource).
    Failed(String),
    /// Exit 2: wrong arguments or configuration; nothing was attempted.
    Usage(String),
    /// Exit 3: AWS or a platform could not be reached.
    Unreachable(String),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Failed(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Unreachable(_) => 3,
        }
    }

    fn message(&self) -> &str {
        match self {
            Failure::Failed(message) | Failure::Usage(message) | Failure::Unreachable(message) => message,
        }
    }
}

/// An AWS SDK error by the convention: AWS out of reach is exit 3; its
/// refusal (no such secret, access denied, a name taken) a failure of the
/// command.
pub fn aws_failure<E, R>(what: &str, err: aws_sdk_sqs::error::SdkError<E, R>) -> Failure
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_sqs::error::{DisplayErrorContext, SdkError};
    let message = format!("could not {what}: {}", DisplayErrorContext(&err));
    match err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => Failure::Unreachable(message),
        _ => Failure::Failed(message),
    }
}

impl From<ConfigError> for Failure {
    fn from(err: ConfigError) -> Self {
        Failure::Usage(err.to_string())
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) => Failure::Unreachable(err.to_string()),
            StoreError::Internal(_) => Failure::Failed(err.to_string()),
        }
    }
}

impl From<SyncError> for Failure {
    fn from(err: SyncError) -> Self {
        let message = err.to_string();
        match err {
            SyncError::Store(err) => err.into(),
            SyncError::Vendor(VendorError::Unavailable { .. })
            | SyncError::Provisioner(ProvisionerError::Unavailable(_))
            | SyncError::OutOfTime => Failure::Unreachable(message),
            _ => Failure::Failed(message),
        }
    }
}

fn main() -> ExitCode {
    let mut cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // Help and version are no error; every usage error exits 2, and
            // with --json is one JSON document like every other error.
            if err.use_stderr() && std::env::args().any(|arg| arg == "--json") {
                let message = err.render().to_string();
                let first = message.lines().next().unwrap_or_default();
                let first = first.strip_prefix("error: ").unwrap_or(first);
                println!(
                    "{}",
                    serde_json::json!({ "error": first, "usage": message, "exit": 2 })
                );
            } else {
                let _ = err.print();
            }
            return ExitCode::from(if err.use_stderr() { 2 } else { 0 });
        }
    };
    // The process environment is changed here, before any other thread
    // exists; the commands then read it as the functions read theirs.
    if let Some(region) = &cli.region {
        std::env::set_var("AWS_REGION", region);
    }
    if let Some(profile) = &cli.profile {
        std::env::set_var("AWS_PROFILE", profile);
    }
    if let Some(name) = cli.stack.clone() {
        let for_check = matches!(cli.command, Command::Check(_) | Command::Manifest(_));
        let read = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| Failure::Failed(err.to_string()))
            .and_then(|runtime| runtime.block_on(stack::Deployed::read(&name, for_check)));
        match read {
            Ok(deployed) => {
                for (var, value) in &deployed.env {
                    std::env::set_var(var, value);
                }
                match &mut cli.command {
                    Command::Check(args) => args.aim_at(&deployed.outputs, &deployed.env),
                    Command::Manifest(args) if args.base_url.is_none() => {
                        args.base_url = deployed.base_url();
                    }
                    _ => {}
                }
            }
            Err(failure) => return report(Err(failure), cli.json),
        }
    }
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(err) => report(Err(Failure::Failed(err.to_string())), cli.json),
    }
}

async fn run(cli: Cli) -> ExitCode {
    let json = cli.json;
    let stack = cli.stack.clone();
    let result = match cli.command {
        Command::Check(args) => match check::main(args, json).await {
            Ok(code) => return code,
            Err(failure) => Err(failure),
        },
        Command::Show { id, events } => show(&id, events).await,
        Command::List { marketplace } => list(marketplace.as_deref()).await,
        Command::Usage { id, hours } => usage(&id, hours).await,
        Command::Rotate { resource_id, dry_run } => rotate(&resource_id, dry_run).await,
        Command::Reconcile => reconcile().await,
        Command::Sync { id } => sync_now(id.as_deref()).await,
        Command::Secrets(command) => secrets::run(command).await,
        Command::Dlq(command) => dlq::run(command).await,
        Command::Events(args) => events::run(args).await,
        Command::Logs(args) => events::logs(stack.as_deref(), args).await,
        Command::Try(command) => tryout::run(command).await,
        Command::Manifest(args) => {
            match manifest::build(&args, &config::process_env) {
                // The manifest alone, pretty, whatever --json says: it is the
                // document the marketplace reads.
                Ok(manifest) => {
                    println!("{}", serde_json::to_string_pretty(&manifest).unwrap_or_default());
                    return ExitCode::SUCCESS;
                }
                Err(failure) => Err(failure),
            }
        }
        Command::VerifySignature {
            header,
            body,
            tolerance,
        } => verify_signature(&header, body.as_deref(), tolerance),
        Command::OidcKey => match oidc_key() {
            Ok((pem, _)) if !json => {
                print!("{pem}");
                return ExitCode::SUCCESS;
            }
            Ok((pem, kid)) => Ok(Outcome::Done(
                serde_json::json!({ "OIDC_SIGNING_KEY": pem, "kid": kid }),
            )),
            Err(message) => Err(Failure::Failed(message)),
        },
    };
    report(result, json)
}

/// Prints the outcome by the convention and gives its exit status.
fn report(result: Result<Outcome, Failure>, json: bool) -> ExitCode {
    match result {
        Ok(Outcome::Done(output)) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Ok(Outcome::Findings(output)) => {
            println!("{output}");
            ExitCode::FAILURE
        }
        Err(failure) => {
            let code = failure.exit_code();
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "error": failure.message(), "exit": code })
                );
            } else {
                eprintln!("provider: {}", failure.message());
            }
            ExitCode::from(code)
        }
    }
}

pub async fn store() -> Result<DynamoStore, Failure> {
    let table = config::required(&config::process_env, "TABLE_NAME")?;
    Ok(DynamoStore::new(
        DynamoStore::client_from_env("provider").await,
        table,
    ))
}

/// The deployment's configuration with its secret's values (`SECRETS_NAME`, every part),
/// as the functions read it at cold start.
async fn secret_environment() -> Result<config::Environment, Failure> {
    let aws = config::aws_sdk_config("provider").await;
    let (_, environment) = shared::refresh::SecretSource::load(&aws, "provider").await?;
    Ok(environment)
}

async fn show(id: &str, events: i32) -> Result<Outcome, Failure> {
    let store = store().await?;
    let resource = store
        .get_resource(id)
        .await?
        .ok_or_else(|| Failure::Failed(format!("no resource {id}")))?;
    let history = store.recent_events(id, events).await?;
    let mut shown = serde_json::to_value(&resource).map_err(|err| Failure::Failed(err.to_string()))?;
    // Names only: a config value is a customer's credential.
    shown["config"] = serde_json::json!(resource.config.names().collect::<Vec<_>>());
    Ok(Outcome::Done(
        serde_json::json!({ "resource": shown, "events": history }),
    ))
}

async fn usage(id: &str, hours: u32) -> Result<Outcome, Failure> {
    use shared::store::UsageReader;
    let store = store().await?;
    if store.get_resource(id).await?.is_none() {
        return Err(Failure::Failed(format!("no resource {id}")));
    }
    let now = chrono::Utc::now();
    let from = shared::metering::hour_of(now) - chrono::Duration::hours(i64::from(hours) - 1);
    let counters = store.usage_since(id, &shared::metering::hour_text(from)).await?;
    let totals: serde_json::Map<String, serde_json::Value> = shared::metering::totals(&counters)
        .into_iter()
        .map(|(dimension, reported, _)| (dimension, reported.into()))
        .collect();
    let unsettled = counters
        .iter()
        .filter(|counter| matches!(counter.state, MeterState::Failed | MeterState::Lost))
        .count();
    let listed: Vec<serde_json::Value> = counters
        .iter()
        .map(|counter| {
            serde_json::json!({
                "hour": counter.hour, "dimension": counter.dimension, "quantity": counter.quantity,
                "state": counter.state.as_str(), "outcome": counter.outcome,
                "attempts": counter.attempts, "metering_record_id": counter.metering_record_id,
                "sealed_at": counter.sealed_at, "finished_at": counter.finished_at,
            })
        })
        .collect();
    let output = serde_json::json!({
        "resource_id": id,
        "from": shared::metering::hour_text(from),
        "counters": listed,
        "totals": totals,
        "failed_or_lost": unsettled,
    });
    Ok(if unsettled > 0 {
        Outcome::Findings(output)
    } else {
        Outcome::Done(output)
    })
}

async fn list(marketplace: Option<&str>) -> Result<Outcome, Failure> {
    use shared::store::SyncStore;
    let scan = store().await?.all_resources().await?;
    let mut resources: Vec<_> = scan
        .resources
        .iter()
        .filter(|resource| marketplace.is_none_or(|wanted| resource.platform.as_str() == wanted))
        .collect();
    resources.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    let listed: Vec<serde_json::Value> = resources
        .iter()
        .map(|resource| {
            serde_json::json!({
                "id": resource.id, "marketplace": resource.platform.as_str(),
                "marketplace_id": resource.addon_id, "plan": resource.plan,
                "status": resource.status, "created_at": resource.created_at,
            })
        })
        .collect();
    Ok(Outcome::Done(serde_json::json!({
        "resources": listed,
        "count": listed.len(),
        "unreadable": scan.unreadable,
    })))
}

async fn rotate(resource_id: &str, dry_run: bool) -> Result<Outcome, Failure> {
    let environment = secret_environment().await?;
    let lookup = environment.lookup();
    let addon_id = config::required(&lookup, "ADDON_ID")?;
    let provisioner = VendorProvisioner::from_lookup(&lookup, &addon_id)?;
    let store = store().await?;
    if dry_run {
        let resource = store
            .get_resource(resource_id)
            .await?
            .filter(|resource| resource.is_active())
            .ok_or_else(|| Failure::Failed(format!("no active resource {resource_id}")))?;
        let asks = match provisioner {
            VendorProvisioner::Http(_) => "the vendor's endpoint (PROVISIONER_URL), with action rotate",
            VendorProvisioner::Default(_) => "the default provisioner: every var but *_URL gets a new value",
        };
        return Ok(Outcome::Done(serde_json::json!({
            "dry_run": true,
            "resource_id": resource_id,
            "config_vars": resource.config.names().collect::<Vec<_>>(),
            "config_version": resource.config_version,
            "would_write_config_version": resource.config_version + 1,
            "new_values_from": asks,
        })));
    }
    let rotated = sync::rotate_credentials(&store, &provisioner, resource_id).await?;
    Ok(Outcome::Done(
        serde_json::json!({ "resource_id": resource_id, "rotated": rotated }),
    ))
}

async fn reconcile() -> Result<Outcome, Failure> {
    let environment = secret_environment().await?;
    let lookup = environment.lookup();
    let addon = CleverCloudConfig::from_lookup(&lookup)?;
    let vendor = VendorClient::from_lookup(&lookup, &addon)?;
    let report = sync::reconcile(&store().await?, &vendor).await?;
    let drift = report.has_drift();
    let report = serde_json::to_value(report).map_err(|err| Failure::Failed(err.to_string()))?;
    Ok(if drift {
        Outcome::Findings(report)
    } else {
        Outcome::Done(report)
    })
}

async fn sync_now(id: Option<&str>) -> Result<Outcome, Failure> {
    let platforms = sync::PlatformSync::from_env("provider").await?;
    match id {
        Some(id) => {
            let subject = if id.starts_with("acc_") {
                SyncSubject::Account(id.to_string())
            } else {
                SyncSubject::Resource(id.to_string())
            };
            let settled = platforms.settle_now(&subject).await?;
            let report = serde_json::json!({ "id": id, "outcome": settled });
            Ok(if settled == sync::Settled::Done {
                Outcome::Done(report)
            } else {
                Outcome::Findings(report)
            })
        }
        None => {
            let report = platforms.sweep(true, None).await?;
            let owed = report.pending + report.failed > 0;
            let report = serde_json::to_value(report).map_err(|err| Failure::Failed(err.to_string()))?;
            Ok(if owed {
                Outcome::Findings(report)
            } else {
                Outcome::Done(report)
            })
        }
    }
}

fn verify_signature(
    header: &str,
    body: Option<&std::path::Path>,
    tolerance: i64,
) -> Result<Outcome, Failure> {
    let secret = config::required(&config::process_env, "PROVISIONER_SIGNING_SECRET")?;
    let body = match body {
        Some(path) => std::fs::read(path)
            .map_err(|err| Failure::Usage(format!("cannot read {}: {err}", path.display())))?,
        None => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                .map_err(|err| Failure::Usage(format!("cannot read standard input: {err}")))?;
            bytes
        }
    };
    let now = chrono::Utc::now().timestamp();
    signature::verify(&Secret::new(secret), header, &body, now, tolerance)
        .map_err(|err| Failure::Failed(err.to_string()))?;
    Ok(Outcome::Done(serde_json::json!({ "valid": true })))
}

/// A new signing key and its key id (as the JWKS will publish it).
fn oidc_key() -> Result<(String, String), String> {
    let pem = shared::oidc::new_signing_key_pem()?;
    let key = shared::oidc::SigningKey::from_pem("OIDC_SIGNING_KEY", &pem).map_err(|err| err.to_string())?;
    Ok((pem.clone(), key.kid().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn help(path: &[&str]) -> String {
        let mut command = Cli::command();
        let mut current = &mut command;
        for name in path {
            current = current.find_subcommand_mut(name).expect("a subcommand");
        }
        current.render_long_help().to_string()
    }

    #[test]
    fn secrets_rotate_help_names_every_variable_it_takes() {
        let shown = help(&["secrets", "rotate"]);
        let takes = secrets::rotatable();
        assert!(takes.len() >= 13, "{takes:?}");
        for var in takes {
            assert!(shown.contains(var), "{var} missing from the help:\n{shown}");
        }
    }

    #[test]
    fn secrets_init_help_names_every_value_it_generates() {
        let shown = help(&["secrets", "init"]);
        for var in [
            "ADDON_PASSWORD",
            "ADDON_SSO_SALT",
            "HEROKU_PASSWORD",
            "HEROKU_SSO_SALT",
            "SCALINGO_PASSWORD",
            "SCALINGO_SSO_SALT",
            "PROVISIONER_SIGNING_SECRET",
            "HEROKU_TOKEN_KEY",
            "OIDC_SIGNING_KEY",
        ] {
            assert!(shown.contains(var), "{var} missing:\n{shown}");
        }
        assert!(
            shown.contains("CLOUD66_PROVIDER_UID"),
            "taken from the environment:\n{shown}"
        );
    }

    #[test]
    fn the_version_is_the_workspaces() {
        assert_eq!(Cli::command().get_version(), Some(env!("CARGO_PKG_VERSION")));
    }
}
