//! Sidecar index files: one `YYYY-MM-DD.idx` beside each segment, one fixed-size binary record
//! per segment line, so opening and exporting a log need not parse its JSON.
//!
//! The segment stays the source of truth; a sidecar is a cache of what parsing it would give.
//! Records are appended only after their lines are fsynced, and the sidecar itself is not
//! fsynced: after a crash it may be short or end in garbage. Each record carries a checksum
//! and the offset of its line, and records cover the segment contiguously from byte 0, so
//! reading stops at the first record that is damaged or does not continue the previous one;
//! the lines after it are parsed again. A segment shorter than its sidecar was edited by
//! hand, and its sidecar is rebuilt from scratch.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::event::EventKind;
use crate::store::record::DeliveryState;

/// Bytes per record.
pub(super) const RECORD_LEN: usize = 52;

/// `YYYY-MM-DD.idx` for the segment `YYYY-MM-DD.jsonl`.
pub(super) fn sidecar_path(segment: &Path) -> std::path::PathBuf {
    segment.with_extension("idx")
}

/// What a segment line is, as far as the index is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RecordKind {
    /// A line the index skips (damaged, or an attempt without its event); the reason is found
    /// again by parsing the line.
    Skipped,
    Event,
    Attempt,
}

/// One segment line, indexed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SideRecord {
    pub(super) kind: RecordKind,
    /// The line's offset in the segment, and its length with the newline.
    pub(super) offset: u64,
    pub(super) len: u32,
    /// Event: its timestamp. Attempt: when it started. In microseconds since 1970.
    pub(super) micros: i64,
    /// Event: [`id_hash`] of its id. Attempt: the offset of its event's line.
    pub(super) reference: u64,
    /// Event: how many deliveries. Attempt: which delivery (its index in the event's list).
    pub(super) delivery: u16,
    /// Event: [`EVENT_IS_TEST`] and [`EVENT_STARTS_PENDING`]. Attempt: the new state.
    pub(super) flags: u8,
    /// Event: [`kind_code`] of its type. Attempt: 0.
    pub(super) type_code: u8,
    /// Event: where the body starts in the line (0: read the line to find it). Attempt: the
    /// HTTP status (0: none).
    pub(super) detail: u32,
    /// Attempt: when the next attempt is due, if the delivery stays pending.
    pub(super) next_micros: Option<i64>,
}

/// Event flag: `isTestEvent`.
pub(super) const EVENT_IS_TEST: u8 = 1;
/// Event flag: every delivery was pending when the event was appended (the usual case; without
/// it, the initial states are read from the line).
pub(super) const EVENT_STARTS_PENDING: u8 = 2;

/// The type code of a known kind (1–4), or 0 for any other type.
pub(super) fn kind_code(event_type: &str) -> u8 {
    EventKind::ALL
        .iter()
        .position(|kind| kind.as_str() == event_type)
        .map_or(0, |i| i as u8 + 1)
}

/// The kind of a type code, if it is one of the four.
pub(super) fn kind_of_code(code: u8) -> Option<EventKind> {
    EventKind::ALL
        .get(usize::from(code).checked_sub(1)?)
        .copied()
}

pub(super) fn state_code(state: DeliveryState) -> u8 {
    match state {
        DeliveryState::Pending => 0,
        DeliveryState::Delivered => 1,
        DeliveryState::Failed => 2,
    }
}

pub(super) fn state_of_code(code: u8) -> DeliveryState {
    match code {
        1 => DeliveryState::Delivered,
        2 => DeliveryState::Failed,
        _ => DeliveryState::Pending,
    }
}

/// A stable 64-bit hash of an event id (SipHash-2-4 with fixed keys): stored in sidecars, so it
/// must not change between runs or Rust versions, which `DefaultHasher` does not promise.
pub(super) fn id_hash(id: &str) -> u64 {
    use std::hash::Hasher;
    #[allow(deprecated)] // Deprecated for hash maps, but the only std hash with a fixed algorithm.
    let mut hasher =
        std::hash::SipHasher::new_with_keys(0x6665_726d_696f_6e21, 0x7765_6268_6f6f_6b73);
    hasher.write(id.as_bytes());
    hasher.finish()
}

pub(super) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// A checksum of the record's bytes, a word at a time; a record of zeros (a page lost in a
/// crash) never passes.
fn checksum(bytes: &[u8]) -> u32 {
    let hash = bytes
        .chunks(8)
        .fold(0x6a09_e667_f3bc_c908_u64, |hash, word| {
            let mut padded = [0u8; 8];
            padded[..word.len()].copy_from_slice(word);
            (hash ^ u64::from_le_bytes(padded))
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .rotate_left(29)
        });
    (hash ^ (hash >> 32)) as u32
}

