//! What the dispatcher tells an operator: a span per attempt with its outcome, a warning per
//! failed attempt, counts in `stats()`; and never a secret or a body in any of it.

mod common;
mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::receiver::{Reply, TestReceiver};
use fermion_webhooks::dispatch::DispatchConfig;
use fermion_webhooks::{Endpoint, EventKind, MemoryLogStore, RetrySchedule, WebhookSecret};
use tracing_subscriber::fmt::format::FmtSpan;

const SECRET: &str = "observability-secret-8d41e";

/// Everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

// One thread, so the subscriber set for this test sees every task the dispatcher spawns.
#[tokio::test(flavor = "current_thread")]
async fn every_attempt_is_traced_with_its_outcome_and_never_a_secret_or_body() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(FmtSpan::CLOSE)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    // The first answer echoes every request header, the secret's included, as a careless
    // debug endpoint would; the retry is answered 200.
    let receiver = TestReceiver::start(|n| match n {
        0 => Reply::EchoHeaders,
        _ => Reply::Status(200),
    })
    .await;
    let endpoint =
        Endpoint::new("crm", receiver.url(), WebhookSecret::new(SECRET).unwrap()).unwrap();
    let mut config = DispatchConfig::default();
    config.retry = RetrySchedule::fixed([Duration::from_millis(10)]);
    config.poll_interval = Duration::from_millis(10);
    let dispatcher = support::dispatcher_for(Arc::new(MemoryLogStore::new()), endpoint, config);
    let (emitted, _) = support::emit_until_final(&dispatcher, EventKind::PaidCourseSale).await;
    let stats = dispatcher.stats().await.unwrap();
    assert_eq!((stats.delivered, stats.retried, stats.failed), (1, 1, 0));
    assert!(stats.pending.is_empty());
    assert_eq!(stats.oldest_pending_age, None);
    dispatcher.shutdown(Duration::from_secs(1)).await;

    let text = captured.text();
    let attempts: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("webhook_attempt") && line.contains("close"))
        .collect();
    assert_eq!(attempts.len(), 2, "a span per attempt:\n{text}");
    for field in [
        format!("event_id={}", emitted.event_unique_id),
        "endpoint_id=crm".to_owned(),
        "attempt=1".to_owned(),
        "http_status=500".to_owned(),
        "outcome=\"rejected\"".to_owned(),
        "latency_ms=".to_owned(),
    ] {
        assert!(attempts[0].contains(&field), "{field} in {}", attempts[0]);
    }
    assert!(attempts[1].contains("attempt=2") && attempts[1].contains("outcome=\"delivered\""));
    assert!(
        text.lines()
            .any(|line| line.contains("WARN") && line.contains("webhook attempt failed")),
        "a warning for the failed attempt:\n{text}"
    );
    assert!(!text.contains(SECRET), "the secret leaked:\n{text}");
    let body = String::from_utf8_lossy(&receiver.received()[0].body).into_owned();
    let email = "aarav.sharma@example.com";
    assert!(body.contains(email), "the sample's customer: {body}");
    assert!(!text.contains(email), "the body leaked:\n{text}");
    assert!(
        !text.contains("x-fermion-webhook-secret"),
        "the echo leaked:\n{text}"
    );
}
