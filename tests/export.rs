//! `mrctl export NAME --to kube|kubernetes|quay-operator`:
//!
//! - kube, on the real host: the export of a Ready registry, played by
//!   podman's own `podman kube play` while the registry is paused, serves
//!   the image pushed before with the same credentials, verified against the
//!   same CA; `podman kube down` and unpausing bring the units back, Ready.
//! - kubernetes: validated offline against Kubernetes' own OpenAPI schemas
//!   with kubernetes-validate (strict), as one file, one file per object
//!   and on stdout; its Secrets and ConfigMap carry the host's files; the
//!   project's CRD stays valid for `kubectl apply`.
//! - quay-operator: the QuayRegistry validated against the Quay Operator's
//!   CRD (`../shared/crds/quayregistries.crd.yaml`, skipped with a reason
//!   when absent), the bundle Secret against Kubernetes' schemas, and
//!   config.yaml keeps SERVER_HOSTNAME and the database keys.
//! - Secrets only in 0600 files, or on stdout when asked; never in a
//!   message; the command says which files hold them.
//!
//! The validators come from `hack/setup-host.sh --test-tools` (a venv at
//! /opt/mirror-registry-test-tools, or $MIRROR_REGISTRY_TEST_TOOLS).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use mirror_registry::api::Phase;
use serde_yaml::Value;
use sha2::{Digest, Sha256};

const TEST_IMAGE: &str = "containers-storage:localhost/mirror-registry/testimage:latest";
const DEFAULT_TOOLS: &str = "/opt/mirror-registry-test-tools";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The Quay Operator's CRD, where the project's docs name it: `shared/`
/// beside the project root. CI's clean clone may not have it.
/// `MIRROR_REGISTRY_QUAY_CRD` names another file (a missing one shows the
/// skip).
fn quay_crd_path() -> PathBuf {
    std::env::var_os("MIRROR_REGISTRY_QUAY_CRD")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/crds/quayregistries.crd.yaml"))
}

fn quay_crd() -> Option<PathBuf> {
    let p = quay_crd_path();
    p.is_file().then_some(p)
}

