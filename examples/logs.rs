//! An operator's tool for a file event log: list, show, attempts, export.
//!
//! ```text
//! cargo run --example logs -- --log-dir DIR list [--event KIND]... [--status S] [--test|--live]
//!     [--from ISO] [--to ISO] [--limit N]
//! cargo run --example logs -- --log-dir DIR show EVENT_ID
//! cargo run --example logs -- --log-dir DIR attempts EVENT_ID
//! cargo run --example logs -- --log-dir DIR export --from ISO --to ISO [--events K1,K2]
//!     [--format csv|jsonl] [--out FILE] [--no-formula-escape]
//! cargo run --example logs -- --log-dir DIR retrigger EVENT_ID --secret S [--url URL]
//!     [--allow-private-networks]
//! ```
//!
//! Every command but `retrigger` only reads: the log is opened read-only, so it works beside a
//! running emitter and never changes the directory. `retrigger` resends the exact stored body
//! and records the attempt, so it needs the log to itself. Exit status: 0 done, 1 failed (or
//! unknown event), 2 bad arguments.

mod support;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use fermion_webhooks::export::{ExportOptions, export_jsonl};
use fermion_webhooks::store::{Attempt, Cursor, DeliveryState, LogFilter};
use fermion_webhooks::{EventKind, FileLogStore, LogStore, export_csv};
use lexopt::prelude::*;
use serde::Serialize;
use support::Database;

