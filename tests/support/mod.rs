//! Helpers shared by the log tests: temporary directories and events to store.

#![allow(dead_code)] // Each test file uses a different part.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, Utc};
use fermion_webhooks::store::{
    Attempt, AttemptRecord, AttemptTrigger, Delivery, DeliveryState, StoredEvent,
};
use fermion_webhooks::{EventKind, EventPayload, WebhookEvent};

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "fermion-webhooks-{label}-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn at(iso: &str) -> DateTime<Utc> {
    iso.parse().unwrap()
}

/// A stored event of `kind` at `timestamp`, with pending deliveries to `endpoints`.
pub fn stored(kind: EventKind, timestamp: &str, endpoints: &[&str]) -> StoredEvent {
    let event = WebhookEvent::at(EventPayload::sample(kind), at(timestamp));
    let deliveries = endpoints
        .iter()
        .map(|id| {
            Delivery::pending(
                *id,
                format!("https://hooks.example.com/{id}"),
                at(timestamp),
            )
        })
        .collect();
    StoredEvent::new(&event, deliveries)
}

/// The record of a first attempt that `endpoint` answered with 200 at `at`: the delivery is
/// done.
pub fn delivered(event: &StoredEvent, endpoint: &str, at: DateTime<Utc>) -> AttemptRecord {
    AttemptRecord {
        event_unique_id: event.event_unique_id.clone(),
        endpoint_id: endpoint.into(),
        attempt: Attempt::response(
            at,
            std::time::Duration::from_millis(5),
            200,
            "ok",
            AttemptTrigger::FirstTry,
        ),
        state: DeliveryState::Delivered,
        next_attempt_at: None,
        claim: None,
    }
}

/// `count` (at most 10) paid-course sales a minute apart from 2026-11-28T10:00Z, appended to
/// the file log in `dir`, which is closed again so a test can damage or edit its files.
pub async fn logged_sales(dir: &Path, count: usize) -> Vec<StoredEvent> {
    let events: Vec<StoredEvent> = (0..count)
        .map(|i| {
            stored(
                EventKind::PaidCourseSale,
                &format!("2026-11-28T10:0{i}:00Z"),
                &["crm"],
            )
        })
        .collect();
    let store = fermion_webhooks::FileLogStore::open(dir).await.unwrap();
    for event in &events {
        fermion_webhooks::LogStore::append(&store, event.clone())
            .await
            .unwrap();
    }
    events
}

/// An example binary that `cargo test --all-features` builds beside the tests.
pub fn example_binary(name: &str) -> PathBuf {
    let mut path = std::env::current_exe().unwrap();
    path.pop(); // the test binary
    path.pop(); // deps/
    path.push("examples");
    path.push(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing; run `cargo test --all-features`",
        path.display()
    );
    path
}

/// Every event id in the log, oldest first.
pub async fn ids_in_log(store: &dyn fermion_webhooks::LogStore) -> Vec<String> {
    let mut ids = Vec::new();
    store
        .scan(
            &fermion_webhooks::store::LogFilter::default(),
            &mut |event| {
                ids.push(event.event_unique_id);
                std::ops::ControlFlow::Continue(())
            },
        )
        .await
        .unwrap();
    ids
}

/// Emits a sample event of `kind` and waits, 10 s at most, until every delivery of it is
/// final: the event as emitted, and as the log then holds it.
pub async fn emit_until_final(
    dispatcher: &fermion_webhooks::Dispatcher,
    kind: EventKind,
) -> (fermion_webhooks::dispatch::Emitted, StoredEvent) {
    let emitted = dispatcher.emit(EventPayload::sample(kind)).await.unwrap();
    let stored = dispatcher
        .wait_until_final(&emitted.event_unique_id, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    (emitted, stored)
}

/// A dispatcher delivering to one endpoint "crm" at `url` (on loopback, so private addresses
/// are allowed), with `secret` and `config`.
pub fn loopback_dispatcher(
    store: std::sync::Arc<dyn fermion_webhooks::LogStore>,
    url: &str,
    secret: &str,
    config: fermion_webhooks::DispatchConfig,
) -> fermion_webhooks::Dispatcher {
    use fermion_webhooks::{Endpoint, WebhookSecret};
    let endpoint = Endpoint::new("crm", url, WebhookSecret::new(secret).unwrap()).unwrap();
    dispatcher_for(store, endpoint, config)
}

/// A dispatcher delivering to `endpoint` (on loopback: private addresses are allowed).
pub fn dispatcher_for(
    store: std::sync::Arc<dyn fermion_webhooks::LogStore>,
    endpoint: fermion_webhooks::Endpoint,
    config: fermion_webhooks::DispatchConfig,
) -> fermion_webhooks::Dispatcher {
    use fermion_webhooks::HttpSender;
    use fermion_webhooks::clock::SystemClock;
    let sender = HttpSender::builder()
        .allow_private_networks(true)
        .build()
        .unwrap();
    fermion_webhooks::Dispatcher::start_with(
        store,
        std::sync::Arc::new(sender),
        vec![endpoint],
        config,
        std::sync::Arc::new(SystemClock),
    )
    .unwrap()
}
