//! JSON-RPC error codes in upstream answers, for `warden_jsonrpc_errors_total` (SPEC §7).
//!
//! An MCP server reports most failures inside a `200 OK`: as a JSON-RPC error object in a JSON
//! body or in an SSE event. [`error_codes`] finds those objects in one JSON document;
//! `warden_policy::jsonrpc_code_label` maps their codes onto the closed set of metric labels,
//! so that a hostile upstream inventing codes cannot create unbounded metric series.
//!
//! The parse is deliberately narrow and lenient: only the `error.code` of top-level objects (or
//! of the elements of a top-level batch array) is read; every other value, `result` included,
//! is skipped by serde without being built, and a member of an unexpected type just means "not
//! an error object" rather than a parse failure.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::sse::SseObserver;

/// Implements the scalar `visit_*` methods as "not what we look for" (instead of serde's
/// default "invalid type" error), for visitors that accept any JSON value.
macro_rules! ignore_scalars {
    ($value:expr) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// Calls `out(code)` for every JSON-RPC error object in `json`: the document itself if it is
/// an object, or each element of a top-level (batch) array.
///
/// An error object is an object with an `error` member that is an object with an integer
/// `code` (fitting in `i64`); `jsonrpc` is not required, since counting should not depend on an
/// upstream's pedantry. A float or string code, or an `error` that is not an object, is not
/// counted. Nothing below the top level is looked at, so an error-shaped value inside a
/// `result` is not counted. Malformed JSON produces no calls at all: codes are collected and
/// only reported once the whole document has parsed.
pub fn error_codes(json: &[u8], out: &mut impl FnMut(i64)) {
    if !may_contain_error_member(json) {
        return;
    }
    let Ok(Codes(codes)) = serde_json::from_slice::<Codes>(json) else {
        return;
    };
    match codes {
        Found::None => {}
        Found::One(code) => out(code),
        Found::Many(codes) => codes.into_iter().for_each(out),
    }
}

/// A cheap, sound pre-filter: most events are successful results, and finding that out with
/// `memmem` is an order of magnitude faster than parsing them.
///
/// A member named `error` appears in JSON text either literally as `"error"` or with at least
/// one of its letters escaped; no short escape produces a letter, so that is `\u0065`,
/// `\u0072`, `\u006f` or `\u006F`, all starting `\u006` or `\u007`. A document with neither
/// cannot hold an error object. The escapes that serializers actually emit (`\u00e9`,
/// `\u2014`, `\u003c`...) do not match, so Python's ASCII-only `json.dumps` output still takes
/// the fast path. False positives (`"error"` as a string value, a literal `\\u0065`) only cost
/// the full parse.
fn may_contain_error_member(json: &[u8]) -> bool {
    memchr::memmem::find(json, b"\"error\"").is_some()
        || memchr::memmem::find_iter(json, b"\\u00")
            .any(|at| matches!(json.get(at + 4), Some(b'6' | b'7')))
}

/// Feeds an SSE body to an [`SseObserver`] and reports the JSON-RPC error codes in its events.
///
/// The convenience for `text/event-stream` answers; a JSON answer is one document for
/// [`error_codes`] directly.
#[derive(Debug)]
pub struct JsonRpcSseWatcher {
    sse: SseObserver,
}

impl JsonRpcSseWatcher {
    /// A watcher ignoring events with more than `max_event_bytes` of data (see
    /// [`SseObserver::new`]).
    #[must_use]
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            sse: SseObserver::new(max_event_bytes),
        }
    }

    /// Observes the next body chunk, calling `on_code` for each error object in each event
    /// that completes in it.
    pub fn feed(&mut self, chunk: &[u8], on_code: &mut impl FnMut(i64)) {
        self.sse
            .feed(chunk, &mut |data| error_codes(data, &mut *on_code));
    }

    /// Ends the stream; see [`SseObserver::finish`] (an incomplete last event is not counted).
    pub fn finish(&mut self) -> bool {
        self.sse.finish()
    }

    /// The underlying observer, e.g. for [`SseObserver::oversized_events`].
    #[must_use]
    pub fn observer(&self) -> &SseObserver {
        &self.sse
    }
}

/// The codes found in one document; only a batch needs (and only then allocates) a vector.
enum Found {
    None,
    One(i64),
    Many(Vec<i64>),
}

/// Top level: an object (one message), an array (a batch) or anything else (ignored).
struct Codes(Found);

impl<'de> Deserialize<'de> for Codes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TopVisitor;

        impl<'de> Visitor<'de> for TopVisitor {
            type Value = Codes;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON document")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Codes, A::Error> {
                let found = match message_code(map)? {
                    Some(code) => Found::One(code),
                    None => Found::None,
                };
                Ok(Codes(found))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Codes, A::Error> {
                let mut codes = Vec::new();
                while let Some(Message(code)) = seq.next_element()? {
                    codes.extend(code);
                }
                Ok(Codes(Found::Many(codes)))
            }

            ignore_scalars!(Codes(Found::None));
        }

        deserializer.deserialize_any(TopVisitor)
    }
}

