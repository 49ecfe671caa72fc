//! Shared harness for tests against the real host: podman through its API
//! socket, the systemd user manager over D-Bus, the controller binary as a
//! process. Each test gets unique names, ports and directories, and a guard
//! that removes whatever it created, even when the test fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mirror_registry::api::{Phase, Status};

/// Fills in the host environment hack/setup-host.sh describes when the test
/// runner did not source hack/env.sh.
pub fn host_env() {
    let uid = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(0);
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", format!("/run/user/{uid}"));
    }
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        std::env::set_var(
            "DBUS_SESSION_BUS_ADDRESS",
            format!("unix:path=/run/user/{uid}/bus"),
        );
    }
    let sock = Path::new(&std::env::var_os("XDG_RUNTIME_DIR").unwrap()).join("podman/podman.sock");
    assert!(
        sock.exists(),
        "{} is missing: run hack/setup-host.sh (or hack/test.sh) first",
        sock.display()
    );
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A DNS-1123 name unique to this process and call.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// A TCP port free right now, never handed out before in this process, and
/// with no trust directory (`/etc/containers/certs.d/HOST:PORT`) left on the
/// host. A registry another test installed but has not started yet does not
/// listen, so binding alone would hand its port out twice.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if given.contains(&port) || trust_dir_exists(port) {
            continue;
        }
        given.push(port);
        return port;
    }
}

fn trust_dir_exists(port: u16) -> bool {
    let suffix = format!(":{port}");
    std::fs::read_dir("/etc/containers/certs.d")
        .map(|dir| {
            dir.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(&suffix))
        })
        .unwrap_or(false)
}

/// Polls `f` until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn sh(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd).args(args).output().unwrap()
}

