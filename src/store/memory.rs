//! `MemoryLogStore`: the event log in memory, for tests and development.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hashbrown::HashMap;

use super::query::{Cursor, LogFilter, Page, Position};
use super::record::{
    AttemptRecord, ClaimRequest, ClaimToken, DeliveryState, DueDelivery, EndpointBacklog,
    EventBody, StoredEvent, lease_end,
};
use super::{Documents, Kind, LogError, LogStore, validate_new_entry};

/// An event log in memory. Nothing survives the process; use [`FileLogStore`](super::FileLogStore)
/// for that.
#[derive(Debug, Default)]
pub struct MemoryLogStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    by_position: BTreeMap<Position, StoredEvent>,
    positions: HashMap<String, Position>,
    pending: Pending,
    /// Endpoints and pending checkouts: (owner, JSON) by kind and key.
    documents: BTreeMap<(Kind, String), (Option<String>, String)>,
    /// Live and expired claims, by delivery, until recorded, released or taken over.
    claims: HashMap<(Position, usize), (ClaimToken, DateTime<Utc>)>,
    appended: u64,
}

impl State {
    /// The event and delivery index of a delivery, or the error naming what is missing.
    fn locate(&self, event_id: &str, endpoint_id: &str) -> Result<(Position, usize), LogError> {
        let position = *self
            .positions
            .get(event_id)
            .ok_or_else(|| LogError::UnknownEvent {
                id: event_id.to_owned(),
            })?;
        let index = self
            .by_position
            .get(&position)
            .and_then(|event| {
                event
                    .deliveries
                    .iter()
                    .position(|d| d.endpoint_id == endpoint_id)
            })
            .ok_or_else(|| LogError::UnknownDelivery {
                event_id: event_id.to_owned(),
                endpoint_id: endpoint_id.to_owned(),
            })?;
        Ok((position, index))
    }

    /// Whether a claim that has not ended at `now` holds the delivery.
    fn held(&self, key: &(Position, usize), now: DateTime<Utc>) -> bool {
        self.claims.get(key).is_some_and(|(_, until)| *until > now)
    }
}

/// A pending delivery as its endpoint's queue orders it: due time, event, delivery index.
type Due = (DateTime<Utc>, Position, usize);

/// Each endpoint's pending deliveries by due time, so finding due work does not walk every
/// event.
#[derive(Debug, Default)]
struct Pending(HashMap<String, BTreeSet<Due>>);

impl Pending {
    /// Notes a pending delivery of `endpoint`.
    fn add(&mut self, endpoint: &str, due: Due) {
        self.0.entry_ref(endpoint).or_default().insert(due);
    }

    /// Forgets a pending delivery of `endpoint`.
    fn remove(&mut self, endpoint: &str, due: Due) {
        if let Some(waiting) = self.0.get_mut(endpoint) {
            waiting.remove(&due);
            if waiting.is_empty() {
                self.0.remove(endpoint);
            }
        }
    }

    /// Each endpoint with pending deliveries, and those deliveries by due time.
    fn iter(&self) -> impl Iterator<Item = (&String, &BTreeSet<Due>)> {
        self.0.iter()
    }
}

/// How many events a scan copies out under the lock at a time.
const SCAN_CHUNK: usize = 256;

