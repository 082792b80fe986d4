//! A receiving end that misbehaves on purpose, each one a real server on 127.0.0.1: every
//! emitted event still ends delivered or failed, with every attempt recorded, never stuck
//! pending, and the sender's memory stays flat.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fermion_webhooks::clock::SystemClock;
use fermion_webhooks::store::{
    AttemptOutcome, DeliveryState, RESPONSE_SNIPPET_LIMIT, StoredEvent, TransportErrorKind,
};
use fermion_webhooks::{
    DispatchConfig, Dispatcher, Endpoint, EventKind, EventPayload, HttpSender, MemoryLogStore,
    RetrySchedule, WebhookSecret,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A raw TCP server: reads each request's head, then does whatever `misbehave` does.
async fn raw_server<F, Fut>(misbehave: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let misbehave = Arc::new(misbehave);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let misbehave = misbehave.clone();
            tokio::spawn(async move {
                let mut head = vec![0u8; 8192];
                let _ = stream.read(&mut head).await;
                misbehave(stream).await;
            });
        }
    });
    addr
}

async fn deliver_once(url: String, timeout: Duration, sender: Option<HttpSender>) -> StoredEvent {
    let sender = sender.unwrap_or_else(|| {
        HttpSender::builder()
            .allow_private_networks(true)
            .timeout(timeout)
            .build()
            .unwrap()
    });
    let mut config = DispatchConfig::default();
    config.retry = RetrySchedule::fixed([Duration::from_millis(20), Duration::from_millis(20)]);
    config.poll_interval = Duration::from_millis(20);
    let endpoint = Endpoint::new("e", url, WebhookSecret::new("s").unwrap()).unwrap();
    let dispatcher = Dispatcher::start_with(
        Arc::new(MemoryLogStore::new()),
        Arc::new(sender),
        vec![endpoint],
        config,
        Arc::new(SystemClock),
    )
    .unwrap();
    let emitted = dispatcher
        .emit(EventPayload::sample(EventKind::PaidCourseSale))
        .await
        .unwrap();
    dispatcher
        .wait_until_final(&emitted.event_unique_id, Duration::from_secs(30))
        .await
        .expect("the delivery reaches a final state")
}

fn transport_kind(event: &StoredEvent) -> Vec<Option<TransportErrorKind>> {
    event.deliveries[0]
        .attempts
        .iter()
        .map(|a| match &a.outcome {
            AttemptOutcome::TransportError { kind, .. } => Some(*kind),
            AttemptOutcome::Response { .. } => None,
        })
        .collect()
}

#[tokio::test]
async fn a_connection_closed_before_any_response_is_retried_then_failed() {
    let addr = raw_server(|stream| async move { drop(stream) }).await;
    let event = deliver_once(format!("http://{addr}/"), Duration::from_secs(5), None).await;
    assert_eq!(event.deliveries[0].state, DeliveryState::Failed);
    assert_eq!(
        event.deliveries[0].attempts.len(),
        3,
        "first try and two retries, all recorded"
    );
    assert!(
        transport_kind(&event).iter().all(Option::is_some),
        "{:?}",
        event.deliveries[0].attempts
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    let free = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let event = deliver_once(format!("http://{free}/"), Duration::from_secs(5), None).await;
    assert_eq!(event.deliveries[0].state, DeliveryState::Failed);
    assert_eq!(
        transport_kind(&event),
        vec![Some(TransportErrorKind::Connect); 3]
    );
}

#[tokio::test]
async fn an_https_endpoint_that_answers_in_plain_http_is_a_tls_error() {
    let addr = raw_server(|mut stream| async move {
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await;
    })
    .await;
    let event = deliver_once(format!("https://{addr}/"), Duration::from_secs(5), None).await;
    assert_eq!(event.deliveries[0].state, DeliveryState::Failed);
    assert_eq!(
        transport_kind(&event),
        vec![Some(TransportErrorKind::Tls); 3],
        "{:?}",
        event.deliveries[0].attempts
    );
}

#[tokio::test]
async fn an_unresolvable_host_is_a_dns_error() {
    let sender = HttpSender::builder()
        .resolve("nowhere.test", &[])
        .build()
        .unwrap();
    let event = deliver_once(
        "http://nowhere.test/".into(),
        Duration::from_secs(5),
        Some(sender),
    )
    .await;
    assert_eq!(event.deliveries[0].state, DeliveryState::Failed);
    assert_eq!(
        transport_kind(&event),
        vec![Some(TransportErrorKind::Dns); 3]
    );
}

#[tokio::test]
async fn a_trickling_body_ends_at_the_timeout_with_the_status_kept() {
    let addr = raw_server(|mut stream| async move {
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            .await;
        for _ in 0..200 {
            if stream.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let started = std::time::Instant::now();
    let event = deliver_once(format!("http://{addr}/"), Duration::from_millis(700), None).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a trickle cannot hold a delivery"
    );
    let attempt = &event.deliveries[0].attempts[0];
    assert_eq!(attempt.http_status(), Some(200));
    assert_eq!(event.deliveries[0].state, DeliveryState::Delivered);
    assert!(
        attempt.duration < Duration::from_secs(2),
        "{:?}",
        attempt.duration
    );
}

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_50_mib_response_is_not_read_past_the_snippet() {
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    let addr = raw_server(move |mut stream| {
        let counter = counter.clone();
        async move {
            let size = 50 * 1024 * 1024;
            let head =
                format!("HTTP/1.1 500 Internal Server Error\r\nContent-Length: {size}\r\n\r\n");
            let _ = stream.write_all(head.as_bytes()).await;
            let chunk = vec![b'z'; 64 * 1024];
            let mut written = 0;
            while written < size {
                if stream.write_all(&chunk).await.is_err() {
                    break;
                }
                written += chunk.len();
                counter.store(written, std::sync::atomic::Ordering::SeqCst);
            }
        }
    })
    .await;
    let before = resident_kib();
    let event = deliver_once(format!("http://{addr}/"), Duration::from_secs(10), None).await;
    let grown_mib = resident_kib().saturating_sub(before) / 1024;
    for attempt in &event.deliveries[0].attempts {
        let AttemptOutcome::Response { status, snippet } = &attempt.outcome else {
            panic!("{attempt:?}");
        };
        assert_eq!((*status, snippet.len()), (500, RESPONSE_SNIPPET_LIMIT));
    }
    assert_eq!(event.deliveries[0].state, DeliveryState::Failed);
    assert!(
        grown_mib < 20,
        "memory grew by {grown_mib} MiB for three 50 MiB answers"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let written = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        written < 40 * 1024 * 1024,
        "the sender kept reading: {written} bytes went out"
    );
}
