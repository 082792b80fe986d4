//! Claims, as the writer makes them: fair turns for the endpoints with due deliveries, each
//! under its cap, read from the indexes of claimed rows and of each endpoint's due deliveries
//! so that a claim's cost follows what it hands out.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Answer, Hot, NewClaim, Outcome, locate};
use crate::store::record::{ClaimRequest, DueDelivery, round_robin};
use crate::store::sql::{from_micros, micros};

/// A due delivery a claim may take: its row's key, position and due time, and its place in
/// its endpoint's turns (the endpoint's live claims, plus its rank among its due ones).
struct Candidate {
    place: i64,
    due_us: i64,
    event_seq: i64,
    position: i64,
    endpoint_id: String,
}

/// Each endpoint's live claims, from the small index of claimed rows.
pub(super) const LIVE_CLAIMS: &str = "SELECT endpoint_id, count(*) FROM deliveries \
     WHERE claim_token IS NOT NULL AND claimed_until_us > ? GROUP BY endpoint_id";

/// The first endpoint after the one given with pending work, one index step.
pub(super) const NEXT_ENDPOINT: &str = "SELECT endpoint_id FROM deliveries \
     WHERE state = 'pending' AND endpoint_id > ? ORDER BY endpoint_id LIMIT 1";

/// An endpoint's next unclaimed due deliveries, in the order claims take them.
pub(super) const DUE: &str = "SELECT event_seq, position, next_attempt_us FROM deliveries \
     WHERE state = 'pending' AND endpoint_id = ? AND next_attempt_us <= ? \
     AND (claimed_until_us IS NULL OR claimed_until_us <= ?) \
     ORDER BY next_attempt_us, event_seq, position LIMIT ?";

/// Claims one delivery, answering what its attempt needs.
pub(super) const CLAIM: &str = "UPDATE deliveries SET claim_token = ?, claimed_until_us = ? \
     WHERE event_seq = ? AND endpoint_id = ? \
     RETURNING (SELECT event_unique_id FROM events WHERE seq = event_seq), url, attempts";

/// Claims the due deliveries `request` asks for, in fair turns (see `LogStore::claim_due`).
pub(super) fn claim_due(
    hot: &mut Hot<'_>,
    request: &ClaimRequest,
    (token, until): NewClaim,
) -> Outcome {
    let now = micros(request.now);
    let cap = request.per_endpoint_i64();
    let limit = request.limit_i64();
    let mut busy = std::collections::HashMap::new();
    let mut rows = hot.live_claims.query([now])?;
    while let Some(row) = rows.next()? {
        busy.insert(row.get::<_, String>(0)?, row.get::<_, i64>(1)?);
    }
    drop(rows);
    // The endpoints with pending work, one index step each, and the next due deliveries of
    // each one not skipped and under its cap, no more than its room: a backlog behind an
    // endpoint at its cap is never read.
    let mut candidates = Vec::new();
    let mut after = String::new();
    while let Some(endpoint) = hot
        .next_endpoint
        .query_row([&after], |row| row.get::<_, String>(0))
        .optional()?
    {
        let live = busy.get(&endpoint).copied().unwrap_or(0);
        let room = cap.saturating_sub(live).min(limit);
        if room > 0 && !request.skip_endpoints.contains(&endpoint) {
            let mut rows = hot.due.query(params![endpoint, now, now, room])?;
            let mut rank = 0;
            while let Some(row) = rows.next()? {
                rank += 1;
                candidates.push(Candidate {
                    place: live + rank,
                    event_seq: row.get(0)?,
                    position: row.get(1)?,
                    due_us: row.get(2)?,
                    endpoint_id: endpoint.clone(),
                });
            }
        }
        after = endpoint;
    }
    // Round by round: every endpoint's first turn, earliest due first, then their second.
    candidates.sort_unstable_by_key(|c| (c.place, c.due_us, c.event_seq, c.position));
    candidates.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let mut claimed = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        let (event_unique_id, url, attempts) = hot.claim.query_row(
            params![
                token.as_str(),
                micros(until),
                candidate.event_seq,
                candidate.endpoint_id
            ],
            |row| Ok((row.get(0)?, row.get(1)?, row.get::<_, i64>(2)?)),
        )?;
        claimed.push(DueDelivery {
            event_unique_id,
            endpoint_id: candidate.endpoint_id,
            url,
            next_attempt_at: from_micros(candidate.due_us),
            attempts_made: usize::try_from(attempts).unwrap_or(0),
            claim: token.clone(),
            claimed_until: until,
        });
    }
    Ok(Ok(Answer::Claimed(round_robin(claimed))))
}

/// Claims one delivery, unless a live claim holds it.
pub(super) fn claim_one(
    hot: &mut Hot<'_>,
    event_id: &str,
    endpoint_id: &str,
    now: DateTime<Utc>,
    (token, until): NewClaim,
) -> Outcome {
    let (seq, _, _, held_until) = match locate(hot, event_id, endpoint_id)? {
        Ok(found) => found,
        Err(error) => return Ok(Err(error)),
    };
    if held_until.is_some_and(|held| held > micros(now)) {
        return Ok(Ok(Answer::Token(None)));
    }
    hot.conn
        .prepare_cached(
            "UPDATE deliveries SET claim_token = ?, claimed_until_us = ? \
             WHERE event_seq = ? AND endpoint_id = ?",
        )?
        .execute(params![token.as_str(), micros(until), seq, endpoint_id])?;
    Ok(Ok(Answer::Token(Some(token))))
}
