//! `HttpSender`: delivery over HTTP(S) with reqwest and rustls, guarded against SSRF.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use reqwest::header::RETRY_AFTER;

use super::resolver::GuardedResolver;
use super::ssrf::is_global_address;
use super::{DeliveryRequest, SendOutcome, SendResult, Sender, parse_retry_after};
use crate::error_chain;
use crate::store::{RESPONSE_SNIPPET_LIMIT, TransportErrorKind};

/// The default time limit for one attempt, connection to last byte read.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

/// The longest time limit an [`HttpSenderBuilder`] accepts for one attempt.
pub const MAX_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// How long an idle kept connection stays open by default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// A response body up to this size is read to its end (past the snippet), so that its
/// connection can carry the next request; a longer one is cut off with its connection.
const DRAIN_LIMIT: usize = 64 * 1024;

/// Why an [`HttpSender`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpSenderError {
    /// The attempt time limit is zero or longer than [`MAX_ATTEMPT_TIMEOUT`].
    #[error(
        "an attempt time limit of {timeout:?} is not usable; give one above zero and at most \
         {MAX_ATTEMPT_TIMEOUT:?}"
    )]
    InvalidTimeout {
        /// The time limit given.
        timeout: Duration,
    },
    /// An added root certificate is not a DER-encoded X.509 certificate rustls accepts.
    #[error("root certificate {index} (counting from 0) cannot be used")]
    RootCertificate {
        /// Which of the added certificates.
        index: usize,
        /// What rustls found wrong.
        #[source]
        source: rustls::Error,
    },
    /// The proxy URL does not parse.
    #[error("the proxy URL is not usable; give one such as http://proxy.internal:4750")]
    Proxy(#[source] reqwest::Error),
    /// The TLS configuration or the HTTP client could not be set up.
    #[error("could not set up the HTTP client")]
    Client(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Delivers webhooks over HTTP(S) with [`reqwest`]: `POST` with the headers of
/// [`DeliveryRequest::headers`] and the exact body.
///
/// - HTTP/1.1 or HTTP/2 (by ALPN), with idle connections kept per origin for 50 s and closed in
///   the background after that; rustls with the Mozilla roots for TLS.
/// - Redirects are not followed: a 3xx answer is recorded as a failed attempt.
/// - A 15 s time limit by default, from connecting to the last byte read; only the first 4 KiB
///   of a response body is kept, and a body over 64 KiB is not read past that: its connection
///   is closed instead.
/// - No proxy (proxy environment variables are ignored) unless one is set with
///   [`proxy`](HttpSenderBuilder::proxy).
/// - SSRF guard, on by default: no delivery to loopback, private, link-local (including
///   `169.254.169.254`), CGNAT, unique-local, multicast, documentation or other non-global
///   addresses, whether the URL holds an IP literal in any spelling (`http://2130706433/`,
///   `[::ffff:127.0.0.1]`) or a name that resolves to one. Names are resolved by the
///   [`GuardedResolver`], which refuses a name when any of its addresses is not global, so a
///   connection, new or kept, only ever goes to an address that passed. Such a delivery fails
///   with [`TransportErrorKind::BlockedAddress`].
///   [`allow_private_networks`](HttpSenderBuilder::allow_private_networks) opts out, for
///   development and tests.
///
/// ```no_run
/// use std::time::Duration;
/// use fermion_webhooks::HttpSender;
///
/// let sender = HttpSender::builder()
///     .timeout(Duration::from_secs(10))
///     .proxy("http://smokescreen.internal:4750")
///     .build()?;
/// # Ok::<(), fermion_webhooks::sender::HttpSenderError>(())
/// ```
#[derive(Clone, Debug)]
pub struct HttpSender {
    client: reqwest::Client,
    timeout: Duration,
    allow_private_networks: bool,
    /// Endpoint URLs already parsed: a platform sends to the same few URLs over and over, and
    /// parsing one (IDNA mapping included) cost about a tenth of a loopback delivery's CPU.
    parsed_urls: Arc<Mutex<HashMap<String, reqwest::Url>>>,
}

/// The most parsed URLs kept; the cache starts over when it is full.
const PARSED_URLS: usize = 1024;

/// Configuration for an [`HttpSender`].
pub struct HttpSenderBuilder {
    timeout: Duration,
    idle_timeout: Duration,
    resolver: GuardedResolver,
    extra_roots: Vec<Vec<u8>>,
    proxy: Option<String>,
}

impl std::fmt::Debug for HttpSenderBuilder {
    // The added roots by number: their bytes say nothing to a reader. The proxy URL may hold
    // credentials, so only whether there is one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSenderBuilder")
            .field("timeout", &self.timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("resolver", &self.resolver)
            .field("extra_roots", &self.extra_roots.len())
            .field("proxy", &self.proxy.is_some())
            .finish()
    }
}

impl HttpSender {
    /// A sender with the defaults: 15 s time limit, SSRF guard on, no proxy.
    pub fn new() -> Result<Self, HttpSenderError> {
        Self::builder().build()
    }

    /// Starts configuring a sender.
    pub fn builder() -> HttpSenderBuilder {
        HttpSenderBuilder {
            timeout: DEFAULT_ATTEMPT_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            resolver: GuardedResolver::new(),
            extra_roots: Vec::new(),
            proxy: None,
        }
    }
}

impl HttpSenderBuilder {
    /// The time limit for one attempt, connection to last byte read (default
    /// [`DEFAULT_ATTEMPT_TIMEOUT`], 15 s). [`build`](Self::build) refuses zero and anything
    /// over [`MAX_ATTEMPT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long an idle kept connection stays open (default [`DEFAULT_IDLE_TIMEOUT`], 50 s).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// Allows delivery to loopback and private addresses. For development and tests only:
    /// with it, a course creator's URL can reach the platform's internal network.
    pub fn allow_private_networks(mut self, allow: bool) -> Self {
        self.resolver = self.resolver.allow_private_networks(allow);
        self
    }

    /// Resolves `host` to `addresses` instead of asking DNS. The SSRF guard still checks
    /// them, so this also tests what happens when a public-looking name points inside.
    pub fn resolve(mut self, host: &str, addresses: &[IpAddr]) -> Self {
        self.resolver = self.resolver.resolve_to(host, addresses);
        self
    }

    /// Also trusts this root certificate (DER), besides the Mozilla roots: for endpoints
    /// behind a private certificate authority. A certificate that cannot be read fails
    /// [`build`](Self::build).
    pub fn add_root_certificate(mut self, der: &[u8]) -> Self {
        self.extra_roots.push(der.to_vec());
        self
    }

    /// Sends every delivery through this egress proxy (`http://`, `https://` or `socks5://`
    /// URL; off by default).
    ///
    /// The proxy then resolves endpoint names, so the crate can no longer check where a name
    /// points: **the proxy must refuse non-global addresses itself**, as Stripe's Smokescreen
    /// does. The crate still refuses URLs whose host is a non-global IP literal.
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = Some(url.into());
        self
    }

    /// Builds the sender.
    pub fn build(self) -> Result<HttpSender, HttpSenderError> {
        if self.timeout.is_zero() || self.timeout > MAX_ATTEMPT_TIMEOUT {
            return Err(HttpSenderError::InvalidTimeout {
                timeout: self.timeout,
            });
        }
        let allow_private_networks = self.resolver.allows_private_networks();
        let mut client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(&self.extra_roots)?)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .pool_idle_timeout(self.idle_timeout)
            .user_agent(super::USER_AGENT)
            .tcp_nodelay(true);
        client = match self.proxy {
            Some(url) => {
                let proxy = reqwest::Proxy::all(url.as_str()).map_err(HttpSenderError::Proxy)?;
                client.proxy(proxy)
            }
            // Names are resolved here only without a proxy: with one, the proxy resolves them.
            None => client.no_proxy().dns_resolver(Arc::new(self.resolver)),
        };
        let client = client
            .build()
            .map_err(|e| HttpSenderError::Client(Box::new(e)))?;
        Ok(HttpSender {
            client,
            timeout: self.timeout,
            allow_private_networks,
            parsed_urls: Arc::default(),
        })
    }
}

