//! `AdmissionReview` v1 in, `AdmissionReview` v1 out: the webhook's decisions, without I/O.
//!
//! Every answer allows the Pod. warden is a convenience for the app, never a gate on it: a
//! review warden cannot understand, or a Pod it cannot patch, is let through unchanged with
//! a message saying why, so a warden bug can never stop a Deployment from rolling out.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::cli::inject::sidecar::{self, CONTAINER_NAME, INJECT_KEY, SidecarArgs, VOLUME_NAME};

/// How the API server came to ask: the MutatingWebhookConfiguration's two entries call
/// `/mutate` for Pods labelled `warden.io/inject: enabled` and `/mutate/namespace` for
/// every Pod of a namespace labelled so. (A path, not a query: the API server accepts
/// only DNS-label path segments in a webhook's service path.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    /// Inject Pods that opt in by label or annotation.
    Pod,
    /// The namespace opted in: inject every Pod that does not opt out.
    Namespace,
}

/// What the webhook answers and a one-line summary for its log.
#[derive(Debug)]
pub(super) enum Reply {
    /// 200 with this AdmissionReview.
    Review { review: Value, summary: String },
    /// 400: the body was not JSON at all, so there is no review to answer.
    BadRequest(String),
}

/// Answers one AdmissionReview request body.
pub(super) fn review(body: &[u8], args: &SidecarArgs, scope: Scope) -> Reply {
    let input: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(err) => return Reply::BadRequest(format!("the body is not JSON: {err}")),
    };
    let uid = input
        .pointer("/request/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut response = Map::new();
    response.insert("uid".into(), Value::String(uid.clone()));
    response.insert("allowed".into(), Value::Bool(true));
    let summary = match decide(&input, args, scope) {
        Decision::Patch(ops) => {
            let text = Value::Array(ops).to_string();
            response.insert("patchType".into(), "JSONPatch".into());
            response.insert(
                "patch".into(),
                base64::engine::general_purpose::STANDARD
                    .encode(text)
                    .into(),
            );
            "injected".to_owned()
        }
        Decision::Leave(why) => why.to_owned(),
        Decision::Malformed(message) => {
            response.insert("status".into(), json!({ "message": message }));
            format!("malformed review: {message}")
        }
        Decision::CannotPatch(message) => {
            let message = format!("warden sidecar not injected: {message}");
            response.insert("status".into(), json!({ "message": message }));
            // Warnings reach the user who created the Pod (kubectl prints them).
            response.insert("warnings".into(), json!([message]));
            message
        }
    };
    // Pods made by a controller have no name yet, only the prefix it will get.
    let text = |ptr: &str| input.pointer(ptr).and_then(Value::as_str);
    let pod = text("/request/object/metadata/name")
        .or(text("/request/object/metadata/generateName"))
        .unwrap_or("?");
    let namespace = text("/request/namespace").unwrap_or("?");
    Reply::Review {
        review: json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": Value::Object(response),
        }),
        summary: format!("{namespace}/{pod} (uid {uid:?}): {summary}"),
    }
}

enum Decision {
    Patch(Vec<Value>),
    Leave(&'static str),
    Malformed(String),
    CannotPatch(String),
}

fn decide(input: &Value, args: &SidecarArgs, scope: Scope) -> Decision {
    let api_version = input.get("apiVersion").and_then(Value::as_str);
    let kind = input.get("kind").and_then(Value::as_str);
    if api_version != Some("admission.k8s.io/v1") || kind != Some("AdmissionReview") {
        return Decision::Malformed(format!(
            "expected apiVersion admission.k8s.io/v1 and kind AdmissionReview, got {} and {} \
             (set admissionReviewVersions: [v1])",
            api_version.unwrap_or("none"),
            kind.unwrap_or("none")
        ));
    }
    let Some(request) = input.get("request").and_then(Value::as_object) else {
        return Decision::Malformed("the review has no request object".into());
    };
    if request
        .get("uid")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Decision::Malformed("request.uid is missing".into());
    }
    let group = request.get("kind").and_then(|k| k.get("group"));
    let kind = request.get("kind").and_then(|k| k.get("kind"));
    if kind.and_then(Value::as_str) != Some("Pod")
        || group.and_then(Value::as_str).is_some_and(|g| !g.is_empty())
    {
        return Decision::Leave("not a Pod");
    }
    if request.get("operation").and_then(Value::as_str) != Some("CREATE") {
        return Decision::Leave("not a CREATE");
    }
    let Some(pod) = request.get("object").filter(|o| o.is_object()) else {
        return Decision::Malformed("request.object is not a Pod object".into());
    };
    match opted_in(pod, scope) {
        Some(true) => {}
        Some(false) => return Decision::Leave("opted out (warden.io/inject: disabled)"),
        None => return Decision::Leave("not opted in"),
    }
    match patch(pod, args) {
        Ok(Some(ops)) => Decision::Patch(ops),
        Ok(None) => Decision::Leave("already has a container named warden"),
        Err(problem) => Decision::CannotPatch(problem),
    }
}

