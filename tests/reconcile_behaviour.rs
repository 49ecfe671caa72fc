//! How the controller behaves around the main path, against the real host:
//! pausing, port conflicts, user-supplied TLS, invalid and duplicate specs,
//! deletion, state-only status, idempotence and offline image archives.
//! Each test uses its own names, ports and directories, and its `Lab` guard
//! removes whatever the registry left on the host.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use mirror_registry::api::{Condition, Phase, Status};
use mirror_registry::host::tls;
use mirror_registry::spec_file::splice::without_status;

/// Long enough for a cold start of the pod and the registry container.
const READY_TIMEOUT: Duration = Duration::from_secs(45);
/// Long enough for one reconcile triggered by an edit.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

fn pod_unit(name: &str) -> String {
    format!("{name}-pod.service")
}

fn registry_unit(name: &str) -> String {
    format!("{name}-registry.service")
}

fn unit_dir() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".config/systemd/user")
}

fn unit_enabled(unit: &str) -> String {
    String::from_utf8_lossy(&sh("systemctl", &["--user", "is-enabled", unit]).stdout)
        .trim()
        .to_string()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What a failed wait shows: the spec file (with its status) and the end of
/// the controller's log.
fn diagnostics(lab: &Lab, name: &str) -> String {
    format!(
        "--- {} ---\n{}\n--- controller log (tail) ---\n{}\n--- last --once log (tail) ---\n{}",
        lab.spec_path(name).display(),
        std::fs::read_to_string(lab.spec_path(name)).unwrap_or_default(),
        tail(&lab.logs(), 40),
        tail(
            &std::fs::read_to_string(lab.dir.path().join("once.log")).unwrap_or_default(),
            40
        ),
    )
}

/// Polls the status `get` returns until `pred` holds; panics with
/// diagnostics otherwise.
fn wait_status_by(
    lab: &Lab,
    name: &str,
    what: &str,
    timeout: Duration,
    get: impl Fn() -> Option<Status>,
    pred: impl Fn(&Status) -> bool,
) -> Status {
    let start = Instant::now();
    loop {
        if let Some(s) = get() {
            if pred(&s) {
                return s;
            }
        }
        if start.elapsed() > timeout {
            panic!(
                "timed out after {timeout:?} waiting for {name}: {what}\n{}",
                diagnostics(lab, name)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits on the status block of `name`'s spec file.
fn wait_status(
    lab: &Lab,
    name: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&Status) -> bool,
) -> Status {
    let path = lab.spec_path(name);
    wait_status_by(lab, name, what, timeout, || file_status(&path), pred)
}

fn wait_ready(lab: &Lab, name: &str) -> Status {
    wait_status(lab, name, "phase Ready", READY_TIMEOUT, |s| {
        s.phase == Phase::Ready
    })
}

fn cond(s: &Status, t: &str) -> Condition {
    condition(s, t)
        .cloned()
        .unwrap_or_else(|| panic!("no {t} condition in {s:#?}"))
}

fn has_cond(s: &Status, t: &str, status: &str, reason: &str) -> bool {
    condition(s, t).is_some_and(|c| c.status == status && c.reason == reason)
}

/// HTTP status code of `GET https://localhost:port/v2/` verified against
/// `ca`, or curl's error text.
fn v2_code(port: u16, ca: &Path) -> String {
    let url = format!("https://localhost:{port}/v2/");
    let out = sh(
        "curl",
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            "--cacert",
            &ca.display().to_string(),
            &url,
        ],
    );
    let code = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() {
        code
    } else {
        format!(
            "curl failed ({code}): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Edits a spec file in place the way an editor saving atomically would,
/// keeping the status block the controller wrote.
fn edit(lab: &Lab, name: &str, f: impl FnOnce(&str) -> String) -> String {
    let old = read(&lab.spec_path(name));
    let new = f(&old);
    assert_ne!(old, new, "the edit must change the file");
    lab.put(name, &new);
    new
}

/// Sets a top-level key of `spec:` (inserted as its first line).
fn with_spec_line(text: &str, line: &str) -> String {
    assert!(text.contains("\nspec:\n"), "no spec block in:\n{text}");
    text.replacen("\nspec:\n", &format!("\nspec:\n  {line}\n"), 1)
}

// ---------------------------------------------------------------------------

#[test]
fn paused_stops_units_and_keeps_everything() {
    let mut lab = Lab::new();
    let name = unique("rb-pause");
    let port = free_port();
    lab.track(&name, port);
    lab.put(&name, &lab.spec(&name, port, ""));
    lab.start(&[]);

    let ready = wait_ready(&lab, &name);
    let ca = ready.ca_file.clone().expect("caFile in a Ready status");
    assert_eq!(v2_code(port, &ca), "401");
    let root = lab.root(&name);
    let creds_before = credentials(&root);
    let ca_before = read(&ca);

    edit(&lab, &name, |t| with_spec_line(t, "paused: true"));
    let paused = wait_status(&lab, &name, "phase Paused", STEP_TIMEOUT, |s| {
        s.phase == Phase::Paused
    });
    let ready_c = cond(&paused, "Ready");
    assert_eq!(
        (ready_c.status.as_str(), ready_c.reason.as_str()),
        ("False", "Paused")
    );
    let units = cond(&paused, "UnitsActive");
    assert_eq!(
        (units.status.as_str(), units.reason.as_str()),
        ("False", "Paused")
    );
    // Stopped means inactive, not failed: a paused registry must not show up
    // in `systemctl --failed`. Checked at the end, so the rest still runs.
    let paused_states: Vec<(String, String, String)> = [pod_unit(&name), registry_unit(&name)]
        .into_iter()
        .map(|u| {
            let state = unit_active(&u);
            let detail = sh_ok(
                "systemctl",
                &[
                    "--user",
                    "show",
                    "-p",
                    "Result,ExecMainCode,ExecMainStatus",
                    &u,
                ],
            );
            (
                u,
                state,
                detail.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    // Paused is a resting state: its own stop, reset and disable must not
    // wake it again and again (it once reconciled ~10 times a second).
    std::thread::sleep(Duration::from_secs(2));
    let count = || {
        lab.logs()
            .lines()
            .filter(|l| l.contains("reconciled") && l.contains("duration_us") && l.contains(&name))
            .count()
    };
    let before = count();
    std::thread::sleep(Duration::from_secs(5));
    let woken = count() - before;
    assert!(
        woken <= 3,
        "a paused registry was reconciled {woken} times in 5 s"
    );
    for u in [pod_unit(&name), registry_unit(&name)] {
        assert_ne!(unit_active(&u), "active", "{u} after pausing");
        assert_eq!(unit_enabled(&u), "disabled", "{u} after pausing");
        assert!(
            unit_dir().join(&u).is_file(),
            "{u}'s unit file is kept while paused"
        );
    }
    assert!(
        !exists("container", &format!("{name}-registry")),
        "the registry container is stopped"
    );
    assert!(
        v2_code(port, &ca).starts_with("curl failed"),
        "nothing serves port {port} while paused"
    );
    // Everything else is kept.
    assert!(exists("volume", &format!("{name}-storage")));
    assert!(root.join("config/registry-config.yml").is_file());
    assert_eq!(read(&ca), ca_before, "the CA is kept");
    assert_eq!(credentials(&root), creds_before, "the credentials are kept");
    assert!(lab.state().join(&name).join("owned.json").is_file());
    // Paused is a settled state: nothing flips it back on its own.
    std::thread::sleep(Duration::from_secs(3));
    assert_ne!(unit_active(&pod_unit(&name)), "active");
    assert_ne!(unit_active(&registry_unit(&name)), "active");
    assert_eq!(
        file_status(&lab.spec_path(&name)).map(|s| s.phase),
        Some(Phase::Paused)
    );

    edit(&lab, &name, |t| {
        t.replacen("paused: true", "paused: false", 1)
    });
    let again = wait_ready(&lab, &name);
    for u in [pod_unit(&name), registry_unit(&name)] {
        assert_eq!(unit_active(&u), "active", "{u} after unpausing");
        assert_eq!(unit_enabled(&u), "enabled", "{u} after unpausing");
    }
    assert_eq!(again.ca_file.as_deref(), Some(ca.as_path()));
    assert_eq!(read(&ca), ca_before, "the same CA serves again");
    assert_eq!(credentials(&root), creds_before);
    assert_eq!(v2_code(port, &ca), "401");

    for (u, state, detail) in paused_states {
        assert_eq!(state, "inactive", "{u} while paused ({detail})");
    }
}

#[test]
fn port_conflict_is_a_condition_naming_the_port() {
    let mut lab = Lab::new();
    let name = unique("rb-port");
    let port = free_port();
    lab.track(&name, port);
    let holder = std::net::TcpListener::bind(("0.0.0.0", port)).unwrap();
    lab.put(&name, &lab.spec(&name, port, ""));
    lab.start(&[]);

    let s = wait_status(
        &lab,
        &name,
        "UnitsActive False PortConflict",
        READY_TIMEOUT,
        |s| has_cond(s, "UnitsActive", "False", "PortConflict"),
    );
    let c = cond(&s, "UnitsActive");
    assert!(
        c.message.contains(&port.to_string()),
        "message names port {port}: {}",
        c.message
    );
    assert_ne!(s.phase, Phase::Ready);
    assert_eq!(cond(&s, "Ready").status, "False");
    assert!(
        !exists("pod", &format!("{name}-pod")),
        "no pod while the port is taken"
    );
    assert_ne!(unit_active(&pod_unit(&name)), "active");

    // The controller keeps looking on its own; freeing the port is enough.
    drop(holder);
    let ready = wait_ready(&lab, &name);
    assert_eq!(cond(&ready, "UnitsActive").status, "True");
    assert!(exists("pod", &format!("{name}-pod")));
    let ca = ready.ca_file.expect("caFile");
    assert_eq!(v2_code(port, &ca), "401");
}

/// A server pair for `host` signed by `ca`, written under `dir` as
/// `<stem>.crt` / `<stem>.key`; with `chain` the certificate file holds the
/// CA certificate after the server's (a "fullchain" file). Returns (cert, key).
fn write_pair(
    dir: &Path,
    stem: &str,
    ca: &tls::Pem,
    host: &str,
    chain: bool,
) -> (PathBuf, PathBuf) {
    let now = time::OffsetDateTime::now_utc();
    let server = tls::generate_server(ca, &[host.to_string()], &[], now).unwrap();
    let cert = dir.join(format!("{stem}.crt"));
    let key = dir.join(format!("{stem}.key"));
    let mut pem = server.cert.clone();
    if chain {
        pem.push_str(&ca.cert);
    }
    std::fs::write(&cert, pem).unwrap();
    std::fs::write(&key, &server.key).unwrap();
    (cert, key)
}

/// A directory with a fresh CA: (dir, CA, CA certificate file).
fn pki(lab: &Lab) -> (PathBuf, tls::Pem, PathBuf) {
    let dir = lab.dir.path().join("pki");
    std::fs::create_dir_all(&dir).unwrap();
    let ca = tls::generate_ca("mirror-registry test CA", time::OffsetDateTime::now_utc()).unwrap();
    let ca_file = dir.join("ca.crt");
    std::fs::write(&ca_file, &ca.cert).unwrap();
    (dir, ca, ca_file)
}

fn tls_lines(cert: &Path, key: &Path) -> String {
    format!(
        "  tls:\n    certFile: {}\n    keyFile: {}\n",
        cert.display(),
        key.display()
    )
}

#[test]
fn user_tls_pair_is_validated() {
    let mut lab = Lab::new();
    let name = unique("rb-tls");
    let port = free_port();
    lab.track(&name, port);
    let (pki, ca, ca_file) = pki(&lab);
    let (good_cert, good_key) = write_pair(&pki, "good", &ca, "localhost", true);

    lab.put(
        &name,
        &lab.spec(&name, port, &tls_lines(&good_cert, &good_key)),
    );
    lab.start(&[]);
    let ready = wait_ready(&lab, &name);
    let cv = cond(&ready, "CertificateValid");
    assert_eq!(
        (cv.status.as_str(), cv.reason.as_str()),
        ("True", "Provided")
    );
    let healthy = cond(&ready, "Healthy");
    assert_eq!(healthy.status, "True", "{healthy:?}");
    assert_eq!(ready.ca_file, None, "no generated CA for a provided pair");
    assert_eq!(
        v2_code(port, &ca_file),
        "401",
        "serves the user's certificate"
    );
    let served = read(&lab.root(&name).join("tls/tls.crt"));
    assert_eq!(served, read(&good_cert));

    // A certificate for another host: reported, and the registry keeps
    // serving the pair that was valid.
    let (wrong_cert, wrong_key) = write_pair(&pki, "wrong-host", &ca, "other.example", true);
    edit(&lab, &name, |t| {
        t.replace(
            &good_cert.display().to_string(),
            &wrong_cert.display().to_string(),
        )
        .replace(
            &good_key.display().to_string(),
            &wrong_key.display().to_string(),
        )
    });
    let s = wait_status(
        &lab,
        &name,
        "CertificateValid False InvalidCertificate (wrong host)",
        STEP_TIMEOUT,
        |s| has_cond(s, "CertificateValid", "False", "InvalidCertificate"),
    );
    let cv = cond(&s, "CertificateValid");
    assert!(
        cv.message.contains(&wrong_cert.display().to_string()),
        "names the certificate file: {}",
        cv.message
    );
    assert!(
        cv.message.contains("localhost"),
        "names the hostname: {}",
        cv.message
    );
    assert_eq!(s.phase, Phase::Failed);
    assert_eq!(cond(&s, "Ready").status, "False");
    assert_eq!(unit_active(&registry_unit(&name)), "active");
    assert_eq!(
        v2_code(port, &ca_file),
        "401",
        "the running registry keeps serving the certificate for localhost"
    );
    assert_eq!(
        read(&lab.root(&name).join("tls/tls.crt")),
        served,
        "the invalid certificate is not installed"
    );

    // A key that is not the certificate's.
    let (_, other_key) = write_pair(&pki, "other-key", &ca, "localhost", true);
    edit(&lab, &name, |t| {
        t.replace(
            &wrong_cert.display().to_string(),
            &good_cert.display().to_string(),
        )
        .replace(
            &wrong_key.display().to_string(),
            &other_key.display().to_string(),
        )
    });
    let s = wait_status(
        &lab,
        &name,
        "CertificateValid False InvalidCertificate (key mismatch)",
        STEP_TIMEOUT,
        |s| {
            condition(s, "CertificateValid").is_some_and(|c| {
                c.status == "False"
                    && c.reason == "InvalidCertificate"
                    && c.message.contains(&other_key.display().to_string())
            })
        },
    );
    let cv = cond(&s, "CertificateValid");
    assert!(
        cv.message.contains(&good_cert.display().to_string()),
        "names the certificate file too: {}",
        cv.message
    );
    assert!(cv.message.contains("does not match"), "{}", cv.message);
    assert_eq!(unit_active(&registry_unit(&name)), "active");
    assert_eq!(v2_code(port, &ca_file), "401");
    assert_eq!(
        read(&lab.root(&name).join("tls/tls.key")),
        read(&good_key),
        "the mismatched key is not installed"
    );
}

/// The common air-gapped case: a certificate file holding only the server
/// certificate, issued by a private CA the host does not trust. The
/// controller validated the pair itself, so its probe must get through.
#[test]
fn user_tls_leaf_certificate_of_a_private_ca_becomes_ready() {
    let mut lab = Lab::new();
    let name = unique("rb-tlsleaf");
    let port = free_port();
    lab.track(&name, port);
    let (pki, ca, ca_file) = pki(&lab);
    let (cert, key) = write_pair(&pki, "leaf", &ca, "localhost", false);
    lab.put(&name, &lab.spec(&name, port, &tls_lines(&cert, &key)));
    assert_eq!(
        lab.once(&["--once-timeout", "20s"]),
        0,
        "{}",
        diagnostics(&lab, &name)
    );
    let s = file_status(&lab.spec_path(&name)).unwrap();
    assert_eq!(s.phase, Phase::Ready);
    assert_eq!(cond(&s, "Healthy").status, "True");
    assert_eq!(v2_code(port, &ca_file), "401");
}

#[test]
fn invalid_spec_keeps_the_registry_serving() {
    let mut lab = Lab::new();
    let name = unique("rb-invalid");
    let port = free_port();
    lab.track(&name, port);
    lab.put(&name, &lab.spec(&name, port, ""));
    lab.start(&[]);
    let ready = wait_ready(&lab, &name);
    let ca = ready.ca_file.clone().expect("caFile");
    let old_hash = ready.observed_spec_hash.clone().expect("observedSpecHash");

    let bad = edit(&lab, &name, |t| {
        with_spec_line(
            &t.replacen(&format!("port: {port}"), "port: 70000", 1),
            "replicas: 3",
        )
    });
    let s = wait_status(&lab, &name, "SpecValid False", STEP_TIMEOUT, |s| {
        condition(s, "SpecValid").is_some_and(|c| c.status == "False")
    });
    let sv = cond(&s, "SpecValid");
    assert_eq!(sv.reason, "InvalidSpec");
    assert!(sv.message.contains("spec.port"), "{}", sv.message);
    assert!(sv.message.contains("spec.replicas"), "{}", sv.message);
    assert_eq!(s.phase, Phase::Failed);
    assert_eq!(cond(&s, "Ready").status, "False");
    let now = read(&lab.spec_path(&name));
    assert_eq!(
        without_status(&now),
        without_status(&bad),
        "only the status block of the user's file changes"
    );
    for u in [pod_unit(&name), registry_unit(&name)] {
        assert_eq!(unit_active(&u), "active", "{u} keeps running");
    }
    assert_eq!(v2_code(port, &ca), "401", "the registry keeps serving");
    assert!(exists("volume", &format!("{name}-storage")));

    // Fixed, and different from the first spec: converged to the new one.
    edit(&lab, &name, |t| {
        with_spec_line(
            &t.replacen("port: 70000", &format!("port: {port}"), 1)
                .replacen("\n  replicas: 3", "", 1),
            "deletionPolicy: Delete",
        )
    });
    let fixed = wait_status(&lab, &name, "Ready with a new hash", STEP_TIMEOUT, |s| {
        s.phase == Phase::Ready && s.observed_spec_hash.as_deref() != Some(old_hash.as_str())
    });
    assert_eq!(cond(&fixed, "SpecValid").status, "True");
    let text = read(&lab.spec_path(&name));
    let loaded = mirror_registry::api::load::parse(&lab.spec_path(&name), text.as_bytes())
        .expect("the fixed spec parses");
    let want = mirror_registry::api::defaults::resolve(
        &loaded.resource,
        &loaded.name,
        &mirror_registry::api::defaults::HostFacts {
            fqdn: mirror_registry::host::fqdn(),
        },
    )
    .hash()
    .unwrap();
    assert_eq!(fixed.observed_spec_hash.as_deref(), Some(want.as_str()));
    assert_eq!(v2_code(port, &ca), "401");
}

#[test]
fn duplicate_names_are_reported_on_both_files() {
    let mut lab = Lab::new();
    let name = unique("rb-dup");
    let port = free_port();
    lab.track(&name, port);
    let spec = lab.spec(&name, port, "");
    let a = lab.watch().join("a.yaml");
    let b = lab.watch().join("b.yaml");
    std::fs::write(&a, &spec).unwrap();
    std::fs::write(&b, &spec).unwrap();

    assert_eq!(lab.once(&["--once-timeout", "20s"]), 1, "not Ready");
    for (this, other) in [(&a, &b), (&b, &a)] {
        let s = file_status(this)
            .unwrap_or_else(|| panic!("{} has no status:\n{}", this.display(), read(this)));
        let sv = cond(&s, "SpecValid");
        assert_eq!(
            (sv.status.as_str(), sv.reason.as_str()),
            ("False", "DuplicateName"),
            "{}",
            this.display()
        );
        assert!(
            sv.message.contains(&other.display().to_string()),
            "{} names {}: {}",
            this.display(),
            other.display(),
            sv.message
        );
        assert_eq!(s.phase, Phase::Failed);
        assert_eq!(
            without_status(&read(this)),
            without_status(&spec),
            "only status is written"
        );
    }
    assert!(!exists("pod", &format!("{name}-pod")));
    assert!(!exists("volume", &format!("{name}-storage")));
    assert!(!unit_dir().join(pod_unit(&name)).exists());
    assert!(!unit_dir().join(registry_unit(&name)).exists());
    assert!(!lab.root(&name).exists(), "no root directory");
    assert!(
        !lab.state().join(&name).join("owned.json").exists(),
        "nothing recorded as owned"
    );

    // Once one of them goes, the other is applied.
    std::fs::remove_file(&b).unwrap();
    assert_eq!(lab.once(&[]), 0, "{}", diagnostics(&lab, "a"));
    let s = file_status(&a).unwrap();
    assert_eq!(s.phase, Phase::Ready);
    assert_eq!(cond(&s, "SpecValid").status, "True");
    assert!(exists("pod", &format!("{name}-pod")));
    let ca = s.ca_file.clone().expect("caFile");

    // A duplicate of a running registry is reported and tears nothing down.
    std::fs::write(&b, &spec).unwrap();
    assert_eq!(lab.once(&["--once-timeout", "20s"]), 1);
    for f in [&a, &b] {
        let s = file_status(f).unwrap();
        assert!(
            has_cond(&s, "SpecValid", "False", "DuplicateName"),
            "{}: {s:#?}",
            f.display()
        );
    }
    assert_eq!(unit_active(&registry_unit(&name)), "active");
    assert_eq!(
        v2_code(port, &ca),
        "401",
        "the running registry keeps serving"
    );
    assert!(lab.state().join(&name).join("owned.json").is_file());
}

#[test]
fn deletion_policy_delete_removes_data() {
    let mut lab = Lab::new();
    let name = unique("rb-delete");
    let port = free_port();
    lab.track(&name, port);
    lab.put(&name, &lab.spec(&name, port, "  deletionPolicy: Delete\n"));
    assert_eq!(lab.once(&[]), 0, "{}", diagnostics(&lab, &name));
    let s = file_status(&lab.spec_path(&name)).unwrap();
    assert_eq!(s.phase, Phase::Ready);
    let root = lab.root(&name);
    let volume = format!("{name}-storage");
    assert!(exists("volume", &volume));
    assert!(root.join("secrets/init-credentials").is_file());
    let state = lab.state().join(&name);
    assert!(state.join("owned.json").is_file());
    let trust = mirror_registry::settings::certs_d().join(format!("localhost:{port}"));
    assert!(
        trust.join("ca.crt").is_file(),
        "{} written",
        trust.display()
    );

    std::fs::remove_file(lab.spec_path(&name)).unwrap();
    assert_eq!(lab.once(&[]), 0, "torn down: {}", diagnostics(&lab, &name));
    assert!(!exists("volume", &volume), "volume {volume} removed");
    assert!(!root.exists(), "root {} removed", root.display());
    assert!(!state.exists(), "state {} removed", state.display());
    assert!(!exists("pod", &format!("{name}-pod")));
    assert!(!exists("container", &format!("{name}-registry")));
    for u in [pod_unit(&name), registry_unit(&name)] {
        assert!(!unit_dir().join(&u).exists(), "{u} removed");
        assert_ne!(unit_active(&u), "active");
    }
    assert!(!trust.exists(), "{} removed", trust.display());
}

#[test]
fn state_only_mode_leaves_the_spec_file_alone() {
    let mut lab = Lab::new();
    let name = unique("rb-stateonly");
    let port = free_port();
    lab.track(&name, port);
    let spec = lab.spec(&name, port, "");
    lab.put(&name, &spec);
    let before = std::fs::metadata(lab.spec_path(&name)).unwrap();

    assert_eq!(
        lab.once(&["--status-mode", "state-only"]),
        0,
        "{}",
        diagnostics(&lab, &name)
    );
    let status_file = lab.state().join(&name).join("status.yaml");
    let s: Status = serde_yaml::from_str(&read(&status_file)).unwrap();
    assert_eq!(s.phase, Phase::Ready);
    assert_eq!(cond(&s, "Healthy").status, "True");
    assert_eq!(
        std::fs::read(lab.spec_path(&name)).unwrap(),
        spec.as_bytes(),
        "the spec file is byte for byte what was written"
    );
    let after = std::fs::metadata(lab.spec_path(&name)).unwrap();
    assert_eq!(
        (after.ino(), after.mtime(), after.mtime_nsec()),
        (before.ino(), before.mtime(), before.mtime_nsec()),
        "the spec file was not replaced"
    );
    let ca = s.ca_file.expect("caFile");
    assert_eq!(v2_code(port, &ca), "401");
}

/// A file with its inode and mtime (seconds, nanoseconds).
type Stamp = (PathBuf, u64, i64, i64);

/// (inode, mtime) of a file, to tell whether anything wrote it.
fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path.to_path_buf(), m.ino(), m.mtime(), m.mtime_nsec())
}

/// Everything a converged reconcile must leave alone, besides the spec file.
fn snapshot(lab: &Lab, name: &str) -> (Vec<Stamp>, String, String) {
    let root = lab.root(name);
    let mut files = vec![
        unit_dir().join(pod_unit(name)),
        unit_dir().join(registry_unit(name)),
        root.join("config/registry-config.yml"),
        root.join("tls/ca.crt"),
        root.join("tls/ca.key"),
        root.join("tls/tls.crt"),
        root.join("tls/tls.key"),
        lab.state().join(name).join("owned.json"),
        lab.state().join(name).join("status.yaml"),
    ];
    let mut secrets: Vec<PathBuf> = std::fs::read_dir(root.join("secrets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    secrets.sort();
    assert!(!secrets.is_empty(), "secrets exist");
    files.extend(secrets);
    let stamps = files.iter().map(|p| stamp(p)).collect();
    let container = sh_ok(
        "podman",
        &[
            "inspect",
            "--format",
            "{{.Id}} {{.State.StartedAt}}",
            &format!("{name}-registry"),
        ],
    );
    let units = sh_ok(
        "systemctl",
        &[
            "--user",
            "show",
            "-p",
            "InvocationID,ActiveEnterTimestamp",
            &pod_unit(name),
            &registry_unit(name),
        ],
    );
    (stamps, container, units)
}

#[test]
fn converged_reconcile_changes_nothing() {
    let mut lab = Lab::new();
    let name = unique("rb-idem");
    let port = free_port();
    lab.track(&name, port);
    lab.put(&name, &lab.spec(&name, port, ""));
    lab.start(&[]);
    wait_ready(&lab, &name);
    // Let any reconcile the status write itself triggered finish.
    std::thread::sleep(Duration::from_secs(3));
    let first = snapshot(&lab, &name);
    let spec_stamp = stamp(&lab.spec_path(&name));

    // A file in the watch dir that is not a spec.
    std::fs::write(lab.watch().join("other.txt"), "not a spec\n").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(snapshot(&lab, &name), first, "after an unrelated file");
    assert_eq!(
        stamp(&lab.spec_path(&name)),
        spec_stamp,
        "spec file not written"
    );

    // A comment-only edit: same spec hash, so nothing restarts and the
    // status the file already holds is not written again.
    let edited = edit(&lab, &name, |t| {
        t.replacen("\nspec:\n", "\n# a comment the user added\nspec:\n", 1)
    });
    let spec_stamp = stamp(&lab.spec_path(&name));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(snapshot(&lab, &name), first, "after a comment-only edit");
    assert_eq!(
        stamp(&lab.spec_path(&name)),
        spec_stamp,
        "spec file not rewritten after a comment-only edit"
    );
    assert_eq!(read(&lab.spec_path(&name)), edited);

    // A full reconcile pass of a converged registry.
    lab.stop();
    assert_eq!(lab.once(&[]), 0, "{}", diagnostics(&lab, &name));
    assert_eq!(snapshot(&lab, &name), first, "after --once");
    assert_eq!(
        stamp(&lab.spec_path(&name)),
        spec_stamp,
        "spec file not rewritten by --once"
    );
    assert_eq!(read(&lab.spec_path(&name)), edited, "status unchanged");
    let once_log = std::fs::read_to_string(lab.dir.path().join("once.log")).unwrap();
    for noisy in ["status written", "unit files written", "created volume"] {
        assert!(
            !once_log.contains(noisy),
            "a converged pass logs no '{noisy}':\n{once_log}"
        );
    }
}

/// Removes an image tag when the test ends, however it ends.
struct TagGuard(String);

impl Drop for TagGuard {
    fn drop(&mut self) {
        let _ = sh("podman", &["rmi", "--ignore", &self.0]);
    }
}

#[test]
fn missing_image_is_loaded_from_the_archive() {
    let mut lab = Lab::new();
    let name = unique("rb-archive");
    let port = free_port();
    lab.track(&name, port);
    let image = format!("localhost/mr-test/{name}:1");
    let _tag = TagGuard(image.clone());
    sh_ok("podman", &["tag", "docker.io/library/registry:2", &image]);
    let archive = lab.dir.path().join("images.tar");
    sh_ok(
        "podman",
        &["save", "-o", &archive.display().to_string(), &image],
    );
    sh_ok("podman", &["rmi", &image]);
    assert!(
        !sh("podman", &["image", "exists", &image]).status.success(),
        "{image} removed before the test"
    );

    lab.put(
        &name,
        &lab.spec(
            &name,
            port,
            &format!(
                "  images:\n    registry: {image}\n    archive: {}\n",
                archive.display()
            ),
        ),
    );
    assert_eq!(
        lab.once(&["--once-timeout", "45s"]),
        0,
        "{}",
        diagnostics(&lab, &name)
    );
    let s = file_status(&lab.spec_path(&name)).unwrap();
    assert_eq!(s.phase, Phase::Ready);
    let ip = cond(&s, "ImagesPresent");
    assert_eq!(ip.status, "True");
    assert!(
        ip.message.contains(&archive.display().to_string()),
        "says it loaded the archive: {}",
        ip.message
    );
    assert!(sh("podman", &["image", "exists", &image]).status.success());
    let used = sh_ok(
        "podman",
        &[
            "inspect",
            "--format",
            "{{.ImageName}}",
            &format!("{name}-registry"),
        ],
    );
    assert_eq!(used.trim(), image, "the container runs the loaded image");

    // An archive that is not there.
    let name2 = unique("rb-noarchive");
    let port2 = free_port();
    lab.track(&name2, port2);
    let missing_image = format!("localhost/mr-test/{name2}:1");
    let missing_archive = lab.dir.path().join("no-such-archive.tar");
    lab.put(
        &name2,
        &lab.spec(
            &name2,
            port2,
            &format!(
                "  images:\n    registry: {missing_image}\n    archive: {}\n",
                missing_archive.display()
            ),
        ),
    );
    assert_eq!(lab.once(&["--once-timeout", "5s"]), 1);
    let s = file_status(&lab.spec_path(&name2))
        .unwrap_or_else(|| panic!("no status\n{}", diagnostics(&lab, &name2)));
    let ip = cond(&s, "ImagesPresent");
    assert_eq!(
        (ip.status.as_str(), ip.reason.as_str()),
        ("False", "ImageMissing")
    );
    assert!(ip.message.contains(&missing_image), "{}", ip.message);
    assert!(
        ip.message.contains(&missing_archive.display().to_string()),
        "{}",
        ip.message
    );
    assert_ne!(s.phase, Phase::Ready);
    assert!(!exists("pod", &format!("{name2}-pod")));
    assert!(!exists("container", &format!("{name2}-registry")));
    // The first registry was left alone by the pass that failed on the second.
    assert_eq!(
        file_status(&lab.spec_path(&name)).map(|s| s.phase),
        Some(Phase::Ready)
    );
}
