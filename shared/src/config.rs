//! Configuration read from environment variables once, at cold start.
//!
//! Every reader takes a lookup function instead of touching the process
//! environment, so tests can feed it a map; `from_env` constructors pass
//! [`process_env`]. A missing or invalid variable is a [`ConfigError`] whose
//! message names the variable, and the function refuses to start.

use crate::secret::{Rotating, Secret};
use crate::secret_parts::Part;
use std::fmt;

/// Why start-up stopped: which variable, and what is wrong with it.
#[derive(thiserror::Error)]
#[error("configuration error: environment variable {var} {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

// `main` returns this error, and Rust prints a returned error with `Debug`;
// make that the readable message rather than a struct dump.
impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl ConfigError {
    pub fn new(var: &'static str, problem: impl Into<String>) -> Self {
        Self {
            var,
            problem: problem.into(),
        }
    }
}

/// Looks variables up in the process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The variables that hold secrets. In a deployment they live in AWS
/// Secrets Manager (`SECRETS_NAME`, one secret per part:
/// `crate::secret_parts`), not in the function's plain
/// configuration, which anyone with `lambda:GetFunctionConfiguration` reads.
/// Each `*_PREVIOUS` is the value being rotated out, still accepted (or, for
/// outbound credentials, still tried) until the rotation ends
/// (docs/operating.md, "Rotating secrets").
pub const SECRET_VARS: [&str; 27] = [
    "ADDON_PASSWORD",
    "ADDON_PASSWORD_PREVIOUS",
    "ADDON_SSO_SALT",
    "ADDON_SSO_SALT_PREVIOUS",
    "HEROKU_PASSWORD",
    "HEROKU_PASSWORD_PREVIOUS",
    "HEROKU_SSO_SALT",
    "HEROKU_SSO_SALT_PREVIOUS",
    "HEROKU_CLIENT_SECRET",
    "HEROKU_CLIENT_SECRET_PREVIOUS",
    "HEROKU_TOKEN_KEY",
    "HEROKU_TOKEN_KEY_PREVIOUS",
    "SCALINGO_PASSWORD",
    "SCALINGO_PASSWORD_PREVIOUS",
    "SCALINGO_SSO_SALT",
    "SCALINGO_SSO_SALT_PREVIOUS",
    "CLOUD66_PROVIDER_UID",
    "CLOUD66_PROVIDER_UID_PREVIOUS",
    "CLOUDMORE_CLIENT_SECRET",
    "CLOUDMORE_CLIENT_SECRET_PREVIOUS",
    "CLOUDMORE_PASSWORD",
    "CLOUDMORE_PASSWORD_PREVIOUS",
    "PROVISIONER_SIGNING_SECRET",
    "PROVISIONER_SIGNING_SECRET_PREVIOUS",
    "OIDC_CLIENTS",
    "OIDC_SIGNING_KEY",
    "OIDC_SIGNING_KEY_PREVIOUS",
];

/// A function's configuration: the process environment, with the values of
/// the secret's parts it reads (`crate::secret_parts`; each a JSON object
/// whose keys are that part's [`SECRET_VARS`] names) taking precedence.
/// Without `SECRETS_NAME` (as in `make run`) plain variables serve.
#[derive(Default)]
pub struct Environment {
    secrets: std::collections::HashMap<String, String>,
    /// The parts read; `None`: no secret, every variable may be plain.
    parts: Option<Vec<Part>>,
}

