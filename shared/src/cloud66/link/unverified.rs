//! The link for whoever opens it (`CLOUD66_LINK_VERIFY=none`, for partners
//! without Cloud 66 SSO), as Cloud 66's own document has it. Only Cloud 66's
//! answer to the POST says that the uid belongs to the email, so until it
//! answers 200 an attempt leaves nothing another user could see or learn:
//! - it sends the config of a resource made for this uid and email alone
//!   (unconfirmed, in no account, removed by its TTL), never an existing
//!   account's: an attacker's uid with a victim's email gets nothing of the
//!   victim's;
//! - it creates no account, so nothing reaches Cloudmore;
//! - the link record, too, carries the TTL until it is linked.
//!
//! On 200 the account is found or created, and the link, the resource (now
//! active) and the account (now listing it) are written in one transaction.

use super::attempt::{
    self, next_record, record_answer, settled, LinkError, Outcome, Recorded, SAVE_ATTEMPTS,
};
use super::partner::PartnerClient;
use super::request::LinkRequest;
use crate::cloud66::sso::ACTOR;
use crate::model::{
    Account, AuditAction, AuditEvent, Cloud66Link, LinkStatus, Resource, ResourceStatus, SubjectKind,
    Timestamp,
};
use crate::provisioner::Provisioner;
use crate::store::{LinkStore, ResourceReader, StoreError, UpdateOutcome};

/// How long an unconfirmed resource and its link record stay.
pub const UNCONFIRMED_TTL_SECONDS: i64 = 24 * 60 * 60;
/// An unconfirmed resource is sent again only while at least this much of its
/// life is left, so that it cannot expire before Cloud 66's 200 confirms it.
const RESEND_MARGIN_SECONDS: i64 = 60 * 60;

pub(super) async fn run<S: LinkStore + ResourceReader, P: Provisioner>(
    store: &S,
    provisioner: &P,
    partner: &PartnerClient,
    request: &LinkRequest,
    deadline: Option<std::time::Instant>,
) -> Result<Outcome, LinkError> {
    let Sending {
        resource,
        attempt,
        stored,
    } = match start(store, provisioner, request).await? {
        Started::Settled(outcome) => return Ok(outcome),
        Started::Sending(sending) => *sending,
    };
    let answer = partner
        .post_link(&request.uid, &request.email, &resource.config, deadline)
        .await;
    tracing::info!(uid = %request.uid, resource_id = %resource.id, answer = ?answer, "Cloud 66 answered an unverified link");
    record(store, request, &resource, attempt, stored, Recorded::of(answer)).await
}

enum Started {
    Settled(Outcome),
    Sending(Box<Sending>),
}

/// `resource`'s config is to be sent, as attempt number `attempt`; `stored`
/// is the link as this request last saw it.
struct Sending {
    resource: Resource,
    attempt: u32,
    stored: Cloud66Link,
}

/// Chooses the resource this attempt sends and records it on the link
/// before anything is sent, so that concurrent attempts with one email send
/// one resource (and the uid never holds credentials that will not be
/// confirmed), while an attempt with another email gets its own.
async fn start<S: LinkStore + ResourceReader, P: Provisioner>(
    store: &S,
    provisioner: &P,
    request: &LinkRequest,
) -> Result<Started, LinkError> {
    // Provisioned at most once per request, whatever races it loses.
    let mut fresh: Option<Resource> = None;
    for _ in 0..SAVE_ATTEMPTS {
        let now = Timestamp::now();
        let stored = store.get_link(&request.uid).await?;
        if let Some(outcome) = stored.as_ref().and_then(|link| settled(link, request)) {
            return Ok(Started::Settled(outcome));
        }
        if let Some(stored) = stored.as_ref() {
            if let Some(resource) = sent_before(store, stored, request, now.unix()).await? {
                return Ok(Started::Sending(Box::new(Sending {
                    resource,
                    attempt: stored.attempts + 1,
                    stored: stored.clone(),
                })));
            }
        }
        let resource = match fresh.take() {
            Some(resource) => resource,
            None => {
                let draft = Resource {
                    status: ResourceStatus::Unconfirmed,
                    expires_at: Some(now.unix() + UNCONFIRMED_TTL_SECONDS),
                    ..attempt::draft_resource(&request.uid, &now)
                };
                attempt::provision(provisioner, draft, &request.email).await?
            }
        };
        let link = Cloud66Link {
            resource_id: Some(resource.id.clone()),
            expires_at: resource.expires_at,
            ..next_record(
                stored.as_ref(),
                request,
                LinkStatus::Pending,
                Some("waiting for Cloud 66's answer".into()),
                &now,
            )
        };
        match store.start_unconfirmed_link(&link, &resource).await? {
            UpdateOutcome::Updated => {
                return Ok(Started::Sending(Box::new(Sending {
                    resource,
                    attempt: link.attempts,
                    stored: link,
                })))
            }
            UpdateOutcome::Stale => fresh = Some(resource),
        }
    }
    Err(StoreError::Unavailable("the link kept changing under concurrent requests".into()).into())
}

