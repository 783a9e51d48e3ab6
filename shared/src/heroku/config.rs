//! The add-on's Heroku identity, read where the lifecycle and sign-in
//! functions start (docs/operating.md, "Heroku").

use crate::config::{self, ConfigError};
use crate::model::ConfigMap;
use crate::secret::Rotating;
use std::collections::BTreeMap;

/// The Heroku manifest's `id`, `api.password` and `api.config_vars`, and the
/// plans sold there. Absent (`HEROKU_ADDON_ID` unset) when the vendor does
/// not sell on Heroku: its routes then answer 404.
#[derive(Debug, Clone)]
pub struct HerokuConfig {
    /// The manifest `id` (the add-on's slug); also the Basic-auth user.
    pub addon_id: String,
    /// `HEROKU_PASSWORD`, and `HEROKU_PASSWORD_PREVIOUS`, still accepted
    /// during a rotation.
    pub password: Rotating,
    pub names: HerokuNames,
    /// `HEROKU_PLANS`, else `ADDON_PLANS`; `None` accepts any plan.
    pub plans: Option<Vec<String>>,
}

impl HerokuConfig {
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let Some(addon_id) = config::optional(lookup, "HEROKU_ADDON_ID") else {
            return Ok(None);
        };
        let slug = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if addon_id.len() > 64 || !addon_id.chars().all(slug) {
            return Err(ConfigError::new(
                "HEROKU_ADDON_ID",
                "must be the manifest id: lower case letters, digits and '-'",
            ));
        }
        let password = config::rotating(lookup, "HEROKU_PASSWORD", "HEROKU_PASSWORD_PREVIOUS")?;
        let plans = match config::optional(lookup, "HEROKU_PLANS") {
            Some(value) => {
                let plans = config::comma_list(&value);
                if plans.is_empty() {
                    return Err(ConfigError::new("HEROKU_PLANS", "lists no plan"));
                }
                Some(plans)
            }
            None => config::optional(lookup, "ADDON_PLANS").map(|value| config::comma_list(&value)),
        };
        Ok(Some(Self {
            addon_id,
            password,
            names: HerokuNames::from_lookup(lookup)?,
            plans,
        }))
    }
}

/// How the config vars the vendor answers (`ADDON_CONFIG_VARS`) are named
/// on Heroku (`HEROKU_CONFIG_VARS`, the same names unless set): entry by
/// entry, so the vendor's service answers one set of names whatever the
/// marketplace (docs/heroku.md, "Config vars").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HerokuNames {
    /// (the vendor's name, Heroku's name), in the manifest's order.
    pairs: Vec<(String, String)>,
}

