//! Encoding log lines with serde_json: an event line holds the event's head and its exact
//! body; an attempt line holds one recorded attempt.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::store::has_line_break;
use crate::store::record::{AttemptRecord, Delivery, StoredEvent};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventLineHead<'a> {
    record: &'static str,
    event_unique_id: &'a str,
    #[serde(with = "crate::event::time_serde::iso_millis")]
    timestamp_iso_string: DateTime<Utc>,
    event_type: &'a str,
    is_test_event: bool,
    deliveries: &'a [Delivery],
}

#[derive(Serialize)]
struct AttemptLine<'a> {
    record: &'static str,
    #[serde(flatten)]
    attempt: &'a AttemptRecord,
}

/// The event line for `event`, with its trailing newline, and where its body starts in it (0 if
/// the body is kept as `bodyText`).
pub(super) fn encode_event_line(event: &StoredEvent) -> (Vec<u8>, usize) {
    let head = EventLineHead {
        record: "event",
        event_unique_id: &event.event_unique_id,
        timestamp_iso_string: event.timestamp,
        event_type: &event.event_type,
        is_test_event: event.is_test_event,
        deliveries: &event.deliveries,
    };
    let mut line = Vec::with_capacity(event.body.len() + 512);
    // Serialising plain strings, numbers and timestamps into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut line, &head);
    line.pop(); // the closing brace; the body goes last
    let body = event.body.as_str();
    // A body is embedded as is when it is single-line JSON, so the line holds its exact bytes.
    let embeddable =
        !has_line_break(body) && serde_json::from_str::<serde::de::IgnoredAny>(body).is_ok();
    let body_start = if embeddable {
        line.extend_from_slice(b",\"body\":");
        let start = line.len();
        line.extend_from_slice(body.as_bytes());
        start
    } else {
        line.extend_from_slice(b",\"bodyText\":");
        line.extend_from_slice(&serde_json::to_vec(body).unwrap_or_default());
        0
    };
    line.extend_from_slice(b"}\n");
    (line, body_start)
}

/// The attempt line for `record`, with its trailing newline.
pub(super) fn encode_attempt_line(record: &AttemptRecord) -> Vec<u8> {
    let line = AttemptLine {
        record: "attempt",
        attempt: record,
    };
    let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}
