//! `append_file`: durable appends to `FileLogStore` from 64 concurrent tasks, against one loop
//! inserting the same rows (the event and its delivery) into bare SQLite tables with the same
//! WAL and `synchronous=FULL`, a commit every 100 events, through rusqlite as the store's
//! writer does. Target: throughput ratio ≥ 0.5.
//!
//! It also measures `append_file_schema_floor`: the same loop inserting into the store's own
//! tables and indexes (its migrations applied), with the statements its writer runs. That is
//! what SQLite itself asks of this schema, so `append_file` can only gain on the baseline as
//! far as this floor.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use fermion_webhooks::store::{Delivery, StoredEvent};
use fermion_webhooks::{FileLogStore, LogStore};
use support::data::{entry, runtime, scratch_dir};

fn main() {
    let total = if support::quick() { 5_000 } else { 50_000 };
    // Five rounds in full mode: the baseline's fsyncs alone ranged from 81,000 to 165,000 lines/s
    // over a morning, and the median of five strays less than that of three.
    let rounds = if support::quick() { 3 } else { 5 };
    let (mut base, mut subject, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // The subject: 64 tasks appending `total` events, each acknowledged after its fsync.
        let dir = scratch_dir(&format!("append-{round}"));
        // Events are made before the clock starts, as the baseline's lines are.
        let events: Vec<StoredEvent> = (0..total).map(entry).collect();
        let mut queues: Vec<Vec<_>> = (0..64).map(|_| Vec::new()).collect();
        for (i, event) in events.iter().enumerate() {
            queues[i % 64].push(event.clone());
        }
        let appends = || {
            runtime().block_on(async {
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
            })
        };
        // The baseline: the same rows, inserted by one loop into bare tables.
        let bare = || bare_inserts(&dir.join("bare.sqlite3"), &events);
        let schema = || schema_inserts(&dir.join("schema.sqlite3"), &events);
        // Which side goes first alternates: a later one shares the disk with an earlier one's
        // write-back.
        let (rate, bare_rate, floor_rate) = if round % 2 == 0 {
            let rate = appends();
            let bare_rate = bare();
            (rate, bare_rate, schema())
        } else {
            let floor_rate = schema();
            let bare_rate = bare();
            (appends(), bare_rate, floor_rate)
        };
        subject.push(rate);
        base.push(bare_rate);
        floor.push(floor_rate);
        eprintln!(
            "round {round}: baseline {:.0}/s, append_file {:.0}/s, schema floor {:.0}/s",
            base[round], subject[round], floor[round]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    let (floor, floor_base) = support::median_round(&floor, &base);
    let (subject, base) = support::median_round(&subject, &base);
    support::summary("append_file", subject, "appends/s", base, "events/s");
    support::summary(
        "append_file_schema_floor",
        floor,
        "events/s",
        floor_base,
        "events/s",
    );
}

/// Events per second inserting `events` (each with its deliveries) into bare tables, committing
/// every 100 events.
fn bare_inserts(path: &Path, events: &[StoredEvent]) -> f64 {
    let mut conn = open_durable(path);
    conn.execute_batch(
        "CREATE TABLE events (id TEXT, ts INTEGER, kind TEXT, test INTEGER, body TEXT);
         CREATE TABLE deliveries (event TEXT, endpoint TEXT, url TEXT, state TEXT, due INTEGER);",
    )
    .expect("the tables");
    timed_inserts(
        &mut conn,
        events,
        "INSERT INTO events VALUES (?, ?, ?, ?, ?)",
        |tx, event, _, _, delivery| {
            tx.prepare_cached("INSERT INTO deliveries VALUES (?, ?, ?, ?, ?)")?
                .execute(rusqlite::params![
                    event.event_unique_id,
                    delivery.endpoint_id,
                    delivery.url,
                    delivery.state.as_str(),
                    delivery.next_attempt_at.map(|at| at.timestamp_micros()),
                ])
        },
    )
}

/// Events per second inserting `events` into the store's own schema, with its writer's
/// statements and connection settings, committing every 100 events.
fn schema_inserts(path: &Path, events: &[StoredEvent]) -> f64 {
    let mut conn = open_durable(path);
    conn.pragma_update(None, "foreign_keys", "on")
        .expect("foreign keys");
    conn.pragma_update(None, "ignore_check_constraints", "on")
        .expect("no CHECKs");
    for migration in [
        include_str!("../migrations/sqlite/0001_event_log.sql"),
        include_str!("../migrations/sqlite/0002_documents.sql"),
        include_str!("../migrations/sqlite/0003_fair_claims.sql"),
        include_str!("../migrations/sqlite/0004_due_by_endpoint.sql"),
        include_str!("../migrations/sqlite/0005_unsettled_events.sql"),
    ] {
        conn.execute_batch(migration).expect("the store's schema");
    }
    timed_inserts(
        &mut conn,
        events,
        "INSERT INTO events (event_unique_id, timestamp_us, event_type, is_test_event, body, \
         status) VALUES (?, ?, ?, ?, ?, 'pending') ON CONFLICT (event_unique_id) DO NOTHING",
        |tx, _, seq, position, delivery| {
            tx.prepare_cached(
                "INSERT INTO deliveries (event_seq, position, endpoint_id, url, state, \
                 next_attempt_us) VALUES (?, ?, ?, ?, ?, ?)",
            )?
            .execute(rusqlite::params![
                seq,
                position as i64,
                delivery.endpoint_id,
                delivery.url,
                delivery.state.as_str(),
                delivery.next_attempt_at.map(|at| at.timestamp_micros()),
            ])
        },
    )
}

/// A connection in WAL mode with `synchronous=FULL`, as the store's writer has.
fn open_durable(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("a database");
    conn.pragma_update(None, "journal_mode", "wal")
        .expect("WAL");
    conn.pragma_update(None, "synchronous", "full")
        .expect("synchronous=FULL");
    conn
}

/// Events per second running `insert_event` (id, time, kind, test flag, body) and then
/// `insert_delivery` (given the event's row id and the delivery's position) for each delivery,
/// committing every 100 events.
fn timed_inserts(
    conn: &mut rusqlite::Connection,
    events: &[StoredEvent],
    insert_event: &str,
    insert_delivery: impl Fn(
        &rusqlite::Transaction<'_>,
        &StoredEvent,
        i64,
        usize,
        &Delivery,
    ) -> rusqlite::Result<usize>,
) -> f64 {
    let start = Instant::now();
    for chunk in events.chunks(100) {
        let tx = conn.transaction().expect("a transaction");
        for event in chunk {
            tx.prepare_cached(insert_event)
                .and_then(|mut insert| {
                    insert.execute(rusqlite::params![
                        event.event_unique_id,
                        event.timestamp.timestamp_micros(),
                        event.event_type,
                        event.is_test_event,
                        event.body,
                    ])
                })
                .expect("an event row");
            let row = tx.last_insert_rowid();
            for (position, delivery) in event.deliveries.iter().enumerate() {
                insert_delivery(&tx, event, row, position, delivery).expect("a delivery row");
            }
        }
        tx.commit().expect("a commit");
    }
    events.len() as f64 / start.elapsed().as_secs_f64()
}
