//! `warden webhook` over real HTTPS: AdmissionReview v1 in, a JSON patch out that makes the
//! same Pod as `warden inject`; malformed input answered, never a crash; a clean drain.

mod k8s;
mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};

use support::DEADLINE;
use support::pki::Ca;

/// A running `warden webhook` on 127.0.0.1:0 with a certificate from a throwaway CA.
struct Webhook {
    child: Option<Child>,
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    _dir: tempfile::TempDir,
}

impl Webhook {
    fn start(extra: &[&str]) -> Webhook {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = Ca::new("webhook test CA");
        let leaf = ca.leaf(&["localhost", "127.0.0.1"]);
        let cert = write(dir.path(), "tls.crt", &leaf.cert_pem);
        let key = write(dir.path(), "tls.key", &leaf.key_pem);
        let mut child = Command::new(support::warden_bin())
            .args(["--log-format", "json", "webhook", "--listen", "127.0.0.1:0"])
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn warden webhook");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                if v["message"] == "webhook listening" {
                    let addr = v["addr"]
                        .as_str()
                        .and_then(|a| a.parse::<SocketAddr>().ok());
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx
            .recv_timeout(DEADLINE)
            .ok()
            .flatten()
            .expect("webhook listening within the deadline");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der()).expect("CA root");
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        Webhook {
            child: Some(child),
            addr,
            tls: Arc::new(tls),
            _dir: dir,
        }
    }

    /// One HTTPS request on a fresh connection; (status, body).
    async fn request(&self, method: &str, path: &str, body: Vec<u8>) -> (u16, Bytes) {
        tokio::time::timeout(DEADLINE, async {
            let tcp = tokio::net::TcpStream::connect(self.addr)
                .await
                .expect("connect");
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
                .connect(name, tcp)
                .await
                .expect("TLS handshake with the webhook's certificate");
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                    .await
                    .expect("HTTP handshake");
            tokio::spawn(conn);
            let req = http::Request::builder()
                .method(method)
                .uri(path)
                .header("host", "localhost")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .expect("request");
            let resp = send.send_request(req).await.expect("response");
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            (status, body)
        })
        .await
        .expect("answer within the deadline")
    }

    async fn review(&self, path: &str, review: &Value) -> Value {
        let (status, body) = self
            .request("POST", path, review.to_string().into_bytes())
            .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let answer: Value = serde_json::from_slice(&body).expect("JSON answer");
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(answer["kind"], "AdmissionReview");
        answer["response"].clone()
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("sh")
            .args(["-c", &format!("kill -{sig} {pid}")])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "webhook did not exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/k8s")
        .join(name);
    std::fs::read_to_string(path).expect("fixture")
}

/// An AdmissionReview v1 request as the API server sends it for a Pod CREATE.
fn review_of(pod: &Value, uid: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

/// `warden inject` on `yaml`, as JSON.
fn injected(yaml: &str) -> Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(dir.path(), "pod.yaml", yaml);
    let (code, out, err) =
        support::run_warden(&["inject", "-f", path.to_str().expect("utf-8")], dir.path());
    assert_eq!(code, 0, "{err}");
    k8s::docs(&out).remove(0)
}

fn apply_patch(pod: &Value, response: &Value) -> Value {
    assert_eq!(response["patchType"], "JSONPatch");
    let text = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().expect("patch is a string"))
        .expect("patch is base64");
    let patch: json_patch::Patch = serde_json::from_slice(&text).expect("patch is RFC 6902");
    let mut out = pod.clone();
    json_patch::patch(&mut out, &patch).expect("patch applies to the Pod");
    out
}

#[tokio::test]
async fn the_patch_makes_the_same_pod_as_warden_inject() {
    let webhook = Webhook::start(&["--drain-delay", "0s"]);
    let stream = fixture("pods.yaml");
    let pods = k8s::docs(&stream);
    let yamls: Vec<&str> = stream.split("\n---\n").collect();
    assert_eq!(pods.len(), yamls.len());
    for (i, (pod, yaml)) in pods.iter().zip(&yamls).enumerate() {
        let uid = format!("705ab4f5-6393-11e8-b7cc-42010a80000{i}");
        let response = webhook.review("/mutate", &review_of(pod, &uid)).await;
        assert_eq!(response["uid"], uid.as_str(), "uid echoed");
        assert_eq!(response["allowed"], true);
        let patched = apply_patch(pod, &response);
        assert_eq!(
            patched,
            injected(yaml),
            "pod {i}: webhook and inject disagree"
        );
        k8s::validate(&patched);
        k8s::assert_sidecar(&patched, &k8s::default_image(), "warden-config");

        // The API server may call again (reinvocation, retries): nothing more to add.
        let again = webhook.review("/mutate", &review_of(&patched, &uid)).await;
        assert_eq!(again["allowed"], true);
        assert!(again.get("patch").is_none(), "{again}");
    }
}