impl MemoryLogStore {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `event`, its pending deliveries to the endpoints named claimed until the time
    /// given, if any.
    fn insert(
        &self,
        event: StoredEvent,
        claim: Option<(DateTime<Utc>, &[&str])>,
    ) -> Result<Option<ClaimToken>, LogError> {
        validate_new_entry(&event)?;
        let mut state = self.lock();
        if state.positions.contains_key(&event.event_unique_id) {
            return Err(LogError::DuplicateEvent {
                id: event.event_unique_id,
            });
        }
        state.appended += 1;
        let position = Position::new(event.timestamp, state.appended);
        state
            .positions
            .insert(event.event_unique_id.clone(), position);
        let mut token = None;
        for (index, delivery) in event.deliveries.iter().enumerate() {
            if let (DeliveryState::Pending, Some(due)) = (delivery.state, delivery.next_attempt_at)
            {
                state
                    .pending
                    .add(&delivery.endpoint_id, (due, position, index));
                if let Some((until, endpoints)) = claim
                    && endpoints.contains(&delivery.endpoint_id.as_str())
                {
                    let token = token.get_or_insert_with(ClaimToken::new).clone();
                    state.claims.insert((position, index), (token, until));
                }
            }
        }
        state.by_position.insert(position, event);
        Ok(token)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update is applied whole before anything can panic, so poisoning is harmless.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl LogStore for MemoryLogStore {
    async fn append(&self, event: StoredEvent) -> Result<(), LogError> {
        self.insert(event, None).map(drop)
    }

    async fn append_claimed(
        &self,
        event: StoredEvent,
        now: DateTime<Utc>,
        lease: Duration,
        endpoint_ids: &[&str],
    ) -> Result<Option<ClaimToken>, LogError> {
        self.insert(event, Some((lease_end(now, lease), endpoint_ids)))
    }

    async fn claim_due(&self, request: &ClaimRequest) -> Result<Vec<DueDelivery>, LogError> {
        let mut state = self.lock();
        let now = request.now;
        let endpoint_of = |(position, index): (Position, usize)| {
            state
                .by_position
                .get(&position)
                .and_then(|event| event.deliveries.get(index))
                .map_or("", |delivery| delivery.endpoint_id.as_str())
        };
        // Each endpoint's live claims, against its cap.
        let mut room: HashMap<&str, usize> = HashMap::new();
        for (&key, (_, until)) in &state.claims {
            if *until > now {
                let held = room.entry(endpoint_of(key)).or_default();
                *held = held.saturating_add(1);
            }
        }
        // Each endpoint's earliest due, as many as it has room for, ranked turn by turn: the
        // endpoint holding the fewest claims first.
        let mut chosen: Vec<(usize, DateTime<Utc>, Position, usize)> = Vec::new();
        for (endpoint, waiting) in state.pending.iter() {
            if request.skip_endpoints.iter().any(|skip| skip == endpoint) {
                continue;
            }
            let held = room.get(endpoint.as_str()).copied().unwrap_or(0);
            let wanted = request.per_endpoint.saturating_sub(held).min(request.limit);
            let due = waiting
                .iter()
                .take_while(|(due, ..)| *due <= now)
                .filter(|(_, position, index)| !state.held(&(*position, *index), now))
                .take(wanted)
                .enumerate()
                .map(|(round, &(due, position, index))| (held + round, due, position, index));
            chosen.extend(due);
        }
        // The counts borrow endpoint ids from the state, which the claims below change.
        drop(room);
        chosen.sort_unstable();
        chosen.truncate(request.limit);
        let token = ClaimToken::new();
        let until = lease_end(now, request.lease);
        let mut claimed = Vec::with_capacity(chosen.len());
        for (_, due, position, index) in chosen {
            let Some(event) = state.by_position.get(&position) else {
                continue;
            };
            let Some(delivery) = event.deliveries.get(index) else {
                continue;
            };
            claimed.push(DueDelivery {
                event_unique_id: event.event_unique_id.clone(),
                endpoint_id: delivery.endpoint_id.clone(),
                url: delivery.url.clone(),
                next_attempt_at: due,
                attempts_made: delivery.attempts.len(),
                claim: token.clone(),
                claimed_until: until,
            });
            state
                .claims
                .insert((position, index), (token.clone(), until));
        }
        Ok(claimed)
    }

    async fn backlog(&self) -> Result<Vec<EndpointBacklog>, LogError> {
        let state = self.lock();
        let mut backlog: Vec<EndpointBacklog> = state
            .pending
            .iter()
            .map(|(endpoint, waiting)| EndpointBacklog {
                endpoint_id: endpoint.clone(),
                pending: waiting.len() as u64,
                oldest: waiting
                    .iter()
                    .map(|(_, position, _)| position.micros)
                    .min()
                    .and_then(DateTime::from_timestamp_micros)
                    .unwrap_or_default(),
            })
            .collect();
        backlog.sort_by(|a, b| a.endpoint_id.cmp(&b.endpoint_id));
        Ok(backlog)
    }

    async fn claim(
        &self,
        event_unique_id: &str,
        endpoint_id: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<ClaimToken>, LogError> {
        let mut state = self.lock();
        let key = state.locate(event_unique_id, endpoint_id)?;
        if state.held(&key, now) {
            return Ok(None);
        }
        let token = ClaimToken::new();
        state
            .claims
            .insert(key, (token.clone(), lease_end(now, lease)));
        Ok(Some(token))
    }

    async fn release(&self, token: &ClaimToken) -> Result<(), LogError> {
        self.lock().claims.retain(|_, (held, _)| held != token);
        Ok(())
    }

    async fn record_attempt(&self, record: AttemptRecord) -> Result<(), LogError> {
        let mut state = self.lock();
        let key = state.locate(&record.event_unique_id, &record.endpoint_id)?;
        let allowed = match (&record.claim, state.claims.get(&key)) {
            (Some(token), Some((held, _))) => token == held,
            (Some(_), None) => false,
            (None, held) => held.is_none_or(|(_, until)| *until <= record.attempt.started_at),
        };
        if !allowed {
            return Err(LogError::ClaimLost {
                event_id: record.event_unique_id,
                endpoint_id: record.endpoint_id,
            });
        }
        state.claims.remove(&key);
        let (position, index) = key;
        let State {
            by_position,
            pending,
            ..
        } = &mut *state;
        let Some(event) = by_position.get_mut(&position) else {
            return Err(LogError::UnknownEvent {
                id: record.event_unique_id,
            });
        };
        let delivery = &mut event.deliveries[index];
        let was_due = delivery.next_attempt_at;
        delivery.apply(record);
        if let Some(due) = was_due {
            pending.remove(&delivery.endpoint_id, (due, position, index));
        }
        if let Some(due) = delivery.next_attempt_at {
            pending.add(&delivery.endpoint_id, (due, position, index));
        }
        Ok(())
    }

    async fn get(&self, event_unique_id: &str) -> Result<Option<StoredEvent>, LogError> {
        let state = self.lock();
        Ok(state
            .positions
            .get(event_unique_id)
            .and_then(|position| state.by_position.get(position))
            .cloned())
    }

    async fn bodies(&self, event_unique_ids: &[&str]) -> Result<Vec<EventBody>, LogError> {
        let state = self.lock();
        Ok(super::distinct(event_unique_ids)
            .into_iter()
            .filter_map(|id| state.by_position.get(state.positions.get(id)?))
            .map(|event| EventBody {
                event_unique_id: event.event_unique_id.clone(),
                body: event.body.clone(),
                is_test_event: event.is_test_event,
            })
            .collect())
    }

    async fn query(
        &self,
        filter: &LogFilter,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page, LogError> {
        let before = cursor.map(Cursor::position).transpose()?;
        let state = self.lock();
        let candidates = state
            .by_position
            .iter()
            .rev()
            .filter(|(position, _)| before.is_none_or(|b| **position < b))
            .filter(|(_, event)| filter.matches(event));
        let mut events = Vec::new();
        let mut last = None;
        let mut more = false;
        for (position, event) in candidates {
            if events.len() == limit {
                more = true;
                break;
            }
            events.push(event.clone());
            last = Some(*position);
        }
        Ok(Page {
            events,
            next_cursor: last.filter(|_| more).map(Cursor::new),
        })
    }

    async fn scan(
        &self,
        filter: &LogFilter,
        visit: &mut (dyn FnMut(StoredEvent) -> ControlFlow<()> + Send),
    ) -> Result<u64, LogError> {
        let mut after: Option<Position> = None;
        let mut visited = 0;
        loop {
            // Copy a chunk out, then visit without holding the lock.
            let chunk: Vec<(Position, StoredEvent)> = {
                let state = self.lock();
                let range = match after {
                    Some(position) => state.by_position.range((
                        std::ops::Bound::Excluded(position),
                        std::ops::Bound::Unbounded,
                    )),
                    None => state.by_position.range(..),
                };
                range
                    .filter(|(_, event)| filter.matches(event))
                    .take(SCAN_CHUNK)
                    .map(|(position, event)| (*position, event.clone()))
                    .collect()
            };
            let Some((last, _)) = chunk.last() else {
                return Ok(visited);
            };
            after = Some(*last);
            for (_, event) in chunk {
                visited += 1;
                if visit(event).is_break() {
                    return Ok(visited);
                }
            }
        }
    }

    async fn delete_before(&self, cutoff: DateTime<Utc>) -> Result<u64, LogError> {
        let mut state = self.lock();
        let doomed: Vec<Position> = state
            .by_position
            .iter()
            .take_while(|(_, event)| event.timestamp < cutoff)
            .map(|(position, _)| *position)
            .collect();
        for position in &doomed {
            if let Some(event) = state.by_position.remove(position) {
                state.positions.remove(&event.event_unique_id);
                for (index, delivery) in event.deliveries.iter().enumerate() {
                    state.claims.remove(&(*position, index));
                    if let Some(due) = delivery.next_attempt_at {
                        state
                            .pending
                            .remove(&delivery.endpoint_id, (due, *position, index));
                    }
                }
            }
        }
        Ok(doomed.len() as u64)
    }
}

#[async_trait]
impl Documents for MemoryLogStore {
    async fn put(
        &self,
        kind: Kind,
        key: &str,
        owner: Option<&str>,
        body: String,
    ) -> Result<(), LogError> {
        self.lock()
            .documents
            .insert((kind, key.to_owned()), (owner.map(str::to_owned), body));
        Ok(())
    }

    async fn get(&self, kind: Kind, key: &str) -> Result<Option<String>, LogError> {
        Ok(self
            .lock()
            .documents
            .get(&(kind, key.to_owned()))
            .map(|(_, body)| body.clone()))
    }

    async fn list(&self, kind: Kind, owner: Option<&str>) -> Result<Vec<String>, LogError> {
        Ok(self
            .lock()
            .documents
            .iter()
            .filter(|((k, _), (o, _))| *k == kind && owner.is_none_or(|w| o.as_deref() == Some(w)))
            .map(|(_, (_, body))| body.clone())
            .collect())
    }

    async fn delete(&self, kind: Kind, key: &str) -> Result<bool, LogError> {
        Ok(self
            .lock()
            .documents
            .remove(&(kind, key.to_owned()))
            .is_some())
    }
}
