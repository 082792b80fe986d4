//! `FileCheckoutStore`: pending checkouts in a JSON Lines journal, fsynced on every change.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Checkout, CheckoutStore};
use crate::store::LogError;

/// Compact the journal once it holds this many more lines than live checkouts.
const COMPACT_AFTER: usize = 10_000;

/// Pending checkouts in `checkouts.jsonl`: one line per change, fsynced before a call returns.
/// On open the journal is replayed (a torn last line is ignored); it is compacted by writing a
/// new file and renaming it over the old one, never by editing in place.
#[derive(Debug)]
pub struct FileCheckoutStore {
    path: PathBuf,
    state: Mutex<Journal>,
}

#[derive(Debug)]
struct Journal {
    file: File,
    pending: BTreeMap<String, Checkout>,
    lines: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
enum Entry {
    Initiated(Checkout),
    #[serde(rename_all = "camelCase")]
    Removed {
        order_id: String,
    },
}

fn io(path: &Path, source: std::io::Error) -> LogError {
    LogError::Io {
        path: path.to_owned(),
        source,
    }
}

impl FileCheckoutStore {
    /// Opens (creating if needed) `dir/checkouts.jsonl`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, LogError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let path = dir.join("checkouts.jsonl");
        let mut pending = BTreeMap::new();
        let mut lines = 0;
        if path.exists() {
            let reader = BufReader::new(File::open(&path).map_err(|e| io(&path, e))?);
            for line in reader.split(b'\n') {
                let line = line.map_err(|e| io(&path, e))?;
                // A torn or damaged line (a crash mid-write) was never acknowledged: skip it.
                match serde_json::from_slice::<Entry>(&line) {
                    Ok(Entry::Initiated(checkout)) => {
                        pending.insert(checkout.order_id.clone(), checkout);
                    }
                    Ok(Entry::Removed { order_id }) => {
                        pending.remove(&order_id);
                    }
                    Err(_) => {}
                }
                lines += 1;
            }
        }
        let mut journal = Journal {
            file: OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| io(&path, e))?,
            pending,
            lines,
        };
        // Start from a compact journal, which also drops any torn tail.
        compact(&path, &mut journal)?;
        Ok(Self {
            path,
            state: Mutex::new(journal),
        })
    }

    fn write(&self, entry: &Entry) -> Result<(), LogError> {
        let mut journal = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut line = serde_json::to_vec(entry).unwrap_or_default();
        line.push(b'\n');
        journal
            .file
            .write_all(&line)
            .and_then(|()| journal.file.sync_data())
            .map_err(|e| io(&self.path, e))?;
        match entry {
            Entry::Initiated(checkout) => {
                journal
                    .pending
                    .insert(checkout.order_id.clone(), checkout.clone());
            }
            Entry::Removed { order_id } => {
                journal.pending.remove(order_id);
            }
        }
        journal.lines += 1;
        if journal.lines > journal.pending.len() + COMPACT_AFTER {
            compact(&self.path, &mut journal)?;
        }
        Ok(())
    }
}

/// Writes the live checkouts to a new file, fsyncs it, and renames it over the journal.
fn compact(path: &Path, journal: &mut Journal) -> Result<(), LogError> {
    let temporary = path.with_extension("jsonl.compacting");
    let mut file = File::create(&temporary).map_err(|e| io(&temporary, e))?;
    for checkout in journal.pending.values() {
        let mut line = serde_json::to_vec(&Entry::Initiated(checkout.clone())).unwrap_or_default();
        line.push(b'\n');
        file.write_all(&line).map_err(|e| io(&temporary, e))?;
    }
    file.sync_all().map_err(|e| io(&temporary, e))?;
    std::fs::rename(&temporary, path).map_err(|e| io(path, e))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(dir, e))?;
    }
    journal.file = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| io(path, e))?;
    journal.lines = journal.pending.len();
    Ok(())
}

#[async_trait]
impl CheckoutStore for FileCheckoutStore {
    async fn insert(&self, checkout: Checkout) -> Result<(), LogError> {
        self.write(&Entry::Initiated(checkout))
    }

    async fn remove(&self, order_id: &str) -> Result<bool, LogError> {
        let present = self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pending
            .contains_key(order_id);
        if present {
            self.write(&Entry::Removed {
                order_id: order_id.to_owned(),
            })?;
        }
        Ok(present)
    }

    async fn pending(&self) -> Result<Vec<Checkout>, LogError> {
        let journal = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Ok(journal.pending.values().cloned().collect())
    }
}
