//! An integrator's webhook server built on this crate.
//!
//! ```text
//! cargo run --features axum --example listen -- (--secret S | --standard-webhooks-secret whsec_...)
//!     [--addr 127.0.0.1:8787] [--path /webhooks/fermion] [--max-body-bytes N]
//!     [--also-accept OLD_SECRET]... [--max-connections 512] [--header-timeout 10]
//!     [--request-timeout 30]
//! ```
//!
//! It faces the internet, so one client cannot hold it: a request's head must arrive within
//! 10 s (which also closes idle kept-alive connections), a whole request within 30 s, and at
//! most 512 connections are served at once; past that, new ones wait to be accepted, and
//! while three quarters are taken a new connection has 2 s for its head.
//!
//! With `--secret`, the `X-Fermion-Webhook-Secret` header must match; with
//! `--standard-webhooks-secret`, the Standard Webhooks signature must verify (within 5 minutes
//! of now); with both, both must hold. The secrets may also come from the
//! `FERMION_WEBHOOK_SECRET` and `FERMION_STANDARD_WEBHOOKS_SECRET` environment variables, which
//! keep them out of the process list. Each accepted event prints one JSON line on stdout; human
//! messages go to stderr.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use fermion_webhooks::receive::{
    DEFAULT_MAX_BODY_BYTES, FermionWebhook, ServeLimits, WebhookRejection, serve_until,
};
use fermion_webhooks::{DuplicateGuard, Receiver, SigningSecret, WebhookSecret};
use serde::Serialize;

const USAGE: &str = "usage: listen (--secret S | --standard-webhooks-secret whsec_...) \
                     [--addr 127.0.0.1:8787] [--path /webhooks/fermion] \
                     [--max-body-bytes N] [--also-accept OLD_SECRET]...
  --secret S            the webhook secret set in Fermion (or set FERMION_WEBHOOK_SECRET)
  --standard-webhooks-secret whsec_...
                        require a Standard Webhooks signature by this key (or set
                        FERMION_STANDARD_WEBHOOKS_SECRET); repeat it during a key rotation.
                        At least one of --secret and this is required; with both, both must hold
  --addr ADDR           address to listen on (default 127.0.0.1:8787; port 0 picks a free one)
  --path PATH           path webhooks are POSTed to (default /webhooks/fermion)
  --max-body-bytes N    largest body accepted (default 262144)
  --also-accept OLD     also accept this secret, during a rotation (repeatable)
  --max-connections N   connections served at once; more wait to be accepted (default 512)
  --header-timeout S    seconds for a request's head to arrive, and for an idle connection
                        to stay open (default 10)
  --request-timeout S   seconds to read and answer a whole request (default 30)";

struct Options {
    secret: Option<WebhookSecret>,
    signing: Vec<SigningSecret>,
    also_accept: Vec<WebhookSecret>,
    addr: SocketAddr,
    path: String,
    max_body_bytes: usize,
    limits: ServeLimits,
}

fn parse_options() -> Result<Options, String> {
    use lexopt::prelude::*;
    let mut secret = std::env::var("FERMION_WEBHOOK_SECRET").ok();
    let mut signing = Vec::new();
    if let Ok(key) = std::env::var("FERMION_STANDARD_WEBHOOKS_SECRET") {
        signing.push(signing_value(&key)?);
    }
    let mut also_accept = Vec::new();
    let mut addr: SocketAddr = ([127, 0, 0, 1], 8787).into();
    let mut path = "/webhooks/fermion".to_owned();
    let mut max_body_bytes = DEFAULT_MAX_BODY_BYTES;
    let mut limits = ServeLimits::default();
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("secret") => secret = Some(string_value(&mut parser)?),
            Long("standard-webhooks-secret") => {
                signing.push(signing_value(&string_value(&mut parser)?)?)
            }
            Long("also-accept") => also_accept.push(secret_value(&string_value(&mut parser)?)?),
            Long("addr") => {
                let text = string_value(&mut parser)?;
                addr = text.parse().map_err(|_| {
                    format!("--addr {text:?} is not an address like 127.0.0.1:8787")
                })?;
            }
            Long("path") => {
                path = string_value(&mut parser)?;
                if !path.starts_with('/') {
                    return Err(format!("--path {path:?} must start with /"));
                }
            }
            Long("max-body-bytes") => {
                let text = string_value(&mut parser)?;
                max_body_bytes = text
                    .parse()
                    .map_err(|_| format!("--max-body-bytes {text:?} is not a whole number"))?;
            }
            Long("max-connections") => {
                let text = string_value(&mut parser)?;
                limits.max_connections = text.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!("--max-connections {text:?} is not a positive number")
                })?;
            }
            Long("header-timeout") => {
                limits.header_timeout = seconds(&string_value(&mut parser)?, "--header-timeout")?
            }
            Long("request-timeout") => {
                limits.request_timeout = seconds(&string_value(&mut parser)?, "--request-timeout")?
            }
            Long("help") | Short('h') => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    let secret = secret
        .map(|s| secret_value(&s).map_err(|_| "the secret is not valid".to_owned()))
        .transpose()?;
    if secret.is_none() && signing.is_empty() {
        return Err(
            "--secret or --standard-webhooks-secret is required (or set \
                    FERMION_WEBHOOK_SECRET or FERMION_STANDARD_WEBHOOKS_SECRET)"
                .to_owned(),
        );
    }
    Ok(Options {
        secret,
        signing,
        also_accept,
        addr,
        path,
        max_body_bytes,
        limits,
    })
}

