//! The `Addon-Signature` header, keyed with `PROVISIONER_SIGNING_SECRET`,
//! both ways (docs/provisioner.md, "The signature"):
//! - on every request to the vendor's endpoint, `t=<unix seconds>,v1=<hex
//!   HMAC-SHA256 of "t.body">`: the endpoint is one fixed URL, so the body
//!   is all there is to bind;
//! - on every call the vendor makes to the stack (`/vendor/...`), `v1` is the
//!   HMAC of `"t.METHOD.path.body"` (upper-case method, the path as sent,
//!   no query): the resource is in the path, so it is signed too, and a
//!   signature for one resource never finishes another.
//!
//! The two signed texts differ in shape (a body is JSON and starts with `{`,
//! a call's text has an upper-case method there), so a MAC of one direction
//! never passes for the other's. The timestamp is inside the MAC, so a
//! verifier that also bounds its age refuses both forgeries and replays.

use crate::secret::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const HEADER: &str = "Addon-Signature";

/// How old (or how far ahead) a signature may be when verified.
pub const DEFAULT_TOLERANCE_SECONDS: i64 = 300;

/// What a signature covers besides its timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed<'a> {
    /// A request to the vendor's endpoint: `t.body`.
    Body(&'a [u8]),
    /// A call from the vendor to the stack: `t.METHOD.path.body`.
    Call {
        method: &'a str,
        path: &'a str,
        body: &'a [u8],
    },
}

fn mac(secret: &Secret, timestamp: i64, signed: Signed<'_>) -> Hmac<Sha256> {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    match signed {
        Signed::Body(body) => mac.update(body),
        Signed::Call { method, path, body } => {
            mac.update(method.to_ascii_uppercase().as_bytes());
            mac.update(b".");
            mac.update(path.as_bytes());
            mac.update(b".");
            mac.update(body);
        }
    }
    mac
}

/// The header value for `body` sent to the vendor at `timestamp`.
pub fn sign(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    sign_with_each(&[secret], timestamp, Signed::Body(body))
}

/// The header value for the vendor's call `method path` with `body` at
/// `timestamp` (what the vendor's service sends; tests and the CLI).
pub fn sign_call(secret: &Secret, timestamp: i64, method: &str, path: &str, body: &[u8]) -> String {
    sign_with_each(&[secret], timestamp, Signed::Call { method, path, body })
}

/// The header value with one `v1=` per secret, in order: during a rotation
/// of the signing secret the request is signed with the new and the previous
/// one, so a vendor holding either verifies it (`verify` needs one match).
pub fn sign_with_each(secrets: &[&Secret], timestamp: i64, signed: Signed<'_>) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        let digest = mac(secret, timestamp, signed).finalize().into_bytes();
        header.push_str(",v1=");
        header.push_str(&hex::encode(digest));
    }
    header
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the header is not `t=<unix seconds>,v1=<hex>`")]
    Malformed,
    #[error("the signature does not match the body")]
    Mismatch,
    #[error("the timestamp is outside the tolerance")]
    Stale,
}

/// Checks a header against `body` (a request to the vendor) in constant
/// time, then its age against `now`. Several `v1=` values are allowed (one
/// per secret during a rotation of the signing secret); one match is enough.
pub fn verify(
    secret: &Secret,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_seconds: i64,
) -> Result<(), SignatureError> {
    verify_signed(secret, header, Signed::Body(body), now, tolerance_seconds)
}

