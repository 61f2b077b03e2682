//! `warden status`: the health table of a running warden, from its admin API.
//!
//! Exit codes are for scripts: 0 when every connection can serve (healthy or degraded),
//! 1 when one needs an operator (needs re-authorization or an open circuit), 2 when the
//! admin API cannot be read at all, so "unknown" is never mistaken for either.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use warden_health::{CircuitState, GrantType, HealthEvent, HealthReport, HealthRow, State};

#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// The admin listener's base URL.
    #[arg(long, default_value = "http://127.0.0.1:9901")]
    pub admin: String,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Give up on the admin API after this many seconds.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    pub timeout: u64,
}

/// Every connection can serve requests.
const OK: u8 = 0;
/// A connection needs an operator: re-authorization or an open circuit.
const ATTENTION: u8 = 1;
/// The admin API was unreachable or did not answer like one.
const UNKNOWN: u8 = 2;

/// Answers larger than this are not a health list (a few hundred bytes per connection).
const MAX_BODY: usize = 16 * 1024 * 1024;

pub(super) fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let url = match health_url(&args.admin) {
        Ok(url) => url,
        Err(err) => return Ok(unknown(&err)),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let timeout = Duration::from_secs(args.timeout.max(1));
    let fetched = runtime.block_on(async {
        tokio::time::timeout(timeout, fetch(&url))
            .await
            .unwrap_or_else(|_| Err(format!("no answer from {url} within {timeout:?}")))
    });
    let (body, server_now) = match fetched {
        Ok(answer) => answer,
        Err(err) => return Ok(unknown(&err)),
    };
    // The rows are read with the types the admin API writes them with.
    let report: HealthReport = match serde_json::from_slice(&body) {
        Ok(report) => report,
        Err(err) if err.is_data() => {
            return Ok(unknown(&format!(
                "{url} answered JSON without a connections list ({err}): is this a warden admin listener?"
            )));
        }
        Err(err) => {
            return Ok(unknown(&format!(
                "{url} did not answer JSON ({err}): is this a warden admin listener?"
            )));
        }
    };
    let rows = report.connections.as_slice();

    let mut out = std::io::stdout().lock();
    let text = if args.json {
        // The API's answer as it came, for jq and friends.
        format!("{}\n", String::from_utf8_lossy(&body).trim_end())
    } else {
        let colour = out.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        table(rows, server_now.unwrap_or_else(SystemTime::now), colour)
    };
    // A closed pipe (`| head`) is not worth an error; the exit code still says what we saw.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    let attention = rows.iter().any(needs_attention);
    Ok(ExitCode::from(if attention { ATTENTION } else { OK }))
}

fn unknown(err: &str) -> ExitCode {
    eprintln!("warden status: {err}");
    ExitCode::from(UNKNOWN)
}

/// `<admin>/api/v1/connections/health`; a bare `host:port` means plain HTTP, as the admin
/// listener speaks.
fn health_url(admin: &str) -> Result<hyper::Uri, String> {
    let admin = admin.trim();
    let rest = match admin.split_once("://") {
        Some(("http", rest)) => rest,
        Some(_) => {
            return Err(format!(
                "--admin {admin}: the admin listener speaks plain http:// (reach a remote one through a tunnel or port-forward)"
            ));
        }
        None => admin,
    };
    // Anything after the authority is kept: an admin listener mounted under a path prefix.
    let base = rest.trim_end_matches('/');
    if base.is_empty() || base.starts_with('/') {
        return Err(format!("--admin {admin}: no host"));
    }
    let url = format!("http://{base}/api/v1/connections/health");
    url.parse()
        .map_err(|err| format!("--admin {admin}: not a URL ({err})"))
}

/// The answer's body and the server's clock (its `Date` header), or a one-line reason.
async fn fetch(url: &hyper::Uri) -> Result<(Bytes, Option<SystemTime>), String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let req = hyper::Request::get(url.clone())
        .header(hyper::header::ACCEPT, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("warden-status/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::new())
        .map_err(|err| format!("{url}: {err}"))?;
    let resp = client
        .request(req)
        .await
        .map_err(|err| format!("admin API unreachable at {url}: {}", root_cause(&err)))?;
    let status = resp.status();
    let server_now = resp
        .headers()
        .get(hyper::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|date| httpdate::parse_http_date(date).ok());
    let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|err| format!("reading the answer from {url}: {err}"))?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("{url} answered {status}"));
    }
    Ok((body, server_now))
}

/// The innermost error: "Connection refused (os error 111)" says more than hyper's
/// "client error (Connect)".
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn needs_attention(row: &HealthRow) -> bool {
    matches!(row.state, State::NeedsReauth | State::CircuitOpen)
        || row.needs_reauth
        || row.circuit.iter().any(|(_, c)| c == CircuitState::Open)
}

/// REASON is the event that explains the state (blank when healthy); LAST EVENT is merely
/// the newest, which may be bookkeeping.
const HEADERS: [&str; 7] = [
    "NAME",
    "STATE",
    "CIRCUITS",
    "IDP CODE",
    "REASON",
    "LAST EVENT",
    "AGE",
];

