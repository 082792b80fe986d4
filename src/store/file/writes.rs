//! The writer thread of `FileLogStore`: every write queued while the last transaction
//! committed goes into the next one (group commit), so durability costs one sync per batch,
//! not per caller. Writes also serialise here, which SQLite requires anyway. It is a thread of
//! its own running rusqlite: its statements run where the connection lives, without a
//! hand-over between threads for each.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, PrepFlags, Statement, params};
use tokio::sync::oneshot;

use super::queue::{Gather, Queue};
use super::{MAX_BATCH, Stats};
use crate::store::record::{
    AttemptRecord, ClaimRequest, ClaimToken, DeliveryState, DueDelivery, StoredEvent,
    aggregate_status,
};
use crate::store::sql::{AttemptColumns, micros};
use crate::store::{Kind, LogError};

mod claims;

use self::claims::{CLAIM, DUE, LIVE_CLAIMS, NEXT_ENDPOINT, claim_due, claim_one};

/// A claim to make: its token and when its lease ends.
pub(super) type NewClaim = (ClaimToken, DateTime<Utc>);

/// One write.
#[derive(Debug)]
pub(super) enum Op {
    /// An event, its pending deliveries to the endpoints named claimed when a claim is given.
    Append(StoredEvent, Option<(NewClaim, Vec<String>)>),
    Attempt(AttemptRecord),
    ClaimDue(ClaimRequest, NewClaim),
    Claim {
        event_unique_id: String,
        endpoint_id: String,
        now: DateTime<Utc>,
        claim: NewClaim,
    },
    Release(ClaimToken),
    /// A document stored: kind, key, owner, JSON.
    Put(Kind, String, Option<String>, String),
    /// A document deleted: kind, key.
    Delete(Kind, String),
    /// Events older than this deleted, with their deliveries and attempts.
    DeleteBefore(DateTime<Utc>),
}

/// What a write answers.
#[derive(Debug)]
pub(super) enum Answer {
    Done,
    Token(Option<ClaimToken>),
    Claimed(Vec<DueDelivery>),
    /// How many rows went.
    Deleted(u64),
}

pub(super) type Reply = oneshot::Sender<Result<Answer, LogError>>;

/// Opens the writer's connection to `path`.
pub(super) fn connect(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "wal")?;
    conn.pragma_update(None, "synchronous", "full")?;
    conn.pragma_update(None, "foreign_keys", "on")?;
    // The tables' CHECKs name the states a row may hold. This connection writes them from
    // `DeliveryState` alone, so it cannot break them; and SQLite checks an `IN` list through a
    // temporary table built for every row written, a fifth of the writer's time. Other
    // connections (someone's own SQL, say) still have them checked.
    conn.pragma_update(None, "ignore_check_constraints", "on")?;
    plan_once(&conn)?;
    // The writer's statements compile against this schema, or the log does not open.
    drop(Hot::prepare(&conn)?);
    Ok(conn)
}

/// Makes `conn`'s query plans independent of bound values (SQLite's query planner stability
/// guarantee). Otherwise a statement whose plan looked at a parameter (to match a partial
/// index's condition, say) is compiled again whenever its parameters are cleared, which the
/// statement cache does each time a statement is put back: a second compilation per statement
/// run, a fifth of the writer's time.
pub(super) fn plan_once(conn: &Connection) -> Result<(), rusqlite::Error> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map(drop)
}

/// The longest a batch waits for its callers after the first arrived. The wait is also never
/// longer than the last commit took: past that, two commits cost less than the wait. A first
/// write that comes later than that after the last commit waits for nobody.
const MAX_GATHER: Duration = Duration::from_millis(2);

/// Takes the writes queued, commits them in one transaction, answers each; returns once the
/// queue is closed and empty.
pub(super) fn run(conn: Connection, queue: Arc<Queue<(Op, Reply)>>, stats: Arc<Stats>) {
    // However the thread ends (a panic included), callers must not wait for ever.
    struct AbandonOnExit(Arc<Queue<(Op, Reply)>>);
    impl Drop for AbandonOnExit {
        fn drop(&mut self) {
            self.0.abandon();
        }
    }
    let queue = AbandonOnExit(queue);
    let mut hot = match Hot::prepare(&conn) {
        Ok(hot) => hot,
        // They compiled when the log opened (`connect`); if they cannot now, every write
        // hears why.
        Err(error) => {
            let mut batch = Vec::new();
            while queue
                .0
                .take(gather(0, Duration::ZERO, Instant::now()), &mut batch)
            {
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(failed("preparing the log's statements", &error)));
                }
            }
            return;
        }
    };
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let (mut answered, mut took, mut finished) = (0, Duration::ZERO, Instant::now());
    while queue.0.take(gather(answered, took, finished), &mut batch) {
        let started = Instant::now();
        let records = batch.len() as u64;
        let mut answers = Vec::with_capacity(batch.len());
        match commit(&mut hot, &mut batch, &mut answers) {
            Ok(()) => {
                stats.records.fetch_add(records, Ordering::Relaxed);
                stats.commits.fetch_add(1, Ordering::Relaxed);
                (answered, took) = (answers.len(), started.elapsed());
                for (reply, answer) in answers {
                    let _ = reply.send(answer);
                }
                finished = Instant::now();
            }
            // Nothing of the batch was committed: every caller hears so.
            Err(error) => {
                let replies = answers
                    .into_iter()
                    .map(|(reply, _)| reply)
                    .chain(batch.drain(..).map(|(_, reply)| reply));
                for reply in replies {
                    let _ = reply.send(Err(failed("committing writes", &error)));
                }
            }
        }
    }
}

