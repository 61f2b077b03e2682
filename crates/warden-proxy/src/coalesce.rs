//! Refresh coalescing (SPEC §5): concurrent `refresh_token` grants carrying the same refresh
//! token share one upstream exchange and all get its answer, byte for byte. A rotating IdP
//! then never sees one refresh token twice from a burst — the race that otherwise looks like
//! `invalid_grant` and revokes a healthy connection.
//!
//! The requester whose grant went upstream always gets the IdP's answer whole, whatever
//! its size; the others share it when it fits [`SHARE_LIMIT`], else get a 502
//! `coalesced_answer_too_large`. Never a replay.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::BodyExt as _;
use tokio::sync::watch;
use tokio::time::Instant;
use warden_config::{ErrorKind, Verdict};

use crate::attempt::AttemptResult;
use crate::body::ResponseBody;
use crate::local::LocalError;
use crate::record::{Exchanged, Pending};

/// How much of a coalesced token answer is kept to hand to every requester. Token
/// answers are a few hundred bytes; one this large is an IdP misbehaving, and the
/// requester whose grant went upstream still gets it whole.
pub(crate) const SHARE_LIMIT: usize = 1024 * 1024;

/// A finished token exchange, as every waiting caller gets it.
pub(crate) struct Shared {
    pub answer: Result<(StatusCode, HeaderMap, Bytes), LocalError>,
    pub verdict: Verdict,
}

impl Shared {
    pub fn response(&self, connection: &str, role: warden_config::Role) -> Response<ResponseBody> {
        match &self.answer {
            Ok((status, headers, body)) => {
                let mut resp = Response::new(ResponseBody::local(body.clone()));
                *resp.status_mut() = *status;
                *resp.headers_mut() = headers.clone();
                resp
            }
            Err(local) => local.response(connection, role),
        }
    }
}

/// What the requester whose grant went upstream gets: the shared answer, or (when it was
/// too large to share) the upstream's own, byte for byte, with the attempt still to be
/// recorded when it ends.
pub(crate) struct LeaderAnswer {
    pub response: Response<ResponseBody>,
    pub pending: Option<Pending>,
    pub verdict: Verdict,
    /// What the access log says about the upstream exchange; `None` for a request that
    /// shared another's.
    pub exchange: Option<Exchanged>,
}

/// Splits a finished exchange into what the followers share and what the leader gets.
/// An answer that was not read whole yet is read on up to [`SHARE_LIMIT`] (before
/// `deadline`); past that the followers get `coalesced_answer_too_large` and the leader
/// the answer itself, resumed where the reading stopped.
pub(crate) async fn share(
    result: AttemptResult,
    deadline: Instant,
    connection: &str,
    role: warden_config::Role,
) -> (Shared, LeaderAnswer) {
    let verdict = result.verdict();
    let exchange = Some(result.exchanged());
    let pending = result.pending;
    let together = |answer: Result<(StatusCode, HeaderMap, Bytes), LocalError>| {
        let shared = Shared { answer, verdict };
        let leader = LeaderAnswer {
            response: shared.response(connection, role),
            pending: None,
            verdict,
            exchange: exchange.clone(),
        };
        (shared, leader)
    };
    let resp = match result.outcome {
        Err(local) => {
            if let Some(p) = pending {
                p.settle();
            }
            return together(Err(local));
        }
        Ok((resp, _)) => resp,
    };
    let (parts, mut body) = resp.into_parts();
    if let Some(bytes) = body.complete_bytes() {
        if let Some(p) = pending {
            p.settle();
        }
        return together(Ok((parts.status, parts.headers, bytes)));
    }
    let mut buf = BytesMut::new();
    let read = tokio::time::timeout_at(deadline, async {
        while buf.len() <= SHARE_LIMIT {
            match body.frame().await {
                None => return Ok(true),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => buf.extend_from_slice(&data),
                    // Trailers end a body; a token answer's carry nothing to keep.
                    Err(_) => return Ok(true),
                },
                Some(Err(err)) => return Err(err),
            }
        }
        Ok(false)
    })
    .await;
    let timed_out = read.is_err();
    match read {
        Ok(Ok(true)) => {
            if let Some(p) = pending {
                p.settle();
            }
            together(Ok((parts.status, parts.headers, buf.freeze())))
        }
        Ok(Err(err)) => {
            tracing::debug!(connection, error = %err, "coalesced token answer broke off");
            if let Some(p) = pending {
                p.settle_broken();
            }
            let mut pair = together(Err(LocalError::Unreachable(ErrorKind::Reset)));
            pair.0.verdict = Verdict::Transient;
            pair.1.verdict = Verdict::Transient;
            pair
        }
        // Too large, or too slow, to share: the leader streams on.
        Ok(Ok(false)) | Err(_) => {
            let shared = Shared {
                answer: Err(if timed_out {
                    LocalError::Timeout
                } else {
                    LocalError::CoalescedTooLarge
                }),
                verdict,
            };
            let leader = LeaderAnswer {
                response: Response::from_parts(parts, ResponseBody::resumed(buf.freeze(), body)),
                pending,
                verdict,
                exchange,
            };
            (shared, leader)
        }
    }
}

type Slot = watch::Receiver<Option<Arc<Shared>>>;

/// The exchanges in flight, keyed by a keyed hash of the refresh token: the token itself is
/// never kept.
#[derive(Default)]
pub(crate) struct Coalescer {
    in_flight: Mutex<HashMap<u64, Slot>>,
    keys: RandomState,
}

pub(crate) enum Joined {
    /// Nobody is refreshing this token: the caller runs the exchange and publishes it.
    Lead(Publisher),
    /// An exchange is in flight: wait for it.
    Follow(Slot),
}

/// Publishes the leader's answer and retires the key.
pub(crate) struct Publisher {
    key: u64,
    tx: watch::Sender<Option<Arc<Shared>>>,
    coalescer: Arc<Coalescer>,
}

impl Publisher {
    pub fn publish(self, shared: Arc<Shared>) {
        // Retire the key first: a grant that arrives after this answer is a new exchange.
        self.coalescer.lock().remove(&self.key);
        let _ = self.tx.send(Some(shared));
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // Published or not, the key must not outlive its exchange; waiting callers see
        // the sender go and answer 502 themselves.
        let mut map = self.coalescer.lock();
        if map
            .get(&self.key)
            .is_some_and(|slot| slot.same_channel(&self.tx.subscribe()))
        {
            map.remove(&self.key);
        }
    }
}

impl Coalescer {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Slot>> {
        self.in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn key(&self, refresh_token: &[u8]) -> u64 {
        self.keys.hash_one(refresh_token)
    }

    pub fn join(self: &Arc<Self>, key: u64) -> Joined {
        let mut map = self.lock();
        if let Some(slot) = map.get(&key) {
            return Joined::Follow(slot.clone());
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key, rx);
        Joined::Lead(Publisher {
            key,
            tx,
            coalescer: Arc::clone(self),
        })
    }
}

/// Waits for the exchange behind `slot`; None when it ended without an answer.
pub(crate) async fn wait(mut slot: Slot) -> Option<Arc<Shared>> {
    let answer = slot.wait_for(Option::is_some).await.ok()?;
    answer.clone()
}
