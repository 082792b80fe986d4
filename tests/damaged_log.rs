//! Reopening a log whose segment was truncated or overwritten with random bytes: never a panic,
//! and every record that ends before the damage is still read, byte for byte.

mod support;

use fermion_webhooks::store::StoredEvent;
use fermion_webhooks::{EventKind, FileLogStore, LogStore};
use proptest::prelude::*;
use support::{TempDir, at, delivered, stored};

/// A healthy segment: 12 events with an attempt each, and where each event's line ends.
fn healthy_segment() -> (Vec<u8>, Vec<(StoredEvent, u64)>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = TempDir::new("damage-source");
        let store = FileLogStore::open(dir.path()).unwrap();
        let path = dir.path().join("2026-11-28.jsonl");
        let mut events = Vec::new();
        for i in 0..12 {
            let kind = EventKind::ALL[i % 4];
            let event = stored(kind, &format!("2026-11-28T10:{i:02}:00Z"), &["crm"]);
            store.append(event.clone()).await.unwrap();
            let done = delivered(&event, "crm", at("2026-11-28T11:00:00Z"));
            store.record_attempt(done).await.unwrap();
            events.push(event);
        }
        drop(store);
        let bytes = std::fs::read(&path).unwrap();
        // Lines alternate: an event, then its attempt. (Read once the writer has closed the
        // file: while it writes, the file runs on past its lines with zeros.)
        let line_ends: Vec<u64> = bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i as u64 + 1)
            .collect();
        assert_eq!(
            line_ends.len(),
            24,
            "an event and an attempt line per event"
        );
        let events = events
            .into_iter()
            .zip(line_ends.iter().step_by(2).copied())
            .collect();
        (bytes, events)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_damaged_segment_never_panics_and_keeps_every_record_before_the_damage(
        truncate in any::<prop::sample::Index>(),
        overwrite in proptest::option::of((any::<prop::sample::Index>(), proptest::collection::vec(any::<u8>(), 1..200))),
    ) {
        let (healthy, events) = healthy_segment();
        let mut damaged = healthy.clone();
        damaged.truncate(truncate.index(healthy.len() + 1));
        let mut damage_at = damaged.len() as u64;
        if let Some((at_index, bytes)) = overwrite.as_ref().filter(|_| !damaged.is_empty()) {
            let start = at_index.index(damaged.len());
            for (offset, byte) in bytes.iter().enumerate() {
                if let Some(slot) = damaged.get_mut(start + offset) {
                    *slot = *byte;
                }
            }
            damage_at = damage_at.min(start as u64);
        }
        let dir = TempDir::new("damaged");
        std::fs::write(dir.path().join("2026-11-28.jsonl"), &damaged).unwrap();

        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let store = FileLogStore::open(dir.path()).expect("a damaged log still opens");
            for (event, line_end) in &events {
                if *line_end <= damage_at {
                    let back = store.get(&event.event_unique_id).await.unwrap();
                    assert_eq!(back.map(|e| e.body), Some(event.body.clone()), "intact record lost");
                }
            }
            // And it still takes writes that survive the next reopen.
            let fresh = stored(EventKind::PaidCourseSale, "2026-11-28T12:00:00Z", &["crm"]);
            store.append(fresh.clone()).await.unwrap();
            drop(store);
            let reopened = FileLogStore::open(dir.path()).unwrap();
            assert!(reopened.get(&fresh.event_unique_id).await.unwrap().is_some());
        });
    }
}
