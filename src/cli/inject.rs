//! `warden inject`: adds the warden native sidecar to the Pod templates of a Kubernetes YAML
//! stream, like `linkerd inject`.
//!
//! The stream is parsed into position-aware trees (`yaml`) and the sidecar is inserted as
//! text at the right offsets: documents and fields warden does not touch come out byte for
//! byte, comments included, and a document that already has the sidecar is not changed,
//! so injecting twice gives the same output as injecting once.

mod next_steps;
pub(crate) mod sidecar;
pub(crate) mod yaml;

use std::io::{Read as _, Write as _};
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use self::sidecar::{CONTAINER_NAME, INJECT_KEY, SidecarArgs, VOLUME_NAME, Val};
use self::yaml::{Kind, Node};

#[derive(Debug, clap::Args)]
pub(crate) struct InjectArgs {
    /// The YAML stream to read; stdin when absent or `-`.
    #[arg(short = 'f', long = "filename")]
    pub file: Option<PathBuf>,

    #[command(flatten)]
    pub sidecar: SidecarArgs,
}

pub(super) fn inject(args: InjectArgs) -> anyhow::Result<ExitCode> {
    args.sidecar.validate()?;
    let mut bytes = Vec::new();
    let origin = match args.file.as_deref() {
        None => None,
        Some(p) if p.as_os_str() == "-" => None,
        Some(p) => Some(p),
    };
    match origin {
        None => std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading stdin")?,
        Some(path) => {
            bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            bytes.len()
        }
    };
    let src = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "the input is not UTF-8 (byte {}); Kubernetes manifests must be",
            e.utf8_error().valid_up_to()
        )
    })?;
    // Everything is computed before anything is written: a stream that fails half-way
    // must not reach `kubectl apply` half-injected.
    let injected = inject_stream(&src, &args.sidecar)?;
    for note in &injected.notes {
        eprintln!("{note}");
    }
    for line in &injected.next_steps {
        eprintln!("{line}");
    }
    let mut out = std::io::stdout().lock();
    out.write_all(injected.text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// The rewritten stream, one line per workload saying what happened to it, and what the
/// user still has to do for each injected workload (stderr, never the stream).
#[derive(Debug)]
pub(super) struct Injected {
    pub text: String,
    pub notes: Vec<String>,
    pub next_steps: Vec<String>,
}

/// Adds the sidecar to every Pod template in `src` that lacks it and is not opted out.
pub(super) fn inject_stream(src: &str, args: &SidecarArgs) -> anyhow::Result<Injected> {
    let docs = yaml::parse_stream(src)?;
    let mut ctx = Ctx {
        src,
        args,
        nl: if src.contains("\r\n") { "\r\n" } else { "\n" },
        edits: Vec::new(),
        notes: Vec::new(),
        injected: Vec::new(),
    };
    for doc in &docs {
        ctx.visit(&doc.root, "").map_err(|problem| {
            anyhow::anyhow!("document {} (line {}): {problem}", doc.index, doc.root.line)
        })?;
    }
    let Ctx {
        edits,
        notes,
        injected,
        ..
    } = ctx;
    Ok(Injected {
        text: apply(src, edits),
        notes,
        next_steps: next_steps::lines(src, args, &injected),
    })
}

/// Replace `range` (empty for a pure insertion) with `text`.
#[derive(Debug)]
struct Edit {
    range: Range<usize>,
    text: String,
}

fn apply(src: &str, mut edits: Vec<Edit>) -> String {
    // Stable: two insertions at one offset keep the order they were made in
    // (initContainers before volumes).
    edits.sort_by_key(|e| e.range.start);
    let mut out = String::with_capacity(src.len() + edits.len() * 1024);
    let mut at = 0;
    for edit in edits {
        out.push_str(&src[at..edit.range.start]);
        out.push_str(&edit.text);
        at = edit.range.end;
    }
    out.push_str(&src[at..]);
    out
}

struct Ctx<'a> {
    src: &'a str,
    args: &'a SidecarArgs,
    nl: &'static str,
    edits: Vec<Edit>,
    notes: Vec<String>,
    /// Each workload that got the sidecar: `Kind name` and its namespace, if it names one.
    injected: Vec<(String, Option<String>)>,
}

