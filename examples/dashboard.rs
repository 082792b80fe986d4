//! The admin API and its dashboard page over a file log, with a demo receiver: for trying the
//! page on your machine.
//!
//! ```text
//! cargo run --features admin --example dashboard -- [--addr 127.0.0.1:8788]
//!     [--log-dir DIR] [--admin-token T]
//! ```
//!
//! It opens the log in `--log-dir`, adds two demo webhooks pointing at a receiver it runs on
//! 127.0.0.1 (one answers 200 after checking the secret, one always answers 503), emits a few
//! demo events the first time, and prints the address to open. Requests authorize with
//! `Authorization: Bearer T` (the page asks for the token, or takes it from `#token=T` in
//! the address; without `--admin-token` a token is made and printed in the link). Being for local development, it accepts endpoint URLs on loopback.
//!
//! Events sent with `send --log-dir DIR --owner local` go to the same log and show up in the
//! page, as do its webhooks; `logs --log-dir DIR` reads what the page shows. Ctrl-C stops it.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use fermion_webhooks::admin::{self, Admin, BearerTokens};
use fermion_webhooks::clock::SystemClock;
use fermion_webhooks::{
    DispatchConfig, Dispatcher, Endpoint, EventKind, EventPayload, FileLogStore, HttpSender,
    Receiver, RetrySchedule, WebhookSecret,
};
use lexopt::prelude::*;

const USAGE: &str = "usage: dashboard [--addr 127.0.0.1:8788] [--log-dir DIR] [--admin-token T]
  --addr ADDR         where to serve the page and the API (default 127.0.0.1:8788)
  --log-dir DIR       the event log, shared with `send` and `logs` (default
                      ./fermion-webhook-logs)
  --admin-token T     the bearer token requests must carry (or set FERMION_ADMIN_TOKEN;
                      default: a random one, printed in the link to open)";

/// The one course creator this dashboard acts for; `send --owner local` adds webhooks to it.
const TENANT: &str = "local";
const DEMO: &str = "demo-receiver";
const DEMO_FAILING: &str = "demo-failing";

struct Options {
    addr: SocketAddr,
    log_dir: PathBuf,
    token: Option<String>,
}

fn value(parser: &mut lexopt::Parser) -> Result<String, String> {
    parser
        .value()
        .map_err(|e| support::explain(&e))?
        .into_string()
        .map_err(|_| "arguments must be valid UTF-8".to_owned())
}