const USAGE: &str = "usage: logs (--log-dir DIR | --database-url URL) <command>
commands:
  list [--event KIND]... [--status pending|delivered|failed] [--test|--live]
       [--from ISO] [--to ISO] [--limit N]      one JSON line per event, newest first (default 50)
  show EVENT_ID                                 the exact stored body
  attempts EVENT_ID                             one JSON line per delivery attempt
  export --from ISO --to ISO [--events K1,K2] [--format csv|jsonl] [--out FILE]
         [--no-formula-escape]                  CSV (default) or JSON Lines, to FILE or stdout
  retrigger EVENT_ID --secret S [--url URL] [--allow-private-networks]
                                                resend the exact body now (URL defaults to the
                                                logged endpoint's); one JSON line as `send`
times are RFC 3339 (2026-11-28T10:00:00Z) or a date (2026-11-28, meaning its midnight UTC)";

enum Command {
    List {
        filter: LogFilter,
        limit: usize,
    },
    Show {
        id: String,
    },
    Attempts {
        id: String,
    },
    Export {
        filter: LogFilter,
        format: Format,
        out: Option<PathBuf>,
        escape: bool,
    },
    Retrigger {
        id: String,
        secret: String,
        url: Option<String>,
        allow_private: bool,
    },
}

#[derive(Clone, Copy)]
enum Format {
    Csv,
    Jsonl,
}

/// A usage problem: the message, then exit 2.
struct Usage(String);

impl<E: std::fmt::Display> From<E> for Usage {
    fn from(error: E) -> Self {
        Usage(error.to_string())
    }
}

fn text(parser: &mut lexopt::Parser) -> Result<String, Usage> {
    parser
        .value()?
        .into_string()
        .map_err(|_| Usage("arguments must be valid UTF-8".into()))
}

fn time(parser: &mut lexopt::Parser, flag: &str) -> Result<DateTime<Utc>, Usage> {
    let value = text(parser)?;
    if let Ok(at) = DateTime::parse_from_rfc3339(&value) {
        return Ok(at.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(&value, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|midnight| midnight.and_utc())
        .ok_or_else(|| {
            Usage(format!(
                "{flag} {value:?} is not a time like 2026-11-28T10:00:00Z or 2026-11-28"
            ))
        })
}

fn kind(name: &str) -> Result<EventKind, Usage> {
    name.trim().parse().map_err(Usage::from)
}

fn parse() -> Result<(Database, Command), Usage> {
    let mut parser = lexopt::Parser::from_env();
    let mut database = None;
    let mut command = None;
    let mut positional = Vec::new();
    let mut filter = LogFilter::default();
    let mut limit = 50;
    let mut format = Format::Csv;
    let mut out = None;
    let mut escape = true;
    let (mut secret, mut url, mut allow_private) = (None, None, false);
    while let Some(arg) = parser.next()? {
        match arg {
            Long("log-dir") => database = Some(Database::Dir(PathBuf::from(text(&mut parser)?))),
            Long("database-url") => database = Some(Database::Url(text(&mut parser)?)),
            Long("event") => filter.kinds.push(kind(&text(&mut parser)?)?),
            Long("events") => {
                for name in text(&mut parser)?.split(',') {
                    filter.kinds.push(kind(name)?);
                }
            }
            Long("status") => {
                filter.status = Some(text(&mut parser)?.parse::<DeliveryState>()?);
            }
            Long("test") => filter.is_test_event = Some(true),
            Long("live") => filter.is_test_event = Some(false),
            Long("from") => filter.from = Some(time(&mut parser, "--from")?),
            Long("to") => filter.to = Some(time(&mut parser, "--to")?),
            Long("limit") => {
                let value = text(&mut parser)?;
                limit = value
                    .parse()
                    .map_err(|_| Usage(format!("--limit {value:?} is not a whole number")))?;
            }
            Long("format") => {
                format = match text(&mut parser)?.as_str() {
                    "csv" => Format::Csv,
                    "jsonl" => Format::Jsonl,
                    other => return Err(Usage(format!("--format {other:?}: use csv or jsonl"))),
                }
            }
            Long("out") => out = Some(PathBuf::from(text(&mut parser)?)),
            Long("no-formula-escape") => escape = false,
            Long("secret") => secret = Some(text(&mut parser)?),
            Long("url") => url = Some(text(&mut parser)?),
            Long("allow-private-networks") => allow_private = true,
            Long("help") | Short('h') => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            Value(value) if command.is_none() => {
                command = Some(
                    value
                        .into_string()
                        .map_err(|_| Usage("bad command".into()))?,
                )
            }
            Value(value) => positional.push(
                value
                    .into_string()
                    .map_err(|_| Usage("arguments must be valid UTF-8".into()))?,
            ),
            other => return Err(other.unexpected().into()),
        }
    }
    let database =
        database.ok_or_else(|| Usage("--log-dir DIR or --database-url URL is required".into()))?;
    if let (Some(from), Some(to)) = (filter.from, filter.to)
        && from > to
    {
        return Err(Usage(format!("--from {from} is after --to {to}")));
    }
    let one_id = |positional: Vec<String>, name: &str| match positional.as_slice() {
        [id] => Ok(id.clone()),
        _ => Err(Usage(format!("{name} takes exactly one EVENT_ID"))),
    };
    let command = match command.as_deref() {
        Some("list") => Command::List { filter, limit },
        Some("show") => Command::Show {
            id: one_id(positional, "show")?,
        },
        Some("attempts") => Command::Attempts {
            id: one_id(positional, "attempts")?,
        },
        Some("export") => {
            if filter.from.is_none() || filter.to.is_none() {
                return Err(Usage("export needs --from and --to".into()));
            }
            Command::Export {
                filter,
                format,
                out,
                escape,
            }
        }
        Some("retrigger") => Command::Retrigger {
            id: one_id(positional, "retrigger")?,
            secret: secret.ok_or_else(|| Usage("retrigger needs --secret S".into()))?,
            url,
            allow_private,
        },
        Some(other) => return Err(Usage(format!("unknown command {other:?}"))),
        None => return Err(Usage("a command is required".into())),
    };
    Ok((database, command))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListLine<'a> {
    event_unique_id: &'a str,
    timestamp_iso_string: String,
    event_type: &'a str,
    is_test_event: bool,
    status: DeliveryState,
    attempts: usize,
    last_response_status: Option<u16>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AttemptLine<'a> {
    endpoint_id: &'a str,
    url: &'a str,
    #[serde(flatten)]
    attempt: &'a Attempt,
}

fn iso(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn run(store: Arc<dyn LogStore>, name: &str, command: Command) -> Result<ExitCode, String> {
    let stdout = std::io::stdout();
    let mut stdout = stdout.lock();
    let fail = |e: &dyn std::error::Error| support::explain(e);
    match command {
        Command::List { filter, limit } => {
            let mut cursor: Option<Cursor> = None;
            let mut left = limit;
            while left > 0 {
                let page = store
                    .query(&filter, cursor.as_ref(), left.min(500))
                    .await
                    .map_err(|e| fail(&e))?;
                for event in &page.events {
                    let line = ListLine {
                        event_unique_id: &event.event_unique_id,
                        timestamp_iso_string: iso(&event.timestamp),
                        event_type: &event.event_type,
                        is_test_event: event.is_test_event,
                        status: event.status(),
                        attempts: event.attempt_count(),
                        last_response_status: event.last_response_status(),
                    };
                    let json = serde_json::to_string(&line).map_err(|e| fail(&e))?;
                    writeln!(stdout, "{json}").map_err(|e| fail(&e))?;
                }
                left -= page.events.len();
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        // Opens the log for writing, so main runs it before this read-only path.
        Command::Retrigger { .. } => return Err("retrigger runs on its own path".into()),
        Command::Show { id } => {
            let Some(event) = store.get(&id).await.map_err(|e| fail(&e))? else {
                eprintln!("logs: no event {id} in {}", name);
                return Ok(ExitCode::from(1));
            };
            stdout
                .write_all(event.body.as_bytes())
                .map_err(|e| fail(&e))?;
        }
        Command::Attempts { id } => {
            let Some(event) = store.get(&id).await.map_err(|e| fail(&e))? else {
                eprintln!("logs: no event {id} in {}", name);
                return Ok(ExitCode::from(1));
            };
            for delivery in &event.deliveries {
                for attempt in &delivery.attempts {
                    let line = AttemptLine {
                        endpoint_id: &delivery.endpoint_id,
                        url: &delivery.url,
                        attempt,
                    };
                    let json = serde_json::to_string(&line).map_err(|e| fail(&e))?;
                    writeln!(stdout, "{json}").map_err(|e| fail(&e))?;
                }
            }
        }
        Command::Export {
            filter,
            format,
            out,
            escape,
        } => {
            let mut sink: Box<dyn Write + Send> = match &out {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .map_err(|e| format!("cannot create {}: {e}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout())),
            };
            let bar = std::io::stderr().is_terminal().then(|| {
                let bar = indicatif::ProgressBar::new_spinner();
                if let Ok(style) = indicatif::ProgressStyle::with_template(
                    "{spinner} {human_pos} events exported ({per_sec}, {elapsed})",
                ) {
                    bar.set_style(style);
                }
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                bar
            });
            let mut progress = |rows: u64| {
                if let Some(bar) = bar.as_ref().filter(|_| rows.is_multiple_of(1000)) {
                    bar.set_position(rows);
                }
            };
            let rows = match format {
                Format::Csv => {
                    let options = ExportOptions::default().escape_formulas(escape);
                    export_csv(&*store, &filter, &mut sink, &options, &mut progress).await
                }
                Format::Jsonl => export_jsonl(&*store, &filter, &mut sink, &mut progress).await,
            }
            .map_err(|e| fail(&e))?;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            if let Some(path) = out {
                eprintln!("exported {rows} events to {}", path.display());
            }
        }
    }
    stdout.flush().map_err(|e| fail(&e))?;
    Ok(ExitCode::SUCCESS)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let (database, command) = match parse() {
        Ok(parsed) => parsed,
        Err(Usage(message)) => {
            eprintln!("logs: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Command::Retrigger {
        id,
        secret,
        url,
        allow_private,
    } = command
    {
        return retrigger(&database, &id, &secret, url, allow_private).await;
    }
    let store: Arc<dyn LogStore> = match &database {
        // A directory is only read: the tool works beside a running emitter, and changes
        // nothing.
        Database::Dir(dir) => match FileLogStore::open_read_only(dir).await {
            Ok(store) => Arc::new(store),
            Err(error @ fermion_webhooks::store::LogError::MissingDirectory { .. }) => {
                eprintln!(
                    "logs: {}; pass the directory the emitter writes to with --log-dir",
                    support::explain(&error)
                );
                return ExitCode::from(2);
            }
            Err(error) => {
                eprintln!("logs: {}", support::explain(&error));
                return ExitCode::from(1);
            }
        },
        Database::Url(_) => match database.open().await {
            Ok(store) => store,
            Err(message) => {
                eprintln!("logs: {message}");
                return ExitCode::from(2);
            }
        },
    };
    match run(store, &database.describe(), command).await {
        Ok(code) => code,
        Err(message) => {
            eprintln!("logs: {message}");
            ExitCode::from(1)
        }
    }
}

/// Resends an event's exact stored body to its endpoints (or `url`), recording the attempts.
async fn retrigger(
    database: &Database,
    id: &str,
    secret: &str,
    url: Option<String>,
    allow_private: bool,
) -> ExitCode {
    let fail = |code: u8, message: String| {
        eprintln!("logs: {message}");
        ExitCode::from(code)
    };
    if let Database::Dir(dir) = database
        && !dir.is_dir()
    {
        return fail(
            2,
            format!(
                "no event log at {}: the directory does not exist",
                dir.display()
            ),
        );
    }
    let secret = match fermion_webhooks::WebhookSecret::new(secret) {
        Ok(secret) => secret,
        Err(error) => return fail(2, support::explain(&error)),
    };
    let store = match database.open().await {
        Ok(store) => store,
        Err(message) => return fail(2, message),
    };
    let event = match store.get(id).await {
        Ok(Some(event)) => event,
        Ok(None) => return fail(1, format!("no event {id} in {}", database.describe())),
        Err(error) => return fail(1, support::explain(&error)),
    };
    let mut endpoints = Vec::new();
    for delivery in &event.deliveries {
        let target = url.clone().unwrap_or_else(|| delivery.url.clone());
        match fermion_webhooks::Endpoint::new(delivery.endpoint_id.clone(), target, secret.clone())
        {
            Ok(endpoint) => endpoints.push(endpoint),
            Err(error) => return fail(2, support::explain(&error)),
        }
    }
    let sender = match fermion_webhooks::HttpSender::builder()
        .allow_private_networks(allow_private)
        .build()
    {
        Ok(sender) => std::sync::Arc::new(sender),
        Err(error) => return fail(1, support::explain(&error)),
    };
    let mut config = fermion_webhooks::DispatchConfig::default();
    config.background_delivery = false; // touch only this event
    let dispatcher = match fermion_webhooks::Dispatcher::start_with(
        store.clone(),
        sender,
        endpoints,
        config,
        std::sync::Arc::new(fermion_webhooks::clock::SystemClock),
    ) {
        Ok(dispatcher) => dispatcher,
        Err(error) => return fail(2, support::explain(&error)),
    };
    if let Err(error) = dispatcher.retrigger(id, None).await {
        return fail(1, support::explain(&error));
    }
    match store.get(id).await {
        Ok(Some(event)) => {
            let line = support::ResultLine::of(&event);
            line.print();
            if line.failed() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Ok(None) => fail(1, format!("event {id} disappeared from the log")),
        Err(error) => fail(1, error.to_string()),
    }
}
