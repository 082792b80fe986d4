//! A segment's records: read from its sidecar, with the lines the sidecar does not cover parsed
//! (after a crash, or when there is no sidecar yet), and the sidecar brought up to date.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use super::io_error;
use super::recovery::{DamagedLine, TornTail, cut_back, set_aside_torn_tail};
use super::segment::{EventSummary, Line, SegmentReader, parse_line, read_line_at, read_lines};
use super::sidecar::{
    EVENT_IS_TEST, EVENT_STARTS_PENDING, RECORD_LEN, RecordKind, SideRecord, id_hash, kind_code,
    micros, read_sidecar, sidecar_path, state_code,
};
use crate::store::LogError;
use crate::store::record::{AttemptRecord, DeliveryState};

/// One segment's records, and what loading them found.
#[derive(Debug, Default)]
pub(super) struct SegmentRecords {
    pub(super) records: Vec<SideRecord>,
    /// Bytes of complete lines.
    pub(super) len: u64,
    pub(super) torn: Option<TornTail>,
    pub(super) damaged: Vec<DamagedLine>,
    /// Whether the sidecar on disk now holds every record (a reader does not repair it).
    pub(super) sidecar_current: bool,
}

/// The sidecar record of an event line.
pub(super) fn event_record(
    summary: &EventSummary,
    id_hash: u64,
    offset: u64,
    len: usize,
    body_start: usize,
) -> SideRecord {
    let mut flags = 0;
    if summary.is_test_event {
        flags |= EVENT_IS_TEST;
    }
    if summary
        .deliveries
        .iter()
        .all(|d| d.state == DeliveryState::Pending)
    {
        flags |= EVENT_STARTS_PENDING;
    }
    SideRecord {
        kind: RecordKind::Event,
        offset,
        len: len as u32,
        micros: micros(summary.timestamp_iso_string),
        reference: id_hash,
        delivery: u16::try_from(summary.deliveries.len()).unwrap_or(u16::MAX),
        flags,
        type_code: kind_code(&summary.event_type),
        detail: u32::try_from(body_start).unwrap_or(0),
        next_micros: None,
    }
}

/// The sidecar record of an attempt line, for the event whose line is at `event_offset`.
pub(super) fn attempt_record(
    record: &AttemptRecord,
    offset: u64,
    len: usize,
    event_offset: u64,
    delivery: usize,
) -> SideRecord {
    SideRecord {
        kind: RecordKind::Attempt,
        offset,
        len: len as u32,
        micros: micros(record.attempt.started_at),
        reference: event_offset,
        delivery: delivery as u16,
        flags: state_code(record.state),
        type_code: 0,
        detail: record.attempt.http_status().map_or(0, u32::from),
        next_micros: match record.state {
            DeliveryState::Pending => record.next_attempt_at.map(micros),
            _ => None,
        },
    }
}

/// Where the body starts in an event line this crate wrote, or 0 if it is kept as `bodyText`.
pub(super) fn body_start(line: &[u8]) -> usize {
    // The first `,"body":` is the key: inside a JSON string every quote is escaped.
    const KEY: &[u8] = b",\"body\":";
    line.windows(KEY.len())
        .position(|window| window == KEY)
        .map_or(0, |at| at + KEY.len())
}

/// The event line's summary, for an event whose line the index did not keep.
pub(super) fn read_summary(file: &mut SegmentReader, offset: u64) -> Result<EventSummary, String> {
    let line = read_line_at(file, offset).map_err(|e| e.to_string())?;
    match parse_line(&line)? {
        Line::Event(summary) => Ok(summary),
        Line::Attempt(_) => Err(format!("the line at offset {offset} is not an event")),
    }
}

