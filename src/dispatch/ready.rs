//! The ready queue: deliveries of just-emitted events, handed from `emit` to the worker.
//!
//! Without it the worker would find new work by querying the log after every emit and every
//! finished attempt, and each query lists every due delivery, the ones already in flight
//! included: under load that costs more than the HTTP request. With it, a first attempt needs
//! no log query and no read of the body back from the log. The log is still the source of
//! truth: the worker queries it at start, on every poll tick, after the queue overflowed, and
//! after a failed log write, so nothing it holds is missed. What such a query finds is claimed
//! and queued here too, a few thousand at a time, so that under a backlog the log is queried
//! once per batch rather than once per finished attempt.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{Inner, lock};
use crate::store::DueDelivery;

/// The most deliveries queued; past it, `emit` leaves them to the worker's next log query.
pub(super) const READY_LIMIT: usize = 4096;

/// The worker queries the log only while at most this many deliveries are queued: with more,
/// what the log holds beyond the queue is not needed yet, and a query would mostly list
/// deliveries already claimed.
pub(super) const QUERY_WHEN_QUEUED_AT_MOST: usize = READY_LIMIT / 4;

/// A delivery claimed for an attempt: a just-emitted one with the body it sends (and whether
/// it is a test event), or one found in the log, whose body is read back when it is attempted.
#[derive(Debug)]
pub(super) struct ReadyDelivery {
    pub(super) due: DueDelivery,
    pub(super) body: Option<(Arc<str>, bool)>,
    /// The key it is claimed under, kept so that releasing it needs no second hash.
    pub(super) claim: Key,
}

/// The longest the worker goes without querying the log: for retries scheduled by an earlier
/// run, whose times this one does not know.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The queue, and whether the log may hold due work the queue does not.
#[derive(Debug)]
pub(super) struct ReadyQueue {
    queue: std::sync::Mutex<VecDeque<ReadyDelivery>>,
    /// Wakes a runner waiting for work: one per queued delivery, all of them at a stop.
    pub(super) work: tokio::sync::Notify,
    check_log: AtomicBool,
    /// When the retries this run scheduled fall due, earliest first.
    retries: std::sync::Mutex<BinaryHeap<Reverse<DateTime<Utc>>>>,
    last_query: std::sync::Mutex<Instant>,
}

impl ReadyQueue {
    /// An empty queue; the log is checked first, for deliveries left by an earlier run.
    pub(super) fn new() -> Self {
        Self {
            queue: std::sync::Mutex::new(VecDeque::new()),
            work: tokio::sync::Notify::new(),
            check_log: AtomicBool::new(true),
            retries: std::sync::Mutex::new(BinaryHeap::new()),
            last_query: std::sync::Mutex::new(Instant::now()),
        }
    }

    /// Notes a retry due at `at`, so that the log is queried once it is due.
    pub(super) fn retry_at(&self, at: DateTime<Utc>) {
        lock(&self.retries).push(Reverse(at));
    }

    /// On a poll tick: asks for a log query if a retry scheduled by this run is due, or if
    /// none was made for a while. Not on every tick: a query lists every due delivery, the ones
    /// already queued or in flight included, and under load those are thousands.
    pub(super) fn on_tick(&self, now: DateTime<Utc>) {
        let mut due = false;
        {
            let mut retries = lock(&self.retries);
            while retries.peek().is_some_and(|Reverse(at)| *at <= now) {
                retries.pop();
                due = true;
            }
        }
        if due || lock(&self.last_query).elapsed() >= SWEEP_EVERY {
            self.check_log();
        }
    }

    /// Notes that the log was just queried.
    pub(super) fn queried(&self) {
        *lock(&self.last_query) = Instant::now();
    }

    pub(super) fn pop(&self) -> Option<ReadyDelivery> {
        lock(&self.queue).pop_front()
    }

    pub(super) fn len(&self) -> usize {
        lock(&self.queue).len()
    }

    /// Queues deliveries the worker found in the log and claimed, with their keys.
    pub(super) fn extend(&self, found: Vec<(Key, DueDelivery)>) {
        let count = found.len();
        lock(&self.queue).extend(found.into_iter().map(|(claim, due)| ReadyDelivery {
            due,
            body: None,
            claim,
        }));
        self.wake_runners(count);
    }

    /// Wakes up to `count` runners waiting for work (each takes one delivery, then looks for
    /// more before it waits again, so waking one per delivery is enough).
    fn wake_runners(&self, count: usize) {
        for _ in 0..count {
            self.work.notify_one();
        }
    }

    /// Wakes every runner waiting for work, to see that the dispatcher stops.
    pub(super) fn stop_runners(&self) {
        self.work.notify_waiters();
    }

    /// Whether the worker should be woken to query the log: a query was asked for and the
    /// queue is short enough for it to run.
    pub(super) fn log_check_due(&self) -> bool {
        self.check_log.load(Ordering::SeqCst) && self.len() <= QUERY_WHEN_QUEUED_AT_MOST
    }

    /// Asks the worker to query the log on its next round.
    pub(super) fn check_log(&self) {
        self.check_log.store(true, Ordering::SeqCst);
    }

    /// Whether the worker should query the log now; clears the request.
    pub(super) fn take_check_log(&self) -> bool {
        self.check_log.swap(false, Ordering::SeqCst)
    }
}

/// A delivery, known by a keyed 64-bit hash of its event and endpoint ids rather than by a
/// copy of both: every claim and release would otherwise allocate two strings.
pub(super) type Key = u64;

