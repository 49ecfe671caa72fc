//! `mrctl adopt` on the real host (user scope): a registry laid out exactly
//! as the original mirror-registry installs it (its three units, filled in
//! from its templates, its pod and container names, two volumes, its
//! quayRoot with quay-config/ and quay-rootCA/, the podman secret
//! redis_pass, the init user created through Quay's API), with the Quay
//! STAND-IN (hack/quay-standin) and the real Redis image in place of Red
//! Hat's images, is taken over by the controller.
//!
//! The stand-in serves no registry, so "the same image is still there" is
//! shown as its blob in Quay's storage layout surviving byte for byte in the
//! same volume, mounted again by the controller's Quay; the init password
//! as the stand-in's user database surviving unchanged (no second user
//! created) and `mrctl credentials` holding that password.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use mirror_registry::api::Phase;
use sha2::{Digest, Sha256};

const STANDIN: &str = "localhost/mirror-registry/quay-standin:latest";
/// The original's quayHostname. Not `localhost`: Quay named `localhost:PORT`
/// checks its own workers at that port inside its pod, where it listens on
/// 8443 only, and is never healthy (docs/quay.md); the stand-in does the same.
const HOST: &str = "quay.adopt.test";
const PAUSE: &str = "localhost/mirror-registry/pause:latest";
const UNITS: [&str; 3] = ["quay-pod.service", "quay-redis.service", "quay-app.service"];

fn redis_image() -> String {
    sh_ok(
        "podman",
        &[
            "images",
            "--filter",
            "reference=localhost/mirror-registry/redis",
            "--format",
            "{{.Repository}}:{{.Tag}}",
        ],
    )
    .lines()
    .next()
    .map(str::to_string)
    .expect("no localhost/mirror-registry/redis image: run hack/setup-host.sh")
}

fn unit_dir() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
        .join(".config/systemd/user")
}

fn mountpoint(volume: &str) -> PathBuf {
    PathBuf::from(
        sh_ok(
            "podman",
            &["volume", "inspect", "--format", "{{.Mountpoint}}", volume],
        )
        .trim(),
    )
}

/// path (relative) → sha256 of every file under `dir`.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, hex(&Sha256::digest(std::fs::read(&p).unwrap())));
            }
        }
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Removes what the test laid out and what adopt and the controller made.
struct Cleanup {
    ctl: String,
    volumes: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let ctl = format!("{}.service", self.ctl);
        let _ = sh("systemctl", &["--user", "stop", &ctl]);
        let _ = sh("systemctl", &["--user", "disable", &ctl]);
        let _ = std::fs::remove_file(unit_dir().join(&ctl));
        cleanup("quay");
        let _ = sh("systemctl", &["--user", "reset-failed", &ctl]);
        for v in &self.volumes {
            let _ = sh("podman", &["volume", "rm", "-f", v]);
        }
        let _ = sh("podman", &["secret", "rm", "redis_pass"]);
    }
}

