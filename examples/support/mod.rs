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
        let part = cause.to_string();
        // Some errors repeat their cause's text in their own: say it once.
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
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

/// Where the examples keep their log: a directory (`--log-dir`, the SQLite file inside it) or
/// a database URL (`--database-url postgres://…` or `sqlite://PATH`).
#[derive(Clone, Debug)]
pub enum Database {
    Dir(std::path::PathBuf),
    Url(String),
}

impl Database {
    /// Opens the store, creating a SQLite file or directory when missing. Fails within
    /// seconds with one line naming the problem.
    pub async fn open(&self) -> Result<std::sync::Arc<dyn fermion_webhooks::store::Store>, String> {
        use fermion_webhooks::FileLogStore;
        match self {
            Database::Dir(dir) => FileLogStore::open(dir)
                .await
                .map(|store| std::sync::Arc::new(store) as _)
                .map_err(|e| explain(&e)),
            Database::Url(url) => {
                if let Some(path) = url
                    .strip_prefix("sqlite://")
                    .or(url.strip_prefix("sqlite:"))
                {
                    if path.is_empty() {
                        return Err(format!("{url:?} names no file; use sqlite://PATH"));
                    }
                    let path = std::path::Path::new(path);
                    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                        std::fs::create_dir_all(parent)
                            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
                    }
                    return FileLogStore::open_file(path)
                        .await
                        .map(|store| std::sync::Arc::new(store) as _)
                        .map_err(|e| explain(&e));
                }
                if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                    return open_postgres(url).await;
                }
                Err(format!(
                    "{url:?} is not a database URL this tool knows; use postgres://USER@HOST/DB \
                     or sqlite://PATH"
                ))
            }
        }
    }

    /// How to name it in messages.
    pub fn describe(&self) -> String {
        match self {
            Database::Dir(dir) => dir.display().to_string(),
            // Without a password that the URL may hold.
            Database::Url(url) => match url.split_once('@') {
                Some((scheme_and_user, rest)) => {
                    let scheme = scheme_and_user.split("://").next().unwrap_or("");
                    format!("{scheme}://…@{rest}")
                }
                None => url.clone(),
            },
        }
    }
}

#[cfg(feature = "postgres")]
async fn open_postgres(
    url: &str,
) -> Result<std::sync::Arc<dyn fermion_webhooks::store::Store>, String> {
    fermion_webhooks::store::PostgresLogStore::connect(url)
        .await
        .map(|store| std::sync::Arc::new(store) as _)
        .map_err(|e| explain(&e))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(
    _url: &str,
) -> Result<std::sync::Arc<dyn fermion_webhooks::store::Store>, String> {
    Err("this build has no PostgreSQL support; build with --features postgres".into())
}
