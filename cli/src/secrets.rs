//! `provider secrets`: the deployment's secret, one Secrets Manager secret
//! per part (`shared::secret_parts`: `<name>/lifecycle`, `<name>/tokens`, …,
//! each a JSON object of that part's variables), created and rotated
//! through the SDK from JSON built here, so no character in a value can make
//! it unreadable, and no value is ever printed (docs/operating.md). One
//! command surface over the parts: a variable names its part.

use crate::{aws_failure, Failure, Outcome};
use clap::Subcommand;
use serde_json::{json, Map, Value};
use shared::config::SECRET_VARS;
use shared::secret_parts::Part;

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Create the deployment's secret NAME (the list of what it generates
    /// is in the long help).
    #[command(long_about = init_help())]
    Init {
        /// The secret's name, e.g. `my-addon/provider`.
        #[arg(long)]
        name: String,
        /// An earlier version's one secret (its ARN): its values are split
        /// into the parts, and it is left as it is (docs/operating.md,
        /// "Upgrading to the split secret").
        #[arg(long)]
        from: Option<String>,
        /// Print what would be stored (names only) and create nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Start, or with --finish end, the rotation of one secret variable in
    /// the secret SECRETS_NAME names. Changes: the value of the part that
    /// holds VAR. Start:
    /// the current value moves to VAR_PREVIOUS (still accepted, or still
    /// tried, everywhere) and VAR gets a new one, generated or read from
    /// standard input (--stdin); finish: VAR_PREVIOUS is removed. Running
    /// functions pick either up within SECRETS_TTL_SECONDS.
    Rotate {
        /// The secret variable to rotate: any the secret holds with a
        /// VAR_PREVIOUS (the list below is the one the command checks).
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(rotatable()))]
        var: String,
        /// End the rotation: remove VAR_PREVIOUS.
        #[arg(long)]
        finish: bool,
        /// Read the new value from standard input (a partner's new UID,
        /// Cloudmore's new password) instead of generating one.
        #[arg(long)]
        stdin: bool,
        /// Print what would change (names only) and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// HEROKU_TOKEN_KEY only: seal every Heroku add-on's grant and
        /// tokens anew under the current key (TABLE_NAME), as the start of
        /// its rotation does; resumable and idempotent. Changes the secret
        /// not at all.
        #[arg(long, conflicts_with_all = ["finish", "stdin"])]
        reseal: bool,
    },
}

/// The key that seals Heroku's OAuth credentials at rest: its rotation
/// re-seals them, and may end only once none needs the previous key.
const TOKEN_KEY: &str = "HEROKU_TOKEN_KEY";

/// What a value is made of when the project generates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Generated {
    /// 192 random bits, as hex.
    Random192,
    /// 256 bits for AES-256-GCM, as 64 hex digits.
    Random256,
    /// A 2048-bit RSA key, PKCS#8 PEM.
    RsaKey,
}

/// How the project makes `var`, or `None` when a platform issues it.
fn generated(var: &str) -> Option<Generated> {
    match var {
        "ADDON_PASSWORD"
        | "ADDON_SSO_SALT"
        | "HEROKU_PASSWORD"
        | "HEROKU_SSO_SALT"
        | "SCALINGO_PASSWORD"
        | "SCALINGO_SSO_SALT"
        | "PROVISIONER_SIGNING_SECRET" => Some(Generated::Random192),
        "HEROKU_TOKEN_KEY" => Some(Generated::Random256),
        "OIDC_SIGNING_KEY" => Some(Generated::RsaKey),
        _ => None,
    }
}

/// A new value for `var`, when the project makes it.
fn generate(var: &str) -> Option<Result<String, Failure>> {
    Some(match generated(var)? {
        Generated::Random192 => Ok(shared::secret::random_hex(24)),
        Generated::Random256 => Ok(shared::secret::random_hex(32)),
        Generated::RsaKey => shared::oidc::new_signing_key_pem().map_err(Failure::Failed),
    })
}

