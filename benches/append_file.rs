//! `append_file`: durable appends to `FileLogStore` from 64 concurrent tasks, against one loop
//! inserting the same rows (the event and its delivery) into bare SQLite tables with the same
//! WAL and `synchronous=FULL`, a commit every 100 events. Target: throughput ratio ≥ 0.5.

mod support;

use std::sync::Arc;
use std::time::Instant;

use fermion_webhooks::store::StoredEvent;
use fermion_webhooks::{FileLogStore, LogStore};
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use support::data::{entry, runtime, scratch_dir};

fn main() {
    let total = if support::quick() { 5_000 } else { 50_000 };
    // Five rounds in full mode: the baseline's fsyncs alone ranged from 81,000 to 165,000 lines/s
    // over a morning, and the median of five strays less than that of three.
    let rounds = if support::quick() { 3 } else { 5 };
    let (mut base, mut subject) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // The subject: 64 tasks appending `total` events, each acknowledged after its fsync.
        let dir = scratch_dir(&format!("append-{round}"));
        // Events are made before the clock starts, as the baseline's lines are.
        let events: Vec<StoredEvent> = (0..total).map(entry).collect();
        let mut queues: Vec<Vec<_>> = (0..64).map(|_| Vec::new()).collect();
        for (i, event) in events.iter().enumerate() {
            queues[i % 64].push(event.clone());
        }
        let rate = runtime().block_on(async {
            let store = Arc::new(FileLogStore::open(&dir).await.expect("a log"));
            let start = Instant::now();
            let tasks: Vec<_> = queues
                .into_iter()
                .map(|queue| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        for event in queue {
                            store.append(event).await.expect("append");
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("an appender");
            }
            let rate = total as f64 / start.elapsed().as_secs_f64();
            let stats = store.write_stats();
            eprintln!("  {} records in {} commits", stats.records, stats.commits);
            rate
        });
        subject.push(rate);

        // The baseline: the same rows, inserted by one loop into bare tables.
        let rate = runtime().block_on(bare_inserts(&dir.join("bare.sqlite3"), &events));
        base.push(rate);
        eprintln!(
            "round {round}: baseline {:.0}/s, append_file {:.0}/s",
            base[round], subject[round]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    let (subject, base) = support::median_round(&subject, &base);
    support::summary("append_file", subject, "appends/s", base, "events/s");
}

/// Rows per second inserting `events` (each with its deliveries) into bare tables, committing
/// every 100 events.
async fn bare_inserts(path: &std::path::Path, events: &[StoredEvent]) -> f64 {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .expect("a database");
    for table in [
        "CREATE TABLE events (id TEXT, ts INTEGER, kind TEXT, test INTEGER, body TEXT)",
        "CREATE TABLE deliveries (event TEXT, endpoint TEXT, url TEXT, state TEXT, due INTEGER)",
    ] {
        sqlx::query(table)
            .execute(&mut conn)
            .await
            .expect("a table");
    }
    let start = Instant::now();
    for chunk in events.chunks(100) {
        let mut tx = conn.begin().await.expect("a transaction");
        for event in chunk {
            sqlx::query("INSERT INTO events VALUES (?, ?, ?, ?, ?)")
                .bind(&event.event_unique_id)
                .bind(event.timestamp.timestamp_micros())
                .bind(&event.event_type)
                .bind(event.is_test_event)
                .bind(&event.body)
                .execute(&mut *tx)
                .await
                .expect("an event row");
            for delivery in &event.deliveries {
                sqlx::query("INSERT INTO deliveries VALUES (?, ?, ?, ?, ?)")
                    .bind(&event.event_unique_id)
                    .bind(&delivery.endpoint_id)
                    .bind(&delivery.url)
                    .bind(delivery.state.as_str())
                    .bind(delivery.next_attempt_at.map(|at| at.timestamp_micros()))
                    .execute(&mut *tx)
                    .await
                    .expect("a delivery row");
            }
        }
        tx.commit().await.expect("a commit");
    }
    events.len() as f64 / start.elapsed().as_secs_f64()
}
