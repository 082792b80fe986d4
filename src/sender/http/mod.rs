//! `HttpSender`: delivery over HTTP(S), with rustls, guarded against SSRF.

mod chunked;
mod conn;
mod exchange;
mod pool;
mod target;

use std::collections::HashMap;
use std::error::Error as StdError;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;

use self::exchange::{ExchangeError, exchange};
use self::pool::Pool;
use self::target::{Target, parse_target};
use super::resolver::GuardedResolver;
use super::ssrf::is_global_address;
use super::{DeliveryRequest, SendOutcome, SendResult, Sender};
use crate::store::TransportErrorKind;

/// The default time limit for one attempt, connection to last byte read.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

const AGENT: &str = concat!("fermion-webhooks/", env!("CARGO_PKG_VERSION"));

/// Why an [`HttpSender`] could not be built.
#[derive(Debug, thiserror::Error)]
#[error("could not build the HTTP client: {0}")]
pub struct HttpSenderError(#[source] Box<dyn StdError + Send + Sync>);

/// Delivers webhooks over HTTP(S): `POST` with `Content-Type: application/json`,
/// `X-Fermion-Webhook-Secret` and `User-Agent: fermion-webhooks/<version>`.
///
/// - HTTP/1.1 with keep-alive: idle connections are kept per origin (up to 128, for 50 s) and
///   checked before reuse; rustls with the Mozilla roots for TLS; no proxies.
/// - Redirects are not followed: a 3xx answer is recorded as a failed attempt.
/// - A 15 s timeout by default, from connecting to the last byte read; only the first 4 KiB
///   of a response body is kept, and a body over 64 KiB is not read past that: its connection
///   is closed instead.
/// - SSRF guard, on by default: no delivery to loopback, private, link-local (including
///   `169.254.169.254`), CGNAT, unique-local, multicast, documentation or other non-global
///   addresses, whether the URL holds an IP literal in any spelling (`http://2130706433/`,
///   `[::ffff:127.0.0.1]`) or a name that resolves to one. Every resolved address is checked.
///   Such a delivery fails with [`TransportErrorKind::BlockedAddress`].
///   [`allow_private_networks`](HttpSenderBuilder::allow_private_networks) opts out, for
///   development and tests.
#[derive(Clone)]
pub struct HttpSender {
    shared: Arc<Shared>,
}

struct Shared {
    resolver: GuardedResolver,
    tls: tokio_rustls::TlsConnector,
    pool: Pool,
    timeout: Duration,
    allow_private_networks: bool,
    /// Endpoint URLs already parsed: parsing one costs as much CPU as a third of a loopback
    /// request, and a platform sends to the same few URLs over and over.
    parsed_urls: std::sync::Mutex<HashMap<String, Arc<Target>>>,
}

impl std::fmt::Debug for HttpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSender")
            .field("timeout", &self.shared.timeout)
            .field(
                "allow_private_networks",
                &self.shared.allow_private_networks,
            )
            .finish_non_exhaustive()
    }
}

/// The most parsed URLs kept; the cache starts over when it is full.
const PARSED_URLS: usize = 1024;

/// Configuration for an [`HttpSender`].
pub struct HttpSenderBuilder {
    timeout: Duration,
    allow_private_networks: bool,
    overrides: HashMap<String, Vec<IpAddr>>,
    extra_roots: Vec<Vec<u8>>,
}

impl std::fmt::Debug for HttpSenderBuilder {
    // The added roots by number: their bytes say nothing to a reader.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSenderBuilder")
            .field("timeout", &self.timeout)
            .field("allow_private_networks", &self.allow_private_networks)
            .field("overrides", &self.overrides)
            .field("extra_roots", &self.extra_roots.len())
            .finish()
    }
}

impl HttpSender {
    /// A sender with the defaults: 15 s timeout, SSRF guard on.
    pub fn new() -> Result<Self, HttpSenderError> {
        Self::builder().build()
    }

    /// Starts configuring a sender.
    pub fn builder() -> HttpSenderBuilder {
        HttpSenderBuilder {
            timeout: DEFAULT_ATTEMPT_TIMEOUT,
            allow_private_networks: false,
            overrides: HashMap::new(),
            extra_roots: Vec::new(),
        }
    }
}

impl HttpSenderBuilder {
    /// The time limit for one attempt, connection to last byte read (default
    /// [`DEFAULT_ATTEMPT_TIMEOUT`](crate::DEFAULT_ATTEMPT_TIMEOUT), 15 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Allows delivery to loopback and private addresses. For development and tests only:
    /// with it, a course creator's URL can reach the platform's internal network.
    pub fn allow_private_networks(mut self, allow: bool) -> Self {
        self.allow_private_networks = allow;
        self
    }

    /// Resolves `host` to `addresses` instead of asking DNS. The SSRF guard still checks
    /// them, so this also tests what happens when a public-looking name points inside.
    pub fn resolve(mut self, host: &str, addresses: &[IpAddr]) -> Self {
        self.overrides
            .insert(host.to_ascii_lowercase(), addresses.to_vec());
        self
    }

