//! The dispatcher against real HTTP servers on 127.0.0.1: wire format and headers, retries,
//! Retry-After, 410, timeouts, redirects, the SSRF guard, per-event switches, restarts, test
//! events and re-triggers.

mod common;
mod support;

use std::sync::Arc;
use std::time::Duration;

use common::receiver::{Reply, TestReceiver};
use fermion_webhooks::clock::SystemClock;
use fermion_webhooks::store::{
    AttemptTrigger, Delivery, DeliveryState, StoredEvent, TransportErrorKind,
};
use fermion_webhooks::{
    DispatchConfig, Dispatcher, Endpoint, EventKind, EventPayload, FileLogStore, HttpSender,
    LogStore, MemoryLogStore, Receiver, RetrySchedule, SECRET_HEADER, WebhookEvent, WebhookSecret,
};
use support::TempDir;

const SECRET: &str = "dispatch-test-secret-3f2a";
const WAIT: Duration = Duration::from_secs(10);

fn secret() -> WebhookSecret {
    WebhookSecret::new(SECRET).unwrap()
}

fn endpoint(id: &str, url: &str) -> Endpoint {
    Endpoint::new(id, url, secret()).unwrap()
}

fn loopback_sender(timeout: Duration) -> Arc<HttpSender> {
    Arc::new(
        HttpSender::builder()
            .allow_private_networks(true)
            .timeout(timeout)
            .build()
            .unwrap(),
    )
}

fn config(delays_ms: &[u64]) -> DispatchConfig {
    let mut config = DispatchConfig::default();
    config.retry = RetrySchedule::fixed(delays_ms.iter().map(|ms| Duration::from_millis(*ms)));
    config.poll_interval = Duration::from_millis(20);
    config
}

fn start(store: Arc<dyn LogStore>, endpoints: Vec<Endpoint>, delays_ms: &[u64]) -> Dispatcher {
    Dispatcher::start_with(
        store,
        loopback_sender(Duration::from_secs(5)),
        endpoints,
        config(delays_ms),
        Arc::new(SystemClock),
    )
    .unwrap()
}

/// Emits a sample of `kind` and waits until its deliveries are final.
async fn emit_and_wait(
    dispatcher: &Dispatcher,
    kind: EventKind,
) -> (fermion_webhooks::dispatch::Emitted, StoredEvent) {
    let emitted = dispatcher.emit(EventPayload::sample(kind)).await.unwrap();
    let logged = dispatcher
        .wait_until_final(&emitted.event_unique_id, WAIT)
        .await
        .unwrap();
    (emitted, logged)
}

#[tokio::test]
async fn every_kind_arrives_in_the_wire_format_with_the_secret_header() {
    let receiver = TestReceiver::ok().await;
    let store = Arc::new(MemoryLogStore::new());
    let dispatcher = start(store.clone(), vec![endpoint("crm", &receiver.url())], &[]);
    let verifier = Receiver::new(secret());
    for kind in EventKind::ALL {
        let emitted = dispatcher.emit(EventPayload::sample(kind)).await.unwrap();
        assert_eq!(emitted.endpoint_ids, ["crm"]);
        let logged = dispatcher
            .wait_until_final(&emitted.event_unique_id, WAIT)
            .await
            .unwrap();
        assert_eq!(logged.status(), DeliveryState::Delivered);
        let request = receiver.received().pop().unwrap();
        assert_eq!(
            request.body,
            logged.body.as_bytes(),
            "the logged bytes are the sent bytes"
        );
        assert_eq!(request.headers[SECRET_HEADER.as_str()], SECRET);
        assert_eq!(request.headers["content-type"], "application/json");
        let authority = receiver.url().parse::<http::Uri>().unwrap();
        assert_eq!(
            request.headers["host"],
            authority.authority().unwrap().as_str(),
            "one Host header, with the port"
        );
        assert_eq!(request.headers.get_all("host").iter().count(), 1);
        assert!(
            request.headers["user-agent"]
                .to_str()
                .unwrap()
                .starts_with("fermion-webhooks/")
        );
        let event = verifier.receive(&request.headers, &request.body).unwrap();
        assert_eq!((event.kind(), event.is_test_event), (Some(kind), false));
        assert_eq!(event.event_unique_id, emitted.event_unique_id);
        let attempt = &logged.deliveries[0].attempts[0];
        assert_eq!(
            (attempt.http_status(), attempt.trigger),
            (Some(200), AttemptTrigger::FirstTry)
        );
    }
}

