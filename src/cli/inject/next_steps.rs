//! What a user still has to do after `warden inject`, per injected workload: the sidecar
//! alone changes nothing until the app talks to it, its ConfigMap exists beside it, and
//! its admin listener is reachable by the kubelet.
//!
//! When the stream carries the ConfigMap itself, its proxy.yaml says the route ports and
//! the admin address, so the text names them instead of placeholders.

use std::fmt::Write as _;

use warden_config::Config;

use super::sidecar::SidecarArgs;
use crate::cli::configmap;

/// The lines for stderr, a block per workload in `injected` (`Kind name`, namespace).
pub(super) fn lines(
    src: &str,
    args: &SidecarArgs,
    injected: &[(String, Option<String>)],
) -> Vec<String> {
    if injected.is_empty() {
        return Vec::new();
    }
    // A stream without a usable ConfigMap still gets the generic steps.
    let embedded = configmap::find(src)
        .ok()
        .into_iter()
        .flatten()
        .find(|e| e.name == args.config_map);
    let config = embedded
        .as_ref()
        .and_then(|e| warden_config::parse(&e.text, "ConfigMap").ok());
    // `Some(None)`: in the stream without a namespace of its own.
    let cm_namespace = embedded.as_ref().map(|e| e.namespace.as_deref());
    let mut out = Vec::new();
    for (what, namespace) in injected {
        out.push(format!("{what}: next steps"));
        out.push(format!("  1. {}", base_urls(config.as_ref())));
        out.push(format!(
            "  2. {}",
            config_map(args, namespace.as_deref(), cm_namespace)
        ));
        out.push(format!("  3. {}", admin(args, config.as_ref())));
    }
    out
}

fn base_urls(config: Option<&Config>) -> String {
    let Some(config) = config else {
        return "point the app's MCP and token base URLs at warden: \
                http://127.0.0.1:<route port>, the `listen` port of each route in proxy.yaml \
                (paths and queries stay as they are)"
            .to_owned();
    };
    let mut text = String::from("point the app's base URLs at warden:");
    for (i, (conn, route)) in config.routes().enumerate() {
        let sep = if i == 0 { " " } else { "; " };
        let _ = write!(
            text,
            "{sep}{} {} → http://127.0.0.1:{} (instead of {})",
            conn.name,
            route.role,
            route.listen.port(),
            route.upstream
        );
        if let Some(path) = &route.token_path {
            let _ = write!(
                text,
                ", token URL http://127.0.0.1:{}{path}",
                route.listen.port()
            );
        }
    }
    text
}

fn config_map(
    args: &SidecarArgs,
    namespace: Option<&str>,
    in_stream: Option<Option<&str>>,
) -> String {
    let name = &args.config_map;
    let (ns, flag) = match namespace {
        Some(ns) => (format!("namespace {ns}"), format!("-n {ns} ")),
        None => (
            "the namespace the workload is applied to".to_owned(),
            String::new(),
        ),
    };
    if let Some(cm_ns) = in_stream {
        match (cm_ns, namespace) {
            (Some(a), Some(b)) if a != b => format!(
                "WARNING: ConfigMap {name} in this stream is for namespace {a}, the workload \
                 runs in {b}: the pod mounts the ConfigMap of its own namespace"
            ),
            _ => format!("ConfigMap {name} is in this stream: apply it with the workload ({ns})"),
        }
    } else {
        format!(
            "ConfigMap {name} (proxy.yaml under data.\"{}\") must exist in {ns}, or the pod \
             does not start: kubectl {flag}apply -f configmap.yaml (deploy/config/configmap.yaml \
             is an example; `warden check -c configmap.yaml` validates it)",
            configmap::DATA_KEY
        )
    }
}

fn admin(args: &SidecarArgs, config: Option<&Config>) -> String {
    let port = args.admin_port;
    let want = format!(
        "proxy.yaml must set admin.listen: 0.0.0.0:{port}: the kubelet's probes and \
         Prometheus reach the pod IP, not loopback"
    );
    match config {
        None => want,
        Some(c) => match configmap::admin_problem(c.admin.listen) {
            Some(problem) => format!("WARNING: ConfigMap {}: {problem}", args.config_map),
            None if c.admin.listen.port() != port => format!(
                "WARNING: ConfigMap {} listens for admin on port {}, but the probes use \
                 --admin-port {port}",
                args.config_map,
                c.admin.listen.port()
            ),
            None => format!(
                "admin.listen {} in ConfigMap {}: probes and scraping reach it",
                c.admin.listen, args.config_map
            ),
        },
    }
}
