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
    /// Connections served at once (default 512). Past it, the oldest connection with no
    /// request in progress (still sending its head, or idle) is closed to let a new one in;
    /// when every connection is in the middle of a request, new ones wait in the kernel's
    /// queue, unaccepted. A connection answering a request is never cut for another. Keep it
    /// well under the process's descriptor limit (`ulimit -n`).
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
    serve_until(listener, app, limits, std::future::pending()).await;
}

/// [`serve`] until `shutdown` completes (Ctrl-C, say), then shut down gracefully: accept no
/// more connections, let each finish the request it is answering (within the request
/// timeout), close idle ones, and return once every connection is closed.
pub async fn serve_until<S>(
    listener: tokio::net::TcpListener,
    app: S,
    limits: ServeLimits,
    shutdown: impl std::future::Future<Output = ()>,
) where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let mut shutdown = std::pin::pin!(shutdown);
    let (stopping, stop) = tokio::sync::watch::channel(false);
    let max_connections = limits.max_connections.max(1);
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let open = Arc::new(OpenConnections::default());
    let mut relaxed = hyper::server::conn::http1::Builder::new();
    relaxed
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut pressed = relaxed.clone();
    pressed.header_read_timeout(limits.header_timeout.min(Duration::from_secs(2)));
    loop {
        let next = async {
            // A slot before the accept. When none is free, the oldest connection not in the
            // middle of a request (a slow head, an idle keep-alive) is closed to make room, so
            // accepting goes on and the kernel's queue drains; when every connection is busy,
            // this waits.
            let slot = match slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    open.close_oldest_idle();
                    slots.clone().acquire_owned().await.ok()?
                }
            };
            match listener.accept().await {
                Ok((stream, _)) => Some(Some((slot, stream))),
                Err(error) => {
                    // Out of file descriptors, say: wait a moment rather than spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Some(None)
                }
            }
        };
        let (slot, stream) = tokio::select! {
            () = shutdown.as_mut() => break,
            next = next => match next {
                Some(Some(accepted)) => accepted,
                Some(None) => continue,
                None => break,
            },
        };
        let builder = if slots.available_permits() < max_connections / 4 {
            &pressed
        } else {
            &relaxed
        };
        let connection = open.track(max_connections);
        let service = {
            let (app, connection) = (app.clone(), connection.clone());
            let request_timeout = limits.request_timeout;
            hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                let mut app = app.clone();
                let busy = Busy::start(&connection);
                async move {
                    let answered = tokio::time::timeout(request_timeout, async {
                        std::future::poll_fn(|cx| app.poll_ready(cx)).await?;
                        app.call(request.map(Body::new)).await
                    });
                    let response = match answered.await {
                        Ok(Ok(response)) => response,
                        Ok(Err(never)) => match never {},
                        Err(_) => timed_out(),
                    };
                    drop(busy);
                    Ok::<_, Infallible>(response)
                }
            })
        };
        let serving = builder.serve_connection(TokioIo::new(stream), service);
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let mut serving = std::pin::pin!(serving);
            tokio::select! {
                _ = serving.as_mut() => {}
                () = connection.close.notified() => {}
                () = async { drop(stop.wait_for(|stopping| *stopping).await) } => {
                    // Finishes the request in progress, if any, then closes.
                    serving.as_mut().graceful_shutdown();
                    let _ = serving.await;
                }
            }
            drop(slot);
        });
    }
    let _ = stopping.send(true);
    // Every connection holds a slot until it is closed.
    let _ = slots.acquire_many(max_connections as u32).await;
}

/// The connections being served, oldest first, to pick one to close when all slots are taken.
#[derive(Default)]
struct OpenConnections {
    by_age: std::sync::Mutex<std::collections::VecDeque<std::sync::Weak<Connection>>>,
}

#[derive(Default)]
struct Connection {
    /// Requests being answered on it right now.
    requests: std::sync::atomic::AtomicUsize,
    close: tokio::sync::Notify,
}

impl OpenConnections {
    fn track(&self, max_connections: usize) -> Arc<Connection> {
        let connection = Arc::new(Connection::default());
        let mut by_age = self.lock();
        if by_age.len() > 2 * max_connections {
            by_age.retain(|c| c.strong_count() > 0);
        }
        by_age.push_back(Arc::downgrade(&connection));
        connection
    }

    /// Closes the oldest open connection with no request in progress, if there is one.
    fn close_oldest_idle(&self) {
        let mut by_age = self.lock();
        let idle = by_age.iter().position(|c| {
            c.upgrade()
                .is_some_and(|c| c.requests.load(std::sync::atomic::Ordering::SeqCst) == 0)
        });
        if let Some(connection) = idle
            .and_then(|at| by_age.remove(at))
            .and_then(|c| c.upgrade())
        {
            connection.close.notify_one();
        }
        while by_age.front().is_some_and(|c| c.strong_count() == 0) {
            by_age.pop_front();
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::VecDeque<std::sync::Weak<Connection>>> {
        // Every update leaves the queue whole before it could panic.
        self.by_age
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Marks a connection busy while one of its requests is answered.
struct Busy(Arc<Connection>);

impl Busy {
    fn start(connection: &Arc<Connection>) -> Self {
        connection
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(connection.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0
            .requests
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
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
