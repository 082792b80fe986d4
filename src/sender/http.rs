//! `HttpSender`: delivery over HTTP(S) with hyper and rustls, guarded against SSRF.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use http::header::{CONTENT_TYPE, HOST, HeaderValue, RETRY_AFTER, USER_AGENT};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::resolver::{BlockedAddress, GuardedResolver, LookupFailed};
use super::ssrf::is_global_address;
use super::{DeliveryRequest, SendOutcome, SendResult, Sender};
use crate::secret::SECRET_HEADER;
use crate::store::{RESPONSE_SNIPPET_LIMIT, TransportErrorKind};

/// The default time limit for one attempt, connection to last byte read.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

const AGENT: &str = concat!("fermion-webhooks/", env!("CARGO_PKG_VERSION"));

/// Why an [`HttpSender`] could not be built.
#[derive(Debug, thiserror::Error)]
#[error("could not build the HTTP client: {0}")]
pub struct HttpSenderError(#[source] Box<dyn StdError + Send + Sync>);

type Connector = hyper_rustls::HttpsConnector<HttpConnector<GuardedResolver>>;

/// Delivers webhooks over HTTP(S): `POST` with `Content-Type: application/json`,
/// `X-Fermion-Webhook-Secret` and `User-Agent: fermion-webhooks/<version>`.
///
/// - One shared connection pool (HTTP/1.1, hyper); rustls with the Mozilla roots for TLS;
///   no proxies.
/// - Redirects are not followed: a 3xx answer is recorded as a failed attempt.
/// - A 15 s timeout by default; only the first 4 KiB of a response body is read.
/// - SSRF guard, on by default: no delivery to loopback, private, link-local (including
///   `169.254.169.254`), CGNAT, unique-local, multicast, documentation or other non-global
///   addresses, whether the URL holds an IP literal in any spelling (`http://2130706433/`,
///   `[::ffff:127.0.0.1]`) or a name that resolves to one. Every resolved address is checked.
///   Such a delivery fails with [`TransportErrorKind::BlockedAddress`].
///   [`allow_private_networks`](HttpSenderBuilder::allow_private_networks) opts out, for
///   development and tests.
#[derive(Clone)]
pub struct HttpSender {
    client: Client<Connector, Full<Bytes>>,
    timeout: Duration,
    allow_private_networks: bool,
    /// Endpoint URLs already parsed: parsing one costs as much CPU as a third of a loopback
    /// request, and a platform sends to the same few URLs over and over.
    parsed_urls: Arc<std::sync::Mutex<HashMap<String, Target>>>,
}

impl std::fmt::Debug for HttpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSender")
            .field("timeout", &self.timeout)
            .field("allow_private_networks", &self.allow_private_networks)
            .finish_non_exhaustive()
    }
}

/// An endpoint URL as a request target: normalised by the URL parser (so `0x7f.1` is already
/// `127.0.0.1`), with its IP literal if it has one and its `Host` header.
#[derive(Clone)]
struct Target {
    uri: http::Uri,
    literal: Option<IpAddr>,
    /// Set on each request, so the client does not format it anew every time (its only
    /// per-request formatting, about an eighth of the request's cost on loopback).
    host: HeaderValue,
}

/// The most parsed URLs kept; the cache starts over when it is full.
const PARSED_URLS: usize = 1024;

/// Configuration for an [`HttpSender`].
#[derive(Debug)]
pub struct HttpSenderBuilder {
    timeout: Duration,
    allow_private_networks: bool,
    overrides: HashMap<String, Vec<IpAddr>>,
}

impl HttpSender {
    /// A sender with the defaults: 15 s timeout, SSRF guard on.
    pub fn new() -> Result<Self, HttpSenderError> {
        Self::builder().build()
    }

    /// Starts configuring a sender.
    pub fn builder() -> HttpSenderBuilder {
        HttpSenderBuilder {
            timeout: DEFAULT_TIMEOUT,
            allow_private_networks: false,
            overrides: HashMap::new(),
        }
    }
}

impl HttpSenderBuilder {
    /// The time limit for one attempt (default 15 s).
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

    /// Builds the sender.
    pub fn build(self) -> Result<HttpSender, HttpSenderError> {
        let resolver = GuardedResolver {
            allow_private_networks: self.allow_private_networks,
            overrides: Arc::new(self.overrides),
        };
        let mut http = HttpConnector::new_with_resolver(resolver);
        // The TLS layer below takes `https` URLs; this one must let them through to it.
        http.enforce_http(false);
        http.set_nodelay(true);
        // The provider is named rather than taken from the process default, which another
        // crate in the same program may have set, or left ambiguous.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| HttpSenderError(Box::new(e)))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(HttpSender {
            client,
            timeout: self.timeout,
            allow_private_networks: self.allow_private_networks,
            parsed_urls: Arc::default(),
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
    fn target(&self, url: &str) -> Result<Target, String> {
        let mut cache = self
            .parsed_urls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(target) = cache.get(url) {
            return Ok(target.clone());
        }
        let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            _ => None,
        };
        // The normalised form, without the fragment, which is never sent.
        let uri = parsed[..url::Position::AfterQuery]
            .parse::<http::Uri>()
            .map_err(|e| e.to_string())?;
        let host = host_header(&uri).ok_or_else(|| format!("{url} has no host"))?;
        let target = Target { uri, literal, host };
        if cache.len() >= PARSED_URLS {
            cache.clear();
        }
        cache.insert(url.to_owned(), target.clone());
        Ok(target)
    }

