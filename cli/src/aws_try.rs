//! `provider try register` and `provider try event`: AWS Marketplace as a
//! buyer's browser and as EventBridge reach the stack, against `make run`'s
//! stand-in AWS Marketplace (docs/aws-marketplace.md, "Trying it locally").

use crate::{Failure, Outcome};
use clap::ValueEnum;
use serde_json::{json, Value};
use shared::aws_marketplace::events::Kind;

/// The marketplaces a buyer registers with (AWS Marketplace's fulfillment URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Registrar {
    Aws,
}

#[derive(Debug, clap::Args)]
pub struct RegisterArgs {
    /// Whose registration.
    #[arg(long, value_enum)]
    marketplace: Registrar,
    /// The buyer's AWS account (12 digits; default: a new one). The same
    /// account again is a second purchase: a second add-on.
    #[arg(long)]
    account: Option<String>,
    /// The stack (default: PUBLIC_URL, as `make run` exports it).
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// The stand-in AWS Marketplace that mints the token (default:
    /// AWS_MARKETPLACE_STANDIN_URL, as `make run` exports it).
    #[arg(long, value_name = "URL")]
    stand_in: Option<String>,
    /// Write the buyer's form as a page that posts itself, and give it to
    /// the browser ($BROWSER, else xdg-open or open): the browser lands
    /// signed in. Without it, the form is posted here and the answer shown.
    #[arg(long)]
    open: bool,
}

/// The events `try event` sends: `Kind`'s, by a short name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventName {
    Created,
    Amended,
    Updated,
    Ended,
    Deprovisioned,
}

impl EventName {
    fn kind(self) -> Kind {
        match self {
            Self::Created => Kind::AgreementCreated,
            Self::Amended => Kind::AgreementAmended,
            Self::Updated => Kind::LicenseUpdated,
            Self::Ended => Kind::AgreementEnded,
            Self::Deprovisioned => Kind::LicenseDeprovisioned,
        }
    }

    /// The `detail-type` AWS sends, from the one list the rule and the
    /// handler use.
    fn detail_type(self) -> String {
        let kind = self.kind();
        let base = Kind::ALL
            .iter()
            .find(|(held, _)| *held == kind)
            .map_or("", |(_, name)| name);
        let suffix = match kind {
            Kind::LicenseUpdated | Kind::LicenseDeprovisioned => "Manufacturer",
            _ => "Proposer",
        };
        format!("{base} - {suffix}")
    }
}

#[derive(Debug, clap::Args)]
pub struct EventArgs {
    /// Whose event.
    #[arg(long, value_enum)]
    marketplace: Registrar,
    /// Which event.
    #[arg(value_enum)]
    event: EventName,
    /// The purchase: its license ARN (`try register` prints it).
    license_arn: String,
    /// The agreement (default: one made from the license, the same for
    /// every event of it, so `ended` follows `updated`).
    #[arg(long)]
    agreement: Option<String>,
    /// `updated`: the dimensions the license is now entitled to, set at the
    /// stand-in first (repeatable).
    #[arg(long = "dimension")]
    dimensions: Vec<String>,
    /// Where `marketplace-events` is invoked, Lambda's Invoke API (default:
    /// LOCAL_INVOKE_URL, `cargo lambda watch`'s, as `make run` exports it).
    #[arg(long, value_name = "URL")]
    invoke_url: Option<String>,
    /// The stand-in AWS Marketplace (default: AWS_MARKETPLACE_STANDIN_URL).
    #[arg(long, value_name = "URL")]
    stand_in: Option<String>,
}

fn from_env(given: &Option<String>, var: &str, fallback: &str) -> String {
    given
        .clone()
        .or_else(|| std::env::var(var).ok().filter(|value| !value.is_empty()))
        .unwrap_or_else(|| fallback.to_string())
        .trim_end_matches('/')
        .to_string()
}

