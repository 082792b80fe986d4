//! `FileLogStore`: the event log in one SQLite database file.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::OptionalExtension;
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
use tokio::sync::oneshot;

use super::query::{Cursor, EventRow, LogFilter, Page, Position};
use super::record::{
    AttemptRecord, ClaimRequest, ClaimToken, Delivery, DueDelivery, EndpointBacklog, EventBody,
    StoredEvent, lease_end,
};
use super::sql::{AttemptColumns, EventTables, assemble, from_micros, micros};
use super::{DeliveryState, Documents, Kind, LogError, LogStore, validate_new_entry};

mod queue;
mod writes;

use self::queue::Queue;
use self::writes::{Answer, Op, Reply};

/// The database file's name inside the log directory.
pub const DATABASE_FILE: &str = "events.sqlite3";

/// The most writes one transaction commits together.
const MAX_BATCH: usize = 512;

/// Write counters of a [`FileLogStore`]: with group commit, `commits` grows slower than
/// `records` when writers are concurrent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Records (events and attempts) written.
    pub records: u64,
    /// Commits: transactions written and synced together.
    pub commits: u64,
}

/// The event log in one SQLite database file (`events.sqlite3` in the log's directory).
///
/// - **Durable**: `append` and `record_attempt` return `Ok` only once their transaction is
///   committed and synced to disk (WAL, `synchronous=FULL`): a `kill -9` or a power cut loses
///   nothing acknowledged. Concurrent writers share commits (group commit): one task writes
///   whatever has queued up in one transaction, so durability does not cost a sync per event.
/// - **Readable by anyone who knows SQL**: the tables are `events` (the exact body, the
///   overall status and attempt count), `deliveries` and `attempts`; see
///   `migrations/sqlite/` in the crate's sources. Several processes may open the same file;
///   SQLite serialises their writes.
/// - **Private**: the directory is created `0700` and the database `0600` on Unix, since it
///   holds customers' names, emails and phone numbers.
/// - **Bounded memory**: everything stays on disk; scans and exports read a page at a time.
///
/// ```
/// use fermion_webhooks::store::{Delivery, StoredEvent};
/// use fermion_webhooks::{EventKind, EventPayload, FileLogStore, LogStore, WebhookEvent};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("fermion-doc-{}", std::process::id()));
/// let event = WebhookEvent::new(EventPayload::sample(EventKind::PaidCourseSale));
/// {
///     let log = FileLogStore::open(&dir).await?;
///     let delivery = Delivery::pending("crm", "https://crm.example.com/hook", event.timestamp);
///     // Committed and synced before `append` returns.
///     log.append(StoredEvent::new(&event, vec![delivery])).await?;
/// }
/// // Another process (the `logs` tool, say) reads beside the writer, or after it.
/// let reader = FileLogStore::open_read_only(&dir).await?;
/// assert!(reader.get(&event.event_unique_id).await?.is_some());
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct FileLogStore {
    path: PathBuf,
    writes: Option<Arc<Queue<(Op, Reply)>>>,
    /// Idle reading connections, used on blocking threads.
    readers: Arc<std::sync::Mutex<Vec<rusqlite::Connection>>>,
    read_only: bool,
    /// The writer thread, joined on drop so that the database is closed (and its write-ahead
    /// log checkpointed) by the time the store is gone.
    writer: Option<std::thread::JoinHandle<()>>,
    stats: Arc<Stats>,
}

