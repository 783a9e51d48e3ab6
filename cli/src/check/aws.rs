//! `provider check --marketplace aws`: AWS Marketplace's registration and
//! subscription events against a stack that reaches the stand-in AWS
//! Marketplace (`make run`'s, docs/aws-marketplace.md): the registration
//! post signs the buyer in once, hides the token and refuses bad tokens
//! with pages; the events, with duplicates and out of order, end where AWS
//! says, each change once. Its observer is the panel the buyer's session
//! opens (plan, status, recent events).

use super::probe::{cookie_header, Answer, Probe};
use super::report::Report;
use reqwest::{header, Method};
use serde_json::{json, Value};
use shared::aws_marketplace::events::SOURCE;
use shared::aws_marketplace::register::TOKEN_FIELD;
use shared::aws_marketplace::AwsMarketplaceConfig;
use shared::secret::random_hex;

/// Where the check calls: the stack, the stand-in AWS Marketplace, and
/// Lambda's Invoke API for `marketplace-events`.
pub struct AwsTarget {
    pub root: String,
    pub stand_in: String,
    pub invoke: String,
    pub config: AwsMarketplaceConfig,
}

impl AwsTarget {
    /// From the flags, else the environment `make run` exports (PUBLIC_URL,
    /// AWS_MARKETPLACE_STANDIN_URL, LOCAL_INVOKE_URL, AWS_MARKETPLACE_*).
    pub fn resolve(
        base_url: Option<&str>,
        stand_in: Option<&str>,
        invoke: Option<&str>,
        lookup: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let config = AwsMarketplaceConfig::from_lookup(lookup)
            .map_err(|err| err.to_string())?
            .ok_or("AWS_MARKETPLACE_PRODUCT_CODE is not set: the stack does not sell on AWS Marketplace (`source .run/current/env`)")?;
        if config.plans.len() < 2 {
            return Err("AWS_MARKETPLACE_PLANS maps one dimension: the plan-change checks need two".into());
        }
        let pick = |given: Option<&str>, var: &str, what: &str| {
            given
                .map(str::to_string)
                .or_else(|| shared::config::optional(lookup, var))
                .map(|url| url.trim_end_matches('/').to_string())
                .ok_or_else(|| format!("no {what}: give it, or set {var} (`source .run/current/env`)"))
        };
        Ok(Self {
            root: pick(base_url, "PUBLIC_URL", "--base-url (the stack's root URL)")?,
            stand_in: pick(stand_in, "AWS_MARKETPLACE_STANDIN_URL", "--stand-in")?,
            invoke: pick(invoke, "LOCAL_INVOKE_URL", "--invoke-url")?,
            config,
        })
    }
}

/// What the buyer's panel shows of the resource its session opened.
#[derive(Debug, Default, PartialEq, Eq)]
struct Panel {
    resource_id: String,
    plan: String,
    status: String,
    events: Vec<String>,
}

/// The text of the element with `id` (`<dd id="plan">basic</dd>`).
fn element_text(html: &str, id: &str) -> Option<String> {
    let start = html.find(&format!("id=\"{id}\""))?;
    let open = start + html[start..].find('>')? + 1;
    let close = open + html[open..].find('<')?;
    Some(html[open..close].trim().to_string())
}

