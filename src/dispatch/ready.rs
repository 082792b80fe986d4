//! The ready queue: deliveries this dispatcher holds claims on, waiting for a runner.
//!
//! The log hands out work by claims ([`LogStore::claim_due`](crate::LogStore::claim_due)), so
//! several dispatchers, in one process or many, never attempt the same delivery at once. A
//! just-emitted event is claimed in the transaction that stores it and queued here with its
//! body, so its first attempt needs no read back from the log. Everything else (retries, work
//! an earlier run or a dead instance left) the worker claims from the log on its poll ticks, or
//! sooner when the queue runs low, no more than the runners can start while the claims last.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hashbrown::HashMap;

use super::{Inner, lock};
use crate::store::{ClaimToken, DueDelivery};

/// A claimed delivery with the body it sends (and whether it is a test event): a just-emitted
/// one's from memory, one claimed from the log with the bodies of its whole claim. `None` only
/// if that read failed: the body is then read when the delivery is attempted.
#[derive(Debug)]
pub(super) struct ReadyDelivery {
    pub(super) due: DueDelivery,
    pub(super) body: Option<(Arc<str>, bool)>,
}

/// The queue, and whether the worker should claim more from the log.
#[derive(Debug)]
pub(super) struct ReadyQueue {
    queue: std::sync::Mutex<Queued>,
    /// Wakes a runner waiting for work: one per queued delivery, all of them at a stop.
    pub(super) work: tokio::sync::Notify,
    claim_more: AtomicBool,
    /// Whether the last claim filled the queue's room, so more may be due: then a runner that
    /// finishes asks for the next claim at once instead of waiting for the poll tick.
    backlog: AtomicBool,
    /// The most requests to one endpoint at once (`max_in_flight_per_endpoint`).
    in_flight_cap: usize,
}

/// Claimed deliveries waiting for a runner, and how many this dispatcher holds per endpoint
/// (queued or in flight): the log caps what it hands out per endpoint, and a just-emitted
/// event's deliveries are claimed only for endpoints under the same cap here.
#[derive(Debug, Default)]
struct Queued {
    /// Each endpoint's waiting deliveries and requests in flight, by its id.
    lanes: HashMap<Arc<str>, Lane>,
    /// The endpoints with a delivery waiting and a request place free, in the order they take
    /// turns: a runner takes the first one's oldest delivery, and the endpoint goes to the back
    /// if it can send more. Finding work is then one step, however many endpoints are at their
    /// cap.
    turns: VecDeque<Arc<str>>,
    /// Deliveries waiting, across endpoints.
    waiting: usize,
    held: HashMap<String, usize>,
    /// Of those, the deliveries whose request is over and whose outcome is being logged: their
    /// claims end with the log write, but they no longer take a place, so an event emitted
    /// meanwhile may still be claimed as it is stored.
    settling: HashMap<String, usize>,
    /// Endpoints that reached the cap with work left in the log: when one of their attempts
    /// ends, the log is asked at once for the next, not at the next poll tick.
    capped: hashbrown::HashSet<String>,
}

/// One endpoint's part of the queue.
#[derive(Debug)]
struct Lane {
    /// The endpoint's id, shared with the queue's turns and the runners' places.
    id: Arc<str>,
    /// Oldest first.
    waiting: VecDeque<ReadyDelivery>,
    /// Deliveries taken by a runner until their request is over.
    in_flight: usize,
    /// Whether the endpoint is in [`Queued::turns`].
    has_turn: bool,
}

impl Lane {
    /// Whether the endpoint should join [`Queued::turns`]: it is not there, has a delivery
    /// waiting and a request place free under `in_flight_cap`.
    fn wants_turn(&self, in_flight_cap: usize) -> bool {
        !self.has_turn && !self.waiting.is_empty() && self.in_flight < in_flight_cap
    }
}

impl Queued {
    /// Gives back one of the endpoint's places; whether it is time to claim its next ones
    /// (see [`ReadyQueue::release`]).
    fn release(&mut self, endpoint_id: &str, cap: usize) -> bool {
        let left = match self.held.get_mut(endpoint_id) {
            Some(held) => {
                *held = held.saturating_sub(1);
                *held
            }
            None => 0,
        };
        if left == 0 {
            self.held.remove(endpoint_id);
        }
        left <= cap / 2 && self.capped.remove(endpoint_id)
    }

