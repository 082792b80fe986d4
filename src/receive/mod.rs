//! The integrator's side: check the secret, then parse the body into a typed event.

#[cfg(feature = "axum")]
mod axum;
mod duplicates;
#[cfg(feature = "axum")]
mod serve;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, StatusCode};

use crate::clock::{Clock, SystemClock};
use crate::event::{ParseError, WebhookEvent};
use crate::secret::{PaddedSecret, SECRET_HEADER, WebhookSecret, matches_any};
use crate::signature::{self, SignatureError, SigningSecret};

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use self::axum::{FermionWebhook, WebhookRejection};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use self::serve::{ServeLimits, serve, serve_until};
pub use duplicates::{Duplicate, DuplicateGuard, Handling};

/// The default body limit: 256 KiB, far above any Fermion event (about 500 bytes).
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;

/// Why a webhook request was refused. [`status`](Self::status) gives the HTTP status to answer.
///
/// No message ever contains a secret, expected or received.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiveError {
    /// No `X-Fermion-Webhook-Secret` header.
    #[error("missing X-Fermion-Webhook-Secret header; Fermion sends the webhook secret in it")]
    MissingSecret,
    /// The header is present but empty.
    #[error("the X-Fermion-Webhook-Secret header is empty")]
    EmptySecret,
    /// The header appears more than once; refused rather than guessing which one counts.
    #[error("the X-Fermion-Webhook-Secret header appears more than once; send it once")]
    RepeatedSecret,
    /// The header does not match any accepted secret.
    #[error(
        "the X-Fermion-Webhook-Secret header does not match; check the secret configured in \
         Fermion's webhook settings"
    )]
    WrongSecret,
    /// The body is larger than the limit.
    #[error("the body is larger than the {limit}-byte limit")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body could not be read (the connection broke, for example).
    #[error("the request body could not be read")]
    BodyUnreadable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The body is not a valid Fermion event.
    #[error("invalid webhook body")]
    InvalidBody(#[source] ParseError),
    /// The Standard Webhooks signature is missing, stale or wrong (see
    /// [`Receiver::signed`] and [`ReceiverBuilder::require_signature`]).
    #[error("the webhook signature was refused")]
    Signature(#[source] SignatureError),
    /// The event's timestamp is further from now than the configured tolerance.
    #[error(
        "the event's timestamp is {seconds_off} s away from now, beyond the {tolerance_seconds} s \
         tolerance; check the server clock, or raise the tolerance"
    )]
    TimestampOutOfTolerance {
        /// How far the timestamp is from now, in seconds.
        seconds_off: i64,
        /// The configured tolerance, in seconds.
        tolerance_seconds: u64,
    },
}

impl ReceiveError {
    /// The HTTP status to answer with: 401 for a secret problem, 413 for a body over the limit,
    /// 400 for a body that is not a valid event.
    pub fn status(&self) -> StatusCode {
        match self {
            ReceiveError::MissingSecret
            | ReceiveError::EmptySecret
            | ReceiveError::RepeatedSecret
            | ReceiveError::WrongSecret
            | ReceiveError::Signature(_) => StatusCode::UNAUTHORIZED,
            ReceiveError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ReceiveError::BodyUnreadable(_)
            | ReceiveError::InvalidBody(_)
            | ReceiveError::TimestampOutOfTolerance { .. } => StatusCode::BAD_REQUEST,
        }
    }
}

impl ReceiveError {
    /// The message and each of its causes, joined by `: `: the text to answer the sender with,
    /// such as `invalid webhook body: field `payload.userEmail` is missing; ...`.
    pub fn explain(&self) -> String {
        crate::error_chain(self)
    }
}

impl From<ParseError> for ReceiveError {
    fn from(error: ParseError) -> Self {
        ReceiveError::InvalidBody(error)
    }
}

/// Verifies and parses incoming webhooks. Cheap to clone (shared inside).
///
/// Framework-agnostic: give it the request's headers and body bytes. The secret is checked
/// before the body is looked at.
///
/// ```
/// use fermion_webhooks::{EventKind, EventPayload, ReceiveError, Receiver, SECRET_HEADER, WebhookEvent, WebhookSecret};
/// use http::{HeaderMap, StatusCode};
///
/// let receiver = Receiver::new(WebhookSecret::new("s3cr3t").unwrap());
/// let body = WebhookEvent::new(EventPayload::sample(EventKind::FreeCourseEnrollment)).to_json();
///
/// let mut headers = HeaderMap::new();
/// headers.insert(SECRET_HEADER, "s3cr3t".parse().unwrap());
/// let event = receiver.receive(&headers, body.as_bytes()).unwrap();
/// assert_eq!(event.kind(), Some(EventKind::FreeCourseEnrollment));
///
/// headers.insert(SECRET_HEADER, "guess".parse().unwrap());
/// let error = receiver.receive(&headers, body.as_bytes()).unwrap_err();
/// assert!(matches!(error, ReceiveError::WrongSecret));
/// assert_eq!(error.status(), StatusCode::UNAUTHORIZED);
/// ```
#[derive(Clone, Debug)]
pub struct Receiver {
    inner: Arc<ReceiverConfig>,
}