#[tokio::test]
async fn a_500_is_retried_until_it_succeeds() {
    let receiver = TestReceiver::start(|n| Reply::Status(if n < 2 { 500 } else { 204 })).await;
    let dispatcher = start(
        Arc::new(MemoryLogStore::new()),
        vec![endpoint("crm", &receiver.url())],
        &[30, 30, 30],
    );
    let (_, logged) = emit_and_wait(&dispatcher, EventKind::PaidCourseSale).await;
    let attempts = &logged.deliveries[0].attempts;
    let statuses: Vec<_> = attempts.iter().map(|a| a.http_status().unwrap()).collect();
    assert_eq!(statuses, [500, 500, 204]);
    let triggers: Vec<_> = attempts.iter().map(|a| a.trigger).collect();
    assert_eq!(
        triggers,
        [
            AttemptTrigger::FirstTry,
            AttemptTrigger::AutomaticRetry,
            AttemptTrigger::AutomaticRetry
        ]
    );
    assert_eq!(logged.status(), DeliveryState::Delivered);
    let bodies: Vec<_> = receiver.received().into_iter().map(|r| r.body).collect();
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every retry sends the same bytes"
    );
}

#[tokio::test]
async fn the_last_failure_ends_the_delivery_as_failed() {
    let receiver = TestReceiver::start(|_| Reply::Status(503)).await;
    let dispatcher = start(
        Arc::new(MemoryLogStore::new()),
        vec![endpoint("crm", &receiver.url())],
        &[20, 20],
    );
    let (_, logged) = emit_and_wait(&dispatcher, EventKind::PaymentFailed).await;
    assert_eq!(logged.status(), DeliveryState::Failed);
    assert_eq!(logged.deliveries[0].attempts.len(), 3);
    assert_eq!(receiver.received().len(), 3);
}

