//! Abandoned checkouts: `payment-initiated-not-completed`, exactly once, 60 minutes after a
//! purchase that was started and never completed.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::dispatch::{DispatchError, Dispatcher, Emitted};
use crate::event::{Course, EventPayload, Order, PaymentInitiatedNotCompleted, User, WebhookEvent};
use crate::store::LogError;

/// The default time after which an uncompleted checkout counts as abandoned.
pub const DEFAULT_ABANDON_AFTER: Duration = Duration::from_secs(60 * 60);

/// A purchase that was started: who, what, how much, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkout {
    /// The order id.
    pub order_id: String,
    /// The amount in the currency's smallest unit.
    pub amount_in_smallest_unit: u64,
    /// The ISO 4217 currency code.
    pub currency: String,
    /// The buyer's id.
    pub user_id: String,
    /// The buyer's full name.
    pub user_fullname: String,
    /// The buyer's email.
    pub user_email: String,
    /// The buyer's phone number, if given.
    pub user_phone_number: Option<String>,
    /// The course's slug.
    pub course_slug: String,
    /// The course's name.
    pub course_name: String,
    /// When the purchase was started.
    #[serde(with = "crate::event::time_serde::iso_millis")]
    pub initiated_at: DateTime<Utc>,
}

impl Checkout {
    fn payload(&self) -> EventPayload {
        EventPayload::PaymentInitiatedNotCompleted(PaymentInitiatedNotCompleted {
            user: User {
                id: self.user_id.clone(),
                fullname: self.user_fullname.clone(),
                email: self.user_email.clone(),
                phone_number: self.user_phone_number.clone(),
            },
            course: Course {
                slug: self.course_slug.clone(),
                name: self.course_name.clone(),
            },
            order: Order {
                id: self.order_id.clone(),
                amount_in_smallest_unit: self.amount_in_smallest_unit,
                currency: self.currency.clone(),
            },
            initiated_at: self.initiated_at,
        })
    }

    /// The event's id: derived from the order id, so the same checkout always yields the same
    /// id, and the event log's refusal of a second copy makes firing exactly-once.
    fn event_unique_id(&self) -> String {
        const NAMESPACE: uuid::Uuid =
            uuid::Uuid::from_u128(0x6f7e_9d1c_4b2a_4e8f_9a3b_2c1d_0e9f_8a7b);
        let name = format!("payment-initiated-not-completed:{}", self.order_id);
        uuid::Uuid::new_v5(&NAMESPACE, name.as_bytes()).to_string()
    }
}

/// Where the tracker keeps checkouts that have neither completed nor fired yet: every log
/// store is one ([`MemoryLogStore`](crate::MemoryLogStore) forgets them on restart; the file
/// and PostgreSQL stores keep them, shared by every instance that uses them, so a checkout
/// started on one instance and completed on another emits nothing).
#[async_trait]
pub trait CheckoutStore: Send + Sync + std::fmt::Debug {
    /// Remembers a started checkout (replacing one with the same order id).
    async fn insert(&self, checkout: Checkout) -> Result<(), LogError>;
    /// Forgets a checkout (completed, or notified); returns whether it was there.
    async fn remove(&self, order_id: &str) -> Result<bool, LogError>;
    /// Every remembered checkout.
    async fn pending(&self) -> Result<Vec<Checkout>, LogError>;
}

