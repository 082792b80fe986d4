//! Exporting the event log: CSV for spreadsheets and scripts, JSON Lines of the exact bodies.

mod row;

use std::io::Write;
use std::ops::ControlFlow;

use crate::store::{EventRow, LogError, LogFilter, LogStore, has_line_break};

/// The CSV header, in column order.
pub const CSV_COLUMNS: [&str; 19] = [
    "eventUniqueId",
    "timestampIsoString",
    "eventType",
    "isTestEvent",
    "deliveryStatus",
    "attempts",
    "lastResponseStatus",
    "userId",
    "userFullname",
    "userEmail",
    "userPhoneNumber",
    "courseSlug",
    "courseName",
    "orderId",
    "amountInSmallestUnit",
    "currency",
    "failureReason",
    "initiatedAtIsoString",
    "payloadJson",
];

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Reading the log failed.
    #[error("reading the event log failed")]
    Log(#[from] LogError),
    /// Writing the output failed.
    #[error("writing the export failed")]
    Write(#[source] std::io::Error),
}

/// How to export.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ExportOptions {
    /// Neutralise spreadsheet formulas (on by default): a CSV cell starting with `=`, `+`, `-`,
    /// `@`, tab or carriage return gets a leading `'`, so a spreadsheet shows it as text
    /// instead of running it (OWASP's advice on CSV injection). Turn off for scripts that need
    /// the raw values.
    pub escape_formulas: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            escape_formulas: true,
        }
    }
}

impl ExportOptions {
    /// Sets [`escape_formulas`](Self::escape_formulas).
    pub fn escape_formulas(mut self, escape: bool) -> Self {
        self.escape_formulas = escape;
        self
    }
}

/// Writes the events matching `filter` as CSV (header row first, oldest event first), one row
/// per event, streaming: memory stays constant however many events match. `progress` is called
/// with the number of rows written so far. Returns the number of rows.
///
/// ```
/// use fermion_webhooks::export::{CSV_COLUMNS, ExportOptions};
/// use fermion_webhooks::store::{Delivery, LogFilter, StoredEvent};
/// use fermion_webhooks::{EventKind, EventPayload, LogStore, MemoryLogStore, WebhookEvent, export_csv};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryLogStore::new();
/// let event = WebhookEvent::new(EventPayload::sample(EventKind::PaidCourseSale));
/// let delivery = Delivery::pending("crm", "https://crm.example.com/hook", event.timestamp);
/// store.append(StoredEvent::new(&event, vec![delivery])).await?;
///
/// let sales = LogFilter::default().kinds([EventKind::PaidCourseSale]);
/// let mut csv = Vec::new();
/// let rows = export_csv(&store, &sales, &mut csv, &ExportOptions::default(), &mut |_| {}).await?;
/// assert_eq!(rows, 1);
/// let text = String::from_utf8(csv)?;
/// assert!(text.starts_with(&CSV_COLUMNS.join(",")));
/// # Ok(())
/// # }
/// ```
pub async fn export_csv(
    store: &dyn LogStore,
    filter: &LogFilter,
    out: &mut (dyn Write + Send),
    options: &ExportOptions,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<u64, ExportError> {
    let mut writer = csv::Writer::from_writer(&mut *out);
    writer
        .write_record(CSV_COLUMNS)
        .map_err(|e| ExportError::Write(e.into()))?;
    let mut rows = 0;
    write_each(store, filter, progress, |event| {
        row::write_csv_row(&mut writer, &event, options.escape_formulas)?;
        rows += 1;
        Ok(rows)
    })
    .await?;
    writer.flush().map_err(ExportError::Write)?;
    drop(writer);
    progress(rows);
    out.flush().map_err(ExportError::Write)?;
    Ok(rows)
}

/// Writes the exact body of each event matching `filter` as JSON Lines, oldest first. A body
/// that spans several lines (which this crate never emits) is written compacted, since a JSON
/// Lines record is one line. Returns the number of lines.
pub async fn export_jsonl(
    store: &dyn LogStore,
    filter: &LogFilter,
    out: &mut (dyn Write + Send),
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<u64, ExportError> {
    let mut lines = 0;
    write_each(store, filter, progress, |event| {
        if has_line_break(&event.body) {
            let body = row::compact_json(&event.body).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "event {} has a body that is not JSON",
                        event.event_unique_id
                    ),
                )
            })?;
            writeln!(out, "{body}")?;
        } else {
            writeln!(out, "{}", event.body)?;
        }
        lines += 1;
        Ok(lines)
    })
    .await?;
    out.flush().map_err(ExportError::Write)?;
    Ok(lines)
}

/// Scans the events matching `filter` oldest first, handing each to `write` (which answers how
/// many are written so far, for `progress`) and stopping at the first write error.
async fn write_each(
    store: &dyn LogStore,
    filter: &LogFilter,
    progress: &mut (dyn FnMut(u64) + Send),
    mut write: impl FnMut(EventRow) -> std::io::Result<u64> + Send,
) -> Result<(), ExportError> {
    let mut failure = None;
    store
        .scan_rows(filter, &mut |event| match write(event) {
            Ok(written) => {
                progress(written);
                ControlFlow::Continue(())
            }
            Err(error) => {
                failure = Some(error);
                ControlFlow::Break(())
            }
        })
        .await?;
    failure.map_or(Ok(()), |error| Err(ExportError::Write(error)))
}
