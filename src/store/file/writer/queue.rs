//! The queue between a file log's callers and its writer thread.
//!
//! A channel would wake the writer once per request: while it gathers a batch from 64 callers,
//! that is 64 thread wake-ups for one commit, and on a small machine those wake-ups take the
//! CPU the callers need to encode their records. Here the writer says how many requests it is
//! waiting for, and only the caller that brings the queue to that number wakes it.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Request, Spent};

/// The most records spent batches may hold while they wait for a caller to free them: past
/// it (no caller came for a while), the writer frees its batches itself.
const MAX_SPENT_RECORDS: usize = 1024;

#[derive(Default)]
struct State {
    requests: Vec<Request>,
    /// Committed batches for the next caller to free.
    spent: Vec<Spent>,
    closed: bool,
    /// Waiting for a first request.
    waiting_for_any: bool,
    /// The number of queued requests that wakes the writer; 0 while it is not gathering.
    wake_at: usize,
}

impl State {
    fn take(&mut self, max: usize) -> Vec<Request> {
        if self.requests.len() <= max {
            // Room for as many again: the next batch is likely as large, and callers' threads
            // then never grow (reallocate) memory this thread will free.
            let room = self.requests.len();
            std::mem::replace(&mut self.requests, Vec::with_capacity(room))
        } else {
            self.requests.drain(..max).collect()
        }
    }
}

/// The writer thread has stopped: a request can no longer be queued.
#[derive(Debug)]
pub(in crate::store::file) struct WriterStopped;

/// Requests waiting for the writer thread.
#[derive(Default)]
pub(in crate::store::file) struct RequestQueue {
    state: Mutex<State>,
    arrived: Condvar,
}

impl std::fmt::Debug for RequestQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("RequestQueue")
            .field("queued", &state.requests.len())
            .field("closed", &state.closed)
            .finish()
    }
}

impl RequestQueue {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held, so a poisoned lock still holds a sound queue.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a request; fails, dropping it, if the writer has stopped.
    pub(in crate::store::file) fn push(&self, request: Request) -> Result<(), WriterStopped> {
        let mut state = self.lock();
        if state.closed {
            return Err(WriterStopped);
        }
        state.requests.push(request);
        let spent = std::mem::take(&mut state.spent);
        let enough = state.wake_at != 0 && state.requests.len() >= state.wake_at;
        if state.waiting_for_any || enough {
            state.waiting_for_any = false;
            state.wake_at = 0;
            self.arrived.notify_one();
        }
        // Freed once the queue is unlocked.
        drop(state);
        drop(spent);
        Ok(())
    }

    /// Leaves a committed batch for the next caller to free (see [`Spent`]); frees it here if
    /// enough is already waiting or the queue is closed.
    pub(super) fn discard(&self, spent: Spent) {
        let mut state = self.lock();
        let waiting: usize = state.spent.iter().map(Spent::records).sum();
        if state.closed || waiting + spent.records() > MAX_SPENT_RECORDS {
            drop(state);
            drop(spent);
            return;
        }
        state.spent.push(spent);
    }

    /// Stops the queue: later pushes fail, and the writer ends once the queue is empty.
    pub(in crate::store::file) fn close(&self) {
        self.lock().closed = true;
        self.arrived.notify_one();
    }

    /// Stops the queue and drops what is still in it, so its callers learn the writer is gone
    /// instead of waiting for ever.
    pub(super) fn abandon(&self) {
        let pending = {
            let mut state = self.lock();
            state.closed = true;
            std::mem::take(&mut state.requests)
        };
        drop(pending);
    }

