//! The warden native sidecar, defined once for `warden inject` (YAML text) and
//! `warden webhook` (JSON patches), so both add exactly the same container and volume.

use std::fmt::Write as _;

/// The init container's name; its presence is what makes injection idempotent.
pub(crate) const CONTAINER_NAME: &str = "warden";
/// The pod volume holding proxy.yaml. A volume of this name already in the pod spec is
/// used as it is, so a projected volume (ConfigMap plus a Secret for `admin.token_file`)
/// can replace the plain ConfigMap.
pub(crate) const VOLUME_NAME: &str = "warden-config";
/// Where the volume is mounted; the sidecar runs `warden run --config <this>/proxy.yaml`.
pub(crate) const CONFIG_DIR: &str = "/etc/warden";
/// The admin port's name: probes and the PodMonitor refer to it by name, not number.
pub(crate) const ADMIN_PORT_NAME: &str = "warden-admin";
/// Label or annotation key that opts a workload in (`enabled`) or out (`disabled`).
pub(crate) const INJECT_KEY: &str = "warden.io/inject";
/// distroless' `nonroot` user, which the image runs as.
const RUN_AS: i64 = 65532;

const DEFAULT_IMAGE: &str = concat!("ghcr.io/warden-proxy/warden:", env!("CARGO_PKG_VERSION"));

/// What may vary between clusters; shared by `inject` and `webhook`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SidecarArgs {
    /// Image of the injected sidecar. The webhook's manifest sets it through the variable,
    /// which kustomize fills in from the same `images:` entry as the webhook's own image.
    #[arg(long, env = "WARDEN_SIDECAR_IMAGE", default_value = DEFAULT_IMAGE)]
    pub image: String,

    /// ConfigMap that holds proxy.yaml; mounted read-only at /etc/warden.
    #[arg(long, default_value = "warden-config")]
    pub config_map: String,

    /// The admin port: proxy.yaml's `admin.listen` must use it on 0.0.0.0 so the kubelet's
    /// probes and Prometheus can reach it.
    #[arg(long, default_value_t = 9901)]
    pub admin_port: u16,
}

impl SidecarArgs {
    /// Refuses values that would produce a pod the API server rejects, before any output.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.image.is_empty() && !self.image.contains(char::is_whitespace),
            "--image: {:?} is not an image reference",
            self.image
        );
        anyhow::ensure!(
            is_dns_subdomain(&self.config_map),
            "--config-map: {:?} is not a valid ConfigMap name (lower-case letters, digits, '-' and '.', at most 253)",
            self.config_map
        );
        anyhow::ensure!(self.admin_port != 0, "--admin-port: 0 is not a port");
        Ok(())
    }
}

