//! A server for a webhook route that faces the internet: one client cannot hold it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum_core::body::Body;
use axum_core::response::{IntoResponse, Response};
use http::{Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tower_service::Service;

/// What one client may hold of a [`serve`]d server.
///
/// `axum::serve` has no header-read timeout, no idle timeout and no cap on connections: one
/// client opening a thousand connections that each send a byte every few seconds uses up the
/// process's file descriptors, and nobody else gets in. These limits stop that.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServeLimits {
    /// Connections served at once (default 512). Past it, new connections wait in the
    /// kernel's queue, unaccepted, so they hold no file descriptor and the accepted ones keep
    /// theirs. Keep it well under the process's descriptor limit (`ulimit -n`).
    pub max_connections: usize,
    /// The whole request head must arrive within this, and a kept-alive connection idle for
    /// this long is closed (default 10 s). While three quarters of the connections are taken,
    /// a new connection has at most 2 s: a real sender sends its head at once.
    pub header_timeout: Duration,
    /// The whole request, body included, must be read and answered within this (default
    /// 30 s); past it the answer is 408.
    pub request_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `app` (an `axum::Router`, or any service of the same shape) on `listener` over
/// HTTP/1.1 with [`ServeLimits`], until the future is dropped.
///
/// ```no_run
/// use axum::{Router, routing::post};
/// use fermion_webhooks::receive::{FermionWebhook, ServeLimits, serve};
/// use fermion_webhooks::{Receiver, WebhookSecret};
///
/// # async fn run() -> std::io::Result<()> {
/// let receiver = Receiver::new(WebhookSecret::new("s3cr3t").unwrap());
/// let app = Router::new()
///     .route("/webhooks/fermion", post(|FermionWebhook(event): FermionWebhook| async move {
///         println!("{}", event.event_unique_id);
///     }))
///     .with_state(receiver);
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8787").await?;
/// serve(listener, app, ServeLimits::default()).await;
/// # Ok(())
/// # }
/// ```
pub async fn serve<S>(listener: tokio::net::TcpListener, app: S, limits: ServeLimits)
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let mut relaxed = hyper::server::conn::http1::Builder::new();
    relaxed
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut pressed = relaxed.clone();
    pressed.header_read_timeout(limits.header_timeout.min(Duration::from_secs(2)));
    loop {
        // A slot first, then the accept: past the cap, connections wait unaccepted.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, say: wait a moment rather than spin.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let builder = if slots.available_permits() < limits.max_connections / 4 {
            &pressed
        } else {
            &relaxed
        };
        let app = app.clone();
        let request_timeout = limits.request_timeout;
        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let mut app = app.clone();
            async move {
                let answered = tokio::time::timeout(request_timeout, async {
                    std::future::poll_fn(|cx| app.poll_ready(cx)).await?;
                    app.call(request.map(Body::new)).await
                });
                Ok::<_, Infallible>(match answered.await {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => timed_out(),
                })
            }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(slot);
        });
    }
}

fn timed_out() -> Response {
    let body = serde_json::json!({ "error": "the request was not received in time" });
    let mut response = (StatusCode::REQUEST_TIMEOUT, body.to_string()).into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
