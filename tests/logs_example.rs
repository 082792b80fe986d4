//! The `logs` example, run as a real process against a real log directory: what each command
//! prints, its exit status, and that reading never changes the directory.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use fermion_webhooks::export::ExportOptions;
use fermion_webhooks::store::{
    Attempt, AttemptRecord, AttemptTrigger, DeliveryState, LogFilter, StoredEvent,
};
use fermion_webhooks::{EventKind, FileLogStore, LogStore, export_csv};
use support::{TempDir, at, example_binary, stored};

fn logs(dir: &Path, args: &[&str]) -> Output {
    Command::new(example_binary("logs"))
        .arg("--log-dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Every file in the directory with its bytes.
/// The log's files and their bytes, but for SQLite's shared-memory index (`-shm`) and an
/// empty write-ahead log (`-wal`), which readers create to coordinate and which hold no data.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|entry| {
            !entry.as_ref().is_ok_and(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.ends_with("-shm")
                    || (name.ends_with("-wal") && e.metadata().is_ok_and(|m| m.len() == 0))
            })
        })
        .map(|entry| {
            let entry = entry.unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).unwrap(),
            )
        })
        .collect()
}

/// A log with three events: a delivered sale, a failed payment (two attempts), a test event.
async fn prepared_log(dir: &TempDir) -> Vec<StoredEvent> {
    let store = FileLogStore::open(dir.path()).await.unwrap();
    let sale = stored(EventKind::PaidCourseSale, "2026-11-27T10:00:00Z", &["crm"]);
    let failed = stored(EventKind::PaymentFailed, "2026-11-28T10:00:00Z", &["crm"]);
    let mut test = stored(
        EventKind::FreeCourseEnrollment,
        "2026-11-28T11:00:00Z",
        &["crm"],
    );
    test.is_test_event = true;
    for event in [&sale, &failed, &test] {
        store.append(event.clone()).await.unwrap();
    }
    let attempt = |status, at_iso| {
        Attempt::response(
            at(at_iso),
            Duration::from_millis(25),
            status,
            "",
            AttemptTrigger::FirstTry,
        )
    };
    let records = [
        (
            &sale,
            attempt(200, "2026-11-27T10:00:01Z"),
            DeliveryState::Delivered,
        ),
        (
            &failed,
            attempt(500, "2026-11-28T10:00:01Z"),
            DeliveryState::Pending,
        ),
        (
            &failed,
            attempt(503, "2026-11-28T10:00:06Z"),
            DeliveryState::Failed,
        ),
    ];
    for (event, attempt, state) in records {
        store
            .record_attempt(AttemptRecord {
                event_unique_id: event.event_unique_id.clone(),
                endpoint_id: "crm".into(),
                attempt,
                state,
                next_attempt_at: (state == DeliveryState::Pending)
                    .then(|| at("2026-11-28T10:00:06Z")),
                claim: None,
            })
            .await
            .unwrap();
    }
    store.close().await;
    vec![sale, failed, test]
}

