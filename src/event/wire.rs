//! Serialisation to the exact wire JSON: the keys of the TypeScript types, in their order.

use serde::ser::{Serialize, SerializeStruct, Serializer};

use super::iso_time::{iso_millis, push_iso_millis};
use super::{Course, EventPayload, Order, User, WebhookEvent};

impl WebhookEvent {
    /// The event as the exact JSON text Fermion sends.
    pub fn to_json(&self) -> String {
        // Sized for a typical event up front: growing from a small buffer would copy the text
        // three times.
        let mut json = Vec::with_capacity(768);
        self.write_json(&mut json);
        // Only whole UTF-8 strings and ASCII are written.
        String::from_utf8(json).unwrap_or_default()
    }

    /// Writes the wire JSON, the same bytes as the `Serialize` impl gives through serde_json,
    /// directly: the keys are known and need no escaping, and most values need none either.
    /// This is on every `emit`'s path, where serde_json's per-byte escaping of every key and
    /// value cost about 8,000 instructions an event.
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"eventUniqueId\":");
        push_str(out, &self.event_unique_id);
        out.extend_from_slice(b",\"timestampIsoString\":");
        push_iso_millis(out, &self.timestamp);
        out.extend_from_slice(if self.is_test_event {
            b",\"isTestEvent\":true,\"payload\":"
        } else {
            b",\"isTestEvent\":false,\"payload\":"
        });
        let (user, course, order) = match &self.payload {
            EventPayload::Unknown(unknown) => {
                // Serialising a JSON value into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, &unknown.raw);
                out.push(b'}');
                return;
            }
            EventPayload::FreeCourseEnrollment(p) => (&p.user, &p.course, None),
            EventPayload::PaidCourseSale(p) => (&p.user, &p.course, Some(&p.order)),
            EventPayload::PaymentFailed(p) => (&p.user, &p.course, Some(&p.order)),
            EventPayload::PaymentInitiatedNotCompleted(p) => (&p.user, &p.course, Some(&p.order)),
        };
        let head: [(&[u8], Option<&str>); 7] = [
            (b"{\"eventType\":", Some(self.payload.event_type())),
            (b",\"userId\":", Some(&user.id)),
            (b",\"userFullname\":", Some(&user.fullname)),
            (b",\"userEmail\":", Some(&user.email)),
            (b",\"userPhoneNumber\":", user.phone_number.as_deref()),
            (b",\"courseSlug\":", Some(&course.slug)),
            (b",\"courseName\":", Some(&course.name)),
        ];
        for (key, value) in head {
            out.extend_from_slice(key);
            push_optional_str(out, value);
        }
        if let Some(order) = order {
            out.extend_from_slice(b",\"orderId\":");
            push_str(out, &order.id);
            out.extend_from_slice(b",\"amountInSmallestUnit\":");
            out.extend_from_slice(order.amount_in_smallest_unit.to_string().as_bytes());
            out.extend_from_slice(b",\"currency\":");
            push_str(out, &order.currency);
        }
        match &self.payload {
            EventPayload::PaymentFailed(p) => {
                out.extend_from_slice(b",\"failureReason\":");
                push_optional_str(out, p.failure_reason.as_deref());
            }
            EventPayload::PaymentInitiatedNotCompleted(p) => {
                out.extend_from_slice(b",\"initiatedAtIsoString\":");
                push_iso_millis(out, &p.initiated_at);
            }
            _ => {}
        }
        out.extend_from_slice(b"}}");
    }

    /// The event as the exact JSON bytes Fermion sends.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        self.to_json().into_bytes()
    }
}

impl Serialize for WebhookEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut envelope = serializer.serialize_struct("WebhookEvent", 4)?;
        envelope.serialize_field("eventUniqueId", &self.event_unique_id)?;
        envelope.serialize_field("timestampIsoString", &iso_millis(&self.timestamp))?;
        envelope.serialize_field("isTestEvent", &self.is_test_event)?;
        envelope.serialize_field("payload", &self.payload)?;
        envelope.end()
    }
}

impl Serialize for EventPayload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (user, course, order) = match self {
            EventPayload::Unknown(unknown) => return unknown.raw.serialize(serializer),
            EventPayload::FreeCourseEnrollment(p) => (&p.user, &p.course, None),
            EventPayload::PaidCourseSale(p) => (&p.user, &p.course, Some(&p.order)),
            EventPayload::PaymentFailed(p) => (&p.user, &p.course, Some(&p.order)),
            EventPayload::PaymentInitiatedNotCompleted(p) => (&p.user, &p.course, Some(&p.order)),
        };
        let field_count = match self {
            EventPayload::FreeCourseEnrollment(_) => 7,
            EventPayload::PaidCourseSale(_) => 10,
            _ => 11,
        };
        let mut payload = serializer.serialize_struct("Payload", field_count)?;
        payload.serialize_field("eventType", self.event_type())?;
        write_user_and_course(&mut payload, user, course)?;
        if let Some(order) = order {
            write_order(&mut payload, order)?;
        }
        match self {
            EventPayload::PaymentFailed(p) => {
                payload.serialize_field("failureReason", &p.failure_reason)?;
            }
            EventPayload::PaymentInitiatedNotCompleted(p) => {
                payload.serialize_field("initiatedAtIsoString", &iso_millis(&p.initiated_at))?;
            }
            _ => {}
        }
        payload.end()
    }
}

