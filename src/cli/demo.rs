//! `warden demo` (README › Command line): warden in front of in-process simulated upstreams that fail on
//! a script, with a simulated app driving traffic, so a newcomer watches a connection go
//! `healthy` → `degraded` → `circuit_open` → recovered → `needs_reauth` within a minute,
//! with nothing installed beyond the binary.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::time::Instant;

use super::run;

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// The admin listener: status page, API and metrics.
    #[arg(long, default_value = "127.0.0.1:9901")]
    pub admin: SocketAddr,
    /// How long each act of the script lasts.
    #[arg(long, default_value = "6s", value_parser = parse_duration)]
    pub step: Duration,
    /// Exit once the script has played (default: keep serving until Ctrl-C, so the status
    /// page can be looked at).
    #[arg(long)]
    pub exit: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    warden_config::parse_duration(s)
}

/// How the simulated upstreams answer, set by the script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Idp {
    Ok = 0,
    Unavailable = 1,
    InvalidClient = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mcp {
    Ok = 0,
    Down = 1,
}

/// The script, one act per `step`: what each upstream does and what the newcomer should
/// expect to see.
const ACTS: &[(Idp, Mcp, &str)] = &[
    (
        Idp::Ok,
        Mcp::Ok,
        "everything works: refreshes succeed, tool calls succeed",
    ),
    (
        Idp::Unavailable,
        Mcp::Ok,
        "the IdP answers 503: refresh failing, the connection is degraded",
    ),
    (Idp::Ok, Mcp::Ok, "the IdP is back"),
    (
        Idp::Ok,
        Mcp::Down,
        "the MCP server throws 503s: after 3 in a row the circuit opens and warden answers for it",
    ),
    (
        Idp::Ok,
        Mcp::Ok,
        "the MCP server is back: the background prober closes the circuit",
    ),
    (
        Idp::InvalidClient,
        Mcp::Ok,
        "the client secret was rotated: invalid_client, the connection needs re-authorization",
    ),
];

struct Script {
    idp: AtomicU8,
    mcp: AtomicU8,
}

impl Script {
    fn idp(&self) -> Idp {
        match self.idp.load(Ordering::Relaxed) {
            1 => Idp::Unavailable,
            2 => Idp::InvalidClient,
            _ => Idp::Ok,
        }
    }

    fn mcp(&self) -> Mcp {
        if self.mcp.load(Ordering::Relaxed) == 1 {
            Mcp::Down
        } else {
            Mcp::Ok
        }
    }
}

pub(super) fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    run::runtime()?.block_on(play(args))
}