/// [`verify`] for what `signed` names: a body, or a vendor's call.
pub fn verify_signed(
    secret: &Secret,
    header: &str,
    signed: Signed<'_>,
    now: i64,
    tolerance_seconds: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) if timestamp.is_none() => {
                let digits =
                    !value.is_empty() && value.len() <= 12 && value.bytes().all(|b| b.is_ascii_digit());
                timestamp = Some(
                    digits
                        .then(|| value.parse::<i64>().ok())
                        .flatten()
                        .ok_or(SignatureError::Malformed)?,
                );
            }
            Some(("v1", value)) => {
                candidates.push(hex::decode(value).map_err(|_| SignatureError::Malformed)?)
            }
            // Unknown schemes are skipped, so a later `v2` does not break old verifiers.
            Some((_, _)) => {}
            None => return Err(SignatureError::Malformed),
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let matches = candidates
        .iter()
        .any(|candidate| mac(secret, timestamp, signed).verify_slice(candidate).is_ok());
    if !matches {
        return Err(SignatureError::Mismatch);
    }
    if (now - timestamp).abs() > tolerance_seconds {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secret() -> Secret {
        Secret::new("whsec_test_0123456789abcdef0123456789")
    }

    #[test]
    fn matches_an_independent_hmac_sha256() {
        // The signed text is "<t>.<body>", as docs/provisioner.md's Python and Node
        // verifiers compute it.
        let header = sign(&Secret::new("Jefe"), 1_700_000_000, b"{}");
        let expected_text = b"1700000000.{}";
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(expected_text);
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(header, format!("t=1700000000,v1={expected}"));
        // And the primitive itself against RFC 4231 test case 2.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_signature_verifies_only_for_its_body_secret_and_time() {
        let body = br#"{"action":"provision"}"#;
        let header = sign(&secret(), 1_700_000_000, body);
        assert_eq!(verify(&secret(), &header, body, 1_700_000_000, 300), Ok(()));
        assert_eq!(verify(&secret(), &header, body, 1_700_000_300, 300), Ok(()));
        assert_eq!(verify(&secret(), &header, body, 1_699_999_700, 300), Ok(()));
        assert_eq!(
            verify(&secret(), &header, body, 1_700_000_301, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(&secret(), &header, body, 1_699_999_699, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(&secret(), &header, b"{}", 1_700_000_000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&Secret::new("other"), &header, body, 1_700_000_000, 300),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is signed: moving it breaks the signature.
        let moved = header.replace("t=1700000000", "t=1700000001");
        assert_eq!(
            verify(&secret(), &moved, body, 1_700_000_000, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn any_of_several_v1_values_may_match_and_unknown_schemes_are_skipped() {
        let body = b"{}";
        let good = sign(&secret(), 5, body);
        let v1 = good.split_once(",v1=").unwrap().1;
        let header = format!("t=5,v1={},v0=zz,v1={v1}", "00".repeat(32));
        assert_eq!(verify(&secret(), &header, body, 5, 300), Ok(()));
    }

    #[test]
    fn malformed_headers_are_refused() {
        for header in [
            "",
            "t=1",
            "v1=00",
            "t=x,v1=00",
            "t=1,v1=zz",
            "t=,v1=00",
            "garbage",
            "t=1234567890123,v1=00",
        ] {
            assert_eq!(
                verify(&secret(), header, b"{}", 1, 300),
                Err(SignatureError::Malformed),
                "{header}"
            );
        }
    }

    proptest! {
        #[test]
        fn random_headers_never_panic_and_never_verify(header in ".{0,200}", body in prop::collection::vec(any::<u8>(), 0..64)) {
            prop_assert!(verify(&secret(), &header, &body, 1_700_000_000, 300).is_err());
        }
    }

    #[test]
    fn the_first_timestamp_is_the_signed_one_and_later_ones_are_ignored() {
        let signed = sign(&secret(), 1_700_000_000, b"{}");
        for extra in ["t=1700000999", "t=not-a-time"] {
            let header = format!("{signed},{extra}");
            assert_eq!(
                verify(&secret(), &header, b"{}", 1_700_000_000, 300),
                Ok(()),
                "{header}"
            );
        }
    }

    #[test]
    fn during_a_rotation_each_secret_signs_and_either_one_verifies() {
        let new = secret();
        let previous = Secret::new("whsec_previous_0123456789abcdef012345");
        let header = sign_with_each(&[&new, &previous], 1_700_000_000, Signed::Body(b"{}"));
        let values: Vec<&str> = header.split(',').collect();
        assert_eq!(values.len(), 3, "{header}");
        assert_eq!(values[0], "t=1700000000");
        assert_eq!(
            format!("{},{}", values[0], values[1]),
            sign(&new, 1_700_000_000, b"{}")
        );
        assert_eq!(
            format!("{},{}", values[0], values[2]),
            sign(&previous, 1_700_000_000, b"{}")
        );
        for holder in [&new, &previous] {
            assert_eq!(verify(holder, &header, b"{}", 1_700_000_000, 300), Ok(()));
        }
        let stranger = Secret::new("whsec_stranger_0123456789abcdef012345");
        assert_eq!(
            verify(&stranger, &header, b"{}", 1_700_000_000, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_call_signature_binds_method_path_and_body() {
        let path = "/vendor/resources/res_hk_a/provisioned";
        let call = |method, path, body| Signed::Call { method, path, body };
        let header = sign_call(&secret(), 1_700_000_000, "POST", path, b"{}");
        // An independent HMAC of the documented text.
        let mut expected = <Hmac<Sha256> as Mac>::new_from_slice(secret().expose().as_bytes()).unwrap();
        expected.update(format!("1700000000.POST.{path}.{{}}").as_bytes());
        assert_eq!(
            header,
            format!(
                "t=1700000000,v1={}",
                hex::encode(expected.finalize().into_bytes())
            )
        );
        let check = |signed| verify_signed(&secret(), &header, signed, 1_700_000_000, 300);
        assert_eq!(check(call("POST", path, b"{}")), Ok(()));
        assert_eq!(
            check(call("post", path, b"{}")),
            Ok(()),
            "the method is upper-cased"
        );
        for other in [
            call("PUT", path, b"{}"),
            call("POST", "/vendor/resources/res_hk_b/provisioned", b"{}"),
            call("POST", path, b"{ }"),
            Signed::Body(b"{}"),
        ] {
            assert_eq!(check(other), Err(SignatureError::Mismatch), "{other:?}");
        }
        // And the other way round: what the stack sends the vendor (a JSON
        // body, so its signed text goes on with `{`) never passes for a call,
        // whose text goes on with an upper-case method.
        let to_vendor = sign(&secret(), 1_700_000_000, b"{}");
        assert_eq!(
            verify_signed(
                &secret(),
                &to_vendor,
                call("POST", path, b"{}"),
                1_700_000_000,
                300
            ),
            Err(SignatureError::Mismatch)
        );
    }
}
