//! The keys that sign ID tokens (RS256, through `jsonwebtoken` on aws-lc-rs;
//! no signature code of our own): `OIDC_SIGNING_KEY` signs, and
//! `OIDC_SIGNING_KEY_PREVIOUS`, during a rotation, is still published in the
//! JWKS so tokens it signed keep verifying (docs/oidc.md "Rotating the
//! signing key").

use crate::config::{self, ConfigError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

pub const SIGNING_KEY_VAR: &str = "OIDC_SIGNING_KEY";
pub const PREVIOUS_SIGNING_KEY_VAR: &str = "OIDC_SIGNING_KEY_PREVIOUS";
/// Smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_MODULUS_BYTES: usize = 256;

/// One RSA private key, and its public half as a JWK.
pub struct SigningKey {
    encoding: EncodingKey,
    jwk: Jwk,
}

impl SigningKey {
    /// A PKCS#8 (or PKCS#1) PEM RSA private key of at least 2048 bits.
    /// `\n` written as two characters (as a pasted one-line value often
    /// has) is read as a line break.
    pub fn from_pem(var: &'static str, pem: &str) -> Result<Self, ConfigError> {
        let pem = if pem.contains('\n') {
            pem.to_string()
        } else {
            pem.replace("\\n", "\n")
        };
        let unusable = |problem: &str| ConfigError::new(var, problem.to_string());
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| {
            unusable("must be an RSA private key in PEM (PKCS#8: -----BEGIN PRIVATE KEY-----)")
        })?;
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256)
            .map_err(|_| unusable("must be an RSA private key, not a public key"))?;
        let modulus_bytes = match &jwk.algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::RSA(rsa) => {
                URL_SAFE_NO_PAD.decode(&rsa.n).map(|n| n.len()).unwrap_or(0)
            }
            _ => 0,
        };
        if modulus_bytes < MIN_MODULUS_BYTES {
            return Err(unusable("must be an RSA key of at least 2048 bits"));
        }
        jwk.common.key_id = Some(jwk.thumbprint(ThumbprintHash::SHA256));
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::RS256);
        // Reading the public half above parsed the private key with aws-lc,
        // so a key that cannot sign has failed the cold start already. No
        // trial signature here: the first one seeds aws-lc's random
        // generator (~70 ms), which on AWS the init-time TLS handshake does
        // anyway, and which an authorize, needing no key, should not wait for.
        Ok(Self { encoding, jwk })
    }

    /// The key id (`kid`): the public key's RFC 7638 thumbprint, so the same
    /// key always has the same id and a new key a new one.
    pub fn kid(&self) -> &str {
        self.jwk.common.key_id.as_deref().unwrap_or_default()
    }

    /// `claims` as a compact JWS, RS256, with this key's `kid`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid().to_string());
        jsonwebtoken::encode(&header, claims, &self.encoding)
    }
}

/// The signing key and, during a rotation, the previous one.
pub struct SigningKeys {
    pub current: SigningKey,
    pub previous: Option<SigningKey>,
}

