//! One route's upstream: its connections ([`pool`]), what is sent on them (one attempt,
//! [`send`]; a recovery probe) and how a failed exchange is named (the closed sets of
//! [`ErrorKind`] and [`TlsDetail`]).

mod negotiate;
mod pool;
mod send;

use std::error::Error as StdError;
use std::io;
use std::sync::Arc;

use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Uri, header};
use warden_config::{ErrorKind, Route, TlsDetail};

use crate::body::RequestBody;

pub(crate) use pool::{PoolSize, SendError, Upstream};
pub(crate) use send::Failure;

use crate::tls::TlsError;

pub(crate) type UpstreamClient = Arc<Upstream>;

/// What a probe learned: an HTTP status, or the network fault that prevented one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProbeResult {
    pub status: Option<u16>,
    pub error_kind: Option<ErrorKind>,
    /// Why the TLS handshake failed, when `error_kind` is `tls`: the circuit stays open on
    /// a certificate problem, and `probe_failed` events say which.
    pub tls_detail: Option<TlsDetail>,
}

impl ProbeResult {
    /// Any HTTP answer below 500 means the upstream is back.
    pub(crate) fn is_ok(&self) -> bool {
        self.status.is_some_and(|s| s < 500)
    }
}

/// The connections of `route`, as many as `size` allows, with a sweeper that closes those
/// idle past the timeout.
pub(crate) fn client(route: &Route, size: PoolSize) -> Result<UpstreamClient, TlsError> {
    let upstream = Upstream::new(route, size)?;
    pool::sweep(&upstream);
    Ok(upstream)
}

impl Upstream {
    /// A recovery probe: `GET path`, bounded by `timeout`; only the status matters and
    /// the body is dropped unread.
    pub(crate) async fn probe(
        self: &Arc<Self>,
        path: PathAndQuery,
        timeout: std::time::Duration,
    ) -> ProbeResult {
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(self.scheme());
        uri.authority = Some(self.authority().clone());
        uri.path_and_query = Some(path);
        let Ok(uri) = Uri::from_parts(uri) else {
            return ProbeResult {
                status: None,
                error_kind: Some(ErrorKind::Connect),
                tls_detail: None,
            };
        };
        let mut req = Request::new(RequestBody::empty());
        *req.uri_mut() = uri;
        req.headers_mut().insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("warden-probe/", env!("CARGO_PKG_VERSION"))),
        );
        let deadline = tokio::time::Instant::now() + timeout;
        let (status, error_kind, tls_detail) =
            match tokio::time::timeout_at(deadline, self.round_trip(req, deadline)).await {
                Err(_) => (None, Some(ErrorKind::Timeout), None),
                Ok(Ok((resp, _lease))) => (Some(resp.status().as_u16()), None, None),
                Ok(Err(err)) => {
                    let (kind, tls) = fault(&err);
                    (None, Some(kind), tls)
                }
            };
        ProbeResult {
            status,
            error_kind,
            tls_detail,
        }
    }
}

/// Names the network fault behind a failed exchange: the stage it failed in, then its
/// causes.
pub(crate) fn error_kind(err: &SendError) -> ErrorKind {
    match err {
        SendError::Dns(_) => return ErrorKind::Dns,
        SendError::ConnectTimeout => return ErrorKind::Timeout,
        // Only a probe meets this as a fault (a request gets warden's own 503): no
        // connection came free in time, which the probe reports as a timeout, not as a
        // refused connect.
        SendError::Busy => return ErrorKind::Timeout,
        SendError::Tls(_) => return ErrorKind::Tls,
        _ => {}
    }
    let fallback = if err.nothing_sent() {
        ErrorKind::Connect
    } else {
        ErrorKind::Reset
    };
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    let mut kind = None;
    while let Some(e) = cur {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return ErrorKind::Tls;
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            kind = kind.or(match io.kind() {
                io::ErrorKind::TimedOut => Some(ErrorKind::Timeout),
                io::ErrorKind::ConnectionRefused
                | io::ErrorKind::AddrNotAvailable
                | io::ErrorKind::NetworkUnreachable
                | io::ErrorKind::HostUnreachable => Some(ErrorKind::Connect),
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof => Some(ErrorKind::Reset),
                _ => None,
            });
        }
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_timeout() {
                kind = kind.or(Some(ErrorKind::Timeout));
            } else if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                kind = kind.or(Some(ErrorKind::Reset));
            }
        }
        // A wrapping io::Error reports its inner error's source, skipping the inner error
        // itself (where rustls puts its verdict), so step into it explicitly.
        cur = match e.downcast_ref::<io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    kind.unwrap_or(fallback)
}