/// Deliveries claimed for an attempt (queued, being sent, or having their outcome logged), so
/// that none is started twice.
///
/// The worker's log query takes time, and its answer may be stale by the time it claims what
/// it found: an attempt that finished meanwhile would look due again. So while a query runs,
/// finished attempts stay claimed, and are released when it ends. A plain mutex, held only for
/// moments, never across the query: `emit` claims here too, and should not wait for the log.
///
/// Two deliveries whose keys collide (about one chance in 10^12 with thousands claimed at once)
/// would only wait for each other: the second stays pending in the log until the first is
/// released and a log query finds it. Neither is lost, and neither starts twice.
#[derive(Debug, Default)]
pub(super) struct Claims {
    state: std::sync::Mutex<ClaimState>,
    /// Keyed afresh for each dispatcher, so keys cannot be aimed at from outside.
    hasher: std::collections::hash_map::RandomState,
}

#[derive(Debug, Default)]
struct ClaimState {
    claimed: HashSet<Key>,
    querying: bool,
    /// Finished while a query ran: released when it ends.
    finished: Vec<Key>,
}

impl Claims {
    /// Notes that a log query starts; returns how many deliveries are claimed.
    pub(super) fn begin_query(&self) -> usize {
        let mut state = lock(&self.state);
        state.querying = true;
        state.claimed.len()
    }

    /// Claims up to `room` of the deliveries a query found that nobody holds, and ends the
    /// query. Returns them with the keys they are claimed under.
    pub(super) fn end_query(
        &self,
        found: Vec<DueDelivery>,
        room: usize,
    ) -> Vec<(Key, DueDelivery)> {
        let mut state = lock(&self.state);
        let claimed: Vec<(Key, DueDelivery)> = found
            .into_iter()
            .map(|due| (self.key_of(&due), due))
            .filter(|(key, _)| state.claimed.insert(*key))
            .take(room)
            .collect();
        state.querying = false;
        for key in std::mem::take(&mut state.finished) {
            state.claimed.remove(&key);
        }
        claimed
    }

    /// The key a delivery is claimed under.
    pub(super) fn key_of(&self, due: &DueDelivery) -> Key {
        self.hasher
            .hash_one((due.event_unique_id.as_str(), due.endpoint_id.as_str()))
    }

    /// Releases a delivery whose attempt is over (its outcome logged, or not), by its key.
    pub(super) fn release(&self, key: Key) {
        let mut state = lock(&self.state);
        if state.querying {
            state.finished.push(key);
        } else {
            state.claimed.remove(&key);
        }
    }
}

impl Inner {
    /// Queues the first attempts of a just-logged event, with its body, each claimed first: so
    /// a delivery is either queued here or started by the worker from the log, never both.
    /// Returns whether the queue was full, leaving some for the worker's next log query.
    pub(super) fn queue_first_attempts(
        &self,
        fresh: impl Iterator<Item = DueDelivery>,
        body: &Arc<str>,
        is_test_event: bool,
    ) -> bool {
        let mut queued = 0;
        let mut overflowed = false;
        {
            let mut claims = lock(&self.claims.state);
            let mut queue = lock(&self.ready.queue);
            for due in fresh {
                if queue.len() >= READY_LIMIT {
                    // Still pending in the log: the worker's next query finds it.
                    self.ready.check_log();
                    overflowed = true;
                    break;
                }
                let claim = self.claims.key_of(&due);
                if claims.claimed.insert(claim) {
                    queue.push_back(ReadyDelivery {
                        due,
                        body: Some((body.clone(), is_test_event)),
                        claim,
                    });
                    queued += 1;
                }
            }
        }
        self.ready.wake_runners(queued);
        overflowed
    }
}

#[cfg(test)]
mod tests {
    use super::Claims;
    use crate::store::DueDelivery;

    fn due(event: &str) -> DueDelivery {
        DueDelivery {
            event_unique_id: event.into(),
            endpoint_id: "crm".into(),
            url: "https://crm.example.com/hooks".into(),
            next_attempt_at: chrono::DateTime::UNIX_EPOCH,
            attempts_made: 0,
        }
    }

    #[test]
    fn an_attempt_finished_during_a_query_is_not_claimed_again_from_its_stale_answer() {
        let claims = Claims::default();
        claims.begin_query();
        assert_eq!(claims.end_query(vec![due("a"), due("b")], 10).len(), 2);
        // A query starts; meanwhile "a" finishes (its outcome logged); the query's answer was
        // read before that, and still lists "a" as due.
        assert_eq!(claims.begin_query(), 2);
        claims.release(claims.key_of(&due("a")));
        let claimed = claims.end_query(vec![due("a"), due("c")], 10);
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].1.event_unique_id, "c");
        // Once the query is over, "a" is free: a fresh answer that lists it may claim it.
        assert_eq!(claims.begin_query(), 2);
        let claimed = claims.end_query(vec![due("a"), due("b")], 10);
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].1.event_unique_id, "a");
    }

    #[test]
    fn outside_a_query_a_finished_attempt_is_released_at_once_and_room_is_respected() {
        let claims = Claims::default();
        claims.begin_query();
        assert_eq!(
            claims
                .end_query(vec![due("a"), due("b"), due("c")], 2)
                .len(),
            2
        );
        claims.release(claims.key_of(&due("a")));
        claims.begin_query();
        let claimed = claims.end_query(vec![due("a"), due("b"), due("c")], 10);
        let ids: Vec<_> = claimed
            .iter()
            .map(|(_, d)| d.event_unique_id.as_str())
            .collect();
        assert_eq!(ids, ["a", "c"]);
    }
}
