//! CSV formatting on two worker threads: parsing each body for its columns costs more than
//! reading the log, so rows go out in batches, are formatted in parallel into byte buffers,
//! and are written back in their order. Memory is bounded by the batches in flight.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::row::write_csv_row;
use crate::store::EventRow;

/// Rows per batch.
const BATCH: usize = 1024;
/// Formatting threads.
const WORKERS: usize = 2;
/// Batches queued for the workers beyond those they are formatting.
const QUEUED: usize = 6;

type Job = (u64, Vec<EventRow>);
type Formatted = (u64, Vec<u8>, usize);

pub(super) struct CsvPipeline<'w> {
    jobs: Option<SyncSender<Job>>,
    formatted: Receiver<Formatted>,
    workers: Vec<JoinHandle<()>>,
    batch: Vec<EventRow>,
    sent: u64,
    next_to_write: u64,
    waiting: BTreeMap<u64, (Vec<u8>, usize)>,
    out: &'w mut (dyn Write + Send),
    written: u64,
}

impl<'w> CsvPipeline<'w> {
    pub(super) fn new(out: &'w mut (dyn Write + Send), escape_formulas: bool) -> Self {
        let (jobs, queue) = sync_channel::<Job>(QUEUED);
        let queue = Arc::new(Mutex::new(queue));
        let (done, formatted) = channel::<Formatted>();
        let workers = (0..WORKERS)
            .filter_map(|_| {
                let (queue, done) = (queue.clone(), done.clone());
                std::thread::Builder::new()
                    .name("fermion-csv".into())
                    .spawn(move || format_batches(&queue, &done, escape_formulas))
                    .ok()
            })
            .collect();
        Self {
            jobs: Some(jobs),
            formatted,
            workers,
            batch: Vec::with_capacity(BATCH),
            sent: 0,
            next_to_write: 0,
            waiting: BTreeMap::new(),
            out,
            written: 0,
        }
    }

    /// Adds a row; writes whatever is formatted by now. Returns the rows written so far.
    pub(super) fn push(&mut self, row: EventRow) -> std::io::Result<u64> {
        self.batch.push(row);
        if self.batch.len() == BATCH {
            self.send_batch()?;
            self.write_formatted(false)?;
        }
        Ok(self.written)
    }

    /// Formats and writes every row pushed. Returns the rows written.
    pub(super) fn finish(mut self) -> std::io::Result<u64> {
        if !self.batch.is_empty() {
            self.send_batch()?;
        }
        self.jobs = None; // the workers stop once the queue is empty
        self.write_formatted(true)?;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        Ok(self.written)
    }

    fn send_batch(&mut self) -> std::io::Result<()> {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        let stopped = || std::io::Error::other("the CSV formatting threads stopped");
        let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
        jobs.send((self.sent, batch)).map_err(|_| stopped())?;
        self.sent += 1;
        Ok(())
    }

    /// Writes formatted batches in order; with `all`, waits for every batch sent.
    fn write_formatted(&mut self, all: bool) -> std::io::Result<()> {
        loop {
            while let Some((bytes, rows)) = self.waiting.remove(&self.next_to_write) {
                self.out.write_all(&bytes)?;
                self.written += rows as u64;
                self.next_to_write += 1;
            }
            if self.next_to_write == self.sent {
                return Ok(());
            }
            let next = if all {
                self.formatted
                    .recv()
                    .map_err(|_| std::io::Error::other("the CSV formatting threads stopped"))?
            } else {
                match self.formatted.try_recv() {
                    Ok(next) => next,
                    Err(_) => return Ok(()),
                }
            };
            self.waiting.insert(next.0, (next.1, next.2));
        }
    }
}

impl Drop for CsvPipeline<'_> {
    fn drop(&mut self) {
        // On an early return the workers finish their batch and stop.
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn format_batches(queue: &Mutex<Receiver<Job>>, done: &Sender<Formatted>, escape: bool) {
    let mut timestamp = Vec::with_capacity(24);
    loop {
        let job = queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .recv();
        let Ok((number, rows)) = job else {
            return;
        };
        let mut bytes = Vec::with_capacity(rows.len() * 1024);
        for row in &rows {
            write_csv_row(&mut bytes, &mut timestamp, row, escape);
        }
        if done.send((number, bytes, rows.len())).is_err() {
            return;
        }
    }
}
