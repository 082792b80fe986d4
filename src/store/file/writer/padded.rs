//! A segment open for appending, kept ahead of its lines with zeros.
//!
//! An fsync of a file that grew must also write the file's new size and block map: on ext4
//! without a journal, three writes one after another. Overwriting blocks that already hold
//! data needs only the data written: one. So the writer extends a segment with zeros a
//! mebibyte at a time and writes its lines over them, and a commit's `fdatasync` writes just
//! the lines, except for the one commit in many that extends the file (BENCHMARKS.md, seventh
//! session, has the measurements). Databases do the same with their write-ahead logs.
//!
//! The zeros are cut off again when the writer closes the file, so a segment at rest is plain
//! JSON Lines. After a crash, readers stop at the first zero byte (JSON text never holds one:
//! a string escapes it) and a writable open cuts the padding off.

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// How far ahead of its lines a segment is padded each time it runs out of zeros.
const PADDING: u64 = 1 << 20;

/// The zeros it pads with, written a block at a time.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

pub(super) struct PaddedSegment {
    file: File,
    /// Where the next line goes: the end of the last line written.
    end: u64,
    /// How far the file holds zeros: from `end` to here, and nothing else to the file's end
    /// (which lies here, or a little further when padding was refused part way).
    padded_to: u64,
}

impl PaddedSegment {
    /// Opens (or creates) a segment whose lines end at `end`, as the index knows them.
    pub(super) fn open(path: &Path, end: u64) -> std::io::Result<Self> {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        let len = file.metadata()?.len();
        if len < end {
            return Err(std::io::Error::other(format!(
                "the segment is {len} bytes long but its records end at {end}: it was cut \
                 short while the log was open; reopen the log to re-read it"
            )));
        }
        if len > end {
            // Not written by this writer (a crash's leftovers are cut off when the log opens):
            // dropped, so that only zeros ever follow the last line.
            file.set_len(end)?;
        }
        file.seek(SeekFrom::Start(end))?;
        Ok(Self {
            file,
            end,
            padded_to: end,
        })
    }

    /// Writes `lines` after the last line, then makes them durable.
    pub(super) fn append_durably(&mut self, lines: &[Vec<u8>]) -> std::io::Result<()> {
        let bytes: u64 = lines.iter().map(|line| line.len() as u64).sum();
        let new_end = self.end + bytes;
        if new_end > self.padded_to {
            self.pad_past(new_end);
        }
        write_all_lines(&mut self.file, lines)?;
        self.end = new_end;
        self.padded_to = self.padded_to.max(new_end);
        // One fdatasync covers the lines and, when the file was just extended, its new zeros
        // and size.
        self.file.sync_data()
    }

    /// Extends the file with zeros to the first multiple of `PADDING` past `needed`, as far as
    /// it can. Only an optimisation, so a failure is not an error: with no room for the zeros
    /// (a full disk, a file size limit), the lines still go in as they would without padding,
    /// and fail only if they do not fit themselves.
    fn pad_past(&mut self, needed: u64) {
        let target = (needed / PADDING + 1) * PADDING;
        while self.padded_to < target {
            let block = (target - self.padded_to).min(ZEROS.len() as u64) as usize;
            if self
                .file
                .write_all_at(&ZEROS[..block], self.padded_to)
                .is_err()
            {
                return;
            }
            self.padded_to += block as u64;
        }
    }
}

impl Drop for PaddedSegment {
    /// Cuts the padding off, leaving the file its lines alone: however the writer lets go of
    /// a segment (closing the log, a full cache of open files, a failed write, retention).
    /// Neither fsynced nor checked: padding that outlives a crash or a failure here is cut off
    /// when the log is next opened.
    fn drop(&mut self) {
        // Even when `padded_to` is `end`: a block of zeros cut short may lie past both.
        let _ = self.file.set_len(self.end);
    }
}

/// Writes every line, in order, with as few `writev` calls as the kernel allows.
fn write_all_lines(file: &mut File, lines: &[Vec<u8>]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = lines.iter().map(|line| IoSlice::new(line)).collect();
    let mut remaining = &mut slices[..];
    while !remaining.is_empty() {
        match file.write_vectored(remaining) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut remaining, written),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file in a fresh directory under the system temp dir; the directory goes when dropped.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(label: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "fermion-padded-{label}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("a scratch directory");
            Self(dir)
        }

        fn file(&self) -> std::path::PathBuf {
            self.0.join("segment.jsonl")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn lines(first: usize, count: usize) -> Vec<Vec<u8>> {
        (first..first + count)
            .map(|i| format!("{{\"line\":{i},\"pad\":\"{}\"}}\n", "x".repeat(i % 700)).into_bytes())
            .collect()
    }

    #[test]
    fn lines_overwrite_the_zeros_and_closing_leaves_exactly_the_lines() {
        let scratch = Scratch::new("lines");
        let mut written = Vec::new();
        let mut segment = PaddedSegment::open(&scratch.file(), 0).expect("a new segment");
        // About 1.7 MiB in batches of 64 lines: past the first mebibyte of padding.
        for batch in 0..80 {
            let batch = lines(batch * 64, 64);
            segment.append_durably(&batch).expect("an append");
            written.extend(batch.concat());
            let on_disk = std::fs::read(scratch.file()).expect("the segment");
            assert_eq!(
                on_disk.len() as u64 % PADDING,
                0,
                "padded in whole mebibytes"
            );
            assert!(on_disk.len() > written.len());
            assert_eq!(&on_disk[..written.len()], &written[..]);
            assert!(on_disk[written.len()..].iter().all(|b| *b == 0));
        }
        assert!(written.len() as u64 > PADDING);
        drop(segment);
        assert_eq!(std::fs::read(scratch.file()).expect("the segment"), written);

        // Reopened where its lines end, it carries on after them.
        let mut segment =
            PaddedSegment::open(&scratch.file(), written.len() as u64).expect("the segment again");
        let more = lines(9_000, 3);
        segment.append_durably(&more).expect("an append");
        drop(segment);
        written.extend(more.concat());
        assert_eq!(std::fs::read(scratch.file()).expect("the segment"), written);
    }

    #[test]
    fn bytes_past_the_records_are_dropped_and_a_file_cut_short_is_refused() {
        let scratch = Scratch::new("ends");
        std::fs::write(scratch.file(), b"{\"a\":1}\nstray bytes").expect("a segment");
        let mut segment = PaddedSegment::open(&scratch.file(), 8).expect("the segment");
        segment
            .append_durably(&[b"{\"b\":2}\n".to_vec()])
            .expect("an append");
        drop(segment);
        assert_eq!(
            std::fs::read(scratch.file()).expect("the segment"),
            b"{\"a\":1}\n{\"b\":2}\n"
        );

        let error = PaddedSegment::open(&scratch.file(), 100)
            .err()
            .expect("a segment shorter than its records");
        assert!(error.to_string().contains("reopen the log"), "{error}");
    }
}