    async fn attempt(&self, request: DeliveryRequest<'_>) -> SendResult {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let target = match self.target(request.url) {
            Ok(target) => target,
            Err(error) => return failed(TransportErrorKind::Other, format!("bad URL: {error}")),
        };
        // IP literals never reach the resolver, so they are checked here.
        if let Some(address) = target
            .literal
            .filter(|a| !self.allow_private_networks && !is_global_address(*a))
        {
            return failed(
                TransportErrorKind::BlockedAddress,
                format!("{address} is not a public address; delivery refused (SSRF guard)"),
            );
        }
        let Ok(mut secret) = HeaderValue::from_str(request.secret.expose_secret()) else {
            return failed(
                TransportErrorKind::Other,
                "the secret is not a valid header value".into(),
            );
        };
        secret.set_sensitive(true);
        let built = http::Request::post(target.uri)
            .header(HOST, target.host)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(USER_AGENT, HeaderValue::from_static(AGENT))
            .header(SECRET_HEADER, secret)
            .body(Full::new(Bytes::copy_from_slice(request.body)));
        let http_request = match built {
            Ok(http_request) => http_request,
            Err(error) => {
                return failed(
                    TransportErrorKind::Other,
                    format!("could not build the request: {error}"),
                );
            }
        };
        let response =
            match tokio::time::timeout_at(deadline, self.client.request(http_request)).await {
                Ok(Ok(response)) => response,
                Ok(Err(error)) => return classify(&error),
                Err(_) => {
                    return failed(
                        TransportErrorKind::Timeout,
                        format!("no answer within {:?}", self.timeout),
                    );
                }
            };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_retry_after);
        // Read at most the snippet, within the same time limit; a huge or endless body is
        // never buffered.
        let mut body = response.into_body();
        let mut snippet = Vec::new();
        while snippet.len() < RESPONSE_SNIPPET_LIMIT {
            match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(chunk) = frame.into_data() {
                        let room = RESPONSE_SNIPPET_LIMIT - snippet.len();
                        snippet.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    }
                }
                // The status is what counts; a body cut short still leaves a useful snippet.
                Ok(None | Some(Err(_))) | Err(_) => break,
            }
        }
        SendResult::Response {
            status,
            snippet: String::from_utf8_lossy(&snippet).into_owned(),
            retry_after,
        }
    }
}

/// The `Host` header hyper's client would set for `uri`: the host, and the port unless it is
/// the scheme's default.
fn host_header(uri: &http::Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    let secure = matches!(uri.scheme_str(), Some("https" | "wss"));
    let text = match uri.port_u16() {
        Some(443) if secure => host.to_owned(),
        Some(80) if !secure => host.to_owned(),
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    HeaderValue::from_str(&text).ok()
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

/// Sorts a client failure into a transport error kind, by what caused it.
fn classify(error: &hyper_util::client::legacy::Error) -> SendResult {
    for cause in causes(error) {
        if let Some(blocked) = cause.downcast_ref::<BlockedAddress>() {
            return failed(TransportErrorKind::BlockedAddress, blocked.to_string());
        }
        if let Some(lookup) = cause.downcast_ref::<LookupFailed>() {
            return failed(TransportErrorKind::Dns, lookup.to_string());
        }
        if cause.downcast_ref::<rustls::Error>().is_some() {
            return failed(TransportErrorKind::Tls, describe(error));
        }
    }
    let kind = if error.is_connect() {
        TransportErrorKind::Connect
    } else {
        TransportErrorKind::Other
    };
    failed(kind, describe(error))
}

/// Every error behind `error`. An I/O error's `source` skips the error it wraps (TLS failures
/// arrive as an I/O error holding an I/O error holding the rustls error), so those are
/// unwrapped too.
fn causes(error: &hyper_util::client::legacy::Error) -> Vec<&(dyn StdError + 'static)> {
    let mut found = Vec::new();
    let mut next = error.source();
    while let Some(cause) = next {
        let mut current = cause;
        found.push(current);
        while let Some(inner) = current
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            current = inner;
            found.push(current);
        }
        next = cause.source();
    }
    found
}

/// The error and its causes on one line. The client's messages never hold headers, so the
/// secret cannot appear.
fn describe(error: &hyper_util::client::legacy::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        text.push_str(": ");
        text.push_str(&current.to_string());
        cause = current.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::{host_header, parse_retry_after};
    use std::time::Duration;

    #[test]
    fn the_host_header_names_the_port_only_when_it_is_not_the_schemes_default() {
        let host = |uri: &str| host_header(&uri.parse().unwrap()).unwrap();
        assert_eq!(host("http://crm.example.com/hooks"), "crm.example.com");
        assert_eq!(host("http://crm.example.com:80/hooks"), "crm.example.com");
        assert_eq!(host("http://127.0.0.1:8080/hooks"), "127.0.0.1:8080");
        assert_eq!(host("https://crm.example.com:443/"), "crm.example.com");
        assert_eq!(host("https://crm.example.com:80/"), "crm.example.com:80");
        assert_eq!(host("http://[::1]:3000/"), "[::1]:3000");
    }

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
