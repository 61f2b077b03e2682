//! The JSON tree to raw types, one item at a time.
//!
//! A derived `Deserialize` stops at the first error, so each section, each connection's
//! route and each rule is decoded on its own: one typo costs one item, and the rest of the
//! file is still decoded and checked. The containers that hold those items (the document,
//! a connection, `policy`) are walked here, against the keys their `raw` types declare.

use serde::Deserialize;
use serde_json::Value;
use serde_path_to_error::Segment;

use crate::diag::Diags;
use crate::keys;
use crate::located::{join_index, join_key};
use crate::model::Role;
use crate::raw::{
    RawAdmin, RawConfig, RawConnection, RawDefaults, RawLimits, RawLog, RawPolicy, RawRoute,
    RawRule, RawShutdown,
};
use crate::strict::Strict;

/// An optional section: absent, decoded, or present but undecodable (already reported).
#[derive(Debug)]
pub(crate) enum Part<T> {
    Absent,
    Present(T),
    Broken,
}

impl<T> Part<T> {
    pub(crate) fn get(&self) -> Option<&T> {
        match self {
            Part::Present(v) => Some(v),
            Part::Absent | Part::Broken => None,
        }
    }
}

/// The document as far as it could be decoded.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub version: Part<u64>,
    pub admin: Part<RawAdmin>,
    pub defaults: Part<RawDefaults>,
    pub limits: Part<RawLimits>,
    pub events_per_connection: Part<u64>,
    pub shutdown: Part<RawShutdown>,
    pub log: Part<RawLog>,
    pub connections: Vec<DecodedConnection>,
    /// Whether `connections` was a list with no items (as opposed to absent or broken).
    pub connections_empty: bool,
    pub rules: Vec<DecodedRule>,
}

#[derive(Debug)]
pub(crate) struct DecodedConnection {
    /// `connections[i]`.
    pub path: String,
    pub name: Part<String>,
    /// Decoded routes in mcp, api, oauth order.
    pub routes: Vec<(Role, RawRoute)>,
    /// Route keys present, decodable or not: a connection whose only route is broken has
    /// already been reported and must not also be called empty.
    pub route_keys: usize,
}

#[derive(Debug)]
pub(crate) struct DecodedRule {
    /// `policy.rules[i]`.
    pub path: String,
    pub rule: RawRule,
}

pub(crate) fn decode(root: &Value, diags: &mut Diags) -> Decoded {
    let mut out = Decoded {
        version: Part::Absent,
        admin: Part::Absent,
        defaults: Part::Absent,
        limits: Part::Absent,
        events_per_connection: Part::Absent,
        shutdown: Part::Absent,
        log: Part::Absent,
        connections: Vec::new(),
        connections_empty: false,
        rules: Vec::new(),
    };
    let map = match root {
        Value::Object(map) => map,
        Value::Null => {
            diags.error(
                "",
                "the file is empty: it needs at least `version: 1` and `connections`",
            );
            return out;
        }
        other => {
            diags.error(
                "",
                format!(
                    "expected a mapping with `version: 1` and `connections`, found {}",
                    describe(other)
                ),
            );
            return out;
        }
    };
    unknown_keys(map, "", keys::of::<RawConfig>(), diags);
    out.version = part(map, "", "version", diags);
    out.admin = part(map, "", "admin", diags);
    out.defaults = part(map, "", "defaults", diags);
    out.limits = part(map, "", "limits", diags);
    out.events_per_connection = part(map, "", "events_per_connection", diags);
    out.shutdown = part(map, "", "shutdown", diags);
    out.log = part(map, "", "log", diags);
    if matches!(out.version, Part::Absent) {
        diags.error("", "missing required key `version` (write `version: 1`)");
    }
    match map.get("connections") {
        None | Some(Value::Null) => {
            diags.error("", "missing required key `connections`");
        }
        Some(Value::Array(items)) => {
            out.connections_empty = items.is_empty();
            for (i, item) in items.iter().enumerate() {
                let path = join_index("connections", i);
                if let Some(conn) = connection(item, path, diags) {
                    out.connections.push(conn);
                }
            }
        }
        Some(other) => diags.error(
            "connections",
            format!("expected a list of connections, found {}", describe(other)),
        ),
    }
    match map.get("policy") {
        None | Some(Value::Null) => {}
        Some(Value::Object(policy)) => {
            unknown_keys(policy, "policy", keys::of::<RawPolicy>(), diags);
            match policy.get("rules") {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        let path = join_index("policy.rules", i);
                        if let Some(rule) = item_as(item, &path, diags) {
                            out.rules.push(DecodedRule { path, rule });
                        }
                    }
                }
                Some(other) => diags.error(
                    "policy.rules",
                    format!("expected a list of rules, found {}", describe(other)),
                ),
            }
        }
        Some(other) => diags.error(
            "policy",
            format!("expected a mapping with `rules`, found {}", describe(other)),
        ),
    }
    out
}