/// Loads `segment`'s records. With `repair`, a torn tail is set aside and the sidecar is
/// rewritten to cover every line; without, nothing is written.
pub(super) fn load_segment(
    dir: &Path,
    segment: &Path,
    repair: bool,
) -> Result<SegmentRecords, LogError> {
    let segment_len = std::fs::metadata(segment)
        .map_err(|e| io_error(segment, e))?
        .len();
    let sidecar = sidecar_path(segment);
    let (mut records, complete) =
        read_sidecar(&sidecar, segment_len).map_err(|e| io_error(&sidecar, e))?;
    if !complete {
        // The segment is shorter than its sidecar says: it was edited, so trust none of it.
        records.clear();
    }
    let sidecar_bytes = std::fs::metadata(&sidecar).map_or(0, |m| m.len());
    let mut kept = records.len();
    let mut loaded = match parse_tail(segment, segment_len, records) {
        Ok(loaded) => loaded,
        // The first uncovered line does not parse: the sidecar does not describe this file.
        Err(TailMismatch) => {
            kept = 0;
            parse_tail(segment, segment_len, Vec::new()).map_err(|_| {
                io_error(segment, std::io::Error::other("the segment cannot be read"))
            })?
        }
    };
    let skipped: Vec<u64> = loaded
        .records
        .iter()
        .filter(|r| r.kind == RecordKind::Skipped)
        .map(|r| r.offset)
        .collect();
    if !skipped.is_empty() {
        let mut reader =
            SegmentReader::open(segment.to_owned()).map_err(|e| io_error(segment, e))?;
        for offset in skipped {
            let reason = explain_skipped(&mut reader, offset);
            loaded.damaged.push(DamagedLine {
                segment: segment.to_owned(),
                offset,
                reason,
            });
        }
    }
    if let Some(torn) = loaded.torn.as_mut().filter(|_| repair) {
        // Only the torn bytes, not the whole segment nor the padding after them.
        let mut bytes = Vec::new();
        std::fs::File::open(segment)
            .and_then(|mut file| {
                use std::io::{Read, Seek, SeekFrom};
                file.seek(SeekFrom::Start(torn.offset))?;
                file.take(torn.bytes).read_to_end(&mut bytes)
            })
            .map_err(|e| io_error(segment, e))?;
        torn.saved_to = Some(set_aside_torn_tail(dir, segment, torn.offset, &bytes)?);
    } else if repair && segment_len > loaded.len {
        // Only zeros after the lines: the padding of a writer that did not close the file.
        cut_back(segment, loaded.len)?;
    }
    // Rewrite from the first record not already there, cutting off anything damaged after.
    let up_to_date = kept == loaded.records.len() && sidecar_bytes == (kept * RECORD_LEN) as u64;
    if repair && !up_to_date {
        write_sidecar(&sidecar, &loaded.records, kept)?;
    }
    loaded.sidecar_current = repair || up_to_date;
    Ok(loaded)
}

/// Why a skipped line was skipped, found by parsing it again.
fn explain_skipped(reader: &mut SegmentReader, offset: u64) -> String {
    let line = read_line_at(reader, offset);
    match line
        .map_err(|e| e.to_string())
        .and_then(|line| parse_line(&line))
    {
        Err(reason) => reason,
        Ok(Line::Attempt(record)) => format!(
            "an attempt for event {} / endpoint {} that is not in this segment",
            record.event_unique_id, record.endpoint_id
        ),
        Ok(Line::Event(summary)) => {
            format!("event {} could not be indexed", summary.event_unique_id)
        }
    }
}

/// The id of the event whose line is at `offset` in `day`'s segment of `dir`.
pub(super) fn read_id_at(dir: &Path, day: super::segment::Day, offset: u64) -> Option<String> {
    let path = dir.join(super::segment::segment_file_name(day));
    let mut file = SegmentReader::open_for_lookups(path).ok()?;
    read_summary(&mut file, offset)
        .ok()
        .map(|summary| summary.event_unique_id)
}

/// Rewrites the sidecar from record `from` on (all of it when `from` is 0).
fn write_sidecar(path: &Path, records: &[SideRecord], from: usize) -> Result<(), LogError> {
    let mut bytes = Vec::with_capacity((records.len() - from) * RECORD_LEN);
    for record in &records[from..] {
        record.encode(&mut bytes);
    }
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    file.set_len((from * RECORD_LEN) as u64)
        .and_then(|()| {
            use std::io::Seek;
            file.seek(std::io::SeekFrom::Start((from * RECORD_LEN) as u64))
                .map(|_| ())
        })
        .and_then(|()| file.write_all(&bytes))
        .map_err(|e| io_error(path, e))
}

