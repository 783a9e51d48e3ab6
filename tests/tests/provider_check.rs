//! `provider check` judged against a stand-in provider: it passes a correct
//! one, and names the broken rule for each deliberate fault. (Against the
//! real local stack it runs from scripts/e2e.sh.)

use std::collections::HashMap;
use std::process::{Command, Output};
use tests::broken_aws::{self, AwsFault};
use tests::broken_heroku::{self, HerokuFault};
use tests::broken_provider::{self, Fault};
use tests::broken_scalingo::{self, ScalingoFault};
use tests::workspace_binary;

/// `provider check --json` against a stand-in with `fault`: its exit status
/// and every check's outcome by name.
fn check(fault: Option<Fault>) -> Run {
    let base = broken_provider::spawn(fault);
    check_with(&[], broken_provider::manifest(&base))
}

/// `provider check --marketplace heroku --json` against the Heroku stand-in with `fault`.
fn check_heroku(fault: Option<HerokuFault>) -> Run {
    let base = broken_heroku::spawn(fault);
    check_with(&["--marketplace", "heroku"], broken_heroku::manifest(&base))
}

/// `provider check --marketplace scalingo --json` against the Scalingo stand-in with `fault`.
fn check_scalingo(fault: Option<ScalingoFault>) -> Run {
    let base = broken_scalingo::spawn(fault);
    check_with(&["--marketplace", "scalingo"], broken_scalingo::manifest(&base))
}

/// `provider check --marketplace aws --json` against the AWS Marketplace
/// stand-in with `fault` (stack, AWS Marketplace and Invoke API in one).
fn check_aws(fault: Option<AwsFault>) -> Run {
    let base = broken_aws::spawn(fault);
    let output = Command::new(workspace_binary("provider"))
        .args(["check", "--json", "--marketplace", "aws", "--base-url", &base])
        .args(["--stand-in", &base, "--invoke-url", &base])
        .env("AWS_MARKETPLACE_PRODUCT_CODE", broken_aws::PRODUCT_CODE)
        .env("AWS_MARKETPLACE_PLANS", broken_aws::PLANS)
        .env_remove("ADDON_PLANS")
        .env_remove("TABLE_NAME")
        .output()
        .expect("run provider");
    outcomes_of(&output)
}

fn check_with(
    flags: &[&str],
    manifest_json: serde_json::Value,
) -> (Option<i32>, HashMap<String, String>, serde_json::Value) {
    let manifest =
        std::env::temp_dir().join(format!("provider-check-{}.json", shared::secret::random_hex(6)));
    std::fs::write(&manifest, manifest_json.to_string()).expect("write the manifest");
    let mut args = vec!["check", "--json", "--manifest", manifest.to_str().unwrap()];
    args.extend(flags);
    let output = provider(&args);
    let _ = std::fs::remove_file(&manifest);
    outcomes_of(&output)
}

/// The exit status, each check's outcome by name, and the report.
fn outcomes_of(output: &Output) -> Run {
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "provider check printed no JSON ({err}); stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let outcomes = report["checks"]
        .as_array()
        .expect("a checks array")
        .iter()
        .map(|check| {
            let field = |name: &str| check[name].as_str().expect("string fields").to_string();
            (field("name"), field("outcome"))
        })
        .collect();
    (output.status.code(), outcomes, report)
}

fn provider(args: &[&str]) -> Output {
    Command::new(workspace_binary("provider"))
        .args(args)
        // The secrets come from the manifest; the stack's own must not leak in,
        // nor its table (the stand-in keeps no records to clean up).
        .env_remove("TABLE_NAME")
        .env_remove("ADDON_PASSWORD")
        .env_remove("ADDON_SSO_SALT")
        .env_remove("HEROKU_PASSWORD")
        .env_remove("HEROKU_SSO_SALT")
        .env_remove("SCALINGO_PASSWORD")
        .env_remove("SCALINGO_SSO_SALT")
        .env_remove("CLOUD66_MULTIPASS_KEY")
        .env_remove("CLOUD66_BASE_URL")
        .env("CLOUD66_PROVIDER", broken_provider::CLOUD66_PROVIDER)
        .env("CLOUD66_PROVIDER_UID", broken_provider::CLOUD66_UID)
        .env("OIDC_CHECK_CLIENT_ID", broken_provider::OIDC_CLIENT_ID)
        .env("OIDC_CHECK_CLIENT_SECRET", broken_provider::OIDC_CLIENT_SECRET)
        .env("OIDC_CHECK_REDIRECT_URI", broken_provider::OIDC_REDIRECT_URI)
        .output()
        .expect("run provider")
}

