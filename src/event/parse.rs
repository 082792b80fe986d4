//! Parsing the wire JSON: lenient about what may evolve, precise about what is wrong.
//!
//! Parsing runs in two steps. First serde reads the body into loosely typed slots (see
//! [`super::loose`]), one per known key, ignoring unknown keys; that step only fails on bytes
//! that are not JSON. Then [`build_event`] checks each slot against the event's kind, which is
//! only known once `eventType` has been read (it may come after the other keys), and names the
//! first field that is missing or of the wrong type.

use chrono::{DateTime, Utc};
use serde::de::{self, Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::loose::{ENVELOPE_KEYS, Envelope, PayloadSlots, Scalar, TopLevel};

use super::{
    Course, EventKind, EventPayload, FreeCourseEnrollment, Order, PaidCourseSale, PaymentFailed,
    PaymentInitiatedNotCompleted, UnknownPayload, User, WebhookEvent,
};

/// Why a body is not a valid Fermion event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The bytes are not JSON (or not UTF-8, or nested deeper than 128 levels).
    #[error("the body is not valid JSON; a Fermion event is a UTF-8 JSON object")]
    NotJson {
        /// What serde_json found wrong, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// The body is JSON, but not an object.
    #[error("the body is {found}, not a JSON object; a Fermion event is a JSON object")]
    NotAnObject {
        /// What the body is instead, such as "an array".
        found: &'static str,
    },
    /// A field the event's kind requires is absent.
    #[error("field `{field}` is missing; every {context} carries it")]
    MissingField {
        /// The field's path, such as `payload.userEmail`.
        field: &'static str,
        /// Which events carry it, for the message.
        context: &'static str,
    },
    /// A field has the wrong type or an unreadable value.
    #[error("field `{field}` should be {expected}, but is {found}")]
    InvalidField {
        /// The field's path, such as `payload.amountInSmallestUnit`.
        field: &'static str,
        /// What it should be, such as "a non-negative integer".
        expected: &'static str,
        /// What it is instead.
        found: String,
    },
    /// A key appears twice in one object; refused because parsers disagree on which one wins.
    #[error("field `{field}` appears more than once; send each key once")]
    DuplicateField {
        /// The field's path.
        field: &'static str,
    },
}

/// The payload keys of [`PAYLOAD_KEYS`] with their path from the top, for error messages.
const PAYLOAD_PATHS: [&str; 12] = [
    "payload.eventType",
    "payload.userId",
    "payload.userFullname",
    "payload.userEmail",
    "payload.userPhoneNumber",
    "payload.courseSlug",
    "payload.courseName",
    "payload.orderId",
    "payload.amountInSmallestUnit",
    "payload.currency",
    "payload.failureReason",
    "payload.initiatedAtIsoString",
];

impl WebhookEvent {
    /// Parses an event from JSON bytes.
    ///
    /// ```
    /// use fermion_webhooks::WebhookEvent;
    /// use fermion_webhooks::event::ParseError;
    ///
    /// let body = br#"{"eventUniqueId":"e1","timestampIsoString":"2026-11-28T21:11:17.123Z",
    ///   "isTestEvent":false,"payload":{"eventType":"free-course-enrollment","userId":"u1"}}"#;
    /// let error = WebhookEvent::from_json(body).unwrap_err();
    /// assert!(matches!(error, ParseError::MissingField { field: "payload.userFullname", .. }));
    /// ```
    pub fn from_json(bytes: &[u8]) -> Result<WebhookEvent, ParseError> {
        // One pass reads the payload's known keys directly. Only an unknown event type, whose
        // payload must be kept verbatim, pays for a second pass to capture the raw text.
        let top: TopLevel<Envelope<PayloadSlots>> = read_json(bytes)?;
        let (envelope, slots) = build_envelope(top)?;
        let payload = build_payload(slots, || {
            let top: TopLevel<Envelope<Box<RawValue>>> = read_json(bytes)?;
            build_envelope(top).map(|(_, raw)| raw)
        })?;
        Ok(envelope.with_payload(payload))
    }
}

impl std::str::FromStr for WebhookEvent {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WebhookEvent::from_json(s.as_bytes())
    }
}

