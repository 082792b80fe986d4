//! The writes every event makes in `PostgresLogStore`, its append and its attempts, each
//! grouped with the others of its kind waiting (see `Group`): one statement and one commit for
//! a batch. A batch the server refuses is written again one write at a time, so one it cannot
//! store fails alone.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgPool;

use crate::store::record::{AttemptRecord, ClaimToken, StoredEvent, aggregate_status};
use crate::store::sql::AttemptColumns;
use crate::store::{DeliveryState, LogError};

/// An event to append, with the end of the claim on each of its deliveries that is claimed.
pub(super) struct NewEntry {
    pub(super) event: StoredEvent,
    pub(super) claimed_until: Vec<Option<DateTime<Utc>>>,
    pub(super) token: Option<ClaimToken>,
}

/// Appends `batch` in one statement, so one transaction: each event with its deliveries, and
/// its status row while it is not delivered. An id already in the log, or earlier in the
/// batch, is refused as a duplicate.
pub(super) async fn append_batch(
    pool: PgPool,
    batch: Vec<NewEntry>,
) -> Vec<Result<Option<ClaimToken>, LogError>> {
    let mut ids = HashSet::with_capacity(batch.len());
    let first: Vec<bool> = batch
        .iter()
        .map(|entry| ids.insert(entry.event.event_unique_id.as_str()))
        .collect();
    let firsts: Vec<&NewEntry> = batch
        .iter()
        .zip(&first)
        .filter(|(_, f)| **f)
        .map(|(e, _)| e)
        .collect();
    let written = together_or_alone(&pool, &firsts).await;
    let mut written = written.into_iter();
    batch
        .into_iter()
        .zip(first)
        .map(|(entry, first)| {
            let outcome = if first { written.next() } else { None };
            match outcome {
                Some(Ok(true)) => Ok(entry.token),
                Some(Err(error)) => Err(LogError::Database {
                    what: format!("appending event {}", entry.event.event_unique_id),
                    source: error.into(),
                }),
                Some(Ok(false)) | None => Err(LogError::DuplicateEvent {
                    id: entry.event.event_unique_id,
                }),
            }
        })
        .collect()
}

/// A kind of write of which many go in one statement.
trait Write: Sized + Sync {
    /// Writes `writes` in one statement; for each, whether it took effect.
    async fn write(pool: &PgPool, writes: &[&Self]) -> Result<Vec<bool>, sqlx::Error>;
}

/// Per write: whether it took effect, or why the server refused it. `writes` go in one
/// statement; if the server refuses it, nothing of it was written, and each goes alone, so a
/// write it cannot take (text with a NUL byte, a deadlock's victim) fails alone.
async fn together_or_alone<W: Write>(pool: &PgPool, writes: &[&W]) -> Vec<Result<bool, String>> {
    match W::write(pool, writes).await {
        Ok(done) => done.into_iter().map(Ok).collect(),
        Err(sqlx::Error::Database(_)) if writes.len() > 1 => {
            let mut each = Vec::with_capacity(writes.len());
            for one in writes {
                let alone = W::write(pool, std::slice::from_ref(one)).await;
                each.push(
                    alone
                        .map(|done| done.first() == Some(&true))
                        .map_err(|e| e.to_string()),
                );
            }
            each
        }
        Err(error) => vec![Err(error.to_string()); writes.len()],
    }
}

