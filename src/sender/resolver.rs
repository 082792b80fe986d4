//! The name resolver of [`super::HttpSender`]: the SSRF guard for names.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::ssrf::is_global_address;

/// A name that resolved to an address the guard refuses.
#[derive(Debug, thiserror::Error)]
#[error(
    "{host} resolves to {address}, which is not a public address; delivery refused (SSRF guard)"
)]
pub(super) struct BlockedAddress {
    host: String,
    address: IpAddr,
}

/// A name that did not resolve.
#[derive(Debug, thiserror::Error)]
#[error("could not resolve {host}: {reason}")]
pub(super) struct LookupFailed {
    host: String,
    reason: String,
}

/// Resolves names, then refuses the whole name if any address it got is not public (a name
/// with one public and one private address could be steered to the private one).
#[derive(Clone, Debug)]
pub(super) struct GuardedResolver {
    pub(super) allow_private_networks: bool,
    pub(super) overrides: Arc<HashMap<String, Vec<IpAddr>>>,
}

/// Why a name gave no address to connect to.
#[derive(Debug)]
pub(super) enum ResolveError {
    Lookup(LookupFailed),
    Blocked(BlockedAddress),
}

impl GuardedResolver {
    /// The addresses of `host` (a name, lower case, without a trailing dot), all of them
    /// public unless private networks are allowed.
    pub(super) async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let addresses: Vec<IpAddr> = match self.overrides.get(&host) {
            Some(addresses) => addresses.clone(),
            None => tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| {
                    ResolveError::Lookup(LookupFailed {
                        host: host.clone(),
                        reason: e.to_string(),
                    })
                })?
                .map(|socket| socket.ip())
                .collect(),
        };
        if addresses.is_empty() {
            return Err(ResolveError::Lookup(LookupFailed {
                host,
                reason: "no addresses".into(),
            }));
        }
        if let Some(address) = addresses
            .iter()
            .find(|a| !self.allow_private_networks && !is_global_address(**a))
        {
            return Err(ResolveError::Blocked(BlockedAddress {
                host,
                address: *address,
            }));
        }
        Ok(addresses)
    }
}
