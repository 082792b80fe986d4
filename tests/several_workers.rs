//! Three `worker` processes delivering from one PostgreSQL database to one receiver, one of
//! them SIGKILLed half way: every event arrives, and only what the killed process had in
//! flight may arrive twice. At-least-once is the promise; exactly-once for everything else is
//! what claims with leases give.

mod common;
mod pg;
mod support;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::receiver::TestReceiver;
use fermion_webhooks::clock::SystemClock;
use fermion_webhooks::dispatch::DispatchConfig;
use fermion_webhooks::store::{DeliveryState, EndpointStore, LogFilter};
use fermion_webhooks::{
    Dispatcher, Endpoint, EventKind, EventPayload, HttpSender, LogStore, WebhookSecret,
};
use support::example_binary;

const EVENTS: usize = 3_000;
/// Each worker's attempts at once: the most the killed one can have sent and not recorded.
const IN_FLIGHT: usize = 16;

fn worker(url: &str) -> Child {
    Command::new(example_binary("worker"))
        .args([
            "--database-url",
            url,
            "--exit-when-idle",
            "--allow-private-networks",
            "--lease",
            "2s",
            "--timeout",
            "5s",
            "--retry-schedule",
            "200ms,200ms,200ms",
            "--max-in-flight",
            &IN_FLIGHT.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("a worker process")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_one_killed_deliver_every_event_and_repeat_only_what_it_had_in_flight() {
    let Some(schema) = pg::Schema::new("workers").await else {
        return;
    };
    let store = Arc::new(schema.store().await);
    let receiver = TestReceiver::ok().await;
    let endpoint = Endpoint::new(
        "crm",
        receiver.url(),
        WebhookSecret::new("workers-secret").unwrap(),
    )
    .unwrap();
    store.put_endpoint(&endpoint).await.unwrap();

    // The platform emits; delivery is the workers' job.
    let mut config = DispatchConfig::default();
    config.background_delivery = false;
    let emitter = Dispatcher::start_with(
        store.clone(),
        Arc::new(HttpSender::new().unwrap()),
        vec![endpoint],
        config,
        Arc::new(SystemClock),
    )
    .unwrap();
    let mut emitted = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        let payload = EventPayload::sample(EventKind::ALL[i % 4]);
        emitted.push(emitter.emit(payload).await.unwrap().event_unique_id);
    }

    let url = schema.url();
    let mut victim = worker(&url);
    let mut survivors = [worker(&url), worker(&url)];
    // Kill one once about a third has arrived, mid-stride.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while receiver.received().len() < EVENTS / 3 {
        assert!(tokio::time::Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    victim.kill().unwrap(); // SIGKILL
    victim.wait().unwrap();
    for survivor in &mut survivors {
        let status = tokio::task::block_in_place(|| survivor.wait()).unwrap();
        assert!(status.success(), "a surviving worker failed: {status}");
    }

    let mut times: HashMap<String, usize> = HashMap::new();
    for request in receiver.received() {
        let value: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        *times
            .entry(value["eventUniqueId"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let missing = emitted.iter().filter(|id| !times.contains_key(*id)).count();
    let repeated: usize = times.values().map(|n| n - 1).sum();
    eprintln!(
        "{EVENTS} events, {} requests: {missing} missing, {repeated} delivered twice (the killed \
         worker's attempts in flight, at most {})",
        receiver.received().len(),
        2 * IN_FLIGHT
    );
    assert_eq!(missing, 0, "every event arrives");
    assert!(
        repeated <= 2 * IN_FLIGHT,
        "only what the killed worker had in flight may repeat: {repeated}"
    );
    let pending = LogFilter::default().status(DeliveryState::Pending);
    assert!(
        store
            .query(&pending, None, 1)
            .await
            .unwrap()
            .events
            .is_empty()
    );
    let delivered = LogFilter::default().status(DeliveryState::Delivered);
    let mut count = 0;
    store
        .scan_rows(&delivered, &mut |_| {
            count += 1;
            std::ops::ControlFlow::Continue(())
        })
        .await
        .unwrap();
    assert_eq!(count, EVENTS, "the log says every event was delivered");
}
