//! Values made from the deployment's secret (`SECRETS_NAME`: the parts of it
//! the function reads, `crate::secret_parts`), kept fresh: a warm instance
//! re-reads them at most every `SECRETS_TTL_SECONDS`
//! (default 300; 0 reads it on every call), so a password removed from the
//! secret stops working within that time, with no redeploy and no wait for
//! instances to be recycled (docs/security.md).
//!
//! A failed re-read keeps the values in hand (an outage of Secrets Manager
//! must not turn into an outage of the service) and tries again shortly;
//! it is logged, never the values.

use crate::config::{self, ConfigError, Environment};
use crate::secret_parts::{self, Part};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a warm instance keeps the secret's values, by default.
pub const DEFAULT_TTL_SECONDS: u64 = 300;
/// After a failed re-read, how long the old values serve before the next try.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10);

/// The parts of the secret named by `SECRETS_NAME` that a function reads,
/// and how long their values are kept.
#[derive(Debug, Clone)]
pub struct SecretSource {
    client: aws_sdk_secretsmanager::Client,
    prefix: String,
    parts: &'static [Part],
    ttl: Duration,
}

impl SecretSource {
    /// `SECRETS_NAME` (none: no secret, plain variables serve, as in
    /// `make run`) and `SECRETS_TTL_SECONDS`, for the parts `caller` reads.
    pub fn from_lookup(
        lookup: &impl Fn(&str) -> Option<String>,
        aws: &aws_config::SdkConfig,
        caller: &str,
    ) -> Result<Option<Self>, ConfigError> {
        if config::optional(lookup, "SECRETS_ARN").is_some() {
            // The one secret of earlier versions: it is split now
            // (docs/operating.md, "Upgrading to the split secret").
            return Err(ConfigError::new(
                "SECRETS_ARN",
                "names the one secret of earlier versions: split it with `provider secrets init --name NAME --from ARN` and set SECRETS_NAME",
            ));
        }
        let Some(prefix) = config::optional(lookup, "SECRETS_NAME") else {
            return Ok(None);
        };
        let ttl = match config::optional(lookup, "SECRETS_TTL_SECONDS") {
            None => DEFAULT_TTL_SECONDS,
            Some(value) => value
                .parse::<u64>()
                .ok()
                .filter(|seconds| *seconds <= 86_400)
                .ok_or_else(|| {
                    ConfigError::new(
                        "SECRETS_TTL_SECONDS",
                        "must be a whole number of seconds from 0 (every call) to 86400",
                    )
                })?,
        };
        Ok(Some(Self {
            client: aws_sdk_secretsmanager::Client::new(aws),
            prefix,
            parts: secret_parts::read_by(caller),
            ttl: Duration::from_secs(ttl),
        }))
    }

    /// The source `SECRETS_NAME` names for `caller`, if any, and the values
    /// to start with: its parts', read now, or (without a secret) none, so
    /// plain variables serve.
    pub async fn load(
        aws: &aws_config::SdkConfig,
        caller: &str,
    ) -> Result<(Option<Self>, Environment), ConfigError> {
        let source = Self::from_lookup(&config::process_env, aws, caller)?;
        let environment = match &source {
            Some(source) => source.read().await?,
            None => Environment::default(),
        };
        Ok((source, environment))
    }

    /// The values of the parts read, now.
    pub async fn read(&self) -> Result<Environment, ConfigError> {
        Environment::read_parts(&self.client, &self.prefix, self.parts).await
    }
}

type Derive<T> = dyn Fn(&Environment) -> Result<T, ConfigError> + Send + Sync;

/// A value made from the secret's values, made again when they are re-read.
pub struct Fresh<T> {
    source: Option<SecretSource>,
    derive: Box<Derive<T>>,
    state: tokio::sync::Mutex<State<T>>,
}

struct State<T> {
    value: Arc<T>,
    next_read: Instant,
}

impl<T> Fresh<T> {
    /// A value that never changes (tests, or a deployment without a secret).
    pub fn fixed(value: T) -> Self {
        Self {
            source: None,
            derive: Box::new(|_| Err(ConfigError::new("SECRETS_NAME", "is not set"))),
            state: tokio::sync::Mutex::new(State {
                value: Arc::new(value),
                next_read: Instant::now(),
            }),
        }
    }

