//! `provider check --cleanup` (the default): after the run, every record the
//! run made in the deployment's table is removed, so a check leaves a
//! production table as it found it (docs/checking.md).
//!
//! The check calls the deployment only over HTTP, as a marketplace does, so
//! it knows its records by what it sent and received: the resources it
//! provisioned and their add-on ids, the cookies it was given (sessions,
//! sign-in states), the sign-in proofs it spent, the authorization codes and
//! access tokens it held, and the Cloud 66 account its email made. Each of
//! those names exactly the items it made (the table keys a token by its
//! SHA-256, `shared::signin::fingerprint`); nothing else is touched.

use super::probe::Answer;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use shared::signin::fingerprint;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// What the run sent and received that names a record it made.
#[derive(Default)]
pub struct Traces {
    seen: Mutex<Seen>,
}

#[derive(Default, Clone)]
struct Seen {
    resource_ids: BTreeSet<String>,
    addon_ids: BTreeSet<String>,
    heroku_uuids: BTreeSet<String>,
    /// Scalingo's claim keys: the uuids sent, and the ids answered.
    scalingo_claims: BTreeSet<String>,
    cookie_values: BTreeSet<String>,
    proofs: BTreeSet<String>,
    /// The marketplace sign-ins sent (each spent as one, by its add-on and
    /// timestamp: `shared::signin::resource_signin_key`).
    sign_ins: BTreeSet<String>,
    codes: BTreeSet<String>,
    access_tokens: BTreeSet<String>,
    /// AWS Marketplace: the registration tokens posted, the licenses minted
    /// (`l-…`), the agreements and the event ids delivered.
    aws_tokens: BTreeSet<String>,
    aws_licenses: BTreeSet<String>,
    aws_agreements: BTreeSet<String>,
    aws_events: BTreeSet<String>,
}

