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
//! re-triggered events. Where deliveries are signed ([Standard
//! Webhooks](https://www.standardwebhooks.com/), module [`signature`]), the receiver can
//! require the signature too. With the `axum` feature, `receive::FermionWebhook` does all of it
//! as an extractor, and `receive::serve` serves it with limits no slow client can exhaust.
//!
//! **Emitting** (a platform backend, feature `emit`): a [`Dispatcher`] stores each event in a
//! durable [`LogStore`] ([`FileLogStore`] or [`MemoryLogStore`]) with one delivery per
//! subscribed [`Endpoint`], then delivers it in the background through a [`Sender`]
//! ([`HttpSender`], on reqwest, with an SSRF guard), retrying on a [`RetrySchedule`]. Test
//! events, re-triggers, [`CheckoutTracker`] for abandoned checkouts, and [`export_csv`]
//! complete the dashboard's features; endpoints may sign every delivery with a
//! [`SigningSecret`]. With the `admin` feature, `admin::router` serves a creator's webhook
//! settings as JSON routes and a dashboard page.
//!
//! # Features
//!
//! - `receive`: the receiving side only: events, secrets, [`Receiver`], [`DuplicateGuard`],
//!   schemas. `default-features = false, features = ["receive"]` builds just this.
//! - `emit` (default): the emitting side: dispatcher, log stores, HTTP sender, export,
//!   checkout tracker.
//! - `axum`: the `receive::FermionWebhook` extractor and `receive::serve`.
//! - `postgres`: `store::PostgresLogStore`, one log for several instances.
//! - `admin`: `admin::router`, the admin API and its dashboard page.
//! - `testing`: the `LogStore` contract suite, for a backend of your own.
//!
//! The everyday types are re-exported here; the rest live in modules by topic: [`event`],
//! [`receive`], [`signature`], [`dispatch`], [`sender`], [`store`], [`export`], [`checkout`].
//!
//! ```
//! use fermion_webhooks::http::HeaderMap;
//! use fermion_webhooks::{EventKind, EventPayload, Receiver, SECRET_HEADER, WebhookEvent, WebhookSecret};
//!
//! let receiver = Receiver::new(WebhookSecret::new("s3cr3t").unwrap());
//!
//! // What Fermion sends (here, built from a sample):
//! let body = WebhookEvent::new(EventPayload::sample(EventKind::PaidCourseSale)).to_json();
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

#[cfg(feature = "admin")]
#[cfg_attr(docsrs, doc(cfg(feature = "admin")))]
pub mod admin;
#[cfg(feature = "emit")]
#[cfg_attr(docsrs, doc(cfg(feature = "emit")))]
pub mod checkout;
pub mod clock;
#[cfg(feature = "emit")]
#[cfg_attr(docsrs, doc(cfg(feature = "emit")))]
pub mod dispatch;
#[cfg(feature = "emit")]
mod endpoint;
pub mod event;
#[cfg(feature = "emit")]
#[cfg_attr(docsrs, doc(cfg(feature = "emit")))]
pub mod export;
#[cfg(feature = "receive")]
#[cfg_attr(docsrs, doc(cfg(feature = "receive")))]
pub mod receive;
pub mod secret;
#[cfg(feature = "emit")]
#[cfg_attr(docsrs, doc(cfg(feature = "emit")))]
pub mod sender;
pub mod signature;
#[cfg(feature = "emit")]
#[cfg_attr(docsrs, doc(cfg(feature = "emit")))]
pub mod store;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

/// The `http` crate this one uses, so callers need no matching version of their own.
pub use http;

pub use event::{EventKind, EventPayload, WebhookEvent};
pub use secret::{SECRET_HEADER, WebhookSecret};
pub use signature::SigningSecret;

#[cfg(feature = "receive")]
pub use receive::{DuplicateGuard, ReceiveError, Receiver};

#[cfg(feature = "emit")]
pub use checkout::CheckoutTracker;
#[cfg(feature = "emit")]
pub use dispatch::{DispatchConfig, Dispatcher, Endpoint, RetrySchedule};
#[cfg(feature = "emit")]
pub use export::export_csv;
#[cfg(feature = "emit")]
pub use sender::{HttpSender, Sender};
#[cfg(feature = "emit")]
pub use store::{FileLogStore, LogStore, MemoryLogStore};

/// `error` and each of its sources, joined by `: `: a failure's whole story in one line, for a
/// recorded attempt or an answer to a webhook's sender.
#[cfg(any(feature = "receive", feature = "emit"))]
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(current) = source {
        let part = current.to_string();
        // Some errors repeat their source's text in their own: say it once.
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = current.source();
    }
    text
}

/// The README's Rust examples, compiled and run as doctests so they cannot go stale.
#[cfg(all(doctest, feature = "axum", feature = "admin"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
