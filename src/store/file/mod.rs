//! `FileLogStore`: the event log as JSON Lines files in a directory, durable across crashes.

mod index;
mod records;
mod recovery;
mod scan;
mod segment;
mod sidecar;
mod writer;

use std::collections::{BTreeMap, HashSet};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, mpsc};
use std::thread::JoinHandle;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use self::index::{Entry, Index};
use self::recovery::{check, load, segment_days, take_lock};
use self::scan::{Item, scan_segment};
use self::segment::{Day, SegmentReader, day_of, read_event, segment_file_name};
use self::sidecar::{SideRecord, attempts_of, read_sidecar, sidecar_path};
use self::writer::{Counters, Request, Writer};

pub use self::recovery::{DamagedLine, RecoveryReport, TornTail};
use super::query::{Cursor, EventRow, LogFilter, Page};
use super::record::{AttemptRecord, DueDelivery, StoredEvent};
use super::{LogError, LogStore};

/// An event log in a directory of human-readable JSON Lines files.
///
/// - **Durable**: `append` and `record_attempt` return `Ok` only once their line is written and
///   fsynced. Concurrent writers share fsyncs (group commit), so durability does not cost one
///   fsync per event.
/// - **Crash-safe**: after `kill -9`, reopening finds every acknowledged record. A torn last
///   line (a write cut short) is moved aside to `<segment>.torn-<offset>` and reported in
///   [`recovery_report`](Self::recovery_report); the records before it are all kept.
/// - **Append-only**: one segment file per UTC day of event timestamps (`2026-11-28.jsonl`);
///   an attempt is appended to its event's segment. Nothing is rewritten in place; retention
///   ([`delete_before`](LogStore::delete_before)) deletes whole segments.
/// - **Bounded memory**: bodies and attempts stay on disk; a writer holds 56 bytes per event
///   plus the details of pending deliveries, a reader nothing until it looks events up, and a
///   scan or export one segment's index records at a time. Beside each segment, a binary
///   `.idx` sidecar indexes its lines, so opening and exporting parse no JSON; it is rebuilt
///   from the segment when missing, damaged, or older than the segment (delete it after
///   editing a segment by hand).
/// - **One writer**: a `LOCK` file keeps a second process from opening the directory for
///   writing ([`LogError::Locked`]); [`open_read_only`](Self::open_read_only) reads alongside.
#[derive(Debug)]
pub struct FileLogStore {
    dir: PathBuf,
    /// Built at open for a writer; for a reader, on its first lookup.
    index: OnceLock<Arc<Mutex<Index>>>,
    counters: Arc<Counters>,
    writer: Option<WriterHandle>,
    recovery: RecoveryReport,
}

#[derive(Debug)]
struct WriterHandle {
    requests: Mutex<Option<mpsc::Sender<Request>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Write counters of a [`FileLogStore`]: with group commit, `commits` grows slower than
/// `records` when writers are concurrent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Records (events and attempts) written.
    pub records: u64,
    /// Commits: batches written and fsynced together.
    pub commits: u64,
}

fn io_error(path: &Path, source: std::io::Error) -> LogError {
    LogError::Io {
        path: path.to_owned(),
        source,
    }
}

