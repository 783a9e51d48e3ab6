//! `POST /vendor/resources/{id}/usage`: the vendor's service reports usage
//! (docs/metering.md, "Reporting usage"), signed as the completion route
//! is, the resource under the signature. Each record is counted once per
//! key, in one transaction with the keys' claims.

use super::{hour_text, is_key, is_open, parse_hour, MeteringConfig, MAX_QUANTITY, MAX_RECORDS};
use crate::config::ConfigError;
use crate::http::{json_response, read_json, respond, ApiError};
use crate::lifecycle::{verify_vendor_call, LifecycleError};
use crate::model::{Resource, ResourceStatus, Timestamp};
use crate::provisioner::{Provisioner, VendorProvisioner};
use crate::store::{DynamoStore, MeteringStore, UsageAdd, UsageWrite};
use chrono::{DateTime, Duration, Utc};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{json, Value};

/// A report's key claims are kept this long: far past the last moment its
/// hour takes reports, so a retry is always recognised.
const KEYS_KEPT: Duration = Duration::days(2);

/// The `usage` function's parts.
pub struct UsageApi<S, P> {
    pub store: S,
    pub provisioner: P,
    pub config: Option<MeteringConfig>,
}

impl UsageApi<DynamoStore, VendorProvisioner> {
    pub async fn from_env(function: &str) -> Result<Self, ConfigError> {
        let (_source, environment, store, provisioner) = crate::lifecycle::parts_from_env(function).await?;
        let config = MeteringConfig::from_lookup(&environment.lookup())?;
        Ok(Self {
            store,
            provisioner,
            config,
        })
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    records: Vec<Record>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    dimension: String,
    /// Read as any JSON value, so a negative or fractional quantity is
    /// named as such (422) rather than as unreadable JSON.
    quantity: Value,
    hour: String,
    key: String,
}

fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, code, message)
}

/// The records, checked against the listing and the clock: 422 for what
/// is malformed or unknown, 409 for an hour no longer taking reports.
fn checked(report: Report, config: &MeteringConfig, now: DateTime<Utc>) -> Result<Vec<UsageAdd>, ApiError> {
    if report.records.is_empty() {
        return Err(unprocessable("no_records", "the report has no records"));
    }
    if report.records.len() > MAX_RECORDS {
        return Err(unprocessable(
            "too_many_records",
            format!("a report holds at most {MAX_RECORDS} records; send the rest in another"),
        ));
    }
    let mut records: Vec<UsageAdd> = Vec::with_capacity(report.records.len());
    for (index, record) in report.records.into_iter().enumerate() {
        let at = |problem: String| format!("records[{index}]: {problem}");
        if !config.dimensions.contains(&record.dimension) {
            return Err(unprocessable(
                "unknown_dimension",
                at(format!(
                    "dimension {:?} is not one of the listing's ({})",
                    record.dimension,
                    config.dimensions.join(", ")
                )),
            ));
        }
        let quantity = record
            .quantity
            .as_u64()
            .filter(|quantity| *quantity <= MAX_QUANTITY)
            .ok_or_else(|| {
                unprocessable(
                    "invalid_quantity",
                    at(format!(
                        "quantity must be a whole number from 0 to {MAX_QUANTITY}"
                    )),
                )
            })?;
        if !is_key(&record.key) {
            return Err(unprocessable(
                "invalid_key",
                at("key must be 1 to 128 letters, digits or `_-.:`".into()),
            ));
        }
        if records.iter().any(|seen| seen.key == record.key) {
            return Err(unprocessable(
                "duplicate_key",
                at(format!("key {:?} appears twice in this report", record.key)),
            ));
        }
        let hour = parse_hour(&record.hour).ok_or_else(|| {
            unprocessable(
                "invalid_hour",
                at(format!(
                    "hour {:?} is not an RFC 3339 time on the hour (e.g. 2026-12-07T10:00:00Z)",
                    record.hour
                )),
            )
        })?;
        if hour > now {
            return Err(unprocessable(
                "future_hour",
                at(format!("hour {} has not begun", hour_text(hour))),
            ));
        }
        if !is_open(hour, now, config.grace) {
            return Err(sealed(&hour_text(hour)));
        }
        records.push(UsageAdd {
            dimension: record.dimension,
            hour: hour_text(hour),
            hour_end: hour_text(hour + Duration::hours(1)),
            quantity,
            key: record.key,
        });
    }
    Ok(records)
}

