//! What the event log holds: events with their exact bodies, deliveries and attempts.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{EventKind, ParseError, WebhookEvent};

pub use super::attempt::{
    Attempt, AttemptOutcome, AttemptTrigger, RESPONSE_SNIPPET_LIMIT, TransportErrorKind,
};

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
    #[serde(with = "crate::event::time_serde::iso_millis_option")]
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

/// Who holds a claim on deliveries (see [`LogStore::claim_due`](super::LogStore::claim_due)):
/// random, so a caller that lost its claim cannot record over the one that took it over.
/// Shared text: every delivery of a claim holds the token, and copies of it cost nothing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClaimToken(Arc<str>);

impl ClaimToken {
    /// A new random token.
    pub fn new() -> Self {
        Self(Arc::from(
            uuid::Uuid::new_v4()
                .hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer()) as &str,
        ))
    }

    /// The token as text, as a backend stores it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `now + lease`, saturating.
pub(crate) fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    chrono::TimeDelta::from_std(lease)
        .ok()
        .and_then(|lease| now.checked_add_signed(lease))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl Default for ClaimToken {
    fn default() -> Self {
        Self::new()
    }
}

impl From<String> for ClaimToken {
    fn from(text: String) -> Self {
        Self(Arc::from(text))
    }
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
    #[serde(with = "crate::event::time_serde::iso_millis_option")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The claim the attempt was made under, or `None` for one made without a claim (which is
    /// refused while a live claim holds the delivery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<ClaimToken>,
}

/// What a dispatcher sends for an event: its body and whether it is a test event, from
/// [`LogStore::bodies`](super::LogStore::bodies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventBody {
    /// `eventUniqueId`.
    pub event_unique_id: String,
    /// The JSON body exactly as logged.
    pub body: String,
    /// `isTestEvent`.
    pub is_test_event: bool,
}

/// A pending delivery whose next attempt is due, claimed for the caller.
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
    /// The claim it is held under: present it when recording the attempt.
    pub claim: ClaimToken,
    /// When the claim's lease ends.
    pub claimed_until: DateTime<Utc>,
}

/// What [`LogStore::claim_due`](super::LogStore::claim_due) is asked to claim: up to `limit`
/// due deliveries for `lease`, fairly across endpoints.
///
/// ```
/// use std::time::Duration;
/// use fermion_webhooks::store::ClaimRequest;
///
/// let request = ClaimRequest::new(chrono::Utc::now(), 64, Duration::from_secs(60))
///     .per_endpoint(16)
///     .skipping(["paused-endpoint"]);
/// assert_eq!(request.per_endpoint, 16);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClaimRequest {
    /// Deliveries due at or before this time are claimable; claims live at this time count.
    pub now: DateTime<Utc>,
    /// The most deliveries to claim.
    pub limit: usize,
    /// How long the claims last.
    pub lease: Duration,
    /// The most deliveries of one endpoint under live claims afterwards, counting those
    /// claimed earlier by anyone (default: no limit).
    pub per_endpoint: usize,
    /// Endpoints whose deliveries are not claimed (paused ones, say): they stay pending.
    pub skip_endpoints: Vec<String>,
}

impl ClaimRequest {
    /// Up to `limit` due deliveries at `now`, claimed for `lease`, with no per-endpoint limit.
    pub fn new(now: DateTime<Utc>, limit: usize, lease: Duration) -> Self {
        Self {
            now,
            limit,
            lease,
            per_endpoint: usize::MAX,
            skip_endpoints: Vec::new(),
        }
    }

    /// At most `cap` deliveries of one endpoint under live claims, these included.
    pub fn per_endpoint(mut self, cap: usize) -> Self {
        self.per_endpoint = cap;
        self
    }

    /// Leaves these endpoints' deliveries alone.
    pub fn skipping<S: Into<String>>(mut self, endpoint_ids: impl IntoIterator<Item = S>) -> Self {
        self.skip_endpoints
            .extend(endpoint_ids.into_iter().map(Into::into));
        self
    }

    /// The per-endpoint cap as a database integer.
    pub(crate) fn per_endpoint_i64(&self) -> i64 {
        i64::try_from(self.per_endpoint).unwrap_or(i64::MAX)
    }

    /// The limit as a database integer.
    pub(crate) fn limit_i64(&self) -> i64 {
        i64::try_from(self.limit).unwrap_or(i64::MAX)
    }
}

/// One endpoint's pending deliveries, for [`LogStore::backlog`](super::LogStore::backlog).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointBacklog {
    /// The endpoint.
    pub endpoint_id: String,
    /// How many of its deliveries are pending.
    pub pending: u64,
    /// The timestamp of the oldest event with a pending delivery to it.
    pub oldest: DateTime<Utc>,
}

/// Orders claimed deliveries as [`LogStore::claim_due`](super::LogStore::claim_due) returns
/// them: each endpoint's earliest first, then each one's second, and so on, earliest due first
/// within a round (for backends whose claiming statement returns rows in no order).
pub(crate) fn round_robin(mut claimed: Vec<DueDelivery>) -> Vec<DueDelivery> {
    claimed.sort_by(|a, b| {
        (&a.endpoint_id, a.next_attempt_at).cmp(&(&b.endpoint_id, b.next_attempt_at))
    });
    let mut ranked: Vec<(usize, DueDelivery)> = Vec::with_capacity(claimed.len());
    for due in claimed {
        let round = match ranked.last() {
            Some((last, previous)) if previous.endpoint_id == due.endpoint_id => last + 1,
            _ => 0,
        };
        ranked.push((round, due));
    }
    ranked.sort_by(|(a_round, a), (b_round, b)| {
        (a_round, a.next_attempt_at).cmp(&(b_round, b.next_attempt_at))
    });
    ranked.into_iter().map(|(_, due)| due).collect()
}