#[test]
fn a_correct_provider_passes_every_check() {
    let (outcomes, report) = all_pass(check(None), &Fault::ALL, Fault::expected_failure);
    // The stand-in keeps no table, so there is nothing to clean up: the one
    // check that says so is skipped, naming why.
    assert_eq!(outcomes.get("cleanup.table").map(String::as_str), Some("skip"));
    assert_eq!(report["failed"], 0);
    assert_eq!(report["passed"].as_u64(), Some(outcomes.len() as u64 - 1));
}

#[test]
fn each_fault_fails_the_check_it_breaks() {
    each_fails(&Fault::ALL, Fault::expected_failure, check);
}

type Run = (Option<i32>, HashMap<String, String>, serde_json::Value);

/// A run against a correct stand-in: every check passes (bar the cleanup,
/// which has no table to clean), exit 0, and every check a fault names
/// exists, so no fault test can pass vacuously. The outcomes and report.
fn all_pass<F: Copy + std::fmt::Debug>(
    (status, outcomes, report): Run,
    faults: &[F],
    expected_failure: fn(F) -> &'static str,
) -> (HashMap<String, String>, serde_json::Value) {
    let not_passed: Vec<_> = outcomes
        .iter()
        .filter(|(name, outcome)| *outcome != "pass" && *name != "cleanup.table")
        .collect();
    assert!(not_passed.is_empty(), "{not_passed:?}\n{report:#}");
    assert_eq!(status, Some(0));
    for &fault in faults {
        assert!(outcomes.contains_key(expected_failure(fault)), "{fault:?}");
    }
    (outcomes, report)
}

/// Each fault has its own stand-in and its own run, side by side: each must
/// fail the check named for it, and the run exit 1.
fn each_fails<F: Copy + std::fmt::Debug + Send + 'static>(
    faults: &[F],
    expected_failure: fn(F) -> &'static str,
    check: fn(Option<F>) -> Run,
) {
    let runs: Vec<_> = faults
        .iter()
        .map(|&fault| (fault, std::thread::spawn(move || check(Some(fault)))))
        .collect();
    for (fault, run) in runs {
        let (status, outcomes, report) = run.join().expect("check thread");
        let expected = expected_failure(fault);
        assert_eq!(
            outcomes.get(expected).map(String::as_str),
            Some("fail"),
            "{fault:?} must fail {expected}:\n{report:#}"
        );
        assert_eq!(status, Some(1), "{fault:?}: exit status");
        assert!(report["failed"].as_u64() >= Some(1));
    }
}

#[test]
fn a_correct_heroku_provider_passes_every_heroku_check() {
    let (outcomes, _) = all_pass(
        check_heroku(None),
        &HerokuFault::ALL,
        HerokuFault::expected_failure,
    );
    // Heroku's checks only: no Clever Cloud call was made.
    assert!(!outcomes
        .keys()
        .any(|name| name.starts_with("sso.clevercloud") || name.starts_with("oidc.")));
}

#[test]
fn each_heroku_fault_fails_the_check_it_breaks() {
    each_fails(&HerokuFault::ALL, HerokuFault::expected_failure, check_heroku);
}

