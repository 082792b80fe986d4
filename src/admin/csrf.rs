//! Cross-site request forgery protection for the state-changing routes.
//!
//! A platform behind a cookie login would let any site the creator visits post to the API with
//! the creator's cookies. Browsers say where a request comes from, so a request that changes
//! something (any method but `GET`, `HEAD` and `OPTIONS`) is refused with 403 when:
//!
//! - its `Sec-Fetch-Site` is anything but `same-origin` or `none` (a bookmark, the address
//!   bar), or, from browsers too old to send that,
//! - its `Origin` names another host than its `Host`,
//!
//! unless the origin is one the platform trusts ([`Admin::trust_origin`](super::Admin::trust_origin)).
//! Requests with neither header come from tools (curl, a backend), which carry their own
//! credentials and cannot be forged by a web page. This is the check Go's
//! `net/http.CrossOriginProtection` and OWASP's "Fetch Metadata" defence make; no token has to
//! be threaded through the page.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Admin, AdminError};

pub(super) async fn refuse_cross_origin(
    State(admin): State<Admin>,
    request: Request,
    next: Next,
) -> Response {
    match check(&admin.trusted_origins, request.method(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

fn check(trusted: &[String], method: &Method, headers: &HeaderMap) -> Result<(), AdminError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let origin = text(header::ORIGIN);
    if origin.is_some_and(|origin| trusted.iter().any(|t| t.eq_ignore_ascii_case(origin))) {
        return Ok(());
    }
    let refused = || {
        AdminError::forbidden(
            "cross-origin request refused: changes can only be made from the dashboard's own \
             origin (or one the platform trusts with Admin::trust_origin)",
        )
    };
    match text(http::HeaderName::from_static("sec-fetch-site")) {
        Some("same-origin" | "none") => return Ok(()),
        Some(_) => return Err(refused()),
        None => {}
    }
    let Some(origin) = origin else {
        return Ok(());
    };
    let origin_host = origin.split_once("://").map(|(_, host)| host);
    match (origin_host, text(header::HOST)) {
        (Some(from), Some(host)) if from.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(refused()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    http::HeaderName::from_static(name),
                    http::HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    fn post(pairs: &[(&'static str, &'static str)]) -> Result<(), AdminError> {
        check(
            &["https://admin.example".to_owned()],
            &Method::POST,
            &headers(pairs),
        )
    }

    #[test]
    fn reads_pass_whatever_their_origin() {
        let cross = headers(&[("sec-fetch-site", "cross-site")]);
        assert!(check(&[], &Method::GET, &cross).is_ok());
    }

    #[test]
    fn a_change_from_another_site_is_refused_with_403() {
        let error = post(&[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.example"),
        ])
        .unwrap_err();
        assert_eq!(error.status(), http::StatusCode::FORBIDDEN);
        assert!(post(&[("sec-fetch-site", "same-site")]).is_err());
    }

    #[test]
    fn a_change_from_the_page_itself_passes() {
        assert!(post(&[("sec-fetch-site", "same-origin")]).is_ok());
        assert!(post(&[("sec-fetch-site", "none")]).is_ok());
    }

    #[test]
    fn without_fetch_metadata_the_origin_must_match_the_host() {
        assert!(
            post(&[
                ("origin", "http://127.0.0.1:8788"),
                ("host", "127.0.0.1:8788")
            ])
            .is_ok()
        );
        assert!(
            post(&[
                ("origin", "http://evil.example"),
                ("host", "127.0.0.1:8788")
            ])
            .is_err()
        );
        assert!(post(&[("origin", "null"), ("host", "127.0.0.1:8788")]).is_err());
    }

    #[test]
    fn a_trusted_origin_passes_from_another_host() {
        assert!(
            post(&[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://admin.example")
            ])
            .is_ok()
        );
    }

    #[test]
    fn tools_without_browser_headers_pass() {
        assert!(post(&[]).is_ok());
    }
}
