//! The status page at `GET /`: one self-contained HTML file compiled into the binary, so it
//! works offline and in a locked-down cluster, served with a Content-Security-Policy that
//! allows its own inline script and style (by hash) and nothing else.

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use ring::digest::{SHA256, digest};

/// The page: markup, style and script in one file, no external reference of any kind.
pub(crate) const STATUS_HTML: &str = include_str!("../assets/status.html");

/// The policy for [`STATUS_HTML`]: nothing loads from anywhere but the admin API itself
/// (`connect-src 'self'`), and only the page's own script and style run, pinned by their
/// SHA-256 so an injected element would be refused even if one ever got in. Hashes rather
/// than a nonce: the page is static, so they are computed once and the response needs no
/// randomness.
static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    let hash = |tag: &str| {
        inline_block(STATUS_HTML, tag)
            .map(|body| format!("'sha256-{}'", sha256_base64(body)))
            .unwrap_or_else(|| "'none'".to_owned())
    };
    let policy = format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash("script"),
        hash("style"),
    );
    // Only base64, quotes and ASCII keywords: always a valid header value.
    HeaderValue::from_str(&policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
});

pub(crate) fn status_page() -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(STATUS_HTML.as_bytes())));
    *resp.status_mut() = StatusCode::OK;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CONTENT_SECURITY_POLICY, CSP.clone());
    // Health is live data: a cached copy of the page is harmless, but never let an
    // intermediary or the back button serve a stale one as if it were current.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// A CSP hash source's value: the standard (padded) base64 of the block's SHA-256.
fn sha256_base64(block: &str) -> String {
    STANDARD.encode(digest(&SHA256, block.as_bytes()))
}

/// The text between `<tag>` and `</tag>`: what a CSP hash covers, byte for byte.
fn inline_block<'a>(html: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = html.find(&open)? + open.len();
    let end = start + html[start..].find(&format!("</{tag}>"))?;
    Some(&html[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hashes of the page's inline blocks, computed apart from this code:
    /// `printf %s "$BLOCK" | openssl dgst -sha256 -binary | base64`, where `$BLOCK` is the
    /// text between `<script>` and `</script>` (resp. `<style>`) of assets/status.html.
    /// Editing the page changes them: recompute and paste.
    const SCRIPT_HASH: &str = "+WnbD49x6qCNSYQOPm1upx09+lHDi9bp6gTLjDJeYzw=";
    const STYLE_HASH: &str = "X42LOyQ0+kcjhEnx9Ac+IVogwGwpny2OUi+pYVv8mPg=";

    #[test]
    fn the_policy_carries_the_independently_computed_hashes() {
        let csp = CSP.to_str().expect("ascii");
        assert!(
            csp.contains(&format!("script-src 'sha256-{SCRIPT_HASH}';")),
            "{csp}"
        );
        assert!(
            csp.contains(&format!("style-src 'sha256-{STYLE_HASH}';")),
            "{csp}"
        );
    }

    #[test]
    fn hash_sources_are_padded_standard_base64_of_sha256() {
        // FIPS 180-2's "abc" vector, in base64 with its `=`.
        assert_eq!(
            sha256_base64("abc"),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }

    #[test]
    fn the_page_is_self_contained() {
        let page = STATUS_HTML;
        assert!(
            page.len() < 15 * 1024,
            "the page grew to {} bytes",
            page.len()
        );
        assert_eq!(page.matches("<script").count(), 1, "one inline script");
        assert_eq!(page.matches("<style").count(), 1, "one inline style");
        for banned in [
            "src=",
            "http://",
            "https://",
            "//cdn",
            "@import",
            "url(",
            "style=\"",
            "onclick",
            "onload",
            "innerHTML",
            "localStorage",
            "sessionStorage",
        ] {
            assert!(!page.contains(banned), "the page contains {banned:?}");
        }
    }

    #[test]
    fn the_policy_pins_the_inline_blocks() {
        let csp = CSP.to_str().expect("ascii");
        assert!(
            csp.starts_with("default-src 'none'; script-src 'sha256-"),
            "{csp}"
        );
        assert!(csp.contains("style-src 'sha256-"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert!(!csp.contains("'none'; style-src 'none'"), "{csp}");
        let script = inline_block(STATUS_HTML, "script").expect("script");
        assert!(script.contains("setTimeout(poll"));
        assert!(csp.contains(&sha256_base64(script)));
    }
}
