//! The link for a user who signed in with Cloud 66 as the email being linked
//! (`CLOUD66_LINK_VERIFY=sso`): the account is theirs, so it is found or
//! created, its partner-side resource provisioned once, and that resource's
//! config sent with the uid.

use super::attempt::{self, record_answer, settled, LinkError, Outcome, Recorded};
use super::partner::PartnerClient;
use super::request::LinkRequest;
use crate::cloud66::sso::ACTOR;
use crate::model::{Account, AuditAction, AuditEvent, Cloud66Link, Resource, SubjectKind, Timestamp};
use crate::provisioner::Provisioner;
use crate::store::{LinkStore, ResourceReader};

pub(super) async fn run<S: LinkStore + ResourceReader, P: Provisioner>(
    store: &S,
    provisioner: &P,
    partner: &PartnerClient,
    request: &LinkRequest,
    deadline: Option<std::time::Instant>,
) -> Result<Outcome, LinkError> {
    let existing = store.get_link(&request.uid).await?;
    if let Some(outcome) = existing.as_ref().and_then(|link| settled(link, request)) {
        return Ok(outcome);
    }
    let account = store.find_or_create_account(&request.email, None, ACTOR).await?;
    let resource = account_resource(store, provisioner, &account).await?;
    let answer = partner
        .post_link(&request.uid, &request.email, &resource.config, deadline)
        .await;
    tracing::info!(uid = %request.uid, account_id = %account.id, answer = ?answer, "Cloud 66 answered the link");
    record(store, request, &account, existing, Recorded::of(answer)).await
}

/// The account's partner-side resource, provisioned on first need.
async fn account_resource<S: LinkStore + ResourceReader, P: Provisioner>(
    store: &S,
    provisioner: &P,
    account: &Account,
) -> Result<Resource, LinkError> {
    if let Some(id) = account.resource_ids.first() {
        if let Some(resource) = store.get_resource(id).await? {
            return Ok(resource);
        }
    }
    let now = Timestamp::now();
    let draft = Resource {
        owner_id: Some(account.id.clone()),
        owner_name: account.name.clone(),
        ..attempt::draft_resource(&account.id, &now)
    };
    let resource = attempt::provision(provisioner, draft, &account.email).await?;
    let event = AuditEvent::new(
        SubjectKind::Resource,
        &resource.id,
        AuditAction::Provisioned,
        ACTOR,
        &now,
    )
    .with_detail("account_id", &account.id);
    Ok(store.ensure_account_resource(account, &resource, &event).await?)
}

/// Saves Cloud 66's answer on the link, with its audit event on the account.
async fn record<S: LinkStore>(
    store: &S,
    request: &LinkRequest,
    account: &Account,
    stored: Option<Cloud66Link>,
    recorded: Recorded,
) -> Result<Outcome, LinkError> {
    let recorded = &recorded;
    record_answer(store, request, stored, recorded, |next, now| async move {
        let link = Cloud66Link {
            account_id: Some(account.id.clone()),
            ..next
        };
        let event = recorded.audit_event(&account.id, &request.uid, &now);
        Ok(store.save_link(&link, &[event]).await?)
    })
    .await
}
