//! Fair delivery on every log: an endpoint that hangs holds only its own share of the
//! dispatcher, switches pause instead of dropping, endpoints change one at a time, and one that
//! keeps failing is disabled with notice.

mod common;
mod pg;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::receiver::{Reply, TestReceiver};
use fermion_webhooks::clock::SystemClock;
use fermion_webhooks::dispatch::{
    AutoDisable, DispatchConfig, DispatchError, EndpointUpdate, RetriggerOptions,
};
use fermion_webhooks::store::{DeliveryState, Store};
use fermion_webhooks::{
    Dispatcher, Endpoint, EventKind, EventPayload, FileLogStore, HttpSender, MemoryLogStore,
    RetrySchedule, WebhookSecret,
};
use support::TempDir;

/// A store of each backend, and what keeps it alive.
struct Backend {
    store: Arc<dyn Store>,
    _dir: Option<TempDir>,
    _schema: Option<pg::Schema>,
}

async fn memory() -> Option<Backend> {
    Some(Backend {
        store: Arc::new(MemoryLogStore::new()),
        _dir: None,
        _schema: None,
    })
}

async fn file() -> Option<Backend> {
    let dir = TempDir::new("fair");
    Some(Backend {
        store: Arc::new(FileLogStore::open(dir.path()).await.unwrap()),
        _dir: Some(dir),
        _schema: None,
    })
}

async fn postgres() -> Option<Backend> {
    let schema = pg::Schema::new("fair").await?;
    Some(Backend {
        store: Arc::new(schema.store().await),
        _dir: None,
        _schema: Some(schema),
    })
}

macro_rules! on_every_log {
    ($($name:ident),* $(,)?) => {
        $(mod $name {
            #[tokio::test]
            async fn memory() { super::$name(super::memory().await.unwrap()).await }
            #[tokio::test]
            async fn file() { super::$name(super::file().await.unwrap()).await }
            #[tokio::test]
            async fn postgres() {
                if let Some(backend) = super::postgres().await {
                    super::$name(backend).await
                }
            }
        })*
    };
}

on_every_log!(
    a_hanging_endpoint_holds_only_its_share_while_the_healthy_one_gets_every_event,
    a_disabled_endpoint_waits_and_resumes_when_enabled,
    a_removed_endpoints_pending_deliveries_fail_saying_so,
    an_endpoint_that_keeps_failing_is_disabled_and_the_platform_is_told,
);

const SECRET: &str = "fair-delivery-secret-51c9";
const WAIT: Duration = Duration::from_secs(20);

fn endpoint(id: &str, url: &str) -> Endpoint {
    Endpoint::new(id, url, WebhookSecret::new(SECRET).unwrap()).unwrap()
}

fn config() -> DispatchConfig {
    let mut config = DispatchConfig::default();
    config.poll_interval = Duration::from_millis(20);
    config.retry = RetrySchedule::fixed([Duration::from_millis(50); 3]);
    config
}

fn start(store: &Backend, endpoints: Vec<Endpoint>, config: DispatchConfig) -> Dispatcher {
    let sender = HttpSender::builder()
        .allow_private_networks(true)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    Dispatcher::start_with(
        store.store.clone(),
        Arc::new(sender),
        endpoints,
        config,
        Arc::new(SystemClock),
    )
    .unwrap()
}

/// A server on 127.0.0.1 that accepts connections and never answers; counts them.
async fn hanging_server() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (url, accepted)
}

/// Waits until `done` holds, checking every 10 ms; panics with `what` after [`WAIT`].
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn a_hanging_endpoint_holds_only_its_share_while_the_healthy_one_gets_every_event(
    backend: Backend,
) {
    let healthy = TestReceiver::ok().await;
    let (hanging, accepted) = hanging_server().await;
    let mut config = config();
    config.max_in_flight = 16;
    config.max_in_flight_per_endpoint = 4;
    let dispatcher = start(
        &backend,
        vec![
            endpoint("hanging", &hanging),
            endpoint("healthy", &healthy.url()),
        ],
        config,
    );
    for _ in 0..300 {
        let emitted = dispatcher
            .emit(EventPayload::sample(EventKind::PaidCourseSale))
            .await
            .unwrap();
        assert_eq!(emitted.endpoint_ids, ["hanging", "healthy"]);
    }
    eventually("the healthy endpoint gets all 300, recorded", async || {
        dispatcher.stats().await.unwrap().delivered == 300
    })
    .await;
    assert_eq!(healthy.received().len(), 300);
    // Every attempt to the hanging endpoint is still waiting for an answer (its limit is a
    // minute): it got its share of connections and no more, and nothing of it is recorded.
    let stats = dispatcher.stats().await.unwrap();
    assert!(
        accepted.load(Ordering::SeqCst) <= 4,
        "at most its cap of connections: {}",
        accepted.load(Ordering::SeqCst)
    );
    assert_eq!((stats.delivered, stats.failed, stats.retried), (300, 0, 0));
    assert!(stats.in_flight <= 4, "{stats:?}");
    let hanging_backlog: Vec<_> = stats
        .pending
        .iter()
        .map(|b| (b.endpoint_id.as_str(), b.pending))
        .collect();
    assert_eq!(hanging_backlog, [("hanging", 300)]);
    assert!(stats.oldest_pending_age.is_some());
}

