//! Signed deliveries, as [Standard Webhooks](https://www.standardwebhooks.com/) specifies them
//! (the scheme Svix uses): an HMAC-SHA256 of `id.timestamp.body` in `webhook-signature`, with
//! the message id in `webhook-id` and the attempt's time in `webhook-timestamp`.
//!
//! Fermion's own scheme sends a static secret in a header: anyone who sees one request can
//! forge every later one, and replay any. A signature proves the body came from the holder of
//! the key, and its timestamp bounds how late a copy can be replayed.
//!
//! ```
//! use fermion_webhooks::signature::{SigningSecret, sign, verify};
//! use std::time::Duration;
//!
//! let secret = SigningSecret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
//! let body = br#"{"test": 2432232314}"#;
//! let signature = sign(&[secret.clone()], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
//! assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
//!
//! let headers = [
//!     ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
//!     ("webhook-timestamp", "1614265330"),
//!     ("webhook-signature", signature.as_str()),
//! ];
//! let lookup = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_bytes());
//! let now = 1614265330 + 60;
//! verify(&[secret], lookup, body, now, Duration::from_secs(300)).unwrap();
//! ```

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// `webhook-id`: the message id, the same on every attempt (here the `eventUniqueId`).
pub const ID_HEADER: &str = "webhook-id";
/// `webhook-timestamp`: when the attempt was made, in seconds since the Unix epoch.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// `webhook-signature`: `v1,<base64>`, one per signing key, space-separated.
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// The prefix of a signing secret's text form.
const PREFIX: &str = "whsec_";

/// The default tolerance between a signature's timestamp and the receiver's clock, both ways.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// A Standard Webhooks signing key: `whsec_` and the key's bytes in base64. `Debug` and
/// `Display` show `whsec_<redacted>`; [`expose_secret`](Self::expose_secret) gives the text.
#[derive(Clone)]
pub struct SigningSecret {
    key: Box<[u8]>,
}

/// Why a signing secret was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SigningSecretError {
    /// The part after `whsec_` is not base64.
    #[error("a signing secret is `whsec_` followed by base64; this one is not base64")]
    NotBase64,
    /// The key is shorter than 24 or longer than 64 bytes, as the specification requires.
    #[error("a signing key must be 24 to 64 bytes long; this one is {len} bytes")]
    Length {
        /// The decoded key's length.
        len: usize,
    },
    /// The operating system's random generator failed.
    #[error("could not generate a signing secret")]
    Randomness(#[source] getrandom::Error),
}

impl SigningSecret {
    /// Parses `whsec_<base64>` (the prefix may be left out, as the reference libraries allow).
    pub fn new(text: &str) -> Result<Self, SigningSecretError> {
        let encoded = text.trim().strip_prefix(PREFIX).unwrap_or(text.trim());
        let key = BASE64
            .decode(encoded)
            .map_err(|_| SigningSecretError::NotBase64)?;
        if !(24..=64).contains(&key.len()) {
            return Err(SigningSecretError::Length { len: key.len() });
        }
        Ok(Self { key: key.into() })
    }

    /// A new random key of 32 bytes from the operating system's generator.
    pub fn generate() -> Result<Self, SigningSecretError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(SigningSecretError::Randomness)?;
        Ok(Self { key: key.into() })
    }

    /// The text form, `whsec_<base64>`, to give to the receiver. Never log it.
    pub fn expose_secret(&self) -> String {
        format!("{PREFIX}{}", BASE64.encode(&self.key))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
        // HMAC takes a key of any length; this cannot fail.
        let mut mac = <Hmac<Sha256>>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(whsec_<redacted>)")
    }
}

impl std::fmt::Display for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("whsec_<redacted>")
    }
}

impl PartialEq for SigningSecret {
    fn eq(&self, other: &Self) -> bool {
        self.key.ct_eq(&other.key).into()
    }
}

impl Eq for SigningSecret {}

impl serde::Serialize for SigningSecret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.expose_secret())
    }
}

impl<'de> serde::Deserialize<'de> for SigningSecret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::new(&text).map_err(serde::de::Error::custom)
    }
}

/// The `webhook-signature` value for a message: `v1,<base64>` for each key, space-separated
/// (several keys during a rotation, so receivers holding either accept it).
pub fn sign(secrets: &[SigningSecret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| format!("v1,{}", BASE64.encode(secret.mac(id, timestamp, body))))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why a signature was refused. Each is answered with 401.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// A `webhook-*` header is missing or empty.
    #[error(
        "missing {header} header; a signed webhook carries webhook-id, webhook-timestamp and webhook-signature"
    )]
    MissingHeader {
        /// The header's name.
        header: &'static str,
    },
    /// `webhook-timestamp` is not a whole number of seconds.
    #[error("the webhook-timestamp header is not a number of seconds since the Unix epoch")]
    InvalidTimestamp,
    /// The timestamp is older than the tolerance: a late copy, or a replay.
    #[error(
        "the webhook-timestamp is {seconds} s old, beyond the {tolerance_seconds} s tolerance; \
         a replayed or long-delayed request, or a wrong clock"
    )]
    StaleTimestamp {
        /// How old, in seconds.
        seconds: i64,
        /// The tolerance, in seconds.
        tolerance_seconds: u64,
    },
    /// The timestamp is further in the future than the tolerance.
    #[error(
        "the webhook-timestamp is {seconds} s in the future, beyond the {tolerance_seconds} s \
         tolerance; check the clocks"
    )]
    FutureTimestamp {
        /// How far ahead, in seconds.
        seconds: i64,
        /// The tolerance, in seconds.
        tolerance_seconds: u64,
    },
    /// No `v1` signature matches any accepted key.
    #[error(
        "no signature in webhook-signature matches; check the signing secret (whsec_...) \
         configured for this endpoint"
    )]
    BadSignature,
}

