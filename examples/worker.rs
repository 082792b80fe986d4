//! Deliver whatever is pending in a shared database, with the endpoints stored there: run
//! several of these (on one machine or many) against one PostgreSQL database, and each
//! delivery is attempted by one of them at a time.
//!
//! ```text
//! cargo run --features postgres --example worker -- --database-url URL [--exit-when-idle]
//!     [--allow-private-networks] [--timeout 10s] [--retry-schedule 500ms,1s,2s]
//!     [--max-in-flight N] [--max-in-flight-per-endpoint N] [--lease 60s]
//! ```
//!
//! It prints one line to stderr when it starts and one when it stops. Exit 0 when stopped
//! (Ctrl-C, or idle with `--exit-when-idle`), 2 for bad arguments or a database it cannot
//! open.

mod support;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use fermion_webhooks::clock::SystemClock;
use fermion_webhooks::store::{DeliveryState, LogFilter};
use fermion_webhooks::{DispatchConfig, Dispatcher, HttpSender, RetrySchedule};
use lexopt::prelude::*;
use support::{Database, parse_duration};

const USAGE: &str = "usage: worker --database-url URL [--exit-when-idle] [--allow-private-networks]
              [--timeout 10s] [--retry-schedule 500ms,1s,2s] [--max-in-flight N]
              [--max-in-flight-per-endpoint N] [--lease 60s]
  --database-url URL  postgres://USER@HOST/DB, or sqlite://PATH for one machine
  --exit-when-idle    stop once nothing is pending (otherwise run until Ctrl-C)
  --timeout D         per-attempt timeout (default 15s)
  --retry-schedule    delays between retries (default 5s,5m,30m,2h,5h,10h,10h)
  --max-in-flight N   attempts at once (default 64)
  --max-in-flight-per-endpoint N
                      deliveries of one endpoint claimed at once, across every worker
                      (default 16): a hanging endpoint holds no more
  --lease D           how long a claimed delivery is held before another worker may take it
                      over (default 60s)
  --allow-private-networks   allow loopback/private addresses (off: SSRF guard)";

struct Options {
    database: Database,
    exit_when_idle: bool,
    allow_private: bool,
    timeout: Duration,
    config: DispatchConfig,
}

fn parse() -> Result<Options, String> {
    let mut parser = lexopt::Parser::from_env();
    let mut database = None;
    let mut exit_when_idle = false;
    let mut allow_private = false;
    let mut timeout = Duration::from_secs(15);
    let mut config = DispatchConfig::default();
    config.poll_interval = Duration::from_millis(50);
    let value = |parser: &mut lexopt::Parser| -> Result<String, String> {
        parser
            .value()
            .map_err(|e| support::explain(&e))?
            .into_string()
            .map_err(|_| "arguments must be valid UTF-8".to_owned())
    };
    while let Some(arg) = parser.next().map_err(|e| support::explain(&e))? {
        match arg {
            Long("database-url") => database = Some(Database::Url(value(&mut parser)?)),
            Long("exit-when-idle") => exit_when_idle = true,
            Long("allow-private-networks") => allow_private = true,
            Long("timeout") => timeout = parse_duration(&value(&mut parser)?)?,
            Long("lease") => config.lease = parse_duration(&value(&mut parser)?)?,
            Long("max-in-flight") => {
                let text = value(&mut parser)?;
                config.max_in_flight =
                    text.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("--max-in-flight {text:?} is not a positive number")
                    })?;
            }
            Long("max-in-flight-per-endpoint") => {
                let text = value(&mut parser)?;
                config.max_in_flight_per_endpoint =
                    text.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("--max-in-flight-per-endpoint {text:?} is not a positive number")
                    })?;
            }
            Long("retry-schedule") => {
                let delays = value(&mut parser)?
                    .split(',')
                    .filter(|d| !d.trim().is_empty())
                    .map(parse_duration)
                    .collect::<Result<Vec<_>, _>>()?;
                config.retry = RetrySchedule::fixed(delays);
            }
            Long("help") | Short('h') => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(Options {
        database: database.ok_or("--database-url is required")?,
        exit_when_idle,
        allow_private,
        timeout,
        config,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("worker: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let store = match options.database.open().await {
        Ok(store) => store,
        Err(message) => {
            eprintln!("worker: {message}");
            return ExitCode::from(2);
        }
    };
    let sender = match HttpSender::builder()
        .allow_private_networks(options.allow_private)
        .timeout(options.timeout)
        .build()
    {
        Ok(sender) => sender,
        Err(error) => {
            eprintln!("worker: {}", support::explain(&error));
            return ExitCode::from(2);
        }
    };
    let dispatcher = match Dispatcher::start_with_stored_endpoints(
        store.clone(),
        Arc::new(sender),
        options.config,
        Arc::new(SystemClock),
    )
    .await
    {
        Ok(dispatcher) => dispatcher,
        Err(error) => {
            eprintln!("worker: {}", support::explain(&error));
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "worker: delivering from {} to {} endpoint(s)",
        options.database.describe(),
        dispatcher.endpoints().len()
    );
    let pending = LogFilter::default().status(DeliveryState::Pending);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        if options.exit_when_idle {
            match store.query(&pending, None, 1).await {
                Ok(page) if page.events.is_empty() => break,
                Ok(_) => {}
                Err(error) => eprintln!("worker: {}", support::explain(&error)),
            }
        }
    }
    let left = dispatcher.shutdown(Duration::from_secs(20)).await;
    eprintln!("worker: stopped ({left} attempt(s) were still running)");
    ExitCode::SUCCESS
}