/// Where the pod template sits in each workload kind.
enum Template {
    /// A bare Pod: its own metadata and spec.
    Pod,
    /// A template under this path (`spec.template`, or the CronJob's one further down).
    At(&'static [&'static str]),
}

fn template_of(api_version: &str, kind: &str) -> Option<Template> {
    let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
    match (group, kind) {
        ("", "Pod") => Some(Template::Pod),
        ("", "ReplicationController")
        | ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch", "Job") => Some(Template::At(&["spec", "template"])),
        ("batch", "CronJob") => Some(Template::At(&["spec", "jobTemplate", "spec", "template"])),
        _ => None,
    }
}

impl Ctx<'_> {
    /// `prefix` locates `node` inside a `List` (`items[2].`), empty at a document's root.
    fn visit(&mut self, node: &Node, prefix: &str) -> Result<(), String> {
        if !matches!(node.kind, Kind::Map { .. }) {
            return Ok(());
        }
        let text = |key: &str| -> Result<&str, String> {
            Ok(node.get(key)?.and_then(Node::as_str).unwrap_or_default())
        };
        let (api_version, kind) = (text("apiVersion")?, text("kind")?);
        if kind == "List" && api_version == "v1" {
            if let Some(Node {
                kind: Kind::Seq { items, .. },
                ..
            }) = node.get("items")?
            {
                for (i, item) in items.iter().enumerate() {
                    self.visit(item, &format!("{prefix}items[{i}]."))?;
                }
            }
            return Ok(());
        }
        let Some(template) = template_of(api_version, kind) else {
            return Ok(());
        };
        let name = lookup(node, &["metadata", "name"], prefix)?
            .and_then(Node::as_str)
            .or(lookup(node, &["metadata", "generateName"], prefix)?.and_then(Node::as_str))
            .unwrap_or("(unnamed)");
        let what = format!("{kind} {name}");
        let wrap = |problem: String| format!("{what}: {problem}");
        let (template_meta, spec_path) = match template {
            Template::Pod => (None, vec!["spec"]),
            Template::At(path) => {
                let mut meta = path.to_vec();
                meta.push("metadata");
                let mut spec = path.to_vec();
                spec.push("spec");
                (Some(meta), spec)
            }
        };
        let mut opted_out = disabled(node, &["metadata"], prefix).map_err(wrap)?;
        if let Some(meta) = &template_meta {
            opted_out |= disabled(node, meta, prefix).map_err(wrap)?;
        }
        if opted_out {
            self.notes
                .push(format!("{what}: skipped ({INJECT_KEY}: disabled)"));
            return Ok(());
        }
        let spec_key = spec_path.join(".");
        let Some(pod) = lookup(node, &spec_path, prefix).map_err(wrap)? else {
            return Err(wrap(format!(
                "{prefix}{spec_key} is missing: no pod template to inject"
            )));
        };
        let note = self
            .pod(pod, &format!("{prefix}{spec_key}"))
            .map_err(wrap)?;
        self.notes.push(format!("{what}: {note}"));
        if note == "injected" {
            let namespace = lookup(node, &["metadata", "namespace"], prefix)
                .map_err(wrap)?
                .and_then(Node::as_str)
                .map(str::to_owned);
            self.injected.push((what, namespace));
        }
        Ok(())
    }

    /// Adds the sidecar (and its volume) to one pod spec; says what it did.
    fn pod(&mut self, pod: &Node, path: &str) -> Result<&'static str, String> {
        let Kind::Map { .. } = &pod.kind else {
            return Err(match pod.kind {
                Kind::Alias => format!("{path} is a YAML alias; inject cannot edit it in place"),
                _ => format!("{path} is not a mapping"),
            });
        };
        if names(pod.get("initContainers")?).any(|n| n == CONTAINER_NAME) {
            return Ok("unchanged (already injected)");
        }
        if names(pod.get("containers")?).any(|n| n == CONTAINER_NAME) {
            return Ok("skipped (a container is already named warden)");
        }
        let container = sidecar::container(self.args);
        let init = self.prepend(pod, "initContainers", &container, path)?;
        self.edits.push(init);
        if !names(pod.get("volumes")?).any(|n| n == VOLUME_NAME) {
            let volume = sidecar::volume(self.args);
            let edit = self.prepend(pod, "volumes", &volume, path)?;
            self.edits.push(edit);
        }
        Ok("injected")
    }

    /// The edit that makes `value` the first item of the list under `key` in `map`,
    /// creating the key when absent. The new text follows the layout around it: block
    /// items at the list's own dash column, flow items as flow.
    fn prepend(&self, map: &Node, key: &str, value: &Val, path: &str) -> Result<Edit, String> {
        let Kind::Map { entries, flow } = &map.kind else {
            return Err(format!("{path} is not a mapping"));
        };
        let Some((key_node, list)) = entries.iter().find(|(k, _)| k.as_str() == Some(key)) else {
            return self.add_key(map, key, value, path);
        };
        let here = format!("{path}.{key}");
        match &list.kind {
            Kind::Seq { items, flow: true }
                if items.is_empty()
                    && !flow
                    && self.src[key_node.span.end..list.span.start].trim() == ":" =>
            {
                // `initContainers: []` in a block mapping becomes a block list.
                let (_, key_col) = self.line_and_column(key_node.span.start, &here)?;
                let block = value.to_block_item(key_col + 2);
                Ok(Edit {
                    range: key_node.span.end..list.span.end,
                    text: self.lines(&format!(":\n{}", block.trim_end_matches('\n'))),
                })
            }
            Kind::Seq { items, flow: true } => Ok(Edit {
                range: list.span.start + 1..list.span.start + 1,
                text: if items.is_empty() {
                    value.to_flow()
                } else {
                    format!("{}, ", value.to_flow())
                },
            }),
            Kind::Seq { items, flow: false } => {
                let first = items
                    .first()
                    .ok_or_else(|| format!("{here} is an empty block list"))?;
                let (line_start, dash_col) =
                    dash_line(self.src, first.span.start).ok_or_else(|| {
                        format!(
                            "{here}: cannot find the dash of its first item (line {}); \
                             write the list one `- item` per line",
                            first.line
                        )
                    })?;
                let at = above_comments(self.src, line_start);
                Ok(Edit {
                    range: at..at,
                    text: self.lines(&value.to_block_item(dash_col)),
                })
            }
            Kind::Alias => Err(format!(
                "{here} is a YAML alias; inject cannot edit it in place"
            )),
            _ if list.is_null() && !list.span.is_empty() => Ok(Edit {
                range: list.span.clone(),
                text: format!("[{}]", value.to_flow()),
            }),
            _ if list.is_null() => Err(format!(
                "{here} has no value (line {}); remove the key or give it a list",
                key_node.line
            )),
            _ => Err(format!("{here} is not a list (line {})", list.line)),
        }
    }

    /// A new `key: [value]` entry at the top of `map`.
    fn add_key(&self, map: &Node, key: &str, value: &Val, path: &str) -> Result<Edit, String> {
        let Kind::Map { entries, flow } = &map.kind else {
            return Err(format!("{path} is not a mapping"));
        };
        if *flow {
            let at = map.span.start + 1;
            let entry = format!("{key}: [{}]", value.to_flow());
            // `{}` has nothing to separate from, unless an entry was just added there.
            let text = if !entries.is_empty() {
                format!("{entry}, ")
            } else if self.edits.iter().any(|e| e.range == (at..at)) {
                format!(", {entry}")
            } else {
                entry
            };
            return Ok(Edit {
                range: at..at,
                text,
            });
        }
        let first = &entries
            .first()
            .ok_or_else(|| format!("{path} is an empty mapping"))?
            .0;
        let (line_start, col) = self.line_and_column(first.span.start, path)?;
        let mut text = " ".repeat(col);
        text.push_str(key);
        text.push_str(":\n");
        text.push_str(&value.to_block_item(col + 2));
        let at = above_comments(self.src, line_start);
        Ok(Edit {
            range: at..at,
            text: self.lines(&text),
        })
    }

    /// The start of the line holding `offset` and the column of `offset` in it, which must
    /// be preceded by spaces only: the layout where a new sibling line can go above it.
    fn line_and_column(&self, offset: usize, path: &str) -> Result<(usize, usize), String> {
        let start = line_start(self.src, offset);
        let prefix = &self.src[start..offset];
        if prefix.bytes().all(|b| b == b' ') {
            Ok((start, prefix.len()))
        } else {
            Err(format!(
                "{path}: its first key shares a line with other text ({prefix:?}); \
                 put each key of the pod spec on its own line"
            ))
        }
    }

    /// `text` with the stream's own line endings.
    fn lines(&self, text: &str) -> String {
        if self.nl == "\n" {
            text.to_owned()
        } else {
            text.replace('\n', self.nl)
        }
    }
}