fn connection(item: &Value, path: String, diags: &mut Diags) -> Option<DecodedConnection> {
    let Value::Object(map) = item else {
        diags.error(
            path,
            format!(
                "expected a connection (a mapping with `name` and routes), found {}",
                describe(item)
            ),
        );
        return None;
    };
    unknown_keys(map, &path, keys::of::<RawConnection>(), diags);
    let name = part(map, &path, "name", diags);
    if matches!(name, Part::Absent) {
        diags.error(path.as_str(), "missing required key `name`");
    }
    let mut routes = Vec::new();
    let mut route_keys = 0;
    for role in Role::ALL {
        match part::<RawRoute>(map, &path, role.as_str(), diags) {
            Part::Present(route) => {
                route_keys += 1;
                routes.push((role, route));
            }
            Part::Broken => route_keys += 1,
            Part::Absent => {}
        }
    }
    Some(DecodedConnection {
        path,
        name,
        routes,
        route_keys,
    })
}

/// Decodes `map[key]`; `null` counts as absent, like an omitted key.
fn part<T: for<'v> Deserialize<'v>>(
    map: &serde_json::Map<String, Value>,
    parent: &str,
    key: &str,
    diags: &mut Diags,
) -> Part<T> {
    match map.get(key) {
        None | Some(Value::Null) => Part::Absent,
        Some(value) => match item_as(value, &join_key(parent, key), diags) {
            Some(v) => Part::Present(v),
            None => Part::Broken,
        },
    }
}

/// Decodes one item, reporting every error at the exact key path where it happened.
///
/// serde stops at an item's first error; to report the rest in the same pass, the key
/// that failed is taken out of a copy of the item and the copy decoded again, until it
/// decodes or no further key can be taken out. A required key taken out this way is then
/// missing: that is not reported again.
pub(crate) fn item_as<T: for<'v> Deserialize<'v>>(
    value: &Value,
    path: &str,
    diags: &mut Diags,
) -> Option<T> {
    /// Enough for any real file; bounds the work a hostile one can cause.
    const MAX_ERRORS_PER_ITEM: usize = 32;
    let mut patched: Option<Value> = None;
    let mut removed: Vec<Vec<Seg>> = Vec::new();
    let mut mended = false;
    for _ in 0..MAX_ERRORS_PER_ITEM {
        let current = patched.as_ref().unwrap_or(value);
        let err = match serde_path_to_error::deserialize::<_, T>(Strict(current)) {
            // An item that needed mending is broken whatever it decodes to now.
            Ok(v) => return (!mended).then_some(v),
            Err(err) => err,
        };
        let segments = segments_of(err.path());
        let message = humanize(&err.into_inner().to_string());
        if removed_required_key(&message, &segments, &removed) {
            return None;
        }
        let mut full = path.to_owned();
        for segment in &segments {
            full = match segment {
                Seg::Index(i) => join_index(&full, *i),
                Seg::Key(k) => join_key(&full, k),
            };
        }
        let copy = patched.get_or_insert_with(|| value.clone());
        if segments.is_empty() {
            diags.error(full, message);
            return None;
        }
        // A bad value is replaced by one of the right shape, so the rest of its item is
        // still read (a required key taken out would stop serde at its parent); an
        // unknown key, or a value nothing fits, is taken out.
        let replaced =
            !message.starts_with("unknown key") && stand_in::<T>(copy, &segments, &message);
        diags.error(full, message);
        mended = true;
        if !replaced {
            if !remove_at(copy, &segments) {
                return None;
            }
            removed.push(segments);
        }
    }
    None
}

/// Puts a value of the expected shape at `segments`: the first value the message lists
/// (an enum's variants), else a few generic ones; keeps the first after which the item no
/// longer fails at that path.
fn stand_in<T: for<'v> Deserialize<'v>>(root: &mut Value, segments: &[Seg], message: &str) -> bool {
    let listed = message
        .split_once("expected one of: ")
        .and_then(|(_, rest)| rest.split([',', ')']).next())
        .map(|v| Value::String(v.trim().trim_matches('`').to_owned()));
    let generic = [
        Value::from(1),
        Value::String("1s".to_owned()),
        Value::Bool(true),
        Value::Array(Vec::new()),
        Value::Object(serde_json::Map::new()),
    ];
    for candidate in listed.into_iter().chain(generic) {
        let mut trial = root.clone();
        if !set_at(&mut trial, segments, candidate) {
            return false;
        }
        let fixed = match serde_path_to_error::deserialize::<_, T>(Strict(&trial)) {
            Ok(_) => true,
            Err(err) => segments_of(err.path()) != segments,
        };
        if fixed {
            *root = trial;
            return true;
        }
    }
    false
}

/// Replaces the value at `segments`; false when there is none.
fn set_at(root: &mut Value, segments: &[Seg], new: Value) -> bool {
    match value_at(root, segments) {
        Some(cur) => {
            *cur = new;
            true
        }
        None => false,
    }
}

