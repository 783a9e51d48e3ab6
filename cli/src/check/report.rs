//! What `provider check` found: one line per check, a summary, or JSON.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    /// Not run: the deployment lacks the feature (Cloud 66 unconfigured) or
    /// a check it depends on failed, which is itself reported as a failure.
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub outcome: Outcome,
    pub detail: String,
}

/// The checks so far. In text mode each line is printed as it is recorded, so
/// a slow deployment shows progress.
pub struct Report {
    checks: Vec<CheckResult>,
    print_lines: bool,
}

impl Report {
    pub fn new(print_lines: bool) -> Self {
        Self {
            checks: Vec::new(),
            print_lines,
        }
    }

    /// `Ok(detail)` passes, `Err(why)` fails.
    pub fn record(&mut self, name: &str, result: Result<String, String>) -> bool {
        let passed = result.is_ok();
        match result {
            Ok(detail) => self.push(name, Outcome::Pass, detail),
            Err(why) => self.push(name, Outcome::Fail, why),
        }
        passed
    }

    pub fn skip(&mut self, name: &str, why: impl Into<String>) {
        self.push(name, Outcome::Skip, why.into());
    }

    fn push(&mut self, name: &str, outcome: Outcome, detail: String) {
        let result = CheckResult {
            name: name.to_string(),
            outcome,
            detail,
        };
        if self.print_lines {
            println!("{}", line(&result));
        }
        self.checks.push(result);
    }

    pub fn count(&self, outcome: Outcome) -> usize {
        self.checks
            .iter()
            .filter(|check| check.outcome == outcome)
            .count()
    }

    pub fn failed(&self) -> bool {
        self.count(Outcome::Fail) > 0
    }

    /// `N passed, M failed`, then `, K skipped` when any were.
    pub fn summary(&self) -> String {
        let mut summary = format!(
            "{} passed, {} failed",
            self.count(Outcome::Pass),
            self.count(Outcome::Fail)
        );
        let skipped = self.count(Outcome::Skip);
        if skipped > 0 {
            summary.push_str(&format!(", {skipped} skipped"));
        }
        summary
    }

    pub fn to_json(&self, target: &str) -> serde_json::Value {
        serde_json::json!({
            "target": target,
            "checks": self.checks,
            "passed": self.count(Outcome::Pass),
            "failed": self.count(Outcome::Fail),
            "skipped": self.count(Outcome::Skip),
        })
    }
}

fn line(check: &CheckResult) -> String {
    let label = match check.outcome {
        Outcome::Pass => "pass",
        Outcome::Fail => "FAIL",
        Outcome::Skip => "skip",
    };
    format!("{label}  {:<42} {}", check.name, check.detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_each_outcome_and_failure_decides() {
        let mut report = Report::new(false);
        assert!(report.record("a", Ok("fine".into())));
        assert!(!report.failed());
        assert!(!report.record("b", Err("broken".into())));
        report.skip("c", "not configured");
        assert!(report.failed());
        assert_eq!(report.summary(), "1 passed, 1 failed, 1 skipped");
        let json = report.to_json("http://x");
        assert_eq!(json["failed"], 1);
        assert_eq!(json["checks"][1]["outcome"], "fail");
        assert_eq!(json["checks"][1]["detail"], "broken");
    }

    #[test]
    fn summary_without_skips_is_the_plain_closing_line() {
        let mut report = Report::new(false);
        report.record("a", Ok(String::new()));
        assert_eq!(report.summary(), "1 passed, 0 failed");
        assert!(line(&report.checks[0]).starts_with("pass  a "));
    }
}
