//! `noisy_neighbor`: 2,000 events to a healthy endpoint on 127.0.0.1, through `emit` and the
//! dispatcher (memory log, default configuration but for the attempt time limit), once alone
//! and once beside a neighbour subscribed to the same events that
//! - never answers (attempt time limit 3 s), or
//! - answers after 2 s.
//!
//! The figure is the time until the healthy endpoint has every event, beside the neighbour
//! over alone. Target: ≤ 1.5 for both neighbours.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fermion_webhooks::clock::SystemClock;
use fermion_webhooks::{
    DispatchConfig, Dispatcher, Endpoint, EventKind, EventPayload, HttpSender, MemoryLogStore,
    WebhookSecret,
};
use support::data::runtime;
use support::emit::{SECRET, receiver, wait_for};

/// How the neighbour behaves.
#[derive(Clone, Copy)]
enum Neighbour {
    None,
    NeverAnswers,
    AnswersAfter2s,
}

fn main() {
    let total = if support::quick() { 500 } else { 2_000 };
    let rounds = if support::quick() { 1 } else { 5 };
    for (name, neighbour) in [
        ("noisy_neighbor (never answers)", Neighbour::NeverAnswers),
        (
            "noisy_neighbor (answers after 2 s)",
            Neighbour::AnswersAfter2s,
        ),
    ] {
        let (mut alone, mut beside) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let solo = runtime().block_on(healthy_done_after(total, Neighbour::None));
            let noisy = runtime().block_on(healthy_done_after(total, neighbour));
            let (solo, noisy) = (solo.as_secs_f64() * 1e3, noisy.as_secs_f64() * 1e3);
            eprintln!("round {round}: alone {solo:.0} ms, beside the neighbour {noisy:.0} ms");
            alone.push(solo);
            beside.push(noisy);
        }
        let (beside, alone) = support::median_round(&beside, &alone);
        support::summary(name, beside, "ms beside", alone, "ms alone");
    }
}

/// The time from the first `emit` until the healthy endpoint has received all `total`.
async fn healthy_done_after(total: usize, neighbour: Neighbour) -> Duration {
    let (healthy, received) = receiver().await;
    let mut endpoints = vec![endpoint("healthy", &healthy)];
    match neighbour {
        Neighbour::None => {}
        Neighbour::NeverAnswers => endpoints.push(endpoint("neighbour", &silent_server().await)),
        Neighbour::AnswersAfter2s => endpoints.push(endpoint("neighbour", &slow_server().await)),
    }
    let sender = HttpSender::builder()
        .allow_private_networks(true)
        .timeout(Duration::from_secs(3))
        .build()
        .expect("a sender");
    let dispatcher = Dispatcher::start_with(
        Arc::new(MemoryLogStore::new()),
        Arc::new(sender),
        endpoints,
        DispatchConfig::default(),
        Arc::new(SystemClock),
    )
    .expect("a dispatcher");
    received.store(0, Ordering::Relaxed);
    let payloads: Vec<EventPayload> = (0..total)
        .map(|i| EventPayload::sample(EventKind::ALL[i % 4]))
        .collect();
    let start = Instant::now();
    for payload in payloads {
        dispatcher.emit(payload).await.expect("emit");
    }
    wait_for(&received, total).await;
    let took = start.elapsed();
    // The neighbour's attempts are abandoned: only the healthy endpoint's time is measured.
    dispatcher.shutdown(Duration::ZERO).await;
    took
}

fn endpoint(id: &str, url: &str) -> Endpoint {
    Endpoint::new(id, url, WebhookSecret::new(SECRET).expect("a secret")).expect("an endpoint")
}

/// A server on 127.0.0.1 that accepts connections and never answers.
async fn silent_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let url = format!(
        "http://{}/hooks",
        listener.local_addr().expect("an address")
    );
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    url
}

/// An axum server on 127.0.0.1 that answers every request 200 after 2 s.
async fn slow_server() -> String {
    let answered = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new()
        .route(
            "/hooks",
            axum::routing::post(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                "ok"
            }),
        )
        .with_state(answered);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let url = format!(
        "http://{}/hooks",
        listener.local_addr().expect("an address")
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}
