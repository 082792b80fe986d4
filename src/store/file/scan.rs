//! Reading a segment's events in log order, straight from its sidecar records: a whole
//! segment is read front to back, and an [`EventRow`] needs no attempt line at all.

use std::ops::ControlFlow;
use std::path::Path;

use chrono::DateTime;
use serde::Deserialize;

use super::io_error;
use super::records::read_summary;
use super::segment::{SegmentReader, read_event};
use super::sidecar::{
    EVENT_IS_TEST, EVENT_STARTS_PENDING, RecordKind, SideRecord, kind_of_code, state_of_code,
};
use crate::store::LogError;
use crate::store::query::{EventRow, LogFilter};
use crate::store::record::{DeliveryState, StoredEvent, aggregate_status};

/// Who a scan hands events to, and so in which form: whole, or as rows (no attempt read).
pub(super) enum Visitor<'a> {
    Events(&'a mut (dyn FnMut(StoredEvent) -> ControlFlow<()> + Send)),
    Rows(&'a mut (dyn FnMut(EventRow) -> ControlFlow<()> + Send)),
}

/// Calls the visitor with each event of the segment matching `filter`, oldest first. Returns
/// how many it visited, and whether the visitor asked to stop.
pub(super) fn scan_segment(
    path: &Path,
    records: &[SideRecord],
    filter: &LogFilter,
    visitor: &mut Visitor<'_>,
) -> Result<(u64, bool), LogError> {
    // Event record numbers in file order (so by offset), and each attempt's (event, record),
    // grouped by event: flat arrays, not a list per event.
    let events_by_offset: Vec<usize> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.kind == RecordKind::Event)
        .map(|(number, _)| number)
        .collect();
    let attempt_pairs: Vec<(usize, usize)> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.kind == RecordKind::Attempt)
        .filter_map(|(number, r)| {
            let event = events_by_offset
                .binary_search_by_key(&r.reference, |&n| records[n].offset)
                .ok()?;
            Some((event, number))
        })
        .collect();
    let grouped = AttemptsByEvent::new(events_by_offset.len(), &attempt_pairs);
    let attempts_of = |event: usize| grouped.of(event).iter().copied();
    // Log order is timestamp, then append order: the file order, once sorted stably by time,
    // which it nearly always already is.
    let mut events: Vec<usize> = (0..events_by_offset.len()).collect();
    if !events.is_sorted_by_key(|&e| records[events_by_offset[e]].micros) {
        events.sort_by_key(|&e| records[events_by_offset[e]].micros);
    }
    let mut file = SegmentReader::open(path.to_owned()).map_err(|e| io_error(path, e))?;
    let mut window = Window::open(path).map_err(|e| io_error(path, e))?;
    let corrupt = |e: String| {
        io_error(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    };
    let mut visited = 0;
    let mut states = Vec::new();
    for event in events {
        let record = &records[events_by_offset[event]];
        let timestamp = DateTime::from_timestamp_micros(record.micros).unwrap_or_default();
        let kind = kind_of_code(record.type_code);
        let is_test_event = record.flags & EVENT_IS_TEST != 0;
        if !filter.in_range(timestamp)
            || filter
                .is_test_event
                .is_some_and(|test| test != is_test_event)
            || (!filter.kinds.is_empty() && !kind.is_some_and(|k| filter.kinds.contains(&k)))
        {
            continue;
        }
        states.clear();
        if record.flags & EVENT_STARTS_PENDING != 0 {
            states.resize(usize::from(record.delivery), DeliveryState::Pending);
        } else {
            let summary = read_summary(&mut file, record.offset).map_err(corrupt)?;
            states.extend(summary.deliveries.iter().map(|d| d.state));
        }
        // The most recent attempt with an HTTP status; on a tie, the later delivery's, then the
        // later attempt's, as `StoredEvent::last_response_status` picks.
        let mut last_status: Option<(i64, u16, u16)> = None;
        let mut attempt_count = 0;
        for number in attempts_of(event) {
            let attempt = &records[number];
            attempt_count += 1;
            if let Some(state) = states.get_mut(usize::from(attempt.delivery)) {
                *state = state_of_code(attempt.flags);
            }
            let status = u16::try_from(attempt.detail).unwrap_or(0);
            let later = last_status.is_none_or(|(at, delivery, _)| {
                (attempt.micros, attempt.delivery) >= (at, delivery)
            });
            if status != 0 && later {
                last_status = Some((attempt.micros, attempt.delivery, status));
            }
        }
        let status = aggregate_status(states.iter().copied());
        if filter.status.is_some_and(|wanted| wanted != status) {
            continue;
        }
        let flow = match visitor {
            Visitor::Events(visit) => {
                let offsets: Vec<u64> = attempts_of(event).map(|n| records[n].offset).collect();
                let event = read_event(&mut file, record.offset, &offsets)
                    .map_err(|e| io_error(path, e))?;
                visit(event)
            }
            Visitor::Rows(visit) => {
                let line = window
                    .line(record.offset, record.len)
                    .map_err(|e| io_error(path, e))?;
                let (event_unique_id, event_type, body) = row_text(line, record, kind)
                    .or_else(|| {
                        let event = read_event(&mut file, record.offset, &[]).ok()?;
                        Some((event.event_unique_id, event.event_type, event.body))
                    })
                    .ok_or_else(|| {
                        corrupt(format!(
                            "unreadable event record at offset {}",
                            record.offset
                        ))
                    })?;
                visit(EventRow {
                    event_unique_id,
                    event_type,
                    timestamp,
                    is_test_event,
                    status,
                    attempts: attempt_count,
                    last_response_status: last_status.map(|(_, _, status)| status),
                    body,
                })
            }
        };
        visited += 1;
        if flow.is_break() {
            return Ok((visited, true));
        }
    }
    Ok((visited, false))
}

