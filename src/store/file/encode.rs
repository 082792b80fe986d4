//! Encoding log lines. New event lines (no attempts yet, which is every append) are written
//! directly, the way `WebhookEvent::to_json` is: serde_json's serializer escaped every key and
//! value byte by byte, and callers encode on the path every durable append waits on. Anything
//! else goes through serde. A proptest holds both to the same bytes.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::event::{push_iso_millis, push_str};
use crate::store::has_line_break;
use crate::store::record::{AttemptOutcome, AttemptTrigger, TransportErrorKind};
use crate::store::record::{AttemptRecord, Delivery, StoredEvent};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventLineHead<'a> {
    record: &'static str,
    event_unique_id: &'a str,
    #[serde(with = "crate::store::time_serde::iso_millis")]
    timestamp_iso_string: DateTime<Utc>,
    event_type: &'a str,
    is_test_event: bool,
    deliveries: &'a [Delivery],
}

/// Whether an event's body is known to be valid JSON (this crate wrote or parsed it), or must
/// be checked before it is embedded in a line as JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BodyJson {
    Known,
    Unchecked,
}

/// The event line for `event`, with its trailing newline, and where its body starts in it (0 if
/// the body is kept as `bodyText`).
pub(super) fn encode_event_line(event: &StoredEvent, json: BodyJson) -> (Vec<u8>, usize) {
    // Room for the whole line as a new event's line is written (unescaped), so it is allocated
    // once: a line past about 1 KiB that grows costs a second, large allocation, and large
    // blocks are glibc's slow path.
    let head: usize = 160
        + event.event_unique_id.len()
        + event.event_type.len()
        + event
            .deliveries
            .iter()
            .map(|d| 112 + d.endpoint_id.len() + d.url.len())
            .sum::<usize>();
    let mut line = Vec::with_capacity(event.body.len() + head);
    if event.deliveries.iter().all(|d| d.attempts.is_empty()) {
        write_new_head(&mut line, event);
    } else {
        write_head_with_serde(&mut line, event);
    }
    let body = event.body.as_str();
    // A body is embedded as is when it is single-line JSON; checking that it is JSON costs
    // more than the rest of the line, so a body known to be JSON is not checked again.
    let embeddable = !has_line_break(body)
        && (json == BodyJson::Known || serde_json::from_str::<serde::de::IgnoredAny>(body).is_ok());
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

/// The attempt line for `record`, with its trailing newline: what serde_json writes for
/// `{"record":"attempt", ..record}`, written directly like a new event's line (every delivery
/// records one; serde took about 6,000 instructions, cloning the attempt on the way).
pub(super) fn encode_attempt_line(record: &AttemptRecord) -> Vec<u8> {
    let attempt = &record.attempt;
    let mut line = Vec::with_capacity(320);
    line.extend_from_slice(b"{\"record\":\"attempt\",\"eventUniqueId\":");
    push_str(&mut line, &record.event_unique_id);
    line.extend_from_slice(b",\"endpointId\":");
    push_str(&mut line, &record.endpoint_id);
    line.extend_from_slice(b",\"attempt\":{\"startedAt\":");
    push_iso_millis(&mut line, &attempt.started_at);
    line.extend_from_slice(b",\"durationMs\":");
    let millis = u64::try_from(attempt.duration.as_millis()).unwrap_or(u64::MAX);
    line.extend_from_slice(itoa::Buffer::new().format(millis).as_bytes());
    match &attempt.outcome {
        AttemptOutcome::Response { status, snippet } => {
            line.extend_from_slice(b",\"httpStatus\":");
            line.extend_from_slice(itoa::Buffer::new().format(*status).as_bytes());
            line.extend_from_slice(b",\"responseSnippet\":");
            push_str(&mut line, snippet);
        }
        AttemptOutcome::TransportError { kind, message } => {
            line.extend_from_slice(b",\"errorKind\":\"");
            line.extend_from_slice(error_kind_name(*kind).as_bytes());
            line.extend_from_slice(b"\",\"errorMessage\":");
            push_str(&mut line, message);
        }
    }
    line.extend_from_slice(b",\"trigger\":\"");
    line.extend_from_slice(trigger_name(attempt.trigger).as_bytes());
    line.extend_from_slice(b"\"},\"state\":\"");
    line.extend_from_slice(record.state.as_str().as_bytes());
    line.extend_from_slice(b"\",\"nextAttemptAt\":");
    match &record.next_attempt_at {
        Some(at) => push_iso_millis(&mut line, at),
        None => line.extend_from_slice(b"null"),
    }
    line.extend_from_slice(b"}\n");
    line
}

/// The serde name (kebab-case) of a trigger.
fn trigger_name(trigger: AttemptTrigger) -> &'static str {
    match trigger {
        AttemptTrigger::FirstTry => "first-try",
        AttemptTrigger::AutomaticRetry => "automatic-retry",
        AttemptTrigger::ManualRetrigger => "manual-retrigger",
        AttemptTrigger::Test => "test",
    }
}

/// The serde name (kebab-case) of a transport error's kind.
fn error_kind_name(kind: TransportErrorKind) -> &'static str {
    match kind {
        TransportErrorKind::Timeout => "timeout",
        TransportErrorKind::Connect => "connect",
        TransportErrorKind::Dns => "dns",
        TransportErrorKind::Tls => "tls",
        TransportErrorKind::BlockedAddress => "blocked-address",
        TransportErrorKind::Other => "other",
    }
}

