//! YAML text to a `serde_json::Value`, plus where every key and item sits in the file.
//!
//! Deserializing the typed config straight from YAML would stop at the first error and lose
//! positions below the failing node. Going through a located tree lets each section be
//! decoded on its own (so every error is reported) while any key path can still be mapped
//! back to a line and column.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::{Budget, DuplicateKeyPolicy, MessageFormatter, Options, Spanned};

use crate::diag::{Diags, Locate, Pos};

/// Larger files are refused before parsing: a proxy config is a few kilobytes, and the cap
/// keeps a mistaken path (a log, a binary) from costing seconds and memory.
pub(crate) const MAX_SOURCE_BYTES: usize = 4 * 1024 * 1024;

/// The deepest real key (`connections[i].mcp.retry.backoff.base`) is 6 levels down; the
/// margin leaves room for anchors and future keys while bounding recursion.
const MAX_DEPTH: usize = 32;

/// A parsed document and the position of every key path in it.
pub(crate) struct Document {
    pub value: Value,
    pub index: Index,
}

/// Key path (`connections[0].mcp.upstream`) to the position of that key, or of the item for
/// sequence entries.
#[derive(Debug, Default)]
pub(crate) struct Index {
    positions: HashMap<String, Pos>,
}

impl Locate for Index {
    /// The position of `path` or, when that key is absent (a missing required key), of its
    /// nearest ancestor: the place where the key should be added.
    fn locate(&self, path: &str) -> Option<Pos> {
        let mut path = path;
        loop {
            if let Some(pos) = self.positions.get(path) {
                return Some(*pos);
            }
            if path.is_empty() {
                return None;
            }
            path = parent(path);
        }
    }
}

/// `a.b[2]` → `a.b`, `a.b` → `a`, `a` → ``.
fn parent(path: &str) -> &str {
    if path.ends_with(']')
        && let Some(i) = path.rfind('[')
    {
        return &path[..i];
    }
    path.rfind('.').map_or("", |i| &path[..i])
}

