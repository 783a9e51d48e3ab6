//! The add-on's Scalingo identity, read where the lifecycle functions
//! start (docs/operating.md, "Scalingo").

use crate::config::{self, ConfigError};
use crate::secret::Rotating;

/// The Scalingo manifest's `username` and `password`, and the plans sold
/// there. Absent (`SCALINGO_USERNAME` unset) when the vendor does not sell
/// on Scalingo: its routes then answer 404.
#[derive(Debug, Clone)]
pub struct ScalingoConfig {
    pub username: String,
    /// `SCALINGO_PASSWORD`, and `SCALINGO_PASSWORD_PREVIOUS`, still
    /// accepted during a rotation.
    pub password: Rotating,
    /// `SCALINGO_PLANS`, else `ADDON_PLANS`; `None` accepts any plan.
    pub plans: Option<Vec<String>>,
}

impl ScalingoConfig {
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let Some(username) = config::optional(lookup, "SCALINGO_USERNAME") else {
            return Ok(None);
        };
        if username.len() > 128 || username.contains(':') || username.chars().any(char::is_control) {
            return Err(ConfigError::new(
                "SCALINGO_USERNAME",
                "must be the manifest's username: at most 128 characters, no ':'",
            ));
        }
        let plans = match config::optional(lookup, "SCALINGO_PLANS") {
            Some(value) => {
                let plans = config::comma_list(&value);
                if plans.is_empty() {
                    return Err(ConfigError::new("SCALINGO_PLANS", "lists no plan"));
                }
                Some(plans)
            }
            None => config::optional(lookup, "ADDON_PLANS").map(|value| config::comma_list(&value)),
        };
        Ok(Some(Self {
            username,
            password: config::rotating(lookup, "SCALINGO_PASSWORD", "SCALINGO_PASSWORD_PREVIOUS")?,
            plans,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::lookup_from;

    #[test]
    fn scalingo_is_off_until_its_username_is_set_and_then_needs_a_password() {
        assert!(ScalingoConfig::from_lookup(&lookup_from(&[])).unwrap().is_none());
        let err =
            ScalingoConfig::from_lookup(&lookup_from(&[("SCALINGO_USERNAME", "my-addon")])).unwrap_err();
        assert_eq!(err.var, "SCALINGO_PASSWORD");
        let err = ScalingoConfig::from_lookup(&lookup_from(&[
            ("SCALINGO_USERNAME", "a:b"),
            ("SCALINGO_PASSWORD", "p"),
        ]))
        .unwrap_err();
        assert_eq!(err.var, "SCALINGO_USERNAME");
    }

    #[test]
    fn plans_are_scalingos_own_else_the_addons() {
        let base = [
            ("SCALINGO_USERNAME", "my-addon"),
            ("SCALINGO_PASSWORD", "p"),
            ("ADDON_PLANS", "basic,premium"),
        ];
        let config = ScalingoConfig::from_lookup(&lookup_from(&base)).unwrap().unwrap();
        assert_eq!(
            config.plans,
            Some(vec!["basic".to_string(), "premium".to_string()])
        );
        let mut own = base.to_vec();
        own.push(("SCALINGO_PLANS", "starter"));
        let config = ScalingoConfig::from_lookup(&lookup_from(&own)).unwrap().unwrap();
        assert_eq!(config.plans, Some(vec!["starter".to_string()]));
    }
}
