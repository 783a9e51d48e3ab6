//! Heroku's OAuth credentials sealed at rest (docs/heroku.md, "The OAuth
//! grant"): AES-256-GCM (aws-lc-rs) under `HEROKU_TOKEN_KEY`, a fresh random
//! nonce each time, and the resource's id as associated data, so a sealed
//! value copied onto another resource does not open. During a rotation
//! (`HEROKU_TOKEN_KEY_PREVIOUS`) values sealed under the previous key still
//! open; each refresh seals under the current one.

use crate::config::{self, ConfigError};
use crate::secret::Rotating;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Marks the format, so another can follow.
const VERSION: &str = "v1.";

/// The key as configured: 32 bytes, written as 64 hex digits.
struct Key([u8; 32]);

impl Key {
    fn parse(var: &'static str, text: &str) -> Result<Self, ConfigError> {
        let bytes = hex::decode(text.trim())
            .map_err(|_| ConfigError::new(var, "must be 64 hex digits (32 random bytes)"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| ConfigError::new(var, "must be 64 hex digits (32 random bytes)"))?;
        Ok(Self(bytes))
    }

    fn aead(&self) -> LessSafeKey {
        // A 32-byte key is exactly what AES-256-GCM takes.
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.0).expect("a 32-byte AES-256 key"))
    }
}

/// `HEROKU_TOKEN_KEY` and, during its rotation, `HEROKU_TOKEN_KEY_PREVIOUS`.
pub struct TokenKeys(Rotating<Key>);

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

impl TokenKeys {
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        config::rotating_with(
            lookup,
            "HEROKU_TOKEN_KEY",
            "HEROKU_TOKEN_KEY_PREVIOUS",
            |var, text| Key::parse(var, &text),
        )
        .map(Self)
    }

    /// `plain` sealed for resource `resource_id`.
    pub fn seal(&self, resource_id: &str, plain: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        // The operating system's generator failing is not survivable.
        getrandom::fill(&mut nonce).expect("the operating system's random generator");
        let mut sealed = plain.to_vec();
        self.0
            .current
            .aead()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(resource_id.as_bytes()),
                &mut sealed,
            )
            .expect("AES-GCM seals any message under 64 GiB");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{VERSION}{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// What `sealed` holds, if one of the keys sealed it for `resource_id`.
    pub fn open(&self, resource_id: &str, sealed: &str) -> Option<Vec<u8>> {
        self.0.each().find_map(|key| open_with(key, resource_id, sealed))
    }

    /// Which key opens `sealed` (sealed for `resource_id`).
    pub fn sealed_under(&self, resource_id: &str, sealed: &str) -> SealedUnder {
        if open_with(&self.0.current, resource_id, sealed).is_some() {
            SealedUnder::Current
        } else if self
            .0
            .previous
            .as_ref()
            .is_some_and(|previous| open_with(previous, resource_id, sealed).is_some())
        {
            SealedUnder::Previous
        } else {
            SealedUnder::Neither
        }
    }

    /// `sealed` under the current key: `Some` (sealed anew) when only the
    /// previous key opens it, `None` when there is nothing to do (the
    /// current key opens it) or nothing that can be done (no key does).
    pub fn reseal(&self, resource_id: &str, sealed: &str) -> Option<String> {
        // The two keys differ (a rotation refuses a new key equal to the
        // current one), so a value the previous key opens is one the
        // current key does not: one opening decides and gives the text.
        let plain = open_with(self.0.previous.as_ref()?, resource_id, sealed)?;
        Some(self.seal(resource_id, &plain))
    }
}

/// Which of the keys opens a sealed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedUnder {
    Current,
    /// Only `HEROKU_TOKEN_KEY_PREVIOUS`: it must be sealed anew before that
    /// key is removed, or it is lost.
    Previous,
    /// No key opens it (sealed under a key already removed, or damaged).
    Neither,
}

fn open_with(key: &Key, resource_id: &str, sealed: &str) -> Option<Vec<u8>> {
    let bytes = URL_SAFE_NO_PAD.decode(sealed.strip_prefix(VERSION)?).ok()?;
    let (nonce, ciphertext) = bytes.split_at_checked(NONCE_LEN)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buffer = ciphertext.to_vec();
    let plain = key
        .aead()
        .open_in_place(nonce, Aad::from(resource_id.as_bytes()), &mut buffer)
        .ok()?;
    Some(plain.to_vec())
}

/// Where a resource's sealed values stand against the keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SealCount {
    pub current: usize,
    pub previous_only: usize,
    pub unreadable: usize,
}

impl crate::model::HerokuAuthorization {
    /// The sealed values (the grant, the tokens) as the keys open them.
    pub fn seal_count(&self, keys: &TokenKeys, resource_id: &str) -> SealCount {
        let mut count = SealCount::default();
        for sealed in [&self.grant, &self.tokens].into_iter().flatten() {
            match keys.sealed_under(resource_id, sealed) {
                SealedUnder::Current => count.current += 1,
                SealedUnder::Previous => count.previous_only += 1,
                SealedUnder::Neither => count.unreadable += 1,
            }
        }
        count
    }

