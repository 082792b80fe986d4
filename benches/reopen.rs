//! `reopen`: opening a `FileLogStore` that holds 1,000,000 events (100,000 in quick mode), in
//! a fresh process, until the first query (the newest 50 events) is answered: the time and the
//! resident memory after. Target: ≤ 0.5 s and ≤ 64 MiB (for 1,000,000 events).

mod support;

use std::time::Instant;

use fermion_webhooks::store::LogFilter;
use fermion_webhooks::{FileLogStore, LogStore};
use support::data::{cached_log, child_task, rss_mib, run_child, runtime};

fn main() {
    if let Some(task) = child_task() {
        let dir = task.strip_prefix("reopen:").expect("a reopen task");
        let start = Instant::now();
        let newest = runtime().block_on(async {
            let store = FileLogStore::open(dir).await.expect("the bench log");
            store
                .query(&LogFilter::default(), None, 50)
                .await
                .expect("a page")
        });
        let seconds = start.elapsed().as_secs_f64();
        assert_eq!(newest.events.len(), 50);
        println!("{seconds:.3} {:.1}", rss_mib());
        return;
    }
    let count = if support::quick() { 100_000 } else { 1_000_000 };
    let dir = cached_log(count);
    let mut readings: Vec<(f64, f64)> = (0..3)
        .map(|_| {
            let out = run_child(&format!("reopen:{}", dir.display()));
            let mut fields = out
                .split_whitespace()
                .map(|f| f.parse::<f64>().expect("a number"));
            (fields.next().expect("seconds"), fields.next().expect("MiB"))
        })
        .collect();
    readings.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (seconds, mib) = readings[1];
    let unit = format!("s for {count} events");
    support::summary(
        "reopen",
        seconds,
        &unit,
        0.5,
        "s (the target, for 1,000,000)",
    );
    let unit = format!("MiB after opening {count} events");
    support::summary(
        "reopen_memory",
        mib,
        &unit,
        64.0,
        "MiB (the target, for 1,000,000)",
    );
}
