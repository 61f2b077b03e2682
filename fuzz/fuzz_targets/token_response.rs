//! The token-response reader: never a panic, and it never claims a token it did not see.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_proxy::exchange::TokenAnswer;

fuzz_target!(|data: &[u8]| {
    let answer = TokenAnswer::parse(data);
    if answer.has_access_token {
        assert!(data.windows(12).any(|w| w == b"access_token"));
    }
});