struct TailMismatch;

/// Parses the lines after the last of `records` into records of their own (`segment_len`:
/// the segment's length when loading began).
fn parse_tail(
    segment: &Path,
    segment_len: u64,
    records: Vec<SideRecord>,
) -> Result<SegmentRecords, TailMismatch> {
    let start = records.last().map_or(0, SideRecord::end);
    let trusted = !records.is_empty();
    if start == segment_len {
        return Ok(SegmentRecords {
            records,
            len: start,
            ..SegmentRecords::default()
        });
    }
    // Events of this segment by id hash, for the attempts that follow them.
    let mut events: HashMap<u64, Vec<u64>> = HashMap::new();
    for record in records.iter().filter(|r| r.kind == RecordKind::Event) {
        events
            .entry(record.reference)
            .or_default()
            .push(record.offset);
    }
    // Endpoint ids of this segment's events, read when an attempt needs them.
    let mut endpoints: HashMap<u64, Vec<String>> = HashMap::new();
    let mut reader = SegmentReader::open(segment.to_owned()).map_err(|_| TailMismatch)?;
    let mut loaded = SegmentRecords {
        records,
        ..SegmentRecords::default()
    };
    let mut first = true;
    let mut mismatch = false;
    let (len, torn) = read_lines(segment, start, |offset, line| {
        let length = line.len() + 1;
        let parsed = parse_line(line);
        if std::mem::take(&mut first) && trusted && parsed.is_err() {
            mismatch = true;
        }
        let record = match parsed {
            Ok(Line::Event(summary)) => {
                let hash = id_hash(&summary.event_unique_id);
                let record = event_record(&summary, hash, offset, length, body_start(line));
                events.entry(record.reference).or_default().push(offset);
                endpoints.insert(
                    offset,
                    summary
                        .deliveries
                        .into_iter()
                        .map(|d| d.endpoint_id)
                        .collect(),
                );
                Some(record)
            }
            Ok(Line::Attempt(attempt)) => {
                locate_attempt(&attempt, &events, &mut endpoints, &mut reader).map(
                    |(event, delivery)| attempt_record(&attempt, offset, length, event, delivery),
                )
            }
            Err(_) => None,
        };
        loaded.records.push(record.unwrap_or(SideRecord {
            kind: RecordKind::Skipped,
            offset,
            len: length as u32,
            micros: 0,
            reference: 0,
            delivery: 0,
            flags: 0,
            type_code: 0,
            detail: 0,
            next_micros: None,
        }));
    })
    .map_err(|_| TailMismatch)?;
    if mismatch {
        return Err(TailMismatch);
    }
    loaded.len = len;
    if !torn.is_empty() {
        loaded.torn = Some(TornTail {
            segment: segment.to_owned(),
            offset: len,
            bytes: torn.len() as u64,
            saved_to: None,
        });
    }
    Ok(loaded)
}

/// The event line offset and delivery index an attempt belongs to, within this segment.
fn locate_attempt(
    attempt: &AttemptRecord,
    events: &HashMap<u64, Vec<u64>>,
    endpoints: &mut HashMap<u64, Vec<String>>,
    reader: &mut SegmentReader,
) -> Option<(u64, usize)> {
    for &event in events.get(&id_hash(&attempt.event_unique_id))? {
        let ids = match endpoints.entry(event) {
            std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
            std::collections::hash_map::Entry::Vacant(unknown) => {
                let summary = read_summary(reader, event).ok()?;
                if summary.event_unique_id != attempt.event_unique_id {
                    continue;
                }
                unknown.insert(
                    summary
                        .deliveries
                        .into_iter()
                        .map(|d| d.endpoint_id)
                        .collect(),
                )
            }
        };
        if let Some(delivery) = ids.iter().position(|id| *id == attempt.endpoint_id) {
            return Some((event, delivery));
        }
    }
    None
}
