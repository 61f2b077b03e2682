//! The MCP tool-result reader: `tools/call` ids out of a request body, and the facts of each
//! answer message (`error.code`, `isError`) out of a JSON document or an SSE stream.
//!
//! Beyond "no panic": the fast path that skips documents without an `error`/`isError` member
//! must never skip one that holds a JSON-RPC error or a failing tool (the pre-filter is
//! sound), and SSE chunking never changes what is seen.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_proxy::observe::jsonrpc::{JsonRpcSseWatcher, MessageFacts, messages, tool_call_ids};

fn collect(body: &[u8], every_result: bool) -> Vec<MessageFacts> {
    let mut out = Vec::new();
    messages(body, every_result, &mut |m| out.push(m));
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else {
        return;
    };

    let ids = tool_call_ids(body);
    if !ids.is_empty() {
        assert!(
            body.windows(10).any(|w| w == b"tools/call"),
            "an id without a tools/call in the body"
        );
    }

    let all = collect(body, true);
    let fast = collect(body, false);
    let failing = all
        .iter()
        .any(|m| m.error_code.is_some() || m.tool_error == Some(true));
    if failing {
        assert_eq!(all, fast, "the pre-filter skipped a failure");
    } else {
        assert!(fast.is_empty() || fast == all, "the fast path invented a message");
    }

    let mut whole = Vec::new();
    let mut w = JsonRpcSseWatcher::new(4096);
    w.feed_messages(body, true, &mut |m| whole.push(m));
    w.finish();
    let mut chunked = Vec::new();
    let mut w = JsonRpcSseWatcher::new(4096);
    for chunk in body.chunks(usize::from(split).max(1)) {
        w.feed_messages(chunk, true, &mut |m| chunked.push(m));
    }
    w.finish();
    assert_eq!(whole, chunked, "messages depend on chunking");
});