#[tokio::test]
async fn list_prints_one_json_line_per_event_newest_first_with_filters() {
    let dir = TempDir::new("logs-list");
    let events = prepared_log(&dir).await;
    let before = snapshot(dir.path());
    let all = stdout(&logs(dir.path(), &["list"]));
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[1],
        format!(
            r#"{{"eventUniqueId":"{}","timestampIsoString":"2026-11-28T10:00:00.000Z","eventType":"payment-failed","isTestEvent":false,"status":"failed","attempts":2,"lastResponseStatus":503}}"#,
            events[1].event_unique_id
        )
    );
    assert!(
        lines[0].contains(&events[2].event_unique_id),
        "newest first"
    );
    assert!(lines[0].contains(r#""lastResponseStatus":null"#));
    let failed = stdout(&logs(dir.path(), &["list", "--status", "failed"]));
    assert_eq!(failed.lines().count(), 1);
    let sales = stdout(&logs(
        dir.path(),
        &[
            "list",
            "--event",
            "paid-course-sale",
            "--event",
            "payment-failed",
        ],
    ));
    assert_eq!(sales.lines().count(), 2);
    let tests = stdout(&logs(dir.path(), &["list", "--test"]));
    assert!(tests.contains(&events[2].event_unique_id) && tests.lines().count() == 1);
    let live_today = stdout(&logs(
        dir.path(),
        &[
            "list",
            "--live",
            "--from",
            "2026-11-28",
            "--to",
            "2026-11-29",
        ],
    ));
    assert_eq!(live_today.lines().count(), 1);
    assert_eq!(
        stdout(&logs(dir.path(), &["list", "--limit", "2"]))
            .lines()
            .count(),
        2
    );
    let after = snapshot(dir.path());
    let changed: Vec<(&String, usize, usize)> = after
        .iter()
        .filter(|(name, bytes)| before.get(*name) != Some(*bytes))
        .map(|(name, bytes)| (name, before.get(name).map_or(0, Vec::len), bytes.len()))
        .collect();
    assert!(
        changed.is_empty() && after.len() == before.len(),
        "reading changes nothing: {changed:?}, files before {:?}",
        before.keys().collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn show_prints_the_exact_body_and_attempts_one_line_each() {
    let dir = TempDir::new("logs-show");
    let events = prepared_log(&dir).await;
    let shown = logs(dir.path(), &["show", &events[1].event_unique_id]);
    assert_eq!(stdout(&shown).as_bytes(), events[1].body.as_bytes());
    let attempts = stdout(&logs(dir.path(), &["attempts", &events[1].event_unique_id]));
    let lines: Vec<serde_json::Value> = attempts
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["endpointId"], "crm");
    assert_eq!(lines[0]["httpStatus"], 500);
    assert_eq!(lines[1]["httpStatus"], 503);
    assert_eq!(lines[1]["trigger"], "first-try");
    for command in ["show", "attempts"] {
        let unknown = logs(dir.path(), &[command, "no-such-event"]);
        assert_eq!(unknown.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&unknown.stderr).contains("no event no-such-event"));
    }
}

#[tokio::test]
async fn export_writes_csv_to_a_file_and_jsonl_to_stdout() {
    let dir = TempDir::new("logs-export");
    let events = prepared_log(&dir).await;
    let out = dir.path().join("export.csv");
    let output = logs(
        dir.path(),
        &[
            "export",
            "--from",
            "2026-11-27T00:00:00Z",
            "--to",
            "2026-11-29T00:00:00Z",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(output.status.success());
    let store = FileLogStore::open_read_only(dir.path()).await.unwrap();
    let mut expected = Vec::new();
    let filter =
        LogFilter::default().between(at("2026-11-27T00:00:00Z"), at("2026-11-29T00:00:00Z"));
    export_csv(
        &store,
        &filter,
        &mut expected,
        &ExportOptions::default(),
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), expected);
    std::fs::remove_file(&out).unwrap();

    let jsonl = stdout(&logs(
        dir.path(),
        &[
            "export",
            "--from",
            "2026-11-28",
            "--to",
            "2026-11-29",
            "--format",
            "jsonl",
            "--events",
            "payment-failed,free-course-enrollment",
        ],
    ));
    let bodies: Vec<&str> = jsonl.lines().collect();
    assert_eq!(bodies, [events[1].body.as_str(), events[2].body.as_str()]);
}

#[test]
fn bad_arguments_exit_2_with_a_clear_message() {
    let dir = TempDir::new("logs-bad");
    let cases: [(&[&str], &str); 7] = [
        (
            &["list", "--event", "paid-course-sales"],
            "unknown event kind",
        ),
        (&["list", "--status", "lost"], "unknown delivery status"),
        (
            &["list", "--from", "2026-11-29", "--to", "2026-11-28"],
            "is after --to",
        ),
        (&["list", "--from", "yesterday"], "is not a time"),
        (
            &["export", "--from", "2026-11-28"],
            "export needs --from and --to",
        ),
        (&["frobnicate"], "unknown command"),
        (&["show"], "exactly one EVENT_ID"),
    ];
    for (args, message) in cases {
        let output = logs(dir.path(), args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    let missing = logs(&dir.path().join("nope"), &["list"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does not exist"));
    assert!(
        !dir.path().join("nope").exists(),
        "a read-only command creates nothing"
    );
}