/// An append takes effect when its event is new; the events of one statement have distinct ids.
impl Write for NewEntry {
    async fn write(pool: &PgPool, entries: &[&Self]) -> Result<Vec<bool>, sqlx::Error> {
        let events = || entries.iter().map(|entry| &entry.event);
        let deliveries = || {
            entries.iter().flat_map(|entry| {
                let token = entry.token.as_ref().map(ClaimToken::as_str);
                entry
                    .event
                    .deliveries
                    .iter()
                    .zip(&entry.claimed_until)
                    .enumerate()
                    .map(move |(position, (delivery, until))| {
                        (&entry.event, position, delivery, until.and(token), *until)
                    })
            })
        };
        let count = |event: &StoredEvent, state| {
            let deliveries = event.deliveries.iter().filter(|d| d.state == state).count();
            i32::try_from(deliveries).unwrap_or(i32::MAX)
        };
        let ids: Vec<String> = sqlx::query_scalar(
            "WITH event AS (INSERT INTO fermion_events (event_unique_id, timestamp, event_type, \
         is_test_event, body, status, pending_deliveries, failed_deliveries) \
         SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], $4::bool[], \
         $5::text[], $6::text[], $7::int[], $8::int[]) \
         ON CONFLICT (event_unique_id) DO NOTHING \
         RETURNING seq, event_unique_id, status, timestamp), \
         deliveries AS (INSERT INTO fermion_deliveries (event_seq, position, endpoint_id, url, \
         state, next_attempt_at, claim_token, claimed_until) \
         SELECT event.seq, d.position, d.endpoint_id, d.url, d.state, d.next_attempt_at, \
         d.claim_token, d.claimed_until \
         FROM UNNEST($9::text[], $10::int[], $11::text[], $12::text[], $13::text[], \
         $14::timestamptz[], $15::text[], $16::timestamptz[]) AS d(event_unique_id, position, \
         endpoint_id, url, state, next_attempt_at, claim_token, claimed_until) \
         JOIN event USING (event_unique_id)), \
         unsettled AS (INSERT INTO fermion_unsettled_events (seq, status, timestamp) \
         SELECT seq, status, timestamp FROM event WHERE status <> 'delivered') \
         SELECT event_unique_id FROM event",
        )
        .bind(
            events()
                .map(|e| e.event_unique_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(events().map(|e| e.timestamp).collect::<Vec<_>>())
        .bind(events().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
        .bind(events().map(|e| e.is_test_event).collect::<Vec<_>>())
        .bind(events().map(|e| e.body.as_str()).collect::<Vec<_>>())
        .bind(
            events()
                .map(|e| aggregate_status(e.deliveries.iter().map(|d| d.state)).as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            events()
                .map(|e| count(e, DeliveryState::Pending))
                .collect::<Vec<_>>(),
        )
        .bind(
            events()
                .map(|e| count(e, DeliveryState::Failed))
                .collect::<Vec<_>>(),
        )
        .bind(
            deliveries()
                .map(|(e, ..)| e.event_unique_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(deliveries().map(|(_, p, ..)| p as i32).collect::<Vec<_>>())
        .bind(
            deliveries()
                .map(|(_, _, d, ..)| d.endpoint_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            deliveries()
                .map(|(_, _, d, ..)| d.url.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            deliveries()
                .map(|(_, _, d, ..)| d.state.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            deliveries()
                .map(|(_, _, d, ..)| d.next_attempt_at)
                .collect::<Vec<_>>(),
        )
        .bind(deliveries().map(|(.., token, _)| token).collect::<Vec<_>>())
        .bind(deliveries().map(|(.., until)| until).collect::<Vec<_>>())
        .fetch_all(pool)
        .await?;
        let new: HashSet<String> = ids.into_iter().collect();
        Ok(entries
            .iter()
            .map(|entry| new.contains(&entry.event.event_unique_id))
            .collect())
    }
}

/// Records `batch`, each attempt with its delivery's new state and its event's status, in as
/// few statements as there are attempts of one delivery (one statement updates a row once).
pub(super) async fn record_batch(
    pool: PgPool,
    batch: Vec<AttemptRecord>,
) -> Vec<Result<(), LogError>> {
    // Per record: whether it was applied, or why the server refused it.
    let mut applied: Vec<Result<bool, String>> = vec![Ok(false); batch.len()];
    let mut rest: Vec<usize> = (0..batch.len()).collect();
    while !rest.is_empty() {
        let mut deliveries = HashSet::with_capacity(rest.len());
        let (now, later): (Vec<usize>, Vec<usize>) = rest
            .iter()
            .partition(|&&i| deliveries.insert((&batch[i].event_unique_id, &batch[i].endpoint_id)));
        let records: Vec<&AttemptRecord> = now.iter().map(|&i| &batch[i]).collect();
        let written = together_or_alone(&pool, &records);
        for (&i, written) in now.iter().zip(written.await) {
            applied[i] = written;
        }
        rest = later;
    }
    let mut answers = Vec::with_capacity(batch.len());
    for (record, applied) in batch.into_iter().zip(applied) {
        answers.push(match applied {
            Ok(true) => Ok(()),
            Err(error) => Err(LogError::Database {
                what: format!("recording an attempt of {}", record.event_unique_id),
                source: error.into(),
            }),
            // Nothing recorded: the delivery is missing, or its claim was lost.
            Ok(false) => match locate(&pool, &record.event_unique_id, &record.endpoint_id).await {
                Ok(()) => Err(LogError::ClaimLost {
                    event_id: record.event_unique_id,
                    endpoint_id: record.endpoint_id,
                }),
                Err(error) => Err(error),
            },
        });
    }
    answers
}

/// Applies `records` (to distinct deliveries) in one statement; for each, whether it was
/// applied.
///
/// A delivery is updated only under the claim presented or, with none, when no live claim
/// holds it; if another attempt commits first, PostgreSQL checks that against the row's newest
/// version (fencing). Each event's status follows from its counts of pending and failed
/// deliveries, moved by its deliveries' changes from their old state (`was`) to the new one:
/// the arithmetic also applies to the event row's newest version, so attempts committing
/// meanwhile never leave a stale status. The events are locked first, in order of their keys:
/// two batches sharing events then never wait for each other in a circle.
impl Write for AttemptRecord {
    async fn write(pool: &PgPool, records: &[&Self]) -> Result<Vec<bool>, sqlx::Error> {
        let columns: Vec<AttemptColumns> = records
            .iter()
            .map(|r| AttemptColumns::of(&r.attempt))
            .collect();
        let done: Vec<i64> = sqlx::query_scalar(
            "WITH r AS (SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], \
         $4::timestamptz[], $5::timestamptz[], $6::bigint[], $7::int[], $8::text[], $9::text[], \
         $10::text[], $11::text[], $12::text[], $13::text[]) WITH ORDINALITY \
         AS r(event_unique_id, endpoint_id, state, next_attempt_at, started_at, duration_ms, \
         http_status, response_snippet, error_kind, error_message, attempt_trigger, url, \
         claim_token, n)), \
         locked AS (SELECT e.seq, e.event_unique_id FROM fermion_events e \
         WHERE e.event_unique_id IN (SELECT event_unique_id FROM r) ORDER BY e.seq FOR UPDATE), \
         delivery AS (UPDATE fermion_deliveries d SET state = r.state, \
         next_attempt_at = r.next_attempt_at, attempts = d.attempts + 1, claim_token = NULL, \
         claimed_until = NULL \
         FROM r, locked, fermion_deliveries old \
         WHERE locked.event_unique_id = r.event_unique_id AND d.event_seq = locked.seq \
         AND d.endpoint_id = r.endpoint_id \
         AND old.event_seq = d.event_seq AND old.endpoint_id = d.endpoint_id \
         AND CASE WHEN r.claim_token IS NULL THEN d.claim_token IS NULL \
         OR d.claimed_until IS NULL OR d.claimed_until <= r.started_at \
         ELSE d.claim_token IS NOT DISTINCT FROM r.claim_token END \
         RETURNING d.event_seq, d.position, old.state AS was, r.state AS now, r.n), \
         attempt AS (INSERT INTO fermion_attempts (event_seq, endpoint_id, position, \
         started_at, duration_ms, http_status, response_snippet, error_kind, error_message, \
         attempt_trigger, url) \
         SELECT delivery.event_seq, r.endpoint_id, delivery.position, r.started_at, \
         r.duration_ms, r.http_status, r.response_snippet, r.error_kind, r.error_message, \
         r.attempt_trigger, r.url FROM delivery JOIN r USING (n) ORDER BY n), \
         moved AS (SELECT event_seq, count(*)::int AS attempts, \
         sum((now = 'pending')::int - (was = 'pending')::int)::int AS pending, \
         sum((now = 'failed')::int - (was = 'failed')::int)::int AS failed \
         FROM delivery GROUP BY event_seq), \
         settled AS (UPDATE fermion_events e SET attempts = e.attempts + moved.attempts, \
         pending_deliveries = e.pending_deliveries + moved.pending, \
         failed_deliveries = e.failed_deliveries + moved.failed, \
         status = CASE WHEN e.failed_deliveries + moved.failed > 0 THEN 'failed' \
         WHEN e.pending_deliveries + moved.pending > 0 THEN 'pending' \
         ELSE 'delivered' END \
         FROM moved WHERE e.seq = moved.event_seq RETURNING e.seq, e.status, e.timestamp), \
         gone AS (DELETE FROM fermion_unsettled_events u USING settled \
         WHERE u.seq = settled.seq AND settled.status = 'delivered'), \
         kept AS (INSERT INTO fermion_unsettled_events (seq, status, timestamp) \
         SELECT seq, status, timestamp FROM settled WHERE status <> 'delivered' \
         ON CONFLICT (seq) DO UPDATE SET status = excluded.status \
         WHERE fermion_unsettled_events.status <> excluded.status) \
         SELECT n FROM delivery",
        )
        .bind(
            records
                .iter()
                .map(|r| r.event_unique_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            records
                .iter()
                .map(|r| r.endpoint_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(records.iter().map(|r| r.state.as_str()).collect::<Vec<_>>())
        .bind(
            records
                .iter()
                .map(|r| {
                    r.next_attempt_at
                        .filter(|_| r.state == DeliveryState::Pending)
                })
                .collect::<Vec<_>>(),
        )
        .bind(columns.iter().map(|c| c.started_at).collect::<Vec<_>>())
        .bind(columns.iter().map(|c| c.duration_ms).collect::<Vec<_>>())
        .bind(
            columns
                .iter()
                .map(|c| c.http_status.and_then(|s| i32::try_from(s).ok()))
                .collect::<Vec<_>>(),
        )
        .bind(
            columns
                .iter()
                .map(|c| c.response_snippet.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            columns
                .iter()
                .map(|c| c.error_kind.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            columns
                .iter()
                .map(|c| c.error_message.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            columns
                .iter()
                .map(|c| c.trigger.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(columns.iter().map(|c| c.url.as_deref()).collect::<Vec<_>>())
        .bind(
            records
                .iter()
                .map(|r| r.claim.as_ref().map(ClaimToken::as_str))
                .collect::<Vec<_>>(),
        )
        .fetch_all(pool)
        .await?;
        // `n`, the place in `records` counted from 1, of each delivery updated.
        let done: HashSet<i64> = done.into_iter().collect();
        Ok((1..=records.len() as i64)
            .map(|n| done.contains(&n))
            .collect())
    }
}

/// `Ok` when the event has a delivery to the endpoint; otherwise the error naming what is
/// missing.
pub(super) async fn locate(
    pool: &PgPool,
    event_id: &str,
    endpoint_id: &str,
) -> Result<(), LogError> {
    let found: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT e.seq, (SELECT d.event_seq FROM fermion_deliveries d \
         WHERE d.event_seq = e.seq AND d.endpoint_id = $2) \
         FROM fermion_events e WHERE e.event_unique_id = $1",
    )
    .bind(event_id)
    .bind(endpoint_id)
    .fetch_optional(pool)
    .await
    .map_err(|error| LogError::Database {
        what: format!("reading event {event_id}"),
        source: Box::new(error),
    })?;
    match found {
        None => Err(LogError::UnknownEvent {
            id: event_id.to_owned(),
        }),
        Some((_, None)) => Err(LogError::UnknownDelivery {
            event_id: event_id.to_owned(),
            endpoint_id: endpoint_id.to_owned(),
        }),
        Some(_) => Ok(()),
    }
}
