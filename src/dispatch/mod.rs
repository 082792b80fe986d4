//! The platform side: emit events, deliver them in the background with retries, re-trigger.

mod bodies;
mod endpoints;
mod ready;
mod retrigger;
mod retry;
mod stats;
mod wait;
mod worker;

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};

use crate::clock::{Clock, SystemClock};
use crate::endpoint::validate_all;
use crate::event::{EventKind, EventPayload, WebhookEvent};
use crate::sender::{SendOutcome, Sender};
use crate::store::{
    Delivery, DeliveryState, DueDelivery, EndpointStore, LogError, LogStore, Store, StoredEvent,
    lease_end,
};

pub use crate::endpoint::{Endpoint, EndpointError};
pub use endpoints::{AutoDisable, EndpointUpdate};
pub use retrigger::RetriggerOptions;
pub use retry::RetrySchedule;
pub use stats::DispatchStats;

/// Why the dispatcher could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError {
    /// The event log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The endpoint configuration is invalid.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// No endpoint with this id is configured.
    #[error("no endpoint {id} is configured")]
    UnknownEndpoint {
        /// The endpoint id.
        id: String,
    },
    /// The endpoint is disabled (paused): nothing is sent to it until it is enabled again.
    #[error(
        "endpoint {id} is disabled; enable it first, or re-trigger with \
         RetriggerOptions::include_disabled"
    )]
    EndpointDisabled {
        /// The endpoint id.
        id: String,
    },
    /// No event with this id is in the log.
    #[error("no event {id} in the log")]
    UnknownEvent {
        /// The event id.
        id: String,
    },
    /// [`Dispatcher::start`] was called outside a tokio runtime, which its background
    /// delivery needs.
    #[error(
        "the dispatcher needs a tokio runtime: start it from async code (inside #[tokio::main])"
    )]
    NoRuntime,
    /// The dispatcher is shutting down and takes no new work.
    #[error("the dispatcher is shutting down and takes no new events")]
    ShuttingDown,
    /// The JSON given to [`Dispatcher::emit_json`] is not a valid event.
    #[error("not a valid event")]
    InvalidEvent(#[from] crate::event::ParseError),
    /// The event's body is larger than [`DispatchConfig::max_body_bytes`].
    #[error(
        "event {id} is {len} bytes of JSON, over the {max}-byte limit for a webhook body; send \
         less (receivers refuse large bodies), or raise DispatchConfig::max_body_bytes"
    )]
    BodyTooLarge {
        /// The event id.
        id: String,
        /// The body's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The delivery is being attempted right now (by this dispatcher or another sharing the
    /// log), so a manual attempt would send it twice at once.
    #[error(
        "event {event_id}'s delivery to {endpoint_id} is being attempted right now; try again \
         once that attempt is over"
    )]
    DeliveryInFlight {
        /// The event id.
        event_id: String,
        /// The endpoint id.
        endpoint_id: String,
    },
    /// Waiting for an event's deliveries took longer than allowed.
    #[error("event {id} still has pending deliveries after {waited:?}")]
    WaitTimedOut {
        /// The event id.
        id: String,
        /// How long it waited.
        waited: Duration,
    },
}

/// What [`Dispatcher::emit`] did with an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emitted {
    /// The new event's id.
    pub event_unique_id: String,
    /// The endpoints it will be delivered to. Empty when no enabled endpoint is subscribed to
    /// its kind; such an event is not logged, since there is nothing to deliver.
    pub endpoint_ids: Vec<String>,
}

impl Emitted {
    /// Whether no endpoint wanted the event.
    pub fn is_unsubscribed(&self) -> bool {
        self.endpoint_ids.is_empty()
    }
}

/// One manual re-trigger attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retriggered {
    /// The endpoint it went to.
    pub endpoint_id: String,
    /// What happened.
    pub outcome: SendOutcome,
    /// The delivery's state afterwards.
    pub state: DeliveryState,
}

