//! `HttpSender` against servers that attack it: answers smuggled ahead of a request, sockets
//! left idle, lying lengths, early refusals, echoed secrets, and absurd settings. Each test is
//! a finding of a hostile-server run against an earlier, hand-written client.

mod raw_server;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fermion_webhooks::sender::{HttpSenderError, SendResult};
use fermion_webhooks::store::{AttemptOutcome, TransportErrorKind};
use fermion_webhooks::{HttpSender, WebhookSecret};
use raw_server::{listen, loopback_sender, read_request, send, test_ca, tls_acceptor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn status(result: &SendResult) -> Option<u16> {
    match result {
        SendResult::Response { status, .. } => Some(*status),
        SendResult::Failed { .. } => None,
    }
}

#[tokio::test]
async fn an_answer_smuggled_after_a_long_body_over_tls_is_never_taken_for_the_next_delivery() {
    // The first request on every connection gets a 503 whose long body is followed, in the
    // same TLS record, by a second complete "200 OK": an answer to a request not yet sent.
    // Every later request is really answered 500.
    let acceptor = tls_acceptor();
    let (address, _) = listen(move |stream| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(mut tls) = acceptor.accept(stream).await else {
                return;
            };
            let mut first = true;
            while read_request(&mut tls).await.is_some() {
                let answer = if first {
                    let body = "x".repeat(3000);
                    format!(
                        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: {}\r\n\r\n{body}\
                         HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
                        body.len()
                    )
                } else {
                    "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\nreal".into()
                };
                first = false;
                if tls.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    let sender = HttpSender::builder()
        .allow_private_networks(true)
        .add_root_certificate(&test_ca())
        .build()
        .unwrap();
    let url = format!("https://{address}/hooks");
    assert_eq!(status(&send(&sender, &url).await), Some(503));
    for _ in 0..3 {
        let retry = send(&sender, &url).await;
        assert_ne!(
            status(&retry),
            Some(200),
            "a smuggled answer was taken: {retry:?}"
        );
    }
}

#[tokio::test]
async fn idle_kept_connections_to_many_origins_are_closed_once_idle_past_the_limit() {
    const ORIGINS: usize = 40;
    let closed = Arc::new(AtomicUsize::new(0));
    let mut urls = Vec::new();
    for _ in 0..ORIGINS {
        let closed = closed.clone();
        let (address, _) = listen(move |mut stream| {
            let closed = closed.clone();
            async move {
                while read_request(&mut stream).await.is_some() {
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if stream.write_all(ok).await.is_err() {
                        break;
                    }
                }
                closed.fetch_add(1, Ordering::SeqCst);
            }
        })
        .await;
        urls.push(format!("http://{address}/"));
    }
    let sender = HttpSender::builder()
        .allow_private_networks(true)
        .idle_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    for url in &urls {
        assert_eq!(status(&send(&sender, url).await), Some(200));
    }
    assert!(closed.load(Ordering::SeqCst) < ORIGINS, "kept while fresh");
    // No further request is made: only the pool's own timer can close them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while closed.load(Ordering::SeqCst) < ORIGINS && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(closed.load(Ordering::SeqCst), ORIGINS);
    drop(sender);
}

#[tokio::test]
async fn an_answer_with_broken_framing_is_never_a_delivery() {
    for answer in [
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok!",
        "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\nok",
        "HTTP/1.1 200 OK\r\ncontent-length: 18446744073709551616\r\n\r\nok",
        "HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nok",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nfffffffffffffffffffff\r\nok\r\n0\r\n\r\n",
    ] {
        let (address, _) = listen(move |mut stream| async move {
            if read_request(&mut stream).await.is_some() {
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        })
        .await;
        let result = send(&loopback_sender(), &format!("http://{address}/")).await;
        let delivered = matches!(result, SendResult::Response { status: 200, ref snippet, .. } if snippet == "ok");
        assert!(!delivered, "{answer:?} was taken as a delivery: {result:?}");
    }
}

#[tokio::test]
async fn chunked_framing_wins_over_a_content_length_beside_it() {
    let answer = "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\ncontent-length: 2\r\n\r\n\
                  6\r\nchunks\r\n0\r\n\r\n";
    let (address, _) = listen(move |mut stream| async move {
        if read_request(&mut stream).await.is_some() {
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    })
    .await;
    let result = send(&loopback_sender(), &format!("http://{address}/")).await;
    // Framed by the content-length, the snippet would be "6\r".
    assert!(
        matches!(&result, SendResult::Response { snippet, .. } if snippet == "chunks"),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_413_sent_before_reading_a_large_body_is_recorded_as_the_answer() {
    let (address, _) = listen(|mut stream| async move {
        let mut head = vec![0u8; 4096];
        let _ = stream.read(&mut head).await;
        let _ = stream
            .write_all(b"HTTP/1.1 413 Payload Too Large\r\nconnection: close\r\ncontent-length: 8\r\n\r\ntoo big!")
            .await;
        // Read a little more, as a server draining briefly before it closes would.
        let _ = tokio::time::timeout(Duration::from_millis(50), stream.read(&mut head)).await;
    })
    .await;
    let secret = WebhookSecret::new("s3cr3t").unwrap();
    let body = vec![b'x'; 16 * 1024 * 1024];
    let outcome = fermion_webhooks::Sender::send(
        &loopback_sender(),
        fermion_webhooks::sender::DeliveryRequest::new(
            &format!("http://{address}/"),
            &secret,
            &body,
            "e1",
        ),
    )
    .await;
    assert_eq!(outcome.status(), Some(413), "{:?}", outcome.result);
}

#[tokio::test]
async fn a_secret_echoed_across_the_snippet_cut_leaves_no_prefix_in_the_log() {
    let secret = "echoed-secret-value-1234";
    let (address, _) = listen(move |mut stream| async move {
        if read_request(&mut stream).await.is_some() {
            // The body puts the secret across the 4 KiB cut: the snippet ends in "echoed-se".
            let body = format!("{}{secret}", "x".repeat(4096 - 9));
            let answer = format!(
                "HTTP/1.1 500 Internal Server Error\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    })
    .await;
    let (dispatcher, store) = support_dispatcher(format!("http://{address}/"), secret).await;
    let (_, event) =
        support::emit_until_final(&dispatcher, fermion_webhooks::EventKind::PaidCourseSale).await;
    let AttemptOutcome::Response { snippet, .. } = &event.deliveries[0].attempts[0].outcome else {
        panic!("expected an answer: {event:?}");
    };
    assert!(snippet.ends_with("<redacted>"), "{snippet}");
    assert!(!snippet.contains("echoed-se"), "{snippet}");
    drop(store);
}

async fn support_dispatcher(
    url: String,
    secret: &str,
) -> (
    fermion_webhooks::Dispatcher,
    Arc<fermion_webhooks::MemoryLogStore>,
) {
    let store = Arc::new(fermion_webhooks::MemoryLogStore::new());
    let endpoint =
        fermion_webhooks::Endpoint::new("e", url, WebhookSecret::new(secret).unwrap()).unwrap();
    let mut config = fermion_webhooks::DispatchConfig::default();
    config.retry = fermion_webhooks::RetrySchedule::fixed([]);
    let dispatcher = fermion_webhooks::Dispatcher::start_with(
        store.clone(),
        Arc::new(loopback_sender()),
        vec![endpoint],
        config,
        Arc::new(fermion_webhooks::clock::SystemClock),
    )
    .unwrap();
    (dispatcher, store)
}

#[test]
fn an_absurd_time_limit_is_refused_when_the_sender_is_built() {
    for timeout in [
        Duration::MAX,
        Duration::ZERO,
        Duration::from_secs(2 * 60 * 60),
    ] {
        let error = HttpSender::builder().timeout(timeout).build().unwrap_err();
        assert!(
            matches!(error, HttpSenderError::InvalidTimeout { .. }),
            "{error:?}"
        );
    }
}

#[tokio::test]
async fn ip_literals_in_the_new_special_purpose_ranges_are_refused() {
    let sender = HttpSender::new().unwrap();
    for url in [
        "http://[64:ff9b:1::a00:1]/",
        "http://[3fff::1]/",
        "http://0x7f.1/",
    ] {
        match send(&sender, url).await {
            SendResult::Failed { kind, .. } => {
                assert_eq!(kind, TransportErrorKind::BlockedAddress, "{url}")
            }
            other => panic!("{url} was not refused: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_name_resolving_inside_is_refused_and_so_are_its_kept_connections() {
    let (address, connections) = listen(|mut stream| async move {
        while read_request(&mut stream).await.is_some() {
            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
            if stream.write_all(ok).await.is_err() {
                return;
            }
        }
    })
    .await;
    let sender = HttpSender::builder()
        .resolve("hooks.example.com", &[address.ip()])
        .build()
        .unwrap();
    let url = format!("http://hooks.example.com:{}/", address.port());
    match send(&sender, &url).await {
        SendResult::Failed { kind, message } => {
            assert_eq!(kind, TransportErrorKind::BlockedAddress);
            assert!(message.contains("hooks.example.com"), "{message}");
        }
        other => panic!("not refused: {other:?}"),
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_proxy_carries_the_delivery_and_literal_private_targets_are_still_refused() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = seen.clone();
    let (proxy, _) = listen(move |mut stream| {
        let recorded = recorded.clone();
        async move {
            if let Some(request) = read_request(&mut stream).await {
                recorded.lock().unwrap().push(request);
                let ok = b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\nok";
                let _ = stream.write_all(ok).await;
            }
        }
    })
    .await;
    let sender = HttpSender::builder()
        .proxy(format!("http://{proxy}"))
        .build()
        .unwrap();
    // The name is never resolved here: the proxy gets the whole URL.
    let result = send(&sender, "http://hooks.fermion-test.invalid/in").await;
    assert_eq!(status(&result), Some(202), "{result:?}");
    let request = String::from_utf8(seen.lock().unwrap()[0].clone()).unwrap();
    assert!(
        request.starts_with("POST http://hooks.fermion-test.invalid/in HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request.contains("x-fermion-webhook-secret: wire-secret"),
        "{request}"
    );
    match send(&sender, "http://10.0.0.5/in").await {
        SendResult::Failed { kind, .. } => assert_eq!(kind, TransportErrorKind::BlockedAddress),
        other => panic!("not refused: {other:?}"),
    }
    assert_eq!(seen.lock().unwrap().len(), 1);
}
