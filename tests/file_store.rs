//! The file backend's own promises: durable across reopen and `kill -9`, torn tails repaired
//! without losing earlier records, one writer at a time, readable files, whole-segment retention.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use fermion_webhooks::store::{
    Attempt, AttemptRecord, AttemptTrigger, DeliveryState, LogError, LogFilter,
};
use fermion_webhooks::{EventKind, FileLogStore, LogStore};
use support::{TempDir, at, logged_sales, stored};

fn segment(dir: &TempDir, day: &str) -> std::path::PathBuf {
    dir.path().join(format!("{day}.jsonl"))
}

/// The lines of a segment a writer has open: the file runs on past them with zero bytes, the
/// writer's padding, and with nothing else.
fn live_lines(path: &std::path::Path) -> String {
    let mut bytes = std::fs::read(path).unwrap();
    let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    assert!(
        bytes[end..].iter().all(|b| *b == 0),
        "only padding follows the last line"
    );
    bytes.truncate(end);
    String::from_utf8(bytes).unwrap()
}

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
        let store = FileLogStore::open(dir.path()).unwrap();
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
        };
        store.record_attempt(retry.clone()).await.unwrap();
        retry.endpoint_id = "books".into();
        retry.state = DeliveryState::Delivered;
        retry.next_attempt_at = None;
        store.record_attempt(retry).await.unwrap();
    }
    let store = FileLogStore::open(dir.path()).unwrap();
    assert!(
        store.recovery_report().is_clean(),
        "{:?}",
        store.recovery_report()
    );
    let back = store.get(&event.event_unique_id).await.unwrap().unwrap();
    assert_eq!(back.body, event.body);
    assert_eq!(back.deliveries[0].state, DeliveryState::Pending);
    assert_eq!(back.deliveries[0].attempts[0].http_status(), Some(503));
    assert_eq!(back.deliveries[1].state, DeliveryState::Delivered);
    let due = store
        .due_deliveries(at("2026-11-28T10:00:05Z"), 10)
        .await
        .unwrap();
    assert_eq!(
        (due.len(), due[0].attempts_made),
        (1, 1),
        "pending work is found again"
    );
}

#[tokio::test]
async fn the_files_are_human_readable_json_lines_with_the_body_verbatim() {
    let dir = TempDir::new("readable");
    let store = FileLogStore::open(dir.path()).unwrap();
    let event = stored(
        EventKind::FreeCourseEnrollment,
        "2026-11-28T10:00:00Z",
        &["crm"],
    );
    store.append(event.clone()).await.unwrap();
    // A body that is not single-line JSON is still kept exactly.
    let mut odd = stored(EventKind::PaidCourseSale, "2026-11-28T11:00:00Z", &["crm"]);
    odd.body = "{\n  \"pretty\": true\n}".to_owned();
    store.append(odd.clone()).await.unwrap();
    let path = segment(&dir, "2026-11-28");
    let text = live_lines(&path);
    assert!(
        std::fs::metadata(&path).unwrap().len() > text.len() as u64,
        "a segment being written is padded ahead of its lines"
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    for line in &lines {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(value["record"], "event");
    }
    assert!(
        lines[0].ends_with(&format!(",\"body\":{}}}", event.body)),
        "{}",
        lines[0]
    );
    assert_eq!(
        store.get(&odd.event_unique_id).await.unwrap().unwrap().body,
        odd.body
    );
    assert!(!text.contains("secret"));
    // Closed, the file is its lines and nothing more.
    drop(store);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

#[tokio::test]
async fn emitted_bodies_are_embedded_verbatim_and_a_pretty_printed_one_is_kept_exactly() {
    let dir = TempDir::new("emitted-bodies");
    let store = std::sync::Arc::new(FileLogStore::open(dir.path()).unwrap());
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
    // Valid JSON over several lines: the dispatcher vouches that it is JSON, and the log must
    // still keep it off its own line structure.
    let compact = fermion_webhooks::WebhookEvent::new(fermion_webhooks::EventPayload::sample(
        EventKind::PaymentFailed,
    ))
    .to_json();
    let value: serde_json::Value = serde_json::from_str(&compact).unwrap();
    let pretty = serde_json::to_string_pretty(&value).unwrap();
    let emitted = dispatcher.emit_json(pretty.clone()).await.unwrap();
    let mut lines = 0;
    for day in std::fs::read_dir(dir.path()).unwrap() {
        let path = day.unwrap().path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            for line in live_lines(&path).lines() {
                let record: serde_json::Value = serde_json::from_str(line).unwrap();
                let id = record["eventUniqueId"].as_str().unwrap();
                if id == typed.event_unique_id {
                    assert!(record["body"].is_object(), "{line}");
                } else {
                    assert_eq!(record["bodyText"], pretty.as_str(), "{line}");
                }
                lines += 1;
            }
        }
    }
    assert_eq!(lines, 2, "one line per event, whatever its body");
    let back = store.get(&emitted.event_unique_id).await.unwrap().unwrap();
    assert_eq!(back.body, pretty);
}

#[tokio::test]
async fn a_torn_last_line_is_set_aside_and_never_hides_earlier_records() {
    let dir = TempDir::new("torn");
    let first = stored(EventKind::PaidCourseSale, "2026-11-28T10:00:00Z", &["crm"]);
    let second = stored(EventKind::PaymentFailed, "2026-11-28T10:01:00Z", &["crm"]);
    {
        let store = FileLogStore::open(dir.path()).unwrap();
        store.append(first.clone()).await.unwrap();
        store.append(second.clone()).await.unwrap();
    }
    // A crash in the middle of writing a third line.
    let path = segment(&dir, "2026-11-28");
    let intact_len = std::fs::metadata(&path).unwrap().len();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(br#"{"record":"event","eventUniqueId":"torn-3","timestampIsoString":"2026-11"#)
        .unwrap();
    drop(file);

    let store = FileLogStore::open(dir.path()).unwrap();
    let report = store.recovery_report().clone();
    assert_eq!(report.torn_tails.len(), 1);
    assert_eq!(report.torn_tails[0].offset, intact_len);
    let saved = report.torn_tails[0].saved_to.clone().unwrap();
    assert!(std::fs::read_to_string(saved).unwrap().contains("torn-3"));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), intact_len);
    assert_eq!(count(&store).await, 2);
    // New appends start on a fresh line, and the next open is clean.
    let third = stored(EventKind::PaidCourseSale, "2026-11-28T10:02:00Z", &["crm"]);
    store.append(third.clone()).await.unwrap();
    drop(store);
    let store = FileLogStore::open(dir.path()).unwrap();
    assert!(
        store.recovery_report().is_clean(),
        "{:?}",
        store.recovery_report()
    );
    for event in [first, second, third] {
        assert_eq!(
            store
                .get(&event.event_unique_id)
                .await
                .unwrap()
                .unwrap()
                .body,
            event.body
        );
    }
}

