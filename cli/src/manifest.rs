//! `provider manifest`: the manifest each marketplace's add-on API documents
//! (docs/clevercloud.md, docs/heroku.md, docs/scalingo.md), built from the
//! listing (`marketplace.toml`: names, regions, plans) and the stack (ids,
//! passwords, salts, config vars and URLs), read as the functions read them.
//! It holds secrets: it goes to stdout alone, and into a git-ignored folder.

use crate::listing::{check_config_vars, Listing, Marketplace};
use crate::Failure;
use serde_json::{json, Value};
use shared::config::{self, CleverCloudConfig};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ManifestArgs {
    /// Which marketplace's manifest.
    #[arg(long, value_enum, default_value_t = Marketplace::Clevercloud)]
    pub marketplace: Marketplace,
    /// The listing's facts.
    #[arg(long, value_name = "FILE", default_value = "marketplace.toml")]
    pub listing: PathBuf,
    /// Where the stack is reached (with --stack: its custom domain, else its
    /// API's URL).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
}

/// The manifest, from the listing and the configuration `lookup` holds.
pub fn build(args: &ManifestArgs, lookup: &impl Fn(&str) -> Option<String>) -> Result<Value, Failure> {
    let listing = Listing::read(&args.listing)?;
    let market = listing.market(args.marketplace)?;
    let base_url = args
        .base_url
        .as_deref()
        .map(|url| url.trim_end_matches('/').to_string())
        .ok_or_else(|| Failure::Usage("no base URL: give --base-url or --stack".into()))?;
    let secret = |var: &'static str| config::required(lookup, var).map_err(Failure::from);
    let addon = CleverCloudConfig::from_lookup(lookup)?;
    check_config_vars(&listing, &addon.config_vars)?;
    let urls = |lifecycle: &str, sso: &str| {
        let urls =
            json!({"base_url": format!("{base_url}{lifecycle}"), "sso_url": format!("{base_url}{sso}")});
        (urls.clone(), urls)
    };
    Ok(match args.marketplace {
        Marketplace::Clevercloud => {
            market.check_plans("ADDON_PLANS", addon.plans.as_deref())?;
            let (production, test) = urls("/clevercloud/resources", "/clevercloud/sso/login");
            json!({
                "id": addon.addon_id,
                "name": market.name,
                "api": {
                    "config_vars": addon.config_vars,
                    "regions": market.regions,
                    "password": addon.password.current.expose(),
                    "sso_salt": secret("ADDON_SSO_SALT")?,
                    "production": production,
                    "test": test,
                },
            })
        }
        Marketplace::Heroku => {
            let heroku = shared::heroku::HerokuConfig::from_lookup(lookup)?.ok_or_else(|| {
                Failure::Usage(
                    "the stack does not sell on Heroku: HEROKU_ADDON_ID (HerokuAddonId) is empty".into(),
                )
            })?;
            market.check_plans("HEROKU_PLANS", heroku.plans.as_deref())?;
            let (production, test) = urls("/heroku/resources", "/heroku/sso/login");
            json!({
                "id": heroku.addon_id,
                "name": market.name,
                "api": {
                    "config_vars_prefix": heroku.names.prefix(),
                    "config_vars": heroku.names.heroku_names().collect::<Vec<_>>(),
                    "password": heroku.password.current.expose(),
                    "sso_salt": secret("HEROKU_SSO_SALT")?,
                    "regions": market.regions,
                    "requires": [],
                    "production": production,
                    "test": test,
                    "version": "3",
                },
            })
        }
        Marketplace::Scalingo => {
            let scalingo = shared::scalingo::ScalingoConfig::from_lookup(lookup)?.ok_or_else(|| {
                Failure::Usage(
                    "the stack does not sell on Scalingo: SCALINGO_USERNAME (ScalingoUsername) is empty"
                        .into(),
                )
            })?;
            market.check_plans("SCALINGO_PLANS", scalingo.plans.as_deref())?;
            let (production, test) = urls("/scalingo/resources", "/scalingo/sso");
            let plans: Vec<Value> = market
                .plans
                .iter()
                .map(|plan| {
                    json!({"name": plan.slug, "display_name": plan.display_name,
                           "price": price(plan.price), "description": plan.description})
                })
                .collect();
            let mut manifest = json!({
                "name": market.name,
                "username": scalingo.username,
                "password": scalingo.password.current.expose(),
                "sso_salt": secret("SCALINGO_SSO_SALT")?,
                "config_vars": addon.config_vars,
                "production": production,
                "test": test,
                "plans": plans,
            });
            for (field, value) in [
                ("short_description", &market.short_description),
                ("description", &market.description),
                ("logo_url", &market.logo_url),
            ] {
                if let Some(value) = value {
                    manifest[field] = value.as_str().into();
                }
            }
            manifest
        }
    })
}

