//! The records this provider keeps: resources sold through a marketplace and
//! the audit trail of every change made to them.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Config var name → value, as handed to the marketplace. The values are
/// credentials, so `Debug` prints the names only.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConfigMap(pub BTreeMap<String, String>);

impl fmt::Debug for ConfigMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl ConfigMap {
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceStatus {
    Active,
    Deprovisioned,
    /// Provisioned for an unverified Cloud 66 link (`CLOUD66_LINK_VERIFY=none`)
    /// that Cloud 66 has not confirmed: in no account, and removed by its TTL
    /// unless Cloud 66 answers 200.
    Unconfirmed,
    /// The vendor's service answered that it finishes later (asynchronous
    /// provisioning, Heroku): no config yet, until it calls back.
    Provisioning,
    /// Still provisioning when the marketplace gave up on it (Heroku: 12 h);
    /// the vendor's service was told to deprovision it.
    Expired,
    /// Suspended by the marketplace (Scalingo: a payment failure, a trial
    /// ended): kept, its config kept, but no sign-in opens it until resumed.
    Suspended,
    /// The marketplace ended the agreement (AWS Marketplace's `Purchase
    /// Agreement Ended`): no sign-in opens it, its last usage may still be
    /// metered, and the license's deprovision follows.
    Ending,
}

/// One provisioned add-on instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// This provider's opaque id, returned to the marketplace as `id`.
    pub id: String,
    /// Which marketplace sold it.
    #[serde(default = "Platform::clevercloud")]
    pub platform: Platform,
    /// The marketplace's id for it: Clever Cloud's `addon_id` / `heroku_id`,
    /// Heroku's `uuid`, or for Cloud 66 the account it was provisioned for.
    pub addon_id: String,
    /// The marketplace's name for it (Heroku's `name`, e.g. `acme-primary-db`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub plan: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    // Empty maps are left out: nothing is lost, and DynamoDB Local's stream
    // renders an empty map as `{}` rather than `{"M": {}}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    pub config: ConfigMap,
    pub status: ResourceStatus,
    /// Incremented by every change; writes are conditional on it, so two
    /// concurrent changes can never both apply to the same version.
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprovisioned_at: Option<String>,
    /// What the marketplace tells only after provisioning (Clever Cloud's
    /// vendor API), fetched off the request path by the platform sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<VendorDetails>,
    /// Unix seconds, the item's TTL: set only while [`ResourceStatus::Unconfirmed`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Counts changes of `config` (1 when provisioned).
    #[serde(default = "first_version")]
    pub config_version: u64,
    /// The `config_version` Clever Cloud last confirmed receiving: the
    /// provision answer carries version 1, a later version is owed until a
    /// `PUT /vendor/apps/{addonId}` of it succeeds.
    #[serde(default = "first_version")]
    pub pushed_config_version: u64,
    /// Provisioned asynchronously and not yet announced ready to the
    /// marketplace (Heroku's provision action), which the sync owes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub announce_ready: bool,
    /// The app the add-on is attached to (Scalingo's `app_id`), which keys
    /// Scalingo's provider API for config set later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// Heroku's OAuth grant and tokens, sealed (`crate::heroku::tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heroku: Option<HerokuAuthorization>,
    /// What the platforms are still owed about this resource.
    #[serde(flatten)]
    pub sync: SyncMark,
}

/// A Heroku add-on's OAuth credentials (docs/heroku.md, "The OAuth grant"),
/// each sealed with `HEROKU_TOKEN_KEY` and bound to its resource: the table
/// never holds them in plain.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HerokuAuthorization {
    /// The grant's code, until exchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// Unix seconds: past this the grant cannot be exchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_expires_at: Option<i64>,
    /// The access and refresh tokens, once exchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<String>,
    /// Unix seconds: the access token's end (refreshed before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<i64>,
}

impl fmt::Debug for HerokuAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HerokuAuthorization")
            .field("grant", &self.grant.as_ref().map(|_| "sealed"))
            .field("grant_expires_at", &self.grant_expires_at)
            .field("tokens", &self.tokens.as_ref().map(|_| "sealed"))
            .field("access_expires_at", &self.access_expires_at)
            .finish()
    }
}

fn first_version() -> u64 {
    1
}

/// Which queue of the sparse `PendingSync` index an item waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncQueue {
    /// Owed, and retried by the stream handler and the scheduled sweep.
    Pending,
    /// A platform refused it for good (a 4xx); retried only when an operator
    /// runs `provider sync`.
    Failed,
}

