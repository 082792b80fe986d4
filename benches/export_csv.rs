//! `export_csv`: exporting stored events to CSV (1,000,000; 20,000 in quick mode), against
//! writing the same rows with `csv` from memory. Target: ≥ 500,000 rows/s (reported).

mod support;

use std::time::Instant;

use fermion_webhooks::FileLogStore;
use support::data::{cached_log, export_all, runtime};

fn main() {
    let count = if support::quick() { 20_000 } else { 1_000_000 };
    let dir = cached_log(count);
    let store = runtime()
        .block_on(FileLogStore::open_read_only(&dir))
        .expect("the bench log");
    let runtime = runtime();
    let mut csv_bytes = Vec::new();
    assert_eq!(export_all(&runtime, &store, &mut csv_bytes), count as u64);
    let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(csv_bytes.as_slice())
        .records()
        .map(|r| r.expect("a row"))
        .collect();
    drop(csv_bytes);

    let (mut base, mut subject) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let start = Instant::now();
        export_all(&runtime, &store, &mut std::io::sink());
        subject.push(count as f64 / start.elapsed().as_secs_f64());

        let start = Instant::now();
        let mut writer = csv::Writer::from_writer(std::io::sink());
        for row in &rows {
            writer.write_record(row).expect("a row");
        }
        writer.flush().expect("flush");
        base.push(count as f64 / start.elapsed().as_secs_f64());
    }
    base.sort_by(f64::total_cmp);
    subject.sort_by(f64::total_cmp);
    support::summary("export_csv", subject[1], "rows/s", base[1], "rows/s");
}
