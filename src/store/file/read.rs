//! Reading a file log: whole events by index entry, and scans one segment at a time.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use super::index::Entry;
use super::recovery::segment_days;
use super::scan::{Visitor, scan_segment};
use super::segment::{Day, SegmentReader, day_of, read_event, segment_file_name};
use super::sidecar::{self, SideRecord, attempts_of, read_sidecar, sidecar_path};
use super::{FileLogStore, io_error, lock_index, records};
use crate::store::LogError;
use crate::store::query::LogFilter;
use crate::store::record::StoredEvent;

impl FileLogStore {
    /// Reads whole events, their attempts found in the sidecars.
    pub(super) fn read_all(&self, entries: &[Entry]) -> Result<Vec<StoredEvent>, LogError> {
        // Per day, the sidecar records from the first event asked for to its last attempt.
        let mut by_day: BTreeMap<Day, (u32, u32)> = BTreeMap::new();
        let unsaved: std::collections::HashMap<Day, Arc<Vec<SideRecord>>> = {
            let index = self.index()?;
            entries
                .iter()
                .filter_map(|e| Some((e.day, index.segments.get(&e.day)?.unsaved.clone()?)))
                .collect()
        };
        for entry in entries {
            let span = by_day
                .entry(entry.day)
                .or_insert((entry.record, entry.last_attempt + 1));
            span.0 = span.0.min(entry.record);
            span.1 = span.1.max(entry.last_attempt + 1);
        }
        let mut segments = std::collections::HashMap::new();
        for (day, (from, to)) in by_day {
            let path = self.dir.join(segment_file_name(day));
            let sidecar = sidecar_path(&path);
            let wanted: HashSet<u64> = entries
                .iter()
                .filter(|e| e.day == day)
                .map(|e| e.offset)
                .collect();
            let attempts = match unsaved.get(&day) {
                Some(records) => Ok(attempts_in(
                    records.get(from as usize..to as usize).unwrap_or_default(),
                    &wanted,
                )),
                None => attempts_of(&sidecar, from, to, &wanted),
            };
            match attempts
                .and_then(|attempts| Ok((attempts, SegmentReader::open_for_lookups(path.clone())?)))
            {
                Ok(found) => {
                    segments.insert(day, found);
                }
                // Deleted by retention since the index was read: its events are gone.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&sidecar, e)),
            }
        }
        let mut events = Vec::with_capacity(entries.len());
        for entry in entries {
            let Some((attempts, file)) = segments.get_mut(&entry.day) else {
                continue;
            };
            let offsets = attempts.get(&entry.offset).map_or(&[][..], Vec::as_slice);
            let event =
                read_event(file, entry.offset, offsets).map_err(|e| io_error(file.path(), e))?;
            events.push(event);
        }
        Ok(events)
    }

    /// The records of each segment a scan of `filter` reads, one segment at a time.
    pub(super) fn scan_segments(
        &self,
        filter: &LogFilter,
        mut visitor: Visitor<'_>,
    ) -> Result<u64, LogError> {
        let first = filter.from.map_or(Day::MIN, day_of);
        let last = filter.to.map_or(Day::MAX, day_of);
        // A writer scans what it has committed; a reader, what is on disk now.
        let days: Vec<(Day, Option<(u64, u32)>)> = match (&self.writer, self.index.get()) {
            (Some(_), Some(index)) => lock_index(index)
                .segments
                .range(first..=last)
                .map(|(day, segment)| (*day, Some((segment.len, segment.records))))
                .collect(),
            _ => segment_days(&self.dir)?
                .into_iter()
                .filter(|day| (first..=last).contains(day))
                .map(|day| (day, None))
                .collect(),
        };
        let mut visited = 0;
        for (day, committed) in days {
            let path = self.dir.join(segment_file_name(day));
            let records = match self.segment_records(&path, committed) {
                Ok(records) => records,
                Err(LogError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    continue; // deleted by retention meanwhile
                }
                Err(e) => return Err(e),
            };
            let (count, stop) = scan_segment(&path, &records, filter, &mut visitor)?;
            visited += count;
            if stop {
                break;
            }
        }
        Ok(visited)
    }

    fn segment_records(
        &self,
        path: &Path,
        committed: Option<(u64, u32)>,
    ) -> Result<Vec<SideRecord>, LogError> {
        if let Some((len, count)) = committed {
            let sidecar = sidecar_path(path);
            let (mut records, _) =
                read_sidecar(&sidecar, len).map_err(|e| io_error(&sidecar, e))?;
            if records.len() >= count as usize {
                records.truncate(count as usize);
                return Ok(records);
            }
        }
        Ok(records::load_segment(&self.dir, path, false)?.records)
    }
}

/// The attempt line offsets among `records` of the events whose lines start at `events`.
fn attempts_in(
    records: &[SideRecord],
    events: &HashSet<u64>,
) -> std::collections::HashMap<u64, Vec<u64>> {
    let mut found: std::collections::HashMap<u64, Vec<u64>> = std::collections::HashMap::new();
    for record in records {
        if record.kind == sidecar::RecordKind::Attempt && events.contains(&record.reference) {
            found
                .entry(record.reference)
                .or_default()
                .push(record.offset);
        }
    }
    found
}