/// Reads one message object's members, returning its `error.code` if it has one.
fn message_code<'de, A: MapAccess<'de>>(mut map: A) -> Result<Option<i64>, A::Error> {
    let mut code = None;
    while let Some(key) = map.next_key::<Key>()? {
        match key {
            Key::Error => code = map.next_value::<ErrorMember>()?.0,
            Key::Code | Key::Other => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(code)
}

/// Drains an array we are not interested in.
fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// One element of a batch: a message's error code, or `None` for anything else.
struct Message(Option<i64>);

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MessageVisitor;

        impl<'de> Visitor<'de> for MessageVisitor {
            type Value = Message;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON-RPC message")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Message, A::Error> {
                message_code(map).map(Message)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Message, A::Error> {
                skip_seq(seq).map(|()| Message(None))
            }

            ignore_scalars!(Message(None));
        }

        deserializer.deserialize_any(MessageVisitor)
    }
}

/// The member names we care about, recognised without allocating.
enum Key {
    Error,
    Code,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl Visitor<'_> for KeyVisitor {
            type Value = Key;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }

            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "error" => Key::Error,
                    "code" => Key::Code,
                    _ => Key::Other,
                })
            }
        }

        deserializer.deserialize_identifier(KeyVisitor)
    }
}

/// The value of an `error` member: `Some(code)` only for an object with an integer `code`.
struct ErrorMember(Option<i64>);

impl<'de> Deserialize<'de> for ErrorMember {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ErrorVisitor;

        impl<'de> Visitor<'de> for ErrorVisitor {
            type Value = ErrorMember;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON-RPC error object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ErrorMember, A::Error> {
                let mut code = None;
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Code => code = map.next_value::<Code>()?.0,
                        Key::Error | Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(ErrorMember(code))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ErrorMember, A::Error> {
                skip_seq(seq).map(|()| ErrorMember(None))
            }

            ignore_scalars!(ErrorMember(None));
        }

        deserializer.deserialize_any(ErrorVisitor)
    }
}

