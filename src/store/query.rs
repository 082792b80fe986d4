//! Filters, paging cursors and pages for reading the log.

use chrono::{DateTime, Utc};

use super::LogError;
use super::record::{DeliveryState, StoredEvent};
use crate::event::EventKind;

/// Which events to read. The default matches every event.
///
/// ```
/// use fermion_webhooks::EventKind;
/// use fermion_webhooks::store::{DeliveryState, LogFilter};
///
/// let filter = LogFilter::default()
///     .between("2026-11-01T00:00:00Z".parse().unwrap(), "2026-12-01T00:00:00Z".parse().unwrap())
///     .kinds([EventKind::PaidCourseSale, EventKind::PaymentFailed])
///     .status(DeliveryState::Failed)
///     .test_events(false);
/// assert_eq!(filter.kinds.len(), 2);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// Only events at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only events before this time (exclusive).
    pub to: Option<DateTime<Utc>>,
    /// Only events of these kinds; empty means every type, unknown ones included.
    pub kinds: Vec<EventKind>,
    /// Only events whose overall status is this (see [`StoredEvent::status`]).
    pub status: Option<DeliveryState>,
    /// Only test events (`Some(true)`) or only live ones (`Some(false)`).
    pub is_test_event: Option<bool>,
    /// Only events with a delivery to one of these endpoints; empty means every event. (An
    /// admin API shows a course creator the events of their own endpoints.)
    pub endpoints: Vec<String>,
}

impl LogFilter {
    /// Events in `[from, to)`.
    pub fn between(mut self, from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        self.from = Some(from);
        self.to = Some(to);
        self
    }

    /// Events of these kinds only.
    pub fn kinds(mut self, kinds: impl IntoIterator<Item = EventKind>) -> Self {
        self.kinds = kinds.into_iter().collect();
        self
    }

    /// Events with this overall status only.
    pub fn status(mut self, status: DeliveryState) -> Self {
        self.status = Some(status);
        self
    }

    /// Events with a delivery to one of these endpoints only.
    pub fn to_endpoints<S: Into<String>>(
        mut self,
        endpoint_ids: impl IntoIterator<Item = S>,
    ) -> Self {
        self.endpoints = endpoint_ids.into_iter().map(Into::into).collect();
        self
    }

    /// Test events only (`true`) or live events only (`false`).
    pub fn test_events(mut self, is_test_event: bool) -> Self {
        self.is_test_event = Some(is_test_event);
        self
    }

    /// Whether `event` matches.
    pub fn matches(&self, event: &StoredEvent) -> bool {
        self.in_range(event.timestamp)
            && (self.kinds.is_empty() || self.kinds.iter().any(|k| k.as_str() == event.event_type))
            && self
                .is_test_event
                .is_none_or(|test| test == event.is_test_event)
            && (self.endpoints.is_empty()
                || event
                    .deliveries
                    .iter()
                    .any(|d| self.endpoints.contains(&d.endpoint_id)))
            && self.status.is_none_or(|wanted| wanted == event.status())
    }

    pub(crate) fn in_range(&self, timestamp: DateTime<Utc>) -> bool {
        self.from.is_none_or(|from| timestamp >= from) && self.to.is_none_or(|to| timestamp < to)
    }
}

/// Where a page ended; pass it to the next [`query`](super::LogStore::query) call.
///
/// Opaque: it encodes the last event's position in the newest-first order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cursor(String);

impl Cursor {
    pub(crate) fn new(position: Position) -> Self {
        Cursor(format!("{}.{}", position.micros, position.seq))
    }

    pub(crate) fn position(&self) -> Result<Position, LogError> {
        let invalid = || LogError::InvalidCursor {
            cursor: self.0.clone(),
        };
        let (micros, seq) = self.0.split_once('.').ok_or_else(invalid)?;
        Ok(Position {
            micros: micros.parse().map_err(|_| invalid())?,
            seq: seq.parse().map_err(|_| invalid())?,
        })
    }

    /// The cursor as text, to hand to a client.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for Cursor {
    fn from(text: String) -> Self {
        Cursor(text)
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event's place in the log's order: its timestamp, then the order it was appended in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Position {
    pub(crate) micros: i64,
    pub(crate) seq: u64,
}

impl Position {
    pub(crate) fn new(timestamp: DateTime<Utc>, seq: u64) -> Self {
        Self {
            micros: timestamp.timestamp_micros(),
            seq,
        }
    }
}

/// An event as a log list or an export shows it: everything but its attempts' details.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRow {
    /// `eventUniqueId`.
    pub event_unique_id: String,
    /// The payload's `eventType`.
    pub event_type: String,
    /// `timestampIsoString`.
    pub timestamp: DateTime<Utc>,
    /// `isTestEvent`.
    pub is_test_event: bool,
    /// The overall status (see [`StoredEvent::status`]).
    pub status: DeliveryState,
    /// Attempts across all deliveries.
    pub attempts: usize,
    /// The HTTP status of the most recent attempt that got one.
    pub last_response_status: Option<u16>,
    /// The JSON body exactly as sent.
    pub body: String,
}

impl EventRow {
    /// The event without deliveries, for a backend to fill in.
    pub(crate) fn into_event(self) -> StoredEvent {
        StoredEvent {
            event_unique_id: self.event_unique_id,
            event_type: self.event_type,
            timestamp: self.timestamp,
            is_test_event: self.is_test_event,
            body: self.body,
            deliveries: Vec::new(),
        }
    }
}

impl From<&StoredEvent> for EventRow {
    fn from(event: &StoredEvent) -> Self {
        Self {
            event_unique_id: event.event_unique_id.clone(),
            event_type: event.event_type.clone(),
            timestamp: event.timestamp,
            is_test_event: event.is_test_event,
            status: event.status(),
            attempts: event.attempt_count(),
            last_response_status: event.last_response_status(),
            body: event.body.clone(),
        }
    }
}

/// One page of a [`query`](super::LogStore::query).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The events, newest first.
    pub events: Vec<StoredEvent>,
    /// Where to continue, if more events may match.
    pub next_cursor: Option<Cursor>,
}
