//! The sanitizer that turns upstream-chosen strings into label values and event codes (README ›
//! Classification): never a panic; the output is `redacted` or only `[A-Za-z0-9_.-]`, at most 200 bytes,
//! and never spells a URL.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_policy::{MAX_CODE_LEN, REDACTED, sanitize, sanitize_code};

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    for out in [sanitize(&raw), sanitize_code(&raw)] {
        assert!(out.len() <= MAX_CODE_LEN, "{} bytes", out.len());
        assert!(
            out == REDACTED
                || out
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')),
            "{out:?}"
        );
        assert!(!out.to_ascii_lowercase().contains("www."), "{out:?}");
    }
    assert_eq!(sanitize_code(&raw), sanitize(&raw).to_ascii_lowercase());
});
