//! Secret values: redacted when printed, compared in constant time, and
//! generated from the operating system's random source.

use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

/// A configured secret (a password, a salt, a client secret). Its `Debug` and
/// `Display` never show the value, so it cannot leak through a log line.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The raw value, for the few places that must use it (hashing, signing).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares `candidate` with this secret in constant time.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        constant_time_eq(self.0.as_bytes(), candidate)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A secret's current value and, while it is being rotated, its previous
/// one (`VAR` and `VAR_PREVIOUS`, read by `crate::config::rotating`): both
/// are accepted, or tried, until the rotation ends (docs/operating.md,
/// "Rotating secrets"). One type for every rotatable secret: Basic
/// passwords, SSO salts, signing secrets, sealing keys, partners' secrets.
#[derive(Clone, Debug)]
pub struct Rotating<T = Secret> {
    pub current: T,
    pub previous: Option<T>,
}

impl<T> Rotating<T> {
    pub fn new(current: T, previous: Option<T>) -> Self {
        Self { current, previous }
    }

    /// The current value, then the previous one during a rotation.
    pub fn each(&self) -> impl Iterator<Item = &T> {
        std::iter::once(&self.current).chain(self.previous.as_ref())
    }

    /// Whether `check` holds for the current value or the previous one.
    /// Both are always checked, so the time taken does not tell which of
    /// the two a caller holds.
    pub fn either(&self, check: impl Fn(&T) -> bool) -> bool {
        let current = check(&self.current);
        let previous = self.previous.as_ref().is_some_and(&check);
        current | previous
    }

    /// The value being rotated away, else the current one: what to try when
    /// a partner refuses the current value of one secret while another
    /// secret of the same credentials rotates.
    pub fn previous_or_current(&self) -> &T {
        self.previous.as_ref().unwrap_or(&self.current)
    }
}

/// Compares two byte strings in time that depends on neither content nor
/// length: both sides are hashed first, so a short guess and a long one cost
/// the same and the comparison itself runs over equal-length digests.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let a = Sha256::digest(a);
    let b = Sha256::digest(b);
    a.ct_eq(&b).into()
}

/// `bytes` bytes from the operating system's CSPRNG, hex-encoded.
///
/// Panics only if the operating system has no random source, which on Lambda
/// (and any Linux) cannot happen after boot; there is no useful fallback.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system's random source is unavailable");
    hex::encode(buf)
}

/// 128 random bits as a UUID's text (8-4-4-4-12 lower-case hex), the shape
/// of Heroku's add-on ids: for the checks and tests that play Heroku.
pub fn random_uuid() -> String {
    let hex = random_hex(16);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The `ClientRequestToken` of a write to a Secrets Manager secret read at
/// version `read_version`: it makes the write conditional on that read. Two
/// writers that read the same version send the same token with other
/// values, and Secrets Manager refuses the second (a version with that token
/// exists already), so neither overwrites the other unseen. 48 hex digits
/// (Secrets Manager takes 32 to 64 characters).
pub fn write_token(read_version: &str) -> String {
    let digest = Sha256::digest(format!("write after {read_version}"));
    hex::encode(&digest[..24])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotating_secret_accepts_either_value_and_lists_the_current_first() {
        let rotating = Rotating::new(Secret::new("new"), Some(Secret::new("old")));
        assert!(rotating.either(|secret| secret.matches(b"new")));
        assert!(rotating.either(|secret| secret.matches(b"old")));
        assert!(!rotating.either(|secret| secret.matches(b"other")));
        let values: Vec<&str> = rotating.each().map(Secret::expose).collect();
        assert_eq!(values, ["new", "old"]);
        let settled = Rotating::new(Secret::new("new"), None);
        assert!(!settled.either(|secret| secret.matches(b"old")));
        assert_eq!(rotating.previous_or_current().expose(), "old");
        assert_eq!(settled.previous_or_current().expose(), "new");
        assert_eq!(settled.each().count(), 1);
        let printed = format!("{rotating:?}");
        assert!(!printed.contains("new") && !printed.contains("old"), "{printed}");
        assert_eq!(printed.matches("Secret(<redacted>)").count(), 2, "{printed}");
        // Both values are checked even when the first matches.
        let checked = std::cell::Cell::new(0);
        rotating.either(|_| {
            checked.set(checked.get() + 1);
            true
        });
        assert_eq!(checked.get(), 2);
    }

    #[test]
    fn a_write_is_named_after_the_version_it_follows() {
        let token = write_token("a1b2c3d4-0000-4000-8000-000000000001");
        assert_eq!(token.len(), 48);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(write_token(""), write_token(""));
        assert_eq!(token, write_token("a1b2c3d4-0000-4000-8000-000000000001"));
        assert_ne!(token, write_token("a1b2c3d4-0000-4000-8000-000000000002"));
    }

    #[test]
    fn secret_is_redacted_in_debug_output() {
        let secret = Secret::new("hunter2-very-secret");
        let printed = format!("{secret:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert_eq!(printed, "Secret(<redacted>)", "says that something was there");
    }

    #[test]
    fn constant_time_eq_distinguishes_values_and_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(Secret::new("pw").matches(b"pw"));
        assert!(!Secret::new("pw").matches(b"pw "));
    }

    #[test]
    fn a_random_uuid_has_a_uuids_shape_and_differs_each_time() {
        let uuid = random_uuid();
        let groups: Vec<&str> = uuid.split('-').collect();
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12],
            "{uuid}"
        );
        assert!(groups.iter().all(|g| g
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())));
        assert_ne!(uuid, random_uuid());
        assert_ne!(uuid.replace('-', ""), "0".repeat(32));
    }

    #[test]
    fn random_hex_has_requested_entropy_and_differs() {
        let a = random_hex(16);
        let b = random_hex(16);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
