//! What a Heroku add-on is owed (docs/heroku.md): its OAuth grant
//! exchanged within its minutes, its tokens refreshed before they are used
//! past their end, every config version set through the Platform API
//! (`PATCH /addons/{uuid}/config`), an asynchronous provision announced
//! (`POST /addons/{uuid}/actions/provision`) once its config is set, and a
//! provision still pending at Heroku's deadline given up: the vendor's
//! service is told to deprovision it, and that settle reports a final
//! failure, which alarms (`FailedSyncs`); the expired item owes nothing more.
//!
//! Results are merged onto the item as it is when written (a vendor's
//! completion may land in between): a grant is exchanged once, and the
//! tokens it gave are never lost to a lost race.

use super::settle::{next_mark, Failure, Retry, Settled};
use super::{PlatformSync, SyncError, ACTOR};
use crate::heroku::platform::{HerokuClient, HerokuError, Issued, Tokens};
use crate::heroku::tokens::TokenKeys;
use crate::heroku::HerokuNames;
use crate::model::{
    AuditAction, AuditEvent, HerokuAuthorization, Resource, ResourceStatus, SubjectKind, SyncMark, Timestamp,
};
use crate::provisioner::Provisioner;
use crate::refresh::Fresh;
use crate::store::{change_resource, Change, SyncStore, SyncSubject};
use std::sync::Arc;

/// Heroku removes an add-on not marked provisioned within 12 hours.
pub const PROVISION_LIMIT_SECONDS: i64 = 12 * 60 * 60;
/// What the operator reads when a provision is given up.
const EXPIRED: &str = "Heroku provision expired: the vendor's service did not finish it within 12 hours; \
                       Heroku removes the add-on, and the vendor's service was told to deprovision it";
/// An access token this close to its end is refreshed before use.
const REFRESH_MARGIN_SECONDS: i64 = 120;

/// The sync's Heroku side: the API client, the sealing keys (following the
/// secret) and Heroku's names for the config vars.
pub struct HerokuSync {
    pub client: HerokuClient,
    pub keys: Arc<Fresh<TokenKeys>>,
    pub names: HerokuNames,
}

fn heroku_failure(step: &'static str, err: HerokuError) -> Failure {
    let retry = match &err {
        HerokuError::Unavailable { retry_after, .. } => Retry::After(*retry_after),
        HerokuError::Rejected { .. } => Retry::Never,
    };
    Failure {
        step,
        message: err.to_string(),
        retry,
    }
}

fn final_failure(step: &'static str, message: &str) -> Failure {
    Failure {
        step,
        message: message.to_string(),
        retry: Retry::Never,
    }
}

/// Whether a Heroku resource is still owed anything.
fn owes(resource: &Resource) -> bool {
    // A deprovisioned or expired add-on is owed nothing any more.
    if !matches!(
        resource.status,
        ResourceStatus::Active | ResourceStatus::Provisioning
    ) {
        return false;
    }
    let unexchanged = resource
        .heroku
        .as_ref()
        .is_some_and(|auth| auth.tokens.is_none() && auth.grant.is_some());
    let active = resource.status == ResourceStatus::Active;
    unexchanged
        || resource.status == ResourceStatus::Provisioning
        || (active && (resource.pushed_config_version < resource.config_version || resource.announce_ready))
}

/// What one attempt achieved, to merge onto the item as it is then.
#[derive(Default)]
struct Outcome {
    authorization: Option<HerokuAuthorization>,
    pushed: Option<u64>,
    announced: bool,
    expired: bool,
    failures: Vec<Failure>,
}

impl Outcome {
    fn changes_the_item(&self) -> bool {
        self.authorization.is_some() || self.pushed.is_some() || self.announced || self.expired
    }

    /// The audit action that says what happened, the weightiest first.
    fn action(&self) -> AuditAction {
        if self.expired {
            AuditAction::ProvisionExpired
        } else if self.announced {
            AuditAction::ReadyAnnounced
        } else if self.pushed.is_some() {
            AuditAction::ConfigPushed
        } else {
            AuditAction::AuthorizationRenewed
        }
    }
}

