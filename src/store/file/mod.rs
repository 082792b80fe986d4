//! `FileLogStore`: the event log as JSON Lines files in a directory, durable across crashes.

mod encode;
mod index;
mod read;
mod records;
mod recovery;
mod scan;
mod segment;
mod sidecar;
mod writer;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

use self::index::Index;
use self::recovery::{check, load, take_lock};
use self::scan::Visitor;
use self::writer::{Counters, PreparedAttempt, PreparedEvent, Request, RequestQueue, Writer};

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
/// - **Padded while written**: the segment being appended to runs on past its last line with
///   up to a mebibyte of zero bytes, written ahead so that a commit's fsync rewrites blocks
///   instead of growing the file. The writer cuts them off when it closes the file and the
///   next open cuts off any a crash left, so a segment at rest is plain JSON Lines; readers
///   ([`open_read_only`](Self::open_read_only)) stop at the zeros.
/// - **Bounded memory**: bodies and attempts stay on disk; a writer holds 56 bytes per event
///   plus the details of pending deliveries, a reader nothing until it looks events up, and a
///   scan or export one segment's index records at a time. Beside each segment, a binary
///   `.idx` sidecar indexes its lines, so opening and exporting parse no JSON; it is rebuilt
///   from the segment when missing, damaged, or older than the segment (delete it after
///   editing a segment by hand).
/// - **One writer**: a `LOCK` file keeps a second process from opening the directory for
///   writing ([`LogError::Locked`]); [`open_read_only`](Self::open_read_only) reads alongside.
///
/// ```
/// use fermion_webhooks::store::{Delivery, StoredEvent};
/// use fermion_webhooks::{EventKind, EventPayload, FileLogStore, LogStore, WebhookEvent};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("fermion-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let event = WebhookEvent::new(EventPayload::sample(EventKind::PaidCourseSale));
/// {
///     let log = FileLogStore::open(&dir)?;
///     let delivery = Delivery::pending("crm", "https://crm.example.com/hook", event.timestamp);
///     // Fsynced before `append` returns.
///     log.append(StoredEvent::new(&event, vec![delivery])).await?;
/// }
/// // Another process (the `logs` tool, say) reads beside the writer, or after it.
/// let reader = FileLogStore::open_read_only(&dir)?;
/// assert!(reader.get(&event.event_unique_id).await?.is_some());
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
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
    requests: Arc<RequestQueue>,
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
        let requests = Arc::new(RequestQueue::default());
        let counters = Arc::new(Counters::default());
        let writer = Writer::new(
            dir.clone(),
            index.clone(),
            counters.clone(),
            lock,
            requests.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("fermion-log-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| io_error(&dir, e))?;
        Ok(Self {
            dir,
            index: OnceLock::from(index),
            counters,
            writer: Some(WriterHandle {
                requests,
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
        writer
            .requests
            .push(request(reply))
            .map_err(|_| stopped())?;
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
}

impl Drop for FileLogStore {
    fn drop(&mut self) {
        // Let the writer finish its batch and release the lock before the store is gone, so the
        // directory can be reopened at once.
        if let Some(writer) = &self.writer {
            writer.requests.close();
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
        // Checked and encoded here, in parallel with other callers, not in the writer thread.
        let event = PreparedEvent::new(event)?;
        self.send(|reply| Request::Append(event, reply)).await
    }

    async fn record_attempt(&self, record: AttemptRecord) -> Result<(), LogError> {
        let attempt = PreparedAttempt::new(record);
        self.send(|reply| Request::Attempt(attempt, reply)).await
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
        self.scan_segments(filter, Visitor::Events(visit))
    }

    async fn scan_rows(
        &self,
        filter: &LogFilter,
        visit: &mut (dyn FnMut(EventRow) -> ControlFlow<()> + Send),
    ) -> Result<u64, LogError> {
        self.scan_segments(filter, Visitor::Rows(visit))
    }

    async fn delete_before(&self, cutoff: DateTime<Utc>) -> Result<u64, LogError> {
        self.send(|reply| Request::DeleteBefore(cutoff, reply))
            .await
    }
}
