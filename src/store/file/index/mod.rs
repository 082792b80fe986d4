//! The in-memory index of a file log: a fixed 56-byte entry per event, event ids as 64-bit
//! hashes, and full detail (id, endpoint, URL, next attempt) only for pending deliveries.
//! Bodies and attempts stay on disk; the sidecar files say where.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::DateTime;

mod hash;
mod pending;

pub(in crate::store::file) use self::hash::MixKey;
use self::pending::PendingDelivery;
use super::segment::{Day, day_of};
use super::sidecar::{EVENT_IS_TEST, kind_of_code};
use crate::store::query::{LogFilter, Position};
use crate::store::record::{DeliveryState, aggregate_status};

/// A slot number in [`Index::entries`].
pub(in crate::store::file) type Slot = u32;

/// Marks an id hash shared by several events: look the id up in [`Index::collided`].
const COLLIDED: Slot = Slot::MAX;

/// Delivery states kept in an entry's bits; an event with more keeps the rest aside.
const PACKED_STATES: usize = 32;

const REMOVED: u8 = 0x80;

/// One event.
#[derive(Clone, Copy, Debug)]
pub(in crate::store::file) struct Entry {
    pub(super) micros: i64,
    pub(super) seq: u64,
    pub(super) offset: u64,
    pub(super) id_hash: u64,
    /// Two bits per delivery (see `sidecar::state_code`), for the first [`PACKED_STATES`].
    states: u64,
    pub(super) day: Day,
    /// The event's record number in its sidecar; its attempts come after it.
    pub(super) record: u32,
    /// The record number of its last attempt (its own record number while it has none): a
    /// lookup reads the sidecar only between the two.
    pub(super) last_attempt: u32,
    pub(super) deliveries: u16,
    pub(super) type_code: u8,
    flags: u8,
}

impl Entry {
    pub(in crate::store::file) fn position(&self) -> Position {
        Position {
            micros: self.micros,
            seq: self.seq,
        }
    }

    pub(in crate::store::file) fn is_test_event(&self) -> bool {
        self.flags & EVENT_IS_TEST != 0
    }
}

#[derive(Debug, Default)]
pub(in crate::store::file) struct SegmentIndex {
    /// Bytes of complete lines in the file.
    pub(super) len: u64,
    /// Records in its sidecar.
    pub(super) records: u32,
    /// The segment's events in log order (timestamp, then append order).
    order: Vec<Slot>,
    /// The records, for a reader whose sidecar on disk is missing or behind.
    pub(super) unsaved: Option<Arc<Vec<super::sidecar::SideRecord>>>,
}

#[derive(Debug, Default)]
pub(in crate::store::file) struct Index {
    entries: Vec<Entry>,
    free: Vec<Slot>,
    by_hash: HashMap<u64, Slot, MixKey>,
    collided: HashMap<String, Slot>,
    /// States of deliveries past the first [`PACKED_STATES`] of an event.
    extra_states: HashMap<Slot, Vec<DeliveryState>>,
    pub(super) segments: BTreeMap<Day, SegmentIndex>,
    /// Pending deliveries by due time: (due µs, slot, delivery).
    pending: BTreeSet<(i64, Slot, u16)>,
    details: HashMap<(Slot, u16), PendingDelivery, MixKey>,
    strings: HashMap<Arc<str>, ()>,
    /// The strings interned last: nearly every event names the same few endpoints.
    recent_strings: [Option<Arc<str>>; 4],
    appended: u64,
}

/// Why an event could not be indexed.
pub(in crate::store::file) enum Refused {
    /// An event with the same id is already indexed.
    Duplicate(String),
}

impl Index {
    pub(in crate::store::file) fn reserve(&mut self, events: usize) {
        self.entries.reserve(events);
        self.by_hash.reserve(events);
    }

    /// The slot of the event with this id's hash. If `id` itself is not indexed, this may be
    /// another event with the same 64-bit hash: callers that read the event compare its id.
    pub(in crate::store::file) fn slot_of(&self, id: &str) -> Option<Slot> {
        self.slot_of_hashed(super::sidecar::id_hash(id), id)
    }

    /// [`Self::slot_of`] for an id whose hash the caller has already computed.
    pub(in crate::store::file) fn slot_of_hashed(&self, id_hash: u64, id: &str) -> Option<Slot> {
        match self.by_hash.get(&id_hash) {
            Some(&COLLIDED) => self.collided.get(id).copied(),
            found => found.copied(),
        }
    }

