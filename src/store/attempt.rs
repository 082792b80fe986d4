//! One delivery attempt as the log holds it: how it started, how it ended, and its JSON form.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The most response-body bytes kept per attempt.
pub const RESPONSE_SNIPPET_LIMIT: usize = 4096;

/// What started an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttemptTrigger {
    /// The first delivery attempt after the event was emitted.
    FirstTry,
    /// A retry from the schedule after a failed attempt.
    AutomaticRetry,
    /// A re-trigger asked for by a person or a recovery tool.
    ManualRetrigger,
    /// A test event sent from the dashboard or a CLI.
    Test,
}

/// Why an attempt got no HTTP answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// No answer within the timeout.
    Timeout,
    /// The connection was refused or broke.
    Connect,
    /// The host name did not resolve.
    Dns,
    /// The TLS handshake failed.
    Tls,
    /// The address is private, loopback or otherwise not allowed (SSRF guard).
    BlockedAddress,
    /// Anything else.
    Other,
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The endpoint answered (any status, 2xx or not).
    Response {
        /// The HTTP status.
        status: u16,
        /// The start of the response body, at most [`RESPONSE_SNIPPET_LIMIT`] bytes.
        snippet: String,
    },
    /// There was no HTTP answer.
    TransportError {
        /// What kind of failure.
        kind: TransportErrorKind,
        /// A human description (never containing the secret).
        message: String,
    },
}

/// One delivery attempt of an event to an endpoint.
///
/// In JSON (the file log, the `logs attempts` command) it is one flat object:
/// `{"startedAt","durationMs","httpStatus","responseSnippet","trigger"}` for an answer, with
/// `errorKind` and `errorMessage` instead of the last two for a transport error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "AttemptWire", try_from = "AttemptWire")]
pub struct Attempt {
    /// When the request started.
    pub started_at: DateTime<Utc>,
    /// How long it took, to the millisecond.
    pub duration: Duration,
    /// What happened.
    pub outcome: AttemptOutcome,
    /// What started it.
    pub trigger: AttemptTrigger,
    /// The URL the request went to, when known (an endpoint's URL may change between
    /// attempts; logs written before attempts recorded it have none).
    pub url: Option<String>,
}

impl Attempt {
    /// An attempt that got an HTTP answer; the snippet is cut to [`RESPONSE_SNIPPET_LIMIT`] bytes
    /// (on a character boundary).
    pub fn response(
        started_at: DateTime<Utc>,
        duration: Duration,
        status: u16,
        snippet: impl Into<String>,
        trigger: AttemptTrigger,
    ) -> Self {
        Self {
            started_at,
            duration,
            outcome: AttemptOutcome::Response {
                status,
                snippet: capped(snippet.into()),
            },
            trigger,
            url: None,
        }
    }

    /// An attempt that got no HTTP answer.
    pub fn transport_error(
        started_at: DateTime<Utc>,
        duration: Duration,
        kind: TransportErrorKind,
        message: impl Into<String>,
        trigger: AttemptTrigger,
    ) -> Self {
        Self {
            started_at,
            duration,
            outcome: AttemptOutcome::TransportError {
                kind,
                message: capped(message.into()),
            },
            trigger,
            url: None,
        }
    }

    /// The attempt, noting the URL its request went to.
    pub fn sent_to(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The HTTP status, if there was an answer.
    pub fn http_status(&self) -> Option<u16> {
        match self.outcome {
            AttemptOutcome::Response { status, .. } => Some(status),
            AttemptOutcome::TransportError { .. } => None,
        }
    }

    /// Whether the endpoint answered 2xx.
    pub fn succeeded(&self) -> bool {
        self.http_status()
            .is_some_and(|status| (200..300).contains(&status))
    }
}

/// The flat JSON form of an [`Attempt`].
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttemptWire {
    #[serde(with = "crate::event::time_serde::iso_millis")]
    started_at: DateTime<Utc>,
    duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_snippet: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_kind: Option<TransportErrorKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<String>,
    trigger: AttemptTrigger,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

impl From<Attempt> for AttemptWire {
    fn from(attempt: Attempt) -> Self {
        let (http_status, response_snippet, error_kind, error_message) = match attempt.outcome {
            AttemptOutcome::Response { status, snippet } => {
                (Some(status), Some(snippet), None, None)
            }
            AttemptOutcome::TransportError { kind, message } => {
                (None, None, Some(kind), Some(message))
            }
        };
        Self {
            started_at: attempt.started_at,
            duration_ms: u64::try_from(attempt.duration.as_millis()).unwrap_or(u64::MAX),
            http_status,
            response_snippet,
            error_kind,
            error_message,
            trigger: attempt.trigger,
            url: attempt.url,
        }
    }
}

impl TryFrom<AttemptWire> for Attempt {
    type Error = String;

    fn try_from(wire: AttemptWire) -> Result<Self, Self::Error> {
        let outcome = match (wire.http_status, wire.error_kind) {
            (Some(status), None) => AttemptOutcome::Response {
                status,
                snippet: wire.response_snippet.unwrap_or_default(),
            },
            (None, Some(kind)) => AttemptOutcome::TransportError {
                kind,
                message: wire.error_message.unwrap_or_default(),
            },
            _ => return Err("an attempt has either httpStatus or errorKind".to_owned()),
        };
        Ok(Attempt {
            started_at: wire.started_at,
            duration: Duration::from_millis(wire.duration_ms),
            outcome,
            trigger: wire.trigger,
            url: wire.url,
        })
    }
}

/// `text` cut as [`cap_snippet`] cuts it, in place.
fn capped(mut text: String) -> String {
    let len = cap_snippet(&text).len();
    text.truncate(len);
    text
}

/// `text` cut to at most [`RESPONSE_SNIPPET_LIMIT`] bytes, on a character boundary.
fn cap_snippet(text: &str) -> &str {
    if text.len() <= RESPONSE_SNIPPET_LIMIT {
        return text;
    }
    let mut end = RESPONSE_SNIPPET_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