/// A price as the manifest shows it: a whole number as one (`29`, not
/// `29.0`), cents as they are.
fn price(amount: f64) -> Value {
    if amount.fract() == 0.0 && amount.abs() < 1e15 {
        // Whole and far inside i64: the cast is exact.
        json!(amount as i64)
    } else {
        json!(amount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(marketplace: Marketplace) -> ManifestArgs {
        ManifestArgs {
            marketplace,
            listing: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../marketplace.toml")),
            base_url: Some("https://addons.example/".into()),
        }
    }

    fn stack(extra: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name: &str| {
            [
                ("ADDON_ID", "addon-name"),
                ("ADDON_PASSWORD", "pa\"ss"),
                ("ADDON_SSO_SALT", "cc-salt"),
                ("ADDON_CONFIG_VARS", "ADDON_NAME_URL,ADDON_NAME_TOKEN"),
                ("ADDON_PLANS", "basic,premium"),
                ("HEROKU_ADDON_ID", "addon-name"),
                ("HEROKU_PASSWORD", "hk-pass"),
                ("HEROKU_SSO_SALT", "hk-salt"),
                ("SCALINGO_USERNAME", "addon-name-scalingo"),
                ("SCALINGO_PASSWORD", "sc-pass"),
                ("SCALINGO_SSO_SALT", "sc-salt"),
            ]
            .iter()
            .chain(extra)
            .rev()
            .find(|(var, _)| *var == name)
            .map(|(_, value)| value.to_string())
        }
    }

    #[test]
    fn each_manifest_takes_names_and_plans_from_the_listing_and_secrets_from_the_stack() {
        let clevercloud = build(&args(Marketplace::Clevercloud), &stack(&[])).unwrap();
        assert_eq!(clevercloud["id"], "addon-name");
        assert_eq!(clevercloud["name"], "Addon Name");
        assert_eq!(clevercloud["api"]["password"], "pa\"ss");
        assert_eq!(clevercloud["api"]["sso_salt"], "cc-salt");
        assert_eq!(clevercloud["api"]["regions"], json!(["eu"]));
        assert_eq!(
            clevercloud["api"]["production"]["base_url"],
            "https://addons.example/clevercloud/resources"
        );
        let heroku = build(&args(Marketplace::Heroku), &stack(&[])).unwrap();
        assert_eq!(heroku["api"]["version"], "3");
        assert_eq!(heroku["api"]["config_vars_prefix"], "ADDON_NAME");
        assert_eq!(heroku["api"]["sso_salt"], "hk-salt");
        let scalingo = build(&args(Marketplace::Scalingo), &stack(&[])).unwrap();
        assert_eq!(scalingo["username"], "addon-name-scalingo");
        assert_eq!(
            scalingo["production"]["sso_url"],
            "https://addons.example/scalingo/sso"
        );
        assert_eq!(scalingo["plans"][1]["display_name"], "Premium");
        assert_eq!(scalingo["plans"][1]["price"].to_string(), "29");
        assert_eq!(price(9.5).to_string(), "9.5");
        assert_eq!(scalingo["name"], "Addon Name");
        assert_eq!(scalingo["short_description"], "A short line about the add-on.");
    }

    #[test]
    fn a_rotated_password_changes_the_manifest_and_nothing_else() {
        let before = build(&args(Marketplace::Scalingo), &stack(&[])).unwrap();
        let after = build(
            &args(Marketplace::Scalingo),
            &stack(&[
                ("SCALINGO_PASSWORD", "new"),
                ("SCALINGO_PASSWORD_PREVIOUS", "sc-pass"),
            ]),
        )
        .unwrap();
        assert_eq!(after["password"], "new");
        let mut unchanged = after.clone();
        unchanged["password"] = before["password"].clone();
        assert_eq!(unchanged, before, "plans, names and prices kept");
    }

    #[test]
    fn a_stack_that_is_not_the_listings_or_not_on_the_marketplace_is_refused() {
        let Err(Failure::Usage(message)) = build(
            &args(Marketplace::Clevercloud),
            &stack(&[("ADDON_PLANS", "basic,gold")]),
        ) else {
            panic!("other plans")
        };
        assert!(message.contains("ADDON_PLANS"), "{message}");
        assert!(build(&args(Marketplace::Heroku), &stack(&[("HEROKU_ADDON_ID", "")])).is_err());
        assert!(build(
            &args(Marketplace::Clevercloud),
            &stack(&[("ADDON_CONFIG_VARS", "ADDON_NAME_URL")])
        )
        .is_err());
        let mut no_url = args(Marketplace::Clevercloud);
        no_url.base_url = None;
        assert!(matches!(build(&no_url, &stack(&[])), Err(Failure::Usage(_))));
    }
}
