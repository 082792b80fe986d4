//! One webhook request and its response over an open connection (HTTP/1.1, keep-alive).
//!
//! Written by hand rather than through a general client: a webhook is always the same `POST`
//! of a small JSON body, and all that is wanted back is the status, `Retry-After` and the first
//! 4 KiB of the body. hyper's pooled client spent about 30,000 instructions a request on
//! loopback (a connection task, channels to it, pool bookkeeping); this takes a few thousand.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, timeout_at};

use super::chunked::Chunked;
use super::conn::Stream;
use super::{AGENT, Target, parse_retry_after};
use crate::store::RESPONSE_SNIPPET_LIMIT;

/// The largest response head read.
const MAX_HEAD: usize = 64 * 1024;
/// The most headers a response may have.
const MAX_HEADERS: usize = 64;
/// A body up to this size is read to its end (past the snippet), so that the connection can
/// carry the next request; a longer one is cut off, with its connection.
const DRAIN_LIMIT: u64 = 64 * 1024;
/// The first read's buffer: a typical response head and a short body, and small enough for the
/// allocator's fast path.
const FIRST_READ: usize = 960;

/// What came back.
#[derive(Debug)]
pub(super) struct Response {
    pub(super) status: u16,
    pub(super) retry_after: Option<Duration>,
    pub(super) snippet: Vec<u8>,
    /// Whether the connection may carry another request.
    pub(super) reusable: bool,
}

/// Why no response was had.
#[derive(Debug)]
pub(super) enum ExchangeError {
    /// The connection failed or closed before any byte of a response arrived.
    NoResponse(io::Error),
    /// The answer is not HTTP/1.x, or breaks off in its head.
    Invalid(String),
    TimedOut,
}

/// Sends the request and reads the status, headers and up to the snippet's worth of body.
/// A body that is too slow keeps what arrived by the deadline, and the status.
pub(super) async fn exchange(
    stream: &mut Stream,
    target: &Target,
    secret: &str,
    body: &[u8],
    deadline: Instant,
) -> Result<Response, ExchangeError> {
    let request = request_bytes(target, secret, body);
    match timeout_at(deadline, write_request(stream, &request)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(ExchangeError::NoResponse(e)),
        Err(_) => return Err(ExchangeError::TimedOut),
    }
    drop(request);
    let mut buf = vec![0u8; FIRST_READ];
    let head = match timeout_at(deadline, read_head(stream, &mut buf)).await {
        Ok(head) => head?,
        Err(_) => return Err(ExchangeError::TimedOut),
    };
    let mut response = Response {
        status: head.status,
        retry_after: head.retry_after,
        snippet: Vec::new(),
        reusable: false,
    };
    // What was read past the head is the body's start; `buf` is then reused for the rest (a
    // buffer in the future itself would make every request's boxed future several KiB).
    let body = Body {
        stream,
        buf: &mut buf,
        leftover: head.len..head.filled,
        snippet: &mut response.snippet,
        deadline,
    };
    let ended = match head.framing {
        Framing::None => head.len == head.filled,
        Framing::Length(length) => body.read_sized(length).await,
        Framing::Chunked => body.read_chunked().await,
        Framing::UntilClose => {
            body.read_until_close().await;
            false
        }
    };
    response.reusable = ended && !head.close;
    Ok(response)
}

