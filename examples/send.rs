//! Send Fermion webhooks from the command line, through the durable dispatcher.
//!
//! ```text
//! cargo run --example send -- --url URL [--url URL2 ...] --secret S (--event KIND | --payload FILE)
//!     [--count N] [--test] [--log-dir DIR | --database-url URL] [--events K1,K2]
//!     [--allow-private-networks] [--owner ID] [--standard-webhooks-secret whsec_...]
//!     [--retry-schedule 500ms,1s,2s] [--timeout 10s]
//! ```
//!
//! It first resumes deliveries left pending in the log (`--count 0` does only that), then
//! sends every event to each `--url`, and waits until every delivery is final. One JSON line
//! per event on stdout. Exit 0 only if every delivery was delivered, 1 if any failed, 2 for
//! bad arguments.

mod support;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use fermion_webhooks::clock::SystemClock;
use fermion_webhooks::store::LogFilter;
use fermion_webhooks::{
    DispatchConfig, Dispatcher, Endpoint, EventKind, EventPayload, HttpSender, RetrySchedule,
    WebhookEvent, WebhookSecret,
};
use lexopt::prelude::*;
use support::{ResultLine, parse_duration};

const USAGE: &str =
    "usage: send --url URL [--url URL2 ...] --secret S (--event KIND | --payload FILE)
            [--count N] [--test] [--log-dir DIR | --database-url URL] [--events K1,K2]
            [--allow-private-networks] [--retry-schedule 500ms,1s,2s] [--timeout 10s]
            [--owner ID] [--standard-webhooks-secret whsec_...]
  --url URL           an endpoint; give it several times for several endpoints, all with the
                      same --secret and --events: every event goes to each, and the exit
                      status is 0 only when every delivery to every one was delivered
  --event KIND        send realistic samples of KIND (free-course-enrollment, paid-course-sale,
                      payment-failed, payment-initiated-not-completed)
  --payload FILE      send this payload object (with its eventType) as is, in a fresh envelope;
                      it is checked first, and a bad one is refused with the field named
  --count N           how many events (default 1; 0 only resumes pending deliveries)
  --test              mark them isTestEvent: true (samples go even if the endpoint is not
                      subscribed to their kind)
  --log-dir DIR       the durable event log (default ./fermion-webhook-logs)
  --database-url URL  the log in a database instead: postgres://USER@HOST/DB (shared by
                      every process using it) or sqlite://PATH (created when missing); the
                      endpoint is stored there too, so a `worker` can deliver what is pending
  --events K1,K2      the endpoint's subscriptions (default all four)
  --standard-webhooks-secret whsec_...
                      also sign every delivery (Standard Webhooks: webhook-id,
                      webhook-timestamp, webhook-signature); repeat it during a rotation
  --owner ID          the course creator the endpoints belong to: the `dashboard` example
                      acting for `local` shows `--owner local`'s webhooks and events
  --retry-schedule    delays between retries (default 5s,5m,30m,2h,5h,10h,10h)
  --timeout D         per-attempt timeout (default 15s)
  --allow-private-networks   allow loopback/private addresses (off: SSRF guard)";

/// The endpoint id this tool logs deliveries to the first `--url` under, so a later run can
/// resume them; the next ones are `send-cli-2`, `send-cli-3`, ...
const ENDPOINT_ID: &str = "send-cli";

/// The id of the endpoint for the `index`-th `--url` (from 0).
fn endpoint_id(index: usize) -> String {
    match index {
        0 => ENDPOINT_ID.to_owned(),
        n => format!("{ENDPOINT_ID}-{}", n + 1),
    }
}

struct Options {
    urls: Vec<String>,
    secret: WebhookSecret,
    what: Option<What>,
    count: usize,
    test: bool,
    database: support::Database,
    events: Option<Vec<EventKind>>,
    allow_private: bool,
    retry: Option<Vec<Duration>>,
    timeout: Duration,
    owner: Option<String>,
    signing: Vec<fermion_webhooks::SigningSecret>,
}

enum What {
    Sample(EventKind),
    /// The payload object's text, exactly as in the file, and its type.
    Payload {
        text: String,
        event_type: String,
    },
}

fn value(parser: &mut lexopt::Parser) -> Result<String, String> {
    parser
        .value()
        .map_err(|e| support::explain(&e))?
        .into_string()
        .map_err(|_| "arguments must be valid UTF-8".to_owned())
}

