//! AWS Marketplace SaaS listings (docs/aws-marketplace.md): the buyer's
//! registration post ([`register`]) and the subscription events
//! ([`events`]), over the marketplace-neutral lifecycle. A purchase is one
//! license (`LicenseArn`, "Concurrent Agreements"): one resource each, so
//! one AWS account may hold several.

pub mod events;
pub mod metering;
pub mod register;
pub mod seller;

use crate::config::{self, ConfigError};
use crate::lifecycle::Marketplace;
use crate::model::Platform;
use sha2::{Digest, Sha256};

/// What both AWS Marketplace functions start from: the lifecycle's parts
/// (`crate::lifecycle::parts_from_env`), the `AWS_MARKETPLACE_*` settings
/// and the config vars the vendor answers.
pub(crate) struct Parts {
    /// The SDK configuration, loaded once for every client of the function.
    pub sdk: aws_config::SdkConfig,
    pub source: Option<crate::refresh::SecretSource>,
    pub environment: crate::config::Environment,
    pub store: crate::store::DynamoStore,
    pub provisioner: crate::provisioner::VendorProvisioner,
    pub config: Option<AwsMarketplaceConfig>,
    pub config_vars: Vec<String>,
}

impl Parts {
    pub(crate) async fn from_env(function: &str) -> Result<Self, ConfigError> {
        let sdk = config::aws_sdk_config(function).await;
        let (source, environment, store, provisioner) =
            crate::lifecycle::parts_from_sdk(&sdk, function).await?;
        let (config, config_vars) = {
            let lookup = environment.lookup();
            let addon_id = config::required(&lookup, "ADDON_ID")?;
            (
                AwsMarketplaceConfig::from_lookup(&lookup)?,
                config::config_vars(&lookup, &addon_id)?,
            )
        };
        Ok(Self {
            sdk,
            source,
            environment,
            store,
            provisioner,
            config,
            config_vars,
        })
    }
}

/// Every AWS Marketplace resource's id begins so: an internet-facing
/// function that makes them may write no other (scripts/check_policies.py).
pub const RESOURCE_ID_PREFIX: &str = "res_aws_";

/// The audit `actor` of what AWS Marketplace asked for.
pub const ACTOR: &str = "aws_marketplace";

/// The resource of license `license_id`: derived, so an event and the
/// registration name the same resource without a lookup.
pub fn resource_id(license_id: &str) -> String {
    let digest = Sha256::digest(format!("aws-license\n{license_id}"));
    format!("{RESOURCE_ID_PREFIX}{}", hex::encode(&digest[..16]))
}

/// `AWS_MARKETPLACE_*`: the listing sold, how its pricing dimensions map
/// to plans, and where its metering API is. Absent when
/// `AWS_MARKETPLACE_PRODUCT_CODE` is empty: the routes then answer 404.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsMarketplaceConfig {
    pub product_code: String,
    /// `dimension:plan` pairs, in the listing's order from the smallest
    /// plan up; the first is the plan of a listing without contract
    /// dimensions.
    pub plans: Vec<(String, String)>,
    /// Where `ResolveCustomer` (and later `BatchMeterUsage`) is called;
    /// `None`: the function's own region.
    pub region: Option<String>,
}

/// Entitlements are read in us-east-1 only (docs/aws-marketplace.md).
pub const ENTITLEMENT_REGION: &str = "us-east-1";

