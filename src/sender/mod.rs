//! Sending one delivery attempt: the pluggable [`Sender`] trait, its HTTP implementation, and
//! the parts a custom sender reuses.

mod http;
mod resolver;
mod ssrf;

use std::time::Duration;

use ::http::{HeaderMap, HeaderValue, header};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::secret::{SECRET_HEADER, WebhookSecret};
use crate::signature::{self, SigningSecret};
use crate::store::{Attempt, AttemptTrigger, RESPONSE_SNIPPET_LIMIT, TransportErrorKind};

pub use self::http::{
    DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_IDLE_TIMEOUT, HttpSender, HttpSenderBuilder, HttpSenderError,
    MAX_ATTEMPT_TIMEOUT,
};
pub use self::resolver::{GuardedResolver, ResolveError};
pub use self::ssrf::is_global_address;
pub use reqwest;

/// What stands in a snippet or message where the secret was.
const REDACTED: &str = "<redacted>";

/// The `User-Agent` every delivery carries: `fermion-webhooks/<version>`.
pub const USER_AGENT: &str = concat!("fermion-webhooks/", env!("CARGO_PKG_VERSION"));

/// One attempt to deliver a body. Build it with [`new`](Self::new), and
/// [`signed`](Self::signed) for an endpoint with Standard Webhooks keys.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct DeliveryRequest<'a> {
    /// Where to POST.
    pub url: &'a str,
    /// The endpoint's secret, for the `X-Fermion-Webhook-Secret` header.
    pub secret: &'a WebhookSecret,
    /// The exact JSON body.
    pub body: &'a [u8],
    /// The event's id (for a sender's own logging, and `webhook-id` when signed).
    pub event_unique_id: &'a str,
    /// The endpoint's [Standard Webhooks](crate::signature) keys; empty for an unsigned
    /// delivery.
    pub signing_secrets: &'a [SigningSecret],
    /// When the attempt is made: `webhook-timestamp` when signed.
    pub attempted_at: DateTime<Utc>,
}

impl<'a> DeliveryRequest<'a> {
    /// An unsigned attempt, made now.
    pub fn new(
        url: &'a str,
        secret: &'a WebhookSecret,
        body: &'a [u8],
        event_unique_id: &'a str,
    ) -> Self {
        Self {
            url,
            secret,
            body,
            event_unique_id,
            signing_secrets: &[],
            attempted_at: Utc::now(),
        }
    }

    /// Signed with `keys` (none: unsigned), as an attempt made at `at`.
    pub fn signed(mut self, keys: &'a [SigningSecret], at: DateTime<Utc>) -> Self {
        self.signing_secrets = keys;
        self.attempted_at = at;
        self
    }

    /// The request headers every delivery carries: `Content-Type: application/json`,
    /// `User-Agent: fermion-webhooks/<version>` and `X-Fermion-Webhook-Secret` (marked
    /// sensitive, so `http`'s and reqwest's `Debug` hide it); and when signed, `webhook-id`
    /// (the event's id, the same on every retry), `webhook-timestamp` (this attempt's time)
    /// and `webhook-signature` (one `v1,` signature per key).
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(6);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        headers.insert(SECRET_HEADER, self.secret.header_value());
        if self.signing_secrets.is_empty() {
            return headers;
        }
        let timestamp = self.attempted_at.timestamp();
        let signature = signature::sign(
            self.signing_secrets,
            self.event_unique_id,
            timestamp,
            self.body,
        );
        headers.insert(signature::TIMESTAMP_HEADER, HeaderValue::from(timestamp));
        // Base64 and `v1,` always make a header value. An event id need only be non-empty, so
        // one that cannot be a header value is left out, and a verifying receiver refuses the
        // delivery as unsigned rather than the sender sending a malformed request.
        let signed = [
            (signature::ID_HEADER, self.event_unique_id),
            (signature::SIGNATURE_HEADER, signature.as_str()),
        ];
        for (name, value) in signed {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(name, value);
            }
        }
        headers
    }
}

/// What one attempt came to. A 4xx or 5xx answer is an outcome like any other, not an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendOutcome {
    /// When the attempt started.
    pub started_at: DateTime<Utc>,
    /// How long it took.
    pub duration: Duration,
    /// The answer, or why there was none.
    pub result: SendResult,
}

/// The answer to an attempt, or why there was none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendResult {
    /// The endpoint answered.
    Response {
        /// The HTTP status.
        status: u16,
        /// The start of the body, at most 4 KiB.
        snippet: String,
        /// The `Retry-After` header, when present and readable.
        retry_after: Option<Duration>,
    },
    /// There was no answer.
    Failed {
        /// What kind of failure.
        kind: TransportErrorKind,
        /// A description (never the secret).
        message: String,
    },
}