impl Traces {
    fn with<T>(&self, change: impl FnOnce(&mut Seen) -> T) -> T {
        change(
            &mut self
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// A request about to be sent: the add-on ids it provisions, the
    /// sign-in proofs and codes it spends, the bearer token it shows.
    pub fn request(&self, request: &reqwest::Request) {
        let query: Vec<(String, String)> = request.url().query_pairs().into_owned().collect();
        let body = request
            .body()
            .and_then(reqwest::Body::as_bytes)
            .unwrap_or_default();
        let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let scalingo = request.url().path().contains("/scalingo/");
        let bearer = request
            .headers()
            .get(reqwest::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::to_string);
        let path = request.url().path().to_string();
        self.with(|seen| {
            seen.sign_ins.extend(sign_ins(&path, query.iter().chain(&form)));
            for (name, value) in query.iter().chain(&form) {
                match name.as_str() {
                    // A Cloud 66 multipass is spent as sent (the other
                    // marketplaces' sign-ins by add-on and timestamp: above).
                    "multipass" => {
                        seen.proofs.insert(value.clone());
                    }
                    "code" => {
                        seen.codes.insert(value.clone());
                    }
                    shared::aws_marketplace::register::TOKEN_FIELD => {
                        seen.aws_tokens.insert(value.clone());
                    }
                    _ => {}
                }
            }
            if let Some(addon_id) = json.as_ref().and_then(|json| json["addon_id"].as_str()) {
                seen.addon_ids.insert(addon_id.to_string());
            }
            // A Scalingo provision with a uuid: its claim, and the resource
            // the uuid names.
            if let Some(uuid) = json
                .as_ref()
                .and_then(|json| json["uuid"].as_str())
                .filter(|_| scalingo)
            {
                seen.scalingo_claims.insert(uuid.to_string());
                seen.resource_ids
                    .insert(shared::scalingo::resource_id_for_uuid(uuid));
            }
            // A Heroku provision: its claim, and the resource its uuid names.
            if let Some(uuid) = json
                .as_ref()
                .and_then(|json| json["uuid"].as_str())
                .filter(|_| !scalingo)
            {
                if let Some(id) = shared::heroku::resource_id(uuid) {
                    seen.heroku_uuids.insert(uuid.to_ascii_lowercase());
                    seen.resource_ids.insert(id);
                }
            }
            seen.access_tokens.extend(bearer);
            // An AWS Marketplace event handed to the events function.
            if let Some(event) = json.as_ref().filter(|json| json.get("detail-type").is_some()) {
                seen.aws_events.extend(event["id"].as_str().map(str::to_string));
                seen.aws_agreements
                    .extend(event["detail"]["agreement"]["id"].as_str().map(str::to_string));
            }
        });
    }

    /// An answer: the cookies it sets, the code a redirect carries, the
    /// resource a provision made, the access token a token answer gives.
    pub fn answer(&self, answer: &Answer) {
        let cookies: Vec<String> = answer
            .cookies()
            .iter()
            .filter_map(|pair| pair.split_once('=').map(|(_, value)| value.to_string()))
            .collect();
        let code = answer
            .header(reqwest::header::LOCATION)
            .and_then(|location| reqwest::Url::parse(location).ok())
            .and_then(|url| {
                url.query_pairs()
                    .find(|(name, _)| name == "code")
                    .map(|(_, code)| code.into_owned())
            });
        let json = answer.json();
        self.with(|seen| {
            seen.cookie_values.extend(cookies);
            seen.codes.extend(code);
            if let Some(json) = &json {
                if let (Some(id), true) = (json["id"].as_str(), json.get("config").is_some()) {
                    seen.resource_ids.insert(id.to_string());
                }
                // A Scalingo add-on, ready or not: without a uuid, it is
                // claimed under its own id.
                if let Some(id) = json["id"]
                    .as_str()
                    .filter(|id| shared::scalingo::is_resource_id(id))
                {
                    seen.resource_ids.insert(id.to_string());
                    seen.scalingo_claims.insert(id.to_string());
                }
                if let Some(token) = json["access_token"].as_str() {
                    seen.access_tokens.insert(token.to_string());
                }
                // A purchase the stand-in AWS Marketplace minted: its
                // resource, claim and state, whether or not it registered.
                if let Some(arn) = json["license_arn"].as_str() {
                    let license = shared::model::aws_license_id(arn).to_string();
                    seen.resource_ids
                        .insert(shared::aws_marketplace::resource_id(&license));
                    seen.aws_licenses.insert(license);
                }
            }
        });
    }

    /// Every single item the run may have made, by key, besides the
    /// resources' and the account's partitions.
    fn single_items(&self) -> Vec<(String, &'static str)> {
        let seen = self.with(|seen| seen.clone());
        let mut keys = Vec::new();
        for addon_id in &seen.addon_ids {
            keys.push((format!("CLEVERCLOUD_ADDON#{addon_id}"), "CLEVERCLOUD_ADDON"));
        }
        for uuid in &seen.heroku_uuids {
            keys.push((format!("HEROKU_ADDON#{uuid}"), "HEROKU_ADDON"));
        }
        for claim in &seen.scalingo_claims {
            keys.push((format!("SCALINGO_ADDON#{claim}"), "SCALINGO_ADDON"));
        }
        for value in &seen.cookie_values {
            let hash = fingerprint(value);
            keys.push((format!("SESSION#{hash}"), "SESSION"));
            keys.push((format!("SIGNIN_STATE#{hash}"), "SIGNIN_STATE"));
            keys.push((format!("PENDING_LINK#{hash}"), "PENDING_LINK"));
        }
        for spent in seen.proofs.iter().chain(&seen.sign_ins) {
            keys.push((format!("SSO_TOKEN#{}", fingerprint(spent)), "SSO_TOKEN"));
        }
        for code in &seen.codes {
            keys.push((format!("OIDC_CODE#{}", fingerprint(code)), "OIDC_CODE"));
        }
        for token in &seen.access_tokens {
            keys.push((format!("OIDC_TOKEN#{}", fingerprint(token)), "OIDC_TOKEN"));
        }
        for token in &seen.aws_tokens {
            let digest = fingerprint(token);
            keys.push((
                format!(
                    "SSO_TOKEN#{}",
                    fingerprint(&shared::aws_marketplace::register::spent_key(&digest))
                ),
                "SSO_TOKEN",
            ));
            keys.push((format!("AWS_TOKEN#{digest}"), "AWS_TOKEN"));
        }
        for license in &seen.aws_licenses {
            keys.push((format!("AWS_LICENSE#{license}"), "AWS_LICENSE"));
            keys.push((format!("AWS_SUBSCRIPTION#{license}"), "AWS_SUBSCRIPTION"));
        }
        for agreement in &seen.aws_agreements {
            keys.push((format!("AWS_AGREEMENT#{agreement}"), "AWS_AGREEMENT"));
        }
        for event in &seen.aws_events {
            keys.push((format!("AWS_EVENT#{event}"), "AWS_EVENT"));
        }
        keys
    }

    fn resource_ids(&self) -> BTreeSet<String> {
        self.with(|seen| seen.resource_ids.clone())
    }
}

/// The table as it was before the run, where the run may reuse a record: the
/// Cloud 66 account of the check's email. (The check's Clever Cloud owner
/// gets no owner record: the sync makes no Cloudmore organisation for
/// `shared::sync::CHECK_OWNER_ID`.)
pub struct Before {
    account_existed: bool,
}

pub struct Cleanup {
    client: Client,
    table: String,
    email: String,
}

impl Cleanup {
    pub async fn new(table: String, cloud66_email: &str) -> Self {
        Self {
            client: Client::new(&shared::config::aws_sdk_config("provider").await),
            table,
            // As the deployment keys it (one email rule: trimmed, ASCII lower case).
            email: cloud66_email.trim().to_ascii_lowercase(),
        }
    }

    pub async fn before(&self) -> Result<Before, String> {
        Ok(Before {
            account_existed: self
                .get(&format!("EMAIL#{}", self.email), "EMAIL")
                .await?
                .is_some(),
        })
    }

    /// Removes what the run made; how many items.
    pub async fn run(&self, traces: &Traces, before: &Before) -> Result<String, String> {
        let mut deleted = 0;
        for id in traces.resource_ids() {
            deleted += self.delete_partition(&format!("RESOURCE#{id}")).await?;
            // Its usage: counters, and the mark an ended agreement leaves
            // the meter (docs/metering.md).
            deleted += self.delete_partition(&format!("USAGE#{id}")).await?;
        }
        for (pk, sk) in traces.single_items() {
            deleted += self.delete(&pk, sk).await?;
        }
        if !before.account_existed {
            let claim = format!("EMAIL#{}", self.email);
            if let Some(item) = self.get(&claim, "EMAIL").await? {
                if let Some(AttributeValue::S(account)) = item.get("owner_id") {
                    deleted += self.delete_partition(&format!("ACCOUNT#{account}")).await?;
                    deleted += self
                        .delete(&format!("CLOUD66_ACCOUNT#{account}"), "CLOUD66_ACCOUNT")
                        .await?;
                }
                deleted += self.delete(&claim, "EMAIL").await?;
            }
        }
        Ok(format!(
            "{deleted} items the run made removed from {}",
            self.table
        ))
    }

    fn key(pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_string(), AttributeValue::S(pk.to_string())),
            ("sk".to_string(), AttributeValue::S(sk.to_string())),
        ])
    }

    async fn get(&self, pk: &str, sk: &str) -> Result<Option<HashMap<String, AttributeValue>>, String> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|err| failed("read", pk, err))?;
        Ok(item.item().cloned())
    }

    /// Deletes one item; 1 if it was there.
    async fn delete(&self, pk: &str, sk: &str) -> Result<usize, String> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(pk, sk)))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|err| failed("delete", pk, err))?;
        Ok(usize::from(deleted.attributes().is_some()))
    }

    /// Deletes every item of partition `pk` (a subject and its history).
    async fn delete_partition(&self, pk: &str) -> Result<usize, String> {
        let mut deleted = 0;
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(pk.to_string()))
                .projection_expression("pk, sk")
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|err| failed("read", pk, err))?;
            for item in page.items() {
                if let Some(AttributeValue::S(sk)) = item.get("sk") {
                    deleted += self.delete(pk, sk).await?;
                }
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(deleted);
            }
        }
    }
}