fn write_user_and_course<S: SerializeStruct>(
    out: &mut S,
    user: &User,
    course: &Course,
) -> Result<(), S::Error> {
    out.serialize_field("userId", &user.id)?;
    out.serialize_field("userFullname", &user.fullname)?;
    out.serialize_field("userEmail", &user.email)?;
    // `null`, never omitted: the TypeScript type is `string | null`, not optional.
    out.serialize_field("userPhoneNumber", &user.phone_number)?;
    out.serialize_field("courseSlug", &course.slug)?;
    out.serialize_field("courseName", &course.name)
}

fn write_order<S: SerializeStruct>(out: &mut S, order: &Order) -> Result<(), S::Error> {
    out.serialize_field("orderId", &order.id)?;
    out.serialize_field("amountInSmallestUnit", &order.amount_in_smallest_unit)?;
    out.serialize_field("currency", &order.currency)
}

/// A JSON string: copied whole when nothing in it needs escaping (the usual case), otherwise
/// escaped by serde_json, so the bytes are serde_json's either way.
pub(crate) fn push_str(out: &mut Vec<u8>, value: &str) {
    // No early exit: a plain fold over the bytes compiles to a vector loop.
    let needs_escape = value.bytes().fold(false, |found, b| {
        found | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if needs_escape {
        // Serialising a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, value);
    } else {
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    }
}

fn push_optional_str(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(value) => push_str(out, value),
        None => out.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::event::{
        Course, EventPayload, FreeCourseEnrollment, Order, PaidCourseSale, PaymentFailed,
        PaymentInitiatedNotCompleted, User, WebhookEvent,
    };

    // Quotes, backslashes, control characters, DEL, non-ASCII and emoji: everything JSON
    // escaping treats specially or must leave alone.
    const TEXT: &str = "[a-z \"\\\\\\x00-\\x1f\\x7fé€😀]{0,40}";

    fn payload(
        kind: usize,
        strings: &[String],
        phone: Option<String>,
        amount: u64,
    ) -> EventPayload {
        let user = User {
            id: strings[0].clone(),
            fullname: strings[1].clone(),
            email: strings[2].clone(),
            phone_number: phone.clone(),
        };
        let course = Course {
            slug: strings[3].clone(),
            name: strings[4].clone(),
        };
        let order = Order {
            id: strings[5].clone(),
            amount_in_smallest_unit: amount,
            currency: strings[6].clone(),
        };
        match kind {
            0 => EventPayload::FreeCourseEnrollment(FreeCourseEnrollment { user, course }),
            1 => EventPayload::PaidCourseSale(PaidCourseSale {
                user,
                course,
                order,
            }),
            2 => EventPayload::PaymentFailed(PaymentFailed {
                user,
                course,
                order,
                failure_reason: phone,
            }),
            _ => EventPayload::PaymentInitiatedNotCompleted(PaymentInitiatedNotCompleted {
                user,
                course,
                order,
                initiated_at: chrono::DateTime::from_timestamp_millis(amount as i64 % (1 << 42))
                    .unwrap_or_default(),
            }),
        }
    }

    proptest! {
        #[test]
        fn to_json_writes_exactly_what_serde_json_writes(
            kind in 0usize..4,
            strings in proptest::collection::vec(TEXT, 8),
            phone in proptest::option::of(TEXT),
            amount in any::<u64>(),
            millis in 0i64..(1 << 42),
            test_event in any::<bool>(),
        ) {
            let timestamp = chrono::DateTime::from_timestamp_millis(millis).unwrap_or_default();
            let mut event = WebhookEvent::at(payload(kind, &strings, phone, amount), timestamp);
            event.event_unique_id = strings[7].clone();
            event.is_test_event = test_event;
            let theirs = serde_json::to_string(&event).expect("serialisable");
            prop_assert_eq!(event.to_json(), theirs);
        }
    }

    #[test]
    fn unknown_payloads_are_written_back_unchanged() {
        let text = r#"{"eventUniqueId":"u-1","timestampIsoString":"2026-11-28T10:00:00.000Z","isTestEvent":false,"payload":{"eventType":"refund-issued","amount":5,"note":"a \"b\""}}"#;
        let event = WebhookEvent::from_json(text.as_bytes()).expect("an unknown kind still parses");
        assert!(event.payload.kind().is_none());
        assert_eq!(event.to_json(), text);
        assert_eq!(event.to_json(), serde_json::to_string(&event).unwrap());
    }
}
