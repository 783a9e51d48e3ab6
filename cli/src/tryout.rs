//! `provider try`: one marketplace call at a time, made exactly as the
//! marketplace makes it, against any stack a manifest names (`make run`'s by
//! default). `try sso` signs a browser in as the marketplace's dashboard
//! would (docs/trying.md).

use crate::listing::{Marketplace, HEROKU_ADDONS_V3};
use crate::signin::{self, User};
use crate::{Failure, Outcome};
use clap::ValueEnum;
use serde_json::{json, Value};
use shared::clevercloud::sso::CleverCloudSso;
use shared::heroku::sso::HerokuSso;
use shared::scalingo::sso::ScalingoSso;
use shared::secret::Secret;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Subcommand)]
pub enum TryCommand {
    /// Provision a new add-on as the marketplace does, with its body and
    /// Basic auth from the manifest. Changes: a new add-on on the stack
    /// (and at the vendor's service). Prints the request and the answer;
    /// exits 1 unless it is a 2xx.
    Provision(CallArgs),
    /// Change add-on ID's plan (--plan). Changes: its plan, maybe its config.
    Plan(CallArgs),
    /// Deprovision add-on ID. Changes: ends it, for good.
    Deprovision(CallArgs),
    /// Suspend add-on ID (Scalingo). Changes: sign-ins and sessions stop.
    Suspend(CallArgs),
    /// Resume add-on ID (Scalingo).
    Resume(CallArgs),
    /// Make a valid sign-in for add-on ID, signed as the marketplace signs
    /// it with the manifest's salt: a self-submitting page for the POST
    /// forms (Clever Cloud, Heroku), the link for Scalingo. Prints where it
    /// is; --open gives it to the browser ($BROWSER, else xdg-open or
    /// open). Changes nothing until the browser follows it.
    Sso(SsoArgs),
    /// Register a new AWS Marketplace purchase as the buyer's browser does:
    /// a token minted by `make run`'s stand-in AWS Marketplace, posted as
    /// AWS's form to POST /aws/register. Changes: a new add-on on the stack
    /// (and at the vendor's service). Prints the license ARN and the answer;
    /// --open lets the browser post it and land signed in.
    Register(crate::aws_try::RegisterArgs),
    /// Deliver an AWS Marketplace event (created, amended, updated, ended,
    /// deprovisioned) about LICENSE_ARN to `marketplace-events`, as
    /// EventBridge does, through Lambda's Invoke API (`make run`'s). Changes:
    /// what the event says (a plan change, an end, a deprovision).
    Event(crate::aws_try::EventArgs),
}

#[derive(Debug, clap::Args)]
pub struct SsoArgs {
    /// Whose sign-in.
    #[arg(long, value_enum)]
    marketplace: SignInFrom,
    /// The add-on: this provider's resource id (`res_…`) for Clever Cloud
    /// and Scalingo, Heroku's add-on uuid for Heroku; none for Cloud 66,
    /// whose sign-in names a user (--email).
    id: Option<String>,
    /// The marketplace's manifest (default: the one `make run` wrote,
    /// under .run/current/).
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// Which proof: Clever Cloud's current SHA-512 `signature` or legacy
    /// `token`; Heroku's `user_scoped_resource_token` (current),
    /// `resource_token` (resource) or legacy `token`.
    #[arg(long, value_enum, default_value_t = Proof::Current)]
    proof: Proof,
    /// The user signing in.
    #[arg(long, default_value = "try@example.com")]
    email: String,
    /// The marketplace's id of that user.
    #[arg(long, default_value = "user_try")]
    user_id: String,
    /// Where to write the page (default: a new file in the temporary
    /// directory, readable by you alone).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Give the page or link to the browser.
    #[arg(long)]
    open: bool,
}