/// Why a read or delete of `pk` failed, for the `cleanup.table` line.
fn failed<E: std::error::Error + 'static, R: std::fmt::Debug>(
    what: &str,
    pk: &str,
    err: aws_sdk_dynamodb::error::SdkError<E, R>,
) -> String {
    format!(
        "could not {what} {pk}: {}",
        aws_sdk_dynamodb::error::DisplayErrorContext(&err)
    )
}

/// The keys a marketplace sign-in to `path` with `fields` may have spent:
/// for each add-on the form may name (Heroku's legacy token names this
/// stack's id, its other proofs the uuid), the add-on and the timestamp.
fn sign_ins<'a>(path: &str, fields: impl Iterator<Item = &'a (String, String)>) -> Vec<String> {
    use shared::model::Platform;
    let fields: Vec<&(String, String)> = fields.collect();
    let field = |wanted: &str| {
        fields
            .iter()
            .find(|(name, _)| name == wanted)
            .map(|(_, value)| value.as_str())
    };
    let Some(timestamp) = field("timestamp") else {
        return Vec::new();
    };
    let (platform, ids) = if path.ends_with("/clevercloud/sso/login") {
        (Platform::CleverCloud, vec![field("id").map(str::to_string)])
    } else if path.ends_with("/heroku/sso/login") {
        (
            Platform::Heroku,
            vec![
                field("id").map(str::to_string),
                field("resource_id").and_then(shared::heroku::resource_id),
            ],
        )
    } else if path.ends_with("/scalingo/sso") {
        (Platform::Scalingo, vec![field("id").map(str::to_string)])
    } else {
        return Vec::new();
    };
    ids.into_iter()
        .flatten()
        .map(|id| shared::signin::resource_signin_key(platform, &id, timestamp))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_name_each_record_a_run_makes_by_its_key() {
        let traces = Traces::default();
        let http = reqwest::Client::new();
        let sso = http
            .post("https://example.com/clevercloud/sso/login")
            .form(&[
                ("id", "res_1"),
                ("timestamp", "1700000000"),
                ("signature", "ABCD"),
            ])
            .build()
            .unwrap();
        traces.request(&sso);
        let provision = http
            .post("https://example.com/clevercloud/resources")
            .json(&serde_json::json!({"addon_id": "addon_check_1"}))
            .build()
            .unwrap();
        traces.request(&provision);
        let callback = http
            .get("https://example.com/cloud66/sso/callback?multipass=Mp%2B1&signature=ff")
            .build()
            .unwrap();
        traces.request(&callback);
        let userinfo = http
            .get("https://example.com/oidc/userinfo")
            .bearer_auth("at-1")
            .build()
            .unwrap();
        traces.request(&userinfo);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.append(
            reqwest::header::SET_COOKIE,
            "__Host-addon_session=s1; Path=/".parse().unwrap(),
        );
        headers.append(
            reqwest::header::LOCATION,
            "https://app.example/cb?code=c1&state=x".parse().unwrap(),
        );
        traces.answer(&Answer {
            status: 303,
            headers,
            body: br#"{"id":"res_1","config":{}}"#.to_vec(),
        });
        let keys: BTreeSet<String> = traces.single_items().into_iter().map(|(pk, _)| pk).collect();
        for expected in [
            "CLEVERCLOUD_ADDON#addon_check_1".to_string(),
            format!(
                "SSO_TOKEN#{}",
                fingerprint(&shared::signin::resource_signin_key(
                    shared::model::Platform::CleverCloud,
                    "res_1",
                    "1700000000"
                ))
            ),
            format!("SSO_TOKEN#{}", fingerprint("Mp+1")),
            format!("SESSION#{}", fingerprint("s1")),
            format!("SIGNIN_STATE#{}", fingerprint("s1")),
            format!("OIDC_CODE#{}", fingerprint("c1")),
            format!("OIDC_TOKEN#{}", fingerprint("at-1")),
        ] {
            assert!(keys.contains(&expected), "{expected} in {keys:?}");
        }
        assert_eq!(traces.resource_ids(), BTreeSet::from(["res_1".to_string()]));
    }

    #[test]
    fn a_heroku_or_scalingo_sign_in_names_the_add_on_its_form_names() {
        let uuid = "01234567-89ab-cdef-0123-456789abcdef";
        let heroku = [
            ("id".to_string(), "res_hk_legacy".to_string()),
            ("resource_id".to_string(), uuid.to_string()),
            ("timestamp".to_string(), "17".to_string()),
        ];
        let keys = sign_ins("/heroku/sso/login", heroku.iter());
        let key = |platform, id: &str| shared::signin::resource_signin_key(platform, id, "17");
        assert_eq!(
            keys,
            [
                key(shared::model::Platform::Heroku, "res_hk_legacy"),
                key(
                    shared::model::Platform::Heroku,
                    &shared::heroku::resource_id(uuid).unwrap()
                )
            ]
        );
        let scalingo = [
            ("id".to_string(), "res_sc_1".to_string()),
            ("timestamp".to_string(), "17".to_string()),
        ];
        assert_eq!(
            sign_ins("/scalingo/sso", scalingo.iter()),
            [key(shared::model::Platform::Scalingo, "res_sc_1")]
        );
        assert!(sign_ins("/oidc/token", scalingo.iter()).is_empty());
        assert!(
            sign_ins("/scalingo/sso", scalingo[..1].iter()).is_empty(),
            "no timestamp"
        );
    }
}