/// What serde_json writes for an attempt line; the proptest's reference.
#[cfg(test)]
fn attempt_line_with_serde(record: &AttemptRecord) -> Vec<u8> {
    #[derive(Serialize)]
    struct AttemptLine<'a> {
        record: &'static str,
        #[serde(flatten)]
        attempt: &'a AttemptRecord,
    }
    let line = AttemptLine {
        record: "attempt",
        attempt: record,
    };
    let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// The head of the event line (everything but the body), without its closing brace.
fn write_head_with_serde(line: &mut Vec<u8>, event: &StoredEvent) {
    let head = EventLineHead {
        record: "event",
        event_unique_id: &event.event_unique_id,
        timestamp_iso_string: event.timestamp,
        event_type: &event.event_type,
        is_test_event: event.is_test_event,
        deliveries: &event.deliveries,
    };
    // Serialising plain strings, numbers and timestamps into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *line, &head);
    line.pop(); // the closing brace; the body goes last
}

/// What `write_head_with_serde` writes for an event whose deliveries have no attempts.
fn write_new_head(line: &mut Vec<u8>, event: &StoredEvent) {
    line.extend_from_slice(b"{\"record\":\"event\",\"eventUniqueId\":");
    push_str(line, &event.event_unique_id);
    line.extend_from_slice(b",\"timestampIsoString\":");
    push_iso_millis(line, &event.timestamp);
    line.extend_from_slice(b",\"eventType\":");
    push_str(line, &event.event_type);
    line.extend_from_slice(if event.is_test_event {
        b",\"isTestEvent\":true,\"deliveries\":["
    } else {
        b",\"isTestEvent\":false,\"deliveries\":["
    });
    for (i, delivery) in event.deliveries.iter().enumerate() {
        if i > 0 {
            line.push(b',');
        }
        line.extend_from_slice(b"{\"endpointId\":");
        push_str(line, &delivery.endpoint_id);
        line.extend_from_slice(b",\"url\":");
        push_str(line, &delivery.url);
        line.extend_from_slice(b",\"state\":");
        push_str(line, delivery.state.as_str());
        line.extend_from_slice(b",\"nextAttemptAt\":");
        match &delivery.next_attempt_at {
            Some(at) => push_iso_millis(line, at),
            None => line.extend_from_slice(b"null"),
        }
        line.extend_from_slice(b",\"attempts\":[]}");
    }
    line.push(b']');
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{
        attempt_line_with_serde, encode_attempt_line, write_head_with_serde, write_new_head,
    };
    use crate::store::record::{
        Attempt, AttemptRecord, AttemptTrigger, Delivery, DeliveryState, StoredEvent,
        TransportErrorKind,
    };

    const TEXT: &str = "[a-z \"\\\\\\x00-\\x1f\\x7fé€]{0,24}";

    proptest! {
        #[test]
        fn new_event_heads_are_written_exactly_as_serde_writes_them(
            id in TEXT,
            event_type in TEXT,
            is_test_event in any::<bool>(),
            millis in 0i64..(1 << 42),
            deliveries in proptest::collection::vec(
                (TEXT, TEXT, 0u8..3, proptest::option::of(0i64..(1 << 42))),
                0..4,
            ),
        ) {
            let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
            let event = StoredEvent {
                event_unique_id: id,
                event_type,
                timestamp: at(millis),
                is_test_event,
                body: "{}".into(),
                deliveries: deliveries
                    .into_iter()
                    .map(|(endpoint_id, url, state, next)| Delivery {
                        endpoint_id,
                        url,
                        state: [DeliveryState::Pending, DeliveryState::Delivered, DeliveryState::Failed]
                            [usize::from(state)],
                        next_attempt_at: next.map(at),
                        attempts: Vec::new(),
                    })
                    .collect(),
            };
            let mut theirs = Vec::new();
            write_head_with_serde(&mut theirs, &event);
            let mut ours = Vec::new();
            write_new_head(&mut ours, &event);
            prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs));
        }

        #[test]
        fn attempt_lines_are_written_exactly_as_serde_writes_them(
            id in TEXT,
            endpoint in TEXT,
            started in 0i64..(1 << 42),
            duration_ms in any::<u64>(),
            answered in any::<bool>(),
            status in any::<u16>(),
            text in TEXT,
            kind in 0usize..6,
            trigger in 0usize..4,
            state in 0usize..3,
            next in proptest::option::of(0i64..(1 << 42)),
        ) {
            let at = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
            let duration = std::time::Duration::from_millis(duration_ms);
            let trigger = [
                AttemptTrigger::FirstTry,
                AttemptTrigger::AutomaticRetry,
                AttemptTrigger::ManualRetrigger,
                AttemptTrigger::Test,
            ][trigger];
            let attempt = if answered {
                Attempt::response(at(started), duration, status, &text, trigger)
            } else {
                let kind = [
                    TransportErrorKind::Timeout,
                    TransportErrorKind::Connect,
                    TransportErrorKind::Dns,
                    TransportErrorKind::Tls,
                    TransportErrorKind::BlockedAddress,
                    TransportErrorKind::Other,
                ][kind];
                Attempt::transport_error(at(started), duration, kind, text, trigger)
            };
            let record = AttemptRecord {
                event_unique_id: id,
                endpoint_id: endpoint,
                attempt,
                state: [DeliveryState::Pending, DeliveryState::Delivered, DeliveryState::Failed][state],
                next_attempt_at: next.map(at),
            };
            let ours = encode_attempt_line(&record);
            let theirs = attempt_line_with_serde(&record);
            prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs));
        }
    }
}
