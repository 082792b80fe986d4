//! The shared secret: a type that never shows its value, and constant-time matching.

use std::fmt;

use http::HeaderName;
use subtle::{Choice, ConstantTimeEq};

/// The header Fermion puts the secret in: `X-Fermion-Webhook-Secret` (header names are
/// case-insensitive; [`HeaderName`] stores them in lower case).
pub const SECRET_HEADER: HeaderName = HeaderName::from_static("x-fermion-webhook-secret");

/// The longest secret accepted, in bytes.
///
/// Matching compares a fixed-size buffer of this many bytes, so its time does not depend on the
/// secret's or the candidate's length.
pub const MAX_SECRET_LEN: usize = 256;

/// Why a string cannot be a webhook secret. The messages never contain the secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The secret is empty (or only whitespace).
    #[error("the webhook secret is empty; set a non-empty secret or use WebhookSecret::generate()")]
    Empty,
    /// The secret is longer than [`MAX_SECRET_LEN`].
    #[error("the webhook secret is {len} bytes long; the limit is {max} bytes")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The secret has a character that cannot travel in an HTTP header.
    #[error(
        "the webhook secret has a character at byte {position} that cannot be sent in an HTTP \
         header (or leading/trailing whitespace); use printable ASCII"
    )]
    NotHeaderSafe {
        /// Byte offset of the first offending character.
        position: usize,
    },
    /// The operating system's random number generator failed.
    #[error("could not generate a secret: the system random number generator failed")]
    Randomness(#[source] getrandom::Error),
}

/// A webhook secret. Its value is never shown by `Debug` or `Display`.
///
/// ```
/// use fermion_webhooks::WebhookSecret;
///
/// let secret = WebhookSecret::new("s3cr3t-value").unwrap();
/// assert_eq!(format!("{secret:?}"), "WebhookSecret(<redacted>)");
/// assert!(WebhookSecret::new("").is_err());
///
/// let generated = WebhookSecret::generate().unwrap();
/// assert_eq!(generated.expose_secret().len(), 64);
/// ```
#[derive(Clone)]
pub struct WebhookSecret {
    value: Box<str>,
}

impl WebhookSecret {
    /// Wraps a secret, refusing one that is empty, longer than [`MAX_SECRET_LEN`] bytes, or that
    /// cannot be sent in an HTTP header (printable ASCII and inner spaces only).
    pub fn new(value: impl Into<String>) -> Result<Self, SecretError> {
        let value = value.into();
        if value.trim().is_empty() {
            return Err(SecretError::Empty);
        }
        if value.len() > MAX_SECRET_LEN {
            return Err(SecretError::TooLong {
                len: value.len(),
                max: MAX_SECRET_LEN,
            });
        }
        let bytes = value.as_bytes();
        let last = bytes.len() - 1;
        if let Some(position) = bytes.iter().enumerate().position(|(i, &b)| {
            let printable = (0x21..=0x7e).contains(&b);
            let inner_space = b == b' ' && i != 0 && i != last;
            !(printable || inner_space)
        }) {
            return Err(SecretError::NotHeaderSafe { position });
        }
        Ok(Self {
            value: value.into_boxed_str(),
        })
    }

    /// A new random secret: 32 bytes from the operating system's generator, as 64 hex digits.
    pub fn generate() -> Result<Self, SecretError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(SecretError::Randomness)?;
        let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        Ok(Self {
            value: hex.into_boxed_str(),
        })
    }

    /// The secret's value, to put in a header or a configuration store. Handle with care.
    pub fn expose_secret(&self) -> &str {
        &self.value
    }

    /// The secret as a header value, marked sensitive (so `http`'s `Debug` hides it and HTTP/2
    /// never indexes it).
    pub fn header_value(&self) -> http::HeaderValue {
        // `new` admits only header-safe text, so this conversion cannot fail; an empty value
        // is an unreachable fallback rather than a panic.
        let mut value = http::HeaderValue::from_str(&self.value)
            .unwrap_or_else(|_| http::HeaderValue::from_static(""));
        value.set_sensitive(true);
        value
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl fmt::Display for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for WebhookSecret {
    type Err = SecretError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WebhookSecret::new(s)
    }
}

const WORDS: usize = MAX_SECRET_LEN / 8;

