//! Raw servers on 127.0.0.1 for `HttpSender` tests: they answer exactly the bytes a test
//! writes, including answers no well-behaved server would give.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fermion_webhooks::sender::{DeliveryRequest, SendResult};
use fermion_webhooks::{HttpSender, Sender, WebhookSecret};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};

/// Reads one request (head and `content-length` body); `None` once the client closed.
pub async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while data.len() < end + 4 + length {
                let read = stream.read(&mut chunk).await.ok()?;
                if read == 0 {
                    return None;
                }
                data.extend_from_slice(&chunk[..read]);
            }
            return Some(data);
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        data.extend_from_slice(&chunk[..read]);
    }
}

/// Listens on 127.0.0.1 and serves each connection with `serve`, on its own task. Returns the
/// address and how many connections were accepted.
pub async fn listen<F, Fut>(serve: F) -> (std::net::SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream));
        }
    });
    (address, connections)
}

pub async fn send(sender: &HttpSender, url: &str) -> SendResult {
    let secret = WebhookSecret::new("wire-secret").unwrap();
    sender
        .send(DeliveryRequest::new(
            url,
            &secret,
            br#"{"eventUniqueId":"e1"}"#,
            "e1",
        ))
        .await
        .result
}

pub fn loopback_sender() -> HttpSender {
    HttpSender::builder()
        .allow_private_networks(true)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// A TLS acceptor for 127.0.0.1 with the test CA's certificate (`tests/fixtures/tls`).
pub fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/");
    let cert = std::fs::read(format!("{fixtures}server.der")).unwrap();
    let key = std::fs::read(format!("{fixtures}server.key.der")).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// The test CA's certificate (DER), which signed the TLS servers' certificate.
pub fn test_ca() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tls/ca.der"
    ))
    .unwrap()
}