/// What the platforms (Clever Cloud's vendor API, Cloudmore) are still owed
/// about an item, written with the change that made it owed: it survives
/// any outage, however long, and any lost stream record. Empty when nothing
/// is owed, so the index holds only the items that need work.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncMark {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_queue: Option<SyncQueue>,
    /// Since when something is owed (RFC 3339, the index's sort key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_since: Option<String>,
    /// Not to be tried before (Unix seconds): a platform's `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_retry_at: Option<i64>,
    /// The last failure, in the platform's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_error: Option<String>,
}

impl SyncMark {
    /// Something is owed from `now` on.
    pub fn owed(now: &Timestamp) -> Self {
        Self {
            sync_queue: Some(SyncQueue::Pending),
            sync_since: Some(now.to_string()),
            ..Self::default()
        }
    }

    pub fn is_owed(&self) -> bool {
        self.sync_queue.is_some()
    }

    /// Owed still, keeping when it started (or from `now`).
    pub fn still_owed(&self, now: &Timestamp) -> Self {
        Self {
            sync_queue: Some(SyncQueue::Pending),
            sync_since: self.sync_since.clone().or_else(|| Some(now.to_string())),
            sync_retry_at: None,
            sync_error: None,
        }
    }
}

/// Clever Cloud's `GET /vendor/apps/{addonId}` details kept on a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub owner_emails: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub fetched_at: String,
}

impl Resource {
    /// A new active resource at version 1; everything else is unknown yet.
    pub fn new(
        id: String,
        platform: Platform,
        addon_id: String,
        plan: String,
        config: ConfigMap,
        now: &Timestamp,
    ) -> Self {
        Self {
            id,
            platform,
            addon_id,
            plan,
            name: None,
            owner_id: None,
            owner_name: None,
            user_id: None,
            region: None,
            callback_url: None,
            options: BTreeMap::new(),
            config,
            status: ResourceStatus::Active,
            version: 1,
            created_at: now.to_string(),
            updated_at: now.to_string(),
            deprovisioned_at: None,
            vendor: None,
            expires_at: None,
            config_version: 1,
            pushed_config_version: 1,
            announce_ready: false,
            app_id: None,
            heroku: None,
            sync: SyncMark::default(),
        }
    }

    pub fn is_active(&self) -> bool {
        self.status == ResourceStatus::Active
    }
}

/// What an audit event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    Resource,
    Account,
}

/// What happened to a resource or an account; written in the same
/// transaction as the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub subject_kind: SubjectKind,
    pub subject_id: String,
    pub action: AuditAction,
    pub at: String,
    /// Who asked for the change (`clevercloud`, …).
    pub actor: String,
    /// Non-secret facts about the change (e.g. `from_plan`, `to_plan`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Provisioned,
    PlanChanged,
    Deprovisioned,
    AccountCreated,
    /// Cloud 66 accepted the link.
    Cloud66Linked,
    /// Cloud 66 said the email was already linked; nothing was bound.
    Cloud66AlreadyLinked,
    /// Cloud 66 refused the link; `details.message` says why.
    Cloud66LinkRefused,
    /// Cloud 66 did not answer in time or failed; the link stays pending.
    Cloud66LinkPending,
    /// The marketplace's details were fetched and stored.
    VendorDetailsFetched,
    /// Secret config values were replaced.
    CredentialsRotated,
    /// The owner's Cloudmore organisation was found or created and recorded.
    CloudmoreOrganizationRecorded,
    /// Clever Cloud confirmed a `config_version` (`PUT /vendor/apps/{addonId}`).
    ConfigPushed,
    /// The vendor's service will finish the provision later (asynchronous);
    /// `Provisioned` follows when it does.
    ProvisionStarted,
    /// Still provisioning at the marketplace's deadline: given up.
    ProvisionExpired,
    /// The marketplace was told the resource is ready (Heroku's provision action).
    ReadyAnnounced,
    /// Heroku's OAuth grant was exchanged, or its tokens refreshed.
    AuthorizationRenewed,
    /// Heroku's sealed grant or tokens were sealed anew under the current
    /// `HEROKU_TOKEN_KEY` (a rotation; `provider secrets rotate`).
    TokensResealed,
    /// The marketplace suspended the resource (Scalingo).
    Suspended,
    /// The marketplace resumed a suspended resource (Scalingo).
    Resumed,
    /// The marketplace ended the agreement; the deprovision follows
    /// (AWS Marketplace).
    Ending,
    /// An hour's usage of one dimension was accepted by the marketplace
    /// (docs/metering.md); `details` name the dimension, hour and quantity.
    UsageMetered,
    /// The marketplace refused an hour's usage for good, or it could no
    /// longer be sent (docs/metering.md); `details.reason` says why.
    UsageMeteringFailed,
}