/// The value of `error.code`: `Some` only for an integer that fits in `i64`.
struct Code(Option<i64>);

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CodeVisitor;

        impl<'de> Visitor<'de> for CodeVisitor {
            type Value = Code;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer error code")
            }

            fn visit_i64<E: de::Error>(self, code: i64) -> Result<Code, E> {
                Ok(Code(Some(code)))
            }

            fn visit_u64<E: de::Error>(self, code: u64) -> Result<Code, E> {
                Ok(Code(i64::try_from(code).ok()))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Code, E> {
                Ok(Code(None))
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Code, E> {
                Ok(Code(None))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Code, E> {
                Ok(Code(None))
            }

            fn visit_str<E: de::Error>(self, _: &str) -> Result<Code, E> {
                Ok(Code(None))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Code, A::Error> {
                skip_seq(seq).map(|()| Code(None))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Code, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Code(None))
            }
        }

        deserializer.deserialize_any(CodeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(json: &str) -> Vec<i64> {
        let mut found = Vec::new();
        error_codes(json.as_bytes(), &mut |c| found.push(c));
        found
    }

    #[test]
    fn single_error_object() {
        let json =
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}}"#;
        assert_eq!(codes(json), [-32601]);
    }

    #[test]
    fn jsonrpc_member_is_not_required() {
        assert_eq!(codes(r#"{"id":1,"error":{"message":"x","code":7}}"#), [7]);
    }

    #[test]
    fn batch_with_mixed_results_and_errors() {
        let json = r#"[
            {"jsonrpc":"2.0","id":1,"result":{"ok":true}},
            {"jsonrpc":"2.0","id":2,"error":{"code":-32602,"message":"bad"}},
            {"jsonrpc":"2.0","id":3,"result":[1,2,3]},
            {"jsonrpc":"2.0","id":4,"error":{"code":-32000,"message":"x","data":{"code":5}}},
            42, "s", null, [ {"error":{"code":1}} ]
        ]"#;
        assert_eq!(codes(json), [-32602, -32000]);
    }

    #[test]
    fn non_integer_codes_are_ignored() {
        for code in [
            "-32600.0",
            "\"-32600\"",
            "null",
            "true",
            "[1]",
            "{\"v\":1}",
            "1e3",
            "9223372036854775808",
            "-9223372036854775809",
        ] {
            let json = format!(r#"{{"jsonrpc":"2.0","id":1,"error":{{"code":{code}}}}}"#);
            assert!(codes(&json).is_empty(), "{json}");
        }
        assert_eq!(
            codes(r#"{"error":{"code":9223372036854775807}}"#),
            [i64::MAX]
        );
        assert_eq!(
            codes(r#"{"error":{"code":-9223372036854775808}}"#),
            [i64::MIN]
        );
    }

    #[test]
    fn error_member_of_other_types_is_ignored() {
        for error in [
            "\"boom\"",
            "null",
            "1",
            "[{\"code\":1}]",
            "{}",
            "{\"message\":\"m\"}",
        ] {
            let json = format!(r#"{{"jsonrpc":"2.0","id":1,"error":{error}}}"#);
            assert!(codes(&json).is_empty(), "{json}");
        }
    }

    #[test]
    fn result_objects_are_ignored() {
        let json = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"error"}],"isError":true}}"#;
        assert!(codes(json).is_empty());
    }

    #[test]
    fn error_nested_inside_result_is_not_counted() {
        let json = r#"{"jsonrpc":"2.0","id":1,"result":{"error":{"code":-32603},"items":[{"error":{"code":-32700}}]}}"#;
        assert!(codes(json).is_empty());
        // Also when the pre-filter passes because of an escape elsewhere.
        let json = r#"{"id":1,"result":{"error":{"code":-32603},"t":"\u0065"}}"#;
        assert!(may_contain_error_member(json.as_bytes()));
        assert!(codes(json).is_empty());
    }

    #[test]
    fn malformed_json_gives_no_calls() {
        for json in [
            "",
            "{",
            r#"{"error":{"code":-32700}"#,
            r#"[{"error":{"code":-32700}}, {"error":"#,
            r#"{"error":{"code":-32700}} trailing"#,
            r#"{"error":{"code":-32700}},"#,
            "\u{0}\u{1}garbage\"error\"",
        ] {
            assert!(codes(json).is_empty(), "{json:?}");
        }
        let mut calls = 0;
        error_codes(b"\xff\xfe{\"error\":{\"code\":1}}", &mut |_| calls += 1);
        assert_eq!(calls, 0);
    }

    #[test]
    fn escaped_member_names_are_still_found() {
        // Each letter of "error" escaped in each possible way: the pre-filter must let it by.
        for key in [
            r"\u0065rror",
            r"e\u0072ror",
            r"err\u006fr",
            r"err\u006Fr",
            r"\u0065\u0072\u0072\u006F\u0072",
        ] {
            let json = format!(r#"{{"{key}":{{"c\u006fde":-32601}}}}"#);
            assert_eq!(codes(&json), [-32601], "{json}");
        }
    }

    #[test]
    fn prefilter_skips_results_with_ordinary_escapes() {
        for json in [
            r#"{"id":1,"result":{"text":"plain","isError":false}}"#,
            r#"{"id":1,"result":{"text":"caf\u00e9 \u2014 \u003cb\u003e \"quoted\" \\ \n"}}"#,
            r#"{"id":1,"result":{"errors":[],"error_count":0,"text":"\"error\\"}}"#,
        ] {
            assert!(!may_contain_error_member(json.as_bytes()), "{json}");
        }
        for json in [r#"{"error":1}"#, r#"{"x":"\u0072"}"#, r#"{"x":"\u007"}"#] {
            assert!(may_contain_error_member(json.as_bytes()), "{json}");
        }
    }

    #[test]
    fn duplicate_error_member_counts_once() {
        assert_eq!(
            codes(r#"{"error":{"code":1},"error":{"code":-32600}}"#),
            [-32600]
        );
    }

    #[test]
    fn labels_for_every_class_and_boundary() {
        let cases = [
            (-32700, "-32700"),
            (-32600, "-32600"),
            (-32601, "-32601"),
            (-32602, "-32602"),
            (-32603, "-32603"),
            (-32604, "other"),
            (-32099, "server_error"),
            (-32050, "server_error"),
            (-32000, "server_error"),
            (-31999, "other"),
            (-32100, "other"),
            (-32701, "other"),
            (0, "other"),
            (1, "other"),
            (i64::MIN, "other"),
            (i64::MAX, "other"),
        ];
        for (code, label) in cases {
            assert_eq!(warden_policy::jsonrpc_code_label(code), label, "{code}");
            assert!(warden_policy::JSONRPC_CODE_LABELS.contains(&label));
        }
        // Every declared label is reachable.
        for label in warden_policy::JSONRPC_CODE_LABELS {
            assert!(cases.iter().any(|&(_, l)| l == label), "{label}");
        }
    }

    #[test]
    fn watcher_counts_errors_in_an_sse_stream_split_anywhere() {
        let stream = concat!(
            "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\r\n\r\n",
            ": ping\r\n\r\n",
            "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\r\n",
            "data: \"error\":{\"code\":-32603,\"message\":\"boom\"}}\r\n\r\n",
            "data: [{\"error\":{\"code\":-32001}},{\"error\":{\"code\":5}}]\r\n\r\n",
            "data: {\"error\":{\"code\":-32700}}",
        )
        .as_bytes();
        for split in 0..=stream.len() {
            let mut watcher = JsonRpcSseWatcher::new(4096);
            let mut found = Vec::new();
            for chunk in [&stream[..split], &stream[split..]] {
                watcher.feed(chunk, &mut |c| found.push(c));
            }
            // The last event never completes, so it is not counted.
            assert!(watcher.finish());
            assert_eq!(found, [-32603, -32001, 5], "split at {split}");
        }
    }
}
