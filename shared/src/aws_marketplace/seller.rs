//! AWS Marketplace's seller APIs, through the AWS SDK: `ResolveCustomer`
//! (the metering service, in the listing's region) and `GetEntitlements`
//! (the entitlement service, us-east-1 only). Each function builds only the
//! client it is granted (infra/template.yaml).

use crate::model::AwsCustomer;
use aws_sdk_marketplaceentitlement::types::GetEntitlementFilterName;
use aws_sdk_marketplacemetering::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use std::future::Future;

/// Why AWS Marketplace did not answer as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SellerError {
    /// `InvalidTokenException`: not a registration token AWS issued.
    #[error("the registration token is not valid")]
    InvalidToken,
    /// `ExpiredTokenException`: expired, resubmitted or held too long.
    #[error("the registration token has expired")]
    ExpiredToken,
    /// Throttling, AWS's own failure, or no answer in time: worth retrying.
    #[error("AWS Marketplace is unavailable: {0}")]
    Unavailable(String),
    /// Any other refusal (a disabled API, a bad parameter, a denied call).
    #[error("AWS Marketplace refused the call: {0}")]
    Refused(String),
}

impl SellerError {
    /// Both services' SDK errors are the one Smithy type.
    fn from_sdk<E, R>(operation: &str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match service_error_code(&err) {
            Ok(code) => match code.as_str() {
                "InvalidTokenException" => SellerError::InvalidToken,
                "ExpiredTokenException" => SellerError::ExpiredToken,
                "ThrottlingException" | "InternalServiceErrorException" => {
                    SellerError::Unavailable(format!("{operation}: {code}"))
                }
                _ => SellerError::Refused(format!("{operation}: {code}")),
            },
            Err(transport) => SellerError::Unavailable(format!("{operation}: {transport}")),
        }
    }
}

/// AWS's error code (`ThrottlingException`, …) when the service answered;
/// otherwise what kept the call from an answer. The metering and
/// entitlement services' SDK errors are the one Smithy type.
pub(super) fn service_error_code<E, R>(err: &SdkError<E, R>) -> Result<String, String>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match err {
        SdkError::ServiceError(service) => Ok(service.err().code().unwrap_or("Unknown").to_string()),
        _ => Err(DisplayErrorContext(err).to_string()),
    }
}

/// Resolves a registration token to its buyer and purchase.
pub trait ResolveCustomer: Send + Sync {
    fn resolve_customer(&self, token: &str) -> impl Future<Output = Result<AwsCustomer, SellerError>> + Send;
}

/// Reads a license's entitled dimensions, every page.
pub trait Entitlements: Send + Sync {
    fn entitled_dimensions(
        &self,
        product_code: &str,
        license_arn: &str,
    ) -> impl Future<Output = Result<Vec<String>, SellerError>> + Send;
}

/// The metering service's client (`ResolveCustomer`).
pub struct MeteringClient(pub(super) aws_sdk_marketplacemetering::Client);

impl MeteringClient {
    /// In `region`, else the function's own.
    pub fn new(aws: &aws_config::SdkConfig, region: Option<&str>) -> Self {
        let mut builder = aws_sdk_marketplacemetering::config::Builder::from(aws);
        if let Some(region) = region {
            builder = builder.region(aws_sdk_marketplacemetering::config::Region::new(
                region.to_string(),
            ));
        }
        Self(aws_sdk_marketplacemetering::Client::from_conf(builder.build()))
    }
}

impl ResolveCustomer for MeteringClient {
    async fn resolve_customer(&self, token: &str) -> Result<AwsCustomer, SellerError> {
        let output = self
            .0
            .resolve_customer()
            .registration_token(token)
            .send()
            .await
            .map_err(|err| SellerError::from_sdk("ResolveCustomer", err))?;
        let field = |value: Option<&str>| value.unwrap_or_default().to_string();
        let customer = AwsCustomer {
            license_arn: field(output.license_arn()),
            aws_account_id: field(output.customer_aws_account_id()),
            product_code: field(output.product_code()),
            customer_identifier: field(output.customer_identifier()),
        };
        // AWS's answer is trusted, but an answer without the purchase is
        // one nothing can be keyed on.
        if customer.license_arn.is_empty()
            || customer.aws_account_id.is_empty()
            || !customer.aws_account_id.chars().all(|c| c.is_ascii_digit())
        {
            return Err(SellerError::Refused(
                "ResolveCustomer answered without a LicenseArn or CustomerAWSAccountId".into(),
            ));
        }
        Ok(customer)
    }
}

/// The entitlement service's client (`GetEntitlements`), in us-east-1.
pub struct EntitlementClient(aws_sdk_marketplaceentitlement::Client);

/// At most this many pages are read: a license has a handful of
/// dimensions, so more is a service gone wrong, not a longer answer.
const MAX_PAGES: usize = 100;

impl EntitlementClient {
    pub fn new(aws: &aws_config::SdkConfig) -> Self {
        let config = aws_sdk_marketplaceentitlement::config::Builder::from(aws)
            .region(aws_sdk_marketplaceentitlement::config::Region::new(
                super::ENTITLEMENT_REGION,
            ))
            .build();
        Self(aws_sdk_marketplaceentitlement::Client::from_conf(config))
    }
}

impl Entitlements for EntitlementClient {
    async fn entitled_dimensions(
        &self,
        product_code: &str,
        license_arn: &str,
    ) -> Result<Vec<String>, SellerError> {
        let mut dimensions = Vec::new();
        let mut next: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .0
                .get_entitlements()
                .product_code(product_code)
                .filter(
                    GetEntitlementFilterName::LicenseArn,
                    vec![license_arn.to_string()],
                )
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|err| SellerError::from_sdk("GetEntitlements", err))?;
            for entitlement in page.entitlements() {
                let held = match entitlement.value() {
                    Some(value) => {
                        value.integer_value().is_some_and(|n| n > 0)
                            || value.boolean_value().unwrap_or(false)
                            || value.double_value().is_some_and(|n| n > 0.0)
                            || value.string_value().is_some_and(|text| !text.is_empty())
                    }
                    // A dimension listed without a value is held.
                    None => true,
                };
                if let (true, Some(dimension)) = (held, entitlement.dimension()) {
                    if !dimensions.iter().any(|known| known == dimension) {
                        dimensions.push(dimension.to_string());
                    }
                }
            }
            // A page may be empty and still say there is more: follow it.
            match page.next_token().filter(|token| !token.is_empty()) {
                Some(token) => next = Some(token.to_string()),
                None => return Ok(dimensions),
            }
        }
        Err(SellerError::Unavailable(format!(
            "GetEntitlements: still paging after {MAX_PAGES} pages"
        )))
    }
}
