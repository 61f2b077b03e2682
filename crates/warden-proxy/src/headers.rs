//! Header rewriting at the proxy boundary (RFC 9110 §7.6).

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Removes the headers that describe one hop, not the message (RFC 9110 §7.6.1): the fixed
/// set and whatever `Connection` names. They must go before HTTP/2 (which rejects them)
/// and must not leak framing choices of one side to the other.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them: one pass over the names, which compares without
    // hashing, spares the six lookups below (two messages per proxied request).
    let any = headers.keys().any(|name| {
        name == header::CONNECTION
            || name == header::TRANSFER_ENCODING
            || name == header::UPGRADE
            || name == header::TE
            || name == KEEP_ALIVE
            || name == PROXY_CONNECTION
    });
    if !any {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
            .collect();
        headers.remove(header::CONNECTION);
        for name in named {
            // `Connection: TE` must not be able to take `te: trailers` along; everything
            // else it names is hop-by-hop by declaration.
            if name != header::TE {
                headers.remove(&name);
            }
        }
    }
    headers.remove(&KEEP_ALIVE);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(header::TRANSFER_ENCODING);
    headers.remove(header::UPGRADE);
    // `TE: trailers` is the one value that means something end to end (HTTP/2 keeps it).
    if let Some(te) = headers.get(header::TE)
        && te.as_bytes() != b"trailers"
    {
        headers.remove(header::TE);
    }
}

/// Appends the client's address to `x-forwarded-for`, keeping what earlier hops wrote.
pub(crate) fn append_forwarded_for(headers: &mut HeaderMap, client: &HeaderValue) {
    match headers.get(&X_FORWARDED_FOR) {
        None => {
            headers.insert(X_FORWARDED_FOR.clone(), client.clone());
        }
        Some(prev) => {
            let mut joined = Vec::with_capacity(prev.len() + 2 + client.len());
            joined.extend_from_slice(prev.as_bytes());
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(client.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&joined) {
                headers.insert(X_FORWARDED_FOR.clone(), v);
            }
        }
    }
}

/// Size of a request head as it would be on the wire (`name: value\r\n` per field), the
/// measure `limits.max_header_bytes` is stated in.
pub(crate) fn head_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_fixed_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-hop, TE"),
        );
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-end", HeaderValue::from_static("kept"));
        strip_hop_by_hop(&mut h);
        let mut names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["te", "x-end"]);
    }

    /// Each hop-by-hop field alone, without `Connection`, is still found and removed.
    #[test]
    fn each_fixed_hop_by_hop_field_alone_is_stripped() {
        for name in [
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "upgrade",
            "te",
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static("x"));
            h.insert("x-end", HeaderValue::from_static("kept"));
            strip_hop_by_hop(&mut h);
            let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
            assert_eq!(names, ["x-end"], "{name}");
        }
    }

    #[test]
    fn te_other_than_trailers_is_dropped() {
        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("gzip"));
        strip_hop_by_hop(&mut h);
        assert!(h.is_empty());
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        let me = HeaderValue::from_static("127.0.0.1");
        append_forwarded_for(&mut h, &me);
        assert_eq!(h[&X_FORWARDED_FOR], "127.0.0.1");
        append_forwarded_for(&mut h, &HeaderValue::from_static("10.0.0.1"));
        assert_eq!(h[&X_FORWARDED_FOR], "127.0.0.1, 10.0.0.1");
    }
}
