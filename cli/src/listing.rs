//! The listing's facts, set once in `marketplace.toml` (docs/registering.md):
//! each marketplace's display name, regions and plans (slug, display name,
//! price, description), the config vars and the support e-mail. The
//! manifests are built from it (`provider manifest`), and a stack whose plans
//! or config vars differ from it is refused before anything is registered.

use crate::Failure;
use clap::ValueEnum;
use serde::Deserialize;
use std::path::Path;

/// The marketplaces whose manifests and protocol checks the CLI knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Marketplace {
    Clevercloud,
    Heroku,
    Scalingo,
}

/// The `Accept` header of every call Heroku makes to an add-on (its Add-on
/// Partner API v3, docs/heroku.md).
pub const HEROKU_ADDONS_V3: &str = "application/vnd.heroku-addons+json; version=3";

impl Marketplace {
    /// Where the manifest keeps its API settings (`password`, `sso_salt`,
    /// `production`): under `api`, except Scalingo's, which is flat.
    pub fn manifest_api(self, manifest: &serde_json::Value) -> Option<&serde_json::Value> {
        match self {
            Self::Clevercloud | Self::Heroku => manifest.get("api"),
            Self::Scalingo => Some(manifest),
        }
    }

    /// The marketplace's name in `marketplace.toml` and on the command line.
    pub fn key(self) -> &'static str {
        match self {
            Self::Clevercloud => "clevercloud",
            Self::Heroku => "heroku",
            Self::Scalingo => "scalingo",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listing {
    pub support_email: String,
    /// What the vendor's service answers (`AddonConfigVars`).
    pub config_vars: Vec<String>,
    pub clevercloud: Option<MarketListing>,
    pub heroku: Option<MarketListing>,
    pub scalingo: Option<MarketListing>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketListing {
    /// The add-on's display name on this marketplace.
    pub name: String,
    #[serde(default)]
    pub regions: Vec<String>,
    pub plans: Vec<Plan>,
    /// What the marketplace shows of the add-on, where its manifest carries
    /// it (Scalingo's).
    pub short_description: Option<String>,
    pub description: Option<String>,
    pub logo_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub slug: String,
    pub display_name: String,
    /// Per month in the marketplace's currency (Scalingo: EUR per 30 days).
    pub price: f64,
    pub description: String,
}

impl Listing {
    /// Reads and checks `path`; every problem names the file.
    pub fn read(path: &Path) -> Result<Self, Failure> {
        let text = std::fs::read_to_string(path).map_err(|err| {
            Failure::Usage(format!(
                "cannot read the listing {} ({err}): give --listing FILE",
                path.display()
            ))
        })?;
        Self::parse(&text)
            .map_err(|problem| Failure::Usage(format!("the listing {}: {problem}", path.display())))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let listing: Self = toml::from_str(text).map_err(|err| err.to_string())?;
        if !listing.support_email.contains('@') {
            return Err(
                "support_email must be an e-mail address (the marketplaces' registration forms ask for it)"
                    .into(),
            );
        }
        if listing.config_vars.is_empty() {
            return Err("config_vars lists no variable".into());
        }
        for (key, market) in [
            ("clevercloud", &listing.clevercloud),
            ("heroku", &listing.heroku),
            ("scalingo", &listing.scalingo),
        ] {
            let Some(market) = market else { continue };
            if market.plans.is_empty() {
                return Err(format!("[{key}] lists no plan"));
            }
            let mut slugs: Vec<&str> = market.plans.iter().map(|plan| plan.slug.as_str()).collect();
            slugs.sort_unstable();
            if slugs.windows(2).any(|pair| pair[0] == pair[1]) {
                return Err(format!("[{key}] lists a plan slug twice"));
            }
            if let Some(plan) = market
                .plans
                .iter()
                .find(|plan| !(plan.price.is_finite() && plan.price >= 0.0))
            {
                return Err(format!("[{key}] plan {}: price must be 0 or more", plan.slug));
            }
        }
        Ok(listing)
    }

    /// The marketplace's section, or why there is none.
    pub fn market(&self, marketplace: Marketplace) -> Result<&MarketListing, Failure> {
        match marketplace {
            Marketplace::Clevercloud => self.clevercloud.as_ref(),
            Marketplace::Heroku => self.heroku.as_ref(),
            Marketplace::Scalingo => self.scalingo.as_ref(),
        }
        .ok_or_else(|| {
            Failure::Usage(format!(
                "the listing has no [{}] section: the add-on is not listed there",
                marketplace.key()
            ))
        })
    }
}

impl MarketListing {
    /// Refuses a stack that accepts other plans than the listing's (`None`:
    /// the stack accepts any plan, which nothing contradicts).
    pub fn check_plans(&self, variable: &str, stack: Option<&[String]>) -> Result<(), Failure> {
        let Some(stack) = stack else { return Ok(()) };
        let mut listed: Vec<&str> = self.plans.iter().map(|plan| plan.slug.as_str()).collect();
        let mut accepted: Vec<&str> = stack.iter().map(String::as_str).collect();
        listed.sort_unstable();
        accepted.sort_unstable();
        if listed == accepted {
            return Ok(());
        }
        Err(Failure::Usage(format!(
            "the stack's plans ({variable}: {}) are not the listing's ({}): make them one list, then deploy",
            accepted.join(","),
            listed.join(",")
        )))
    }
}

/// Refuses a stack whose config vars are not the listing's.
pub fn check_config_vars(listing: &Listing, stack: &[String]) -> Result<(), Failure> {
    if listing.config_vars == stack {
        return Ok(());
    }
    Err(Failure::Usage(format!(
        "the stack's config vars (ADDON_CONFIG_VARS: {}) are not the listing's ({}), in that order",
        stack.join(","),
        listing.config_vars.join(",")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = r#"
support_email = "s@example.com"
config_vars = ["A_URL", "A_TOKEN"]
[scalingo]
name = "A"
plans = [{ slug = "basic", display_name = "Basic", price = 0, description = "d" },
         { slug = "pro", display_name = "Pro", price = 9.5, description = "e" }]
"#;

    #[test]
    fn the_repositorys_listing_is_valid_and_lists_the_local_stacks_plans() {
        let listing = Listing::read(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../marketplace.toml"
        )))
        .unwrap();
        for marketplace in [
            Marketplace::Clevercloud,
            Marketplace::Heroku,
            Marketplace::Scalingo,
        ] {
            let market = listing.market(marketplace).unwrap();
            market
                .check_plans("ADDON_PLANS", Some(&["premium".into(), "basic".into()]))
                .unwrap();
        }
        check_config_vars(&listing, &["ADDON_NAME_URL".into(), "ADDON_NAME_TOKEN".into()]).unwrap();
    }

    #[test]
    fn plans_and_config_vars_must_be_the_stacks() {
        let listing = Listing::parse(LISTING).unwrap();
        let scalingo = listing.market(Marketplace::Scalingo).unwrap();
        assert_eq!(scalingo.plans[1].price, 9.5);
        scalingo.check_plans("P", None).unwrap();
        scalingo
            .check_plans("P", Some(&["pro".into(), "basic".into()]))
            .unwrap();
        let Err(Failure::Usage(message)) = scalingo.check_plans("SCALINGO_PLANS", Some(&["basic".into()]))
        else {
            panic!("a plan missing from the stack")
        };
        assert!(
            message.contains("SCALINGO_PLANS: basic") && message.contains("basic,pro"),
            "{message}"
        );
        assert!(listing.market(Marketplace::Heroku).is_err(), "not listed there");
        assert!(check_config_vars(&listing, &["A_URL".into(), "A_TOKEN".into()]).is_ok());
        assert!(check_config_vars(&listing, &["A_TOKEN".into(), "A_URL".into()]).is_err());
    }

    #[test]
    fn a_listing_that_cannot_be_right_is_refused_naming_what() {
        for (text, says) in [
            (LISTING.replace("pro\"", "basic\""), "twice"),
            (LISTING.replace("9.5", "-1"), "price"),
            (LISTING.replace("[\"A_URL\", \"A_TOKEN\"]", "[]"), "config_vars"),
            (
                LISTING.replace("name = \"A\"", "name = \"A\"\nextra = 1"),
                "extra",
            ),
            (
                LISTING.replace("support_email = \"s@example.com\"", ""),
                "support_email",
            ),
            (LISTING.replace("s@example.com", "nobody"), "support_email"),
        ] {
            let problem = Listing::parse(&text).unwrap_err();
            assert!(problem.contains(says), "{says}: {problem}");
        }
    }
}
