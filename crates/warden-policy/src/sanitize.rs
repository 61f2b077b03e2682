//! README › Classification's sanitizer for the IdP's `error` field.
//!
//! The code an IdP sends is stored in events, shown in the admin API and status page, and
//! used as a metric label, so a chatty or hostile IdP must not be able to grow any of them
//! or smuggle a link into an operator's tooltip. The work happens in one pass over the input
//! into a fixed stack buffer: a 5 KB value costs one scan and, for the `String` forms, one
//! allocation of at most 200 bytes.

/// Longest sanitized value, in bytes (all kept bytes are ASCII, so also in characters).
pub const MAX_CODE_LEN: usize = 200;

/// What a URL-shaped value becomes.
pub const REDACTED: &str = "redacted";

/// `[A-Za-z0-9_.-]`: the characters of RFC 6749 error codes and of every real-world
/// extension seen, and nothing that can break out of a label, a JSON string or HTML.
/// A table, so the filter below has no branch per byte.
static KEPT: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-';
        b += 1;
    }
    table
};

/// Bytes scanned at once when looking for `://` or `www.`: the test over a chunk has no
/// early exit, so the compiler vectorizes it; only chunks with a `:` or a `.` are looked
/// at byte by byte.
const CHUNK: usize = 32;

/// A sanitized value in a fixed buffer, so classification needs no heap.
#[derive(Clone, Copy)]
pub(crate) struct Sanitized {
    /// One byte of slack: the filter writes every byte and only advances `len` past the
    /// kept ones, so it may write at `buf[MAX_CODE_LEN]`.
    buf: [u8; MAX_CODE_LEN + 1],
    len: usize,
}

impl Sanitized {
    /// Sanitizes `raw`; with `lower`, ASCII letters are lower-cased on the way (the stored
    /// and compared form of an OAuth code). One pass over `raw`: the URL check must see
    /// all of it, the filter stops after 200 kept bytes.
    pub(crate) fn new(raw: &str, lower: bool) -> Self {
        let bytes = raw.as_bytes();
        let mut out = Sanitized {
            buf: [0; MAX_CODE_LEN + 1],
            len: 0,
        };
        for (n, chunk) in bytes.chunks(CHUNK).enumerate() {
            if may_hold_url(chunk)
                && (0..chunk.len()).any(|j| is_url_marker_at(bytes, n * CHUNK + j))
            {
                return Self::redacted();
            }
            for &b in chunk {
                if out.len == MAX_CODE_LEN {
                    break;
                }
                out.buf[out.len] = if lower { b.to_ascii_lowercase() } else { b };
                out.len += usize::from(KEPT[usize::from(b)]);
            }
        }
        // `w\nw\nw.evil` loses its separators to the filter and would come out as
        // `www.evil`: what is shown must not be URL-shaped either. (`://` cannot survive
        // the filter.)
        if out
            .kept()
            .windows(4)
            .any(|w| w.eq_ignore_ascii_case(b"www."))
        {
            return Self::redacted();
        }
        out
    }

    fn redacted() -> Self {
        let mut out = Sanitized {
            buf: [0; MAX_CODE_LEN + 1],
            len: REDACTED.len(),
        };
        out.buf[..REDACTED.len()].copy_from_slice(REDACTED.as_bytes());
        out
    }

    fn kept(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII bytes are ever kept, so this cannot fail; "" is a safe fallback.
        std::str::from_utf8(self.kept()).unwrap_or("")
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Whether `chunk` holds a `:` or a `.`: every `://` has the one and every `www.` ends
/// with the other. (Keying on `.` rather than `w` keeps ordinary letters off the slow
/// path.) Full chunks go through a fixed-size array, which the compiler turns into a few
/// SIMD compares; the tail is checked plainly.
fn may_hold_url(chunk: &[u8]) -> bool {
    let test = |b: u8| u8::from(b == b':') | u8::from(b == b'.');
    match <&[u8; CHUNK]>::try_from(chunk) {
        Ok(full) => full.iter().fold(0, |seen, &b| seen | test(b)) != 0,
        Err(_) => chunk.iter().any(|&b| test(b) != 0),
    }
}

/// A URL marker at `i`: `://` starting there, or `www.` (ASCII case-insensitive) ending
/// there. Looks across chunk boundaries, since it indexes the whole input.
fn is_url_marker_at(bytes: &[u8], i: usize) -> bool {
    match bytes[i] {
        b':' => bytes.get(i + 1..i + 3) == Some(b"//"),
        b'.' => i >= 3 && bytes[i - 3..i].eq_ignore_ascii_case(b"www"),
        _ => false,
    }
}

/// README › Classification's sanitizer, case preserved: `redacted` for a value containing `://` or `www.`
/// (ASCII case-insensitive), otherwise only `[A-Za-z0-9_.-]` kept, cut to 200 characters.
///
/// One deliberate addition: a value whose *kept* characters spell `www.` (separators hidden
/// by dropped characters) is redacted too, since the output is what operators see.
pub fn sanitize(raw: &str) -> String {
    Sanitized::new(raw, false).as_str().to_owned()
}

/// [`sanitize`], then ASCII lower case: how OAuth error codes are compared, stored and
/// labelled (`INVALID_GRANT` and `invalid_grant` are one code).
pub fn sanitize_code(raw: &str) -> String {
    Sanitized::new(raw, true).as_str().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_forms() {
        assert_eq!(
            Sanitized::new("Invalid_Grant", true).as_str(),
            "invalid_grant"
        );
        assert_eq!(
            Sanitized::new("Invalid_Grant", false).as_str(),
            "Invalid_Grant"
        );
        assert!(Sanitized::new("\"\n<>", true).is_empty());
        assert_eq!(Sanitized::new("a://b", true).as_str(), REDACTED);
        assert_eq!(Sanitized::new("x:/", true).as_str(), "x");
        assert_eq!(Sanitized::new("ww", true).as_str(), "ww");
    }
}