impl HerokuNames {
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vendor = config::comma_list(&config::required(lookup, "ADDON_CONFIG_VARS")?);
        let heroku = match config::optional(lookup, "HEROKU_CONFIG_VARS") {
            Some(value) => config::comma_list(&value),
            None => vendor.clone(),
        };
        if heroku.len() != vendor.len() {
            return Err(ConfigError::new(
                "HEROKU_CONFIG_VARS",
                format!(
                    "must name as many config vars as ADDON_CONFIG_VARS ({}), one for each, in its order",
                    vendor.len()
                ),
            ));
        }
        let valid = |name: &String| {
            name.contains('_')
                && !name.starts_with('_')
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        };
        if let Some(bad) = heroku.iter().find(|name| !valid(name)) {
            return Err(ConfigError::new(
                "HEROKU_CONFIG_VARS",
                format!("entry {bad:?} must be upper case, with the add-on's prefix and '_' before the rest"),
            ));
        }
        let names = Self {
            pairs: vendor.into_iter().zip(heroku).collect(),
        };
        if names.prefix().is_empty() {
            return Err(ConfigError::new(
                "HEROKU_CONFIG_VARS",
                "entries must share one prefix (the manifest's config_vars_prefix) before a '_'",
            ));
        }
        let mut distinct: Vec<_> = names.heroku_names().collect();
        distinct.sort();
        distinct.dedup();
        if distinct.len() != names.pairs.len() {
            return Err(ConfigError::new("HEROKU_CONFIG_VARS", "lists a config var twice"));
        }
        Ok(names)
    }

    pub fn heroku_names(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(_, heroku)| heroku.as_str())
    }

    /// The manifest's `config_vars_prefix`: what every name shares before
    /// its last common `_` (`MYADDON_URL`, `MYADDON_TOKEN` → `MYADDON`; a
    /// lone `MY_ADDON_URL` → `MY_ADDON`).
    pub fn prefix(&self) -> String {
        let mut names = self.heroku_names();
        let first = names.next().unwrap_or_default();
        let common = names.fold(first.len(), |common, name| {
            first
                .bytes()
                .zip(name.bytes())
                .take(common)
                .take_while(|(a, b)| a == b)
                .count()
        });
        let shared = &first[..common];
        shared.rfind('_').map_or("", |end| &shared[..end]).to_string()
    }

    /// `config` as Heroku gets it: each var under its Heroku name.
    pub fn rename(&self, config: &ConfigMap) -> BTreeMap<String, String> {
        self.pairs
            .iter()
            .filter_map(|(vendor, heroku)| config.0.get(vendor).map(|value| (heroku.clone(), value.clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::lookup_from;

    #[test]
    fn heroku_is_off_until_its_addon_id_is_set() {
        let lookup = lookup_from(&[("ADDON_CONFIG_VARS", "MYADDON_URL")]);
        assert!(HerokuConfig::from_lookup(&lookup).unwrap().is_none());
        let lookup = lookup_from(&[
            ("ADDON_CONFIG_VARS", "MYADDON_URL"),
            ("HEROKU_ADDON_ID", "myaddon"),
        ]);
        let err = HerokuConfig::from_lookup(&lookup).unwrap_err();
        assert_eq!(err.var, "HEROKU_PASSWORD");
        let lookup = lookup_from(&[
            ("ADDON_CONFIG_VARS", "MYADDON_URL"),
            ("HEROKU_ADDON_ID", "My_Addon"),
            ("HEROKU_PASSWORD", "p"),
        ]);
        assert_eq!(
            HerokuConfig::from_lookup(&lookup).unwrap_err().var,
            "HEROKU_ADDON_ID"
        );
    }

    #[test]
    fn plans_default_to_the_clever_cloud_ones() {
        let base = [
            ("ADDON_CONFIG_VARS", "MYADDON_URL"),
            ("HEROKU_ADDON_ID", "myaddon"),
            ("HEROKU_PASSWORD", "p"),
            ("ADDON_PLANS", "basic,premium"),
        ];
        let config = HerokuConfig::from_lookup(&lookup_from(&base)).unwrap().unwrap();
        assert_eq!(
            config.plans,
            Some(vec!["basic".to_string(), "premium".to_string()])
        );
        let mut own = base.to_vec();
        own.push(("HEROKU_PLANS", "hobby"));
        let config = HerokuConfig::from_lookup(&lookup_from(&own)).unwrap().unwrap();
        assert_eq!(config.plans, Some(vec!["hobby".to_string()]));
    }

    #[test]
    fn heroku_names_map_the_vendors_entry_by_entry() {
        let names = HerokuNames::from_lookup(&lookup_from(&[
            ("ADDON_CONFIG_VARS", "MYADDON_URL,MYADDON_TOKEN"),
            ("HEROKU_CONFIG_VARS", "HKADDON_URL,HKADDON_TOKEN"),
        ]))
        .unwrap();
        let mut config = ConfigMap::default();
        config.0.insert("MYADDON_URL".into(), "https://x".into());
        config.0.insert("MYADDON_TOKEN".into(), "t".into());
        let renamed = names.rename(&config);
        assert_eq!(renamed["HKADDON_URL"], "https://x");
        assert_eq!(renamed["HKADDON_TOKEN"], "t");
        assert_eq!(renamed.len(), 2);
        assert_eq!(names.prefix(), "HKADDON");
        // Unset: the vendor's own names.
        let same = HerokuNames::from_lookup(&lookup_from(&[("ADDON_CONFIG_VARS", "MY_ADDON_URL")])).unwrap();
        assert_eq!(same.heroku_names().collect::<Vec<_>>(), ["MY_ADDON_URL"]);
        assert_eq!(same.prefix(), "MY_ADDON");
    }

    #[test]
    fn heroku_names_that_cannot_be_a_manifest_are_refused() {
        for heroku in [
            "A_URL",
            "A_URL,B_TOKEN",
            "A_URL,B_TOKEN,C_X",
            "a_url,a_token",
            "A_URL,A_URL",
            "URL,TOKEN",
        ] {
            let lookup = lookup_from(&[
                ("ADDON_CONFIG_VARS", "MYADDON_URL,MYADDON_TOKEN"),
                ("HEROKU_CONFIG_VARS", heroku),
            ]);
            let err = HerokuNames::from_lookup(&lookup).unwrap_err();
            assert_eq!(err.var, "HEROKU_CONFIG_VARS", "{heroku}");
        }
    }
}
