//! Realistic sample payloads, for test events and documentation.

use chrono::{DateTime, Utc};

use super::{
    Course, EventKind, EventPayload, FreeCourseEnrollment, Order, PaidCourseSale, PaymentFailed,
    PaymentInitiatedNotCompleted, User,
};

impl EventPayload {
    /// A realistic payload of `kind`, as the dashboard's test button sends.
    ///
    /// The values are fixed (an Indian learner buying a ₹4,999 course), so a test event is easy
    /// to recognise in an integrator's logs. Email addresses use the reserved `example.com`
    /// domain, so nothing real is ever mailed.
    pub fn sample(kind: EventKind) -> EventPayload {
        let user = User {
            id: "6650f1c2a3b4c5d6e7f80912".to_owned(),
            fullname: "Aarav Sharma".to_owned(),
            email: "aarav.sharma@example.com".to_owned(),
            phone_number: Some("+919876543210".to_owned()),
        };
        let course = Course {
            slug: "full-stack-web-development".to_owned(),
            name: "Full-Stack Web Development Bootcamp".to_owned(),
        };
        let order = Order {
            id: "order_Nx8wq2LrT5kPz1".to_owned(),
            amount_in_smallest_unit: 499_900,
            currency: "INR".to_owned(),
        };
        match kind {
            EventKind::FreeCourseEnrollment => {
                EventPayload::FreeCourseEnrollment(FreeCourseEnrollment { user, course })
            }
            EventKind::PaidCourseSale => EventPayload::PaidCourseSale(PaidCourseSale {
                user,
                course,
                order,
            }),
            EventKind::PaymentFailed => EventPayload::PaymentFailed(PaymentFailed {
                user,
                course,
                order,
                failure_reason: Some("Card declined by the issuing bank".to_owned()),
            }),
            EventKind::PaymentInitiatedNotCompleted => {
                EventPayload::PaymentInitiatedNotCompleted(PaymentInitiatedNotCompleted {
                    user,
                    course,
                    order,
                    initiated_at: sample_initiated_at(),
                })
            }
        }
    }
}

fn sample_initiated_at() -> DateTime<Utc> {
    // 2026-11-28T20:11:17.123Z, written as a constant so it cannot fail to parse.
    DateTime::from_timestamp_millis(1_795_896_677_123).unwrap_or_default()
}
