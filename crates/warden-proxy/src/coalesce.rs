//! Refresh coalescing (SPEC §5): concurrent `refresh_token` grants carrying the same refresh
//! token share one upstream exchange and all get its answer, byte for byte. A rotating IdP
//! then never sees one refresh token twice from a burst — the race that otherwise looks like
//! `invalid_grant` and revokes a healthy connection.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use tokio::sync::watch;
use warden_config::Verdict;

use crate::body::ResponseBody;
use crate::local::LocalError;

/// A finished token exchange, as every waiting caller gets it.
pub(crate) struct Shared {
    pub answer: Result<(StatusCode, HeaderMap, Bytes), LocalError>,
    pub verdict: Verdict,
}

impl Shared {
    /// What every caller of a coalesced exchange gets. A token answer too large to have been
    /// read whole cannot be handed to several callers; it is reported as a broken exchange.
    pub fn from_result(result: crate::attempt::AttemptResult) -> Shared {
        let verdict = result.verdict();
        let answer = match result.outcome {
            Ok((resp, _)) => {
                let (parts, body) = resp.into_parts();
                match body.complete_bytes() {
                    Some(bytes) => Ok((parts.status, parts.headers, bytes)),
                    None => Err(LocalError::Unreachable(warden_config::ErrorKind::Reset)),
                }
            }
            Err(local) => Err(local),
        };
        Shared { answer, verdict }
    }

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

    pub fn subscribe(&self) -> Slot {
        self.tx.subscribe()
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