    /// The value made by `derive` from `environment` (read at cold start),
    /// made again from the secret once `source`'s TTL has passed. A cold
    /// start fails on a value that cannot be made; a later re-read that
    /// cannot be made keeps the one in hand.
    pub fn new(
        source: Option<SecretSource>,
        environment: &Environment,
        derive: impl Fn(&Environment) -> Result<T, ConfigError> + Send + Sync + 'static,
    ) -> Result<Self, ConfigError> {
        let value = derive(environment)?;
        let next_read = Instant::now() + source.as_ref().map_or(Duration::ZERO, |source| source.ttl);
        Ok(Self {
            source,
            derive: Box::new(derive),
            state: tokio::sync::Mutex::new(State {
                value: Arc::new(value),
                next_read,
            }),
        })
    }

    /// The value, re-made from a fresh read of the secret if its TTL passed.
    pub async fn get(&self) -> Arc<T> {
        let Some(source) = &self.source else {
            return self.state.lock().await.value.clone();
        };
        let mut state = self.state.lock().await;
        let now = Instant::now();
        if now < state.next_read {
            return state.value.clone();
        }
        match source
            .read()
            .await
            .and_then(|environment| (self.derive)(&environment))
        {
            Ok(value) => {
                state.value = Arc::new(value);
                state.next_read = now + source.ttl;
            }
            Err(err) => {
                tracing::warn!(error = %err, "the secret could not be re-read; the values in hand still serve");
                state.next_read = now + RETRY_AFTER_FAILURE.min(source.ttl.max(Duration::from_secs(1)));
            }
        }
        state.value.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
    }

    async fn aws() -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build()
    }

    #[tokio::test]
    async fn the_ttl_defaults_to_five_minutes_accepts_zero_and_refuses_nonsense() {
        let aws = aws().await;
        assert!(SecretSource::from_lookup(&lookup(&[]), &aws, "oidc")
            .unwrap()
            .is_none());
        let source = SecretSource::from_lookup(&lookup(&[("SECRETS_NAME", "a/b")]), &aws, "oidc")
            .unwrap()
            .unwrap();
        assert_eq!(source.ttl, Duration::from_secs(300));
        assert_eq!(source.parts, [Part::Oidc]);
        let every_call = SecretSource::from_lookup(
            &lookup(&[("SECRETS_NAME", "a/b"), ("SECRETS_TTL_SECONDS", "0")]),
            &aws,
            "provider",
        )
        .unwrap()
        .unwrap();
        assert_eq!(every_call.ttl, Duration::ZERO);
        assert_eq!(every_call.parts, Part::ALL);
        let earlier =
            SecretSource::from_lookup(&lookup(&[("SECRETS_ARN", "arn:x")]), &aws, "oidc").unwrap_err();
        assert_eq!(earlier.var, "SECRETS_ARN");
        assert!(earlier.problem.contains("--from"), "{earlier}");
        for bad in ["-1", "soon", "86401"] {
            let pairs: &'static [(&'static str, &'static str)] =
                Box::leak(vec![("SECRETS_NAME", "a/b"), ("SECRETS_TTL_SECONDS", bad)].into_boxed_slice());
            let err = SecretSource::from_lookup(&lookup(pairs), &aws, "oidc").unwrap_err();
            assert_eq!(err.var, "SECRETS_TTL_SECONDS", "{bad}");
        }
    }

    #[tokio::test]
    async fn a_fixed_value_is_what_it_was_made_with() {
        let fresh = Fresh::fixed(7);
        assert_eq!(*fresh.get().await, 7);
        let made = Fresh::new(None, &Environment::default(), |_| Ok(8)).unwrap();
        assert_eq!(*made.get().await, 8);
        assert!(
            Fresh::<u8>::new(None, &Environment::default(), |_| Err(ConfigError::new(
                "X", "bad"
            )))
            .is_err()
        );
    }
}
