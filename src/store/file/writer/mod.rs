//! The single writer thread of a file log, with group commit.
//!
//! Callers queue requests and wait for the answer. The thread takes every request queued at
//! that moment as one batch, writes all their lines and fsyncs each touched segment once. Then,
//! holding the index lock, it answers each caller and updates the index: nobody can read before
//! the update is done, and callers prepare their next request meanwhile. Under load a batch
//! holds many appends, so durability costs one fsync per batch rather than one per event.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

mod files;
mod padded;
mod queue;
mod stage;

pub(super) use files::sync_dir;
pub(super) use queue::RequestQueue;

use super::encode::{encode_attempt_line, encode_event_line};
use super::index::{Index, MixKey, Slot};
use super::records::read_id_at;
use super::segment::{Day, EventSummary, day_end, day_of, segment_file_name};
use super::sidecar::{SideRecord, id_hash, sidecar_path};
use super::{io_error, lock_index};
use crate::store::record::{AttemptRecord, DeliveryState, StoredEvent};
use crate::store::{LogError, validate_new_entry};

/// The most requests written as one batch.
const MAX_BATCH: usize = 4096;
/// The longest it gathers one batch. Under load the callers a commit answered take a while to
/// come back (their tasks wait for a busy runtime): with 0.5 ms, `emit_file` paid one fsync
/// per 43 records, with 2 ms one per 100, and used 13 % less CPU per event (BENCHMARKS.md).
/// The cost is at most 2 ms more for a commit when fewer callers come back than last time,
/// once: the next commit waits only for as many as this one answered.
const MAX_GATHER: std::time::Duration = std::time::Duration::from_millis(2);
/// The most segment files kept open for appending.
const MAX_OPEN_FILES: usize = 8;

type Reply<T> = oneshot::Sender<Result<T, LogError>>;

/// Not boxed: a box per request would be one more allocation on the caller's thread and one
/// more free on the writer's, and glibc serialises frees of another thread's memory on that
/// thread's arena lock (BENCHMARKS.md, sixth session).
pub(super) enum Request {
    Append(PreparedEvent, Reply<()>),
    Attempt(PreparedAttempt, Reply<()>),
    DeleteBefore(DateTime<Utc>, Reply<u64>),
}

/// An event checked and encoded by its caller, so the single writer thread only places it:
/// encoding costs more CPU than writing, and callers run in parallel.
pub(super) struct PreparedEvent {
    pub(super) summary: EventSummary,
    /// The id's hash, computed here rather than on the writer thread.
    pub(super) id_hash: u64,
    pub(super) day: Day,
    pub(super) line: Vec<u8>,
    pub(super) body_start: usize,
}

impl PreparedEvent {
    pub(super) fn new(event: StoredEvent) -> Result<Self, LogError> {
        validate_new_entry(&event)?;
        let (line, body_start) = encode_event_line(&event);
        Ok(Self {
            id_hash: id_hash(&event.event_unique_id),
            day: day_of(event.timestamp),
            summary: EventSummary {
                event_unique_id: event.event_unique_id,
                timestamp_iso_string: event.timestamp,
                event_type: event.event_type,
                is_test_event: event.is_test_event,
                deliveries: event.deliveries,
            },
            line,
            body_start,
        })
    }
}

/// An attempt encoded by its caller.
pub(super) struct PreparedAttempt {
    pub(super) record: AttemptRecord,
    /// The hash of the event's id.
    pub(super) id_hash: u64,
    pub(super) line: Vec<u8>,
}

impl PreparedAttempt {
    pub(super) fn new(record: AttemptRecord) -> Self {
        let line = encode_attempt_line(&record);
        let id_hash = id_hash(&record.event_unique_id);
        Self {
            record,
            id_hash,
            line,
        }
    }
}

/// A change to apply to the index once its line is on disk.
enum Staged {
    Event(EventSummary, Day, SideRecord, u32),
    Attempt(Slot, u32, u16, DeliveryState, Option<i64>),
}

/// What one commit writes to a day's segment and sidecar.
#[derive(Default)]
struct DayBatch {
    /// The callers' encoded lines, written with one vectored write rather than copied.
    lines: Vec<Vec<u8>>,
    /// Their total length.
    bytes: u64,
    sidecar: Vec<u8>,
    records: u32,
}