/// `parent.key`, or `key` at the top level.
pub(crate) fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[index]`.
pub(crate) fn join_index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// Parses `source`. A YAML syntax error is the only error there is (nothing after it can be
/// trusted) and comes back as `Err`; duplicate keys are reported into `diags` and the first
/// occurrence is kept, so the rest of the file is still checked.
pub(crate) fn parse(source: &str, diags: &mut Diags) -> Result<Document, ()> {
    if source.len() > MAX_SOURCE_BYTES {
        diags.error(
            "",
            format!(
                "the file is {} bytes; a proxy.yaml may be at most {MAX_SOURCE_BYTES} bytes",
                source.len()
            ),
        );
        return Err(());
    }
    let root =
        serde_saphyr::from_str_with_options::<Spanned<Node>>(source, options()).map_err(|err| {
            let err = err.without_snippet();
            let message = serde_saphyr::UserMessageFormatter.format_message(err);
            let message = match message.split_once("limits breached: ") {
                Some((_, breach)) if breach.starts_with("Depth") => {
                    format!("nested too deeply (more than {MAX_DEPTH} levels; proxy.yaml needs 6)")
                }
                Some((_, breach)) => {
                    format!("too large or too complex for a config file ({breach})")
                }
                None => one_line(&message),
            };
            match err.location() {
                Some(loc) if loc.line() > 0 => diags.error_at(
                    "",
                    Pos {
                        line: loc.line(),
                        column: loc.column(),
                    },
                    message,
                ),
                _ => diags.error("", message),
            }
        })?;
    let mut index = Index::default();
    if matches!(root.value, Node::Null) {
        // An empty (or comments-only) file: point at its start, not its end.
        index
            .positions
            .insert(String::new(), Pos { line: 1, column: 1 });
    }
    let value = convert(root, String::new(), &mut index, diags);
    Ok(Document { value, index })
}

fn options() -> Options {
    let mut budget = Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_nodes = 100_000;
    budget.max_total_scalar_bytes = MAX_SOURCE_BYTES;
    let mut options = Options::default();
    options.budget = Some(budget);
    // `yes`/`no`/`on`/`off` stay strings: YAML 1.1 booleans are a classic config footgun.
    options.strict_booleans = true;
    // Duplicates reach the tree below, which reports each with its path and keeps going.
    options.duplicate_keys = DuplicateKeyPolicy::PassThrough;
    options.with_snippet = false;
    options
}

/// Control characters would break the one-line-per-error output.
fn one_line(message: &str) -> String {
    message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn pos_of<T>(spanned: &Spanned<T>) -> Pos {
    Pos {
        line: spanned.referenced.line(),
        column: spanned.referenced.column(),
    }
}

fn convert(node: Spanned<Node>, path: String, index: &mut Index, diags: &mut Diags) -> Value {
    index.positions.entry(path.clone()).or_insert(pos_of(&node));
    match node.value {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(b),
        Node::Int(n) => {
            if let Ok(n) = i64::try_from(n) {
                Value::from(n)
            } else if let Ok(n) = u64::try_from(n) {
                Value::from(n)
            } else {
                // Beyond u64 nothing in proxy.yaml can take it; keep it as a (rejected) float.
                Value::from(n as f64)
            }
        }
        Node::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        Node::Str(s) => Value::String(s),
        Node::Seq(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| convert(item, join_index(&path, i), index, diags))
                .collect(),
        ),
        Node::Map(entries) => {
            let mut map = serde_json::Map::new();
            let mut first_seen: HashMap<String, Pos> = HashMap::new();
            for (key, value) in entries {
                let key_path = join_key(&path, &key.value);
                let key_pos = pos_of(&key);
                if let Some(first) = first_seen.get(&key.value) {
                    diags.error_at(
                        key_path,
                        key_pos,
                        format!(
                            "duplicate key `{}` (first at line {}, column {}); this one is ignored",
                            key.value, first.line, first.column
                        ),
                    );
                    continue;
                }
                first_seen.insert(key.value.clone(), key_pos);
                index.positions.insert(key_path.clone(), key_pos);
                let value = convert(value, key_path, index, diags);
                map.insert(key.value, value);
            }
            Value::Object(map)
        }
    }
}

/// A YAML node with its children located; scalars are typed the YAML 1.2 core way.
enum Node {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Int(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        Ok(i128::try_from(v).map_or(Node::Float(v as f64), Node::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Node, E> {
        Err(E::custom("binary values are not allowed in proxy.yaml"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Node::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(source: &str) -> (Document, Diags) {
        let mut diags = Diags::default();
        let doc = parse(source, &mut diags).unwrap_or_else(|()| panic!("{diags:?}"));
        (doc, diags)
    }

    fn at(index: &Index, path: &str) -> (u64, u64) {
        let pos = index.locate(path).expect(path);
        (pos.line, pos.column)
    }

    #[test]
    fn indexes_keys_and_items() {
        let (doc, diags) = doc("a: 1\nb:\n  - x\n  - c: 2\n    d: [3, 4]\n");
        assert!(diags.is_empty());
        assert_eq!(
            doc.value,
            serde_json::json!({"a": 1, "b": ["x", {"c": 2, "d": [3, 4]}]})
        );
        assert_eq!(at(&doc.index, ""), (1, 1));
        assert_eq!(at(&doc.index, "a"), (1, 1));
        assert_eq!(at(&doc.index, "b"), (2, 1));
        assert_eq!(at(&doc.index, "b[0]"), (3, 5));
        assert_eq!(at(&doc.index, "b[1].c"), (4, 5));
        assert_eq!(at(&doc.index, "b[1].d[1]"), (5, 12));
        // Missing keys fall back to the nearest ancestor.
        assert_eq!(at(&doc.index, "b[1].nope.deeper"), (4, 5));
        assert_eq!(at(&doc.index, "b[7]"), (2, 1));
    }

    #[test]
    fn duplicate_keys_are_reported_and_first_kept() {
        let (doc, diags) = doc("a: 1\nb: {c: 1, c: 2}\na: 3\n");
        assert_eq!(doc.value, serde_json::json!({"a": 1, "b": {"c": 1}}));
        let out = diags.into_diagnostics(&doc.index);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].path.as_str(), out[0].line), ("b.c", Some(2)));
        assert_eq!(out[0].column, Some(11));
        assert_eq!((out[1].path.as_str(), out[1].line), ("a", Some(3)));
        assert!(
            out[1].message.contains("first at line 1"),
            "{}",
            out[1].message
        );
    }

    #[test]
    fn yes_and_no_stay_strings() {
        let (doc, _) = doc("a: yes\nb: no\nc: true\n");
        assert_eq!(
            doc.value,
            serde_json::json!({"a": "yes", "b": "no", "c": true})
        );
    }

    #[test]
    fn syntax_errors_are_located_and_single_line() {
        let mut diags = Diags::default();
        assert!(parse("a: [1,\nb: 2\n", &mut diags).is_err());
        let out = diags.into_diagnostics(&Index::default());
        assert_eq!(out.len(), 1);
        assert!(out[0].line.is_some());
        assert!(!out[0].message.contains('\n'));
    }

    #[test]
    fn parent_paths() {
        assert_eq!(parent("a.b[2]"), "a.b");
        assert_eq!(parent("a.b"), "a");
        assert_eq!(parent("a"), "");
        assert_eq!(parent("[0]"), "");
    }
}