impl Drop for FileLogStore {
    fn drop(&mut self) {
        if let Some(writes) = self.writes.take() {
            writes.close();
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

#[derive(Debug, Default)]
struct Stats {
    records: AtomicU64,
    commits: AtomicU64,
}

impl FileLogStore {
    /// Opens (creating if needed) the log in `dir` for reading and writing.
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self, LogError> {
        let dir = dir.as_ref();
        create_private_dir(dir)?;
        Self::open_file(dir.join(DATABASE_FILE)).await
    }

    /// Opens (creating if needed) the log in the database file `path`, for a
    /// `sqlite://PATH` URL.
    pub async fn open_file(path: impl AsRef<Path>) -> Result<Self, LogError> {
        let path = path.as_ref().to_owned();
        create_private_file(&path)?;
        // sqlx only applies the migrations; reads and writes go through rusqlite, whose
        // statements run on the thread that asks (sqlx's SQLite driver hands every statement and
        // row to a worker thread and back, which made a durable emit cost three times more).
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10));
        let mut migrating = SqliteConnection::connect_with(&options)
            .await
            .map_err(|error| database(format!("opening {}", path.display()), error))?;
        sqlx::migrate!("migrations/sqlite")
            .run(&mut migrating)
            .await
            .map_err(|error| database(format!("migrating {}", path.display()), error))?;
        drop(migrating);
        let stats = Arc::new(Stats::default());
        let conn = writes::connect(&path)
            .map_err(|error| database(format!("opening {}", path.display()), error))?;
        let writes = Arc::new(Queue::default());
        let queue = writes.clone();
        let stats_for_writer = stats.clone();
        let writer = std::thread::Builder::new()
            .name("fermion-log-writer".into())
            .spawn(move || writes::run(conn, queue, stats_for_writer))
            .map_err(|source| LogError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            path,
            writes: Some(writes),
            readers: Arc::default(),
            read_only: false,
            writer: Some(writer),
            stats,
        })
    }

