//! Answers warden writes itself instead of the upstream's.

use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use warden_config::{ErrorKind, Role, TlsDetail};

use crate::body::ResponseBody;

pub(crate) static X_WARDEN_ERROR: HeaderName = HeaderName::from_static("x-warden-error");

/// Why warden answered a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LocalError {
    /// The upstream could not be reached or dropped the exchange (connect, DNS, TLS, reset).
    Unreachable(ErrorKind),
    /// The TLS handshake with the upstream failed, and why: `error_kind` `tls` with its
    /// `tls_detail`, so the 502 (and whatever logs the request) can name the cause.
    Tls(TlsDetail),
    /// No response head within `timeouts.request`.
    Timeout,
    BodyTooLarge,
    HeaderTooLarge,
    /// An absolute-form request target naming another host: warden is not a forward proxy.
    AbsoluteForm,
    /// `CONNECT`: warden does not tunnel.
    Connect,
    /// The client's body failed while warden read it ahead (the client went away or sent
    /// a malformed chunk).
    ClientBody,
    /// A coalesced refresh grant whose shared answer was too large to hand to every
    /// requester (the requester whose grant went upstream got it whole).
    CoalescedTooLarge,
    /// No `Host` on an HTTP/1.1 request, more than one, or one that is not a host[:port].
    BadHost,
    /// A `Transfer-Encoding` other than one `chunked`.
    BadTransferEncoding,
    /// Every upstream connection the route may open (`limits.max_upstream_per_route`)
    /// stayed busy for `timeouts.connect`. warden's own limit: the upstream is not blamed.
    UpstreamBusy,
}

impl LocalError {
    pub(crate) fn status(self) -> StatusCode {
        match self {
            LocalError::Unreachable(_) | LocalError::Tls(_) => StatusCode::BAD_GATEWAY,
            LocalError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            LocalError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            LocalError::HeaderTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            LocalError::AbsoluteForm => StatusCode::BAD_REQUEST,
            LocalError::Connect => StatusCode::METHOD_NOT_ALLOWED,
            LocalError::ClientBody => StatusCode::BAD_REQUEST,
            LocalError::CoalescedTooLarge => StatusCode::BAD_GATEWAY,
            LocalError::BadHost => StatusCode::BAD_REQUEST,
            LocalError::BadTransferEncoding => StatusCode::BAD_REQUEST,
            LocalError::UpstreamBusy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `error` field and `x-warden-error` value: stable, documented codes.
    pub(crate) fn code(self) -> &'static str {
        match self {
            LocalError::Unreachable(ErrorKind::Reset) => "upstream_reset",
            LocalError::Unreachable(_) | LocalError::Tls(_) => "upstream_unreachable",
            LocalError::Timeout => "upstream_timeout",
            LocalError::BodyTooLarge => "request_body_too_large",
            LocalError::HeaderTooLarge => "request_header_too_large",
            LocalError::AbsoluteForm => "forward_proxy_refused",
            LocalError::Connect => "connect_refused",
            LocalError::ClientBody => "request_body_unreadable",
            LocalError::CoalescedTooLarge => "coalesced_answer_too_large",
            LocalError::BadHost => "bad_host",
            LocalError::BadTransferEncoding => "bad_transfer_encoding",
            LocalError::UpstreamBusy => "upstream_busy",
        }
    }

    /// Whether `headers` are those of this answer.
    pub(crate) fn marks(self, headers: &http::HeaderMap) -> bool {
        headers
            .get(&X_WARDEN_ERROR)
            .is_some_and(|v| v.as_bytes() == self.code().as_bytes())
    }

    pub(crate) fn error_kind(self) -> Option<ErrorKind> {
        match self {
            LocalError::Unreachable(kind) => Some(kind),
            LocalError::Tls(_) => Some(ErrorKind::Tls),
            LocalError::Timeout => Some(ErrorKind::Timeout),
            _ => None,
        }
    }

    /// Why the TLS handshake failed, for a TLS failure.
    pub(crate) fn tls_detail(self) -> Option<TlsDetail> {
        match self {
            LocalError::Tls(detail) => Some(detail),
            _ => None,
        }
    }

    pub(crate) fn response(self, connection: &str, role: Role) -> Response<ResponseBody> {
        let body = match (self.error_kind(), self.tls_detail()) {
            (Some(kind), Some(detail)) => format!(
                r#"{{"error":"{}","connection":"{connection}","role":"{role}","error_kind":"{}","tls_detail":"{detail}"}}"#,
                self.code(),
                kind.as_str()
            ),
            (Some(kind), None) => format!(
                r#"{{"error":"{}","connection":"{connection}","role":"{role}","error_kind":"{}"}}"#,
                self.code(),
                kind.as_str()
            ),
            (None, _) => format!(
                r#"{{"error":"{}","connection":"{connection}","role":"{role}"}}"#,
                self.code()
            ),
        };
        let mut resp = json_answer(self.status(), body, &X_WARDEN_ERROR, self.code());
        if self == LocalError::Connect {
            resp.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            );
        }
        if self == LocalError::UpstreamBusy {
            // A connection frees up as soon as an answer ends: a second is long.
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self == LocalError::BadTransferEncoding {
            // Where the refused body ends is exactly what is in doubt: read nothing more
            // from this connection.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// A small JSON answer of warden's own, marked by `marker: value` so clients and logs can
/// tell it from the upstream's.
pub(crate) fn json_answer(
    status: StatusCode,
    body: String,
    marker: &HeaderName,
    value: &'static str,
) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::local(body));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(marker.clone(), HeaderValue::from_static(value));
    resp
}