#[derive(Debug, clap::Args)]
pub struct CallArgs {
    /// Whose call.
    #[arg(long, value_enum)]
    marketplace: Marketplace,
    /// The add-on: this provider's resource id (`res_…`) for Clever Cloud
    /// and Scalingo, Heroku's add-on uuid for Heroku (a new one is made for
    /// a provision).
    id: Option<String>,
    /// The plan slug (provision, plan).
    #[arg(long, default_value = "basic")]
    plan: String,
    /// Clever Cloud's own id of the add-on (`addon_id`): made up for a
    /// provision, needed for a plan change.
    #[arg(long)]
    addon_id: Option<String>,
    /// Ask `make run`'s stand-in vendor to finish later (202, then the
    /// signed completion: docs/provisioner.md); same as
    /// `--option stand-in=pending`.
    #[arg(long = "async")]
    asynchronous: bool,
    /// An entry of the body's `options`, KEY=VALUE (repeatable).
    #[arg(long = "option", value_name = "KEY=VALUE")]
    options: Vec<String>,
    /// Heroku: the OAuth grant's lifetime in seconds (Heroku's are minutes;
    /// 0 tries an expired one).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    grant_expires_in: i64,
    /// The marketplace's manifest (default: the one `make run` wrote).
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// Print the call as a curl command (the password as a variable) and
    /// send nothing.
    #[arg(long)]
    curl: bool,
}

/// Where a sign-in comes from: the marketplaces with a manifest, and Cloud
/// 66, whose multipass is made with the stack's CLOUD66_* settings
/// (`source .run/current/env`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SignInFrom {
    Clevercloud,
    Heroku,
    Scalingo,
    Cloud66,
}

