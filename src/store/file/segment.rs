//! Segment files: one JSON Lines file per UTC day of event timestamps, and their line formats.
//!
//! An event line holds everything known when the event was appended, with the body last:
//! `{"record":"event","eventUniqueId":…,"timestampIsoString":…,"eventType":…,"isTestEvent":…,
//! "deliveries":[…],"body":{…}}`. The body is embedded verbatim, so it comes back byte for
//! byte; a body that is not single-line JSON is kept as an escaped string in `bodyText`.
//! Each attempt is a later line of the same file:
//! `{"record":"attempt","eventUniqueId":…,"endpointId":…,"attempt":{…},"state":…,
//! "nextAttemptAt":…}`.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::store::record::{AttemptRecord, Delivery, StoredEvent};

/// A UTC day, as days since 1970-01-01: the key of a segment.
pub(super) type Day = i32;

const EPOCH: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date");

pub(super) fn day_of(timestamp: DateTime<Utc>) -> Day {
    // Days since 1970 fit an i32 for every date chrono can represent.
    i32::try_from((timestamp.date_naive() - EPOCH).num_days()).unwrap_or(i32::MAX)
}

/// The first instant after `day`.
pub(super) fn day_end(day: Day) -> Option<DateTime<Utc>> {
    EPOCH
        .checked_add_signed(chrono::TimeDelta::days(i64::from(day) + 1))
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|midnight| midnight.and_utc())
}

pub(super) fn segment_file_name(day: Day) -> String {
    let date = EPOCH
        .checked_add_signed(chrono::TimeDelta::days(i64::from(day)))
        .unwrap_or(EPOCH);
    format!("{}.jsonl", date.format("%Y-%m-%d"))
}

/// The day of a segment file name, or `None` for any other file.
pub(super) fn parse_segment_file_name(name: &str) -> Option<Day> {
    let date = name.strip_suffix(".jsonl")?;
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    i32::try_from((date - EPOCH).num_days()).ok()
}

/// What the index needs from an event line; the body is skipped, not read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct EventSummary {
    pub(super) event_unique_id: String,
    #[serde(with = "crate::event::time_serde::iso_millis")]
    pub(super) timestamp_iso_string: DateTime<Utc>,
    pub(super) event_type: String,
    pub(super) is_test_event: bool,
    pub(super) deliveries: Vec<Delivery>,
}

/// A whole event line. (Not `EventSummary` flattened: serde's flatten buffers values, which
/// would lose the body's exact bytes.)
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventLineFull {
    event_unique_id: String,
    #[serde(with = "crate::event::time_serde::iso_millis")]
    timestamp_iso_string: DateTime<Utc>,
    event_type: String,
    is_test_event: bool,
    deliveries: Vec<Delivery>,
    body: Option<Box<RawValue>>,
    body_text: Option<String>,
}

/// A parsed line of a segment.
pub(super) enum Line {
    Event(EventSummary),
    Attempt(AttemptRecord),
}

#[derive(Deserialize)]
struct LineKind {
    record: String,
}

/// Parses a line (without its newline) for the index.
pub(super) fn parse_line(line: &[u8]) -> Result<Line, String> {
    // Lines this crate writes start with their kind; anything else is checked the slow way.
    let kind = if line.starts_with(br#"{"record":"event","#) {
        "event".to_owned()
    } else if line.starts_with(br#"{"record":"attempt","#) {
        "attempt".to_owned()
    } else {
        serde_json::from_slice::<LineKind>(line)
            .map_err(|e| format!("not a log record: {e}"))?
            .record
    };
    match kind.as_str() {
        "event" => serde_json::from_slice(line)
            .map(Line::Event)
            .map_err(|e| format!("unreadable event record: {e}")),
        "attempt" => serde_json::from_slice(line)
            .map(Line::Attempt)
            .map_err(|e| format!("unreadable attempt record: {e}")),
        other => Err(format!("unknown record kind {other:?}")),
    }
}