impl SendOutcome {
    /// The attempt to record in the log.
    pub fn to_attempt(&self, trigger: AttemptTrigger) -> Attempt {
        self.clone().into_attempt(trigger)
    }

    /// The attempt to record in the log, taking the snippet or message instead of copying it.
    pub fn into_attempt(self, trigger: AttemptTrigger) -> Attempt {
        match self.result {
            SendResult::Response {
                status, snippet, ..
            } => Attempt::response(self.started_at, self.duration, status, snippet, trigger),
            SendResult::Failed { kind, message } => {
                Attempt::transport_error(self.started_at, self.duration, kind, message, trigger)
            }
        }
    }

    /// Replaces every occurrence of `secret` in the snippet or error message with
    /// `<redacted>`, and so does a start of the secret at the very end, where the snippet's
    /// 4 KiB cut may have split a copy of it. An endpoint that echoes request headers thus
    /// cannot put the secret into the log. The dispatcher does this before recording any
    /// attempt. Only the literal secret is found: an echo that encodes it (base64, another
    /// case) is not.
    pub fn redact(&mut self, secret: &WebhookSecret) {
        let value = secret.expose_secret();
        let text = match &mut self.result {
            SendResult::Response { snippet, .. } => snippet,
            SendResult::Failed { message, .. } => message,
        };
        if text.contains(value) {
            *text = text.replace(value, REDACTED);
        }
        // A snippet as long as the cap may have been cut inside a copy of the secret: then
        // the longest start of the secret it ends with goes too, however short, since any
        // prefix narrows a guess. A shorter text ended where the endpoint's answer ended.
        if text.len() + 4 < RESPONSE_SNIPPET_LIMIT {
            return;
        }
        let cut = (1..value.len().min(text.len() + 1))
            .rev()
            .find(|&len| value.is_char_boundary(len) && text.ends_with(&value[..len]));
        if let Some(len) = cut {
            // Room for the marker within the cap, so the recorded snippet still shows it.
            let mut end = (text.len() - len).min(RESPONSE_SNIPPET_LIMIT - REDACTED.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push_str(REDACTED);
        }
    }

    /// The HTTP status, if there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self.result {
            SendResult::Response { status, .. } => Some(status),
            SendResult::Failed { .. } => None,
        }
    }
}