fn line_start(src: &str, offset: usize) -> usize {
    src[..offset].rfind('\n').map_or(0, |i| i + 1)
}

/// The start of the comment lines directly above the line starting at `line`, or `line`
/// itself: such comments describe the entry below them, so new entries go above them.
fn above_comments(src: &str, line: usize) -> usize {
    let mut at = line;
    while at > 0 {
        let prev = line_start(src, at - 1);
        if !src[prev..at - 1].trim_start().starts_with('#') {
            break;
        }
        at = prev;
    }
    at
}

/// The line start and column of the dash that introduces the block-sequence item starting
/// at `item`: on the item's own line (`- name: x`) or on an earlier line holding only the
/// dash and maybe a comment (`-` then the item below it).
fn dash_line(src: &str, item: usize) -> Option<(usize, usize)> {
    let start = line_start(src, item);
    let prefix = &src[start..item];
    if let Some(col) = dash_then_space(prefix) {
        return Some((start, col));
    }
    if !prefix.trim().is_empty() {
        return None;
    }
    let mut end = start;
    while end > 0 {
        let prev = line_start(src, end - 1);
        let line = src[prev..end - 1].trim_end_matches('\r');
        let text = line.trim_start_matches(' ');
        if text.is_empty() || text.starts_with('#') {
            end = prev;
            continue;
        }
        let rest = text.strip_prefix('-')?.trim_start_matches([' ', '\t']);
        return (rest.is_empty() || rest.starts_with('#'))
            .then_some((prev, line.len() - text.len()));
    }
    None
}

