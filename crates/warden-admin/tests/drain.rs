//! The admin listener stops as every listener does: at shutdown it stops accepting, answers
//! the requests in flight, and only then does `serve` return.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use warden_admin::{AdminServer, AdminState, ConnectionsApi, Readiness};
use warden_health::{HealthDetail, HealthReport, HealthRow};

/// A bound on each wait for something the test expects to happen.
const DEADLINE: Duration = Duration::from_secs(10);

/// A health API whose answer is held until the test releases it, so a request is in flight
/// for as long as the test needs.
struct Held {
    entered: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl ConnectionsApi for Held {
    fn health(&self) -> HealthReport {
        let _ = self.entered.lock().expect("entered").send(());
        let _ = self.release.lock().expect("release").recv_timeout(DEADLINE);
        HealthReport::default()
    }

    fn connection(&self, _name: &str) -> Option<HealthDetail> {
        None
    }

    fn reset(&self, _name: &str) -> Option<HealthRow> {
        None
    }
}

// Two workers: the held answer blocks one of them, as a slow admin call would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_stops_accepting_and_drains_on_shutdown() {
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let state = AdminState {
        readiness: Arc::new(Readiness::default()),
        metrics: PrometheusBuilder::new().build_recorder().handle(),
        connections: Some(Arc::new(Held {
            entered: Mutex::new(entered_tx),
            release: Mutex::new(release_rx),
        })),
        token: None,
    };
    let server = AdminServer::bind("127.0.0.1:0".parse().expect("addr"), state)
        .await
        .expect("bind");
    let addr = server.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let serving = tokio::spawn(server.serve(stop.clone()));

    let mut client = TcpStream::connect(addr).await.expect("connect");
    client
        .write_all(b"GET /api/v1/connections/health HTTP/1.1\r\nhost: admin\r\n\r\n")
        .await
        .expect("write");
    tokio::task::spawn_blocking(move || entered.recv_timeout(DEADLINE))
        .await
        .expect("join")
        .expect("the request reaches the health API");

    stop.cancel();
    // Stops accepting: connects are refused once the accept loop has let the listener go.
    let deadline = Instant::now() + DEADLINE;
    let mut refused = false;
    for _ in 0..100_000 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(refused, "the admin listener still accepts");
    assert!(
        !serving.is_finished(),
        "serve returned with a request in flight"
    );

    release.send(()).expect("release");
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, client.read_to_end(&mut answer))
        .await
        .expect("the connection closes after its answer")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#"{"connections":[]}"#), "{answer}");
    tokio::time::timeout(DEADLINE, serving)
        .await
        .expect("serve returns once drained")
        .expect("serve task");
}