    /// Waits for a first request, then up to `gather` until `want` requests are queued; takes
    /// at most `max` requests. `None` once the queue is closed and empty.
    pub(super) fn take(&self, want: usize, gather: Duration, max: usize) -> Option<Vec<Request>> {
        let mut state = self.lock();
        while state.requests.is_empty() {
            if state.closed {
                return None;
            }
            state.waiting_for_any = true;
            state = self.arrived.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        let want = want.min(max);
        let deadline = Instant::now() + gather;
        while state.requests.len() < want && !state.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state.wake_at = want;
            state = self
                .arrived
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        state.waiting_for_any = false;
        state.wake_at = 0;
        Some(state.take(max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn request() -> (
        Request,
        tokio::sync::oneshot::Receiver<Result<u64, crate::store::LogError>>,
    ) {
        let (reply, answer) = tokio::sync::oneshot::channel();
        (
            Request::DeleteBefore(chrono::DateTime::UNIX_EPOCH, reply),
            answer,
        )
    }

    #[test]
    fn the_writer_takes_everything_queued_up_to_its_limit_in_order() {
        let queue = RequestQueue::default();
        for _ in 0..5 {
            assert!(queue.push(request().0).is_ok());
        }
        assert_eq!(queue.take(1, Duration::ZERO, 3).map(|b| b.len()), Some(3));
        assert_eq!(queue.take(1, Duration::ZERO, 3).map(|b| b.len()), Some(2));
    }

    #[test]
    fn a_gathering_writer_takes_its_batch_once_the_requests_it_waits_for_have_arrived() {
        let queue = Arc::new(RequestQueue::default());
        assert!(queue.push(request().0).is_ok());
        let pusher = {
            let queue = queue.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                // The second of three: the writer keeps waiting.
                assert!(queue.push(request().0).is_ok());
                std::thread::sleep(Duration::from_millis(20));
                assert!(queue.push(request().0).is_ok());
            })
        };
        // It asks for three requests and may wait ten seconds: the third ends the wait.
        let started = Instant::now();
        let batch = queue.take(3, Duration::from_secs(10), 100);
        assert_eq!(batch.map(|b| b.len()), Some(3));
        assert!(started.elapsed() < Duration::from_secs(5));
        pusher.join().expect("the pusher");
    }

    fn spent() -> Spent {
        Spent {
            days: std::collections::BTreeMap::new(),
            changes: Vec::new(),
        }
    }

    #[test]
    fn a_committed_batch_is_freed_by_the_next_caller_and_never_after_the_queue_closes() {
        let queue = RequestQueue::default();
        queue.discard(spent());
        queue.discard(spent());
        assert_eq!(queue.lock().spent.len(), 2);
        // The next request takes them along, to free them on its own thread.
        assert!(queue.push(request().0).is_ok());
        assert!(queue.lock().spent.is_empty());
        queue.close();
        queue.discard(spent());
        assert!(queue.lock().spent.is_empty());
    }

    #[test]
    fn spent_batches_past_the_cap_are_freed_at_once_instead_of_waiting() {
        let queue = RequestQueue::default();
        let spent_with = |records: usize| Spent {
            days: std::collections::BTreeMap::new(),
            changes: (0..records)
                .map(|_| {
                    super::super::Staged::Attempt(
                        0,
                        0,
                        0,
                        crate::store::record::DeliveryState::Pending,
                        None,
                    )
                })
                .collect(),
        };
        let waiting =
            |queue: &RequestQueue| -> usize { queue.lock().spent.iter().map(Spent::records).sum() };
        queue.discard(spent_with(600));
        queue.discard(spent_with(MAX_SPENT_RECORDS - 600));
        assert_eq!(
            waiting(&queue),
            MAX_SPENT_RECORDS,
            "up to the cap, batches wait"
        );
        // No caller came: one more record would pass the cap, so this batch is freed here.
        queue.discard(spent_with(1));
        assert_eq!(waiting(&queue), MAX_SPENT_RECORDS);
        assert_eq!(queue.lock().spent.len(), 2);
    }

    #[test]
    fn a_closed_queue_refuses_pushes_and_ends_the_writer_once_drained() {
        let queue = RequestQueue::default();
        assert!(queue.push(request().0).is_ok());
        queue.close();
        assert!(queue.push(request().0).is_err());
        assert_eq!(queue.take(1, Duration::ZERO, 10).map(|b| b.len()), Some(1));
        assert!(queue.take(1, Duration::ZERO, 10).is_none());
    }

    #[test]
    fn callers_of_an_abandoned_queue_hear_that_the_writer_is_gone() {
        let queue = RequestQueue::default();
        let (queued, mut answer) = request();
        assert!(queue.push(queued).is_ok());
        queue.abandon();
        assert!(matches!(
            answer.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Closed)
        ));
        assert!(queue.push(request().0).is_err());
    }
}
