//! Reading a segment's events in log order, straight from its sidecar records: a whole
//! segment is read front to back, and an [`EventRow`] needs no attempt line at all.

use std::collections::HashMap;
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

/// What a scan hands out per event.
pub(super) enum Item {
    Full(StoredEvent),
    Row(EventRow),
}

/// Calls `visit` with each event of the segment matching `filter`, oldest first; `full` says
/// whether it wants whole events or rows. Returns how many it visited, and whether `visit`
/// asked to stop.
pub(super) fn scan_segment(
    path: &Path,
    records: &[SideRecord],
    filter: &LogFilter,
    full: bool,
    visit: &mut dyn FnMut(Item) -> ControlFlow<()>,
) -> Result<(u64, bool), LogError> {
    let mut events: Vec<usize> = Vec::new();
    let mut attempts: HashMap<u64, Vec<usize>> = HashMap::new();
    for (number, record) in records.iter().enumerate() {
        match record.kind {
            RecordKind::Event => events.push(number),
            RecordKind::Attempt => attempts.entry(record.reference).or_default().push(number),
            RecordKind::Skipped => {}
        }
    }
    // Log order is timestamp, then append order: the file order, once sorted stably by time,
    // which it nearly always already is.
    if !events.is_sorted_by_key(|&n| records[n].micros) {
        events.sort_by_key(|&n| records[n].micros);
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
    let no_attempts = Vec::new();
    for number in events {
        let record = &records[number];
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
        let its_attempts = attempts.get(&record.offset).unwrap_or(&no_attempts);
        let mut states = if record.flags & EVENT_STARTS_PENDING != 0 {
            vec![DeliveryState::Pending; usize::from(record.delivery)]
        } else {
            let summary = read_summary(&mut file, record.offset).map_err(corrupt)?;
            summary.deliveries.iter().map(|d| d.state).collect()
        };
        // The most recent attempt with an HTTP status; on a tie, the later delivery's, then the
        // later attempt's, as `StoredEvent::last_response_status` picks.
        let mut last_status: Option<(i64, u16, u16)> = None;
        for &attempt in its_attempts {
            let attempt = &records[attempt];
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
        let item = if full {
            let offsets: Vec<u64> = its_attempts.iter().map(|&n| records[n].offset).collect();
            let event =
                read_event(&mut file, record.offset, &offsets).map_err(|e| io_error(path, e))?;
            Item::Full(event)
        } else {
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
            Item::Row(EventRow {
                event_unique_id,
                event_type,
                timestamp,
                is_test_event,
                status,
                attempts: its_attempts.len(),
                last_response_status: last_status.map(|(_, _, status)| status),
                body,
            })
        };
        visited += 1;
        if visit(item).is_break() {
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

/// Reads lines by offset through a 2 MiB window of the file. Events read in time order jump
/// back and forth a little when concurrent writers appended them out of order; a window that
/// starts a little before each refill serves those jumps from memory instead of re-reading.
struct Window {
    file: std::fs::File,
    start: u64,
    data: Vec<u8>,
}

const WINDOW: usize = 2 << 20;
const WINDOW_BEHIND: u64 = 1 << 20;

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
            self.start = offset.saturating_sub(WINDOW_BEHIND);
            self.data
                .resize(WINDOW.max(len + WINDOW_BEHIND as usize), 0);
            self.file.seek(SeekFrom::Start(self.start))?;
            let mut filled = 0;
            while filled < self.data.len() {
                match self.file.read(&mut self.data[filled..])? {
                    0 => break,
                    read => filled += read,
                }
            }
            self.data.truncate(filled);
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
