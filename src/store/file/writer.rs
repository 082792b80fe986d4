//! The single writer thread of a file log, with group commit.
//!
//! Callers send requests over a channel and wait for the answer. The thread takes every request
//! queued at that moment as one batch, writes all their lines, fsyncs each touched segment once,
//! updates the index, and only then answers each caller. Under load a batch holds many appends,
//! so durability costs one fsync per batch rather than one per event.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use super::index::{Index, Slot};
use super::segment::{
    Day, EventSummary, day_end, day_of, encode_attempt_line, encode_event_line, segment_file_name,
};
use super::{io_error, lock_index};
use crate::store::record::{AttemptRecord, StoredEvent};
use crate::store::{LogError, validate_new_entry};

/// The most requests written as one batch.
const MAX_BATCH: usize = 4096;
/// The most segment files kept open for appending.
const MAX_OPEN_FILES: usize = 8;

type Reply<T> = oneshot::Sender<Result<T, LogError>>;

pub(super) enum Request {
    Append(Box<StoredEvent>, Reply<()>),
    Attempt(Box<AttemptRecord>, Reply<()>),
    DeleteBefore(DateTime<Utc>, Reply<u64>),
}

/// A change to apply to the index once its line is on disk.
enum Staged {
    Event(EventSummary, Day, u64),
    Attempt(Slot, Box<AttemptRecord>, u64),
}

#[derive(Default)]
struct Batch {
    lines: BTreeMap<Day, Vec<u8>>,
    changes: Vec<Staged>,
    new_ids: HashSet<String>,
    replies: Vec<Reply<()>>,
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
    files: HashMap<Day, File>,
    poisoned: Option<String>,
    /// Held for the writer's whole life: the lock that keeps other processes out.
    _lock: File,
}

impl Writer {
    pub(super) fn new(
        dir: PathBuf,
        index: Arc<Mutex<Index>>,
        counters: Arc<Counters>,
        lock: File,
    ) -> Self {
        Self {
            dir,
            index,
            counters,
            files: HashMap::new(),
            poisoned: None,
            _lock: lock,
        }
    }

