//! The admin listener bounds its clients as the proxy's listeners do: a client that sends
//! nothing, or a head one byte at a time, is closed. Paused clock, real loopback sockets.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use warden_admin::{AdminServer, AdminState, Readiness};

async fn admin() -> (std::net::SocketAddr, CancellationToken) {
    let state = AdminState {
        readiness: Arc::new(Readiness::default()),
        metrics: PrometheusBuilder::new().build_recorder().handle(),
        connections: None,
        token: None,
    };
    let server = AdminServer::bind("127.0.0.1:0".parse().unwrap(), state)
        .await
        .unwrap()
        .with_client_idle(Duration::from_secs(10));
    let addr = server.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(server.serve(stop.clone()));
    (addr, stop)
}

/// Whether the peer has closed: a read gives EOF or an error, or a write fails.
async fn peer_closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    matches!(
        tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test(start_paused = true)]
async fn slowloris_head_is_closed() {
    let (addr, _stop) = admin().await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let head = b"GET /healthz HTTP/1.1\r\nhost: admin\r\nx-slow: ";
    let start = Instant::now();
    // One byte a second, for at most 120 s: never a whole head.
    let mut closed = false;
    for i in 0..120usize {
        let byte = head.get(i).copied().unwrap_or(b'a');
        if client.write_all(&[byte]).await.is_err() || peer_closed(&mut client).await {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        closed,
        "a 1 byte/s head held the admin connection for 120 s"
    );
    let took = start.elapsed();
    assert!(took <= Duration::from_secs(35), "closed after {took:?}");
}

#[tokio::test(start_paused = true)]
async fn silent_admin_client_is_closed() {
    let (addr, _stop) = admin().await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(60), client.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "a silent admin client must be closed: {read:?}"
    );
}
