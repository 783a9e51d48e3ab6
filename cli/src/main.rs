//! `provider`: the vendor's command line, with the same configuration as the
//! functions (environment variables, AWS credentials from the usual chain).
//!
//! ```text
//! provider check --manifest FILE  test a deployment against the marketplaces' contracts
//! provider rotate RESOURCE_ID     fresh secret config values; the stream pushes them to Clever Cloud
//! provider reconcile              compare Clever Cloud's add-on list with the table, report config drift
//! provider sync [ID]              perform every pending or failed push now (or one item's)
//! provider verify-signature ...   check an Addon-Signature header against a request body
//! provider oidc-key [--json]      a new signing key for the OpenID Connect provider
//! ```
//!
//! Config values and secrets are never printed.

mod check;

use clap::{Parser, Subcommand};
use shared::clevercloud::vendor::VendorClient;
use shared::config::{self, CleverCloudConfig};
use shared::provisioner::{signature, VendorProvisioner};
use shared::secret::Secret;
use shared::store::{DynamoStore, SyncSubject};
use shared::sync;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "provider", version, about = "The add-on provider's command line")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Test a deployment (local, staging, production) against the
    /// marketplaces' contracts; exits non-zero when any check fails.
    Check(check::CheckArgs),
    /// Give a resource fresh secret config values (JSON on stdout: the names
    /// of the vars rotated); the stream pushes them to Clever Cloud.
    Rotate {
        /// This provider's resource id (`res_…`).
        resource_id: String,
    },
    /// Compare Clever Cloud's add-on list with the table and print the
    /// differences as JSON, with config versions Clever Cloud has not
    /// confirmed and pushes that failed for good; changes nothing.
    Reconcile,
    /// Perform every pending or failed push to Clever Cloud and Cloudmore
    /// now, whatever a platform said before (JSON report on stdout);
    /// idempotent. Exits 1 when something is still owed.
    Sync {
        /// Only this resource (`res_…`) or Cloud 66 account (`acc_…`).
        id: Option<String>,
    },
    /// Check a provisioning request's `Addon-Signature` header against its
    /// body, with the secret from PROVISIONER_SIGNING_SECRET; exits 1 when
    /// it does not hold.
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
    /// (`OIDC_SIGNING_KEY`: 2048-bit RSA, PKCS#8 PEM); README "Rotating
    /// the OIDC signing key" says where it goes.
    OidcKey {
        /// Print `{"OIDC_SIGNING_KEY": "<pem>", "kid": "<key id>"}`, ready
        /// to merge into the secret, instead of the PEM.
        #[arg(long)]
        json: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Check(args) => return check::main(args).await,
        Command::Rotate { resource_id } => rotate(&resource_id).await,
        Command::Reconcile => reconcile().await,
        Command::Sync { id } => sync_now(id.as_deref()).await,
        Command::VerifySignature {
            header,
            body,
            tolerance,
        } => verify_signature(&header, body.as_deref(), tolerance),
        Command::OidcKey { json } => match oidc_key() {
            Ok((pem, _)) if !json => {
                print!("{pem}");
                return ExitCode::SUCCESS;
            }
            Ok((pem, kid)) => Ok(serde_json::json!({ "OIDC_SIGNING_KEY": pem, "kid": kid })),
            Err(message) => Err(message),
        },
    };
    match result {
        Ok(output) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("provider: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn store() -> Result<DynamoStore, String> {
    let table = config::required(&config::process_env, "TABLE_NAME").map_err(|err| err.to_string())?;
    Ok(DynamoStore::new(
        DynamoStore::client_from_env("provider").await,
        table,
    ))
}

/// The deployment's configuration with its secret's values (`SECRETS_ARN`),
/// as the functions read it at cold start.
async fn secret_environment() -> Result<config::Environment, String> {
    let aws = config::aws_sdk_config("provider").await;
    let (_, environment) = shared::refresh::SecretSource::load(&aws)
        .await
        .map_err(|err| err.to_string())?;
    Ok(environment)
}

async fn rotate(resource_id: &str) -> Result<serde_json::Value, String> {
    let environment = secret_environment().await?;
    let lookup = environment.lookup();
    let addon_id = config::required(&lookup, "ADDON_ID").map_err(|err| err.to_string())?;
    let provisioner = VendorProvisioner::from_lookup(&lookup, &addon_id).map_err(|err| err.to_string())?;
    let rotated = sync::rotate_credentials(&store().await?, &provisioner, resource_id)
        .await
        .map_err(|err| err.to_string())?;
    Ok(serde_json::json!({ "resource_id": resource_id, "rotated": rotated }))
}

async fn reconcile() -> Result<serde_json::Value, String> {
    let environment = secret_environment().await?;
    let lookup = environment.lookup();
    let addon = CleverCloudConfig::from_lookup(&lookup).map_err(|err| err.to_string())?;
    let vendor = VendorClient::from_lookup(&lookup, &addon).map_err(|err| err.to_string())?;
    let report = sync::reconcile(&store().await?, &vendor)
        .await
        .map_err(|err| err.to_string())?;
    serde_json::to_value(report).map_err(|err| err.to_string())
}

async fn sync_now(id: Option<&str>) -> Result<serde_json::Value, String> {
    let platforms = sync::PlatformSync::from_env("provider")
        .await
        .map_err(|err| err.to_string())?;
    match id {
        Some(id) => {
            let subject = if id.starts_with("acc_") {
                SyncSubject::Account(id.to_string())
            } else {
                SyncSubject::Resource(id.to_string())
            };
            let settled = platforms
                .settle_now(&subject)
                .await
                .map_err(|err| err.to_string())?;
            if settled != sync::Settled::Done {
                return Err(serde_json::json!({ "id": id, "outcome": settled }).to_string());
            }
            Ok(serde_json::json!({ "id": id, "outcome": settled }))
        }
        None => {
            let report = platforms.sweep(true, None).await.map_err(|err| err.to_string())?;
            if report.pending + report.failed > 0 {
                return Err(serde_json::to_string(&report).unwrap_or_default());
            }
            serde_json::to_value(report).map_err(|err| err.to_string())
        }
    }
}

fn verify_signature(
    header: &str,
    body: Option<&std::path::Path>,
    tolerance: i64,
) -> Result<serde_json::Value, String> {
    let secret = config::required(&config::process_env, "PROVISIONER_SIGNING_SECRET")
        .map_err(|err| err.to_string())?;
    let body = match body {
        Some(path) => std::fs::read(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?,
        None => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                .map_err(|err| format!("cannot read standard input: {err}"))?;
            bytes
        }
    };
    let now = chrono::Utc::now().timestamp();
    signature::verify(&Secret::new(secret), header, &body, now, tolerance).map_err(|err| err.to_string())?;
    Ok(serde_json::json!({ "valid": true }))
}

/// A new signing key and its key id (as the JWKS will publish it).
fn oidc_key() -> Result<(String, String), String> {
    let pem = shared::oidc::new_signing_key_pem()?;
    let key = shared::oidc::SigningKey::from_pem("OIDC_SIGNING_KEY", &pem).map_err(|err| err.to_string())?;
    Ok((pem.clone(), key.kid().to_string()))
}
