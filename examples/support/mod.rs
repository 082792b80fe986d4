//! Shared by the examples: duration parsing and the one-line JSON result of a delivery.

#![allow(dead_code)] // Each example uses a different part.

use std::time::Duration;

use fermion_webhooks::store::{DeliveryState, StoredEvent};
use serde::Serialize;

/// An error's message and each of its causes, joined by `: ` (the crate's errors keep their
/// cause in `source()`, not in their message).
pub fn explain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Parses `500ms`, `10s`, `2m` or `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 10s, 2m or 1h"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        "h" => Ok(Duration::from_secs(number * 3600)),
        _ => Err(format!(
            "{text:?} is not a duration like 500ms, 10s, 2m or 1h"
        )),
    }
}

/// `{"eventUniqueId","eventType","status","attempts","lastResponseStatus"}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultLine<'a> {
    pub event_unique_id: &'a str,
    pub event_type: &'a str,
    pub status: &'a str,
    pub attempts: usize,
    pub last_response_status: Option<u16>,
}

impl<'a> ResultLine<'a> {
    pub fn of(event: &'a StoredEvent) -> Self {
        Self {
            event_unique_id: &event.event_unique_id,
            event_type: &event.event_type,
            status: event.status().as_str(),
            attempts: event.attempt_count(),
            last_response_status: event.last_response_status(),
        }
    }

    pub fn failed(&self) -> bool {
        self.status == DeliveryState::Failed.as_str()
    }

    pub fn print(&self) {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut stdout, self);
        let _ = writeln!(stdout);
        let _ = stdout.flush();
    }
}
