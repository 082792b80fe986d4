//! Timestamps as JavaScript's `toISOString()` writes them: UTC, milliseconds, `Z`
//! (`2026-11-28T10:00:00.000Z`), the form of every time on the wire and in the log.
//!
//! Written digit by digit. chrono's formatter took about 1,000 instructions and an allocation a
//! call, and an emitted event formats its time three times on its way to disk and the wire, an
//! attempt record two or three more. Times chrono writes differently (a leap second, a year
//! outside 0000-9999) are still left to chrono; a proptest holds the two to the same text.

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};

/// The timestamp as text.
pub(crate) fn iso_millis(timestamp: &DateTime<Utc>) -> String {
    let mut text = Vec::with_capacity(24);
    write_iso_millis(&mut text, timestamp);
    // Only ASCII digits and separators, or chrono's own text, are written.
    String::from_utf8(text).unwrap_or_default()
}

/// The timestamp as text, written over `buf`: for a caller formatting many, one buffer
/// instead of an allocation each.
pub(crate) fn iso_millis_in<'b>(buf: &'b mut Vec<u8>, timestamp: &DateTime<Utc>) -> &'b str {
    buf.clear();
    write_iso_millis(buf, timestamp);
    std::str::from_utf8(buf).unwrap_or_default()
}

/// Appends the timestamp as a JSON string, quotes included.
pub(crate) fn push_iso_millis(out: &mut Vec<u8>, timestamp: &DateTime<Utc>) {
    out.push(b'"');
    write_iso_millis(out, timestamp);
    out.push(b'"');
}

fn write_iso_millis(out: &mut Vec<u8>, timestamp: &DateTime<Utc>) {
    // The stored UTC fields, read once: each field read from the `DateTime` itself would add
    // its (zero) offset again, which was most of this function's cost.
    let naive = timestamp.naive_utc();
    let (date, time) = (naive.date(), naive.time());
    let year = date.year();
    let nanos = time.nanosecond();
    // A leap second has nanoseconds past one second; chrono writes it as second 60.
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        let text = timestamp.to_rfc3339_opts(SecondsFormat::Millis, true);
        out.extend_from_slice(text.as_bytes());
        return;
    }
    let mut text = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut value: u32| {
        for digit in text[at..at + width].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year.unsigned_abs());
    put(5, 2, date.month());
    put(8, 2, date.day());
    put(11, 2, time.hour());
    put(14, 2, time.minute());
    put(17, 2, time.second());
    put(20, 3, nanos / 1_000_000);
    out.extend_from_slice(&text);
}

#[cfg(test)]
mod tests {
    use super::{iso_millis, push_iso_millis};
    use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
    use proptest::prelude::*;

    fn chrono_text(at: &DateTime<Utc>) -> String {
        at.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    proptest! {
        #[test]
        fn times_are_written_exactly_as_chrono_writes_them(
            // From before year 0 to past 9999, to the nanosecond.
            seconds in -70_000_000_000i64..260_000_000_000,
            nanos in 0u32..1_000_000_000,
        ) {
            let at = DateTime::from_timestamp(seconds, nanos).expect("a time in range");
            prop_assert_eq!(iso_millis(&at), chrono_text(&at));
        }
    }

    #[test]
    fn a_leap_second_and_the_edges_of_four_digit_years_are_written_as_chrono_writes_them() {
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_milli_opt(23, 59, 59, 1_500))
            .expect("a leap second")
            .and_utc();
        let times = [
            leap,
            DateTime::from_timestamp(-62_167_219_200, 0).expect("0000-01-01"),
            DateTime::from_timestamp(-62_167_219_201, 999_999_999).expect("a year before 0"),
            DateTime::from_timestamp(253_402_300_799, 999_999_999).expect("9999-12-31"),
            DateTime::from_timestamp(253_402_300_800, 0).expect("10000-01-01"),
        ];
        for at in times {
            assert_eq!(iso_millis(&at), chrono_text(&at));
        }
        assert_eq!(
            iso_millis(&DateTime::from_timestamp(1_795_860_000, 7_000_000).expect("a time")),
            "2026-11-28T10:00:00.007Z"
        );
    }

    #[test]
    fn the_json_form_is_the_text_in_quotes() {
        let at = DateTime::from_timestamp(1_795_860_000, 0).expect("a time");
        let mut out = b"[".to_vec();
        push_iso_millis(&mut out, &at);
        assert_eq!(out, b"[\"2026-11-28T10:00:00.000Z\"");
    }
}
