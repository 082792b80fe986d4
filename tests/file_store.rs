//! The file backend's own promises: durable across reopen and `kill -9`, plain SQL tables with
//! the body verbatim, several writers and readers at once, private files, group commit.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fermion_webhooks::store::DATABASE_FILE;
use fermion_webhooks::store::{
    Attempt, AttemptRecord, AttemptTrigger, DeliveryState, LogError, LogFilter,
};
use fermion_webhooks::{EventKind, FileLogStore, LogStore};
use support::{TempDir, at, stored};

async fn count(store: &FileLogStore) -> usize {
    store
        .query(&LogFilter::default(), None, usize::MAX)
        .await
        .unwrap()
        .events
        .len()
}

#[tokio::test]
async fn everything_survives_a_reopen_byte_for_byte() {
    let dir = TempDir::new("reopen");
    let event = stored(
        EventKind::PaidCourseSale,
        "2026-11-28T10:00:00.123Z",
        &["crm", "books"],
    );
    {
        let store = FileLogStore::open(dir.path()).await.unwrap();
        store.append(event.clone()).await.unwrap();
        let mut retry = AttemptRecord {
            event_unique_id: event.event_unique_id.clone(),
            endpoint_id: "crm".into(),
            attempt: Attempt::response(
                at("2026-11-28T10:00:00.200Z"),
                Duration::from_millis(12),
                503,
                "busy",
                AttemptTrigger::FirstTry,
            ),
            state: DeliveryState::Pending,
            next_attempt_at: Some(at("2026-11-28T10:00:05Z")),
            claim: None,
        };
        store.record_attempt(retry.clone()).await.unwrap();
        retry.endpoint_id = "books".into();
        retry.state = DeliveryState::Delivered;
        retry.next_attempt_at = None;
        store.record_attempt(retry).await.unwrap();
    }
    let store = FileLogStore::open(dir.path()).await.unwrap();
    let back = store.get(&event.event_unique_id).await.unwrap().unwrap();
    assert_eq!(back.body, event.body);
    assert_eq!(back.deliveries[0].state, DeliveryState::Pending);
    assert_eq!(back.deliveries[0].attempts[0].http_status(), Some(503));
    assert_eq!(back.deliveries[1].state, DeliveryState::Delivered);
    let due = store
        .claim_due(&fermion_webhooks::store::ClaimRequest::new(
            at("2026-11-28T10:00:05Z"),
            10,
            std::time::Duration::from_secs(60),
        ))
        .await
        .unwrap();
    assert_eq!(
        (due.len(), due[0].attempts_made),
        (1, 1),
        "pending work is found again"
    );
}

#[tokio::test]
async fn a_write_the_database_refuses_fails_alone_and_the_log_goes_on() {
    let dir = TempDir::new("refused-write");
    let store = FileLogStore::open(dir.path()).await.unwrap();
    // Someone's own SQL beside the log: a trigger refusing deliveries to one endpoint.
    use sqlx::Connection;
    let url = format!("sqlite://{}", dir.path().join(DATABASE_FILE).display());
    let mut sql = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query(
        "CREATE TRIGGER no_blocked BEFORE INSERT ON deliveries \
         WHEN NEW.endpoint_id = 'blocked' BEGIN SELECT RAISE(ABORT, 'blocked here'); END",
    )
    .execute(&mut sql)
    .await
    .unwrap();
    // The event's row went in before its delivery was refused: it is rolled back with it.
    let refused = stored(
        EventKind::PaidCourseSale,
        "2026-03-01T10:00:00Z",
        &["ok", "blocked"],
    );
    let error = store.append(refused.clone()).await.unwrap_err();
    assert!(matches!(error, LogError::Database { .. }), "{error:?}");
    assert!(error.to_string().contains("committing writes"), "{error}");
    assert!(store.get(&refused.event_unique_id).await.unwrap().is_none());
    let (deliveries,): (i64,) = sqlx::query_as("SELECT count(*) FROM deliveries")
        .fetch_one(&mut sql)
        .await
        .unwrap();
    assert_eq!(deliveries, 0);
    // The writer is not left inside the failed transaction: the next write commits.
    let next = stored(EventKind::PaidCourseSale, "2026-03-01T10:00:01Z", &["ok"]);
    store.append(next.clone()).await.unwrap();
    drop(store);
    let store = FileLogStore::open(dir.path()).await.unwrap();
    assert!(store.get(&next.event_unique_id).await.unwrap().is_some());
    assert_eq!(count(&store).await, 1);
}