/// Checks a signed message: the three headers (looked up by lower-case name, so any framework
/// can answer), the timestamp within `tolerance` of `now` (seconds since the epoch), and at
/// least one `v1` signature matching at least one of `secrets`. Every signature is compared with
/// every key in constant time, so timing tells nothing about which matched or how closely.
pub fn verify<'h>(
    secrets: &[SigningSecret],
    header: impl Fn(&str) -> Option<&'h [u8]>,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let text = |name: &'static str| {
        header(name)
            .and_then(|value| std::str::from_utf8(value).ok())
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .ok_or(SignatureError::MissingHeader { header: name })
    };
    let id = text(ID_HEADER)?;
    let timestamp = text(TIMESTAMP_HEADER)?;
    let signatures = text(SIGNATURE_HEADER)?;
    let timestamp: i64 = timestamp
        .parse()
        .map_err(|_| SignatureError::InvalidTimestamp)?;
    let tolerance_seconds = tolerance.as_secs();
    let age = now.saturating_sub(timestamp);
    if age > tolerance_seconds as i64 {
        return Err(SignatureError::StaleTimestamp {
            seconds: age,
            tolerance_seconds,
        });
    }
    if -age > tolerance_seconds as i64 {
        return Err(SignatureError::FutureTimestamp {
            seconds: -age,
            tolerance_seconds,
        });
    }
    let expected: Vec<[u8; 32]> = secrets
        .iter()
        .map(|secret| secret.mac(id, timestamp, body))
        .collect();
    let mut matched = subtle::Choice::from(0);
    for given in signatures.split(' ') {
        let Some(encoded) = given.strip_prefix("v1,") else {
            continue; // another scheme (v1a, ...): not ours to judge
        };
        let Ok(given) = BASE64.decode(encoded) else {
            continue;
        };
        for expected in &expected {
            matched |= expected[..].ct_eq(&given[..]);
        }
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(SignatureError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TIMESTAMP: i64 = 1614265330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn check(signature: &str, body: &[u8], now: i64) -> Result<(), SignatureError> {
        let timestamp = VECTOR_TIMESTAMP.to_string();
        let headers = [
            (ID_HEADER, VECTOR_ID),
            (TIMESTAMP_HEADER, timestamp.as_str()),
            (SIGNATURE_HEADER, signature),
        ];
        let lookup = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_bytes())
        };
        let secret = SigningSecret::new(VECTOR_SECRET).unwrap();
        verify(&[secret], lookup, body, now, DEFAULT_TOLERANCE)
    }

    #[test]
    fn the_specifications_test_vector_signs_and_verifies() {
        let secret = SigningSecret::new(VECTOR_SECRET).unwrap();
        let signed = sign(&[secret], VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY);
        assert_eq!(signed, VECTOR_SIGNATURE);
        assert_eq!(
            check(VECTOR_SIGNATURE, VECTOR_BODY, VECTOR_TIMESTAMP),
            Ok(())
        );
    }

    #[test]
    fn a_changed_body_or_signature_is_refused() {
        let changed = br#"{"test": 2432232315}"#;
        let refused = Err(SignatureError::BadSignature);
        assert_eq!(check(VECTOR_SIGNATURE, changed, VECTOR_TIMESTAMP), refused);
        let wrong = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=";
        assert_eq!(check(wrong, VECTOR_BODY, VECTOR_TIMESTAMP), refused);
        assert_eq!(
            check("v1,not base64!", VECTOR_BODY, VECTOR_TIMESTAMP),
            refused
        );
    }

    #[test]
    fn any_one_matching_signature_is_enough() {
        let several = format!("v1a,ignored v1,AAAA {VECTOR_SIGNATURE}");
        assert_eq!(check(&several, VECTOR_BODY, VECTOR_TIMESTAMP), Ok(()));
    }

    #[test]
    fn timestamps_beyond_the_tolerance_either_way_are_refused() {
        let late = VECTOR_TIMESTAMP + 301;
        assert!(matches!(
            check(VECTOR_SIGNATURE, VECTOR_BODY, late),
            Err(SignatureError::StaleTimestamp { seconds: 301, .. })
        ));
        let early = VECTOR_TIMESTAMP - 301;
        assert!(matches!(
            check(VECTOR_SIGNATURE, VECTOR_BODY, early),
            Err(SignatureError::FutureTimestamp { seconds: 301, .. })
        ));
        assert_eq!(
            check(VECTOR_SIGNATURE, VECTOR_BODY, VECTOR_TIMESTAMP + 300),
            Ok(())
        );
    }

    #[test]
    fn during_a_rotation_both_keys_sign() {
        let old = SigningSecret::new(VECTOR_SECRET).unwrap();
        let new = SigningSecret::generate().unwrap();
        let both = sign(&[new, old], VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY);
        let (first, second) = both.split_once(' ').unwrap();
        assert!(first.starts_with("v1,"));
        assert_eq!(second, VECTOR_SIGNATURE);
    }

    #[test]
    fn secrets_are_whsec_base64_of_24_to_64_bytes_and_never_shown() {
        let generated = SigningSecret::generate().unwrap();
        let text = generated.expose_secret();
        assert!(text.starts_with("whsec_"));
        assert_eq!(SigningSecret::new(&text).unwrap(), generated);
        assert_eq!(format!("{generated:?}"), "SigningSecret(whsec_<redacted>)");
        assert_eq!(generated.to_string(), "whsec_<redacted>");
        assert!(matches!(
            SigningSecret::new("whsec_c2hvcnQ="),
            Err(SigningSecretError::Length { len: 5 })
        ));
        assert!(matches!(
            SigningSecret::new("whsec_***"),
            Err(SigningSecretError::NotBase64)
        ));
    }
}
