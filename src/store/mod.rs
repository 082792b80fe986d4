//! The event log: every emitted event with its exact body, deliveries and attempts.

mod attempt;
mod documents;
mod file;
#[cfg(feature = "postgres")]
mod group;
mod memory;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
mod postgres;
mod query;
mod record;
mod sql;

use std::ops::ControlFlow;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use documents::EndpointStore;
pub(crate) use documents::{Documents, Kind};
pub use file::{DATABASE_FILE, FileLogStore, WriteStats};
pub use memory::MemoryLogStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresLogStore;
pub use query::{Cursor, EventRow, LogFilter, Page};
pub(crate) use record::lease_end;
pub use record::{
    Attempt, AttemptOutcome, AttemptRecord, AttemptTrigger, ClaimRequest, ClaimToken, Delivery,
    DeliveryState, DueDelivery, EndpointBacklog, EventBody, RESPONSE_SNIPPET_LIMIT, StoredEvent,
    TransportErrorKind,
};
/// The sqlx this crate is built with, for [`PostgresLogStore::connect_with_pool`]'s options
/// without a matching version of your own.
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use sqlx;

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A file operation failed.
    #[error("event log I/O failed on {path}")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The log directory does not exist.
    #[error("no event log at {dir}: the directory does not exist")]
    MissingDirectory {
        /// The directory that was asked for.
        dir: std::path::PathBuf,
    },
    /// An event with this id is already in the log.
    #[error("event {id} is already in the log; every event needs a unique eventUniqueId")]
    DuplicateEvent {
        /// The event id.
        id: String,
    },
    /// No event with this id is in the log.
    #[error("no event {id} in the log")]
    UnknownEvent {
        /// The event id.
        id: String,
    },
    /// The event has no delivery to this endpoint.
    #[error("event {event_id} has no delivery to endpoint {endpoint_id}")]
    UnknownDelivery {
        /// The event id.
        event_id: String,
        /// The endpoint id.
        endpoint_id: String,
    },
    /// The entry cannot be stored as given.
    #[error("cannot store event {id}: {reason}")]
    InvalidEntry {
        /// The event id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A paging cursor that this log did not hand out.
    #[error("invalid paging cursor {cursor:?}; pass a cursor from a previous page, or none")]
    InvalidCursor {
        /// The cursor given.
        cursor: String,
    },
    /// The log is opened read-only.
    #[error("the event log in {dir} is open read-only")]
    ReadOnly {
        /// The log directory.
        dir: std::path::PathBuf,
    },
    /// The delivery's claim was lost: its lease ended and another caller claimed it, so this
    /// outcome is not recorded (the other caller's is).
    #[error(
        "the claim on event {event_id}'s delivery to {endpoint_id} was lost (its lease ended \
         and another caller took it over); this attempt is not recorded"
    )]
    ClaimLost {
        /// The event id.
        event_id: String,
        /// The endpoint id.
        endpoint_id: String,
    },
    /// The database failed.
    #[error("the event log's database failed while {what}")]
    Database {
        /// What the log was doing.
        what: String,
        /// The database driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The log holds something this crate did not write, or cannot read back.
    #[error("the event log holds an unreadable record: {reason}")]
    Corrupt {
        /// What is wrong.
        reason: String,
    },
}

