//! The events Fermion sends: the shared envelope, the typed payloads, and their exact JSON.

mod kind;
mod loose;
mod parse;
mod sample;
mod schema;
pub(crate) mod time_serde;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

pub use kind::{EventKind, UnknownEventKind};
pub use parse::ParseError;
#[cfg(feature = "emit")]
pub(crate) use time_serde::iso_millis_text;

/// One Fermion webhook event: the envelope every event shares, and its payload.
///
/// Serialising it (with [`to_json`](Self::to_json) or serde) gives exactly the JSON Fermion sends:
/// the keys of the TypeScript types in [`EventKind::typescript_schema`], in that order, no others,
/// with timestamps in UTC with milliseconds (`2026-11-28T21:11:17.123Z`). Parsing
/// ([`from_json`](Self::from_json), [`str::parse`] or serde) is lenient where Fermion may evolve:
/// unknown fields are ignored, any RFC 3339 timestamp is read, and an unknown `eventType` becomes
/// [`EventPayload::Unknown`].
///
/// ```
/// use fermion_webhooks::{EventKind, EventPayload, WebhookEvent};
///
/// let event = WebhookEvent::new(EventPayload::sample(EventKind::PaidCourseSale));
/// let json = event.to_json();
/// let back: WebhookEvent = json.parse().unwrap();
/// assert_eq!(back, event);
/// assert_eq!(back.kind(), Some(EventKind::PaidCourseSale));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEvent {
    /// `eventUniqueId`: unique per event, and kept when an event is retried or re-triggered, so it
    /// is the key for spotting duplicates.
    pub event_unique_id: String,
    /// `timestampIsoString`: when the event happened (not when it was delivered).
    #[serde(rename = "timestampIsoString", with = "time_serde::iso_millis")]
    pub timestamp: DateTime<Utc>,
    /// `isTestEvent`: true for events sent with the dashboard's test button.
    pub is_test_event: bool,
    /// `payload`: what happened.
    pub payload: EventPayload,
}

impl WebhookEvent {
    /// A new live event: a fresh `eventUniqueId`, the current time truncated to milliseconds,
    /// and `isTestEvent: false`.
    ///
    /// The id is a UUID version 7 (RFC 9562): 74 random bits after a millisecond timestamp, so
    /// ids made later sort later. A log's unique index on ids then grows at its end instead of
    /// touching a random page per event, which halves the cost of a durable append.
    pub fn new(payload: EventPayload) -> Self {
        Self::at(payload, Utc::now())
    }

    /// A new live event that happened at `timestamp` (truncated to milliseconds, the precision
    /// of the wire format).
    pub fn at(payload: EventPayload, timestamp: DateTime<Utc>) -> Self {
        Self {
            event_unique_id: uuid::Uuid::now_v7().to_string(),
            timestamp: timestamp.trunc_subsecs(3),
            is_test_event: false,
            payload,
        }
    }

    /// A new test event (`isTestEvent: true`), as the dashboard's test button sends.
    pub fn test(payload: EventPayload) -> Self {
        Self {
            is_test_event: true,
            ..Self::new(payload)
        }
    }

    /// The kind of event, or `None` for an event type this crate does not know.
    pub fn kind(&self) -> Option<EventKind> {
        self.payload.kind()
    }

    /// The payload's `eventType` wire name, known or not.
    pub fn event_type(&self) -> &str {
        self.payload.event_type()
    }

    /// The event as the exact JSON text Fermion sends.
    pub fn to_json(&self) -> String {
        // Sized for a typical event up front: growing from serde_json's small default buffer
        // would copy the text three times.
        let mut json = Vec::with_capacity(768);
        // Strings, numbers, timestamps and JSON already checked: serialising cannot fail, and
        // serde_json writes only UTF-8.
        let _ = serde_json::to_writer(&mut json, self);
        String::from_utf8(json).unwrap_or_default()
    }

    /// The event as the exact JSON bytes Fermion sends.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        self.to_json().into_bytes()
    }
}

/// What happened: one variant per known [`EventKind`], and [`Unknown`](Self::Unknown) for the rest.
///
/// Serialised, `eventType` comes first, then the payload's fields in the order of its
/// TypeScript type (the struct fields' order).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "eventType")]
#[non_exhaustive]
pub enum EventPayload {
    /// `free-course-enrollment`.
    #[serde(rename = "free-course-enrollment")]
    FreeCourseEnrollment(FreeCourseEnrollment),
    /// `paid-course-sale`.
    #[serde(rename = "paid-course-sale")]
    PaidCourseSale(PaidCourseSale),
    /// `payment-failed`.
    #[serde(rename = "payment-failed")]
    PaymentFailed(PaymentFailed),
    /// `payment-initiated-not-completed`.
    #[serde(rename = "payment-initiated-not-completed")]
    PaymentInitiatedNotCompleted(PaymentInitiatedNotCompleted),
    /// An `eventType` this crate does not know (Fermion also sends lab and video events, and may
    /// add more). The payload is kept verbatim and serialises back byte for byte.
    #[serde(untagged)]
    Unknown(UnknownPayload),
}

impl EventPayload {
    /// The kind, or `None` for [`EventPayload::Unknown`].
    pub fn kind(&self) -> Option<EventKind> {
        match self {
            EventPayload::FreeCourseEnrollment(_) => Some(EventKind::FreeCourseEnrollment),
            EventPayload::PaidCourseSale(_) => Some(EventKind::PaidCourseSale),
            EventPayload::PaymentFailed(_) => Some(EventKind::PaymentFailed),
            EventPayload::PaymentInitiatedNotCompleted(_) => {
                Some(EventKind::PaymentInitiatedNotCompleted)
            }
            EventPayload::Unknown(_) => None,
        }
    }