    pub(super) fn run(mut self, requests: Receiver<Request>) {
        while let Ok(first) = requests.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match requests.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            self.process(batch);
        }
        // Dropping `self` closes the files and releases the lock.
    }

    fn process(&mut self, requests: Vec<Request>) {
        let mut batch = Batch::default();
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
                Request::Append(event, reply) => match self.stage_append(&mut batch, *event) {
                    Ok(()) => batch.replies.push(reply),
                    Err(error) => {
                        let _ = reply.send(Err(error));
                    }
                },
                Request::Attempt(record, reply) => {
                    // An attempt on an event of this very batch needs that event indexed first.
                    if batch.new_ids.contains(&record.event_unique_id) {
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

    fn stage_append(&self, batch: &mut Batch, event: StoredEvent) -> Result<(), LogError> {
        validate_new_entry(&event)?;
        let day = day_of(event.timestamp);
        let offset = {
            let index = lock_index(&self.index);
            let id = &event.event_unique_id;
            if batch.new_ids.contains(id) || index.contains(id) {
                return Err(LogError::DuplicateEvent { id: id.clone() });
            }
            staged_len(&index, batch, day)
        };
        let line = encode_event_line(&event);
        batch.lines.entry(day).or_default().extend_from_slice(&line);
        batch.new_ids.insert(event.event_unique_id.clone());
        let summary = EventSummary {
            event_unique_id: event.event_unique_id,
            timestamp_iso_string: event.timestamp,
            event_type: event.event_type,
            is_test_event: event.is_test_event,
            deliveries: event.deliveries,
        };
        batch.changes.push(Staged::Event(summary, day, offset));
        Ok(())
    }

    fn stage_attempt(&self, batch: &mut Batch, record: Box<AttemptRecord>) -> Result<(), LogError> {
        let (slot, day, offset) = {
            let index = lock_index(&self.index);
            let slot =
                index
                    .slot_of(&record.event_unique_id)
                    .ok_or_else(|| LogError::UnknownEvent {
                        id: record.event_unique_id.clone(),
                    })?;
            if index.delivery_index(slot, &record.endpoint_id).is_none() {
                return Err(LogError::UnknownDelivery {
                    event_id: record.event_unique_id.clone(),
                    endpoint_id: record.endpoint_id.clone(),
                });
            }
            let day = index.day_of_slot(slot).unwrap_or_default();
            (slot, day, staged_len(&index, batch, day))
        };
        let line = encode_attempt_line(&record);
        batch.lines.entry(day).or_default().extend_from_slice(&line);
        batch.changes.push(Staged::Attempt(slot, record, offset));
        Ok(())
    }

    /// Writes and fsyncs the batch, then indexes it and answers its callers.
    fn commit(&mut self, batch: Batch) {
        if batch.replies.is_empty() {
            return;
        }
        if let Err(error) = self.write_and_sync(&batch.lines) {
            // After a failed write or fsync the file's state is unknown: refuse further writes
            // until the log is reopened, which re-reads what really reached the disk.
            self.poisoned = Some(error.to_string());
            self.files.clear();
            for reply in batch.replies {
                let _ = reply.send(Err(LogError::Poisoned {
                    reason: error.to_string(),
                }));
            }
            return;
        }
        {
            let mut index = lock_index(&self.index);
            for (day, bytes) in &batch.lines {
                let len = index.segment_len(*day) + bytes.len() as u64;
                index.set_segment_len(*day, len);
            }
            for change in batch.changes {
                match change {
                    Staged::Event(summary, day, offset) => {
                        index.insert(summary, day, offset);
                    }
                    Staged::Attempt(slot, record, offset) => {
                        index.apply_attempt(slot, &record, offset);
                    }
                }
            }
        }
        let records = batch.replies.len() as u64;
        self.counters.records.fetch_add(records, Ordering::Relaxed);
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        for reply in batch.replies {
            let _ = reply.send(Ok(()));
        }
    }

    fn write_and_sync(&mut self, lines: &BTreeMap<Day, Vec<u8>>) -> Result<(), LogError> {
        let mut created = false;
        // Close files this batch does not touch when the cache would overflow; never one it
        // is about to write to.
        let missing = lines
            .keys()
            .filter(|day| !self.files.contains_key(day))
            .count();
        if self.files.len() + missing > MAX_OPEN_FILES {
            self.files.retain(|day, _| lines.contains_key(day));
        }
        for day in lines.keys() {
            if !self.files.contains_key(day) {
                let path = self.dir.join(segment_file_name(*day));
                created |= !path.exists();
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| io_error(&path, e))?;
                self.files.insert(*day, file);
            }
        }
        for (day, bytes) in lines {
            let path = self.dir.join(segment_file_name(*day));
            let file = self
                .files
                .get_mut(day)
                .ok_or_else(|| io_error(&path, std::io::Error::other("segment file not open")))?;
            file.write_all(bytes).map_err(|e| io_error(&path, e))?;
            file.sync_data().map_err(|e| io_error(&path, e))?;
        }
        if created {
            sync_dir(&self.dir)?;
        }
        Ok(())
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
            let path = self.dir.join(segment_file_name(day));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&path, e)),
            }
            deleted += lock_index(&self.index).remove_segment(day);
        }
        sync_dir(&self.dir)?;
        Ok(deleted)
    }
}

/// Where the next line staged for `day` will start in its file.
fn staged_len(index: &Index, batch: &Batch, day: Day) -> u64 {
    let staged = batch.lines.get(&day).map_or(0, |bytes| bytes.len() as u64);
    index.segment_len(day) + staged
}

/// Makes the directory's entries (a created or deleted segment) durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|e| io_error(dir, e))
}
