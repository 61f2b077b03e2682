//! Refresh coalescing (README › Retries, "Refresh coalescing"): concurrent `refresh_token`
//! grants carrying the same refresh token share one upstream exchange and all get its
//! answer, byte for byte. A rotating IdP then never sees one refresh token twice from a
//! burst — the race that otherwise looks like `invalid_grant` and revokes a healthy
//! connection. The waiting itself is a generic [`SingleFlight`]; what is token-specific
//! (the keyed hash of the token, sharing the answer's bytes) is here.
//!
//! The requester whose grant went upstream always gets the IdP's answer whole, whatever
//! its size; the others share it when it fits [`SHARE_LIMIT`], else get a 502
//! `coalesced_answer_too_large`. Never a replay.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::BodyExt as _;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use warden_config::{ErrorKind, Role, Verdict};

use crate::attempt::AttemptResult;
use crate::body::ResponseBody;
use crate::local::LocalError;
use crate::record::{Exchanged, Pending};
use crate::single_flight::{self, Joined, SingleFlight};

/// How much of a coalesced token answer is kept to hand to every requester. Token
/// answers are a few hundred bytes; one this large is an IdP misbehaving, and the
/// requester whose grant went upstream still gets it whole.
pub(crate) const SHARE_LIMIT: usize = 1024 * 1024;

/// A finished token exchange, as every waiting caller gets it.
pub(crate) struct SharedAnswer {
    pub(crate) answer: Result<(StatusCode, HeaderMap, Bytes), LocalError>,
    pub(crate) verdict: Verdict,
}

impl SharedAnswer {
    pub(crate) fn response(&self, connection: &str, role: Role) -> Response<ResponseBody> {
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
    pub(crate) response: Response<ResponseBody>,
    pub(crate) pending: Option<Pending>,
    pub(crate) verdict: Verdict,
    /// What the access log says about the upstream exchange; `None` for a request that
    /// shared another's.
    pub(crate) exchange: Option<Exchanged>,
}

/// Splits a finished exchange into what the followers share and what the leader gets.
/// An answer that was not read whole yet is read on up to [`SHARE_LIMIT`] (before
/// `deadline`); past that the followers get `coalesced_answer_too_large` and the leader
/// the answer itself, resumed where the reading stopped.
pub(crate) async fn share(
    result: AttemptResult,
    deadline: Instant,
    connection: &str,
    role: Role,
) -> (SharedAnswer, LeaderAnswer) {
    let verdict = result.verdict();
    let exchange = Some(result.exchanged());
    let pending = result.pending;
    let together = |answer: Result<(StatusCode, HeaderMap, Bytes), LocalError>| {
        let shared = SharedAnswer { answer, verdict };
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
            let shared = SharedAnswer {
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

/// Refresh grants in flight, keyed by a keyed hash of the refresh token: the token itself
/// is never kept.
pub(crate) struct RefreshFlights {
    flights: SingleFlight<u64, SharedAnswer>,
    keys: RandomState,
    /// The proxy's drain tracker: each exchange is one of its tasks, so a drain waits for it
    /// even when every caller has gone.
    tasks: TaskTracker,
}

impl RefreshFlights {
    pub(crate) fn new(tasks: TaskTracker) -> Self {
        RefreshFlights {
            flights: SingleFlight::default(),
            keys: RandomState::new(),
            tasks,
        }
    }

    pub(crate) fn key(&self, refresh_token: &[u8]) -> u64 {
        self.keys.hash_one(refresh_token)
    }
}

/// A refresh grant: joins the exchange already in flight for the same refresh token, or
/// starts `exchange()` for it. The exchange runs on its own task, so a caller that goes
/// away does not cancel it for the others and a drain waits for it; it is made there too,
/// so the caller's future does not carry the exchange's.
pub(crate) async fn coalesced<E, F>(
    flights: &RefreshFlights,
    key: u64,
    exchange: E,
    deadline: Instant,
    connection: &str,
    role: Role,
) -> LeaderAnswer
where
    E: FnOnce() -> F + Send + 'static,
    F: Future<Output = AttemptResult> + Send,
{
    let publisher = match flights.flights.join(key) {
        Joined::Follow(waiter) => {
            tracing::debug!(connection, "refresh grant joins the exchange in flight");
            let shared = single_flight::wait(waiter).await.unwrap_or_else(|| {
                Arc::new(SharedAnswer {
                    answer: Err(LocalError::Unreachable(ErrorKind::Reset)),
                    verdict: Verdict::Transient,
                })
            });
            return LeaderAnswer {
                response: shared.response(connection, role),
                pending: None,
                verdict: shared.verdict,
                exchange: None,
            };
        }
        Joined::Lead(publisher) => publisher,
    };
    let (own_tx, own_rx) = tokio::sync::oneshot::channel::<LeaderAnswer>();
    let owned = connection.to_owned();
    flights.tasks.spawn(async move {
        let result = exchange().await;
        let (shared, own) = share(result, deadline, &owned, role).await;
        publisher.publish(Arc::new(shared));
        if let Err(own) = own_tx.send(own)
            && let Some(pending) = own.pending
        {
            // The requester went away: nobody reads the rest, record it as it stands.
            pending.settle();
        }
    });
    own_rx.await.unwrap_or_else(|_| LeaderAnswer {
        response: LocalError::Unreachable(ErrorKind::Reset).response(connection, role),
        pending: None,
        verdict: Verdict::Transient,
        exchange: None,
    })
}
