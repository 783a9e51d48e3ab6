//! AWS Marketplace's adapter for the meter (docs/metering.md): a sealed
//! counter becomes one `BatchMeterUsage` record, for the purchase's
//! `CustomerAWSAccountId` and `LicenseArn` (or a legacy listing's
//! `CustomerIdentifier`), stamped with the start of its hour. Calls carry
//! at most 25 records, all of the one product this stack sells.

use super::seller::{service_error_code, MeteringClient};
use crate::config::{self, ConfigError};
use crate::metering::meter::{Meter, SendError, Sent, UsageMarketplace};
use crate::metering::MeteringConfig;
use crate::model::{Platform, Resource, UsageCounter};
use crate::store::DynamoStore;
use aws_sdk_marketplacemetering::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_marketplacemetering::primitives::DateTime as AwsTime;
use aws_sdk_marketplacemetering::types::{UsageRecord, UsageRecordResultStatus};
use chrono::{DateTime, Duration, Utc};

/// `BatchMeterUsage`'s limit.
pub const BATCH_SIZE: usize = 25;
/// How long after its timestamp AWS takes a record (its API reference;
/// some SDK models say 24 hours: the shorter one is kept).
pub const WINDOW: Duration = Duration::hours(6);

/// Who a record bills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Customer {
    /// A purchase: its account and license (Concurrent Agreements).
    License {
        aws_account_id: String,
        license_arn: String,
    },
    /// A legacy listing's `CustomerIdentifier`.
    Identifier(String),
}

/// One record, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsUsageRecord {
    pub customer: Customer,
    pub dimension: String,
    pub hour: DateTime<Utc>,
    pub quantity: u64,
}

impl AwsUsageRecord {
    fn to_sdk(&self) -> Result<UsageRecord, String> {
        let quantity = i32::try_from(self.quantity)
            .map_err(|_| format!("quantity {} is over AWS's limit", self.quantity))?;
        let record = UsageRecord::builder()
            .timestamp(AwsTime::from_secs(self.hour.timestamp()))
            .dimension(&self.dimension)
            .quantity(quantity);
        let record = match &self.customer {
            Customer::License {
                aws_account_id,
                license_arn,
            } => record
                .customer_aws_account_id(aws_account_id)
                .license_arn(license_arn),
            Customer::Identifier(identifier) => record.customer_identifier(identifier),
        };
        record.build().map_err(|err| err.to_string())
    }

    /// Whether AWS's echo of a record is this one.
    fn is(&self, sent: &UsageRecord) -> bool {
        let customer = match &self.customer {
            Customer::License { license_arn, .. } => sent.license_arn() == Some(license_arn.as_str()),
            Customer::Identifier(identifier) => sent.customer_identifier() == identifier.as_str(),
        };
        customer && sent.dimension() == self.dimension && sent.timestamp().secs() == self.hour.timestamp()
    }

    fn license(&self) -> String {
        match &self.customer {
            Customer::License { license_arn, .. } => license_arn.clone(),
            Customer::Identifier(identifier) => identifier.clone(),
        }
    }
}

/// `BatchMeterUsage` for one product.
pub struct AwsUsageMarketplace {
    client: MeteringClient,
    product_code: String,
}

impl AwsUsageMarketplace {
    pub fn new(client: MeteringClient, product_code: String) -> Self {
        Self { client, product_code }
    }

    async fn call(&self, records: &[AwsUsageRecord]) -> Result<Vec<Sent>, SdkErrorKind> {
        let usage: Vec<UsageRecord> = records
            .iter()
            .map(AwsUsageRecord::to_sdk)
            .collect::<Result<_, _>>()
            .map_err(SdkErrorKind::Refused)?;
        let output = self
            .client
            .0
            .batch_meter_usage()
            .product_code(&self.product_code)
            .set_usage_records(Some(usage))
            .send()
            .await
            .map_err(SdkErrorKind::from_sdk)?;
        Ok(records
            .iter()
            .map(|record| {
                if let Some(result) = output
                    .results()
                    .iter()
                    .find(|result| result.usage_record().is_some_and(|sent| record.is(sent)))
                {
                    return match result.status() {
                        Some(
                            status @ (UsageRecordResultStatus::Success
                            | UsageRecordResultStatus::DuplicateRecord),
                        ) => Sent::Accepted {
                            status: status.as_str().into(),
                            record_id: result.metering_record_id().map(str::to_string),
                        },
                        Some(UsageRecordResultStatus::CustomerNotSubscribed) => {
                            Sent::Refused("CustomerNotSubscribed".into())
                        }
                        Some(other) => Sent::Again(format!("status {}", other.as_str())),
                        None => Sent::Again("no status".into()),
                    };
                }
                if output.unprocessed_records().iter().any(|sent| record.is(sent)) {
                    return Sent::Again("UnprocessedRecords".into());
                }
                Sent::Again("not in AWS's answer".into())
            })
            .collect())
    }
}

