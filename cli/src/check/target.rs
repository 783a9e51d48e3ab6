//! The deployment under test: read from a Clever Cloud manifest and/or flags,
//! secrets from the manifest file or the environment (never from argv, which
//! other users of the machine can read), and the manifest-shape checks.

use super::report::Report;
use super::CheckArgs;
use reqwest::Url;
use shared::cloud66::sso::Cloud66Sso;
use shared::config::{self, config_var_prefix};
use shared::secret::Secret;
use std::fmt;

/// Where the lifecycle and SSO requests go, and with what.
pub struct Target {
    pub marketplace: super::Marketplace,
    pub addon_id: String,
    pub password: Secret,
    pub sso_salt: Option<Secret>,
    pub config_vars: Vec<String>,
    pub base_url: String,
    pub sso_url: String,
    /// Where `/cloud66/sso/…` and `/dashboard` live.
    pub root_url: Url,
    pub cloud66: Option<Cloud66Sso>,
    pub plan: String,
    pub new_plan: String,
    pub cloud66_email: String,
    pub concurrency: usize,
    /// The manifest as read, for the shape checks; `None` with flags only.
    manifest: Option<serde_json::Value>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("addon_id", &self.addon_id)
            .field("base_url", &self.base_url)
            .field("sso_url", &self.sso_url)
            .finish_non_exhaustive()
    }
}

/// A field of the manifest, as a string.
fn field<'a>(manifest: &'a serde_json::Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(manifest, |value, key| value.get(key))
        .and_then(serde_json::Value::as_str)
}