impl<S: SyncStore> PlatformSync<S> {
    pub(super) async fn try_settle_heroku(
        &self,
        resource: Resource,
        now: &Timestamp,
    ) -> Result<Option<Settled>, SyncError> {
        let outcome = match &self.heroku {
            Some(heroku) => self.attempt_heroku(heroku, &resource, now).await,
            None => Outcome {
                failures: vec![final_failure(
                    "Heroku",
                    "the platform sync has no Heroku configuration (HEROKU_ADDON_ID)",
                )],
                ..Outcome::default()
            },
        };
        if !outcome.changes_the_item() {
            let mark = mark_after(&resource, &resource.sync, &outcome, now);
            let subject = SyncSubject::Resource(resource.id.clone());
            return self.record_mark(&subject, resource.version, &mark).await;
        }
        let outcome = &outcome;
        let id = resource.id.clone();
        change_resource::<_, _, SyncError, _>(
            &self.store,
            &id,
            super::VERSION_ATTEMPTS,
            |current| async move {
                let Some(current) = current else {
                    return Ok(Change::Done(Settled::Done));
                };
                let mut updated = current.clone();
                if let Some(authorization) = &outcome.authorization {
                    updated.heroku = Some(authorization.clone());
                }
                if let Some(version) = outcome.pushed {
                    updated.pushed_config_version = updated.pushed_config_version.max(version);
                }
                if outcome.announced {
                    updated.announce_ready = false;
                }
                if outcome.expired && updated.status == ResourceStatus::Provisioning {
                    updated.status = ResourceStatus::Expired;
                }
                updated.sync = mark_after(&updated, &current.sync, outcome, now);
                updated.version += 1;
                updated.updated_at = now.to_string();
                let mut event =
                    AuditEvent::new(SubjectKind::Resource, &current.id, outcome.action(), ACTOR, now)
                        .with_detail("marketplace", current.platform.as_str());
                if let Some(version) = outcome.pushed {
                    event = event.with_detail("config_version", &version.to_string());
                }
                // An expiry is reported once, as a final failure (it
                // alarms); the item then owes nothing more.
                let settled = if outcome.expired {
                    Settled::Failed {
                        error: EXPIRED.into(),
                    }
                } else {
                    Settled::of(&updated.sync)
                };
                Ok(Change::Write(updated, event, settled))
            },
        )
        .await
        .map(|settled| settled.or(Some(Settled::Done)))
    }

