//! The SSE observer fed arbitrary bytes in arbitrary chunks: never a panic, memory bounded by
//! its event limit, and the same events whatever the chunking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_proxy::observe::sse::SseObserver;

const MAX_EVENT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let mut whole = Vec::new();
    let mut one = SseObserver::new(MAX_EVENT);
    one.feed(body, &mut |d| {
        assert!(d.len() <= MAX_EVENT);
        whole.push(d.to_vec());
    });
    one.finish();

    let step = usize::from(split).max(1);
    let mut chunked = Vec::new();
    let mut many = SseObserver::new(MAX_EVENT);
    for chunk in body.chunks(step) {
        many.feed(chunk, &mut |d| chunked.push(d.to_vec()));
    }
    many.finish();
    assert_eq!(whole, chunked, "events depend on chunking");
});
