//! Kubernetes helpers shared by the inject, webhook and deploy tests: YAML streams as JSON
//! values, and a strict check that a document is a valid object of its kind.
#![allow(dead_code)]

use k8s_openapi::serde::Serialize;
use k8s_openapi::serde::de::DeserializeOwned;
use serde_json::Value;

/// The image `warden inject` uses by default: this release.
pub(crate) fn default_image() -> String {
    format!("ghcr.io/warden-proxy/warden:{}", env!("CARGO_PKG_VERSION"))
}

/// Every non-empty document of a YAML stream, as JSON values (aliases resolved).
pub(crate) fn docs(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml)
        .unwrap_or_else(|e| panic!("not a YAML stream ({e}):\n{yaml}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// `doc` as the k8s-openapi type of its kind, serialized back: equal to `doc` only when
/// every field is one the API knows, spelled and typed as it expects. Panics otherwise,
/// and for kinds this helper does not know.
pub(crate) fn validate(doc: &Value) {
    use k8s_openapi::api::{admissionregistration, apps, batch, core, policy};
    let kind = doc["kind"].as_str().unwrap_or_default();
    let back = match kind {
        "Pod" => round_trip::<core::v1::Pod>(doc),
        "Service" => round_trip::<core::v1::Service>(doc),
        "ConfigMap" => round_trip::<core::v1::ConfigMap>(doc),
        "Namespace" => round_trip::<core::v1::Namespace>(doc),
        "Deployment" => round_trip::<apps::v1::Deployment>(doc),
        "StatefulSet" => round_trip::<apps::v1::StatefulSet>(doc),
        "DaemonSet" => round_trip::<apps::v1::DaemonSet>(doc),
        "Job" => round_trip::<batch::v1::Job>(doc),
        "CronJob" => round_trip::<batch::v1::CronJob>(doc),
        "PodDisruptionBudget" => round_trip::<policy::v1::PodDisruptionBudget>(doc),
        "MutatingWebhookConfiguration" => {
            round_trip::<admissionregistration::v1::MutatingWebhookConfiguration>(doc)
        }
        other => panic!("no Kubernetes type for kind {other:?}"),
    };
    let mut problems = Vec::new();
    diff(doc, &back, &mut String::new(), &mut problems);
    assert!(
        problems.is_empty(),
        "{kind} {} is not what its API type reads: {problems:#?}",
        doc["metadata"]["name"]
    );
}

/// Where `back` (the API type's reading) differs from `doc`. Embedded objects such as a
/// StatefulSet's PVC templates come back with `apiVersion` and `kind` filled in; that
/// alone is not a difference.
fn diff(doc: &Value, back: &Value, path: &mut String, problems: &mut Vec<String>) {
    match (doc, back) {
        (Value::Object(d), Value::Object(b)) => {
            for (k, v) in d {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                match b.get(k) {
                    Some(bv) => diff(v, bv, path, problems),
                    None => problems.push(format!("{path}: unknown field")),
                }
                path.truncate(len);
            }
            for k in b.keys() {
                if !d.contains_key(k) && k != "apiVersion" && k != "kind" {
                    problems.push(format!("{path}.{k}: added by the API type"));
                }
            }
        }
        (Value::Array(d), Value::Array(b)) if d.len() == b.len() => {
            for (i, (dv, bv)) in d.iter().zip(b).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                diff(dv, bv, path, problems);
                path.truncate(len);
            }
        }
        _ if doc == back => {}
        _ => problems.push(format!("{path}: {doc} reads as {back}")),
    }
}

fn round_trip<T: DeserializeOwned + Serialize>(doc: &Value) -> Value {
    let typed: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| {
        panic!(
            "{} {} is not a valid object: {e}",
            doc["kind"], doc["metadata"]["name"]
        )
    });
    serde_json::to_value(&typed).expect("serialize a k8s-openapi value")
}

/// The pod spec of a workload document, wherever its kind keeps it.
pub(crate) fn pod_spec(doc: &Value) -> Option<&Value> {
    let spec = match doc["kind"].as_str()? {
        "Pod" => &doc["spec"],
        "CronJob" => &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => &doc["spec"]["template"]["spec"],
    };
    spec.as_object().map(|_| spec)
}

/// The init container named warden, if the pod spec has one.
pub(crate) fn warden_init(doc: &Value) -> Option<&Value> {
    pod_spec(doc)?["initContainers"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == "warden")
}

/// Asserts the sidecar's contract: a native sidecar running `run --config
/// /etc/warden/proxy.yaml`, probed on the named admin port, non-root with a read-only
/// root filesystem, its ConfigMap mounted at /etc/warden.
pub(crate) fn assert_sidecar(doc: &Value, image: &str, config_map: &str) {
    let name = &doc["metadata"]["name"];
    let c = warden_init(doc).unwrap_or_else(|| panic!("{name}: no warden init container"));
    let spec = pod_spec(doc).expect("pod spec");
    assert_eq!(
        spec["initContainers"][0]["name"], "warden",
        "{name}: warden runs first"
    );
    assert_eq!(c["image"], image);
    assert_eq!(c["restartPolicy"], "Always", "native sidecar");
    assert_eq!(
        c["args"],
        serde_json::json!(["run", "--config", "/etc/warden/proxy.yaml"])
    );
    assert_eq!(c["ports"][0]["name"], "warden-admin");
    assert_eq!(c["ports"][0]["containerPort"], 9901);
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "warden-admin");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(c.get("lifecycle").is_none(), "no preStop: SIGTERM drains");
    let mount = &c["volumeMounts"][0];
    assert_eq!(mount["mountPath"], "/etc/warden");
    let volume = spec["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == mount["name"]))
        .unwrap_or_else(|| panic!("{name}: no volume {}", mount["name"]));
    assert_eq!(volume["configMap"]["name"], config_map);
}