/// How a call failed, sorted.
enum SdkErrorKind {
    Again(String),
    InvalidLicense(String),
    Refused(String),
}

impl SdkErrorKind {
    fn from_sdk<E, R>(err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match service_error_code(&err) {
            Ok(code) => match code.as_str() {
                "ThrottlingException" | "InternalServiceErrorException" | "TimestampOutOfBoundsException" => {
                    Self::Again(code)
                }
                "InvalidLicenseException" => Self::InvalidLicense(code),
                _ => Self::Refused(code),
            },
            Err(transport) => Self::Again(format!("BatchMeterUsage: {transport}")),
        }
    }
}

impl UsageMarketplace for AwsUsageMarketplace {
    type Record = AwsUsageRecord;

    fn platform(&self) -> Platform {
        Platform::Aws
    }

    fn batch_size(&self) -> usize {
        BATCH_SIZE
    }

    fn window(&self) -> Duration {
        WINDOW
    }

    fn record(&self, resource: &Resource, counter: &UsageCounter) -> Result<AwsUsageRecord, String> {
        let hour = DateTime::parse_from_rfc3339(&counter.hour)
            .map_err(|err| format!("hour {:?}: {err}", counter.hour))?
            .with_timezone(&Utc);
        // A legacy listing's buyer is known by CustomerIdentifier alone.
        let customer = match (&resource.user_id, &resource.owner_id) {
            (Some(identifier), _) if !identifier.is_empty() => Customer::Identifier(identifier.clone()),
            (_, Some(account)) if resource.addon_id.starts_with("arn:") => Customer::License {
                aws_account_id: account.clone(),
                license_arn: resource.addon_id.clone(),
            },
            _ => return Err("the resource names no AWS customer or license".into()),
        };
        Ok(AwsUsageRecord {
            customer,
            dimension: counter.dimension.clone(),
            hour,
            quantity: counter.quantity,
        })
    }

    async fn send(&self, records: &[AwsUsageRecord]) -> Result<Vec<Sent>, SendError> {
        match self.call(records).await {
            Ok(answers) => Ok(answers),
            Err(SdkErrorKind::Again(reason)) => Err(SendError::Again(reason)),
            Err(SdkErrorKind::Refused(reason)) => Err(SendError::Refused(reason)),
            Err(SdkErrorKind::InvalidLicense(reason)) => {
                let mut licenses: Vec<String> = records.iter().map(AwsUsageRecord::license).collect();
                licenses.sort();
                licenses.dedup();
                if licenses.len() < 2 {
                    return Err(SendError::Refused(reason));
                }
                // One bad license fails the whole call: send each
                // license's records alone, so the others are billed.
                let mut answers = vec![Sent::Again(reason.clone()); records.len()];
                for license in licenses {
                    let (indexes, own): (Vec<usize>, Vec<AwsUsageRecord>) = records
                        .iter()
                        .enumerate()
                        .filter(|(_, record)| record.license() == license)
                        .map(|(index, record)| (index, record.clone()))
                        .unzip();
                    let sent = match self.call(&own).await {
                        Ok(sent) => sent,
                        Err(SdkErrorKind::Again(reason)) => vec![Sent::Again(reason); own.len()],
                        Err(SdkErrorKind::InvalidLicense(reason) | SdkErrorKind::Refused(reason)) => {
                            vec![Sent::Refused(reason); own.len()]
                        }
                    };
                    for (index, answer) in indexes.into_iter().zip(sent) {
                        answers[index] = answer;
                    }
                }
                Ok(answers)
            }
        }
    }
}

