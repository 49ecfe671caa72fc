//! The controller's metrics and status page, checked by real consumers: a
//! Prometheus (Debian's package) scraping the controller on loopback,
//! queried through its HTTP API, and headless Chromium (Debian's package,
//! driven by playwright-core from hack/browser) reading the status page.
//! hack/setup-host.sh installs both.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use mirror_registry::api::Phase;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const UP: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A Prometheus of the test's own: loopback only, its data in `dir`.
struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Prometheus {
    fn start(dir: &Path, config: &str) -> Prometheus {
        assert!(
            Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is missing: run hack/setup-host.sh (it installs Debian's prometheus)"
        );
        std::fs::create_dir_all(dir).unwrap();
        let cfg = dir.join("prometheus.yml");
        std::fs::write(&cfg, config).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let p = Prometheus {
            child,
            port,
            dir: dir.to_path_buf(),
        };
        wait_for(Duration::from_secs(60), "Prometheus to be ready", || {
            let out = sh(
                "curl",
                &[
                    "-sf",
                    "--max-time",
                    "2",
                    &format!("http://127.0.0.1:{port}/-/ready"),
                ],
            );
            out.status.success().then_some(())
        });
        p
    }

    /// An instant query's result vector.
    fn query(&self, q: &str) -> Vec<serde_json::Value> {
        let out = sh_ok(
            "curl",
            &[
                "-sfG",
                "--max-time",
                "5",
                &format!("http://127.0.0.1:{}/api/v1/query", self.port),
                "--data-urlencode",
                &format!("query={q}"),
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["status"], "success", "{q}: {out}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The one value `q` returns, if it returns one.
    fn value(&self, q: &str) -> Option<f64> {
        let r = self.query(q);
        let [one] = r.as_slice() else {
            return None;
        };
        one["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `q` has a value `ok` accepts; returns it.
    fn wait(&self, q: &str, timeout: Duration, ok: impl Fn(f64) -> bool) -> f64 {
        let start = Instant::now();
        let mut last = None;
        loop {
            last = self.value(q).or(last);
            if let Some(v) = last.filter(|v| ok(*v)) {
                return v;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for Prometheus: {q} (last value {last:?}); targets: {}\nPrometheus log:\n{}",
                self.targets(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Each scrape target's health and last error.
    fn targets(&self) -> String {
        let out = sh(
            "curl",
            &[
                "-s",
                "--max-time",
                "5",
                &format!("http://127.0.0.1:{}/api/v1/targets", self.port),
            ],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where screenshots go: outside the repository and the test's temporary
/// directory, so they can be looked at afterwards.
fn screenshot_dir() -> PathBuf {
    let d = std::env::var_os("MIRROR_REGISTRY_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!(
                "mirror-registry-screenshots-{}",
                std::process::id()
            ))
        });
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs hack/browser/check-page.mjs: headless Chromium through `steps`.
fn browse(out: &Path, steps: &[String]) -> serde_json::Value {
    let dir = repo().join("hack/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "{} has no playwright-core: run hack/setup-host.sh",
        dir.display()
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: run hack/setup-host.sh"
    );
    let o = Command::new("node")
        .arg(dir.join("check-page.mjs"))
        .arg(out)
        .args(steps)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "the browser run failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Everything a browser saw and sent, as one string to search.
fn everything(b: &serde_json::Value) -> String {
    b.to_string()
}

fn page_text(b: &serde_json::Value, i: usize) -> String {
    b["pages"][i]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn prometheus_scrapes_and_a_browser_reads_the_status_page() {
    let mut lab = Lab::new();
    let good = unique("obs");
    let bad = unique("obsbad");
    let (good_port, bad_port) = (free_port(), free_port());
    lab.track(&good, good_port);
    lab.track(&bad, bad_port);
    let metrics_port = free_port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    lab.start(&["--resync-interval", "1h", "--metrics-address", &metrics]);
    lab.put(&good, &lab.spec(&good, good_port, ""));
    lab.put(&bad, &lab.spec(&bad, bad_port, "  paused: true\n"));
    wait_phase(&lab.spec_path(&good), Phase::Ready, UP);
    wait_phase(&lab.spec_path(&bad), Phase::Paused, UP);

    // An image pushed, so the registry has a repository, a tag and request
    // metrics of its own.
    let (user, password) = credentials(&lab.root(&good));
    let auth = lab.dir.path().join("auth.json");
    let host_port = format!("localhost:{good_port}");
    login(&auth, &host_port, &user, &password);
    let image = format!("docker://{host_port}/mirror/testimage:v1");
    skopeo(
        &auth,
        &[
            "copy",
            "containers-storage:localhost/mirror-registry/testimage:latest",
            &image,
        ],
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&skopeo(&auth, &["inspect", &image])).unwrap();
    let digest = inspect["Digest"].as_str().unwrap().to_string();
    // What the image takes in the registry: its config and layers.
    let manifest: serde_json::Value =
        serde_json::from_str(&skopeo(&auth, &["inspect", "--raw", &image])).unwrap();
    let size = manifest["config"]["size"].as_u64().unwrap()
        + manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["size"].as_u64().unwrap())
            .sum::<u64>();

    let prom = Prometheus::start(
        &lab.dir.path().join("prometheus"),
        &format!(
            "global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: mirror-registry-controller
    static_configs:
      - targets: ['{metrics}']
  - job_name: mirror-registry
    http_sd_configs:
      - url: http://{metrics}/sd
        refresh_interval: 2s
"
        ),
    );
    let t = Instant::now();
    let g = format!("name=\"{good}\"");
    prom.wait(
        "up{job=\"mirror-registry-controller\"}",
        Duration::from_secs(60),
        |v| v == 1.0,
    );
    eprintln!(
        "FIGURE first successful scrape of the controller after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // controller-runtime's names, with values.
    let successes = prom.wait(
        "sum(controller_runtime_reconcile_total{controller=\"mirrorregistry\",result=\"success\"})",
        Duration::from_secs(30),
        |v| v >= 2.0,
    );
    let reconciles = prom.wait(
        "sum(controller_runtime_reconcile_time_seconds_count{controller=\"mirrorregistry\"})",
        Duration::from_secs(30),
        |v| v >= successes,
    );
    let p50 = prom.wait(
        "histogram_quantile(0.5, sum by (le) (controller_runtime_reconcile_time_seconds_bucket))",
        Duration::from_secs(30),
        |v| v > 0.0,
    );
    let adds = prom.wait(
        "workqueue_adds_total{name=\"mirrorregistry\"}",
        Duration::from_secs(30),
        |v| v >= 2.0,
    );
    let depth = prom.wait(
        "workqueue_depth{name=\"mirrorregistry\"}",
        Duration::from_secs(30),
        |v| v >= 0.0,
    );
    let retries = prom.wait(
        "workqueue_retries_total{name=\"mirrorregistry\"}",
        Duration::from_secs(30),
        |v| v >= 0.0,
    );
    let errors = prom.wait(
        "controller_runtime_reconcile_errors_total{controller=\"mirrorregistry\"}",
        Duration::from_secs(30),
        |v| v >= 0.0,
    );
    eprintln!("FIGURE reconcile_total{{success}} {successes}, reconcile_time count {reconciles}, p50 {p50:.3} s, errors {errors}, workqueue adds {adds}, depth {depth}, retries {retries}");

    // Per registry.
    assert_eq!(
        prom.wait(
            &format!("mirror_registry_ready{{{g}}}"),
            Duration::from_secs(30),
            |_| true
        ),
        1.0
    );
    let cert = mirror_registry::host::tls::inspect(
        &std::fs::read_to_string(lab.root(&good).join("tls/tls.crt")).unwrap(),
    )
    .unwrap();
    let expiry = prom.wait(
        &format!("mirror_registry_certificate_expiry_timestamp_seconds{{{g}}}"),
        Duration::from_secs(30),
        |_| true,
    );
    assert_eq!(expiry as i64, cert.not_after.unix_timestamp());
    let free = prom.wait(
        &format!("mirror_registry_storage_free_bytes{{{g}}}"),
        Duration::from_secs(30),
        |v| v > 0.0,
    );
    eprintln!(
        "FIGURE {good}: ready 1, certificate expiry {expiry} ({}), storage free {free} bytes",
        cert.not_after
    );

    // The registry's own request metrics, through its debug server,
    // discovered at /sd and scraped through the controller.
    prom.wait(
        &format!("up{{job=\"mirror-registry\",registry=\"{good}\"}}"),
        Duration::from_secs(60),
        |v| v == 1.0,
    );
    let requests = prom.wait(
        &format!(
            "sum(registry_http_requests_total{{job=\"mirror-registry\",registry=\"{good}\"}})"
        ),
        Duration::from_secs(30),
        |v| v > 0.0,
    );
    let manifests = prom.wait(
        &format!(
            "sum(registry_http_requests_total{{job=\"mirror-registry\",registry=\"{good}\",handler=\"manifest\"}})"
        ),
        Duration::from_secs(30),
        |v| v > 0.0,
    );
    eprintln!("FIGURE {good}'s own registry_http_requests_total {requests} (manifest handler {manifests})");
    // Without credentials the listener answers only requests naming this
    // host's loopback: a page elsewhere cannot read it by DNS rebinding.
    let rebound = sh(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Host: rebind.example:80",
            &format!("http://{metrics}/"),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&rebound.stdout), "421");
    // The debug port is published on loopback only.
    let pod_ports = sh_ok("podman", &["port", &format!("{good}-registry")]);
    assert!(
        pod_ports
            .lines()
            .filter(|l| l.starts_with("5001/"))
            .all(|l| l.contains("127.0.0.1:")),
        "{pod_ports}"
    );

    // Drift: the container removed by hand. The counter moves once the
    // registry is Ready again.
    let drift = format!("mirror_registry_drift_repairs_total{{{g}}}");
    let before = prom.wait(&drift, Duration::from_secs(30), |_| true);
    sh_ok("podman", &["rm", "-f", &format!("{good}-registry")]);
    let t = Instant::now();
    let after = prom.wait(&drift, Duration::from_secs(90), |v| v > before);
    assert_eq!(after, before + 1.0, "one episode, one repair");
    eprintln!(
        "FIGURE drift repairs {before} -> {after}, seen by Prometheus {:.1} s after podman rm -f",
        t.elapsed().as_secs_f64()
    );
    assert!(serving(good_port));

    // A registry made invalid: Failed, its failing condition on the page,
    // not Ready in Prometheus.
    lab.put(
        &bad,
        &lab.spec(&bad, bad_port, "  paused: true\n")
            .replace(&format!("port: {bad_port}"), "port: 70000"),
    );
    wait_phase(&lab.spec_path(&bad), Phase::Failed, UP);
    prom.wait(
        &format!("mirror_registry_ready{{name=\"{bad}\"}}"),
        Duration::from_secs(30),
        |v| v == 0.0,
    );

    // The status page in a real browser: the overview, the registry's
    // repositories, the repository's tags.
    let shots = screenshot_dir();
    let b = browse(
        &shots,
        &[
            format!("goto:http://{metrics}/"),
            format!("click:Repositories and tags of {good}"),
            "click:mirror/testimage".to_string(),
        ],
    );
    for (i, p) in b["pages"].as_array().unwrap().iter().enumerate() {
        assert_eq!(p["status"], 200, "page {i}: {p}");
        eprintln!("FIGURE screenshot {}", p["screenshot"].as_str().unwrap());
    }
    let overview = page_text(&b, 0);
    for want in [
        good.as_str(),
        bad.as_str(),
        "Ready",
        "Failed",
        "SpecValid",
        "InvalidSpec",
        "spec.port: must be 1-65535, got 70000",
        "CertificateValid",
        "Recent events",
        &format!("https://localhost:{good_port}"),
        "expires",
        "free of",
        &format!("volume {good}-storage"),
    ] {
        assert!(
            overview.contains(want),
            "overview lacks {want:?}:\n{overview}"
        );
    }
    let repos = page_text(&b, 1);
    assert!(repos.contains("mirror/testimage"), "{repos}");
    assert!(repos.contains("v1"), "{repos}");
    let tags = page_text(&b, 2);
    assert!(tags.contains("v1"), "{tags}");
    assert!(tags.contains(&digest), "digest {digest} not on\n{tags}");
    assert!(tags.contains("MiB") || tags.contains("KiB"), "{tags}");
    let tag_page = b["responses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["url"]
                .as_str()
                .unwrap()
                .ends_with("/repositories/mirror/testimage")
        })
        .unwrap();
    assert!(
        tag_page["body"]
            .as_str()
            .unwrap()
            .contains(&format!("title=\"{size} bytes\"")),
        "size {size} not on the tag page"
    );
    eprintln!("FIGURE tag v1: {digest}, {size} bytes");

    // Nothing went anywhere but the controller, and nothing secret came
    // back or went out: no password, no private key.
    let origin = format!("http://{metrics}/");
    for r in b["requests"].as_array().unwrap() {
        let url = r["url"].as_str().unwrap();
        assert!(url.starts_with(&origin), "the page asked {url}");
    }
    let all = everything(&b);
    assert!(
        !all.contains(&password),
        "the password is on the page or in its requests"
    );
    assert!(!all.contains("PRIVATE KEY"));
    for f in ["tls/tls.key", "tls/ca.key"] {
        if let Ok(key) = std::fs::read_to_string(lab.root(&good).join(f)) {
            let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
            for line in key
                .lines()
                .filter(|l| l.len() > 20 && !l.starts_with("-----"))
            {
                assert!(!all.contains(line), "a line of {f} is on the page");
            }
            assert!(!body.is_empty());
        }
    }
    // No external asset: inline CSS only, a policy that forbids the rest.
    let first = &b["responses"].as_array().unwrap()[0];
    let csp = first["headers"]["content-security-policy"]
        .as_str()
        .unwrap_or_default();
    assert!(csp.contains("default-src 'none'"), "{first}");
    let html = first["body"].as_str().unwrap();
    for external in [
        "<script",
        "<link rel=\"stylesheet\"",
        "src=\"http",
        "@import",
    ] {
        assert!(!html.contains(external), "{external} in the page");
    }
    drop(prom);
}

/// The listener refuses to serve beyond loopback without credentials, and
/// asks for them when given.
#[test]
fn beyond_loopback_needs_credentials() {
    let lab = Lab::new();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mirror-registry-controller"))
            .args(lab.controller_args(args))
            .output()
            .unwrap()
    };
    let port = free_port().to_string();
    let any = format!("0.0.0.0:{port}");
    let o = run(&["--metrics-address", &any]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is not a loopback address"), "{err}");
    assert!(err.contains("--metrics-auth-file"), "{err}");
    assert!(!lab.state().exists(), "nothing written before the refusal");

    // A credentials file others may read is refused too.
    let auth = lab.dir.path().join("metrics-auth");
    std::fs::write(&auth, "username: prometheus\npassword: pw-for-the-test\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o644)).unwrap();
    let auth_s = auth.display().to_string();
    let o = run(&["--metrics-address", &any, "--metrics-auth-file", &auth_s]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("chmod 600"));
    let o = run(&["--metrics-auth-file", &auth_s]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");

    // With a 0600 file every request needs the credentials (here on
    // loopback, so test traffic stays on this host).
    std::fs::set_permissions(&auth, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut lab = lab;
    let addr = format!("127.0.0.1:{port}");
    lab.start(&["--metrics-address", &addr, "--metrics-auth-file", &auth_s]);
    let code = |extra: &[&str]| {
        let mut a = vec![
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ];
        a.extend_from_slice(extra);
        let url = format!("http://{addr}/metrics");
        a.push(&url);
        String::from_utf8_lossy(&sh("curl", &a).stdout).into_owned()
    };
    let ok = wait_for(Duration::from_secs(30), "the listener", || {
        let c = code(&["-u", "prometheus:pw-for-the-test"]);
        (c == "200").then_some(c)
    });
    assert_eq!(ok, "200");
    assert_eq!(code(&[]), "401");
    assert_eq!(code(&["-u", "prometheus:wrong"]), "401");
    // Read-only.
    assert_eq!(
        code(&["-u", "prometheus:pw-for-the-test", "-X", "POST"]),
        "405"
    );
}

/// Removes a controller unit a test installed, even when the test fails.
struct ControllerUnit(String);

impl Drop for ControllerUnit {
    fn drop(&mut self) {
        let u = format!("{}.service", self.0);
        let _ = sh("systemctl", &["--user", "stop", &u]);
        let _ = sh("systemctl", &["--user", "disable", &u]);
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        let _ = std::fs::remove_file(format!("{home}/.config/systemd/user/{u}"));
        let _ = sh("systemctl", &["--user", "daemon-reload"]);
        let _ = sh("systemctl", &["--user", "reset-failed", &u]);
    }
}

/// `mrctl install --metrics-address` writes the address into the
/// controller's unit and prints where to look; `upgrade` keeps it; an
/// address beyond loopback without credentials is refused before anything
/// is written.
#[test]
fn mrctl_install_sets_the_metrics_address() {
    let mut lab = Lab::new();
    let name = unique("obsinst");
    let port = free_port();
    lab.track(&name, port);
    let ctl = unique("obs-ctl");
    let _guard = ControllerUnit(ctl.clone());
    let log = lab.dir.path().join("controller.log");
    let metrics = format!("127.0.0.1:{}", free_port());
    let mrctl = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mrctl"))
            .args([
                "--watch-dir",
                lab.watch().to_str().unwrap(),
                "--state-dir",
                lab.state().to_str().unwrap(),
                "--scope",
                "user",
            ])
            .args(args)
            .args([
                "--controller-unit",
                &ctl,
                "--controller-log",
                log.to_str().unwrap(),
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let show = |o: &std::process::Output| {
        format!(
            "exit {:?}\n{}{}\n--- controller log\n{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };
    let root = lab.root(&name);
    let host = format!("localhost:{port}");
    let install = |address: &str| {
        mrctl(&[
            "install",
            "--engine",
            "distribution",
            "--name",
            &name,
            "--quayHostname",
            &host,
            "--quayRoot",
            root.to_str().unwrap(),
            "--timeout",
            "120s",
            "--metrics-address",
            address,
        ])
    };
    let refused = install(&format!("0.0.0.0:{}", free_port()));
    assert_eq!(refused.status.code(), Some(2), "{}", show(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--metrics-auth-file"),
        "{}",
        show(&refused)
    );
    assert!(!lab.spec_path(&name).exists(), "nothing written");

    let o = install(&metrics);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!("status page: http://{metrics}/")),
        "{out}"
    );
    let home = std::env::var("HOME").unwrap();
    let unit_file = format!("{home}/.config/systemd/user/{ctl}.service");
    let text = std::fs::read_to_string(&unit_file).unwrap();
    assert!(
        text.contains(&format!(
            "Environment=\"MIRROR_REGISTRY_METRICS_ADDRESS={metrics}\"\n"
        )),
        "{text}"
    );
    let scrape = || {
        let o = sh(
            "curl",
            &[
                "-sf",
                "--max-time",
                "5",
                &format!("http://{metrics}/metrics"),
            ],
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let ready = format!("mirror_registry_ready{{name=\"{name}\"}} 1");
    wait_for(
        Duration::from_secs(30),
        "the installed controller's metrics",
        || scrape().contains(&ready).then_some(()),
    );

    // upgrade without the flag keeps the listener.
    let o = mrctl(&["upgrade", "--name", &name, "--timeout", "120s"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(std::fs::read_to_string(&unit_file).unwrap(), text);
    assert!(scrape().contains(&ready));

    let o = mrctl(&[
        "uninstall",
        "--name",
        &name,
        "--autoApprove",
        "--timeout",
        "120s",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
}