    /// Queues `delivery` behind its endpoint's others.
    fn push(&mut self, delivery: ReadyDelivery, in_flight_cap: usize) {
        let lane = self
            .lanes
            .entry_ref(delivery.due.endpoint_id.as_str())
            .or_insert_with_key(|id| Lane {
                id: Arc::from(id),
                waiting: VecDeque::new(),
                in_flight: 0,
                has_turn: false,
            });
        lane.waiting.push_back(delivery);
        self.waiting += 1;
        if lane.wants_turn(in_flight_cap) {
            lane.has_turn = true;
            self.turns.push_back(lane.id.clone());
        }
    }
}

impl ReadyQueue {
    /// An empty queue, for endpoints taking at most `in_flight_cap` requests at once; the log
    /// is checked first, for deliveries left by an earlier run.
    pub(super) fn new(in_flight_cap: usize) -> Self {
        Self {
            queue: std::sync::Mutex::new(Queued::default()),
            work: tokio::sync::Notify::new(),
            claim_more: AtomicBool::new(true),
            backlog: AtomicBool::new(false),
            in_flight_cap: in_flight_cap.max(1),
        }
    }

    /// The oldest waiting delivery of the endpoint whose turn it is, among those with fewer
    /// than their cap of requests in flight, and that endpoint's id; counted as in flight
    /// until [`finished`](Self::finished).
    pub(super) fn pop(&self) -> Option<(ReadyDelivery, Arc<str>)> {
        let mut queue = lock(&self.queue);
        let queued = &mut *queue;
        while let Some(endpoint) = queued.turns.pop_front() {
            let Some(lane) = queued.lanes.get_mut(&endpoint) else {
                continue;
            };
            lane.has_turn = false;
            let Some(ready) = lane.waiting.pop_front() else {
                continue;
            };
            lane.in_flight += 1;
            queued.waiting -= 1;
            if lane.wants_turn(self.in_flight_cap) {
                lane.has_turn = true;
                queued.turns.push_back(endpoint.clone());
            }
            return Some((ready, endpoint));
        }
        None
    }

    /// The request of a delivery taken with [`pop`](Self::pop) is over: a delivery of its
    /// endpoint that waited for the place may go.
    pub(super) fn finished(&self, endpoint_id: &str) {
        let mut queue = lock(&self.queue);
        let queued = &mut *queue;
        *queued.settling.entry_ref(endpoint_id).or_default() += 1;
        if let Some(lane) = queued.lanes.get_mut(endpoint_id) {
            lane.in_flight = lane.in_flight.saturating_sub(1);
            if lane.wants_turn(self.in_flight_cap) {
                lane.has_turn = true;
                queued.turns.push_back(lane.id.clone());
            }
            if lane.in_flight == 0 && lane.waiting.is_empty() {
                queued.lanes.remove(endpoint_id);
            }
        }
        let work_left = !queued.turns.is_empty();
        drop(queue);
        if work_left {
            self.work.notify_one();
        }
    }

    pub(super) fn len(&self) -> usize {
        lock(&self.queue).waiting
    }

    /// Queues deliveries claimed from the log, and wakes a runner for each. Every endpoint
    /// that now holds `cap` (whether from this claim or from emits that took the places) may
    /// have more waiting in the log.
    pub(super) fn extend(&self, ready: impl IntoIterator<Item = ReadyDelivery>, cap: usize) {
        let mut queue = lock(&self.queue);
        let before = queue.waiting;
        for delivery in ready {
            *queue
                .held
                .entry_ref(delivery.due.endpoint_id.as_str())
                .or_default() += 1;
            queue.push(delivery, self.in_flight_cap);
        }
        let Queued { held, capped, .. } = &mut *queue;
        capped.extend(
            held.iter()
                .filter(|(_, held)| **held >= cap)
                .map(|(endpoint, _)| endpoint.clone()),
        );
        self.wake_runners(queue, before);
    }

    /// Queues deliveries reserved with [`reserve`](Self::reserve), and wakes a runner for
    /// each.
    pub(super) fn extend_reserved(&self, ready: impl IntoIterator<Item = ReadyDelivery>) {
        let mut queue = lock(&self.queue);
        let before = queue.waiting;
        for delivery in ready {
            queue.push(delivery, self.in_flight_cap);
        }
        self.wake_runners(queue, before);
    }