/// The durable event log, and the delivery outbox it hands work out from.
///
/// Every backend keeps, per event, the exact body bytes and one [`Delivery`] per endpoint with
/// every [`Attempt`]. Implementations are `Send + Sync` and object-safe, so an
/// `Arc<dyn LogStore>` can be shared by the dispatcher, an admin API and an exporter.
///
/// Backends: [`MemoryLogStore`] for tests and development; [`FileLogStore`] (SQLite) for one
/// machine; `PostgresLogStore` (feature `postgres`) for several instances. The same contract
/// test suite runs against all three.
///
/// # Contract
///
/// A backend must:
/// - **append atomically**: after `append` returns `Ok` the event and all its deliveries are
///   stored (durably, for a durable backend); after `Err`, none of it is. A second event with
///   the same id is refused with [`LogError::DuplicateEvent`], which makes an id an
///   idempotency key across instances.
/// - **hand out work by claims**: [`claim_due`](Self::claim_due) atomically marks each
///   delivery it returns as claimed under a fresh [`ClaimToken`] until the lease ends. Until
///   then no other call claims it; after, any may (the holder is presumed dead).
///   Claims are fair across endpoints and capped per endpoint, so that one endpoint's
///   backlog never holds up another's.
/// - **fence with the token**: [`record_attempt`](Self::record_attempt) with a token applies
///   only while that token still holds the delivery (its lease may have ended, as long as
///   nobody claimed it since); otherwise it changes nothing and fails with
///   [`LogError::ClaimLost`]. Recording clears the claim.
/// - **answer reads consistently**: once a write returned, every read sees it; pages and scans
///   order events by timestamp, then by append order.
///
/// ```
/// use fermion_webhooks::store::{Delivery, DeliveryState, LogFilter, StoredEvent};
/// use fermion_webhooks::{EventKind, EventPayload, LogStore, MemoryLogStore, WebhookEvent};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), fermion_webhooks::store::LogError> {
/// let store = MemoryLogStore::new();
/// let event = WebhookEvent::new(EventPayload::sample(EventKind::FreeCourseEnrollment));
/// let delivery = Delivery::pending("crm", "https://crm.example.com/hook", event.timestamp);
/// store.append(StoredEvent::new(&event, vec![delivery])).await?;
///
/// let logged = store.get(&event.event_unique_id).await?.expect("just appended");
/// assert_eq!(logged.body, event.to_json()); // the exact bytes that are sent
///
/// let pending = LogFilter::default().status(DeliveryState::Pending);
/// let page = store.query(&pending, None, 50).await?;
/// assert_eq!(page.events.len(), 1);
/// # Ok(())
/// # }
/// ```
#[async_trait]
pub trait LogStore: Send + Sync + std::fmt::Debug {
    /// Stores an event together with its pending deliveries, atomically: after `Ok` the whole
    /// entry is durable (for a durable backend); after `Err` none of it is.
    ///
    /// Fails with [`LogError::DuplicateEvent`] if the id is already in the log, and with
    /// [`LogError::InvalidEntry`] if two deliveries share an endpoint id or one already has
    /// attempts.
    async fn append(&self, event: StoredEvent) -> Result<(), LogError>;

    /// [`append`](Self::append), with the event's pending deliveries to `endpoint_ids` claimed
    /// for the caller in the same transaction, until `now + lease`: the dispatcher sends a
    /// just-emitted event at once from memory. Returns the claim's token (`None` when nothing
    /// was claimed), or `None` from a backend that does not claim on append (the default),
    /// whose deliveries [`claim_due`](Self::claim_due) hands out instead.
    async fn append_claimed(
        &self,
        event: StoredEvent,
        now: DateTime<Utc>,
        lease: Duration,
        endpoint_ids: &[&str],
    ) -> Result<Option<ClaimToken>, LogError> {
        let _ = (now, lease, endpoint_ids);
        self.append(event).await.map(|()| None)
    }

    /// Claims pending deliveries due at or before `request.now` that no live claim holds, all
    /// under one new token, until `now + lease`:
    /// - at most `request.limit` of them;
    /// - none to an endpoint in `request.skip_endpoints`;
    /// - for each endpoint, no more than `request.per_endpoint` under live claims afterwards,
    ///   counting those claimed earlier by anyone (so a hanging endpoint never holds more);
    /// - fairly, one delivery per endpoint per turn, the endpoint holding the fewest live
    ///   claims first and the earliest due first among equals; each endpoint's deliveries
    ///   earliest due first. Returned each endpoint's first, then each one's second, and so
    ///   on.
    ///
    /// A claim's cost should follow what it hands out, not the backlog: the SQL backends read
    /// the next due deliveries of each endpoint with room through an index of each endpoint's
    /// due deliveries, so a long backlog behind an endpoint at its cap, or a skipped one, is
    /// never read.
    async fn claim_due(&self, request: &ClaimRequest) -> Result<Vec<DueDelivery>, LogError>;

    /// Pending deliveries by endpoint, for monitoring: how many, and the oldest event among
    /// them.
    async fn backlog(&self) -> Result<Vec<EndpointBacklog>, LogError>;

