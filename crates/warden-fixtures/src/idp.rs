//! Scripted OAuth IdPs: token endpoints that rotate refresh tokens, or hold their answer
//! until a test releases it. (An IdP that answers a fixed script is
//! [`crate::upstream::scripted`].)

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::upstream::{Upstream, json_answer, read};

/// A rotating IdP: the first use of a refresh token gets `at-for-<token>` and
/// `next-<token>`, any reuse `invalid_grant`, as providers that rotate refresh tokens do.
/// Each answer comes after `hold` (on tokio's clock), so a burst can gather meanwhile; the
/// counter says how many grants reached it.
pub async fn rotating(hold: Duration) -> (Upstream, Arc<AtomicUsize>) {
    let used = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    let idp = Upstream::start(move |req| {
        let used = Arc::clone(&used);
        h.fetch_add(1, Ordering::SeqCst);
        async move {
            let seen = read(req).await;
            let form = String::from_utf8_lossy(&seen.body).into_owned();
            let token = form
                .split('&')
                .find_map(|kv| kv.strip_prefix("refresh_token="))
                .unwrap_or_default()
                .to_owned();
            tokio::time::sleep(hold).await;
            let uses = {
                let mut used = used.lock().expect("used");
                let n = used.entry(token.clone()).or_default();
                *n += 1;
                *n
            };
            if uses == 1 {
                json_answer(
                    200,
                    format!(
                        r#"{{"access_token":"at-for-{token}","refresh_token":"next-{token}"}}"#
                    ),
                )
            } else {
                json_answer(400, r#"{"error":"invalid_grant"}"#)
            }
        }
    })
    .await;
    (idp, hits)
}

/// An IdP whose token endpoint holds each answer until released.
pub struct Held {
    /// The IdP.
    pub upstream: Upstream,
    /// Notified as each grant arrives.
    pub arrived: Arc<Notify>,
    /// Notify it to let one held answer go.
    pub release: Arc<Notify>,
    /// Grants that reached it.
    pub hits: Arc<AtomicUsize>,
}

impl Held {
    /// Answers `status` with `body` (JSON) once released.
    pub async fn start(status: u16, body: impl Into<Bytes>) -> Held {
        let body: Bytes = body.into();
        let arrived = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let hits = Arc::new(AtomicUsize::new(0));
        let (a, r, h) = (
            Arc::clone(&arrived),
            Arc::clone(&release),
            Arc::clone(&hits),
        );
        let upstream = Upstream::start(move |_req| {
            h.fetch_add(1, Ordering::SeqCst);
            let (arrived, release, body) = (Arc::clone(&a), Arc::clone(&r), body.clone());
            async move {
                arrived.notify_one();
                release.notified().await;
                json_answer(status, body)
            }
        })
        .await;
        Held {
            upstream,
            arrived,
            release,
            hits,
        }
    }

    /// Grants that reached it so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}