fn sealed(hour: &str) -> ApiError {
    conflict(
        "hour_sealed",
        format!("the usage of hour {hour} is sealed (sent, or being sent, to the marketplace); it takes no more reports"),
    )
}

/// Why a resource takes no usage, as the vendor is told.
fn refused(resource: Option<&Resource>, ending_after: &str) -> ApiError {
    let Some(resource) = resource else {
        return LifecycleError::NotFound.into();
    };
    if !resource.platform.bills_by_usage() {
        return conflict(
            "not_billed_by_usage",
            format!(
                "resource {} was sold on {}, which does not bill by usage",
                resource.id,
                resource.platform.as_str()
            ),
        );
    }
    match resource.status {
        ResourceStatus::Deprovisioned => conflict(
            "resource_deprovisioned",
            format!("resource {} is deprovisioned; it takes no usage", resource.id),
        ),
        ResourceStatus::Ending if resource.updated_at.as_str() <= ending_after => conflict(
            "agreement_ended",
            format!(
                "the agreement of resource {} ended at {}; its last usage was taken until the grace after that",
                resource.id, resource.updated_at
            ),
        ),
        status => conflict(
            "resource_not_active",
            format!("resource {} is {status:?}; it takes no usage", resource.id),
        ),
    }
}

/// `POST /vendor/resources/{id}/usage`.
pub async fn handle<S: MeteringStore, P: Provisioner>(
    api: &UsageApi<S, P>,
    request: Request,
) -> Response<Body> {
    respond(
        async {
            verify_vendor_call(&api.provisioner, &request).await?;
            let Some(config) = &api.config else {
                return Err(ApiError::not_found(
                    "this add-on has no usage dimension (METERING_DIMENSIONS)",
                ));
            };
            let id = request
                .path_parameters_ref()
                .and_then(|params| params.first("id"))
                .filter(|id| id.starts_with("res_") && id.len() <= 64)
                .map(str::to_string)
                .ok_or_else(|| ApiError::from(LifecycleError::NotFound))?;
            let report: Report = read_json(&request)?;
            let now = Utc::now();
            let records = checked(report, config, now)?;
            let ending_after = Timestamp(now - config.grace).to_string();
            let written = api
                .store
                .add_usage(&id, &records, &ending_after, (now + KEYS_KEPT).timestamp())
                .await
                .map_err(|err| ApiError::from(LifecycleError::Store(err)))?;
            match written {
                UsageWrite::Counted { already } => {
                    let counted: Vec<Value> = records
                        .iter()
                        .filter(|record| !already.contains(&record.key))
                        .map(|record| {
                            json!({
                                "key": record.key,
                                "dimension": record.dimension,
                                "hour": record.hour,
                                "quantity": record.quantity,
                            })
                        })
                        .collect();
                    Ok(json_response(
                        StatusCode::OK,
                        &json!({"resource_id": id, "counted": counted, "already_counted": already}),
                    ))
                }
                UsageWrite::Sealed(hour) => Err(sealed(&hour)),
                UsageWrite::Refused(resource) => Err(refused(resource.as_deref(), &ending_after)),
            }
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MeteringConfig {
        MeteringConfig {
            dimensions: vec!["gb".into(), "calls".into()],
            grace: Duration::minutes(10),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-07T11:05:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn report(records: Value) -> Report {
        serde_json::from_value(json!({ "records": records })).unwrap()
    }

    fn record(dimension: &str, quantity: Value, hour: &str, key: &str) -> Value {
        json!({"dimension": dimension, "quantity": quantity, "hour": hour, "key": key})
    }

    fn refusal(records: Value) -> (StatusCode, &'static str) {
        let err = checked(report(records), &config(), now()).map(drop).unwrap_err();
        (err.status, err.code)
    }

    #[test]
    fn good_records_are_counted_with_their_hour_end() {
        let records = checked(
            report(json!([
                record("gb", json!(5), "2026-12-07T10:00:00Z", "a"),
                record("calls", json!(0), "2026-12-07T11:00:00Z", "b"),
                record("gb", json!(MAX_QUANTITY), "2026-12-07T11:00:00+00:00", "c"),
            ])),
            &config(),
            now(),
        )
        .unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].hour, "2026-12-07T10:00:00Z");
        assert_eq!(records[0].hour_end, "2026-12-07T11:00:00Z");
        assert_eq!((records[0].quantity, records[1].quantity), (5, 0));
        assert_eq!(records[2].hour, "2026-12-07T11:00:00Z");
        assert_eq!(records[2].quantity, MAX_QUANTITY);
    }

    #[test]
    fn each_bad_record_is_named() {
        let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
        let hour = "2026-12-07T11:00:00Z";
        assert_eq!(refusal(json!([])), (unprocessable, "no_records"));
        let many: Vec<Value> = (0..=MAX_RECORDS)
            .map(|i| record("gb", json!(1), hour, &format!("k{i}")))
            .collect();
        assert_eq!(refusal(json!(many)), (unprocessable, "too_many_records"));
        let most: Vec<Value> = (0..MAX_RECORDS)
            .map(|i| record("gb", json!(1), hour, &format!("k{i}")))
            .collect();
        assert!(checked(report(json!(most)), &config(), now()).is_ok());
        // The hour that begins now takes reports.
        let on_the_hour = DateTime::parse_from_rfc3339(hour).unwrap().with_timezone(&Utc);
        assert!(checked(
            report(json!([record("gb", json!(1), hour, "a")])),
            &config(),
            on_the_hour
        )
        .is_ok());
        assert_eq!(
            refusal(json!([record("GB", json!(1), hour, "a")])),
            (unprocessable, "unknown_dimension")
        );
        for quantity in [
            json!(-1),
            json!(1.5),
            json!("1"),
            json!(MAX_QUANTITY + 1),
            json!(null),
        ] {
            assert_eq!(
                refusal(json!([record("gb", quantity.clone(), hour, "a")])),
                (unprocessable, "invalid_quantity"),
                "{quantity}"
            );
        }
        assert_eq!(
            refusal(json!([record("gb", json!(1), hour, "a b")])),
            (unprocessable, "invalid_key")
        );
        assert_eq!(
            refusal(json!([
                record("gb", json!(1), hour, "a"),
                record("calls", json!(1), hour, "a")
            ])),
            (unprocessable, "duplicate_key")
        );
        assert_eq!(
            refusal(json!([record("gb", json!(1), "2026-12-07T11:30:00Z", "a")])),
            (unprocessable, "invalid_hour")
        );
        assert_eq!(
            refusal(json!([record("gb", json!(1), "2026-12-07T12:00:00Z", "a")])),
            (unprocessable, "future_hour")
        );
        assert_eq!(
            refusal(json!([record("gb", json!(1), "2026-12-07T09:00:00Z", "a")])),
            (StatusCode::CONFLICT, "hour_sealed")
        );
        let err = checked(
            report(json!([record("gb", json!(1), "2026-12-07T09:00:00Z", "a")])),
            &config(),
            now(),
        )
        .map(drop)
        .unwrap_err();
        assert!(err.message.contains("2026-12-07T09:00:00Z"), "{}", err.message);
    }

    mod route {
        use super::super::*;
        use crate::metering::fake::FakeStore;
        use crate::provisioner::signature::{sign_call, HEADER};
        use crate::provisioner::{DefaultProvisioner, HttpProvisioner};
        use crate::secret::Secret;
        use crate::store::StoreError;

        const SECRET: &str = "usage-route-signing-secret-0123456789";

        fn api(config: Option<MeteringConfig>) -> UsageApi<FakeStore, HttpProvisioner> {
            UsageApi {
                store: FakeStore::default(),
                provisioner: HttpProvisioner::new(
                    "https://vendor.example/provision".into(),
                    Secret::new(SECRET),
                    vec![],
                    std::time::Duration::from_secs(1),
                ),
                config,
            }
        }

        fn listing() -> Option<MeteringConfig> {
            Some(MeteringConfig {
                dimensions: vec!["gb".into()],
                grace: Duration::minutes(10),
            })
        }

        /// A report for `id`, signed for `signed_for`'s path.
        fn request(id: &str, signed_for: &str, body: &Value) -> Request {
            let body = serde_json::to_vec(body).unwrap();
            let path = format!("/vendor/resources/{id}/usage");
            let signed = sign_call(
                &Secret::new(SECRET),
                Utc::now().timestamp(),
                "POST",
                &format!("/vendor/resources/{signed_for}/usage"),
                &body,
            );
            let request = lambda_http::http::Request::builder()
                .method("POST")
                .uri(&path)
                .header("content-type", "application/json")
                .header(HEADER, signed)
                .body(Body::from(body))
                .unwrap();
            request.with_path_parameters(std::collections::HashMap::from([(
                "id".to_string(),
                id.to_string(),
            )]))
        }

        fn this_hour() -> String {
            hour_text(crate::metering::hour_of(Utc::now()))
        }

        fn body() -> Value {
            json!({"records": [
                {"dimension": "gb", "quantity": 3, "hour": this_hour(), "key": "a"},
                {"dimension": "gb", "quantity": 4, "hour": this_hour(), "key": "b"},
            ]})
        }

        async fn answer(api: &UsageApi<FakeStore, HttpProvisioner>, request: Request) -> (StatusCode, Value) {
            let response = handle(api, request).await;
            let status = response.status();
            let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
            (status, body)
        }

        #[tokio::test]
        async fn a_signed_report_is_counted_and_answered_with_what_was_counted() {
            let api = api(listing());
            *api.store.add_answer.lock().unwrap() = Some(UsageWrite::Counted {
                already: vec!["b".into()],
            });
            let before = Utc::now();
            let (status, answer) = answer(&api, request("res_aws_1", "res_aws_1", &body())).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            assert_eq!(answer["resource_id"], "res_aws_1");
            assert_eq!(answer["already_counted"], json!(["b"]));
            assert_eq!(
                answer["counted"],
                json!([{"key": "a", "dimension": "gb", "hour": this_hour(), "quantity": 3}])
            );
            let adds = api.store.adds.lock().unwrap().clone();
            assert_eq!(adds.len(), 1);
            let (id, records, ending_after, keys_expire_at) = &adds[0];
            assert_eq!(id, "res_aws_1");
            assert_eq!(records.len(), 2);
            // Ending resources take usage for the grace after their end.
            let ending_after = DateTime::parse_from_rfc3339(ending_after).unwrap();
            let grace_ago = before - Duration::minutes(10);
            assert!(
                (ending_after.timestamp() - grace_ago.timestamp()).abs() <= 2,
                "{ending_after}"
            );
            let kept = keys_expire_at - before.timestamp();
            assert!(
                (KEYS_KEPT.num_seconds()..KEYS_KEPT.num_seconds() + 3).contains(&kept),
                "{kept}"
            );
        }

        #[tokio::test]
        async fn a_report_signed_for_another_resource_or_unsigned_is_refused_before_anything_is_read() {
            let api = api(listing());
            let (status, answer) = answer(&api, request("res_aws_1", "res_aws_2", &body())).await;
            assert_eq!(
                (status, answer["error"].as_str()),
                (StatusCode::UNAUTHORIZED, Some("bad_signature"))
            );
            let mut unsigned = request("res_aws_1", "res_aws_1", &body());
            unsigned.headers_mut().remove(HEADER);
            assert_eq!(answer_of(&api, unsigned).await, StatusCode::UNAUTHORIZED);
            assert!(api.store.adds.lock().unwrap().is_empty());
            // Without a vendor service, nobody can sign: 404.
            let default = UsageApi {
                store: FakeStore::default(),
                provisioner: DefaultProvisioner::new("https://x.example", vec![]),
                config: listing(),
            };
            let response = handle(&default, request("res_aws_1", "res_aws_1", &body())).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND);
        }

        async fn answer_of(api: &UsageApi<FakeStore, HttpProvisioner>, request: Request) -> StatusCode {
            handle(api, request).await.status()
        }

        #[tokio::test]
        async fn without_usage_dimensions_or_a_resource_id_the_route_is_not_found() {
            let api = api(None);
            assert_eq!(
                answer_of(&api, request("res_aws_1", "res_aws_1", &body())).await,
                StatusCode::NOT_FOUND
            );
            let api = super::super::tests::route::api(listing());
            assert_eq!(
                answer_of(&api, request("other_1", "other_1", &body())).await,
                StatusCode::NOT_FOUND
            );
            let long = format!("res_{}", "a".repeat(61));
            assert_eq!(
                answer_of(&api, request(&long, &long, &body())).await,
                StatusCode::NOT_FOUND
            );
            let longest = format!("res_{}", "a".repeat(60));
            assert_eq!(
                answer_of(&api, request(&longest, &longest, &body())).await,
                StatusCode::OK
            );
            assert_eq!(api.store.adds.lock().unwrap().len(), 1);
        }

        #[tokio::test]
        async fn what_the_store_refuses_is_named() {
            let api = api(listing());
            *api.store.add_answer.lock().unwrap() = Some(UsageWrite::Sealed("2026-12-07T10:00:00Z".into()));
            let (status, answer) = answer(&api, request("res_aws_1", "res_aws_1", &body())).await;
            assert_eq!(
                (status, answer["error"].as_str()),
                (StatusCode::CONFLICT, Some("hour_sealed"))
            );
            assert!(answer["message"]
                .as_str()
                .unwrap()
                .contains("2026-12-07T10:00:00Z"));
            *api.store.add_answer.lock().unwrap() = Some(UsageWrite::Refused(None));
            assert_eq!(
                answer_of(&api, request("res_aws_1", "res_aws_1", &body())).await,
                StatusCode::NOT_FOUND
            );
            *api.store.add_fails.lock().unwrap() = Some(StoreError::Unavailable("down".into()));
            assert_eq!(
                answer_of(&api, request("res_aws_1", "res_aws_1", &body())).await,
                StatusCode::SERVICE_UNAVAILABLE
            );
            let bad =
                json!({"records": [{"dimension": "tb", "quantity": 1, "hour": this_hour(), "key": "a"}]});
            assert_eq!(
                answer_of(&api, request("res_aws_1", "res_aws_1", &bad)).await,
                StatusCode::UNPROCESSABLE_ENTITY
            );
            assert_eq!(
                api.store.adds.lock().unwrap().len(),
                3,
                "the bad report reached no store"
            );
        }
    }

    #[test]
    fn a_refusal_says_why_the_resource_takes_no_usage() {
        let now = Timestamp::now();
        let mut resource = Resource::new(
            "res_aws_1".into(),
            crate::model::Platform::Aws,
            "arn".into(),
            "basic".into(),
            Default::default(),
            &now,
        );
        assert_eq!(refused(None, "").status, StatusCode::NOT_FOUND);
        resource.status = ResourceStatus::Deprovisioned;
        assert_eq!(refused(Some(&resource), "").code, "resource_deprovisioned");
        resource.status = ResourceStatus::Ending;
        assert_eq!(refused(Some(&resource), "9999").code, "agreement_ended");
        let ended_at = resource.updated_at.clone();
        assert_eq!(
            refused(Some(&resource), &ended_at).code,
            "agreement_ended",
            "its grace is over"
        );
        assert_eq!(refused(Some(&resource), "2000").code, "resource_not_active");
        resource.status = ResourceStatus::Suspended;
        assert_eq!(refused(Some(&resource), "").code, "resource_not_active");
        resource.platform = crate::model::Platform::Heroku;
        assert_eq!(refused(Some(&resource), "").code, "not_billed_by_usage");
    }
}