/// Works with serde_json's deserializers (the unknown-payload case keeps raw JSON text, which
/// only serde_json can provide).
impl<'de> Deserialize<'de> for WebhookEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let top = TopLevel::<Envelope<Box<RawValue>>>::deserialize(deserializer)?;
        let parse = || {
            let (envelope, raw) = build_envelope(top)?;
            let slots: PayloadSlots =
                serde_json::from_str(raw.get()).map_err(|source| ParseError::NotJson { source })?;
            let payload = build_payload(slots, || Ok(raw))?;
            Ok::<_, ParseError>(envelope.with_payload(payload))
        };
        parse().map_err(de::Error::custom)
    }
}

fn read_json<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, ParseError> {
    // Checking UTF-8 once over the whole body is cheaper than serde_json checking each string
    // separately, and lets it read from a `str`. Invalid UTF-8 takes the byte path, which
    // reports where the bad byte is.
    let result = match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(bytes),
    };
    result.map_err(|source| ParseError::NotJson { source })
}

/// The envelope's fields, checked.
struct CheckedEnvelope {
    event_unique_id: String,
    timestamp: DateTime<Utc>,
    is_test_event: bool,
}

impl CheckedEnvelope {
    fn with_payload(self, payload: EventPayload) -> WebhookEvent {
        WebhookEvent {
            event_unique_id: self.event_unique_id,
            timestamp: self.timestamp,
            is_test_event: self.is_test_event,
            payload,
        }
    }
}

/// Checks the envelope's fields; returns them and the payload as read, for [`build_payload`].
fn build_envelope<P>(top: TopLevel<Envelope<P>>) -> Result<(CheckedEnvelope, P), ParseError> {
    let (envelope, duplicate) = match top {
        TopLevel::Object { fields, duplicate } => (fields, duplicate),
        TopLevel::Other(found) => return Err(ParseError::NotAnObject { found }),
    };
    if let Some(index) = duplicate {
        return Err(ParseError::DuplicateField {
            field: ENVELOPE_KEYS[index],
        });
    }
    const CONTEXT: &str = "Fermion event";
    let [id, timestamp, is_test] = envelope.slots;
    let event_unique_id = non_empty_string(id, "eventUniqueId", CONTEXT)?;
    let timestamp = timestamp_field(timestamp, "timestampIsoString", CONTEXT)?;
    let is_test_event = match is_test {
        None => return Err(missing("isTestEvent", CONTEXT)),
        Some(Scalar::Bool(value)) => value,
        Some(other) => return Err(invalid("isTestEvent", "true or false", other.describe())),
    };
    let payload = envelope.payload.ok_or(missing("payload", CONTEXT))?;
    let envelope = CheckedEnvelope {
        event_unique_id,
        timestamp,
        is_test_event,
    };
    Ok((envelope, payload))
}

