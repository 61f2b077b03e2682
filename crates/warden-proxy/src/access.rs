//! The access log: one structured line per request at INFO (`log.access`), tying an app's
//! failure to the upstream answer behind it.
//!
//! Never a query string (tokens travel there), never a header value but the request id and
//! the W3C trace id, never a body.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use tower::util::rng::{HasherRng, Rng as _};

/// The request id header: taken from the client, or generated and forwarded.
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest incoming request id kept; a longer one is replaced, so a client cannot
/// flood the log through it.
const MAX_REQUEST_ID: usize = 128;

/// The request's id: the client's `x-request-id` when it is short printable ASCII, else a
/// new one, set on `headers` so the upstream sees the same id.
pub(crate) fn request_id(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get(&X_REQUEST_ID)
        && !id.is_empty()
        && id.len() <= MAX_REQUEST_ID
        && id.as_bytes().iter().all(|b| b.is_ascii_graphic())
    {
        return id.clone();
    }
    let id = generate();
    headers.insert(X_REQUEST_ID.clone(), id.clone());
    id
}

/// 128 random bits as 32 hex digits, the shape of a W3C trace id.
fn generate() -> HeaderValue {
    let mut rng = HasherRng::new();
    let (a, b) = (rng.next_u64(), rng.next_u64());
    let text = format!("{a:016x}{b:016x}");
    // Hex digits are always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), which warden
/// forwards unchanged; `None` when absent or malformed.
pub(crate) fn trace_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    let mut parts = value.trim().split('-');
    let (version, trace) = (parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(version, 2) && hex(trace, 32) && trace.bytes().any(|b| b != b'0'))
        .then(|| trace.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_incoming_id_is_kept_and_a_bad_one_replaced() {
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&mut h), "abc-123");
        for bad in ["", "has space", &"x".repeat(200)] {
            let mut h = HeaderMap::new();
            h.insert(&X_REQUEST_ID, HeaderValue::from_str(bad).unwrap());
            let id = request_id(&mut h);
            assert_eq!(id.len(), 32, "{bad:?}");
            assert_eq!(h[&X_REQUEST_ID], id, "forwarded");
        }
        let mut h = HeaderMap::new();
        let a = request_id(&mut h);
        let b = request_id(&mut HeaderMap::new());
        assert_ne!(a, b);
        assert_eq!(h[&X_REQUEST_ID], a);
    }

    #[test]
    fn trace_ids_from_traceparent() {
        let mut h = HeaderMap::new();
        assert_eq!(trace_id(&h), None);
        h.insert(
            "traceparent",
            HeaderValue::from_static("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
        );
        assert_eq!(
            trace_id(&h).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "garbage",
        ] {
            h.insert("traceparent", HeaderValue::from_static(bad));
            assert_eq!(trace_id(&h), None, "{bad}");
        }
    }
}