pub fn sh_ok(cmd: &str, args: &[&str]) -> String {
    let o = sh(cmd, args);
    assert!(
        o.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A test's private directories and a running controller.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub names: Vec<String>,
    pub ports: Vec<u16>,
    controller: Option<Child>,
}

impl Lab {
    pub fn new() -> Lab {
        host_env();
        let dir = tempfile::Builder::new()
            .prefix("mr-test-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("watch")).unwrap();
        Lab {
            dir,
            names: vec![],
            ports: vec![],
            controller: None,
        }
    }

    pub fn watch(&self) -> PathBuf {
        self.dir.path().join("watch")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn root(&self, name: &str) -> PathBuf {
        self.dir.path().join("roots").join(name)
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("controller.log")
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// Registers a name and port for cleanup.
    pub fn track(&mut self, name: &str, port: u16) {
        self.names.push(name.to_string());
        self.ports.push(port);
    }

    pub fn controller_args(&self, extra: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--watch-dir".into(),
            self.watch().display().to_string(),
            "--state-dir".into(),
            self.state().display().to_string(),
            "--scope".into(),
            "user".into(),
        ];
        if !extra.contains(&"--resync-interval") {
            a.extend(["--resync-interval".into(), "30s".into()]);
        }
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }

    /// Starts the controller daemon, logging to `log()`.
    pub fn start(&mut self, extra: &[&str]) {
        self.start_env(extra, &[]);
    }

    /// Starts the controller daemon with more environment variables.
    pub fn start_env(&mut self, extra: &[&str], env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mirror-registry-controller"))
            .args(self.controller_args(extra))
            .envs(env.iter().copied())
            .env("RUST_LOG", "info,mirror_registry=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.controller = Some(child);
        std::thread::sleep(Duration::from_millis(300));
        if let Some(Ok(Some(code))) = self.controller.as_mut().map(|c| c.try_wait()) {
            panic!("the controller exited at once ({code}):\n{}", self.logs());
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.controller.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The running controller's process id.
    pub fn pid(&self) -> Option<u32> {
        self.controller.as_ref().map(|c| c.id())
    }

    /// SIGKILL: the controller gets no chance to clean up, as in a crash or
    /// an OOM kill.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.controller.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs `--once` and returns its exit code.
    pub fn once(&self, extra: &[&str]) -> i32 {
        let mut args = self.controller_args(extra);
        args.push("--once".into());
        let out = Command::new(env!("CARGO_BIN_EXE_mirror-registry-controller"))
            .args(args)
            .output()
            .unwrap();
        std::fs::write(self.dir.path().join("once.log"), &out.stderr).unwrap();
        out.status.code().unwrap_or(-1)
    }

    /// A spec for the distribution engine on `port`, with this lab's root.
    pub fn spec(&self, name: &str, port: u16, extra_spec: &str) -> String {
        format!(
            "# written by a test\napiVersion: mirrorregistry.io/v1alpha1\nkind: MirrorRegistry\nmetadata:\n  name: {name}\nspec:\n  engine: distribution\n  hostname: localhost\n  port: {port}\n  root: {root}\n{extra_spec}",
            root = self.root(name).display()
        )
    }

    pub fn spec_path(&self, name: &str) -> PathBuf {
        self.watch().join(format!("{name}.yaml"))
    }

    /// Writes a spec file atomically (as an editor or `mrctl apply` would).
    pub fn put(&self, name: &str, text: &str) {
        let tmp = self.watch().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.spec_path(name)).unwrap();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop();
        // A failed test shows what the controller did.
        if std::thread::panicking() {
            let logs = self.logs();
            let lines: Vec<&str> = logs.lines().collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            eprintln!(
                "--- controller log (last {} lines)\n{}",
                tail.len(),
                tail.join("\n")
            );
        }
        for name in self.names.clone() {
            cleanup(name.as_str());
        }
        // Trust entries of the test's ports, whatever host name they carry.
        let entries = std::fs::read_dir("/etc/containers/certs.d")
            .into_iter()
            .flatten();
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if self.ports.iter().any(|p| n.ends_with(&format!(":{p}"))) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Removes everything a registry called `name` may have left on the host,
/// for either engine.
pub fn cleanup(name: &str) {
    let units = [
        format!("{name}-registry.service"),
        format!("{name}-app.service"),
        format!("{name}-redis.service"),
        format!("{name}-pod.service"),
    ];
    for u in &units {
        let _ = sh("systemctl", &["--user", "stop", u]);
        let _ = sh("systemctl", &["--user", "disable", u]);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    for u in &units {
        let _ = std::fs::remove_file(format!("{home}/.config/systemd/user/{u}"));
    }
    let _ = sh("systemctl", &["--user", "daemon-reload"]);
    for u in &units {
        let _ = sh("systemctl", &["--user", "reset-failed", u]);
    }
    for component in ["registry", "app", "redis"] {
        let _ = sh(
            "podman",
            &["rm", "-f", "--ignore", &format!("{name}-{component}")],
        );
    }
    let _ = sh(
        "podman",
        &["pod", "rm", "-f", "--ignore", &format!("{name}-pod")],
    );
    for volume in ["storage", "sqlite-storage"] {
        let _ = sh(
            "podman",
            &["volume", "rm", "-f", &format!("{name}-{volume}")],
        );
    }
    let _ = sh("podman", &["network", "rm", &format!("{name}-network")]);
}

/// The status block of a spec file, if it parses.
pub fn file_status(path: &Path) -> Option<Status> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_yaml::Value = serde_yaml::from_str(&text).ok()?;
    serde_yaml::from_value(v.get("status")?.clone()).ok()
}

pub fn wait_phase(path: &Path, phase: Phase, timeout: Duration) -> Status {
    wait_for(
        timeout,
        &format!("{} to reach {phase:?}", path.display()),
        || file_status(path).filter(|s| s.phase == phase),
    )
}

pub fn condition<'a>(s: &'a Status, t: &str) -> Option<&'a mirror_registry::api::Condition> {
    s.conditions.iter().find(|c| c.type_ == t)
}

/// The generated credentials of a registry root.
pub fn credentials(root: &Path) -> (String, String) {
    let c = mirror_registry::host::credentials::read_credentials(
        &root.join("secrets/init-credentials"),
    )
    .unwrap();
    (c.username, c.password)
}

pub fn unit_active(unit: &str) -> String {
    String::from_utf8_lossy(&sh("systemctl", &["--user", "is-active", unit]).stdout)
        .trim()
        .to_string()
}

pub fn exists(kind: &str, name: &str) -> bool {
    match kind {
        "pod" => sh("podman", &["pod", "exists", name]).status.success(),
        "container" => sh("podman", &["container", "exists", name])
            .status
            .success(),
        "volume" => sh("podman", &["volume", "exists", name]).status.success(),
        "network" => sh("podman", &["network", "exists", name]).status.success(),
        _ => unreachable!(),
    }
}

/// `podman login` with the password on stdin (never on a command line),
/// into a private auth file; TLS is verified through the CA the controller
/// put into certs.d (no --tls-verify=false).
pub fn login(authfile: &Path, host_port: &str, user: &str, password: &str) {
    use std::io::Write;
    let mut child = Command::new("podman")
        .args(["login", "--authfile"])
        .arg(authfile)
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
        .write_all(password.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "podman login {host_port}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// skopeo with a private auth file: `skopeo(auth, &["copy", SRC, DST])`.
pub fn skopeo(authfile: &Path, args: &[&str]) -> String {
    let auth = authfile.display().to_string();
    let mut full = vec!["--command-timeout", "60s", args[0], "--authfile", &auth];
    full.extend_from_slice(&args[1..]);
    sh_ok("skopeo", &full)
}

/// Whether the registry on `port` answers /v2/ (401 without credentials);
/// -k: the trust chain is checked by the end-to-end tests.
pub fn serving(port: u16) -> bool {
    let out = sh(
        "curl",
        &[
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "3",
            &format!("https://127.0.0.1:{port}/v2/"),
        ],
    );
    String::from_utf8_lossy(&out.stdout) == "401"
}

/// When a container last started: unchanged means it was not restarted.
pub fn started_at(container: &str) -> String {
    sh_ok(
        "podman",
        &["inspect", "--format", "{{.State.StartedAt}}", container],
    )
    .trim()
    .to_string()
}

/// Every condition a Ready registry reports is True.
pub fn assert_all_conditions_true(st: &Status) {
    for c in mirror_registry::api::ConditionType::ALL
        .iter()
        .map(|t| t.as_str())
    {
        assert_eq!(
            condition(st, c).map(|c| c.status.as_str()),
            Some("True"),
            "{c}: {:?}",
            condition(st, c)
        );
    }
}
