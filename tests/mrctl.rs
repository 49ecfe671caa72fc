//! mrctl against the real host: every command's output and effect. The
//! read and write commands run against a controller process; install,
//! upgrade and uninstall run the controller under the systemd user manager
//! as a Type=notify unit, exactly as on a production host.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const TEST_IMAGE: &str = "containers-storage:localhost/mirror-registry/testimage:latest";
/// A second local image of the distribution registry, for upgrades.
const OTHER_REGISTRY_IMAGE: &str = "localhost/mirror-registry/distribution:2.8";

fn global(lab: &Lab) -> Vec<String> {
    vec![
        "--watch-dir".into(),
        lab.watch().display().to_string(),
        "--state-dir".into(),
        lab.state().display().to_string(),
        "--scope".into(),
        "user".into(),
    ]
}

/// Runs mrctl with the lab's directories, feeding `stdin` when given.
fn mrctl_in(lab: &Lab, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mrctl"));
    cmd.args(global(lab))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn mrctl(lab: &Lab, args: &[&str]) -> Output {
    mrctl_in(lab, args, None)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    )
}

/// Runs mrctl and asserts its exit code.
fn expect(lab: &Lab, args: &[&str], code: i32) -> Output {
    let o = mrctl(lab, args);
    assert_eq!(o.status.code(), Some(code), "mrctl {args:?}: {}", show(&o));
    o
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn unit_dir() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".config/systemd/user")
}