/// `secrets init`'s help: what it generates and what it takes from the
/// environment, from the lists the command uses.
pub fn init_help() -> String {
    let (made, given): (Vec<&str>, Vec<&str>) = SECRET_VARS
        .iter()
        .copied()
        .filter(|var| !var.ends_with("_PREVIOUS"))
        .partition(|var| generated(var).is_some());
    format!(
        "Create the deployment's secret NAME: one Secrets Manager secret per part ({}), each NAME/<part>. \
         Changes: those new secrets. Generated: {} (OIDC_SIGNING_KEY only when OIDC_CLIENTS is given). \
         Taken from the environment when set (or, with --from, from an earlier version's one secret): {}. \
         Prints NAME for the stage file's SecretsName.",
        Part::ALL.map(Part::name).join(", "),
        made.join(", "),
        given.join(", ")
    )
}

/// What to do once a rotation has started or ended: the runbook's next step.
fn next_step(var: &str, finish: bool) -> &'static str {
    match (var, finish) {
        ("ADDON_PASSWORD" | "ADDON_SSO_SALT", false) => {
            "put the new value in Clever Cloud's manifest (`make manifest` prints it) and submit it; once Clever Cloud uses it, run this again with --finish"
        }
        ("HEROKU_PASSWORD" | "HEROKU_SSO_SALT", false) => {
            "put the new value in the Heroku manifest (`make manifest STACK=<stack> MARKETPLACE=heroku` prints it) and push it (`heroku addons:admin:manifest:push`); once Heroku uses it, run this again with --finish"
        }
        ("SCALINGO_PASSWORD" | "SCALINGO_SSO_SALT", false) => {
            "put the new value in the Scalingo manifest (`make manifest STACK=<stack> MARKETPLACE=scalingo` prints it) and send it to Scalingo; once Scalingo uses it, run this again with --finish"
        }
        ("HEROKU_TOKEN_KEY", false) => {
            "the new key seals from now on, the previous one still opens, and every Heroku add-on's grant and tokens were sealed anew (\"reseal\"); after SECRETS_TTL_SECONDS run this again with --reseal (it catches what a function sealed before it read the new key), then with --finish"
        }
        ("HEROKU_CLIENT_SECRET", false) => {
            "the value Heroku's partner portal issued is in place (the previous one is still tried if Heroku refuses it); once token refreshes succeed, run this again with --finish"
        }
        ("PROVISIONER_SIGNING_SECRET", false) => {
            "requests are now signed with both secrets; give your service the new one, then run this again with --finish"
        }
        ("OIDC_SIGNING_KEY", false) => {
            "the JWKS publishes both keys and the new one signs; after 15 minutes run this again with --finish"
        }
        ("CLOUD66_PROVIDER_UID", false) => {
            "callbacks signed with either UID are accepted; once Cloud 66 uses the new UID, run this again with --finish"
        }
        ("CLOUDMORE_CLIENT_SECRET" | "CLOUDMORE_PASSWORD", false) => {
            "change it at Cloudmore now (the previous value is tried while Cloudmore refuses the new one); then run this again with --finish"
        }
        (_, true) => "done: the previous value stops working within SECRETS_TTL_SECONDS",
        _ => "",
    }
}

fn is_rotatable(var: &str) -> bool {
    SECRET_VARS.contains(&var) && SECRET_VARS.contains(&format!("{var}_PREVIOUS").as_str())
}

/// Every variable `secrets rotate` takes, in the secret's order: its help
/// and its check are this one list.
pub fn rotatable() -> Vec<&'static str> {
    SECRET_VARS
        .iter()
        .copied()
        .filter(|var| is_rotatable(var))
        .collect()
}

pub async fn run(command: SecretsCommand) -> Result<Outcome, Failure> {
    match command {
        SecretsCommand::Init { name, from, dry_run } => init(&name, from.as_deref(), dry_run).await,
        SecretsCommand::Rotate {
            var,
            dry_run,
            reseal: true,
            ..
        } => reseal_only(&var, dry_run).await,
        SecretsCommand::Rotate {
            var,
            finish,
            stdin,
            dry_run,
            reseal: false,
        } => rotate(&var, finish, stdin, dry_run).await,
    }
}

