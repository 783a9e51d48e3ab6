//! Settling what an item is owed. Each resource and account carries a
//! [`SyncMark`], written by the change that made something owed (a
//! provision, a rotation, a new account); settling performs every owed push
//! independently — one failing never skips another — then stores the
//! results and what is still owed, on condition of the version read, so a
//! concurrent change is never cleared by mistake.
//!
//! Retryable: network errors, 5xx, 429 (not before its `Retry-After`), and a
//! 404 for an add-on younger than [`PROVISIONING_GRACE_SECONDS`] (Clever
//! Cloud's vendor API does not know an add-on while its provision call is in
//! flight). Final: any other 4xx, recorded on the item with the platform's
//! message, and tried again only by an operator's `provider sync`.

use super::{PlatformSync, SyncError, ACTOR, VERSION_ATTEMPTS};
use crate::clevercloud::vendor::VendorError;
use crate::cloudmore::CloudmoreError;
use crate::model::{
    Account, AuditAction, AuditEvent, Platform, Resource, SubjectKind, SyncMark, SyncQueue, Timestamp,
    VendorDetails,
};
use crate::store::{change_resource, Change, OwnerClaim, SyncStore, SyncSubject, UpdateOutcome};
use serde::Serialize;

/// How long after its provision an add-on may still be unknown to Clever
/// Cloud's vendor API.
pub const PROVISIONING_GRACE_SECONDS: i64 = 5 * 60;

/// Whether a failed push is worth trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    /// Yes; not before this many seconds, if the platform said so.
    After(Option<u64>),
    Never,
}

#[derive(Debug, Clone)]
pub(super) struct Failure {
    pub step: &'static str,
    pub message: String,
    pub retry: Retry,
}

fn vendor_failure(step: &'static str, err: VendorError, young: bool) -> Failure {
    let retry = match &err {
        VendorError::Unavailable { retry_after, .. } => Retry::After(*retry_after),
        VendorError::Rejected { status: 404, .. } if young => Retry::After(None),
        VendorError::Rejected { .. } => Retry::Never,
    };
    Failure {
        step,
        message: err.to_string(),
        retry,
    }
}

fn cloudmore_failure(err: CloudmoreError) -> Failure {
    let retry = match &err {
        CloudmoreError::Unavailable(_) => Retry::After(None),
        // A 2xx whose body could not be read: Cloudmore's trouble, not ours.
        CloudmoreError::Api { status, .. } if *status < 300 => Retry::After(None),
        _ => Retry::Never,
    };
    Failure {
        step: "Cloudmore organisation",
        message: err.to_string(),
        retry,
    }
}

/// What a settle left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Settled {
    /// Nothing is owed (any more).
    Done,
    /// Still owed; the sweep tries again (not before `retry_at`).
    Pending { error: String, retry_at: Option<i64> },
    /// Refused for good; only an operator's `provider sync` tries again.
    Failed { error: String },
    /// Not tried now: a platform asked to wait until `retry_at`.
    Waiting { retry_at: i64 },
    /// Nothing failed, nothing to do before `at` (a provision the vendor's
    /// service is still finishing, until the marketplace's deadline).
    Scheduled { at: i64 },
}

impl Settled {
    pub(super) fn of(mark: &SyncMark) -> Self {
        let error = mark.sync_error.clone().unwrap_or_default();
        match mark.sync_queue {
            None => Settled::Done,
            Some(SyncQueue::Pending) if mark.sync_error.is_none() && mark.sync_retry_at.is_some() => {
                Settled::Scheduled {
                    at: mark.sync_retry_at.unwrap_or_default(),
                }
            }
            Some(SyncQueue::Failed) => Settled::Failed { error },
            Some(SyncQueue::Pending) => Settled::Pending {
                error,
                retry_at: mark.sync_retry_at,
            },
        }
    }
}

/// The mark after an attempt: cleared when nothing is owed and nothing
/// failed; otherwise owed since the same moment, in the queue the failures
/// call for.
pub(super) fn next_mark(previous: &SyncMark, owes: bool, failures: &[Failure], now: &Timestamp) -> SyncMark {
    if failures.is_empty() {
        return if owes {
            previous.still_owed(now)
        } else {
            SyncMark::default()
        };
    }
    let error = failures
        .iter()
        .map(|failure| format!("{}: {}", failure.step, failure.message))
        .collect::<Vec<_>>()
        .join("; ");
    let waits: Vec<Option<u64>> = failures
        .iter()
        .filter_map(|failure| match failure.retry {
            Retry::After(seconds) => Some(seconds),
            Retry::Never => None,
        })
        .collect();
    let mut mark = previous.still_owed(now);
    mark.sync_error = Some(error);
    if waits.is_empty() {
        mark.sync_queue = Some(SyncQueue::Failed);
    } else {
        mark.sync_retry_at = waits.into_iter().flatten().max().map(|seconds| {
            now.unix()
                .saturating_add(i64::try_from(seconds).unwrap_or(i64::MAX))
        });
    }
    mark
}

