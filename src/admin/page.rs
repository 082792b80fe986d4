//! `GET /`: the dashboard page, one self-contained HTML file, and the headers that lock it down.
//!
//! The page loads nothing from anywhere: its style and script are inline, allowed by their
//! SHA-256 hashes in the Content-Security-Policy, so no other inline script, no injected
//! markup's event handler and no script from elsewhere runs. It renders every value as text.

use std::sync::LazyLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};

const PAGE: &str = include_str!("page.html");

/// The page's Content-Security-Policy: its own style and script, requests to its own origin,
/// nothing else; not framed by other sites.
static POLICY: LazyLock<HeaderValue> = LazyLock::new(|| {
    let policy = format!(
        "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'self'; \
         img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
        hash_of_element(PAGE, "script"),
        hash_of_element(PAGE, "style"),
    );
    HeaderValue::from_str(&policy).expect("a CSP of hashes is a valid header value")
});

/// `sha256-<base64>` of the first `<tag>` element's text, as CSP hashes inline code.
fn hash_of_element(html: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = html.find(&open).map(|at| at + open.len());
    let end = html.find(&close);
    let text = match (start, end) {
        (Some(start), Some(end)) if start <= end => &html[start..end],
        // The page is a constant checked by the tests; an element it lacks allows nothing.
        _ => "",
    };
    let digest = Sha256::digest(text.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

pub(super) async fn page() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CONTENT_SECURITY_POLICY, POLICY.clone()),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        PAGE,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_exactly_the_pages_own_script_and_style() {
        let policy = POLICY.to_str().unwrap();
        assert!(policy.contains("default-src 'none'"));
        assert!(!policy.contains("unsafe-inline"));
        let script = &PAGE[PAGE.find("<script>").unwrap() + 8..PAGE.find("</script>").unwrap()];
        let expected = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(script));
        assert!(policy.contains(&format!("script-src 'sha256-{expected}'")));
    }

    #[test]
    fn the_page_has_one_script_one_style_and_no_inline_handler_or_outside_address() {
        assert_eq!(PAGE.matches("<script").count(), 1);
        assert_eq!(PAGE.matches("<style").count(), 1);
        assert!(
            !PAGE.contains(" style="),
            "inline style attributes are refused by the CSP"
        );
        assert!(!PAGE.contains("innerHTML"), "values are rendered as text");
        // A placeholder and the SVG namespace name are addresses, not loads.
        let code = PAGE
            .replace("https://example.com/fermion-webhook", "")
            .replace("http://www.w3.org/2000/svg", "");
        for outside in ["http://", "https://", "//cdn"] {
            assert!(
                !code.contains(outside),
                "the page loads nothing from {outside}"
            );
        }
        for handler in [" onclick=", " onload=", " onerror=", " onsubmit="] {
            assert!(!PAGE.contains(handler), "inline handler {handler}");
        }
    }
}
