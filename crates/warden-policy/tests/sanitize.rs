//! README › Classification's sanitizer: bounded, charset-limited, URL-shaped values redacted.

use proptest::prelude::*;
use warden_policy::{MAX_CODE_LEN, REDACTED, sanitize, sanitize_code};

fn in_charset(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[test]
fn five_kb_code_is_cut_to_200() {
    let hostile = "A".repeat(5 * 1024);
    let out = sanitize(&hostile);
    assert_eq!(out.len(), MAX_CODE_LEN);
    assert_eq!(out, "A".repeat(200));
    assert_eq!(sanitize_code(&hostile), "a".repeat(200));
    // Dropped characters do not count towards the 200.
    let padded = "\"<x>\n".repeat(1024) + &"b".repeat(300);
    assert_eq!(
        sanitize(&padded),
        "x".repeat(1024).chars().take(200).collect::<String>()
    );
}

#[test]
fn url_shaped_values_are_redacted() {
    for raw in [
        "https://evil.example/x",
        "www.evil.example",
        "WWW.EVIL.EXAMPLE",
        "invalid_grant see http://evil.example",
        "javascript://%0aalert(1)",
        "ftp://x",
        "://",
        "go to Www.evil.example now",
        // Past the 200 kept characters: the whole value is checked.
        &format!("{}https://evil.example", "a".repeat(300)),
        // Separators hidden by dropped characters still spell www.
        "w\nw\nw.evil.example",
        "w w w . evil",
    ] {
        assert_eq!(sanitize(raw), REDACTED, "{raw:?}");
        assert_eq!(sanitize_code(raw), REDACTED, "{raw:?}");
    }
    // Near misses are not redacted.
    for (raw, want) in [
        ("ww.example", "ww.example"),
        ("www", "www"),
        (":/x", "x"),
        ("a:b/c", "abc"),
        ("evil.example", "evil.example"),
    ] {
        assert_eq!(sanitize(raw), want, "{raw:?}");
    }
}

/// The URL check scans in chunks: markers are found wherever they fall, across chunk
/// boundaries included, and so is the 200 cut.
#[test]
fn markers_at_every_offset() {
    for pad in 0..100 {
        let a = "a".repeat(pad);
        for marker in ["www.", "WwW.", "://"] {
            let raw = format!("{a}{marker}x");
            assert_eq!(sanitize(&raw), REDACTED, "{raw:?}");
            let raw = format!("{a}{marker}");
            assert_eq!(sanitize(&raw), REDACTED, "{raw:?}");
        }
        let near = format!("{a}ww.w:/.");
        assert_ne!(sanitize(&near), REDACTED, "{near:?}");
        let long = format!("{a}{}", "B".repeat(250));
        assert_eq!(sanitize(&long).len(), 200);
        assert_eq!(sanitize(&long), long[..200]);
    }
}

#[test]
fn control_characters_quotes_and_newlines_are_removed() {
    assert_eq!(sanitize("invalid_grant\r\n"), "invalid_grant");
    assert_eq!(sanitize("\"invalid_grant\""), "invalid_grant");
    assert_eq!(sanitize("'inv\0alid'\t_\x1bgrant\x7f"), "invalid_grant");
    assert_eq!(sanitize("<script>alert(1)</script>"), "scriptalert1script");
    assert_eq!(sanitize("ïnvalid_grànt ☃"), "nvalid_grnt");
    assert_eq!(sanitize("a=b;c{d}"), "abcd");
    assert_eq!(sanitize(""), "");
    assert_eq!(sanitize("v1.2-beta_3"), "v1.2-beta_3");
}

#[test]
fn codes_are_lower_case_text_kept_as_sent() {
    assert_eq!(sanitize("Invalid_Grant"), "Invalid_Grant");
    assert_eq!(sanitize_code("Invalid_Grant"), "invalid_grant");
    assert_eq!(sanitize_code("INVALID_CLIENT"), "invalid_client");
}

proptest! {
    #[test]
    fn output_is_bounded_and_in_charset(raw in any::<String>()) {
        for out in [sanitize(&raw), sanitize_code(&raw)] {
            prop_assert!(out == REDACTED || (out.len() <= MAX_CODE_LEN && in_charset(&out)), "{out:?}");
            prop_assert!(out.chars().count() <= MAX_CODE_LEN);
        }
    }

    #[test]
    fn long_hostile_input(raw in "[ -~\\n\\t\\u{80}-\\u{10ffff}]{0,6000}") {
        let out = sanitize(&raw);
        prop_assert!(out == REDACTED || (out.len() <= MAX_CODE_LEN && in_charset(&out)));
        if raw.contains("://") || raw.to_ascii_lowercase().contains("www.") {
            prop_assert_eq!(out, REDACTED);
        }
    }

    #[test]
    fn any_marker_anywhere_redacts(
        prefix in any::<String>(),
        marker in prop::sample::select(vec!["://", "www.", "WWW.", "wWw."]),
        suffix in any::<String>(),
    ) {
        prop_assert_eq!(sanitize(&format!("{prefix}{marker}{suffix}")), REDACTED);
    }

    #[test]
    fn clean_short_codes_pass_unchanged(raw in "[A-Za-z0-9_.-]{0,200}") {
        prop_assume!(!raw.to_ascii_lowercase().contains("www."));
        prop_assert_eq!(sanitize(&raw), raw.clone());
        prop_assert_eq!(sanitize_code(&raw), raw.to_ascii_lowercase());
    }

    #[test]
    fn sanitizing_is_idempotent(raw in any::<String>()) {
        let once = sanitize(&raw);
        prop_assert_eq!(sanitize(&once), once.clone());
    }
}
