//! Scalingo's request and response bodies (docs/scalingo.md). Its
//! documents (2015), its Ruby boilerplate and its own clients differ: every
//! form they send is read, and fields none of them uses are tolerated.

use crate::http::bounded;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Longest accepted id or plan.
const MAX_ID_LEN: usize = 256;

/// Longest accepted app id (Scalingo types it as a string; its docs show
/// `app456@heroku.com`, its tester names such as `galápagos-penguin-12`).
const MAX_APP_ID_CHARS: usize = 255;

/// `.` or `..`: a step in a URL path however it is encoded, so never one
/// path segment.
pub fn is_dot_segment(text: &str) -> bool {
    matches!(text, "." | "..")
}

/// Any non-empty app id of at most 255 characters without a control
/// character (nor `.` or `..`, which no URL can carry as one path segment):
/// it is percent-encoded as one path segment when Scalingo's provider API
/// is called (`crate::scalingo::platform`).
fn app_id(value: String) -> Result<String, String> {
    if is_dot_segment(&value) {
        return Err("field `app_id` cannot be `.` or `..`".into());
    }
    if value.chars().count() > MAX_APP_ID_CHARS {
        return Err(format!(
            "field `app_id` is longer than {MAX_APP_ID_CHARS} characters"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err("field `app_id` may hold no control character".into());
    }
    Ok(value)
}

/// The uuid names the add-on's claim and derives its id: letters, digits,
/// `-` and `_` only.
fn path_safe(field: &str, value: String) -> Result<String, String> {
    let value = bounded(field, value, MAX_ID_LEN)?;
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Ok(value)
    } else {
        Err(format!(
            "field `{field}` may hold only letters, digits, '-' and '_'"
        ))
    }
}

/// `POST {base_url}`: `plan` always; `app_id` (documented, required there;
/// absent from the boilerplate's), `uuid` (the boilerplate's and Scalingo's
/// own client's), `shard_id` (its client's, internal) and `options`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawProvisionRequest")]
pub struct ProvisionRequest {
    pub plan: String,
    pub app_id: Option<String>,
    pub uuid: Option<String>,
    pub shard_id: Option<String>,
    pub options: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RawProvisionRequest {
    plan: String,
    app_id: Option<String>,
    uuid: Option<String>,
    shard_id: Option<serde_json::Value>,
    options: Option<BTreeMap<String, serde_json::Value>>,
}

/// Options as strings: non-string values are kept as their JSON text.
fn options(raw: Option<BTreeMap<String, serde_json::Value>>) -> BTreeMap<String, String> {
    raw.unwrap_or_default()
        .into_iter()
        .map(|(name, value)| match value {
            serde_json::Value::String(text) => (name, text),
            other => (name, other.to_string()),
        })
        .collect()
}

impl TryFrom<RawProvisionRequest> for ProvisionRequest {
    type Error = String;

    fn try_from(raw: RawProvisionRequest) -> Result<Self, String> {
        let id = |field: &str, value: Option<String>| {
            value
                .filter(|value| !value.is_empty())
                .map(|value| path_safe(field, value))
                .transpose()
        };
        Ok(Self {
            plan: bounded("plan", raw.plan, MAX_ID_LEN)?,
            app_id: raw
                .app_id
                .filter(|value| !value.is_empty())
                .map(app_id)
                .transpose()?,
            uuid: id("uuid", raw.uuid)?,
            // A number or a string, as the client has it: kept as text.
            shard_id: match raw.shard_id {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(text)) => Some(bounded("shard_id", text, MAX_ID_LEN)?),
                Some(other) => Some(bounded("shard_id", other.to_string(), MAX_ID_LEN)?),
            },
            options: options(raw.options),
        })
    }
}

/// `PUT` or `PATCH {base_url}/{id}`: `{plan, options}`. A missing plan is
/// Scalingo's 422 (the boilerplate's), so it is read as optional here.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawPlanChangeRequest")]
pub struct PlanChangeRequest {
    pub plan: Option<String>,
}

#[derive(Deserialize)]
struct RawPlanChangeRequest {
    plan: Option<String>,
}

impl TryFrom<RawPlanChangeRequest> for PlanChangeRequest {
    type Error = String;

    fn try_from(raw: RawPlanChangeRequest) -> Result<Self, String> {
        Ok(Self {
            plan: raw
                .plan
                .filter(|plan| !plan.is_empty())
                .map(|plan| bounded("plan", plan, MAX_ID_LEN))
                .transpose()?,
        })
    }
}

/// 201: the add-on is ready.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProvisionResponse {
    pub id: String,
    pub message: String,
    pub config: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanChangeResponse {
    pub message: String,
    pub config: BTreeMap<String, String>,
}

/// Suspend, resume, and a plan change still finishing: a message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageResponse {
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provision(json: &str) -> Result<ProvisionRequest, String> {
        serde_json::from_str(json).map_err(|err| err.to_string())
    }

    #[test]
    fn reads_the_documented_the_boilerplates_and_scalingos_own_bodies() {
        let documented =
            provision(r#"{"plan":"basic","app_id":"54c8d3c0736e6f0001000000","options":{}}"#).unwrap();
        assert_eq!(documented.app_id.as_deref(), Some("54c8d3c0736e6f0001000000"));
        assert_eq!(documented.uuid, None);
        let boilerplate = provision(
            r#"{"uuid":"b3f5c1d2-0000-4000-8000-00000000000a","plan":"basic","options":{"size":2}}"#,
        )
        .unwrap();
        assert_eq!(boilerplate.app_id, None);
        assert_eq!(boilerplate.options["size"], "2");
        let own = provision(
            r#"{"plan":"basic","app_id":"ap-1","uuid":"ad-1","shard_id":3,"options":{"a":"b"},"new_field":[1]}"#,
        )
        .unwrap();
        assert_eq!(
            (
                own.uuid.as_deref(),
                own.shard_id.as_deref(),
                own.options["a"].as_str()
            ),
            (Some("ad-1"), Some("3"), "b")
        );
    }

    #[test]
    fn refuses_a_missing_plan_and_ids_unfit_for_a_path() {
        for (json, field) in [
            (r#"{"app_id":"a"}"#, "plan"),
            (r#"{"plan":""}"#, "plan"),
            (r#"{"plan":"p","app_id":"a\u0000b"}"#, "app_id"),
            (r#"{"plan":"p","app_id":"line\nbreak"}"#, "app_id"),
            (r#"{"plan":"p","app_id":".."}"#, "app_id"),
            (r#"{"plan":"p","uuid":"a b"}"#, "uuid"),
            (r#"{"plan":"p","uuid":7}"#, "invalid type"),
        ] {
            let err = provision(json).unwrap_err();
            assert!(err.contains(field), "{json}: {err}");
        }
    }

    #[test]
    fn scalingos_own_app_ids_pass_and_only_their_length_and_control_characters_are_refused() {
        for id in [
            "app456@heroku.com",
            "galápagos-penguin-12",
            "../admin",
            "a b/c?d#e%f",
        ] {
            let json = serde_json::json!({"plan": "p", "app_id": id}).to_string();
            assert_eq!(provision(&json).unwrap().app_id.as_deref(), Some(id), "{id}");
        }
        let longest = "é".repeat(MAX_APP_ID_CHARS);
        let json = serde_json::json!({"plan": "p", "app_id": longest}).to_string();
        assert_eq!(provision(&json).unwrap().app_id, Some(longest.clone()));
        let json = serde_json::json!({"plan": "p", "app_id": format!("{longest}x")}).to_string();
        assert!(provision(&json).unwrap_err().contains("app_id"));
        for control in ["\u{7f}", "\t", "\u{85}"] {
            let json = serde_json::json!({"plan": "p", "app_id": format!("a{control}")}).to_string();
            assert!(provision(&json).is_err(), "{control:?}");
        }
    }

    #[test]
    fn a_plan_change_may_lack_its_plan_for_the_route_to_answer_422() {
        let change: PlanChangeRequest = serde_json::from_str(r#"{"options":{}}"#).unwrap();
        assert_eq!(change.plan, None);
        let change: PlanChangeRequest =
            serde_json::from_str(r#"{"plan":"premium","options":{"x":1}}"#).unwrap();
        assert_eq!(change.plan.as_deref(), Some("premium"));
    }
}
