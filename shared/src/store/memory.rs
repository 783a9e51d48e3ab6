//! An in-memory store for the handlers' unit tests: the same contracts as
//! [`super::DynamoStore`] for what those handlers use (a spent token opens
//! nothing, a sign-in state is spent once), with no storage behind it.
//! Storage itself is tested against DynamoDB Local, never here.

use super::{
    AccountStore, AuditReader, OidcStore, OpenOutcome, ResourceReader, SessionStore, SpentCode, StoreError,
    UsageReader,
};
use crate::model::{Account, AuditEvent, CodeBinding, OidcGrant, Resource, Session, Timestamp, UsageCounter};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    pub resources: Mutex<HashMap<String, Resource>>,
    pub sessions: Mutex<HashMap<String, Session>>,
    /// Spent token fingerprints, with how long each is remembered.
    pub spent_tokens: Mutex<HashMap<String, i64>>,
    pub signin_states: Mutex<HashMap<String, i64>>,
    /// Accounts by email.
    pub accounts: Mutex<HashMap<String, Account>>,
    /// OIDC codes by fingerprint, with what they are bound to.
    pub oidc_codes: Mutex<HashMap<String, (CodeBinding, OidcGrant)>>,
    /// Spent OIDC codes: the client they were issued to and the access
    /// token (fingerprint) they bought.
    pub spent_codes: Mutex<HashMap<String, (String, String)>>,
    /// OIDC access tokens by fingerprint.
    pub oidc_tokens: Mutex<HashMap<String, OidcGrant>>,
    /// Audit events, oldest first.
    pub events: Mutex<Vec<AuditEvent>>,
    /// Usage counters, oldest hour first.
    pub usage: Mutex<Vec<UsageCounter>>,
}

impl UsageReader for MemoryStore {
    async fn usage_since(&self, resource_id: &str, from: &str) -> Result<Vec<UsageCounter>, StoreError> {
        Ok(self
            .usage
            .lock()
            .unwrap()
            .iter()
            .filter(|counter| counter.resource_id == resource_id && counter.hour.as_str() >= from)
            .cloned()
            .collect())
    }
}

impl AuditReader for MemoryStore {
    async fn recent_events(&self, resource_id: &str, limit: i32) -> Result<Vec<AuditEvent>, StoreError> {
        Ok(self
            .events
            .lock()
            .unwrap()
            .iter()
            .rev()
            .filter(|event| event.subject_id == resource_id)
            .take(usize::try_from(limit).unwrap_or_default())
            .cloned()
            .collect())
    }
}

impl MemoryStore {
    /// Every session opened, in no order.
    pub fn stored_sessions(&self) -> Vec<Session> {
        self.sessions.lock().unwrap().values().cloned().collect()
    }

    pub fn with_resource(resource: Resource) -> Self {
        let store = Self::default();
        store
            .resources
            .lock()
            .unwrap()
            .insert(resource.id.clone(), resource);
        store
    }
}

impl ResourceReader for MemoryStore {
    async fn get_resource(&self, id: &str) -> Result<Option<Resource>, StoreError> {
        Ok(self.resources.lock().unwrap().get(id).cloned())
    }
}

impl SessionStore for MemoryStore {
    async fn open_session(
        &self,
        token_fingerprint: &str,
        token_expires_at: i64,
        session_id: &str,
        session: &Session,
    ) -> Result<OpenOutcome, StoreError> {
        let mut spent = self.spent_tokens.lock().unwrap();
        if spent.contains_key(token_fingerprint) {
            return Ok(OpenOutcome::Replayed);
        }
        spent.insert(token_fingerprint.to_string(), token_expires_at);
        self.sessions
            .lock()
            .unwrap()
            .insert(session_id.to_string(), session.clone());
        Ok(OpenOutcome::Opened)
    }

    async fn get_session(&self, session_id: &str) -> Result<Option<Session>, StoreError> {
        Ok(self.sessions.lock().unwrap().get(session_id).cloned())
    }

    async fn end_session(&self, session_id: &str) -> Result<(), StoreError> {
        self.sessions.lock().unwrap().remove(session_id);
        Ok(())
    }

    async fn begin_signin(&self, state_fingerprint: &str, expires_at: i64) -> Result<(), StoreError> {
        self.signin_states
            .lock()
            .unwrap()
            .insert(state_fingerprint.to_string(), expires_at);
        Ok(())
    }

    async fn finish_signin(&self, state_fingerprint: &str, now: i64) -> Result<bool, StoreError> {
        let expires_at = self.signin_states.lock().unwrap().remove(state_fingerprint);
        Ok(expires_at.is_some_and(|expires_at| expires_at > now))
    }
}

impl OidcStore for MemoryStore {
    async fn save_code(
        &self,
        code_fingerprint: &str,
        binding: &CodeBinding,
        grant: &OidcGrant,
    ) -> Result<(), StoreError> {
        self.oidc_codes
            .lock()
            .unwrap()
            .insert(code_fingerprint.to_string(), (binding.clone(), grant.clone()));
        Ok(())
    }

    async fn redeem_code(
        &self,
        code_fingerprint: &str,
        binding: &CodeBinding,
        now: i64,
        spent_for: &SpentCode,
    ) -> Result<Option<OidcGrant>, StoreError> {
        let mut codes = self.oidc_codes.lock().unwrap();
        let mut spent = self.spent_codes.lock().unwrap();
        let usable = !spent.contains_key(code_fingerprint)
            && codes
                .get(code_fingerprint)
                .is_some_and(|(bound, grant)| bound == binding && grant.expires_at > now);
        if !usable {
            return Ok(None);
        }
        let (bound, grant) = codes.remove(code_fingerprint).expect("checked above");
        spent.insert(
            code_fingerprint.to_string(),
            (bound.client_id, spent_for.access_token_fingerprint.clone()),
        );
        Ok(Some(grant))
    }

    async fn revoke_reused_code(&self, code_fingerprint: &str, client_id: &str) -> Result<bool, StoreError> {
        let spent = self.spent_codes.lock().unwrap();
        let Some((_, token)) = spent
            .get(code_fingerprint)
            .filter(|(client, _)| client == client_id)
        else {
            return Ok(false);
        };
        Ok(self.oidc_tokens.lock().unwrap().remove(token).is_some())
    }

    async fn save_access_token(&self, token_fingerprint: &str, grant: &OidcGrant) -> Result<(), StoreError> {
        self.oidc_tokens
            .lock()
            .unwrap()
            .insert(token_fingerprint.to_string(), grant.clone());
        Ok(())
    }

    async fn get_access_token(
        &self,
        token_fingerprint: &str,
        now: i64,
    ) -> Result<Option<OidcGrant>, StoreError> {
        Ok(self
            .oidc_tokens
            .lock()
            .unwrap()
            .get(token_fingerprint)
            .filter(|grant| grant.expires_at > now)
            .cloned())
    }
}

impl AccountStore for MemoryStore {
    async fn find_or_create_account(
        &self,
        email: &str,
        name: Option<&str>,
        _actor: &str,
    ) -> Result<Account, StoreError> {
        let mut accounts = self.accounts.lock().unwrap();
        let number = accounts.len();
        let account = accounts
            .entry(email.to_string())
            .or_insert_with(|| Account::new(format!("acc_{number:032x}"), email, name, &Timestamp::now()));
        Ok(account.clone())
    }

    async fn get_account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        let accounts = self.accounts.lock().unwrap();
        Ok(accounts.values().find(|account| account.id == id).cloned())
    }
}
