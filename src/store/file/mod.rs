//! `FileLogStore`: the event log as JSON Lines files in a directory, durable across crashes.

mod index;
mod recovery;
mod segment;
mod writer;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use self::index::{EventLocation, Index};
use self::recovery::{load, take_lock};
use self::segment::{Day, SegmentReader, read_event, segment_file_name};
use self::writer::{Counters, Request, Writer};

pub use self::recovery::{DamagedLine, RecoveryReport, TornTail};
use super::query::{Cursor, LogFilter, Page};
use super::record::{AttemptRecord, DueDelivery, StoredEvent};
use super::{LogError, LogStore};

/// Events read from disk per index lookup while scanning.
const SCAN_CHUNK: usize = 512;

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
/// - **Bounded memory**: bodies stay on disk; memory holds a small index entry per event.
///   Time-range queries and exports read only the segments of their days.
/// - **One writer**: a `LOCK` file keeps a second process from opening the directory for
///   writing ([`LogError::Locked`]); [`open_read_only`](Self::open_read_only) reads alongside.
#[derive(Debug)]
pub struct FileLogStore {
    dir: PathBuf,
    index: Arc<Mutex<Index>>,
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
            index,
            counters,
            writer: Some(WriterHandle {
                requests: Mutex::new(Some(sender)),
                thread: Mutex::new(Some(thread)),
            }),
            recovery,
        })
    }

    /// Opens the log in `dir` for reading only: no lock is taken and nothing is written, so it
    /// works beside a running writer (seeing the log as it was when opened).
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Self, LogError> {
        let dir = dir.as_ref().to_owned();
        if !dir.is_dir() {
            return Err(LogError::MissingDirectory { dir });
        }
        let (index, recovery) = load(&dir, false)?;
        Ok(Self {
            dir,
            index: Arc::new(Mutex::new(index)),
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

    /// Reads events at these locations, keeping segment files open across reads.
    fn read_all(&self, locations: &[EventLocation]) -> Result<Vec<StoredEvent>, LogError> {
        let mut files: HashMap<Day, SegmentReader> = HashMap::new();
        let mut events = Vec::with_capacity(locations.len());
        for location in locations {
            let file = match files.entry(location.day) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => {
                    let path = self.dir.join(segment_file_name(location.day));
                    match SegmentReader::open(path.clone()) {
                        Ok(reader) => entry.insert(reader),
                        // Deleted by retention since the index was read: the event is gone.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(io_error(&path, e)),
                    }
                }
            };
            let event = read_event(file, location.offset, &location.attempt_offsets)
                .map_err(|e| io_error(file.path(), e))?;
            events.push(event);
        }
        Ok(events)
    }
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
        Ok(lock_index(&self.index).due(now, limit))
    }

    async fn get(&self, event_unique_id: &str) -> Result<Option<StoredEvent>, LogError> {
        let Some(location) = lock_index(&self.index).location(event_unique_id) else {
            return Ok(None);
        };
        Ok(self.read_all(&[location])?.pop())
    }

    async fn query(
        &self,
        filter: &LogFilter,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page, LogError> {
        let before = cursor.map(Cursor::position).transpose()?;
        // One extra, to know whether another page follows.
        let mut locations =
            lock_index(&self.index).newest_first(filter, before, limit.saturating_add(1));
        let more = locations.len() > limit;
        locations.truncate(limit);
        let next_cursor = locations
            .last()
            .filter(|_| more)
            .map(|location| Cursor::new(location.position));
        Ok(Page {
            events: self.read_all(&locations)?,
            next_cursor,
        })
    }

    async fn scan(
        &self,
        filter: &LogFilter,
        visit: &mut (dyn FnMut(StoredEvent) -> ControlFlow<()> + Send),
    ) -> Result<u64, LogError> {
        let mut after = None;
        let mut visited = 0;
        loop {
            let locations = lock_index(&self.index).oldest_first(filter, after, SCAN_CHUNK);
            let Some(last) = locations.last() else {
                return Ok(visited);
            };
            after = Some(last.position);
            for event in self.read_all(&locations)? {
                visited += 1;
                if visit(event).is_break() {
                    return Ok(visited);
                }
            }
        }
    }

    async fn delete_before(&self, cutoff: DateTime<Utc>) -> Result<u64, LogError> {
        self.send(|reply| Request::DeleteBefore(cutoff, reply))
            .await
    }
}