/// The `metering` function's parts: the meter, when the stack sells on
/// AWS Marketplace (`AWS_MARKETPLACE_PRODUCT_CODE`).
pub struct MeterApi {
    pub meter: Option<Meter<DynamoStore, AwsUsageMarketplace>>,
}

impl MeterApi {
    pub async fn from_env(function: &str) -> Result<Self, ConfigError> {
        let lookup = config::process_env;
        let table = config::required(&lookup, "TABLE_NAME")?;
        let grace = MeteringConfig::from_lookup(&lookup)?.map_or(
            Duration::seconds(crate::metering::DEFAULT_GRACE_SECONDS),
            |config| config.grace,
        );
        let Some(product_code) = config::optional(&lookup, "AWS_MARKETPLACE_PRODUCT_CODE") else {
            return Ok(Self { meter: None });
        };
        let region = config::optional(&lookup, "AWS_MARKETPLACE_REGION");
        let sdk = config::aws_sdk_config(function).await;
        let store = DynamoStore::ready(&sdk, table).await;
        Ok(Self {
            meter: Some(Meter {
                store,
                marketplace: AwsUsageMarketplace::new(
                    MeteringClient::new(&sdk, region.as_deref()),
                    product_code,
                ),
                grace,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Timestamp, UsageCounter};

    fn counter() -> UsageCounter {
        UsageCounter {
            resource_id: "res_aws_1".into(),
            dimension: "gb".into(),
            hour: "2026-12-07T10:00:00Z".into(),
            quantity: 42,
            state: Default::default(),
            sealed_at: None,
            attempts: 0,
            outcome: None,
            metering_record_id: None,
            finished_at: None,
        }
    }

    fn resource(license: &str, account: Option<&str>, identifier: Option<&str>) -> Resource {
        Resource {
            owner_id: account.map(str::to_string),
            user_id: identifier.map(str::to_string),
            ..Resource::new(
                "res_aws_1".into(),
                Platform::Aws,
                license.into(),
                "basic".into(),
                Default::default(),
                &Timestamp::now(),
            )
        }
    }

    fn marketplace() -> AwsUsageMarketplace {
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        AwsUsageMarketplace::new(MeteringClient::new(&sdk, Some("us-east-1")), "prod1".into())
    }

    #[test]
    fn a_record_bills_the_license_or_a_legacy_customer_at_its_hour() {
        let marketplace = marketplace();
        let arn = "arn:aws:license-manager::123456789012:license:l-1";
        let record = marketplace
            .record(&resource(arn, Some("123456789012"), None), &counter())
            .unwrap();
        assert_eq!(
            record.customer,
            Customer::License {
                aws_account_id: "123456789012".into(),
                license_arn: arn.into()
            }
        );
        assert_eq!(record.hour.timestamp(), 1_796_637_600);
        assert_eq!(record.quantity, 42);
        let sdk = record.to_sdk().unwrap();
        assert!(record.is(&sdk));
        assert_eq!(sdk.timestamp().secs(), 1_796_637_600);
        assert_eq!(sdk.quantity(), Some(42));
        let legacy = marketplace
            .record(&resource(arn, Some("123456789012"), Some("cust-1")), &counter())
            .unwrap();
        assert_eq!(legacy.customer, Customer::Identifier("cust-1".into()));
        assert!(marketplace
            .record(&resource("l-1", Some("1"), None), &counter())
            .is_err());
        assert!(marketplace
            .record(&resource(arn, None, None), &counter())
            .is_err());
        let other_hour = AwsUsageRecord {
            hour: record.hour + Duration::hours(1),
            ..record.clone()
        };
        assert!(!other_hour.is(&sdk));
        let too_much = AwsUsageRecord {
            quantity: u64::from(u32::MAX),
            ..record
        };
        assert!(too_much.to_sdk().is_err());
        assert_eq!(
            (marketplace.batch_size(), marketplace.window()),
            (25, Duration::hours(6))
        );
    }
}