    /// Opens the log in `dir` for reading only, beside any running writer.
    pub async fn open_read_only(dir: impl AsRef<Path>) -> Result<Self, LogError> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(LogError::MissingDirectory {
                dir: dir.to_owned(),
            });
        }
        let path = dir.join(DATABASE_FILE);
        if !path.is_file() {
            return Err(LogError::MissingDirectory {
                dir: dir.to_owned(),
            });
        }
        Ok(Self {
            path,
            writes: None,
            readers: Arc::default(),
            read_only: true,
            writer: None,
            stats: Arc::default(),
        })
    }

    /// How many records were written in how many commits since the log was opened.
    pub fn write_stats(&self) -> WriteStats {
        WriteStats {
            records: self.stats.records.load(Ordering::Relaxed),
            commits: self.stats.commits.load(Ordering::Relaxed),
        }
    }

    /// Closes the log: waits for queued writes, then closes every connection, so that the
    /// files are complete and settled when it returns (dropping the store closes it too, but
    /// blocks the thread that drops it while the writer finishes).
    pub async fn close(mut self) {
        if let Some(writes) = self.writes.take() {
            writes.close();
        }
        if let Some(writer) = self.writer.take() {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
        if let Ok(mut idle) = self.readers.lock() {
            idle.clear();
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An idle reading connection, or a new one.
    fn read_connection(&self) -> Result<rusqlite::Connection, LogError> {
        if let Some(conn) = self.readers.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(conn);
        }
        use rusqlite::OpenFlags;
        let flags = if self.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let conn = rusqlite::Connection::open_with_flags(&self.path, flags)
            .map_err(|error| database(format!("opening {}", self.path.display()), error))?;
        let _ = conn.busy_timeout(Duration::from_secs(10));
        writes::plan_once(&conn)
            .map_err(|error| database(format!("opening {}", self.path.display()), error))?;
        Ok(conn)
    }

    /// Runs `read` on a reading connection, on a blocking thread; `what` names it in an error.
    async fn read<T: Send + 'static>(
        &self,
        what: impl Into<String>,
        read: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, LogError> {
        let conn = self.read_connection()?;
        let readers = self.readers.clone();
        let done = tokio::task::spawn_blocking(move || {
            let result = read(&conn);
            if let Ok(mut idle) = readers.lock() {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|error| LogError::Corrupt {
            reason: error.to_string(),
        })?;
        done.map_err(|error| database(what.into(), error))
    }

    /// Has the writer task apply `op`, in the next transaction it commits.
    async fn write(&self, op: Op) -> Result<Answer, LogError> {
        let Some(writes) = &self.writes else {
            return Err(LogError::ReadOnly {
                dir: self.path.clone(),
            });
        };
        let (reply, answer) = oneshot::channel();
        let stopped = || LogError::Corrupt {
            reason: "the log's writer stopped".into(),
        };
        writes.push((op, reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// An error of the database while doing `what`.
fn database(what: String, error: impl std::error::Error + Send + Sync + 'static) -> LogError {
    LogError::Database {
        what,
        source: Box::new(error),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), LogError> {
    let io = |source| LogError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io)
}

/// Creates the database file readable by its owner only (SQLite gives its WAL files the same
/// permissions); an existing file is left as it is.
fn create_private_file(path: &Path) -> Result<(), LogError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop).map_err(|source| LogError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The columns of `events` a list or export reads, and how `last_response_status` is found:
/// the HTTP status of the latest attempt that got one (the later delivery, then the later
/// attempt, on a tie).
const ROW_COLUMNS: &str = "e.seq, e.event_unique_id, e.event_type, e.timestamp_us, \
     e.is_test_event, e.status, e.attempts, e.body, (SELECT a.http_status FROM attempts a \
     WHERE a.event_seq = e.seq AND a.http_status IS NOT NULL \
     ORDER BY a.started_us DESC, a.position DESC, a.id DESC LIMIT 1) AS last_status";

/// The condition on `e.status` that keeps events of one overall status. Written out, not
/// bound: SQLite's planner then sees that pending and failed events are in the index of unsettled
/// events, which leaves out delivered ones (found through the time index instead).
fn status_condition(status: DeliveryState) -> &'static str {
    match status {
        DeliveryState::Pending => "e.status = 'pending' AND e.status <> 'delivered'",
        DeliveryState::Failed => "e.status = 'failed' AND e.status <> 'delivered'",
        DeliveryState::Delivered => "e.status = 'delivered'",
    }
}

/// The query for the rows matching `filter` past `after`, oldest first when `oldest` and newest
/// first otherwise, and its parameters.
fn rows_query(
    filter: &LogFilter,
    after: Option<Position>,
    oldest: bool,
    limit: usize,
) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut sql = format!("SELECT {ROW_COLUMNS} FROM events e WHERE 1 = 1");
    let mut params: Vec<Value> = Vec::new();
    if let Some(from) = filter.from {
        sql.push_str(" AND e.timestamp_us >= ?");
        params.push(Value::Integer(micros(from)));
    }
    if let Some(to) = filter.to {
        sql.push_str(" AND e.timestamp_us < ?");
        params.push(Value::Integer(micros(to)));
    }
    if !filter.kinds.is_empty() {
        let marks = vec!["?"; filter.kinds.len()].join(", ");
        sql.push_str(&format!(" AND e.event_type IN ({marks})"));
        params.extend(
            filter
                .kinds
                .iter()
                .map(|k| Value::Text(k.as_str().to_owned())),
        );
    }
    if let Some(status) = filter.status {
        sql.push_str(" AND ");
        sql.push_str(status_condition(status));
    }
    if let Some(test) = filter.is_test_event {
        sql.push_str(" AND e.is_test_event = ?");
        params.push(Value::Integer(i64::from(test)));
    }
    if !filter.endpoints.is_empty() {
        let marks = vec!["?"; filter.endpoints.len()].join(", ");
        sql.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM deliveries d WHERE d.event_seq = e.seq \
             AND d.endpoint_id IN ({marks}))"
        ));
        params.extend(filter.endpoints.iter().map(|id| Value::Text(id.clone())));
    }
    if let Some(position) = after {
        let op = if oldest { ">" } else { "<" };
        sql.push_str(&format!(" AND (e.timestamp_us, e.seq) {op} (?, ?)"));
        params.push(Value::Integer(position.micros));
        params.push(Value::Integer(
            i64::try_from(position.seq).unwrap_or(i64::MAX),
        ));
    }
    let order = if oldest { "ASC" } else { "DESC" };
    sql.push_str(&format!(
        " ORDER BY e.timestamp_us {order}, e.seq {order} LIMIT ?"
    ));
    params.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
    (sql, params)
}

/// A column's text as the enum it names, or the conversion error that reports it.
fn parse_column<T: std::str::FromStr<Err = String>>(
    column: usize,
    text: &str,
) -> rusqlite::Result<T> {
    text.parse().map_err(|reason: String| {
        rusqlite::Error::FromSqlConversionFailure(
            column,
            rusqlite::types::Type::Text,
            reason.into(),
        )
    })
}

/// Runs a rows query on `conn`.
fn read_rows(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[rusqlite::types::Value],
) -> Result<Vec<(i64, EventRow)>, rusqlite::Error> {
    let mut statement = conn.prepare_cached(sql)?;
    let rows = statement.query_map(rusqlite::params_from_iter(params), |row| {
        let status: String = row.get("status")?;
        let last: Option<i64> = row.get("last_status")?;
        let attempts: i64 = row.get("attempts")?;
        Ok((
            row.get("seq")?,
            EventRow {
                event_unique_id: row.get("event_unique_id")?,
                event_type: row.get("event_type")?,
                timestamp: from_micros(row.get("timestamp_us")?),
                is_test_event: row.get("is_test_event")?,
                status: parse_column(4, &status)?,
                attempts: usize::try_from(attempts).unwrap_or(0),
                last_response_status: last.and_then(|s| u16::try_from(s).ok()),
                body: row.get("body")?,
            },
        ))
    })?;
    rows.collect()
}

#[async_trait]
impl EventTables for FileLogStore {
    /// The rows matching `filter` after `after`, `limit` at most, oldest first when `oldest`.
    /// Read through rusqlite on a blocking thread: sqlx's SQLite driver hands rows over from
    /// its worker thread one at a time, which capped an export at a third of its target.
    async fn rows(
        &self,
        filter: &LogFilter,
        after: Option<Position>,
        oldest: bool,
        limit: usize,
    ) -> Result<Vec<(i64, EventRow)>, LogError> {
        let (sql, params) = rows_query(filter, after, oldest, limit);
        self.read("reading events", move |conn| read_rows(conn, &sql, &params))
            .await
    }

    /// Whole events for `rows`, in their order.
    async fn whole(&self, rows: Vec<(i64, EventRow)>) -> Result<Vec<StoredEvent>, LogError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let list = rows
            .iter()
            .map(|(key, _)| key.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let (deliveries, attempts) = self
            .read("reading deliveries and attempts", move |conn| {
                let deliveries = conn
                    .prepare(&format!(
                        "SELECT event_seq, endpoint_id, url, state, next_attempt_us \
                         FROM deliveries WHERE event_seq IN ({list}) \
                         ORDER BY event_seq, position"
                    ))?
                    .query_map([], |row| {
                        let state: String = row.get(3)?;
                        let next: Option<i64> = row.get(4)?;
                        Ok((
                            row.get(0)?,
                            Delivery {
                                endpoint_id: row.get(1)?,
                                url: row.get(2)?,
                                state: parse_column(3, &state)?,
                                next_attempt_at: next.map(from_micros),
                                attempts: Vec::new(),
                            },
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<(i64, Delivery)>>>()?;
                let attempts = conn
                    .prepare(&format!(
                        "SELECT event_seq, endpoint_id, started_us, duration_ms, http_status, \
                         response_snippet, error_kind, error_message, attempt_trigger, url \
                         FROM attempts WHERE event_seq IN ({list}) ORDER BY event_seq, id"
                    ))?
                    .query_map([], |row| {
                        let columns = AttemptColumns {
                            started_at: from_micros(row.get(2)?),
                            duration_ms: row.get(3)?,
                            http_status: row.get(4)?,
                            response_snippet: row.get(5)?,
                            error_kind: row.get(6)?,
                            error_message: row.get(7)?,
                            trigger: row.get(8)?,
                            url: row.get(9)?,
                        };
                        Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, columns))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok((deliveries, attempts))
            })
            .await?;
        let attempts = attempts
            .into_iter()
            .map(|(key, endpoint, columns)| Ok((key, endpoint, columns.into_attempt()?)))
            .collect::<Result<Vec<_>, LogError>>()?;
        let events = rows
            .into_iter()
            .map(|(key, row)| (key, row.into_event()))
            .collect();
        Ok(assemble(events, deliveries, attempts))
    }
}

#[async_trait]
impl LogStore for FileLogStore {
    async fn append(&self, event: StoredEvent) -> Result<(), LogError> {
        validate_new_entry(&event)?;
        self.write(Op::Append(event, None)).await.map(drop)
    }

    async fn append_claimed(
        &self,
        event: StoredEvent,
        now: DateTime<Utc>,
        lease: Duration,
        endpoint_ids: &[&str],
    ) -> Result<Option<ClaimToken>, LogError> {
        validate_new_entry(&event)?;
        let claim = (ClaimToken::new(), lease_end(now, lease));
        let endpoints = endpoint_ids.iter().map(|id| (*id).to_owned()).collect();
        match self
            .write(Op::Append(event, Some((claim, endpoints))))
            .await?
        {
            Answer::Token(token) => Ok(token),
            _ => Ok(None),
        }
    }

    async fn claim_due(&self, request: &ClaimRequest) -> Result<Vec<DueDelivery>, LogError> {
        let claim = (ClaimToken::new(), lease_end(request.now, request.lease));
        match self.write(Op::ClaimDue(request.clone(), claim)).await? {
            Answer::Claimed(due) => Ok(due),
            _ => Ok(Vec::new()),
        }
    }

    async fn backlog(&self) -> Result<Vec<EndpointBacklog>, LogError> {
        self.read("reading the backlog", |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT d.endpoint_id, count(*), min(e.timestamp_us) FROM deliveries d \
                 JOIN events e ON e.seq = d.event_seq WHERE d.state = 'pending' \
                 GROUP BY d.endpoint_id ORDER BY d.endpoint_id",
            )?;
            let rows = statement.query_map([], |row| {
                Ok(EndpointBacklog {
                    endpoint_id: row.get(0)?,
                    pending: row.get::<_, i64>(1)?.try_into().unwrap_or(0),
                    oldest: from_micros(row.get(2)?),
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn claim(
        &self,
        event_unique_id: &str,
        endpoint_id: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<ClaimToken>, LogError> {
        let op = Op::Claim {
            event_unique_id: event_unique_id.to_owned(),
            endpoint_id: endpoint_id.to_owned(),
            now,
            claim: (ClaimToken::new(), lease_end(now, lease)),
        };
        match self.write(op).await? {
            Answer::Token(token) => Ok(token),
            _ => Ok(None),
        }
    }

    async fn release(&self, token: &ClaimToken) -> Result<(), LogError> {
        self.write(Op::Release(token.clone())).await.map(drop)
    }

    async fn record_attempt(&self, record: AttemptRecord) -> Result<(), LogError> {
        self.write(Op::Attempt(record)).await.map(drop)
    }

    async fn get(&self, event_unique_id: &str) -> Result<Option<StoredEvent>, LogError> {
        let sql = format!("SELECT {ROW_COLUMNS} FROM events e WHERE e.event_unique_id = ?");
        let id = rusqlite::types::Value::Text(event_unique_id.to_owned());
        let rows = self
            .read(format!("reading event {event_unique_id}"), move |conn| {
                read_rows(conn, &sql, &[id])
            })
            .await?;
        Ok(self.whole(rows).await?.pop())
    }

    async fn bodies(&self, event_unique_ids: &[&str]) -> Result<Vec<EventBody>, LogError> {
        let ids: Vec<String> = super::distinct(event_unique_ids)
            .into_iter()
            .map(str::to_owned)
            .collect();
        self.read("reading the bodies of claimed events", move |conn| {
            let mut select = conn.prepare_cached(
                "SELECT body, is_test_event FROM events WHERE event_unique_id = ?",
            )?;
            let mut bodies = Vec::with_capacity(ids.len());
            for event_unique_id in ids {
                let found = select
                    .query_row([&event_unique_id], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()?;
                if let Some((body, is_test_event)) = found {
                    bodies.push(EventBody {
                        event_unique_id,
                        body,
                        is_test_event,
                    });
                }
            }
            Ok(bodies)
        })
        .await
    }

    async fn query(
        &self,
        filter: &LogFilter,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page, LogError> {
        self.page(filter, cursor, limit).await
    }

    async fn scan(
        &self,
        filter: &LogFilter,
        visit: &mut (dyn FnMut(StoredEvent) -> ControlFlow<()> + Send),
    ) -> Result<u64, LogError> {
        self.scan_events(filter, visit).await
    }

    async fn scan_rows(
        &self,
        filter: &LogFilter,
        visit: &mut (dyn FnMut(EventRow) -> ControlFlow<()> + Send),
    ) -> Result<u64, LogError> {
        self.scan_event_rows(filter, visit).await
    }

    async fn delete_before(&self, cutoff: DateTime<Utc>) -> Result<u64, LogError> {
        match self.write(Op::DeleteBefore(cutoff)).await? {
            Answer::Deleted(deleted) => Ok(deleted),
            _ => Ok(0),
        }
    }
}

#[async_trait]
impl Documents for FileLogStore {
    async fn put(
        &self,
        kind: Kind,
        key: &str,
        owner: Option<&str>,
        body: String,
    ) -> Result<(), LogError> {
        let op = Op::Put(kind, key.to_owned(), owner.map(str::to_owned), body);
        self.write(op).await.map(drop)
    }

    async fn get(&self, kind: Kind, key: &str) -> Result<Option<String>, LogError> {
        let key = key.to_owned();
        self.read(format!("reading {} {key}", kind.as_str()), move |conn| {
            conn.prepare_cached("SELECT body FROM documents WHERE kind = ? AND key = ?")?
                .query_row([kind.as_str(), key.as_str()], |row| row.get(0))
                .optional()
        })
        .await
    }

    async fn list(&self, kind: Kind, owner: Option<&str>) -> Result<Vec<String>, LogError> {
        let owner = owner.map(str::to_owned);
        self.read(format!("listing {}s", kind.as_str()), move |conn| {
            conn.prepare_cached(
                "SELECT body FROM documents WHERE kind = ?1 AND (?2 IS NULL OR owner = ?2) \
                 ORDER BY key",
            )?
            .query_map(rusqlite::params![kind.as_str(), owner], |row| row.get(0))?
            .collect()
        })
        .await
    }

    async fn delete(&self, kind: Kind, key: &str) -> Result<bool, LogError> {
        match self.write(Op::Delete(kind, key.to_owned())).await? {
            Answer::Deleted(deleted) => Ok(deleted > 0),
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::DeliveryState;

    /// The steps of the plan SQLite picks for the rows matching `filter`, outside the
    /// subquery of each row's latest response.
    async fn plan(filter: LogFilter) -> String {
        let dir = std::env::temp_dir().join(format!(
            "fermion-plan-{}-{:?}",
            std::process::id(),
            filter.status
        ));
        let store = FileLogStore::open(&dir).await.expect("a log");
        let (sql, params) = rows_query(&filter, None, false, 50);
        let conn = rusqlite::Connection::open(dir.join(DATABASE_FILE)).expect("a connection");
        let steps: Vec<(i64, String)> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("the plan")
            .query_map(rusqlite::params_from_iter(params), |row| {
                Ok((row.get(1)?, row.get(3)?))
            })
            .expect("its steps")
            .collect::<Result<_, _>>()
            .expect("readable steps");
        let top: Vec<String> = steps
            .into_iter()
            .filter(|(parent, _)| *parent == 0)
            .map(|(_, step)| step)
            .collect();
        drop((conn, store));
        let _ = std::fs::remove_dir_all(&dir);
        top.join("\n")
    }

    #[tokio::test]
    async fn pending_and_failed_events_are_found_through_the_index_of_unsettled_ones() {
        for status in [DeliveryState::Pending, DeliveryState::Failed] {
            let plan = plan(LogFilter::default().status(status)).await;
            assert!(plan.contains("USING INDEX events_unsettled"), "{plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        }
        let plan = plan(LogFilter::default().status(DeliveryState::Delivered)).await;
        assert!(plan.contains("USING INDEX events_by_time"), "{plan}");
    }
}
