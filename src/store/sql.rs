//! What the SQL backends share: column encodings and rebuilding log records from rows.

use std::ops::ControlFlow;
use std::time::Duration;

use async_trait::async_trait;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::{DeserializeOwned, IntoDeserializer};

use super::LogError;
use super::attempt::{Attempt, AttemptOutcome};
use super::query::{Cursor, EventRow, LogFilter, Page, Position};
use super::record::{Delivery, StoredEvent};

/// Events read per query while scanning.
const SCAN_PAGE: usize = 512;

/// A SQL backend's two reads, from which paging and scanning follow. Rows come with their
/// table key (the append order), which breaks ties between equal timestamps.
#[async_trait]
pub(super) trait EventTables: Sync {
    /// The rows matching `filter` past `after`, at most `limit`, oldest first when `oldest`
    /// and newest first otherwise.
    async fn rows(
        &self,
        filter: &LogFilter,
        after: Option<Position>,
        oldest: bool,
        limit: usize,
    ) -> Result<Vec<(i64, EventRow)>, LogError>;

    /// Whole events for `rows`, in their order.
    async fn whole(&self, rows: Vec<(i64, EventRow)>) -> Result<Vec<StoredEvent>, LogError>;

    /// One page of [`LogStore::query`](super::LogStore::query).
    async fn page(
        &self,
        filter: &LogFilter,
        cursor: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page, LogError> {
        let after = cursor.map(Cursor::position).transpose()?;
        let mut rows = self
            .rows(filter, after, false, limit.saturating_add(1))
            .await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = more
            .then(|| rows.last())
            .flatten()
            .map(|(key, row)| Cursor::new(position(*key, row)));
        Ok(Page {
            events: self.whole(rows).await?,
            next_cursor,
        })
    }

    /// [`LogStore::scan`](super::LogStore::scan), from the pages.
    async fn scan_events(
        &self,
        filter: &LogFilter,
        visit: &mut (dyn FnMut(StoredEvent) -> ControlFlow<()> + Send),
    ) -> Result<u64, LogError> {
        self.each(filter, true, &mut |item| match item {
            Visit::Event(event) => visit(event),
            Visit::Row(_) => ControlFlow::Continue(()),
        })
        .await
    }

    /// [`LogStore::scan_rows`](super::LogStore::scan_rows), from the pages.
    async fn scan_event_rows(
        &self,
        filter: &LogFilter,
        visit: &mut (dyn FnMut(EventRow) -> ControlFlow<()> + Send),
    ) -> Result<u64, LogError> {
        self.each(filter, false, &mut |item| match item {
            Visit::Row(row) => visit(row),
            Visit::Event(_) => ControlFlow::Continue(()),
        })
        .await
    }

    /// Scans, whole events or not, a page at a time.
    async fn each(
        &self,
        filter: &LogFilter,
        whole: bool,
        visit: &mut (dyn FnMut(Visit) -> ControlFlow<()> + Send),
    ) -> Result<u64, LogError> {
        let mut visited = 0;
        let mut page = self.rows(filter, None, true, SCAN_PAGE).await?;
        loop {
            let Some((key, last)) = page.last() else {
                return Ok(visited);
            };
            let after = position(*key, last);
            let full = page.len() == SCAN_PAGE;
            let items: Vec<Visit> = if whole {
                self.whole(page)
                    .await?
                    .into_iter()
                    .map(Visit::Event)
                    .collect()
            } else {
                page.into_iter().map(|(_, row)| Visit::Row(row)).collect()
            };
            // The next page is read while this one is visited: a backend that reads on another
            // thread (the file log) then overlaps reading with the caller's work, an export's
            // CSV formatting say.
            let next = async {
                if full {
                    self.rows(filter, Some(after), true, SCAN_PAGE).await
                } else {
                    Ok(Vec::new())
                }
            };
            let visiting = async {
                for item in items {
                    visited += 1;
                    if visit(item).is_break() {
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            };
            let (next, flow) = tokio::join!(next, visiting);
            if flow.is_break() || !full {
                return Ok(visited);
            }
            page = next?;
        }
    }
}

/// What a scan hands over: a whole event, or its row.
pub(super) enum Visit {
    Event(StoredEvent),
    Row(EventRow),
}

fn position(key: i64, row: &EventRow) -> Position {
    Position::new(row.timestamp, u64::try_from(key).unwrap_or(0))
}

/// A unit enum's serde name (`first-try`, `blocked-address`, …), as its column holds it.
pub(super) fn kebab<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The unit enum a column's text names.
pub(super) fn parse_kebab<T: DeserializeOwned>(text: &str, column: &str) -> Result<T, LogError> {
    let deserializer: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
        text.into_deserializer();
    T::deserialize(deserializer).map_err(|_| LogError::Corrupt {
        reason: format!("unknown {column} {text:?}"),
    })
}

/// Microseconds since the Unix epoch.
pub(super) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// The time `micros` microseconds after the Unix epoch.
pub(super) fn from_micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

/// One attempt as its columns hold it.
pub(super) struct AttemptColumns {
    pub(super) started_at: DateTime<Utc>,
    pub(super) duration_ms: i64,
    pub(super) http_status: Option<i64>,
    pub(super) response_snippet: Option<String>,
    pub(super) error_kind: Option<String>,
    pub(super) error_message: Option<String>,
    pub(super) trigger: String,
    pub(super) url: Option<String>,
}

impl AttemptColumns {
    /// The columns of `attempt`.
    pub(super) fn of(attempt: &Attempt) -> Self {
        let (http_status, response_snippet, error_kind, error_message) = match &attempt.outcome {
            AttemptOutcome::Response { status, snippet } => {
                (Some(i64::from(*status)), Some(snippet.clone()), None, None)
            }
            AttemptOutcome::TransportError { kind, message } => {
                (None, None, Some(kebab(kind)), Some(message.clone()))
            }
        };
        Self {
            started_at: attempt.started_at,
            duration_ms: i64::try_from(attempt.duration.as_millis()).unwrap_or(i64::MAX),
            http_status,
            response_snippet,
            error_kind,
            error_message,
            trigger: kebab(&attempt.trigger),
            url: attempt.url.clone(),
        }
    }

    /// The attempt the columns hold.
    pub(super) fn into_attempt(self) -> Result<Attempt, LogError> {
        let outcome = match (self.http_status, self.error_kind) {
            (Some(status), _) => AttemptOutcome::Response {
                status: u16::try_from(status).map_err(|_| LogError::Corrupt {
                    reason: format!("HTTP status {status} out of range"),
                })?,
                snippet: self.response_snippet.unwrap_or_default(),
            },
            (None, Some(kind)) => AttemptOutcome::TransportError {
                kind: parse_kebab(&kind, "error kind")?,
                message: self.error_message.unwrap_or_default(),
            },
            (None, None) => {
                return Err(LogError::Corrupt {
                    reason: "an attempt has neither an HTTP status nor an error kind".into(),
                });
            }
        };
        Ok(Attempt {
            started_at: self.started_at,
            duration: Duration::from_millis(u64::try_from(self.duration_ms).unwrap_or(0)),
            outcome,
            trigger: parse_kebab(&self.trigger, "attempt trigger")?,
            url: self.url,
        })
    }
}

/// Builds events from their rows: `events` in the order wanted, with `key` their row key;
/// `deliveries` and `attempts` each with the key of the event they belong to, in order.
pub(super) fn assemble(
    events: Vec<(i64, StoredEvent)>,
    deliveries: Vec<(i64, Delivery)>,
    attempts: Vec<(i64, String, Attempt)>,
) -> Vec<StoredEvent> {
    let mut by_key: std::collections::HashMap<i64, StoredEvent> =
        std::collections::HashMap::with_capacity(events.len());
    let order: Vec<i64> = events.iter().map(|(key, _)| *key).collect();
    by_key.extend(events);
    for (key, delivery) in deliveries {
        if let Some(event) = by_key.get_mut(&key) {
            event.deliveries.push(delivery);
        }
    }
    for (key, endpoint_id, attempt) in attempts {
        if let Some(delivery) = by_key.get_mut(&key).and_then(|event| {
            event
                .deliveries
                .iter_mut()
                .find(|d| d.endpoint_id == endpoint_id)
        }) {
            delivery.attempts.push(attempt);
        }
    }
    order
        .into_iter()
        .filter_map(|key| by_key.remove(&key))
        .collect()
}
