//! The read-ahead stage: reads the start of a request body before forwarding — a token
//! request's form (for its grant type and refresh token), an MCP request's messages (which
//! are `tools/call`s) and, when retries are on, a body small enough to replay. Anything
//! larger streams on unread.

use http::HeaderMap;
use http_body_util::{LengthLimitError, Limited};
use warden_net::ClientBody;

use crate::admit::declared_length;
use crate::body::Prefixed;
use crate::exchange::TOKEN_BODY_LIMIT;
use crate::local::LocalError;

/// What the read-ahead needs to know of its route and request.
#[derive(Clone, Copy)]
pub(crate) struct ReadAhead {
    /// `limits.max_request_body_bytes`: the body is cut there whatever happens.
    pub(crate) max_body_bytes: u64,
    /// `retry.max_attempts` above 1: a body that fits `replay_bytes` is read for replay.
    pub(crate) replay: bool,
    /// `retry.max_body_bytes`.
    pub(crate) replay_bytes: u64,
    pub(crate) token_request: bool,
    /// An MCP route: which messages are `tools/call`s decides which answers are tool
    /// results.
    pub(crate) mcp: bool,
}

/// The body, limited, with as much read ahead as `plan` asks for.
pub(crate) async fn read_ahead(
    headers: &HeaderMap,
    body: ClientBody,
    plan: ReadAhead,
) -> Result<Prefixed<Limited<ClientBody>>, LocalError> {
    let body = Limited::new(
        body,
        usize::try_from(plan.max_body_bytes).unwrap_or(usize::MAX),
    );
    let mut ahead = 0;
    if plan.token_request {
        ahead = TOKEN_BODY_LIMIT.max(usize::try_from(plan.replay_bytes).unwrap_or(0));
    }
    if plan.replay && declared_length(headers).is_none_or(|len| len <= plan.replay_bytes) {
        // One byte past the replay limit tells "fits" from "too large to replay".
        ahead =
            ahead.max(usize::try_from(plan.replay_bytes.saturating_add(1)).unwrap_or(usize::MAX));
    }
    if plan.mcp {
        ahead = ahead.max(TOKEN_BODY_LIMIT);
    }
    if ahead == 0 {
        return Ok(Prefixed::streaming(body));
    }
    Prefixed::read(body, ahead).await.map_err(|err| {
        if err.is::<LengthLimitError>() {
            LocalError::BodyTooLarge
        } else {
            LocalError::ClientBody
        }
    })
}