    /// Wakes a runner for each delivery queued after the first `before`.
    fn wake_runners(&self, queue: std::sync::MutexGuard<'_, Queued>, before: usize) {
        let added = queue.waiting.saturating_sub(before);
        drop(queue);
        for _ in 0..added {
            self.work.notify_one();
        }
    }

    /// Reserves a place for each endpoint holding fewer than `cap` deliveries waiting or in
    /// flight; returns those.
    pub(super) fn reserve<'a>(&self, endpoint_ids: &'a [String], cap: usize) -> Vec<&'a str> {
        let mut queue = lock(&self.queue);
        let mut reserved = Vec::with_capacity(endpoint_ids.len());
        for id in endpoint_ids {
            let settling = queue.settling.get(id.as_str()).copied().unwrap_or(0);
            let held = queue.held.entry_ref(id.as_str()).or_default();
            if held.saturating_sub(settling) < cap {
                *held += 1;
                reserved.push(id.as_str());
            }
        }
        reserved
    }

    /// Notes that these endpoints have a delivery waiting in the log for a place. Returns
    /// whether one was not known to: then the worker must be told, otherwise the end of one
    /// of its attempts will.
    pub(super) fn waiting_in_log<'a>(
        &self,
        endpoint_ids: impl IntoIterator<Item = &'a str>,
    ) -> bool {
        let mut queue = lock(&self.queue);
        let mut news = false;
        for id in endpoint_ids {
            if !queue.capped.contains(id) {
                queue.capped.insert(id.to_owned());
                news = true;
            }
        }
        news
    }

    /// Gives back one place of each endpoint: a reservation unused, or a delivery drained at
    /// a shutdown. Nothing is claimed for them: the worker's next claim finds what waits.
    pub(super) fn release<'a>(&self, endpoint_ids: impl IntoIterator<Item = &'a str>) {
        let mut queue = lock(&self.queue);
        for id in endpoint_ids {
            queue.release(id, usize::MAX);
        }
    }

    /// The outcome of a request that [`finished`](Self::finished) is logged (or its attempt
    /// ended without one): its claim is over. As [`release`](Self::release) for its endpoint.
    pub(super) fn settled(&self, endpoint_id: &str, cap: usize) -> bool {
        let mut queue = lock(&self.queue);
        if let Some(settling) = queue.settling.get_mut(endpoint_id) {
            *settling -= 1;
            if *settling == 0 {
                queue.settling.remove(endpoint_id);
            }
        }
        queue.release(endpoint_id, cap)
    }

    /// How many deliveries this dispatcher holds, waiting or in flight.
    pub(super) fn held(&self) -> usize {
        let queue = lock(&self.queue);
        let settling: usize = queue.settling.values().sum();
        queue.held.values().sum::<usize>().saturating_sub(settling)
    }

    /// Takes every queued delivery out, for a shutdown: the tokens their claims are under.
    pub(super) fn drain_tokens(&self) -> HashSet<ClaimToken> {
        let mut queue = lock(&self.queue);
        let queued = &mut *queue;
        queued.turns.clear();
        queued.waiting = 0;
        let mut drained = Vec::new();
        queued.lanes.retain(|_, lane| {
            lane.has_turn = false;
            drained.extend(lane.waiting.drain(..));
            lane.in_flight > 0
        });
        drop(queue);
        self.release(drained.iter().map(|ready| ready.due.endpoint_id.as_str()));
        drained.into_iter().map(|ready| ready.due.claim).collect()
    }

    /// Wakes every runner, for a stop.
    pub(super) fn stop_runners(&self) {
        self.work.notify_waiters();
    }

    /// Asks the worker to claim from the log.
    pub(super) fn claim_more(&self) {
        self.claim_more.store(true, Ordering::SeqCst);
    }

    /// Notes whether the last claim filled the room it had.
    pub(super) fn set_backlog(&self, backlog: bool) {
        self.backlog.store(backlog, Ordering::SeqCst);
    }

    /// Whether the last claim filled the room it had.
    pub(super) fn backlog(&self) -> bool {
        self.backlog.load(Ordering::SeqCst)
    }

    /// Whether a claim was asked for since the last one; clears the request.
    pub(super) fn take_claim_more(&self) -> bool {
        self.claim_more.swap(false, Ordering::SeqCst)
    }
}

