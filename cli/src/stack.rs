//! `--stack NAME`: aims every command at a deployed stack, reading what the
//! functions are configured with from the stack itself (its outputs and
//! parameters, and for `check` its secret) instead of hand-set variables.

use crate::Failure;
use aws_sdk_cloudformation::error::SdkError;
use shared::secret_parts::Part;
use std::collections::BTreeMap;

/// Outputs, then parameters, and the variable each one is.
const FROM_OUTPUTS: [(&str, &str); 5] = [
    ("TableName", "TABLE_NAME"),
    ("StackSecretsName", "SECRETS_NAME"),
    ("SyncDeadLetterQueueUrl", "SYNC_DEAD_LETTER_QUEUE_URL"),
    ("LifecycleEventBus", "EVENT_BUS_NAME"),
    ("LifecycleEventsLogGroup", "EVENTS_LOG_GROUP"),
];
const FROM_PARAMETERS: [(&str, &str); 22] = [
    ("AddonId", "ADDON_ID"),
    ("AddonConfigVars", "ADDON_CONFIG_VARS"),
    ("AddonPlans", "ADDON_PLANS"),
    ("HerokuAddonId", "HEROKU_ADDON_ID"),
    ("HerokuConfigVars", "HEROKU_CONFIG_VARS"),
    ("HerokuPlans", "HEROKU_PLANS"),
    ("HerokuApiUrl", "HEROKU_API_URL"),
    ("HerokuIdUrl", "HEROKU_ID_URL"),
    ("ScalingoUsername", "SCALINGO_USERNAME"),
    ("ScalingoPlans", "SCALINGO_PLANS"),
    ("ScalingoApiUrl", "SCALINGO_API_URL"),
    ("ProvisionerUrl", "PROVISIONER_URL"),
    ("ProvisionerTimeoutMs", "PROVISIONER_TIMEOUT_MS"),
    ("ResourceBaseUrl", "RESOURCE_BASE_URL"),
    ("CleverCloudApiUrl", "CLEVERCLOUD_API_URL"),
    ("CloudmoreApiUrl", "CLOUDMORE_API_URL"),
    ("CloudmoreUsername", "CLOUDMORE_USERNAME"),
    ("CloudmoreResellerId", "CLOUDMORE_RESELLER_ID"),
    ("CloudmoreClientAuth", "CLOUDMORE_CLIENT_AUTH"),
    ("Cloud66Provider", "CLOUD66_PROVIDER"),
    ("Cloud66MultipassKey", "CLOUD66_MULTIPASS_KEY"),
    ("PublicUrl", "PUBLIC_URL"),
];
/// The secret's values `provider check` needs, as the manifest would give them.
const CHECK_SECRETS: [&str; 7] = [
    "ADDON_PASSWORD",
    "ADDON_SSO_SALT",
    "HEROKU_PASSWORD",
    "HEROKU_SSO_SALT",
    "SCALINGO_PASSWORD",
    "SCALINGO_SSO_SALT",
    "CLOUD66_PROVIDER_UID",
];

/// The parts of the secret that hold [`CHECK_SECRETS`].
const CHECK_PARTS: [Part; 2] = [Part::Lifecycle, Part::Signin];

/// A deployed stack, read.
pub struct Deployed {
    /// Variables to set, as the functions have them.
    pub env: BTreeMap<&'static str, String>,
    pub outputs: BTreeMap<String, String>,
}

