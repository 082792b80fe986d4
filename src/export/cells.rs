//! The payload's CSV cells. A payload in the layout this crate writes (its keys in their
//! order, no whitespace, no escapes) is read by a small scanner; anything else goes through
//! serde_json. Both give the same cells: a proptest holds them to it.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};

use crate::event::PAYLOAD_KEYS;

/// The payload fields that have CSV columns, each as cell text.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct PayloadCells<'a> {
    #[serde(borrow)]
    pub(super) user_id: Cell<'a>,
    #[serde(borrow)]
    pub(super) user_fullname: Cell<'a>,
    #[serde(borrow)]
    pub(super) user_email: Cell<'a>,
    #[serde(borrow)]
    pub(super) user_phone_number: Cell<'a>,
    #[serde(borrow)]
    pub(super) course_slug: Cell<'a>,
    #[serde(borrow)]
    pub(super) course_name: Cell<'a>,
    #[serde(borrow)]
    pub(super) order_id: Cell<'a>,
    #[serde(borrow)]
    pub(super) amount_in_smallest_unit: Cell<'a>,
    #[serde(borrow)]
    pub(super) currency: Cell<'a>,
    #[serde(borrow)]
    pub(super) failure_reason: Cell<'a>,
    #[serde(borrow)]
    pub(super) initiated_at_iso_string: Cell<'a>,
}

/// A JSON scalar as cell text: strings as they are, numbers and booleans as written, and
/// `null`, objects and arrays as an empty cell.
#[derive(Default)]
pub(super) struct Cell<'a>(pub(super) Cow<'a, str>);

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

impl<'a> PayloadCells<'a> {
    /// The cells of a payload object, or `None` if `raw` is not a JSON object.
    pub(super) fn read(raw: &'a str) -> Option<Self> {
        Self::read_own_layout(raw).or_else(|| serde_json::from_str(raw).ok())
    }

    /// The cell of the key at `key` in `PAYLOAD_KEYS`.
    fn slot(&mut self, key: usize) -> Option<&mut Cell<'a>> {
        Some(match key {
            1 => &mut self.user_id,
            2 => &mut self.user_fullname,
            3 => &mut self.user_email,
            4 => &mut self.user_phone_number,
            5 => &mut self.course_slug,
            6 => &mut self.course_name,
            7 => &mut self.order_id,
            8 => &mut self.amount_in_smallest_unit,
            9 => &mut self.currency,
            10 => &mut self.failure_reason,
            11 => &mut self.initiated_at_iso_string,
            _ => return None, // `eventType`, which has no cell here
        })
    }

    /// The cells of a payload written as this crate writes it; `None` at the first thing that
    /// is not (an unknown, repeated or reordered key, whitespace, an escape, a number that is
    /// not a plain unsigned integer), which sends the payload to serde_json instead.
    fn read_own_layout(raw: &'a str) -> Option<Self> {
        let mut cells = Self::default();
        let mut rest = raw.strip_prefix('{')?;
        let mut next_key = 0;
        let mut first = true;
        while !rest.starts_with('}') {
            if !first {
                rest = rest.strip_prefix(',')?;
            }
            first = false;
            // The keys come in this order, some left out: the next one is one of those after
            // the last, and anything else (unknown, repeated, out of order) is not our layout.
            let (found, value) = PAYLOAD_KEYS[next_key..]
                .iter()
                .enumerate()
                .find_map(|(i, key)| Some((i, after_key(rest, key)?)))?;
            next_key += found + 1;
            let (cell, after) = plain_value(value)?;
            if let Some(slot) = cells.slot(next_key - 1) {
                *slot = cell;
            }
            rest = after;
        }
        (rest == "}").then_some(cells)
    }
}

/// What follows `"key":` at the start of `text`.
fn after_key<'t>(text: &'t str, key: &str) -> Option<&'t str> {
    text.strip_prefix('"')?
        .strip_prefix(key)?
        .strip_prefix("\":")
}

