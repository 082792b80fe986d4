//! Event logs for the benches, built once and kept under `target/bench-data`, and memory
//! readings from `/proc`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fermion_webhooks::store::{
    Attempt, AttemptRecord, AttemptTrigger, Delivery, DeliveryState, StoredEvent,
};
use fermion_webhooks::{EventKind, EventPayload, FileLogStore, LogStore, WebhookEvent};

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Exports every event of `store` to CSV, with the default options; returns the rows.
pub fn export_all(
    runtime: &tokio::runtime::Runtime,
    store: &FileLogStore,
    out: &mut (dyn std::io::Write + Send),
) -> u64 {
    runtime
        .block_on(fermion_webhooks::export_csv(
            store,
            &fermion_webhooks::store::LogFilter::default(),
            out,
            &fermion_webhooks::export::ExportOptions::default(),
            &mut |_| {},
        ))
        .expect("an export")
}

/// A fresh empty directory under `target/bench-data`.
pub fn scratch_dir(label: &str) -> PathBuf {
    let dir = data_root().join(format!("{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// Where built logs are kept; named after the log's format, so a change of format builds anew.
fn data_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/sqlite-4")
}

/// An event as the benches store it: a sample of each kind in turn, three seconds apart.
pub fn entry(i: usize) -> StoredEvent {
    let at = chrono::DateTime::from_timestamp(1_790_000_000 + i as i64 * 3, 0).unwrap_or_default();
    let event = WebhookEvent::at(EventPayload::sample(EventKind::ALL[i % 4]), at);
    StoredEvent::new(
        &event,
        vec![Delivery::pending(
            "crm",
            "https://crm.example.com/hooks",
            at,
        )],
    )
}

/// A log of `count` events, each with one delivered attempt; built once and reused.
pub fn cached_log(count: usize) -> PathBuf {
    let dir = data_root().join(format!("log-{count}"));
    let done = dir.join("COMPLETE");
    if done.exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "building a log of {count} events in {} (once)",
        dir.display()
    );
    runtime().block_on(fill(&dir, count));
    std::fs::write(&done, count.to_string()).expect("marking the log complete");
    dir
}

async fn fill(dir: &std::path::Path, count: usize) {
    let store = Arc::new(FileLogStore::open(dir).await.expect("a log directory"));
    let tasks: Vec<_> = (0..64)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in (task..count).step_by(64) {
                    let event = entry(i);
                    let id = event.event_unique_id.clone();
                    let at = event.timestamp;
                    store.append(event).await.expect("append");
                    let attempt = Attempt::response(
                        at,
                        Duration::from_millis(20),
                        200,
                        "{\"ok\":true}",
                        AttemptTrigger::FirstTry,
                    );
                    let record = AttemptRecord {
                        event_unique_id: id,
                        endpoint_id: "crm".into(),
                        attempt,
                        state: DeliveryState::Delivered,
                        next_attempt_at: None,
                        claim: None,
                    };
                    store.record_attempt(record).await.expect("record");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a filler task");
    }
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Resident memory now, in MiB.
pub fn rss_mib() -> f64 {
    status_kib("VmRSS:") as f64 / 1024.0
}

/// Peak resident memory of this process, in MiB.
pub fn peak_rss_mib() -> f64 {
    status_kib("VmHWM:") as f64 / 1024.0
}

/// Runs this bench binary again as a child with `FERMION_BENCH_CHILD=task`, and returns its
/// stdout: for measurements (peak memory) that must start from a fresh process.
pub fn run_child(task: &str) -> String {
    let output = std::process::Command::new(std::env::current_exe().expect("the bench binary"))
        .env("FERMION_BENCH_CHILD", task)
        .output()
        .expect("running the child");
    assert!(
        output.status.success(),
        "child {task} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The child task this process was started for, if any.
pub fn child_task() -> Option<String> {
    std::env::var("FERMION_BENCH_CHILD").ok()
}