    /// The `eventType` wire name, known or not.
    pub fn event_type(&self) -> &str {
        match self {
            EventPayload::Unknown(unknown) => &unknown.event_type,
            known => known.kind().map_or("", EventKind::as_str),
        }
    }

    /// The user the event is about, for the four known kinds.
    pub fn user(&self) -> Option<&User> {
        self.known_parts().map(|(user, _)| user)
    }

    /// The course the event is about, for the four known kinds.
    pub fn course(&self) -> Option<&Course> {
        self.known_parts().map(|(_, course)| course)
    }

    /// The order, for the three payment kinds.
    pub fn order(&self) -> Option<&Order> {
        match self {
            EventPayload::PaidCourseSale(sale) => Some(&sale.order),
            EventPayload::PaymentFailed(failed) => Some(&failed.order),
            EventPayload::PaymentInitiatedNotCompleted(abandoned) => Some(&abandoned.order),
            _ => None,
        }
    }

    fn known_parts(&self) -> Option<(&User, &Course)> {
        match self {
            EventPayload::FreeCourseEnrollment(p) => Some((&p.user, &p.course)),
            EventPayload::PaidCourseSale(p) => Some((&p.user, &p.course)),
            EventPayload::PaymentFailed(p) => Some((&p.user, &p.course)),
            EventPayload::PaymentInitiatedNotCompleted(p) => Some((&p.user, &p.course)),
            EventPayload::Unknown(_) => None,
        }
    }
}

/// The user fields every known payload carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct User {
    /// `userId`.
    #[serde(rename = "userId")]
    pub id: String,
    /// `userFullname`.
    #[serde(rename = "userFullname")]
    pub fullname: String,
    /// `userEmail`.
    #[serde(rename = "userEmail")]
    pub email: String,
    /// `userPhoneNumber`: `null` on the wire when the user gave none (never omitted: the
    /// TypeScript type is `string | null`, not optional).
    #[serde(rename = "userPhoneNumber")]
    pub phone_number: Option<String>,
}

/// The course fields every known payload carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Course {
    /// `courseSlug`: the course's URL name.
    #[serde(rename = "courseSlug")]
    pub slug: String,
    /// `courseName`: the course's title.
    #[serde(rename = "courseName")]
    pub name: String,
}

/// The order fields of the three payment payloads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// `orderId`.
    #[serde(rename = "orderId")]
    pub id: String,
    /// `amountInSmallestUnit`: the amount in the currency's smallest unit (paise for INR, cents
    /// for USD), so `49900` INR is ₹499.00.
    pub amount_in_smallest_unit: u64,
    /// `currency`: an ISO 4217 code such as `INR`.
    pub currency: String,
}

/// `free-course-enrollment`: a user enrolled in a free course.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FreeCourseEnrollment {
    /// Who enrolled.
    #[serde(flatten)]
    pub user: User,
    /// In which course.
    #[serde(flatten)]
    pub course: Course,
}

/// `paid-course-sale`: a user bought a paid course.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaidCourseSale {
    /// Who bought.
    #[serde(flatten)]
    pub user: User,
    /// Which course.
    #[serde(flatten)]
    pub course: Course,
    /// The order that was paid.
    #[serde(flatten)]
    pub order: Order,
}

/// `payment-failed`: a user's payment failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentFailed {
    /// Who tried to pay.
    #[serde(flatten)]
    pub user: User,
    /// For which course.
    #[serde(flatten)]
    pub course: Course,
    /// The order whose payment failed.
    #[serde(flatten)]
    pub order: Order,
    /// `failureReason`: why, when the payment provider said; `null` on the wire otherwise.
    pub failure_reason: Option<String>,
}

/// `payment-initiated-not-completed`: a purchase started and not completed within 60 minutes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentInitiatedNotCompleted {
    /// Who started the purchase.
    #[serde(flatten)]
    pub user: User,
    /// For which course.
    #[serde(flatten)]
    pub course: Course,
    /// The order that was left unpaid.
    #[serde(flatten)]
    pub order: Order,
    /// `initiatedAtIsoString`: when the purchase was started.
    #[serde(rename = "initiatedAtIsoString", with = "time_serde::iso_millis")]
    pub initiated_at: DateTime<Utc>,
}

/// The payload of an event type this crate does not know, kept verbatim.
#[derive(Clone, Debug)]
pub struct UnknownPayload {
    /// The payload's `eventType`.
    pub event_type: String,
    raw: Box<RawValue>,
}

impl UnknownPayload {
    /// The payload object exactly as it was received.
    pub fn raw_json(&self) -> &str {
        self.raw.get()
    }

    /// The payload as a [`serde_json::Value`], to read its fields.
    pub fn to_value(&self) -> serde_json::Value {
        // The raw text was validated as a JSON object when it was parsed, so this cannot fail;
        // `Null` is an unreachable fallback rather than a panic.
        serde_json::from_str(self.raw.get()).unwrap_or(serde_json::Value::Null)
    }
}

/// The raw payload, byte for byte.
impl Serialize for UnknownPayload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.raw.serialize(serializer)
    }
}

impl PartialEq for UnknownPayload {
    fn eq(&self, other: &Self) -> bool {
        self.event_type == other.event_type && self.raw.get() == other.raw.get()
    }
}