fn is_dns_subdomain(name: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(ok_char)
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A small ordered value: the sidecar's fields in the order a reader expects them
/// (name, image, args first), whichever way it is rendered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<Val>),
    Map(Vec<(&'static str, Val)>),
}

fn s(v: impl Into<String>) -> Val {
    Val::Str(v.into())
}

fn map(entries: Vec<(&'static str, Val)>) -> Val {
    Val::Map(entries)
}

fn probe(path: &str, period: i64, failures: i64) -> Val {
    map(vec![
        (
            "httpGet",
            map(vec![("path", s(path)), ("port", s(ADMIN_PORT_NAME))]),
        ),
        ("periodSeconds", Val::Int(period)),
        ("failureThreshold", Val::Int(failures)),
    ])
}

/// The init container. `restartPolicy: Always` makes it a native sidecar (Kubernetes 1.29+):
/// it starts before the app containers, keeps running beside them, and is stopped only after
/// they have exited, so the app never loses its proxy while it shuts down. No `preStop` hook
/// is needed: on SIGTERM warden turns `/readyz` to 503 and drains in-flight requests itself.
pub(crate) fn container(args: &SidecarArgs) -> Val {
    map(vec![
        ("name", s(CONTAINER_NAME)),
        ("image", s(&args.image)),
        (
            "args",
            Val::List(vec![
                s("run"),
                s("--config"),
                s(format!("{CONFIG_DIR}/proxy.yaml")),
            ]),
        ),
        ("restartPolicy", s("Always")),
        (
            "ports",
            Val::List(vec![map(vec![
                ("name", s(ADMIN_PORT_NAME)),
                ("containerPort", Val::Int(i64::from(args.admin_port))),
                ("protocol", s("TCP")),
            ])]),
        ),
        // The kubelet starts the app containers only once a sidecar's startup probe has
        // passed: with /readyz that means every listener is bound, so the app's first
        // request to 127.0.0.1 is never refused.
        ("startupProbe", probe("/readyz", 1, 30)),
        ("readinessProbe", probe("/readyz", 5, 2)),
        ("livenessProbe", probe("/healthz", 10, 3)),
        (
            "resources",
            map(vec![
                (
                    "requests",
                    map(vec![("cpu", s("10m")), ("memory", s("32Mi"))]),
                ),
                ("limits", map(vec![("memory", s("128Mi"))])),
            ]),
        ),
        (
            "securityContext",
            map(vec![
                ("runAsNonRoot", Val::Bool(true)),
                ("runAsUser", Val::Int(RUN_AS)),
                ("runAsGroup", Val::Int(RUN_AS)),
                ("readOnlyRootFilesystem", Val::Bool(true)),
                ("allowPrivilegeEscalation", Val::Bool(false)),
                (
                    "capabilities",
                    map(vec![("drop", Val::List(vec![s("ALL")]))]),
                ),
                ("seccompProfile", map(vec![("type", s("RuntimeDefault"))])),
            ]),
        ),
        // A config error makes warden exit at once; this puts its message in
        // `kubectl describe pod` instead of only in the logs.
        ("terminationMessagePolicy", s("FallbackToLogsOnError")),
        (
            "volumeMounts",
            Val::List(vec![map(vec![
                ("name", s(VOLUME_NAME)),
                ("mountPath", s(CONFIG_DIR)),
                ("readOnly", Val::Bool(true)),
            ])]),
        ),
    ])
}

/// The pod volume with proxy.yaml.
pub(crate) fn volume(args: &SidecarArgs) -> Val {
    map(vec![
        ("name", s(VOLUME_NAME)),
        ("configMap", map(vec![("name", s(&args.config_map))])),
    ])
}

impl Val {
    pub(crate) fn to_json(&self) -> serde_json::Value {
        match self {
            Val::Str(v) => serde_json::Value::String(v.clone()),
            Val::Int(v) => serde_json::Value::from(*v),
            Val::Bool(v) => serde_json::Value::Bool(*v),
            Val::List(items) => items.iter().map(Val::to_json).collect(),
            Val::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// JSON text with the keys in this value's order: valid YAML flow style, for inserting
    /// into a flow collection (`initContainers: [...]`).
    pub(crate) fn to_flow(&self) -> String {
        let mut out = String::new();
        self.write_flow(&mut out);
        out
    }

    fn write_flow(&self, out: &mut String) {
        match self {
            Val::Str(v) => out.push_str(&serde_json::Value::String(v.clone()).to_string()),
            Val::Int(v) => {
                let _ = write!(out, "{v}");
            }
            Val::Bool(v) => {
                let _ = write!(out, "{v}");
            }
            Val::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write_flow(out);
                }
                out.push(']');
            }
            Val::Map(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    let _ = write!(out, "{k}: ");
                    v.write_flow(out);
                }
                out.push('}');
            }
        }
    }

    /// Block-style YAML for this value as one item of a block sequence whose dash is at
    /// column `indent`: `- name: warden` and the other keys two columns further in. Every
    /// line ends with `\n`.
    pub(crate) fn to_block_item(&self, indent: usize) -> String {
        let mut out = String::new();
        write_item(self, indent, &mut out);
        out
    }
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// `- value` at `indent`; a map's first key shares the dash's line.
fn write_item(v: &Val, indent: usize, out: &mut String) {
    pad(out, indent);
    out.push_str("- ");
    match v {
        Val::Map(entries) if !entries.is_empty() => {
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    pad(out, indent + 2);
                }
                write_entry(k, v, indent + 2, out);
            }
        }
        Val::List(items) if !items.is_empty() => {
            out.push('\n');
            for item in items {
                write_item(item, indent + 2, out);
            }
        }
        scalar => {
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
}

/// `key: value` whose key is already indented; nested values go two columns further in.
fn write_entry(key: &str, v: &Val, indent: usize, out: &mut String) {
    out.push_str(key);
    out.push(':');
    match v {
        Val::Map(entries) if !entries.is_empty() => {
            out.push('\n');
            for (k, v) in entries {
                pad(out, indent + 2);
                write_entry(k, v, indent + 2, out);
            }
        }
        Val::List(items) if !items.is_empty() => {
            out.push('\n');
            for item in items {
                write_item(item, indent + 2, out);
            }
        }
        scalar => {
            out.push(' ');
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
}

fn scalar_text(v: &Val) -> String {
    match v {
        Val::Str(v) => yaml_string(v),
        Val::Int(v) => v.to_string(),
        Val::Bool(v) => v.to_string(),
        Val::List(_) => "[]".to_owned(),
        Val::Map(_) => "{}".to_owned(),
    }
}

/// A string as a YAML scalar: plain when no YAML 1.1 or 1.2 reader could take it for
/// anything but that string, double-quoted (JSON escapes are valid YAML) otherwise.
pub(crate) fn yaml_string(v: &str) -> String {
    if plain_is_safe(v) {
        v.to_owned()
    } else {
        serde_json::Value::String(v.to_owned()).to_string()
    }
}

fn plain_is_safe(v: &str) -> bool {
    const SPECIAL: &[&str] = &[
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~", "nan", ".nan", "inf",
        ".inf", "-.inf", "+.inf",
    ];
    let Some(first) = v.chars().next() else {
        return false;
    };
    let lower = v.to_ascii_lowercase();
    let looks_numeric = (first.is_ascii_digit() || "+-.".contains(first))
        && v.chars()
            .all(|c| c.is_ascii_hexdigit() || "+-._xXoO:".contains(c));
    (first.is_ascii_alphanumeric() || first == '/' || first == '-' && v.len() > 1)
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:@".contains(c))
        && !v.ends_with(':')
        && !SPECIAL.contains(&lower.as_str())
        && !looks_numeric
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_only_when_a_reader_could_misread_them() {
        for plain in [
            "warden",
            "ghcr.io/warden-proxy/warden:0.1.0",
            "/etc/warden/proxy.yaml",
            "--config",
            "10m",
            "32Mi",
            "ALL",
        ] {
            assert_eq!(yaml_string(plain), plain);
        }
        for quoted in [
            "", "yes", "No", "on", "null", "~", "123", "1.5", "0x1f", "1e3", "-1", "a b", "a: b",
            "#x", "key:", "*x", "-",
        ] {
            assert_eq!(
                yaml_string(quoted),
                serde_json::Value::String(quoted.into()).to_string(),
                "{quoted:?}"
            );
        }
    }

    #[test]
    fn block_rendering_nests_two_columns_at_a_time() {
        let v = map(vec![
            ("name", s("a")),
            ("args", Val::List(vec![s("run")])),
            ("m", map(vec![("k", Val::Int(1))])),
            ("e", Val::List(vec![])),
        ]);
        assert_eq!(
            v.to_block_item(2),
            "  - name: a\n    args:\n      - run\n    m:\n      k: 1\n    e: []\n"
        );
        assert_eq!(
            v.to_flow(),
            r#"{name: "a", args: ["run"], m: {k: 1}, e: []}"#
        );
    }

    #[test]
    fn config_map_names_are_checked() {
        let mut args = SidecarArgs {
            image: DEFAULT_IMAGE.into(),
            config_map: "warden-config".into(),
            admin_port: 9901,
        };
        assert!(args.validate().is_ok());
        args.config_map = "Warden_Config".into();
        assert!(args.validate().is_err());
    }
}