fn unit_prop(unit: &str, prop: &str) -> String {
    let out = sh(
        "systemctl",
        &["--user", "show", unit, "-p", prop, "--value"],
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn digest(authfile: &Path, image: &str) -> String {
    skopeo(authfile, &["inspect", "--format", "{{.Digest}}", image])
        .trim()
        .to_string()
}

// ---------------------------------------------------------------------------

/// Commands that need no controller: help and exit codes, render (which
/// touches nothing), completion, the man page, apply's validation and
/// placement, get/wait/delete on a registry nobody converges, and the
/// message for a user who may not read the state.
#[test]
fn offline_commands() {
    let lab = Lab::new();
    let name = unique("mrctl-off");
    let port = free_port();

    // Help documents the exit codes; bad usage exits 2.
    let help = expect(&lab, &["--help"], 0);
    let h = stdout(&help);
    assert!(h.contains("Exit codes:") && h.contains("2  usage"), "{h}");
    for cmd in [
        "get",
        "describe",
        "apply",
        "delete",
        "wait",
        "credentials",
        "logs",
        "render",
        "install",
        "uninstall",
        "upgrade",
        "completion",
    ] {
        assert!(h.contains(&format!("  {cmd}")), "--help lists {cmd}: {h}");
    }
    expect(&lab, &["frobnicate"], 2);
    expect(&lab, &["get", "-o", "xml"], 2);
    let bad_for = expect(&lab, &["wait", &name, "--for=jsonpath={.x}"], 2);
    assert!(
        stderr(&bad_for).contains("--for=jsonpath"),
        "{}",
        show(&bad_for)
    );

    // render prints every unit and config file under its path, and creates
    // nothing: not the root, not a unit file, not the watch dir's content.
    let spec_path = lab.dir.path().join("in.yaml");
    std::fs::write(&spec_path, lab.spec(&name, port, "")).unwrap();
    let r = expect(&lab, &["render", "-f", spec_path.to_str().unwrap()], 0);
    let text = stdout(&r);
    let root = lab.root(&name);
    for header in [
        format!("# {}/{name}-pod.service", unit_dir().display()),
        format!("# {}/{name}-registry.service", unit_dir().display()),
        format!("# {}/config/registry-config.yml", root.display()),
    ] {
        assert!(text.contains(&header), "missing {header}:\n{text}");
    }
    assert!(text.contains(&format!("--publish {port}:5000")), "{text}");
    assert!(
        text.contains(&format!("# volumes: {name}-storage")),
        "{text}"
    );
    assert!(!root.exists(), "render created {}", root.display());
    assert!(!unit_dir().join(format!("{name}-pod.service")).exists());
    assert!(listing(&lab.watch()).is_empty());
    assert!(!lab.state().exists());
    let quay = lab.dir.path().join("quay.yaml");
    std::fs::write(
        &quay,
        "apiVersion: mirrorregistry.io/v1alpha1\nkind: MirrorRegistry\nspec: {engine: quay}\n",
    )
    .unwrap();
    // The quay engine: the original's units; generated secrets shown as
    // placeholders, never generated by a render.
    let q = stdout(&expect(&lab, &["render", "-f", quay.to_str().unwrap()], 0));
    for header in [
        format!("# {}/quay-pod.service", unit_dir().display()),
        format!("# {}/quay-redis.service", unit_dir().display()),
        format!("# {}/quay-app.service", unit_dir().display()),
        "/config/quay/config.yaml (mode 600)".to_string(),
        "/config/redis.conf (mode 600)".to_string(),
        "/tls/tls.crt -> ".to_string(),
        "/secrets/quay-secrets.yaml".to_string(),
    ] {
        assert!(q.contains(&header), "missing {header}:\n{q}");
    }
    assert!(
        q.contains(mirror_registry::render::quay::PLACEHOLDER),
        "{q}"
    );

    // validate and explain need nothing either.
    let v = expect(&lab, &["validate", "-f", spec_path.to_str().unwrap()], 0);
    assert!(
        stdout(&v).contains(&format!("valid (MirrorRegistry {name})")),
        "{}",
        show(&v)
    );
    let x = stdout(&expect(&lab, &["explain", "spec.tls"], 0));
    assert!(x.contains("certFile"), "{x}");

    // Completion scripts and the man page come from the same definitions.
    for shell in ["bash", "zsh", "fish"] {
        let c = expect(&lab, &["completion", shell], 0);
        let s = stdout(&c);
        assert!(s.contains("mrctl") && s.contains("uninstall"), "{shell}");
    }
    let man = stdout(&expect(&lab, &["man"], 0));
    assert!(man.contains(".TH") && man.contains("mrctl"), "{man}");
    assert!(man.contains("Exit codes"), "{man}");

    // apply refuses an invalid file with every problem and its field, and
    // writes nothing.
    let bad = lab.dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        lab.spec(&name, port, "")
            .replace(&format!("port: {port}\n"), "port: 70000\n  prot: 1\n"),
    )
    .unwrap();
    let o = expect(&lab, &["apply", "-f", bad.to_str().unwrap()], 1);
    let e = stderr(&o);
    assert!(
        e.contains(&bad.display().to_string()),
        "names the file: {e}"
    );
    assert!(e.contains("spec.port: must be 1-65535, got 70000"), "{e}");
    assert!(e.contains("spec.prot: unknown field"), "{e}");
    assert!(listing(&lab.watch()).is_empty(), "nothing applied");

    // created, unchanged, configured; placed atomically as <name>.yaml.
    let o = expect(&lab, &["apply", "-f", spec_path.to_str().unwrap()], 0);
    assert_eq!(stdout(&o), format!("mirrorregistry/{name} created\n"));
    assert_eq!(listing(&lab.watch()), vec![format!("{name}.yaml")]);
    let o = expect(&lab, &["apply", "-f", spec_path.to_str().unwrap()], 0);
    assert_eq!(stdout(&o), format!("mirrorregistry/{name} unchanged\n"));
    std::fs::write(&spec_path, lab.spec(&name, port, "  paused: true\n")).unwrap();
    let o = expect(&lab, &["apply", "-f", spec_path.to_str().unwrap()], 0);
    assert_eq!(stdout(&o), format!("mirrorregistry/{name} configured\n"));
    assert!(std::fs::read_to_string(lab.spec_path(&name))
        .unwrap()
        .contains("paused: true"));
    // Standard input works too, and a file of that name holding another
    // registry is not overwritten.
    let o = mrctl_in(
        &lab,
        &["apply", "-f", "-"],
        Some(&lab.spec(&name, port, "  paused: true\n")),
    );
    assert_eq!(
        stdout(&o),
        format!("mirrorregistry/{name} unchanged\n"),
        "{}",
        show(&o)
    );
    let other = unique("mrctl-other");
    std::fs::write(
        lab.watch().join(format!("{other}.yaml")),
        lab.spec(&format!("{other}-x"), free_port(), ""),
    )
    .unwrap();
    let clash = lab.dir.path().join("clash.yaml");
    std::fs::write(&clash, lab.spec(&other, free_port(), "")).unwrap();
    let o = expect(&lab, &["apply", "-f", clash.to_str().unwrap()], 1);
    assert!(
        stderr(&o).contains("already exists and holds"),
        "{}",
        show(&o)
    );
    std::fs::remove_file(lab.watch().join(format!("{other}.yaml"))).unwrap();

    // Nobody converges it: Pending, not Ready; JSON parses with the API's
    // field names; wait times out with kubectl's words and exit 1.
    let table = stdout(&expect(&lab, &["get", "status"], 0));
    assert!(table.starts_with("NAME"), "{table}");
    for col in ["ENGINE", "PHASE", "READY", "ENDPOINT", "AGE"] {
        assert!(table.lines().next().unwrap().contains(col), "{table}");
    }
    let row = table.lines().find(|l| l.starts_with(&name)).unwrap();
    assert!(
        row.contains("distribution") && row.contains("Pending"),
        "{row}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&stdout(&expect(&lab, &["get", &name, "-o", "json"], 0))).unwrap();
    assert_eq!(j["kind"], "MirrorRegistry");
    assert_eq!(j["metadata"]["name"], name.as_str());
    assert_eq!(j["spec"]["port"], port);
    assert_eq!(j["spec"]["deletionPolicy"], "Retain");
    assert!(j.get("status").is_none(), "{j}");
    let t0 = Instant::now();
    let o = expect(
        &lab,
        &["wait", &name, "--for=condition=Ready", "--timeout=1s"],
        1,
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert!(
        stderr(&o).contains(&format!(
            "timed out waiting for the condition on mirrorregistry/{name}"
        )),
        "{}",
        show(&o)
    );
    let o = expect(&lab, &["get", "nosuch", "-o", "json"], 1);
    assert!(stderr(&o).contains("mirrorregistry/nosuch not found"));
    expect(&lab, &["wait", "nosuch", "--for=condition=Ready"], 1);

    // credentials reads the 0600 file where the spec puts it; someone who
    // may not read it, or the state (0700, as the controller makes it), is
    // told who may.
    let secrets = lab.root(&name).join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::set_permissions(lab.root(&name), std::fs::Permissions::from_mode(0o700)).unwrap();
    let creds_file = secrets.join("init-credentials");
    std::fs::write(&creds_file, "username: init\npassword: not-a-real-one\n").unwrap();
    std::fs::set_permissions(&creds_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let c = stdout(&expect(&lab, &["credentials", &name], 0));
    assert!(c.contains("password: not-a-real-one\n"), "{c}");
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_mrctl"))
            .args(global(&lab))
            .args(args)
            .output()
            .unwrap()
    };
    let o = as_nobody(&["credentials", &name]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("not permitted to read {}", creds_file.display()))
            && e.contains("run mrctl as root"),
        "{e}"
    );
    assert!(!e.contains("not-a-real-one"));
    std::fs::create_dir_all(lab.state()).unwrap();
    std::fs::set_permissions(lab.state(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let o = as_nobody(&["credentials", &name]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let e = stderr(&o);
    assert!(
        e.contains("cannot read the state directory")
            && e.contains("permission denied")
            && e.contains("run mrctl as root"),
        "{e}"
    );

    // delete removes the file; with nothing recorded it is gone at once.
    let o = expect(&lab, &["delete", &name], 0);
    assert_eq!(stdout(&o), format!("mirrorregistry/{name} deleted\n"));
    assert!(listing(&lab.watch()).is_empty());
    expect(&lab, &["wait", &name, "--for=delete", "--timeout=5s"], 0);
    expect(&lab, &["delete", &name], 1);
    expect(&lab, &["delete", &name, "--ignore-not-found"], 0);
    let o = expect(&lab, &["get"], 0);
    assert!(stderr(&o).contains("No resources found"), "{}", show(&o));
}

/// The read commands against a running controller in state-only mode (so
/// everything mrctl shows comes from the state dir): wait, get in every
/// format, describe with live unit and container state and events,
/// credentials, logs (and -f), delete --wait; and a registry that cannot
/// become Ready makes wait time out with exit 1.
#[test]
fn read_commands_against_a_running_controller() {
    let mut lab = Lab::new();
    let good = unique("mrctl-rd");
    let stuck = unique("mrctl-stuck");
    let (p1, p2) = (free_port(), free_port());
    lab.track(&good, p1);
    lab.track(&stuck, p2);
    lab.start(&["--status-mode", "state-only"]);
    let spec1 = lab.dir.path().join("good.yaml");
    std::fs::write(&spec1, lab.spec(&good, p1, "")).unwrap();
    expect(&lab, &["apply", "-f", spec1.to_str().unwrap()], 0);
    let spec2 = lab.dir.path().join("stuck.yaml");
    std::fs::write(
        &spec2,
        lab.spec(
            &stuck,
            p2,
            "  images:\n    registry: localhost/mirror-registry/does-not-exist:1\n",
        ),
    )
    .unwrap();
    expect(&lab, &["apply", "-f", spec2.to_str().unwrap()], 0);

    let t0 = Instant::now();
    let o = mrctl(
        &lab,
        &["wait", &good, "--for=condition=Ready", "--timeout=90s"],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n--- controller log\n{}",
        show(&o),
        lab.logs()
    );
    eprintln!(
        "FIGURE mrctl apply -> wait Ready: {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(stdout(&o), format!("mirrorregistry/{good} condition met\n"));
    // State-only: the spec file stays as applied.
    assert!(!std::fs::read_to_string(lab.spec_path(&good))
        .unwrap()
        .contains("status:"));

    // A registry whose image cannot be had never becomes Ready.
    let o = expect(
        &lab,
        &["wait", &stuck, "--for=condition=Ready", "--timeout=3s"],
        1,
    );
    let e = stderr(&o);
    assert!(
        e.contains(&format!(
            "timed out waiting for the condition on mirrorregistry/{stuck}"
        )),
        "{e}"
    );
    // ImagesPresent False shows up once the pull has failed.
    let o = expect(
        &lab,
        &[
            "wait",
            &stuck,
            "--for=condition=ImagesPresent=False",
            "--timeout=60s",
        ],
        0,
    );
    assert!(stdout(&o).contains("condition met"));

    // get: the table, wide, JSON and YAML with the API's names.
    let table = stdout(&expect(&lab, &["get", "status"], 0));
    let row = table.lines().find(|l| l.starts_with(&good)).unwrap();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cols[..5],
        &[
            good.as_str(),
            "distribution",
            "Ready",
            "True",
            &format!("https://localhost:{p1}")
        ],
        "{table}"
    );
    let row = table.lines().find(|l| l.starts_with(&stuck)).unwrap();
    assert!(
        row.contains("Progressing") && row.contains("False"),
        "{table}"
    );
    let wide = stdout(&expect(&lab, &["get", "-o", "wide"], 0));
    assert!(
        wide.lines().next().unwrap().contains("COMPONENTS"),
        "{wide}"
    );
    let row = wide.lines().find(|l| l.starts_with(&good)).unwrap();
    assert!(
        row.contains(" 1/1 ") && row.contains("registry is serving"),
        "{wide}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&stdout(&expect(&lab, &["get", &good, "-o", "json"], 0))).unwrap();
    assert_eq!(j["apiVersion"], "mirrorregistry.io/v1alpha1");
    assert_eq!(j["kind"], "MirrorRegistry");
    assert_eq!(j["metadata"]["name"], good.as_str());
    assert_eq!(j["spec"]["engine"], "distribution");
    assert_eq!(j["status"]["phase"], "Ready");
    assert_eq!(
        j["status"]["endpoint"],
        format!("https://localhost:{p1}").as_str()
    );
    assert!(j["status"]["observedSpecHash"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    let ready = j["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "True");
    assert!(ready["lastTransitionTime"].is_string());
    assert_eq!(j["status"]["components"][0]["activeState"], "active");
    let y: serde_yaml::Value =
        serde_yaml::from_str(&stdout(&expect(&lab, &["get", "-o", "yaml"], 0))).unwrap();
    assert_eq!(y["kind"], "List");
    assert_eq!(y["items"].as_sequence().unwrap().len(), 2);
    let names = stdout(&expect(&lab, &["get", "mr", "-o", "name"], 0));
    assert!(
        names.contains(&format!("mirrorregistry/{good}\n")),
        "{names}"
    );

    // describe: spec summary, conditions, live components, events.
    let d = stdout(&expect(&lab, &["describe", &good], 0));
    for want in [
        format!("Name:                 {good}"),
        "Phase:                Ready".to_string(),
        format!("Port:               {p1}"),
        format!("Storage:            volume {good}-storage"),
        "Conditions:".to_string(),
        "Healthy            True".to_string(),
        "Components:".to_string(),
        format!("{good}-registry.service"),
        "active (running, enabled)".to_string(),
        "Events:".to_string(),
        "-> Ready: registry is serving".to_string(),
        "(current)".to_string(),
    ] {
        assert!(d.contains(&want), "describe lacks {want:?}:\n{d}");
    }
    let row = d
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{good}-registry ")))
        .unwrap();
    assert!(row.contains(" running "), "{row}");
    let d = stdout(&expect(&lab, &["describe", &stuck], 0));
    assert!(d.contains("ImagesPresent      False"), "{d}");
    assert!(
        d.lines()
            .any(|l| l.contains("Warning") && l.contains("ImagesPresent is False")),
        "{d}"
    );

    // credentials: from the 0600 file, never from status.
    let root = lab.root(&good);
    let (user, password) = credentials(&root);
    let c = stdout(&expect(&lab, &["credentials", &good], 0));
    assert!(c.contains(&format!("username: {user}\n")), "{c}");
    assert!(c.contains(&format!("password: {password}\n")), "{c}");
    assert!(
        c.contains(&format!("endpoint: https://localhost:{p1}\n")),
        "{c}"
    );
    assert!(
        c.contains(&root.join("tls/ca.crt").display().to_string()),
        "{c}"
    );
    let cj: serde_json::Value = serde_json::from_str(&stdout(&expect(
        &lab,
        &["credentials", &good, "-o", "json"],
        0,
    )))
    .unwrap();
    assert_eq!(cj["password"], password.as_str());
    assert!(!stdout(&expect(&lab, &["get", &good, "-o", "yaml"], 0)).contains(&password));

    // logs: the registry container's output; --tail; -f follows.
    let logs = stdout(&expect(&lab, &["logs", &good], 0));
    assert!(logs.contains("listening on"), "{logs}");
    let tail = stdout(&expect(
        &lab,
        &["logs", &good, "registry", "--tail", "1"],
        0,
    ));
    assert_eq!(tail.lines().count(), 1, "{tail}");
    let o = expect(&lab, &["logs", &good, "nosuch"], 2);
    assert!(
        stderr(&o).contains(&format!("{good}-registry")),
        "{}",
        show(&o)
    );
    let mut follow: Child = Command::new(env!("CARGO_BIN_EXE_mrctl"))
        .args(global(&lab))
        .args(["logs", &good, "-f", "--tail", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    assert!(lines.next().is_some_and(|l| l.is_ok()), "logs -f printed");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        follow.try_wait().unwrap().is_none(),
        "logs -f keeps following"
    );
    let _ = follow.kill();
    let _ = follow.wait();

    // delete --wait: torn down by the controller, gone from mrctl.
    let o = expect(&lab, &["delete", &good, "--wait", "--timeout=60s"], 0);
    assert_eq!(
        stdout(&o),
        format!("mirrorregistry/{good}: deletionPolicy Retain: its units, containers, pod and network will go; its data will be kept\nmirrorregistry/{good} deleted\n")
    );
    // Gone from the state directory; only a note of which kept
    // directories the controller made stays (retained.json).
    assert!(!lab.state().join(&good).join("owned.json").exists());
    assert!(!lab.state().join(&good).join("status.yaml").exists());
    assert!(!exists("container", &format!("{good}-registry")));
    expect(&lab, &["get", &good], 1);
    expect(&lab, &["delete", &stuck, "--wait", "--timeout=60s"], 0);
    assert!(stderr(&expect(&lab, &["get"], 0)).contains("No resources found"));
}

/// Removes a controller unit a test installed, even when the test fails.
struct ControllerUnit(String);

impl Drop for ControllerUnit {
    fn drop(&mut self) {
        let u = format!("{}.service", self.0);
        let _ = sh("systemctl", &["--user", "stop", &u]);
        let _ = sh("systemctl", &["--user", "disable", &u]);
        let _ = std::fs::remove_file(unit_dir().join(&u));
        let _ = sh("systemctl", &["--user", "daemon-reload"]);
        let _ = sh("systemctl", &["--user", "reset-failed", &u]);
    }
}

/// The original's UX: install (controller under systemd, Type=notify with a
/// watchdog) → Ready → push with the printed login → install again is
/// idempotent, a different one refused → upgrade keeps data and
/// credentials → uninstall removes units and keeps data → a new install
/// serves the kept data → uninstall --autoApprove deletes it.
#[test]
fn install_upgrade_uninstall() {
    let mut lab = Lab::new();
    let name = unique("mrctl-inst");
    let port = free_port();
    lab.track(&name, port);
    let ctl = unique("mrctl-ctl");
    let _guard = ControllerUnit(ctl.clone());
    let ctl_unit = format!("{ctl}.service");
    let root = lab.root(&name);
    let log = lab.dir.path().join("controller.log");
    let password = format!("pw-{}", unique("x"));
    let host_port = format!("localhost:{port}");
    let install_args = |p: u16| -> Vec<String> {
        [
            "install",
            "--engine",
            "distribution",
            "--name",
            &name,
            "--quayHostname",
            &format!("localhost:{p}"),
            "--quayRoot",
            root.to_str().unwrap(),
            "--initPassword",
            "-",
            "--controller-unit",
            &ctl,
            "--controller-log",
            log.to_str().unwrap(),
            "--controller-watchdog",
            "2s",
            "--timeout",
            "90s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run_install = |p: u16, pw: &str| {
        let a = install_args(p);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        mrctl_in(&lab, &a, Some(&format!("{pw}\n")))
    };
    let diag = |o: &Output| {
        format!(
            "{}\n--- controller log\n{}",
            show(o),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };

    // 1. install → Ready, with what a user needs printed.
    let t0 = Instant::now();
    let o = run_install(port, &password);
    assert_eq!(o.status.code(), Some(0), "{}", diag(&o));
    eprintln!(
        "FIGURE mrctl install -> Ready: {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    let out = stdout(&o);
    assert!(
        out.contains(&format!("mirrorregistry/{name} created")),
        "{out}"
    );
    assert!(
        out.contains(&format!("mirrorregistry/{name} is Ready.")),
        "{out}"
    );
    assert!(
        out.contains(&format!("Endpoint:     https://{host_port}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("podman login -u init {host_port}\n")),
        "{out}"
    );
    assert!(!out.contains("tls-verify"), "{out}");
    assert!(
        !out.contains(&password) && !stderr(&o).contains(&password),
        "the password is not echoed"
    );
    let spec = std::fs::read_to_string(lab.spec_path(&name)).unwrap();
    assert!(!spec.contains(&password));
    let pw_file = root.join("secrets/init-password");
    assert!(
        spec.contains(&format!("passwordFile: {}", pw_file.display())),
        "{spec}"
    );
    assert_eq!(mode(&pw_file), 0o600);

    // The controller runs under its own unit: notify, watchdog, restart.
    assert_eq!(unit_active(&ctl_unit), "active");
    assert_eq!(unit_prop(&ctl_unit, "Type"), "notify");
    assert_eq!(unit_prop(&ctl_unit, "NotifyAccess"), "main");
    assert_eq!(unit_prop(&ctl_unit, "WatchdogUSec"), "2s");
    assert_eq!(unit_prop(&ctl_unit, "Restart"), "always");
    assert_eq!(unit_prop(&ctl_unit, "UnitFileState"), "enabled");
    let unit_text = std::fs::read_to_string(unit_dir().join(&ctl_unit)).unwrap();
    assert!(unit_text.contains("ExecStart=/"), "{unit_text}");
    assert!(!unit_text.contains(&password));

    // 2. Push with the credentials install set, TLS verified.
    let auth = lab.dir.path().join("auth.json");
    login(&auth, &host_port, "init", &password);
    let dest = format!("docker://{host_port}/mrctl/busybox:1");
    skopeo(&auth, &["copy", TEST_IMAGE, &dest]);
    let pushed = digest(&auth, &dest);

    // 3. install again: idempotent; a different one is refused.
    let o = run_install(port, &password);
    assert_eq!(o.status.code(), Some(0), "{}", diag(&o));
    assert!(stdout(&o).contains("already installed"), "{}", show(&o));
    assert!(stdout(&o).contains("already running"), "{}", show(&o));
    let other_port = free_port();
    let o = run_install(other_port, &password);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let e = stderr(&o);
    assert!(
        e.contains("already installed") && e.contains(&format!("port: {port} -> {other_port}")),
        "{e}"
    );
    let o = run_install(port, "another-password");
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(stderr(&o).contains("another init password"), "{}", show(&o));
    assert_eq!(
        std::fs::read_to_string(&pw_file).unwrap(),
        format!("{password}\n"),
        "the password stayed"
    );

    // The controller unit is not pointed at other directories by an
    // install for another watch dir.
    let elsewhere = lab.dir.path().join("elsewhere");
    let o = Command::new(env!("CARGO_BIN_EXE_mrctl"))
        .args(["--watch-dir", elsewhere.to_str().unwrap()])
        .args([
            "--state-dir",
            lab.state().to_str().unwrap(),
            "--scope",
            "user",
        ])
        .args([
            "install",
            "--engine",
            "distribution",
            "--name",
            &unique("mrctl-x"),
        ])
        .args(["--quayHostname", &format!("localhost:{}", free_port())])
        .args(["--controller-unit", &ctl, "--timeout", "5s"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        stderr(&o).contains("already runs a controller for other directories"),
        "{}",
        show(&o)
    );
    assert!(
        !elsewhere.exists(),
        "nothing written for the refused install"
    );

    // The watchdog is pinged: several periods later, never restarted.
    let settle = Duration::from_secs(5).saturating_sub(t0.elapsed());
    std::thread::sleep(settle);
    assert_eq!(unit_active(&ctl_unit), "active");
    assert_eq!(unit_prop(&ctl_unit, "NRestarts"), "0", "{}", diag(&o));

    // 4. upgrade: new image, same data, config and credentials.
    let creds_before = std::fs::read(root.join("secrets/init-credentials")).unwrap();
    let u: Vec<String> = [
        "upgrade",
        "--name",
        &name,
        "--registryImage",
        OTHER_REGISTRY_IMAGE,
        "--controller-unit",
        &ctl,
        "--controller-log",
        log.to_str().unwrap(),
        "--controller-watchdog",
        "2s",
        "--timeout",
        "90s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let u: Vec<&str> = u.iter().map(String::as_str).collect();
    let o = mrctl(&lab, &u);
    assert_eq!(o.status.code(), Some(0), "{}", diag(&o));
    assert!(stdout(&o).contains("upgraded"), "{}", show(&o));
    let j: serde_json::Value =
        serde_json::from_str(&stdout(&expect(&lab, &["get", &name, "-o", "json"], 0))).unwrap();
    assert_eq!(j["status"]["components"][0]["image"], OTHER_REGISTRY_IMAGE);
    let image = sh_ok(
        "podman",
        &[
            "inspect",
            "--format",
            "{{.ImageName}}",
            &format!("{name}-registry"),
        ],
    );
    assert_eq!(image.trim(), OTHER_REGISTRY_IMAGE);
    assert_eq!(digest(&auth, &dest), pushed, "data kept by the upgrade");
    assert_eq!(
        std::fs::read(root.join("secrets/init-credentials")).unwrap(),
        creds_before,
        "credentials kept"
    );
    let o = mrctl(&lab, &u);
    assert_eq!(o.status.code(), Some(0), "{}", diag(&o));
    assert!(stdout(&o).contains("up to date"), "{}", show(&o));

    // 5. uninstall without --autoApprove (no terminal): units gone, data kept.
    let un = |extra: &[&str]| {
        let mut a = vec!["uninstall", "--name", &name, "--controller-unit", &ctl];
        a.extend_from_slice(extra);
        let o = mrctl(&lab, &a);
        assert_eq!(o.status.code(), Some(0), "{}", diag(&o));
        o
    };
    let o = un(&[]);
    assert!(stdout(&o).contains("data kept"), "{}", show(&o));
    for u in [
        format!("{name}-pod.service"),
        format!("{name}-registry.service"),
        ctl_unit.clone(),
    ] {
        assert!(!unit_dir().join(&u).exists(), "{u} removed");
        assert_ne!(unit_active(&u), "active", "{u}");
    }
    assert!(!exists("pod", &format!("{name}-pod")));
    assert!(!lab.spec_path(&name).exists());
    assert!(exists("volume", &format!("{name}-storage")), "volume kept");
    assert!(root.join("secrets/init-credentials").exists(), "root kept");

    // 6. A new install serves the kept data again.
    let o = run_install(port, &password);
    assert_eq!(o.status.code(), Some(0), "{}", diag(&o));
    login(&auth, &host_port, "init", &password);
    assert_eq!(
        digest(&auth, &dest),
        pushed,
        "the kept image is served again"
    );

    // 7. uninstall --autoApprove: data deleted too.
    let o = un(&["--autoApprove"]);
    assert!(stdout(&o).contains("data deleted"), "{}", show(&o));
    assert!(
        !exists("volume", &format!("{name}-storage")),
        "volume deleted"
    );
    assert!(!root.exists(), "root deleted");
    assert!(!unit_dir().join(&ctl_unit).exists());
    assert!(!lab.state().join(&name).exists());
    assert!(!Path::new(&format!("/etc/containers/certs.d/{host_port}")).exists());
    // Nothing left to do: still success.
    let o = un(&[]);
    assert!(stdout(&o).contains("not installed"), "{}", show(&o));
}