    /// Claims one delivery, whatever its state, for a manual attempt (a re-trigger): `None`
    /// when a live claim holds it. Fails with [`LogError::UnknownEvent`] or
    /// [`LogError::UnknownDelivery`].
    async fn claim(
        &self,
        event_unique_id: &str,
        endpoint_id: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<ClaimToken>, LogError>;

    /// Gives up the claims held under `token` without recording anything: the deliveries stay
    /// as they were, free for the next claim. (A graceful shutdown does this for work it did
    /// not start.)
    async fn release(&self, token: &ClaimToken) -> Result<(), LogError>;

    /// Records an attempt and the delivery's new state (and next attempt time, while pending),
    /// clearing its claim. With `record.claim`, fails with [`LogError::ClaimLost`] unless that
    /// token still holds the delivery; without, unless no live claim holds it at the attempt's
    /// start.
    async fn record_attempt(&self, record: AttemptRecord) -> Result<(), LogError>;

    /// One event with its deliveries and attempts, or `None` if it is not in the log.
    async fn get(&self, event_unique_id: &str) -> Result<Option<StoredEvent>, LogError>;

    /// The bodies of the events named, each once, in any order; events not in the log (removed
    /// by retention meanwhile) are left out. A dispatcher reads the bodies of the deliveries it
    /// claimed through this, one call per claim, so a backend should answer it in one read; the
    /// default reads each event with [`get`](Self::get).
    async fn bodies(&self, event_unique_ids: &[&str]) -> Result<Vec<EventBody>, LogError> {
        let mut bodies = Vec::with_capacity(event_unique_ids.len());
        for id in distinct(event_unique_ids) {
            if let Some(event) = self.get(id).await? {
                bodies.push(EventBody {
                    event_unique_id: event.event_unique_id,
                    body: event.body,
                    is_test_event: event.is_test_event,
                });
            }
        }
        Ok(bodies)
    }

    /// Events matching `filter`, newest first, at most `limit`; pass the returned cursor to get
    /// the next page.
    async fn query(
        &self,
        filter: &LogFilter,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page, LogError>;

    /// Calls `visit` with each event matching `filter`, oldest first, without collecting them:
    /// memory stays constant however many events match. Stops early when `visit` breaks.
    /// Returns how many events were visited.
    async fn scan(
        &self,
        filter: &LogFilter,
        visit: &mut (dyn FnMut(StoredEvent) -> ControlFlow<()> + Send),
    ) -> Result<u64, LogError>;

    /// Like [`scan`](Self::scan), with each event as an [`EventRow`]: its status and attempt
    /// count without the attempts themselves. Exports use this; a backend that can answer it
    /// without reading attempts (the file log does) makes them several times faster.
    async fn scan_rows(
        &self,
        filter: &LogFilter,
        visit: &mut (dyn FnMut(EventRow) -> ControlFlow<()> + Send),
    ) -> Result<u64, LogError> {
        self.scan(filter, &mut |event| visit(EventRow::from(&event)))
            .await
    }

    /// Deletes events older than `cutoff` (retention), with their deliveries and attempts;
    /// returns how many events were deleted.
    async fn delete_before(&self, cutoff: DateTime<Utc>) -> Result<u64, LogError>;
}

/// Everything a deployment keeps: the event log, the endpoints and the pending checkouts, in
/// one backend. Every log store of this crate is one; `Arc<dyn Store>` converts to
/// `Arc<dyn LogStore>`, `Arc<dyn EndpointStore>` or `Arc<dyn CheckoutStore>` as needed.
pub trait Store: LogStore + EndpointStore + crate::checkout::CheckoutStore {}

impl<T: LogStore + EndpointStore + crate::checkout::CheckoutStore> Store for T {}

/// The ids given, each once, in their first order.
pub(crate) fn distinct<'a>(ids: &[&'a str]) -> Vec<&'a str> {
    let mut seen = hashbrown::HashSet::with_capacity(ids.len());
    ids.iter().copied().filter(|id| seen.insert(*id)).collect()
}

/// Whether `text` holds a line break (vectorised: this runs over every body exported or
/// logged).
pub(crate) fn has_line_break(text: &str) -> bool {
    memchr::memchr2(b'\n', b'\r', text.as_bytes()).is_some()
}

/// Checks what every backend refuses in a new entry.
pub(crate) fn validate_new_entry(event: &StoredEvent) -> Result<(), LogError> {
    let invalid = |reason: &str| LogError::InvalidEntry {
        id: event.event_unique_id.clone(),
        reason: reason.to_owned(),
    };
    if event.event_unique_id.is_empty() {
        return Err(invalid("the eventUniqueId is empty"));
    }
    if event.body.trim().is_empty() {
        return Err(invalid("the body is empty"));
    }
    for (index, delivery) in event.deliveries.iter().enumerate() {
        if !delivery.attempts.is_empty() {
            return Err(invalid(
                "a new delivery cannot have attempts yet; record them after",
            ));
        }
        if event.deliveries[..index]
            .iter()
            .any(|other| other.endpoint_id == delivery.endpoint_id)
        {
            return Err(invalid(&format!(
                "two deliveries to endpoint {}; an event has at most one per endpoint",
                delivery.endpoint_id
            )));
        }
        if delivery.state == DeliveryState::Pending && delivery.next_attempt_at.is_none() {
            return Err(invalid("a pending delivery needs a next attempt time"));
        }
    }
    Ok(())
}