#[tokio::test]
async fn the_database_is_plain_sql_with_every_body_verbatim() {
    let dir = TempDir::new("readable");
    let store = Arc::new(FileLogStore::open(dir.path()).await.unwrap());
    let mut config = fermion_webhooks::DispatchConfig::default();
    config.background_delivery = false;
    let dispatcher =
        support::loopback_dispatcher(store.clone(), "http://127.0.0.1:9/", "s", config);
    let typed = dispatcher
        .emit(fermion_webhooks::EventPayload::sample(
            EventKind::PaidCourseSale,
        ))
        .await
        .unwrap();
    let compact = fermion_webhooks::WebhookEvent::new(fermion_webhooks::EventPayload::sample(
        EventKind::PaymentFailed,
    ))
    .to_json();
    let value: serde_json::Value = serde_json::from_str(&compact).unwrap();
    let pretty = serde_json::to_string_pretty(&value).unwrap();
    let emitted = dispatcher.emit_json(pretty.clone()).await.unwrap();
    drop(dispatcher);
    drop(store);
    // Any SQLite client reads it: here, a plain sqlx connection.
    use sqlx::Connection;
    let url = format!("sqlite://{}", dir.path().join(DATABASE_FILE).display());
    let mut sql = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT event_unique_id, event_type, body FROM events ORDER BY seq")
            .fetch_all(&mut sql)
            .await
            .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].0, typed.event_unique_id);
    assert_eq!(rows[0].1, "paid-course-sale");
    assert_eq!(rows[1].0, emitted.event_unique_id);
    assert_eq!(rows[1].2, pretty, "the exact bytes, line breaks and all");
    // Its constraints hold for every client: a state the log does not know is refused.
    let refused = sqlx::query("UPDATE deliveries SET state = 'lost'")
        .execute(&mut sql)
        .await
        .expect_err("a state outside pending, delivered and failed");
    assert!(refused.to_string().contains("CHECK"), "{refused}");
    let store = FileLogStore::open(dir.path()).await.unwrap();
    let back = store.get(&emitted.event_unique_id).await.unwrap().unwrap();
    assert_eq!(back.body, pretty);
}

#[cfg(unix)]
#[tokio::test]
async fn the_directory_and_database_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("private");
    let log_dir = dir.path().join("log");
    let store = FileLogStore::open(&log_dir).await.unwrap();
    store
        .append(stored(
            EventKind::PaidCourseSale,
            "2026-11-28T10:00:00Z",
            &["crm"],
        ))
        .await
        .unwrap();
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&log_dir), 0o700);
    let mut files = 0;
    for entry in std::fs::read_dir(&log_dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        files += 1;
    }
    assert!(files >= 2, "the database and its write-ahead log");
}

#[tokio::test]
async fn several_writers_and_readers_share_one_database() {
    let dir = TempDir::new("shared");
    let first = FileLogStore::open(dir.path()).await.unwrap();
    let second = FileLogStore::open(dir.path()).await.unwrap();
    for (store, minute) in [(&first, 0), (&second, 1), (&first, 2)] {
        store
            .append(stored(
                EventKind::PaidCourseSale,
                &format!("2026-11-28T10:0{minute}:00Z"),
                &["crm"],
            ))
            .await
            .unwrap();
    }
    let reader = FileLogStore::open_read_only(dir.path()).await.unwrap();
    assert_eq!(count(&reader).await, 3);
    assert_eq!(count(&second).await, 3);
    let write = reader.append(stored(
        EventKind::PaidCourseSale,
        "2026-11-28T10:00:00Z",
        &["crm"],
    ));
    assert!(matches!(write.await, Err(LogError::ReadOnly { .. })));
}

#[tokio::test]
async fn a_missing_directory_is_a_clear_error_for_readers() {
    let dir = TempDir::new("missing");
    let error = FileLogStore::open_read_only(dir.path().join("nope"))
        .await
        .unwrap_err();
    assert!(matches!(error, LogError::MissingDirectory { .. }));
    assert!(error.to_string().contains("does not exist"));
}

#[tokio::test]
async fn retention_deletes_events_before_the_cutoff_and_survives_a_reopen() {
    let dir = TempDir::new("retention");
    let store = FileLogStore::open(dir.path()).await.unwrap();
    for day in ["2026-11-01", "2026-11-02", "2026-11-03"] {
        let event = stored(
            EventKind::PaidCourseSale,
            &format!("{day}T10:00:00Z"),
            &["crm"],
        );
        store.append(event).await.unwrap();
    }
    assert_eq!(
        store
            .delete_before(at("2026-11-03T09:00:00Z"))
            .await
            .unwrap(),
        2
    );
    drop(store);
    let store = FileLogStore::open(dir.path()).await.unwrap();
    assert_eq!(count(&store).await, 1);
}

