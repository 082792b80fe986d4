//! The writer task of `FileLogStore`: every write queued while the last transaction committed
//! goes into the next one (group commit), so durability costs one sync per batch, not per
//! caller. Writes also serialise here, which SQLite requires anyway.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::{MAX_BATCH, Stats};
use crate::store::LogError;
use crate::store::record::aggregate_status;
use crate::store::record::{AttemptRecord, ClaimToken, DeliveryState, DueDelivery, StoredEvent};
use crate::store::sql::{AttemptColumns, from_micros, micros};

/// A claim to make: its token and when its lease ends.
pub(super) type NewClaim = (ClaimToken, DateTime<Utc>);

/// One write.
#[derive(Debug)]
pub(super) enum Op {
    /// An event, its pending deliveries claimed when a claim is given.
    Append(StoredEvent, Option<NewClaim>),
    Attempt(AttemptRecord),
    ClaimDue {
        now: DateTime<Utc>,
        limit: usize,
        claim: NewClaim,
    },
    Claim {
        event_unique_id: String,
        endpoint_id: String,
        now: DateTime<Utc>,
        claim: NewClaim,
    },
    Release(ClaimToken),
}

/// What a write answers.
#[derive(Debug)]
pub(super) enum Answer {
    Done,
    Token(Option<ClaimToken>),
    Claimed(Vec<DueDelivery>),
}

pub(super) type Reply = oneshot::Sender<Result<Answer, LogError>>;

/// Takes every write queued, commits them in one transaction, answers each.
pub(super) async fn run(
    mut conn: SqliteConnection,
    mut queue: mpsc::Receiver<(Op, Reply)>,
    stats: Arc<Stats>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let records = batch.len() as u64;
        let mut answers = Vec::with_capacity(batch.len());
        match commit(&mut conn, &mut batch, &mut answers).await {
            Ok(()) => {
                stats.records.fetch_add(records, Ordering::Relaxed);
                stats.commits.fetch_add(1, Ordering::Relaxed);
                for (reply, answer) in answers {
                    let _ = reply.send(answer);
                }
            }
            // Nothing of the batch was committed: every caller hears so.
            Err(error) => {
                let failed = || LogError::Database {
                    what: "committing writes".into(),
                    source: crate::sender::error_chain(&error).into(),
                };
                let replies = answers
                    .into_iter()
                    .map(|(reply, _)| reply)
                    .chain(batch.drain(..).map(|(_, reply)| reply));
                for reply in replies {
                    let _ = reply.send(Err(failed()));
                }
            }
        }
    }
}

/// Applies `batch` in one transaction. A write refused for its own reason (a duplicate id, an
/// unknown delivery, a lost claim) is answered with that error and changes nothing; any other
/// failure rolls back the whole transaction.
async fn commit(
    conn: &mut SqliteConnection,
    batch: &mut Vec<(Op, Reply)>,
    answers: &mut Vec<(Reply, Result<Answer, LogError>)>,
) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    for (op, reply) in batch.drain(..) {
        let answer = match op {
            Op::Append(event, claim) => insert_event(&mut tx, &event, claim).await?,
            Op::Attempt(record) => insert_attempt(&mut tx, &record).await?,
            Op::ClaimDue { now, limit, claim } => claim_due(&mut tx, now, limit, claim).await?,
            Op::Claim {
                event_unique_id,
                endpoint_id,
                now,
                claim,
            } => claim_one(&mut tx, &event_unique_id, &endpoint_id, now, claim).await?,
            Op::Release(token) => {
                sqlx::query(
                    "UPDATE deliveries SET claim_token = NULL, claimed_until_us = NULL \
                     WHERE claim_token = ?",
                )
                .bind(token.as_str())
                .execute(&mut *tx)
                .await?;
                Ok(Answer::Done)
            }
        };
        answers.push((reply, answer));
    }
    tx.commit().await
}

type Outcome = Result<Result<Answer, LogError>, sqlx::Error>;

async fn insert_event(
    conn: &mut SqliteConnection,
    event: &StoredEvent,
    claim: Option<NewClaim>,
) -> Outcome {
    let status = aggregate_status(event.deliveries.iter().map(|d| d.state));
    let inserted = sqlx::query(
        "INSERT INTO events (event_unique_id, timestamp_us, event_type, is_test_event, body, \
         status) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (event_unique_id) DO NOTHING",
    )
    .bind(&event.event_unique_id)
    .bind(micros(event.timestamp))
    .bind(&event.event_type)
    .bind(event.is_test_event)
    .bind(&event.body)
    .bind(status.as_str())
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(Err(LogError::DuplicateEvent {
            id: event.event_unique_id.clone(),
        }));
    }
    let seq = inserted.last_insert_rowid();
    for (position, delivery) in event.deliveries.iter().enumerate() {
        let claimed = claim
            .as_ref()
            .filter(|_| delivery.state == DeliveryState::Pending);
        sqlx::query(
            "INSERT INTO deliveries (event_seq, position, endpoint_id, url, state, \
             next_attempt_us, claim_token, claimed_until_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(seq)
        .bind(position as i64)
        .bind(&delivery.endpoint_id)
        .bind(&delivery.url)
        .bind(delivery.state.as_str())
        .bind(delivery.next_attempt_at.map(micros))
        .bind(claimed.map(|(token, _)| token.as_str()))
        .bind(claimed.map(|(_, until)| micros(*until)))
        .execute(&mut *conn)
        .await?;
    }
    Ok(Ok(Answer::Token(claim.map(|(token, _)| token))))
}