impl Deployed {
    /// The stack named `name`, with the secret's values `check` needs when
    /// `for_check`.
    pub async fn read(name: &str, for_check: bool) -> Result<Self, Failure> {
        let aws = shared::config::aws_sdk_config("provider").await;
        let described = aws_sdk_cloudformation::Client::new(&aws)
            .describe_stacks()
            .stack_name(name)
            .send()
            .await
            .map_err(|err| sdk_failure(name, err))?;
        let stack = described
            .stacks()
            .first()
            .ok_or_else(|| Failure::Usage(format!("no stack {name}")))?;
        let outputs: BTreeMap<String, String> = stack
            .outputs()
            .iter()
            .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
            .collect();
        let parameters: BTreeMap<String, String> = stack
            .parameters()
            .iter()
            .filter_map(|p| Some((p.parameter_key()?.to_string(), p.parameter_value()?.to_string())))
            .collect();
        let mut env = BTreeMap::new();
        for (key, var) in FROM_OUTPUTS {
            if let Some(value) = outputs.get(key).filter(|value| !value.is_empty()) {
                env.insert(var, value.clone());
            }
        }
        for (key, var) in FROM_PARAMETERS {
            if let Some(value) = parameters.get(key).filter(|value| !value.is_empty()) {
                env.insert(var, value.clone());
            }
        }
        // The stack's public base URL, when the vendor set one (PublicUrl: a
        // domain of its own in front of the stack): where the marketplaces
        // reach it, as the issuer already says.
        let mut outputs = outputs;
        if let Some(public) = env.get("PUBLIC_URL") {
            outputs
                .entry("PublicUrl".to_string())
                .or_insert_with(|| public.clone());
        }
        if !env.contains_key("TABLE_NAME") {
            return Err(Failure::Usage(format!(
                "stack {name} has no TableName output: is it this project's stack?"
            )));
        }
        if for_check {
            if let Some(prefix) = env.get("SECRETS_NAME") {
                // Read as the functions read it, with the same checks: the
                // parts that hold what a marketplace's manifest gives.
                let client = aws_sdk_secretsmanager::Client::new(&aws);
                let secret = shared::config::Environment::read_parts(&client, prefix, &CHECK_PARTS)
                    .await
                    .map_err(|err| Failure::Failed(format!("the stack's secret: {err}")))?;
                let lookup = secret.lookup();
                for var in CHECK_SECRETS {
                    if let Some(value) = shared::config::optional(&lookup, var) {
                        env.insert(var, value);
                    }
                }
            }
        }
        Ok(Self { env, outputs })
    }
}

impl Deployed {
    /// Where the marketplaces reach the stack: its custom domain, else its
    /// PublicUrl, else its CloudFront edge, else its API's URL.
    pub fn base_url(&self) -> Option<String> {
        root_url(&self.outputs)
    }
}

/// [`Deployed::base_url`] from a stack's outputs.
pub fn root_url(outputs: &BTreeMap<String, String>) -> Option<String> {
    ["DomainUrl", "PublicUrl", "EdgeUrl", "ApiUrl"]
        .iter()
        .find_map(|key| outputs.get(*key).filter(|url| !url.is_empty()))
        .map(|url| url.trim_end_matches('/').to_string())
}

fn sdk_failure<E, R>(name: &str, err: SdkError<E, R>) -> Failure
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match crate::aws_failure(&format!("read stack {name}"), err) {
        // CloudFormation answers a stack that does not exist with a ValidationError.
        Failure::Failed(message) if message.contains("does not exist") => Failure::Usage(message),
        failure => failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stack_is_reached_at_its_domain_else_its_edge_else_its_api() {
        let outputs = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let api = ("ApiUrl", "https://abc.execute-api.example/");
        let edge = ("EdgeUrl", "https://d1.cloudfront.example");
        let domain = ("DomainUrl", "https://addons.example");
        assert_eq!(
            root_url(&outputs(&[api])).as_deref(),
            Some("https://abc.execute-api.example")
        );
        assert_eq!(
            root_url(&outputs(&[api, edge])).as_deref(),
            Some("https://d1.cloudfront.example")
        );
        assert_eq!(
            root_url(&outputs(&[api, edge, domain])).as_deref(),
            Some("https://addons.example")
        );
        assert_eq!(
            root_url(&outputs(&[api, ("DomainUrl", "")])).as_deref(),
            Some("https://abc.execute-api.example")
        );
        assert_eq!(
            root_url(&outputs(&[api, edge, ("PublicUrl", "https://public.example")])).as_deref(),
            Some("https://public.example")
        );
        assert_eq!(root_url(&outputs(&[])), None);
    }
}
