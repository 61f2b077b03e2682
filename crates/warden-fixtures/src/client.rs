//! A plain HTTP client for tests, and the requests they send most: a whole answer read
//! within a deadline, a token form POST, a raw HTTP/1.1 exchange.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How long a test waits for anything that should happen promptly. Generous so a loaded CI
/// machine does not flake; a hang still fails instead of blocking the suite. On paused time
/// it is tokio's clock that runs out, so it stays longer than any timer under test.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The client type [`http_client`] and [`h2_client`] build.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// An HTTP/1.1 client that keeps nothing from one test to the next. Its targets are IP
/// literals, so it never resolves a name off the runtime (which would let paused time jump).
pub fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 client with prior knowledge (h2c), as a local app speaking HTTP/2 would be.
pub fn h2_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// A whole answer.
pub struct Answer {
    /// The status.
    pub status: http::StatusCode,
    /// The header fields.
    pub headers: http::HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Answer {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics, with the body, when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

/// Sends one request and reads the whole answer, within the deadline.
pub async fn send(client: &HttpClient, req: http::Request<Full<Bytes>>) -> Answer {
    tokio::time::timeout(DEADLINE, async {
        let resp = client.request(req).await.expect("request failed");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("read body").to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    })
    .await
    .expect("request did not finish within the deadline")
}

/// `GET url`, read whole.
pub async fn get(client: &HttpClient, url: &str) -> Answer {
    send(
        client,
        http::Request::get(url)
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
    .await
}

/// `POST http://addr/token` with `form` as `application/x-www-form-urlencoded`, as an app
/// asks its IdP for a token.
pub async fn token(addr: SocketAddr, form: impl Into<Bytes>) -> Answer {
    token_at(&format!("http://{addr}/token"), form).await
}

/// [`token`] to a token endpoint at another path.
pub async fn token_at(url: &str, form: impl Into<Bytes>) -> Answer {
    let req = http::Request::post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(form.into()))
        .expect("request");
    send(&http_client(), req).await
}

/// Polls `f` until it returns true or the deadline passes.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if f().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A raw HTTP/1.1 exchange over a fresh TCP connection, for requests a well-behaved client
/// library refuses to send (absolute-form targets, CONNECT, oversized or chunked bodies).
/// Returns the status code and the whole response text read until the answer is complete.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::time::timeout(DEADLINE, async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // The server may answer and close before it has read everything we send; that is
        // fine, the answer is what we check.
        let _ = stream.write_all(request).await;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            if let Some(head_end) = find(&buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= head_end + 4 + len {
                    break;
                }
            }
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        (status, text)
    })
    .await
    .expect("raw exchange within the deadline")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