/// `   -  ` → Some(3): spaces, one dash, at least one blank.
fn dash_then_space(prefix: &str) -> Option<usize> {
    let text = prefix.trim_start_matches(' ');
    let rest = text.strip_prefix('-')?;
    (!rest.is_empty() && rest.chars().all(|c| c == ' ' || c == '\t'))
        .then_some(prefix.len() - text.len())
}

/// The `name` of each mapping in a list (containers, volumes); nothing for anything else.
fn names(list: Option<&Node>) -> impl Iterator<Item = &str> {
    let items = match list.map(|n| &n.kind) {
        Some(Kind::Seq { items, .. }) => items.as_slice(),
        _ => &[],
    };
    items
        .iter()
        .filter_map(|item| item.get("name").ok().flatten().and_then(Node::as_str))
}

/// The node at `path` under `node`; None when a key is missing. Aliases and repeated keys
/// are errors: editing through them would change what the user did not ask to change.
fn lookup<'n>(node: &'n Node, path: &[&str], prefix: &str) -> Result<Option<&'n Node>, String> {
    let mut at = node;
    for (i, key) in path.iter().enumerate() {
        if let Kind::Alias = at.kind {
            return Err(format!(
                "{prefix}{} is a YAML alias; inject cannot edit it in place",
                path[..i].join(".")
            ));
        }
        match at.get(key) {
            Ok(Some(next)) => at = next,
            Ok(None) => return Ok(None),
            Err(problem) => return Err(format!("{prefix}{}: {problem}", path[..i].join("."))),
        }
    }
    Ok(Some(at))
}