async fn a_disabled_endpoint_waits_and_resumes_when_enabled(backend: Backend) {
    let receiver = TestReceiver::start(|n| Reply::Status(if n == 0 { 503 } else { 200 })).await;
    let mut config = config();
    config.retry = RetrySchedule::fixed([Duration::from_millis(200)]);
    let dispatcher = start(&backend, vec![endpoint("crm", &receiver.url())], config);
    let emitted = dispatcher
        .emit(EventPayload::sample(EventKind::PaidCourseSale))
        .await
        .unwrap();
    eventually("the first attempt", async || receiver.received().len() == 1).await;
    // Disabled between the failed attempt and its retry, 200 ms later: the retry waits.
    dispatcher.disable_endpoint("crm").await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.received().len(), 1, "nothing sent while disabled");
    let logged = backend
        .store
        .get(&emitted.event_unique_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(logged.deliveries[0].state, DeliveryState::Pending);
    // Nothing new is logged for it, and a test event or a re-trigger is refused.
    let skipped = dispatcher
        .emit(EventPayload::sample(EventKind::PaidCourseSale))
        .await
        .unwrap();
    assert!(skipped.is_unsubscribed());
    let refused = dispatcher
        .send_test_event(EventKind::PaidCourseSale, "crm")
        .await
        .unwrap_err();
    assert!(
        matches!(refused, DispatchError::EndpointDisabled { ref id } if id == "crm"),
        "{refused:?}"
    );
    let refused = dispatcher
        .retrigger(&emitted.event_unique_id, Some("crm"))
        .await
        .unwrap_err();
    assert!(matches!(refused, DispatchError::EndpointDisabled { .. }));
    let unknown = dispatcher
        .send_test_event(EventKind::PaidCourseSale, "nobody")
        .await
        .unwrap_err();
    assert!(matches!(unknown, DispatchError::UnknownEndpoint { .. }));

    // On again: the retry goes out.
    dispatcher.enable_endpoint("crm").await.unwrap();
    let logged = dispatcher
        .wait_until_final(&emitted.event_unique_id, WAIT)
        .await
        .unwrap();
    assert_eq!(logged.deliveries[0].state, DeliveryState::Delivered);
    assert_eq!(receiver.received().len(), 2);
}

async fn a_removed_endpoints_pending_deliveries_fail_saying_so(backend: Backend) {
    let crm = TestReceiver::ok().await;
    let books = TestReceiver::start(|_| Reply::Status(503)).await;
    let mut config = config();
    config.retry = RetrySchedule::fixed([Duration::from_millis(300); 3]);
    let dispatcher = start(&backend, vec![endpoint("crm", &crm.url())], config);
    // Added, switched and pointed elsewhere one call at a time.
    dispatcher
        .add_endpoint(endpoint("books", "https://books.example.com/old"))
        .await
        .unwrap();
    let duplicate = dispatcher
        .add_endpoint(endpoint("books", &books.url()))
        .await
        .unwrap_err();
    assert!(
        matches!(duplicate, DispatchError::Endpoint(_)),
        "{duplicate:?}"
    );
    dispatcher.disable_endpoint("books").await.unwrap();
    let changed = dispatcher
        .update_endpoint(
            "books",
            EndpointUpdate::new()
                .url(books.url())
                .events([EventKind::PaymentFailed]),
        )
        .await
        .unwrap();
    assert!(!changed.enabled, "a change leaves the switch alone");
    dispatcher.enable_endpoint("books").await.unwrap();

    let emitted = dispatcher
        .emit(EventPayload::sample(EventKind::PaymentFailed))
        .await
        .unwrap();
    assert_eq!(emitted.endpoint_ids, ["crm", "books"]);
    eventually("the first attempt to books", async || {
        books.received().len() == 1
    })
    .await;
    // Removed while its retry waits: the retry is not sent, and the delivery ends.
    dispatcher.remove_endpoint("books").await.unwrap();
    let missing = dispatcher.remove_endpoint("books").await.unwrap_err();
    assert!(matches!(missing, DispatchError::UnknownEndpoint { .. }));
    let logged = dispatcher
        .wait_until_final(&emitted.event_unique_id, WAIT)
        .await
        .unwrap();
    let removed = &logged.deliveries[1];
    assert_eq!(removed.state, DeliveryState::Failed);
    let last = removed.attempts.last().unwrap();
    assert!(
        format!("{:?}", last.outcome).contains("endpoint removed"),
        "{last:?}"
    );
    assert_eq!(books.received().len(), 1);
    // Each attempt names the URL it went to.
    assert_eq!(
        removed.attempts[0].url.as_deref(),
        Some(books.url().as_str())
    );
    let delivered = &logged.deliveries[0];
    assert_eq!(
        delivered.attempts[0].url.as_deref(),
        Some(crm.url().as_str())
    );
}