/// The secret's first values: from `lookup` where set, generated where the
/// project can make them.
fn initial_values(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<(Map<String, Value>, Vec<&'static str>), Failure> {
    let mut values = Map::new();
    let mut generated = Vec::new();
    for var in SECRET_VARS {
        if let Some(value) = shared::config::optional(lookup, var) {
            values.insert(var.into(), value.into());
        } else if var == "OIDC_SIGNING_KEY" && shared::config::optional(lookup, "OIDC_CLIENTS").is_none() {
            // No app registered: no provider to sign for.
        } else if let Some(value) = generate(var) {
            values.insert(var.into(), value?.into());
            generated.push(var);
        }
    }
    Ok((values, generated))
}

async fn init(name: &str, from: Option<&str>, dry_run: bool) -> Result<Outcome, Failure> {
    if name.is_empty() || name.ends_with('/') {
        return Err(Failure::Usage(format!(
            "--name {name:?} must be a secret name such as my-addon/provider"
        )));
    }
    let earlier = match from {
        Some(arn) => Some(read_earlier(arn).await?),
        None => None,
    };
    let (values, generated) = match &earlier {
        Some(earlier) => {
            initial_values(&|var: &str| earlier.get(var).and_then(Value::as_str).map(str::to_string))?
        }
        None => initial_values(&shared::config::process_env)?,
    };
    let names: Vec<&String> = values.keys().collect();
    let parts: Vec<String> = Part::ALL.iter().map(|part| part.secret_name(name)).collect();
    if dry_run {
        return Ok(Outcome::Done(json!({
            "dry_run": true, "SecretsName": name, "would_create": parts, "would_store": names,
            "would_generate": generated,
        })));
    }
    let client = client().await;
    let mut created = Map::new();
    for part in Part::ALL {
        let secret_name = part.secret_name(name);
        let held: Map<String, Value> = values
            .iter()
            .filter(|(var, _)| part.vars().contains(&var.as_str()))
            .map(|(var, value)| (var.clone(), value.clone()))
            .collect();
        let made = client
            .create_secret()
            .name(&secret_name)
            .description(format!(
                "The marketplace add-on provider's secret, part {} (docs/operating.md)",
                part.name()
            ))
            .secret_string(Value::Object(held).to_string())
            .send()
            .await;
        match made {
            Ok(made) => {
                created.insert(part.name().into(), made.arn().unwrap_or_default().into());
            }
            Err(err) => {
                let made_so_far: Vec<&String> = created.keys().collect();
                let failure = aws_failure(&format!("create the secret {secret_name}"), err);
                let message = format!(
                    "{}; created before it: {made_so_far:?} (delete them, or choose another --name, and run this again)",
                    failure.message()
                );
                return Err(match failure {
                    Failure::Unreachable(_) => Failure::Unreachable(message),
                    _ => Failure::Failed(message),
                });
            }
        }
    }
    Ok(Outcome::Done(json!({
        "SecretsName": name,
        "parts": created,
        "stored": names,
        "generated": generated,
    })))
}

/// An earlier version's one secret, as a JSON object.
async fn read_earlier(arn: &str) -> Result<Map<String, Value>, Failure> {
    let read = client()
        .await
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|err| aws_failure("read the earlier secret", err))?;
    let values: Map<String, Value> = serde_json::from_str(read.secret_string().unwrap_or("{}"))
        .map_err(|_| Failure::Failed("the earlier secret is not a JSON object".into()))?;
    if let Some(unknown) = values.keys().find(|var| !SECRET_VARS.contains(&var.as_str())) {
        return Err(Failure::Failed(format!(
            "the earlier secret has the unknown key {unknown:?}: nothing was created"
        )));
    }
    Ok(values)
}

