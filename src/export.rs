//! Exporting the event log: CSV for spreadsheets and scripts, JSON Lines of the exact bodies.

use std::io::Write;
use std::ops::ControlFlow;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use serde_json::value::RawValue;

use crate::store::{EventRow, LogError, LogFilter, LogStore};

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
    #[error("reading the event log failed: {0}")]
    Log(#[from] LogError),
    /// Writing the output failed.
    #[error("writing the export failed: {0}")]
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
pub async fn export_csv(
    store: &dyn LogStore,
    filter: &LogFilter,
    out: &mut (dyn Write + Send),
    options: &ExportOptions,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<u64, ExportError> {
    let mut writer = csv::WriterBuilder::new().from_writer(out);
    writer
        .write_record(CSV_COLUMNS)
        .map_err(|e| ExportError::Write(e.into()))?;
    let mut cells: Vec<String> = Vec::with_capacity(CSV_COLUMNS.len());
    let rows = write_each(store, filter, progress, |event| {
        csv_cells(&event, options.escape_formulas, &mut cells);
        writer.write_record(&cells).map_err(std::io::Error::from)
    })
    .await?;
    writer.flush().map_err(ExportError::Write)?;
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
    let lines = write_each(store, filter, progress, |event| {
        if event.body.contains(['\n', '\r']) {
            compact(&event.body).and_then(|body| writeln!(out, "{body}"))
        } else {
            writeln!(out, "{}", event.body)
        }
    })
    .await?;
    out.flush().map_err(ExportError::Write)?;
    Ok(lines)
}

/// Scans the events matching `filter` oldest first, writing each with `write`, reporting
/// progress, and stopping at the first write error. Returns how many were written.
async fn write_each(
    store: &dyn LogStore,
    filter: &LogFilter,
    progress: &mut (dyn FnMut(u64) + Send),
    mut write: impl FnMut(EventRow) -> std::io::Result<()> + Send,
) -> Result<u64, ExportError> {
    let mut failure = None;
    let mut written = 0;
    store
        .scan_rows(filter, &mut |event| match write(event) {
            Ok(()) => {
                written += 1;
                progress(written);
                ControlFlow::Continue(())
            }
            Err(error) => {
                failure = Some(error);
                ControlFlow::Break(())
            }
        })
        .await?;
    match failure {
        Some(error) => Err(ExportError::Write(error)),
        None => Ok(written),
    }
}

fn compact(json: &str) -> std::io::Result<String> {
    let value: serde_json::Value = serde_json::from_str(json)?;
    Ok(value.to_string())
}

/// The payload fields that have CSV columns, each as cell text.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct PayloadCells {
    user_id: Cell,
    user_fullname: Cell,
    user_email: Cell,
    user_phone_number: Cell,
    course_slug: Cell,
    course_name: Cell,
    order_id: Cell,
    amount_in_smallest_unit: Cell,
    currency: Cell,
    failure_reason: Cell,
    initiated_at_iso_string: Cell,
}

#[derive(Deserialize)]
struct BodyPayload<'a> {
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
}

/// A JSON scalar as cell text: strings as they are, numbers and booleans as written, and
/// `null`, objects and arrays as an empty cell.
#[derive(Default)]
struct Cell(String);

impl<'de> Deserialize<'de> for Cell {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CellVisitor;
        impl<'de> Visitor<'de> for CellVisitor {
            type Value = Cell;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Cell, E> {
                Ok(Cell(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Cell, E> {
                Ok(Cell(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Cell, E> {
                Ok(Cell(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Cell, E> {
                Ok(Cell(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Cell, E> {
                Ok(Cell(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Cell, E> {
                Ok(Cell(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<Cell, E> {
                Ok(Cell::default())
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Cell, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Cell::default())
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Cell, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Cell::default())
            }
        }
        deserializer.deserialize_any(CellVisitor)
    }
}

/// Fills `cells` with the CSV row for `event`.
fn csv_cells(event: &EventRow, escape_formulas: bool, cells: &mut Vec<String>) {
    let payload_raw = serde_json::from_str::<BodyPayload>(&event.body)
        .ok()
        .and_then(|body| body.payload);
    let payload = payload_raw
        .and_then(|raw| serde_json::from_str::<PayloadCells>(raw.get()).ok())
        .unwrap_or_default();
    let payload_json = match payload_raw {
        Some(raw) if raw.get().contains(['\n', '\r']) => compact(raw.get()).unwrap_or_default(),
        Some(raw) => raw.get().to_owned(),
        None => String::new(),
    };
    cells.clear();
    cells.extend([
        event.event_unique_id.clone(),
        crate::event::iso_millis(&event.timestamp),
        event.event_type.clone(),
        event.is_test_event.to_string(),
        event.status.to_string(),
        event.attempts.to_string(),
        event
            .last_response_status
            .map(|status| status.to_string())
            .unwrap_or_default(),
        payload.user_id.0,
        payload.user_fullname.0,
        payload.user_email.0,
        payload.user_phone_number.0,
        payload.course_slug.0,
        payload.course_name.0,
        payload.order_id.0,
        payload.amount_in_smallest_unit.0,
        payload.currency.0,
        payload.failure_reason.0,
        payload.initiated_at_iso_string.0,
        payload_json,
    ]);
    if escape_formulas {
        for cell in cells.iter_mut() {
            if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                cell.insert(0, '\'');
            }
        }
    }
}
