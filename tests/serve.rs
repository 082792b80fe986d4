//! `receive::serve_until` on 127.0.0.1: a shutdown lets the request being answered finish,
//! closes idle connections at once, and accepts nothing more.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use fermion_webhooks::receive::{ServeLimits, serve_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_finishes_the_request_in_progress_closes_idle_connections_and_stops() {
    let app = Router::new().route(
        "/slow",
        post(|| async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            "done"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_until(listener, app, ServeLimits::default(), async {
        let _ = stopped.await;
    }));

    // An idle connection, which the 10 s header timeout alone would hold open.
    let _idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let in_flight = tokio::spawn(client.post(format!("http://{addr}/slow")).send());
    tokio::time::sleep(Duration::from_millis(150)).await;

    let asked = Instant::now();
    stop.send(()).unwrap();
    let answer = in_flight
        .await
        .unwrap()
        .expect("the request in progress is answered");
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(answer.text().await.unwrap(), "done");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve_until returns once every connection is closed, idle ones at once")
        .unwrap();
    assert!(asked.elapsed() < Duration::from_secs(5));
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "nothing is accepted after the shutdown"
    );
}