impl AuditAction {
    /// The `detail-type` of the lifecycle event this action is published
    /// as; other actions (link attempts, sync bookkeeping) stay internal.
    pub fn detail_type(self) -> Option<&'static str> {
        Some(match self {
            AuditAction::Provisioned => "Resource Provisioned",
            AuditAction::PlanChanged => "Resource Plan Changed",
            AuditAction::Deprovisioned => "Resource Deprovisioned",
            AuditAction::ProvisionExpired => "Resource Provision Expired",
            AuditAction::CredentialsRotated => "Resource Config Rotated",
            AuditAction::Cloud66Linked => "Cloud 66 Linked",
            AuditAction::AccountCreated => "Account Created",
            AuditAction::Suspended => "Resource Suspended",
            AuditAction::Resumed => "Resource Resumed",
            AuditAction::Ending => "Resource Ending",
            AuditAction::UsageMetered => "Usage Metered",
            AuditAction::UsageMeteringFailed => "Usage Metering Failed",
            AuditAction::Cloud66LinkRefused
            | AuditAction::Cloud66AlreadyLinked
            | AuditAction::Cloud66LinkPending
            | AuditAction::VendorDetailsFetched
            | AuditAction::CloudmoreOrganizationRecorded
            | AuditAction::ConfigPushed
            | AuditAction::ProvisionStarted
            | AuditAction::ReadyAnnounced
            | AuditAction::AuthorizationRenewed
            | AuditAction::TokensResealed => return None,
        })
    }
}

impl AuditEvent {
    pub fn new(
        subject_kind: SubjectKind,
        subject_id: &str,
        action: AuditAction,
        actor: &str,
        at: &Timestamp,
    ) -> Self {
        Self {
            subject_kind,
            subject_id: subject_id.to_string(),
            action,
            at: at.to_string(),
            actor: actor.to_string(),
            details: BTreeMap::new(),
        }
    }

    pub fn with_detail(mut self, key: &str, value: &str) -> Self {
        self.details.insert(key.to_string(), value.to_string());
        self
    }
}

/// Where an hour's usage counter is on its way to the marketplace
/// (docs/metering.md, "What is sent when").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeterState {
    /// Reports still add to it.
    #[default]
    Open,
    /// Its quantity is final; being sent, or to be sent again.
    Sealed,
    /// The marketplace accepted it (`Success` or `DuplicateRecord`).
    Metered,
    /// The marketplace refused it for good (`CustomerNotSubscribed`, …).
    Failed,
    /// It could not be sent within the marketplace's window.
    Lost,
}

impl MeterState {
    pub fn as_str(self) -> &'static str {
        match self {
            MeterState::Open => "open",
            MeterState::Sealed => "sealed",
            MeterState::Metered => "metered",
            MeterState::Failed => "failed",
            MeterState::Lost => "lost",
        }
    }

    /// Nothing more will be sent for it.
    pub fn is_final(self) -> bool {
        matches!(self, MeterState::Metered | MeterState::Failed | MeterState::Lost)
    }
}

/// A resource's usage of one dimension in one hour: what the vendor's
/// reports added up to, and how its metering went (docs/metering.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageCounter {
    pub resource_id: String,
    pub dimension: String,
    /// The hour's start, RFC 3339 in whole seconds (`2026-12-07T10:00:00Z`).
    pub hour: String,
    #[serde(default)]
    pub quantity: u64,
    #[serde(default)]
    pub state: MeterState,
    /// When no report could change it any more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_at: Option<String>,
    /// How many times it was sent without an answer that settles it.
    #[serde(default)]
    pub attempts: u32,
    /// The marketplace's answer: `Success`, `DuplicateRecord`,
    /// `CustomerNotSubscribed`, or why it could not be sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The marketplace's id of the accepted record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metering_record_id: Option<String>,
    /// When it reached a final state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// A customer known by email, shared by the Cloud 66 flows (SSO and link).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    /// In the form [`canonical_email`] gives; unique across accounts.
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Resources provisioned for this account (by the Cloud 66 link flow).
    #[serde(default)]
    pub resource_ids: Vec<String>,
    /// The account's organisation in the vendor's Cloudmore reseller account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudmore_organization_id: Option<String>,
    pub created_at: String,
    pub version: u64,
    /// Owed while its Cloudmore organisation is not recorded.
    #[serde(flatten)]
    pub sync: SyncMark,
}