/// How to gather the next batch, after a commit that answered `answered` writes, took
/// `last_commit` and ended at `finished`.
fn gather(answered: usize, last_commit: Duration, finished: Instant) -> Gather {
    let wait = last_commit.min(MAX_GATHER);
    Gather {
        // Four in five of the last commit's callers: waiting for every one of them would make
        // the slowest few lengthen every commit. One caller alone waits for nobody.
        want: answered * 4 / 5,
        until: finished + wait,
        wait,
        max: MAX_BATCH,
    }
}

fn failed(what: &str, error: &rusqlite::Error) -> LogError {
    LogError::Database {
        what: what.into(),
        source: error.to_string().into(),
    }
}

/// The statements every event and attempt runs, compiled once for the connection's life.
/// Through the statement cache, each use would hash its SQL to find it and again to put it
/// back: a twelfth of the writer's time. They are marked persistent, as the cache marks its
/// own: otherwise SQLite builds them in the connection's small pool of fast allocations
/// (lookaside), which they would then hold for good, and every cursor of every statement run
/// would be allocated with `malloc` instead.
struct Hot<'c> {
    conn: &'c Connection,
    begin: Statement<'c>,
    commit: Statement<'c>,
    insert_event: Statement<'c>,
    insert_delivery: Statement<'c>,
    locate: Statement<'c>,
    settle_delivery: Statement<'c>,
    insert_attempt: Statement<'c>,
    settle_event: Statement<'c>,
    live_claims: Statement<'c>,
    next_endpoint: Statement<'c>,
    due: Statement<'c>,
    claim: Statement<'c>,
}

impl<'c> Hot<'c> {
    fn prepare(conn: &'c Connection) -> Result<Self, rusqlite::Error> {
        let prepare = |sql| conn.prepare_with_flags(sql, PrepFlags::SQLITE_PREPARE_PERSISTENT);
        Ok(Self {
            conn,
            begin: prepare("BEGIN IMMEDIATE")?,
            commit: prepare("COMMIT")?,
            insert_event: prepare(INSERT_EVENT)?,
            insert_delivery: prepare(INSERT_DELIVERY)?,
            locate: prepare(LOCATE)?,
            settle_delivery: prepare(SETTLE_DELIVERY)?,
            insert_attempt: prepare(INSERT_ATTEMPT)?,
            settle_event: prepare(SETTLE_EVENT)?,
            live_claims: prepare(LIVE_CLAIMS)?,
            next_endpoint: prepare(NEXT_ENDPOINT)?,
            due: prepare(DUE)?,
            claim: prepare(CLAIM)?,
        })
    }
}

/// Applies `batch` in one transaction. A write refused for its own reason (a duplicate id, an
/// unknown delivery, a lost claim) is answered with that error and changes nothing; any other
/// failure rolls back the whole transaction.
fn commit(
    hot: &mut Hot<'_>,
    batch: &mut Vec<(Op, Reply)>,
    answers: &mut Vec<(Reply, Result<Answer, LogError>)>,
) -> Result<(), rusqlite::Error> {
    hot.begin.execute([])?;
    let applied = apply(hot, batch, answers).and_then(|()| hot.commit.execute([]));
    if applied.is_err() && !hot.conn.is_autocommit() {
        // Best effort: if even this fails, the connection's next BEGIN reports it.
        let _ = hot.conn.execute_batch("ROLLBACK");
    }
    applied.map(drop)
}

fn apply(
    hot: &mut Hot<'_>,
    batch: &mut Vec<(Op, Reply)>,
    answers: &mut Vec<(Reply, Result<Answer, LogError>)>,
) -> Result<(), rusqlite::Error> {
    let mut ops = batch.drain(..);
    for (op, reply) in ops.by_ref() {
        match write(hot, op) {
            Ok(answer) => answers.push((reply, answer)),
            // The whole batch fails: `run` tells every caller so, this one and those after it
            // included, rather than dropping their replies.
            Err(error) => {
                answers.push((reply, Err(failed("committing writes", &error))));
                answers.extend(
                    ops.map(|(_, reply)| (reply, Err(failed("committing writes", &error)))),
                );
                return Err(error);
            }
        }
    }
    Ok(())
}