fn parse() -> Result<Options, String> {
    let mut parser = lexopt::Parser::from_env();
    let mut options = Options {
        addr: SocketAddr::from(([127, 0, 0, 1], 8788)),
        log_dir: PathBuf::from("fermion-webhook-logs"),
        token: None,
    };
    while let Some(arg) = parser.next().map_err(|e| support::explain(&e))? {
        match arg {
            Long("addr") => {
                let text = value(&mut parser)?;
                options.addr = text.parse().map_err(|_| {
                    format!("--addr {text:?} is not an address like 127.0.0.1:8788")
                })?;
            }
            Long("log-dir") => options.log_dir = PathBuf::from(value(&mut parser)?),
            Long("admin-token") => options.token = Some(value(&mut parser)?),
            Long("help") | Short('h') => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("dashboard: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("dashboard: {message}");
            ExitCode::from(1)
        }
    }
}

async fn run(options: Options) -> Result<(), String> {
    let explain = |e: &dyn std::error::Error| support::explain(e);
    // A token given is the operator's own and is not printed back; one made for this run is
    // shown once, in the link to open.
    let given = options
        .token
        .or_else(|| std::env::var("FERMION_ADMIN_TOKEN").ok());
    let generated = given.is_none();
    let token = match given {
        Some(token) => {
            WebhookSecret::new(token).map_err(|e| format!("--admin-token: {}", explain(&e)))?
        }
        None => WebhookSecret::generate().map_err(|e| explain(&e))?,
    };
    let store = Arc::new(
        FileLogStore::open(&options.log_dir)
            .await
            .map_err(|e| explain(&e))?,
    );
    let sender = HttpSender::builder()
        .allow_private_networks(true)
        .build()
        .map_err(|e| explain(&e))?;
    let mut config = DispatchConfig::default();
    // Short retries, so that the failing demo webhook's events end failed within seconds.
    config.retry = RetrySchedule::fixed([Duration::from_secs(1), Duration::from_secs(2)]);
    let dispatcher = Dispatcher::start_with_stored_endpoints(
        store,
        Arc::new(sender),
        config,
        Arc::new(SystemClock),
    )
    .await
    .map_err(|e| explain(&e))?;

    let receiver_addr = demo_receiver(dispatcher.clone())
        .await
        .map_err(|e| explain(&e))?;
    let first_run = !dispatcher.endpoints().iter().any(|e| e.id == DEMO);
    for (id, path, kinds) in [
        (DEMO, "webhook", EventKind::ALL.to_vec()),
        (DEMO_FAILING, "always-503", vec![EventKind::PaymentFailed]),
    ] {
        // The receiver's port is new on every run: the demo webhooks follow it.
        let url = format!("http://{receiver_addr}/{path}");
        let existing = dispatcher.endpoints().into_iter().find(|e| e.id == id);
        match existing {
            Some(_) => {
                let update = fermion_webhooks::dispatch::EndpointUpdate::new().url(url);
                dispatcher
                    .update_endpoint(id, update)
                    .await
                    .map_err(|e| explain(&e))?;
            }
            None => {
                let secret = WebhookSecret::generate().map_err(|e| explain(&e))?;
                let endpoint = Endpoint::new(id, url, secret)
                    .map_err(|e| explain(&e))?
                    .owned_by(TENANT)
                    .subscribe_only(kinds);
                dispatcher
                    .add_endpoint(endpoint)
                    .await
                    .map_err(|e| explain(&e))?;
            }
        }
    }
    if first_run {
        for kind in EventKind::ALL {
            dispatcher
                .emit(EventPayload::sample(kind))
                .await
                .map_err(|e| explain(&e))?;
        }
    }

    let authorize = BearerTokens::new().token(&token, TENANT);
    let admin = Admin::new(dispatcher.clone(), Arc::new(authorize)).allow_private_networks(true);
    let listener = tokio::net::TcpListener::bind(options.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", options.addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let sign_in = if generated {
        format!(
            "dashboard: http://{addr}/#token={}\n  (a token made for this run; choose one with \
             --admin-token)",
            token.expose_secret()
        )
    } else {
        format!(
            "dashboard: http://{addr}/\n  (sign in with the admin token you gave, or open \
             http://{addr}/#token=<token>)"
        )
    };
    say(
        &mut std::io::stdout(),
        format_args!(
            "{sign_in}\n  API: curl -H 'Authorization: Bearer <token>' http://{addr}/endpoints\n  \
             log: {log} (send --log-dir {log} --owner {TENANT} ... adds events here)\n  \
             demo receiver: http://{receiver_addr}/webhook",
            log = options.log_dir.display()
        ),
    );
    axum::serve(listener, admin::router(admin))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| format!("serving the dashboard failed: {e}"))?;
    dispatcher.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// A receiver on 127.0.0.1: `/webhook` checks the demo webhook's current secret (so a
/// rotation in the page takes effect at once) and answers 200; `/always-503` fails.
async fn demo_receiver(dispatcher: Dispatcher) -> std::io::Result<SocketAddr> {
    async fn webhook(
        State(dispatcher): State<Dispatcher>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> (StatusCode, String) {
        let Some(demo) = dispatcher.endpoints().into_iter().find(|e| e.id == DEMO) else {
            return (StatusCode::GONE, "the demo webhook was deleted".into());
        };
        match Receiver::new(demo.secret.clone()).receive(&headers, &body) {
            Ok(event) => {
                say(
                    &mut std::io::stderr(),
                    format_args!(
                        "demo receiver: got {} {}",
                        event.event_type(),
                        event.event_unique_id
                    ),
                );
                (StatusCode::OK, "received".into())
            }
            Err(error) => (error.status(), error.explain()),
        }
    }
    let app = axum::Router::new()
        .route("/webhook", axum::routing::post(webhook))
        .route(
            "/always-503",
            axum::routing::post(|| async {
                (StatusCode::SERVICE_UNAVAILABLE, "down for the demo")
            }),
        )
        .with_state(dispatcher);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// A line for whoever reads; a closed stdout or stderr (the reader went away) must not stop
/// the dashboard, as `println!` would by panicking.
fn say(out: &mut impl std::io::Write, line: std::fmt::Arguments<'_>) {
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}
