//! Many concurrent emitters into the file log and a local receiver: every event delivered, none
//! lost, none twice in the log. The suite runs a scaled-down load; the full 1,000 × 100 soak is
//! `FERMION_LOAD_EMITTERS=1000 FERMION_LOAD_EVENTS=100 cargo test --release --all-features --test load`.

mod common;
mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::receiver::TestReceiver;
use fermion_webhooks::{
    DeliveryState, DispatchConfig, Dispatcher, Endpoint, EventKind, EventPayload, FileLogStore,
    HttpSender, SystemClock, WebhookEvent, WebhookSecret,
};
use support::{TempDir, ids_in_log};

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
    let receiver = TestReceiver::ok().await;
    let dir = TempDir::new("load");
    let store = Arc::new(FileLogStore::open(dir.path()).unwrap());
    let sender = HttpSender::builder()
        .allow_private_networks(true)
        .build()
        .unwrap();
    let mut config = DispatchConfig::default();
    config.poll_interval = Duration::from_millis(20);
    let endpoint =
        Endpoint::new("crm", receiver.url(), WebhookSecret::new("load").unwrap()).unwrap();
    let dispatcher = Dispatcher::start_with(
        store.clone(),
        Arc::new(sender),
        vec![endpoint],
        config,
        Arc::new(SystemClock),
    )
    .unwrap();

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
    let received: HashSet<String> = receiver
        .received()
        .iter()
        .map(|r| WebhookEvent::from_json(&r.body).unwrap().event_unique_id)
        .collect();
    assert_eq!(received.len(), total, "every event reached the receiver");
    let stats = store.write_stats();
    assert!(
        stats.commits < stats.records,
        "group commit shared fsyncs: {stats:?}"
    );
}