/// The id, type and body of an event line this crate wrote, without parsing the body; `None`
/// for anything else (an unknown type, a `bodyText` body, a line written some other way).
fn row_text(
    line: &[u8],
    record: &SideRecord,
    kind: Option<crate::event::EventKind>,
) -> Option<(String, String, String)> {
    const PREFIX: &[u8] = br#"{"record":"event","eventUniqueId":"#;
    let kind = kind?;
    let body_start = usize::try_from(record.detail)
        .ok()
        .filter(|start| *start > 0)?;
    let rest = line.strip_prefix(PREFIX)?;
    let mut reader = serde_json::Deserializer::from_slice(rest);
    let id = String::deserialize(&mut reader).ok()?;
    // The line ends with the body, then the record's closing brace.
    let body = line.get(body_start..line.len().checked_sub(1)?)?;
    let body = std::str::from_utf8(body).ok()?.to_owned();
    Some((id, kind.as_str().to_owned(), body))
}

/// Attempt record numbers grouped by event, in file order within each event: a counting sort,
/// since the event indexes are dense.
struct AttemptsByEvent {
    /// Where each event's attempts start in `numbers`; one more entry than there are events.
    starts: Vec<usize>,
    numbers: Vec<usize>,
}

impl AttemptsByEvent {
    fn new(events: usize, pairs: &[(usize, usize)]) -> Self {
        let mut starts = vec![0; events + 1];
        for &(event, _) in pairs {
            starts[event + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut next = starts.clone();
        let mut numbers = vec![0; pairs.len()];
        for &(event, number) in pairs {
            numbers[next[event]] = number;
            next[event] += 1;
        }
        Self { starts, numbers }
    }

    fn of(&self, event: usize) -> &[usize] {
        &self.numbers[self.starts[event]..self.starts[event + 1]]
    }
}

/// Reads lines by offset through a 4 MiB window of the file. Events read in time order jump
/// back and forth when concurrent writers appended them out of order (in the benches' logs,
/// between two regions a megabyte apart). Moving forward, the window slides only as far as it
/// must, keeping the 2 MiB behind the line in memory; a jump back before it reloads it.
struct Window {
    file: std::fs::File,
    start: u64,
    data: Vec<u8>,
}

const WINDOW: usize = 4 << 20;
/// Room left after a line when the window slides forward to it.
const WINDOW_AHEAD: u64 = 2 << 20;
/// Room kept before a line when the window jumps back to it.
const WINDOW_BEHIND: u64 = 256 << 10;

impl Window {
    fn open(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            file: std::fs::File::open(path)?,
            start: 0,
            data: Vec::new(),
        })
    }

    /// The line at `offset`, `len` bytes with its newline, returned without the newline.
    fn line(&mut self, offset: u64, len: u32) -> std::io::Result<&[u8]> {
        use std::io::{Read, Seek, SeekFrom};
        let len = len as usize;
        let end = offset + len as u64;
        if offset < self.start || end > self.start + self.data.len() as u64 {
            let start = if offset >= self.start {
                (end + WINDOW_AHEAD)
                    .saturating_sub(WINDOW as u64)
                    .max(self.start)
                    .min(offset)
            } else {
                offset.saturating_sub(WINDOW_BEHIND)
            };
            // Moving forward, the bytes still wanted are kept rather than read again.
            let kept = match start.checked_sub(self.start) {
                Some(skip) if skip < self.data.len() as u64 => {
                    self.data.drain(..skip as usize);
                    self.data.len()
                }
                _ => {
                    self.data.clear();
                    0
                }
            };
            self.start = start;
            // A line longer than the window gets a window of its own size.
            let wanted = WINDOW.max((end - start) as usize);
            self.file.seek(SeekFrom::Start(start + kept as u64))?;
            // Read straight into spare capacity: zeroing the window first cost more than
            // reading it.
            self.data.reserve_exact(wanted - kept);
            (&mut self.file)
                .take((wanted - kept) as u64)
                .read_to_end(&mut self.data)?;
        }
        let at = (offset - self.start) as usize;
        match self.data.get(at..at + len) {
            Some([line @ .., b'\n']) => Ok(line),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("no complete record at offset {offset}"),
            )),
        }
    }
}