/// The error and its causes, `: `-joined, for debug logs: the stage alone says only
/// `connect error`, and the cause (`invalid peer certificate: UnknownIssuer`,
/// `Connection refused`) sits below it. A cause whose text the previous one already ends
/// with is left out.
pub(crate) fn causes(err: &(dyn StdError + 'static)) -> String {
    let mut text = String::new();
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        let part = e.to_string();
        if !text.ends_with(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        cur = match e.downcast_ref::<io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    text
}

/// The network fault behind a failed exchange and, for a TLS failure, why: every TLS
/// failure names a detail, `handshake` when rustls' error says nothing more specific.
pub(crate) fn fault(err: &SendError) -> (ErrorKind, Option<TlsDetail>) {
    let kind = error_kind(err);
    let tls = (kind == ErrorKind::Tls).then(|| tls_detail(err).unwrap_or(TlsDetail::Handshake));
    (kind, tls)
}

/// Why the TLS handshake behind a failed exchange failed, when rustls' error is among its
/// causes: the closed set of [`TlsDetail`], so events and answers can say "unknown CA"
/// rather than a bare `tls`.
pub(crate) fn tls_detail(err: &(dyn StdError + 'static)) -> Option<TlsDetail> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(classify_tls(tls));
        }
        // As in `error_kind`: an io::Error's `source` skips the error it wraps.
        cur = match e.downcast_ref::<io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    None
}

/// Maps rustls' verdict onto [`TlsDetail`]. Alerts the server sends about certificates can
/// only be about warden's client certificate: the server checks no other.
pub(crate) fn classify_tls(err: &rustls::Error) -> TlsDetail {
    use rustls::{AlertDescription as Alert, CertificateError as Cert};
    match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            Cert::UnknownIssuer | Cert::BadSignature => TlsDetail::UnknownCa,
            Cert::NotValidForName | Cert::NotValidForNameContext { .. } => TlsDetail::NameMismatch,
            Cert::Expired | Cert::ExpiredContext { .. } => TlsDetail::Expired,
            Cert::NotValidYet | Cert::NotValidYetContext { .. } => TlsDetail::NotYetValid,
            _ => TlsDetail::Handshake,
        },
        rustls::Error::AlertReceived(
            Alert::BadCertificate
            | Alert::UnsupportedCertificate
            | Alert::CertificateRevoked
            | Alert::CertificateExpired
            | Alert::CertificateUnknown
            | Alert::UnknownCA
            | Alert::CertificateRequired
            | Alert::AccessDenied,
        ) => TlsDetail::ClientCertRejected,
        _ => TlsDetail::Handshake,
    }
}

#[cfg(test)]
mod tls_detail_tests {
    use rustls::{AlertDescription, CertificateError, Error};
    use warden_config::TlsDetail;

    use super::classify_tls;

    #[test]
    fn rustls_errors_map_onto_the_closed_set() {
        let cases = [
            (
                Error::InvalidCertificate(CertificateError::UnknownIssuer),
                TlsDetail::UnknownCa,
            ),
            (
                Error::InvalidCertificate(CertificateError::NotValidForName),
                TlsDetail::NameMismatch,
            ),
            (
                Error::InvalidCertificate(CertificateError::Expired),
                TlsDetail::Expired,
            ),
            (
                Error::InvalidCertificate(CertificateError::NotValidYet),
                TlsDetail::NotYetValid,
            ),
            (
                Error::AlertReceived(AlertDescription::CertificateRequired),
                TlsDetail::ClientCertRejected,
            ),
            (
                Error::AlertReceived(AlertDescription::HandshakeFailure),
                TlsDetail::Handshake,
            ),
            (
                Error::InvalidCertificate(CertificateError::Revoked),
                TlsDetail::Handshake,
            ),
        ];
        for (err, want) in cases {
            assert_eq!(classify_tls(&err), want, "{err}");
        }
    }
}
