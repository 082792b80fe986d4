//! Serialisation to the exact wire JSON: the keys of the TypeScript types, in their order.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::ser::{Serialize, SerializeStruct, Serializer};

use super::{Course, EventPayload, Order, User, WebhookEvent};

/// Formats a timestamp as JavaScript's `toISOString()` does: UTC, milliseconds, `Z`.
pub(crate) fn iso_millis(timestamp: &DateTime<Utc>) -> String {
    timestamp.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl WebhookEvent {
    /// The event as the exact JSON text Fermion sends.
    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: every map key is a string and there are no
        // floating-point numbers, so the error branch of serde_json is unreachable.
        // Sized for a typical event up front: growing from serde_json's default 128 bytes
        // would copy the text three times.
        let mut json = Vec::with_capacity(768);
        if serde_json::to_writer(&mut json, self).is_err() {
            return String::new();
        }
        // serde_json writes only valid UTF-8.
        String::from_utf8(json).unwrap_or_default()
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