async fn an_endpoint_that_keeps_failing_is_disabled_and_the_platform_is_told(backend: Backend) {
    let receiver = TestReceiver::start(|_| Reply::Status(500)).await;
    let mut config = config();
    config.retry = RetrySchedule::fixed([Duration::from_millis(10); 10]);
    config.auto_disable = Some(AutoDisable::new(Duration::from_millis(100), 5));
    let dispatcher = start(&backend, vec![endpoint("crm", &receiver.url())], config);
    let told = Arc::new(std::sync::Mutex::new(Vec::new()));
    let heard = told.clone();
    dispatcher.on_auto_disable(move |endpoint| heard.lock().unwrap().push(endpoint.clone()));
    let emitted = dispatcher
        .emit(EventPayload::sample(EventKind::PaidCourseSale))
        .await
        .unwrap();
    eventually("the endpoint is disabled", async || {
        !told.lock().unwrap().is_empty()
    })
    .await;
    let disabled = told.lock().unwrap()[0].clone();
    assert!(!disabled.enabled);
    let reason = disabled.disabled_reason.unwrap();
    assert!(reason.contains("every attempt failed since"), "{reason}");
    let now = dispatcher.endpoints();
    assert!(!now[0].enabled, "disabled in the dispatcher too");
    // Its delivery waits, paused, with attempts left on its schedule.
    let sent = receiver.received().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.received().len(),
        sent,
        "nothing sent while disabled"
    );
    let logged = backend
        .store
        .get(&emitted.event_unique_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(logged.deliveries[0].state, DeliveryState::Pending);
    assert!(sent >= 5, "at least the minimum attempts: {sent}");
    // A manual re-trigger may still go there when asked to.
    let forced = dispatcher
        .retrigger_with(
            &emitted.event_unique_id,
            Some("crm"),
            RetriggerOptions::default().include_disabled(),
        )
        .await
        .unwrap();
    assert_eq!(forced.len(), 1);
}

#[tokio::test]
async fn endpoints_changed_through_a_dispatcher_are_kept_in_its_store() {
    let dir = TempDir::new("fair-stored");
    let store: Arc<dyn Store> = Arc::new(FileLogStore::open(dir.path()).await.unwrap());
    store
        .put_endpoint(&endpoint("crm", "https://crm.example.com/hooks"))
        .await
        .unwrap();
    let dispatcher = Dispatcher::start_with_stored_endpoints(
        store.clone(),
        Arc::new(HttpSender::new().unwrap()),
        config(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    // Two edits of different fields at once: neither is lost.
    let (url, events) = tokio::join!(
        dispatcher.update_endpoint(
            "crm",
            EndpointUpdate::new().url("https://crm.example.com/v2")
        ),
        dispatcher.update_endpoint(
            "crm",
            EndpointUpdate::new().events([EventKind::PaymentFailed])
        ),
    );
    url.unwrap();
    events.unwrap();
    let kept = store.endpoint("crm").await.unwrap().unwrap();
    assert_eq!(kept.url, "https://crm.example.com/v2");
    assert_eq!(
        kept.events.into_iter().collect::<Vec<_>>(),
        [EventKind::PaymentFailed]
    );
    dispatcher.remove_endpoint("crm").await.unwrap();
    assert!(store.endpoint("crm").await.unwrap().is_none());
}

#[tokio::test]
async fn dropping_the_last_dispatcher_handle_stops_its_tasks() {
    let store = Arc::new(MemoryLogStore::new());
    let dispatcher = start(
        &Backend {
            store: store.clone(),
            _dir: None,
            _schema: None,
        },
        vec![endpoint("crm", "https://crm.example.com/hooks")],
        config(),
    );
    let clone = dispatcher.clone();
    drop(dispatcher);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(Arc::strong_count(&store) > 1, "a clone keeps it running");
    drop(clone);
    eventually("the tasks let go of the store", async || {
        Arc::strong_count(&store) == 1
    })
    .await;
}
