//! One CSV row per event: the event's own columns, then the payload's fields, then the payload
//! as compact JSON.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use serde_json::value::RawValue;

use crate::event::iso_millis_text;
use crate::store::EventRow;

/// The body's payload, unparsed.
#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
}

/// The payload fields that have CSV columns, each as cell text.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct PayloadCells<'a> {
    #[serde(borrow)]
    user_id: Cell<'a>,
    #[serde(borrow)]
    user_fullname: Cell<'a>,
    #[serde(borrow)]
    user_email: Cell<'a>,
    #[serde(borrow)]
    user_phone_number: Cell<'a>,
    #[serde(borrow)]
    course_slug: Cell<'a>,
    #[serde(borrow)]
    course_name: Cell<'a>,
    #[serde(borrow)]
    order_id: Cell<'a>,
    #[serde(borrow)]
    amount_in_smallest_unit: Cell<'a>,
    #[serde(borrow)]
    currency: Cell<'a>,
    #[serde(borrow)]
    failure_reason: Cell<'a>,
    #[serde(borrow)]
    initiated_at_iso_string: Cell<'a>,
}

/// A JSON value as cell text: strings as they are, numbers and booleans as written, and
/// `null`, objects and arrays as an empty cell.
#[derive(Default)]
struct Cell<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Cell<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CellVisitor;
        impl<'de> Visitor<'de> for CellVisitor {
            type Value = Cell<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cell<'de>, E> {
                Ok(Cell(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Cell<'de>, E> {
                Ok(Cell(Cow::Owned(v.to_owned())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Cell<'de>, E> {
                Ok(Cell(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Cell<'de>, E> {
                Ok(Cell(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Cell<'de>, E> {
                Ok(Cell(Cow::Owned(v.to_string())))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Cell<'de>, E> {
                Ok(Cell(Cow::Borrowed(if v { "true" } else { "false" })))
            }
            fn visit_unit<E>(self) -> Result<Cell<'de>, E> {
                Ok(Cell::default())
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Cell<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Cell::default())
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Cell<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Cell::default())
            }
        }
        deserializer.deserialize_any(CellVisitor)
    }
}

/// `raw` JSON without insignificant whitespace, keys in their order.
pub(super) fn compact_json(raw: &str) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut reader = serde_json::Deserializer::from_str(raw);
    serde_transcode::transcode(&mut reader, &mut serde_json::Serializer::new(&mut out)).ok()?;
    reader.end().ok()?;
    String::from_utf8(out).ok()
}

/// Writes the CSV row for `event`. A body that is not an event object gives empty payload
/// cells rather than an error: the log's other columns are still worth exporting.
pub(super) fn write_csv_row<W: std::io::Write>(
    out: &mut csv::Writer<W>,
    event: &EventRow,
    escape_formulas: bool,
) -> csv::Result<()> {
    let raw = serde_json::from_str::<Body>(&event.body)
        .ok()
        .and_then(|body| body.payload)
        .map(RawValue::get);
    let payload_json = raw.and_then(compact_json).unwrap_or_default();
    let payload: PayloadCells = serde_json::from_str(&payload_json).unwrap_or_default();
    let attempts = event.attempts.to_string();
    let last_status = event
        .last_response_status
        .map_or_else(String::new, |status| status.to_string());
    let timestamp = iso_millis_text(&event.timestamp);
    let cells: [&str; 19] = [
        &event.event_unique_id,
        &timestamp,
        &event.event_type,
        if event.is_test_event { "true" } else { "false" },
        event.status.as_str(),
        &attempts,
        &last_status,
        &payload.user_id.0,
        &payload.user_fullname.0,
        &payload.user_email.0,
        &payload.user_phone_number.0,
        &payload.course_slug.0,
        &payload.course_name.0,
        &payload.order_id.0,
        &payload.amount_in_smallest_unit.0,
        &payload.currency.0,
        &payload.failure_reason.0,
        &payload.initiated_at_iso_string.0,
        &payload_json,
    ];
    out.write_record(
        cells
            .map(|cell| formula_guard(cell, escape_formulas))
            .iter()
            .map(|c| c.as_bytes()),
    )
}

/// `cell` with a leading `'` when it starts like a spreadsheet formula (`=`, `+`, `-`, `@`, tab
/// or carriage return), so a spreadsheet shows it as text instead of running it (OWASP's
/// advice on CSV injection). The csv crate has no such guard.
fn formula_guard(cell: &str, escape: bool) -> Cow<'_, str> {
    if escape && cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_json_drops_spaces_and_line_breaks_and_keeps_key_order() {
        let pretty = "{\n  \"z\": 1,\n  \"a\": [ 1, 2 ],\n  \"s\": \"a b\"\n}";
        assert_eq!(
            compact_json(pretty).unwrap(),
            r#"{"z":1,"a":[1,2],"s":"a b"}"#
        );
        assert_eq!(compact_json("{} trailing"), None);
    }

    #[test]
    fn cells_that_start_like_formulas_get_an_apostrophe_only_when_asked() {
        assert_eq!(formula_guard("=1+1", true), "'=1+1");
        assert_eq!(formula_guard("-5", true), "'-5");
        assert_eq!(formula_guard("=1+1", false), "=1+1");
        assert_eq!(formula_guard("plain", true), "plain");
    }
}