/// How the dispatcher behaves. Construct with `DispatchConfig::default()` and adjust fields.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DispatchConfig {
    /// When to retry (default: [`RetrySchedule::default`]).
    pub retry: RetrySchedule,
    /// The most requests in flight at once (default 64). A request's place is given back
    /// when it is over, while its outcome is logged.
    pub max_in_flight: usize,
    /// The most requests to one endpoint in flight at once (default 16): an endpoint that
    /// hangs or answers slowly holds no more of `max_in_flight`, and endpoints with due work
    /// take turns. An endpoint also holds at most twice as many deliveries claimed (in
    /// flight, being logged, or queued next), which the log enforces across every dispatcher
    /// sharing it, except for a just-emitted event's first attempts, which each dispatcher
    /// caps on its own.
    pub max_in_flight_per_endpoint: usize,
    /// When an endpoint that keeps failing is disabled (default: after 5 days and 10
    /// attempts, all failed); `None` never disables one.
    pub auto_disable: Option<AutoDisable>,
    /// How often the dispatcher checks for due retries when nothing wakes it (default 250 ms).
    /// The log is queried on such a tick when a retry this dispatcher scheduled is due, and
    /// otherwise at least once a second while fewer than 1,024 deliveries wait in its queue
    /// (for deliveries another run left for later, or appended to the log directly); new
    /// events from `emit` are handed over at once.
    pub poll_interval: Duration,
    /// How long a claim on a delivery lasts (default 60 s): another dispatcher sharing the log
    /// takes over a delivery only once its claim has run out, so a crashed instance's work
    /// waits at most this long. Keep it well above twice the sender's time limit.
    pub lease: Duration,
    /// How often a dispatcher started with
    /// [`start_with_stored_endpoints`](Dispatcher::start_with_stored_endpoints) reads the
    /// endpoints again (default 1 s).
    pub endpoint_refresh: Duration,
    /// Whether to deliver in the background (default true). Off, the dispatcher only does what
    /// it is asked directly, such as [`Dispatcher::retrigger`]: for a one-off tool that must
    /// not touch the rest of a shared log.
    pub background_delivery: bool,
    /// The largest body `emit` accepts, in bytes (default [`DEFAULT_MAX_BODY_BYTES`], 256 KiB,
    /// the receiving side's default limit too). A Fermion event is about 500 bytes; a larger
    /// one is refused at `emit` with [`DispatchError::BodyTooLarge`] rather than sent to
    /// endpoints that would refuse it.
    pub max_body_bytes: usize,
}

/// The default of [`DispatchConfig::max_body_bytes`]: 256 KiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            retry: RetrySchedule::default(),
            max_in_flight: 64,
            max_in_flight_per_endpoint: 16,
            auto_disable: Some(AutoDisable::default()),
            poll_interval: Duration::from_millis(250),
            lease: Duration::from_secs(60),
            endpoint_refresh: Duration::from_secs(1),
            background_delivery: true,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// Emits events into the log and delivers them in the background.
