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

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Inner, lock};
use crate::store::DueDelivery;

/// The most deliveries queued; past it, `emit` leaves them to the worker's next log query.
pub(super) const READY_LIMIT: usize = 4096;

/// A delivery claimed for an attempt: a just-emitted one with the body it sends (and whether
/// it is a test event), or one found in the log, whose body is read back when it is attempted.
#[derive(Debug)]
pub(super) struct ReadyDelivery {
    pub(super) due: DueDelivery,
    pub(super) body: Option<(Arc<str>, bool)>,
}

/// The queue, and whether the log may hold due work the queue does not.
#[derive(Debug)]
pub(super) struct ReadyQueue {
    queue: std::sync::Mutex<VecDeque<ReadyDelivery>>,
    check_log: AtomicBool,
}

impl ReadyQueue {
    /// An empty queue; the log is checked first, for deliveries left by an earlier run.
    pub(super) fn new() -> Self {
        Self {
            queue: std::sync::Mutex::new(VecDeque::new()),
            check_log: AtomicBool::new(true),
        }
    }

    pub(super) fn pop(&self) -> Option<ReadyDelivery> {
        lock(&self.queue).pop_front()
    }

    pub(super) fn len(&self) -> usize {
        lock(&self.queue).len()
    }

    /// Queues deliveries the worker found in the log and claimed.
    pub(super) fn extend(&self, found: impl IntoIterator<Item = DueDelivery>) {
        lock(&self.queue).extend(
            found
                .into_iter()
                .map(|due| ReadyDelivery { due, body: None }),
        );
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

impl Inner {
    /// Queues the first attempts of a just-logged event. Each delivery is claimed in the
    /// in-flight set under its lock, the lock the worker holds across a log query: so a
    /// delivery is either queued here or started by the worker from the log, never both.
    pub(super) async fn queue_first_attempts(&self, ready: Vec<ReadyDelivery>) {
        let mut in_flight = self.in_flight.lock().await;
        let mut queue = lock(&self.ready.queue);
        for delivery in ready {
            if queue.len() >= READY_LIMIT {
                // Still pending in the log: the worker's next query finds it.
                self.ready.check_log();
                break;
            }
            let key = (
                delivery.due.event_unique_id.clone(),
                delivery.due.endpoint_id.clone(),
            );
            if in_flight.insert(key) {
                queue.push_back(delivery);
            }
        }
    }
}