impl Account {
    /// A new account at version 1, with no resources yet; its Cloudmore
    /// organisation is owed from `now` (crate::sync).
    pub fn new(id: String, email: &str, name: Option<&str>, now: &Timestamp) -> Self {
        Self {
            id,
            email: email.to_string(),
            name: name.map(str::to_string),
            resource_ids: Vec::new(),
            cloudmore_organization_id: None,
            created_at: now.to_string(),
            version: 1,
            sync: SyncMark::owed(now),
        }
    }
}

/// The one email rule of every flow (Cloud 66 link and SSO alike): trimmed,
/// ASCII only, a plain valid address ([`is_valid_email`]), lower-cased by
/// ASCII rules. Unicode case folding is refused rather than applied: it would
/// let `\u{212A}im@corp.com` (Kelvin sign) stand for `kim@corp.com`. `None`
/// means the address cannot be used.
pub fn canonical_email(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    (trimmed.is_ascii() && is_valid_email(trimmed)).then(|| trimmed.to_ascii_lowercase())
}

/// A plain, conservative check: one `@`, a sane local part, and a dotted
/// domain of letters, digits and hyphens.
pub fn is_valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let local_ok = (1..=64).contains(&local.len())
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = email.len() <= 254
        && labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    local_ok && domain_ok
}

/// What the link request said, kept until its user has signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLink {
    pub uid: String,
    /// In [`canonical_email`] form.
    pub email: String,
    pub callback: String,
    /// Unix seconds; also the item's TTL.
    pub expires_at: i64,
}

/// A marketplace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    CleverCloud,
    Cloud66,
    Heroku,
    Scalingo,
    /// AWS Marketplace SaaS (docs/aws-marketplace.md): one resource per
    /// purchase, its license's id the marketplace id.
    Aws,
}

impl Platform {
    /// Every marketplace, in the order `provider list` names them.
    pub const ALL: [Platform; 5] = [
        Platform::CleverCloud,
        Platform::Cloud66,
        Platform::Heroku,
        Platform::Scalingo,
        Platform::Aws,
    ];

    /// Whether its listings bill by the usage the vendor reports
    /// (docs/metering.md): only these take `POST /vendor/resources/{id}/usage`.
    pub fn bills_by_usage(self) -> bool {
        matches!(self, Platform::Aws)
    }

    /// Its name as stored and as claimed (`clever_cloud`, `cloud66`).
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::CleverCloud => "clever_cloud",
            Platform::Cloud66 => "cloud66",
            Platform::Heroku => "heroku",
            Platform::Scalingo => "scalingo",
            Platform::Aws => "aws",
        }
    }

    /// The default for records written before resources carried a platform.
    fn clevercloud() -> Self {
        Platform::CleverCloud
    }
}

/// The license id (`l-…`) of an AWS License Manager license ARN, however
/// spelled: AWS Marketplace's events print the ARN without its `arn:`
/// (docs/aws-marketplace.md), so purchases are keyed on the id alone.
pub fn aws_license_id(arn: &str) -> &str {
    arn.rsplit([':', '/']).next().unwrap_or(arn)
}

/// A buyer and purchase as AWS Marketplace's `ResolveCustomer` names them
/// for a registration token (docs/aws-marketplace.md, "Registration"),
/// kept under the token's digest for the token's four hours: a re-post
/// finds it again, since AWS answers a resubmitted token `ExpiredToken`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsCustomer {
    pub license_arn: String,
    /// `CustomerAWSAccountId`: twelve digits.
    pub aws_account_id: String,
    pub product_code: String,
    /// Legacy listings' `CustomerIdentifier`; empty for new ones.
    #[serde(default)]
    pub customer_identifier: String,
}

/// What AWS Marketplace's events said of one license (a purchase), kept
/// whether or not the buyer has registered yet: events may come first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsLicense {
    /// The license's id, `l-…`.
    pub license_id: String,
    /// The agreement the license was granted by, once an event named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement_id: Option<String>,
    /// The plan the license's entitlements map to (`License Updated`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entitled_plan: Option<String>,
    /// The agreement ended (`Purchase Agreement Ended`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ended: bool,
    /// The license ended for good (`License Deprovisioned`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deprovisioned: bool,
    /// 0 before the first write; writes are conditional on it.
    pub version: u64,
    #[serde(default)]
    pub updated_at: String,
}

