//! JSON-RPC error codes in upstream answers, for `warden_jsonrpc_errors_total` (README › Admin listener (metrics)).
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
use std::sync::LazyLock;

use memchr::memmem::Finder;

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
    messages(json, false, &mut |m| {
        if let Some(code) = m.error_code {
            out(code);
        }
    });
}

/// What warden reads of one top-level JSON-RPC message in an answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageFacts {
    /// The message's `id`, to pair an answer with its request (a `tools/call`).
    pub id: Option<serde_json::Value>,
    /// `error.code`, when `error` is an object with an integer code.
    pub error_code: Option<i64>,
    /// `Some(is_error)` when `result` is an object: `isError: true` there is how MCP
    /// servers report a failing tool (with HTTP 200, not a JSON-RPC error).
    pub tool_error: Option<bool>,
}

/// Calls `out` for every top-level message of `json` (the document, or each element of a
/// batch) that has an `error` or a `result` object. With `every_result` false, a document
/// with neither an `error` nor an `isError` member is skipped unparsed (the common,
/// successful case); pass true when successful results matter too (the answer to a
/// `tools/call`). Malformed JSON produces no calls at all.
pub fn messages(json: &[u8], every_result: bool, out: &mut impl FnMut(MessageFacts)) {
    if !every_result && !may_contain_error_member(json) {
        return;
    }
    let Ok(Codes(found)) = serde_json::from_slice::<Codes>(json) else {
        return;
    };
    let keep = |m: &MessageFacts| m.error_code.is_some() || m.tool_error.is_some();
    match found {
        Found::None => {}
        Found::One(m) => {
            if keep(&m) {
                out(m);
            }
        }
        Found::Many(ms) => ms.into_iter().filter(keep).for_each(out),
    }
}

/// The ids of the `tools/call` requests in an MCP request body (one message or a batch);
/// empty when it holds none or does not parse. Only bodies that mention `tools/call` are
/// parsed at all.
pub fn tool_call_ids(json: &[u8]) -> Vec<serde_json::Value> {
    if TOOLS_CALL.find(json).is_none() {
        return Vec::new();
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(json) else {
        return Vec::new();
    };
    let one = |m: &serde_json::Value| {
        (m.get("method")?.as_str()? == "tools/call").then(|| m.get("id").cloned())?
    };
    match &value {
        serde_json::Value::Array(batch) => batch.iter().filter_map(one).collect(),
        message => one(message).into_iter().collect(),
    }
}

/// A cheap, sound pre-filter: most events are successful results, and finding that out with
/// `memmem` is an order of magnitude faster than parsing them.
///
/// A member named `error` or `isError` appears in JSON text either literally or with at
/// least one of its letters escaped; no short escape produces a letter, so that is a
/// `\u00` followed by `4`–`7` (ASCII letters are U+0041–U+007A). A document with none of
/// these cannot hold an error object or a tool error. The escapes that serializers actually
/// emit (`\u00e9`, `\u2014`, `\u003c`...) do not match, so Python's ASCII-only
/// `json.dumps` output still takes the fast path. False positives (`"error"` as a string
/// value, a literal `\\u0065`) only cost the full parse.
fn may_contain_error_member(json: &[u8]) -> bool {
    ERROR.find(json).is_some()
        || IS_ERROR.find(json).is_some()
        || ESCAPE
            .find_iter(json)
            .any(|at| matches!(json.get(at + 4), Some(b'4' | b'5' | b'6' | b'7')))
}

// Searchers are built once: building one per document cost more than the search.
static ERROR: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"error\""));
static IS_ERROR: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"isError\""));
static ESCAPE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\\u00"));
static TOOLS_CALL: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"tools/call"));

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

    /// Observes the next body chunk, calling `on_message` for each message of each event
    /// that completes in it (see [`messages`]).
    pub fn feed_messages(
        &mut self,
        chunk: &[u8],
        every_result: bool,
        on_message: &mut impl FnMut(MessageFacts),
    ) {
        self.sse.feed(chunk, &mut |data| {
            messages(data, every_result, &mut *on_message)
        });
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

/// The messages found in one document; only a batch needs (and only then allocates) a
/// vector.
enum Found {
    None,
    One(MessageFacts),
    Many(Vec<MessageFacts>),
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
                Ok(Codes(Found::One(message_facts(map)?)))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Codes, A::Error> {
                let mut found = Vec::new();
                while let Some(Message(facts)) = seq.next_element()? {
                    found.extend(facts);
                }
                Ok(Codes(Found::Many(found)))
            }

            ignore_scalars!(Codes(Found::None));
        }

        deserializer.deserialize_any(TopVisitor)
    }
}

