//! `provider check`: a conformance suite a vendor runs against any deployment
//! (the local stack, staging, production). It calls the deployment exactly as
//! Clever Cloud and Cloud 66 do, judges each answer against the platforms'
//! documents (docs/clevercloud.md, docs/cloud66.md, docs/oidc.md), prints a line per check and a summary, and
//! deprovisions everything it provisioned.

mod aws;
mod cleanup;
mod heroku;
mod lifecycle;
mod oidc;
mod probe;
mod report;
mod scalingo;
mod sso;
mod target;

use clap::{Args, ValueEnum};
use cleanup::Cleanup;
use lifecycle::Lifecycle;
use oidc::OidcChecks;
use probe::Probe;
use report::Report;
use shared::config;
use sso::SsoChecks;
use std::path::PathBuf;
use std::process::ExitCode;
use target::Target;

/// Secrets are read from the manifest file or the environment, never from
/// flags: `ADDON_PASSWORD`, `ADDON_SSO_SALT`, for Cloud 66
/// `CLOUD66_PROVIDER`, `CLOUD66_PROVIDER_UID`, `CLOUD66_MULTIPASS_KEY`, and
/// for the OpenID Connect provider (when the deployment publishes one) the
/// client `OIDC_CHECK_CLIENT_ID`, `OIDC_CHECK_CLIENT_SECRET`,
/// `OIDC_CHECK_REDIRECT_URI`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Which marketplace's protocol to check: Clever Cloud's (with Cloud 66
    /// and the OpenID Connect provider), Heroku's (docs/heroku.md),
    /// Scalingo's (docs/scalingo.md), or AWS Marketplace's registration and
    /// events against the stand-in AWS Marketplace (docs/aws-marketplace.md).
    #[arg(long, value_enum, default_value_t = Suite::Clevercloud)]
    marketplace: Suite,
    /// AWS Marketplace: the stand-in AWS Marketplace that mints tokens
    /// (default: AWS_MARKETPLACE_STANDIN_URL).
    #[arg(long, value_name = "URL")]
    stand_in: Option<String>,
    /// AWS Marketplace: Lambda's Invoke API, where `marketplace-events` is
    /// handed events (default: LOCAL_INVOKE_URL, `cargo lambda watch`'s).
    #[arg(long, value_name = "URL")]
    invoke_url: Option<String>,
    /// The marketplace's manifest (JSON), e.g. one `make run` prints.
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// Which of the manifest's endpoints to call.
    #[arg(long, value_enum, default_value_t = Endpoints::Production)]
    endpoints: Endpoints,
    /// The add-on id (manifest `id`); overrides the manifest.
    #[arg(long)]
    addon_id: Option<String>,
    /// The lifecycle endpoint (`base_url`); overrides the manifest.
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// The SSO endpoint (`sso_url`); overrides the manifest.
    #[arg(long, value_name = "URL")]
    sso_url: Option<String>,
    /// The manifest's `config_vars`, comma-separated; overrides the manifest.
    #[arg(long, value_delimiter = ',', value_name = "VARS")]
    config_vars: Option<Vec<String>>,
    /// The plan slug to provision with.
    #[arg(long, default_value = "basic")]
    plan: String,
    /// The plan slug to change to.
    #[arg(long, default_value = "premium")]
    new_plan: String,
    /// Where `/cloud66/sso/start` and `/cloud66/sso/callback` live (default:
    /// the SSO URL less `/clevercloud/sso/login`).
    #[arg(long, value_name = "URL")]
    cloud66_url: Option<String>,
    /// The Cloud 66 user the sign-in checks use (an account with this email
    /// is created on the deployment if absent).
    #[arg(long, default_value = shared::sync::CHECK_EMAIL)]
    cloud66_email: String,
    /// Remove every record the run made from the deployment's table at the
    /// end (the default; needs TABLE_NAME or --stack, and read and delete
    /// rights on the table).
    #[arg(long, overrides_with = "no_cleanup")]
    cleanup: bool,
    /// Keep the run's records (deprovisioned resources, sessions, the Cloud 66
    /// account) in the table.
    #[arg(long)]
    no_cleanup: bool,
    /// How many identical provisions to send at once.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(2..=200))]
    concurrency: u16,
}

