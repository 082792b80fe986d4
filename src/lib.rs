//! Emit and receive [Fermion](https://fermion.app) webhooks.
//!
//! Fermion, an online-course platform, POSTs a JSON event to each webhook URL a course creator
//! configured when something happens on a course: a free enrollment, a paid sale, a failed
//! payment, a checkout abandoned for 60 minutes. Every request carries the shared secret in the
//! `X-Fermion-Webhook-Secret` header.
//!
//! **Receiving** (an integrator's server): [`Receiver`] checks the secret in constant time
//! before the body is read, then parses the body into a typed [`WebhookEvent`]; every failure
//! is a [`ReceiveError`] that knows its HTTP status; [`DuplicateGuard`] skips retried and
//! re-triggered events. With the `axum` feature, `FermionWebhook` does all of it as an
//! extractor.
//!
//! **Emitting** (a platform backend): a [`Dispatcher`] stores each event in a durable
//! [`LogStore`] ([`FileLogStore`] or [`MemoryLogStore`]) with one delivery per subscribed
//! [`Endpoint`], then delivers it in the background through a [`Sender`] ([`HttpSender`], with
//! an SSRF guard), retrying on a [`RetrySchedule`]. Test events, re-triggers,
//! [`CheckoutTracker`] for abandoned checkouts, and [`export_csv`] complete the dashboard's
//! features.
//!
//! ```
//! use fermion_webhooks::{EventPayload, Receiver, SECRET_HEADER, WebhookEvent, WebhookSecret};
//! use http::HeaderMap;
//!
//! let receiver = Receiver::new(WebhookSecret::new("s3cr3t").unwrap());
//!
//! // What Fermion sends (here, built from a sample):
//! let body = WebhookEvent::new(EventPayload::sample(fermion_webhooks::EventKind::PaidCourseSale))
//!     .to_json();
//! let mut headers = HeaderMap::new();
//! headers.insert(SECRET_HEADER, "s3cr3t".parse().unwrap());
//!
//! let event = receiver.receive(&headers, body.as_bytes()).unwrap();
//! match &event.payload {
//!     EventPayload::PaidCourseSale(sale) => {
//!         assert_eq!(sale.order.amount_in_smallest_unit, 499_900); // ₹4,999.00 in paise
//!         assert_eq!(sale.order.currency, "INR");
//!     }
//!     EventPayload::Unknown(other) => println!("ignoring {}", other.event_type),
//!     _ => {}
//! }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod checkout;
mod clock;
mod dispatch;
mod endpoint;
mod event;
mod export;
mod random;
mod receive;
mod secret;
mod sender;
mod store;

pub use checkout::{
    Checkout, CheckoutStore, CheckoutTracker, DEFAULT_ABANDON_AFTER, FileCheckoutStore,
    MemoryCheckoutStore,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use dispatch::{
    DispatchConfig, DispatchError, Dispatcher, Emitted, Retriggered, RetrySchedule,
};
pub use endpoint::{Endpoint, EndpointError};
pub use event::{
    Course, EventKind, EventPayload, FreeCourseEnrollment, Order, PaidCourseSale, ParseError,
    PaymentFailed, PaymentInitiatedNotCompleted, UnknownEventKind, UnknownPayload, User,
    WebhookEvent,
};
pub use export::{CSV_COLUMNS, ExportError, ExportOptions, export_csv, export_jsonl};
pub use receive::{
    DEFAULT_MAX_BODY_BYTES, DuplicateGuard, ReceiveError, Receiver, ReceiverBuilder,
};
#[cfg(feature = "axum")]
pub use receive::{FermionWebhook, WebhookRejection};
pub use secret::{MAX_SECRET_LEN, SECRET_HEADER, SecretError, WebhookSecret};
pub use sender::{
    DEFAULT_ATTEMPT_TIMEOUT, DeliveryRequest, HttpSender, HttpSenderBuilder, HttpSenderError,
    SendOutcome, SendResult, Sender, is_global_address,
};
pub use store::{
    Attempt, AttemptOutcome, AttemptRecord, AttemptTrigger, Cursor, DamagedLine, Delivery,
    DeliveryState, DueDelivery, EventRow, FileLogStore, LogError, LogFilter, LogStore,
    MemoryLogStore, Page, RESPONSE_SNIPPET_LIMIT, RecoveryReport, StoredEvent, TornTail,
    TransportErrorKind, WriteStats,
};

/// The README's Rust examples, compiled and run as doctests so they cannot go stale.
#[cfg(all(doctest, feature = "axum"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