#[tokio::test]
async fn opt_in_rules_by_path_label_and_annotation() {
    let webhook = Webhook::start(&[
        "--drain-delay",
        "0s",
        "--image",
        "registry.internal/warden:9",
        "--config-map",
        "proxy",
    ]);
    let pod = |labels: Value, annotations: Value| {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"generateName": "agent-", "labels": labels, "annotations": annotations},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]}
        })
    };
    let plain = pod(json!({}), json!({}));
    let r = webhook.review("/mutate", &review_of(&plain, "a")).await;
    assert!(r.get("patch").is_none(), "not opted in: {r}");

    let r = webhook
        .review("/mutate/namespace", &review_of(&plain, "b"))
        .await;
    let patched = apply_patch(&plain, &r);
    k8s::assert_sidecar(&patched, "registry.internal/warden:9", "proxy");

    let annotated = pod(json!({}), json!({"warden.io/inject": "enabled"}));
    let r = webhook.review("/mutate", &review_of(&annotated, "c")).await;
    apply_patch(&annotated, &r);

    let opted_out = pod(json!({}), json!({"warden.io/inject": "disabled"}));
    let r = webhook
        .review("/mutate/namespace", &review_of(&opted_out, "d"))
        .await;
    assert_eq!(r["allowed"], true);
    assert!(r.get("patch").is_none(), "opted out: {r}");
}

#[tokio::test]
async fn malformed_reviews_get_an_answer_and_the_webhook_stays_up() {
    let webhook = Webhook::start(&["--drain-delay", "0s"]);
    let cases = [
        json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "x"}}),
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}),
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"kind": {"kind": "Pod"}}}),
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
               "request": {"uid": "y", "kind": {"group": "", "version": "v1", "kind": "Pod"}, "operation": "CREATE", "object": "a string"}}),
        json!("just a string"),
    ];
    for case in &cases {
        let r = webhook.review("/mutate", case).await;
        assert_eq!(r["allowed"], true, "never blocks: {r}");
        assert!(r.get("patch").is_none());
        let message = r["status"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "says what is wrong: {r}");
    }
    // A Pod warden cannot patch is let through with a warning the user sees.
    let odd = json!({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"labels": {"warden.io/inject": "enabled"}},
                     "spec": {"containers": [], "volumes": "not a list"}});
    let r = webhook.review("/mutate", &review_of(&odd, "z")).await;
    assert_eq!(r["allowed"], true);
    assert!(
        r["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("spec.volumes is not a list")),
        "{r}"
    );

    let (status, body) = webhook
        .request("POST", "/mutate", b"{\"apiVersion\": ".to_vec())
        .await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("not JSON"));
    let (status, _) = webhook.request("GET", "/mutate", Vec::new()).await;
    assert_eq!(status, 405);
    let (status, _) = webhook.request("GET", "/nope", Vec::new()).await;
    assert_eq!(status, 404);
    let (status, body) = webhook.request("GET", "/healthz", Vec::new()).await;
    assert_eq!((status, &body[..]), (200, &b"ok\n"[..]), "still serving");
}

#[tokio::test]
async fn sigterm_turns_readyz_to_503_then_exits_cleanly() {
    let mut webhook = Webhook::start(&["--drain-delay", "2s"]);
    let (status, _) = webhook.request("GET", "/readyz", Vec::new()).await;
    assert_eq!(status, 200);
    webhook.signal("TERM");
    support::eventually("readyz says 503 while draining", || async {
        webhook.request("GET", "/readyz", Vec::new()).await.0 == 503
    })
    .await;
    // Reviews are still answered during the drain delay.
    let pod = k8s::docs(&fixture("pods.yaml")).remove(0);
    let r = webhook.review("/mutate", &review_of(&pod, "late")).await;
    assert_eq!(r["allowed"], true);
    let status = webhook.wait_exit().await;
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_key_that_does_not_fit_the_certificate_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("mismatch CA");
    let a = ca.leaf(&["localhost"]);
    let b = ca.leaf(&["localhost"]);
    let cert = write(dir.path(), "a.crt", &a.cert_pem);
    let key = write(dir.path(), "b.key", &b.key_pem);
    let (code, _, err) = support::run_warden(
        &[
            "webhook",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().expect("utf-8"),
            "--tls-key",
            key.to_str().expect("utf-8"),
        ],
        dir.path(),
    );
    assert_eq!(code, 1);
    assert!(err.contains("--tls-key"), "{err}");
}
