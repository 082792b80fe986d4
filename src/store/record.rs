//! What the event log holds: events with their exact bodies, deliveries and attempts.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{EventKind, ParseError, WebhookEvent};

/// The most response-body bytes kept per attempt.
pub const RESPONSE_SNIPPET_LIMIT: usize = 4096;

/// Where one endpoint's delivery of an event stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryState {
    /// Not yet delivered; another attempt is scheduled.
    Pending,
    /// An attempt got a 2xx answer.
    Delivered,
    /// Every attempt failed and none is scheduled (or the failure was final, such as 410 Gone).
    Failed,
}

impl DeliveryState {
    /// The wire name: `pending`, `delivered` or `failed`.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DeliveryState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(DeliveryState::Pending),
            "delivered" => Ok(DeliveryState::Delivered),
            "failed" => Ok(DeliveryState::Failed),
            other => Err(format!(
                "unknown delivery status {other:?}; expected pending, delivered or failed"
            )),
        }
    }
}

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
        }
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
    #[serde(with = "super::time_serde::iso_millis")]
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
        })
    }
}

/// `text` cut to at most [`RESPONSE_SNIPPET_LIMIT`] bytes, on a character boundary.
/// `text` cut as [`cap_snippet`] cuts it, in place.
fn capped(mut text: String) -> String {
    let len = cap_snippet(&text).len();
    text.truncate(len);
    text
}

pub(crate) fn cap_snippet(text: &str) -> &str {
    if text.len() <= RESPONSE_SNIPPET_LIMIT {
        return text;
    }
    let mut end = RESPONSE_SNIPPET_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// One endpoint's delivery of an event. Holds the endpoint's id and URL, never its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The endpoint's id.
    pub endpoint_id: String,
    /// The URL the event is sent to.
    pub url: String,
    /// Where the delivery stands.
    pub state: DeliveryState,
    /// When the next attempt is due, while pending.
    #[serde(with = "super::time_serde::iso_millis_option")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Every attempt so far, oldest first.
    pub attempts: Vec<Attempt>,
}

impl Delivery {
    /// A pending delivery with no attempt yet, due at `due`.
    pub fn pending(
        endpoint_id: impl Into<String>,
        url: impl Into<String>,
        due: DateTime<Utc>,
    ) -> Self {
        Self {
            endpoint_id: endpoint_id.into(),
            url: url.into(),
            state: DeliveryState::Pending,
            next_attempt_at: Some(due),
            attempts: Vec::new(),
        }
    }
}

impl Delivery {
    /// Applies a recorded attempt: adds it, takes the new state, and keeps a next attempt time
    /// only while pending.
    pub(crate) fn apply(&mut self, record: AttemptRecord) {
        self.attempts.push(record.attempt);
        self.state = record.state;
        self.next_attempt_at = match record.state {
            DeliveryState::Pending => record.next_attempt_at,
            _ => None,
        };
    }
}

/// An event as the log holds it: its exact body bytes and its deliveries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    /// `eventUniqueId`.
    pub event_unique_id: String,
    /// The payload's `eventType`.
    pub event_type: String,
    /// `timestampIsoString`.
    pub timestamp: DateTime<Utc>,
    /// `isTestEvent`.
    pub is_test_event: bool,
    /// The JSON body exactly as sent: "copy" gives these bytes, a re-trigger resends them.
    pub body: String,
    /// One delivery per endpoint the event was sent to.
    pub deliveries: Vec<Delivery>,
}

impl StoredEvent {
    /// A log entry for `event` (its body serialised now), with these deliveries.
    pub fn new(event: &WebhookEvent, deliveries: Vec<Delivery>) -> Self {
        Self {
            event_unique_id: event.event_unique_id.clone(),
            event_type: event.event_type().to_owned(),
            timestamp: event.timestamp,
            is_test_event: event.is_test_event,
            body: event.to_json(),
            deliveries,
        }
    }

    /// The kind, if it is one of the four known kinds.
    pub fn kind(&self) -> Option<EventKind> {
        EventKind::from_wire_name(&self.event_type)
    }

    /// The body parsed back into a typed event.
    pub fn event(&self) -> Result<WebhookEvent, ParseError> {
        WebhookEvent::from_json(self.body.as_bytes())
    }

    /// The event's overall status: `failed` if any delivery failed, else `pending` if any is
    /// pending, else `delivered` (also for an event with no delivery).
    pub fn status(&self) -> DeliveryState {
        aggregate_status(self.deliveries.iter().map(|d| d.state))
    }

    /// Attempts across all deliveries.
    pub fn attempt_count(&self) -> usize {
        self.deliveries.iter().map(|d| d.attempts.len()).sum()
    }

    /// The HTTP status of the most recent attempt that got one.
    pub fn last_response_status(&self) -> Option<u16> {
        self.deliveries
            .iter()
            .flat_map(|d| d.attempts.iter())
            .filter_map(|a| a.http_status().map(|s| (a.started_at, s)))
            .max_by_key(|(at, _)| *at)
            .map(|(_, status)| status)
    }
}

/// The status of an event from its deliveries' states.
pub(crate) fn aggregate_status(states: impl Iterator<Item = DeliveryState>) -> DeliveryState {
    let mut status = DeliveryState::Delivered;
    for state in states {
        match state {
            DeliveryState::Failed => return DeliveryState::Failed,
            DeliveryState::Pending => status = DeliveryState::Pending,
            DeliveryState::Delivered => {}
        }
    }
    status
}

/// A delivery attempt to record, with the delivery's new state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRecord {
    /// The event.
    pub event_unique_id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// What happened.
    pub attempt: Attempt,
    /// The delivery's state after it.
    pub state: DeliveryState,
    /// When the next attempt is due, if the delivery stays pending.
    #[serde(with = "super::time_serde::iso_millis_option")]
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// A pending delivery whose next attempt is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueDelivery {
    /// The event.
    pub event_unique_id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// Where to send it.
    pub url: String,
    /// When it became due.
    pub next_attempt_at: DateTime<Utc>,
    /// Attempts already made for this delivery.
    pub attempts_made: usize,
}
