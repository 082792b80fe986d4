//! The in-memory index of a file log: where each event's lines are, and what queries filter on.
//! Bodies stay on disk; the index holds a few dozen bytes per event and per delivery.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::segment::{Day, EventSummary, day_of};
use crate::store::query::{LogFilter, Position};
use crate::store::record::{AttemptRecord, DeliveryState, DueDelivery, aggregate_status};

/// Interns repeated strings (endpoint ids, URLs, event types) as small numbers.
#[derive(Debug, Default)]
struct Interner {
    names: Vec<Arc<str>>,
    numbers: HashMap<Arc<str>, u32>,
}

impl Interner {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&number) = self.numbers.get(name) {
            return number;
        }
        let number = self.names.len() as u32;
        let name: Arc<str> = name.into();
        self.names.push(name.clone());
        self.numbers.insert(name, number);
        number
    }

    fn lookup(&self, name: &str) -> Option<u32> {
        self.numbers.get(name).copied()
    }

    fn name(&self, number: u32) -> &str {
        self.names.get(number as usize).map_or("", |name| name)
    }
}

#[derive(Debug)]
struct IndexedDelivery {
    endpoint: u32,
    url: u32,
    state: DeliveryState,
    next_attempt_at: Option<DateTime<Utc>>,
    attempts: u32,
}

#[derive(Debug)]
pub(super) struct IndexedEvent {
    id: Arc<str>,
    pub(super) position: Position,
    pub(super) day: Day,
    pub(super) offset: u64,
    event_type: u32,
    is_test_event: bool,
    deliveries: Vec<IndexedDelivery>,
    pub(super) attempt_offsets: Vec<u64>,
}

/// Where to read one event from.
#[derive(Clone, Debug)]
pub(super) struct EventLocation {
    pub(super) position: Position,
    pub(super) day: Day,
    pub(super) offset: u64,
    pub(super) attempt_offsets: Vec<u64>,
}

impl IndexedEvent {
    fn status(&self) -> DeliveryState {
        aggregate_status(self.deliveries.iter().map(|d| d.state))
    }

