//! Request heads warden refuses before any upstream work, whatever the protocol version:
//! ambiguous `Host`, framing other than plain chunked, too many fields.

use http::header::{self, HeaderMap};
use http::uri::Authority;
use http::{Request, Version};

use crate::local::LocalError;

/// Fields a request head may carry (README › Bounds); more get warden's JSON 431, over
/// HTTP/1 and HTTP/2 alike.
pub(crate) const MAX_HEADER_FIELDS: usize = 200;

/// Bytes per field the parser's cap is counted in: HPACK's per-field overhead (RFC 7541
/// §4.1), the same measure the HTTP/2 header-list limit uses, so both protocols stop at the
/// same count for the same `max_header_bytes`.
const FIELD_OVERHEAD: usize = 32;

/// The HTTP/1 parser's own field cap. hyper answers a bare 431 past it (its default, 100, is
/// below warden's limit), so it sits above [`MAX_HEADER_FIELDS`] and grows with
/// `limits.max_header_bytes` as the HTTP/2 limit does; between the two, warden's JSON 431
/// answers. It also sizes two per-parse scratch arrays (32 bytes a field each, 64 KiB at the
/// default 64 KiB head), which is why it is not unbounded and why the binary's jemalloc keeps
/// blocks of that size in its thread caches (`src/allocator.rs`).
pub(crate) fn parser_max_fields(max_header_bytes: usize) -> usize {
    (max_header_bytes / FIELD_OVERHEAD).max(MAX_HEADER_FIELDS + 1)
}

/// RFC 9112 §3.2 and §6.1, and the field-count limit.
pub(crate) fn check<B>(req: &Request<B>) -> Result<(), LocalError> {
    let headers = req.headers();
    if headers.len() > MAX_HEADER_FIELDS {
        return Err(LocalError::HeaderTooLarge);
    }
    check_host(req.version(), headers)?;
    if req.version() < Version::HTTP_2 {
        check_transfer_encoding(headers)?;
    }
    Ok(())
}

/// A server must answer 400 to an HTTP/1.1 request without `Host`, and to any with more than
/// one or an invalid one (RFC 9112 §3.2): two proxies reading different ones is how requests
/// get routed past a check. HTTP/2 carries `:authority` and may omit `Host`.
fn check_host(version: Version, headers: &HeaderMap) -> Result<(), LocalError> {
    let mut hosts = headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if version == Version::HTTP_11 => Err(LocalError::BadHost),
        (None, _) => Ok(()),
        (Some(_), Some(_)) => Err(LocalError::BadHost),
        (Some(host), None) => match Authority::try_from(host.as_bytes()) {
            Ok(authority) if !authority.as_str().contains('@') => Ok(()),
            _ => Err(LocalError::BadHost),
        },
    }
}

/// The only transfer coding accepted is a single `chunked` (RFC 9112 §6.1): anything before
/// it (`identity, chunked`, `gzip, chunked`) is a coding warden would have to undo, and lists
/// or repeated fields are how front and back ends come to disagree on where a body ends.
fn check_transfer_encoding(headers: &HeaderMap) -> Result<(), LocalError> {
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter();
    match (codings.next(), codings.next()) {
        (None, _) => Ok(()),
        (Some(te), None) if te.as_bytes().eq_ignore_ascii_case(b"chunked") => Ok(()),
        _ => Err(LocalError::BadTransferEncoding),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, fields: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().version(version).uri("/");
        for (k, v) in fields {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn host_rules() {
        let h11 = Version::HTTP_11;
        assert_eq!(check(&req(h11, &[("host", "a")])), Ok(()));
        assert_eq!(check(&req(h11, &[("host", "a:8080")])), Ok(()));
        assert_eq!(check(&req(h11, &[])), Err(LocalError::BadHost));
        assert_eq!(
            check(&req(h11, &[("host", "a"), ("host", "b")])),
            Err(LocalError::BadHost)
        );
        assert_eq!(
            check(&req(h11, &[("host", "a"), ("host", "a")])),
            Err(LocalError::BadHost)
        );
        assert_eq!(
            check(&req(h11, &[("host", "a b")])),
            Err(LocalError::BadHost)
        );
        assert_eq!(
            check(&req(h11, &[("host", "u@a")])),
            Err(LocalError::BadHost)
        );
        assert_eq!(check(&req(Version::HTTP_10, &[])), Ok(()));
        assert_eq!(check(&req(Version::HTTP_2, &[])), Ok(()));
        assert_eq!(
            check(&req(Version::HTTP_2, &[("host", "a"), ("host", "b")])),
            Err(LocalError::BadHost)
        );
    }

    #[test]
    fn transfer_encoding_rules() {
        let ok = |te: &[&str]| {
            let mut fields = vec![("host", "a")];
            fields.extend(te.iter().map(|v| ("transfer-encoding", *v)));
            check(&req(Version::HTTP_11, &fields))
        };
        assert_eq!(ok(&[]), Ok(()));
        assert_eq!(ok(&["chunked"]), Ok(()));
        assert_eq!(ok(&["Chunked"]), Ok(()));
        assert_eq!(
            ok(&["identity, chunked"]),
            Err(LocalError::BadTransferEncoding)
        );
        assert_eq!(ok(&["gzip"]), Err(LocalError::BadTransferEncoding));
        assert_eq!(
            ok(&["chunked", "chunked"]),
            Err(LocalError::BadTransferEncoding)
        );
        assert_eq!(
            ok(&["chunked, chunked"]),
            Err(LocalError::BadTransferEncoding)
        );
    }

    #[test]
    fn field_count() {
        let names: Vec<String> = (0..=MAX_HEADER_FIELDS).map(|i| format!("x-f{i}")).collect();
        let mut fields: Vec<(&str, &str)> = vec![("host", "a")];
        fields.extend(
            names
                .iter()
                .take(MAX_HEADER_FIELDS - 1)
                .map(|n| (n.as_str(), "v")),
        );
        assert_eq!(check(&req(Version::HTTP_11, &fields)), Ok(()));
        fields.push((names[MAX_HEADER_FIELDS].as_str(), "v"));
        assert_eq!(
            check(&req(Version::HTTP_11, &fields)),
            Err(LocalError::HeaderTooLarge)
        );
        assert_eq!(parser_max_fields(65536), 2048);
        assert_eq!(parser_max_fields(1024), MAX_HEADER_FIELDS + 1);
    }
}
