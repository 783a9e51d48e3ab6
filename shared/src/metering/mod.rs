//! Usage billing, marketplace-neutral (docs/metering.md): the vendor
//! reports usage once ([`report`]), counted per (resource, dimension,
//! hour); the scheduled meter ([`meter`]) seals each hour once it and its
//! grace are over and sends it through the resource's marketplace's
//! adapter (`crate::aws_marketplace::metering`), exactly once.

pub mod meter;
pub mod report;

#[cfg(test)]
mod fake;

use crate::config::{self, ConfigError};
use crate::model::{MeterState, UsageCounter};
use chrono::{DateTime, Duration, SecondsFormat, Timelike, Utc};

/// After an hour closes, reports for it are still taken this long by
/// default (`METERING_GRACE_SECONDS`) before the meter seals and sends it.
pub const DEFAULT_GRACE_SECONDS: i64 = 600;
/// At most this many records in one report (and one marketplace call).
pub const MAX_RECORDS: usize = 25;
/// The largest quantity one record may carry (AWS's `Quantity` limit).
pub const MAX_QUANTITY: u64 = 2_147_483_647;
/// A vendor's idempotency key: at most this long, of `[A-Za-z0-9._:-]`.
pub const MAX_KEY_LENGTH: usize = 128;

/// `METERING_DIMENSIONS` and `METERING_GRACE_SECONDS`. Absent when the
/// listing has no usage dimension: the usage route answers 404 and the
/// meter has nothing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeteringConfig {
    /// The listing's usage dimensions, as the marketplace spells them.
    pub dimensions: Vec<String>,
    pub grace: Duration,
}

impl MeteringConfig {
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let dimensions: Vec<String> = config::optional(lookup, "METERING_DIMENSIONS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(bad) = dimensions.iter().find(|name| !is_dimension_name(name)) {
            return Err(ConfigError::new(
                "METERING_DIMENSIONS",
                format!("names {bad:?}, which is not a dimension name (letters, digits, `_`, `-`, `.`; at most 100)"),
            ));
        }
        let grace = match config::optional(lookup, "METERING_GRACE_SECONDS") {
            None => DEFAULT_GRACE_SECONDS,
            Some(text) => match text.parse::<i64>() {
                // Longer than an hour would leave less than the marketplace's
                // window to send in.
                Ok(seconds) if (0..=3600).contains(&seconds) => seconds,
                _ => {
                    return Err(ConfigError::new(
                        "METERING_GRACE_SECONDS",
                        format!("is {text:?}; expected whole seconds from 0 to 3600"),
                    ))
                }
            },
        };
        Ok((!dimensions.is_empty()).then(|| Self {
            dimensions,
            grace: Duration::seconds(grace),
        }))
    }
}

fn is_dimension_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn is_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LENGTH
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

/// An hour as stored and sent: RFC 3339 in whole seconds, UTC.
pub fn hour_text(hour: DateTime<Utc>) -> String {
    hour.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The start of the hour `at` is in.
pub fn hour_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.with_nanosecond(0)
        .and_then(|at| at.with_second(0))
        .and_then(|at| at.with_minute(0))
        .unwrap_or(at)
}

/// Reads an hour a vendor sent: RFC 3339, on the hour.
pub fn parse_hour(text: &str) -> Option<DateTime<Utc>> {
    let at = DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc);
    (hour_of(at) == at).then_some(at)
}

/// Whether reports for `hour` are still taken at `now`: it has begun, and
/// it and its grace have not passed (the meter seals it then).
pub fn is_open(hour: DateTime<Utc>, now: DateTime<Utc>, grace: Duration) -> bool {
    hour <= now && now < hour + Duration::hours(1) + grace
}

