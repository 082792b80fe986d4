//! One CSV row per event: the event's own columns, then the payload's fields, then the payload
//! as JSON. Cells borrow from the body wherever they can, so a row allocates almost nothing.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::cells::PayloadCells;
use super::compact;
use crate::store::{EventRow, has_line_break};

#[derive(Deserialize)]
struct BodyPayload<'a> {
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
}

/// The payload's text and cells when the body is laid out exactly as this crate writes it
/// (`eventUniqueId`, `timestampIsoString`, `isTestEvent`, then `payload` last, matching the
/// row): then only the payload is parsed, not the whole body. The text before it is compared
/// byte for byte, so the slice can only be the top-level payload; anything else gives `None`.
fn own_layout_payload<'a>(
    event: &'a EventRow,
    timestamp: &str,
) -> Option<(Option<&'a str>, PayloadCells<'a>)> {
    let id = &event.event_unique_id;
    if id.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        return None; // escaped in the body: compare the slow way
    }
    let rest = event.body.strip_prefix("{\"eventUniqueId\":\"")?;
    let rest = rest.strip_prefix(id.as_str())?;
    let rest = rest.strip_prefix("\",\"timestampIsoString\":\"")?;
    let rest = rest.strip_prefix(timestamp)?;
    let rest = rest.strip_prefix("\",\"isTestEvent\":")?;
    let rest = rest.strip_prefix(if event.is_test_event { "true" } else { "false" })?;
    let raw = rest.strip_prefix(",\"payload\":")?.strip_suffix('}')?;
    let cells = PayloadCells::read(raw)?;
    Some((Some(raw), cells))
}

/// Appends the CSV row for `event` to `out`. `timestamp` is a buffer reused from row to row.
pub(super) fn write_csv_row(
    out: &mut Vec<u8>,
    timestamp: &mut Vec<u8>,
    event: &EventRow,
    escape_formulas: bool,
) {
    let timestamp = crate::event::iso_millis_in(timestamp, &event.timestamp);
    let (payload_raw, payload) = match own_layout_payload(event, timestamp) {
        Some(found) => found,
        None => {
            let raw = serde_json::from_str::<BodyPayload>(&event.body)
                .ok()
                .and_then(|body| body.payload)
                .map(RawValue::get);
            let cells = raw.and_then(PayloadCells::read);
            (raw, cells.unwrap_or_default())
        }
    };
    let payload_json: Cow<str> = match payload_raw {
        Some(raw) if has_line_break(raw) => compact(raw).unwrap_or_default().into(),
        Some(raw) => raw.into(),
        None => "".into(),
    };
    let mut attempts = itoa::Buffer::new();
    let mut last_status = itoa::Buffer::new();
    let cells: [&str; 19] = [
        &event.event_unique_id,
        timestamp,
        &event.event_type,
        if event.is_test_event { "true" } else { "false" },
        event.status.as_str(),
        attempts.format(event.attempts),
        event
            .last_response_status
            .map_or("", |status| last_status.format(status)),
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
    let quoted = if field.len() < 64 {
        holds_a_quoting_byte(field)
    } else {
        memchr::memchr3(b',', b'"', b'\n', field).is_some()
            || memchr::memchr(b'\r', field).is_some()
    };
    if !quoted {
        if apostrophe {
            out.push(b'\'');
        }
        out.extend_from_slice(field);
        return;
    }
    out.reserve(field.len() + 16);
    out.push(b'"');
    if apostrophe {
        out.push(b'\'');
    }
    let mut rest = field;
    while let Some(at) = memchr::memchr(b'"', rest) {
        out.extend_from_slice(&rest[..=at]);
        out.push(b'"');
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// Whether a short cell holds a comma, a quote or a line break. Eight bytes a step, in a
/// machine word: most cells are too short for a vector search to pay for setting it up, and
/// a byte at a time cost a row about 1,750 instructions.
fn holds_a_quoting_byte(field: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Non-zero exactly when some byte of `word` equals `byte` (a zero byte after the xor).
    let has = |word: u64, byte: u8| {
        let x = word ^ (ONES * u64::from(byte));
        x.wrapping_sub(ONES) & !x & HIGHS
    };
    let mut words = field.chunks_exact(8);
    for chunk in &mut words {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        if has(word, b',') | has(word, b'"') | has(word, b'\n') | has(word, b'\r') != 0 {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{push_field, write_csv_row};
    use crate::store::{DeliveryState, EventRow};

    fn row_for(body: &str) -> String {
        let event = EventRow {
            event_unique_id: "e-1".into(),
            event_type: "paid-course-sale".into(),
            timestamp: "2026-11-28T10:00:00Z".parse().unwrap(),
            is_test_event: false,
            status: DeliveryState::Delivered,
            attempts: 1,
            last_response_status: Some(200),
            body: body.into(),
        };
        let mut out = Vec::new();
        write_csv_row(&mut out, &mut Vec::new(), &event, true);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_payload_columns_do_not_depend_on_how_the_body_is_laid_out() {
        let payload = r#"{"eventType":"paid-course-sale","userId":"u1","userPhoneNumber":"+91","amountInSmallestUnit":499900}"#;
        let ours = format!(
            r#"{{"eventUniqueId":"e-1","timestampIsoString":"2026-11-28T10:00:00.000Z","isTestEvent":false,"payload":{payload}}}"#
        );
        let reordered = format!(
            r#"{{"payload":{payload},"isTestEvent":false,"timestampIsoString":"2026-11-28T10:00:00Z","eventUniqueId":"e-1"}}"#
        );
        let decoy = format!(
            r#"{{"eventUniqueId":"e-1","meta":{{"x":1,"payload":{{"userId":"decoy"}}}},"timestampIsoString":"2026-11-28T10:00:00.000Z","isTestEvent":false,"payload":{payload}}}"#
        );
        let expected = row_for(&ours);
        assert!(expected.contains(",u1,,,'+91,"), "{expected}");
        assert!(expected.contains(",499900,"), "{expected}");
        assert_eq!(row_for(&reordered), expected);
        assert_eq!(row_for(&decoy), expected);
    }

    fn with_csv_crate(fields: &[String]) -> Vec<u8> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(fields).unwrap();
        writer.into_inner().unwrap()
    }

    proptest! {
        // One byte that forces quotes, or none, anywhere in a cell of plain text: each of the
        // eight places in a word, and the tail after the last whole word.
        #[test]
        fn a_single_quoting_byte_is_found_wherever_it_is(
            plain in "[a-z0-9 @.]{0,80}",
            special in proptest::sample::select(vec![',', '"', '\n', '\r']),
            at in any::<proptest::sample::Index>(),
            insert in any::<bool>(),
        ) {
            let mut field = plain.clone();
            if insert {
                field.insert(at.index(field.len() + 1), special);
            }
            prop_assert_eq!(super::holds_a_quoting_byte(field.as_bytes()), insert);
            // Beside a second cell: the csv crate quotes a record's only cell when it is empty.
            let mut ours = Vec::new();
            push_field(&mut ours, field.as_bytes(), false);
            ours.extend_from_slice(b",x\n");
            prop_assert_eq!(ours, with_csv_crate(&[field, "x".to_owned()]));
        }

        // Up to 100 bytes: both the short-cell loop and the long-cell search are exercised.
        #[test]
        fn fields_are_written_exactly_as_the_csv_crate_writes_them(
            fields in proptest::collection::vec(("[a-z\",\r\n '=+é]{0,100}", any::<bool>()), 2..6),
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