/// Whether a Clever Cloud resource still owes its details or a config version.
fn resource_owes(resource: &Resource) -> bool {
    resource.platform == Platform::CleverCloud
        && resource.is_active()
        && (resource.vendor.is_none() || resource.pushed_config_version < resource.config_version)
}

pub(super) fn age_seconds(created_at: &str, now: &Timestamp) -> i64 {
    chrono::DateTime::parse_from_rfc3339(created_at)
        .map(|created| now.unix() - created.timestamp())
        .unwrap_or(i64::MAX)
}

impl<S: SyncStore> PlatformSync<S> {
    /// Writes `mark` alone (nothing else changed), on condition of the
    /// version read: what it settles to, or `None` when a concurrent change
    /// won (read again).
    pub(super) async fn record_mark(
        &self,
        subject: &SyncSubject,
        version: u64,
        mark: &SyncMark,
    ) -> Result<Option<Settled>, SyncError> {
        Ok(match self.store.mark_sync(subject, version, mark).await? {
            UpdateOutcome::Updated => Some(Settled::of(mark)),
            UpdateOutcome::Stale => None,
        })
    }

    /// Performs what `subject` is owed, as the stream and the sweep do: not
    /// before a platform's `Retry-After`, and not if it failed for good.
    pub async fn settle(&self, subject: &SyncSubject) -> Result<Settled, SyncError> {
        self.settle_as(subject, false).await
    }

    /// Performs what `subject` is owed now, whatever a platform said before
    /// (an operator's `provider sync`).
    pub async fn settle_now(&self, subject: &SyncSubject) -> Result<Settled, SyncError> {
        self.settle_as(subject, true).await
    }

    async fn settle_as(&self, subject: &SyncSubject, now_whatever: bool) -> Result<Settled, SyncError> {
        for _ in 0..VERSION_ATTEMPTS {
            let settled = match subject {
                SyncSubject::Resource(id) => self.try_settle_resource(id, now_whatever).await?,
                SyncSubject::Account(id) => self.try_settle_account(id, now_whatever).await?,
            };
            // `None`: a concurrent change won the write; read again.
            if let Some(settled) = settled {
                tracing::info!(subject = ?subject, outcome = ?settled, "settled");
                return Ok(settled);
            }
        }
        Err(SyncError::Contended(format!("{subject:?}")))
    }

    async fn try_settle_resource(&self, id: &str, now_whatever: bool) -> Result<Option<Settled>, SyncError> {
        let Some(resource) = self.store.get_resource(id).await? else {
            return Ok(Some(Settled::Done));
        };
        let now = self.now();
        if let Some(settled) = not_now(&resource.sync, &now, now_whatever) {
            return Ok(Some(settled));
        }
        if resource.platform == Platform::Heroku {
            return self.try_settle_heroku(resource, &now).await;
        }
        if resource.platform == Platform::Scalingo {
            return self.try_settle_scalingo(resource, &now).await;
        }
        let mut failures = Vec::new();
        let mut details = None;
        let mut pushed = None;
        if resource.platform == Platform::CleverCloud && resource.is_active() {
            let young = age_seconds(&resource.created_at, &now) < PROVISIONING_GRACE_SECONDS;
            if resource.vendor.is_none() {
                match self.vendor.app(&resource.addon_id).await {
                    Ok(app) => {
                        let mut owner_emails = app.owner_emails;
                        if owner_emails.is_empty() {
                            owner_emails.extend(app.owner_email);
                        }
                        details = Some(VendorDetails {
                            name: app.name,
                            owner_emails,
                            region: app.region,
                            fetched_at: now.to_string(),
                        });
                    }
                    Err(err) => failures.push(vendor_failure("vendor details", err, young)),
                }
            }
            failures.extend(self.owner_organization(&resource, &now).await?);
            if resource.pushed_config_version < resource.config_version {
                match self.vendor.put_config(&resource.addon_id, &resource.config).await {
                    Ok(()) => pushed = Some(resource.config_version),
                    Err(err) => failures.push(vendor_failure("config push", err, young)),
                }
            }
        }
        if details.is_none() && pushed.is_none() {
            let mark = next_mark(&resource.sync, resource_owes(&resource), &failures, &now);
            let subject = SyncSubject::Resource(id.to_string());
            return self.record_mark(&subject, resource.version, &mark).await;
        }
        // Results to keep: merged onto the item as it is now.
        let (details, failures) = (&details, &failures);
        let settled = change_resource::<_, _, SyncError, _>(&self.store, id, 1, |current| async move {
            let Some(current) = current else {
                return Ok(Change::Done(Settled::Done));
            };
            let mut updated = current.clone();
            if updated.vendor.is_none() {
                updated.vendor = details.clone();
            }
            if let Some(version) = pushed {
                updated.pushed_config_version = updated.pushed_config_version.max(version);
            }
            updated.sync = next_mark(&current.sync, resource_owes(&updated), failures, &now);
            updated.version += 1;
            updated.updated_at = now.to_string();
            let action = if pushed.is_some() {
                AuditAction::ConfigPushed
            } else {
                AuditAction::VendorDetailsFetched
            };
            let mut event = AuditEvent::new(SubjectKind::Resource, id, action, super::ACTOR, &now);
            if let Some(version) = pushed {
                event = event.with_detail("config_version", &version.to_string());
            }
            let settled = Settled::of(&updated.sync);
            Ok(Change::Write(updated, event, settled))
        })
        .await?;
        Ok(settled)
    }

