//! What one link attempt is made of, whichever flow runs it: the outcome the
//! browser is told, the record Cloud 66's answer leaves, and the resource
//! whose config is sent.

use super::partner::PartnerAnswer;
use super::request::LinkRequest;
use crate::cloud66::sso::ACTOR;
use crate::model::{
    AuditAction, AuditEvent, Cloud66Link, ConfigMap, LinkStatus, Platform, Resource, SubjectKind, Timestamp,
};
use crate::provisioner::{ProvisionContext, Provisioner, ProvisionerError};
use crate::secret::random_hex;
use crate::store::{LinkStore, StoreError, UpdateOutcome};
use std::future::Future;

/// How the ids of resources made through Cloud 66 begin. A Clever Cloud
/// resource's id is `res_` and hex, so it never begins so: the template lets
/// the internet-facing link function write `RESOURCE#res_c66_*` items only,
/// and no bug there can overwrite a Clever Cloud resource.
pub const CLOUD66_RESOURCE_ID_PREFIX: &str = "res_c66_";

/// The plan recorded on resources provisioned through Cloud 66.
const CLOUD66_PLAN: &str = "cloud66";
/// How often saving a link is retried after losing to a concurrent save.
pub(super) const SAVE_ATTEMPTS: u32 = 5;

/// What the browser is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    Linked,
    Refused(String),
    Pending,
    OtherAccount,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum LinkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Provisioner(#[from] ProvisionerError),
}

/// What a stored link settles for `request`, if anything: a uid is bound to
/// an email only once Cloud 66 said linked, so a linked uid is linked for its
/// own email and taken for every other, while a refused or pending attempt
/// (perhaps someone else's, with another email) is replaced by the next one
/// and nobody can squat a uid.
pub(super) fn settled(link: &Cloud66Link, request: &LinkRequest) -> Option<Outcome> {
    match link.status {
        LinkStatus::Linked if link.email == request.email => Some(Outcome::Linked),
        LinkStatus::Linked => Some(Outcome::OtherAccount),
        LinkStatus::Pending | LinkStatus::Refused | LinkStatus::AlreadyLinked => None,
    }
}

/// Cloud 66's answer as it is recorded and shown.
#[derive(Debug, Clone)]
pub(super) struct Recorded {
    pub status: LinkStatus,
    pub message: Option<String>,
    pub action: AuditAction,
    pub outcome: Outcome,
}

impl Recorded {
    pub fn of(answer: PartnerAnswer) -> Self {
        let (status, message, action, outcome) = match answer {
            PartnerAnswer::Linked => (
                LinkStatus::Linked,
                None,
                AuditAction::Cloud66Linked,
                Outcome::Linked,
            ),
            // Back to Cloud 66, but nothing is bound (LinkStatus::AlreadyLinked).
            PartnerAnswer::AlreadyLinked(message) => (
                LinkStatus::AlreadyLinked,
                Some(message),
                AuditAction::Cloud66AlreadyLinked,
                Outcome::Linked,
            ),
            PartnerAnswer::Refused(message) => (
                LinkStatus::Refused,
                Some(message.clone()),
                AuditAction::Cloud66LinkRefused,
                Outcome::Refused(message),
            ),
            PartnerAnswer::NoAnswer(reason) => (
                LinkStatus::Pending,
                Some(reason),
                AuditAction::Cloud66LinkPending,
                Outcome::Pending,
            ),
        };
        Self {
            status,
            message,
            action,
            outcome,
        }
    }
}

impl Recorded {
    /// The answer's audit event on the account linked (or trying to be).
    pub fn audit_event(&self, account_id: &str, uid: &str, now: &Timestamp) -> AuditEvent {
        let event = AuditEvent::new(SubjectKind::Account, account_id, self.action, ACTOR, now)
            .with_detail("uid", uid);
        match &self.message {
            Some(message) => event.with_detail("message", message),
            None => event,
        }
    }
}

/// The link record that follows `stored` (one version on) for `request`,
/// in `status`; who it links to is for the caller to fill in.
pub(super) fn next_record(
    stored: Option<&Cloud66Link>,
    request: &LinkRequest,
    status: LinkStatus,
    message: Option<String>,
    now: &Timestamp,
) -> Cloud66Link {
    let (version, attempts, created_at) = stored
        .map(|link| (link.version, link.attempts, link.created_at.clone()))
        .unwrap_or((0, 0, now.to_string()));
    Cloud66Link {
        uid: request.uid.clone(),
        account_id: None,
        email: request.email.clone(),
        status,
        message,
        attempts: attempts + 1,
        created_at,
        updated_at: now.to_string(),
        linked_at: (status == LinkStatus::Linked).then(|| now.to_string()),
        version: version + 1,
        resource_id: None,
        expires_at: None,
    }
}

/// A new Cloud 66 resource for `addon_id`, with no config yet.
pub(super) fn draft_resource(addon_id: &str, now: &Timestamp) -> Resource {
    Resource::new(
        format!("{CLOUD66_RESOURCE_ID_PREFIX}{}", random_hex(16)),
        Platform::Cloud66,
        addon_id.to_string(),
        CLOUD66_PLAN.into(),
        ConfigMap::default(),
        now,
    )
}

/// `draft` with its config from the vendor's provisioner.
pub(super) async fn provision<P: Provisioner>(
    provisioner: &P,
    mut draft: Resource,
    email: &str,
) -> Result<Resource, ProvisionerError> {
    draft.config = provisioner
        .provision(ProvisionContext {
            resource: &draft,
            email: Some(email),
        })
        .await?;
    Ok(draft)
}

/// Saves an attempt's answer on the link, never over a link that holds (a
/// concurrent request may have linked the uid meanwhile, perhaps for another
/// email: its answer stands, and this one is not recorded on it). `write`
/// gets the record that follows `stored` and says whether it landed; a lost
/// race reads the link again and decides again.
pub(super) async fn record_answer<S, Write, Written>(
    store: &S,
    request: &LinkRequest,
    mut stored: Option<Cloud66Link>,
    recorded: &Recorded,
    write: Write,
) -> Result<Outcome, LinkError>
where
    S: LinkStore,
    Write: Fn(Cloud66Link, Timestamp) -> Written,
    Written: Future<Output = Result<UpdateOutcome, LinkError>>,
{
    for _ in 0..SAVE_ATTEMPTS {
        if let Some(outcome) = stored.as_ref().and_then(|link| settled(link, request)) {
            return Ok(outcome);
        }
        let now = Timestamp::now();
        let link = next_record(
            stored.as_ref(),
            request,
            recorded.status,
            recorded.message.clone(),
            &now,
        );
        if write(link, now).await? == UpdateOutcome::Updated {
            return Ok(recorded.outcome.clone());
        }
        stored = store.get_link(&request.uid).await?;
    }
    Err(StoreError::Unavailable("the link kept changing under concurrent requests".into()).into())
}