/// Reads one message object's members: its id, `error.code` and `result.isError`.
fn message_facts<'de, A: MapAccess<'de>>(mut map: A) -> Result<MessageFacts, A::Error> {
    let mut facts = MessageFacts::default();
    while let Some(key) = map.next_key::<Key>()? {
        match key {
            Key::Error => facts.error_code = map.next_value::<ErrorMember>()?.0,
            Key::Result => facts.tool_error = map.next_value::<ResultMember>()?.0,
            Key::Id => facts.id = Some(map.next_value::<serde_json::Value>()?),
            Key::Code | Key::IsError | Key::Other => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(facts)
}

/// Drains an array we are not interested in.
fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// One element of a batch: a message's facts, or `None` for anything that is no object.
struct Message(Option<MessageFacts>);

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MessageVisitor;

        impl<'de> Visitor<'de> for MessageVisitor {
            type Value = Message;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON-RPC message")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Message, A::Error> {
                message_facts(map).map(|m| Message(Some(m)))
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
    Id,
    Result,
    IsError,
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
                    "id" => Key::Id,
                    "result" => Key::Result,
                    "isError" => Key::IsError,
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
                        Key::Error | Key::Id | Key::Result | Key::IsError | Key::Other => {
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

/// The value of a `result` member: `Some(isError == true)` for an object, `None` otherwise.
struct ResultMember(Option<bool>);

impl<'de> Deserialize<'de> for ResultMember {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ResultVisitor;

        impl<'de> Visitor<'de> for ResultVisitor {
            type Value = ResultMember;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON-RPC result")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ResultMember, A::Error> {
                let mut is_error = false;
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::IsError => is_error = map.next_value::<Flag>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(ResultMember(Some(is_error)))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ResultMember, A::Error> {
                skip_seq(seq).map(|()| ResultMember(None))
            }

            ignore_scalars!(ResultMember(None));
        }

        deserializer.deserialize_any(ResultVisitor)
    }
}

/// A member that counts only when it is the JSON literal `true`.
struct Flag(bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = IgnoredOrBool::deserialize(deserializer)?;
        Ok(Flag(matches!(value, IgnoredOrBool::Bool(true))))
    }
}

/// `true`/`false`, or anything else (skipped without being built).
enum IgnoredOrBool {
    Bool(bool),
    Other,
}

impl<'de> Deserialize<'de> for IgnoredOrBool {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FlagVisitor;

        impl<'de> Visitor<'de> for FlagVisitor {
            type Value = IgnoredOrBool;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean")
            }

            fn visit_bool<E: de::Error>(self, b: bool) -> Result<IgnoredOrBool, E> {
                Ok(IgnoredOrBool::Bool(b))
            }

            fn visit_unit<E: de::Error>(self) -> Result<IgnoredOrBool, E> {
                Ok(IgnoredOrBool::Other)
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<IgnoredOrBool, E> {
                Ok(IgnoredOrBool::Other)
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<IgnoredOrBool, E> {
                Ok(IgnoredOrBool::Other)
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<IgnoredOrBool, E> {
                Ok(IgnoredOrBool::Other)
            }

            fn visit_str<E: de::Error>(self, _: &str) -> Result<IgnoredOrBool, E> {
                Ok(IgnoredOrBool::Other)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<IgnoredOrBool, A::Error> {
                skip_seq(seq).map(|()| IgnoredOrBool::Other)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<IgnoredOrBool, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(IgnoredOrBool::Other)
            }
        }

        deserializer.deserialize_any(FlagVisitor)
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
            r#"{"id":1,"result":{"text":"plain"}}"#,
            r#"{"id":1,"result":{"text":"caf\u00e9 \u2014 \u003cb\u003e \"quoted\" \\ \n"}}"#,
            r#"{"id":1,"result":{"errors":[],"error_count":0,"text":"\"error\\"}}"#,
        ] {
            assert!(!may_contain_error_member(json.as_bytes()), "{json}");
        }
        for json in [
            r#"{"error":1}"#,
            r#"{"x":"\u0072"}"#,
            r#"{"x":"\u007"}"#,
            r#"{"result":{"isError":false}}"#,
            r#"{"result":{"is\u0045rror":true}}"#,
        ] {
            assert!(may_contain_error_member(json.as_bytes()), "{json}");
        }
    }

    fn facts(json: &str, every_result: bool) -> Vec<MessageFacts> {
        let mut found = Vec::new();
        messages(json.as_bytes(), every_result, &mut |m| found.push(m));
        found
    }

    #[test]
    fn tool_results_report_is_error_and_their_id() {
        let failing = r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"boom"}],"isError":true}}"#;
        assert_eq!(
            facts(failing, false),
            [MessageFacts {
                id: Some(serde_json::json!(7)),
                error_code: None,
                tool_error: Some(true),
            }]
        );
        let fine = r#"{"jsonrpc":"2.0","id":"a","result":{"content":[]}}"#;
        assert!(
            facts(fine, false).is_empty(),
            "pre-filtered: no error in sight"
        );
        assert_eq!(facts(fine, true)[0].tool_error, Some(false));
        assert_eq!(facts(fine, true)[0].id, Some(serde_json::json!("a")));
        for odd in [
            r#"{"id":1,"result":{"isError":"true"}}"#,
            r#"{"id":1,"result":{"isError":1}}"#,
            r#"{"id":1,"result":{"isError":null}}"#,
            r#"{"id":1,"result":{"isError":{"x":true}}}"#,
            r#"{"id":1,"result":{"data":{"isError":true}}}"#,
        ] {
            assert_eq!(facts(odd, true)[0].tool_error, Some(false), "{odd}");
        }
        for not_a_result in [r#"{"id":1,"result":[true]}"#, r#"{"id":1,"result":true}"#] {
            assert!(facts(not_a_result, true).is_empty(), "{not_a_result}");
        }
        let escaped = r#"{"id":1,"result":{"is\u0045rror":true}}"#;
        assert_eq!(facts(escaped, false)[0].tool_error, Some(true));
        let batch = r#"[{"id":1,"result":{"isError":true}},{"id":2,"error":{"code":-32602}},{"id":3,"result":{}}]"#;
        let found = facts(batch, true);
        assert_eq!(found.len(), 3);
        assert_eq!(found[1].error_code, Some(-32602));
        assert_eq!(found[2].tool_error, Some(false));
    }

    #[test]
    fn tool_call_ids_of_single_and_batched_requests() {
        let one = br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"x"}}"#;
        assert_eq!(tool_call_ids(one), [serde_json::json!(3)]);
        let batch = br#"[{"id":"a","method":"tools/call"},{"id":2,"method":"tools/list"},{"method":"tools/call"}]"#;
        assert_eq!(tool_call_ids(batch), [serde_json::json!("a")]);
        assert!(tool_call_ids(br#"{"id":1,"method":"tools/list"}"#).is_empty());
        assert!(tool_call_ids(b"tools/call but not json").is_empty());
        assert!(tool_call_ids(br#"{"id":1,"method":"x","params":"tools/call"}"#).is_empty());
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