///
/// `emit` stores the event with one pending delivery per enabled endpoint subscribed to its
/// kind, and returns only once it is in the log (durable with a [`FileLogStore`]); a background
/// task then delivers it with at most `max_in_flight` attempts at once, retrying on the
/// schedule. On start, deliveries left pending by an earlier run are resumed.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use fermion_webhooks::{
///     Dispatcher, Endpoint, EventKind, EventPayload, HttpSender, MemoryLogStore, WebhookSecret,
/// };
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let crm = Endpoint::new(
///     "crm",
///     "https://crm.example.com/hooks/fermion",
///     WebhookSecret::generate()?,
/// )?
/// .subscribe_only([EventKind::PaidCourseSale]);
/// let sender = HttpSender::new()?;
/// # // The doctest sends nothing: the name resolves to a documentation address, which the
/// # // SSRF guard refuses.
/// # let sender = HttpSender::builder().resolve("crm.example.com", &["192.0.2.1".parse()?]);
/// # let sender = sender.build()?;
/// let dispatcher = Dispatcher::start(Arc::new(MemoryLogStore::new()), Arc::new(sender), vec![crm])?;
///
/// // Durable (with a durable log) when `emit` returns; delivered in the background.
/// let emitted = dispatcher.emit(EventPayload::sample(EventKind::PaidCourseSale)).await?;
/// assert_eq!(emitted.endpoint_ids, ["crm"]);
/// // Not subscribed: nothing to deliver, nothing logged.
/// let skipped = dispatcher.emit(EventPayload::sample(EventKind::PaymentFailed)).await?;
/// assert!(skipped.is_unsubscribed());
///
/// // What is still pending stays in the log for the next start.
/// dispatcher.shutdown(Duration::from_millis(100)).await;
/// # Ok(())
/// # }
/// ```
///
/// [`FileLogStore`]: crate::FileLogStore
///
/// Dropping the last clone of a `Dispatcher` stops its background tasks at once (attempts in
/// flight are abandoned and their deliveries stay claimed until the lease ends); call
/// [`shutdown`](Self::shutdown) to let them finish and give queued claims back.
#[derive(Clone, Debug)]
pub struct Dispatcher {
    inner: Arc<Inner>,
    /// Stops the background tasks when the last clone goes.
    _running: Arc<StopOnDrop>,
}

/// Stops a dispatcher's background tasks when dropped.
#[derive(Debug)]
struct StopOnDrop(Arc<Inner>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
        if let Some(worker) = lock(&self.0.worker).take() {
            worker.abort();
        }
    }
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn LogStore>,
    /// Where the endpoints are read again from, when they are kept in the store.
    endpoint_source: Option<Arc<dyn EndpointStore>>,
    sender: Arc<dyn Sender>,
    /// Shared, so an attempt takes its endpoint without copying the list.
    endpoints: RwLock<Arc<[Endpoint]>>,
    config: DispatchConfig,
    clock: Arc<dyn Clock>,
    /// Wakes the worker: a log query asked for, or shutdown.
    wake: Notify,
    /// Signalled after every recorded attempt, for `wait_until_final`.
    progress: Notify,
    /// When recording an attempt last failed: the worker pauses after that, so a broken log
    /// does not turn into the same request sent again every poll.
    log_failed_at: Mutex<Option<tokio::time::Instant>>,
    /// Whether `log_failed_at` is set: every runner checks before every attempt, and a flag
    /// read costs them no lock.
    log_failed: std::sync::atomic::AtomicBool,
    /// Endpoint edits one at a time, failure streaks for auto-disable, and who to tell.
    upkeep: endpoints::Upkeep,
    /// Counters for [`Dispatcher::stats`].
    counters: stats::Counters,
    /// Bodies of just-emitted events whose deliveries wait in the log for their turn.
    waiting_bodies: bodies::WaitingBodies,
    /// Deliveries claimed for an attempt, for the runners: just-emitted ones with their bodies,
    /// and those the worker found in the log.
    ready: ready::ReadyQueue,
    /// One per attempt sending its request: at most `max_in_flight` requests at once.
    permits: Semaphore,
    /// One per attempt waiting for its outcome to be logged, after its request: the next
    /// request need not wait for a log write (an fsync, for a durable log), and no more than
    /// `max_in_flight` outcomes wait at once.
    record_permits: Semaphore,
    stopping: std::sync::atomic::AtomicBool,
    worker: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Dispatcher {
    /// Starts a dispatcher (inside a tokio runtime) with the default configuration.
    pub fn start(
        store: Arc<dyn LogStore>,
        sender: Arc<dyn Sender>,
        endpoints: Vec<Endpoint>,
    ) -> Result<Self, DispatchError> {
        Self::start_with(
            store,
            sender,
            endpoints,
            DispatchConfig::default(),
            Arc::new(SystemClock),
        )
    }

    /// Starts a dispatcher whose endpoints are those kept in `store`, read again every
    /// [`DispatchConfig::endpoint_refresh`] (a second by default): a change made through any
    /// instance sharing the store reaches this one within that time.
    pub async fn start_with_stored_endpoints(
        store: Arc<dyn Store>,
        sender: Arc<dyn Sender>,
        config: DispatchConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, DispatchError> {
        let endpoints = store.endpoints(None).await?;
        let source: Arc<dyn EndpointStore> = store.clone();
        Self::start_inner(store, Some(source), sender, endpoints, config, clock)
    }

    /// Starts a dispatcher with a configuration and a clock.
    pub fn start_with(
        store: Arc<dyn LogStore>,
        sender: Arc<dyn Sender>,
        endpoints: Vec<Endpoint>,
        config: DispatchConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, DispatchError> {
        Self::start_inner(store, None, sender, endpoints, config, clock)
    }

    fn start_inner(
        store: Arc<dyn LogStore>,
        endpoint_source: Option<Arc<dyn EndpointStore>>,
        sender: Arc<dyn Sender>,
        endpoints: Vec<Endpoint>,
        config: DispatchConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, DispatchError> {
        validate_all(&endpoints)?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| DispatchError::NoRuntime)?;
        let in_flight_cap = config.max_in_flight_per_endpoint;
        let inner = Arc::new(Inner {
            store,
            endpoint_source,
            sender,
            endpoints: RwLock::new(endpoints.into()),
            permits: Semaphore::new(config.max_in_flight.max(1)),
            record_permits: Semaphore::new(config.max_in_flight.max(1)),
            config,
            clock,
            wake: Notify::new(),
            progress: Notify::new(),
            log_failed_at: Mutex::new(None),
            log_failed: std::sync::atomic::AtomicBool::new(false),
            upkeep: endpoints::Upkeep::default(),
            counters: stats::Counters::default(),
            waiting_bodies: bodies::WaitingBodies::default(),
            ready: ready::ReadyQueue::new(in_flight_cap),
            stopping: std::sync::atomic::AtomicBool::new(false),
            worker: Mutex::new(None),
        });
        if inner.config.background_delivery {
            let handle = runtime.spawn(worker::run(inner.clone()));
            *lock(&inner.worker) = Some(handle);
        }
        Ok(Self {
            _running: Arc::new(StopOnDrop(inner.clone())),
            inner,
        })
    }

    /// Replaces the whole endpoint list of this dispatcher. Pending deliveries to a disabled
    /// endpoint wait; those to an endpoint no longer listed fail ("endpoint removed"). To
    /// change one endpoint, prefer the per-endpoint calls ([`update_endpoint`](Self::update_endpoint)
    /// and the rest), which also write through to the store the endpoints are kept in.
    pub fn set_endpoints(&self, endpoints: Vec<Endpoint>) -> Result<(), DispatchError> {
        validate_all(&endpoints)?;
        *self
            .inner
            .endpoints
            .write()
            .unwrap_or_else(|p| p.into_inner()) = endpoints.into();
        Ok(())
    }

    /// The log this dispatcher writes to.
    pub fn store(&self) -> &Arc<dyn LogStore> {
        &self.inner.store
    }

    /// The current endpoints.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.inner.endpoint_list().to_vec()
    }

    /// Emits a live event now: a fresh `eventUniqueId`, the current time, `isTestEvent: false`.
    /// Returns once the event and its pending deliveries are in the log.
    pub async fn emit(&self, payload: EventPayload) -> Result<Emitted, DispatchError> {
        let event = WebhookEvent::at(payload, self.inner.clock.now());
        self.emit_event(event).await
    }

    /// Emits a prepared event as is (its id and timestamp kept), to the endpoints subscribed to
    /// its kind. Events of a type this crate does not know go to no endpoint.
    pub async fn emit_event(&self, event: WebhookEvent) -> Result<Emitted, DispatchError> {
        let body = event.to_json();
        self.store_for_subscribers(event, body).await
    }

    /// Emits an event given as JSON text, sending exactly these bytes (after checking that they
    /// are a valid event: a bad body is refused with the field named). For a platform that
    /// builds its own JSON, or a tool that sends a payload file as is.
    pub async fn emit_json(&self, body: impl Into<String>) -> Result<Emitted, DispatchError> {
        let body = body.into();
        let event = WebhookEvent::from_json(body.as_bytes())?;
        self.store_for_subscribers(event, body).await
    }

    /// Sends a realistic sample of `kind` with `isTestEvent: true` to one endpoint, whether or
    /// not it is subscribed to that kind. It is logged and marked as a test. Refused with
    /// [`DispatchError::UnknownEndpoint`] or [`DispatchError::EndpointDisabled`].
    pub async fn send_test_event(
        &self,
        kind: EventKind,
        endpoint_id: &str,
    ) -> Result<Emitted, DispatchError> {
        let endpoint = self.endpoint(endpoint_id)?;
        if !endpoint.enabled {
            return Err(DispatchError::EndpointDisabled {
                id: endpoint.id.clone(),
            });
        }
        let mut event = WebhookEvent::at(EventPayload::sample(kind), self.inner.clock.now());
        event.is_test_event = true;
        let body = event.to_json();
        self.store_and_wake(event, body, &[&endpoint]).await
    }

    /// Logs the event for the endpoints subscribed to its kind and hands their deliveries over.
    async fn store_for_subscribers(
        &self,
        event: WebhookEvent,
        body: String,
    ) -> Result<Emitted, DispatchError> {
        let endpoints = self.inner.endpoint_list();
        let targets = subscribers(&endpoints, &event);
        self.store_and_wake(event, body, &targets).await
    }

    async fn store_and_wake(
        &self,
        event: WebhookEvent,
        body: String,
        targets: &[&Endpoint],
    ) -> Result<Emitted, DispatchError> {
        if self.inner.stopped() {
            return Err(DispatchError::ShuttingDown);
        }
        let emitted = Emitted {
            event_unique_id: event.event_unique_id.clone(),
            endpoint_ids: targets.iter().map(|e| e.id.clone()).collect(),
        };
        if targets.is_empty() {
            return Ok(emitted);
        }
        let max = self.inner.config.max_body_bytes;
        if body.len() > max {
            return Err(DispatchError::BodyTooLarge {
                id: emitted.event_unique_id,
                len: body.len(),
                max,
            });
        }
        let now = self.inner.clock.now();
        let deliveries = targets
            .iter()
            .map(|e| Delivery::pending(e.id.clone(), e.url.clone(), now))
            .collect();
        // Not `StoredEvent::new`, which would serialise the event a second time.
        let entry = StoredEvent {
            event_type: event.event_type().to_owned(),
            event_unique_id: event.event_unique_id,
            timestamp: event.timestamp,
            is_test_event: event.is_test_event,
            body,
            deliveries,
        };
        let body: Arc<str> = Arc::from(entry.body.as_str());
        let is_test_event = entry.is_test_event;
        let lease = self.inner.config.lease;
        // Claimed only by a dispatcher that will attempt them (one that does not deliver in
        // the background leaves them to whichever does), and only for endpoints under their
        // cap: the others wait in the log for their turn.
        let ids = &emitted.endpoint_ids;
        let reserved = if self.inner.config.background_delivery {
            self.inner.ready.reserve(ids, self.inner.claim_cap())
        } else {
            Vec::new()
        };
        let claim = if reserved.is_empty() {
            self.inner.store.append(entry).await.map(|()| None)
        } else {
            self.inner
                .store
                .append_claimed(entry, now, lease, &reserved)
                .await
        };
        let claim = match claim {
            Ok(claim) => claim,
            Err(error) => {
                self.inner.ready.release(reserved.iter().copied());
                return Err(error.into());
            }
        };
        if claim.is_none() {
            self.inner.ready.release(reserved.iter().copied());
        }
        let waiting = if claim.is_some() {
            ids.len() - reserved.len()
        } else {
            ids.len()
        };
        if waiting > 0 && self.inner.config.background_delivery {
            self.inner
                .waiting_bodies
                .keep(&emitted.event_unique_id, &body, is_test_event, waiting);
            // Noted once they are in the log, so that no claim can miss them.
            let in_log = ids
                .iter()
                .map(String::as_str)
                .filter(|id| !reserved.contains(id));
            if self.inner.ready.waiting_in_log(in_log) {
                self.inner.ready.claim_more();
                self.inner.wake.notify_one();
            }
        }
        match claim {
            // The first attempts, from the ids `emitted` holds anyway.
            Some(claim) => {
                let claimed_until = lease_end(now, lease);
                let fresh = reserved.iter().map(|endpoint_id| DueDelivery {
                    event_unique_id: emitted.event_unique_id.clone(),
                    endpoint_id: (*endpoint_id).to_owned(),
                    // Not read: an attempt goes to the endpoint's current URL.
                    url: String::new(),
                    next_attempt_at: now,
                    attempts_made: 0,
                    claim: claim.clone(),
                    claimed_until,
                });
                self.inner.queue_first_attempts(fresh, &body, is_test_event);
            }
            // A log that does not claim on append: the worker claims them.
            None if !reserved.is_empty() => {
                self.inner.ready.claim_more();
                self.inner.wake.notify_one();
            }
            None => {}
        }
        Ok(emitted)
    }

    /// The event as logged, or [`DispatchError::UnknownEvent`].
    async fn logged_event(&self, event_unique_id: &str) -> Result<StoredEvent, DispatchError> {
        self.inner
            .store
            .get(event_unique_id)
            .await?
            .ok_or_else(|| DispatchError::UnknownEvent {
                id: event_unique_id.to_owned(),
            })
    }

    fn endpoint(&self, id: &str) -> Result<Endpoint, DispatchError> {
        self.inner
            .endpoint_list()
            .iter()
            .find(|e| e.id == id)
            .cloned()
            .ok_or_else(|| DispatchError::UnknownEndpoint { id: id.to_owned() })
    }
}

/// The enabled endpoints subscribed to the event's kind (none for an unknown type), borrowed:
/// an endpoint is several allocations to copy, secret included, and `emit` needs only its id
/// and URL.
fn subscribers<'a>(endpoints: &'a [Endpoint], event: &WebhookEvent) -> Vec<&'a Endpoint> {
    match event.kind() {
        Some(kind) => endpoints.iter().filter(|e| e.wants(kind)).collect(),
        None => Vec::new(),
    }
}

impl Inner {
    /// The most attempts to one endpoint in flight at once.
    fn in_flight_cap(&self) -> usize {
        self.config.max_in_flight_per_endpoint.max(1)
    }

    /// The most deliveries of one endpoint claimed at once: those in flight, and as many
    /// queued to follow them without waiting for the log.
    fn claim_cap(&self) -> usize {
        self.in_flight_cap().saturating_mul(2)
    }

    /// Whether the dispatcher is stopping.
    fn stopped(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops taking work and wakes the worker to end.
    fn stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// The current endpoints, shared.
    fn endpoint_list(&self) -> Arc<[Endpoint]> {
        self.endpoints
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