/// Applies one write inside the batch's transaction.
fn write(hot: &mut Hot<'_>, op: Op) -> Outcome {
    let conn = hot.conn;
    Ok(match op {
        Op::Append(event, claim) => insert_event(hot, &event, claim)?,
        Op::Attempt(record) => insert_attempt(hot, &record)?,
        Op::ClaimDue(request, claim) => claim_due(hot, &request, claim)?,
        Op::Claim {
            event_unique_id,
            endpoint_id,
            now,
            claim,
        } => claim_one(hot, &event_unique_id, &endpoint_id, now, claim)?,
        Op::Put(kind, key, owner, body) => {
            conn.prepare_cached(
                "INSERT INTO documents (kind, key, owner, body) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (kind, key) DO UPDATE SET owner = excluded.owner, \
                 body = excluded.body",
            )?
            .execute(params![kind.as_str(), key, owner, body])?;
            Ok(Answer::Done)
        }
        Op::Delete(kind, key) => {
            let deleted = conn
                .prepare_cached("DELETE FROM documents WHERE kind = ? AND key = ?")?
                .execute(params![kind.as_str(), key])?;
            Ok(Answer::Deleted(deleted as u64))
        }
        Op::DeleteBefore(cutoff) => {
            let deleted = conn
                .prepare_cached("DELETE FROM events WHERE timestamp_us < ?")?
                .execute([micros(cutoff)])?;
            Ok(Answer::Deleted(deleted as u64))
        }
        Op::Release(token) => {
            conn.prepare_cached(
                "UPDATE deliveries SET claim_token = NULL, claimed_until_us = NULL \
                 WHERE claim_token = ?",
            )?
            .execute([token.as_str()])?;
            Ok(Answer::Done)
        }
    })
}

type Outcome = Result<Result<Answer, LogError>, rusqlite::Error>;

const INSERT_EVENT: &str = "INSERT INTO events (event_unique_id, timestamp_us, event_type, \
     is_test_event, body, status) VALUES (?, ?, ?, ?, ?, ?) \
     ON CONFLICT (event_unique_id) DO NOTHING";

const INSERT_DELIVERY: &str = "INSERT INTO deliveries (event_seq, position, endpoint_id, url, \
     state, next_attempt_us, claim_token, claimed_until_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";

fn insert_event(
    hot: &mut Hot<'_>,
    event: &StoredEvent,
    claim: Option<(NewClaim, Vec<String>)>,
) -> Outcome {
    let status = aggregate_status(event.deliveries.iter().map(|d| d.state));
    let inserted = hot.insert_event.execute(params![
        event.event_unique_id,
        micros(event.timestamp),
        event.event_type,
        event.is_test_event,
        event.body,
        status.as_str(),
    ])?;
    if inserted == 0 {
        return Ok(Err(LogError::DuplicateEvent {
            id: event.event_unique_id.clone(),
        }));
    }
    let seq = hot.conn.last_insert_rowid();
    let insert = &mut hot.insert_delivery;
    let mut token = None;
    for (position, delivery) in event.deliveries.iter().enumerate() {
        let claimed = claim
            .as_ref()
            .filter(|(_, endpoints)| {
                delivery.state == DeliveryState::Pending
                    && endpoints.contains(&delivery.endpoint_id)
            })
            .map(|(claim, _)| claim);
        if let Some((claimed, _)) = claimed {
            token = Some(claimed.clone());
        }
        insert.execute(params![
            seq,
            position as i64,
            delivery.endpoint_id,
            delivery.url,
            delivery.state.as_str(),
            delivery.next_attempt_at.map(micros),
            claimed.map(|(token, _)| token.as_str()),
            claimed.map(|(_, until)| micros(*until)),
        ])?;
    }
    Ok(Ok(Answer::Token(token)))
}

/// Where a delivery is: its event's row key, its position, and its claim's token and end.
type Located = (i64, i64, Option<String>, Option<i64>);

/// A delivery's row key, position and claim, by its event's id and its endpoint.
const LOCATE: &str = "SELECT d.event_seq, d.position, d.claim_token, d.claimed_until_us \
     FROM deliveries d JOIN events e ON e.seq = d.event_seq \
     WHERE e.event_unique_id = ? AND d.endpoint_id = ?";