    /// The Clever Cloud owner's Cloudmore organisation, created once however
    /// many of its resources are settled at once: the owner item is claimed
    /// before Cloudmore is asked.
    async fn owner_organization(
        &self,
        resource: &Resource,
        now: &Timestamp,
    ) -> Result<Option<Failure>, SyncError> {
        let (Some(cloudmore), Some(owner_id)) = (&self.cloudmore, &resource.owner_id) else {
            return Ok(None);
        };
        if owner_id == super::CHECK_OWNER_ID {
            return Ok(None);
        }
        if self.store.owner_organization(owner_id).await?.is_some() {
            return Ok(None);
        }
        match self.store.claim_owner_organization(owner_id, now.unix()).await? {
            OwnerClaim::Recorded(_) => return Ok(None),
            OwnerClaim::Busy => {
                return Ok(Some(Failure {
                    step: "Cloudmore organisation",
                    message: "being created for this owner by another delivery".into(),
                    retry: Retry::After(None),
                }))
            }
            OwnerClaim::Claimed => {}
        }
        let name = format!(
            "{} ({owner_id})",
            resource.owner_name.as_deref().unwrap_or("Clever Cloud owner")
        );
        let organization = match cloudmore.find_or_create_organization(&name, None).await {
            Ok(organization) => organization,
            Err(err) => return Ok(Some(cloudmore_failure(err))),
        };
        let event = AuditEvent::new(
            SubjectKind::Resource,
            &resource.id,
            AuditAction::CloudmoreOrganizationRecorded,
            ACTOR,
            now,
        )
        .with_detail("owner_id", owner_id)
        .with_detail("organization_id", &organization);
        self.store
            .record_owner_organization(owner_id, &organization, &event)
            .await?;
        Ok(None)
    }

    async fn try_settle_account(&self, id: &str, now_whatever: bool) -> Result<Option<Settled>, SyncError> {
        let Some(account) = self.store.get_account(id).await? else {
            return Ok(Some(Settled::Done));
        };
        let now = Timestamp::now();
        if let Some(settled) = not_now(&account.sync, &now, now_whatever) {
            return Ok(Some(settled));
        }
        // Claimed before Cloudmore is asked, as an owner's is: a concurrent
        // settle of the same account waits for this one's answer.
        let organization = match (&self.cloudmore, &account.cloudmore_organization_id) {
            (Some(_), None) if account.email == super::CHECK_EMAIL => None,
            (Some(cloudmore), None) => match self.store.claim_account_organization(id, now.unix()).await? {
                OwnerClaim::Claimed => Some(
                    cloudmore
                        .find_or_create_organization(&account.email, Some(&account.email))
                        .await,
                ),
                // Recorded since it was read: read it again.
                OwnerClaim::Recorded(_) => return Ok(None),
                OwnerClaim::Busy => Some(Err(CloudmoreError::Unavailable(
                    "the organisation is being created for this account by another delivery".into(),
                ))),
            },
            _ => None,
        };
        match organization {
            Some(Ok(organization)) => {
                let event = AuditEvent::new(
                    SubjectKind::Account,
                    id,
                    AuditAction::CloudmoreOrganizationRecorded,
                    ACTOR,
                    &now,
                )
                .with_detail("organization_id", &organization);
                let updated = Account {
                    cloudmore_organization_id: Some(organization),
                    version: account.version + 1,
                    sync: SyncMark::default(),
                    ..account
                };
                Ok(match self.store.update_account(&updated, &event).await? {
                    UpdateOutcome::Updated => Some(Settled::Done),
                    UpdateOutcome::Stale => None,
                })
            }
            outcome => {
                let failures: Vec<Failure> = outcome
                    .and_then(Result::err)
                    .map(cloudmore_failure)
                    .into_iter()
                    .collect();
                let mark = next_mark(&account.sync, false, &failures, &now);
                let subject = SyncSubject::Account(id.to_string());
                self.record_mark(&subject, account.version, &mark).await
            }
        }
    }
}

/// Why an owed item is not tried now, unless an operator says so: nothing
/// is owed, it failed for good, or a platform asked to wait.
fn not_now(mark: &SyncMark, now: &Timestamp, now_whatever: bool) -> Option<Settled> {
    match mark.sync_queue {
        None => Some(Settled::Done),
        _ if now_whatever => None,
        Some(SyncQueue::Failed) => Some(Settled::of(mark)),
        Some(SyncQueue::Pending) => {
            mark.sync_retry_at
                .filter(|retry_at| *retry_at > now.unix())
                .map(|retry_at| match mark.sync_error {
                    None => Settled::Scheduled { at: retry_at },
                    Some(_) => Settled::Waiting { retry_at },
                })
        }
    }
}
