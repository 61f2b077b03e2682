//! A YAML stream as trees of nodes that remember where they sit in the source text.
//!
//! `warden inject` never re-serializes a document: it finds the pod spec in this tree and
//! inserts the sidecar's text at byte offsets of the original. Everything it does not add,
//! comments, quoting, key order, anchors, blank lines, stays byte for byte as it was.

use std::ops::Range;

use granit_parser::{Event, Parser, ScalarStyle, StructureStyle};

/// Deeper nesting is refused rather than risking the stack on hostile input; real manifests
/// stay well under 30 levels.
const MAX_DEPTH: usize = 256;

#[derive(Debug)]
pub(crate) struct Node {
    pub kind: Kind,
    /// Byte range in the source. Block collections start at their first entry; flow
    /// collections at their bracket.
    pub span: Range<usize>,
    /// 1-based.
    pub line: usize,
}

#[derive(Debug)]
pub(crate) enum Kind {
    Scalar {
        value: String,
        plain: bool,
    },
    Seq {
        items: Vec<Node>,
        flow: bool,
    },
    Map {
        entries: Vec<(Node, Node)>,
        flow: bool,
    },
    Alias,
}

#[derive(Debug)]
pub(crate) struct Document {
    /// 1-based position in the stream; empty documents count.
    pub index: usize,
    pub root: Node,
}

#[derive(Debug)]
pub(crate) struct ParseError {
    pub document: usize,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "document {} (line {}, column {}): cannot parse YAML: {}",
            self.document, self.line, self.column, self.message
        )
    }
}

impl std::error::Error for ParseError {}

impl Node {
    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// A plain `null`, `~` or nothing at all: YAML's null.
    pub(crate) fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { value, plain: true }
            if matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The value under `key` in a mapping; None for a missing key or a node that is not a
    /// mapping. A key given twice is an error: which one the API server would keep depends
    /// on its parser, so guessing could inject into the copy that gets dropped.
    pub(crate) fn get(&self, key: &str) -> Result<Option<&Node>, String> {
        let Kind::Map { entries, .. } = &self.kind else {
            return Ok(None);
        };
        let mut found = None;
        for (k, v) in entries {
            if k.as_str() == Some(key) {
                if found.is_some() {
                    return Err(format!("key {key:?} appears twice (line {})", k.line));
                }
                found = Some(v);
            }
        }
        Ok(found)
    }
}

/// Parses every document of `src`.
pub(crate) fn parse_stream(src: &str) -> Result<Vec<Document>, ParseError> {
    let mut docs = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut started = 0usize;
    let mut in_doc = false;
    let mut root: Option<Node> = None;
    for next in Parser::new_from_str(src) {
        let (event, span) = next.map_err(|err| ParseError {
            document: if in_doc { started } else { started + 1 },
            line: err.marker().line(),
            column: err.marker().col() + 1,
            message: err.info(),
        })?;
        let line = span.start.line();
        let fail = |message: String| ParseError {
            document: started.max(1),
            line,
            column: span.start.col() + 1,
            message,
        };
        let range = span
            .byte_range()
            .ok_or_else(|| fail("the parser gave no byte offsets".into()))?;
        let node = match event {
            Event::DocumentStart(..) => {
                started += 1;
                in_doc = true;
                continue;
            }
            Event::DocumentEnd => {
                in_doc = false;
                docs.push(Document {
                    index: started,
                    root: root.take().unwrap_or(Node {
                        kind: Kind::Scalar {
                            value: String::new(),
                            plain: true,
                        },
                        span: range.clone(),
                        line,
                    }),
                });
                continue;
            }
            Event::Scalar(value, style, ..) => Node {
                kind: Kind::Scalar {
                    value: value.into_owned(),
                    plain: style == ScalarStyle::Plain,
                },
                span: range,
                line,
            },
            Event::Alias(..) => Node {
                kind: Kind::Alias,
                span: range,
                line,
            },
            Event::SequenceStart(style, ..) | Event::MappingStart(style, ..) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(fail(format!("nested deeper than {MAX_DEPTH} levels")));
                }
                let is_map = matches!(event, Event::MappingStart(..));
                stack.push(Frame {
                    is_map,
                    flow: style == StructureStyle::Flow,
                    start: range.start,
                    line,
                    items: Vec::new(),
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = stack.pop() else {
                    return Err(fail("a collection ended that never started".into()));
                };
                frame.finish(range.end).map_err(|mut err| {
                    err.document = started.max(1);
                    err
                })?
            }
            _ => continue,
        };
        match stack.last_mut() {
            Some(frame) => frame.items.push(node),
            None => root = Some(node),
        }
    }
    Ok(docs)
}

struct Frame {
    is_map: bool,
    flow: bool,
    start: usize,
    line: usize,
    items: Vec<Node>,
}

impl Frame {
    fn finish(self, end: usize) -> Result<Node, ParseError> {
        // A block collection's end event sits at the next token, possibly lines later; its
        // last child's end is where it really stops.
        let end = if self.flow {
            end
        } else {
            self.items.last().map_or(self.start, |n| n.span.end)
        };
        let kind = if self.is_map {
            let mut entries = Vec::with_capacity(self.items.len() / 2);
            let mut items = self.items.into_iter();
            while let Some(key) = items.next() {
                let Some(value) = items.next() else {
                    return Err(ParseError {
                        document: 0,
                        line: key.line,
                        column: 0,
                        message: "a mapping key without a value".into(),
                    });
                };
                entries.push((key, value));
            }
            Kind::Map {
                entries,
                flow: self.flow,
            }
        } else {
            Kind::Seq {
                items: self.items,
                flow: self.flow,
            }
        };
        Ok(Node {
            kind,
            span: self.start..end,
            line: self.line,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_point_into_the_source() {
        let src = "# c\na: 1\nb:\n  - x\n  - {k: v}\n---\n---\n[1, 2]\n";
        let docs = parse_stream(src).expect("parses");
        assert_eq!(docs.len(), 3);
        assert_eq!(docs.iter().map(|d| d.index).collect::<Vec<_>>(), [1, 2, 3]);
        let b = docs[0].root.get("b").expect("unique").expect("present");
        let Kind::Seq { items, flow } = &b.kind else {
            panic!("b is a sequence: {b:?}")
        };
        assert!(!flow);
        assert_eq!(&src[items[0].span.clone()], "x");
        assert_eq!(&src[items[1].span.clone()], "{k: v}");
        assert!(docs[1].root.is_null());
        let Kind::Seq { flow: true, .. } = &docs[2].root.kind else {
            panic!("flow sequence")
        };
        assert_eq!(&src[docs[2].root.span.clone()], "[1, 2]");
    }

    #[test]
    fn errors_name_the_document_and_line() {
        let err = parse_stream("a: 1\n---\nb: [1\n").expect_err("unclosed flow");
        assert_eq!(err.document, 2);
        assert!(err.line >= 3, "{err}");
    }

    #[test]
    fn duplicate_keys_are_reported() {
        let docs = parse_stream("a: 1\na: 2\n").expect("parses");
        assert!(docs[0].root.get("a").is_err());
    }
}
