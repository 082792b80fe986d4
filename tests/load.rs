//! Many concurrent emitters into the file log and a local receiver: every event delivered, none
//! lost, none twice in the log, and memory bounded (bodies are not kept). The suite runs a
//! scaled-down load; the full 1,000 × 100 soak is
//! `FERMION_LOAD_EMITTERS=1000 FERMION_LOAD_EVENTS=100 cargo test --release --all-features --test load`.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use fermion_webhooks::store::DeliveryState;
use fermion_webhooks::{
    DispatchConfig, Dispatcher, EventKind, EventPayload, FileLogStore, LogStore, WebhookEvent,
};
use support::{TempDir, ids_in_log, loopback_dispatcher};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_emitters_all_get_delivered_exactly_once_in_the_log() {
    let emitters = setting("FERMION_LOAD_EMITTERS", 100);
    let per_emitter = setting("FERMION_LOAD_EVENTS", 20);
    let (url, received) = counting_receiver(Duration::ZERO).await;
    let memory_before = resident_mib();
    let dir = TempDir::new("load");
    let store = Arc::new(FileLogStore::open(dir.path()).await.unwrap());
    let dispatcher = dispatcher_to(&url, store.clone(), Duration::from_millis(20));

    let tasks: Vec<_> = (0..emitters)
        .map(|task| {
            let dispatcher = dispatcher.clone();
            tokio::spawn(async move {
                let mut ids = Vec::with_capacity(per_emitter);
                for i in 0..per_emitter {
                    let kind = EventKind::ALL[(task + i) % 4];
                    let emitted = dispatcher.emit(EventPayload::sample(kind)).await.unwrap();
                    ids.push(emitted.event_unique_id);
                }
                ids
            })
        })
        .collect();
    let mut emitted = Vec::new();
    for task in tasks {
        emitted.extend(task.await.unwrap());
    }
    let total = emitters * per_emitter;
    assert_eq!(emitted.len(), total);
    for id in &emitted {
        let event = dispatcher
            .wait_until_final(id, Duration::from_secs(120))
            .await
            .unwrap();
        assert_eq!(event.status(), DeliveryState::Delivered, "{id}");
    }

    let in_log = ids_in_log(&*store).await;
    let unique: HashSet<&String> = in_log.iter().collect();
    assert_eq!(
        (in_log.len(), unique.len()),
        (total, total),
        "each event exactly once in the log"
    );
    let (received, requests) = {
        let seen = received.lock().unwrap();
        (seen.0.clone(), seen.1)
    };
    assert_eq!(
        requests, total,
        "a healthy receiver gets each event once, not more"
    );
    assert_eq!(received.len(), total, "every event reached the receiver");
    // The log keeps events on disk: what the process holds is a fixed cost (SQLite's page
    // caches for the writer and four readers, the runtime, the HTTP pools), and at most a
    // kilobyte an event on top of it, never the bodies.
    let grown = resident_mib() - memory_before;
    let allowed = 64.0 + total as f64 * 1024.0 / (1024.0 * 1024.0);
    assert!(
        grown < allowed,
        "memory grew {grown:.1} MiB for {total} events (allowed {allowed:.1})"
    );
    let stats = store.write_stats();
    assert!(
        stats.commits < stats.records,
        "group commit shared fsyncs: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_bigger_than_the_ready_queue_is_delivered_once_each_through_the_log() {
    // `emit` hands up to 4,096 deliveries straight to the worker; a slow receiver makes a
    // burst of 5,000 overflow that, so the rest must be found by querying the log.
    let total = 5_000;
    let (url, received) = counting_receiver(Duration::from_millis(40)).await;
    let store = Arc::new(fermion_webhooks::MemoryLogStore::new());
    let dispatcher = dispatcher_to(&url, store.clone(), Duration::from_millis(50));
    let mut emitted = Vec::with_capacity(total);
    for i in 0..total {
        let payload = EventPayload::sample(EventKind::ALL[i % 4]);
        emitted.push(dispatcher.emit(payload).await.unwrap().event_unique_id);
    }
    for id in &emitted {
        let event = dispatcher
            .wait_until_final(id, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(event.status(), DeliveryState::Delivered, "{id}");
    }
    let seen = received.lock().unwrap();
    assert_eq!(seen.0.len(), total, "every event reached the receiver");
    assert_eq!(seen.1, total, "and none of them twice");
}

/// A dispatcher delivering every event to one endpoint at `url` (loopback allowed).
fn dispatcher_to(url: &str, store: Arc<dyn LogStore>, poll_interval: Duration) -> Dispatcher {
    let mut config = DispatchConfig::default();
    config.poll_interval = poll_interval;
    loopback_dispatcher(store, url, "load", config)
}

/// A receiver on 127.0.0.1 that keeps only the ids it got, so memory readings are the crate's.
/// The ids seen, and how many requests came.
type Seen = Arc<std::sync::Mutex<(HashSet<String>, usize)>>;

async fn counting_receiver(delay: Duration) -> (String, Seen) {
    let ids: Seen = Arc::default();
    let seen = ids.clone();
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                tokio::time::sleep(delay).await;
                let event = WebhookEvent::from_json(&body).unwrap();
                let mut seen = seen.lock().unwrap();
                seen.0.insert(event.event_unique_id);
                seen.1 += 1;
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, ids)
}

fn resident_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}