#[derive(Default)]
struct Batch {
    /// How many requests it is sized for: its vectors never grow while it is staged.
    room: usize,
    days: BTreeMap<Day, DayBatch>,
    changes: Vec<Staged>,
    /// Hashes of the ids of the batch's new events.
    new_ids: HashSet<u64, MixKey>,
    replies: Vec<Reply<()>>,
}

/// A committed batch's memory: its callers' lines and event summaries, made on their threads.
/// The next caller to queue a request frees it, on its own thread, instead of this thread:
/// glibc frees another thread's memory under that thread's arena lock, and with this thread
/// freeing a whole batch of it at once, the callers' threads slept on their own locks
/// (BENCHMARKS.md, sixth session). It also keeps the frees off the writer's path.
pub(super) struct Spent {
    #[expect(dead_code, reason = "held only to be dropped on a caller's thread")]
    days: BTreeMap<Day, DayBatch>,
    changes: Vec<Staged>,
}

impl Spent {
    /// How many records it holds.
    fn records(&self) -> usize {
        self.changes.len()
    }
}

/// Counts of what the writer has done, shared with the store for [`super::WriteStats`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) records: AtomicU64,
    pub(super) commits: AtomicU64,
}

pub(super) struct Writer {
    dir: PathBuf,
    index: Arc<Mutex<Index>>,
    counters: Arc<Counters>,
    files: HashMap<Day, padded::PaddedSegment>,
    sidecars: HashMap<Day, File>,
    poisoned: Option<String>,
    /// The queue it serves, where a commit's spent memory also goes to be freed by the next
    /// caller (see [`Spent`]).
    requests: Arc<RequestQueue>,
    /// Held for the writer's whole life: the lock that keeps other processes out.
    _lock: File,
}

impl Writer {
    pub(super) fn new(
        dir: PathBuf,
        index: Arc<Mutex<Index>>,
        counters: Arc<Counters>,
        lock: File,
        requests: Arc<RequestQueue>,
    ) -> Self {
        Self {
            dir,
            index,
            counters,
            files: HashMap::new(),
            sidecars: HashMap::new(),
            poisoned: None,
            requests,
            _lock: lock,
        }
    }

    pub(super) fn run(mut self) {
        // However the thread ends (a panic included), callers must not wait for ever.
        struct AbandonOnExit(Arc<RequestQueue>);
        impl Drop for AbandonOnExit {
            fn drop(&mut self) {
                self.0.abandon();
            }
        }
        let requests = AbandonOnExit(self.requests.clone());
        // How many callers the last commit answered: they are likely to write again soon.
        // Waiting, briefly, for most of them lets one fsync carry them instead of alternating
        // between two half batches: an fsync costs far more CPU than the wait (BENCHMARKS.md
        // has the figures). Not for all of them: the last few to come back are the slowest,
        // and waiting for them lengthened every commit; they join the next one. Waiting for
        // four in five gave `emit_file` 7 % more events per second than waiting for all, in
        // five paired runs out of five. A lone caller waits for nobody.
        let mut answered = 0;
        while let Some(batch) = requests
            .0
            .take(answered - answered / 5, MAX_GATHER, MAX_BATCH)
        {
            answered = batch.len();
            self.process(batch);
        }
        // Dropping `self` closes the files and releases the lock.
    }

    fn process(&mut self, requests: Vec<Request>) {
        let mut batch = Batch::with_room(requests.len());
        for request in requests {
            if let Some(reason) = &self.poisoned {
                let error = LogError::Poisoned {
                    reason: reason.clone(),
                };
                match request {
                    Request::Append(_, reply) | Request::Attempt(_, reply) => {
                        let _ = reply.send(Err(error));
                    }
                    Request::DeleteBefore(_, reply) => {
                        let _ = reply.send(Err(error));
                    }
                }
                continue;
            }
            match request {
                Request::Append(event, reply) => match self.stage_append(&mut batch, event) {
                    Ok(()) => batch.replies.push(reply),
                    Err(error) => {
                        let _ = reply.send(Err(error));
                    }
                },
                Request::Attempt(record, reply) => {
                    // An attempt on an event of this very batch needs that event indexed first.
                    // (Another id with the same hash only costs an early commit.)
                    if batch.new_ids.contains(&record.id_hash) {
                        self.commit(std::mem::take(&mut batch));
                    }
                    match self.stage_attempt(&mut batch, record) {
                        Ok(()) => batch.replies.push(reply),
                        Err(error) => {
                            let _ = reply.send(Err(error));
                        }
                    }
                }
                Request::DeleteBefore(cutoff, reply) => {
                    self.commit(std::mem::take(&mut batch));
                    let _ = reply.send(self.delete_before(cutoff));
                }
            }
        }
        self.commit(batch);
    }