fn lock_index(index: &Mutex<Index>) -> MutexGuard<'_, Index> {
    // Index updates complete before anything that could panic, so poisoning is harmless.
    index
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FileLogStore {
    /// Opens (creating if needed) the log in `dir` for reading and writing.
    ///
    /// Fails with [`LogError::Locked`] if another process has it open for writing. Repairs a
    /// torn last line left by a crash; see [`recovery_report`](Self::recovery_report).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, LogError> {
        let dir = dir.as_ref().to_owned();
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        let lock = take_lock(&dir)?;
        let (index, recovery) = load(&dir, true)?;
        let index = Arc::new(Mutex::new(index));
        let (sender, receiver) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let writer = Writer::new(dir.clone(), index.clone(), counters.clone(), lock);
        let thread = std::thread::Builder::new()
            .name("fermion-log-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| io_error(&dir, e))?;
        Ok(Self {
            dir,
            index: OnceLock::from(index),
            counters,
            writer: Some(WriterHandle {
                requests: Mutex::new(Some(sender)),
                thread: Mutex::new(Some(thread)),
            }),
            recovery,
        })
    }

    /// Opens the log in `dir` for reading only: no lock is taken and nothing is written, so it
    /// works beside a running writer. Scans and exports read the segments as they are then;
    /// lookups (`get`, `query`) see the log as it was at the first lookup.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Self, LogError> {
        let dir = dir.as_ref().to_owned();
        if !dir.is_dir() {
            return Err(LogError::MissingDirectory { dir });
        }
        let recovery = check(&dir)?;
        Ok(Self {
            dir,
            index: OnceLock::new(),
            counters: Arc::default(),
            writer: None,
            recovery,
        })
    }

    /// What opening the log found and repaired.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// How many records were written in how many commits (each commit is one write and one
    /// fsync per touched segment), since the log was opened.
    pub fn write_stats(&self) -> WriteStats {
        WriteStats {
            records: self.counters.records.load(Ordering::Relaxed),
            commits: self.counters.commits.load(Ordering::Relaxed),
        }
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    async fn send<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T, LogError>>) -> Request,
    ) -> Result<T, LogError> {
        let Some(writer) = &self.writer else {
            return Err(LogError::ReadOnly {
                dir: self.dir.clone(),
            });
        };
        let stopped = || LogError::Poisoned {
            reason: "the log's writer thread has stopped".to_owned(),
        };
        let (reply, answer) = oneshot::channel();
        {
            let requests = writer.requests.lock().unwrap_or_else(|p| p.into_inner());
            let sender = requests.as_ref().ok_or_else(stopped)?;
            sender.send(request(reply)).map_err(|_| stopped())?;
        }
        answer.await.map_err(|_| stopped())?
    }

    /// The index, built now if this is a reader's first lookup.
    fn index(&self) -> Result<MutexGuard<'_, Index>, LogError> {
        if let Some(index) = self.index.get() {
            return Ok(lock_index(index));
        }
        let (index, _) = load(&self.dir, false)?;
        let _ = self.index.set(Arc::new(Mutex::new(index)));
        let index = self.index.get().ok_or_else(|| LogError::Poisoned {
            reason: "the index could not be built".to_owned(),
        })?;
        Ok(lock_index(index))
    }

    /// Reads whole events, their attempts found in the sidecars.
    fn read_all(&self, entries: &[Entry]) -> Result<Vec<StoredEvent>, LogError> {
        // Per day, the sidecar records from the first event asked for to its last attempt.
        let mut by_day: BTreeMap<Day, (u32, u32)> = BTreeMap::new();
        let unsaved: std::collections::HashMap<Day, Arc<Vec<SideRecord>>> = {
            let index = self.index()?;
            entries
                .iter()
                .filter_map(|e| Some((e.day, index.segments.get(&e.day)?.unsaved.clone()?)))
                .collect()
        };
        for entry in entries {
            let span = by_day
                .entry(entry.day)
                .or_insert((entry.record, entry.last_attempt + 1));
            span.0 = span.0.min(entry.record);
            span.1 = span.1.max(entry.last_attempt + 1);
        }
        let mut segments = std::collections::HashMap::new();
        for (day, (from, to)) in by_day {
            let path = self.dir.join(segment_file_name(day));
            let sidecar = sidecar_path(&path);
            let wanted: HashSet<u64> = entries
                .iter()
                .filter(|e| e.day == day)
                .map(|e| e.offset)
                .collect();
            let attempts = match unsaved.get(&day) {
                Some(records) => Ok(attempts_in(
                    records.get(from as usize..to as usize).unwrap_or_default(),
                    &wanted,
                )),
                None => attempts_of(&sidecar, from, to, &wanted),
            };
            match attempts.and_then(|attempts| Ok((attempts, SegmentReader::open(path.clone())?))) {
                Ok(found) => {
                    segments.insert(day, found);
                }
                // Deleted by retention since the index was read: its events are gone.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&sidecar, e)),
            }
        }
        let mut events = Vec::with_capacity(entries.len());
        for entry in entries {
            let Some((attempts, file)) = segments.get_mut(&entry.day) else {
                continue;
            };
            let offsets = attempts.get(&entry.offset).map_or(&[][..], Vec::as_slice);
            let event =
                read_event(file, entry.offset, offsets).map_err(|e| io_error(file.path(), e))?;
            events.push(event);
        }
        Ok(events)
    }

    /// The records of each segment a scan of `filter` reads, one segment at a time.
    fn scan_segments(
        &self,
        filter: &LogFilter,
        full: bool,
        visit: &mut dyn FnMut(Item) -> ControlFlow<()>,
    ) -> Result<u64, LogError> {
        let first = filter.from.map_or(Day::MIN, day_of);
        let last = filter.to.map_or(Day::MAX, day_of);
        // A writer scans what it has committed; a reader, what is on disk now.
        let days: Vec<(Day, Option<(u64, u32)>)> = match (&self.writer, self.index.get()) {
            (Some(_), Some(index)) => lock_index(index)
                .segments
                .range(first..=last)
                .map(|(day, segment)| (*day, Some((segment.len, segment.records))))
                .collect(),
            _ => segment_days(&self.dir)?
                .into_iter()
                .filter(|day| (first..=last).contains(day))
                .map(|day| (day, None))
                .collect(),
        };
        let mut visited = 0;
        for (day, committed) in days {
            let path = self.dir.join(segment_file_name(day));
            let records = match self.segment_records(&path, committed) {
                Ok(records) => records,
                Err(LogError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    continue; // deleted by retention meanwhile
                }
                Err(e) => return Err(e),
            };
            let (count, stop) = scan_segment(&path, &records, filter, full, visit)?;
            visited += count;
            if stop {
                break;
            }
        }
        Ok(visited)
    }

    fn segment_records(
        &self,
        path: &Path,
        committed: Option<(u64, u32)>,
    ) -> Result<Vec<SideRecord>, LogError> {
        if let Some((len, count)) = committed {
            let sidecar = sidecar_path(path);
            let (mut records, _) =
                read_sidecar(&sidecar, len).map_err(|e| io_error(&sidecar, e))?;
            if records.len() >= count as usize {
                records.truncate(count as usize);
                return Ok(records);
            }
        }
        Ok(records::load_segment(&self.dir, path, false)?.records)
    }
}

