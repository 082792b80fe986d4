//! Bodies of just-emitted events whose deliveries wait in the log for their endpoint's turn,
//! kept in memory for a while: claimed later from the log, they are sent without reading the
//! event back (a read of the event, its deliveries and attempts per delivery).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use hashbrown::HashMap;

use super::lock;

/// How many bytes of bodies are kept at most; the oldest go first.
const BUDGET_BYTES: usize = 16 * 1024 * 1024;

/// Bodies by event id, with whether it is a test event and how many deliveries still want it.
#[derive(Debug, Default)]
pub(super) struct WaitingBodies {
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    by_event: HashMap<Arc<str>, (Arc<str>, bool, usize)>,
    /// Event ids, oldest first, for eviction (an id may already be gone from `by_event`).
    order: VecDeque<Arc<str>>,
    bytes: usize,
}

impl WaitingBodies {
    /// Keeps `body` for `deliveries` later claims of the event.
    pub(super) fn keep(&self, event_id: &str, body: &Arc<str>, is_test: bool, deliveries: usize) {
        if body.len() > BUDGET_BYTES / 16 {
            return;
        }
        let mut kept = lock(&self.kept);
        while kept.bytes + body.len() > BUDGET_BYTES {
            let Some(oldest) = kept.order.pop_front() else {
                break;
            };
            if let Some((gone, _, _)) = kept.by_event.remove(&oldest) {
                kept.bytes -= gone.len();
            }
        }
        kept.bytes += body.len();
        let event_id: Arc<str> = Arc::from(event_id);
        kept.order.push_back(event_id.clone());
        kept.by_event
            .insert(event_id, (body.clone(), is_test, deliveries));
    }

    /// The body for one delivery of the event, if kept.
    pub(super) fn take(&self, event_id: &str) -> Option<(Arc<str>, bool)> {
        let mut kept = lock(&self.kept);
        let (body, is_test, left) = kept.by_event.get_mut(event_id)?;
        let found = (body.clone(), *is_test);
        *left -= 1;
        if *left == 0 {
            kept.by_event.remove(event_id);
            kept.bytes -= found.0.len();
            if kept.by_event.is_empty() {
                kept.order.clear();
            }
        }
        Some(found)
    }
}