impl Target {
    /// Flags win over the manifest; for the secrets, the environment
    /// (`ADDON_PASSWORD`, `ADDON_SSO_SALT`) wins over the manifest file.
    pub fn resolve(args: &CheckArgs, lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let manifest = match &args.manifest {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|err| format!("cannot read the manifest {}: {err}", path.display()))?;
                let value: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|err| format!("the manifest {} is not JSON: {err}", path.display()))?;
                Some(value)
            }
            None => None,
        };
        let from_manifest = |path: &[&str]| {
            manifest
                .as_ref()
                .and_then(|manifest| field(manifest, path))
                .map(str::to_string)
        };
        let endpoints = args.endpoints.manifest_key();
        // `flag` names the option exactly as clap spells it.
        let required = |given: Option<&String>, path: &[&str], what: &str, flag: &str| {
            given
                .cloned()
                .or_else(|| from_manifest(path))
                .ok_or_else(|| format!("no {what}: give --manifest, --stack or {flag}"))
        };
        // Scalingo's manifest is flat (`username`, `production.base_url`,
        // …); Clever Cloud's and Heroku's nest theirs under `api`.
        let marketplace = args
            .marketplace
            .manifest_marketplace()
            .ok_or("AWS Marketplace has no manifest")?;
        let scalingo = marketplace == super::Marketplace::Scalingo;
        let (id_field, api): (&str, &[&str]) = if scalingo {
            ("username", &[])
        } else {
            ("id", &["api"])
        };
        let under_api = |path: &[&'static str]| [api, path].concat();
        let addon_id = required(args.addon_id.as_ref(), &[id_field], "add-on id", "--addon-id")?;
        let base_url = required(
            args.base_url.as_ref(),
            &under_api(&[endpoints, "base_url"]),
            "base URL",
            "--base-url",
        )?;
        let sso_url = required(
            args.sso_url.as_ref(),
            &under_api(&[endpoints, "sso_url"]),
            "SSO URL",
            "--sso-url",
        )?;
        let config_vars = match &args.config_vars {
            Some(vars) => vars.clone(),
            None => manifest
                .as_ref()
                .and_then(|manifest| {
                    manifest.pointer(if scalingo {
                        "/config_vars"
                    } else {
                        "/api/config_vars"
                    })
                })
                .and_then(serde_json::Value::as_array)
                .map(|vars| {
                    vars.iter()
                        .filter_map(serde_json::Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .ok_or("no config vars: give --manifest or --config-vars")?,
        };
        let secret = |var: &str, path: &[&str]| {
            config::optional(lookup, var)
                .or_else(|| from_manifest(path))
                .map(Secret::new)
        };
        let (password_var, salt_var) = match marketplace {
            super::Marketplace::Clevercloud => ("ADDON_PASSWORD", "ADDON_SSO_SALT"),
            super::Marketplace::Heroku => ("HEROKU_PASSWORD", "HEROKU_SSO_SALT"),
            super::Marketplace::Scalingo => ("SCALINGO_PASSWORD", "SCALINGO_SSO_SALT"),
        };
        let password = secret(password_var, &under_api(&["password"])).ok_or(format!(
            "no password: set {password_var} or give a --manifest with its password"
        ))?;
        let sso_salt = secret(salt_var, &under_api(&["sso_salt"]));
        let sso =
            Url::parse(&sso_url).map_err(|err| format!("the SSO URL {sso_url:?} is not a URL: {err}"))?;
        let root_url = match &args.cloud66_url {
            Some(url) => Url::parse(url).map_err(|err| format!("--cloud66-url {url:?}: {err}"))?,
            None => root_of(&sso),
        };
        let cloud66 = Cloud66Sso::from_lookup(lookup).map_err(|err| err.to_string())?;
        Ok(Self {
            marketplace,
            addon_id,
            password,
            sso_salt,
            config_vars,
            base_url: base_url.trim_end_matches('/').to_string(),
            sso_url,
            root_url,
            cloud66,
            plan: args.plan.clone(),
            new_plan: args.new_plan.clone(),
            cloud66_email: args.cloud66_email.clone(),
            concurrency: usize::from(args.concurrency),
            manifest,
        })
    }

    /// For a Heroku manifest: `api.version` is `"3"` (flags only: nothing to check).
    pub fn manifest_version_3(&self) -> Result<String, String> {
        match self
            .manifest
            .as_ref()
            .map(|manifest| manifest.pointer("/api/version"))
        {
            None => Ok("no manifest given (flags only)".into()),
            Some(Some(serde_json::Value::String(version))) if version == "3" => {
                Ok("api.version \"3\"".into())
            }
            Some(other) => Err(format!("api.version is {other:?}; Heroku's v3 API needs \"3\"")),
        }
    }

    /// A path under the deployment's root (`/cloud66/sso/start`, `/dashboard`).
    pub fn url(&self, path: &str) -> String {
        let root = self.root_url.as_str().trim_end_matches('/');
        format!("{root}{path}")
    }
}

/// The deployment's root: the SSO URL less this project's
/// `/clevercloud/sso/login`, or its origin for another provider's layout.
fn root_of(sso: &Url) -> Url {
    let mut root = sso.clone();
    root.set_query(None);
    let path = ["/clevercloud/sso/login", "/heroku/sso/login", "/scalingo/sso"]
        .iter()
        .find_map(|suffix| sso.path().strip_suffix(suffix))
        .unwrap_or("");
    root.set_path(path);
    root
}

/// Whether an endpoint may use plain `http`: only on this machine.
fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// The manifest's shape, as Clever Cloud's documentation states it. With flags
/// only, the same rules apply to what the flags give.
pub fn check_shape(target: &Target, report: &mut Report) {
    report.record("manifest.id", check_id(&target.addon_id));
    // Heroku's manifest names the prefix (`api.config_vars_prefix`);
    // Clever Cloud's derives it from the id.
    let named_prefix = target
        .manifest
        .as_ref()
        .filter(|_| target.marketplace == super::Marketplace::Heroku)
        .and_then(|manifest| manifest.pointer("/api/config_vars_prefix"))
        .and_then(serde_json::Value::as_str)
        .map(|prefix| format!("{prefix}_"));
    // Scalingo states no rule for the names beyond the manifest's list.
    let prefix = match target.marketplace {
        super::Marketplace::Scalingo => String::new(),
        _ => named_prefix.unwrap_or_else(|| config_var_prefix(&target.addon_id)),
    };
    report.record(
        "manifest.config_vars",
        check_config_vars(&prefix, &target.config_vars),
    );
    match &target.manifest {
        // Scalingo's manifest names no regions, but its plans and prices.
        Some(manifest) if target.marketplace == super::Marketplace::Scalingo => {
            report.record("manifest.plans", check_plans(manifest));
            report.record("manifest.secrets", check_secrets(manifest, &[]));
        }
        Some(manifest) => {
            report.record("manifest.regions", check_regions(manifest, target.marketplace));
            report.record("manifest.secrets", check_secrets(manifest, &["api"]));
        }
        None => {
            report.skip("manifest.regions", "no --manifest given");
            report.skip("manifest.secrets", "no --manifest given");
        }
    }
    let urls = [("base_url", &target.base_url), ("sso_url", &target.sso_url)];
    report.record("manifest.urls", check_urls(&urls));
}

fn check_id(id: &str) -> Result<String, String> {
    let well_formed = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if well_formed {
        Ok(format!("{id:?}"))
    } else {
        Err(format!("{id:?} must be lower case letters, digits, '-' or '_'"))
    }
}

fn check_config_vars(prefix: &str, vars: &[String]) -> Result<String, String> {
    if vars.is_empty() {
        return Err("config_vars is empty".into());
    }
    let wrong: Vec<&String> = vars
        .iter()
        .filter(|var| {
            var.len() <= prefix.len()
                || !var.starts_with(prefix)
                || !var
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .collect();
    if !wrong.is_empty() {
        return Err(format!("{wrong:?} must be upper case and start with {prefix:?}"));
    }
    let mut unique = vars.to_vec();
    unique.sort();
    unique.dedup();
    if unique.len() != vars.len() {
        return Err("a config var is listed twice".into());
    }
    Ok(format!("{} vars, each starting with {prefix:?}", vars.len()))
}

/// Clever Cloud's manifest must list `eu`; Heroku's names its own regions
/// (`us`, `eu`, …), at least one.
fn check_regions(manifest: &serde_json::Value, marketplace: super::Marketplace) -> Result<String, String> {
    let regions = manifest
        .pointer("/api/regions")
        .and_then(serde_json::Value::as_array)
        .ok_or("api.regions is missing")?;
    if marketplace == super::Marketplace::Heroku {
        return match regions.iter().filter_map(serde_json::Value::as_str).count() {
            0 => Err("api.regions names no region".into()),
            count => Ok(format!("{count} regions")),
        };
    }
    if regions.iter().any(|region| region.as_str() == Some("eu")) {
        Ok("contains \"eu\"".into())
    } else {
        Err("api.regions must contain \"eu\"".into())
    }
}

/// Scalingo's `plans`: at least one, each with a `name`, `display_name`
/// and `description`, and a `price` (EUR per 30 days) that is a number.
fn check_plans(manifest: &serde_json::Value) -> Result<String, String> {
    let plans = manifest
        .get("plans")
        .and_then(serde_json::Value::as_array)
        .filter(|plans| !plans.is_empty())
        .ok_or("plans is missing or empty")?;
    for (index, plan) in plans.iter().enumerate() {
        for field in ["name", "display_name", "description"] {
            if plan
                .get(field)
                .and_then(serde_json::Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(format!("plans[{index}].{field} is missing"));
            }
        }
        if !plan.get("price").is_some_and(serde_json::Value::is_number) {
            return Err(format!("plans[{index}].price must be a number (EUR per 30 days)"));
        }
    }
    Ok(format!("{} plans, each named, described and priced", plans.len()))
}

/// The documentation asks for long random strings; 16 characters is the
/// least this check calls long.
const MIN_SECRET_CHARS: usize = 16;

/// `password` and `sso_salt`, under `parent` (Scalingo's: at the top).
fn check_secrets(manifest: &serde_json::Value, parent: &[&str]) -> Result<String, String> {
    for name in ["password", "sso_salt"] {
        let path = [parent, &[name]].concat();
        let value = field(manifest, &path).unwrap_or_default();
        if value.chars().count() < MIN_SECRET_CHARS {
            return Err(format!(
                "{} must be a random string of at least {MIN_SECRET_CHARS} characters",
                path.join(".")
            ));
        }
    }
    Ok("password and sso_salt are long enough (values not shown)".into())
}

fn check_urls(urls: &[(&str, &String)]) -> Result<String, String> {
    for (name, url) in urls {
        let parsed = Url::parse(url).map_err(|err| format!("{name} {url:?} is not a URL: {err}"))?;
        match parsed.scheme() {
            "https" => {}
            "http" if is_loopback(&parsed) => {}
            _ => return Err(format!("{name} {url:?} must be https")),
        }
    }
    Ok("https (plain http only on loopback)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_vars_need_the_prefix_upper_case_and_no_repeat() {
        let vars = |list: &[&str]| list.iter().map(|v| v.to_string()).collect::<Vec<_>>();
        assert!(check_config_vars("ADDON_NAME_", &vars(&["ADDON_NAME_URL"])).is_ok());
        for bad in [
            vec![],
            vars(&["OTHER_URL"]),
            vars(&["ADDON_NAME_"]),
            vars(&["addon_name_url"]),
            vars(&["ADDON_NAME_URL", "ADDON_NAME_URL"]),
        ] {
            assert!(check_config_vars("ADDON_NAME_", &bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_are_lower_case_words() {
        assert!(check_id("addon-name_2").is_ok());
        for bad in ["", "Addon", "addon name", "addon.name"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_http_only_on_loopback() {
        let ok = |url: &str| check_urls(&[("base_url", &url.to_string())]).is_ok();
        assert!(ok("https://provider.example/clevercloud/resources"));
        assert!(ok("http://localhost:9000/clevercloud/resources"));
        assert!(ok("http://127.0.0.1:9000/x"));
        assert!(ok("http://[::1]:9000/x"));
        assert!(!ok("http://provider.example/clevercloud/resources"));
        assert!(!ok("http://localhost.evil.example/x"));
        assert!(!ok("ftp://localhost/x"));
        assert!(!ok("not a url"));
    }

    #[test]
    fn regions_and_secrets_follow_the_documentation() {
        let manifest = serde_json::json!({"api": {"regions": ["eu"], "password": "p".repeat(16), "sso_salt": "s".repeat(16)}});
        let (clevercloud, heroku) = (
            super::super::Marketplace::Clevercloud,
            super::super::Marketplace::Heroku,
        );
        assert!(check_regions(&manifest, clevercloud).is_ok());
        assert!(check_secrets(&manifest, &["api"]).is_ok());
        let flat = serde_json::json!({"password": "p".repeat(16), "sso_salt": "s".repeat(15)});
        assert!(check_secrets(&flat, &[]).unwrap_err().contains("sso_salt"));
        let short = serde_json::json!({"api": {"regions": ["us"], "password": "p".repeat(15), "sso_salt": "s".repeat(16)}});
        assert!(
            check_regions(&short, clevercloud).is_err(),
            "Clever Cloud needs eu"
        );
        assert!(check_regions(&short, heroku).is_ok(), "Heroku names its own");
        let none = serde_json::json!({"api": {"regions": []}});
        assert!(check_regions(&none, heroku).is_err());
        let why = check_secrets(&short, &["api"]).unwrap_err();
        assert!(why.contains("api.password"), "{why}");
    }

    #[test]
    fn scalingo_plans_are_named_described_and_priced() {
        let plan =
            serde_json::json!({"name": "basic", "display_name": "Basic", "price": 9.5, "description": "d"});
        assert!(check_plans(&serde_json::json!({"plans": [plan.clone()]})).is_ok());
        assert!(check_plans(&serde_json::json!({"plans": []})).is_err());
        let mut unpriced = plan.clone();
        unpriced["price"] = "9".into();
        assert!(check_plans(&serde_json::json!({"plans": [unpriced]}))
            .unwrap_err()
            .contains("price"));
        let mut unnamed = plan;
        unnamed.as_object_mut().unwrap().remove("display_name");
        assert!(check_plans(&serde_json::json!({"plans": [unnamed]}))
            .unwrap_err()
            .contains("display_name"));
    }

    #[test]
    fn the_root_is_the_sso_url_less_this_projects_route() {
        let root = |sso: &str| root_of(&Url::parse(sso).unwrap()).to_string();
        assert_eq!(
            root("http://localhost:9000/clevercloud/sso/login"),
            "http://localhost:9000/"
        );
        assert_eq!(
            root("https://x.example/prod/clevercloud/sso/login"),
            "https://x.example/prod"
        );
        assert_eq!(root("https://x.example/sso?a=1"), "https://x.example/");
    }
}