fn string_value(parser: &mut lexopt::Parser) -> Result<String, String> {
    parser
        .value()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|_| "arguments must be valid UTF-8".to_owned())
}

/// Whole seconds, at least one.
fn seconds(text: &str, option: &str) -> Result<Duration, String> {
    text.trim_end_matches('s')
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{option} {text:?} is not a number of seconds like 10"))
}

fn secret_value(text: &str) -> Result<WebhookSecret, String> {
    WebhookSecret::new(text).map_err(|e| e.to_string())
}

fn signing_value(text: &str) -> Result<SigningSecret, String> {
    SigningSecret::new(text).map_err(|e| format!("--standard-webhooks-secret: {e}"))
}

#[derive(Clone)]
struct AppState {
    receiver: Receiver,
    seen: Arc<DuplicateGuard>,
}

impl FromRef<AppState> for Receiver {
    fn from_ref(state: &AppState) -> Receiver {
        state.receiver.clone()
    }
}

async fn handle_webhook(
    State(state): State<AppState>,
    webhook: Result<FermionWebhook, WebhookRejection>,
) -> Response {
    let event = match webhook {
        Ok(FermionWebhook(event)) => event,
        Err(WebhookRejection(error)) => {
            say(format_args!("refused a webhook: {}", error.explain()));
            return json_error(error.status(), &error.explain());
        }
    };
    // Printing cannot fail in a way the sender could fix, so the event counts as handled here.
    let duplicate = state.seen.check_and_record(&event.event_unique_id);
    let line = AcceptedLine {
        event_unique_id: &event.event_unique_id,
        event_type: event.event_type(),
        is_test_event: event.is_test_event,
        duplicate,
    };
    let mut stdout = std::io::stdout().lock();
    // A closed stdout (the reader went away) must not fail the sender's delivery.
    let _ = serde_json::to_writer(&mut stdout, &line)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(stdout))
        .and_then(|()| stdout.flush());
    let body = Accepted {
        ok: true,
        event_unique_id: &event.event_unique_id,
        duplicate,
    };
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// The stdout line for an accepted event (fields in this order).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AcceptedLine<'a> {
    event_unique_id: &'a str,
    event_type: &'a str,
    is_test_event: bool,
    duplicate: bool,
}

/// The 200 answer.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Accepted<'a> {
    ok: bool,
    event_unique_id: &'a str,
    duplicate: bool,
}

/// Every error answer: `{"ok":false,"error":"..."}`.
#[derive(Serialize)]
struct Refused<'a> {
    ok: bool,
    error: &'a str,
}

/// A human message on stderr. Unlike `eprintln!`, it does not panic if stderr is closed: a
/// server must keep answering webhooks when nobody reads its messages.
fn say(message: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

fn json_error(status: StatusCode, message: &str) -> Response {
    let body = Refused {
        ok: false,
        error: message,
    };
    (status, axum::Json(body)).into_response()
}

#[tokio::main]
async fn main() -> ExitCode {
    // The server's own warnings (a failed accept, say) go to stderr with the human messages.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("listen: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut keys = options.signing.into_iter();
    let mut receiver = match options.secret {
        Some(secret) => Receiver::builder(secret),
        // parse_options made sure there is a key when there is no secret.
        None => match keys.next() {
            Some(key) => Receiver::signed(key),
            None => unreachable!("parse_options requires --secret or a signing key"),
        },
    };
    for key in keys {
        receiver = receiver.require_signature(key);
    }
    receiver = receiver.max_body_bytes(options.max_body_bytes);
    for old in options.also_accept {
        receiver = receiver.also_accept(old);
    }
    let state = AppState {
        receiver: receiver.build(),
        seen: Arc::new(DuplicateGuard::new(
            100_000,
            Duration::from_secs(7 * 24 * 3600),
        )),
    };
    let path = options.path.clone();
    let app = Router::new()
        .route(&options.path, post(handle_webhook))
        .method_not_allowed_fallback(|| async {
            json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed; Fermion POSTs webhooks",
            )
        })
        .fallback(move || async move {
            json_error(
                StatusCode::NOT_FOUND,
                &format!("not found; webhooks are received at POST {path}"),
            )
        })
        .with_state(state);
    let listener = match tokio::net::TcpListener::bind(options.addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("listen: cannot listen on {}: {error}", options.addr);
            return ExitCode::from(1);
        }
    };
    let local = listener.local_addr().map_or(options.addr, |addr| addr);
    say(format_args!("listening on http://{local}{}", options.path));
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        say(format_args!("shutting down"));
    };
    // Ctrl-C: no new connections; requests being answered are finished first.
    serve_until(listener, app, options.limits, shutdown).await;
    ExitCode::SUCCESS
}