/// What `counters` add up to per dimension, in the dimensions' order:
/// (dimension, quantity reported, quantity the marketplace accepted).
pub fn totals(counters: &[UsageCounter]) -> Vec<(String, u64, u64)> {
    let mut totals: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
    for counter in counters {
        let (reported, accepted) = totals.entry(counter.dimension.as_str()).or_default();
        *reported += counter.quantity;
        if counter.state == MeterState::Metered {
            *accepted += counter.quantity;
        }
    }
    totals
        .into_iter()
        .map(|(dimension, (reported, accepted))| (dimension.to_string(), reported, accepted))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_what_was_reported_and_what_was_accepted_per_dimension() {
        let counter = |dimension: &str, quantity: u64, state: MeterState| UsageCounter {
            resource_id: "res_aws_1".into(),
            dimension: dimension.into(),
            hour: "2026-12-07T10:00:00Z".into(),
            quantity,
            state,
            sealed_at: None,
            attempts: 0,
            outcome: None,
            metering_record_id: None,
            finished_at: None,
        };
        let counters = [
            counter("gb", 5, MeterState::Metered),
            counter("calls", 2, MeterState::Failed),
            counter("gb", 7, MeterState::Open),
            counter("gb", 3, MeterState::Metered),
        ];
        assert_eq!(
            totals(&counters),
            vec![("calls".into(), 2, 0), ("gb".into(), 15, 8)]
        );
        assert!(totals(&[]).is_empty());
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_configuration_names_what_is_wrong() {
        let lookup = crate::config::tests::lookup_from(&[("METERING_DIMENSIONS", "gb_hours, api_calls")]);
        let config = MeteringConfig::from_lookup(&lookup).unwrap().unwrap();
        assert_eq!(config.dimensions, ["gb_hours", "api_calls"]);
        assert_eq!(config.grace, Duration::seconds(600));
        let none = crate::config::tests::lookup_from(&[("METERING_GRACE_SECONDS", "60")]);
        assert_eq!(MeteringConfig::from_lookup(&none).unwrap(), None);
        for (var, pairs) in [
            (
                "METERING_DIMENSIONS",
                [
                    ("METERING_DIMENSIONS", "gb hours"),
                    ("METERING_GRACE_SECONDS", "60"),
                ],
            ),
            (
                "METERING_GRACE_SECONDS",
                [("METERING_DIMENSIONS", "gb"), ("METERING_GRACE_SECONDS", "3601")],
            ),
            (
                "METERING_GRACE_SECONDS",
                [("METERING_DIMENSIONS", "gb"), ("METERING_GRACE_SECONDS", "-1")],
            ),
            (
                "METERING_GRACE_SECONDS",
                [("METERING_DIMENSIONS", "gb"), ("METERING_GRACE_SECONDS", "ten")],
            ),
        ] {
            let err = MeteringConfig::from_lookup(&crate::config::tests::lookup_from(&pairs)).unwrap_err();
            assert_eq!(err.var, var, "{pairs:?}");
        }
        let edge = crate::config::tests::lookup_from(&[
            ("METERING_DIMENSIONS", "a"),
            ("METERING_GRACE_SECONDS", "3600"),
        ]);
        assert_eq!(
            MeteringConfig::from_lookup(&edge).unwrap().unwrap().grace,
            Duration::hours(1)
        );
        let zero = crate::config::tests::lookup_from(&[
            ("METERING_DIMENSIONS", "a"),
            ("METERING_GRACE_SECONDS", "0"),
        ]);
        assert_eq!(
            MeteringConfig::from_lookup(&zero).unwrap().unwrap().grace,
            Duration::zero()
        );
    }

    #[test]
    fn names_and_keys_are_a_small_alphabet() {
        assert!(is_dimension_name("gb-hours.v2_x"));
        assert!(!is_dimension_name(""));
        assert!(!is_dimension_name(&"d".repeat(101)));
        assert!(is_dimension_name(&"d".repeat(100)));
        assert!(!is_dimension_name("a/b"));
        assert!(is_key("job-1:part.2_x"));
        assert!(!is_key(""));
        assert!(!is_key("a b"));
        assert!(!is_key("a#b"));
        assert!(is_key(&"k".repeat(MAX_KEY_LENGTH)));
        assert!(!is_key(&"k".repeat(MAX_KEY_LENGTH + 1)));
    }

    #[test]
    fn an_hour_is_on_the_hour_and_open_until_its_grace_ends() {
        assert_eq!(
            parse_hour("2026-12-07T10:00:00Z"),
            Some(at("2026-12-07T10:00:00Z"))
        );
        assert_eq!(
            parse_hour("2026-12-07T11:00:00+01:00"),
            Some(at("2026-12-07T10:00:00Z"))
        );
        assert_eq!(parse_hour("2026-12-07T10:00:01Z"), None);
        assert_eq!(parse_hour("2026-12-07T10:30:00Z"), None);
        assert_eq!(parse_hour("2026-12-07T10:00:00.5Z"), None);
        assert_eq!(parse_hour("yesterday"), None);
        assert_eq!(hour_text(at("2026-12-07T10:00:00Z")), "2026-12-07T10:00:00Z");
        assert_eq!(hour_of(at("2026-12-07T10:59:59.9Z")), at("2026-12-07T10:00:00Z"));
        let hour = at("2026-12-07T10:00:00Z");
        let grace = Duration::minutes(10);
        assert!(!is_open(hour, at("2026-12-07T09:59:59Z"), grace), "not begun");
        assert!(is_open(hour, hour, grace));
        assert!(is_open(hour, at("2026-12-07T11:09:59Z"), grace));
        assert!(
            !is_open(hour, at("2026-12-07T11:10:00Z"), grace),
            "sealed at the grace's end"
        );
    }
}