/// The AWS SDK configuration (region, credentials, HTTP client) from the
/// default chain (on Lambda, the function's role; locally,
/// `AWS_ENDPOINT_URL_<SERVICE>` points a client at a stand-in), with time
/// limits well inside a function's timeout. Load it once per cold start and
/// build every client from it: clients built from one configuration share
/// its HTTP client (one trust store loaded, one connection pool) and its
/// credentials.
///
/// `caller` (the function's binary name) goes into every request's user
/// agent as `app/<caller>`: CloudTrail shows which function made a call, and
/// `make test` checks each recorded call against that function's grants in
/// the template (scripts/check_aws_calls.py).
pub async fn aws_sdk_config(caller: &str) -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(1))
        .operation_attempt_timeout(std::time::Duration::from_secs(2))
        .operation_timeout(std::time::Duration::from_secs(5))
        .build();
    let loader = aws_config::from_env().timeout_config(timeouts);
    match aws_config::AppName::new(caller.to_string()) {
        Ok(app) => loader.app_name(app),
        Err(_) => loader,
    }
    .load()
    .await
}

impl Environment {
    /// The values of the secret's `parts` under `prefix`, read with
    /// `client`, all at once (`SECRETS_NAME` is resolved, and re-read on its
    /// TTL, by `crate::refresh::SecretSource`).
    pub async fn read_parts(
        client: &aws_sdk_secretsmanager::Client,
        prefix: &str,
        parts: &'static [Part],
    ) -> Result<Self, ConfigError> {
        let reads = parts.iter().map(|part| async move {
            let name = part.secret_name(prefix);
            let output = client
                .get_secret_value()
                .secret_id(&name)
                .send()
                .await
                .map_err(|err| {
                    ConfigError::new(
                        "SECRETS_NAME",
                        format!(
                            "names a secret whose part {name} could not be read: {}",
                            aws_sdk_secretsmanager::error::DisplayErrorContext(&err)
                        ),
                    )
                })?;
            Ok::<_, ConfigError>((*part, output.secret_string().unwrap_or_default().to_string()))
        });
        let mut environment = Self {
            secrets: std::collections::HashMap::new(),
            parts: Some(parts.to_vec()),
        };
        for (part, text) in futures_util::future::try_join_all(reads).await? {
            environment
                .secrets
                .extend(Self::from_part_string(part, &text)?.secrets);
        }
        Ok(environment)
    }

    /// One part's JSON: an object of that part's variable names to strings.
    pub fn from_part_string(part: Part, text: &str) -> Result<Self, ConfigError> {
        let invalid = |problem: String| ConfigError::new("SECRETS_NAME", problem);
        let not_an_object = || {
            invalid(format!(
                "names a secret whose part {} is not a JSON object",
                part.name()
            ))
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(|_| not_an_object())?;
        let object = value.as_object().ok_or_else(not_an_object)?;
        let mut secrets = std::collections::HashMap::new();
        for (name, value) in object {
            if !part.vars().contains(&name.as_str()) {
                let problem = match Part::of(name) {
                    Some(other) => format!(
                        "names a secret whose part {} holds {name}, which belongs in part {}",
                        part.name(),
                        other.name()
                    ),
                    None => format!(
                        "names a secret whose part {} has the unknown key {name:?}",
                        part.name()
                    ),
                };
                return Err(invalid(problem));
            }
            let value = value.as_str().ok_or_else(|| {
                invalid(format!(
                    "names a secret whose part {} has a {name} that is not a string",
                    part.name()
                ))
            })?;
            if !value.trim().is_empty() {
                secrets.insert(name.clone(), value.to_string());
            }
        }
        Ok(Self {
            secrets,
            parts: Some(vec![part]),
        })
    }

    /// Whether this configuration can hold `part`'s variables: read from a
    /// secret with that part, or from plain variables (no secret).
    pub fn holds(&self, part: Part) -> bool {
        self.parts.as_ref().is_none_or(|parts| parts.contains(&part))
    }

    /// The lookup every configuration reader takes.
    pub fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        move |name| self.secrets.get(name).cloned().or_else(|| process_env(name))
    }
}

/// A variable that must be set to a non-blank value.
pub fn required(lookup: &impl Fn(&str) -> Option<String>, var: &'static str) -> Result<String, ConfigError> {
    optional(lookup, var).ok_or_else(|| ConfigError::new(var, "is missing or empty"))
}

