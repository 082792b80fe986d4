//! `HttpSender` against raw HTTP/1.1 servers on 127.0.0.1: keep-alive, a kept connection the
//! server closed, chunked and informational responses, and exactly what goes on the wire.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

mod raw_server;

use fermion_webhooks::HttpSender;
use fermion_webhooks::sender::{HttpSenderError, SendResult};
use raw_server::{listen, loopback_sender, read_request, send, test_ca, tls_acceptor};
use tokio::io::AsyncWriteExt;

type Requests = Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

/// A server answering every request on a connection with `answer(request number)`, closing
/// the connection after an answer when `close_after` says so. Counts connections.
async fn server(
    answer: fn(usize) -> &'static [u8],
    close_after: fn(usize) -> bool,
) -> (String, Arc<AtomicUsize>, Requests) {
    let requests: Requests = Arc::default();
    let seen = requests.clone();
    let served = Arc::new(AtomicUsize::new(0));
    let (address, connections) = listen(move |mut stream| {
        let (seen, served) = (seen.clone(), served.clone());
        async move {
            while let Some(request) = read_request(&mut stream).await {
                seen.lock().unwrap().push(request);
                let n = served.fetch_add(1, Ordering::SeqCst);
                if stream.write_all(answer(n)).await.is_err() || close_after(n) {
                    return;
                }
            }
        }
    })
    .await;
    let url = format!("http://{address}/hooks?source=test");
    (url, connections, requests)
}

