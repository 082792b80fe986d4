//! The PostgreSQL benches: a schema of their own in `FERMION_BENCH_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), dropped afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fermion_webhooks::clock::SystemClock;
use fermion_webhooks::store::{EndpointStore, PostgresLogStore};
use fermion_webhooks::{
    DispatchConfig, Dispatcher, Endpoint, EventKind, EventPayload, HttpSender, SECRET_HEADER,
    WebhookSecret,
};
use sqlx::Connection;

use super::emit::{IN_FLIGHT, SECRET, wait_for};

/// The server's URL.
pub fn database_url() -> String {
    std::env::var("FERMION_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh schema, dropped with this value.
pub struct Schema(pub String);

impl Schema {
    pub async fn new(label: &str) -> Self {
        let name = format!("fermion_bench_{label}_{}", std::process::id());
        let mut conn = sqlx::PgConnection::connect(&database_url())
            .await
            .expect("PostgreSQL for the bench (FERMION_BENCH_DATABASE_URL)");
        for sql in [
            format!("DROP SCHEMA IF EXISTS {name} CASCADE"),
            format!("CREATE SCHEMA {name}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .expect("a schema");
        }
        Schema(name)
    }

    pub async fn store(&self) -> PostgresLogStore {
        PostgresLogStore::connect_in_schema(&database_url(), &self.0)
            .await
            .expect("the log")
    }

    pub async fn drop_it(self) {
        let mut conn = sqlx::PgConnection::connect(&database_url())
            .await
            .expect("a connection");
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0);
        let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await;
    }
}

/// The least durable outbox on the same database: each of 64 tasks inserts a body, POSTs it
/// with reqwest, and marks it done. Events per second.
pub async fn outbox_baseline(
    schema: &Schema,
    url: &str,
    bodies: Arc<Vec<String>>,
    received: &Arc<AtomicUsize>,
) -> f64 {
    let store = schema.store().await;
    let pool = store.pool().clone();
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_outbox (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL, \
         done BOOLEAN NOT NULL DEFAULT FALSE)",
    )
    .execute(&pool)
    .await
    .expect("the outbox table");
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a client");
    let next = Arc::new(AtomicUsize::new(0));
    received.store(0, Ordering::Relaxed);
    let start = Instant::now();
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (pool, client, bodies, next, url) = (
                pool.clone(),
                client.clone(),
                bodies.clone(),
                next.clone(),
                url.to_owned(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO bench_outbox (body) VALUES ($1) RETURNING id",
                    )
                    .bind(body)
                    .fetch_one(&pool)
                    .await
                    .expect("an outbox row");
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
                    sqlx::query("UPDATE bench_outbox SET done = TRUE WHERE id = $1")
                        .bind(id)
                        .execute(&pool)
                        .await
                        .expect("marked done");
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

/// Stores `count` events for the endpoint at `url`, not timed: a dispatcher that does not
/// deliver leaves them pending for the delivering processes.
pub async fn pending_events(schema: &Schema, url: &str, count: usize) {
    let store = Arc::new(schema.store().await);
    let endpoint = Endpoint::new("crm", url, WebhookSecret::new(SECRET).expect("a secret"))
        .expect("an endpoint");
    store.put_endpoint(&endpoint).await.expect("the endpoint");
    let mut config = DispatchConfig::default();
    config.background_delivery = false;
    let emitter = Dispatcher::start_with(
        store,
        Arc::new(HttpSender::new().expect("a sender")),
        vec![endpoint],
        config,
        Arc::new(SystemClock),
    )
    .expect("a dispatcher");
    for i in 0..count {
        emitter
            .emit(EventPayload::sample(EventKind::ALL[i % 4]))
            .await
            .expect("emit");
    }
}

/// A delivering process's work: a dispatcher on the schema's log with its stored endpoints,
/// until nothing is pending.
pub async fn deliver_until_idle(schema_name: &str) {
    let store = Arc::new(
        PostgresLogStore::connect_in_schema(&database_url(), schema_name)
            .await
            .expect("the log"),
    );
    let sender = HttpSender::builder()
        .allow_private_networks(true)
        .build()
        .expect("a sender");
    let mut config = DispatchConfig::default();
    config.max_in_flight = IN_FLIGHT;
    // One endpoint, as many requests to it at once as the baseline sends.
    config.max_in_flight_per_endpoint = IN_FLIGHT;
    config.poll_interval = Duration::from_millis(20);
    let dispatcher = Dispatcher::start_with_stored_endpoints(
        store.clone(),
        Arc::new(sender),
        config,
        Arc::new(SystemClock),
    )
    .await
    .expect("a dispatcher");
    let pending = fermion_webhooks::store::LogFilter::default()
        .status(fermion_webhooks::store::DeliveryState::Pending);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let page = fermion_webhooks::LogStore::query(&*store, &pending, None, 1)
            .await
            .expect("a query");
        if page.events.is_empty() {
            break;
        }
    }
    dispatcher.shutdown(Duration::from_secs(10)).await;
}