impl Inner {
    /// Queues the first attempts of a just-emitted event, claimed in the transaction that
    /// stored it, for endpoints reserved with [`ReadyQueue::reserve`].
    pub(super) fn queue_first_attempts(
        &self,
        deliveries: impl Iterator<Item = DueDelivery>,
        body: &Arc<str>,
        is_test_event: bool,
    ) {
        self.ready
            .extend_reserved(deliveries.map(|due| ReadyDelivery {
                due,
                body: Some((body.clone(), is_test_event)),
            }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(event: &str, endpoint: &str) -> ReadyDelivery {
        ReadyDelivery {
            due: DueDelivery {
                event_unique_id: event.into(),
                endpoint_id: endpoint.into(),
                url: format!("https://{endpoint}.example.com/hooks"),
                next_attempt_at: chrono::DateTime::UNIX_EPOCH,
                attempts_made: 0,
                claim: ClaimToken::new(),
                claimed_until: chrono::DateTime::UNIX_EPOCH,
            },
            body: None,
        }
    }

    fn popped(queue: &ReadyQueue) -> Option<String> {
        queue
            .pop()
            .map(|(ready, _)| format!("{}/{}", ready.due.endpoint_id, ready.due.event_unique_id))
    }

    #[test]
    fn endpoints_take_turns_oldest_first_and_each_stays_under_its_cap() {
        let queue = ReadyQueue::new(2);
        let waiting = ["1", "2", "3", "4"].map(|event| delivery(event, "busy"));
        queue.extend_reserved(waiting.into_iter().chain([delivery("5", "quiet")]));
        assert_eq!(queue.len(), 5);
        assert_eq!(popped(&queue).as_deref(), Some("busy/1"));
        assert_eq!(popped(&queue).as_deref(), Some("quiet/5"));
        assert_eq!(popped(&queue).as_deref(), Some("busy/2"));
        assert_eq!(
            popped(&queue),
            None,
            "busy has 2 requests in flight, its cap"
        );
        assert_eq!(queue.len(), 2);
        queue.finished("quiet");
        assert_eq!(
            popped(&queue),
            None,
            "a place of another endpoint frees none of busy's"
        );
        queue.finished("busy");
        assert_eq!(popped(&queue).as_deref(), Some("busy/3"));
        assert_eq!(popped(&queue), None);
        queue.finished("busy");
        queue.finished("busy");
        assert_eq!(popped(&queue).as_deref(), Some("busy/4"));
        assert_eq!(popped(&queue), None);
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn a_delivery_whose_outcome_is_being_logged_leaves_its_place_to_a_new_event() {
        let queue = ReadyQueue::new(1);
        let crm = ["crm".to_owned()];
        assert_eq!(queue.reserve(&crm, 1), ["crm"]);
        assert!(queue.reserve(&crm, 1).is_empty(), "crm holds its cap of 1");
        queue.extend_reserved([delivery("1", "crm")]);
        assert!(queue.pop().is_some());
        queue.finished("crm");
        assert_eq!(queue.held(), 0, "the request is over");
        assert_eq!(
            queue.reserve(&crm, 1),
            ["crm"],
            "an event emitted while the outcome is logged is claimed as it is stored"
        );
        queue.settled("crm", 1);
        assert_eq!(queue.held(), 1, "only the new event's claim is left");
        assert!(queue.reserve(&crm, 1).is_empty());
    }

    #[test]
    fn a_drained_queue_keeps_counting_requests_still_in_flight() {
        let queue = ReadyQueue::new(1);
        queue.extend_reserved([delivery("1", "a"), delivery("2", "a"), delivery("3", "b")]);
        assert_eq!(popped(&queue).as_deref(), Some("a/1"));
        assert_eq!(queue.drain_tokens().len(), 2);
        assert_eq!(queue.len(), 0);
        queue.extend_reserved([delivery("4", "a")]);
        assert_eq!(popped(&queue), None, "a/1 is still in flight");
        queue.finished("a");
        assert_eq!(popped(&queue).as_deref(), Some("a/4"));
    }
}
