//! Storage behind small traits, one per kind of access, so each function's
//! code (and IAM policy) needs only what it uses. [`DynamoStore`] implements
//! them all on one DynamoDB table.

mod dynamo;
#[cfg(test)]
pub mod memory;

pub use dynamo::{DynamoStore, TableKeys};

use crate::model::{
    Account, AuditEvent, AwsAgreement, AwsCustomer, AwsLicense, Cloud66Link, CodeBinding, OidcGrant,
    PendingLink, Platform, Resource, Session, SyncMark, SyncQueue, Timestamp, UsageCounter,
};
use std::future::Future;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// DynamoDB could not be reached, timed out or throttled after the SDK's
    /// own retries. Nothing was written; the caller may try again.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Any other failure (a bug or a corrupt item); not worth retrying.
    #[error("storage error: {0}")]
    Internal(String),
}

/// The outcome of creating a resource that must be unique per marketplace id.
#[derive(Debug)]
pub enum CreateOutcome {
    Created,
    /// Another delivery of the same provision won; this is its resource.
    Existing(Box<Resource>),
    /// A condition of what it was to write besides ([`AlsoWrite`]) no
    /// longer held: nothing was written; decide again.
    Stale,
}

/// What a resource's creating transaction also writes, all or nothing with
/// it: AWS Marketplace's registration opens the buyer's session, keeps the
/// token's resolution and holds the license's state to what it read, in
/// the one round trip (docs/aws-marketplace.md).
pub enum AlsoWrite<'a> {
    /// Opens `session` under `session_id`, spending `token_fingerprint`
    /// until `token_expires_at` (as [`SessionStore::open_session`]).
    Session {
        token_fingerprint: &'a str,
        token_expires_at: i64,
        session_id: &'a str,
        session: &'a Session,
    },
    /// Keeps what a registration token resolved to until `expires_at`.
    AwsToken {
        token_fingerprint: &'a str,
        customer: &'a AwsCustomer,
        expires_at: i64,
    },
    /// The license's event state is still at `version` (0: none yet).
    AwsLicenseAt { license_id: &'a str, version: u64 },
    /// A license's new event state, if the stored one is `version - 1`.
    AwsLicense(&'a AwsLicense),
    /// An agreement's new event state, if the stored one is `version - 1`.
    AwsAgreement(&'a AwsAgreement),
    /// Event `event_id` handled, remembered until `expires_at`; fails if
    /// another delivery recorded it first.
    AwsEventHandled { event_id: &'a str, expires_at: i64 },
    /// The agreement of `resource_id` ended at `at`: the meter seals and
    /// sends its last usage once the grace after `at` has passed
    /// (docs/metering.md, "When an agreement ends").
    UsageFinal { resource_id: &'a str, at: &'a str },
}

/// What an AWS Marketplace event's handler reads first, in one request.
#[derive(Debug, Default)]
pub struct AwsEventState {
    pub handled: bool,
    pub agreement: Option<AwsAgreement>,
    pub license: Option<AwsLicense>,
    pub resource: Option<Resource>,
}

/// The outcome of a write conditional on the version read before it.
#[derive(Debug, PartialEq, Eq)]
pub enum UpdateOutcome {
    Updated,
    /// Someone else changed the resource since it was read; read it again.
    Stale,
}

pub trait ResourceReader: Send + Sync {
    /// A consistent read of one resource by this provider's id.
    fn get_resource(&self, id: &str) -> impl Future<Output = Result<Option<Resource>, StoreError>> + Send;
}

pub trait AuditReader: Send + Sync {
    /// Resource `id`'s latest `limit` audit events, newest first.
    fn recent_events(
        &self,
        resource_id: &str,
        limit: i32,
    ) -> impl Future<Output = Result<Vec<AuditEvent>, StoreError>> + Send;
}

pub trait ProvisionStore: Send + Sync {
    /// Records a new resource, its add-on id claim, its audit event and
    /// `also` in one transaction. If the add-on id is already claimed nothing
    /// is written and the existing resource is returned instead.
    fn create_resource(
        &self,
        resource: &Resource,
        event: &AuditEvent,
        also: &[AlsoWrite<'_>],
    ) -> impl Future<Output = Result<CreateOutcome, StoreError>> + Send;
}

/// What a change decides after reading the current resource.
// Built and consumed once per attempt, never stored: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Change<T> {
    /// Nothing to write (a redelivery, say); the answer is ready.
    Done(T),
    /// Write this resource and event, conditional on the version read, then answer.
    Write(Resource, AuditEvent, T),
}

/// Reads resource `id`, lets `decide` choose what to write, and writes it on
/// condition that nobody changed the resource in between. A writer that
/// loses re-reads and decides again, so concurrent changes apply one after
/// the other and none is lost. `Ok(None)`: still losing after `attempts`.
pub async fn change_resource<S, T, E, Decision>(
    store: &S,
    id: &str,
    attempts: u32,
    mut decide: impl FnMut(Option<Resource>) -> Decision,
) -> Result<Option<T>, E>
where
    S: ResourceWriter,
    E: From<StoreError>,
    Decision: Future<Output = Result<Change<T>, E>>,
{
    for _ in 0..attempts {
        let current = store.get_resource(id).await?;
        let read_version = current.as_ref().map_or(0, |resource| resource.version);
        match decide(current).await? {
            Change::Done(answer) => return Ok(Some(answer)),
            Change::Write(updated, event, answer) => {
                if store.update_resource(&updated, read_version, &event, &[]).await? == UpdateOutcome::Updated
                {
                    tracing::info!(resource_id = %id, action = ?event.action, "resource changed");
                    return Ok(Some(answer));
                }
            }
        }
    }
    Ok(None)
}

pub trait ResourceWriter: ResourceReader {
    /// Marks an active resource of `platform` deprovisioned at `at` and
    /// appends `event`, in one transaction with nothing read first: `Stale`
    /// (nothing written) when the resource is absent, another platform's, or
    /// not active — the caller reads to tell which.
    fn deprovision_unread(
        &self,
        id: &str,
        platform: Platform,
        at: &Timestamp,
        event: &AuditEvent,
    ) -> impl Future<Output = Result<UpdateOutcome, StoreError>> + Send;

    /// Replaces a resource and appends an audit event (and `also`) in one
    /// transaction, on condition that the stored version is still
    /// `expected_version` (and `also`'s conditions hold).
    fn update_resource(
        &self,
        resource: &Resource,
        expected_version: u64,
        event: &AuditEvent,
        also: &[AlsoWrite<'_>],
    ) -> impl Future<Output = Result<UpdateOutcome, StoreError>> + Send;
}

pub trait AccountStore: Send + Sync {
    /// The account for a normalised email, created (with its audit event, in
    /// one transaction) if there is none. Concurrent calls for one email
    /// create one account.
    fn find_or_create_account(
        &self,
        email: &str,
        name: Option<&str>,
        actor: &str,
    ) -> impl Future<Output = Result<Account, StoreError>> + Send;

    fn get_account(&self, id: &str) -> impl Future<Output = Result<Option<Account>, StoreError>> + Send;
}

/// The outcome of opening a session with a single-use sign-in token.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenOutcome {
    Opened,
    /// The token was used before; no session was created.
    Replayed,
}

pub trait SessionStore: Send + Sync {
    /// Spends a single-use sign-in token and creates the session it buys, in
    /// one transaction: a replayed token opens nothing, and a failure leaves
    /// the token unspent so the user can retry.
    fn open_session(
        &self,
        token_fingerprint: &str,
        token_expires_at: i64,
        session_id: &str,
        session: &Session,
    ) -> impl Future<Output = Result<OpenOutcome, StoreError>> + Send;

    /// The session, if it exists and has not expired.
    fn get_session(
        &self,
        session_id: &str,
    ) -> impl Future<Output = Result<Option<Session>, StoreError>> + Send;

    fn end_session(&self, session_id: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records that a browser started a sign-in (the fingerprint of the
    /// state its cookie carries), until `expires_at` (Unix seconds).
    fn begin_signin(
        &self,
        state_fingerprint: &str,
        expires_at: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Spends a started sign-in: `true` once, if it exists and has not
    /// expired by `now`; `false` for a missing, spent or expired one.
    fn finish_signin(
        &self,
        state_fingerprint: &str,
        now: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// The OpenID Connect provider's codes and access tokens (`crate::oidc`),
/// each stored under its SHA-256 fingerprint with a TTL and checked for
/// expiry on every read.
pub trait OidcStore: Send + Sync {
    /// Keeps an authorization code's grant, bound to `binding`, until
    /// `grant.expires_at`.
    fn save_code(
        &self,
        code_fingerprint: &str,
        binding: &CodeBinding,
        grant: &OidcGrant,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Spends a code in one conditional write: its grant, once, if it has
    /// not expired by `now` and was bound to `binding`; `None` otherwise
    /// (unknown, spent, expired, or another client, redirect URI or PKCE
    /// challenge, which leaves it unspent). The spent code stays, naming the
    /// access token it bought (`spent_for`), until that token expires, so a
    /// second redemption can revoke it ([`Self::revoke_reused_code`]).
    fn redeem_code(
        &self,
        code_fingerprint: &str,
        binding: &CodeBinding,
        now: i64,
        spent_for: &SpentCode,
    ) -> impl Future<Output = Result<Option<OidcGrant>, StoreError>> + Send;

    /// A code presented again after it was spent, by the client it was
    /// issued to: deletes the access token it bought (RFC 6749 §4.1.2).
    /// `true` when there was one to revoke.
    fn revoke_reused_code(
        &self,
        code_fingerprint: &str,
        client_id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Keeps an access token's grant until `grant.expires_at`.
    fn save_access_token(
        &self,
        token_fingerprint: &str,
        grant: &OidcGrant,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// An access token's grant, if it exists and has not expired by `now`.
    fn get_access_token(
        &self,
        token_fingerprint: &str,
        now: i64,
    ) -> impl Future<Output = Result<Option<OidcGrant>, StoreError>> + Send;
}

/// What a redeemed code bought: the access token (its fingerprint) and
/// until when it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpentCode {
    pub access_token_fingerprint: String,
    pub expires_at: i64,
}

/// AWS Marketplace's registrations and events (docs/aws-marketplace.md).
pub trait AwsMarketplaceStore: Send + Sync {
    /// The buyer a registration token resolved to (by the token's digest).
    fn get_aws_token(
        &self,
        token_fingerprint: &str,
    ) -> impl Future<Output = Result<Option<AwsCustomer>, StoreError>> + Send;

    /// Keeps what the token resolved to until `expires_at`; the first
    /// resolution kept wins (a concurrent one resolved the same token).
    fn save_aws_token(
        &self,
        token_fingerprint: &str,
        customer: &AwsCustomer,
        expires_at: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn get_aws_license(
        &self,
        license_id: &str,
    ) -> impl Future<Output = Result<Option<AwsLicense>, StoreError>> + Send;

    /// What events said of license `license_id`, and its resource
    /// `resource_id` if registered, in one consistent read.
    fn get_aws_purchase(
        &self,
        license_id: &str,
        resource_id: &str,
    ) -> impl Future<Output = Result<(Option<AwsLicense>, Option<Resource>), StoreError>> + Send;

    /// Event `event_id`'s mark, and the states it may change, in one read:
    /// its agreement's, its license's and that license's resource's.
    fn get_aws_event_state(
        &self,
        event_id: &str,
        agreement_id: Option<&str>,
        license_id: Option<&str>,
        resource_id: Option<&str>,
    ) -> impl Future<Output = Result<AwsEventState, StoreError>> + Send;

    /// Writes `writes` in one transaction: `Stale` when a condition failed.
    fn save_aws_states(
        &self,
        writes: &[AlsoWrite<'_>],
    ) -> impl Future<Output = Result<UpdateOutcome, StoreError>> + Send;
}

/// One usage record to count (docs/metering.md): `quantity` of
/// `dimension` in the hour starting at `hour`, once per vendor `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageAdd {
    pub dimension: String,
    /// RFC 3339, whole seconds, on the hour.
    pub hour: String,
    /// Where the hour ends, the same format: the counter waits in the
    /// meter's queue from then.
    pub hour_end: String,
    pub quantity: u64,
    pub key: String,
}

/// How counting a report ended.
#[derive(Debug, PartialEq)]
pub enum UsageWrite {
    /// Counted, except the keys listed, which earlier reports counted.
    Counted { already: Vec<String> },
    /// A counter of this hour is sealed: nothing was counted.
    Sealed(String),
    /// The resource takes no usage: missing (`None`), not billed by usage,
    /// removed, or its agreement's last hour is over. Nothing was counted.
    Refused(Option<Box<Resource>>),
}

/// What the meter's queue holds (the `metering` queue of `PendingSync`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum DueUsage {
    /// A counter whose hour (and the grace after it) has passed.
    Counter {
        resource_id: String,
        dimension: String,
        hour: String,
    },
    /// A resource whose agreement ended: every counter of it is due.
    Final { resource_id: String },
}

/// Reading usage counters: the panel, `provider usage`, the meter.
pub trait UsageReader: Send + Sync {
    /// A resource's counters from hour `from` on (RFC 3339), oldest first.
    fn usage_since(
        &self,
        resource_id: &str,
        from: &str,
    ) -> impl Future<Output = Result<Vec<UsageCounter>, StoreError>> + Send;
}

/// The vendor's usage reports and the meter (shared::metering).
pub trait MeteringStore: UsageReader {
    /// Counts `records` for `resource_id` in one transaction, each key
    /// claimed with its addition: the resource must bill by usage and be
    /// active, or ending since after `ending_after` (RFC 3339). Key claims
    /// are kept until `keys_expire_at` (Unix seconds).
    fn add_usage(
        &self,
        resource_id: &str,
        records: &[UsageAdd],
        ending_after: &str,
        keys_expire_at: i64,
    ) -> impl Future<Output = Result<UsageWrite, StoreError>> + Send;

    /// What waits in the meter's queue since before `before` (RFC 3339).
    fn due_usage(&self, before: &str) -> impl Future<Output = Result<Vec<DueUsage>, StoreError>> + Send;

    /// Seals the counter (no report changes it after) and claims it for
    /// run `run` until `claim_until` (Unix seconds): `None` if it is final,
    /// gone, or another run's claim has not expired at `now_unix`.
    fn claim_usage(
        &self,
        due: &DueUsage,
        run: &str,
        now: &str,
        now_unix: i64,
        claim_until: i64,
    ) -> impl Future<Output = Result<Option<UsageCounter>, StoreError>> + Send;

    /// Writes a claimed counter's final state (out of the queue) with its
    /// audit event: `false` if run `run` no longer holds the claim.
    fn finish_usage(
        &self,
        counter: &UsageCounter,
        run: &str,
        audit: &AuditEvent,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives a claimed counter back to the queue, to be sent again as it
    /// is, noting why (`outcome`) and counting the attempt.
    fn release_usage(
        &self,
        counter: &UsageCounter,
        run: &str,
        outcome: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Takes a resource's end off the queue, once its counters are final.
    fn clear_usage_final(&self, resource_id: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The resources `ids`, in one batch read each hundred.
    fn get_resources(&self, ids: &[String])
        -> impl Future<Output = Result<Vec<Resource>, StoreError>> + Send;
}

pub trait LinkStore: AccountStore {
    fn get_link(&self, uid: &str) -> impl Future<Output = Result<Option<Cloud66Link>, StoreError>> + Send;

    /// Writes a link's new state and its audit events in one transaction, on
    /// condition that the stored version is still `link.version - 1` (no
    /// stored link for a first write, version 1).
    fn save_link(
        &self,
        link: &Cloud66Link,
        events: &[AuditEvent],
    ) -> impl Future<Output = Result<UpdateOutcome, StoreError>> + Send;

    /// Before an unverified link's POST, in one transaction: the link, naming
    /// the resource whose config the POST sends (conditional on the link's
    /// version before), and that resource, new and unconfirmed. Both carry a
    /// TTL; neither is in an account, and no audit event announces them.
    fn start_unconfirmed_link(
        &self,
        link: &Cloud66Link,
        resource: &Resource,
    ) -> impl Future<Output = Result<UpdateOutcome, StoreError>> + Send;

    /// Once Cloud 66 confirmed an unverified link, in one transaction: the
    /// link, its resource (now active) and the account (now listing it), each
    /// on condition of the version before, and the audit events. `Stale` if
    /// any of them changed meanwhile.
    fn confirm_link(
        &self,
        link: &Cloud66Link,
        resource: &Resource,
        account: &Account,
        events: &[AuditEvent],
    ) -> impl Future<Output = Result<UpdateOutcome, StoreError>> + Send;

    /// The account's partner-side resource: `resource` is created with its
    /// audit event and added to the account's `resource_ids`, in one
    /// transaction, unless the account already has one, which is returned.
    fn ensure_account_resource(
        &self,
        account: &Account,
        resource: &Resource,
        event: &AuditEvent,
    ) -> impl Future<Output = Result<Resource, StoreError>> + Send;

    /// Keeps a link request until its user has signed in (TTL `expires_at`).
    fn save_pending_link(
        &self,
        token_fingerprint: &str,
        link: &PendingLink,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A pending link, if it exists and has not expired by `now` (a read:
    /// the confirmation page it leads to may be shown again; the item's TTL
    /// removes it).
    fn get_pending_link(
        &self,
        token_fingerprint: &str,
        now: i64,
    ) -> impl Future<Output = Result<Option<PendingLink>, StoreError>> + Send;
}

/// A full scan of the resources: those that decode, and the keys of those
/// that do not (reported, never silently skipped).
#[derive(Debug, Default)]
pub struct ResourceScan {
    pub resources: Vec<Resource>,
    pub unreadable: Vec<String>,
}

/// What the platform sync writes besides resources.
pub trait SyncStore: ResourceWriter + AccountStore {
    /// Replaces an account and appends an audit event in one transaction, on
    /// condition that the stored version is still `account.version - 1`.
    fn update_account(
        &self,
        account: &Account,
        event: &AuditEvent,
    ) -> impl Future<Output = Result<UpdateOutcome, StoreError>> + Send;

    /// The Cloudmore organisation recorded for a Clever Cloud owner.
    fn owner_organization(
        &self,
        owner_id: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Records a Clever Cloud owner's organisation (first write wins) with an
    /// audit event; returns the organisation recorded.
    fn record_owner_organization(
        &self,
        owner_id: &str,
        organization_id: &str,
        event: &AuditEvent,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// Claims the right to create a Clever Cloud owner's Cloudmore
    /// organisation, so that two resources of one owner processed at once
    /// create one: only one caller gets `Claimed` (a claim older than
    /// [`OWNER_CLAIM_SECONDS`] is abandoned and may be taken over, and the
    /// organisation is then found by name, not created twice).
    fn claim_owner_organization(
        &self,
        owner_id: &str,
        now: i64,
    ) -> impl Future<Output = Result<OwnerClaim, StoreError>> + Send;

    /// The same claim for a Cloud 66 account's organisation, held on the
    /// account item itself (`cloudmore_claimed_at`, bookkeeping: the
    /// version does not move): two settles of one account at once create
    /// one organisation.
    fn claim_account_organization(
        &self,
        account_id: &str,
        now: i64,
    ) -> impl Future<Output = Result<OwnerClaim, StoreError>> + Send;

    /// Replaces what an item is owed (its sync attributes only), on
    /// condition that it is still at `expected_version`: a change made since
    /// (a rotation that owes a new push, say) is never cleared. The version
    /// is not bumped: this is bookkeeping, not a change of the item.
    fn mark_sync(
        &self,
        subject: &SyncSubject,
        expected_version: u64,
        mark: &SyncMark,
    ) -> impl Future<Output = Result<UpdateOutcome, StoreError>> + Send;

    /// The items in a sync queue, oldest first (the sparse `PendingSync`
    /// index: only items that are owed something are in it).
    fn owed(&self, queue: SyncQueue) -> impl Future<Output = Result<Vec<Owed>, StoreError>> + Send;

    /// Every resource (a full scan, for reconciliation).
    fn all_resources(&self) -> impl Future<Output = Result<ResourceScan, StoreError>> + Send;

    /// Whether the audit item at `key` was already published as a lifecycle
    /// event (a redelivered stream record publishes nothing again).
    fn audit_published(&self, key: &AuditKey) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Audit items whose lifecycle event is still unpublished, written
    /// before `before` (RFC 3339), oldest first (the sparse index's
    /// `unpublished` queue).
    fn unpublished_audits(
        &self,
        before: &str,
    ) -> impl Future<Output = Result<Vec<(AuditKey, AuditEvent)>, StoreError>> + Send;

    /// Notes on the audit item that its lifecycle event was published (and
    /// takes it out of the `unpublished` queue).
    fn mark_audit_published(&self, key: &AuditKey) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// An audit item's table key, as a stream record carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditKey {
    pub pk: String,
    pub sk: String,
}

/// An item the platform sync may owe something.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum SyncSubject {
    Resource(String),
    Account(String),
}

/// How long a claim to create an owner's organisation holds.
pub const OWNER_CLAIM_SECONDS: i64 = 120;

/// The answer to [`SyncStore::claim_owner_organization`].
#[derive(Debug, PartialEq, Eq)]
pub enum OwnerClaim {
    /// This caller may create the organisation.
    Claimed,
    /// Already recorded.
    Recorded(String),
    /// Another caller is creating it right now.
    Busy,
}

/// An item in a sync queue, and since when it is owed (RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owed {
    pub subject: SyncSubject,
    pub since: String,
}