/// Whether the metadata at `meta` carries `warden.io/inject: disabled`.
fn disabled(node: &Node, meta: &[&str], prefix: &str) -> Result<bool, String> {
    let mut path = meta.to_vec();
    path.extend(["annotations", INJECT_KEY]);
    Ok(lookup(node, &path, prefix)?
        .and_then(Node::as_str)
        .is_some_and(|v| v.eq_ignore_ascii_case("disabled")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> SidecarArgs {
        SidecarArgs {
            image: "img:1".into(),
            config_map: "cfg".into(),
            admin_port: 9901,
        }
    }

    fn run(src: &str) -> String {
        inject_stream(src, &args()).expect("injects").text
    }

    const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: p
spec:
  containers:
    - name: app
      image: app
";

    #[test]
    fn a_pod_without_init_containers_gets_both_keys_on_top() {
        let out = run(POD);
        assert!(
            out.starts_with("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  initContainers:\n    - name: warden\n      image: img:1\n"),
            "{out}"
        );
        assert!(
            out.contains("  volumes:\n    - name: warden-config\n      configMap:\n        name: cfg\n  containers:\n    - name: app\n"),
            "{out}"
        );
        assert_eq!(run(&out), out, "idempotent");
    }

    #[test]
    fn existing_lists_get_the_sidecar_first_in_their_own_layout() {
        let src = "apiVersion: v1
kind: Pod
spec:
  initContainers:
  - name: migrate  # runs first today
  volumes:
    -
      name: data
  containers: [{name: app}]
";
        let out = run(src);
        assert!(
            out.contains("  initContainers:\n  - name: warden\n    image: img:1\n"),
            "{out}"
        );
        assert!(
            out.contains("  - name: migrate  # runs first today\n"),
            "{out}"
        );
        assert!(
            out.contains("  volumes:\n    - name: warden-config\n      configMap:\n        name: cfg\n    -\n      name: data\n"),
            "{out}"
        );
    }

    #[test]
    fn flow_layouts_get_flow_text() {
        let src = "apiVersion: v1\nkind: Pod\nspec: {containers: [{name: app}], initContainers: [{name: a}]}\n";
        let out = run(src);
        assert!(
            out.contains(r#"spec: {volumes: [{name: "warden-config", configMap: {name: "cfg"}}], containers: [{name: app}], initContainers: [{name: "warden", "#),
            "{out}"
        );
        assert!(out.contains("}, {name: a}]}"), "{out}");
        let out = run("apiVersion: v1\nkind: Pod\nspec: {}\n");
        assert!(
            out.starts_with(
                r#"apiVersion: v1
kind: Pod
spec: {initContainers: [{name: "warden", "#
            ) && out.ends_with(
                r#"}]}], volumes: [{name: "warden-config", configMap: {name: "cfg"}}]}
"#
            ),
            "{out}"
        );
        let empty =
            "apiVersion: v1\nkind: Pod\nspec:\n  initContainers: []\n  containers: [{name: app}]\n";
        let out = run(empty);
        assert!(
            out.contains("  initContainers:\n    - name: warden\n"),
            "{out}"
        );
    }

    #[test]
    fn crlf_streams_stay_crlf() {
        let out = run(&POD.replace('\n', "\r\n"));
        assert!(!out.replace("\r\n", "").contains('\n'), "{out:?}");
    }

    #[test]
    fn problems_name_the_document_and_the_field() {
        let src = "kind: Service\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      initContainers: 3\n";
        let err = inject_stream(src, &args())
            .expect_err("not a list")
            .to_string();
        assert!(err.starts_with("document 2 (line 3): Deployment web: spec.template.spec.initContainers is not a list"), "{err}");
        let err = inject_stream("apiVersion: apps/v1\nkind: Deployment\nspec: {}\n", &args())
            .expect_err("no template")
            .to_string();
        assert!(err.contains("spec.template.spec is missing"), "{err}");
    }

    #[test]
    fn lists_are_walked() {
        let src = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: a}\n  spec:\n    containers:\n    - name: app\n";
        let out = run(src);
        assert!(
            out.contains("  spec:\n    initContainers:\n      - name: warden\n"),
            "{out}"
        );
    }
}
