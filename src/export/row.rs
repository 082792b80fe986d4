//! One CSV row per event: the event's own columns, then the payload's fields, then the payload
//! as JSON. Cells borrow from the body wherever they can, so a row allocates almost nothing.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use serde_json::value::RawValue;

use super::compact;
use crate::store::EventRow;

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

#[derive(Deserialize)]
struct BodyPayload<'a> {
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
}

/// A JSON scalar as cell text: strings as they are, numbers and booleans as written, and
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
            fn visit_string<E>(self, v: String) -> Result<Cell<'de>, E> {
                Ok(Cell(Cow::Owned(v)))
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

/// The payload's text and cells when it is the body's last member, as in every body this crate
/// writes: then only the payload is parsed, not the whole body. The text before it must be the
/// start of a JSON object (checked by closing it with `null}`), so the slice is the top-level
/// payload and not some nested `"payload"` key; anything else returns `None`.
fn last_payload(body: &str) -> Option<(Option<&str>, PayloadCells<'_>)> {
    const KEY: &str = ",\"payload\":";
    let at = body.find(KEY)?;
    let raw = body.get(at + KEY.len()..)?.strip_suffix('}')?;
    let prefix = format!("{}null}}", body.get(..at + KEY.len())?);
    serde_json::from_str::<IgnoredAny>(&prefix).ok()?;
    let cells = serde_json::from_str::<PayloadCells>(raw).ok()?;
    Some((Some(raw), cells))
}

/// Appends the CSV row for `event` to `out`.
pub(super) fn write_csv_row(out: &mut Vec<u8>, event: &EventRow, escape_formulas: bool) {
    let (payload_raw, payload) = match last_payload(&event.body) {
        Some(found) => found,
        None => {
            let raw = serde_json::from_str::<BodyPayload>(&event.body)
                .ok()
                .and_then(|body| body.payload)
                .map(RawValue::get);
            let cells = raw.and_then(|raw| serde_json::from_str::<PayloadCells>(raw).ok());
            (raw, cells.unwrap_or_default())
        }
    };
    let payload_json: Cow<str> = match payload_raw {
        Some(raw) if raw.bytes().any(|b| b == b'\n' || b == b'\r') => {
            compact(raw).unwrap_or_default().into()
        }
        Some(raw) => raw.into(),
        None => "".into(),
    };
    let timestamp = crate::event::iso_millis(&event.timestamp);
    let attempts = event.attempts.to_string();
    let last_status = event
        .last_response_status
        .map(|status| status.to_string())
        .unwrap_or_default();
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
    for (i, cell) in cells.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let neutralise = escape_formulas && cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
        push_field(out, cell.as_bytes(), neutralise);
    }
    out.push(b'\n');
}

/// Appends one CSV field as the `csv` crate writes it by default (RFC 4180): quoted only if it
/// holds a comma, a quote or a line break, with quotes doubled. With `apostrophe`, the field
/// is written with a leading `'` (formula neutralising). Written here rather than through
/// `csv::Writer`, which looks at every byte on its own: for the long `payloadJson` cell this
/// is several times faster.
fn push_field(out: &mut Vec<u8>, field: &[u8], apostrophe: bool) {
    let quoted = field
        .iter()
        .any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
    if quoted {
        out.push(b'"');
    }
    if apostrophe {
        out.push(b'\'');
    }
    if quoted {
        let mut parts = field.split(|&b| b == b'"');
        if let Some(first) = parts.next() {
            out.extend_from_slice(first);
        }
        for part in parts {
            out.extend_from_slice(b"\"\"");
            out.extend_from_slice(part);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(field);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::push_field;

    fn with_csv_crate(fields: &[String]) -> Vec<u8> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(fields).unwrap();
        writer.into_inner().unwrap()
    }

    proptest! {
        #[test]
        fn fields_are_written_exactly_as_the_csv_crate_writes_them(
            fields in proptest::collection::vec(("[a-z\",\r\n '=+é]{0,12}", any::<bool>()), 2..6),
        ) {
            let mut ours = Vec::new();
            for (i, (field, apostrophe)) in fields.iter().enumerate() {
                if i > 0 {
                    ours.push(b',');
                }
                push_field(&mut ours, field.as_bytes(), *apostrophe);
            }
            ours.push(b'\n');
            let theirs: Vec<String> = fields
                .iter()
                .map(|(field, apostrophe)| if *apostrophe { format!("'{field}") } else { field.clone() })
                .collect();
            prop_assert_eq!(ours, with_csv_crate(&theirs));
        }
    }
}
