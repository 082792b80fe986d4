//! The shared secret: a type that never shows its value, and constant-time matching.

use std::fmt;

use http::HeaderName;

#[cfg(any(feature = "receive", feature = "admin"))]
mod compare;
#[cfg(any(feature = "receive", feature = "admin"))]
pub(crate) use compare::{PaddedSecret, matches_any};

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