/// A secret laid out for constant-time comparison: zero-padded to a fixed size, plus its length.
#[derive(Clone)]
pub(crate) struct PaddedSecret {
    words: [u64; WORDS],
    len: u64,
}

impl PaddedSecret {
    pub(crate) fn new(secret: &WebhookSecret) -> Self {
        // `WebhookSecret` guarantees the length fits.
        Self::from_bytes(secret.expose_secret().as_bytes()).unwrap_or(Self {
            words: [0; WORDS],
            len: u64::MAX,
        })
    }

    /// `None` for a candidate longer than any secret can be. That branch reveals only that the
    /// candidate exceeds the public limit, which its sender already knows.
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() > MAX_SECRET_LEN {
            return None;
        }
        // The same instructions for every candidate of up to 256 bytes, whatever its length
        // or content: each of the 256 positions loads a byte (the last real one past the end)
        // and masks it to zero past the end. No branch depends on the length, and no load
        // reads back a store (copying into a zeroed buffer first made a half-length candidate
        // 12 % slower to check, in `benches/secret_compare`).
        let Some(last) = bytes.len().checked_sub(1) else {
            return Some(Self {
                words: [0; WORDS],
                len: 0,
            });
        };
        let mut words = [0u64; WORDS];
        for (index, word) in words.iter_mut().enumerate() {
            for byte in 0..8 {
                let position = index * 8 + byte;
                let inside = u64::from(position <= last);
                let value = u64::from(bytes[position.min(last)]);
                *word |= (value & inside.wrapping_neg()) << (8 * byte);
            }
        }
        Some(Self {
            words,
            len: bytes.len() as u64,
        })
    }

    /// Constant time: every word is compared whatever the content, and the length is compared
    /// as data, not used to decide how much to compare.
    fn matches(&self, candidate: &PaddedSecret) -> Choice {
        let difference = self
            .words
            .iter()
            .zip(candidate.words.iter())
            .fold(0u64, |acc, (a, b)| acc | (a ^ b));
        difference.ct_eq(&0) & self.len.ct_eq(&candidate.len)
    }
}

/// Whether `candidate` equals any of `accepted`, checking every one (no short-circuit), so the
/// time does not reveal which secret matched or where the first differing byte is.
pub(crate) fn matches_any(accepted: &[PaddedSecret], candidate: &[u8]) -> bool {
    let Some(candidate) = PaddedSecret::from_bytes(candidate) else {
        return false;
    };
    accepted
        .iter()
        .fold(Choice::from(0), |any, secret| {
            any | secret.matches(&candidate)
        })
        .into()
}

/// Serialises the secret's value, so an endpoint can be kept in a platform's own database.
/// Anything serialised this way must be treated as a credential.
impl serde::Serialize for WebhookSecret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose_secret())
    }
}

/// Deserialising validates like [`WebhookSecret::new`]; the error never contains the value.
impl<'de> serde::Deserialize<'de> for WebhookSecret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        WebhookSecret::new(value).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_SECRET_LEN, PaddedSecret, matches_any};

    fn padded(bytes: &[u8]) -> PaddedSecret {
        PaddedSecret::from_bytes(bytes).expect("within the limit")
    }

    #[test]
    fn a_secret_matches_itself_and_nothing_that_differs_in_length_or_any_byte() {
        for len in [1, 7, 8, 9, 63, 64, 65, 255, MAX_SECRET_LEN] {
            let secret: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let accepted = [padded(&secret)];
            assert!(matches_any(&accepted, &secret), "length {len}");
            assert!(!matches_any(&accepted, &secret[..len - 1]), "prefix, {len}");
            let mut with_zero = secret.clone();
            with_zero.push(0);
            assert!(!matches_any(&accepted, &with_zero), "a NUL more, {len}");
            for at in [0, len / 2, len - 1] {
                let mut changed = secret.clone();
                changed[at] ^= 1;
                assert!(!matches_any(&accepted, &changed), "byte {at} of {len}");
            }
        }
    }

    #[test]
    fn candidates_past_the_limit_never_match() {
        let secret = vec![b'x'; MAX_SECRET_LEN];
        let accepted = [padded(&secret)];
        assert!(!matches_any(&accepted, &[b'x'; MAX_SECRET_LEN + 1]));
        assert!(!matches_any(&accepted, b""));
    }
}