/// A variable that may be absent; blank counts as absent.
pub fn optional(lookup: &impl Fn(&str) -> Option<String>, var: &str) -> Option<String> {
    lookup(var)
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

/// `var` (required) and, during its rotation, `previous_var`.
pub fn rotating(
    lookup: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    previous_var: &'static str,
) -> Result<Rotating, ConfigError> {
    rotating_with(lookup, var, previous_var, |_, value| Ok(Secret::new(value)))
}

/// [`rotating`], each value made by `parse` (which names the variable in
/// its error).
pub fn rotating_with<T>(
    lookup: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    previous_var: &'static str,
    parse: impl Fn(&'static str, String) -> Result<T, ConfigError>,
) -> Result<Rotating<T>, ConfigError> {
    let current = parse(var, required(lookup, var)?)?;
    let previous = optional(lookup, previous_var)
        .map(|value| parse(previous_var, value))
        .transpose()?;
    Ok(Rotating::new(current, previous))
}

/// A positive number of seconds, or `default` when unset.
pub fn seconds(
    lookup: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: i64,
) -> Result<i64, ConfigError> {
    match optional(lookup, var) {
        None => Ok(default),
        Some(value) => value
            .parse::<i64>()
            .ok()
            .filter(|seconds| *seconds > 0)
            .ok_or_else(|| ConfigError::new(var, "must be a positive whole number of seconds")),
    }
}

/// Splits a comma list, trimming blanks and dropping empty entries.
pub fn comma_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

/// An absolute `http`/`https` URL, returned without a trailing slash.
pub fn base_url(var: &'static str, value: String) -> Result<String, ConfigError> {
    let lower = value.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(|| ConfigError::new(var, "must be an absolute http:// or https:// URL"))?;
    if rest.is_empty() || rest.starts_with('/') || value.chars().any(char::is_whitespace) {
        return Err(ConfigError::new(var, "must be an absolute URL with a host"));
    }
    Ok(value.trim_end_matches('/').to_string())
}

/// [`base_url`] for an endpoint this service calls: [`outbound_url`]'s rule.
pub fn outbound_base_url(var: &'static str, value: String) -> Result<String, ConfigError> {
    outbound_url(var, base_url(var, value)?)
}

/// The URL of an endpoint this service calls (a platform's API, the
/// vendor's provisioner): `https`, or plain `http` to this machine only (a
/// local stand-in), so credentials and configs never cross a network in
/// clear.
pub fn outbound_url(var: &'static str, value: String) -> Result<String, ConfigError> {
    let parsed = reqwest::Url::parse(&value).map_err(|_| ConfigError::new(var, "must be an absolute URL"))?;
    match parsed.scheme() {
        "https" => Ok(value),
        "http" if is_loopback(&parsed) => Ok(value),
        _ => Err(ConfigError::new(
            var,
            "must be an https:// URL (plain http only to this machine: localhost, 127.0.0.0/8, [::1])",
        )),
    }
}

/// `localhost`, 127.0.0.0/8 or `[::1]`.
pub fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let address = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || address
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// The Clever Cloud add-on's identity and the lifecycle functions' settings.
#[derive(Debug, Clone)]
pub struct CleverCloudConfig {
    /// The manifest `id`; also the Basic-auth user name.
    pub addon_id: String,
    /// The manifest `api.password`, and the one being rotated away
    /// (`ADDON_PASSWORD_PREVIOUS`), still accepted so that a rotation never
    /// causes a 401.
    pub password: Rotating,
    /// The manifest `api.config_vars`, in order.
    pub config_vars: Vec<String>,
    /// Plan slugs the vendor accepts; `None` accepts any.
    pub plans: Option<Vec<String>>,
}

impl CleverCloudConfig {
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let addon_id = required(lookup, "ADDON_ID")?;
        if !addon_id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(ConfigError::new(
                "ADDON_ID",
                "must be lower case letters, digits, '-' or '_' (the manifest id)",
            ));
        }
        let password = rotating(lookup, "ADDON_PASSWORD", "ADDON_PASSWORD_PREVIOUS")?;
        let config_vars = config_vars(lookup, &addon_id)?;
        let plans = optional(lookup, "ADDON_PLANS").map(|value| comma_list(&value));
        if plans.as_ref().is_some_and(Vec::is_empty) {
            return Err(ConfigError::new("ADDON_PLANS", "lists no plan"));
        }
        Ok(Self {
            addon_id,
            password,
            config_vars,
            plans,
        })
    }

    pub fn accepts_plan(&self, plan: &str) -> bool {
        self.plans
            .as_ref()
            .is_none_or(|plans| plans.iter().any(|allowed| allowed == plan))
    }
}