impl SigningKeys {
    /// `OIDC_SIGNING_KEY` (`None` when unset) and `OIDC_SIGNING_KEY_PREVIOUS`.
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let previous = config::optional(lookup, PREVIOUS_SIGNING_KEY_VAR)
            .map(|pem| SigningKey::from_pem(PREVIOUS_SIGNING_KEY_VAR, &pem))
            .transpose()?;
        let Some(current) = config::optional(lookup, SIGNING_KEY_VAR) else {
            if previous.is_some() {
                return Err(ConfigError::new(
                    SIGNING_KEY_VAR,
                    "is missing, but OIDC_SIGNING_KEY_PREVIOUS is set",
                ));
            }
            return Ok(None);
        };
        Ok(Some(Self {
            current: SigningKey::from_pem(SIGNING_KEY_VAR, &current)?,
            previous,
        }))
    }

    /// The JWKS: the current key, then the previous one.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: std::iter::once(&self.current)
                .chain(
                    self.previous
                        .iter()
                        .filter(|previous| previous.kid() != self.current.kid()),
                )
                .map(|key| key.jwk.clone())
                .collect(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    /// Test keys, made once per test run (RSA generation takes a moment).
    pub fn test_pem(which: usize) -> &'static str {
        static KEYS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        &KEYS.get_or_init(|| {
            (0..2)
                .map(|_| super::super::new_signing_key_pem().unwrap())
                .collect()
        })[which]
    }

    #[test]
    fn a_token_signed_with_the_key_verifies_with_its_published_jwk() {
        let keys =
            SigningKeys::from_lookup(&|var: &str| (var == SIGNING_KEY_VAR).then(|| test_pem(0).to_string()))
                .unwrap()
                .unwrap();
        let token = keys
            .current
            .sign(&serde_json::json!({"sub": "s", "aud": "app"}))
            .unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        let jwks = keys.jwks();
        assert_eq!(jwks.keys.len(), 1);
        let jwk = jwks
            .find(header.kid.as_deref().unwrap())
            .expect("kid in the JWKS");
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&["app"]);
        validation.set_required_spec_claims(&["sub"]);
        let verified = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &DecodingKey::from_jwk(jwk).unwrap(),
            &validation,
        )
        .unwrap();
        assert_eq!(verified.claims["sub"], "s");
    }

    #[test]
    fn during_a_rotation_both_keys_are_published_and_the_new_one_signs() {
        let keys = SigningKeys::from_lookup(&|var: &str| match var {
            SIGNING_KEY_VAR => Some(test_pem(1).to_string()),
            PREVIOUS_SIGNING_KEY_VAR => Some(test_pem(0).to_string()),
            _ => None,
        })
        .unwrap()
        .unwrap();
        let kids: Vec<_> = keys
            .jwks()
            .keys
            .iter()
            .map(|k| k.common.key_id.clone().unwrap())
            .collect();
        assert_eq!(kids.len(), 2);
        assert_ne!(kids[0], kids[1]);
        assert_eq!(kids[0], keys.current.kid());
        let token = keys.current.sign(&serde_json::json!({})).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&token).unwrap().kid.as_deref(),
            Some(kids[0].as_str())
        );
    }

    #[test]
    fn a_key_longer_than_2048_bits_is_accepted_too() {
        use aws_lc_rs::encoding::AsDer;
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa3072).unwrap();
        let der = pair.as_der().unwrap();
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()));
        let key = SigningKey::from_pem(SIGNING_KEY_VAR, &pem).expect("a 3072-bit key");
        assert!(key.sign(&serde_json::json!({})).is_ok());
    }

    #[test]
    fn a_one_line_key_with_escaped_newlines_reads_as_the_same_key() {
        let escaped = test_pem(0).replace('\n', "\\n");
        let a = SigningKey::from_pem(SIGNING_KEY_VAR, test_pem(0)).unwrap();
        let b = SigningKey::from_pem(SIGNING_KEY_VAR, &escaped).unwrap();
        assert_eq!(a.kid(), b.kid());
    }

    #[test]
    fn unusable_keys_fail_naming_the_variable() {
        for pem in [
            "",
            "not a key",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            let err = SigningKey::from_pem(SIGNING_KEY_VAR, pem)
                .err()
                .expect(pem)
                .to_string();
            assert!(err.contains(SIGNING_KEY_VAR), "{err}");
        }
        let only_previous = SigningKeys::from_lookup(&|var: &str| {
            (var == PREVIOUS_SIGNING_KEY_VAR).then(|| test_pem(0).to_string())
        });
        assert!(only_previous.err().unwrap().to_string().contains(SIGNING_KEY_VAR));
        assert!(SigningKeys::from_lookup(&|_: &str| None).unwrap().is_none());
    }
}
