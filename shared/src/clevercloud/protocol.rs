//! The platform's request and response bodies (docs/clevercloud.md).

use crate::http::bounded;
use crate::model::ConfigMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Longest accepted marketplace id or other identifier.
const MAX_ID_LEN: usize = 256;
/// Longest accepted free-text field (owner name, URL).
const MAX_TEXT_LEN: usize = 2048;

/// `POST {base_url}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawProvisionRequest")]
pub struct ProvisionRequest {
    pub addon_id: String,
    pub plan: String,
    pub owner_id: Option<String>,
    pub owner_name: Option<String>,
    pub user_id: Option<String>,
    pub region: Option<String>,
    pub callback_url: Option<String>,
    pub options: BTreeMap<String, String>,
}

/// The body as sent: older senders name the add-on id `heroku_id`, and
/// fields this provider does not use (`logplex_token`, `uuid`, …) are ignored.
#[derive(Deserialize)]
struct RawProvisionRequest {
    addon_id: Option<String>,
    heroku_id: Option<String>,
    plan: String,
    owner_id: Option<String>,
    owner_name: Option<String>,
    user_id: Option<String>,
    region: Option<String>,
    callback_url: Option<String>,
    options: Option<BTreeMap<String, String>>,
}

impl TryFrom<RawProvisionRequest> for ProvisionRequest {
    type Error = String;

    fn try_from(raw: RawProvisionRequest) -> Result<Self, String> {
        let text =
            |field: &str, value: Option<String>| value.map(|v| bounded(field, v, MAX_TEXT_LEN)).transpose();
        Ok(Self {
            addon_id: addon_id(raw.addon_id, raw.heroku_id)?,
            plan: bounded("plan", raw.plan, MAX_ID_LEN)?,
            owner_id: text("owner_id", raw.owner_id)?,
            owner_name: text("owner_name", raw.owner_name)?,
            user_id: text("user_id", raw.user_id)?,
            region: text("region", raw.region)?,
            callback_url: text("callback_url", raw.callback_url)?,
            options: raw.options.unwrap_or_default(),
        })
    }
}

/// `PUT {base_url}/{id}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawPlanChangeRequest")]
pub struct PlanChangeRequest {
    pub addon_id: String,
    pub plan: String,
}

#[derive(Deserialize)]
struct RawPlanChangeRequest {
    addon_id: Option<String>,
    heroku_id: Option<String>,
    plan: String,
}

impl TryFrom<RawPlanChangeRequest> for PlanChangeRequest {
    type Error = String;

    fn try_from(raw: RawPlanChangeRequest) -> Result<Self, String> {
        Ok(Self {
            addon_id: addon_id(raw.addon_id, raw.heroku_id)?,
            plan: bounded("plan", raw.plan, MAX_ID_LEN)?,
        })
    }
}