impl SignInFrom {
    fn key(self) -> &'static str {
        self.marketplace().map_or("cloud66", Marketplace::key)
    }

    /// The marketplace whose manifest holds the salt (not Cloud 66).
    fn marketplace(self) -> Option<Marketplace> {
        match self {
            Self::Clevercloud => Some(Marketplace::Clevercloud),
            Self::Heroku => Some(Marketplace::Heroku),
            Self::Scalingo => Some(Marketplace::Scalingo),
            Self::Cloud66 => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Proof {
    Current,
    Resource,
    Legacy,
}

pub async fn run(command: TryCommand) -> Result<Outcome, Failure> {
    match command {
        TryCommand::Sso(args) => sso(&args),
        TryCommand::Provision(args) => call(Action::Provision, &args).await,
        TryCommand::Plan(args) => call(Action::Plan, &args).await,
        TryCommand::Deprovision(args) => call(Action::Deprovision, &args).await,
        TryCommand::Suspend(args) => call(Action::Suspend, &args).await,
        TryCommand::Resume(args) => call(Action::Resume, &args).await,
        TryCommand::Register(args) => crate::aws_try::register(&args).await,
        TryCommand::Event(args) => crate::aws_try::event(&args).await,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Provision,
    Plan,
    Deprovision,
    Suspend,
    Resume,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Self::Provision => "provision",
            Self::Plan => "plan",
            Self::Deprovision => "deprovision",
            Self::Suspend => "suspend",
            Self::Resume => "resume",
        }
    }
}

/// What a call needs from the manifest: where, and as whom.
struct Endpoint {
    base_url: String,
    user: String,
    password: Secret,
    /// The variable a curl command reads the password from.
    password_var: &'static str,
}

fn endpoint(marketplace: Marketplace, manifest: &Value) -> Option<Endpoint> {
    let root = marketplace.manifest_api(manifest)?;
    let (user_field, password_var) = match marketplace {
        Marketplace::Clevercloud => ("/id", "ADDON_PASSWORD"),
        Marketplace::Heroku => ("/id", "HEROKU_PASSWORD"),
        Marketplace::Scalingo => ("/username", "SCALINGO_PASSWORD"),
    };
    Some(Endpoint {
        base_url: root
            .pointer("/production/base_url")?
            .as_str()?
            .trim_end_matches('/')
            .to_string(),
        user: manifest.pointer(user_field)?.as_str()?.to_string(),
        password: Secret::new(root.get("password")?.as_str()?),
        password_var,
    })
}

/// The request the marketplace sends for `action`: method, URL, body.
fn request(
    action: Action,
    args: &CallArgs,
    at: &Endpoint,
) -> Result<(&'static str, String, Option<Value>), Failure> {
    let marketplace = args.marketplace;
    let needs_id = || {
        args.id.clone().ok_or_else(|| {
            Failure::Usage(format!(
                "give the add-on's id: provider try {} --marketplace {} ID",
                action.name(),
                marketplace.key()
            ))
        })
    };
    let mut options = serde_json::Map::new();
    if args.asynchronous {
        options.insert("stand-in".into(), "pending".into());
    }
    for option in &args.options {
        let (key, value) = option
            .split_once('=')
            .ok_or_else(|| Failure::Usage(format!("--option {option}: give KEY=VALUE")))?;
        options.insert(key.to_string(), value.into());
    }
    let base = &at.base_url;
    Ok(match (marketplace, action) {
        (Marketplace::Clevercloud, Action::Provision) => {
            let addon_id = args
                .addon_id
                .clone()
                .unwrap_or_else(|| format!("addon_try_{}", shared::secret::random_hex(6)));
            let body = json!({
                "addon_id": addon_id, "owner_id": "orga_try", "owner_name": "Try Org",
                "user_id": "user_try", "plan": args.plan, "region": "EU",
                "callback_url": format!("https://api.clever-cloud.com/v2/vendor/apps/{addon_id}"),
                "logplex_token": "logtoken_try", "options": options,
            });
            ("POST", base.clone(), Some(body))
        }
        (Marketplace::Clevercloud, Action::Plan) => {
            let addon_id = args.addon_id.clone().ok_or_else(|| {
                Failure::Usage("a Clever Cloud plan change names its addon_id: give --addon-id".into())
            })?;
            let body = json!({"addon_id": addon_id, "plan": args.plan});
            ("PUT", format!("{base}/{}", needs_id()?), Some(body))
        }
        (Marketplace::Heroku, Action::Provision) => {
            let uuid = args.id.clone().unwrap_or_else(shared::secret::random_uuid);
            let lifetime = chrono::Duration::try_seconds(args.grant_expires_in)
                .ok_or_else(|| Failure::Usage("--grant-expires-in is out of range".into()))?;
            let expires = chrono::Utc::now()
                .checked_add_signed(lifetime)
                .ok_or_else(|| Failure::Usage("--grant-expires-in is out of range".into()))?
                .to_rfc3339();
            let body = json!({
                "uuid": uuid, "name": "try-addon", "plan": args.plan,
                "region": "amazon-web-services::us-east-1",
                "callback_url": format!("https://api.heroku.com/addons/{uuid}"),
                "oauth_grant": {"code": format!("try-{uuid}"), "expires_at": expires, "type": "authorization_code"},
                "options": options,
            });
            ("POST", base.clone(), Some(body))
        }
        (Marketplace::Heroku, Action::Plan) => (
            "PUT",
            format!("{base}/{}", needs_id()?),
            Some(json!({"plan": args.plan})),
        ),
        (Marketplace::Scalingo, Action::Provision) => {
            let body = json!({
                "plan": args.plan, "app_id": format!("try-app-{}", shared::secret::random_hex(4)),
                "uuid": shared::secret::random_uuid(), "options": options,
            });
            ("POST", base.clone(), Some(body))
        }
        (Marketplace::Scalingo, Action::Plan) => (
            "PUT",
            format!("{base}/{}", needs_id()?),
            Some(json!({"plan": args.plan, "options": options})),
        ),
        (Marketplace::Scalingo, Action::Deprovision) => {
            // Scalingo's tester sends the literal body `null`.
            ("DELETE", format!("{base}/{}", needs_id()?), Some(Value::Null))
        }
        (_, Action::Deprovision) => ("DELETE", format!("{base}/{}", needs_id()?), None),
        (Marketplace::Scalingo, Action::Suspend) => ("POST", format!("{base}/{}/suspend", needs_id()?), None),
        (Marketplace::Scalingo, Action::Resume) => ("POST", format!("{base}/{}/resume", needs_id()?), None),
        (_, Action::Suspend | Action::Resume) => {
            return Err(Failure::Usage(format!(
                "{} has no suspend or resume: Scalingo's alone",
                marketplace.key()
            )))
        }
    })
}

/// The call as a curl command; the password stays a variable.
fn curl(method: &str, url: &str, body: Option<&Value>, at: &Endpoint, marketplace: Marketplace) -> String {
    let quote = |text: &str| format!("'{}'", text.replace('\'', "'\\''"));
    let mut command = format!(
        "curl -sS -X {method} {} -u \"{}:${}\"",
        quote(url),
        at.user,
        at.password_var
    );
    if marketplace == Marketplace::Heroku {
        command.push_str(&format!(" -H 'Accept: {HEROKU_ADDONS_V3}'"));
    }
    if let Some(body) = body {
        command.push_str(&format!(
            " -H 'Content-Type: application/json' -d {}",
            quote(&body.to_string())
        ));
    }
    command
}

async fn call(action: Action, args: &CallArgs) -> Result<Outcome, Failure> {
    let manifest = read_manifest(args.manifest.as_deref(), args.marketplace)?;
    let at = endpoint(args.marketplace, &manifest).ok_or_else(|| {
        Failure::Usage(format!(
            "the manifest has no base URL, id and password: is it {}'s?",
            args.marketplace.key()
        ))
    })?;
    let (method, url, body) = request(action, args, &at)?;
    if args.curl {
        return Ok(Outcome::Done(json!({
            "curl": curl(method, &url, body.as_ref(), &at, args.marketplace),
        })));
    }
    let mut sent = crate::calls::client()?
        .request(method.parse().unwrap_or(reqwest::Method::GET), &url)
        .basic_auth(&at.user, Some(at.password.expose()));
    if args.marketplace == Marketplace::Heroku {
        sent = sent.header(reqwest::header::ACCEPT, HEROKU_ADDONS_V3);
    }
    if let Some(body) = &body {
        sent = sent
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
    }
    let answer = sent
        .send()
        .await
        .map_err(|err| Failure::Unreachable(format!("{method} {url}: {err}")))?;
    let (status, answered) = crate::calls::answer(answer, &format!("{method} {url}")).await?;
    let report = json!({
        "request": {"method": method, "url": url, "body": body},
        "answer": {"status": status, "body": answered},
    });
    Ok(if (200..300).contains(&status) {
        Outcome::Done(report)
    } else {
        Outcome::Findings(report)
    })
}

/// The manifest at `path`, or `make run`'s for `marketplace`.
fn read_manifest(path: Option<&Path>, marketplace: Marketplace) -> Result<Value, Failure> {
    let path = path.map_or_else(|| default_manifest(marketplace), Path::to_path_buf);
    let text = std::fs::read_to_string(&path).map_err(|err| {
        Failure::Usage(format!(
            "cannot read the manifest {} ({err}): give --manifest, or run `make run` first",
            path.display()
        ))
    })?;
    serde_json::from_str(&text)
        .map_err(|err| Failure::Usage(format!("the manifest {} is not JSON: {err}", path.display())))
}

/// The manifest `make run` wrote for `marketplace`.
fn default_manifest(marketplace: Marketplace) -> PathBuf {
    Path::new(".run/current").join(match marketplace {
        Marketplace::Clevercloud => "manifest.json",
        Marketplace::Heroku => "heroku-manifest.json",
        Marketplace::Scalingo => "scalingo-manifest.json",
    })
}

/// The manifest's SSO URL and salt (Scalingo's manifest is flat).
fn sso_settings(marketplace: Marketplace, manifest: &Value) -> Option<(String, Secret)> {
    let root = marketplace.manifest_api(manifest)?;
    let url = root.pointer("/production/sso_url")?.as_str()?.to_string();
    let salt = root.get("sso_salt")?.as_str()?;
    Some((url, Secret::new(salt)))
}

/// Cloud 66's callback for `--email`, as Cloud 66 sends it after its own
/// sign-in: a GET with the multipass and its signature.
fn cloud66_callback(args: &SsoArgs) -> Result<Outcome, Failure> {
    let lookup = shared::config::process_env;
    let cloud66 = shared::cloud66::sso::Cloud66Sso::from_lookup(&lookup)?.ok_or_else(|| {
        Failure::Usage(
            "Cloud 66 sign-in needs CLOUD66_PROVIDER and CLOUD66_PROVIDER_UID: `source .run/current/env`"
                .into(),
        )
    })?;
    let base = shared::config::required(&lookup, "PUBLIC_URL")?;
    let expires = (chrono::Utc::now() + chrono::Duration::minutes(5))
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string();
    let (multipass, signature) = cloud66.sign_in_as(&args.email, "Try User", &expires);
    let query = signin::encode(&[("multipass", multipass), ("signature", signature)]);
    let base = base.trim_end_matches('/');
    let link = format!("{base}/cloud66/sso/callback?{query}");
    // The callback signs in only the browser that started the sign-in (its
    // state cookie: docs/cloud66.md), and the start goes on to Cloud 66
    // itself: two steps, so nothing is opened.
    if args.open {
        return Err(Failure::Usage(
            "Cloud 66's sign-in starts in the browser: open the start URL, then the callback (without --open)".into(),
        ));
    }
    give(
        args,
        "GET",
        &link,
        json!({
            "start_url": format!("{base}/cloud66/sso/start"),
            "url": link,
            "steps": "open start_url in the browser (it sets the sign-in's state cookie, then goes to Cloud 66), then url in the same browser",
        }),
    )
}

fn sso(args: &SsoArgs) -> Result<Outcome, Failure> {
    let Some(marketplace) = args.marketplace.marketplace() else {
        return cloud66_callback(args);
    };
    let id = args.id.clone().ok_or_else(|| {
        Failure::Usage(format!(
            "give the add-on's id: provider try sso --marketplace {} ID",
            marketplace.key()
        ))
    })?;
    let manifest = read_manifest(args.manifest.as_deref(), marketplace)?;
    let (sso_url, salt) = sso_settings(marketplace, &manifest).ok_or_else(|| {
        Failure::Usage(format!(
            "the manifest has no SSO URL and salt: is it {}'s?",
            marketplace.key()
        ))
    })?;
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let user = User {
        email: &args.email,
        user_id: &args.user_id,
    };
    let wrong_proof = || {
        Failure::Usage(format!(
            "--proof {} is not one of {}'s",
            args.proof
                .to_possible_value()
                .map_or_else(String::new, |value| value.get_name().to_string()),
            args.marketplace.key()
        ))
    };
    let form = match (marketplace, args.proof) {
        (Marketplace::Scalingo, Proof::Current) => {
            let link = signin::scalingo_link(&ScalingoSso::new(salt, None, 0), &sso_url, &id, &timestamp);
            return give(args, "GET", &link, json!({ "url": link }));
        }
        (Marketplace::Scalingo, _) => return Err(wrong_proof()),
        (Marketplace::Clevercloud, Proof::Current) => {
            signin::clevercloud_form(&CleverCloudSso::new(salt, 0), &id, &user, &timestamp)
        }
        (Marketplace::Clevercloud, Proof::Legacy) => {
            signin::clevercloud_legacy_form(&CleverCloudSso::new(salt, 0), &id, &args.email, &timestamp)
        }
        (Marketplace::Clevercloud, Proof::Resource) => return Err(wrong_proof()),
        (Marketplace::Heroku, proof) => {
            let uuid = id.clone();
            let id = shared::heroku::resource_id(&uuid)
                .ok_or_else(|| Failure::Usage(format!("{uuid} is not a Heroku add-on uuid")))?;
            let field = match proof {
                Proof::Current => "user_scoped_resource_token",
                Proof::Resource => "resource_token",
                Proof::Legacy => "token",
            };
            signin::heroku_form(
                &HerokuSso::new(salt, None, 0),
                &id,
                &uuid,
                &user,
                &timestamp,
                field,
            )
        }
    };
    let page = signin::auto_post_page(&sso_url, &form);
    let out = match &args.out {
        Some(out) => out.clone(),
        None => std::env::temp_dir().join(format!(
            "provider-try-sso-{}-{}.html",
            args.marketplace.key(),
            shared::secret::random_hex(6)
        )),
    };
    signin::write_private(&out, &page)?;
    let fields: Vec<&str> = form.iter().map(|(name, _)| *name).collect();
    let target = out.display().to_string();
    give(
        args,
        "POST",
        &target,
        json!({ "page": target, "posts_to": sso_url, "fields": fields }),
    )
}

/// The report, after opening `target` in the browser when asked.
fn give(args: &SsoArgs, method: &str, target: &str, mut report: Value) -> Result<Outcome, Failure> {
    report["marketplace"] = args.marketplace.key().into();
    report["method"] = method.into();
    if let Some(id) = &args.id {
        report["id"] = id.clone().into();
    }
    if args.open {
        signin::open_in_browser(target)?;
        report["opened"] = true.into();
    }
    Ok(Outcome::Done(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sso_settings_are_read_from_each_manifests_shape() {
        let nested = json!({"api": {"sso_salt": "s", "production": {"sso_url": "https://x/sso"}}});
        let (url, salt) = sso_settings(Marketplace::Heroku, &nested).unwrap();
        assert_eq!((url.as_str(), salt.expose()), ("https://x/sso", "s"));
        assert!(
            sso_settings(Marketplace::Scalingo, &nested).is_none(),
            "Scalingo's is flat"
        );
        let flat = json!({"sso_salt": "t", "production": {"sso_url": "https://y/sso"}});
        assert_eq!(
            sso_settings(Marketplace::Scalingo, &flat).unwrap().0,
            "https://y/sso"
        );
    }

    fn args(marketplace: Marketplace, id: Option<&str>) -> CallArgs {
        CallArgs {
            marketplace,
            id: id.map(str::to_string),
            plan: "premium".into(),
            addon_id: None,
            asynchronous: true,
            options: vec!["color=blue".into()],
            grant_expires_in: 300,
            manifest: None,
            curl: false,
        }
    }

    fn at() -> Endpoint {
        Endpoint {
            base_url: "https://x.example/scalingo/resources".into(),
            user: "addon-name".into(),
            password: Secret::new("pw"),
            password_var: "SCALINGO_PASSWORD",
        }
    }

    #[test]
    fn each_call_is_the_marketplaces_method_path_and_body() {
        let (method, url, body) =
            request(Action::Provision, &args(Marketplace::Scalingo, None), &at()).unwrap();
        assert_eq!(
            (method, url.as_str()),
            ("POST", "https://x.example/scalingo/resources")
        );
        let body = body.unwrap();
        assert_eq!(body["plan"], "premium");
        assert_eq!(body["options"], json!({"stand-in": "pending", "color": "blue"}));
        assert!(body["uuid"].is_string() && body["app_id"].is_string());
        let (method, url, body) = request(
            Action::Deprovision,
            &args(Marketplace::Scalingo, Some("res_sc_1")),
            &at(),
        )
        .unwrap();
        assert_eq!(
            (method, url.as_str(), body),
            (
                "DELETE",
                "https://x.example/scalingo/resources/res_sc_1",
                Some(Value::Null)
            )
        );
        let (method, url, _) = request(
            Action::Suspend,
            &args(Marketplace::Scalingo, Some("res_sc_1")),
            &at(),
        )
        .unwrap();
        assert_eq!(
            (method, url.as_str()),
            ("POST", "https://x.example/scalingo/resources/res_sc_1/suspend")
        );
        assert!(request(Action::Suspend, &args(Marketplace::Heroku, Some("u")), &at()).is_err());
        assert!(
            request(Action::Plan, &args(Marketplace::Heroku, None), &at()).is_err(),
            "no id"
        );
        assert!(
            request(
                Action::Plan,
                &args(Marketplace::Clevercloud, Some("res_1")),
                &at()
            )
            .is_err(),
            "no addon_id"
        );
        let (_, _, body) = request(Action::Provision, &args(Marketplace::Heroku, None), &at()).unwrap();
        let body = body.unwrap();
        assert_eq!(body["oauth_grant"]["type"], "authorization_code");
        assert!(shared::heroku::resource_id(body["uuid"].as_str().unwrap()).is_some());
        let mut bad = args(Marketplace::Scalingo, None);
        bad.options = vec!["no-equals".into()];
        assert!(request(Action::Provision, &bad, &at()).is_err());
    }

    #[test]
    fn the_curl_command_keeps_the_password_a_variable() {
        let command = curl(
            "PUT",
            "https://x.example/r/1",
            Some(&json!({"plan": "it's"})),
            &at(),
            Marketplace::Heroku,
        );
        assert!(
            command.contains("-u \"addon-name:$SCALINGO_PASSWORD\""),
            "{command}"
        );
        assert!(!command.contains("pw"), "{command}");
        assert!(command.contains("version=3"), "{command}");
        assert!(command.contains(r#"-d '{"plan":"it'\''s"}'"#), "{command}");
    }

    #[test]
    fn a_page_is_written_for_its_owner_alone() {
        let path = std::env::temp_dir().join(format!("try-test-{}.html", shared::secret::random_hex(4)));
        crate::signin::write_private(&path, "x").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        std::fs::remove_file(&path).unwrap();
    }
}
