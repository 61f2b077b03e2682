//! The admit stage: refuses what a reverse proxy for one upstream must not carry, before
//! any upstream work and before the body is read.

use std::net::{IpAddr, SocketAddr};

use http::header;
use http::uri::Authority;
use http::{Method, Request, Version};

use crate::headers;
use crate::local::LocalError;

/// What admitting a request needs of its route.
pub(crate) struct Admission<'a> {
    /// The upstream's `host[:port]`: an absolute-form target naming it is the route's own.
    pub(crate) authority: &'a Authority,
    /// The route's listen address, which an absolute-form target may also name.
    pub(crate) listen: SocketAddr,
    pub(crate) max_header_bytes: usize,
    pub(crate) max_body_bytes: u64,
}

/// Refuses CONNECT, malformed framing, a forward-proxy target, an oversize head and a
/// declared body over the limit.
pub(crate) fn admit<B>(req: &Request<B>, admission: &Admission<'_>) -> Result<(), LocalError> {
    if req.method() == Method::CONNECT {
        return Err(LocalError::Connect);
    }
    crate::strict::check(req)?;
    // HTTP/2 requests always carry an authority; only an HTTP/1 absolute-form target
    // says the client takes warden for a forward proxy.
    if req.version() < Version::HTTP_2
        && let Some(target) = req.uri().authority()
        && !is_own_authority(target, admission)
    {
        return Err(LocalError::AbsoluteForm);
    }
    if headers::head_bytes(req.headers()) > admission.max_header_bytes {
        return Err(LocalError::HeaderTooLarge);
    }
    if declared_length(req.headers()).is_some_and(|len| len > admission.max_body_bytes) {
        return Err(LocalError::BodyTooLarge);
    }
    Ok(())
}

/// The `Content-Length` a request declares, when it is a number.
pub(crate) fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

fn is_own_authority(target: &Authority, admission: &Admission<'_>) -> bool {
    target == admission.authority
        || (target.port_u16() == Some(admission.listen.port())
            && target
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip == admission.listen.ip()))
}
