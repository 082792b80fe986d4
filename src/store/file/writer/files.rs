//! The writer's files: appending a batch to its segments and fsyncing them, its index records
//! to the sidecars, and keeping a few segment files open.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::padded::PaddedSegment;
use super::{DayBatch, MAX_OPEN_FILES, Writer};
use crate::store::LogError;
use crate::store::file::segment::{Day, segment_file_name};
use crate::store::file::sidecar::sidecar_path;
use crate::store::file::{io_error, lock_index};

impl Writer {
    /// Writes the batch's lines to their segments and fsyncs each segment once (and the
    /// directory, if a segment was created).
    pub(super) fn write_and_sync(
        &mut self,
        days: &BTreeMap<Day, DayBatch>,
    ) -> Result<(), LogError> {
        let mut created = false;
        // Close files this batch does not touch when the cache would overflow; never one it
        // is about to write to.
        let missing = days
            .keys()
            .filter(|day| !self.files.contains_key(day))
            .count();
        if self.files.len() + missing > MAX_OPEN_FILES {
            self.files.retain(|day, _| days.contains_key(day));
            self.sidecars.retain(|day, _| days.contains_key(day));
        }
        for day in days.keys() {
            if !self.files.contains_key(day) {
                let path = self.dir.join(segment_file_name(*day));
                created |= !path.exists();
                let end = lock_index(&self.index).segment_len(*day);
                let file = PaddedSegment::open(&path, end).map_err(|e| io_error(&path, e))?;
                self.files.insert(*day, file);
            }
        }
        for (day, staged) in days {
            // The path only for an error: naming a segment formats a date.
            let failed = |e| io_error(&self.dir.join(segment_file_name(*day)), e);
            let file = self
                .files
                .get_mut(day)
                .ok_or_else(|| failed(std::io::Error::other("segment file not open")))?;
            file.append_durably(&staged.lines).map_err(failed)?;
        }
        if created {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Appends the batch's index records to the sidecars (not fsynced: see `sidecar`).
    pub(super) fn write_sidecars(
        &mut self,
        days: &BTreeMap<Day, DayBatch>,
    ) -> Result<(), LogError> {
        for (day, staged) in days {
            let path = || sidecar_path(&self.dir.join(segment_file_name(*day)));
            let file = match self.sidecars.entry(*day) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => {
                    entry.insert(open_append(&path())?)
                }
            };
            file.write_all(&staged.sidecar)
                .map_err(|e| io_error(&path(), e))?;
        }
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io_error(path, e))
}

/// Makes the directory's entries (a created or deleted segment) durable.
pub(in crate::store::file) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|e| io_error(dir, e))
}