impl CheckArgs {
    /// `--stack`: the stack's URLs, id and config vars, where no flag or
    /// manifest gives them.
    pub fn aim_at(
        &mut self,
        outputs: &std::collections::BTreeMap<String, String>,
        env: &std::collections::BTreeMap<&'static str, String>,
    ) {
        if self.manifest.is_some() {
            return;
        }
        if self.marketplace == Suite::Aws {
            self.base_url = self.base_url.take().or_else(|| crate::stack::root_url(outputs));
            return;
        }
        if self.marketplace == Suite::Scalingo {
            let root = crate::stack::root_url(outputs);
            let url = |path: &str| root.as_ref().map(|root| format!("{root}{path}"));
            self.base_url = self.base_url.take().or_else(|| url("/scalingo/resources"));
            self.sso_url = self.sso_url.take().or_else(|| url("/scalingo/sso"));
            self.addon_id = self
                .addon_id
                .take()
                .or_else(|| env.get("SCALINGO_USERNAME").cloned());
            if self.config_vars.is_none() {
                self.config_vars = env
                    .get("ADDON_CONFIG_VARS")
                    .map(|vars| shared::config::comma_list(vars));
            }
            return;
        }
        if self.marketplace == Suite::Heroku {
            let root = crate::stack::root_url(outputs);
            let url = |path: &str| root.as_ref().map(|root| format!("{root}{path}"));
            self.base_url = self.base_url.take().or_else(|| url("/heroku/resources"));
            self.sso_url = self.sso_url.take().or_else(|| url("/heroku/sso/login"));
            self.addon_id = self
                .addon_id
                .take()
                .or_else(|| env.get("HEROKU_ADDON_ID").cloned());
            if self.config_vars.is_none() {
                self.config_vars = env
                    .get("HEROKU_CONFIG_VARS")
                    .or_else(|| env.get("ADDON_CONFIG_VARS"))
                    .map(|vars| shared::config::comma_list(vars));
            }
            return;
        }
        let (addon_id, config_vars) = (env.get("ADDON_ID"), env.get("ADDON_CONFIG_VARS"));
        let root = crate::stack::root_url(outputs);
        let url = |output: &str, path: &str| {
            root.as_ref()
                .map(|root| format!("{root}{path}"))
                .or_else(|| outputs.get(output).cloned())
        };
        self.base_url = self
            .base_url
            .take()
            .or_else(|| url("ManifestBaseUrl", "/clevercloud/resources"));
        self.sso_url = self
            .sso_url
            .take()
            .or_else(|| url("ManifestSsoUrl", "/clevercloud/sso/login"));
        self.addon_id = self.addon_id.take().or_else(|| addon_id.cloned());
        if self.config_vars.is_none() {
            self.config_vars = config_vars.map(|vars| shared::config::comma_list(vars));
        }
    }
}

pub use crate::listing::Marketplace;

/// The suites `--marketplace` picks: each manifest marketplace's, and AWS
/// Marketplace's, which has no manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    Clevercloud,
    Heroku,
    Scalingo,
    Aws,
}

