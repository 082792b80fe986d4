//! Idle keep-alive connections, per endpoint origin.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::conn::Stream;

/// How long an idle connection is kept: servers commonly close theirs after 60 s or more, and
/// one found closed costs only a fresh connection.
const IDLE_FOR: Duration = Duration::from_secs(50);
/// The most idle connections kept per origin: enough for the dispatcher's default 64 requests
/// in flight and as many again.
const IDLE_PER_ORIGIN: usize = 128;
/// The most origins with idle connections; the pool starts over past it.
const MAX_ORIGINS: usize = 1024;

/// Idle connections by origin (`scheme://host:port`), newest last.
#[derive(Debug, Default)]
pub(super) struct Pool {
    idle: Mutex<HashMap<Arc<str>, Vec<Idle>>>,
}

#[derive(Debug)]
struct Idle {
    stream: Stream,
    since: Instant,
}

impl Pool {
    /// The most recently used idle connection to `origin` that is still open, if any.
    pub(super) fn take(&self, origin: &str) -> Option<Stream> {
        let mut found = Vec::new();
        let stream = {
            let mut idle = self.lock();
            let list = idle.get_mut(origin)?;
            loop {
                let Some(candidate) = list.pop() else {
                    break None;
                };
                if candidate.since.elapsed() < IDLE_FOR && candidate.stream.is_reusable() {
                    break Some(candidate.stream);
                }
                // Closed outside the lock.
                found.push(candidate);
            }
        };
        drop(found);
        stream
    }

    /// Keeps a connection whose last response was read to its end.
    pub(super) fn put(&self, origin: &Arc<str>, stream: Stream) {
        let mut idle = self.lock();
        if idle.len() >= MAX_ORIGINS && !idle.contains_key(origin) {
            // Bounded like the URL cache: a platform sends to a few hundred origins at most.
            idle.clear();
        }
        let list = idle.entry(origin.clone()).or_default();
        if list.len() < IDLE_PER_ORIGIN {
            list.push(Idle {
                stream,
                since: Instant::now(),
            });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Vec<Idle>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}
