//! The emit benches: `emit` → delivered to an axum receiver on 127.0.0.1 with 64 attempts in
//! flight, against a bare reqwest loop POSTing the same bodies to the same server, 64 at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use fermion_webhooks::clock::SystemClock;
use fermion_webhooks::{
    DispatchConfig, Dispatcher, Endpoint, EventKind, EventPayload, FileLogStore, HttpSender,
    LogStore, MemoryLogStore, SECRET_HEADER, WebhookEvent, WebhookSecret,
};

use super::data::{runtime, scratch_dir};

pub const IN_FLIGHT: usize = 64;
pub const SECRET: &str = "bench-secret";

async fn count(State(received): State<Arc<AtomicUsize>>) -> &'static str {
    received.fetch_add(1, Ordering::Relaxed);
    "ok"
}

pub async fn wait_for(received: &AtomicUsize, total: usize) {
    while received.load(Ordering::Relaxed) < total {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Events per second for the bare reqwest loop.
async fn baseline(url: &str, bodies: Arc<Vec<String>>, received: &Arc<AtomicUsize>) -> f64 {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a client");
    let next = Arc::new(AtomicUsize::new(0));
    received.store(0, Ordering::Relaxed);
    let start = Instant::now();
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (client, bodies, next, url) =
                (client.clone(), bodies.clone(), next.clone(), url.to_owned());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    let sent = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .header(SECRET_HEADER, SECRET)
                        .body(body.clone())
                        .send()
                        .await;
                    if let Ok(response) = sent {
                        let _ = response.bytes().await;
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    wait_for(received, bodies.len()).await;
    bodies.len() as f64 / start.elapsed().as_secs_f64()
}

/// Events per second through `emit` and the dispatcher.
pub async fn through_dispatcher(
    url: &str,
    total: usize,
    store: Arc<dyn LogStore>,
    received: &Arc<AtomicUsize>,
) -> f64 {
    let sender = HttpSender::builder()
        .allow_private_networks(true)
        .build()
        .expect("a sender");
    let mut config = DispatchConfig::default();
    config.max_in_flight = IN_FLIGHT;
    // One endpoint, as many requests to it at once as the baseline sends.
    config.max_in_flight_per_endpoint = IN_FLIGHT;
    config.poll_interval = Duration::from_millis(20);
    let endpoint = Endpoint::new("crm", url, WebhookSecret::new(SECRET).expect("a secret"))
        .expect("an endpoint");
    let dispatcher = Dispatcher::start_with(
        store,
        Arc::new(sender),
        vec![endpoint],
        config,
        Arc::new(SystemClock),
    )
    .expect("a dispatcher");
    received.store(0, Ordering::Relaxed);
    // Made before the clock starts, as the baseline's bodies are: the bench times `emit`, not
    // the making of sample data.
    let payloads: Arc<Vec<std::sync::Mutex<Option<EventPayload>>>> = Arc::new(
        (0..total)
            .map(|i| std::sync::Mutex::new(Some(EventPayload::sample(EventKind::ALL[i % 4]))))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let emitters: Vec<_> = (0..emit_callers())
        .map(|_| {
            let (dispatcher, next, payloads) = (dispatcher.clone(), next.clone(), payloads.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(payload) = payloads.get(i) else {
                        break;
                    };
                    let payload = payload.lock().expect("a payload").take().expect("unsent");
                    dispatcher.emit(payload).await.expect("emit");
                }
            })
        })
        .collect();
    for emitter in emitters {
        let _ = emitter.await;
    }
    wait_for(received, total).await;
    let rate = total as f64 / start.elapsed().as_secs_f64();
    // Before the store closes and its writer thread ends.
    super::threads::mark_end();
    dispatcher.shutdown(Duration::from_secs(10)).await;
    rate
}

/// An axum receiver on 127.0.0.1 counting requests: its URL and the count.
pub async fn receiver() -> (String, Arc<AtomicUsize>) {
    let received = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route("/hooks", post(count))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let url = format!(
        "http://{}/hooks",
        listener.local_addr().expect("an address")
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// How many tasks call `emit` at once: 64 unless `FERMION_BENCH_CALLERS` says otherwise. A
/// diagnosis knob: with more callers than deliveries in flight, the time a durable `emit` waits
/// for its commit no longer caps the rate.
fn emit_callers() -> usize {
    std::env::var("FERMION_BENCH_CALLERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(IN_FLIGHT)
}

/// Runs the bench and prints its summary line.
pub fn run(name: &str, durable: bool) {
    let total = if super::quick() { 2_000 } else { 20_000 };
    // Five rounds, not three: one round's ratio ranged from 0.53 to 0.93 on this machine, and
    // the median of five strays less.
    let rounds = if super::quick() { 3 } else { 5 };
    runtime().block_on(async {
        let (url, received) = receiver().await;
        let bodies: Arc<Vec<String>> = Arc::new(
            (0..total)
                .map(|i| WebhookEvent::new(EventPayload::sample(EventKind::ALL[i % 4])).to_json())
                .collect(),
        );
        // For profilers: `FERMION_BENCH_ONLY=baseline`, `=subject` or `=floor` runs one side alone.
        let only = std::env::var("FERMION_BENCH_ONLY").ok();
        let runs = |side: &str| only.as_deref().is_none_or(|o| o == side);
        // The durable bench also measures the floor (see `floor`): the two fsynced writes per
        // event that durable mode requires and the crate's sender, and nothing else.
        let mut sides = vec![Side::Baseline, Side::Subject];
        if durable {
            sides.push(Side::Floor);
        }
        let mut rates = vec![Vec::new(); sides.len()];
        for round in 0..rounds {
            let mut line = format!("round {round}:");
            for index in round_order(round, sides.len()) {
                let side = sides[index];
                let cpu = cpu_seconds();
                let threads = super::threads::ThreadCpu::start();
                let dir = (durable && side != Side::Baseline)
                    .then(|| scratch_dir(&format!("{name}-{round}-{index}")));
                let rate = if !runs(side.label()) {
                    f64::NAN
                } else {
                    match (side, &dir) {
                        (Side::Baseline, _) => baseline(&url, bodies.clone(), &received).await,
                        (Side::Subject, Some(dir)) => {
                            let store =
                                Arc::new(FileLogStore::open(dir).await.expect("a file log"));
                            let rate =
                                through_dispatcher(&url, total, store.clone(), &received).await;
                            let stats = store.write_stats();
                            eprintln!("  {} records in {} commits", stats.records, stats.commits);
                            rate
                        }
                        (Side::Subject, None) => {
                            let store = Arc::new(MemoryLogStore::new());
                            through_dispatcher(&url, total, store, &received).await
                        }
                        (Side::Floor, Some(dir)) => {
                            let (bodies, received) = (bodies.clone(), &received);
                            super::floor::durable_floor(
                                &url, bodies, received, dir, IN_FLIGHT, SECRET,
                            )
                            .await
                        }
                        (Side::Floor, None) => f64::NAN,
                    }
                };
                if let Some(dir) = dir {
                    let _ = std::fs::remove_dir_all(dir);
                }
                let cpu = (cpu_seconds() - cpu) * 1e6 / total as f64;
                let label = if side == Side::Subject {
                    name
                } else {
                    side.label()
                };
                line.push_str(&format!(" {label} {rate:.0}/s ({cpu:.1} µs CPU/event);"));
                rates[index].push(rate);
                if runs(side.label()) {
                    threads.report(side.label());
                }
            }
            eprintln!("{}", line.trim_end_matches(';'));
        }
        let (subject, base) = super::median_round(&rates[1], &rates[0]);
        super::summary(name, subject, "events/s", base, "events/s");
        if durable {
            let (floor, base) = super::median_round(&rates[2], &rates[0]);
            super::summary(
                &format!("{name}_floor"),
                floor,
                "events/s",
                base,
                "events/s",
            );
        }
    });
}

/// The order of the sides in a round (indices into baseline, subject and, if present, floor).
/// The subject and the baseline always run back to back, since their ratio is the figure: the
/// machine's speed drifts within seconds, and a side between them would add that drift. Which
/// of the two goes first alternates, and the floor runs before them in every other pair of
/// rounds, after them in the rest.
fn round_order(round: usize, sides: usize) -> Vec<usize> {
    let pair = if round.is_multiple_of(2) {
        [0, 1]
    } else {
        [1, 0]
    };
    let mut order = pair.to_vec();
    if sides > 2 {
        let floor_first = !(round / 2).is_multiple_of(2);
        order.insert(if floor_first { 0 } else { 2 }, 2);
    }
    order
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Baseline,
    Subject,
    Floor,
}

impl Side {
    /// Its name for `FERMION_BENCH_ONLY` and the round lines.
    fn label(self) -> &'static str {
        match self {
            Side::Baseline => "baseline",
            Side::Subject => "subject",
            Side::Floor => "floor",
        }
    }
}

/// CPU time (user + system) this process has used so far, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    super::threads::name_and_cpu(&stat).map_or(0.0, |(_, cpu)| cpu)
}
