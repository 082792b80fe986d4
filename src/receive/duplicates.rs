//! A bounded memory of recently seen event ids, to skip retried and re-triggered events.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::clock::{Clock, SystemClock};

/// Remembers recently seen `eventUniqueId`s, within a capacity and an age limit.
///
/// Fermion delivers at least once: a retry after a timeout, or a re-trigger from the event log,
/// sends the same `eventUniqueId` again. Ask the guard before acting on an event.
///
/// Record an id only once the event has been handled: if handling fails and you answer with an
/// error, Fermion retries, and the retry must not be mistaken for a duplicate. Use
/// [`check_and_record`](Self::check_and_record) when handling cannot fail, or
/// [`is_duplicate`](Self::is_duplicate) then [`record`](Self::record) when it can.
///
/// Memory is bounded by `capacity` ids; an id older than `max_age` is forgotten. This is an
/// in-process guard: for exactly-once effects across restarts, keep the ids in your database.
///
/// ```
/// use std::time::Duration;
/// use fermion_webhooks::DuplicateGuard;
///
/// let guard = DuplicateGuard::new(10_000, Duration::from_secs(24 * 3600));
/// assert!(!guard.check_and_record("evt-1"));
/// assert!(guard.check_and_record("evt-1"));
/// ```
#[derive(Debug)]
pub struct DuplicateGuard {
    state: Mutex<SeenIds>,
    capacity: usize,
    max_age: TimeDelta,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, Default)]
struct SeenIds {
    /// Each remembered id, with the number of the recording that put it there.
    by_id: HashMap<Box<str>, u64>,
    /// Recordings in order, to evict the oldest first. May hold recordings of ids forgotten
    /// since; eviction skips those.
    by_age: VecDeque<(DateTime<Utc>, u64, Box<str>)>,
    recordings: u64,
}

impl DuplicateGuard {
    /// A guard holding at most `capacity` ids, each for at most `max_age`.
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        Self::with_clock(capacity, max_age, Arc::new(SystemClock))
    }

    /// The same, reading the time from `clock`.
    pub fn with_clock(capacity: usize, max_age: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            state: Mutex::new(SeenIds::default()),
            capacity,
            max_age: TimeDelta::from_std(max_age).unwrap_or(TimeDelta::MAX),
            clock,
        }
    }

    /// Whether `event_unique_id` was recorded and not yet forgotten.
    pub fn is_duplicate(&self, event_unique_id: &str) -> bool {
        let mut state = self.lock();
        self.evict(&mut state);
        state.by_id.contains_key(event_unique_id)
    }

    /// Records `event_unique_id` as handled.
    pub fn record(&self, event_unique_id: &str) {
        self.check_and_record(event_unique_id);
    }

    /// Records `event_unique_id`, and returns whether it had been recorded before.
    pub fn check_and_record(&self, event_unique_id: &str) -> bool {
        let mut state = self.lock();
        self.evict(&mut state);
        if state.by_id.contains_key(event_unique_id) {
            return true;
        }
        if self.capacity == 0 {
            return false;
        }
        let now = self.clock.now();
        let id: Box<str> = event_unique_id.into();
        state.recordings += 1;
        let recording = state.recordings;
        state.by_id.insert(id.clone(), recording);
        state.by_age.push_back((now, recording, id));
        self.evict(&mut state);
        false
    }

    /// Forgets `event_unique_id`, so its next delivery is treated as new.
    pub fn forget(&self, event_unique_id: &str) {
        self.lock().by_id.remove(event_unique_id);
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        let mut state = self.lock();
        self.evict(&mut state);
        state.by_id.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn evict(&self, state: &mut SeenIds) {
        let oldest_kept = self.clock.now().checked_sub_signed(self.max_age);
        while let Some((recorded_at, _, _)) = state.by_age.front() {
            let too_old = oldest_kept.is_some_and(|limit| *recorded_at <= limit);
            if !too_old && state.by_age.len() <= self.capacity {
                break;
            }
            if let Some((_, recording, id)) = state.by_age.pop_front() {
                // Only remove the map entry this recording made: the id may have been
                // forgotten and recorded again since.
                if state.by_id.get(&id) == Some(&recording) {
                    state.by_id.remove(&id);
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, SeenIds> {
        // Every update leaves the maps consistent before it can panic, so a poisoned lock is safe.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