    /// Writes and fsyncs the batch, then indexes it and answers its callers.
    fn commit(&mut self, batch: Batch) {
        if batch.replies.is_empty() {
            return;
        }
        if let Err(error) = self.write_and_sync(&batch.days) {
            // After a failed write or fsync the file's state is unknown: refuse further writes
            // until the log is reopened, which re-reads what really reached the disk.
            self.poisoned = Some(error.to_string());
            self.files.clear();
            self.sidecars.clear();
            for reply in batch.replies {
                let _ = reply.send(Err(LogError::Poisoned {
                    reason: error.to_string(),
                }));
            }
            return;
        }
        // The lines are durable. Callers hear back at once, while the index lock is held: the
        // sidecar records and index changes that follow are made before anyone can look, since
        // a lookup (or any read) waits for the lock, and a caller that appends again is encoding
        // its next record meanwhile instead of waiting for this bookkeeping. Lookups read
        // attempts through the sidecar, so it is written under the lock too.
        let Batch {
            days,
            changes,
            replies,
            ..
        } = batch;
        let index = self.index.clone();
        let mut index = lock_index(&index);
        // Counted before anyone hears back, so that a caller reading the stats after its
        // answer finds its own record counted.
        self.counters
            .records
            .fetch_add(replies.len() as u64, Ordering::Relaxed);
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        for reply in replies {
            let _ = reply.send(Ok(()));
        }
        // A failure here loses nothing (reopening rebuilds the sidecar from the segment), but
        // lookups would miss these records, so the log takes no more writes until reopened.
        if let Err(error) = self.write_sidecars(&days) {
            self.poisoned = Some(format!("{error}; reopen the log to rebuild its index"));
            self.sidecars.clear();
        }
        let dir = &self.dir;
        // Only if two ids share a hash: the other id is read from its line.
        let mut read_id = |day: Day, offset: u64| read_id_at(dir, day, offset);
        for (day, staged) in &days {
            let len = index.segment_len(*day) + staged.bytes;
            let records = index.segment_records(*day) + staged.records;
            index.set_segment_end(*day, len, records);
        }
        for change in &changes {
            match change {
                Staged::Event(summary, day, record, number) => {
                    let inserted = index.insert(
                        Some(&summary.event_unique_id),
                        record.reference,
                        record.micros,
                        *day,
                        record.offset,
                        *number,
                        record.delivery,
                        record.type_code,
                        record.flags,
                        &mut read_id,
                    );
                    if let Ok(slot) = inserted {
                        for (i, delivery) in summary.deliveries.iter().enumerate() {
                            index.set_state(slot, i as u16, delivery.state);
                        }
                        index.track_pending(slot, summary, &|_| None);
                    }
                }
                Staged::Attempt(slot, number, delivery, state, next) => {
                    index.apply_attempt(*slot, *number, *delivery, *state, *next);
                }
            }
        }
        // The lock goes before the batch's memory is freed: readers need not wait for that.
        drop(index);
        self.requests.discard(Spent { days, changes });
    }

    /// Deletes every segment whose whole day ends at or before `cutoff`.
    fn delete_before(&mut self, cutoff: DateTime<Utc>) -> Result<u64, LogError> {
        let doomed: Vec<Day> = lock_index(&self.index)
            .segments
            .keys()
            .copied()
            .filter(|day| day_end(*day).is_some_and(|end| end <= cutoff))
            .collect();
        let mut deleted = 0;
        for day in doomed {
            self.files.remove(&day);
            self.sidecars.remove(&day);
            let path = self.dir.join(segment_file_name(day));
            for path in [sidecar_path(&path), path] {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error(&path, e)),
                }
            }
            deleted += lock_index(&self.index).remove_segment(day);
        }
        sync_dir(&self.dir)?;
        Ok(deleted)
    }
}
