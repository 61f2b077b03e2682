//! One TLS handshake at a time while the upstream may speak h2.
//!
//! An h2 upstream needs one connection, which every request shares. Requests that arrive
//! while there is none (the first burst, or every request in flight when the connection
//! closes) would each open their own and keep only the last: up to
//! `limits.max_upstream_per_route` TLS handshakes at once against an upstream that wanted
//! one, the herd a sidecar is there to prevent. So while the upstream's protocol is h2 or not
//! yet known, the first request to connect leads and the others wait for its handshake: on h2
//! they share its connection; on HTTP/1.1, which needs a connection per request in flight,
//! or a failure, each opens its own as before. Once an upstream has answered HTTP/1.1,
//! connects do not wait for each other.

use std::sync::Mutex;

use tokio::sync::Notify;

/// What the upstream's last handshake chose by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Alpn {
    #[default]
    Unknown,
    Http1,
    H2,
}

#[derive(Debug, Default)]
struct State {
    alpn: Alpn,
    /// A connect is under way that the others wait for.
    leading: bool,
}

/// The route's handshakes, as far as they decide who connects.
#[derive(Debug, Default)]
pub(super) struct Negotiation {
    state: Mutex<State>,
    settled: Notify,
}

/// Who opens the next connection.
#[derive(Debug)]
pub(super) enum Turn<'a> {
    /// This request connects; the others wait until the guard settles or drops.
    Lead(Leading<'a>),
    /// A leader's handshake ended: share its h2 connection if there is one, else connect.
    Followed,
    /// The upstream speaks HTTP/1.1: connect without waiting.
    Alone,
}

impl Negotiation {
    /// This request's turn. Waits (unbounded: the caller's connect timeout bounds it) while
    /// another request's connect may yield an h2 connection to share.
    pub(super) async fn turn(&self) -> Turn<'_> {
        let settled = self.settled.notified();
        let mut settled = std::pin::pin!(settled);
        // Registered before looking, so a leader that settles in between still wakes us.
        settled.as_mut().enable();
        {
            let mut state = self.lock();
            if state.alpn == Alpn::Http1 {
                return Turn::Alone;
            }
            if !state.leading {
                state.leading = true;
                return Turn::Lead(Leading {
                    negotiation: self,
                    settled: false,
                });
            }
        }
        settled.await;
        Turn::Followed
    }

    /// What a connection opened without the turn negotiated, so that an upstream that
    /// turned h2 on is shared from then on.
    pub(super) fn learned(&self, alpn: Alpn) {
        self.lock().alpn = alpn;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is two plain fields, consistent after every statement: a panic while
        // holding the lock cannot leave it half-written.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The leader's guard: whatever happens to the leading request (its connect fails, or the
/// request is cancelled), the waiting ones are released.
#[derive(Debug)]
pub(super) struct Leading<'a> {
    negotiation: &'a Negotiation,
    settled: bool,
}

impl Leading<'_> {
    /// The handshake chose `alpn`. With h2 the caller has already made the connection the
    /// route's shared one, so the released requests find it.
    pub(super) fn settle(mut self, alpn: Alpn) {
        self.negotiation.lock().alpn = alpn;
        self.release();
        self.settled = true;
    }

    fn release(&self) {
        self.negotiation.lock().leading = false;
        self.negotiation.settled.notify_waiters();
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn is_lead(turn: &Turn<'_>) -> bool {
        matches!(turn, Turn::Lead(_))
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_connect_leads_and_the_others_wait_for_it() {
        let negotiation = Arc::new(Negotiation::default());
        let Turn::Lead(lead) = negotiation.turn().await else {
            panic!("the first connect leads");
        };
        let follower = {
            let negotiation = Arc::clone(&negotiation);
            tokio::spawn(async move { matches!(negotiation.turn().await, Turn::Followed) })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!follower.is_finished(), "a follower waits for the leader");
        lead.settle(Alpn::H2);
        assert!(follower.await.expect("follower"), "released as a follower");
        // h2 known, nobody leading: the next connect (the shared one closed) leads again.
        assert!(is_lead(&negotiation.turn().await));
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_that_goes_away_releases_the_others() {
        let negotiation = Arc::new(Negotiation::default());
        let lead = negotiation.turn().await;
        assert!(is_lead(&lead));
        let follower = {
            let negotiation = Arc::clone(&negotiation);
            tokio::spawn(async move { matches!(negotiation.turn().await, Turn::Followed) })
        };
        tokio::task::yield_now().await;
        drop(lead);
        assert!(follower.await.expect("follower"));
        assert!(is_lead(&negotiation.turn().await), "nobody is left leading");
    }

    #[tokio::test(start_paused = true)]
    async fn once_the_upstream_answered_http1_nobody_waits() {
        let negotiation = Negotiation::default();
        let Turn::Lead(lead) = negotiation.turn().await else {
            panic!("the first connect leads");
        };
        lead.settle(Alpn::Http1);
        assert!(matches!(negotiation.turn().await, Turn::Alone));
        assert!(matches!(negotiation.turn().await, Turn::Alone));
        negotiation.learned(Alpn::H2);
        assert!(
            is_lead(&negotiation.turn().await),
            "an upstream that turned h2 on"
        );
    }
}
