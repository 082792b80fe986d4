//! The SSRF guard for names: a reqwest resolver that refuses names pointing inside.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::ssrf::is_global_address;
use crate::store::TransportErrorKind;

/// Resolves names for a [`reqwest::Client`], then refuses the whole name if any address it got
/// is not global (a name with one public and one private address could be steered to the
/// private one). Plug it into your own client to keep the SSRF guard:
///
/// ```
/// use std::sync::Arc;
/// use fermion_webhooks::sender::GuardedResolver;
///
/// let client = reqwest::Client::builder()
///     .dns_resolver(Arc::new(GuardedResolver::new()))
///     .redirect(reqwest::redirect::Policy::none())
///     .no_proxy()
///     .build()
///     .unwrap();
/// # drop(client);
/// ```
///
/// A client's kept connections were all opened to addresses this resolver handed out, so they
/// passed too. IP literals in URLs never reach a resolver: check them with
/// [`is_global_address`](super::is_global_address) before sending (the built-in
/// [`HttpSender`](super::HttpSender) does).
#[derive(Clone, Debug, Default)]
pub struct GuardedResolver {
    allow_private_networks: bool,
    overrides: Arc<HashMap<String, Vec<IpAddr>>>,
}

/// Why a name gave no address to connect to. It reaches callers as a source of the client's
/// connect error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The name did not resolve.
    #[error("could not resolve {host}")]
    Lookup {
        /// The name.
        host: String,
        /// What the system resolver said, when it said anything.
        #[source]
        source: Option<std::io::Error>,
    },
    /// The name resolved to an address the guard refuses.
    #[error(
        "{host} resolves to {address}, which is not a public address; delivery refused (SSRF \
         guard)"
    )]
    Blocked {
        /// The name.
        host: String,
        /// The first address refused.
        address: IpAddr,
    },
}

impl ResolveError {
    /// How a failed attempt records it.
    pub fn kind(&self) -> TransportErrorKind {
        match self {
            ResolveError::Lookup { .. } => TransportErrorKind::Dns,
            ResolveError::Blocked { .. } => TransportErrorKind::BlockedAddress,
        }
    }
}

impl GuardedResolver {
    /// A resolver that asks the system and refuses every non-global address.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allows loopback and private addresses too: for development and tests only.
    pub fn allow_private_networks(mut self, allow: bool) -> Self {
        self.allow_private_networks = allow;
        self
    }

    /// Whether loopback and private addresses are allowed.
    pub fn allows_private_networks(&self) -> bool {
        self.allow_private_networks
    }

    /// Resolves `host` to `addresses` instead of asking the system; the guard still checks
    /// them.
    pub fn resolve_to(mut self, host: &str, addresses: &[IpAddr]) -> Self {
        Arc::make_mut(&mut self.overrides).insert(normalise(host), addresses.to_vec());
        self
    }

    /// The addresses of `host`, all of them global unless private networks are allowed.
    pub async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let host = normalise(host);
        let addresses: Vec<IpAddr> = match self.overrides.get(&host) {
            Some(addresses) => addresses.clone(),
            None => tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|source| ResolveError::Lookup {
                    host: host.clone(),
                    source: Some(source),
                })?
                .map(|socket| socket.ip())
                .collect(),
        };
        if addresses.is_empty() {
            return Err(ResolveError::Lookup { host, source: None });
        }
        if let Some(address) = addresses
            .iter()
            .find(|a| !self.allow_private_networks && !is_global_address(**a))
        {
            return Err(ResolveError::Blocked {
                host,
                address: *address,
            });
        }
        Ok(addresses)
    }
}

fn normalise(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = self.clone();
        Box::pin(async move {
            let addresses = resolver.lookup(name.as_str()).await?;
            let addrs: Addrs = Box::new(
                addresses
                    .into_iter()
                    .map(|address| SocketAddr::new(address, 0)),
            );
            Ok(addrs)
        })
    }
}