impl Suite {
    /// The marketplace whose manifest the suite reads (not AWS Marketplace).
    fn manifest_marketplace(self) -> Option<Marketplace> {
        match self {
            Suite::Clevercloud => Some(Marketplace::Clevercloud),
            Suite::Heroku => Some(Marketplace::Heroku),
            Suite::Scalingo => Some(Marketplace::Scalingo),
            Suite::Aws => None,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Endpoints {
    Production,
    Test,
}

impl Endpoints {
    fn manifest_key(self) -> &'static str {
        match self {
            Endpoints::Production => "production",
            Endpoints::Test => "test",
        }
    }
}

/// Exit status: 0 when every check passed, 1 when any failed; a target that
/// could not be set up (nothing was sent) is a usage failure (exit 2), which
/// the caller reports by the CLI's convention.
pub async fn main(args: CheckArgs, json: bool) -> Result<ExitCode, crate::Failure> {
    if args.marketplace == Suite::Aws {
        return aws_main(&args, json).await;
    }
    let (target, probe) = Target::resolve(&args, &shared::config::process_env)
        .and_then(|target| Probe::new().map(|probe| (target, probe)))
        .map_err(crate::Failure::Usage)?;
    let cleanup = cleanup_for(&args, &target.cloud66_email).await;
    let mut report = run(&target, &probe, !json).await;
    clean_up(cleanup, &probe, &mut report).await;
    Ok(finish(&report, &target.base_url, json))
}

/// What `--cleanup` will remove the run's records with, or why not.
async fn cleanup_for(args: &CheckArgs, cloud66_email: &str) -> Result<(Cleanup, cleanup::Before), String> {
    match (
        args.no_cleanup,
        config::optional(&config::process_env, "TABLE_NAME"),
    ) {
        (true, _) => Err("--no-cleanup: the run's records stay".to_string()),
        (false, None) => Err("no TABLE_NAME (or --stack): the run's records stay in the table".to_string()),
        (false, Some(table)) => {
            let cleanup = Cleanup::new(table, cloud66_email).await;
            match cleanup.before().await {
                Ok(before) => Ok((cleanup, before)),
                Err(why) => Err(format!("the table could not be read before the run: {why}")),
            }
        }
    }
}

/// Removes every record the run made (`cleanup.table`), or says why not.
async fn clean_up(cleanup: Result<(Cleanup, cleanup::Before), String>, probe: &Probe, report: &mut Report) {
    match cleanup {
        Ok((cleanup, before)) => {
            report.record("cleanup.table", cleanup.run(&probe.traces, &before).await);
        }
        Err(why) => report.skip("cleanup.table", why),
    }
}

/// `--marketplace aws`: against a stack on the stand-in AWS Marketplace.
async fn aws_main(args: &CheckArgs, json: bool) -> Result<ExitCode, crate::Failure> {
    let (target, probe) = aws::AwsTarget::resolve(
        args.base_url.as_deref(),
        args.stand_in.as_deref(),
        args.invoke_url.as_deref(),
        &shared::config::process_env,
    )
    .and_then(|target| Probe::new().map(|probe| (target, probe)))
    .map_err(crate::Failure::Usage)?;
    let cleanup = cleanup_for(args, &args.cloud66_email).await;
    let mut report = Report::new(!json);
    aws::run(&target, &probe, &mut report).await;
    clean_up(cleanup, &probe, &mut report).await;
    Ok(finish(&report, &target.root, json))
}

/// Prints the report (JSON, or the summary after the lines) and says how
/// the run ended: 0 when every check passed, 1 when any failed.
fn finish(report: &Report, target: &str, json: bool) -> ExitCode {
    if json {
        println!("{}", report.to_json(target));
    } else {
        println!("{}", report.summary());
    }
    if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Every check, in the order a marketplace would meet them.
async fn run(target: &Target, probe: &Probe, print_lines: bool) -> Report {
    let mut report = Report::new(print_lines);
    target::check_shape(target, &mut report);
    if target.marketplace == Marketplace::Heroku {
        heroku::run(target, probe, &mut report).await;
        return report;
    }
    if target.marketplace == Marketplace::Scalingo {
        scalingo::run(target, probe, &mut report).await;
        return report;
    }
    let mut lifecycle = Lifecycle::new(probe, target);
    let sso = SsoChecks::new(probe, target);
    lifecycle.authentication(&mut report).await;
    let resource = lifecycle.provision_new(&mut report).await;
    match &resource {
        Some(resource) => lifecycle.provision_repeat(resource, &mut report).await,
        None => report.skip(
            "provision.repeat",
            "needs a provisioned resource (provision.new failed)",
        ),
    }
    lifecycle.provision_concurrent(&mut report).await;
    lifecycle.hostile_bodies(resource.as_ref(), &mut report).await;
    sso.clevercloud(resource.as_ref(), &mut report).await;
    sso.cloud66(&mut report).await;
    OidcChecks::new(probe, target, &sso, &shared::config::process_env)
        .run(resource.as_ref(), &mut report)
        .await;
    lifecycle.plan_change(resource.as_ref(), &mut report).await;
    lifecycle.deprovision(resource.as_ref(), &mut report).await;
    sso.deprovisioned(resource.as_ref(), &mut report).await;
    lifecycle.clean_up(&mut report).await;
    report.record("timing.budget", probe.within(probe::RESPONSE_BUDGET));
    report
}
