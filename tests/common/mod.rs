//! A deliberately raw HTTP/1.1 client for tests: it can send headers without a body, trickle
//! bytes, or lie about lengths, which a polished client would not allow.

#![allow(dead_code)] // Each test file uses a different part.

pub mod receiver;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A parsed response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {:?}", self.body))
    }
}

/// A request head: method, path and header lines (no Content-Length is added).
pub fn head(method: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text
}

/// POSTs `body` with a correct Content-Length and the given headers.
pub async fn post_json(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let length = body.len().to_string();
    let mut all = headers.to_vec();
    all.push(("Content-Type", "application/json"));
    all.push(("Content-Length", &length));
    send_raw(addr, head("POST", path, &all).as_bytes(), body).await
}

/// Opens a connection, writes the head and the body in one write, and reads the response.
///
/// One write matters: a server that answers without reading the body (a refused secret) closes
/// with the body unread, and the kernel then resets the connection, which can discard the
/// answer before we read it. Written at once, a small body is in the server's first read.
pub async fn send_raw(addr: SocketAddr, head: &[u8], body: &[u8]) -> HttpResponse {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the test server");
    // The server may answer and close before taking the body; that is what some tests check.
    let _ = stream.write_all(&[head, body].concat()).await;
    read_response(&mut stream).await
}

/// Reads one response until the server closes the connection (all requests say
/// `Connection: close`), failing the test after 10 seconds.
pub async fn read_response(stream: &mut TcpStream) -> HttpResponse {
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buffer = [0u8; 8192];
        loop {
            match stream.read(&mut buffer).await {
                // A reset after the answer still leaves the answer to parse.
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buffer[..n]),
            }
            if complete(&raw) {
                break;
            }
        }
    });
    read.await.expect("the server answered within 10 s");
    parse(&raw)
}

fn split(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((&raw[..end], &raw[end + 4..]))
}

fn complete(raw: &[u8]) -> bool {
    let Some((head, body)) = split(raw) else {
        return false;
    };
    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
    head.lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .is_some_and(|n| body.len() >= n)
}

fn parse(raw: &[u8]) -> HttpResponse {
    let (head, body) = split(raw).unwrap_or_else(|| {
        panic!(
            "incomplete HTTP response: {:?}",
            String::from_utf8_lossy(raw)
        )
    });
    let head = String::from_utf8_lossy(head);
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(body).into_owned(),
    }
}
