//! What the retry path costs: the same request through a real warden (in-process, real
//! loopback sockets) answered 200 at once, against one answered 503 with `Retry-After: 0`
//! and then 200 — so the difference is the second upstream round trip plus the retry
//! machinery (classification, policy, budget, slot, replay), with no backoff sleep in it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// Odd requests to /flaky get 503 + Retry-After: 0, even ones 200; /plain always 200.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let flaky = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let flaky = Arc::clone(&flaky);
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let fail = req.uri().path() == "/flaky"
                        && flaky.fetch_add(1, Ordering::Relaxed).is_multiple_of(2);
                    async move {
                        let mut resp =
                            Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
                        if fail {
                            *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                            resp.headers_mut()
                                .insert("retry-after", http::HeaderValue::from_static("0"));
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (addr, _stop) = rt.block_on(async {
        let up = upstream().await;
        let yaml = format!(
            "version: 1
admin: {{ listen: 127.0.0.1:0 }}
defaults:
  retry: {{ max_attempts: 2, budget: {{ ratio: 1.0, min_per_second: 1000000 }} }}
connections:
  - name: bench
    api: {{ listen: 127.0.0.1:0, upstream: http://{up} }}
"
        );
        let config = warden_config::parse(&yaml, "bench").expect("config");
        let stop = tokio_util::sync::CancellationToken::new();
        let proxy = warden_proxy::Proxy::start(&config, stop.clone())
            .await
            .expect("start");
        let addr = proxy.bound().await[0].addr;
        (addr, (stop, proxy))
    });
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut group = c.benchmark_group("retry_path");
    for path in ["plain", "flaky"] {
        let uri: http::Uri = format!("http://{addr}/{path}").parse().expect("uri");
        group.bench_function(path, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let resp = client
                        .request(
                            Request::get(uri.clone())
                                .body(Full::new(Bytes::new()))
                                .expect("request"),
                        )
                        .await
                        .expect("response");
                    assert_eq!(resp.status(), 200);
                    resp.into_body().collect().await.expect("body");
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