/// rustls with its default (aws-lc-rs) provider, the Mozilla roots and `extra_roots`.
fn tls_config(extra_roots: &[Vec<u8>]) -> Result<rustls::ClientConfig, HttpSenderError> {
    let mut roots =
        rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for (index, der) in extra_roots.iter().enumerate() {
        roots
            .add(rustls::pki_types::CertificateDer::from(der.clone()))
            .map_err(|source| HttpSenderError::RootCertificate { index, source })?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpSenderError::Client(Box::new(e)))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[async_trait]
impl Sender for HttpSender {
    async fn send(&self, request: DeliveryRequest<'_>) -> SendOutcome {
        let started_at = Utc::now();
        let start = tokio::time::Instant::now();
        let result = self.attempt(request).await;
        SendOutcome {
            started_at,
            duration: start.elapsed(),
            result,
        }
    }
}

impl HttpSender {
    /// `url` parsed, from the cache when it was parsed before.
    fn parse_url(&self, url: &str) -> Result<reqwest::Url, String> {
        let mut cache = self
            .parsed_urls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(parsed) = cache.get(url) {
            return Ok(parsed.clone());
        }
        let parsed = reqwest::Url::parse(url).map_err(|error| format!("bad URL: {error}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "bad URL: the scheme {} is not http or https",
                parsed.scheme()
            ));
        }
        if cache.len() >= PARSED_URLS {
            cache.clear();
        }
        cache.insert(url.to_owned(), parsed.clone());
        Ok(parsed)
    }

    async fn attempt(&self, request: DeliveryRequest<'_>) -> SendResult {
        let url = match self.parse_url(request.url) {
            Ok(url) => url,
            Err(message) => return failed(TransportErrorKind::Other, message),
        };
        // IP literals (normalised by the URL parser: `0x7f.1` is `127.0.0.1` by now) never
        // reach the resolver, so they are checked here.
        let literal = match url.host() {
            Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            _ => None,
        };
        if let Some(address) =
            literal.filter(|a| !self.allow_private_networks && !is_global_address(*a))
        {
            return failed(
                TransportErrorKind::BlockedAddress,
                format!("{address} is not a public address; delivery refused (SSRF guard)"),
            );
        }
        // The request is made whole, rather than through a builder that would copy the
        // headers into a map of its own.
        let post = || {
            let mut post = reqwest::Request::new(reqwest::Method::POST, url.clone());
            *post.headers_mut() = request.headers();
            *post.body_mut() = Some(request.body.to_vec().into());
            self.client.execute(post)
        };
        // A kept connection the server closed just as this request went out shows as a
        // connection closed before any answer: then the request goes once more, which takes a
        // new connection. (At worst the server got it twice, which at-least-once allows.)
        let sent = match post().await {
            Err(error) if closed_before_answering(&error) => post().await,
            sent => sent,
        };
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => return self.transport_failure(&error),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, Utc::now()));
        // A body that is too slow keeps what arrived within the time limit, and the status.
        let mut snippet = Vec::new();
        let mut read = 0;
        while read <= DRAIN_LIMIT {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    read += chunk.len();
                    let room = RESPONSE_SNIPPET_LIMIT.saturating_sub(snippet.len());
                    snippet.extend_from_slice(&chunk[..room.min(chunk.len())]);
                }
                Ok(None) | Err(_) => break,
            }
        }
        SendResult::Response {
            status,
            snippet: String::from_utf8(snippet)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            retry_after,
        }
    }

    /// The kind and description of a request that got no answer.
    fn transport_failure(&self, error: &reqwest::Error) -> SendResult {
        if error.is_timeout() {
            return failed(
                TransportErrorKind::Timeout,
                format!("no answer within {:?}", self.timeout),
            );
        }
        failed(classify(error), error_chain(error))
    }
}

/// What kind of transport failure `error` is, from the errors in its chain.
fn classify(error: &reqwest::Error) -> TransportErrorKind {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = next {
        if let Some(resolve) = current.downcast_ref::<super::resolver::ResolveError>() {
            return resolve.kind();
        }
        if current.downcast_ref::<rustls::Error>().is_some() {
            return TransportErrorKind::Tls;
        }
        // An `io::Error`'s `source` skips the error it wraps (TLS failures arrive wrapped in
        // two of them): look inside instead.
        next = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as _),
            None => current.source(),
        };
    }
    if error.is_connect() {
        TransportErrorKind::Connect
    } else {
        TransportErrorKind::Other
    }
}

/// Whether the connection closed before any answer to the request arrived.
fn closed_before_answering(error: &reqwest::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = next {
        if current
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_incomplete_message)
        {
            return true;
        }
        next = current.source();
    }
    false
}

fn failed(kind: TransportErrorKind, message: String) -> SendResult {
    SendResult::Failed { kind, message }
}
