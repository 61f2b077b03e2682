//! The form-body readers behind `grant_type` gating and refresh coalescing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_proxy::exchange::{form_field, grant_type};

fuzz_target!(|data: &[u8]| {
    let _ = grant_type(data);
    if let Some(v) = form_field(data, b"refresh_token") {
        // Decoding never makes a value longer than its encoded form.
        assert!(v.len() <= data.len());
    }
});