/// Where a delivery is, or the error naming what is missing.
fn locate(
    hot: &mut Hot<'_>,
    event_id: &str,
    endpoint_id: &str,
) -> Result<Result<Located, LogError>, rusqlite::Error> {
    let found = hot
        .locate
        .query_row([event_id, endpoint_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()?;
    if let Some(found) = found {
        return Ok(Ok(found));
    }
    let event: Option<i64> = hot
        .conn
        .prepare_cached("SELECT seq FROM events WHERE event_unique_id = ?")?
        .query_row([event_id], |row| row.get(0))
        .optional()?;
    Ok(Err(match event {
        None => LogError::UnknownEvent {
            id: event_id.to_owned(),
        },
        Some(_) => LogError::UnknownDelivery {
            event_id: event_id.to_owned(),
            endpoint_id: endpoint_id.to_owned(),
        },
    }))
}

const SETTLE_DELIVERY: &str = "UPDATE deliveries SET state = ?, next_attempt_us = ?, \
     attempts = attempts + 1, claim_token = NULL, claimed_until_us = NULL \
     WHERE event_seq = ? AND endpoint_id = ?";

const INSERT_ATTEMPT: &str = "INSERT INTO attempts (event_seq, endpoint_id, position, \
     started_us, duration_ms, http_status, response_snippet, error_kind, error_message, \
     attempt_trigger, url) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// An event's attempt count and status, after one of its deliveries was attempted.
const SETTLE_EVENT: &str = "UPDATE events SET attempts = attempts + 1, status = CASE \
     WHEN EXISTS (SELECT 1 FROM deliveries WHERE event_seq = ?1 AND state = 'failed') \
     THEN 'failed' \
     WHEN EXISTS (SELECT 1 FROM deliveries WHERE event_seq = ?1 AND state = 'pending') \
     THEN 'pending' ELSE 'delivered' END WHERE seq = ?1";

fn insert_attempt(hot: &mut Hot<'_>, record: &AttemptRecord) -> Outcome {
    let (seq, position, token, until) =
        match locate(hot, &record.event_unique_id, &record.endpoint_id)? {
            Ok(found) => found,
            Err(error) => return Ok(Err(error)),
        };
    let allowed = match (&record.claim, token) {
        (Some(mine), Some(held)) => mine.as_str() == held,
        (Some(_), None) => false,
        (None, held) => {
            held.is_none() || until.is_none_or(|u| u <= micros(record.attempt.started_at))
        }
    };
    if !allowed {
        return Ok(Err(LogError::ClaimLost {
            event_id: record.event_unique_id.clone(),
            endpoint_id: record.endpoint_id.clone(),
        }));
    }
    let next = match record.state {
        DeliveryState::Pending => record.next_attempt_at.map(micros),
        _ => None,
    };
    hot.settle_delivery.execute(params![
        record.state.as_str(),
        next,
        seq,
        record.endpoint_id
    ])?;
    let columns = AttemptColumns::of(&record.attempt);
    hot.insert_attempt.execute(params![
        seq,
        record.endpoint_id,
        position,
        micros(columns.started_at),
        columns.duration_ms,
        columns.http_status,
        columns.response_snippet,
        columns.error_kind,
        columns.error_message,
        columns.trigger,
        columns.url,
    ])?;
    hot.settle_event.execute([seq])?;
    Ok(Ok(Answer::Done))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_statements_run_again_without_being_compiled_again() {
        let dir = std::env::temp_dir().join(format!("fermion-plan-once-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let path = dir.join("log.sqlite3");
        let schema = Connection::open(&path).expect("a database");
        for migration in [
            include_str!("../../../migrations/sqlite/0001_event_log.sql"),
            include_str!("../../../migrations/sqlite/0002_documents.sql"),
            include_str!("../../../migrations/sqlite/0003_fair_claims.sql"),
            include_str!("../../../migrations/sqlite/0004_due_by_endpoint.sql"),
            include_str!("../../../migrations/sqlite/0005_unsettled_events.sql"),
        ] {
            schema.execute_batch(migration).expect("the schema");
        }
        drop(schema);
        let conn = connect(&path).expect("the writer's connection");
        for _ in 0..3 {
            // The delivery lookup, as readers and the writer's rarer statements run theirs:
            // through the statement cache, which clears a statement's parameters when it is
            // put back. Its plan matches the partial indexes' conditions, which without the
            // stability guarantee recompiles it on each reuse.
            let found = conn
                .prepare_cached(LOCATE)
                .expect("the lookup")
                .query_row(["an-event", "an-endpoint"], |_| Ok(()))
                .optional()
                .expect("a lookup");
            assert!(found.is_none());
        }
        let statement = conn.prepare_cached(LOCATE).expect("the cached lookup");
        assert_eq!(
            statement.get_status(rusqlite::StatementStatus::RePrepare),
            0
        );
        assert!(statement.get_status(rusqlite::StatementStatus::Run) >= 3);
        drop(statement);
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