/// The attempt line offsets among `records` of the events whose lines start at `events`.
fn attempts_in(
    records: &[SideRecord],
    events: &HashSet<u64>,
) -> std::collections::HashMap<u64, Vec<u64>> {
    let mut found: std::collections::HashMap<u64, Vec<u64>> = std::collections::HashMap::new();
    for record in records {
        if record.kind == sidecar::RecordKind::Attempt && events.contains(&record.reference) {
            found
                .entry(record.reference)
                .or_default()
                .push(record.offset);
        }
    }
    found
}

impl Drop for FileLogStore {
    fn drop(&mut self) {
        // Let the writer finish its batch and release the lock before the store is gone, so the
        // directory can be reopened at once.
        if let Some(writer) = &self.writer {
            writer
                .requests
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(thread) = writer
                .thread
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
            {
                let _ = thread.join();
            }
        }
    }
}

#[async_trait]
impl LogStore for FileLogStore {
    async fn append(&self, event: StoredEvent) -> Result<(), LogError> {
        self.send(|reply| Request::Append(Box::new(event), reply))
            .await
    }

    async fn record_attempt(&self, record: AttemptRecord) -> Result<(), LogError> {
        self.send(|reply| Request::Attempt(Box::new(record), reply))
            .await
    }

    async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DueDelivery>, LogError> {
        Ok(self.index()?.due(now, limit))
    }

    async fn get(&self, event_unique_id: &str) -> Result<Option<StoredEvent>, LogError> {
        let entry = {
            let index = self.index()?;
            let Some(entry) = index.slot_of(event_unique_id).and_then(|s| index.entry(s)) else {
                return Ok(None);
            };
            *entry
        };
        // Another id may share the hash of one that is not in the log.
        Ok(self
            .read_all(&[entry])?
            .pop()
            .filter(|event| event.event_unique_id == event_unique_id))
    }

    async fn query(
        &self,
        filter: &LogFilter,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page, LogError> {
        let before = cursor.map(Cursor::position).transpose()?;
        // One extra, to know whether another page follows.
        let mut entries = self
            .index()?
            .newest_first(filter, before, limit.saturating_add(1));
        let more = entries.len() > limit;
        entries.truncate(limit);
        let next_cursor = entries
            .last()
            .filter(|_| more)
            .map(|entry| Cursor::new(entry.position()));
        Ok(Page {
            events: self.read_all(&entries)?,
            next_cursor,
        })
    }

    async fn scan(
        &self,
        filter: &LogFilter,
        visit: &mut (dyn FnMut(StoredEvent) -> ControlFlow<()> + Send),
    ) -> Result<u64, LogError> {
        self.scan_segments(filter, true, &mut |item| match item {
            Item::Full(event) => visit(event),
            Item::Row(_) => ControlFlow::Continue(()),
        })
    }

    async fn scan_rows(
        &self,
        filter: &LogFilter,
        visit: &mut (dyn FnMut(EventRow) -> ControlFlow<()> + Send),
    ) -> Result<u64, LogError> {
        self.scan_segments(filter, false, &mut |item| match item {
            Item::Row(row) => visit(row),
            Item::Full(_) => ControlFlow::Continue(()),
        })
    }

    async fn delete_before(&self, cutoff: DateTime<Utc>) -> Result<u64, LogError> {
        self.send(|reply| Request::DeleteBefore(cutoff, reply))
            .await
    }
}
