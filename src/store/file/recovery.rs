//! Opening a log: the writer's lock, reading every segment into the index, and repairing what a
//! crash left behind.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use std::collections::HashMap;

use super::index::{Index, Refused, Slot};
use super::io_error;
use super::records::{SegmentRecords, load_segment, read_id_at, read_summary};
use super::segment::{
    Day, EventSummary, SegmentReader, parse_segment_file_name, segment_file_name,
};
use super::sidecar::{EVENT_STARTS_PENDING, RecordKind, state_of_code};
use super::writer::sync_dir;
use crate::store::LogError;
use crate::store::record::DeliveryState;

/// What reopening a log found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments whose last line was cut short by a crash.
    pub torn_tails: Vec<TornTail>,
    /// Complete lines that could not be read, skipped.
    pub damaged_lines: Vec<DamagedLine>,
}

impl RecoveryReport {
    /// Whether the log opened without finding anything to repair.
    pub fn is_clean(&self) -> bool {
        self.torn_tails.is_empty() && self.damaged_lines.is_empty()
    }
}

/// A segment's last line, cut short by a crash; never acknowledged to any caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub segment: PathBuf,
    /// Where the torn line started.
    pub offset: u64,
    /// Its length in bytes.
    pub bytes: u64,
    /// Where its bytes were saved before the segment was cut back (writable opens only).
    pub saved_to: Option<PathBuf>,
}

/// A complete line that could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedLine {
    /// The segment file.
    pub segment: PathBuf,
    /// Where the line starts.
    pub offset: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// How long a held lock is retried before it counts as another writer's.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(250);

/// Takes the directory's writer lock (`LOCK`), or fails with [`LogError::Locked`].
pub(super) fn take_lock(dir: &Path) -> Result<File, LogError> {
    let path = dir.join("LOCK");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io_error(&path, e))?;
    // A lock that clears within a moment is not another writer: when any thread of this
    // process starts a child process, the child holds a copy of every open file, the lock's
    // included, until it executes its program. So a refusal is only final after a short wait.
    let started = std::time::Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < LOCK_PATIENCE => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(LogError::Locked {
                    dir: dir.to_owned(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_error(&path, e)),
        }
    }
    // The pid helps a person find the holder; the lock itself is what matters.
    let _ = file
        .set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    Ok(file)
}

/// The days of the segment files in `dir`, oldest first.
pub(super) fn segment_days(dir: &Path) -> Result<Vec<Day>, LogError> {
    let mut days: Vec<Day> = std::fs::read_dir(dir)
        .map_err(|e| io_error(dir, e))?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| parse_segment_file_name(entry.file_name().to_str()?))
        .collect();
    days.sort_unstable();
    Ok(days)
}

/// Reads every segment's records into an index. With `repair`, a torn tail is saved aside and
/// cut off, and sidecars are brought up to date.
pub(super) fn load(dir: &Path, repair: bool) -> Result<(Index, RecoveryReport), LogError> {
    let mut index = Index::default();
    let mut report = RecoveryReport::default();
    for day in segment_days(dir)? {
        let path = dir.join(segment_file_name(day));
        let loaded = load_segment(dir, &path, repair)?;
        index_segment(&mut index, dir, day, &path, &loaded, &mut report)?;
        report.damaged_lines.extend(loaded.damaged);
        report.torn_tails.extend(loaded.torn);
    }
    Ok((index, report))
}

/// What opening finds without building an index: for a reader, whose index is built only if
/// it looks events up.
pub(super) fn check(dir: &Path) -> Result<RecoveryReport, LogError> {
    let mut report = RecoveryReport::default();
    for day in segment_days(dir)? {
        let loaded = load_segment(dir, &dir.join(segment_file_name(day)), false)?;
        report.damaged_lines.extend(loaded.damaged);
        report.torn_tails.extend(loaded.torn);
    }
    Ok(report)
}