fn status_and_snippet(result: &SendResult) -> (u16, &str) {
    match result {
        SendResult::Response {
            status, snippet, ..
        } => (*status, snippet.as_str()),
        other => panic!("expected a response, got {other:?}"),
    }
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

#[tokio::test]
async fn deliveries_one_after_another_share_one_kept_connection() {
    let (url, connections, _) = server(|_| OK, |_| false).await;
    let sender = loopback_sender();
    for _ in 0..5 {
        assert_eq!(status_and_snippet(&send(&sender, &url).await), (200, "ok"));
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_kept_connection_the_server_drops_as_the_request_arrives_is_retried_on_a_new_one() {
    // Each connection answers its first request, then drops the next one unanswered: the race
    // of a server closing an idle connection just as a request goes out on it.
    let (address, connections) = listen(|mut stream| async move {
        if read_request(&mut stream).await.is_some() {
            let _ = stream.write_all(OK).await;
            let _ = read_request(&mut stream).await;
        }
    })
    .await;
    let url = format!("http://{address}/");
    let sender = loopback_sender();
    for _ in 0..3 {
        assert_eq!(status_and_snippet(&send(&sender, &url).await), (200, "ok"));
    }
    assert_eq!(connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_kept_connection_the_server_closed_while_idle_is_not_used_again() {
    // Each connection answers one request, then closes its side but keeps reading: a request
    // sent on it after the close is counted, though it can never be answered (the sender would
    // then fall back to a new connection, and the delivery alone would not show the mistake).
    let late = Arc::new(AtomicUsize::new(0));
    let counted = late.clone();
    let (address, connections) = listen(move |mut stream| {
        let late = counted.clone();
        async move {
            if read_request(&mut stream).await.is_some() {
                let _ = stream.write_all(OK).await;
                let _ = stream.shutdown().await;
                if read_request(&mut stream).await.is_some() {
                    late.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    })
    .await;
    let url = format!("http://{address}/");
    let sender = loopback_sender();
    for _ in 0..3 {
        assert_eq!(status_and_snippet(&send(&sender, &url).await), (200, "ok"));
        // Let the close arrive, as it would for a connection idle a while.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(connections.load(Ordering::SeqCst), 3);
    assert_eq!(
        late.load(Ordering::SeqCst),
        0,
        "a closed connection was used again"
    );
}

#[tokio::test]
async fn the_request_is_one_post_with_the_four_headers_and_the_exact_body() {
    let (url, _, requests) = server(|_| OK, |_| false).await;
    send(&loopback_sender(), &url).await;
    let request = requests.lock().unwrap()[0].clone();
    let text = String::from_utf8(request).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    assert_eq!(lines.next(), Some("POST /hooks?source=test HTTP/1.1"));
    let mut headers: Vec<String> = lines.map(|l| l.to_ascii_lowercase()).collect();
    headers.sort();
    let port = url.split(':').nth(2).unwrap().split('/').next().unwrap();
    assert_eq!(
        headers,
        [
            "accept: */*".to_owned(),
            format!("content-length: {}", body.len()),
            "content-type: application/json".to_owned(),
            format!("host: 127.0.0.1:{port}"),
            format!("user-agent: fermion-webhooks/{}", env!("CARGO_PKG_VERSION")),
            "x-fermion-webhook-secret: wire-secret".to_owned(),
        ]
    );
    assert_eq!(body, r#"{"eventUniqueId":"e1"}"#);
}

#[tokio::test]
async fn a_chunked_answer_after_a_100_continue_gives_its_decoded_text_and_keeps_the_connection() {
    let (url, connections, _) = server(
        |_| {
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Service Unavailable\r\nretry-after: 7\r\ntransfer-encoding: chunked\r\n\r\n4\r\nbusy\r\n7\r\n, later\r\n0\r\n\r\n"
        },
        |_| false,
    )
    .await;
    let sender = loopback_sender();
    for _ in 0..2 {
        let result = send(&sender, &url).await;
        assert_eq!(status_and_snippet(&result), (503, "busy, later"));
        let SendResult::Response { retry_after, .. } = result else {
            unreachable!()
        };
        assert_eq!(retry_after, Some(Duration::from_secs(7)));
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_answer_that_says_close_or_has_no_length_is_not_kept() {
    let (url, connections, _) = server(
        |n| {
            if n % 2 == 0 {
                b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"
            } else {
                b"HTTP/1.1 200 OK\r\n\r\nok"
            }
        },
        // After "close" the server leaves the connection open, so a client that kept it
        // would be answered on it; a body without a length ends only when the server closes.
        |n| n % 2 == 1,
    )
    .await;
    let sender = loopback_sender();
    for _ in 0..4 {
        assert_eq!(status_and_snippet(&send(&sender, &url).await), (200, "ok"));
    }
    assert_eq!(connections.load(Ordering::SeqCst), 4);
}

/// A TLS server answering every request on a connection with `OK`. Counts connections.
async fn tls_server() -> (String, Arc<AtomicUsize>) {
    let acceptor = tls_acceptor();
    let (address, connections) = listen(move |stream| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(mut tls) = acceptor.accept(stream).await else {
                return;
            };
            while read_request(&mut tls).await.is_some() {
                if tls.write_all(OK).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    (format!("https://{address}/hooks"), connections)
}

#[tokio::test]
async fn an_https_endpoint_signed_by_an_added_root_is_delivered_over_one_kept_tls_connection() {
    let (url, connections) = tls_server().await;
    let sender = HttpSender::builder()
        .allow_private_networks(true)
        .add_root_certificate(&test_ca())
        .build()
        .unwrap();
    for _ in 0..3 {
        assert_eq!(status_and_snippet(&send(&sender, &url).await), (200, "ok"));
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_https_endpoint_signed_by_an_unknown_authority_is_a_tls_error() {
    let (url, _) = tls_server().await;
    let result = send(&loopback_sender(), &url).await;
    let SendResult::Failed { kind, message } = &result else {
        panic!("{result:?}");
    };
    assert_eq!(
        *kind,
        fermion_webhooks::store::TransportErrorKind::Tls,
        "{message}"
    );
    assert!(message.contains("certificate"), "{message}");
}

#[test]
fn a_root_certificate_that_cannot_be_read_fails_the_build() {
    let error = HttpSender::builder()
        .add_root_certificate(b"not a certificate")
        .build()
        .unwrap_err();
    assert!(
        matches!(error, HttpSenderError::RootCertificate { index: 0, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("root certificate 0"), "{error}");
}
