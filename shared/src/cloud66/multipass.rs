//! The multipass format of the `multipass` Ruby gem (entp/multipass, via
//! ezcrypto), which Cloud 66 SSO uses: JSON encrypted with AES-128-CBC under
//! an all-zero IV with PKCS#7 padding, then base64 made URL-safe with one
//! trailing `=` removed. Decoding accepts URL-safe or standard base64 with any
//! padding or none, since producers differ.

use aes::Aes128;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, Engine as _, GeneralPurpose, GeneralPurposeConfig};
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use sha1::{Digest, Sha1};

/// The gem prepends nothing: every multipass is encrypted under this IV.
const ZERO_IV: [u8; 16] = [0; 16];

/// Standard or URL-safe (after mapping), with or without `=`.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// An AES-128 key for multipasses.
#[derive(Clone)]
pub struct MultipassKey([u8; 16]);

impl std::fmt::Debug for MultipassKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MultipassKey(<redacted>)")
    }
}

impl MultipassKey {
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The gem's derivation: the first 16 bytes of SHA-1(api_key + site_key).
    pub fn gem(api_key: &str, site_key: &str) -> Self {
        let digest = Sha1::new()
            .chain_update(api_key)
            .chain_update(site_key)
            .finalize();
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        Self(key)
    }

    #[cfg(test)]
    fn as_hex(&self) -> String {
        hex::encode(self.0)
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MultipassError {
    #[error("the multipass is not base64")]
    Base64,
    #[error("the multipass is not a whole number of AES blocks")]
    Length,
    #[error("the multipass does not decrypt under this key")]
    Padding,
}

/// Encrypts `plaintext` the way the gem does.
pub fn encode(key: &MultipassKey, plaintext: &[u8]) -> String {
    let ciphertext = cbc::Encryptor::<Aes128>::new(&key.0.into(), &ZERO_IV.into())
        .encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    let mut text = base64::engine::general_purpose::URL_SAFE.encode(ciphertext);
    if text.ends_with('=') {
        text.pop();
    }
    text
}

/// Decrypts a multipass; any malformed input is an error, never a panic.
pub fn decode(key: &MultipassKey, multipass: &str) -> Result<Vec<u8>, MultipassError> {
    let url_safe: String = multipass
        .trim()
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            other => other,
        })
        .collect();
    let ciphertext = LENIENT_BASE64
        .decode(url_safe.trim_end_matches('='))
        .map_err(|_| MultipassError::Base64)?;
    if ciphertext.is_empty() || ciphertext.len() % 16 != 0 {
        return Err(MultipassError::Length);
    }
    cbc::Decryptor::<Aes128>::new(&key.0.into(), &ZERO_IV.into())
        .decrypt_padded_vec_mut::<Pkcs7>(&ciphertext)
        .map_err(|_| MultipassError::Padding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_key_is_redacted_in_debug_output() {
        let key = MultipassKey::gem("abc", "example");
        let printed = format!("{key:?}");
        assert_eq!(printed, "MultipassKey(<redacted>)");
        assert!(!printed.contains(&key.as_hex()));
    }

    #[test]
    fn gem_key_derivation_matches_the_published_answer() {
        assert_eq!(
            MultipassKey::gem("abc", "example").as_hex(),
            "50bcd3de1e91bc6c152e26de19b2cfcf"
        );
    }

    #[test]
    fn gem_ciphertext_matches_the_published_answer() {
        let key = MultipassKey::gem("abc", "example");
        assert_eq!(encode(&key, br#"{"a":1}"#), "dJ_rxkMnE6hyJfEqrnrqxw=");
        assert_eq!(decode(&key, "dJ_rxkMnE6hyJfEqrnrqxw=").unwrap(), br#"{"a":1}"#);
    }

    #[test]
    fn decode_accepts_every_padding_and_both_alphabets() {
        let key = MultipassKey::gem("abc", "example");
        for variant in [
            "dJ_rxkMnE6hyJfEqrnrqxw",
            "dJ_rxkMnE6hyJfEqrnrqxw==",
            "dJ/rxkMnE6hyJfEqrnrqxw==",
            "dJ/rxkMnE6hyJfEqrnrqxw",
        ] {
            assert_eq!(decode(&key, variant).unwrap(), br#"{"a":1}"#, "{variant}");
        }
    }

    #[test]
    fn malformed_multipasses_are_errors() {
        let key = MultipassKey::gem("abc", "example");
        assert_eq!(decode(&key, "not base64 !!"), Err(MultipassError::Base64));
        assert_eq!(decode(&key, ""), Err(MultipassError::Length));
        assert_eq!(decode(&key, "AAAA"), Err(MultipassError::Length));
        let other = MultipassKey::gem("abd", "example");
        assert_ne!(
            decode(&other, "dJ_rxkMnE6hyJfEqrnrqxw=").ok(),
            Some(br#"{"a":1}"#.to_vec())
        );
    }

    proptest! {
        #[test]
        fn round_trips_any_plaintext(plaintext in prop::collection::vec(any::<u8>(), 0..300), key in any::<[u8; 16]>()) {
            let key = MultipassKey::from_bytes(key);
            prop_assert_eq!(decode(&key, &encode(&key, &plaintext)).unwrap(), plaintext);
        }

        #[test]
        fn random_text_never_panics(text in ".{0,200}", key in any::<[u8; 16]>()) {
            let _ = decode(&MultipassKey::from_bytes(key), &text);
        }

        #[test]
        fn random_ciphertext_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200), key in any::<[u8; 16]>()) {
            let text = base64::engine::general_purpose::STANDARD.encode(bytes);
            let _ = decode(&MultipassKey::from_bytes(key), &text);
        }

        #[test]
        fn the_wrong_key_never_yields_the_plaintext(
            plaintext in "[a-z]{1,40}",
            key in any::<[u8; 16]>(),
            other in any::<[u8; 16]>(),
        ) {
            prop_assume!(key != other);
            let multipass = encode(&MultipassKey::from_bytes(key), plaintext.as_bytes());
            let decoded = decode(&MultipassKey::from_bytes(other), &multipass);
            prop_assert_ne!(decoded.ok(), Some(plaintext.into_bytes()));
        }
    }
}
