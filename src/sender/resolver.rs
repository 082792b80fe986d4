//! The name resolver of [`super::HttpSender`]: the SSRF guard for names.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;

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

type BoxError = Box<dyn StdError + Send + Sync>;

/// Resolves names, then refuses the whole name if any address it got is not public (a name
/// with one public and one private address could be steered to the private one).
#[derive(Clone, Debug)]
pub(super) struct GuardedResolver {
    pub(super) allow_private_networks: bool,
    pub(super) overrides: Arc<HashMap<String, Vec<IpAddr>>>,
}

impl GuardedResolver {
    async fn resolve(self, host: String) -> Result<std::vec::IntoIter<SocketAddr>, BoxError> {
        let addresses: Vec<IpAddr> = match self.overrides.get(&host) {
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
            }));
        }
        if let Some(address) = addresses
            .iter()
            .find(|a| !self.allow_private_networks && !is_global_address(**a))
        {
            return Err(Box::new(BlockedAddress {
                host,
                address: *address,
            }));
        }
        let sockets: Vec<SocketAddr> = addresses.into_iter().map(|ip| (ip, 0).into()).collect();
        Ok(sockets.into_iter())
    }
}

type Resolving =
    Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, BoxError>> + Send>>;

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        Box::pin(self.clone().resolve(host))
    }
}