/// Tracks started purchases and emits `payment-initiated-not-completed` for each one not
/// completed within 60 minutes (configurable), exactly once.
///
/// Tell it when a purchase starts ([`initiated`](Self::initiated)) and when it completes
/// ([`completed`](Self::completed)), which cancels the notification. A failed payment does not
/// cancel it: the buyer may still retry, and `payment-failed` is the platform's own event.
/// Call [`fire_due`](Self::fire_due) periodically, or [`run`](Self::run) it in the background.
/// Time comes from the injected [`Clock`], so tests move it instead of waiting an hour.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use fermion_webhooks::checkout::Checkout;
/// use fermion_webhooks::clock::{Clock, ManualClock};
/// use fermion_webhooks::dispatch::DispatchConfig;
/// use fermion_webhooks::{CheckoutTracker, Dispatcher, HttpSender, MemoryLogStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let clock = Arc::new(ManualClock::new("2026-11-28T10:00:00Z".parse()?));
/// let store = Arc::new(MemoryLogStore::new()); // the log and the pending checkouts
/// let dispatcher = Dispatcher::start_with(
///     store.clone(),
///     Arc::new(HttpSender::new()?),
///     vec![], // no endpoint here: the event is only emitted
///     DispatchConfig::default(),
///     clock.clone(),
/// )?;
/// let tracker = CheckoutTracker::new(store, dispatcher, clock.clone());
/// tracker
///     .initiated(Checkout {
///         order_id: "order_1".into(),
///         amount_in_smallest_unit: 49_900,
///         currency: "INR".into(),
///         user_id: "u1".into(),
///         user_fullname: "Asha Rao".into(),
///         user_email: "asha@example.com".into(),
///         user_phone_number: None,
///         course_slug: "rust-101".into(),
///         course_name: "Rust 101".into(),
///         initiated_at: clock.now(),
///     })
///     .await?;
/// assert!(tracker.fire_due().await?.is_empty()); // not yet an hour
/// clock.advance(Duration::from_secs(60 * 60));
/// assert_eq!(tracker.fire_due().await?.len(), 1); // payment-initiated-not-completed
/// assert!(tracker.fire_due().await?.is_empty()); // exactly once
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct CheckoutTracker {
    store: Arc<dyn CheckoutStore>,
    dispatcher: Dispatcher,
    clock: Arc<dyn Clock>,
    abandon_after: Duration,
}

impl CheckoutTracker {
    /// A tracker emitting through `dispatcher`, keeping pending checkouts in `store`.
    pub fn new(
        store: Arc<dyn CheckoutStore>,
        dispatcher: Dispatcher,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            dispatcher,
            clock,
            abandon_after: DEFAULT_ABANDON_AFTER,
        }
    }

    /// Changes the 60-minute window.
    pub fn abandon_after(mut self, window: Duration) -> Self {
        self.abandon_after = window;
        self
    }

    /// A purchase was started.
    pub async fn initiated(&self, checkout: Checkout) -> Result<(), LogError> {
        self.store.insert(checkout).await
    }

    /// A purchase completed: its notification is cancelled. Returns whether it was pending.
    pub async fn completed(&self, order_id: &str) -> Result<bool, LogError> {
        self.store.remove(order_id).await
    }

    /// When a checkout counts as abandoned.
    pub fn deadline(&self, checkout: &Checkout) -> DateTime<Utc> {
        TimeDelta::from_std(self.abandon_after)
            .ok()
            .and_then(|window| checkout.initiated_at.checked_add_signed(window))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Emits the event for every checkout whose deadline has passed, and forgets it. Returns
    /// what was emitted now; a checkout already notified before a crash is only forgotten.
    pub async fn fire_due(&self) -> Result<Vec<Emitted>, DispatchError> {
        let now = self.clock.now();
        let mut emitted = Vec::new();
        for checkout in self.store.pending().await? {
            let deadline = self.deadline(&checkout);
            if deadline > now {
                continue;
            }
            // The event happened at the deadline, even if noticed later (after a restart).
            let mut event = WebhookEvent::at(checkout.payload(), deadline);
            event.event_unique_id = checkout.event_unique_id();
            // The log refuses the event's id a second time, whether another instance emitted
            // it a moment ago or this one did before a crash that came before forgetting it.
            let done = match self.dispatcher.emit_event(event).await {
                Ok(done) => Some(done),
                Err(DispatchError::Log(LogError::DuplicateEvent { .. })) => None,
                Err(error) => return Err(error),
            };
            // Only the instance that forgets the checkout reports it: for an event no endpoint
            // is subscribed to, nothing was logged to refuse a second emit.
            if self.store.remove(&checkout.order_id).await? {
                emitted.extend(done);
            }
        }
        Ok(emitted)
    }

    /// Calls [`fire_due`](Self::fire_due) every `interval`, forever (spawn it as a task).
    pub async fn run(self, interval: Duration) {
        loop {
            // A failure (the log is unavailable) is retried at the next tick.
            if let Err(error) = self.fire_due().await {
                tracing::error!(
                    error = %crate::error_chain(&error),
                    "checking for abandoned checkouts failed; trying again in {interval:?}"
                );
            }
            tokio::time::sleep(interval).await;
        }
    }
}