/// The resource an earlier attempt sent with this uid and email, while it is
/// unconfirmed with time to spare: sending it again tells the uid nothing new.
async fn sent_before<S: ResourceReader>(
    store: &S,
    stored: &Cloud66Link,
    request: &LinkRequest,
    now: i64,
) -> Result<Option<Resource>, StoreError> {
    let Some(id) = stored
        .resource_id
        .as_deref()
        .filter(|_| stored.email == request.email)
    else {
        return Ok(None);
    };
    Ok(store.get_resource(id).await?.filter(|resource| {
        resource.status == ResourceStatus::Unconfirmed
            && resource
                .expires_at
                .is_some_and(|expires_at| expires_at > now + RESEND_MARGIN_SECONDS)
    }))
}

/// Saves Cloud 66's answer: on 200 the confirmation, otherwise the link
/// (still expiring) with Cloud 66's reason.
async fn record<S: LinkStore>(
    store: &S,
    request: &LinkRequest,
    resource: &Resource,
    attempt: u32,
    stored: Cloud66Link,
    recorded: Recorded,
) -> Result<Outcome, LinkError> {
    let recorded = &recorded;
    record_answer(store, request, Some(stored), recorded, |next, now| async move {
        let link = Cloud66Link {
            attempts: attempt,
            resource_id: Some(resource.id.clone()),
            ..next
        };
        if recorded.status != LinkStatus::Linked {
            let link = Cloud66Link {
                expires_at: resource.expires_at,
                ..link
            };
            return Ok(store.save_link(&link, &[]).await?);
        }
        // Cloud 66 vouched for the pair: only now is the account looked up
        // (again after a lost race: the sync may have changed it).
        let owner = store.find_or_create_account(&request.email, None, ACTOR).await?;
        Ok(confirm(store, link, resource, &owner, recorded, &now).await?)
    })
    .await
}

/// The link, its resource and the account, as one confirmed whole.
async fn confirm<S: LinkStore>(
    store: &S,
    link: Cloud66Link,
    resource: &Resource,
    account: &Account,
    recorded: &Recorded,
    now: &Timestamp,
) -> Result<UpdateOutcome, StoreError> {
    let link = Cloud66Link {
        account_id: Some(account.id.clone()),
        ..link
    };
    let confirmed = Resource {
        addon_id: account.id.clone(),
        owner_id: Some(account.id.clone()),
        owner_name: account.name.clone(),
        status: ResourceStatus::Active,
        expires_at: None,
        version: resource.version + 1,
        updated_at: now.to_string(),
        ..resource.clone()
    };
    let mut listing = account.clone();
    listing.resource_ids.push(resource.id.clone());
    listing.version += 1;
    let provisioned = AuditEvent::new(
        SubjectKind::Resource,
        &resource.id,
        AuditAction::Provisioned,
        ACTOR,
        now,
    )
    .with_detail("account_id", &account.id);
    let linked = recorded.audit_event(&account.id, &link.uid, now);
    store
        .confirm_link(&link, &confirmed, &listing, &[provisioned, linked])
        .await
}
