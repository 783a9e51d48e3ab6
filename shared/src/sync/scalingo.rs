//! What a Scalingo add-on is owed (docs/scalingo.md, "Config later"):
//! every config version it has not confirmed (a rotation's, or the first
//! of a provision the vendor's service finished later), set with
//! `PATCH /v1/provider/apps/{app_id}`. The result is merged onto the item
//! as it is when written, so a concurrent change is never lost.

use super::settle::{next_mark, Failure, Retry, Settled};
use super::{PlatformSync, SyncError, ACTOR};
use crate::model::{AuditAction, AuditEvent, Resource, ResourceStatus, SubjectKind, Timestamp};
use crate::outbound::PlatformError;
use crate::scalingo::platform::ScalingoClient;
use crate::store::{change_resource, Change, SyncStore, SyncSubject};

/// The sync's Scalingo side: its provider API.
pub struct ScalingoSync {
    pub client: ScalingoClient,
}

/// Whether a Scalingo resource still owes Scalingo a config version (a
/// suspended add-on's app keeps its config, so it is still owed).
pub(super) fn owes(resource: &Resource) -> bool {
    matches!(
        resource.status,
        ResourceStatus::Active | ResourceStatus::Suspended
    ) && resource.pushed_config_version < resource.config_version
}

fn scalingo_failure(err: PlatformError) -> Failure {
    let (message, retry) = match err {
        PlatformError::Unavailable { reason, retry_after } => (
            format!("Scalingo is unavailable: {reason}"),
            Retry::After(retry_after),
        ),
        PlatformError::Rejected { status, message } => {
            (format!("Scalingo answered {status}: {message}"), Retry::Never)
        }
    };
    Failure {
        step: "Scalingo config",
        message,
        retry,
    }
}

fn final_failure(message: &str) -> Failure {
    Failure {
        step: "Scalingo config",
        message: message.to_string(),
        retry: Retry::Never,
    }
}

impl<S: SyncStore> PlatformSync<S> {
    pub(super) async fn try_settle_scalingo(
        &self,
        resource: Resource,
        now: &Timestamp,
    ) -> Result<Option<Settled>, SyncError> {
        let subject = SyncSubject::Resource(resource.id.clone());
        if !owes(&resource) {
            let mark = next_mark(&resource.sync, false, &[], now);
            return self.record_mark(&subject, resource.version, &mark).await;
        }
        let failure = match (&self.scalingo, &resource.app_id) {
            (None, _) => final_failure("the platform sync is not configured for Scalingo (SCALINGO_API_URL)"),
            (Some(_), None) => final_failure(
                "Scalingo's provision named no app_id, so its provider API cannot be told; set the config in Scalingo's dashboard",
            ),
            (Some(scalingo), Some(app_id)) => match scalingo.client.set_config(app_id, &resource.config).await {
                Ok(()) => return self.record_scalingo_push(&resource.id, resource.config_version, now).await,
                Err(err) => scalingo_failure(err),
            },
        };
        let mark = next_mark(&resource.sync, true, &[failure], now);
        self.record_mark(&subject, resource.version, &mark).await
    }

    /// Scalingo confirmed `version`: kept on the item as it is now.
    async fn record_scalingo_push(
        &self,
        id: &str,
        version: u64,
        now: &Timestamp,
    ) -> Result<Option<Settled>, SyncError> {
        change_resource::<_, _, SyncError, _>(&self.store, id, 1, |current| async move {
            let Some(current) = current else {
                return Ok(Change::Done(Settled::Done));
            };
            let mut updated = current.clone();
            updated.pushed_config_version = updated.pushed_config_version.max(version);
            // Scalingo has no "ready" call: the config is the completion.
            updated.announce_ready = false;
            updated.sync = next_mark(&current.sync, owes(&updated), &[], now);
            updated.version += 1;
            updated.updated_at = now.to_string();
            let event = AuditEvent::new(SubjectKind::Resource, id, AuditAction::ConfigPushed, ACTOR, now)
                .with_detail("config_version", &version.to_string())
                .with_detail("marketplace", "scalingo");
            let settled = Settled::of(&updated.sync);
            Ok(Change::Write(updated, event, settled))
        })
        .await
    }
}