struct ReceiverConfig {
    /// Fermion secrets, any of which the header may carry; none when only signatures count.
    secrets: Vec<PaddedSecret>,
    /// Standard Webhooks keys, any of which may have signed; none when signatures are not
    /// required.
    signing: Vec<SigningSecret>,
    signature_tolerance: Duration,
    max_body_bytes: usize,
    timestamp_tolerance: Option<Duration>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ReceiverConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("accepted_secrets", &self.secrets.len())
            .field("signing_keys", &self.signing.len())
            .field("max_body_bytes", &self.max_body_bytes)
            .field("timestamp_tolerance", &self.timestamp_tolerance)
            .finish_non_exhaustive()
    }
}

impl Receiver {
    /// A receiver accepting `secret`, with the default body limit and no timestamp tolerance.
    pub fn new(secret: WebhookSecret) -> Self {
        Self::builder(secret).build()
    }

    /// Starts configuring a receiver that accepts `secret`.
    pub fn builder(secret: WebhookSecret) -> ReceiverBuilder {
        let mut builder = Self::unconfigured();
        builder.config.secrets.push(PaddedSecret::new(&secret));
        builder
    }

    /// Starts configuring a receiver that requires a [Standard Webhooks](crate::signature)
    /// signature by `key`, and no Fermion secret header. To require both, start from
    /// [`Receiver::builder`] and add [`ReceiverBuilder::require_signature`].
    pub fn signed(key: SigningSecret) -> ReceiverBuilder {
        Self::unconfigured().require_signature(key)
    }

    fn unconfigured() -> ReceiverBuilder {
        ReceiverBuilder {
            config: ReceiverConfig {
                secrets: Vec::new(),
                signing: Vec::new(),
                signature_tolerance: signature::DEFAULT_TOLERANCE,
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
                timestamp_tolerance: None,
                clock: Arc::new(SystemClock),
            },
        }
    }

    /// The body limit in bytes.
    pub fn max_body_bytes(&self) -> usize {
        self.inner.max_body_bytes
    }

    /// Checks the `X-Fermion-Webhook-Secret` header alone, in constant time (nothing to check
    /// for a receiver built with [`signed`](Self::signed) alone). Call this before reading the
    /// body, so an unauthenticated sender cannot make you read or buffer anything.
    pub fn verify_secret(&self, headers: &HeaderMap) -> Result<(), ReceiveError> {
        let mut values = headers.get_all(SECRET_HEADER).iter();
        let first = values.next().map(|value| value.as_bytes());
        if first.is_some() && values.next().is_some() && !self.inner.secrets.is_empty() {
            return Err(ReceiveError::RepeatedSecret);
        }
        self.verify_secret_value(first)
    }

    fn verify_secret_value(&self, value: Option<&[u8]>) -> Result<(), ReceiveError> {
        if self.inner.secrets.is_empty() {
            return Ok(());
        }
        let value = value.ok_or(ReceiveError::MissingSecret)?;
        if value.is_empty() {
            return Err(ReceiveError::EmptySecret);
        }
        if matches_any(&self.inner.secrets, value) {
            Ok(())
        } else {
            Err(ReceiveError::WrongSecret)
        }
    }

    /// Checks the secret, the body's size and the signature (when required), then parses the
    /// body into a typed event.
    pub fn receive(&self, headers: &HeaderMap, body: &[u8]) -> Result<WebhookEvent, ReceiveError> {
        self.verify_secret(headers)?;
        self.verify_body(&|name| headers.get(name).map(|v| v.as_bytes()), body)
    }

