//! proxy.yaml inside a Kubernetes ConfigMap manifest (`data."proxy.yaml"`), as
//! deploy/config/configmap.yaml ships it: `warden check` validates it in place, with
//! positions in the manifest, and `warden inject` reads the routes of one in its stream.

use std::net::SocketAddr;

use super::inject::yaml::{self, Kind, Node};

/// The key under `data` that holds the config.
pub(super) const DATA_KEY: &str = "proxy.yaml";

/// One ConfigMap's proxy.yaml.
#[derive(Debug)]
pub(super) struct Embedded {
    pub name: String,
    pub namespace: Option<String>,
    pub text: String,
    /// Where the text starts in the manifest, when that is exact (a `|` block scalar):
    /// line `n` of the text is line `n + first_line - 1` of the manifest, shifted right by
    /// `indent` columns.
    pub placement: Option<Placement>,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Placement {
    pub first_line: u64,
    pub indent: u64,
}

/// Whether `src` looks like Kubernetes YAML rather than a proxy.yaml: some document has
/// `apiVersion` and `kind` at its top.
pub(super) fn is_manifest(src: &str) -> bool {
    let Ok(docs) = yaml::parse_stream(src) else {
        return false;
    };
    docs.iter().any(|d| {
        let text = |k: &str| d.root.get(k).ok().flatten().and_then(Node::as_str);
        text("apiVersion").is_some() && text("kind").is_some()
    })
}

/// Every ConfigMap in the stream that holds a proxy.yaml, in stream order.
pub(super) fn find(src: &str) -> Result<Vec<Embedded>, String> {
    let docs = yaml::parse_stream(src).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for doc in &docs {
        collect(src, &doc.root, &mut out)?;
    }
    Ok(out)
}

fn collect(src: &str, node: &Node, out: &mut Vec<Embedded>) -> Result<(), String> {
    if !matches!(node.kind, Kind::Map { .. }) {
        return Ok(());
    }
    let text =
        |key: &str| -> Result<Option<&str>, String> { Ok(node.get(key)?.and_then(Node::as_str)) };
    match (text("apiVersion")?, text("kind")?) {
        (Some("v1"), Some("List")) => {
            if let Some(Node {
                kind: Kind::Seq { items, .. },
                ..
            }) = node.get("items")?
            {
                for item in items {
                    collect(src, item, out)?;
                }
            }
        }
        (Some("v1"), Some("ConfigMap")) => {
            let meta = node.get("metadata")?;
            let field = |key: &str| -> Result<Option<String>, String> {
                Ok(match meta {
                    Some(m) => m.get(key)?.and_then(Node::as_str).map(str::to_owned),
                    None => None,
                })
            };
            let Some(data) = node.get("data")? else {
                return Ok(());
            };
            let Some(value) = data.get(DATA_KEY)? else {
                return Ok(());
            };
            let Some(config) = value.as_str() else {
                return Err(format!(
                    "line {}: data.\"{DATA_KEY}\" is not a string",
                    value.line
                ));
            };
            out.push(Embedded {
                name: field("name")?.unwrap_or_else(|| "(unnamed)".to_owned()),
                namespace: field("namespace")?,
                text: config.to_owned(),
                placement: placement(src, value),
            });
        }
        _ => {}
    }
    Ok(())
}

/// A literal block scalar (`|`, `|-`, `|+`) keeps its lines as they are, so positions map
/// back by a line offset and the indentation; folded or quoted scalars do not. The parser
/// places a block scalar at its first content line; its header is the line before.
fn placement(src: &str, value: &Node) -> Option<Placement> {
    let line_start = src
        .get(..value.span.start)?
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let header = src.get(..line_start.checked_sub(1)?)?;
    let header = &header[header.rfind('\n').map_or(0, |i| i + 1)..];
    let header = header.split(" #").next()?.trim_end();
    let indicator = header.rsplit(' ').next()?;
    if !indicator.starts_with('|') {
        return None;
    }
    Some(Placement {
        first_line: u64::try_from(value.line).ok()?,
        indent: u64::try_from(value.span.start - line_start).ok()?,
    })
}

/// Moves diagnostics of the embedded text to their place in the manifest.
pub(super) fn relocate(
    diagnostics: &mut [warden_config::Diagnostic],
    placement: Option<Placement>,
) -> bool {
    let Some(p) = placement else {
        return false;
    };
    for d in diagnostics {
        if let Some(line) = &mut d.line {
            *line += p.first_line - 1;
            if let Some(column) = &mut d.column {
                *column += p.indent;
            }
        }
    }
    true
}

/// Why an admin address is no good in a pod, if it is not.
pub(super) fn admin_problem(listen: SocketAddr) -> Option<String> {
    listen.ip().is_loopback().then(|| {
        format!(
            "admin.listen is {listen}, a loopback address: in a pod the kubelet's probes and \
             Prometheus reach the pod IP, so the startup probe never passes and nothing is \
             scraped; use 0.0.0.0:{port} (\"[::]:{port}\" on IPv6-only clusters)",
            port = listen.port()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: warden-config
  namespace: shop
data:
  proxy.yaml: |
    version: 1
    admin:
      listen: localhost:9901
";

    #[test]
    fn finds_the_embedded_config_and_its_place() {
        assert!(is_manifest(MANIFEST));
        assert!(!is_manifest("version: 1\nconnections: []\n"));
        let found = find(MANIFEST).expect("parses");
        assert_eq!(found.len(), 1);
        let e = &found[0];
        assert_eq!(e.name, "warden-config");
        assert_eq!(e.namespace.as_deref(), Some("shop"));
        assert!(e.text.starts_with("version: 1\nadmin:\n"), "{}", e.text);
        let p = e.placement.expect("a block scalar");
        assert_eq!((p.first_line, p.indent), (8, 4));
    }
}
