//! A bounded memory of recently seen event ids, to skip retried and re-triggered events.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::clock::{Clock, SystemClock};

/// Remembers recently seen `eventUniqueId`s, within a capacity and an age limit.
///
/// Fermion delivers at least once: a retry after a timeout, or a re-trigger from the event log,
/// sends the same `eventUniqueId` again. Ask the guard before acting on an event.
///
/// Use [`begin`](Self::begin): it claims the id atomically, so a second copy arriving while the
/// first is being handled is told so, and the claim is [`finish`](Handling::finish)ed once the
/// event has been handled, or [`abandon`](Handling::abandon)ed (or dropped) if handling failed,
/// so that Fermion's retry is handled as new. [`check_and_record`](Self::check_and_record) does
/// both at once, for handling that cannot fail.
///
/// Memory is bounded by `capacity` ids; an id older than `max_age` is forgotten. This is an
/// in-process guard: for exactly-once effects across restarts, keep the ids in your database.
///
/// ```
/// use std::time::Duration;
/// use fermion_webhooks::DuplicateGuard;
///
/// use fermion_webhooks::receive::Duplicate;
///
/// let guard = DuplicateGuard::new(10_000, Duration::from_secs(24 * 3600));
/// let handling = guard.begin("evt-1").unwrap();
/// // A copy arriving meanwhile is not handled twice.
/// assert_eq!(guard.begin("evt-1").unwrap_err(), Duplicate::InProgress);
/// handling.finish();
/// assert_eq!(guard.begin("evt-1").unwrap_err(), Duplicate::Handled);
///
/// // Handling failed: the retry is new.
/// guard.begin("evt-2").unwrap().abandon();
/// assert!(guard.begin("evt-2").is_ok());
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
    /// Ids claimed by [`DuplicateGuard::begin`] and not yet finished or abandoned.
    in_progress: HashSet<Box<str>>,
}

/// Why [`DuplicateGuard::begin`] refused an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Duplicate {
    /// It was handled already: answer 2xx and do nothing.
    Handled,
    /// Another copy is being handled right now. Answer 2xx too, or 409 if you would rather
    /// Fermion retried in case that copy fails.
    InProgress,
}

/// An id claimed by [`DuplicateGuard::begin`]: [`finish`](Self::finish) it once the event is
/// handled. Dropping it unfinished abandons it (a panic, an early return), so a retry is
/// handled as new.
#[derive(Debug)]
#[must_use = "finish the claim once the event is handled, or it is abandoned when dropped"]
pub struct Handling<'g> {
    guard: &'g DuplicateGuard,
    id: Box<str>,
}

impl Handling<'_> {
    /// The event was handled: later copies are duplicates.
    pub fn finish(self) {
        let mut state = self.guard.lock();
        state.in_progress.remove(&self.id);
        self.guard.record_locked(&mut state, &self.id);
        // Dropping `self` next finds the id no longer in progress.
    }

    /// Handling failed: the next copy is handled as new.
    pub fn abandon(self) {
        drop(self);
    }
}

impl Drop for Handling<'_> {
    fn drop(&mut self) {
        self.guard.lock().in_progress.remove(&self.id);
    }
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

    /// Claims `event_unique_id` for handling, unless it was handled already or another copy is
    /// being handled: checking and claiming are one step, so two copies arriving at once are
    /// never both handled.
    pub fn begin(&self, event_unique_id: &str) -> Result<Handling<'_>, Duplicate> {
        let mut state = self.lock();
        self.evict(&mut state);
        if state.by_id.contains_key(event_unique_id) {
            return Err(Duplicate::Handled);
        }
        if !state.in_progress.insert(event_unique_id.into()) {
            return Err(Duplicate::InProgress);
        }
        Ok(Handling {
            guard: self,
            id: event_unique_id.into(),
        })
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
        if state.by_id.contains_key(event_unique_id) || state.in_progress.contains(event_unique_id)
        {
            return true;
        }
        self.record_locked(&mut state, event_unique_id);
        false
    }

    fn record_locked(&self, state: &mut SeenIds, event_unique_id: &str) {
        if self.capacity == 0 {
            return;
        }
        let now = self.clock.now();
        let id: Box<str> = event_unique_id.into();
        state.recordings += 1;
        let recording = state.recordings;
        state.by_id.insert(id.clone(), recording);
        state.by_age.push_back((now, recording, id));
        self.evict(state);
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