#[tokio::test]
async fn a_damaged_line_in_the_middle_is_reported_and_skipped() {
    let dir = TempDir::new("damaged");
    let events = logged_sales(dir.path(), 3).await;
    let path = segment(&dir, "2026-11-28");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[1] = "\u{1}\u{2} not json at all".to_owned();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let store = FileLogStore::open(dir.path()).unwrap();
    let damaged = &store.recovery_report().damaged_lines;
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    assert!(
        store
            .get(&events[0].event_unique_id)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .get(&events[1].event_unique_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get(&events[2].event_unique_id)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_second_writer_gets_a_clear_error_and_the_first_is_unharmed() {
    let dir = TempDir::new("lock");
    let first = FileLogStore::open(dir.path()).unwrap();
    let error = FileLogStore::open(dir.path()).unwrap_err();
    assert!(matches!(error, LogError::Locked { .. }), "{error:?}");
    assert!(error.to_string().contains("already open for writing"));
    first
        .append(stored(
            EventKind::PaidCourseSale,
            "2026-11-28T10:00:00Z",
            &["crm"],
        ))
        .await
        .unwrap();
    // Readers may open beside the writer.
    let reader = FileLogStore::open_read_only(dir.path()).unwrap();
    assert_eq!(count(&reader).await, 1);
    let write = reader.append(stored(
        EventKind::PaidCourseSale,
        "2026-11-28T10:00:00Z",
        &["crm"],
    ));
    assert!(matches!(write.await, Err(LogError::ReadOnly { .. })));
    drop(first);
    assert!(
        FileLogStore::open(dir.path()).is_ok(),
        "the lock goes with the writer"
    );
}

#[test]
fn a_missing_directory_is_a_clear_error_for_readers() {
    let dir = TempDir::new("missing");
    let error = FileLogStore::open_read_only(dir.path().join("nope")).unwrap_err();
    assert!(matches!(error, LogError::MissingDirectory { .. }));
    assert!(error.to_string().contains("does not exist"));
}

#[tokio::test]
async fn retention_deletes_whole_segment_files() {
    let dir = TempDir::new("retention");
    let store = FileLogStore::open(dir.path()).unwrap();
    for day in ["2026-11-01", "2026-11-02", "2026-11-03"] {
        let event = stored(
            EventKind::PaidCourseSale,
            &format!("{day}T10:00:00Z"),
            &["crm"],
        );
        store.append(event).await.unwrap();
    }
    // A cut-off in the middle of a day keeps that whole day.
    assert_eq!(
        store
            .delete_before(at("2026-11-03T09:00:00Z"))
            .await
            .unwrap(),
        2
    );
    assert!(!segment(&dir, "2026-11-01").exists());
    assert!(!segment(&dir, "2026-11-02").exists());
    assert!(segment(&dir, "2026-11-03").exists());
    drop(store);
    let store = FileLogStore::open(dir.path()).unwrap();
    assert_eq!(count(&store).await, 1);
}

/// The child half of the crash test: appends events until killed, printing each id once its
/// `append` has returned `Ok`. Run only by `an_acknowledged_append_survives_kill_9`.
#[tokio::test]
#[ignore = "run by an_acknowledged_append_survives_kill_9 in a child process"]
async fn child_appends_until_killed() {
    let dir = std::env::var("FERMION_CRASH_DIR").expect("FERMION_CRASH_DIR");
    let store = std::sync::Arc::new(FileLogStore::open(&dir).unwrap());
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

        let store = FileLogStore::open(dir.path()).unwrap();
        assert!(
            store.recovery_report().damaged_lines.is_empty(),
            "{:?}",
            store.recovery_report()
        );
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
async fn concurrent_appends_share_fsyncs() {
    let dir = TempDir::new("group-commit");
    let store = std::sync::Arc::new(FileLogStore::open(dir.path()).unwrap());
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
        "64 concurrent writers should share fsyncs: {stats:?}"
    );
}

#[tokio::test]
async fn concurrent_appends_across_many_days_all_land() {
    // More days than the writer keeps files open for, written concurrently so that one commit
    // touches several segments.
    let dir = TempDir::new("many-days");
    let store = std::sync::Arc::new(FileLogStore::open(dir.path()).unwrap());
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
    let store = FileLogStore::open(dir.path()).unwrap();
    assert!(store.recovery_report().is_clean());
    assert_eq!(count(&store).await, 400);
}