fn mrctl(lab: &Lab, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mrctl"))
        .args(["--watch-dir", lab.watch().to_str().unwrap()])
        .args(["--state-dir", lab.state().to_str().unwrap()])
        .args(["--scope", "user"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The original's CA and server pair, made the way its installer makes
/// them (openssl; the chain written into ssl.cert; the key mode 0644).
fn original_tls(root: &Path, host: &str) {
    let ca = root.join("quay-rootCA");
    let cfg = root.join("quay-config");
    std::fs::create_dir_all(&ca).unwrap();
    let cnf = cfg.join("openssl.cnf");
    std::fs::write(
        &cnf,
        format!(
            "[req]\ndefault_bits = 2048\ndefault_md = sha256\ndistinguished_name = dn\nx509_extensions = v3_req\nprompt = no\n[dn]\nO = Quay\nCN = {host}\n[v3_req]\nkeyUsage = nonRepudiation, digitalSignature, keyEncipherment, keyCertSign\nextendedKeyUsage = serverAuth\nsubjectAltName = @alt_names\n[alt_names]\nDNS = {host}\n"
        ),
    )
    .unwrap();
    let p = |x: &Path| x.to_str().unwrap().to_string();
    let (cakey, capem) = (ca.join("rootCA.key"), ca.join("rootCA.pem"));
    let (key, csr, cert) = (
        cfg.join("ssl.key"),
        cfg.join("ssl.csr"),
        cfg.join("ssl.cert"),
    );
    sh_ok("openssl", &["genrsa", "-out", &p(&cakey), "2048"]);
    sh_ok(
        "openssl",
        &[
            "req",
            "-x509",
            "-new",
            "-config",
            &p(&cnf),
            "-nodes",
            "-key",
            &p(&cakey),
            "-sha256",
            "-days",
            "30",
            "-out",
            &p(&capem),
            "-addext",
            "basicConstraints=critical,CA:TRUE,pathlen:1",
        ],
    );
    sh_ok("openssl", &["genrsa", "-out", &p(&key), "2048"]);
    sh_ok(
        "openssl",
        &[
            "req",
            "-new",
            "-key",
            &p(&key),
            "-out",
            &p(&csr),
            "-subj",
            "/CN=quay-enterprise",
            "-config",
            &p(&cnf),
        ],
    );
    sh_ok(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &p(&csr),
            "-CA",
            &p(&capem),
            "-CAkey",
            &p(&cakey),
            "-CAcreateserial",
            "-out",
            &p(&cert),
            "-days",
            "30",
            "-extensions",
            "v3_req",
            "-extfile",
            &p(&cnf),
        ],
    );
    let chain = [
        std::fs::read(&cert).unwrap(),
        std::fs::read(&capem).unwrap(),
    ]
    .concat();
    std::fs::write(&cert, chain).unwrap();
    sh_ok("chmod", &["0644", &p(&key), &p(&cert)]);
}

/// The original installer's three units, its templates filled in as it
/// fills them for a user-scope install with --quayStorage/--sqliteStorage.
fn original_units(root: &Path, port: u16, storage: &str, sqlite: &str, redis: &str) {
    let pod = format!(
        "[Unit]\nDescription=Infra Container for Quay\nWants=network.target\nAfter=network-online.target\nBefore=quay-redis.service\n\n[Service]\nType=simple\nRemainAfterExit=yes\nTimeoutStartSec=5m\nExecStartPre=-/bin/rm -f %t/%n-pid %t/%n-pod-id\nExecStart=/usr/bin/podman pod create \\\n    --name quay-pod \\\n    --infra-image {PAUSE} \\\n    --publish {port}:8443 \\\n    --pod-id-file %t/%n-pod-id \\\n    --replace\nExecStop=-/usr/bin/podman pod stop --ignore --pod-id-file %t/%n-pod-id -t 10\nExecStopPost=-/usr/bin/podman pod rm --ignore -f --pod-id-file %t/%n-pod-id\nPIDFile=%t/%n-pid\nKillMode=none\nRestart=always\nRestartSec=30\n\n[Install]\nWantedBy=multi-user.target default.target\n"
    );
    let app = format!(
        "[Unit]\nDescription=Quay Container\nWants=network.target\nAfter=network-online.target quay-pod.service quay-redis.service\nRequires=quay-pod.service quay-redis.service\n\n[Service]\nType=simple\nTimeoutStartSec=5m\nEnvironment=PODMAN_SYSTEMD_UNIT=%n\nExecStartPre=-/bin/rm -f %t/%n-pid %t/%n-cid\nExecStart=/usr/bin/podman run \\\n    --name quay-app \\\n    -v {root}/quay-config:/quay-registry/conf/stack:Z \\\n    -v {sqlite}:/sqlite:Z,U \\\n    -v {storage}:/datastorage:Z \\\n    --image-volume=ignore \\\n    --pod=quay-pod \\\n    --conmon-pidfile %t/%n-pid \\\n    --cidfile %t/%n-cid \\\n    --cgroups=no-conmon \\\n    --log-driver=journald \\\n    --replace \\\n    -e WORKER_COUNT_UNSUPPORTED_MINIMUM=1 \\\n    -e WORKER_COUNT=1 \\\n    {STANDIN} registry\n    \nExecStop=-/usr/bin/podman stop --ignore --cidfile %t/%n-cid -t 10\nExecStopPost=-/bin/sh -c 'if [ \"$EXIT_STATUS\" -eq 0  ]; then /usr/bin/podman rm --ignore -f --cidfile %t/%n-cid; fi'\nPIDFile=%t/%n-pid\nKillMode=none\nRestart=always\nRestartSec=30\n\n[Install]\nWantedBy=multi-user.target default.target\n",
        root = root.display()
    );
    let redis = format!(
        "[Unit]\nDescription=Redis Podman Container for Quay\nWants=network.target\nAfter=network-online.target quay-pod.service\nRequires=quay-pod.service\n\n[Service]\nType=simple\nTimeoutStartSec=5m\nExecStartPre=-/bin/rm -f %t/%n-pid %t/%n-cid\nExecStart=/usr/bin/podman run \\\n    --name quay-redis \\\n    --pod=quay-pod \\\n    --conmon-pidfile %t/%n-pid \\\n    --cidfile %t/%n-cid \\\n    --cgroups=no-conmon \\\n    --image-volume=ignore \\\n    --secret=redis_pass,type=env,target=REDIS_PASSWORD \\\n    --replace \\\n    {redis}\n\nExecStop=-/usr/bin/podman stop --ignore --cidfile %t/%n-cid -t 10\nExecStopPost=-/usr/bin/podman rm --ignore -f --cidfile %t/%n-cid\nPIDFile=%t/%n-pid\nKillMode=none\nRestart=always\nRestartSec=30\n\n[Install]\nWantedBy=multi-user.target default.target\n"
    );
    // The original logs to journald; this test host runs no journald (its
    // PID 1 is not systemd), where podman refuses that driver.
    let app = if Path::new("/run/systemd/journal/socket").exists() {
        app
    } else {
        app.replace("--log-driver=journald", "--log-driver=k8s-file")
    };
    let dir = unit_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("quay-pod.service"), pod).unwrap();
    std::fs::write(dir.join("quay-app.service"), app).unwrap();
    std::fs::write(dir.join("quay-redis.service"), redis).unwrap();
}

/// The stand-in's HTTP answer code on `path`, trusting only the
/// original's CA.
fn https_code(ca: &Path, port: u16, method: &str, path: &str, body: Option<&str>) -> String {
    let mut a = vec![
        "-s".to_string(),
        "-o".into(),
        "/dev/null".into(),
        "-w".into(),
        "%{http_code}".into(),
        "--max-time".into(),
        "5".into(),
        "--cacert".into(),
        ca.display().to_string(),
        "--resolve".into(),
        format!("{HOST}:{port}:127.0.0.1"),
        "-X".into(),
        method.into(),
    ];
    if let Some(b) = body {
        a.extend([
            "-H".into(),
            "Content-Type: application/json".into(),
            "-d".into(),
            b.into(),
        ]);
    }
    a.push(format!("https://{HOST}:{port}{path}"));
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    String::from_utf8_lossy(&sh("curl", &a).stdout).into_owned()
}

/// Container starts podman recorded for `name` at or after `since`.
/// podman's own `--since` is coarse (it returned starts seconds before the
/// instant asked), so it only narrows the query and the times are compared
/// here, to the nanosecond.
fn starts(name: &str, since: SystemTime) -> usize {
    let since = since.duration_since(UNIX_EPOCH).unwrap();
    sh_ok(
        "podman",
        &[
            "events",
            "--since",
            &format!("{}", since.as_secs() - 5),
            "--stream=false",
            "--filter",
            "event=start",
            "--format",
            "{{.Name}} {{.Time.UnixNano}}",
        ],
    )
    .lines()
    .filter_map(|l| l.trim().split_once(' '))
    .filter(|(n, t)| *n == name && t.parse::<u128>().is_ok_and(|t| t >= since.as_nanos()))
    .count()
}

#[test]
fn adopts_a_registry_the_original_installed() {
    let lab = Lab::new();
    for u in UNITS {
        assert!(
            !unit_dir().join(u).exists(),
            "{} exists: this host runs a registry of the original installer's names; the test does not touch it",
            unit_dir().join(u).display()
        );
    }
    assert!(
        !exists("pod", "quay-pod"),
        "a pod quay-pod exists on this host; the test does not touch it"
    );
    let port = free_port();
    let storage = unique("adopt-quay-storage");
    let sqlite = unique("adopt-sqlite-storage");
    let ctl = unique("adopt-ctl");
    let _cleanup = Cleanup {
        ctl: ctl.clone(),
        volumes: vec![storage.clone(), sqlite.clone()],
    };
    let root = lab.dir.path().join("quay-install");
    let password = format!("Pw{}", unique("init"));
    let log = lab.dir.path().join("controller.log");

    // 1. The original's install, as its playbook leaves it.
    std::fs::create_dir_all(root.join("quay-config")).unwrap();
    original_tls(&root, HOST);
    let redis_password = "origRedisPass0123456789ab";
    let config = format!(
        "AUTHENTICATION_TYPE: Database\nBUILDLOGS_REDIS:\n  host: localhost\n  password: {redis_password}\n  port: 6379\nDATABASE_SECRET_KEY: origDbKey{p}\nDB_URI: sqlite:////sqlite/quay_sqlite.db\nDISTRIBUTED_STORAGE_CONFIG:\n  default:\n    - LocalStorage\n    - storage_path: /datastorage\nSECRET_KEY: origSecret{p}\nSERVER_HOSTNAME: {HOST}:{port}\nSETUP_COMPLETE: true\nUSER_EVENTS_REDIS:\n  host: localhost\n  password: {redis_password}\n  port: 6379\nFEATURE_USER_INITIALIZE: true\nCREATE_NAMESPACE_ON_PUSH: true\n",
        p = "0123456789abcdef0123456789abcdef"
    );
    std::fs::write(root.join("quay-config/config.yaml"), config).unwrap();
    let mut secret = Command::new("podman")
        .args(["secret", "create", "redis_pass", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    secret
        .stdin
        .take()
        .unwrap()
        .write_all(redis_password.as_bytes())
        .unwrap();
    assert!(secret.wait().unwrap().success(), "podman secret create");
    for v in [&storage, &sqlite] {
        sh_ok("podman", &["volume", "create", v]);
    }
    original_units(&root, port, &storage, &sqlite, &redis_image());
    sh_ok("systemctl", &["--user", "daemon-reload"]);
    sh_ok(
        "systemctl",
        &["--user", "enable", UNITS[0], UNITS[1], UNITS[2]],
    );
    // One at a time, each up before the next, as the original's playbook
    // starts them: its pod unit is Type=simple, so systemd calls it started
    // before `podman pod create` is done, and a container started then
    // fails and is started again by Restart=always 30 s later, which could
    // fall in the middle of the adopt and be counted as its restart.
    let up = |u: &str| -> bool {
        match u {
            "quay-pod.service" => sh("podman", &["pod", "exists", "quay-pod"])
                .status
                .success(),
            _ => {
                let c = u.trim_end_matches(".service");
                sh("podman", &["inspect", "--format", "{{.State.Running}}", c]).stdout == b"true\n"
            }
        }
    };
    for u in UNITS {
        sh_ok("systemctl", &["--user", "restart", u]);
        wait_for(Duration::from_secs(60), &format!("{u} up"), || {
            (unit_active(u) == "active" && up(u)).then_some(())
        });
    }
    let ca = root.join("quay-rootCA/rootCA.pem");
    let t = Instant::now();
    while https_code(&ca, port, "GET", "/health/instance", None) == "000" {
        if t.elapsed() > Duration::from_secs(60) {
            let status = sh(
                "systemctl",
                &[
                    "--user",
                    "status",
                    "--no-pager",
                    "-l",
                    UNITS[0],
                    UNITS[1],
                    UNITS[2],
                ],
            );
            panic!(
                "the original's Quay did not answer in 60 s:\n{}\n{}",
                String::from_utf8_lossy(&status.stdout),
                sh_ok("podman", &["ps", "-a", "--pod"])
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // Its init user, as its create-init-user task makes it.
    let body = format!(
        r#"{{"username":"init","password":"{password}","email":"init@quay.io","access_token":true}}"#
    );
    assert_eq!(
        https_code(&ca, port, "POST", "/api/v1/user/initialize", Some(&body)),
        "200"
    );
    // An image's blob where Quay's LocalStorage keeps it.
    let blob = sh_ok(
        "podman",
        &["image", "inspect", "--format", "{{.Id}}", STANDIN],
    );
    let content = format!("blob of {}", blob.trim()).into_bytes();
    let digest = hex(&Sha256::digest(&content));
    let blob_path = mountpoint(&storage).join(format!("sha256/{}/{digest}", &digest[..2]));
    std::fs::create_dir_all(blob_path.parent().unwrap()).unwrap();
    std::fs::write(&blob_path, &content).unwrap();

    let volume_created = |v: &str| {
        sh_ok(
            "podman",
            &["volume", "inspect", "--format", "{{.CreatedAt}}", v],
        )
    };
    let created_before = (volume_created(&storage), volume_created(&sqlite));
    let storage_before = tree(&mountpoint(&storage));
    let users_before = std::fs::read(mountpoint(&sqlite).join("standin-users.json")).unwrap();
    let root_before = tree(&root);
    let units_before: Vec<String> = UNITS
        .iter()
        .map(|u| std::fs::read_to_string(unit_dir().join(u)).unwrap())
        .collect();
    // The original runs: both containers up (its units may still be
    // starting them on a loaded host).
    let ids_before = wait_for(Duration::from_secs(60), "the original's containers", || {
        let ids = sh_ok(
            "podman",
            &["ps", "-q", "--filter", "name=^quay-(app|redis)$"],
        );
        (ids.lines().count() == 2).then_some(ids)
    });

    let common_args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "adopt",
            "--quayRoot",
            root.to_str().unwrap(),
            "--controller-unit",
            &ctl,
            "--controller-log",
            log.to_str().unwrap(),
            "--timeout",
            "180s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };

    // 2. Dry run: the spec and every change printed, nothing changed.
    let a = common_args(&["--dry-run"]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let o = mrctl(&lab, &a, None);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    for want in [
        "kind: MirrorRegistry".to_string(),
        format!("port: {port}"),
        format!("volume: {storage}"),
        format!("volume: {sqlite}"),
        format!("root: {}", root.display()),
        format!("quay: {STANDIN}"),
        "stop and disable quay-app.service".into(),
        "remove the stopped containers quay-app, quay-redis".into(),
        "unchanged:".into(),
    ] {
        assert!(out.contains(&want), "dry run lacks {want:?}:\n{out}");
    }
    assert!(!lab.spec_path("quay").exists(), "dry run wrote no spec");
    assert!(!lab.state().join("quay").exists(), "dry run wrote no state");
    for (u, before) in UNITS.iter().zip(&units_before) {
        assert_eq!(
            &std::fs::read_to_string(unit_dir().join(u)).unwrap(),
            before
        );
    }
    assert_eq!(
        sh_ok(
            "podman",
            &["ps", "-q", "--filter", "name=^quay-(app|redis)$"]
        ),
        ids_before,
        "dry run restarted nothing"
    );

    // Without the init password adopt refuses, having changed nothing.
    let a = common_args(&[]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let o = mrctl(&lab, &a, None);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--initPassword is required"));
    assert!(!lab.spec_path("quay").exists());
    assert_eq!(
        sh_ok(
            "podman",
            &["ps", "-q", "--filter", "name=^quay-(app|redis)$"]
        ),
        ids_before
    );

    // 3. Adopt.
    let since = SystemTime::now();
    std::thread::sleep(Duration::from_millis(1100));
    let t0 = Instant::now();
    let a = common_args(&["--initPassword", "-"]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let o = mrctl(&lab, &a, Some(&format!("{password}\n")));
    let took = t0.elapsed();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n--- controller log\n{}",
        show(&o),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    eprintln!("FIGURE mrctl adopt -> Ready: {:.2} s", took.as_secs_f64());
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("mirrorregistry/quay adopted"), "{out}");
    assert!(!out.contains(&password), "the password is not printed");
    let st = wait_phase(
        &lab.spec_path("quay"),
        Phase::Ready,
        Duration::from_secs(30),
    );
    assert_eq!(
        st.endpoint.as_deref(),
        Some(format!("https://{HOST}:{port}").as_str())
    );

    // The spec's names match the original's.
    let spec = std::fs::read_to_string(lab.spec_path("quay")).unwrap();
    for want in [
        format!("volume: {storage}"),
        format!("volume: {sqlite}"),
        format!("port: {port}"),
        format!("root: {}", root.display()),
    ] {
        assert!(spec.contains(&want), "spec lacks {want}:\n{spec}");
    }

    // Data kept: the same volumes (not recreated), every byte.
    assert_eq!(
        (volume_created(&storage), volume_created(&sqlite)),
        created_before,
        "volumes not recreated"
    );
    assert_eq!(tree(&mountpoint(&storage)), storage_before);
    assert_eq!(std::fs::read(&blob_path).unwrap(), content);
    assert_eq!(
        std::fs::read(mountpoint(&sqlite).join("standin-users.json")).unwrap(),
        users_before,
        "no second init user: the original's database kept"
    );
    // Mounted again by the controller's Quay.
    let mounts = sh_ok(
        "podman",
        &[
            "inspect",
            "--format",
            "{{range .Mounts}}{{.Name}} {{end}}",
            "quay-app",
        ],
    );
    assert!(
        mounts.contains(&storage) && mounts.contains(&sqlite),
        "{mounts}"
    );

    // The original's init password is the one mrctl credentials prints.
    let o = mrctl(&lab, &["credentials", "quay"], None);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&password),
        "credentials hold the original's password"
    );

    // The original's certificate is still served: clients trusting its CA
    // need nothing new.
    assert_eq!(
        https_code(&ca, port, "GET", "/health/instance", None),
        "200"
    );

    // Its units replaced by the controller's; the originals kept.
    for (u, before) in UNITS.iter().zip(&units_before) {
        let now = std::fs::read_to_string(unit_dir().join(u)).unwrap();
        assert!(now.contains("io.mirrorregistry.owner=quay"), "{u}:\n{now}");
        assert_eq!(
            &std::fs::read_to_string(lab.state().join("quay/adopted-units").join(u)).unwrap(),
            before
        );
        assert_eq!(unit_active(u), "active", "{u}");
    }
    // At most one restart of each container.
    for c in ["quay-app", "quay-redis"] {
        let n = starts(c, since);
        assert_eq!(n, 1, "{c} started {n} times during adopt");
    }

    // Nothing it does not own touched: the original's config, TLS and CA,
    // the podman secret.
    let mut root_now = tree(&root);
    root_now.retain(|k, _| {
        !k.starts_with("config/") && !k.starts_with("tls/") && !k.starts_with("secrets/")
    });
    assert_eq!(
        root_now, root_before,
        "quay-config and quay-rootCA untouched"
    );
    assert!(sh("podman", &["secret", "inspect", "redis_pass"])
        .status
        .success());

    // A second adopt refuses: the registry is the controller's now.
    let a = common_args(&["--initPassword", "-"]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let o = mrctl(&lab, &a, Some(&format!("{password}\n")));
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already managed"),
        "{}",
        show(&o)
    );
}
