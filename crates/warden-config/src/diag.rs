//! Collecting problems as they are found, and printing them one per line.

use std::collections::HashSet;
use std::fmt;

/// One problem found in a config file, located by key path and, where known, line:column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Key path such as `connections[0].mcp.upstream`; empty for the document itself.
    pub path: String,
    /// 1-based, as editors count; `None` for problems not tied to one spot (flags).
    pub line: Option<u64>,
    /// 1-based, as editors count; `None` when the line is.
    pub column: Option<u64>,
    /// What is wrong and, where it helps, how to fix it, in proxy.yaml's terms.
    pub message: String,
}

/// `line:column: path: message`, leaving out whichever part is unknown or empty.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "{line}:")?;
            if let Some(column) = self.column {
                write!(f, "{column}:")?;
            }
            f.write_str(" ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// One line per diagnostic, `origin:line:column: path: message`, each ending in a newline:
/// the shape compilers use, so editors and CI annotate the file.
pub fn render(origin: &str, diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| {
            if d.line.is_some() {
                format!("{origin}:{d}\n")
            } else {
                format!("{origin}: {d}\n")
            }
        })
        .collect()
}

/// Where a key path sits in the file; the parsed document's index answers it.
pub(crate) trait Locate {
    fn locate(&self, path: &str) -> Option<Pos>;
}

/// No positions known (a file that did not parse).
impl Locate for () {
    fn locate(&self, _path: &str) -> Option<Pos> {
        None
    }
}

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: u64,
    pub column: u64,
}

/// Problems found so far; positions are resolved from the key path at the end, so the
/// checks only ever deal in paths.
#[derive(Debug, Default)]
pub(crate) struct Diags {
    items: Vec<(String, Option<Pos>, String)>,
}

impl Diags {
    pub(crate) fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.items.push((path.into(), None, message.into()));
    }

    /// For problems whose position is known better than their path's (syntax errors,
    /// duplicate keys, which have no node of their own in the tree).
    pub(crate) fn error_at(
        &mut self,
        path: impl Into<String>,
        pos: Pos,
        message: impl Into<String>,
    ) {
        self.items.push((path.into(), Some(pos), message.into()));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Resolves positions, drops repeats (a bad `defaults` value is found once per route
    /// that inherits it) and orders by position, unlocated last.
    pub(crate) fn into_diagnostics(self, index: &impl Locate) -> Vec<Diagnostic> {
        let mut out: Vec<Diagnostic> = Vec::with_capacity(self.items.len());
        let mut seen = HashSet::new();
        for (path, pos, message) in self.items {
            if !seen.insert((path.clone(), message.clone())) {
                continue;
            }
            let pos = pos.or_else(|| index.locate(&path));
            out.push(Diagnostic {
                path,
                line: pos.map(|p| p.line),
                column: pos.map(|p| p.column),
                message,
            });
        }
        out.sort_by_key(|d| (d.line.is_none(), d.line, d.column));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(path: &str, line: Option<u64>, column: Option<u64>) -> Diagnostic {
        Diagnostic {
            path: path.into(),
            line,
            column,
            message: "bad".into(),
        }
    }

    #[test]
    fn display_leaves_out_unknown_parts() {
        assert_eq!(diag("a.b", Some(3), Some(5)).to_string(), "3:5: a.b: bad");
        assert_eq!(diag("a.b", None, None).to_string(), "a.b: bad");
        assert_eq!(diag("", Some(1), Some(2)).to_string(), "1:2: bad");
        assert_eq!(diag("", None, None).to_string(), "bad");
    }

    #[test]
    fn render_prefixes_origin() {
        let out = render(
            "proxy.yaml",
            &[diag("a", Some(3), Some(5)), diag("--upstream", None, None)],
        );
        assert_eq!(out, "proxy.yaml:3:5: a: bad\nproxy.yaml: --upstream: bad\n");
    }

    #[test]
    fn dedupes_and_sorts() {
        let mut diags = Diags::default();
        diags.error("z", "late");
        diags.error_at("b", Pos { line: 2, column: 1 }, "m");
        diags.error_at("a", Pos { line: 1, column: 9 }, "m");
        diags.error_at("b", Pos { line: 2, column: 1 }, "m");
        let out = diags.into_diagnostics(&());
        let paths: Vec<_> = out.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["a", "b", "z"]);
    }
}