/// The aligned table. Colour, when on, marks only the state (and open circuits): padding is
/// computed on the plain text so escape codes never shift a column.
fn table(rows: &[HealthRow], now: SystemTime, colour: bool) -> String {
    let cells: Vec<[String; 7]> = rows.iter().map(|row| cells(row, now)).collect();
    let mut widths = HEADERS.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: [String; 7] = HEADERS.map(str::to_owned);
    for (i, row) in std::iter::once(&header).chain(&cells).enumerate() {
        let mut line = String::new();
        for (col, (cell, width)) in row.iter().zip(widths).enumerate() {
            let last = col == HEADERS.len() - 1;
            let pad = if last {
                0
            } else {
                width - cell.chars().count() + 2
            };
            let painted = match (colour, i, col) {
                (true, 0, _) => paint(cell, "1"),
                (true, _, 1) => paint(cell, state_colour(cell)),
                (true, _, 2) if cell.contains(":open") => paint(cell, "31"),
                _ => cell.clone(),
            };
            let _ = write!(line, "{painted}{:pad$}", "");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    for row in rows.iter().filter(|r| r.state == State::NeedsReauth) {
        let code = row.idp_error_code.as_deref();
        let _ = writeln!(out, "\n{}: {}", row.name, reauth_advice(code));
    }
    out
}

/// What an operator should do about a connection in `needs_reauth`: a rejected client
/// secret must be fixed before a new login can succeed.
fn reauth_advice(code: Option<&str>) -> String {
    match code {
        Some("invalid_client") => {
            "the IdP answered invalid_client: fix the client secret first, then reconnect"
                .to_owned()
        }
        Some(code) => format!("the IdP answered {code}: reconnect (log in again)"),
        None => "reconnect (log in again)".to_owned(),
    }
}

fn state_colour(state: &str) -> &'static str {
    match state {
        "healthy" => "32",
        "degraded" | "circuit_open" => "33",
        "needs_reauth" => "1;31",
        _ => "0",
    }
}

fn paint(text: &str, sgr: &str) -> String {
    format!("\x1b[{sgr}m{text}\x1b[0m")
}

/// `type role status error_kind [grant]`: an event in one cell.
fn describe(event: Option<&HealthEvent>) -> String {
    let Some(event) = event else {
        return "-".to_owned();
    };
    let mut parts = vec![event.kind.as_str().to_owned()];
    if let Some(role) = event.role {
        parts.push(role.as_str().to_owned());
    }
    if let Some(status) = event.status {
        parts.push(status.to_string());
    }
    if let Some(kind) = event.error_kind {
        parts.push(kind.as_str().to_owned());
    }
    // A failed client_credentials grant is not a failed refresh, whatever the type says.
    if let Some(grant) = event.grant_type
        && grant != GrantType::RefreshToken
    {
        parts.push(format!("grant={grant}"));
    }
    parts.join(" ")
}

fn cells(row: &HealthRow, now: SystemTime) -> [String; 7] {
    let text = |v: Option<&str>| v.filter(|s| !s.is_empty()).unwrap_or("-").to_owned();
    let circuits: Vec<String> = row
        .circuit
        .iter()
        .map(|(role, state)| format!("{role}:{}", state.as_str()))
        .collect();
    let circuits = if circuits.is_empty() {
        "-".to_owned()
    } else {
        circuits.join(",")
    };
    let event = row.last_event.as_ref();
    let age = event
        .map(|event| age(now.duration_since(event.at).unwrap_or(Duration::ZERO)))
        .unwrap_or_else(|| "-".to_owned());
    [
        text(Some(&row.name)),
        row.state.as_str().to_owned(),
        circuits,
        text(row.idp_error_code.as_deref()),
        describe(row.reason.as_ref()),
        describe(event),
        age,
    ]
}

/// `12s`, `5m`, `3h`, `2d`: the largest unit that fits, as `kubectl get` shows ages.
fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s}s"),
        120..7_200 => format!("{}m", s / 60),
        7_200..172_800 => format!("{}h", s / 3_600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(age(Duration::from_secs(12)), "12s");
        assert_eq!(age(Duration::from_secs(300)), "5m");
        assert_eq!(age(Duration::from_secs(3 * 3600)), "3h");
        assert_eq!(age(Duration::from_secs(5 * 86_400)), "5d");
    }

    #[test]
    fn admin_urls() {
        assert_eq!(
            health_url("127.0.0.1:9901").expect("ok").to_string(),
            "http://127.0.0.1:9901/api/v1/connections/health"
        );
        assert_eq!(
            health_url("http://localhost:9901/")
                .expect("ok")
                .to_string(),
            "http://localhost:9901/api/v1/connections/health"
        );
        assert_eq!(
            health_url("http://127.0.0.1:8001/proxy/warden/")
                .expect("ok")
                .to_string(),
            "http://127.0.0.1:8001/proxy/warden/api/v1/connections/health"
        );
        assert!(health_url("https://localhost:9901").is_err());
        assert!(health_url("http://").is_err());
        assert!(health_url("").is_err());
        assert!(health_url("http://bad host").is_err());
    }

    #[test]
    fn columns_stay_aligned_with_colour() {
        let rows: Vec<HealthRow> = serde_json::from_str(
            r#"[{"name":"crm","state":"needs_reauth","idp_error_code":"invalid_client","circuit":{"mcp":"open"},"last_event":null},
                {"name":"a-much-longer-name","state":"healthy","circuit":{},"last_event":null}]"#,
        )
        .expect("json");
        let plain = table(&rows, SystemTime::now(), false);
        let coloured = table(&rows, SystemTime::now(), true);
        let strip = |s: &str| {
            let mut out = String::new();
            let mut esc = false;
            for c in s.chars() {
                match (esc, c) {
                    (false, '\x1b') => esc = true,
                    (true, 'm') => esc = false,
                    (false, c) => out.push(c),
                    _ => {}
                }
            }
            out
        };
        assert_ne!(plain, coloured);
        assert_eq!(plain, strip(&coloured));
        let lines: Vec<&str> = plain.lines().collect();
        let col = lines[0].find("STATE").expect("header");
        assert_eq!(lines[1].find("needs_reauth"), Some(col));
        assert_eq!(lines[2].find("healthy"), Some(col));
        assert!(
            plain.contains("crm: the IdP answered invalid_client: fix the client secret first")
        );
    }
}