/// The row key and position of a delivery, with its claim, or the error naming what is
/// missing.
async fn locate(
    conn: &mut SqliteConnection,
    event_id: &str,
    endpoint_id: &str,
) -> Result<Result<(i64, i64, Option<String>, Option<i64>), LogError>, sqlx::Error> {
    let found: Option<(i64, i64, Option<String>, Option<i64>)> = sqlx::query_as(
        "SELECT d.event_seq, d.position, d.claim_token, d.claimed_until_us FROM deliveries d \
         JOIN events e ON e.seq = d.event_seq WHERE e.event_unique_id = ? AND d.endpoint_id = ?",
    )
    .bind(event_id)
    .bind(endpoint_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(found) = found {
        return Ok(Ok(found));
    }
    let event: Option<i64> = sqlx::query_scalar("SELECT seq FROM events WHERE event_unique_id = ?")
        .bind(event_id)
        .fetch_optional(&mut *conn)
        .await?;
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

async fn insert_attempt(conn: &mut SqliteConnection, record: &AttemptRecord) -> Outcome {
    let (seq, position, token, until) =
        match locate(conn, &record.event_unique_id, &record.endpoint_id).await? {
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
    sqlx::query(
        "UPDATE deliveries SET state = ?, next_attempt_us = ?, attempts = attempts + 1, \
         claim_token = NULL, claimed_until_us = NULL WHERE event_seq = ? AND endpoint_id = ?",
    )
    .bind(record.state.as_str())
    .bind(next)
    .bind(seq)
    .bind(&record.endpoint_id)
    .execute(&mut *conn)
    .await?;
    let columns = AttemptColumns::of(&record.attempt);
    sqlx::query(
        "INSERT INTO attempts (event_seq, endpoint_id, position, started_us, duration_ms, \
         http_status, response_snippet, error_kind, error_message, attempt_trigger) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(seq)
    .bind(&record.endpoint_id)
    .bind(position)
    .bind(micros(columns.started_at))
    .bind(columns.duration_ms)
    .bind(columns.http_status)
    .bind(columns.response_snippet)
    .bind(columns.error_kind)
    .bind(columns.error_message)
    .bind(columns.trigger)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE events SET attempts = attempts + 1, status = CASE \
         WHEN EXISTS (SELECT 1 FROM deliveries WHERE event_seq = ?1 AND state = 'failed') \
         THEN 'failed' \
         WHEN EXISTS (SELECT 1 FROM deliveries WHERE event_seq = ?1 AND state = 'pending') \
         THEN 'pending' ELSE 'delivered' END WHERE seq = ?1",
    )
    .bind(seq)
    .execute(&mut *conn)
    .await?;
    Ok(Ok(Answer::Done))
}

async fn claim_due(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
    limit: usize,
    (token, until): NewClaim,
) -> Outcome {
    let rows: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
        "UPDATE deliveries SET claim_token = ?1, claimed_until_us = ?2 \
         WHERE (event_seq, endpoint_id) IN (SELECT event_seq, endpoint_id FROM deliveries \
         WHERE state = 'pending' AND next_attempt_us <= ?3 \
         AND (claimed_until_us IS NULL OR claimed_until_us <= ?3) \
         ORDER BY next_attempt_us, event_seq, position LIMIT ?4) \
         RETURNING (SELECT event_unique_id FROM events WHERE seq = event_seq), endpoint_id, \
         url, next_attempt_us, attempts",
    )
    .bind(token.as_str())
    .bind(micros(until))
    .bind(micros(now))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await?;
    let mut claimed: Vec<DueDelivery> = rows
        .into_iter()
        .map(
            |(event_unique_id, endpoint_id, url, due, attempts)| DueDelivery {
                event_unique_id,
                endpoint_id,
                url,
                next_attempt_at: from_micros(due),
                attempts_made: usize::try_from(attempts).unwrap_or(0),
                claim: token.clone(),
                claimed_until: until,
            },
        )
        .collect();
    // RETURNING gives no order: earliest first, as promised.
    claimed.sort_by_key(|due| due.next_attempt_at);
    Ok(Ok(Answer::Claimed(claimed)))
}

async fn claim_one(
    conn: &mut SqliteConnection,
    event_id: &str,
    endpoint_id: &str,
    now: DateTime<Utc>,
    (token, until): NewClaim,
) -> Outcome {
    let (seq, _, _, held_until) = match locate(conn, event_id, endpoint_id).await? {
        Ok(found) => found,
        Err(error) => return Ok(Err(error)),
    };
    if held_until.is_some_and(|held| held > micros(now)) {
        return Ok(Ok(Answer::Token(None)));
    }
    sqlx::query(
        "UPDATE deliveries SET claim_token = ?, claimed_until_us = ? \
         WHERE event_seq = ? AND endpoint_id = ?",
    )
    .bind(token.as_str())
    .bind(micros(until))
    .bind(seq)
    .bind(endpoint_id)
    .execute(&mut *conn)
    .await?;
    Ok(Ok(Answer::Token(Some(token))))
}