/// The child half of the crash test: appends events until killed, printing each id once its
/// `append` has returned `Ok`. Run only by `an_acknowledged_append_survives_kill_9`.
#[tokio::test]
#[ignore = "run by an_acknowledged_append_survives_kill_9 in a child process"]
async fn child_appends_until_killed() {
    let dir = std::env::var("FERMION_CRASH_DIR").expect("FERMION_CRASH_DIR");
    let store = std::sync::Arc::new(FileLogStore::open(&dir).await.unwrap());
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
    for task in 0..8 {
        let store = store.clone();
        let sender = sender.clone();
        tokio::spawn(async move {
            for i in 0.. {
                let timestamp = format!("2026-11-{:02}T10:00:00Z", 20 + (task + i) % 5);
                let event = stored(EventKind::PaidCourseSale, &timestamp, &["crm"]);
                let id = event.event_unique_id.clone();
                store.append(event).await.unwrap();
                sender.send(id).unwrap();
            }
        });
    }
    let mut stdout = std::io::stdout();
    while let Some(id) = receiver.recv().await {
        writeln!(stdout, "acked {id}").unwrap();
        stdout.flush().unwrap();
    }
}

#[tokio::test]
async fn an_acknowledged_append_survives_kill_9() {
    let dir = TempDir::new("crash");
    let mut acknowledged = Vec::new();
    for round in 0..6u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "child_appends_until_killed",
                "--nocapture",
            ])
            .env("FERMION_CRASH_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Let it run for a varying number of acknowledgements, then SIGKILL it mid-stride.
        let wanted = 50 + round * 37;
        let mut seen = 0;
        while seen < wanted {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(id) = line.strip_prefix("acked ") {
                        acknowledged.push(id.to_owned());
                        seen += 1;
                    }
                }
                _ => panic!("the child stopped before it was killed"),
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Acks already printed before the kill landed count too.
        for line in lines.map_while(Result::ok) {
            if let Some(id) = line.strip_prefix("acked ") {
                acknowledged.push(id.to_owned());
            }
        }

        let store = FileLogStore::open(dir.path()).await.unwrap();
        let mut found = Vec::new();
        store
            .scan(&LogFilter::default(), &mut |event| {
                found.push(event.event_unique_id);
                std::ops::ControlFlow::Continue(())
            })
            .await
            .unwrap();
        let mut unique = found.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            found.len(),
            "round {round}: an event is in the log twice"
        );
        for id in &acknowledged {
            let event = store.get(id).await.unwrap();
            assert!(
                event.is_some(),
                "round {round}: acknowledged event {id} was lost"
            );
            assert!(
                event.unwrap().event().is_ok(),
                "round {round}: {id} body damaged"
            );
        }
    }
    assert!(acknowledged.len() >= 300);
}

#[tokio::test]
async fn concurrent_appends_share_commits() {
    let dir = TempDir::new("group-commit");
    let store = std::sync::Arc::new(FileLogStore::open(dir.path()).await.unwrap());
    let tasks: Vec<_> = (0..64)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..8 {
                    let timestamp = format!("2026-11-28T10:{:02}:{i:02}Z", task % 60);
                    let event = stored(EventKind::PaidCourseSale, &timestamp, &["crm"]);
                    store.append(event).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let stats = store.write_stats();
    assert_eq!(stats.records, 512);
    assert!(
        stats.commits * 4 <= stats.records,
        "64 concurrent writers should share commits: {stats:?}"
    );
}

#[tokio::test]
async fn concurrent_appends_across_many_days_all_land() {
    let dir = TempDir::new("many-days");
    let store = std::sync::Arc::new(FileLogStore::open(dir.path()).await.unwrap());
    let tasks: Vec<_> = (0..40)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    let timestamp = format!("2026-10-{:02}T10:00:{i:02}Z", 1 + (task + i) % 30);
                    let event = stored(EventKind::PaidCourseSale, &timestamp, &["crm"]);
                    store.append(event).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(count(&store).await, 400);
    drop(store);
    let store = FileLogStore::open(dir.path()).await.unwrap();
    assert_eq!(count(&store).await, 400);
}