impl AwsMarketplaceConfig {
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let Some(product_code) = config::optional(lookup, "AWS_MARKETPLACE_PRODUCT_CODE") else {
            return Ok(None);
        };
        if product_code.len() > 255 || !product_code.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(ConfigError::new(
                "AWS_MARKETPLACE_PRODUCT_CODE",
                "must be the listing's product code (letters and digits)",
            ));
        }
        let plans = config::optional(lookup, "AWS_MARKETPLACE_PLANS").ok_or_else(|| {
            ConfigError::new(
                "AWS_MARKETPLACE_PLANS",
                "is missing: map the listing's pricing dimensions to plans, as dimension:plan,…",
            )
        })?;
        let plans = config::comma_list(&plans)
            .into_iter()
            .map(|pair| match pair.split_once(':') {
                Some((dimension, plan)) if !dimension.trim().is_empty() && !plan.trim().is_empty() => {
                    Ok((dimension.trim().to_string(), plan.trim().to_string()))
                }
                _ => Err(ConfigError::new(
                    "AWS_MARKETPLACE_PLANS",
                    format!("{pair:?} is not dimension:plan"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if plans.is_empty() {
            return Err(ConfigError::new(
                "AWS_MARKETPLACE_PLANS",
                "lists no dimension:plan",
            ));
        }
        if let Some(allowed) = config::optional(lookup, "ADDON_PLANS").map(|plans| config::comma_list(&plans))
        {
            if let Some((_, plan)) = plans.iter().find(|(_, plan)| !allowed.contains(plan)) {
                return Err(ConfigError::new(
                    "AWS_MARKETPLACE_PLANS",
                    format!("maps to plan {plan:?}, which ADDON_PLANS does not list"),
                ));
            }
        }
        Ok(Some(Self {
            product_code,
            plans,
            region: config::optional(lookup, "AWS_MARKETPLACE_REGION"),
        }))
    }

    /// The plan of a purchase before its entitlements are known (a
    /// subscription listing has none): the first entry's.
    pub fn default_plan(&self) -> &str {
        &self.plans[0].1
    }

    /// The plan `entitled` dimensions buy: the last entry of the table
    /// the license is entitled to (the table lists plans from the
    /// smallest up); `None` when it is entitled to none of them.
    pub fn plan_for<'a>(&self, entitled: impl IntoIterator<Item = &'a str> + Clone) -> Option<&str> {
        self.plans
            .iter()
            .rev()
            .find(|(dimension, _)| entitled.clone().into_iter().any(|held| held == dimension))
            .map(|(_, plan)| plan.as_str())
    }

    /// What the lifecycle knows of this marketplace.
    pub fn marketplace(&self, config_vars: Vec<String>) -> Marketplace {
        let mut plans: Vec<String> = Vec::new();
        for (_, plan) in &self.plans {
            if !plans.contains(plan) {
                plans.push(plan.clone());
            }
        }
        Marketplace {
            platform: Platform::Aws,
            actor: ACTOR,
            config_vars,
            plans: Some(plans),
            asynchronous: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::lookup_from;

    fn configured(plans: &str) -> Result<Option<AwsMarketplaceConfig>, ConfigError> {
        AwsMarketplaceConfig::from_lookup(&lookup_from(&[
            ("AWS_MARKETPLACE_PRODUCT_CODE", "prodcode123"),
            ("AWS_MARKETPLACE_PLANS", plans),
        ]))
    }

    #[test]
    fn aws_is_off_without_a_product_code_and_then_needs_a_plan_table() {
        assert_eq!(
            AwsMarketplaceConfig::from_lookup(&lookup_from(&[])).unwrap(),
            None
        );
        let missing =
            AwsMarketplaceConfig::from_lookup(&lookup_from(&[("AWS_MARKETPLACE_PRODUCT_CODE", "p1")]))
                .unwrap_err();
        assert_eq!(missing.var, "AWS_MARKETPLACE_PLANS");
        assert_eq!(configured("basic").unwrap_err().var, "AWS_MARKETPLACE_PLANS");
        assert_eq!(configured(":basic").unwrap_err().var, "AWS_MARKETPLACE_PLANS");
        let bad_code = AwsMarketplaceConfig::from_lookup(&lookup_from(&[
            ("AWS_MARKETPLACE_PRODUCT_CODE", "a/b"),
            ("AWS_MARKETPLACE_PLANS", "d:p"),
        ]))
        .unwrap_err();
        assert_eq!(bad_code.var, "AWS_MARKETPLACE_PRODUCT_CODE");
    }

    #[test]
    fn plans_must_be_the_addons() {
        let err = AwsMarketplaceConfig::from_lookup(&lookup_from(&[
            ("AWS_MARKETPLACE_PRODUCT_CODE", "prodcode123"),
            ("AWS_MARKETPLACE_PLANS", "small:basic,large:gold"),
            ("ADDON_PLANS", "basic,premium"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("gold"), "{err}");
    }

    #[test]
    fn the_largest_entitled_dimension_names_the_plan_and_the_first_is_the_default() {
        let config = configured("small:basic, large:premium").unwrap().unwrap();
        assert_eq!(config.default_plan(), "basic");
        assert_eq!(config.plan_for(["large"]), Some("premium"));
        assert_eq!(config.plan_for(["small", "large"]), Some("premium"));
        assert_eq!(config.plan_for(["small", "other"]), Some("basic"));
        assert_eq!(config.plan_for(["other"]), None);
        assert_eq!(config.plan_for([]), None);
        assert_eq!(
            config.marketplace(vec![]).plans,
            Some(vec!["basic".to_string(), "premium".to_string()])
        );
    }

    #[test]
    fn a_licenses_resource_is_the_same_whatever_asks_and_another_licenses_differs() {
        let id = resource_id("l-abc");
        assert!(id.starts_with(RESOURCE_ID_PREFIX));
        assert!(crate::lifecycle::is_valid_resource_id(&id));
        assert_eq!(id, resource_id("l-abc"));
        assert_ne!(id, resource_id("l-abd"));
        assert_eq!(
            crate::model::aws_license_id("arn:aws:license-manager::123456789012:license:l-abc"),
            "l-abc"
        );
        assert_eq!(
            crate::model::aws_license_id("aws:license-manager::123456789012:license:l-abc"),
            "l-abc"
        );
    }
}
