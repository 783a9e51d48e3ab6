//! Ending a rotation of `HEROKU_TOKEN_KEY` without stranding anyone
//! (docs/operating.md, "Rotating secrets"): every Heroku add-on's sealed
//! grant and tokens are sealed anew under the current key, quiet add-ons
//! included (the platform sync re-seals only what it uses), before the
//! previous key may go. The pass is a scan plus one version-conditional
//! write per add-on still on the previous key: stopped half-way, it is run
//! again and does only what is left.

use super::tokens::TokenKeys;
use crate::model::{AuditAction, AuditEvent, SubjectKind, Timestamp};
use crate::store::{change_resource, Change, StoreError, SyncStore};

/// The audit actor of a re-seal.
pub const ACTOR: &str = "provider secrets rotate";
/// How often a write that lost a race is read and tried again.
const ATTEMPTS: u32 = 5;

/// Where the Heroku add-ons' sealed values stand against the keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SealReport {
    /// Add-ons whose values all open with the current key.
    pub current: usize,
    /// Add-ons sealed anew by this pass.
    pub resealed: usize,
    /// Add-ons with a value only the previous key opens (left by a count,
    /// or by a pass that kept losing races): removing that key loses them.
    pub previous_only: usize,
    /// Add-ons with a value no key opens (sealed under a key already gone):
    /// nothing can open them; their next plan change fails until Heroku
    /// grants again.
    pub unreadable: Vec<String>,
    /// Items of the table that could not be read as resources.
    pub undecodable: usize,
}

/// Counts (with `reseal`, also re-seals) every Heroku add-on's sealed values.
pub async fn seal_pass<S: SyncStore>(
    store: &S,
    keys: &TokenKeys,
    reseal: bool,
) -> Result<SealReport, StoreError> {
    let scan = store.all_resources().await?;
    let mut report = SealReport {
        undecodable: scan.unreadable.len(),
        ..SealReport::default()
    };
    for resource in scan.resources {
        let Some(authorization) = &resource.heroku else {
            continue;
        };
        let count = authorization.seal_count(keys, &resource.id);
        if count.unreadable > 0 {
            report.unreadable.push(resource.id.clone());
            continue;
        }
        if count.previous_only == 0 {
            report.current += 1;
            continue;
        }
        if !reseal {
            report.previous_only += 1;
            continue;
        }
        let sealed =
            change_resource::<_, _, StoreError, _>(store, &resource.id, ATTEMPTS, |current| async move {
                let Some(current) = current else {
                    return Ok(Change::Done(false));
                };
                let mut updated = current.clone();
                let changed = updated
                    .heroku
                    .as_mut()
                    .is_some_and(|authorization| authorization.reseal(keys, &current.id));
                if !changed {
                    // Sealed anew meanwhile (the sync refreshed it): done.
                    return Ok(Change::Done(false));
                }
                let now = Timestamp::now();
                updated.version += 1;
                updated.updated_at = now.to_string();
                let event = AuditEvent::new(
                    SubjectKind::Resource,
                    &current.id,
                    AuditAction::TokensResealed,
                    ACTOR,
                    &now,
                )
                .with_detail("marketplace", current.platform.as_str());
                Ok(Change::Write(updated, event, true))
            })
            .await?;
        match sealed {
            Some(true) => report.resealed += 1,
            Some(false) => report.current += 1,
            None => report.previous_only += 1,
        }
    }
    Ok(report)
}
