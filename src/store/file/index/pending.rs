//! Pending deliveries: the only per-delivery detail the index keeps, and the due queue.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Index, Slot};
use crate::store::file::segment::EventSummary;
use crate::store::record::{DeliveryState, DueDelivery};

/// A pending delivery: everything the dispatcher needs to attempt it.
#[derive(Debug)]
pub(super) struct PendingDelivery {
    event_unique_id: Arc<str>,
    endpoint_id: Arc<str>,
    url: Arc<str>,
    pub(super) next_micros: i64,
    attempts: u32,
}

impl Index {
    fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some(known) = self.recent_strings.iter().flatten().find(|s| &***s == text) {
            return known.clone();
        }
        let interned = match self.strings.get_key_value(text) {
            Some((known, ())) => known.clone(),
            None => {
                let text: Arc<str> = text.into();
                self.strings.insert(text.clone(), ());
                text
            }
        };
        self.recent_strings.rotate_right(1);
        self.recent_strings[0] = Some(interned.clone());
        interned
    }

    /// Keeps the details of the event's pending deliveries, from its line's summary; `next`
    /// and `attempts` give what its attempts changed, per delivery.
    pub(in crate::store::file) fn track_pending(
        &mut self,
        slot: Slot,
        summary: &EventSummary,
        changed: &dyn Fn(u16) -> Option<(Option<i64>, u32)>,
    ) {
        for (index, delivery) in summary.deliveries.iter().enumerate() {
            let Ok(index) = u16::try_from(index) else {
                break;
            };
            if self.state(slot, index) != DeliveryState::Pending {
                continue;
            }
            let (next, attempts) = match changed(index) {
                Some((next, attempts)) => (next, attempts),
                None => (delivery.next_attempt_at.map(|at| at.timestamp_micros()), 0),
            };
            let Some(next_micros) = next else { continue };
            let detail = PendingDelivery {
                event_unique_id: summary.event_unique_id.as_str().into(),
                endpoint_id: self.intern(&delivery.endpoint_id),
                url: self.intern(&delivery.url),
                next_micros,
                attempts,
            };
            self.details.insert((slot, index), detail);
            self.pending.insert((next_micros, slot, index));
        }
    }

    /// The index of the event's pending delivery to `endpoint_id`, if it has one.
    pub(in crate::store::file) fn pending_delivery(
        &self,
        slot: Slot,
        event_id: &str,
        endpoint_id: &str,
    ) -> Option<u16> {
        let deliveries = self.entry(slot)?.deliveries;
        (0..deliveries).find(|d| {
            self.details.get(&(slot, *d)).is_some_and(|detail| {
                &*detail.endpoint_id == endpoint_id && &*detail.event_unique_id == event_id
            })
        })
    }

    /// Applies an attempt (record number `record` of the event's sidecar): the delivery's new
    /// state and, while pending, its next due time.
    pub(in crate::store::file) fn apply_attempt(
        &mut self,
        slot: Slot,
        record: u32,
        delivery: u16,
        state: DeliveryState,
        next_micros: Option<i64>,
    ) {
        if let Some(entry) = self.entries.get_mut(slot as usize) {
            entry.last_attempt = entry.last_attempt.max(record);
        }
        self.set_state(slot, delivery, state);
        let Some(detail) = self.details.get_mut(&(slot, delivery)) else {
            return;
        };
        self.pending.remove(&(detail.next_micros, slot, delivery));
        detail.attempts += 1;
        match (state, next_micros) {
            (DeliveryState::Pending, Some(next)) => {
                detail.next_micros = next;
                self.pending.insert((next, slot, delivery));
            }
            _ => {
                self.details.remove(&(slot, delivery));
            }
        }
    }

    pub(in crate::store::file) fn due(&self, now: DateTime<Utc>, limit: usize) -> Vec<DueDelivery> {
        let now = now.timestamp_micros();
        self.pending
            .iter()
            .take_while(|(at, _, _)| *at <= now)
            .filter_map(|&(at, slot, delivery)| {
                let detail = self.details.get(&(slot, delivery))?;
                // `String::from`, not `to_string`, which would go through the formatter.
                Some(DueDelivery {
                    event_unique_id: String::from(&*detail.event_unique_id),
                    endpoint_id: String::from(&*detail.endpoint_id),
                    url: String::from(&*detail.url),
                    next_attempt_at: DateTime::from_timestamp_micros(at).unwrap_or_default(),
                    attempts_made: detail.attempts as usize,
                })
            })
            .take(limit)
            .collect()
    }
}
