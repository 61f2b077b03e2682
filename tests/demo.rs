//! `warden demo` plays its whole script: every state shows up, in order.

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_demo_reaches_every_state_in_order() {
    let mut child = Command::new(support::warden_bin())
        .args([
            "demo",
            "--admin",
            "127.0.0.1:0",
            "--step",
            "400ms",
            "--exit",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    // Six acts of 400 ms: the script is done in under 3 s; allow for a slow machine.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the demo did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read stdout");
    assert!(status.success(), "{out}");
    assert!(out.contains("status page  http://127.0.0.1:"), "{out}");
    assert!(out.contains("/metrics"), "{out}");
    let states: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split("state: ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    let expected = [
        "healthy",
        "degraded",
        "healthy",
        "degraded",
        "circuit_open",
        "healthy",
        "needs_reauth",
    ];
    // Exactly these changes: a token success during the MCP outage must not flip the
    // connection back to healthy on the way to circuit_open.
    assert_eq!(states, expected, "{out}");
    assert!(
        out.contains("/?poll="),
        "the page URL keeps up with the script: {out}"
    );
    assert!(out.contains("(invalid_client)"), "{out}");
}
