//! `HttpSender`: delivery over HTTP(S) with reqwest, guarded against SSRF.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};

use super::ssrf::is_global_address;
use super::{DeliveryRequest, SendOutcome, SendResult, Sender};
use crate::secret::SECRET_HEADER;
use crate::store::{RESPONSE_SNIPPET_LIMIT, TransportErrorKind};

/// The default time limit for one attempt, connection to last byte read.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why an [`HttpSender`] could not be built.
#[derive(Debug, thiserror::Error)]
#[error("could not build the HTTP client: {0}")]
pub struct HttpSenderError(#[source] reqwest::Error);

/// Delivers webhooks over HTTP(S): `POST` with `Content-Type: application/json`,
/// `X-Fermion-Webhook-Secret` and `User-Agent: fermion-webhooks/<version>`.
///
/// - One shared connection pool; rustls for TLS; system proxies ignored.
/// - Redirects are not followed: a 3xx answer is recorded as a failed attempt.
/// - A 15 s timeout by default; only the first 4 KiB of a response body is read.
/// - SSRF guard, on by default: no delivery to loopback, private, link-local (including
///   `169.254.169.254`), CGNAT, unique-local, multicast, documentation or other non-global
///   addresses, whether the URL holds an IP literal in any spelling (`http://2130706433/`,
///   `[::ffff:127.0.0.1]`) or a name that resolves to one. Every resolved address is checked.
///   Such a delivery fails with [`TransportErrorKind::BlockedAddress`].
///   [`allow_private_networks`](HttpSenderBuilder::allow_private_networks) opts out, for
///   development and tests.
#[derive(Clone, Debug)]
pub struct HttpSender {
    client: reqwest::Client,
    allow_private_networks: bool,
    /// Endpoint URLs already parsed: parsing one costs as much CPU as a third of a loopback
    /// request, and a platform sends to the same few URLs over and over.
    parsed_urls: Arc<std::sync::Mutex<HashMap<String, reqwest::Url>>>,
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
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .user_agent(concat!("fermion-webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(resolver))
            .build()
            .map_err(HttpSenderError)?;
        Ok(HttpSender {
            client,
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
    /// `url` parsed, from the cache when it was parsed before.
    fn parse_url(&self, url: &str) -> Result<reqwest::Url, url::ParseError> {
        let mut cache = self
            .parsed_urls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(parsed) = cache.get(url) {
            return Ok(parsed.clone());
        }
        let parsed = reqwest::Url::parse(url)?;
        if cache.len() >= PARSED_URLS {
            cache.clear();
        }
        cache.insert(url.to_owned(), parsed.clone());
        Ok(parsed)
    }

    async fn attempt(&self, request: DeliveryRequest<'_>) -> SendResult {
        let url = match self.parse_url(request.url) {
            Ok(url) => url,
            Err(error) => return failed(TransportErrorKind::Other, format!("bad URL: {error}")),
        };
        // IP literals never reach the resolver, so they are checked here. The URL parser has
        // already turned `2130706433`, `0x7f.1` and `0177.0.0.1` into 127.0.0.1.
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
        let secret = match HeaderValue::from_str(request.secret.expose_secret()) {
            Ok(mut value) => {
                value.set_sensitive(true);
                value
            }
            Err(_) => {
                return failed(
                    TransportErrorKind::Other,
                    "the secret is not a valid header value".into(),
                );
            }
        };
        let sent = self
            .client
            .post(url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(SECRET_HEADER, secret)
            .body(request.body.to_vec())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => return classify(&error),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_retry_after);
        // Read at most the snippet; a huge or endless body is never buffered.
        let mut snippet = Vec::new();
        while snippet.len() < RESPONSE_SNIPPET_LIMIT {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = RESPONSE_SNIPPET_LIMIT - snippet.len();
                    snippet.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                // The status is what counts; a body cut short still leaves a useful snippet.
                Ok(None) | Err(_) => break,
            }
        }
        SendResult::Response {
            status,
            snippet: String::from_utf8_lossy(&snippet).into_owned(),
            retry_after,
        }
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

/// Sorts a reqwest failure into a transport error kind, by what caused it.
fn classify(error: &reqwest::Error) -> SendResult {
    let mut cause: Option<&(dyn StdError + 'static)> = error.source();
    while let Some(current) = cause {
        if let Some(blocked) = current.downcast_ref::<BlockedAddress>() {
            return failed(TransportErrorKind::BlockedAddress, blocked.to_string());
        }
        if let Some(lookup) = current.downcast_ref::<LookupFailed>() {
            return failed(TransportErrorKind::Dns, lookup.to_string());
        }
        if current.downcast_ref::<rustls::Error>().is_some() {
            return failed(TransportErrorKind::Tls, describe(error));
        }
        cause = current.source();
    }
    let kind = if error.is_timeout() {
        TransportErrorKind::Timeout
    } else if error.is_connect() {
        TransportErrorKind::Connect
    } else {
        TransportErrorKind::Other
    };
    failed(kind, describe(error))
}

/// The error and its causes on one line. reqwest's messages hold the URL, never headers, so
/// the secret cannot appear.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        text.push_str(": ");
        text.push_str(&current.to_string());
        cause = current.source();
    }
    text
}

#[derive(Debug, thiserror::Error)]
#[error(
    "{host} resolves to {address}, which is not a public address; delivery refused (SSRF guard)"
)]
struct BlockedAddress {
    host: String,
    address: IpAddr,
}

#[derive(Debug, thiserror::Error)]
#[error("could not resolve {host}: {reason}")]
struct LookupFailed {
    host: String,
    reason: String,
}

/// Resolves names, then refuses the whole name if any address it got is not public (a name
/// with one public and one private address could be steered to the private one).
#[derive(Debug)]
struct GuardedResolver {
    allow_private_networks: bool,
    overrides: Arc<HashMap<String, Vec<IpAddr>>>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        let allow_private = self.allow_private_networks;
        let overrides = self.overrides.clone();
        Box::pin(async move {
            let addresses: Vec<IpAddr> = match overrides.get(&host) {
                Some(addresses) => addresses.clone(),
                None => tokio::net::lookup_host((host.as_str(), 0))
                    .await
                    .map_err(|e| LookupFailed {
                        host: host.clone(),
                        reason: e.to_string(),
                    })?
                    .map(|socket| socket.ip())
                    .collect(),
            };
            if addresses.is_empty() {
                return Err(Box::new(LookupFailed {
                    host,
                    reason: "no addresses".into(),
                }) as Box<dyn StdError + Send + Sync>);
            }
            if let Some(address) = addresses
                .iter()
                .find(|a| !allow_private && !is_global_address(**a))
            {
                return Err(Box::new(BlockedAddress {
                    host,
                    address: *address,
                }) as Box<dyn StdError + Send + Sync>);
            }
            let sockets: Vec<SocketAddr> = addresses.into_iter().map(|ip| (ip, 0).into()).collect();
            Ok(Box::new(sockets.into_iter()) as Addrs)
        })
    }
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
