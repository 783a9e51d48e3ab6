//! Heroku's request and response bodies (docs/heroku.md).

use crate::http::bounded;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Longest accepted slug or name.
const MAX_ID_LEN: usize = 256;
/// Longest accepted free-text field (a URL, say).
const MAX_TEXT_LEN: usize = 2048;

/// Heroku's add-on id in the one form kept: lower-case hex, dashed 8-4-4-4-12.
pub(super) fn canonical_uuid(text: &str) -> Option<String> {
    let groups: Vec<&str> = text.split('-').collect();
    let shaped = groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.chars().all(|c| c.is_ascii_hexdigit()));
    shaped.then(|| text.to_ascii_lowercase())
}

/// `POST {base_url}`: Heroku's provision. Fields this provider does not use
/// (and any Heroku adds later) are tolerated.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawProvisionRequest")]
pub struct ProvisionRequest {
    /// Heroku's id for the add-on, canonical (lower case).
    pub uuid: String,
    pub name: Option<String>,
    pub plan: String,
    /// E.g. `amazon-web-services::us-east-1`.
    pub region: Option<String>,
    pub callback_url: Option<String>,
    pub options: BTreeMap<String, String>,
    /// The add-on's OAuth grant, to exchange within minutes (docs/heroku.md).
    pub oauth_grant: Option<OauthGrant>,
}

/// `oauth_grant`: a code and until when it may be exchanged.
#[derive(Clone, PartialEq, Deserialize)]
pub struct OauthGrant {
    pub code: String,
    /// ISO 8601, as Heroku sends it.
    #[serde(default)]
    pub expires_at: Option<String>,
}

impl std::fmt::Debug for OauthGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OauthGrant")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl OauthGrant {
    /// Unix seconds after which the code is useless: its `expires_at`, or
    /// five minutes after `now` when Heroku gave none readable.
    pub fn expires_at_unix(&self, now: i64) -> i64 {
        self.expires_at
            .as_deref()
            .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok())
            .map_or(now + 300, |at| at.timestamp())
    }
}

#[derive(Deserialize)]
struct RawProvisionRequest {
    uuid: String,
    name: Option<String>,
    plan: String,
    region: Option<String>,
    callback_url: Option<String>,
    options: Option<BTreeMap<String, serde_json::Value>>,
    oauth_grant: Option<OauthGrant>,
}

impl TryFrom<RawProvisionRequest> for ProvisionRequest {
    type Error = String;

    fn try_from(raw: RawProvisionRequest) -> Result<Self, String> {
        let text =
            |field: &str, value: Option<String>| value.map(|v| bounded(field, v, MAX_TEXT_LEN)).transpose();
        let uuid = canonical_uuid(&raw.uuid).ok_or("field `uuid` must be a UUID")?;
        // `heroku addons:create … -- --flag` sends strings; anything else
        // is kept as its JSON text rather than refused.
        let options = raw
            .options
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| match value {
                serde_json::Value::String(text) => (name, text),
                other => (name, other.to_string()),
            })
            .collect();
        Ok(Self {
            uuid,
            name: text("name", raw.name)?,
            plan: bounded("plan", raw.plan, MAX_ID_LEN)?,
            region: text("region", raw.region)?,
            callback_url: text("callback_url", raw.callback_url)?,
            options,
            oauth_grant: match raw.oauth_grant {
                Some(grant) => Some(OauthGrant {
                    code: bounded("oauth_grant.code", grant.code, MAX_ID_LEN)?,
                    expires_at: grant.expires_at,
                }),
                None => None,
            },
        })
    }
}

/// `PUT {base_url}/{uuid}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawPlanChangeRequest")]
pub struct PlanChangeRequest {
    pub plan: String,
}

#[derive(Deserialize)]
struct RawPlanChangeRequest {
    plan: String,
}

impl TryFrom<RawPlanChangeRequest> for PlanChangeRequest {
    type Error = String;

    fn try_from(raw: RawPlanChangeRequest) -> Result<Self, String> {
        Ok(Self {
            plan: bounded("plan", raw.plan, MAX_ID_LEN)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProvisionResponse {
    pub id: String,
    /// Under Heroku's names (`HEROKU_CONFIG_VARS`).
    pub config: BTreeMap<String, String>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanChangeResponse {
    pub config: BTreeMap<String, String>,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "01234567-89ab-cdef-0123-456789abcdef";

    fn provision(json: &str) -> Result<ProvisionRequest, String> {
        serde_json::from_str(json).map_err(|err| err.to_string())
    }

    #[test]
    fn parses_the_documented_provision_body_and_tolerates_the_rest() {
        let request = provision(&format!(
            r#"{{"uuid":"{}","name":"acme-inc-primary-database","plan":"basic",
                "region":"amazon-web-services::us-east-1",
                "callback_url":"https://api.heroku.com/addons/{UUID}",
                "oauth_grant":{{"code":"c","expires_at":"2026-12-03T05:00:00Z","type":"authorization_code"}},
                "options":{{"foo":"bar","baz":true,"n":3}},
                "log_input_url":"https://token:t@1.us.logplex.io/logs","log_drain_token":"d.x",
                "something_new":{{"a":1}}}}"#,
            UUID.to_uppercase()
        ))
        .unwrap();
        assert_eq!(request.uuid, UUID);
        assert_eq!(request.name.as_deref(), Some("acme-inc-primary-database"));
        assert_eq!(request.region.as_deref(), Some("amazon-web-services::us-east-1"));
        assert_eq!(request.options["foo"], "bar");
        assert_eq!(request.options["baz"], "true");
        assert_eq!(request.options["n"], "3");
        let grant = request.oauth_grant.unwrap();
        assert_eq!(grant.code, "c");
        assert_eq!(grant.expires_at_unix(0), 1_796_274_000);
        assert!(!format!("{grant:?}").contains("\"c\""), "the code is not printed");
    }

    #[test]
    fn refuses_a_missing_or_malformed_uuid_and_plan_by_name() {
        for (json, field) in [
            (r#"{"plan":"p"}"#.to_string(), "uuid"),
            (format!(r#"{{"uuid":"{UUID}"}}"#), "plan"),
            (r#"{"uuid":"not-a-uuid","plan":"p"}"#.to_string(), "uuid"),
            (format!(r#"{{"uuid":"{UUID}x","plan":"p"}}"#), "uuid"),
            (format!(r#"{{"uuid":"{UUID}","plan":""}}"#), "plan"),
            (
                format!(r#"{{"uuid":"{UUID}","plan":"p","name":"a\u0000"}}"#),
                "control",
            ),
        ] {
            let err = provision(&json).unwrap_err();
            assert!(err.contains(field), "{json}: {err}");
        }
    }

    #[test]
    fn only_dashed_hex_uuids_are_canonical() {
        assert_eq!(canonical_uuid(&UUID.to_uppercase()).as_deref(), Some(UUID));
        for bad in [
            "",
            "0123456789abcdef0123456789abcdef",
            "0123456-789ab-cdef-0123-456789abcdef",
            "g1234567-89ab-cdef-0123-456789abcdef",
        ] {
            assert_eq!(canonical_uuid(bad), None, "{bad}");
        }
    }
}