    fn location(&self) -> EventLocation {
        EventLocation {
            position: self.position,
            day: self.day,
            offset: self.offset,
            attempt_offsets: self.attempt_offsets.clone(),
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct SegmentIndex {
    /// Bytes of complete lines in the file.
    pub(super) len: u64,
    /// The segment's events in log order (timestamp, then append order).
    events: BTreeMap<Position, u32>,
}

/// A slot number in [`Index::slots`].
pub(super) type Slot = u32;

#[derive(Debug, Default)]
pub(super) struct Index {
    slots: Vec<Option<IndexedEvent>>,
    free: Vec<Slot>,
    by_id: HashMap<Arc<str>, Slot>,
    pub(super) segments: BTreeMap<Day, SegmentIndex>,
    /// Pending deliveries by due time: (due, slot, delivery index).
    pending: BTreeSet<(DateTime<Utc>, Slot, u32)>,
    endpoints: Interner,
    urls: Interner,
    event_types: Interner,
    appended: u64,
}

impl Index {
    pub(super) fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    pub(super) fn segment_len(&self, day: Day) -> u64 {
        self.segments.get(&day).map_or(0, |segment| segment.len)
    }

    pub(super) fn set_segment_len(&mut self, day: Day, len: u64) {
        self.segments.entry(day).or_default().len = len;
    }

    /// Adds an event read from (or just written to) `day`'s segment at `offset`. Returns
    /// `false` if its id is already indexed.
    pub(super) fn insert(&mut self, summary: EventSummary, day: Day, offset: u64) -> bool {
        if self.by_id.contains_key(summary.event_unique_id.as_str()) {
            return false;
        }
        self.appended += 1;
        let position = Position::new(summary.timestamp_iso_string, self.appended);
        let id: Arc<str> = summary.event_unique_id.into();
        let deliveries = summary
            .deliveries
            .iter()
            .map(|d| IndexedDelivery {
                endpoint: self.endpoints.intern(&d.endpoint_id),
                url: self.urls.intern(&d.url),
                state: d.state,
                next_attempt_at: d.next_attempt_at,
                attempts: 0,
            })
            .collect();
        let event = IndexedEvent {
            id: id.clone(),
            position,
            day,
            offset,
            event_type: self.event_types.intern(&summary.event_type),
            is_test_event: summary.is_test_event,
            deliveries,
            attempt_offsets: Vec::new(),
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(event);
                slot
            }
            None => {
                self.slots.push(Some(event));
                (self.slots.len() - 1) as Slot
            }
        };
        self.by_id.insert(id, slot);
        self.segments
            .entry(day)
            .or_default()
            .events
            .insert(position, slot);
        self.schedule_all(slot);
        true
    }

    fn schedule_all(&mut self, slot: Slot) {
        if let Some(event) = self.event(slot) {
            let due: Vec<_> = event
                .deliveries
                .iter()
                .enumerate()
                .filter(|(_, d)| d.state == DeliveryState::Pending)
                .filter_map(|(i, d)| d.next_attempt_at.map(|at| (at, slot, i as u32)))
                .collect();
            self.pending.extend(due);
        }
    }

    fn event(&self, slot: Slot) -> Option<&IndexedEvent> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    pub(super) fn slot_of(&self, id: &str) -> Option<Slot> {
        self.by_id.get(id).copied()
    }

    pub(super) fn day_of_slot(&self, slot: Slot) -> Option<Day> {
        self.event(slot).map(|event| event.day)
    }

    /// The index of the delivery to `endpoint_id`, if the event has one.
    pub(super) fn delivery_index(&self, slot: Slot, endpoint_id: &str) -> Option<usize> {
        let endpoint = self.endpoints.lookup(endpoint_id)?;
        self.event(slot)?
            .deliveries
            .iter()
            .position(|d| d.endpoint == endpoint)
    }

    /// Applies an attempt written at `offset`.
    pub(super) fn apply_attempt(&mut self, slot: Slot, record: &AttemptRecord, offset: u64) {
        let Some(index) = self.delivery_index(slot, &record.endpoint_id) else {
            return;
        };
        let Some(event) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        event.attempt_offsets.push(offset);
        let delivery = &mut event.deliveries[index];
        if let Some(at) = delivery.next_attempt_at.take() {
            self.pending.remove(&(at, slot, index as u32));
        }
        delivery.attempts += 1;
        delivery.state = record.state;
        if record.state == DeliveryState::Pending {
            delivery.next_attempt_at = record.next_attempt_at;
            if let Some(at) = record.next_attempt_at {
                self.pending.insert((at, slot, index as u32));
            }
        }
    }

    pub(super) fn location(&self, id: &str) -> Option<EventLocation> {
        self.event(self.slot_of(id)?).map(IndexedEvent::location)
    }

    pub(super) fn due(&self, now: DateTime<Utc>, limit: usize) -> Vec<DueDelivery> {
        self.pending
            .iter()
            .take_while(|(at, _, _)| *at <= now)
            .filter_map(|&(at, slot, index)| {
                let event = self.event(slot)?;
                let delivery = event.deliveries.get(index as usize)?;
                Some(DueDelivery {
                    event_unique_id: event.id.to_string(),
                    endpoint_id: self.endpoints.name(delivery.endpoint).to_owned(),
                    url: self.urls.name(delivery.url).to_owned(),
                    next_attempt_at: at,
                    attempts_made: delivery.attempts as usize,
                })
            })
            .take(limit)
            .collect()
    }

    fn matches(&self, event: &IndexedEvent, filter: &LogFilter) -> bool {
        filter.matches_parts(
            DateTime::from_timestamp_micros(event.position.micros).unwrap_or_default(),
            self.event_types.name(event.event_type),
            event.is_test_event,
            || event.status(),
        )
    }

    /// Days whose segment may hold events in the filter's time range.
    fn days(&self, filter: &LogFilter) -> impl DoubleEndedIterator<Item = (&Day, &SegmentIndex)> {
        let first = filter.from.map_or(Day::MIN, day_of);
        let last = filter.to.map_or(Day::MAX, day_of);
        self.segments.range(first..=last)
    }

    /// Up to `limit` matching events strictly before `before` in log order, newest first.
    pub(super) fn newest_first(
        &self,
        filter: &LogFilter,
        before: Option<Position>,
        limit: usize,
    ) -> Vec<EventLocation> {
        let mut found = Vec::new();
        for (_, segment) in self.days(filter).rev() {
            let events = match before {
                Some(before) => segment.events.range(..before),
                None => segment.events.range(..),
            };
            for (_, &slot) in events.rev() {
                if found.len() == limit {
                    return found;
                }
                if let Some(event) = self.event(slot).filter(|e| self.matches(e, filter)) {
                    found.push(event.location());
                }
            }
        }
        found
    }

    /// Up to `limit` matching events strictly after `after` in log order, oldest first.
    pub(super) fn oldest_first(
        &self,
        filter: &LogFilter,
        after: Option<Position>,
        limit: usize,
    ) -> Vec<EventLocation> {
        let mut found = Vec::new();
        for (_, segment) in self.days(filter) {
            let events = match after {
                Some(after) => segment
                    .events
                    .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
                None => segment.events.range(..),
            };
            for (_, &slot) in events {
                if found.len() == limit {
                    return found;
                }
                if let Some(event) = self.event(slot).filter(|e| self.matches(e, filter)) {
                    found.push(event.location());
                }
            }
        }
        found
    }

    /// Forgets every event of `day`'s segment; returns how many there were.
    pub(super) fn remove_segment(&mut self, day: Day) -> u64 {
        let Some(segment) = self.segments.remove(&day) else {
            return 0;
        };
        for slot in segment.events.values() {
            if let Some(event) = self.slots.get_mut(*slot as usize).and_then(Option::take) {
                self.by_id.remove(&event.id);
                for (index, delivery) in event.deliveries.iter().enumerate() {
                    if let Some(at) = delivery.next_attempt_at {
                        self.pending.remove(&(at, *slot, index as u32));
                    }
                }
                self.free.push(*slot);
            }
        }
        segment.events.len() as u64
    }
}