/// Some(false) when the Pod opts out by label or annotation, Some(true) when it opts in (or
/// its namespace did), None when nobody asked.
fn opted_in(pod: &Value, scope: Scope) -> Option<bool> {
    let meta = |field: &str| {
        pod.get("metadata")
            .and_then(|m| m.get(field))
            .and_then(|m| m.get(INJECT_KEY))
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
    };
    let said = [meta("labels"), meta("annotations")];
    if said.iter().flatten().any(|v| v == "disabled") {
        return Some(false);
    }
    (scope == Scope::Namespace || said.iter().flatten().any(|v| v == "enabled")).then_some(true)
}

/// The JSON Patch (RFC 6902) that adds the sidecar exactly as `warden inject` does: first
/// among the init containers, the volume first among the volumes unless one of its name
/// exists. None when a container named warden is already there.
pub(super) fn patch(pod: &Value, args: &SidecarArgs) -> Result<Option<Vec<Value>>, String> {
    let Some(spec) = pod.get("spec").and_then(Value::as_object) else {
        return Err("the Pod has no spec object".into());
    };
    let names = |key: &str| -> Result<Vec<&str>, String> {
        match spec.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items
                .iter()
                .filter_map(|i| i.get("name").and_then(Value::as_str))
                .collect()),
            Some(_) => Err(format!("spec.{key} is not a list")),
        }
    };
    let present = |key: &str| spec.get(key).is_some_and(|v| !v.is_null());
    if names("initContainers")?.contains(&CONTAINER_NAME)
        || names("containers")?.contains(&CONTAINER_NAME)
    {
        return Ok(None);
    }
    let mut ops = vec![add(
        "initContainers",
        present("initContainers"),
        sidecar::container(args).to_json(),
    )];
    if !names("volumes")?.contains(&VOLUME_NAME) {
        ops.push(add(
            "volumes",
            present("volumes"),
            sidecar::volume(args).to_json(),
        ));
    }
    Ok(Some(ops))
}

/// `add` at the head of `/spec/<key>`, or the whole list when there is none yet.
fn add(key: &str, exists: bool, item: Value) -> Value {
    if exists {
        json!({ "op": "add", "path": format!("/spec/{key}/0"), "value": item })
    } else {
        json!({ "op": "add", "path": format!("/spec/{key}"), "value": [item] })
    }
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

    fn request(pod: Value) -> Vec<u8> {
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "operation": "CREATE",
                "object": pod,
            }
        })
        .to_string()
        .into_bytes()
    }

    fn answer(body: &[u8], scope: Scope) -> Value {
        match review(body, &args(), scope) {
            Reply::Review { review, .. } => review["response"].clone(),
            Reply::BadRequest(e) => panic!("bad request: {e}"),
        }
    }

    #[test]
    fn opt_in_by_label_annotation_or_namespace_and_opt_out_wins() {
        let pod = |labels: Value, annotations: Value| {
            json!({"metadata": {"labels": labels, "annotations": annotations},
                   "spec": {"containers": [{"name": "app"}]}})
        };
        let on = json!({INJECT_KEY: "enabled"});
        let off = json!({INJECT_KEY: "disabled"});
        let none = json!({});
        for (p, scope, injected) in [
            (pod(on.clone(), none.clone()), Scope::Pod, true),
            (pod(none.clone(), on.clone()), Scope::Pod, true),
            (pod(none.clone(), none.clone()), Scope::Pod, false),
            (pod(none.clone(), none.clone()), Scope::Namespace, true),
            (pod(none.clone(), off.clone()), Scope::Namespace, false),
            (pod(on.clone(), off.clone()), Scope::Pod, false),
        ] {
            let r = answer(&request(p.clone()), scope);
            assert_eq!(r["allowed"], true);
            assert_eq!(r["uid"], "u-1");
            assert_eq!(r.get("patch").is_some(), injected, "{p} {scope:?}: {r}");
        }
    }

    #[test]
    fn malformed_reviews_are_allowed_with_a_message() {
        for body in [
            json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "x"}}),
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}),
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "x", "kind": {"kind": "Pod"}, "operation": "CREATE"}}),
            json!([1, 2]),
        ] {
            let r = answer(body.to_string().as_bytes(), Scope::Pod);
            assert_eq!(r["allowed"], true, "{r}");
            assert!(
                r["status"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "{r}"
            );
            assert!(r.get("patch").is_none());
        }
        assert!(matches!(
            review(b"{not json", &args(), Scope::Pod),
            Reply::BadRequest(_)
        ));
    }

    #[test]
    fn a_pod_that_cannot_be_patched_is_allowed_with_a_warning() {
        let r = answer(
            &request(
                json!({"metadata": {"labels": {INJECT_KEY: "enabled"}}, "spec": {"initContainers": 3}}),
            ),
            Scope::Pod,
        );
        assert_eq!(r["allowed"], true);
        assert!(
            r["warnings"][0]
                .as_str()
                .is_some_and(|w| w.contains("spec.initContainers is not a list")),
            "{r}"
        );
    }

    #[test]
    fn patches_prepend_or_create() {
        let ops = patch(
            &json!({"spec": {"initContainers": [{"name": "a"}], "volumes": null}}),
            &args(),
        )
        .expect("patchable")
        .expect("not injected yet");
        assert_eq!(ops[0]["path"], "/spec/initContainers/0");
        assert_eq!(ops[1]["path"], "/spec/volumes");
        let done = json!({"spec": {"initContainers": [{"name": "warden"}]}});
        assert_eq!(patch(&done, &args()), Ok(None));
    }
}