    /// Also trusts this root certificate (DER), besides the Mozilla roots: for endpoints
    /// behind a private certificate authority. A certificate that cannot be read fails
    /// [`build`](Self::build).
    pub fn add_root_certificate(mut self, der: &[u8]) -> Self {
        self.extra_roots.push(der.to_vec());
        self
    }

    /// Builds the sender.
    pub fn build(self) -> Result<HttpSender, HttpSenderError> {
        let tls =
            conn::tls_connector(&self.extra_roots).map_err(|e| HttpSenderError(Box::new(e)))?;
        Ok(HttpSender {
            shared: Arc::new(Shared {
                resolver: GuardedResolver {
                    allow_private_networks: self.allow_private_networks,
                    overrides: Arc::new(self.overrides),
                },
                tls,
                pool: Pool::default(),
                timeout: self.timeout,
                allow_private_networks: self.allow_private_networks,
                parsed_urls: std::sync::Mutex::default(),
            }),
        })
    }
}

#[async_trait]
impl Sender for HttpSender {
    async fn send(&self, request: DeliveryRequest<'_>) -> SendOutcome {
        let started_at = Utc::now();
        let start = Instant::now();
        let result = self.attempt(request).await;
        SendOutcome {
            started_at,
            duration: start.elapsed(),
            result,
        }
    }
}

impl HttpSender {
    /// `url` as a request target, from the cache when it was parsed before.
    fn target(&self, url: &str) -> Result<Arc<Target>, String> {
        let mut cache = self
            .shared
            .parsed_urls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(target) = cache.get(url) {
            return Ok(target.clone());
        }
        let target = Arc::new(parse_target(url)?);
        if cache.len() >= PARSED_URLS {
            cache.clear();
        }
        cache.insert(url.to_owned(), target.clone());
        Ok(target)
    }

    async fn attempt(&self, request: DeliveryRequest<'_>) -> SendResult {
        let shared = &*self.shared;
        let deadline = tokio::time::Instant::now() + shared.timeout;
        let target = match self.target(request.url) {
            Ok(target) => target,
            Err(error) => return failed(TransportErrorKind::Other, format!("bad URL: {error}")),
        };
        // IP literals never reach the resolver, so they are checked here.
        if let Some(address) = target
            .literal
            .filter(|a| !shared.allow_private_networks && !is_global_address(*a))
        {
            return failed(
                TransportErrorKind::BlockedAddress,
                format!("{address} is not a public address; delivery refused (SSRF guard)"),
            );
        }
        // Header-safe by construction: `WebhookSecret` refuses anything else.
        let secret = request.secret.expose_secret();
        // A kept connection the server closed just as this request went out shows as no
        // response at all: then the request goes once more, on a new connection. (The server
        // cannot have answered it; at worst it got it twice, which at-least-once allows.)
        if let Some(mut stream) = shared.pool.take(&target.authority) {
            match exchange(&mut stream, &target, secret, request.body, deadline).await {
                Err(ExchangeError::NoResponse(_)) => {}
                outcome => return self.finish(outcome, stream, &target),
            }
        }
        let connecting = conn::open(&target, &shared.resolver, &shared.tls);
        let mut stream = match tokio::time::timeout_at(deadline, connecting).await {
            Ok(Ok(stream)) => stream,
            Ok(Err((kind, message))) => return failed(kind, message),
            Err(_) => return self.timed_out(),
        };
        let outcome = exchange(&mut stream, &target, secret, request.body, deadline).await;
        self.finish(outcome, stream, &target)
    }

    /// The attempt's result from the exchange's; keeps the connection when it can carry
    /// another request.
    fn finish(
        &self,
        outcome: Result<exchange::Response, ExchangeError>,
        stream: conn::Stream,
        target: &Target,
    ) -> SendResult {
        match outcome {
            Ok(response) => {
                if response.reusable {
                    self.shared.pool.put(&target.authority, stream);
                }
                SendResult::Response {
                    status: response.status,
                    // Valid UTF-8 (the usual case) keeps its buffer: no copy.
                    snippet: String::from_utf8(response.snippet)
                        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
                    retry_after: response.retry_after,
                }
            }
            Err(ExchangeError::TimedOut) => self.timed_out(),
            Err(ExchangeError::NoResponse(error)) => failed(
                TransportErrorKind::Other,
                format!(
                    "{} closed the connection before answering: {error}",
                    target.authority
                ),
            ),
            Err(ExchangeError::Invalid(message)) => failed(
                TransportErrorKind::Other,
                format!("{}: {message}", target.authority),
            ),
        }
    }

    fn timed_out(&self) -> SendResult {
        failed(
            TransportErrorKind::Timeout,
            format!("no answer within {:?}", self.shared.timeout),
        )
    }
}

fn failed(kind: TransportErrorKind, message: String) -> SendResult {
    SendResult::Failed { kind, message }
}

/// `Retry-After`: delay-seconds, or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&Utc) - Utc::now()).to_std().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_retry_after;
    use std::time::Duration;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        let soon = (chrono::Utc::now() + chrono::TimeDelta::seconds(90)).to_rfc2822();
        let parsed = parse_retry_after(&soon).unwrap();
        assert!(parsed <= Duration::from_secs(90) && parsed >= Duration::from_secs(85));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            None,
            "past dates"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
