//! Bench upstream for `benches/compare.sh`, `benches/fixed_rate.sh`,
//! `benches/h2.sh` and `benches/sse_ttfb.py`.
//!
//! Answers every request with the same ~200-byte JSON body over keep-alive
//! connections on a current-thread tokio runtime, so the upstream costs as
//! little CPU as possible and the proxy under test dominates.
//!
//! `GET /sse` instead answers `text/event-stream`: one JSON-RPC result event,
//! written at once, then the stream stays open for `hold_ms` milliseconds
//! (query parameter, default 1, at most 10000) and ends. The hold keeps the
//! end of the body out of the event's write, so a proxy that buffers the
//! stream shows it in the time to the first event.
//!
//! Usage: `warden-bench-upstream PORT [--h2c] [--tls CERT KEY [--alpn LIST]]`
//! (binds 127.0.0.1:PORT; PORT may be 0).
//!
//! * no flag: HTTP/1.1 only (what `compare.sh` measures against);
//! * `--h2c`: HTTP/1.1 and HTTP/2 by prior knowledge on the same port;
//! * `--tls CERT KEY`: TLS with the PEM chain CERT and key KEY, then HTTP/1.1
//!   or HTTP/2 (whichever the client speaks); `--alpn` is the comma-separated
//!   list of protocols offered by ALPN (default `h2,http/1.1`; `http/1.1`
//!   makes a client that follows ALPN stay on HTTP/1.1).
//!
//! The first line printed on stdout is the bound address, e.g.
//! `127.0.0.1:43121`.

use std::convert::Infallible;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// Exactly 200 bytes of JSON.
const BODY: &[u8] = br#"{"status":"ok","service":"warden-bench-upstream","items":[{"id":1,"name":"alpha"},{"id":2,"name":"beta"},{"id":3,"name":"gamma"}],"padding":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;

/// The one event of `/sse`, as an MCP server would send a tool result.
const EVENT: &[u8] =
    b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[]}}\n\n";

const DEFAULT_HOLD: Duration = Duration::from_millis(1);
const MAX_HOLD_MS: u64 = 10_000;

type RespBody = Either<Full<Bytes>, SseBody>;

/// One event at once, then the end of the stream after the hold.
struct SseBody {
    sent: bool,
    hold: Pin<Box<tokio::time::Sleep>>,
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if !self.sent {
            self.sent = true;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(EVENT)))));
        }
        self.hold.as_mut().poll(cx).map(|()| None)
    }
}

fn hold_of(query: Option<&str>) -> Duration {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("hold_ms="))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(DEFAULT_HOLD, |ms| {
            Duration::from_millis(ms.min(MAX_HOLD_MS))
        })
}

async fn handle(req: Request<Incoming>) -> Result<Response<RespBody>, Infallible> {
    if req.uri().path() == "/sse" {
        let body = SseBody {
            sent: false,
            hold: Box::pin(tokio::time::sleep(hold_of(req.uri().query()))),
        };
        let mut resp = Response::new(Either::Right(body));
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return Ok(resp);
    }
    let mut resp = Response::new(Either::Left(Full::new(Bytes::from_static(BODY))));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(BODY.len()));
    Ok(resp)
}

enum Mode {
    Http1,
    H2c,
    Tls(TlsAcceptor),
}

fn bad(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg)
}

fn tls_acceptor(cert: &PathBuf, key: &PathBuf, alpn: &str) -> std::io::Result<TlsAcceptor> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(format!("{}: {e}", cert.display())))?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| bad(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("tls: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(format!("tls: {e}")))?;
    config.alpn_protocols = alpn
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| p.as_bytes().to_vec())
        .collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn parse_args() -> std::io::Result<(u16, Mode)> {
    let usage =
        || bad("usage: warden-bench-upstream PORT [--h2c] [--tls CERT KEY [--alpn LIST]]".into());
    let mut args = std::env::args().skip(1);
    let port = args.next().ok_or_else(usage)?;
    let port: u16 = port
        .parse()
        .map_err(|e| bad(format!("bad port {port:?}: {e}")))?;
    let mut mode = Mode::Http1;
    let mut tls: Option<(PathBuf, PathBuf)> = None;
    let mut alpn = "h2,http/1.1".to_string();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--h2c" => mode = Mode::H2c,
            "--tls" => {
                let cert = args.next().ok_or_else(usage)?;
                let key = args.next().ok_or_else(usage)?;
                tls = Some((cert.into(), key.into()));
            }
            "--alpn" => alpn = args.next().ok_or_else(usage)?,
            _ => return Err(usage()),
        }
    }
    if let Some((cert, key)) = tls {
        mode = Mode::Tls(tls_acceptor(&cert, &key, &alpn)?);
    }
    Ok((port, mode))
}

async fn serve(stream: TcpStream, mode: Arc<Mode>) {
    match &*mode {
        Mode::Http1 => {
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
        }
        Mode::H2c => {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
        }
        Mode::Tls(acceptor) => {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            // One line per connection, read by benches/h2.sh to check which
            // protocol the proxy chose.
            let alpn = tls.get_ref().1.alpn_protocol().map(String::from_utf8_lossy);
            eprintln!("tls alpn={}", alpn.as_deref().unwrap_or("none"));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service_fn(handle))
                .await;
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let (port, mode) = match parse_args() {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let mode = Arc::new(mode);
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", listener.local_addr()?)?;
        out.flush()?;
    }
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: keep serving the connections we have.
                eprintln!("accept: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(stream, Arc::clone(&mode)));
    }
}
