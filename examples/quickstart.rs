//! The whole round trip in a few seconds, on 127.0.0.1 only:
//!
//! ```text
//! cargo run --features axum --example quickstart [-- --database-url URL]
//! ```
//!
//! It starts a receiver built on this crate, emits one event of each kind and a test event
//! through a durable log (a SQLite file in a temporary directory, or the database given with
//! `--database-url postgres://…` or `sqlite://PATH`), shows a wrong secret being refused, lets an endpoint fail and
//! re-triggers it, prints the log as a table, and exports it to CSV.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::post;
use fermion_webhooks::clock::SystemClock;
use fermion_webhooks::export::ExportOptions;
use fermion_webhooks::receive::FermionWebhook;
use fermion_webhooks::sender::DeliveryRequest;
use fermion_webhooks::store::LogFilter;
use fermion_webhooks::{
    DispatchConfig, Dispatcher, Endpoint, EventKind, EventPayload, HttpSender, Receiver,
    RetrySchedule, Sender, WebhookEvent, WebhookSecret, export_csv,
};

#[derive(Clone)]
struct ReceiverState {
    receiver: Receiver,
    received: Arc<AtomicUsize>,
    flaky_fixed: Arc<AtomicBool>,
}

impl FromRef<ReceiverState> for Receiver {
    fn from_ref(state: &ReceiverState) -> Receiver {
        state.receiver.clone()
    }
}

async fn crm(
    State(state): State<ReceiverState>,
    FermionWebhook(event): FermionWebhook,
) -> StatusCode {
    state.received.fetch_add(1, Ordering::SeqCst);
    let test = if event.is_test_event { " (test)" } else { "" };
    println!(
        "  receiver: got {}{test} {}",
        event.event_type(),
        event.event_unique_id
    );
    StatusCode::OK
}

async fn flaky(
    State(state): State<ReceiverState>,
    FermionWebhook(event): FermionWebhook,
) -> StatusCode {
    if state.flaky_fixed.load(Ordering::SeqCst) {
        println!(
            "  flaky receiver: accepted {} this time",
            event.event_unique_id
        );
        StatusCode::OK
    } else {
        println!(
            "  flaky receiver: answering 503 to {}",
            event.event_unique_id
        );
        StatusCode::SERVICE_UNAVAILABLE
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let database = match (args.next().as_deref(), args.next()) {
        (None, _) => None,
        (Some("--database-url"), Some(url)) => Some(support::Database::Url(url)),
        _ => {
            eprintln!("usage: quickstart [--database-url postgres://USER@HOST/DB | sqlite://PATH]");
            return std::process::ExitCode::from(2);
        }
    };
    match run(database).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("quickstart: {}", support::explain(&*error));
            std::process::ExitCode::from(1)
        }
    }
}

async fn run(database: Option<support::Database>) -> Result<(), Box<dyn std::error::Error>> {
    let secret = WebhookSecret::generate()?;
    println!("1. Starting a receiver on 127.0.0.1 with a freshly generated secret ({secret})");
    let state = ReceiverState {
        receiver: Receiver::new(secret.clone()),
        received: Arc::default(),
        flaky_fixed: Arc::default(),
    };
    let app = Router::new()
        .route("/webhooks/fermion", post(crm))
        .route("/flaky", post(flaky))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let log_dir = std::env::temp_dir().join(format!("fermion-quickstart-{}", std::process::id()));
    let database = database.unwrap_or_else(|| support::Database::Dir(log_dir.clone()));
    let store = database.open().await?;
    println!("   event log: {}", database.describe());
    let endpoints = vec![
        Endpoint::new(
            "crm",
            format!("http://{addr}/webhooks/fermion"),
            secret.clone(),
        )?,
        Endpoint::new("accounting", format!("http://{addr}/flaky"), secret.clone())?
            .subscribe_only([EventKind::PaidCourseSale]),
    ];
    // Loopback is a private address: the SSRF guard must be opened for this demo.
    let sender = Arc::new(HttpSender::builder().allow_private_networks(true).build()?);
    let mut config = DispatchConfig::default();
    config.retry = RetrySchedule::fixed([Duration::from_millis(200)]);
    config.poll_interval = Duration::from_millis(50);
    let dispatcher = Dispatcher::start_with(
        store.clone(),
        sender.clone(),
        endpoints,
        config,
        Arc::new(SystemClock),
    )?;

    println!("\n2. Emitting one event of each kind, and a test event");
    let mut ids = Vec::new();
    for kind in EventKind::ALL {
        let emitted = dispatcher.emit(EventPayload::sample(kind)).await?;
        println!("  emitted {kind} to {:?}", emitted.endpoint_ids);
        ids.push(emitted.event_unique_id);
    }
    let test = dispatcher
        .send_test_event(EventKind::FreeCourseEnrollment, "crm")
        .await?;
    ids.push(test.event_unique_id);
    for id in &ids {
        dispatcher
            .wait_until_final(id, Duration::from_secs(30))
            .await?;
    }

    println!("\n3. A request with the wrong secret is refused");
    let impostor = WebhookEvent::new(EventPayload::sample(EventKind::PaidCourseSale)).to_json();
    let outcome = sender
        .send(DeliveryRequest::new(
            &format!("http://{addr}/webhooks/fermion"),
            &WebhookSecret::new("not-the-secret")?,
            impostor.as_bytes(),
            "impostor",
        ))
        .await;
    println!("  the receiver answered {:?}", outcome.status());

    println!("\n4. The accounting endpoint failed; fixing it and re-triggering");
    let sale = &ids[1];
    let logged = store
        .get(sale)
        .await?
        .ok_or("the sale is missing from the log")?;
    for delivery in &logged.deliveries {
        println!(
            "  {}: {} after {} attempt(s)",
            delivery.endpoint_id,
            delivery.state,
            delivery.attempts.len()
        );
    }
    state.flaky_fixed.store(true, Ordering::SeqCst);
    for result in dispatcher.retrigger(sale, Some("accounting")).await? {
        println!(
            "  re-triggered to {}: now {}",
            result.endpoint_id, result.state
        );
    }

    println!("\n5. The event log, newest first");
    let page = store.query(&LogFilter::default(), None, 50).await?;
    println!(
        "  {:<24}  {:<31}  {:<5}  {:<9}  {:>8}  {:>4}  event id",
        "timestamp", "event type", "test", "status", "attempts", "last"
    );
    for event in &page.events {
        println!(
            "  {:<24}  {:<31}  {:<5}  {:<9}  {:>8}  {:>4}  {}",
            event
                .timestamp
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            event.event_type,
            event.is_test_event,
            event.status(),
            event.attempt_count(),
            event
                .last_response_status()
                .map_or("-".into(), |s| s.to_string()),
            event.event_unique_id
        );
    }

    std::fs::create_dir_all(&log_dir)?;
    let csv_path = log_dir.join("export.csv");
    let mut csv = std::io::BufWriter::new(std::fs::File::create(&csv_path)?);
    let rows = export_csv(
        &*store,
        &LogFilter::default(),
        &mut csv,
        &ExportOptions::default(),
        &mut |_| {},
    )
    .await?;
    drop(csv);
    println!("\n6. Exported {rows} events to {}", csv_path.display());
    let flag = match &database {
        support::Database::Dir(dir) => format!("--log-dir {}", dir.display()),
        support::Database::Url(url) => format!("--database-url {url}"),
    };
    println!(
        "   the receiver accepted {} deliveries; try: cargo run --example logs -- {flag} list",
        state.received.load(Ordering::SeqCst),
    );
    dispatcher.shutdown(Duration::from_secs(5)).await;
    Ok(())
}