/// `ADDON_CONFIG_VARS`: a non-empty comma list without repeats, each entry
/// upper case and starting with the add-on id's prefix.
pub fn config_vars(
    lookup: &impl Fn(&str) -> Option<String>,
    addon_id: &str,
) -> Result<Vec<String>, ConfigError> {
    let config_vars = comma_list(&required(lookup, "ADDON_CONFIG_VARS")?);
    let prefix = config_var_prefix(addon_id);
    for var in &config_vars {
        let well_formed = var.len() > prefix.len()
            && var.starts_with(&prefix)
            && var
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !well_formed {
            return Err(ConfigError::new(
                "ADDON_CONFIG_VARS",
                format!("entry {var:?} must be upper case and start with {prefix:?}"),
            ));
        }
    }
    if config_vars.is_empty() {
        return Err(ConfigError::new("ADDON_CONFIG_VARS", "lists no config var"));
    }
    let mut sorted = config_vars.clone();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != config_vars.len() {
        return Err(ConfigError::new("ADDON_CONFIG_VARS", "lists a config var twice"));
    }
    Ok(config_vars)
}

/// The prefix every config var must carry: the add-on id upper-cased, `-`
/// turned into `_`, then `_` (`addon-name` → `ADDON_NAME_`).
pub fn config_var_prefix(addon_id: &str) -> String {
    format!("{}_", addon_id.to_ascii_uppercase().replace('-', "_"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    pub fn lookup_from(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const VALID: &[(&str, &str)] = &[
        ("ADDON_ID", "addon-name"),
        ("ADDON_PASSWORD", "pw"),
        ("ADDON_CONFIG_VARS", "ADDON_NAME_URL, ADDON_NAME_TOKEN"),
    ];

    fn with(overrides: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let mut pairs: Vec<(&str, &str)> = VALID
            .iter()
            .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
            .copied()
            .collect();
        pairs.extend(overrides.iter().filter(|(_, v)| !v.is_empty()));
        lookup_from(&pairs)
    }

    #[test]
    fn reads_a_valid_configuration() {
        let config = CleverCloudConfig::from_lookup(&with(&[("ADDON_PLANS", "basic, premium")])).unwrap();
        assert_eq!(config.addon_id, "addon-name");
        assert_eq!(config.config_vars, ["ADDON_NAME_URL", "ADDON_NAME_TOKEN"]);
        assert!(config.accepts_plan("premium"));
        assert!(!config.accepts_plan("gold"));
    }

    #[test]
    fn without_plans_any_plan_is_accepted() {
        let config = CleverCloudConfig::from_lookup(&with(&[])).unwrap();
        assert!(config.accepts_plan("anything"));
    }

    #[test]
    fn each_missing_variable_is_named() {
        for var in ["ADDON_ID", "ADDON_PASSWORD", "ADDON_CONFIG_VARS"] {
            let err = CleverCloudConfig::from_lookup(&with(&[(var, "")])).unwrap_err();
            assert_eq!(err.var, var);
            assert!(err.to_string().contains(var), "{err}");
        }
    }

    #[test]
    fn config_vars_must_carry_the_addon_prefix_in_upper_case() {
        for bad in [
            "OTHER_URL",
            "addon_name_url",
            "ADDON_NAME_",
            "ADDON-NAME_URL",
            "ADDON_NAME_URL,ADDON_NAME_URL",
        ] {
            let err = CleverCloudConfig::from_lookup(&with(&[("ADDON_CONFIG_VARS", bad)])).unwrap_err();
            assert_eq!(err.var, "ADDON_CONFIG_VARS", "{bad}");
        }
    }

    #[test]
    fn addon_id_must_be_a_manifest_id() {
        let err = CleverCloudConfig::from_lookup(&with(&[("ADDON_ID", "Addon Name")])).unwrap_err();
        assert_eq!(err.var, "ADDON_ID");
    }

    #[test]
    fn base_url_requires_scheme_and_host_and_drops_trailing_slash() {
        assert_eq!(
            base_url("X", "https://a.example/r/".into()).unwrap(),
            "https://a.example/r"
        );
        assert!(base_url("X", "a.example".into()).is_err());
        assert!(base_url("X", "https://".into()).is_err());
        assert!(base_url("X", "ftp://a".into()).is_err());
    }

    #[test]
    fn outbound_urls_are_https_or_plain_http_to_this_machine_only() {
        for allowed in [
            "https://api.example/v2",
            "http://localhost:9000/x",
            "http://127.0.0.1:9000/x",
            "http://127.8.9.10/x",
            "http://[::1]:80/x",
        ] {
            assert_eq!(outbound_url("X", allowed.into()).unwrap(), allowed);
        }
        for refused in [
            "http://api.example/v2",
            "http://10.0.0.1/x",
            "http://localhost.evil.example/x",
            "http://128.0.0.1/x",
            "ftp://localhost/x",
            "not a url",
        ] {
            let err = outbound_url("X", refused.into()).unwrap_err();
            assert_eq!(err.var, "X", "{refused}");
        }
    }

    #[test]
    fn a_part_of_the_secret_is_an_object_of_that_parts_variables() {
        let env = Environment::from_part_string(
            Part::Lifecycle,
            r#"{"ADDON_PASSWORD": "from-the-secret", "HEROKU_PASSWORD": ""}"#,
        )
        .unwrap();
        assert_eq!(env.lookup()("ADDON_PASSWORD").as_deref(), Some("from-the-secret"));
        assert!(env.holds(Part::Lifecycle));
        assert!(!env.holds(Part::Tokens));
        assert!(
            Environment::default().holds(Part::Tokens),
            "plain variables hold every part"
        );
        for (bad, why) in [
            (r#"["x"]"#, "not a JSON object"),
            ("not json", "not a JSON object"),
            (r#"{"TABLE_NAME": "x"}"#, "unknown key"),
            (r#"{"ADDON_PASSWORD": 5}"#, "not a string"),
            (
                r#"{"ADDON_PASSWORD": "from-the-secret", "HEROKU_TOKEN_KEY": "k"}"#,
                "belongs in part tokens",
            ),
        ] {
            let err = Environment::from_part_string(Part::Lifecycle, bad)
                .err()
                .expect(bad);
            assert_eq!(err.var, "SECRETS_NAME", "{bad}");
            assert!(err.to_string().contains(why), "{bad}: {err}");
            assert!(err.to_string().contains("part lifecycle"), "{bad}: {err}");
            assert!(!err.to_string().contains("from-the-secret"));
        }
    }

    #[test]
    fn config_error_debug_is_the_readable_message() {
        let err = ConfigError::new("TABLE_NAME", "is missing or empty");
        assert_eq!(
            format!("{err:?}"),
            "configuration error: environment variable TABLE_NAME is missing or empty"
        );
    }

    #[test]
    fn config_debug_output_hides_the_password() {
        let config = CleverCloudConfig::from_lookup(&lookup_from(&[
            ("ADDON_ID", "a"),
            ("ADDON_PASSWORD", "super-secret-password"),
            ("ADDON_CONFIG_VARS", "A_URL"),
        ]))
        .unwrap();
        assert!(!format!("{config:?}").contains("super-secret-password"));
    }
}