/// `addon_id`, or `heroku_id` from older senders; `addon_id` wins if both come.
fn addon_id(addon_id: Option<String>, heroku_id: Option<String>) -> Result<String, String> {
    let id = addon_id
        .or(heroku_id)
        .ok_or_else(|| "missing field `addon_id` (or `heroku_id`)".to_string())?;
    bounded("addon_id", id, MAX_ID_LEN)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProvisionResponse {
    pub id: String,
    pub config: ConfigMap,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanChangeResponse {
    pub config: ConfigMap,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeprovisionResponse {
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provision(json: &str) -> Result<ProvisionRequest, String> {
        serde_json::from_str(json).map_err(|err| err.to_string())
    }

    #[test]
    fn parses_the_documented_provision_body() {
        let request = provision(
            r#"{"addon_id":"addon_xxx","owner_id":"orga_xxx","owner_name":"My Company",
                "user_id":"user_yyy","plan":"basic","region":"EU",
                "callback_url":"https://api.clever-cloud.com/v2/vendor/apps/addon_xxx",
                "logplex_token":"logtoken_yyy","options":{"size":"s"},"uuid":"u-1"}"#,
        )
        .unwrap();
        assert_eq!(request.addon_id, "addon_xxx");
        assert_eq!(request.plan, "basic");
        assert_eq!(request.owner_name.as_deref(), Some("My Company"));
        assert_eq!(request.options["size"], "s");
    }

    #[test]
    fn accepts_heroku_id_and_prefers_addon_id() {
        assert_eq!(
            provision(r#"{"heroku_id":"h1","plan":"p"}"#).unwrap().addon_id,
            "h1"
        );
        assert_eq!(
            provision(r#"{"heroku_id":"h1","addon_id":"a1","plan":"p"}"#)
                .unwrap()
                .addon_id,
            "a1"
        );
        assert_eq!(
            provision(r#"{"addon_id":"a1","plan":"p","options":null}"#)
                .unwrap()
                .options
                .len(),
            0
        );
    }

    #[test]
    fn rejects_missing_empty_and_mistyped_fields_by_name() {
        for (json, field) in [
            (r#"{"plan":"p"}"#, "addon_id"),
            (r#"{"addon_id":"a"}"#, "plan"),
            (r#"{"addon_id":"","plan":"p"}"#, "addon_id"),
            (r#"{"addon_id":5,"plan":"p"}"#, "string"),
            (r#"{"addon_id":"a","plan":"p","options":{"k":1}}"#, "string"),
            (r#"{"addon_id":"a","plan":"p","options":[]}"#, "map"),
            (r#"{"addon_id":"a\u0000","plan":"p"}"#, "control"),
        ] {
            let err = provision(json).unwrap_err();
            assert!(err.contains(field), "{json}: {err}");
        }
        let long = format!(r#"{{"addon_id":"{}","plan":"p"}}"#, "a".repeat(MAX_ID_LEN + 1));
        assert!(provision(&long).unwrap_err().contains("longer"));
    }

    #[test]
    fn plan_change_accepts_both_id_names() {
        let request: PlanChangeRequest =
            serde_json::from_str(r#"{"heroku_id":"h","plan":"premium"}"#).unwrap();
        assert_eq!(
            (request.addon_id.as_str(), request.plan.as_str()),
            ("h", "premium")
        );
        assert!(serde_json::from_str::<PlanChangeRequest>(r#"{"addon_id":"h"}"#).is_err());
    }

    mod hostile_input {
        use super::super::*;
        use crate::http::read_json;
        use lambda_http::{Body, Request};
        use proptest::prelude::*;

        fn request(content_type: &str, body: Vec<u8>) -> Request {
            lambda_http::http::Request::builder()
                .method("POST")
                .header("content-type", content_type)
                .body(Body::Binary(body))
                .unwrap()
        }

        fn json_value() -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                ".{0,12}".prop_map(serde_json::Value::from),
            ];
            leaf.prop_recursive(3, 24, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                    prop::collection::btree_map(
                        prop_oneof![
                            Just("addon_id".to_string()),
                            Just("heroku_id".to_string()),
                            Just("plan".to_string()),
                            Just("options".to_string()),
                            ".{0,8}"
                        ],
                        inner,
                        0..5,
                    )
                    .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
                ]
            })
        }

        proptest! {
            /// Random bytes under any content type: parsed or refused with a
            /// 4xx, never a panic and never a 5xx.
            #[test]
            fn random_bytes_are_refused_with_a_4xx(
                content_type in prop_oneof![Just("application/json".to_string()), "[ -~]{0,30}"],
                body in prop::collection::vec(any::<u8>(), 0..512),
            ) {
                if let Err(err) = read_json::<ProvisionRequest>(&request(&content_type, body)) {
                    prop_assert!(err.status.is_client_error(), "{:?}", err);
                }
            }

            /// Random JSON shaped like the real bodies: either a request that
            /// satisfies every rule, or a 400 naming the problem.
            #[test]
            fn random_json_parses_to_a_valid_request_or_a_400(value in json_value()) {
                let body = serde_json::to_vec(&value).unwrap();
                match read_json::<ProvisionRequest>(&request("application/json", body.clone())) {
                    Ok(parsed) => {
                        prop_assert!(!parsed.addon_id.trim().is_empty() && !parsed.plan.trim().is_empty());
                    }
                    Err(err) => prop_assert_eq!(err.status.as_u16(), 400, "{:?}", err),
                }
                if let Err(err) = read_json::<PlanChangeRequest>(&request("application/json", body)) {
                    prop_assert_eq!(err.status.as_u16(), 400);
                }
            }
        }
    }
}