#[test]
fn a_correct_scalingo_provider_passes_every_scalingo_check() {
    let (outcomes, _) = all_pass(
        check_scalingo(None),
        &ScalingoFault::ALL,
        ScalingoFault::expected_failure,
    );
    // Scalingo's checks only.
    assert!(!outcomes.keys().any(|name| name.starts_with("heroku.")
        || name.starts_with("sso.clevercloud")
        || name.starts_with("oidc.")));
    assert!(outcomes.contains_key("manifest.plans"));
}

#[test]
fn each_scalingo_fault_fails_the_check_it_breaks() {
    each_fails(
        &ScalingoFault::ALL,
        ScalingoFault::expected_failure,
        check_scalingo,
    );
}

#[test]
fn a_correct_aws_marketplace_integration_passes_every_aws_check() {
    let (outcomes, _) = all_pass(check_aws(None), &AwsFault::ALL, AwsFault::expected_failure);
    assert!(outcomes
        .keys()
        .all(|name| name.starts_with("aws.") || name == "timing.budget" || name == "cleanup.table"));
}

#[test]
fn each_aws_marketplace_fault_fails_the_check_it_breaks() {
    each_fails(&AwsFault::ALL, AwsFault::expected_failure, check_aws);
}

#[test]
fn text_output_ends_with_the_summary_line() {
    let base = broken_provider::spawn(Some(Fault::SsoReplay));
    let sso_url = format!("{base}/clevercloud/sso/login");
    let resources = format!("{base}/clevercloud/resources");
    let vars = broken_provider::CONFIG_VARS.join(",");
    let output = Command::new(workspace_binary("provider"))
        .args([
            "check",
            "--addon-id",
            broken_provider::ADDON_ID,
            "--base-url",
            &resources,
        ])
        .args(["--sso-url", &sso_url, "--config-vars", &vars])
        .env("ADDON_PASSWORD", broken_provider::PASSWORD)
        .env("ADDON_SSO_SALT", broken_provider::SSO_SALT)
        .env_remove("CLOUD66_PROVIDER")
        .env_remove("CLOUD66_PROVIDER_UID")
        .output()
        .expect("run provider check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("FAIL  sso.clevercloud.replay")),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("skip  sso.cloud66.multipass")),
        "Cloud 66 unconfigured is a skip: {stdout}"
    );
    let summary = lines.last().expect("a summary line");
    assert!(
        summary.contains(" passed, 1 failed, ") && summary.ends_with(" skipped"),
        "{summary}"
    );
    // The secrets were given; none is printed.
    assert!(!stdout.contains(broken_provider::PASSWORD));
    assert!(!stdout.contains(broken_provider::SSO_SALT));
}

#[test]
fn a_target_without_endpoints_is_a_usage_error_and_sends_nothing() {
    let output = provider(&["check"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--manifest"), "{stderr}");
    // The flag it names is the one clap accepts.
    assert!(stderr.contains("--addon-id"), "{stderr}");
    let output = provider(&["check", "--base-url", "https://a.example/clevercloud/resources"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("give --manifest, --stack or --addon-id"),
        "{stderr}"
    );
    let output = provider(&["check", "--addon-id", "addon-name"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--base-url"), "{stderr}");
    let output = provider(&["check", "--concurrency", "1", "--manifest", "x.json"]);
    assert_eq!(output.status.code(), Some(2), "clap refuses a concurrency of 1");
}

/// The CLI's convention holds for a usage error too: exit 2, and with
/// `--json` one JSON document on stdout naming the error.
#[test]
fn a_usage_error_with_json_is_one_json_document_and_exits_2() {
    let output = provider(&["--json", "secrets", "rotate", "NOT_A_SECRET"]);
    assert_eq!(output.status.code(), Some(2));
    let printed = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = serde_json::from_str(&printed).expect("one JSON document");
    assert!(
        report["error"]
            .as_str()
            .is_some_and(|error| error.contains("NOT_A_SECRET")),
        "{report}"
    );
    assert_eq!(report["exit"], 2);
    let plain = provider(&["secrets", "rotate", "NOT_A_SECRET"]);
    assert_eq!(plain.status.code(), Some(2));
    assert!(plain.stdout.is_empty(), "without --json the error goes to stderr");
}