async fn play(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let signals = run::Signals::install()?;
    let script = Arc::new(Script {
        idp: AtomicU8::new(Idp::Ok as u8),
        mcp: AtomicU8::new(Mcp::Ok as u8),
    });
    let idp = simulated(Arc::clone(&script), idp_answer).await?;
    let mcp = simulated(Arc::clone(&script), mcp_answer).await?;
    let probe = (args.step / 6).max(Duration::from_millis(100));
    let yaml = format!(
        "version: 1
admin: {{ listen: {admin} }}
defaults:
  retry: {{ max_attempts: 1 }}
  circuit: {{ consecutive_failures: 3, probe: {{ path: /health, interval: {probe}ms, max_interval: {probe}ms }} }}
connections:
  - name: demo
    mcp: {{ listen: 127.0.0.1:0, upstream: http://{mcp} }}
    oauth: {{ listen: 127.0.0.1:0, upstream: http://{idp}, token_path: /oauth2/token, circuit: {{ consecutive_failures: 100 }} }}
",
        admin = args.admin,
        probe = probe.as_millis(),
    );
    let config = warden_config::parse(&yaml, "demo").map_err(|e| anyhow::anyhow!(e.render()))?;
    let running = run::launch(&config).await.with_context(|| {
        format!(
            "is something else on {}? try --admin 127.0.0.1:0",
            args.admin
        )
    })?;
    let bound = running.proxy.bound().await;
    let route = |role| {
        bound
            .iter()
            .find(|b| b.role == role)
            .map(|b| b.addr)
            .context("the demo's routes are bound")
    };
    let (mcp_route, oauth_route) = (
        route(warden_config::Role::Mcp)?,
        route(warden_config::Role::Oauth)?,
    );
    let admin = running.admin_addr;
    println!(
        "warden demo: one connection, `demo`, with an MCP server and its IdP, both simulated."
    );
    // The page polls every 10 s by default, slower than the script moves: ask for a poll
    // that keeps up with it.
    let poll = (args.step / 6).clamp(Duration::from_millis(200), Duration::from_secs(1));
    println!(
        "  status page  http://{admin}/?poll={}  (polls every {} ms, to keep up with the script)",
        poll.as_millis(),
        poll.as_millis()
    );
    println!("  health API   http://{admin}/api/v1/connections/health");
    println!("  metrics      http://{admin}/metrics");
    println!(
        "  the app's view: MCP at http://{mcp_route}/mcp, token endpoint at http://{oauth_route}/oauth2/token"
    );
    println!();

    let started = Instant::now();
    let app = tokio::spawn(simulated_app(mcp_route, oauth_route, args.step / 4));
    let hub = running.proxy.health();
    let watcher = tokio::spawn(async move {
        let mut last = None;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tick.tick().await;
            let Some(row) = hub.rows().into_iter().next() else {
                continue;
            };
            let state = row.state;
            if last != Some(state) {
                // The event that explains the state, not merely the newest one.
                let why = row
                    .reason
                    .as_ref()
                    .map(|e| {
                        let mut s = e.kind.as_str().to_owned();
                        if let Some(code) = &e.idp_error_code {
                            s.push_str(&format!(" ({code})"));
                        } else if let Some(status) = e.status {
                            s.push_str(&format!(" ({status})"));
                        }
                        s
                    })
                    .unwrap_or_else(|| "-".to_owned());
                println!(
                    "{:>6.1}s  state: {:<13} {why}",
                    started.elapsed().as_secs_f64(),
                    state.as_str()
                );
                last = Some(state);
            }
        }
    });

    let mut terminated = std::pin::pin!(signals.split().1);
    for (i, (idp, mcp, says)) in ACTS.iter().enumerate() {
        script.idp.store(*idp as u8, Ordering::Relaxed);
        script.mcp.store(*mcp as u8, Ordering::Relaxed);
        println!(
            "{:>6.1}s  act {}: {says}",
            started.elapsed().as_secs_f64(),
            i + 1
        );
        tokio::select! {
            () = tokio::time::sleep(args.step) => {}
            _ = &mut terminated => break,
        }
    }
    app.abort();
    if !args.exit {
        println!();
        println!("the script is over; the page still shows the last state. Ctrl-C to exit.");
        terminated.await;
    }
    watcher.abort();
    running.begin_shutdown();
    running.finish_shutdown(Duration::from_secs(2)).await;
    Ok(ExitCode::SUCCESS)
}

/// The app behind warden: every `every` it refreshes its token and, when that worked, calls
/// a tool (an app without a fresh token does not call tools).
async fn simulated_app(mcp: SocketAddr, oauth: SocketAddr, every: Duration) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(20)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let refresh = Request::post(format!("http://{oauth}/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from_static(
                b"grant_type=refresh_token&refresh_token=demo-refresh-token&client_id=demo",
            )));
        let call = Request::post(format!("http://{mcp}/mcp"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#,
            )));
        let (Ok(refresh), Ok(call)) = (refresh, call) else {
            continue;
        };
        let refreshed = match client.request(refresh).await {
            Ok(resp) => {
                let ok = resp.status().is_success();
                let _ = resp.into_body().collect().await;
                ok
            }
            Err(_) => false,
        };
        if refreshed && let Ok(resp) = client.request(call).await {
            let _ = resp.into_body().collect().await;
        }
    }
}

fn idp_answer(script: &Script, _req: &Request<Incoming>) -> (StatusCode, &'static str) {
    match script.idp() {
        Idp::Ok => (
            StatusCode::OK,
            r#"{"access_token":"demo-access-token","token_type":"Bearer","expires_in":300}"#,
        ),
        Idp::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"error":"temporarily_unavailable"}"#,
        ),
        Idp::InvalidClient => (
            StatusCode::BAD_REQUEST,
            r#"{"error":"invalid_client","error_description":"client secret rotated"}"#,
        ),
    }
}

fn mcp_answer(script: &Script, _req: &Request<Incoming>) -> (StatusCode, &'static str) {
    match script.mcp() {
        Mcp::Ok => (
            StatusCode::OK,
            r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"echo"}]}}"#,
        ),
        Mcp::Down => (StatusCode::SERVICE_UNAVAILABLE, r#"{"error":"overloaded"}"#),
    }
}

/// A simulated upstream on 127.0.0.1:0 answering per the script.
async fn simulated(
    script: Arc<Script>,
    answer: fn(&Script, &Request<Incoming>) -> (StatusCode, &'static str),
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding a simulated upstream")?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let script = Arc::clone(&script);
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (status, body) = answer(&script, &req);
                    async move {
                        let mut resp =
                            Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                        *resp.status_mut() = status;
                        resp.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}