    pub(in crate::store::file) fn entry(&self, slot: Slot) -> Option<&Entry> {
        self.entries
            .get(slot as usize)
            .filter(|e| e.flags & REMOVED == 0)
    }

    pub(in crate::store::file) fn segment_len(&self, day: Day) -> u64 {
        self.segments.get(&day).map_or(0, |segment| segment.len)
    }

    pub(in crate::store::file) fn segment_records(&self, day: Day) -> u32 {
        self.segments.get(&day).map_or(0, |segment| segment.records)
    }

    pub(in crate::store::file) fn set_segment_end(&mut self, day: Day, len: u64, records: u32) {
        let segment = self.segments.entry(day).or_default();
        segment.len = len;
        segment.records = records;
    }

    /// Indexes an event. `id` is its id when known; `read_id` reads the id of the event at a
    /// (day, offset), to tell a duplicate from two ids that share a hash.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::store::file) fn insert(
        &mut self,
        id: Option<&str>,
        id_hash: u64,
        micros: i64,
        day: Day,
        offset: u64,
        record: u32,
        deliveries: u16,
        type_code: u8,
        flags: u8,
        read_id: &mut dyn FnMut(Day, u64) -> Option<String>,
    ) -> Result<Slot, Refused> {
        // The id is copied only when another id has the same hash.
        let mut new_id: Option<String> = None;
        let existing = self.by_hash.get(&id_hash).copied();
        if let Some(existing) = existing {
            let new_id = new_id.insert(
                id.map(str::to_owned)
                    .or_else(|| read_id(day, offset))
                    .unwrap_or_default(),
            );
            if existing == COLLIDED {
                if self.collided.contains_key(new_id.as_str()) {
                    return Err(Refused::Duplicate(new_id.clone()));
                }
            } else {
                let entry = self.entries[existing as usize];
                let old_id = read_id(entry.day, entry.offset).unwrap_or_default();
                if old_id == *new_id {
                    return Err(Refused::Duplicate(old_id));
                }
                self.collided.insert(old_id, existing);
            }
        }
        self.appended += 1;
        let entry = Entry {
            micros,
            seq: self.appended,
            offset,
            id_hash,
            states: 0,
            day,
            record,
            last_attempt: record,
            deliveries,
            type_code,
            flags: flags & EVENT_IS_TEST,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.entries[slot as usize] = entry;
                slot
            }
            None => {
                self.entries.push(entry);
                (self.entries.len() - 1) as Slot
            }
        };
        match (existing, new_id) {
            (Some(_), Some(id)) => {
                self.collided.insert(id, slot);
                self.by_hash.insert(id_hash, COLLIDED);
            }
            _ => {
                self.by_hash.insert(id_hash, slot);
            }
        }
        let order = &mut self.segments.entry(day).or_default().order;
        let position = entry.position();
        let entries = &self.entries;
        // Events nearly always arrive in time order, so this is almost always a push.
        match order.last() {
            Some(last) if entries[*last as usize].position() > position => {
                let at = order.partition_point(|s| entries[*s as usize].position() <= position);
                order.insert(at, slot);
            }
            _ => order.push(slot),
        }
        Ok(slot)
    }

    pub(in crate::store::file) fn state(&self, slot: Slot, delivery: u16) -> DeliveryState {
        let index = usize::from(delivery);
        if index < PACKED_STATES {
            let bits = (self.entries[slot as usize].states >> (2 * index)) & 3;
            super::sidecar::state_of_code(bits as u8)
        } else {
            self.extra_states
                .get(&slot)
                .and_then(|states| states.get(index - PACKED_STATES).copied())
                .unwrap_or(DeliveryState::Pending)
        }
    }

    pub(in crate::store::file) fn set_state(
        &mut self,
        slot: Slot,
        delivery: u16,
        state: DeliveryState,
    ) {
        let index = usize::from(delivery);
        if index < PACKED_STATES {
            let entry = &mut self.entries[slot as usize];
            let code = u64::from(super::sidecar::state_code(state));
            entry.states = (entry.states & !(3 << (2 * index))) | (code << (2 * index));
        } else {
            let deliveries = usize::from(self.entries[slot as usize].deliveries);
            let states = self.extra_states.entry(slot).or_insert_with(|| {
                vec![DeliveryState::Pending; deliveries.saturating_sub(PACKED_STATES)]
            });
            if let Some(place) = states.get_mut(index - PACKED_STATES) {
                *place = state;
            }
        }
    }

    /// The event's overall status.
    pub(in crate::store::file) fn status(&self, slot: Slot) -> DeliveryState {
        let deliveries = self.entries[slot as usize].deliveries;
        aggregate_status((0..deliveries).map(|d| self.state(slot, d)))
    }

    fn matches(&self, slot: Slot, filter: &LogFilter) -> bool {
        let entry = &self.entries[slot as usize];
        filter.matches_parts(
            DateTime::from_timestamp_micros(entry.micros).unwrap_or_default(),
            kind_of_code(entry.type_code).map_or("", |kind| kind.as_str()),
            entry.is_test_event(),
            || self.status(slot),
        )
    }

    /// Days whose segment may hold events in the filter's time range.
    fn days(&self, filter: &LogFilter) -> impl DoubleEndedIterator<Item = (&Day, &SegmentIndex)> {
        let first = filter.from.map_or(Day::MIN, day_of);
        let last = filter.to.map_or(Day::MAX, day_of);
        self.segments.range(first..=last)
    }

    /// Up to `limit` matching events strictly before `before` in log order, newest first.
    pub(in crate::store::file) fn newest_first(
        &self,
        filter: &LogFilter,
        before: Option<Position>,
        limit: usize,
    ) -> Vec<Entry> {
        let mut found = Vec::new();
        for (_, segment) in self.days(filter).rev() {
            let end = before.map_or(segment.order.len(), |before| {
                segment
                    .order
                    .partition_point(|s| self.entries[*s as usize].position() < before)
            });
            for &slot in segment.order[..end].iter().rev() {
                if found.len() == limit {
                    return found;
                }
                if self.matches(slot, filter) {
                    found.push(self.entries[slot as usize]);
                }
            }
        }
        found
    }

    /// Forgets every event of `day`'s segment; returns how many there were.
    pub(in crate::store::file) fn remove_segment(&mut self, day: Day) -> u64 {
        let Some(segment) = self.segments.remove(&day) else {
            return 0;
        };
        for &slot in &segment.order {
            let entry = &mut self.entries[slot as usize];
            entry.flags |= REMOVED;
            let (hash, deliveries) = (entry.id_hash, entry.deliveries);
            if self.by_hash.get(&hash) == Some(&slot) {
                self.by_hash.remove(&hash);
            }
            for delivery in 0..deliveries {
                if let Some(detail) = self.details.remove(&(slot, delivery)) {
                    self.pending.remove(&(detail.next_micros, slot, delivery));
                }
            }
            self.extra_states.remove(&slot);
            self.free.push(slot);
        }
        if !self.collided.is_empty() {
            self.collided
                .retain(|_, slot| !segment.order.contains(slot));
        }
        segment.order.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::{Index, Refused};
    use crate::store::file::sidecar::id_hash;

    /// Inserts an event whose id hash is `hash`, at line offset `offset` of day 0.
    fn insert(
        index: &mut Index,
        id: &str,
        hash: u64,
        offset: u64,
        ids_on_disk: &[(u64, &str)],
    ) -> Result<u32, Refused> {
        let mut read_id = |_day, at: u64| {
            ids_on_disk
                .iter()
                .find(|(offset, _)| *offset == at)
                .map(|(_, id)| (*id).to_owned())
        };
        index.insert(Some(id), hash, 0, 0, offset, 0, 1, 1, 0, &mut read_id)
    }

    #[test]
    fn two_ids_sharing_a_hash_are_both_kept_and_a_real_duplicate_is_refused() {
        let mut index = Index::default();
        let disk = [(0, "first"), (100, "second")];
        let shared = id_hash("first");
        let first = insert(&mut index, "first", shared, 0, &disk).ok().unwrap();
        // "second" is given the same hash, as a 64-bit collision would.
        let second = insert(&mut index, "second", shared, 100, &disk)
            .ok()
            .unwrap();
        assert_ne!(first, second);
        assert_eq!(
            index.slot_of("first"),
            Some(first),
            "the first is still found"
        );
        assert_eq!(index.collided.get("second"), Some(&second));
        let again = insert(&mut index, "first", shared, 200, &disk);
        assert!(matches!(again, Err(Refused::Duplicate(id)) if id == "first"));
    }
}
