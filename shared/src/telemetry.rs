//! Logging set-up shared by every function.

/// Structured logs in the format Lambda's advanced logging controls ask for:
/// JSON when `AWS_LAMBDA_LOG_FORMAT=JSON` (set by the template), each line
/// inside the runtime's `Lambda runtime invoke` span, which carries `requestId`.
///
/// Nothing in this crate logs request bodies, headers or config values; log
/// identifiers and outcomes only.
pub fn init() {
    lambda_http::tracing::init_default_subscriber();
}
