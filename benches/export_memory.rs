//! `export_memory`: peak resident memory of a fresh process that opens a file log and exports
//! all of it to CSV, for a small and a large log (100,000 and 1,000,000 events; 10,000 and
//! 100,000 in quick mode). Target: the two within 16 MiB of each other, both < 64 MiB.

mod support;

use fermion_webhooks::FileLogStore;
use support::data::{cached_log, child_task, export_all, peak_rss_mib, run_child, runtime};

fn main() {
    if let Some(task) = child_task() {
        let dir = task.strip_prefix("export:").expect("an export task");
        let store = runtime()
            .block_on(FileLogStore::open_read_only(dir))
            .expect("the bench log");
        export_all(&runtime(), &store, &mut std::io::sink());
        println!("{:.1}", peak_rss_mib());
        return;
    }
    let (small, large) = if support::quick() {
        (10_000, 100_000)
    } else {
        (100_000, 1_000_000)
    };
    let peak = |count: usize| -> f64 {
        let dir = cached_log(count);
        run_child(&format!("export:{}", dir.display()))
            .trim()
            .parse()
            .expect("a reading")
    };
    let (small_mib, large_mib) = (peak(small), peak(large));
    support::summary(
        "export_memory",
        large_mib,
        &format!("MiB peak for {large} events"),
        small_mib,
        &format!("MiB peak for {small} events"),
    );
    println!(
        "bench export_memory: difference {:.1} MiB (target ≤ 16, both < 64)",
        large_mib - small_mib
    );
}
