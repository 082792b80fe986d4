//! `append_file`: durable appends to `FileLogStore` from 64 concurrent tasks, against a bare
//! loop writing the same lines to a file with an fsync every 100 lines. Target: throughput
//! ratio ≥ 0.5.

mod support;

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use fermion_webhooks::{FileLogStore, LogStore};
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
        let mut queues: Vec<Vec<_>> = (0..64).map(|_| Vec::new()).collect();
        for i in 0..total {
            queues[i % 64].push(entry(i));
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

        // The baseline: the very lines the log holds, written by one loop, fsync every 100.
        let lines: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .expect("the log directory")
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
            .flat_map(|e| {
                std::fs::read(e.path())
                    .expect("a segment")
                    .split_inclusive(|b| *b == b'\n')
                    .map(<[u8]>::to_vec)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(lines.len(), total);
        let path = dir.join("baseline.jsonl");
        let mut file = std::fs::File::create(&path).expect("a baseline file");
        let start = Instant::now();
        for (i, line) in lines.iter().enumerate() {
            file.write_all(line).expect("write");
            if i % 100 == 99 {
                file.sync_data().expect("fsync");
            }
        }
        file.sync_data().expect("fsync");
        base.push(total as f64 / start.elapsed().as_secs_f64());
        eprintln!(
            "round {round}: baseline {:.0}/s, append_file {:.0}/s",
            base[round], subject[round]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    let (subject, base) = support::median_round(&subject, &base);
    support::summary("append_file", subject, "appends/s", base, "lines/s");
}