/// Reads the full event at `offset` in `file`, then applies its attempts (at their offsets).
pub(super) fn read_event(
    file: &mut SegmentReader,
    offset: u64,
    attempt_offsets: &[u64],
) -> io::Result<StoredEvent> {
    let line = read_line_at(file, offset)?;
    let full: EventLineFull =
        serde_json::from_slice(&line).map_err(|e| corrupt(file.path(), offset, e))?;
    let body = match (full.body, full.body_text) {
        (Some(raw), _) => raw.get().to_owned(),
        (None, Some(text)) => text,
        (None, None) => return Err(corrupt(file.path(), offset, "the event record has no body")),
    };
    let mut event = StoredEvent {
        event_unique_id: full.event_unique_id,
        event_type: full.event_type,
        timestamp: full.timestamp_iso_string,
        is_test_event: full.is_test_event,
        body,
        deliveries: full.deliveries,
    };
    for &attempt_offset in attempt_offsets {
        let line = read_line_at(file, attempt_offset)?;
        let record: AttemptRecord =
            serde_json::from_slice(&line).map_err(|e| corrupt(file.path(), attempt_offset, e))?;
        apply_attempt(&mut event, record);
    }
    Ok(event)
}

/// Applies an attempt to the event's matching delivery (ignored if there is none).
pub(super) fn apply_attempt(event: &mut StoredEvent, record: AttemptRecord) {
    if let Some(delivery) = event
        .deliveries
        .iter_mut()
        .find(|d| d.endpoint_id == record.endpoint_id)
    {
        delivery.apply(record);
    }
}

/// A buffered reader of one segment that remembers where it is, so reading lines in file order
/// (an event, then its attempts, then the next event) moves within the buffer instead of
/// discarding it on every seek.
pub(super) struct SegmentReader {
    reader: BufReader<File>,
    position: u64,
    path: PathBuf,
}

impl SegmentReader {
    /// For reading a segment through, or much of it.
    pub(super) fn open(path: PathBuf) -> io::Result<Self> {
        Self::with_buffer(path, 64 * 1024)
    }

    /// For reading a few lines here and there (a `get`, a page of a query): each jump refills
    /// the buffer, and a line is about a kilobyte, so a large buffer only copies bytes nobody
    /// reads.
    pub(super) fn open_for_lookups(path: PathBuf) -> io::Result<Self> {
        Self::with_buffer(path, 8 * 1024)
    }

    fn with_buffer(path: PathBuf, capacity: usize) -> io::Result<Self> {
        Ok(Self {
            reader: BufReader::with_capacity(capacity, File::open(&path)?),
            position: 0,
            path,
        })
    }

    /// The segment file, for error messages.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    fn move_to(&mut self, offset: u64) -> io::Result<()> {
        let ahead = offset.checked_sub(self.position);
        match ahead {
            Some(0) => {}
            Some(ahead) if ahead <= self.reader.buffer().len() as u64 => {
                self.reader.seek_relative(ahead as i64)?;
            }
            _ => {
                self.reader.seek(SeekFrom::Start(offset))?;
            }
        }
        self.position = offset;
        Ok(())
    }
}

pub(super) fn read_line_at(file: &mut SegmentReader, offset: u64) -> io::Result<Vec<u8>> {
    file.move_to(offset)?;
    let mut line = Vec::new();
    let read = file.reader.read_until(b'\n', &mut line);
    file.position += line.len() as u64;
    read?;
    if line.pop() != Some(b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("no complete record at offset {offset}"),
        ));
    }
    Ok(line)
}

fn corrupt(path: &Path, offset: u64, error: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "damaged record in {} at offset {offset}: {error}",
            path.display()
        ),
    )
}

/// Reads a segment line by line from `start`, calling `each` with every complete line and its
/// offset. Returns the length of the complete lines, and the bytes after them that a crash
/// left (a torn write, if not empty).
///
/// The lines end at the end of the file or at the first zero byte, where the writer's padding
/// starts (`writer/padded.rs`); a zero byte is never part of a line. The torn bytes run from
/// the last complete line to the last byte that is not zero: after a crash, a batch's pages may
/// have reached the disk in any order.
pub(super) fn read_lines(
    path: &Path,
    start: u64,
    mut each: impl FnMut(u64, &[u8]),
) -> io::Result<(u64, Vec<u8>)> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(start))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut offset = start;
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        if read == 0 {
            return Ok((offset, Vec::new()));
        }
        // `contains` searches a vector at a time, for every line; `position` only runs on the
        // one line that has a zero.
        if line.contains(&0) {
            let zero = line.iter().position(|b| *b == 0).unwrap_or(line.len());
            let mut rest = line.split_off(zero);
            reader.read_to_end(&mut rest)?;
            let data_end = rest
                .iter()
                .rposition(|b| *b != 0)
                .map_or(0, |last| last + 1);
            line.extend_from_slice(&rest[..data_end]);
            return Ok((offset, line));
        }
        if line.last() != Some(&b'\n') {
            return Ok((offset, std::mem::take(&mut line)));
        }
        each(offset, &line[..line.len() - 1]);
        offset += read as u64;
    }
}