/// What AWS Marketplace's agreement events said of one agreement: they
/// name the agreement, not its license, so an `Ended` that comes before
/// the license's first event waits here for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsAgreement {
    /// `agmt-…`.
    pub agreement_id: String,
    /// The license it granted, once a license event named both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license_id: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ended: bool,
    pub version: u64,
    #[serde(default)]
    pub updated_at: String,
}

/// Where a Cloud 66 link stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkStatus {
    /// Not yet confirmed by Cloud 66 (it failed or timed out); a reload retries.
    Pending,
    Linked,
    /// Cloud 66 refused it; `message` says why. A reload tries again.
    Refused,
    /// Cloud 66 said the email is already linked. The user is sent back to
    /// Cloud 66, but the uid is bound to nothing: the answer does not say
    /// the uid is this email's, so the next attempt replaces it.
    AlreadyLinked,
}

/// A Cloud 66 user's link (`uid`) to an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cloud66Link {
    pub uid: String,
    /// The account linked; `None` while an unverified link waits for
    /// Cloud 66's 200 (the account is found or created only then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    pub email: String,
    pub status: LinkStatus,
    /// Cloud 66's last refusal or failure, as it worded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub attempts: u32,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linked_at: Option<String>,
    /// 0 before the first write; writes are conditional on it.
    pub version: u64,
    /// The unconfirmed resource whose config was sent with this uid (unverified links only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    /// Unix seconds, the item's TTL: set while an unverified link is not linked,
    /// so a stranger's attempts do not stay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// A signed-in browser. Stored under a hash of its id, never the id itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub platform: Platform,
    /// The resource (Clever Cloud) or account (Cloud 66) the session may see.
    pub subject_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nav_data: Option<String>,
    pub created_at: String,
    /// Epoch seconds; DynamoDB's TTL attribute, and checked on every read.
    pub expires_at: i64,
    /// Who signed in, as the marketplace vouched for it: what the OpenID
    /// Connect provider tells the vendor's app (`crate::oidc`). Sessions
    /// opened before it existed have none and sign in to the panel only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<SignedInIdentity>,
}

/// Who signed in through a marketplace, fixed at sign-in: the claims of the
/// ID tokens the OpenID Connect provider issues for the session
/// (docs/oidc.md "Claims").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedInIdentity {
    /// `sub`: stable per marketplace account, different between accounts
    /// ([`SignedInIdentity::subject_of`]).
    pub subject: String,
    pub platform: Platform,
    /// The email, only when the marketplace's proof signs it (Clever
    /// Cloud's SHA-512 signature, Heroku's user-scoped token, Cloud 66's
    /// multipass): the `email` claim, with `email_verified: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Whether the marketplace signed the email; claims carry `email` only
    /// when it did (sessions stored before this rule may hold an unsigned one).
    #[serde(default)]
    pub email_verified: bool,
    /// An email the sign-in form carried but no proof signs (Heroku's
    /// resource and legacy tokens, Clever Cloud's legacy SHA-1 form): anyone
    /// who sends the form picks it, so it is never `email`, only the
    /// non-standard `marketplace_unverified_email` claim (docs/oidc.md "Claims").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unverified_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// This stack's id of the resource sold, its plan, and the
    /// marketplace's own id for the add-on (absent for a Cloud 66 account
    /// with no resource yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marketplace_id: Option<String>,
    /// The buyer's AWS account (AWS Marketplace's `CustomerAWSAccountId`,
    /// which `ResolveCustomer` vouches for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_account_id: Option<String>,
    /// Unix seconds of the marketplace sign-in (`auth_time`).
    pub auth_time: i64,
}

impl SignedInIdentity {
    /// The `sub` of marketplace account `account` (a kind and an id, such as
    /// `user:user_123`) on `platform`: an opaque digest, so it is stable,
    /// distinct per account and platform, and reveals no marketplace id.
    pub fn subject_of(platform: Platform, account: &str) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(&Sha256::digest(format!("{}\n{account}", platform.as_str()))[..20])
    }

    /// The claims for `resource` (when there is one).
    pub fn with_resource(mut self, resource: Option<&Resource>) -> Self {
        if let Some(resource) = resource {
            self.resource_id = Some(resource.id.clone());
            self.plan = Some(resource.plan.clone());
            self.marketplace_id = Some(resource.addon_id.clone());
        }
        self
    }
}

