//! Opening a log: the writer's lock, reading every segment into the index, and repairing what a
//! crash left behind.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::index::Index;
use super::io_error;
use super::segment::{self, Day, Line, parse_line, parse_segment_file_name, segment_file_name};
use super::writer::sync_dir;
use crate::store::LogError;

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

/// Reads every segment into an index. With `repair`, a torn tail is saved aside and cut off.
pub(super) fn load(dir: &Path, repair: bool) -> Result<(Index, RecoveryReport), LogError> {
    let mut days: Vec<Day> = std::fs::read_dir(dir)
        .map_err(|e| io_error(dir, e))?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| parse_segment_file_name(entry.file_name().to_str()?))
        .collect();
    days.sort_unstable();
    let mut index = Index::default();
    let mut report = RecoveryReport::default();
    for day in days {
        let path = dir.join(segment_file_name(day));
        let (len, torn) = segment::read_lines(&path, |offset, line| match parse_line(line) {
            Ok(Line::Event(summary)) => {
                let id = summary.event_unique_id.clone();
                if !index.insert(summary, day, offset) {
                    report.damaged_lines.push(DamagedLine {
                        segment: path.clone(),
                        offset,
                        reason: format!("a second record for event {id}; the first is kept"),
                    });
                }
            }
            Ok(Line::Attempt(record)) => {
                let slot = index.slot_of(&record.event_unique_id);
                match slot.filter(|s| index.delivery_index(*s, &record.endpoint_id).is_some()) {
                    Some(slot) => index.apply_attempt(slot, &record, offset),
                    None => report.damaged_lines.push(DamagedLine {
                        segment: path.clone(),
                        offset,
                        reason: format!(
                            "an attempt for event {} / endpoint {} that is not in this segment",
                            record.event_unique_id, record.endpoint_id
                        ),
                    }),
                }
            }
            Err(reason) => report.damaged_lines.push(DamagedLine {
                segment: path.clone(),
                offset,
                reason,
            }),
        })
        .map_err(|e| io_error(&path, e))?;
        index.set_segment_len(day, len);
        if !torn.is_empty() {
            let saved_to = if repair {
                Some(set_aside_torn_tail(dir, &path, len, &torn)?)
            } else {
                None
            };
            report.torn_tails.push(TornTail {
                segment: path.clone(),
                offset: len,
                bytes: torn.len() as u64,
                saved_to,
            });
        }
    }
    Ok((index, report))
}

/// Saves the torn bytes to their own file, then cuts the segment back to its last complete
/// line, so the next append starts on a fresh line. The torn line was never acknowledged: its
/// fsync had not completed when the process died.
fn set_aside_torn_tail(
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
    let segment_file = OpenOptions::new()
        .write(true)
        .open(segment)
        .map_err(|e| io_error(segment, e))?;
    segment_file
        .set_len(len)
        .and_then(|()| segment_file.sync_all())
        .map_err(|e| io_error(segment, e))?;
    sync_dir(dir)?;
    Ok(saved)
}