#[tokio::test]
async fn retry_after_on_429_is_honoured() {
    let receiver = TestReceiver::start(|n| {
        if n == 0 {
            Reply::WithHeaders(429, vec![("retry-after", "1".into())])
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let dispatcher = start(
        Arc::new(MemoryLogStore::new()),
        vec![endpoint("crm", &receiver.url())],
        &[10],
    );
    let (_, logged) = emit_and_wait(&dispatcher, EventKind::PaidCourseSale).await;
    assert_eq!(logged.status(), DeliveryState::Delivered);
    let requests = receiver.received();
    let gap = requests[1].at - requests[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "retried after {gap:?}, not after Retry-After: 1"
    );
}

#[tokio::test]
async fn gone_410_ends_the_delivery_at_once() {
    let receiver = TestReceiver::start(|_| Reply::Status(410)).await;
    let dispatcher = start(
        Arc::new(MemoryLogStore::new()),
        vec![endpoint("crm", &receiver.url())],
        &[10, 10, 10],
    );
    let (_, logged) = emit_and_wait(&dispatcher, EventKind::PaidCourseSale).await;
    assert_eq!(logged.status(), DeliveryState::Failed);
    assert_eq!(logged.deliveries[0].attempts.len(), 1);
}

#[tokio::test]
async fn a_timeout_is_recorded_as_such() {
    let receiver = TestReceiver::start(|_| Reply::Hang(Duration::from_secs(3))).await;
    let dispatcher = Dispatcher::start_with(
        Arc::new(MemoryLogStore::new()),
        loopback_sender(Duration::from_millis(200)),
        vec![endpoint("crm", &receiver.url())],
        config(&[]),
        Arc::new(SystemClock),
    )
    .unwrap();
    let (_, logged) = emit_and_wait(&dispatcher, EventKind::PaidCourseSale).await;
    let attempt = &logged.deliveries[0].attempts[0];
    assert!(
        matches!(
            &attempt.outcome,
            fermion_webhooks::store::AttemptOutcome::TransportError {
                kind: TransportErrorKind::Timeout,
                ..
            }
        ),
        "{attempt:?}"
    );
    assert!(attempt.duration < Duration::from_secs(2));
    assert_eq!(logged.status(), DeliveryState::Failed);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let target = TestReceiver::ok().await;
    let location = target.url();
    let receiver =
        TestReceiver::start(move |_| Reply::WithHeaders(302, vec![("location", location.clone())]))
            .await;
    let dispatcher = start(
        Arc::new(MemoryLogStore::new()),
        vec![endpoint("crm", &receiver.url())],
        &[],
    );
    let (_, logged) = emit_and_wait(&dispatcher, EventKind::PaidCourseSale).await;
    assert_eq!(logged.deliveries[0].attempts[0].http_status(), Some(302));
    assert_eq!(logged.status(), DeliveryState::Failed);
    assert!(
        target.received().is_empty(),
        "nothing reached the redirect target"
    );
}

#[tokio::test]
async fn private_addresses_are_refused_by_default_in_every_spelling() {
    let receiver = TestReceiver::ok().await;
    let port = receiver.addr.port();
    let guarded = Arc::new(
        HttpSender::builder()
            .resolve("innocent.example.com", &["127.0.0.1".parse().unwrap()])
            .build()
            .unwrap(),
    );
    let urls = [
        format!("http://127.0.0.1:{port}/"),
        format!("http://2130706433:{port}/"),
        format!("http://0x7f.0.0.1:{port}/"),
        format!("http://0177.0.0.1:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://localhost.:{port}/"),
        format!("http://innocent.example.com:{port}/"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
    ];
    let endpoints: Vec<Endpoint> = urls
        .iter()
        .enumerate()
        .map(|(i, url)| endpoint(&format!("e{i}"), url))
        .collect();
    let dispatcher = Dispatcher::start_with(
        Arc::new(MemoryLogStore::new()),
        guarded,
        endpoints,
        config(&[10, 10]),
        Arc::new(SystemClock),
    )
    .unwrap();
    let (_, logged) = emit_and_wait(&dispatcher, EventKind::PaidCourseSale).await;
    for (delivery, url) in logged.deliveries.iter().zip(&urls) {
        assert_eq!(
            delivery.state,
            DeliveryState::Failed,
            "{url}: {:?}",
            delivery.attempts
        );
        assert_eq!(
            delivery.attempts.len(),
            1,
            "{url}: a blocked address is not retried"
        );
        assert!(
            matches!(
                &delivery.attempts[0].outcome,
                fermion_webhooks::store::AttemptOutcome::TransportError {
                    kind: TransportErrorKind::BlockedAddress,
                    ..
                }
            ),
            "{url}: {:?}",
            delivery.attempts[0]
        );
    }
    assert!(
        receiver.received().is_empty(),
        "no request reached the loopback server"
    );
}

#[tokio::test]
async fn per_event_switches_route_each_kind_to_its_endpoints() {
    let crm = TestReceiver::ok().await;
    let books = TestReceiver::ok().await;
    let endpoints = vec![
        endpoint("crm", &crm.url())
            .subscribe_only([EventKind::FreeCourseEnrollment, EventKind::PaidCourseSale]),
        endpoint("books", &books.url())
            .subscribe_only([EventKind::PaidCourseSale, EventKind::PaymentFailed]),
        endpoint("off", &crm.url()).enabled(false),
    ];
    let dispatcher = start(Arc::new(MemoryLogStore::new()), endpoints, &[]);
    let expectations = [
        (EventKind::FreeCourseEnrollment, vec!["crm"]),
        (EventKind::PaidCourseSale, vec!["crm", "books"]),
        (EventKind::PaymentFailed, vec!["books"]),
        (EventKind::PaymentInitiatedNotCompleted, vec![]),
    ];
    for (kind, wanted) in expectations {
        let emitted = dispatcher.emit(EventPayload::sample(kind)).await.unwrap();
        assert_eq!(emitted.endpoint_ids, wanted, "{kind}");
        if emitted.is_unsubscribed() {
            continue;
        }
        dispatcher
            .wait_until_final(&emitted.event_unique_id, WAIT)
            .await
            .unwrap();
    }
    let kinds = |receiver: &TestReceiver| -> Vec<String> {
        receiver
            .received()
            .iter()
            .map(|r| {
                WebhookEvent::from_json(&r.body)
                    .unwrap()
                    .event_type()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(kinds(&crm), ["free-course-enrollment", "paid-course-sale"]);
    assert_eq!(kinds(&books), ["paid-course-sale", "payment-failed"]);
}

/// A file log in `dir` holding `event` with a delivery to "crm" pending at `due`, logged by a
/// store since closed, and opened again.
async fn reopened_with_pending(
    dir: &TempDir,
    event: &WebhookEvent,
    url: &str,
    due: chrono::DateTime<chrono::Utc>,
) -> Arc<FileLogStore> {
    {
        let store = FileLogStore::open(dir.path()).await.unwrap();
        let delivery = Delivery::pending("crm", url, due);
        store
            .append(StoredEvent::new(event, vec![delivery]))
            .await
            .unwrap();
    }
    Arc::new(FileLogStore::open(dir.path()).await.unwrap())
}

#[tokio::test]
async fn a_restart_resumes_deliveries_left_pending_in_the_file_log() {
    let dir = TempDir::new("resume");
    let receiver = TestReceiver::ok().await;
    let event = WebhookEvent::new(EventPayload::sample(EventKind::PaidCourseSale));
    // As if the process died right after `emit` returned.
    let store = reopened_with_pending(&dir, &event, &receiver.url(), event.timestamp).await;
    let dispatcher = start(store, vec![endpoint("crm", &receiver.url())], &[]);
    let logged = dispatcher
        .wait_until_final(&event.event_unique_id, WAIT)
        .await
        .unwrap();
    assert_eq!(logged.status(), DeliveryState::Delivered);
    assert_eq!(receiver.received()[0].body, event.to_json_bytes());
}

#[tokio::test]
async fn a_retry_scheduled_by_an_earlier_run_is_sent_once_it_falls_due() {
    let dir = TempDir::new("resume-later");
    let receiver = TestReceiver::ok().await;
    let event = WebhookEvent::new(EventPayload::sample(EventKind::PaymentFailed));
    let due = chrono::Utc::now() + chrono::TimeDelta::milliseconds(600);
    // As if an earlier run had scheduled this retry and then stopped.
    let store = reopened_with_pending(&dir, &event, &receiver.url(), due).await;
    let dispatcher = start(store, vec![endpoint("crm", &receiver.url())], &[]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.received().is_empty(), "not before it is due");
    let logged = dispatcher
        .wait_until_final(&event.event_unique_id, WAIT)
        .await
        .unwrap();
    assert_eq!(logged.status(), DeliveryState::Delivered);
    let sent_at = logged.deliveries[0].attempts[0].started_at;
    assert!(sent_at >= due, "sent at {sent_at}, due at {due}");
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn no_more_requests_than_max_in_flight_reach_an_endpoint_at_once() {
    let receiver = TestReceiver::start(|_| Reply::Hang(Duration::from_millis(150))).await;
    let mut config = config(&[]);
    config.max_in_flight = 3;
    let dispatcher = Dispatcher::start_with(
        Arc::new(MemoryLogStore::new()),
        loopback_sender(Duration::from_secs(5)),
        vec![endpoint("crm", &receiver.url())],
        config,
        Arc::new(SystemClock),
    )
    .unwrap();
    let mut ids = Vec::new();
    for _ in 0..9 {
        let emitted = dispatcher
            .emit(EventPayload::sample(EventKind::PaidCourseSale))
            .await
            .unwrap();
        ids.push(emitted.event_unique_id);
    }
    for id in &ids {
        let logged = dispatcher.wait_until_final(id, WAIT).await.unwrap();
        assert_eq!(logged.status(), DeliveryState::Delivered);
    }
    // Each request is held 150 ms: within any 120 ms, at most three may arrive.
    let arrivals: Vec<_> = receiver.received().iter().map(|r| r.at).collect();
    assert_eq!(arrivals.len(), 9);
    for first in &arrivals {
        let together = arrivals
            .iter()
            .filter(|at| **at >= *first && at.duration_since(*first) < Duration::from_millis(120))
            .count();
        assert!(together <= 3, "{together} requests at once: {arrivals:?}");
    }
}

#[tokio::test]
async fn shutdown_leaves_undelivered_work_pending_for_the_next_start() {
    let dir = TempDir::new("shutdown");
    let receiver = TestReceiver::start(|_| Reply::Status(500)).await;
    let store = Arc::new(FileLogStore::open(dir.path()).await.unwrap());
    let dispatcher = start(
        store.clone(),
        vec![endpoint("crm", &receiver.url())],
        &[60_000],
    );
    let emitted = dispatcher
        .emit(EventPayload::sample(EventKind::PaidCourseSale))
        .await
        .unwrap();
    while receiver.received().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(dispatcher.shutdown(Duration::from_secs(5)).await, 0);
    let error = dispatcher
        .emit(EventPayload::sample(EventKind::PaidCourseSale))
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        fermion_webhooks::dispatch::DispatchError::ShuttingDown
    ));
    let logged = store.get(&emitted.event_unique_id).await.unwrap().unwrap();
    assert_eq!(
        logged.status(),
        DeliveryState::Pending,
        "the retry is still scheduled"
    );
}

#[tokio::test]
async fn test_events_go_to_the_chosen_endpoint_even_if_unsubscribed() {
    let receiver = TestReceiver::ok().await;
    let only_sales = endpoint("crm", &receiver.url()).subscribe_only([EventKind::PaidCourseSale]);
    let dispatcher = start(Arc::new(MemoryLogStore::new()), vec![only_sales], &[]);
    let emitted = dispatcher
        .send_test_event(EventKind::FreeCourseEnrollment, "crm")
        .await
        .unwrap();
    let logged = dispatcher
        .wait_until_final(&emitted.event_unique_id, WAIT)
        .await
        .unwrap();
    assert!(logged.is_test_event);
    assert_eq!(
        logged.deliveries[0].attempts[0].trigger,
        AttemptTrigger::Test
    );
    let sent = WebhookEvent::from_json(&receiver.received()[0].body).unwrap();
    assert!(sent.is_test_event);
    assert_eq!(sent.kind(), Some(EventKind::FreeCourseEnrollment));
    let error = dispatcher
        .send_test_event(EventKind::PaidCourseSale, "nope")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no endpoint nope"));
}

#[tokio::test]
async fn a_retrigger_resends_the_same_bytes_with_the_same_id() {
    let receiver = TestReceiver::start(|n| Reply::Status(if n == 0 { 500 } else { 200 })).await;
    let store = Arc::new(MemoryLogStore::new());
    let dispatcher = start(store.clone(), vec![endpoint("crm", &receiver.url())], &[]);
    let (emitted, logged) = emit_and_wait(&dispatcher, EventKind::PaymentFailed).await;
    assert_eq!(logged.status(), DeliveryState::Failed);

    let results = dispatcher
        .retrigger(&emitted.event_unique_id, None)
        .await
        .unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(
        (results[0].outcome.status(), results[0].state),
        (Some(200), DeliveryState::Delivered)
    );
    let requests = receiver.received();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].body, requests[1].body,
        "byte-identical, same eventUniqueId"
    );
    let logged = store.get(&emitted.event_unique_id).await.unwrap().unwrap();
    assert_eq!(logged.status(), DeliveryState::Delivered);
    assert_eq!(
        logged.deliveries[0].attempts[1].trigger,
        AttemptTrigger::ManualRetrigger
    );
}

#[tokio::test]
async fn bulk_recovery_retriggers_every_failed_delivery_in_a_range() {
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = healthy.clone();
    let receiver = TestReceiver::start(move |_| {
        Reply::Status(if flag.load(std::sync::atomic::Ordering::SeqCst) {
            200
        } else {
            500
        })
    })
    .await;
    let store = Arc::new(MemoryLogStore::new());
    let dispatcher = start(store.clone(), vec![endpoint("crm", &receiver.url())], &[]);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let emitted = dispatcher
            .emit(EventPayload::sample(EventKind::PaidCourseSale))
            .await
            .unwrap();
        dispatcher
            .wait_until_final(&emitted.event_unique_id, WAIT)
            .await
            .unwrap();
        ids.push(emitted.event_unique_id);
    }
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    let now = chrono::Utc::now();
    let results = dispatcher
        .retrigger_failed(
            now - chrono::TimeDelta::hours(1),
            now + chrono::TimeDelta::hours(1),
        )
        .await
        .unwrap();
    assert_eq!(results.len(), 3);
    for id in ids {
        assert_eq!(
            store.get(&id).await.unwrap().unwrap().status(),
            DeliveryState::Delivered
        );
    }
}

/// A memory log that counts how events are read back, and optionally cannot record attempts
/// (a full disk, say).
#[derive(Debug, Default)]
struct Observed {
    log: MemoryLogStore,
    attempts_fail: bool,
    gets: std::sync::atomic::AtomicUsize,
    body_reads: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl LogStore for Observed {
    async fn append(&self, event: StoredEvent) -> Result<(), fermion_webhooks::store::LogError> {
        self.log.append(event).await
    }
    async fn record_attempt(
        &self,
        record: fermion_webhooks::store::AttemptRecord,
    ) -> Result<(), fermion_webhooks::store::LogError> {
        if !self.attempts_fail {
            return self.log.record_attempt(record).await;
        }
        Err(fermion_webhooks::store::LogError::Database {
            what: "recording an attempt".into(),
            source: "disk full (simulated)".into(),
        })
    }
    async fn claim_due(
        &self,
        request: &fermion_webhooks::store::ClaimRequest,
    ) -> Result<Vec<fermion_webhooks::store::DueDelivery>, fermion_webhooks::store::LogError> {
        self.log.claim_due(request).await
    }
    async fn backlog(
        &self,
    ) -> Result<Vec<fermion_webhooks::store::EndpointBacklog>, fermion_webhooks::store::LogError>
    {
        self.log.backlog().await
    }
    async fn claim(
        &self,
        event_id: &str,
        endpoint_id: &str,
        now: chrono::DateTime<chrono::Utc>,
        lease: Duration,
    ) -> Result<Option<fermion_webhooks::store::ClaimToken>, fermion_webhooks::store::LogError>
    {
        self.log.claim(event_id, endpoint_id, now, lease).await
    }
    async fn release(
        &self,
        token: &fermion_webhooks::store::ClaimToken,
    ) -> Result<(), fermion_webhooks::store::LogError> {
        self.log.release(token).await
    }
    async fn get(
        &self,
        id: &str,
    ) -> Result<Option<StoredEvent>, fermion_webhooks::store::LogError> {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.log.get(id).await
    }
    async fn bodies(
        &self,
        ids: &[&str],
    ) -> Result<Vec<fermion_webhooks::store::EventBody>, fermion_webhooks::store::LogError> {
        self.body_reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.log.bodies(ids).await
    }
    async fn query(
        &self,
        filter: &fermion_webhooks::store::LogFilter,
        cursor: Option<&fermion_webhooks::store::Cursor>,
        limit: usize,
    ) -> Result<fermion_webhooks::store::Page, fermion_webhooks::store::LogError> {
        self.log.query(filter, cursor, limit).await
    }
    async fn scan(
        &self,
        filter: &fermion_webhooks::store::LogFilter,
        visit: &mut (dyn FnMut(StoredEvent) -> std::ops::ControlFlow<()> + Send),
    ) -> Result<u64, fermion_webhooks::store::LogError> {
        self.log.scan(filter, visit).await
    }
    async fn delete_before(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, fermion_webhooks::store::LogError> {
        self.log.delete_before(cutoff).await
    }
}

/// A sender that answers 200 without any network, counting its calls.
#[derive(Debug, Default)]
struct CountingSender(std::sync::atomic::AtomicUsize);

#[async_trait::async_trait]
impl fermion_webhooks::Sender for CountingSender {
    async fn send(
        &self,
        _: fermion_webhooks::sender::DeliveryRequest<'_>,
    ) -> fermion_webhooks::sender::SendOutcome {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        fermion_webhooks::sender::SendOutcome {
            started_at: chrono::Utc::now(),
            duration: Duration::from_millis(1),
            result: fermion_webhooks::sender::SendResult::Response {
                status: 200,
                snippet: String::new(),
                retry_after: None,
            },
        }
    }
}

// On paused time: five minutes of a failing log play out at once.
#[tokio::test(start_paused = true)]
async fn a_log_that_cannot_record_attempts_does_not_cause_a_flood_of_resends() {
    let sender = Arc::new(CountingSender::default());
    let failing = Observed {
        attempts_fail: true,
        ..Observed::default()
    };
    let dispatcher = Dispatcher::start_with(
        Arc::new(failing),
        sender.clone(),
        vec![endpoint("crm", "https://crm.example.com/hook")],
        config(&[]),
        Arc::new(fermion_webhooks::clock::TokioClock::new()),
    )
    .unwrap();
    dispatcher
        .emit(EventPayload::sample(EventKind::PaidCourseSale))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let calls = sender.0.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        calls, 1,
        "sent {calls} times in 1.5 s while the log was failing"
    );
    // The unrecorded delivery stays claimed until its 60 s lease ends, then is tried again:
    // about once a minute, never a flood.
    tokio::time::sleep(Duration::from_secs(300)).await;
    let calls = sender.0.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (3..=7).contains(&calls),
        "sent {calls} times in 5 min while the log was failing"
    );
}

#[tokio::test]
async fn deliveries_claimed_from_the_log_read_their_bodies_once_per_claim() {
    // Events another instance logged, or this one before a restart: their bodies are not in
    // this dispatcher's memory.
    let store = Arc::new(Observed::default());
    let mut expected = Vec::new();
    for i in 0..12 {
        let event = WebhookEvent::new(EventPayload::sample(EventKind::ALL[i % 4]));
        let delivery = Delivery::pending("crm", "https://crm.example.com/hook", event.timestamp);
        store
            .append(StoredEvent::new(&event, vec![delivery]))
            .await
            .unwrap();
        expected.push(event);
    }
    let sender = Arc::new(CountingSender::default());
    let dispatcher = Dispatcher::start_with(
        store.clone(),
        sender.clone(),
        vec![endpoint("crm", "https://crm.example.com/hook")],
        config(&[]),
        Arc::new(SystemClock),
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while sender.0.load(std::sync::atomic::Ordering::SeqCst) < 12 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "12 sends in {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (gets, reads) = (
        store.gets.load(std::sync::atomic::Ordering::SeqCst),
        store.body_reads.load(std::sync::atomic::Ordering::SeqCst),
    );
    assert_eq!(gets, 0, "events read whole for their attempts");
    assert!(
        (1..=3).contains(&reads),
        "{reads} reads of bodies for 12 deliveries"
    );
    for event in &expected {
        let logged = dispatcher
            .wait_until_final(&event.event_unique_id, WAIT)
            .await
            .unwrap();
        assert_eq!(logged.status(), DeliveryState::Delivered);
    }
    assert_eq!(sender.0.load(std::sync::atomic::Ordering::SeqCst), 12);
}

#[test]
fn starting_outside_a_runtime_is_a_typed_error_not_a_panic() {
    let error = Dispatcher::start(
        Arc::new(MemoryLogStore::new()),
        Arc::new(CountingSender::default()),
        vec![],
    )
    .unwrap_err();
    assert!(
        matches!(error, fermion_webhooks::dispatch::DispatchError::NoRuntime),
        "{error:?}"
    );
    assert!(error.to_string().contains("tokio runtime"));
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_at_emit_and_never_logged() {
    let store = Arc::new(MemoryLogStore::new());
    let mut config = config(&[]);
    config.max_body_bytes = 2048;
    let dispatcher = Dispatcher::start_with(
        store.clone(),
        loopback_sender(Duration::from_secs(5)),
        vec![endpoint("e", "http://127.0.0.1:9/")],
        config,
        Arc::new(SystemClock),
    )
    .unwrap();
    let mut payload = EventPayload::sample(EventKind::PaymentFailed);
    if let EventPayload::PaymentFailed(failed) = &mut payload {
        failed.failure_reason = Some("x".repeat(4096));
    }
    let error = dispatcher.emit(payload).await.unwrap_err();
    assert!(
        matches!(
            error,
            fermion_webhooks::dispatch::DispatchError::BodyTooLarge { max: 2048, len, .. } if len > 4096
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("max_body_bytes"), "{error}");
    assert!(support::ids_in_log(store.as_ref()).await.is_empty());
}