/// The value at `segments` inside `root`.
fn value_at<'v>(root: &'v mut Value, segments: &[Seg]) -> Option<&'v mut Value> {
    let mut cur = root;
    for segment in segments {
        cur = match (segment, cur) {
            (Seg::Key(k), Value::Object(map)) => map.get_mut(k)?,
            (Seg::Index(i), Value::Array(items)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// One step of a key path inside an item.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// The keys and indices of a serde error's path (enum and unknown steps name nothing in
/// the file).
fn segments_of(path: &serde_path_to_error::Path) -> Vec<Seg> {
    path.iter()
        .filter_map(|segment| match segment {
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}

/// Whether `message` says a key is missing that an earlier round took out.
fn removed_required_key(message: &str, at: &[Seg], removed: &[Vec<Seg>]) -> bool {
    let Some(rest) = message
        .strip_prefix("missing required key `")
        .or_else(|| message.strip_prefix("missing field `"))
    else {
        return false;
    };
    let Some(key) = rest.split('`').next() else {
        return false;
    };
    removed.iter().any(|r| {
        r.len() == at.len() + 1
            && r[..at.len()] == *at
            && r.last() == Some(&Seg::Key(key.to_owned()))
    })
}

/// Takes the value at `segments` out of `root`; false when there is none.
fn remove_at(root: &mut Value, segments: &[Seg]) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let Some(cur) = value_at(root, parents) else {
        return false;
    };
    match (last, cur) {
        (Seg::Key(k), Value::Object(map)) => map.remove(k).is_some(),
        (Seg::Index(i), Value::Array(items)) if *i < items.len() => {
            items.remove(*i);
            true
        }
        _ => false,
    }
}

fn unknown_keys(
    map: &serde_json::Map<String, Value>,
    parent: &str,
    known: &[&str],
    diags: &mut Diags,
) {
    for key in map.keys() {
        if !known.contains(&key.as_str()) {
            diags.error(join_key(parent, key), unknown_key_message(key, known));
        }
    }
}

fn unknown_key_message(key: &str, known: &[&str]) -> String {
    let mut message = format!("unknown key `{key}`");
    if known.is_empty() {
        return message;
    }
    if let Some(close) = known.iter().find(|k| edit_distance(k, key) <= 2) {
        message.push_str(&format!(" (did you mean `{close}`?)"));
    } else {
        message.push_str(&format!(" (expected one of: {})", known.join(", ")));
    }
    message
}

/// Levenshtein distance, for "did you mean"; keys are short.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string \"{s}\""),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

/// Rewrites serde's messages (written for Rust types) in proxy.yaml's terms.
fn humanize(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((key, expected)) = rest.split_once('`')
    {
        return unknown_key_message(key, &backticked(expected));
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let key = rest.trim_end_matches('`');
        return format!("missing required key `{key}`");
    }
    if let Some(rest) = message.strip_prefix("unknown variant `")
        && let Some((value, expected)) = rest.split_once('`')
    {
        return format!(
            "unknown value `{value}` (expected one of: {})",
            backticked(expected).join(", ")
        );
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((found, expected)) = rest.rsplit_once(", expected ")
        {
            return format!(
                "expected {}, found {}",
                expected_in_yaml(expected),
                found_in_yaml(found)
            );
        }
    }
    if message.starts_with("invalid length") && message.contains("expected struct") {
        return "expected a mapping, found a list".into();
    }
    message.to_owned()
}

/// The backticked names in a serde "expected one of `a`, `b`" tail.
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

fn expected_in_yaml(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number (0 or more)".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a sequence" => "a list".into(),
        "a map" => "a mapping".into(),
        e if e.starts_with("struct ") => "a mapping".into(),
        e if e.starts_with("enum ") => "one of the listed values".into(),
        e => e.into(),
    }
}

fn found_in_yaml(found: &str) -> String {
    match found {
        "map" => "a mapping".into(),
        "sequence" => "a list".into(),
        "null" | "unit value" => "nothing (null)".into(),
        f => {
            for prefix in ["integer ", "floating point ", "boolean "] {
                if let Some(v) = f.strip_prefix(prefix) {
                    return v.to_owned();
                }
            }
            f.to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanizes_serde_messages() {
        assert_eq!(
            humanize("unknown field `backof`, expected one of `max_attempts`, `backoff`"),
            "unknown key `backof` (did you mean `backoff`?)"
        );
        assert_eq!(
            humanize("unknown field `zzz`, expected `a` or `b`"),
            "unknown key `zzz` (expected one of: a, b)"
        );
        assert_eq!(
            humanize("unknown field `zzz`, there are no fields"),
            "unknown key `zzz`"
        );
        assert_eq!(
            humanize("missing field `upstream`"),
            "missing required key `upstream`"
        );
        assert_eq!(
            humanize("invalid type: string \"x\", expected u64"),
            "expected a whole number (0 or more), found string \"x\""
        );
        assert_eq!(
            humanize("invalid value: integer `-1`, expected u64"),
            "expected a whole number (0 or more), found `-1`"
        );
        assert_eq!(
            humanize("invalid type: sequence, expected struct RawAdmin"),
            "expected a mapping, found a list"
        );
        assert_eq!(
            humanize("unknown variant `fatal`, expected one of `ok`, `transient`"),
            "unknown value `fatal` (expected one of: ok, transient)"
        );
        assert_eq!(humanize("something else"), "something else");
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("backoff", "backof"), 1);
        assert_eq!(edit_distance("listen", "listne"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", "abc"), 0);
    }
}
