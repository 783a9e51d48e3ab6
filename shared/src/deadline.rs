//! An invocation's deadline, as the functions' outbound budgets use it:
//! Lambda gives each invocation a `deadline_ms` (Unix milliseconds) after
//! which it is killed, and the gateway answers 5xx with nothing recorded.
//! Work that waits on a platform stops a margin before it, so the function
//! answers (and records what it knows) in time.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Deadlines before this (2001-09-09, in Unix milliseconds) are not times:
/// Lambda gives a Unix time, but `cargo lambda watch` gives its invoke
/// timeout as a duration (600000). Such a deadline says nothing, and the
/// configured budgets alone apply.
const EARLIEST_DEADLINE_MS: u64 = 1_000_000_000_000;

/// The invocation's deadline (`deadline_ms`), less `margin`, on this
/// process's monotonic clock (`now` is the wall clock at the same moment);
/// `None` when `deadline_ms` is not a time (see [`EARLIEST_DEADLINE_MS`]).
pub fn from_lambda(deadline_ms: u64, now: SystemTime, margin: Duration) -> Option<Instant> {
    if deadline_ms < EARLIEST_DEADLINE_MS {
        return None;
    }
    let deadline = UNIX_EPOCH + Duration::from_millis(deadline_ms);
    let left = deadline.duration_since(now).unwrap_or_default();
    Some(Instant::now() + left.saturating_sub(margin))
}

/// What is left until `deadline` (zero once it has passed); `None` without one.
pub fn time_left(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()))
}

/// The earlier of `deadline` and `now + budget`.
pub fn within(budget: Duration, deadline: Option<Instant>) -> Instant {
    let own = Instant::now() + budget;
    deadline.map_or(own, |deadline| deadline.min(own))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_is_the_invocations_less_the_margin() {
        let now = SystemTime::now();
        let in_ten_seconds = now.duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(10);
        let deadline = from_lambda(in_ten_seconds.as_millis() as u64, now, Duration::from_secs(3)).unwrap();
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            left <= Duration::from_secs(7) && left > Duration::from_millis(6_900),
            "{left:?}"
        );
        let passed = now.duration_since(UNIX_EPOCH).unwrap() - Duration::from_secs(1);
        let passed = from_lambda(passed.as_millis() as u64, now, Duration::from_secs(3)).unwrap();
        assert!(passed <= Instant::now(), "a passed deadline leaves nothing");
        assert_eq!(
            from_lambda(600_000, now, Duration::from_secs(3)),
            None,
            "cargo lambda watch's duration"
        );
        assert!(from_lambda(EARLIEST_DEADLINE_MS, now, Duration::ZERO).is_some());
        assert_eq!(time_left(None), None);
        assert_eq!(
            time_left(Some(Instant::now() - Duration::from_secs(1))),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn a_budget_never_outlasts_the_deadline() {
        let soon = Instant::now() + Duration::from_millis(100);
        assert_eq!(within(Duration::from_secs(6), Some(soon)), soon);
        let own = within(
            Duration::from_millis(50),
            Some(Instant::now() + Duration::from_secs(60)),
        );
        assert!(own <= Instant::now() + Duration::from_millis(50));
        assert!(within(Duration::from_secs(6), None) > Instant::now() + Duration::from_secs(5));
    }
}