impl SideRecord {
    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        // Built in place and appended once: a dozen small appends each checked capacity.
        let mut record = [0u8; RECORD_LEN];
        record[0] = match self.kind {
            RecordKind::Skipped => 0u8,
            RecordKind::Event => 1,
            RecordKind::Attempt => 2,
        };
        record[1] = self.flags;
        let mut at = 2;
        for field in [
            &self.delivery.to_le_bytes()[..],
            &self.len.to_le_bytes(),
            &self.offset.to_le_bytes(),
            &self.micros.to_le_bytes(),
            &self.reference.to_le_bytes(),
            &self.next_micros.unwrap_or(i64::MIN).to_le_bytes(),
            &self.detail.to_le_bytes(),
            &[self.type_code, 0, 0, 0],
        ] {
            record[at..at + field.len()].copy_from_slice(field);
            at += field.len();
        }
        let sum = checksum(&record[..at]);
        record[at..].copy_from_slice(&sum.to_le_bytes());
        out.extend_from_slice(&record);
    }

    /// The record in `bytes`, or `None` if it is damaged.
    fn decode(bytes: &[u8; RECORD_LEN]) -> Option<Self> {
        let (body, sum) = bytes.split_at(RECORD_LEN - 4);
        if checksum(body).to_le_bytes() != sum {
            return None;
        }
        let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().unwrap_or([0; 8]));
        let kind = match body[0] {
            0 => RecordKind::Skipped,
            1 => RecordKind::Event,
            2 => RecordKind::Attempt,
            _ => return None,
        };
        let next = u64_at(32) as i64;
        Some(Self {
            kind,
            flags: body[1],
            delivery: u16::from_le_bytes([body[2], body[3]]),
            len: u32::from_le_bytes([body[4], body[5], body[6], body[7]]),
            offset: u64_at(8),
            micros: u64_at(16) as i64,
            reference: u64_at(24),
            next_micros: (next != i64::MIN).then_some(next),
            detail: u32::from_le_bytes([body[40], body[41], body[42], body[43]]),
            type_code: body[44],
        })
    }

    /// Where the next line starts.
    pub(super) fn end(&self) -> u64 {
        self.offset + u64::from(self.len)
    }
}

/// Reads a sidecar's intact records: those from the start that pass their checksum and continue
/// the previous record's line. A missing file reads as empty. The flag is false if an intact
/// record ends beyond `segment_len`: the segment was cut or edited, and the sidecar is stale.
pub(super) fn read_sidecar(path: &Path, segment_len: u64) -> io::Result<(Vec<SideRecord>, bool)> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), true)),
        Err(e) => return Err(e),
    };
    let expected = file.metadata()?.len() as usize / RECORD_LEN;
    let mut reader = BufReader::with_capacity(1 << 18, file);
    let mut records = Vec::with_capacity(expected);
    let mut bytes = [0u8; RECORD_LEN];
    let mut next_offset = 0;
    loop {
        match reader.read_exact(&mut bytes) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let Some(record) = SideRecord::decode(&bytes) else {
            break;
        };
        if record.offset != next_offset || record.len == 0 {
            break;
        }
        if record.end() > segment_len {
            return Ok((records, false));
        }
        next_offset = record.end();
        records.push(record);
    }
    Ok((records, true))
}

/// The attempt records among records `from..to` of a sidecar that belong to the events whose
/// lines start at `events`, by event offset. Other records are skipped without decoding.
pub(super) fn attempts_of(
    path: &Path,
    from: u32,
    to: u32,
    events: &std::collections::HashSet<u64>,
) -> io::Result<std::collections::HashMap<u64, Vec<u64>>> {
    use std::io::{Seek, SeekFrom};
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(u64::from(from) * RECORD_LEN as u64))?;
    let count = to.saturating_sub(from) as usize;
    let mut bytes = vec![0u8; count * RECORD_LEN];
    file.read_exact(&mut bytes)?;
    let mut found: std::collections::HashMap<u64, Vec<u64>> = std::collections::HashMap::new();
    let single = match events.len() {
        1 => events.iter().next().copied(),
        _ => None,
    };
    for chunk in bytes.chunks_exact(RECORD_LEN) {
        if chunk[0] != 2 {
            continue;
        }
        let event = u64::from_le_bytes(chunk[24..32].try_into().unwrap_or([0; 8]));
        // A single event (a `get`) is compared directly; hashing costs more than the check.
        let wanted = match single {
            Some(only) => event == only,
            None => events.contains(&event),
        };
        if !wanted {
            continue;
        }
        let record = chunk
            .try_into()
            .ok()
            .and_then(SideRecord::decode)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "damaged index record in {}; reopen the log to rebuild it",
                        path.display()
                    ),
                )
            })?;
        found.entry(event).or_default().push(record.offset);
    }
    Ok(found)
}