    /// [`receive`](Self::receive) for frameworks without the `http` 1 crate (actix-web 4,
    /// Rocket 0.5, ...): `header` answers a header's value by its lower-case name
    /// (`x-fermion-webhook-secret`, `webhook-id`, ...), or `None`.
    ///
    /// ```
    /// use fermion_webhooks::{EventKind, EventPayload, Receiver, WebhookEvent, WebhookSecret};
    ///
    /// let receiver = Receiver::new(WebhookSecret::new("s3cr3t").unwrap());
    /// let body = WebhookEvent::new(EventPayload::sample(EventKind::PaidCourseSale)).to_json();
    /// // With actix-web: |name| request.headers().get(name).map(|v| v.as_bytes())
    /// let headers = [("x-fermion-webhook-secret", "s3cr3t")];
    /// let event = receiver
    ///     .receive_with(|name| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_bytes()), body.as_bytes())
    ///     .unwrap();
    /// assert_eq!(event.kind(), Some(EventKind::PaidCourseSale));
    /// ```
    pub fn receive_with<'h>(
        &self,
        header: impl Fn(&str) -> Option<&'h [u8]>,
        body: &[u8],
    ) -> Result<WebhookEvent, ReceiveError> {
        self.verify_secret_value(header(SECRET_HEADER.as_str()))?;
        self.verify_body(&header, body)
    }

    /// [`receive`](Self::receive) with the body as any [`http_body::Body`] (hyper's
    /// `Incoming`, axum's, tower's): the secret is checked before a byte is read, and the body
    /// is refused with [`ReceiveError::BodyTooLarge`] (413) as soon as its `Content-Length` or
    /// the bytes read pass the limit, so a huge body is never buffered.
    pub async fn receive_body<B>(
        &self,
        headers: &HeaderMap,
        body: B,
    ) -> Result<WebhookEvent, ReceiveError>
    where
        B: http_body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.verify_secret(headers)?;
        let limit = self.inner.max_body_bytes;
        let too_large = ReceiveError::BodyTooLarge { limit };
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(too_large);
        }
        let bytes = read_at_most(body, limit).await?;
        self.verify_body(&|name| headers.get(name).map(|v| v.as_bytes()), &bytes)
    }

    /// The body's size, its signature when required, then the parse.
    fn verify_body<'h>(
        &self,
        header: &dyn Fn(&str) -> Option<&'h [u8]>,
        body: &[u8],
    ) -> Result<WebhookEvent, ReceiveError> {
        if body.len() > self.inner.max_body_bytes {
            return Err(ReceiveError::BodyTooLarge {
                limit: self.inner.max_body_bytes,
            });
        }
        if !self.inner.signing.is_empty() {
            let now = self.inner.clock.now().timestamp();
            signature::verify(
                &self.inner.signing,
                header,
                body,
                now,
                self.inner.signature_tolerance,
            )
            .map_err(ReceiveError::Signature)?;
        }
        let event = WebhookEvent::from_json(body)?;
        if let Some(tolerance) = self.inner.timestamp_tolerance {
            let off = self
                .inner
                .clock
                .now()
                .signed_duration_since(event.timestamp);
            let off_ms = off.num_milliseconds().unsigned_abs();
            if u128::from(off_ms) > tolerance.as_millis() {
                return Err(ReceiveError::TimestampOutOfTolerance {
                    seconds_off: off.num_seconds(),
                    tolerance_seconds: tolerance.as_secs(),
                });
            }
        }
        Ok(event)
    }
}

/// The body's data frames, refused as soon as they pass `limit` bytes. (This loop is the whole
/// of what `http-body-util`'s `Limited` and `collect` would add, with three crates more for the
/// receive-only build.)
async fn read_at_most<B>(body: B, limit: usize) -> Result<Vec<u8>, ReceiveError>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(body);
    let mut bytes = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.map_err(|error| ReceiveError::BodyUnreadable(error.into()))?;
        // Trailers carry nothing a webhook needs.
        if let Ok(mut data) = frame.into_data() {
            use bytes::Buf;
            if bytes.len() + data.remaining() > limit {
                return Err(ReceiveError::BodyTooLarge { limit });
            }
            while data.has_remaining() {
                let chunk = data.chunk();
                bytes.extend_from_slice(chunk);
                let read = chunk.len();
                data.advance(read);
            }
        }
    }
    Ok(bytes)
}

/// Configuration for a [`Receiver`].
#[derive(Debug)]
pub struct ReceiverBuilder {
    config: ReceiverConfig,
}

impl ReceiverBuilder {
    /// Also accepts `secret`: during a rotation, accept the old and the new one. All accepted
    /// secrets are checked on every request, so timing does not reveal which one matched.
    pub fn also_accept(mut self, secret: WebhookSecret) -> Self {
        self.config.secrets.push(PaddedSecret::new(&secret));
        self
    }

    /// Requires a [Standard Webhooks](crate::signature) signature by `key` (or by any other key
    /// given this way: during a rotation, give the old and the new). With a Fermion secret also
    /// configured, both must hold.
    pub fn require_signature(mut self, key: SigningSecret) -> Self {
        self.config.signing.push(key);
        self
    }

    /// How far a signature's `webhook-timestamp` may be from now, either way (default 5
    /// minutes, [`signature::DEFAULT_TOLERANCE`]). Unlike the event's own timestamp, this is the
    /// attempt's time, fresh on every retry and re-trigger.
    pub fn signature_tolerance(mut self, tolerance: Duration) -> Self {
        self.config.signature_tolerance = tolerance;
        self
    }

    /// The largest body accepted, in bytes (default [`DEFAULT_MAX_BODY_BYTES`]).
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.config.max_body_bytes = limit;
        self
    }

    /// Refuse events whose `timestampIsoString` is further than `tolerance` from now. Off by
    /// default, because a re-triggered or retried event keeps its original timestamp: turn it on
    /// only with a tolerance longer than your sender's retry schedule.
    pub fn timestamp_tolerance(mut self, tolerance: Duration) -> Self {
        self.config.timestamp_tolerance = Some(tolerance);
        self
    }

    /// The clock used for the timestamp tolerance (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.config.clock = clock;
        self
    }

    /// Finishes configuration.
    pub fn build(self) -> Receiver {
        Receiver {
            inner: Arc::new(self.config),
        }
    }
}