async fn rotate(var: &str, finish: bool, stdin: bool, dry_run: bool) -> Result<Outcome, Failure> {
    if !is_rotatable(var) {
        return Err(Failure::Usage(format!(
            "{var} is not a secret that rotates; one of {}",
            rotatable().join(", ")
        )));
    }
    // The token key's rotation re-seals what is in the table: fail before
    // anything changes when the table is not named.
    let table = if var == TOKEN_KEY {
        Some(crate::store().await?)
    } else {
        None
    };
    let part = Part::of(var).ok_or_else(|| Failure::Usage(format!("{var} is in no part of the secret")))?;
    let (client, secret_id, read) = read_part(part).await?;
    let mut values = read.values;
    let previous_var = format!("{var}_PREVIOUS");
    let under_way = values
        .get(&previous_var)
        .and_then(Value::as_str)
        .is_some_and(|value| !value.is_empty());
    let changed = if finish {
        if !under_way {
            return Err(Failure::Usage(format!(
                "no rotation of {var} is under way ({previous_var} is empty)"
            )));
        }
        if let Some(store) = &table {
            // The previous key may go only once nothing needs it.
            let report = seal_pass(store, &values, false).await?;
            if report.previous_only > 0 {
                return Err(Failure::Failed(format!(
                    "{} Heroku add-on(s) still have tokens only {previous_var} opens: run `provider secrets rotate {TOKEN_KEY} --reseal`, then --finish again",
                    report.previous_only
                )));
            }
        }
        values.remove(&previous_var);
        vec![previous_var.clone()]
    } else {
        if under_way {
            return Err(Failure::Usage(format!(
                "a rotation of {var} is under way ({previous_var} is set): finish it first with --finish"
            )));
        }
        // No value yet (a marketplace taken up after the secret was made):
        // the first one is set, with nothing to keep accepting.
        let current = values
            .get(var)
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty())
            .map(str::to_string);
        let new = if dry_run {
            String::new()
        } else if stdin {
            read_stdin()?
        } else {
            match generate(var) {
                Some(value) => value?,
                None => {
                    return Err(Failure::Usage(format!(
                        "{var} comes from the platform: pipe its new value in with --stdin"
                    )))
                }
            }
        };
        if !dry_run && current.as_deref() == Some(new.as_str()) {
            return Err(Failure::Usage(format!("the new {var} is the current one")));
        }
        values.insert(var.into(), new.into());
        match current {
            Some(current) => {
                values.insert(previous_var.clone(), current.into());
                vec![var.to_string(), previous_var.clone()]
            }
            None => vec![var.to_string()],
        }
    };
    let step = if finish { "finish" } else { "start" };
    if dry_run {
        return Ok(Outcome::Done(
            json!({ "dry_run": true, "var": var, "step": step, "would_change": changed }),
        ));
    }
    write_part(&client, &secret_id, &read.version_id, &values).await?;
    let next = if !finish && changed.len() == 1 {
        "the first value is set; nothing was being replaced, so there is nothing to finish"
    } else {
        next_step(var, finish)
    };
    let mut report = json!({
        "var": var, "step": step, "changed": changed, "next": next,
    });
    if let (Some(store), false) = (&table, finish) {
        // The new key seals from now on: what the previous one sealed is
        // sealed anew, quiet add-ons included.
        let sealed = seal_pass(store, &values, true).await?;
        let left = sealed.previous_only > 0;
        report["reseal"] = serde_json::to_value(&sealed).unwrap_or_default();
        if left {
            return Ok(Outcome::Findings(report));
        }
    }
    Ok(Outcome::Done(report))
}

/// `rotate HEROKU_TOKEN_KEY --reseal`: the re-sealing pass alone, to resume
/// one that stopped, or to catch values a function sealed under the
/// previous key before it read the new one (within SECRETS_TTL_SECONDS).
async fn reseal_only(var: &str, dry_run: bool) -> Result<Outcome, Failure> {
    if var != TOKEN_KEY {
        return Err(Failure::Usage(format!("--reseal is for {TOKEN_KEY} only")));
    }
    let store = crate::store().await?;
    let (_, _, read) = read_part(Part::Tokens).await?;
    let report = seal_pass(&store, &read.values, !dry_run).await?;
    let left = report.previous_only > 0;
    let report = json!({ "var": var, "step": "reseal", "dry_run": dry_run, "reseal": report });
    Ok(if left {
        Outcome::Findings(report)
    } else {
        Outcome::Done(report)
    })
}

/// A part of the secret as read: its values and the version they are.
struct ReadPart {
    values: Map<String, Value>,
    version_id: String,
}

/// The part of the secret SECRETS_NAME names: the client, the part's
/// secret name, and what it holds.
async fn read_part(part: Part) -> Result<(aws_sdk_secretsmanager::Client, String, ReadPart), Failure> {
    let prefix = shared::config::required(&shared::config::process_env, "SECRETS_NAME")?;
    let secret_id = part.secret_name(&prefix);
    let client = client().await;
    let read = client
        .get_secret_value()
        .secret_id(&secret_id)
        .send()
        .await
        .map_err(|err| aws_failure(&format!("read the secret {secret_id}"), err))?;
    let values: Map<String, Value> = serde_json::from_str(read.secret_string().unwrap_or("{}"))
        .map_err(|_| Failure::Failed(format!("the secret {secret_id} is not a JSON object")))?;
    let version_id = read.version_id().unwrap_or_default().to_string();
    Ok((client, secret_id, ReadPart { values, version_id }))
}