/// Adds one segment's records to the index.
fn index_segment(
    index: &mut Index,
    dir: &Path,
    day: Day,
    path: &Path,
    loaded: &SegmentRecords,
    report: &mut RecoveryReport,
) -> Result<(), LogError> {
    let mut reader: Option<SegmentReader> = None;
    let mut summary_at = |offset: u64| -> Result<EventSummary, LogError> {
        let file = match &mut reader {
            Some(file) => file,
            None => {
                reader.insert(SegmentReader::open(path.to_owned()).map_err(|e| io_error(path, e))?)
            }
        };
        read_summary(file, offset).map_err(|reason| io_error(path, std::io::Error::other(reason)))
    };
    let mut read_id = |day: Day, offset: u64| read_id_at(dir, day, offset);
    let events = loaded
        .records
        .iter()
        .filter(|r| r.kind == RecordKind::Event)
        .count();
    index.reserve(events);
    // (event line offset, slot), in file order and so sorted by offset.
    let mut slots: Vec<(u64, Slot)> = Vec::with_capacity(events);
    let slot_at = |slots: &[(u64, Slot)], offset: u64| {
        slots
            .binary_search_by_key(&offset, |(at, _)| *at)
            .ok()
            .map(|i| slots[i].1)
    };
    for (number, record) in loaded.records.iter().enumerate() {
        match record.kind {
            RecordKind::Event => {
                let inserted = index.insert(
                    None,
                    record.reference,
                    record.micros,
                    day,
                    record.offset,
                    number as u32,
                    record.delivery,
                    record.type_code,
                    record.flags,
                    &mut read_id,
                );
                match inserted {
                    Ok(slot) => {
                        slots.push((record.offset, slot));
                        if record.flags & EVENT_STARTS_PENDING == 0 {
                            let summary = summary_at(record.offset)?;
                            for (i, delivery) in summary.deliveries.iter().enumerate() {
                                index.set_state(slot, i as u16, delivery.state);
                            }
                        }
                    }
                    Err(Refused::Duplicate(id)) => report.damaged_lines.push(DamagedLine {
                        segment: path.to_owned(),
                        offset: record.offset,
                        reason: format!("a second record for event {id}; the first is kept"),
                    }),
                }
            }
            RecordKind::Attempt => {
                let Some(slot) = slot_at(&slots, record.reference) else {
                    continue; // an attempt of a refused duplicate
                };
                let state = state_of_code(record.flags);
                index.apply_attempt(
                    slot,
                    number as u32,
                    record.delivery,
                    state,
                    record.next_micros,
                );
            }
            RecordKind::Skipped => {}
        }
    }
    // Deliveries still pending need their endpoint, URL and next due time in memory: read
    // from their event lines and attempts. Usually few, or none.
    let pending: Vec<(u64, Slot)> = slots
        .iter()
        .copied()
        .filter(|&(_, slot)| {
            index.entry(slot).is_some_and(|entry| {
                (0..entry.deliveries).any(|d| index.state(slot, d) == DeliveryState::Pending)
            })
        })
        .collect();
    index.set_segment_end(day, loaded.len, loaded.records.len() as u32);
    if let Some(segment) = index
        .segments
        .get_mut(&day)
        .filter(|_| !loaded.sidecar_current)
    {
        segment.unsaved = Some(std::sync::Arc::new(loaded.records.clone()));
    }
    if pending.is_empty() {
        return Ok(());
    }
    // Per pending event's delivery: the next due time after its last attempt, and how many.
    let mut changed: HashMap<(Slot, u16), (Option<i64>, u32)> = HashMap::new();
    for record in loaded
        .records
        .iter()
        .filter(|r| r.kind == RecordKind::Attempt)
    {
        if let Some(slot) = slot_at(&pending, record.reference) {
            let change = changed.entry((slot, record.delivery)).or_default();
            *change = (record.next_micros, change.1 + 1);
        }
    }
    for (offset, slot) in pending {
        let summary = summary_at(offset)?;
        index.track_pending(slot, &summary, &|d| changed.get(&(slot, d)).copied());
    }
    Ok(())
}

/// Saves the torn bytes to their own file, then cuts the segment back to its last complete
/// line, so the next append starts on a fresh line. The torn line was never acknowledged: its
/// fsync had not completed when the process died.
pub(super) fn set_aside_torn_tail(
    dir: &Path,
    segment: &Path,
    len: u64,
    torn: &[u8],
) -> Result<PathBuf, LogError> {
    let name = segment
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("segment");
    let saved = dir.join(format!("{name}.torn-{len}"));
    let mut file = File::create(&saved).map_err(|e| io_error(&saved, e))?;
    file.write_all(torn)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(&saved, e))?;
    sync_dir(dir)?;
    cut_back(segment, len)?;
    Ok(saved)
}

/// Cuts the segment back to `len`, durably.
pub(super) fn cut_back(segment: &Path, len: u64) -> Result<(), LogError> {
    OpenOptions::new()
        .write(true)
        .open(segment)
        .and_then(|file| file.set_len(len).and_then(|()| file.sync_all()))
        .map_err(|e| io_error(segment, e))
}