/// A JSON string without escapes, `null`, `true`, `false` or an unsigned integer at the start
/// of `text`, as a cell, with the text after it.
fn plain_value(text: &str) -> Option<(Cell<'_>, &str)> {
    if let Some(string) = text.strip_prefix('"') {
        // One pass to the closing quote. An escape, or a control character serde_json would
        // refuse, leaves the payload to serde_json.
        let end = string
            .bytes()
            .position(|b| b == b'"' || b == b'\\' || b < 0x20)?;
        if string.as_bytes()[end] != b'"' {
            return None;
        }
        return Some((Cell(Cow::Borrowed(&string[..end])), &string[end + 1..]));
    }
    for (word, cell) in [("null", ""), ("true", "true"), ("false", "false")] {
        if let Some(after) = text.strip_prefix(word) {
            return Some((Cell(Cow::Borrowed(cell)), after));
        }
    }
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let number = &text[..digits];
    // Only what serde_json would print back the same: no leading zero, no sign, fraction or
    // exponent, and within u64.
    let plain = digits > 0 && (digits == 1 || !number.starts_with('0'));
    let after = &text[digits..];
    if !plain || after.starts_with(['.', 'e', 'E']) || number.parse::<u64>().is_err() {
        return None;
    }
    Some((Cell(Cow::Borrowed(number)), after))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::PayloadCells;
    use crate::event::{EventKind, EventPayload, WebhookEvent};

    #[test]
    fn the_payload_columns_are_the_payload_keys_in_wire_order() {
        // Two lists that must agree: the export's header, and the keys `PayloadCells` reads
        // into its cells (every payload key but `eventType`, which has its own column).
        assert_eq!(
            crate::export::CSV_COLUMNS[7..18],
            crate::event::PAYLOAD_KEYS[1..]
        );
    }

    fn cells_of(cells: &PayloadCells<'_>) -> Vec<String> {
        [
            &cells.user_id,
            &cells.user_fullname,
            &cells.user_email,
            &cells.user_phone_number,
            &cells.course_slug,
            &cells.course_name,
            &cells.order_id,
            &cells.amount_in_smallest_unit,
            &cells.currency,
            &cells.failure_reason,
            &cells.initiated_at_iso_string,
        ]
        .iter()
        .map(|cell| cell.0.to_string())
        .collect()
    }

    fn both_ways(raw: &str) -> (Option<Vec<String>>, Option<Vec<String>>) {
        let fast = PayloadCells::read_own_layout(raw).map(|c| cells_of(&c));
        let slow = serde_json::from_str::<PayloadCells>(raw)
            .ok()
            .map(|c| cells_of(&c));
        (fast, slow)
    }

    #[test]
    fn every_kind_this_crate_writes_is_read_by_the_scanner() {
        for kind in EventKind::ALL {
            let body = WebhookEvent::new(EventPayload::sample(kind)).to_json();
            let at = body.find(",\"payload\":").unwrap() + ",\"payload\":".len();
            let raw = &body[at..body.len() - 1];
            let (fast, slow) = both_ways(raw);
            assert!(fast.is_some(), "{kind}: {raw}");
            assert_eq!(fast, slow, "{kind}");
        }
    }

    #[test]
    fn anything_else_is_left_to_serde_json() {
        for raw in [
            r#"{"userId":"a\"b"}"#,
            r#"{"userId" :"a"}"#,
            r#"{"userEmail":"e","userId":"a"}"#,
            r#"{"userId":"a","userId":"b"}"#,
            r#"{"userId":"a","extra":1}"#,
            r#"{"amountInSmallestUnit":-5}"#,
            r#"{"amountInSmallestUnit":1.5}"#,
            r#"{"amountInSmallestUnit":007}"#,
            r#"{"amountInSmallestUnit":99999999999999999999}"#,
            r#"{"userId":{"nested":true}}"#,
            r#"{"userId":"a"} "#,
            "[1]",
        ] {
            assert!(PayloadCells::read_own_layout(raw).is_none(), "{raw}");
        }
    }

    proptest! {
        // Payload-like objects: known keys in any order (some repeated or unknown), and values
        // of every kind, escapes and odd numbers included.
        #[test]
        fn the_scanner_and_serde_json_agree_whenever_the_scanner_answers(
            entries in proptest::collection::vec((
                prop_oneof![
                    Just("eventType"), Just("userId"), Just("userFullname"), Just("userEmail"),
                    Just("userPhoneNumber"), Just("courseSlug"), Just("courseName"),
                    Just("orderId"), Just("amountInSmallestUnit"), Just("currency"),
                    Just("failureReason"), Just("initiatedAtIsoString"), Just("other"),
                ],
                prop_oneof![
                    "\"[a-z \\\\\"é\\x01]{0,12}\"",
                    Just("null".to_owned()),
                    Just("true".to_owned()),
                    "-?[0-9]{1,21}(\\.[0-9])?",
                    Just("{}".to_owned()),
                ],
            ), 0..14),
            in_order in any::<bool>(),
        ) {
            let mut entries = entries;
            if in_order {
                // Half the cases in this crate's order, where the scanner can answer.
                let rank = |key: &str| {
                    crate::event::PAYLOAD_KEYS
                        .iter()
                        .position(|k| *k == key)
                        .unwrap_or(99)
                };
                entries.sort_by_key(|(key, _)| rank(key));
                entries.dedup_by_key(|(key, _)| *key);
            }
            let raw = format!(
                "{{{}}}",
                entries
                    .iter()
                    .map(|(key, value)| format!("\"{key}\":{value}"))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let (fast, slow) = both_ways(&raw);
            if fast.is_some() {
                prop_assert_eq!(&fast, &slow, "{}", raw);
            }
            // And it answers for every plain payload in order.
            let plain = entries.iter().all(|(key, value)| {
                let plain_value = match value.strip_prefix('"') {
                    Some(string) => !string[..string.len() - 1].contains(['"', '\\', '\u{1}']),
                    None => !value.contains(['-', '.', '{'])
                        && value.len() < 20
                        && !(value.len() > 1 && value.starts_with('0')),
                };
                *key != "other" && plain_value
            });
            if in_order && plain {
                prop_assert!(fast.is_some(), "{}", raw);
            }
        }
    }
}