async fn write_part(
    client: &aws_sdk_secretsmanager::Client,
    arn: &str,
    read_version: &str,
    values: &Map<String, Value>,
) -> Result<(), Failure> {
    let written = client
        .put_secret_value()
        .secret_id(arn)
        .client_request_token(shared::secret::write_token(read_version))
        .secret_string(Value::Object(values.clone()).to_string())
        .send()
        .await;
    match written {
        Ok(_) => Ok(()),
        Err(aws_sdk_secretsmanager::error::SdkError::ServiceError(err))
            if err.err().is_resource_exists_exception() =>
        {
            Err(Failure::Failed(
                "someone else changed the secret since it was read (another rotation?): nothing was written; run the command again".into(),
            ))
        }
        Err(err) => Err(aws_failure("write the secret", err)),
    }
}

/// A re-sealing pass (or, without `reseal`, a count) over the table with
/// the keys in `values`.
async fn seal_pass(
    store: &shared::store::DynamoStore,
    values: &Map<String, Value>,
    reseal: bool,
) -> Result<shared::heroku::reseal::SealReport, Failure> {
    let lookup = |name: &str| values.get(name).and_then(Value::as_str).map(str::to_string);
    let keys = shared::heroku::tokens::TokenKeys::from_lookup(&lookup)?;
    shared::heroku::reseal::seal_pass(store, &keys, reseal)
        .await
        .map_err(Failure::from)
}

fn read_stdin() -> Result<String, Failure> {
    let mut value = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut value)
        .map_err(|err| Failure::Usage(format!("cannot read standard input: {err}")))?;
    let value = value.trim_end_matches(['\n', '\r']).to_string();
    if value.is_empty() {
        return Err(Failure::Usage("standard input held no value".into()));
    }
    Ok(value)
}

async fn client() -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&shared::config::aws_sdk_config("provider").await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_values_come_from_the_environment_or_are_generated_and_never_twice() {
        let lookup = |name: &str| match name {
            "ADDON_PASSWORD" => Some("from-the-environment".to_string()),
            "CLOUD66_PROVIDER_UID" => Some("u\"i\\d".to_string()),
            _ => None,
        };
        let (values, generated) = initial_values(&lookup).unwrap();
        assert_eq!(values["ADDON_PASSWORD"], "from-the-environment");
        assert_eq!(values["CLOUD66_PROVIDER_UID"], "u\"i\\d");
        assert_eq!(
            generated,
            [
                "ADDON_SSO_SALT",
                "HEROKU_PASSWORD",
                "HEROKU_SSO_SALT",
                "HEROKU_TOKEN_KEY",
                "SCALINGO_PASSWORD",
                "SCALINGO_SSO_SALT",
                "PROVISIONER_SIGNING_SECRET"
            ]
        );
        assert_eq!(values["ADDON_SSO_SALT"].as_str().unwrap().len(), 48);
        assert!(!values.contains_key("OIDC_SIGNING_KEY"), "no app, no key");
        assert!(
            !values.contains_key("CLOUDMORE_PASSWORD"),
            "only the platform gives it"
        );
        let text = Value::Object(values).to_string();
        let back: Map<String, Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back["CLOUD66_PROVIDER_UID"], "u\"i\\d",
            "quotes and backslashes survive"
        );
        let again = initial_values(&|_: &str| None).unwrap().0;
        let (_, first) = initial_values(&|_: &str| None).unwrap();
        assert_eq!(first.len(), 8);
        assert_ne!(
            again["ADDON_PASSWORD"],
            initial_values(&|_: &str| None).unwrap().0["ADDON_PASSWORD"]
        );
    }

    #[test]
    fn only_secrets_with_a_previous_slot_rotate() {
        for var in [
            "ADDON_PASSWORD",
            "ADDON_SSO_SALT",
            "PROVISIONER_SIGNING_SECRET",
            "OIDC_SIGNING_KEY",
            "CLOUD66_PROVIDER_UID",
            "CLOUDMORE_CLIENT_SECRET",
            "CLOUDMORE_PASSWORD",
        ] {
            assert!(is_rotatable(var), "{var}");
            assert!(!next_step(var, false).is_empty(), "{var}");
        }
        for var in ["OIDC_CLIENTS", "ADDON_PASSWORD_PREVIOUS", "TABLE_NAME"] {
            assert!(!is_rotatable(var), "{var}");
        }
    }
}