/// The request head and body, in one buffer: one write for the usual small body.
fn request_bytes(target: &Target, secret: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(192 + target.path.len() + secret.len() + body.len());
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(target.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(target.host_header.as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: application/json\r\nuser-agent: ");
    out.extend_from_slice(AGENT.as_bytes());
    out.extend_from_slice(b"\r\nx-fermion-webhook-secret: ");
    out.extend_from_slice(secret.as_bytes());
    out.extend_from_slice(b"\r\ncontent-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    out
}

async fn write_request(stream: &mut Stream, request: &[u8]) -> io::Result<()> {
    stream.write_all(request).await?;
    stream.flush().await
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

#[derive(Debug)]
struct Head {
    status: u16,
    retry_after: Option<Duration>,
    framing: Framing,
    close: bool,
    /// The head's length in `buf`, and how much of `buf` holds data.
    len: usize,
    filled: usize,
}

/// Reads until a final response head is complete, skipping informational (1xx) ones.
async fn read_head(stream: &mut Stream, buf: &mut Vec<u8>) -> Result<Head, ExchangeError> {
    let mut filled = 0;
    let mut received = false;
    loop {
        if filled > 0 {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut headers);
            match parsed.parse(&buf[..filled]) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = parsed.code.unwrap_or(0);
                    if (100..200).contains(&status) && status != 101 {
                        buf.copy_within(len..filled, 0);
                        filled -= len;
                        continue;
                    }
                    return Ok(describe(&parsed, len, filled));
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(ExchangeError::Invalid(format!("invalid response: {e}"))),
            }
        }
        if filled == buf.len() {
            if buf.len() >= MAX_HEAD {
                return Err(ExchangeError::Invalid(
                    "the response head is larger than 64 KiB".into(),
                ));
            }
            buf.resize((buf.len() * 4).min(MAX_HEAD), 0);
        }
        match stream.read(&mut buf[filled..]).await {
            Ok(0) if !received => {
                return Err(ExchangeError::NoResponse(
                    io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            Ok(0) => {
                return Err(ExchangeError::Invalid(
                    "the connection closed in the middle of the response head".into(),
                ));
            }
            Ok(read) => {
                filled += read;
                received = true;
            }
            Err(e) if !received => return Err(ExchangeError::NoResponse(e)),
            Err(e) => {
                return Err(ExchangeError::Invalid(format!(
                    "the response head broke off: {e}"
                )));
            }
        }
    }
}

fn describe(parsed: &httparse::Response<'_, '_>, len: usize, filled: usize) -> Head {
    let status = parsed.code.unwrap_or(0);
    let mut retry_after = None;
    let mut length: Option<u64> = None;
    let mut lengths_disagree = false;
    let mut chunked = false;
    let mut close = parsed.version != Some(1);
    for header in parsed.headers.iter() {
        let value = std::str::from_utf8(header.value).unwrap_or("").trim();
        if header.name.eq_ignore_ascii_case("content-length") {
            match (value.parse::<u64>().ok(), length) {
                (Some(new), None) => length = Some(new),
                (Some(new), Some(old)) if new == old => {}
                _ => lengths_disagree = true,
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if header.name.eq_ignore_ascii_case("connection") {
            close |= value
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("close"));
        } else if header.name.eq_ignore_ascii_case("retry-after") {
            retry_after = parse_retry_after(value);
        }
    }
    let framing = if status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else {
        match length {
            Some(length) if !lengths_disagree => Framing::Length(length),
            _ => Framing::UntilClose,
        }
    };
    // A 101 hands the connection to another protocol: never reused.
    close |= status == 101 || lengths_disagree;
    Head {
        status,
        retry_after,
        framing,
        close,
        len,
        filled,
    }
}

/// A response body being read: its first bytes are `buf[leftover]`.
struct Body<'a> {
    stream: &'a mut Stream,
    buf: &'a mut Vec<u8>,
    leftover: std::ops::Range<usize>,
    snippet: &'a mut Vec<u8>,
    deadline: Instant,
}

/// Appends what still fits in the snippet.
fn keep(snippet: &mut Vec<u8>, bytes: &[u8]) {
    let room = RESPONSE_SNIPPET_LIMIT
        .saturating_sub(snippet.len())
        .min(bytes.len());
    snippet.extend_from_slice(&bytes[..room]);
}

impl Body<'_> {
    /// The next bytes, read into `buf`, at most `max`; `None` at the end, on an error or at the
    /// deadline.
    async fn read(&mut self, max: usize) -> Option<usize> {
        let want = max.min(self.buf.len());
        match timeout_at(self.deadline, self.stream.read(&mut self.buf[..want])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => None,
            Ok(Ok(read)) => Some(read),
        }
    }

    /// Reads a body of `length` bytes; returns whether it was read to its end.
    async fn read_sized(mut self, length: u64) -> bool {
        let leftover = &self.buf[self.leftover.clone()];
        if leftover.len() as u64 > length {
            // More than the body: the server is out of step.
            keep(self.snippet, &leftover[..length as usize]);
            return false;
        }
        keep(self.snippet, leftover);
        let left = length - leftover.len() as u64;
        // Past the snippet, a long body is not worth reading: its connection is dropped.
        let wanted = if length <= DRAIN_LIMIT {
            left
        } else {
            left.min(RESPONSE_SNIPPET_LIMIT.saturating_sub(self.snippet.len()) as u64)
        };
        let mut read_so_far = 0;
        while read_so_far < wanted {
            let max = usize::try_from(wanted - read_so_far).unwrap_or(usize::MAX);
            let Some(read) = self.read(max).await else {
                return false;
            };
            keep(self.snippet, &self.buf[..read]);
            read_so_far += read as u64;
        }
        read_so_far == left
    }

    /// Reads a chunked body; returns whether it was read to its end.
    async fn read_chunked(mut self) -> bool {
        let mut decoder = Chunked::new();
        let leftover = &self.buf[self.leftover.clone()];
        let mut total = leftover.len() as u64;
        if decoder
            .feed(leftover, self.snippet, RESPONSE_SNIPPET_LIMIT)
            .is_err()
        {
            return false;
        }
        while !decoder.is_done() {
            // Past the snippet and a short drain, the rest is not worth reading.
            if total > DRAIN_LIMIT {
                return false;
            }
            let Some(read) = self.read(usize::MAX).await else {
                return false;
            };
            total += read as u64;
            if decoder
                .feed(&self.buf[..read], self.snippet, RESPONSE_SNIPPET_LIMIT)
                .is_err()
            {
                return false;
            }
        }
        true
    }

    /// Reads a body that ends when the server closes the connection, up to the snippet's
    /// worth.
    async fn read_until_close(mut self) {
        keep(self.snippet, &self.buf[self.leftover.clone()]);
        while self.snippet.len() < RESPONSE_SNIPPET_LIMIT {
            let Some(read) = self.read(RESPONSE_SNIPPET_LIMIT - self.snippet.len()).await else {
                return;
            };
            keep(self.snippet, &self.buf[..read]);
        }
    }
}