/// Checks the payload's fields against its kind. `raw` gives the payload's text, and is called
/// only for an unknown event type.
fn build_payload(
    top: PayloadSlots,
    raw: impl FnOnce() -> Result<Box<RawValue>, ParseError>,
) -> Result<EventPayload, ParseError> {
    let (slots, duplicate) = match top {
        TopLevel::Object { fields, duplicate } => (fields, duplicate),
        TopLevel::Other(found) => return Err(invalid("payload", "an object", found.to_owned())),
    };
    if let Some(index) = duplicate {
        return Err(ParseError::DuplicateField {
            field: PAYLOAD_PATHS[index],
        });
    }
    let [
        event_type,
        user_id,
        user_fullname,
        user_email,
        user_phone_number,
        course_slug,
        course_name,
        order_id,
        amount,
        currency,
        failure_reason,
        initiated_at,
    ] = slots;
    let event_type = string(event_type, 0, "Fermion event payload")?;
    let Some(kind) = EventKind::from_wire_name(&event_type) else {
        let raw = raw()?;
        return Ok(EventPayload::Unknown(UnknownPayload { event_type, raw }));
    };
    let context = kind.as_str();
    let user = User {
        id: string(user_id, 1, context)?,
        fullname: string(user_fullname, 2, context)?,
        email: string(user_email, 3, context)?,
        phone_number: nullable_string(user_phone_number, 4)?,
    };
    let course = Course {
        slug: string(course_slug, 5, context)?,
        name: string(course_name, 6, context)?,
    };
    if kind == EventKind::FreeCourseEnrollment {
        return Ok(EventPayload::FreeCourseEnrollment(FreeCourseEnrollment {
            user,
            course,
        }));
    }
    let order = Order {
        id: string(order_id, 7, context)?,
        amount_in_smallest_unit: amount_field(amount, context)?,
        currency: string(currency, 9, context)?,
    };
    Ok(match kind {
        EventKind::PaymentFailed => EventPayload::PaymentFailed(PaymentFailed {
            user,
            course,
            order,
            failure_reason: nullable_string(failure_reason, 10)?,
        }),
        EventKind::PaymentInitiatedNotCompleted => {
            EventPayload::PaymentInitiatedNotCompleted(PaymentInitiatedNotCompleted {
                user,
                course,
                order,
                initiated_at: timestamp_field(initiated_at, PAYLOAD_PATHS[11], context)?,
            })
        }
        _ => EventPayload::PaidCourseSale(PaidCourseSale {
            user,
            course,
            order,
        }),
    })
}

fn missing(field: &'static str, context: &'static str) -> ParseError {
    ParseError::MissingField { field, context }
}

fn invalid(field: &'static str, expected: &'static str, found: String) -> ParseError {
    ParseError::InvalidField {
        field,
        expected,
        found,
    }
}

fn string(slot: Option<Scalar>, index: usize, context: &'static str) -> Result<String, ParseError> {
    let field = PAYLOAD_PATHS[index];
    match slot {
        None => Err(missing(field, context)),
        Some(Scalar::Str(value)) => Ok(value),
        Some(other) => Err(invalid(field, "a string", other.describe())),
    }
}

fn non_empty_string(
    slot: Option<Scalar>,
    field: &'static str,
    context: &'static str,
) -> Result<String, ParseError> {
    match slot {
        None => Err(missing(field, context)),
        Some(Scalar::Str(value)) if !value.is_empty() => Ok(value),
        Some(other) => Err(invalid(field, "a non-empty string", other.describe())),
    }
}

/// `string | null` fields: a missing key is read as `null`, since nothing is lost by it.
fn nullable_string(slot: Option<Scalar>, index: usize) -> Result<Option<String>, ParseError> {
    match slot {
        None | Some(Scalar::Null) => Ok(None),
        Some(Scalar::Str(value)) => Ok(Some(value)),
        Some(other) => Err(invalid(
            PAYLOAD_PATHS[index],
            "a string or null",
            other.describe(),
        )),
    }
}

fn amount_field(slot: Option<Scalar>, context: &'static str) -> Result<u64, ParseError> {
    let field = PAYLOAD_PATHS[8];
    match slot {
        None => Err(missing(field, context)),
        Some(Scalar::U64(value)) => Ok(value),
        Some(other) => Err(invalid(
            field,
            "a non-negative integer (the amount in the currency's smallest unit)",
            other.describe(),
        )),
    }
}

fn timestamp_field(
    slot: Option<Scalar>,
    field: &'static str,
    context: &'static str,
) -> Result<DateTime<Utc>, ParseError> {
    const EXPECTED: &str = "an RFC 3339 timestamp such as \"2026-11-28T21:11:17.123Z\"";
    match slot {
        None => Err(missing(field, context)),
        Some(Scalar::Str(text)) => DateTime::parse_from_rfc3339(&text)
            .map(|timestamp| timestamp.with_timezone(&Utc))
            .map_err(|_| invalid(field, EXPECTED, Scalar::Str(text).describe())),
        Some(other) => Err(invalid(field, EXPECTED, other.describe())),
    }
}
