//! The queue between a `FileLogStore`'s callers and its writer thread.
//!
//! Group commit only pays when a commit carries most of the callers. After a commit answers
//! 64 callers, they come back one by one while their tasks are scheduled again; a writer that
//! starts its next transaction at the first arrival commits about half of them, and the other
//! half wait for the sync after that: two syncs where one would do. So the writer waits,
//! briefly, for most of the callers its last commit answered (as PostgreSQL's `commit_delay`
//! and MySQL's `binlog_group_commit_sync_delay` do). A caller that was alone in the last
//! commit waits for nobody, and neither does one that comes after the last commit's callers
//! had their chance to come back.
//!
//! A channel would also wake the writer thread once per arrival while it waits: 64 wake-ups
//! for one commit, taking the CPU the callers need. Here the writer says how many it waits
//! for, and only the caller that brings the queue to that number wakes it.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Writes waiting for the writer thread.
pub(super) struct Queue<T> {
    state: Mutex<State<T>>,
    arrived: Condvar,
}

struct State<T> {
    waiting: Vec<T>,
    closed: bool,
    /// The queue length that wakes the writer; 0 while it is not waiting.
    wake_at: usize,
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Queue")
            .field("waiting", &state.waiting.len())
            .field("closed", &state.closed)
            .finish()
    }
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                waiting: Vec::new(),
                closed: false,
                wake_at: 0,
            }),
            arrived: Condvar::new(),
        }
    }
}

/// How a batch is gathered.
#[derive(Clone, Copy, Debug)]
pub(super) struct Gather {
    /// How many writes to wait for, the first included.
    pub want: usize,
    /// Whom to wait for only if the first write arrives by then: past it, the callers the
    /// wait is for are not coming back soon.
    pub until: Instant,
    /// For at most this long after the first one.
    pub wait: Duration,
    /// The most writes one batch takes.
    pub max: usize,
}

impl<T> Queue<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while the lock is held, so a poisoned lock still guards a sound queue.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a write; gives it back once the queue is closed.
    pub(super) fn push(&self, item: T) -> Result<(), T> {
        let mut state = self.lock();
        if state.closed {
            return Err(item);
        }
        state.waiting.push(item);
        if state.wake_at != 0 && state.waiting.len() >= state.wake_at {
            state.wake_at = 0;
            self.arrived.notify_one();
        }
        Ok(())
    }

    /// Closes the queue: later pushes fail, and [`take`](Self::take) ends once it is empty.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.arrived.notify_one();
    }

    /// Closes the queue and drops what waits in it, so that its callers hear that the writer
    /// is gone instead of waiting for ever.
    pub(super) fn abandon(&self) {
        let dropped = {
            let mut state = self.lock();
            state.closed = true;
            std::mem::take(&mut state.waiting)
        };
        // Outside the lock: dropping a reply wakes its caller.
        drop(dropped);
    }

    /// Waits for a first write, then as `gather` says for more; moves them into `batch`.
    /// `false` once the queue is closed and empty.
    pub(super) fn take(&self, gather: Gather, batch: &mut Vec<T>) -> bool {
        let mut state = self.lock();
        while state.waiting.is_empty() {
            if state.closed {
                return false;
            }
            state.wake_at = 1;
            state = self
                .arrived
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        let want = if Instant::now() <= gather.until {
            gather.want.min(gather.max)
        } else {
            1
        };
        let deadline = Instant::now() + gather.wait;
        while state.waiting.len() < want && !state.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state.wake_at = want;
            state = self
                .arrived
                .wait_timeout(state, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        state.wake_at = 0;
        let taken = state.waiting.len().min(gather.max);
        batch.extend(state.waiting.drain(..taken));
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const LONG: Duration = Duration::from_secs(5);

    fn gather(want: usize, wait: Duration) -> Gather {
        Gather {
            want,
            until: Instant::now() + LONG,
            wait,
            max: 8,
        }
    }

    #[test]
    fn a_write_that_is_all_the_batch_wants_is_taken_at_once() {
        let queue = Queue::default();
        queue.push(1).expect("open");
        let mut batch = Vec::new();
        let started = Instant::now();
        assert!(queue.take(gather(1, LONG), &mut batch));
        assert_eq!(batch, [1]);
        assert!(started.elapsed() < LONG);
    }

    #[test]
    fn the_writer_waits_for_the_writes_it_wants_then_takes_them_together() {
        let queue = Arc::new(Queue::default());
        queue.push(0).expect("open");
        let pusher = {
            let queue = queue.clone();
            std::thread::spawn(move || {
                for i in 1..4 {
                    std::thread::sleep(Duration::from_millis(5));
                    queue.push(i).expect("open");
                }
            })
        };
        let mut batch = Vec::new();
        assert!(queue.take(gather(4, LONG), &mut batch));
        assert_eq!(batch, [0, 1, 2, 3]);
        pusher.join().expect("the pusher");
    }

    #[test]
    fn the_writer_stops_waiting_when_the_gather_time_is_up() {
        let queue = Queue::default();
        queue.push(7).expect("open");
        let mut batch = Vec::new();
        let started = Instant::now();
        assert!(queue.take(gather(4, Duration::from_millis(20)), &mut batch));
        assert_eq!(batch, [7]);
        assert!(started.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn a_first_write_after_the_gathering_window_waits_for_nobody() {
        let queue = Queue::default();
        queue.push(3).expect("open");
        let mut batch = Vec::new();
        let started = Instant::now();
        let late = Gather {
            until: Instant::now() - Duration::from_millis(1),
            ..gather(4, LONG)
        };
        assert!(queue.take(late, &mut batch));
        assert_eq!(batch, [3]);
        assert!(started.elapsed() < LONG);
    }

    #[test]
    fn a_batch_takes_at_most_its_maximum_and_leaves_the_rest_queued() {
        let queue = Queue::default();
        for i in 0..10 {
            queue.push(i).expect("open");
        }
        let mut batch = Vec::new();
        assert!(queue.take(gather(10, LONG), &mut batch));
        assert_eq!(batch, (0..8).collect::<Vec<_>>());
        batch.clear();
        assert!(queue.take(gather(1, LONG), &mut batch));
        assert_eq!(batch, [8, 9]);
    }

    #[test]
    fn a_closed_queue_refuses_writes_and_ends_once_drained() {
        let queue = Queue::default();
        queue.push(1).expect("open");
        queue.close();
        assert_eq!(queue.push(2), Err(2));
        let mut batch = Vec::new();
        assert!(queue.take(gather(4, LONG), &mut batch));
        assert_eq!(batch, [1]);
        assert!(!queue.take(gather(1, LONG), &mut batch));
    }

    #[test]
    fn closing_wakes_a_writer_waiting_for_a_first_write() {
        let queue = Arc::new(Queue::<u8>::default());
        let writer = {
            let queue = queue.clone();
            std::thread::spawn(move || queue.take(gather(1, LONG), &mut Vec::new()))
        };
        std::thread::sleep(Duration::from_millis(10));
        queue.close();
        assert!(!writer.join().expect("the writer"));
    }

    #[test]
    fn abandoning_drops_the_waiting_writes_so_their_callers_hear_of_it() {
        let queue = Queue::default();
        let (reply, answer) = std::sync::mpsc::channel::<()>();
        queue.push(reply).expect("open");
        queue.abandon();
        assert!(answer.recv().is_err(), "the reply was dropped");
        assert!(queue.push(std::sync::mpsc::channel().0).is_err());
    }
}