pub async fn register(args: &RegisterArgs) -> Result<Outcome, Failure> {
    let stand_in = from_env(
        &args.stand_in,
        "AWS_MARKETPLACE_STANDIN_URL",
        "http://127.0.0.1:9008",
    );
    let base = from_env(&args.url, "PUBLIC_URL", "http://127.0.0.1:9000");
    let http = crate::calls::client()?;
    let mut mint = json!({});
    if let Some(account) = &args.account {
        if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
            return Err(Failure::Usage("--account: an AWS account is 12 digits".into()));
        }
        mint["account"] = account.clone().into();
    }
    let minted = http
        .post(format!("{stand_in}/mint"))
        .json(&mint)
        .send()
        .await
        .map_err(|err| Failure::Unreachable(format!("the stand-in AWS Marketplace at {stand_in}: {err}")))?;
    let (_, minted) = crate::calls::answer(minted, "minting a token").await?;
    let token = minted["token"]
        .as_str()
        .ok_or_else(|| Failure::Failed(format!("the stand-in minted no token: {minted}")))?
        .to_string();
    let license_arn = minted["license_arn"].clone();
    let resource_id = license_arn
        .as_str()
        .map(|arn| shared::aws_marketplace::resource_id(shared::model::aws_license_id(arn)));
    let url = format!("{base}/aws/register");
    let field = shared::aws_marketplace::register::TOKEN_FIELD;
    let mut report = json!({
        "marketplace": "aws",
        "license_arn": license_arn,
        "aws_account_id": minted["account"],
        "resource_id": resource_id,
        "posts_to": url,
    });
    if args.open {
        let page = crate::signin::auto_post_page(&url, &vec![(field, token)]);
        let out = std::env::temp_dir().join(format!(
            "provider-try-register-{}.html",
            shared::secret::random_hex(6)
        ));
        crate::signin::write_private(&out, &page)?;
        crate::signin::open_in_browser(&out.display().to_string())?;
        report["page"] = out.display().to_string().into();
        report["opened"] = true.into();
        return Ok(Outcome::Done(report));
    }
    let posted = http
        .post(&url)
        .form(&[(field, token.as_str())])
        .send()
        .await
        .map_err(|err| Failure::Unreachable(format!("POST {url}: {err}")))?;
    let status = posted.status();
    let location = posted
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let session = posted
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .any(|cookie| {
            cookie
                .to_str()
                .is_ok_and(|text| text.starts_with(shared::signin::SESSION_COOKIE))
        });
    report["answer"] = json!({"status": status.as_u16(), "location": location, "session_opened": session});
    Ok(if status.is_redirection() {
        Outcome::Done(report)
    } else {
        Outcome::Findings(report)
    })
}

pub async fn event(args: &EventArgs) -> Result<Outcome, Failure> {
    let invoke = from_env(&args.invoke_url, "LOCAL_INVOKE_URL", "http://127.0.0.1:9000");
    let stand_in = from_env(
        &args.stand_in,
        "AWS_MARKETPLACE_STANDIN_URL",
        "http://127.0.0.1:9008",
    );
    let license_id = shared::model::aws_license_id(&args.license_arn).to_string();
    if !license_id.starts_with("l-") {
        return Err(Failure::Usage(format!(
            "{}: give the purchase's license ARN (`provider try register` prints it)",
            args.license_arn
        )));
    }
    let http = crate::calls::client()?;
    if !args.dimensions.is_empty() {
        if args.event != EventName::Updated {
            return Err(Failure::Usage("--dimension goes with `updated` alone".into()));
        }
        let entitlements: Vec<Value> = args
            .dimensions
            .iter()
            .map(|dimension| json!({"Dimension": dimension, "Value": {"IntegerValue": 1}}))
            .collect();
        http.put(format!("{stand_in}/entitlements"))
            .json(&json!({"license_arn": args.license_arn, "entitlements": entitlements}))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|err| {
                Failure::Unreachable(format!("the stand-in AWS Marketplace at {stand_in}: {err}"))
            })?;
    }
    let agreement = args
        .agreement
        .clone()
        .unwrap_or_else(|| format!("agmt-try-{}", license_id.trim_start_matches("l-")));
    let product = std::env::var("AWS_MARKETPLACE_PRODUCT_CODE").unwrap_or_default();
    // License events print the ARN without its `arn:`, as AWS's do.
    let printed = args.license_arn.trim_start_matches("arn:");
    let detail = match args.event.kind() {
        Kind::LicenseUpdated => json!({
            "agreement": {"id": agreement}, "license": {"arn": printed}, "product": {"code": product},
        }),
        Kind::LicenseDeprovisioned => json!({"license": {"arn": printed}, "product": {"code": product}}),
        _ => json!({"agreement": {"id": agreement}}),
    };
    let envelope = json!({
        "version": "0",
        "id": shared::secret::random_uuid(),
        "detail-type": args.event.detail_type(),
        "source": shared::aws_marketplace::events::SOURCE,
        "account": "123456789012",
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": "us-east-1",
        "resources": [format!("arn:aws:aws-marketplace::aws:agreement:{agreement}")],
        "detail": detail,
    });
    let url = format!("{invoke}/2015-03-31/functions/marketplace-events/invocations");
    let answer = http
        .post(&url)
        .json(&envelope)
        .send()
        .await
        .map_err(|err| Failure::Unreachable(format!("POST {url}: {err}")))?;
    let failed = answer.headers().contains_key("x-amz-function-error");
    let (status, body) = crate::calls::answer(answer, "invoking marketplace-events").await?;
    let report = json!({"event": envelope, "answer": {"status": status, "body": body}});
    Ok(if (200..300).contains(&status) && !failed {
        Outcome::Done(report)
    } else {
        Outcome::Findings(report)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_name_is_one_the_handler_acts_on() {
        for name in EventName::value_variants() {
            assert_eq!(Kind::of(&name.detail_type()), Some(name.kind()), "{name:?}");
        }
    }
}