/// What an OpenID Connect authorization code or access token grants
/// (`crate::oidc`): the client it was issued to, the scopes, the nonce to
/// echo, and who signed in. Stored under the token's SHA-256 only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcGrant {
    pub client_id: String,
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub identity: SignedInIdentity,
    /// Unix seconds; the item's TTL, and checked on every read.
    pub expires_at: i64,
}

/// What an authorization code is bound to: redeeming it must present the
/// same client and redirect URI, and the PKCE verifier of this challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeBinding {
    pub client_id: String,
    pub redirect_uri: String,
    /// `BASE64URL(SHA-256(code_verifier))` (RFC 7636, S256).
    pub code_challenge: String,
}

/// A UTC instant, written as RFC 3339 with milliseconds so stored values sort
/// lexically in time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub DateTime<Utc>);

impl Timestamp {
    pub fn now() -> Self {
        Self(Utc::now())
    }

    /// Unix seconds, as TTL attributes hold them.
    pub fn unix(&self) -> i64 {
        self.0.timestamp()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sync_mark_is_stored_as_top_level_attributes_and_read_back() {
        let now = Timestamp::now();
        let mut resource = Resource::new(
            "res_1".into(),
            Platform::CleverCloud,
            "addon_1".into(),
            "basic".into(),
            ConfigMap::default(),
            &now,
        );
        resource.sync = SyncMark {
            sync_retry_at: Some(1_900_000_000),
            sync_error: Some("HTTP 429".into()),
            ..SyncMark::owed(&now)
        };
        let item: serde_dynamo::Item = serde_dynamo::to_item(&resource).unwrap();
        assert_eq!(
            item.get("sync_queue"),
            Some(&serde_dynamo::AttributeValue::S("pending".into()))
        );
        assert!(item.contains_key("sync_since") && item.contains_key("sync_retry_at"));
        let back: Resource = serde_dynamo::from_item(item).unwrap();
        assert_eq!(back, resource);

        // Nothing owed: no attribute at all, so the index does not list it.
        resource.sync = SyncMark::default();
        let item: serde_dynamo::Item = serde_dynamo::to_item(&resource).unwrap();
        assert!(!item.keys().any(|name| name.starts_with("sync_")), "{item:?}");
        let back: Resource = serde_dynamo::from_item(item).unwrap();
        assert_eq!(back, resource);
    }

    #[test]
    fn config_map_debug_shows_names_not_values() {
        let config = ConfigMap(BTreeMap::from([("A_TOKEN".to_string(), "s3cr3t".to_string())]));
        let printed = format!("{config:?}");
        assert!(
            printed.contains("A_TOKEN") && !printed.contains("s3cr3t"),
            "{printed}"
        );
    }

    #[test]
    fn timestamps_sort_as_text_in_time_order() {
        let earlier = Timestamp(DateTime::from_timestamp(1_700_000_000, 5_000_000).unwrap());
        let later = Timestamp(DateTime::from_timestamp(1_700_000_000, 50_000_000).unwrap());
        assert_eq!(earlier.to_string(), "2023-11-14T22:13:20.005Z");
        assert!(earlier.to_string() < later.to_string());
    }

    #[test]
    fn email_check() {
        for good in ["jon@smith.com", "a.b+c@sub.example.co"] {
            assert!(is_valid_email(good), "{good}");
        }
        for bad in [
            "",
            "jon",
            "jon@",
            "@smith.com",
            "jon@smith",
            "jon@@smith.com",
            "jon smith@x.com",
            "jon@-x.com",
            "jon@x.c0m",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn canonical_emails_are_ascii_trimmed_and_lower_case() {
        assert_eq!(
            canonical_email("  Jon@Smith.COM ").as_deref(),
            Some("jon@smith.com")
        );
        // Unicode case folding would turn each of these into an ASCII address
        // that belongs to someone else; they are refused instead.
        for lookalike in [
            "\u{212A}im@corp.com",
            "jon@corp.\u{212A}z",
            "\u{130}nfo@corp.com",
            "jön@corp.com",
        ] {
            assert_eq!(canonical_email(lookalike), None, "{lookalike}");
        }
        assert_eq!(canonical_email("not an email"), None);
    }
}
