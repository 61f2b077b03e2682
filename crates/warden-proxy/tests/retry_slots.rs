//! `limits.max_concurrent_retries`, in-process on paused time. A binary of its own: the
//! slots' gauge `warden_retries_in_flight` is proxy-wide, so no other test may move it.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use support::{retries, scrape, start};
use warden_config::Role;
use warden_fixtures::client::{get, http_client};
use warden_fixtures::config::named_route;
use warden_fixtures::metrics::metric;
use warden_fixtures::upstream::{Upstream, json_answer};

#[tokio::test(start_paused = true)]
async fn retries_in_flight_never_exceed_max_concurrent_retries() {
    const MAX: usize = 5;
    let name = "slots";
    let current = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (c, p) = (Arc::clone(&current), Arc::clone(&peak));
    let up = Upstream::start(move |req| {
        let (c, p) = (Arc::clone(&c), Arc::clone(&p));
        let retry = req.headers().contains_key("x-warden-attempt");
        async move {
            if retry {
                let now = c.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
            }
            // Slow answers, so the 20 requests and their retries overlap.
            tokio::time::sleep(Duration::from_millis(150)).await;
            if retry {
                c.fetch_sub(1, Ordering::SeqCst);
            }
            json_answer(503, "")
        }
    })
    .await;
    let yaml = format!(
        "{}defaults:\n  retry: {{ max_attempts: 3, backoff: {{ base: 1ms, max: 5ms }}, budget: {{ ratio: 1.0, min_per_second: 1000 }} }}\n  circuit: {{ consecutive_failures: 1000 }}\nlimits: {{ max_concurrent_retries: {MAX} }}\n",
        named_route(name, "api", &up.url(), "")
    );
    let running = start(&yaml).await;
    let addr = running.addr(name, Role::Api).await;
    let client = http_client();
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { get(&client, &format!("http://{addr}/")).await.status })
        })
        .collect();
    for r in requests {
        assert_eq!(r.await.expect("task"), 503);
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= MAX, "{peak} retries at the upstream at once");
    assert_eq!(
        peak, MAX,
        "the slots were all used: the test proves something"
    );
    let m = scrape();
    assert!(retries(name, "concurrency_limited") > 0.0, "{m}");
    assert_eq!(
        metric(&m, "warden_retries_in_flight", &[]),
        Some(0.0),
        "every slot was given back: {m}"
    );
}
