//! The file log's `.idx` sidecars are a cache of its segments: lost, cut short or damaged, they
//! are rebuilt on open, and no answer the log gives changes.

mod support;

use std::ops::ControlFlow;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fermion_webhooks::store::{
    Attempt, AttemptRecord, AttemptTrigger, DeliveryState, DueDelivery, EventRow, LogFilter,
    StoredEvent,
};
use fermion_webhooks::{EventKind, FileLogStore, LogStore};
use support::{TempDir, at, delivered, logged_sales, stored};

/// Everything a caller can read: events newest first, rows oldest first, due deliveries.
async fn answers(store: &FileLogStore) -> (Vec<StoredEvent>, Vec<EventRow>, Vec<DueDelivery>) {
    let events = store
        .query(&LogFilter::default(), None, 1000)
        .await
        .unwrap()
        .events;
    let mut rows = Vec::new();
    store
        .scan_rows(&LogFilter::default(), &mut |row| {
            rows.push(row);
            ControlFlow::Continue(())
        })
        .await
        .unwrap();
    let far_future: DateTime<Utc> = at("2030-01-01T00:00:00Z");
    let due = store.due_deliveries(far_future, 1000).await.unwrap();
    (events, rows, due)
}

async fn build_log(dir: &TempDir) {
    let store = FileLogStore::open(dir.path()).unwrap();
    for i in 0..40 {
        let day = 27 + i % 3;
        let event = stored(
            EventKind::ALL[i % 4],
            &format!("2026-11-{day}T10:{:02}:00Z", i % 60),
            &["crm", "mail"],
        );
        store.append(event.clone()).await.unwrap();
        if i % 5 == 0 {
            continue; // left pending, with no attempt
        }
        let (status, state, next) = match i % 3 {
            0 => (200, DeliveryState::Delivered, None),
            1 => (
                500,
                DeliveryState::Pending,
                Some(at("2026-11-30T00:00:00Z")),
            ),
            _ => (410, DeliveryState::Failed, None),
        };
        store
            .record_attempt(AttemptRecord {
                event_unique_id: event.event_unique_id.clone(),
                endpoint_id: "crm".into(),
                attempt: Attempt::response(
                    event.timestamp,
                    Duration::from_millis(9),
                    status,
                    "answer",
                    AttemptTrigger::FirstTry,
                ),
                state,
                next_attempt_at: next,
            })
            .await
            .unwrap();
    }
}

fn index_files(dir: &TempDir) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "idx"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn lost_or_damaged_index_files_are_rebuilt_and_change_no_answer() {
    let dir = TempDir::new("index-files");
    build_log(&dir).await;
    let expected = answers(&FileLogStore::open(dir.path()).unwrap()).await;
    assert_eq!(expected.0.len(), 40);
    // Every `mail` delivery, and the `crm` ones never tried (8) or told to retry (11).
    assert_eq!(
        expected.2.len(),
        40 + 8 + 11,
        "pending deliveries are found again"
    );
    let files = index_files(&dir);
    assert_eq!(files.len(), 3, "one index file per daily segment");
    let intact: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();

    // Lost.
    for file in &files {
        std::fs::remove_file(file).unwrap();
    }
    let store = FileLogStore::open(dir.path()).unwrap();
    assert!(store.recovery_report().is_clean());
    assert!(answers(&store).await == expected, "answers changed");
    drop(store);
    let rebuilt: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert_eq!(rebuilt, intact, "rebuilt byte for byte");

    // Cut short mid-record, and ending in garbage, as a crash can leave them.
    let cut = intact[0].len() - 30;
    std::fs::write(&files[0], &intact[0][..cut]).unwrap();
    let mut garbage = intact[1].clone();
    let middle = garbage.len() / 2;
    garbage[middle..].fill(0xAB);
    std::fs::write(&files[1], &garbage).unwrap();
    let store = FileLogStore::open(dir.path()).unwrap();
    assert!(store.recovery_report().is_clean());
    assert!(answers(&store).await == expected, "answers changed");
    drop(store);
    let repaired: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert_eq!(repaired, intact);

    // A reader gives the same answers, and writes nothing.
    std::fs::remove_file(&files[2]).unwrap();
    let reader = FileLogStore::open_read_only(dir.path()).unwrap();
    // (Compared whole: a failure would print forty events.)
    assert!(
        answers(&reader).await == expected,
        "a reader answers differently"
    );
    assert!(!files[2].exists(), "a reader never writes");
}

#[tokio::test]
async fn a_segment_edited_by_hand_is_read_from_its_lines_not_its_stale_index() {
    let dir = TempDir::new("index-stale");
    let events = logged_sales(dir.path(), 4).await;
    // A person deletes the second event's line; the index file still lists four.
    let path = dir.path().join("2026-11-28.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| !line.contains(&events[1].event_unique_id))
        .collect();
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
    let store = FileLogStore::open(dir.path()).unwrap();
    let (found, rows, _) = answers(&store).await;
    let ids: Vec<&str> = rows.iter().map(|r| r.event_unique_id.as_str()).collect();
    let expected: Vec<&str> = [&events[0], &events[2], &events[3]]
        .iter()
        .map(|e| e.event_unique_id.as_str())
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(found.len(), 3);
    for event in [&events[0], &events[2], &events[3]] {
        let back = store.get(&event.event_unique_id).await.unwrap().unwrap();
        assert_eq!(back.body, event.body);
    }
    assert!(
        store
            .get(&events[1].event_unique_id)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_write_is_seen_by_the_next_read_while_others_write() {
    // The writer answers a commit's callers before it updates the index, holding the index
    // lock throughout: a read made after an answer must still see the write.
    let dir = TempDir::new("read-your-writes");
    let store = std::sync::Arc::new(FileLogStore::open(dir.path()).unwrap());
    let tasks: Vec<_> = (0..32)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..12 {
                    let timestamp = format!("2026-11-28T{:02}:{:02}:00Z", task % 24, i);
                    let event = stored(EventKind::PaidCourseSale, &timestamp, &["crm"]);
                    let id = event.event_unique_id.clone();
                    store.append(event.clone()).await.unwrap();
                    let back = store.get(&id).await.unwrap().expect("an appended event");
                    assert_eq!(back.deliveries[0].state, DeliveryState::Pending);
                    let due = store.due_deliveries(at("2030-01-01T00:00:00Z"), 10_000);
                    assert!(due.await.unwrap().iter().any(|d| d.event_unique_id == id));
                    let done = delivered(&event, "crm", event.timestamp);
                    store.record_attempt(done).await.unwrap();
                    let back = store.get(&id).await.unwrap().expect("the event");
                    assert_eq!(back.deliveries[0].state, DeliveryState::Delivered);
                    assert_eq!(back.deliveries[0].attempts.len(), 1);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(store.write_stats().records, 32 * 12 * 2);
}
