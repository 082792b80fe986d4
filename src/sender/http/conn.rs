//! Opening a connection to an endpoint: the guarded lookup, TCP, and TLS for `https`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::super::resolver::{GuardedResolver, ResolveError};
use super::Target;
use crate::store::TransportErrorKind;

/// A connection to an endpoint, plain or TLS.
#[derive(Debug)]
pub(super) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Why no connection could be opened: the kind it is recorded as, and what happened.
pub(super) type OpenError = (TransportErrorKind, String);

/// Opens a connection to `target`: its IP literal, or every address its name resolves to
/// (the guard has refused the name if any is private), tried in order.
pub(super) async fn open(
    target: &Target,
    resolver: &GuardedResolver,
    tls: &TlsConnector,
) -> Result<Stream, OpenError> {
    let addresses = match target.literal {
        Some(address) => vec![address],
        None => resolver.resolve(&target.host).await.map_err(|e| match e {
            ResolveError::Lookup(e) => (TransportErrorKind::Dns, e.to_string()),
            ResolveError::Blocked(e) => (TransportErrorKind::BlockedAddress, e.to_string()),
        })?,
    };
    let tcp = connect_any(&addresses, target.port).await.map_err(|e| {
        (
            TransportErrorKind::Connect,
            format!("could not connect to {}: {e}", target.authority),
        )
    })?;
    // Requests are written whole, in one or two writes: Nagle would only delay them.
    let _ = tcp.set_nodelay(true);
    if !target.secure {
        return Ok(Stream::Plain(tcp));
    }
    let name = rustls::pki_types::ServerName::try_from(target.host.clone()).map_err(|e| {
        (
            TransportErrorKind::Tls,
            format!("{} is not a valid TLS server name: {e}", target.host),
        )
    })?;
    let stream = tls.connect(name, tcp).await.map_err(|e| {
        (
            TransportErrorKind::Tls,
            format!("TLS handshake with {} failed: {e}", target.authority),
        )
    })?;
    Ok(Stream::Tls(Box::new(stream)))
}

/// Connects to the first address that accepts, or returns the last failure.
async fn connect_any(addresses: &[IpAddr], port: u16) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for address in addresses {
        match TcpStream::connect(SocketAddr::new(*address, port)).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The TLS client configuration: rustls with ring, the Mozilla roots and `extra_roots` (DER
/// certificates), TLS 1.2 and 1.3. The provider is named rather than taken from the process
/// default, which another crate in the same program may have set, or left ambiguous.
pub(super) fn tls_connector(extra_roots: &[Vec<u8>]) -> Result<TlsConnector, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for der in extra_roots {
        roots.add(rustls::pki_types::CertificateDer::from(der.as_slice()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

impl Stream {
    /// Whether an idle connection can still be used: nothing may arrive on an idle HTTP/1.1
    /// connection, so anything readable (the server closing it, a TLS close alert) means it is
    /// done. Reading here would corrupt a TLS session, but such a connection is dropped anyway.
    pub(super) fn is_reusable(&self) -> bool {
        let tcp = match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref().0,
        };
        let mut byte = [0u8; 1];
        matches!(tcp.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(tcp) => tcp.is_write_vectored(),
            Stream::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