    async fn attempt_heroku(&self, heroku: &HerokuSync, resource: &Resource, now: &Timestamp) -> Outcome {
        let mut outcome = Outcome::default();
        if !matches!(
            resource.status,
            ResourceStatus::Active | ResourceStatus::Provisioning
        ) {
            // Deprovisioned or expired: nothing to exchange or send.
            return outcome;
        }
        let age = super::settle::age_seconds(&resource.created_at, now);
        if resource.status == ResourceStatus::Provisioning && age >= PROVISION_LIMIT_SECONDS {
            // Heroku has removed it, unbilled: the vendor's tenant must go too.
            match &self.provisioner {
                Some(provisioner) => match provisioner.deprovision(resource).await {
                    Ok(()) => outcome.expired = true,
                    Err(err) => outcome.failures.push(Failure {
                        step: "deprovision at the vendor",
                        message: err.to_string(),
                        retry: Retry::After(None),
                    }),
                },
                None => outcome.expired = true,
            }
            return outcome;
        }
        let keys = heroku.keys.get().await;
        let mut authorization = resource.heroku.clone();
        let mut tokens: Option<Tokens> = None;
        if let Some(auth) = &mut authorization {
            if let Some(sealed) = &auth.tokens {
                tokens = keys
                    .open(&resource.id, sealed)
                    .and_then(|plain| serde_json::from_slice(&plain).ok());
                if tokens.is_none() {
                    outcome.failures.push(final_failure(
                        "OAuth tokens",
                        "the sealed tokens do not open with HEROKU_TOKEN_KEY (or its previous value)",
                    ));
                }
            } else if let Some(sealed) = &auth.grant {
                if auth.grant_expires_at.is_some_and(|end| now.unix() > end) {
                    outcome.failures.push(final_failure(
                        "OAuth grant",
                        "the grant expired before it could be exchanged",
                    ));
                } else if let Some(code) = keys.open(&resource.id, sealed) {
                    match heroku.client.exchange(&String::from_utf8_lossy(&code)).await {
                        Ok(issued) => {
                            tokens = Some(seal_into(auth, &keys, &resource.id, issued, now));
                            outcome.authorization = Some(auth.clone());
                        }
                        Err(err) => outcome.failures.push(heroku_failure("OAuth grant exchange", err)),
                    }
                } else {
                    outcome.failures.push(final_failure(
                        "OAuth grant",
                        "the sealed grant does not open with HEROKU_TOKEN_KEY (or its previous value)",
                    ));
                }
            }
        }
        let active = resource.status == ResourceStatus::Active;
        let push_owed = active && resource.pushed_config_version < resource.config_version;
        let announce_owed = active && resource.announce_ready;
        if !(push_owed || announce_owed) {
            return outcome;
        }
        let (Some(auth), Some(mut current)) = (authorization.as_mut(), tokens) else {
            if resource.heroku.is_none() {
                outcome.failures.push(final_failure(
                    "config push",
                    "Heroku sent no OAuth grant for this add-on, so nothing can be sent to it",
                ));
            }
            return outcome;
        };
        if auth
            .access_expires_at
            .is_none_or(|end| end - now.unix() < REFRESH_MARGIN_SECONDS)
        {
            match heroku.client.refresh(&current.refresh_token).await {
                Ok(issued) => {
                    current = seal_into(auth, &keys, &resource.id, issued, now);
                    outcome.authorization = Some(auth.clone());
                }
                Err(err) => {
                    outcome.failures.push(heroku_failure("OAuth token refresh", err));
                    return outcome;
                }
            }
        }
        if push_owed {
            let config = heroku.names.rename(&resource.config);
            match heroku
                .client
                .set_config(&resource.addon_id, &current.access_token, &config)
                .await
            {
                Ok(()) => outcome.pushed = Some(resource.config_version),
                Err(err) => {
                    outcome.failures.push(heroku_failure("config push", err));
                    return outcome;
                }
            }
        }
        if announce_owed {
            match heroku
                .client
                .mark_provisioned(&resource.addon_id, &current.access_token)
                .await
            {
                Ok(()) => outcome.announced = true,
                Err(err) => outcome.failures.push(heroku_failure("provision action", err)),
            }
        }
        outcome
    }
}

/// Seals `issued` onto `auth` (the grant spent), and hands the tokens back.
fn seal_into(
    auth: &mut HerokuAuthorization,
    keys: &TokenKeys,
    resource_id: &str,
    issued: Issued,
    now: &Timestamp,
) -> Tokens {
    let plain = serde_json::to_vec(&issued.tokens).unwrap_or_default();
    auth.tokens = Some(keys.seal(resource_id, &plain));
    auth.grant = None;
    auth.grant_expires_at = None;
    auth.access_expires_at = Some(now.unix() + issued.expires_in);
    issued.tokens
}

/// The mark after an attempt on `resource` (as it will be written): a
/// provision given up on fails for good (and alarms); one still pending
/// waits, failing nothing, until Heroku's deadline or the vendor's call.
fn mark_after(resource: &Resource, previous: &SyncMark, outcome: &Outcome, now: &Timestamp) -> SyncMark {
    let mut mark = next_mark(previous, owes(resource), &outcome.failures, now);
    if resource.status == ResourceStatus::Provisioning && outcome.failures.is_empty() {
        let created = now.unix() - super::settle::age_seconds(&resource.created_at, now);
        mark.sync_retry_at = Some(created + PROVISION_LIMIT_SECONDS);
    }
    mark
}
