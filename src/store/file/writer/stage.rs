//! Staging a request into the batch: checks against the index, the lines to write, their
//! sidecar records, and the index changes to make once they are on disk.

use super::{Batch, DayBatch, PreparedAttempt, PreparedEvent, Staged, Writer};
use crate::store::LogError;
use crate::store::file::index::Index;
use crate::store::file::io_error;
use crate::store::file::lock_index;
use crate::store::file::records::{attempt_record, event_record, read_summary};
use crate::store::file::segment::{Day, SegmentReader, segment_file_name};
use crate::store::file::sidecar::{RECORD_LEN, SideRecord};
use crate::store::record::AttemptRecord;

impl Writer {
    pub(super) fn stage_append(
        &self,
        batch: &mut Batch,
        event: PreparedEvent,
    ) -> Result<(), LogError> {
        let PreparedEvent {
            summary,
            id_hash,
            day,
            line,
            body_start,
        } = event;
        let (offset, record_number) = {
            let index = lock_index(&self.index);
            let id = &summary.event_unique_id;
            if batch.has_new_event(id_hash, id) || self.is_logged(&index, id_hash, id) {
                return Err(LogError::DuplicateEvent { id: id.clone() });
            }
            staged_end(&index, batch, day)
        };
        let record = event_record(&summary, id_hash, offset, line.len(), body_start);
        batch.stage(day, line, &record);
        batch.new_ids.insert(id_hash);
        batch
            .changes
            .push(Staged::Event(summary, day, record, record_number));
        Ok(())
    }

    /// Whether an event with this id is in the log. An equal id hash is checked against the id
    /// on disk, since two ids may share one.
    fn is_logged(&self, index: &Index, id_hash: u64, id: &str) -> bool {
        let Some(entry) = index
            .slot_of_hashed(id_hash, id)
            .and_then(|slot| index.entry(slot))
        else {
            return false;
        };
        let path = self.dir.join(segment_file_name(entry.day));
        SegmentReader::open_for_lookups(path)
            .map_err(|e| e.to_string())
            .and_then(|mut file| read_summary(&mut file, entry.offset))
            // Unreadable: count it as present rather than risk a second record for one id.
            .map_or(true, |summary| summary.event_unique_id == id)
    }

    pub(super) fn stage_attempt(
        &self,
        batch: &mut Batch,
        prepared: PreparedAttempt,
    ) -> Result<(), LogError> {
        let PreparedAttempt {
            record,
            id_hash,
            line,
        } = prepared;
        let unknown_event = || LogError::UnknownEvent {
            id: record.event_unique_id.clone(),
        };
        let (slot, entry, delivery, (offset, number)) = {
            let index = lock_index(&self.index);
            let slot = index
                .slot_of_hashed(id_hash, &record.event_unique_id)
                .ok_or_else(unknown_event)?;
            let entry = *index.entry(slot).ok_or_else(unknown_event)?;
            let delivery =
                match index.pending_delivery(slot, &record.event_unique_id, &record.endpoint_id) {
                    Some(delivery) => Some(delivery),
                    // Not pending (a re-trigger of a finished delivery): its line says which.
                    None => self.delivery_on_disk(entry.day, entry.offset, &record)?,
                };
            (slot, entry, delivery, staged_end(&index, batch, entry.day))
        };
        let delivery = delivery.ok_or_else(|| LogError::UnknownDelivery {
            event_id: record.event_unique_id.clone(),
            endpoint_id: record.endpoint_id.clone(),
        })?;
        let side = attempt_record(
            &record,
            offset,
            line.len(),
            entry.offset,
            usize::from(delivery),
        );
        batch.stage(entry.day, line, &side);
        batch.changes.push(Staged::Attempt(
            slot,
            number,
            delivery,
            record.state,
            side.next_micros,
        ));
        Ok(())
    }

    /// The index of the event's delivery to the record's endpoint, read from the event line.
    fn delivery_on_disk(
        &self,
        day: Day,
        offset: u64,
        record: &AttemptRecord,
    ) -> Result<Option<u16>, LogError> {
        let path = self.dir.join(segment_file_name(day));
        let mut file =
            SegmentReader::open_for_lookups(path.clone()).map_err(|e| io_error(&path, e))?;
        let summary = read_summary(&mut file, offset)
            .map_err(|reason| io_error(&path, std::io::Error::other(reason)))?;
        if summary.event_unique_id != record.event_unique_id {
            return Err(LogError::UnknownEvent {
                id: record.event_unique_id.clone(),
            });
        }
        Ok(summary
            .deliveries
            .iter()
            .position(|d| d.endpoint_id == record.endpoint_id)
            .and_then(|i| u16::try_from(i).ok()))
    }
}

impl Batch {
    /// Whether the batch already appends an event with this id.
    fn has_new_event(&self, id_hash: u64, id: &str) -> bool {
        // The hash set answers nearly every time; only an equal hash needs the ids compared.
        self.new_ids.contains(&id_hash)
            && self.changes.iter().any(|change| {
                matches!(change, Staged::Event(summary, ..) if summary.event_unique_id == id)
            })
    }

    /// An empty batch with room for `room` requests.
    pub(super) fn with_room(room: usize) -> Self {
        Self {
            room,
            changes: Vec::with_capacity(room),
            replies: Vec::with_capacity(room),
            ..Self::default()
        }
    }

    fn stage(&mut self, day: Day, line: Vec<u8>, record: &SideRecord) {
        let room = self.room;
        let staged = self.days.entry(day).or_insert_with(|| DayBatch {
            lines: Vec::with_capacity(room),
            sidecar: Vec::with_capacity(room * RECORD_LEN),
            ..DayBatch::default()
        });
        staged.bytes += line.len() as u64;
        staged.lines.push(line);
        record.encode(&mut staged.sidecar);
        staged.records += 1;
    }
}

/// Where the next line staged for `day` will start in its file, and its record number.
fn staged_end(index: &Index, batch: &Batch, day: Day) -> (u64, u32) {
    let (bytes, records) = batch
        .days
        .get(&day)
        .map_or((0, 0), |staged| (staged.bytes, staged.records));
    (
        index.segment_len(day) + bytes,
        index.segment_records(day) + records,
    )
}
