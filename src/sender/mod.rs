//! Sending one delivery attempt: the pluggable [`Sender`] trait and its HTTP implementation.

mod http;
mod resolver;
mod ssrf;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::secret::WebhookSecret;
use crate::store::{Attempt, AttemptTrigger, TransportErrorKind};

pub use self::http::{DEFAULT_ATTEMPT_TIMEOUT, HttpSender, HttpSenderBuilder, HttpSenderError};
pub use self::ssrf::is_global_address;

/// One attempt to deliver a body.
#[derive(Clone, Copy, Debug)]
pub struct DeliveryRequest<'a> {
    /// Where to POST.
    pub url: &'a str,
    /// The endpoint's secret, for the `X-Fermion-Webhook-Secret` header.
    pub secret: &'a WebhookSecret,
    /// The exact JSON body.
    pub body: &'a [u8],
    /// The event's id (for a sender's own logging).
    pub event_unique_id: &'a str,
}

/// What one attempt came to. A 4xx or 5xx answer is an outcome like any other, not an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendOutcome {
    /// When the attempt started.
    pub started_at: DateTime<Utc>,
    /// How long it took.
    pub duration: Duration,
    /// The answer, or why there was none.
    pub result: SendResult,
}

/// The answer to an attempt, or why there was none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendResult {
    /// The endpoint answered.
    Response {
        /// The HTTP status.
        status: u16,
        /// The start of the body, at most 4 KiB.
        snippet: String,
        /// The `Retry-After` header, when present and readable.
        retry_after: Option<Duration>,
    },
    /// There was no answer.
    Failed {
        /// What kind of failure.
        kind: TransportErrorKind,
        /// A description (never the secret).
        message: String,
    },
}

impl SendOutcome {
    /// The attempt to record in the log.
    pub fn to_attempt(&self, trigger: AttemptTrigger) -> Attempt {
        self.clone().into_attempt(trigger)
    }

    /// The attempt to record in the log, taking the snippet or message instead of copying it.
    pub fn into_attempt(self, trigger: AttemptTrigger) -> Attempt {
        match self.result {
            SendResult::Response {
                status, snippet, ..
            } => Attempt::response(self.started_at, self.duration, status, snippet, trigger),
            SendResult::Failed { kind, message } => {
                Attempt::transport_error(self.started_at, self.duration, kind, message, trigger)
            }
        }
    }

    /// Replaces every occurrence of `secret` in the snippet or error message with
    /// `<redacted>`, so an endpoint that echoes request headers cannot put the secret into the
    /// log. The dispatcher does this before recording any attempt.
    pub fn redact(&mut self, secret: &WebhookSecret) {
        let value = secret.expose_secret();
        let text = match &mut self.result {
            SendResult::Response { snippet, .. } => snippet,
            SendResult::Failed { message, .. } => message,
        };
        if text.contains(value) {
            *text = text.replace(value, "<redacted>");
        }
    }

    /// The HTTP status, if there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self.result {
            SendResult::Response { status, .. } => Some(status),
            SendResult::Failed { .. } => None,
        }
    }
}

/// Delivers one attempt. Pluggable: [`HttpSender`] is the real one; tests and other transports
/// implement their own. Object-safe, so a dispatcher holds an `Arc<dyn Sender>`.
#[async_trait]
pub trait Sender: Send + Sync + std::fmt::Debug {
    /// POSTs `request.body` to `request.url` with the secret header, once, and reports what
    /// happened. Never panics and never retries: retries are the dispatcher's job.
    async fn send(&self, request: DeliveryRequest<'_>) -> SendOutcome;
}
