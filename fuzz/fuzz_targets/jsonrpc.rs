//! The JSON-RPC observer: error codes out of one JSON document, and out of an SSE stream of
//! them in arbitrary chunks. Never a panic; chunking never changes what is counted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_proxy::observe::jsonrpc::{JsonRpcSseWatcher, error_codes};

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let mut codes = Vec::new();
    error_codes(body, &mut |c| codes.push(c));

    let mut whole = Vec::new();
    let mut w = JsonRpcSseWatcher::new(4096);
    w.feed(body, &mut |c| whole.push(c));
    w.finish();
    let mut chunked = Vec::new();
    let mut w = JsonRpcSseWatcher::new(4096);
    for chunk in body.chunks(usize::from(split).max(1)) {
        w.feed(chunk, &mut |c| chunked.push(c));
    }
    w.finish();
    assert_eq!(whole, chunked, "codes depend on chunking");
});