/// The venv's python, with kubernetes-validate and cel-python.
fn tools_python() -> PathBuf {
    let venv = std::env::var_os("MIRROR_REGISTRY_TEST_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_TOOLS));
    let py = venv.join("bin/python");
    assert!(
        py.is_file(),
        "{} is missing: run hack/setup-host.sh --test-tools (hack/test.sh does)",
        py.display()
    );
    py
}

/// Runs tests/tools/validate_manifests.py; returns (success, its output).
fn validate(crd: Option<&Path>, files: &[&Path]) -> (bool, String) {
    let mut cmd = Command::new(tools_python());
    cmd.arg(repo_root().join("tests/tools/validate_manifests.py"));
    if let Some(c) = crd {
        cmd.arg("--crd").arg(c);
    }
    let out = cmd.args(files).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// mrctl against a watch and state directory, user scope.
fn mrctl(watch: &Path, state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mrctl"))
        .arg("--watch-dir")
        .arg(watch)
        .arg("--state-dir")
        .arg(state)
        .args(["--scope", "user"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in the export"))
}

/// `base64 -d`, by coreutils: not the encoder under test.
fn b64_decode(s: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("base64")
        .arg("-d")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// Secret values that must never reach a message: the password, the key
/// (its body lines), the password hash, the quay engine's keys.
fn secret_values(root: &Path) -> Vec<String> {
    let mut v = vec![credentials(root).1];
    let key = std::fs::read_to_string(root.join("tls/tls.key")).unwrap();
    v.extend(
        key.lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 16)
            .map(str::to_string),
    );
    if let Ok(h) = std::fs::read_to_string(root.join("secrets/htpasswd")) {
        v.push(h.trim().split(':').nth(1).unwrap().to_string());
    }
    if let Ok(q) = std::fs::read_to_string(root.join("secrets/quay-secrets.yaml")) {
        let q: Value = serde_yaml::from_str(&q).unwrap();
        for k in ["redisPassword", "secretKey", "databaseSecretKey"] {
            v.push(q[k].as_str().unwrap().to_string());
        }
    }
    assert!(v.len() >= 3);
    v
}

fn assert_no_secret(what: &str, text: &str, secrets: &[String]) {
    for s in secrets {
        assert!(!text.contains(s.as_str()), "{what} holds a secret value");
    }
}

/// A registry's spec and the files the controller keeps under its root,
/// made with the controller's own functions; no podman, no units.
struct Prepared {
    dir: tempfile::TempDir,
    name: String,
}

impl Prepared {
    fn new(engine: &str) -> Prepared {
        use mirror_registry::host::{credentials as creds, secrets, tls};
        let dir = tempfile::Builder::new()
            .prefix("mr-export-")
            .tempdir()
            .unwrap();
        let p = Prepared {
            dir,
            name: unique("exp"),
        };
        std::fs::create_dir_all(p.watch()).unwrap();
        std::fs::create_dir_all(p.data()).unwrap();
        std::fs::write(p.data().join("blob"), vec![7u8; 1 << 20]).unwrap();
        let database = if engine == "quay" {
            std::fs::create_dir_all(p.dir.path().join("db")).unwrap();
            format!(
                "  database:\n    path: {}\n",
                p.dir.path().join("db").display()
            )
        } else {
            String::new()
        };
        std::fs::write(
            p.watch().join(format!("{}.yaml", p.name)),
            format!(
                "apiVersion: mirrorregistry.io/v1alpha1\nkind: MirrorRegistry\nmetadata:\n  name: {name}\nspec:\n  engine: {engine}\n  hostname: mirror.example.org\n  port: 8443\n  root: {root}\n  storage:\n    path: {data}\n{database}",
                name = p.name,
                root = p.root().display(),
                data = p.data().display(),
            ),
        )
        .unwrap();
        let root = p.root();
        let (dns, ips) = tls::default_sans("mirror.example.org", &[]);
        tls::ensure_generated(
            &root.join("tls"),
            &dns,
            &ips,
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
        let (c, _) = creds::ensure_init_credentials(&root.join("secrets"), "init", None).unwrap();
        if engine == "quay" {
            secrets::ensure_quay_secrets(&root.join("secrets"), None).unwrap();
        } else {
            creds::ensure_htpasswd(&root.join("secrets/htpasswd"), &c).unwrap();
        }
        p
    }

    fn watch(&self) -> PathBuf {
        self.dir.path().join("watch")
    }
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    fn out(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn mrctl(&self, args: &[&str]) -> Output {
        mrctl(&self.watch(), &self.state(), args)
    }
}

/// `podman kube down` of a played export, whatever happens to the test.
struct KubeDown {
    file: PathBuf,
    pod: String,
}

impl Drop for KubeDown {
    fn drop(&mut self) {
        let _ = sh(
            "podman",
            &["kube", "down", &self.file.display().to_string()],
        );
        let _ = sh("podman", &["pod", "rm", "-f", "--ignore", &self.pod]);
    }
}

/// `podman login` trusting only `cert_dir` (the CA under the registry's
/// root), the password on stdin.
fn login_with_ca(authfile: &Path, cert_dir: &Path, host_port: &str, user: &str, pw: &str) -> bool {
    use std::io::Write;
    let mut child = Command::new("podman")
        .args(["login", "--authfile"])
        .arg(authfile)
        .arg("--cert-dir")
        .arg(cert_dir)
        .args(["--username", user, "--password-stdin", host_port])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(pw.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap().status.success()
}

/// The digest served for `reference`, TLS verified against `cert_dir` only.
fn served_digest(authfile: &Path, cert_dir: &Path, reference: &str) -> String {
    skopeo(
        authfile,
        &[
            "inspect",
            "--cert-dir",
            &cert_dir.display().to_string(),
            "--format",
            "{{.Digest}}",
            reference,
        ],
    )
    .trim()
    .to_string()
}

/// Pulls by digest into a `dir:` copy and returns the manifest's digest.
fn pull_by_digest(
    authfile: &Path,
    cert_dir: &Path,
    repo: &str,
    digest: &str,
    into: &Path,
) -> String {
    let _ = std::fs::remove_dir_all(into);
    skopeo(
        authfile,
        &[
            "copy",
            "--src-cert-dir",
            &cert_dir.display().to_string(),
            &format!("{repo}@{digest}"),
            &format!("dir:{}", into.display()),
        ],
    );
    let manifest = std::fs::read(into.join("manifest.json")).unwrap();
    format!("sha256:{}", hex::encode(Sha256::digest(manifest)))
}

#[test]
fn kube_play_serves_the_same_data_with_the_same_ca_and_credentials() {
    let mut lab = Lab::new();
    let name = unique("kube");
    let port = free_port();
    lab.track(&name, port);
    let path = lab.spec_path(&name);
    let root = lab.root(&name);
    lab.start(&[]);
    lab.put(&name, &lab.spec(&name, port, ""));
    let ready = wait_phase(&path, Phase::Ready, Duration::from_secs(120));

    // An image pushed through the units.
    let (user, password) = credentials(&root);
    let host_port = format!("localhost:{port}");
    let certs = lab.dir.path().join("ca-only");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(root.join("tls/ca.crt"), certs.join("ca.crt")).unwrap();
    let auth = lab.dir.path().join("auth.json");
    assert!(login_with_ca(&auth, &certs, &host_port, &user, &password));
    let repo = format!("docker://{host_port}/export/testimage");
    skopeo(
        &auth,
        &[
            "copy",
            "--dest-cert-dir",
            &certs.display().to_string(),
            TEST_IMAGE,
            &format!("{repo}:1"),
        ],
    );
    let pushed = served_digest(&auth, &certs, &format!("{repo}:1"));

    // The export: one Pod, no secret in it, and the command says so.
    let file = lab.dir.path().join("kube.yaml");
    let o = mrctl(
        &lab.watch(),
        &lab.state(),
        &[
            "export",
            &name,
            "--to",
            "kube",
            "-o",
            &file.display().to_string(),
        ],
    );
    assert!(o.status.success(), "{}", show(&o));
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        said.contains(&format!("wrote {}", file.display())),
        "{said}"
    );
    assert!(said.contains("no secret is in"), "{said}");
    assert!(o.stderr.is_empty(), "{}", show(&o));
    let secrets = secret_values(&root);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_no_secret("the kube export", &text, &secrets);
    assert_no_secret("mrctl's messages", &said, &secrets);
    let pod = find(&docs(&text), "Pod").clone();
    let pod_name = format!("{name}-kube");
    assert_eq!(pod["metadata"]["name"], Value::from(pod_name.as_str()));
    // Without -o it goes to stdout, the same text.
    let o = mrctl(
        &lab.watch(),
        &lab.state(),
        &["export", &name, "--to", "kube"],
    );
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), text);
    // It is a valid Kubernetes Pod as well.
    let (ok, report) = validate(None, &[&file]);
    assert!(ok, "{report}");

    // Pause: the controller stops the units and frees the port.
    lab.put(&name, &lab.spec(&name, port, "  paused: true\n"));
    wait_phase(&path, Phase::Paused, Duration::from_secs(60));
    wait_for(Duration::from_secs(30), "the units to stop", || {
        (unit_active(&format!("{name}-pod.service")) != "active"
            && !exists("pod", &format!("{name}-pod"))
            && !serving(port))
        .then_some(())
    });

    // podman's own kube play serves the same data, TLS and credentials.
    let _down = KubeDown {
        file: file.clone(),
        pod: pod_name.clone(),
    };
    let played = sh("podman", &["kube", "play", &file.display().to_string()]);
    assert!(
        played.status.success(),
        "podman kube play: {}{}",
        String::from_utf8_lossy(&played.stdout),
        String::from_utf8_lossy(&played.stderr)
    );
    assert!(exists("pod", &pod_name));
    wait_for(Duration::from_secs(60), "the played pod to serve", || {
        serving(port).then_some(())
    });
    assert!(
        !exists("pod", &format!("{name}-pod")),
        "the units' pod is gone"
    );
    let auth2 = lab.dir.path().join("auth-kube.json");
    assert!(
        !login_with_ca(&auth2, &certs, &host_port, &user, "not-the-password"),
        "the played registry checks passwords"
    );
    assert!(login_with_ca(&auth2, &certs, &host_port, &user, &password));
    assert_eq!(served_digest(&auth2, &certs, &format!("{repo}:1")), pushed);
    let pulled = pull_by_digest(
        &auth2,
        &certs,
        &repo,
        &pushed,
        &lab.dir.path().join("pulled-kube"),
    );
    assert_eq!(pulled, pushed, "the same image, pulled by digest");

    // kube down; unpause: the units come back, Ready, serving it still.
    let down = sh("podman", &["kube", "down", &file.display().to_string()]);
    assert!(
        down.status.success(),
        "podman kube down: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(!exists("pod", &pod_name));
    assert!(exists("volume", &format!("{name}-storage")), "data kept");
    lab.put(&name, &lab.spec(&name, port, ""));
    let back = wait_for(Duration::from_secs(120), "Ready again", || {
        file_status(&path)
            .filter(|s| s.phase == Phase::Ready && s.observed_spec_hash == ready.observed_spec_hash)
    });
    assert_all_conditions_true(&back);
    for u in [
        format!("{name}-pod.service"),
        format!("{name}-registry.service"),
    ] {
        assert_eq!(unit_active(&u), "active", "{u}");
    }
    assert_eq!(served_digest(&auth2, &certs, &format!("{repo}:1")), pushed);
    assert!(!lab.logs().contains(&password));
}

#[test]
fn kubernetes_export_is_valid_kubernetes_and_carries_the_hosts_files() {
    let p = Prepared::new("distribution");
    let name = p.name.clone();
    let root = p.root();
    let secrets = secret_values(&root);

    // One file, 0600, which the command names as holding secrets.
    let file = p.out("k8s.yaml");
    let o = p.mrctl(&[
        "export",
        &name,
        "--to",
        "kubernetes",
        "-o",
        &file.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.stderr.is_empty(), "{}", show(&o));
    assert_no_secret("mrctl's messages", &said, &secrets);
    assert_eq!(mode(&file), 0o600);
    assert!(
        said.contains(&format!("secrets are in {} (mode 0600)", file.display()))
            && said.contains(&format!("Secret/{name}-tls"))
            && said.contains(&format!("Secret/{name}-htpasswd")),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "PersistentVolumeClaim/{name}-storage requests 10Gi"
        )),
        "{said}"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let d = docs(&text);
    let kinds: Vec<&str> = d.iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "Secret",
            "Secret",
            "PersistentVolumeClaim",
            "Deployment",
            "Service"
        ]
    );

    // The config this host runs; the host's TLS pair, CA and htpasswd.
    let spec_file = p.watch().join(format!("{name}.yaml"));
    let loaded =
        mirror_registry::api::load::parse(&spec_file, &std::fs::read(&spec_file).unwrap()).unwrap();
    let resolved = mirror_registry::api::defaults::resolve(
        &loaded.resource,
        &loaded.name,
        &mirror_registry::api::defaults::HostFacts {
            fqdn: "unused".into(),
        },
    );
    assert_eq!(
        find(&d, "ConfigMap")["data"]["config.yml"]
            .as_str()
            .unwrap(),
        mirror_registry::render::distribution::config(&resolved).unwrap()
    );
    let rendered = p.mrctl(&["render", "-f", &spec_file.display().to_string()]);
    assert!(String::from_utf8_lossy(&rendered.stdout).contains(
        find(&d, "ConfigMap")["data"]["config.yml"]
            .as_str()
            .unwrap()
    ));
    let tls = &d[1];
    assert_eq!(tls["type"], Value::from("kubernetes.io/tls"));
    for (key, file) in [
        ("tls.crt", "tls/tls.crt"),
        ("tls.key", "tls/tls.key"),
        ("ca.crt", "tls/ca.crt"),
    ] {
        assert_eq!(
            b64_decode(tls["data"][key].as_str().unwrap()),
            std::fs::read_to_string(root.join(file)).unwrap(),
            "{key}"
        );
    }
    assert_eq!(
        b64_decode(d[2]["data"]["htpasswd"].as_str().unwrap()),
        std::fs::read_to_string(root.join("secrets/htpasswd")).unwrap()
    );
    let deployment = find(&d, "Deployment");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        Value::from("docker.io/library/registry:2")
    );
    assert_eq!(
        find(&d, "Service")["spec"]["ports"][0]["port"],
        Value::from(8443)
    );
    assert_eq!(
        find(&d, "PersistentVolumeClaim")["spec"]["resources"]["requests"]["storage"],
        Value::from("10Gi")
    );

    // Kubernetes' own schemas, strictly: every object passes.
    let (ok, report) = validate(None, &[&file]);
    assert!(ok, "{report}");
    assert_eq!(
        report.lines().filter(|l| l.starts_with("ok ")).count(),
        6,
        "{report}"
    );
    // ... and they do check: an unknown field and a wrong type fail.
    let mut bad = d.clone();
    bad[4]["spec"]["template"]["spec"]["containers"][0]["bogus"] = Value::from(1);
    bad[5]["spec"]["ports"][0]["port"] = Value::from("https");
    let bad_file = p.out("bad.yaml");
    std::fs::write(
        &bad_file,
        bad.iter()
            .map(|v| serde_yaml::to_string(v).unwrap())
            .collect::<Vec<_>>()
            .join("---\n"),
    )
    .unwrap();
    let (ok, report) = validate(None, &[&bad_file]);
    assert!(!ok, "{report}");
    assert_eq!(
        report.lines().filter(|l| l.starts_with("FAIL")).count(),
        2,
        "{report}"
    );

    // One file per object: secrets 0600, the rest 0644, in a 0700 directory.
    let dir = p.out("k8s");
    let o = p.mrctl(&[
        "export",
        &name,
        "--to",
        "kubernetes",
        "--storage-size",
        "50Gi",
        "-o",
        &format!("{}/", dir.display()),
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_no_secret("mrctl's messages", &said, &secrets);
    assert_eq!(mode(&dir), 0o700);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 6);
    for f in &files {
        let is_secret = docs(&std::fs::read_to_string(f).unwrap())[0]["kind"] == "Secret";
        assert_eq!(
            mode(f),
            if is_secret { 0o600 } else { 0o644 },
            "{}",
            f.display()
        );
        assert!(said.contains(&format!("{} (", f.display())), "{said}");
        if is_secret {
            let line = said
                .lines()
                .find(|l| l.starts_with("secrets are in"))
                .unwrap();
            assert!(line.contains(&f.display().to_string()), "{said}");
        }
    }
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let (ok, report) = validate(None, &refs);
    assert!(ok, "{report}");
    assert!(std::fs::read_to_string(&files[3])
        .unwrap()
        .contains("storage: 50Gi"));

    // stdout only when asked; the same documents; secrets named on stderr.
    let o = p.mrctl(&["export", &name, "--to", "kubernetes", "-o", "-"]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), text);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(err.contains("the output holds secrets"), "{err}");
    assert_no_secret("stderr", &err, &secrets);
}

#[test]
fn the_projects_crd_stays_valid_for_kubectl_apply() {
    let crd = repo_root().join("crds/mirrorregistry.crd.yaml");
    let (ok, report) = validate(None, &[&crd]);
    assert!(ok, "{report}");
    assert!(
        report.contains("ok CustomResourceDefinition/mirrorregistries.mirrorregistry.io"),
        "{report}"
    );
}

#[test]
fn quay_operator_export_keeps_the_keys_and_validates_against_its_crd() {
    let p = Prepared::new("quay");
    let name = p.name.clone();
    let root = p.root();
    let secrets = secret_values(&root);
    let kept: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("secrets/quay-secrets.yaml")).unwrap(),
    )
    .unwrap();

    let file = p.out("quay.yaml");
    let o = p.mrctl(&[
        "export",
        &name,
        "--to",
        "quay-operator",
        "-o",
        &file.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let said = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.stderr.is_empty(), "{}", show(&o));
    assert_no_secret("mrctl's messages", &said, &secrets);
    assert_eq!(mode(&file), 0o600);
    assert!(
        said.contains(&format!("secrets are in {}", file.display()))
            && said.contains(&format!("Secret/{name}-config-bundle")),
        "{said}"
    );
    assert!(said.contains("add your object storage"), "{said}");
    let text = std::fs::read_to_string(&file).unwrap();
    let redis_password = kept["redisPassword"].as_str().unwrap();
    assert!(!text.contains(redis_password), "Redis is the operator's");
    let d = docs(&text);
    let bundle = find(&d, "Secret");
    let qr = find(&d, "QuayRegistry");
    assert_eq!(qr["apiVersion"], Value::from("quay.redhat.com/v1"));
    assert_eq!(qr["spec"]["configBundleSecret"], bundle["metadata"]["name"]);
    let components = qr["spec"]["components"].as_sequence().unwrap();
    let managed = |kind: &str| {
        components
            .iter()
            .find(|c| c["kind"] == kind)
            .map(|c| c["managed"].as_bool().unwrap())
    };
    assert_eq!(managed("objectstorage"), Some(false));
    assert_eq!(managed("tls"), Some(false));
    assert_eq!(managed("postgres"), Some(true));

    let data = &bundle["stringData"];
    let config: Value = serde_yaml::from_str(data["config.yaml"].as_str().unwrap()).unwrap();
    assert_eq!(config["SERVER_HOSTNAME"], Value::from("mirror.example.org"));
    assert_eq!(config["SECRET_KEY"], kept["secretKey"]);
    assert_eq!(config["DATABASE_SECRET_KEY"], kept["databaseSecretKey"]);
    assert_eq!(config["SUPER_USERS"], Value::from(vec!["init"]));
    for gone in [
        "DB_URI",
        "BUILDLOGS_REDIS",
        "USER_EVENTS_REDIS",
        "DISTRIBUTED_STORAGE_CONFIG",
    ] {
        assert!(config.get(gone).is_none(), "{gone}");
    }
    assert!(data["config.yaml"]
        .as_str()
        .unwrap()
        .contains("# DISTRIBUTED_STORAGE_CONFIG:"));
    assert_eq!(
        data["ssl.cert"].as_str().unwrap(),
        std::fs::read_to_string(root.join("tls/tls.crt")).unwrap()
    );
    assert_eq!(
        data["ssl.key"].as_str().unwrap(),
        std::fs::read_to_string(root.join("tls/tls.key")).unwrap()
    );

    // --managed-storage: the operator provides it.
    let managed_file = p.out("quay-managed.yaml");
    let o = p.mrctl(&[
        "export",
        &name,
        "--to",
        "quay-operator",
        "--managed-storage",
        "-o",
        &managed_file.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let md = docs(&std::fs::read_to_string(&managed_file).unwrap());
    assert!(find(&md, "QuayRegistry")["spec"]["components"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|c| c["kind"] == "objectstorage" && c["managed"] == true));

    let Some(crd) = quay_crd() else {
        // The Secret is checked all the same; the QuayRegistry needs its CRD.
        let bundle_file = p.out("bundle-only.yaml");
        std::fs::write(&bundle_file, serde_yaml::to_string(bundle).unwrap()).unwrap();
        let (ok, report) = validate(None, &[&bundle_file]);
        assert!(ok, "{report}");
        println!(
            "SKIP: QuayRegistry not validated: {} is absent (the Quay Operator's CRD is kept in shared/ beside the project root, which this checkout does not have)",
            quay_crd_path().display()
        );
        return;
    };
    // The QuayRegistry against the operator's CRD (schema, unknown fields,
    // CEL rules), the Secret against Kubernetes' schemas.
    let (ok, report) = validate(Some(&crd), &[&file, &managed_file]);
    assert!(ok, "{report}");
    assert_eq!(
        report.lines().filter(|l| l.starts_with("ok ")).count(),
        4,
        "{report}"
    );
    assert!(
        report.contains("ok QuayRegistry/") && report.contains("against its CRD"),
        "{report}"
    );
    // ... which does check: an unknown component, an unknown field and a
    // secretRef on a managed component each fail.
    for (i, bad) in [
        "  - kind: nosuch\n    managed: true\n",
        "  bogus: 1\n",
        "  - kind: tls\n    managed: true\n    secretRef:\n      name: x\n",
    ]
    .iter()
    .enumerate()
    {
        let bad_file = p.out(&format!("bad-{i}.yaml"));
        let qr_text = serde_yaml::to_string(qr).unwrap();
        let mutated = if bad.starts_with("  -") {
            qr_text.replacen("  components:\n", &format!("  components:\n{bad}"), 1)
        } else {
            qr_text.replacen("spec:\n", &format!("spec:\n{bad}"), 1)
        };
        assert_ne!(mutated, qr_text);
        std::fs::write(&bad_file, mutated).unwrap();
        let (ok, report) = validate(Some(&crd), &[&bad_file]);
        assert!(!ok, "{bad}: {report}");
    }
}

#[test]
fn refusals_say_what_to_do_and_write_nothing() {
    let dist = Prepared::new("distribution");
    let quay = Prepared::new("quay");
    let code = |o: &Output| o.status.code();

    let o = dist.mrctl(&["export", &dist.name, "--to", "quay-operator", "-o", "-"]);
    assert_eq!(code(&o), Some(1), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--to kubernetes"));
    assert!(o.stdout.is_empty());

    let o = quay.mrctl(&["export", &quay.name, "--to", "kubernetes", "-o", "-"]);
    assert_eq!(code(&o), Some(1), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--to quay-operator"));

    // Secrets need -o.
    let o = dist.mrctl(&["export", &dist.name, "--to", "kubernetes"]);
    assert_eq!(code(&o), Some(2), "{}", show(&o));
    assert!(o.stdout.is_empty());
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds secrets: give -o FILE"));

    // Not into the watch directory, where it would be read as a spec.
    let inside = dist.watch().join("export.yaml");
    let o = dist.mrctl(&[
        "export",
        &dist.name,
        "--to",
        "kubernetes",
        "-o",
        &inside.display().to_string(),
    ]);
    assert_eq!(code(&o), Some(2), "{}", show(&o));
    assert!(!inside.exists());

    let o = dist.mrctl(&[
        "export",
        &dist.name,
        "--to",
        "kubernetes",
        "--storage-size",
        "10GB",
        "-o",
        "-",
    ]);
    assert_eq!(code(&o), Some(2), "{}", show(&o));
    let o = dist.mrctl(&["export", &dist.name, "--to", "kube", "--managed-storage"]);
    assert_eq!(code(&o), Some(2), "{}", show(&o));

    let o = dist.mrctl(&["export", "nosuch", "--to", "kube"]);
    assert_eq!(code(&o), Some(1), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("mirrorregistry/nosuch not found"));

    // A registry the controller has not converged yet: its files are named.
    std::fs::remove_file(dist.root().join("secrets/htpasswd")).unwrap();
    let out = dist.out("x.yaml");
    let o = dist.mrctl(&[
        "export",
        &dist.name,
        "--to",
        "kubernetes",
        "-o",
        &out.display().to_string(),
    ]);
    assert_eq!(code(&o), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("secrets/htpasswd does not exist yet"),
        "{}",
        show(&o)
    );
    assert!(!out.exists());
}

/// docs/outgrowing.md's image move, run here: two registries of this
/// project stand for this host's and the cluster's, each with its own CA
/// and credentials; the catalog is listed with curl, `skopeo sync` copies
/// each repository, every tag (`--all --preserve-digests`), to the same
/// path, and every digest at the destination is the source's.
#[test]
fn images_move_with_skopeo_sync_as_the_doc_says() {
    let mut lab = Lab::new();
    let (src, dst) = (unique("src"), unique("dst"));
    let (src_port, dst_port) = (free_port(), free_port());
    lab.track(&src, src_port);
    lab.track(&dst, dst_port);
    lab.start(&[]);
    lab.put(&src, &lab.spec(&src, src_port, ""));
    lab.put(&dst, &lab.spec(&dst, dst_port, ""));
    wait_phase(&lab.spec_path(&src), Phase::Ready, Duration::from_secs(120));
    wait_phase(&lab.spec_path(&dst), Phase::Ready, Duration::from_secs(120));

    // Step 1: each side's CA in a directory of its own, one auth file.
    let ca_dir = |name: &str| {
        let d = lab.dir.path().join(format!("ca-{name}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(lab.root(name).join("tls/ca.crt"), d.join("ca.crt")).unwrap();
        d
    };
    let (src_ca, dst_ca) = (ca_dir(&src), ca_dir(&dst));
    let auth = lab.dir.path().join("auth.json");
    let (src_user, src_pw) = credentials(&lab.root(&src));
    let (dst_user, dst_pw) = credentials(&lab.root(&dst));
    let src_host = format!("localhost:{src_port}");
    let dst_host = format!("localhost:{dst_port}");
    assert!(login_with_ca(&auth, &src_ca, &src_host, &src_user, &src_pw));
    assert!(login_with_ca(&auth, &dst_ca, &dst_host, &dst_user, &dst_pw));

    // Something to move: two repositories, three tags.
    let refs = [
        "ocp/release:4.16.1",
        "ocp/release:4.16.2",
        "tools/busybox:1",
    ];
    for r in refs {
        skopeo(
            &auth,
            &[
                "copy",
                "--dest-cert-dir",
                &src_ca.display().to_string(),
                TEST_IMAGE,
                &format!("docker://{src_host}/{r}"),
            ],
        );
    }

    // Step 2: the source's repositories, from its catalog (curl with a
    // netrc file, so the password is on no command line).
    let netrc = lab.dir.path().join("netrc");
    std::fs::write(
        &netrc,
        format!("machine localhost login {src_user} password {src_pw}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&netrc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let catalog = sh_ok(
        "curl",
        &[
            "-sf",
            "--cacert",
            &src_ca.join("ca.crt").display().to_string(),
            "--netrc-file",
            &netrc.display().to_string(),
            &format!("https://{src_host}/v2/_catalog"),
        ],
    );
    let catalog: serde_json::Value = serde_json::from_str(&catalog).unwrap();
    let repos: Vec<String> = catalog["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    assert_eq!(repos, ["ocp/release", "tools/busybox"]);

    // Step 3: skopeo sync, one repository at a time into its own
    // namespace at the destination, so paths stay the same; every tag.
    let auth_s = auth.display().to_string();
    for repo in &repos {
        let dest = match repo.rsplit_once('/') {
            Some((namespace, _)) => format!("{dst_host}/{namespace}"),
            None => dst_host.clone(),
        };
        let out = sh(
            "skopeo",
            &[
                "sync",
                "--src",
                "docker",
                "--dest",
                "docker",
                "--all",
                "--preserve-digests",
                "--src-authfile",
                &auth_s,
                "--dest-authfile",
                &auth_s,
                "--src-cert-dir",
                &src_ca.display().to_string(),
                "--dest-cert-dir",
                &dst_ca.display().to_string(),
                &format!("{src_host}/{repo}"),
                &dest,
            ],
        );
        assert!(
            out.status.success(),
            "skopeo sync {repo}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Step 4: every tag at the destination has the source's digest.
    for r in refs {
        let at_src = served_digest(&auth, &src_ca, &format!("docker://{src_host}/{r}"));
        let at_dst = served_digest(&auth, &dst_ca, &format!("docker://{dst_host}/{r}"));
        assert_eq!(at_dst, at_src, "{r}");
    }
    assert!(!lab.logs().contains(&src_pw) && !lab.logs().contains(&dst_pw));
}
