//! The four event kinds this crate knows by name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The kind of a Fermion webhook event, as named by the payload's `eventType`.
///
/// These are the four kinds a course creator can switch on and off. Fermion sends other kinds
/// too (lab and video events, for example); those parse into
/// [`EventPayload::Unknown`](crate::EventPayload::Unknown) rather than into a `EventKind`.
///
/// ```
/// use fermion_webhooks::EventKind;
///
/// let kind: EventKind = "paid-course-sale".parse().unwrap();
/// assert_eq!(kind, EventKind::PaidCourseSale);
/// assert_eq!(kind.to_string(), "paid-course-sale");
/// assert_eq!(kind.title(), "Paid Course Sale");
/// assert_eq!(EventKind::ALL.len(), 4);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum EventKind {
    /// `free-course-enrollment`: a user enrolled in a free course.
    FreeCourseEnrollment,
    /// `paid-course-sale`: a user bought a paid course.
    PaidCourseSale,
    /// `payment-failed`: a user's payment failed.
    PaymentFailed,
    /// `payment-initiated-not-completed`: a user started a purchase and did not complete it
    /// within 60 minutes.
    PaymentInitiatedNotCompleted,
}

impl EventKind {
    /// Every kind, in the order Fermion's dashboard lists them.
    pub const ALL: [EventKind; 4] = [
        EventKind::FreeCourseEnrollment,
        EventKind::PaidCourseSale,
        EventKind::PaymentFailed,
        EventKind::PaymentInitiatedNotCompleted,
    ];

    /// The wire name, as sent in `payload.eventType`.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::FreeCourseEnrollment => "free-course-enrollment",
            EventKind::PaidCourseSale => "paid-course-sale",
            EventKind::PaymentFailed => "payment-failed",
            EventKind::PaymentInitiatedNotCompleted => "payment-initiated-not-completed",
        }
    }

    /// A human title, as shown in Fermion's dashboard.
    pub const fn title(self) -> &'static str {
        match self {
            EventKind::FreeCourseEnrollment => "Free Course Enrollment",
            EventKind::PaidCourseSale => "Paid Course Sale",
            EventKind::PaymentFailed => "Payment Failed",
            EventKind::PaymentInitiatedNotCompleted => "Payment Initiated But Never Completed",
        }
    }

    /// The kind with this wire name, if it is one of the four.
    pub fn from_wire_name(name: &str) -> Option<EventKind> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a string that is not one of the four wire names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown event kind {given:?}; expected one of: free-course-enrollment, paid-course-sale, \
     payment-failed, payment-initiated-not-completed"
)]
pub struct UnknownEventKind {
    /// The string that was given.
    pub given: String,
}

impl FromStr for EventKind {
    type Err = UnknownEventKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::from_wire_name(s).ok_or_else(|| UnknownEventKind {
            given: s.to_owned(),
        })
    }
}

impl Serialize for EventKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}