/// A fresh envelope (new id, now, the test flag) around the payload text, unchanged.
fn envelope(payload: &str, test: bool) -> String {
    format!(
        r#"{{"eventUniqueId":"{}","timestampIsoString":"{}","isTestEvent":{test},"payload":{payload}}}"#,
        uuid::Uuid::new_v4(),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

fn read_payload(path: &str) -> Result<What, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read --payload {path}: {e}"))?
        .trim()
        .to_owned();
    // Parse it inside an envelope now, so a bad payload is refused with the field named
    // before anything is sent.
    let event = WebhookEvent::from_json(envelope(&text, false).as_bytes())
        .map_err(|e| format!("--payload {path}: {e}"))?;
    Ok(What::Payload {
        event_type: event.event_type().to_owned(),
        text,
    })
}

fn parse() -> Result<Options, String> {
    let mut parser = lexopt::Parser::from_env();
    let (mut urls, mut secret, mut what) = (Vec::new(), None, None);
    let mut options_count = 1;
    let mut test = false;
    let mut database = support::Database::Dir(PathBuf::from("fermion-webhook-logs"));
    let mut events = None;
    let mut allow_private = false;
    let mut retry = None;
    let mut timeout = Duration::from_secs(15);
    let mut owner = None;
    let mut signing = Vec::new();
    while let Some(arg) = parser.next().map_err(|e| support::explain(&e))? {
        match arg {
            Long("url") => urls.push(value(&mut parser)?),
            Long("secret") => {
                secret = Some(
                    WebhookSecret::new(value(&mut parser)?).map_err(|e| support::explain(&e))?,
                )
            }
            Long("event") => {
                let kind = value(&mut parser)?
                    .parse::<EventKind>()
                    .map_err(|e| support::explain(&e))?;
                what = Some(What::Sample(kind));
            }
            Long("payload") => what = Some(read_payload(&value(&mut parser)?)?),
            Long("count") => {
                let text = value(&mut parser)?;
                options_count = text
                    .parse()
                    .map_err(|_| format!("--count {text:?} is not a whole number"))?;
            }
            Long("test") => test = true,
            Long("log-dir") => {
                database = support::Database::Dir(PathBuf::from(value(&mut parser)?))
            }
            Long("database-url") => database = support::Database::Url(value(&mut parser)?),
            Long("events") => {
                let kinds = value(&mut parser)?
                    .split(',')
                    .map(|k| k.trim().parse::<EventKind>().map_err(|e| e.to_string()))
                    .collect::<Result<Vec<_>, _>>()?;
                events = Some(kinds);
            }
            Long("allow-private-networks") => allow_private = true,
            Long("retry-schedule") => {
                let delays = value(&mut parser)?
                    .split(',')
                    .filter(|d| !d.trim().is_empty())
                    .map(parse_duration)
                    .collect::<Result<Vec<_>, _>>()?;
                retry = Some(delays);
            }
            Long("timeout") => timeout = parse_duration(&value(&mut parser)?)?,
            Long("owner") => owner = Some(value(&mut parser)?),
            Long("standard-webhooks-secret") => signing.push(
                fermion_webhooks::SigningSecret::new(&value(&mut parser)?)
                    .map_err(|e| format!("--standard-webhooks-secret: {e}"))?,
            ),
            Long("help") | Short('h') => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    if urls.is_empty() {
        return Err("--url is required".into());
    }
    let secret = secret.ok_or("--secret is required")?;
    if what.is_none() && options_count > 0 {
        return Err(
            "--event KIND or --payload FILE is required (or --count 0 to only resume)".into(),
        );
    }
    Ok(Options {
        urls,
        secret,
        what,
        count: options_count,
        test,
        database,
        events,
        allow_private,
        retry,
        timeout,
        owner,
        signing,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("send: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut endpoints = Vec::with_capacity(options.urls.len());
    for (index, url) in options.urls.iter().enumerate() {
        let mut endpoint = match Endpoint::new(endpoint_id(index), url, options.secret.clone()) {
            Ok(endpoint) => endpoint,
            Err(error) => {
                eprintln!("send: {error}\n\n{USAGE}");
                return ExitCode::from(2);
            }
        };
        if let Some(kinds) = &options.events {
            endpoint = endpoint.subscribe_only(kinds.iter().copied());
        }
        if let Some(owner) = &options.owner {
            endpoint = endpoint.owned_by(owner.clone());
        }
        for key in &options.signing {
            endpoint = endpoint.signed_with(key.clone());
        }
        endpoints.push(endpoint);
    }
    let store = match options.database.open().await {
        Ok(store) => store,
        Err(message) => {
            eprintln!("send: {message}");
            return ExitCode::from(2);
        }
    };
    match run(options, endpoints, store).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("send: {message}");
            ExitCode::from(1)
        }
    }
}

/// Returns whether every delivery succeeded.
async fn run(
    options: Options,
    endpoints: Vec<Endpoint>,
    store: Arc<dyn fermion_webhooks::store::Store>,
) -> Result<bool, String> {
    // Stored beside the log, so that a `worker` sharing the database can deliver what this
    // run leaves pending.
    for endpoint in &endpoints {
        store
            .put_endpoint(endpoint)
            .await
            .map_err(|e| support::explain(&e))?;
    }
    let ids_of_endpoints: Vec<String> = endpoints.iter().map(|e| e.id.clone()).collect();
    let sender = HttpSender::builder()
        .allow_private_networks(options.allow_private)
        .timeout(options.timeout)
        .build()
        .map_err(|e| support::explain(&e))?;
    let mut config = DispatchConfig::default();
    if let Some(delays) = options.retry.clone() {
        config.retry = RetrySchedule::fixed(delays);
    }
    config.poll_interval = Duration::from_millis(50);
    // Deliveries a previous run left pending are resumed by the dispatcher as soon as it starts.
    let pending = LogFilter::default().status(fermion_webhooks::store::DeliveryState::Pending);
    let mut ids = Vec::new();
    store
        .scan(&pending, &mut |event| {
            ids.push(event.event_unique_id);
            std::ops::ControlFlow::Continue(())
        })
        .await
        .map_err(|e| support::explain(&e))?;
    if !ids.is_empty() {
        eprintln!(
            "resuming {} event(s) left pending in {}",
            ids.len(),
            options.database.describe()
        );
    }
    let dispatcher = Dispatcher::start_with(
        store,
        Arc::new(sender),
        endpoints,
        config,
        Arc::new(SystemClock),
    )
    .map_err(|e| support::explain(&e))?;
    let mut all_ok = true;
    let mut finish = |event: &fermion_webhooks::store::StoredEvent| {
        let line = ResultLine::of(event);
        all_ok &= !line.failed();
        line.print();
    };
    // Long enough for any retry schedule given on the command line.
    let wait = options.retry.iter().flatten().sum::<Duration>()
        + options.timeout * 10
        + Duration::from_secs(30);
    for id in ids {
        let event = dispatcher
            .wait_until_final(&id, wait)
            .await
            .map_err(|e| support::explain(&e))?;
        finish(&event);
    }
    // Emit everything first (each is durable once `emit` returns), then wait for them all.
    let mut emitted_ids = Vec::new();
    for _ in 0..options.count {
        let mut emitted = Vec::new();
        match (&options.what, options.test) {
            // A test event goes to one endpoint: one to each.
            (Some(What::Sample(kind)), true) => {
                for id in &ids_of_endpoints {
                    emitted.push(dispatcher.send_test_event(*kind, id).await);
                }
            }
            (Some(What::Sample(kind)), false) => {
                emitted.push(dispatcher.emit(EventPayload::sample(*kind)).await)
            }
            (Some(What::Payload { text, .. }), test) => {
                emitted.push(dispatcher.emit_json(envelope(text, test)).await)
            }
            (None, _) => break,
        }
        for emitted in emitted {
            let emitted = emitted.map_err(|e| support::explain(&e))?;
            if emitted.is_unsubscribed() {
                let event_type = match &options.what {
                    Some(What::Sample(kind)) => kind.as_str().to_owned(),
                    Some(What::Payload { event_type, .. }) => event_type.clone(),
                    None => String::new(),
                };
                ResultLine {
                    event_unique_id: &emitted.event_unique_id,
                    event_type: &event_type,
                    status: "not-subscribed",
                    attempts: 0,
                    last_response_status: None,
                }
                .print();
            } else {
                emitted_ids.push(emitted.event_unique_id);
            }
        }
    }
    for id in emitted_ids {
        let event = dispatcher
            .wait_until_final(&id, wait)
            .await
            .map_err(|e| support::explain(&e))?;
        finish(&event);
    }
    dispatcher.shutdown(Duration::from_secs(5)).await;
    Ok(all_ok)
}