fn parse_panel(html: &str) -> Option<Panel> {
    let start = html.find("res_aws_")?;
    let resource_id: String = html[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let events = html
        .split("<td>")
        .skip(1)
        .filter_map(|cell| cell.split('<').next())
        .filter(|cell| !cell.is_empty() && cell.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .map(str::to_string)
        .collect();
    Some(Panel {
        resource_id,
        plan: element_text(html, "plan")?,
        status: element_text(html, "status")?,
        events,
    })
}

struct AwsChecks<'a> {
    probe: &'a Probe,
    target: &'a AwsTarget,
}

/// A purchase the check made: its token, license and session.
#[derive(Debug, Clone)]
struct Purchase {
    token: String,
    license_arn: String,
    account: String,
    cookie: Option<String>,
}

pub async fn run(target: &AwsTarget, probe: &Probe, report: &mut Report) {
    let checks = AwsChecks { probe, target };
    let first = checks.registration(report).await;
    checks.refusals(report).await;
    checks.throttled(report).await;
    checks.events_before_registration(report).await;
    checks.events(first.as_ref(), report).await;
    report.record("timing.budget", probe.within(super::probe::RESPONSE_BUDGET));
}

impl AwsChecks<'_> {
    fn plans(&self) -> (&(String, String), &(String, String)) {
        let plans = &self.target.config.plans;
        (&plans[0], &plans[plans.len() - 1])
    }

    async fn control(&self, method: Method, path: &str, body: Value) -> Result<Answer, String> {
        let request = self
            .probe
            .http
            .request(method, format!("{}{path}", self.target.stand_in))
            .json(&body);
        let answer = self.probe.send(request).await?;
        if (200..300).contains(&answer.status) {
            Ok(answer)
        } else {
            Err(format!(
                "the stand-in AWS Marketplace answered {}",
                answer.describe()
            ))
        }
    }

    async fn mint(&self, body: Value) -> Result<Purchase, String> {
        let minted = self
            .control(Method::POST, "/mint", body)
            .await?
            .json()
            .ok_or("the stand-in minted no JSON")?;
        let field = |name: &str| {
            minted[name]
                .as_str()
                .map(str::to_string)
                .ok_or(format!("no {name} minted"))
        };
        Ok(Purchase {
            token: field("token")?,
            license_arn: field("license_arn")?,
            account: field("account")?,
            cookie: None,
        })
    }

    async fn entitle(&self, license_arn: &str, dimensions: &[&str], spread: bool) -> Result<(), String> {
        let entitlements: Vec<Value> = dimensions
            .iter()
            .map(|dimension| json!({"Dimension": dimension, "Value": {"IntegerValue": 1}}))
            .collect();
        let mut body = json!({"license_arn": license_arn, "entitlements": entitlements});
        if spread {
            // One a page, after an empty one: every page must be read.
            body["empty_first_page"] = true.into();
            body["page_size"] = 1.into();
        }
        self.control(Method::PUT, "/entitlements", body).await.map(|_| ())
    }

    async fn throttle(&self, next: u32) -> Result<(), String> {
        self.control(
            Method::POST,
            "/throttle",
            json!({"operation": "ResolveCustomer", "next": next}),
        )
        .await
        .map(|_| ())
    }

    async fn post_token(&self, token: &str) -> Result<Answer, String> {
        let request = self
            .probe
            .http
            .post(format!("{}/aws/register", self.target.root))
            .form(&[(TOKEN_FIELD, token)]);
        self.probe.send(request).await
    }

    /// Posts the purchase's token as the buyer's browser does; keeps the session.
    async fn register(&self, purchase: &mut Purchase) -> Result<Answer, String> {
        let answer = self.post_token(&purchase.token).await?;
        if let Some(cookie) = answer.cookies().into_iter().next() {
            purchase.cookie = Some(cookie);
        }
        Ok(answer)
    }

    async fn panel(&self, purchase: &Purchase) -> Result<Panel, String> {
        let cookie = purchase
            .cookie
            .as_deref()
            .ok_or("no session to open the panel with")?;
        let request = self
            .probe
            .http
            .get(format!("{}/dashboard", self.target.root))
            .header(header::COOKIE, cookie_header(&[cookie.to_string()]));
        let answer = self.probe.send(request).await?;
        answer.expect_status(200)?;
        parse_panel(&String::from_utf8_lossy(&answer.body)).ok_or_else(|| {
            format!(
                "the panel shows no AWS Marketplace resource: {}",
                answer.describe()
            )
        })
    }

    /// Hands `event` to `marketplace-events` as EventBridge does.
    async fn deliver(&self, event: &Value) -> Result<(), String> {
        let request = self
            .probe
            .http
            .post(format!(
                "{}/2015-03-31/functions/marketplace-events/invocations",
                self.target.invoke
            ))
            .json(event);
        let answer = self.probe.send(request).await?;
        if (200..300).contains(&answer.status) && answer.headers.get("x-amz-function-error").is_none() {
            Ok(())
        } else {
            Err(format!("marketplace-events failed: {}", answer.describe()))
        }
    }

    fn event(&self, detail_type: &str, detail: Value) -> Value {
        json!({
            "version": "0",
            "id": format!("provider-check-{}", random_hex(8)),
            "detail-type": detail_type,
            "source": SOURCE,
            "account": "123456789012",
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "region": "us-east-1",
            "resources": [],
            "detail": detail,
        })
    }

    fn license_event(&self, detail_type: &str, purchase: &Purchase, agreement: Option<&str>) -> Value {
        // AWS prints the ARN without its `arn:`.
        let mut detail = json!({
            "license": {"arn": purchase.license_arn.trim_start_matches("arn:")},
            "product": {"code": self.target.config.product_code},
        });
        if let Some(agreement) = agreement {
            detail["agreement"] = json!({"id": agreement});
        }
        self.event(detail_type, detail)
    }

    /// A new purchase, registered and signed in, with its panel.
    async fn registration(&self, report: &mut Report) -> Option<(Purchase, Panel)> {
        let mut purchase = match self.mint(json!({})).await {
            Ok(purchase) => purchase,
            Err(why) => {
                report.record("aws.register.signs_in", Err(why));
                return None;
            }
        };
        let answer = self.register(&mut purchase).await;
        let signed_in = answer.as_ref().map_err(Clone::clone).and_then(|answer| {
            answer.expect_status(303)?;
            answer.cookie_attributes()
        });
        report.record("aws.register.signs_in", signed_in);
        let token = purchase.token.clone();
        report.record(
            "aws.register.token_unexposed",
            answer.as_ref().map_err(Clone::clone).and_then(|answer| {
                let location = answer.header(header::LOCATION).unwrap_or_default();
                if location.contains(&token) || String::from_utf8_lossy(&answer.body).contains(&token) {
                    Err(format!("the token is in the answer (Location {location:?})"))
                } else {
                    Ok(format!("resolved server-side; landing {location}"))
                }
            }),
        );
        let panel = self.panel(&purchase).await;
        let default_plan = &self.plans().0 .1;
        report.record(
            "aws.register.provisioned",
            panel.as_ref().map_err(Clone::clone).and_then(|panel| {
                if panel.plan == *default_plan && panel.status == "active" {
                    Ok(format!("{} on {}", panel.resource_id, panel.plan))
                } else {
                    Err(format!(
                        "expected an active resource on {default_plan}, the panel shows {panel:?}"
                    ))
                }
            }),
        );
        let panel = panel.ok()?;
        self.repost(&purchase, &panel, report).await;
        self.second_purchase(&purchase, &panel, report).await;
        Some((purchase, panel))
    }

    async fn repost(&self, purchase: &Purchase, panel: &Panel, report: &mut Report) {
        let result = async {
            let again = self.post_token(&purchase.token).await?;
            again.expect_status(303)?;
            if !again.cookies().is_empty() {
                return Err("a re-post of the same token opened another session".to_string());
            }
            let now = self.panel(purchase).await?;
            if now.resource_id != panel.resource_id
                || now.events.iter().filter(|e| *e == "provisioned").count() != 1
            {
                return Err(format!("a re-post changed the purchase: {now:?}"));
            }
            Ok("the same landing, no new session, nothing provisioned again".to_string())
        }
        .await;
        report.record("aws.register.repost", result);
    }

    async fn second_purchase(&self, first: &Purchase, panel: &Panel, report: &mut Report) {
        let result = async {
            let mut second = self.mint(json!({"account": first.account})).await?;
            self.register(&mut second).await?.expect_status(303)?;
            let other = self.panel(&second).await?;
            self.end(&second).await?;
            if other.resource_id == panel.resource_id {
                Err(format!(
                    "a second purchase by account {} is the first's resource",
                    first.account
                ))
            } else {
                Ok(format!("{} and {}", panel.resource_id, other.resource_id))
            }
        }
        .await;
        report.record("aws.register.second_purchase", result);
    }

    /// Deprovisions a purchase the check made, as AWS ends it.
    async fn end(&self, purchase: &Purchase) -> Result<(), String> {
        self.deliver(&self.license_event("License Deprovisioned - Manufacturer", purchase, None))
            .await
    }

    /// A refusal page: 4xx HTML, no session.
    fn refusal_page(answer: &Answer, status: u16) -> Result<String, String> {
        answer.expect_status(status)?;
        let media_type = answer.header(header::CONTENT_TYPE).unwrap_or_default();
        if !media_type.starts_with("text/html") {
            return Err(format!("a {status} served as {media_type:?}, not a page"));
        }
        if !answer.cookies().is_empty() {
            return Err("a refused registration set a cookie".into());
        }
        if !String::from_utf8_lossy(&answer.body).contains("AWS Marketplace") {
            return Err("the page does not send the buyer back to AWS Marketplace".into());
        }
        Ok(format!("{status} page"))
    }

    async fn refusals(&self, report: &mut Report) {
        let invalid = self
            .post_token(&format!("tok-provider-check-{}", random_hex(8)))
            .await;
        report.record(
            "aws.register.invalid_token",
            invalid.and_then(|answer| Self::refusal_page(&answer, 400)),
        );
        let expired = async {
            let stale = self.mint(json!({"expires_in": 0})).await?;
            let answer = self.post_token(&stale.token).await?;
            Self::refusal_page(&answer, 400)
        }
        .await;
        report.record("aws.register.expired_token", expired);
        let foreign = async {
            let other = self.mint(json!({"product_code": "providercheckother1"})).await?;
            let answer = self.post_token(&other.token).await?;
            Self::refusal_page(&answer, 403)
        }
        .await;
        report.record("aws.register.other_product", foreign);
        let request = self
            .probe
            .http
            .post(format!("{}/aws/register", self.target.root))
            .json(&json!({TOKEN_FIELD: "x"}));
        let not_a_form = self.probe.send(request).await;
        report.record(
            "aws.register.not_a_form",
            not_a_form.and_then(|answer| {
                answer.expect_status(400)?;
                if answer.cookies().is_empty() {
                    Ok("400".into())
                } else {
                    Err("set a cookie".into())
                }
            }),
        );
    }

    async fn throttled(&self, report: &mut Report) {
        let result = async {
            let mut purchase = self.mint(json!({})).await?;
            self.throttle(20).await?;
            let answer = self.post_token(&purchase.token).await;
            self.throttle(0).await?;
            let answer = answer?;
            answer.expect_status(503)?;
            if answer.header(header::RETRY_AFTER).is_none() {
                return Err("503 without Retry-After".into());
            }
            if !answer.cookies().is_empty() {
                return Err("a throttled registration set a cookie".into());
            }
            let retried = self.register(&mut purchase).await?;
            retried.expect_status(303)?;
            self.end(&purchase).await?;
            Ok("503 with Retry-After, then the same form registered".to_string())
        }
        .await;
        report.record("aws.register.throttled", result);
    }

    async fn events_before_registration(&self, report: &mut Report) {
        let (_, (larger, larger_plan)) = self.plans();
        let result = async {
            let mut purchase = self.mint(json!({})).await?;
            let agreement = format!("agmt-provider-check-{}", random_hex(6));
            self.entitle(&purchase.license_arn, &[larger], false).await?;
            self.deliver(&self.event(
                "Purchase Agreement Created - Proposer",
                json!({"agreement": {"id": agreement}}),
            ))
            .await?;
            self.deliver(&self.license_event("License Updated - Manufacturer", &purchase, Some(&agreement)))
                .await?;
            self.register(&mut purchase).await?.expect_status(303)?;
            let panel = self.panel(&purchase).await?;
            self.end(&purchase).await?;
            if panel.plan == *larger_plan {
                Ok(format!("provisioned on the entitled {larger_plan}"))
            } else {
                Err(format!(
                    "entitled to {larger_plan} before registering, provisioned on {}",
                    panel.plan
                ))
            }
        }
        .await;
        report.record("aws.events.before_registration", result);
    }

    async fn events(&self, first: Option<&(Purchase, Panel)>, report: &mut Report) {
        const NAMES: [&str; 6] = [
            "aws.events.updated",
            "aws.events.duplicate",
            "aws.events.other_source",
            "aws.events.ended",
            "aws.events.late_created",
            "aws.events.deprovisioned",
        ];
        let Some((purchase, _)) = first else {
            for name in NAMES {
                report.skip(
                    name,
                    "needs a registered purchase (aws.register.provisioned failed)",
                );
            }
            return;
        };
        let ((smaller, _), (larger, larger_plan)) = self.plans();
        let agreement = format!("agmt-provider-check-{}", random_hex(6));
        let updated = self.license_event("License Updated - Manufacturer", purchase, Some(&agreement));
        let expect = |panel: Result<Panel, String>, want: &dyn Fn(&Panel) -> bool, what: &str| {
            panel.and_then(|panel| {
                if want(&panel) {
                    Ok(format!("{} {}, {}", panel.resource_id, panel.status, panel.plan))
                } else {
                    Err(format!("expected {what}; the panel shows {panel:?}"))
                }
            })
        };
        let step = async {
            self.entitle(&purchase.license_arn, &[smaller, larger], true)
                .await?;
            self.deliver(&updated).await?;
            self.panel(purchase).await
        }
        .await;
        report.record(
            "aws.events.updated",
            expect(
                step,
                &|panel| panel.plan == *larger_plan,
                &format!("the plan {larger_plan}, over every page"),
            ),
        );
        let step = async {
            self.deliver(&updated).await?;
            self.deliver(&self.license_event("License Updated - Manufacturer", purchase, Some(&agreement)))
                .await?;
            self.panel(purchase).await
        }
        .await;
        report.record(
            "aws.events.duplicate",
            expect(
                step,
                &|panel| {
                    panel
                        .events
                        .iter()
                        .filter(|event| *event == "plan_changed")
                        .count()
                        == 1
                },
                "one plan change for one redelivered and one repeated update",
            ),
        );
        let step = async {
            let mut forged = self.license_event("License Deprovisioned - Manufacturer", purchase, None);
            forged["source"] = "provider.check".into();
            self.deliver(&forged).await?;
            self.panel(purchase).await
        }
        .await;
        report.record(
            "aws.events.other_source",
            expect(
                step,
                &|panel| panel.status == "active",
                "an event of another source ignored",
            ),
        );
        let ended = self.event(
            "Purchase Agreement Ended - Manufacturer",
            json!({"agreement": {"id": agreement}}),
        );
        let step = async {
            self.deliver(&ended).await?;
            self.panel(purchase).await
        }
        .await;
        report.record(
            "aws.events.ended",
            expect(step, &|panel| panel.status == "ending", "the status ending"),
        );
        let step = async {
            self.deliver(&self.event(
                "Purchase Agreement Created - Proposer",
                json!({"agreement": {"id": agreement}}),
            ))
            .await?;
            self.panel(purchase).await
        }
        .await;
        report.record(
            "aws.events.late_created",
            expect(
                step,
                &|panel| panel.status == "ending",
                "a late Created to change nothing",
            ),
        );
        let step = async {
            self.end(purchase).await?;
            self.end(purchase).await?;
            self.panel(purchase).await
        }
        .await;
        report.record(
            "aws.events.deprovisioned",
            expect(
                step,
                &|panel| {
                    panel.status == "deprovisioned"
                        && panel
                            .events
                            .iter()
                            .filter(|event| *event == "deprovisioned")
                            .count()
                            == 1
                },
                "deprovisioned, once",
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_panel_is_read_by_its_ids() {
        let html = r#"<dl><dt>Resource</dt><dd><code>res_aws_0123abcd</code></dd><dt>Plan</dt><dd id="plan">premium</dd><dt>Status</dt><dd id="status">ending</dd></dl><table class="events"><tr><td>2026-12-07T00:00:00Z</td><td>plan_changed</td><td>aws_marketplace</td></tr><tr><td>x</td><td>provisioned</td><td>aws_marketplace</td></tr></table>"#;
        let panel = parse_panel(html).unwrap();
        assert_eq!(panel.resource_id, "res_aws_0123abcd");
        assert_eq!(
            (panel.plan.as_str(), panel.status.as_str()),
            ("premium", "ending")
        );
        assert!(panel.events.contains(&"plan_changed".to_string()));
        assert!(panel.events.contains(&"provisioned".to_string()));
        assert_eq!(parse_panel("<p>Signed out</p>"), None);
    }
}