    /// Seals anew under the current key each value only the previous key
    /// opens; `true` when anything changed.
    pub fn reseal(&mut self, keys: &TokenKeys, resource_id: &str) -> bool {
        let mut changed = false;
        for sealed in [&mut self.grant, &mut self.tokens].into_iter().flatten() {
            if let Some(fresh) = keys.reseal(resource_id, sealed) {
                *sealed = fresh;
                changed = true;
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const OTHER: &str = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn keys(current: &str, previous: Option<&str>) -> TokenKeys {
        TokenKeys::from_lookup(&|name: &str| match name {
            "HEROKU_TOKEN_KEY" => Some(current.to_string()),
            "HEROKU_TOKEN_KEY_PREVIOUS" => previous.map(str::to_string),
            _ => None,
        })
        .unwrap()
    }

    #[test]
    fn a_sealed_value_opens_for_its_resource_only_and_hides_its_text() {
        let keys = keys(KEY, None);
        let sealed = keys.seal("res_hk_1", b"access-token-value");
        assert!(!sealed.contains("access-token-value"));
        assert_eq!(
            keys.open("res_hk_1", &sealed).as_deref(),
            Some(&b"access-token-value"[..])
        );
        assert_eq!(keys.open("res_hk_2", &sealed), None, "bound to its resource");
        assert_ne!(
            sealed,
            keys.seal("res_hk_1", b"access-token-value"),
            "a fresh nonce each time"
        );
        // Any changed byte fails the tag.
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            keys.open("res_hk_1", std::str::from_utf8(&tampered).unwrap()),
            None
        );
        assert_eq!(keys.open("res_hk_1", "v1."), None);
        assert_eq!(keys.open("res_hk_1", "plain"), None);
    }

    #[test]
    fn a_value_sealed_under_the_previous_key_is_sealed_anew_under_the_current_one() {
        let old = keys(OTHER, None);
        let sealed = old.seal("res_hk_1", b"tokens");
        let rotating = keys(KEY, Some(OTHER));
        assert_eq!(rotating.sealed_under("res_hk_1", &sealed), SealedUnder::Previous);
        let fresh = rotating.reseal("res_hk_1", &sealed).expect("sealed anew");
        assert_eq!(rotating.sealed_under("res_hk_1", &fresh), SealedUnder::Current);
        assert_eq!(rotating.reseal("res_hk_1", &fresh), None, "nothing more to do");
        // After the rotation ends, only the re-sealed value opens.
        let finished = keys(KEY, None);
        assert_eq!(finished.open("res_hk_1", &fresh).as_deref(), Some(&b"tokens"[..]));
        assert_eq!(finished.sealed_under("res_hk_1", &sealed), SealedUnder::Neither);
        assert_eq!(finished.reseal("res_hk_1", &sealed), None, "nothing can be done");
        // Bound to its resource still.
        assert_eq!(rotating.sealed_under("res_hk_2", &fresh), SealedUnder::Neither);

        let mut authorization = crate::model::HerokuAuthorization {
            grant: Some(old.seal("res_hk_1", b"grant")),
            grant_expires_at: None,
            tokens: Some(sealed.clone()),
            access_expires_at: None,
        };
        let count = authorization.seal_count(&rotating, "res_hk_1");
        assert_eq!((count.current, count.previous_only, count.unreadable), (0, 2, 0));
        assert!(authorization.reseal(&rotating, "res_hk_1"));
        let count = authorization.seal_count(&rotating, "res_hk_1");
        assert_eq!((count.current, count.previous_only, count.unreadable), (2, 0, 0));
        assert!(!authorization.reseal(&rotating, "res_hk_1"), "idempotent");
        assert_eq!(
            finished
                .open("res_hk_1", authorization.grant.as_deref().unwrap())
                .as_deref(),
            Some(&b"grant"[..])
        );
        assert_eq!(authorization.seal_count(&old, "res_hk_1").unreadable, 2);
    }

    #[test]
    fn the_keys_never_print() {
        let printed = format!("{:?}", keys(KEY, Some(OTHER)));
        assert_eq!(printed, "TokenKeys(..)");
    }

    #[test]
    fn during_a_rotation_values_sealed_under_the_previous_key_still_open() {
        let old = keys(OTHER, None);
        let sealed = old.seal("res_hk_1", b"t");
        assert_eq!(
            keys(KEY, Some(OTHER)).open("res_hk_1", &sealed).as_deref(),
            Some(&b"t"[..])
        );
        assert_eq!(keys(KEY, None).open("res_hk_1", &sealed), None);
    }

    #[test]
    fn a_key_that_is_not_32_bytes_of_hex_stops_the_start() {
        for bad in [
            "",
            "00",
            "zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            &format!("{KEY}00"),
        ] {
            let err =
                TokenKeys::from_lookup(&|name: &str| (name == "HEROKU_TOKEN_KEY").then(|| bad.to_string()))
                    .unwrap_err();
            assert_eq!(err.var, "HEROKU_TOKEN_KEY", "{bad:?}");
        }
    }
}