/// Delivers one attempt. Pluggable: [`HttpSender`] is the real one; tests, other transports
/// and platforms with their own HTTP client implement their own. Object-safe, so a dispatcher
/// holds an `Arc<dyn Sender>`.
///
/// # Contract
///
/// An implementation of `send`:
/// - sends **one** `POST` of exactly `request.body` to `request.url`, with the headers of
///   [`DeliveryRequest::headers`] (`Content-Type`, `User-Agent`, `X-Fermion-Webhook-Secret`);
/// - does **not follow redirects**: a 3xx is the attempt's answer, which the dispatcher records
///   as a failure (a redirect could lead past the SSRF guard, and the secret with it);
/// - keeps to a **time limit** from connecting to the last byte read, and reports running out
///   as [`TransportErrorKind::Timeout`];
/// - keeps at most the first [`RESPONSE_SNIPPET_LIMIT`]
///   bytes of the answer's body as the snippet, and stops reading a long body early;
/// - reads `Retry-After` (with [`parse_retry_after`]) so the dispatcher can honour it;
/// - refuses non-global addresses unless told otherwise: IP literals with
///   [`is_global_address`], names through a [`GuardedResolver`];
/// - **never panics and never retries**: every failure is a [`SendResult::Failed`] with its
///   [`TransportErrorKind`] (retries are the dispatcher's job), and no message holds the secret.
///
/// # Example: a sender on your own reqwest client
///
/// For a client with your own settings (here an extra header), keeping the guard:
///
/// ```
/// use std::sync::Arc;
/// use fermion_webhooks::sender::{
///     DeliveryRequest, GuardedResolver, SendOutcome, SendResult, Sender, is_global_address,
///     parse_retry_after, reqwest,
/// };
/// use fermion_webhooks::store::TransportErrorKind;
///
/// #[derive(Debug)]
/// struct MySender(reqwest::Client);
///
/// impl MySender {
///     fn new() -> reqwest::Result<Self> {
///         let client = reqwest::Client::builder()
///             .dns_resolver(Arc::new(GuardedResolver::new()))
///             .redirect(reqwest::redirect::Policy::none())
///             .timeout(std::time::Duration::from_secs(15))
///             .no_proxy()
///             .build()?;
///         Ok(Self(client))
///     }
/// }
///
/// #[async_trait::async_trait]
/// impl Sender for MySender {
///     async fn send(&self, request: DeliveryRequest<'_>) -> SendOutcome {
///         let started_at = chrono::Utc::now();
///         let clock = std::time::Instant::now();
///         let literal = request.url.parse::<reqwest::Url>().ok().and_then(|url| {
///             url.host_str()?.trim_matches(['[', ']']).parse().ok()
///         });
///         let result = match literal.filter(|ip| !is_global_address(*ip)) {
///             Some(ip) => SendResult::failed(TransportErrorKind::BlockedAddress, ip.to_string()),
///             None => match self.0.post(request.url).headers(request.headers())
///                 .header("x-platform", "acme").body(request.body.to_vec()).send().await
///             {
///                 Ok(answer) => SendResult::Response {
///                     status: answer.status().as_u16(),
///                     retry_after: answer.headers().get("retry-after")
///                         .and_then(|v| parse_retry_after(v.to_str().ok()?, started_at)),
///                     snippet: answer.text().await.unwrap_or_default(),
///                 },
///                 Err(e) => SendResult::failed(TransportErrorKind::Other, e.to_string()),
///             },
///         };
///         SendOutcome { started_at, duration: clock.elapsed(), result }
///     }
/// }
/// ```
///
/// (`SendOutcome`'s snippet is cut to 4 KiB when it is recorded; a production sender also
/// stops reading long bodies early, as [`HttpSender`] does.)
#[async_trait]
pub trait Sender: Send + Sync + std::fmt::Debug {
    /// POSTs `request.body` to `request.url` with the request headers, once, and reports what
    /// happened, as the trait's contract says.
    async fn send(&self, request: DeliveryRequest<'_>) -> SendOutcome;
}

impl SendResult {
    /// A transport failure of `kind`, described by `message`.
    pub fn failed(kind: TransportErrorKind, message: impl Into<String>) -> Self {
        SendResult::Failed {
            kind,
            message: message.into(),
        }
    }
}

/// Reads a `Retry-After` value: delay-seconds, or an HTTP date (how long after `now` it is).
/// `None` for anything else, or a date already past.
///
/// ```
/// use std::time::Duration;
/// use fermion_webhooks::sender::parse_retry_after;
///
/// let now = chrono::Utc::now();
/// assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
/// assert_eq!(parse_retry_after("soon", now), None);
/// ```
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&Utc) - now).to_std().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::SubsecRound;

    fn outcome(snippet: &str) -> SendOutcome {
        SendOutcome {
            started_at: Utc::now(),
            duration: Duration::ZERO,
            result: SendResult::Response {
                status: 200,
                snippet: snippet.to_owned(),
                retry_after: None,
            },
        }
    }

    fn redacted(snippet: &str) -> String {
        let mut outcome = outcome(snippet);
        outcome.redact(&WebhookSecret::new("s3cr3t-value").unwrap());
        match outcome.result {
            SendResult::Response { snippet, .. } => snippet,
            SendResult::Failed { .. } => unreachable!(),
        }
    }

    #[test]
    fn a_secret_echoed_whole_is_redacted_wherever_it_is() {
        assert_eq!(redacted("got s3cr3t-value ok"), "got <redacted> ok");
        assert_eq!(redacted("nothing here"), "nothing here");
    }

    #[test]
    fn a_start_of_the_secret_where_a_full_snippet_was_cut_is_redacted_within_the_cap() {
        for tail in ["s3cr3t-va", "s"] {
            let cut = format!("{}{tail}", "x".repeat(RESPONSE_SNIPPET_LIMIT - tail.len()));
            let snippet = redacted(&cut);
            assert!(snippet.len() <= RESPONSE_SNIPPET_LIMIT);
            assert!(
                snippet.ends_with("xx<redacted>"),
                "{tail}: {}",
                &snippet[4000..]
            );
        }
    }

    #[test]
    fn a_short_answer_ending_like_the_secret_starts_is_left_alone() {
        let mut outcome = outcome("status: s");
        outcome.redact(&WebhookSecret::new("s3cr3t-value").unwrap());
        assert_eq!(outcome.status(), Some(200));
        assert!(
            matches!(outcome.result, SendResult::Response { ref snippet, .. } if snippet == "status: s")
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = Utc::now().trunc_subsecs(0);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        let soon = (now + chrono::TimeDelta::seconds(90)).to_rfc2822();
        assert_eq!(parse_retry_after(&soon, now), Some(Duration::from_secs(90)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            None
        );
    }
}
