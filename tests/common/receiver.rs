//! A real webhook receiver on 127.0.0.1 whose answers each test scripts.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// How to answer the n-th request (counting from 0).
#[derive(Clone, Debug)]
pub enum Reply {
    Status(u16),
    /// A status with extra headers, such as `Retry-After` or `Location`.
    WithHeaders(u16, Vec<(&'static str, String)>),
    /// A status with this body.
    Body(u16, &'static str),
    /// Wait this long, then answer 200.
    Hang(Duration),
    /// Answer 500 with every request header echoed in the body, as a careless debug endpoint
    /// would.
    EchoHeaders,
}

#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
}

type Script = Arc<dyn Fn(usize) -> Reply + Send + Sync>;

pub struct TestReceiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl TestReceiver {
    /// Answers 200 to everything.
    pub async fn ok() -> Self {
        Self::start(|_| Reply::Status(200)).await
    }

    pub async fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Self {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script: Script = Arc::new(script);
        let log = received.clone();
        let app = Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let log = log.clone();
            let script = script.clone();
            async move {
                let index = {
                    let mut log = log.lock().unwrap();
                    log.push(Received {
                        headers,
                        body: body.to_vec(),
                        at: Instant::now(),
                    });
                    log.len() - 1
                };
                let reply = script(index);
                if let Reply::EchoHeaders = reply {
                    let echoed = format!("{:?}", log.lock().unwrap()[index].headers);
                    return (StatusCode::INTERNAL_SERVER_ERROR, echoed).into_response();
                }
                answer(reply).await
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, received }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks/fermion", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn answer(reply: Reply) -> Response {
    match reply {
        Reply::Status(code) => (StatusCode::from_u16(code).unwrap(), "answer body").into_response(),
        Reply::Body(code, body) => (StatusCode::from_u16(code).unwrap(), body).into_response(),
        Reply::WithHeaders(code, headers) => {
            let mut response = (StatusCode::from_u16(code).unwrap(), "").into_response();
            for (name, value) in headers {
                response.headers_mut().insert(name, value.parse().unwrap());
            }
            response
        }
        Reply::EchoHeaders => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Reply::Hang(duration) => {
            tokio::time::sleep(duration).await;
            (StatusCode::OK, "late").into_response()
        }
    }
}
