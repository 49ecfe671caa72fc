//! End to end on the real host for the quay engine, with a STAND-IN for
//! Quay: `localhost/mirror-registry/quay-standin` (hack/quay-standin), a
//! small HTTPS server that reads Quay's config directory, creates the
//! SQLite file, answers /health/instance and /api/v1/user/initialize as
//! Quay 3.12 does (docs/quay.md), checks Redis with the configured
//! password (at a path of its own: Quay's health does not), and records
//! every request in the SQLite volume. Redis is real: Debian's, built
//! offline by hack/setup-host.sh.
//!
//! A spec becomes the original's layout (pod, redis and app containers and
//! units), Ready only once Quay is healthy and the initial user was created;
//! a second reconcile sends no second initialize and rewrites no secret; a
//! new Quay image keeps secrets, data and credentials.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use common::*;
use mirror_registry::api::Phase;
use serde_json::Value;

/// The stand-in image hack/setup-host.sh builds; MIRROR_REGISTRY_TEST_QUAY_STANDIN
/// names another build of it (podman's image names are shared by everyone
/// on the host, and an older checkout's setup-host.sh tags its own).
fn standin() -> String {
    std::env::var("MIRROR_REGISTRY_TEST_QUAY_STANDIN")
        .unwrap_or_else(|_| "localhost/mirror-registry/quay-standin:latest".to_string())
}
const PAUSE: &str = "localhost/mirror-registry/pause:latest";

/// Debian's Redis as setup-host.sh tagged it (with its upstream version).
fn redis_image() -> String {
    let out = sh_ok(
        "podman",
        &[
            "images",
            "--filter",
            "reference=localhost/mirror-registry/redis",
            "--format",
            "{{.Repository}}:{{.Tag}}",
        ],
    );
    out.lines()
        .next()
        .map(str::to_string)
        .expect("no localhost/mirror-registry/redis image: run hack/setup-host.sh")
}

/// Not `localhost`: with SERVER_HOSTNAME `localhost:PORT` Quay checks its
/// own workers at that port inside its pod and is never healthy (see
/// `quay_standin_localhost_on_another_port_is_never_healthy_and_says_why`).
/// The probe and curl resolve it to 127.0.0.1 themselves.
const HOSTNAME: &str = "standin.quay.test";

fn quay_spec(lab: &Lab, name: &str, port: u16, quay_image: &str) -> String {
    format!(
        "# written by a test: the quay engine with a stand-in for Quay
apiVersion: mirrorregistry.io/v1alpha1
kind: MirrorRegistry
metadata:
  name: {name}
spec:
  engine: quay
  hostname: {HOSTNAME}
  port: {port}
  root: {root}
  images:
    quay: {quay_image}
    redis: {redis}
    pause: {PAUSE}
",
        root = lab.root(name).display(),
        redis = redis_image(),
    )
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

/// Every request the stand-in recorded.
fn requests(sqlite: &Path) -> Vec<Value> {
    std::fs::read_to_string(sqlite.join("requests.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn initialize_posts(sqlite: &Path) -> Vec<Value> {
    requests(sqlite)
        .into_iter()
        .filter(|r| r["method"] == "POST" && r["path"] == "/api/v1/user/initialize")
        .collect()
}

fn inspect(container: &str, format: &str) -> String {
    sh_ok("podman", &["inspect", "--format", format, container])
        .trim()
        .to_string()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Bytes and modification time of each file.
fn snapshot(files: &[PathBuf]) -> Vec<(PathBuf, Vec<u8>, SystemTime)> {
    files
        .iter()
        .map(|f| {
            let meta = std::fs::metadata(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            (
                f.clone(),
                std::fs::read(f).unwrap(),
                meta.modified().unwrap(),
            )
        })
        .collect()
}

fn once_ok(lab: &Lab, what: &str) -> Duration {
    let t0 = Instant::now();
    let code = lab.once(&[]);
    let log = std::fs::read_to_string(lab.dir.path().join("once.log")).unwrap_or_default();
    assert_eq!(code, 0, "{what}: --once did not reach Ready:\n{log}");
    t0.elapsed()
}

/// Removes extra names this test gave images, even when it fails (only
/// those names: `podman untag IMAGE` alone would remove every name).
struct Untag(Vec<String>);
impl Drop for Untag {
    fn drop(&mut self) {
        for tag in &self.0 {
            let _ = sh("podman", &["untag", tag, tag]);
        }
    }
}

#[test]
fn quay_standin_spec_to_ready_init_user_once_and_upgrade() {
    let mut lab = Lab::new();
    let name = unique("qs");
    let port = free_port();
    lab.track(&name, port);
    let path = lab.spec_path(&name);
    let root = lab.root(&name);

    // 1. Drop the spec and converge once: Ready.
    let standin = standin();
    lab.put(&name, &quay_spec(&lab, &name, port, &standin));
    let took = once_ok(&lab, "first reconcile");
    eprintln!(
        "FIGURE quay (stand-in) spec -> Ready, init user created: {:.2} s",
        took.as_secs_f64()
    );
    let st = file_status(&path).unwrap();
    assert_eq!(st.phase, Phase::Ready);
    assert_all_conditions_true(&st);
    let healthy = &condition(&st, "Healthy").unwrap().message;
    assert!(
        healthy.contains("/health/instance") && healthy.contains("every service healthy"),
        "{healthy}"
    );
    assert!(
        healthy
            .ends_with("auth, database, disk_space, registry_gunicorn, service_key, web_gunicorn"),
        "Quay 3.12's six services: {healthy}"
    );
    let units: Vec<&str> = st.components.iter().map(|c| c.unit.as_str()).collect();
    assert_eq!(
        units,
        [
            format!("{name}-redis.service"),
            format!("{name}-app.service")
        ]
    );
    assert!(st.components.iter().all(|c| c.healthy));
    assert_eq!(
        st.endpoint.as_deref(),
        Some(format!("https://{HOSTNAME}:{port}").as_str())
    );
    for u in ["pod", "redis", "app"] {
        assert_eq!(unit_active(&format!("{name}-{u}.service")), "active", "{u}");
    }
    assert!(exists("pod", &format!("{name}-pod")));

    // 2. The initial user: one POST, with the kept credentials.
    let (user, password) = credentials(&root);
    let sqlite = mountpoint(&format!("{name}-sqlite-storage"));
    let posts = initialize_posts(&sqlite);
    assert_eq!(posts.len(), 1, "{posts:?}");
    let body: Value = serde_json::from_str(posts[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["username"], user.as_str());
    assert_eq!(body["password"], password.as_str());
    assert_eq!(body["email"], "init@quay.io");
    assert_eq!(body["access_token"], true);
    assert!(
        requests(&sqlite)
            .iter()
            .any(|r| r["method"] == "GET" && r["path"] == "/health/instance"),
        "health was probed"
    );

    // 3. Mounts, as the original's quay-app has them.
    let app = format!("{name}-app");
    let mounts: Vec<Value> = serde_json::from_str(&inspect(&app, "{{json .Mounts}}")).unwrap();
    let mount = |dest: &str| {
        mounts
            .iter()
            .find(|m| m["Destination"] == dest)
            .unwrap_or_else(|| panic!("no mount at {dest}: {mounts:?}"))
            .clone()
    };
    let config_dir = root.join("config/quay");
    assert_eq!(
        mount("/quay-registry/conf/stack")["Source"],
        config_dir.display().to_string()
    );
    assert_eq!(
        mount("/sqlite")["Name"],
        format!("{name}-sqlite-storage").as_str()
    );
    assert_eq!(
        mount("/datastorage")["Name"],
        format!("{name}-storage").as_str()
    );
    let redis = format!("{name}-redis");
    let redis_mounts = inspect(&redis, "{{json .Mounts}}");
    assert!(
        redis_mounts.contains("/etc/mirror-registry/redis.conf")
            && redis_mounts.contains(&root.join("config/redis.conf").display().to_string()),
        "{redis_mounts}"
    );

    // 4. TLS: Quay's config directory holds the generated pair as
    //    ssl.cert/ssl.key; secrets are 0600 and owned by the container's
    //    user (podman's U), not readable by everyone.
    assert_eq!(
        std::fs::read(config_dir.join("ssl.cert")).unwrap(),
        std::fs::read(root.join("tls/tls.crt")).unwrap()
    );
    assert_eq!(
        std::fs::read(config_dir.join("ssl.key")).unwrap(),
        std::fs::read(root.join("tls/tls.key")).unwrap()
    );
    assert_eq!(mode(&config_dir), 0o700);
    for f in [
        config_dir.join("ssl.key"),
        config_dir.join("config.yaml"),
        root.join("config/redis.conf"),
        root.join("secrets/quay-secrets.yaml"),
        root.join("secrets/quay-init-user"),
        root.join("secrets/init-credentials"),
    ] {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    assert_eq!(
        std::fs::metadata(config_dir.join("ssl.key")).unwrap().uid(),
        1001,
        "the U mount option gave the key to the container's user"
    );
    assert!(!root.join("secrets/htpasswd").exists(), "quay needs none");

    // 5. Secrets only in those files: not in units, container definitions,
    //    command lines or logs. The stand-in saw Redis take its password.
    let kept = std::fs::read_to_string(root.join("secrets/quay-secrets.yaml")).unwrap();
    let secret = |k: &str| {
        kept.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}: ")))
            .unwrap()
            .trim_matches('\'')
            .to_string()
    };
    let secrets = [
        secret("redisPassword"),
        secret("secretKey"),
        secret("databaseSecretKey"),
        password.clone(),
    ];
    let config = std::fs::read_to_string(config_dir.join("config.yaml")).unwrap();
    assert!(config.contains(&format!("SERVER_HOSTNAME: '{HOSTNAME}:{port}'")));
    assert_eq!(
        config
            .matches(&format!("password: '{}'", secrets[0]))
            .count(),
        2
    );
    assert!(config.contains(&format!("SECRET_KEY: '{}'", secrets[1])));
    let home = std::env::var("HOME").unwrap();
    let mut exposed = vec![
        inspect(&app, "{{json .}}"),
        inspect(&redis, "{{json .}}"),
        sh_ok("ps", &["-eo", "args"]),
        std::fs::read_to_string(lab.dir.path().join("once.log")).unwrap(),
        std::fs::read_to_string(&path).unwrap(),
    ];
    for u in ["pod", "redis", "app"] {
        exposed.push(
            std::fs::read_to_string(format!("{home}/.config/systemd/user/{name}-{u}.service"))
                .unwrap(),
        );
    }
    for text in &exposed {
        for s in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "a secret leaked into {text:.200}"
            );
        }
    }
    let ca = root.join("tls/ca.crt");
    let get = |path: &str| -> Value {
        let out = sh_ok(
            "curl",
            &[
                "-sS",
                "--cacert",
                &ca.display().to_string(),
                "--resolve",
                &format!("{HOSTNAME}:{port}:127.0.0.1"),
                &format!("https://{HOSTNAME}:{port}{path}"),
            ],
        );
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{path}: {e}: {out}"))
    };
    let health = get("/health/instance");
    assert_eq!(health["status_code"], 200, "{health}");
    // Quay's health never looks at Redis: the stand-in's own check says
    // Redis took the password config.yaml holds.
    let checks = get("/standin/checks");
    assert_eq!(checks["redis"], true, "{checks}");
    assert_eq!(checks["storage"], true, "{checks}");
    // The SQLite file, created at start by the container's user as Quay's
    // migration creates it, through the volume podman's U gave that user.
    let db = sqlite.join("quay_sqlite.db");
    let meta = std::fs::metadata(&db).unwrap_or_else(|e| panic!("{}: {e}", db.display()));
    assert_eq!((meta.uid(), mode(&db)), (1001, 0o644));

    // 6. A second reconcile: no second initialize, no secret rewritten, no
    //    restart, no status write.
    let watched = [
        root.join("secrets/quay-secrets.yaml"),
        root.join("secrets/init-credentials"),
        root.join("secrets/quay-init-user"),
        config_dir.join("config.yaml"),
        config_dir.join("ssl.cert"),
        config_dir.join("ssl.key"),
        root.join("config/redis.conf"),
        path.clone(),
    ];
    let before = snapshot(&watched);
    let ids = (inspect(&app, "{{.Id}}"), inspect(&redis, "{{.Id}}"));
    let took = once_ok(&lab, "second reconcile");
    eprintln!(
        "FIGURE quay (stand-in) converged reconcile: {:.2} s",
        took.as_secs_f64()
    );
    assert_eq!(initialize_posts(&sqlite).len(), 1, "no second initialize");
    assert_eq!(snapshot(&watched), before, "nothing rewritten");
    assert_eq!(
        (inspect(&app, "{{.Id}}"), inspect(&redis, "{{.Id}}")),
        ids,
        "nothing restarted"
    );

    // 7. Upgrade: a new Quay image. Only the app restarts on it; secrets,
    //    data and credentials stay; the user is not initialized again.
    let next = format!("localhost/mirror-registry/quay-standin:{name}");
    sh_ok("podman", &["tag", &standin, &next]);
    let _untag = Untag(vec![next.clone()]);
    let recorded = requests(&sqlite).len();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&format!("quay: {standin}\n"), &format!("quay: {next}\n"));
    std::fs::write(&path, text).unwrap();
    let took = once_ok(&lab, "upgrade");
    eprintln!(
        "FIGURE quay (stand-in) image upgrade -> Ready: {:.2} s",
        took.as_secs_f64()
    );
    let st = file_status(&path).unwrap();
    assert_eq!(st.phase, Phase::Ready);
    assert_eq!(inspect(&app, "{{.ImageName}}"), next);
    assert_ne!(inspect(&app, "{{.Id}}"), ids.0, "the app was restarted");
    assert_eq!(inspect(&redis, "{{.Id}}"), ids.1, "Redis was not");
    let after = snapshot(&watched[..watched.len() - 1]);
    assert_eq!(
        after,
        before[..before.len() - 1],
        "secrets kept as they were"
    );
    assert_eq!(credentials(&root), (user.clone(), password.clone()));
    assert_eq!(
        initialize_posts(&sqlite).len(),
        1,
        "no initialize after upgrade"
    );
    assert!(
        requests(&sqlite).len() > recorded,
        "the new container serves and records into the same volume"
    );
    assert!(sqlite.join("standin-users.json").exists(), "data kept");

    // 8. Removing the spec tears the registry down and keeps the data.
    std::fs::remove_file(&path).unwrap();
    once_ok(&lab, "teardown");
    assert!(!exists("pod", &format!("{name}-pod")));
    assert!(!exists("container", &app));
    assert!(!exists("container", &redis));
    assert!(exists("volume", &format!("{name}-sqlite-storage")));
    assert!(exists("volume", &format!("{name}-storage")));
    assert!(root.join("secrets/quay-secrets.yaml").exists());
}

#[test]
fn quay_standin_images_load_from_the_archive() {
    let mut lab = Lab::new();
    let name = unique("qsa");
    let port = free_port();
    lab.track(&name, port);

    // The three images under names the host does not have, only in an
    // archive, as on an air-gapped host.
    let tags: Vec<String> = ["quay", "redis", "pause"]
        .iter()
        .map(|c| format!("localhost/mirror-registry/archived-{name}-{c}:1"))
        .collect();
    let _untag = Untag(tags.clone());
    for (from, tag) in [standin(), redis_image(), PAUSE.to_string()]
        .iter()
        .zip(&tags)
    {
        sh_ok("podman", &["tag", from, tag]);
    }
    let archive = lab.dir.path().join("images.tar");
    let mut save = vec!["save", "--multi-image-archive", "--output"];
    let archive_str = archive.display().to_string();
    save.push(&archive_str);
    save.extend(tags.iter().map(String::as_str));
    sh_ok("podman", &save);
    for tag in &tags {
        sh_ok("podman", &["untag", tag, tag]);
        assert!(!sh("podman", &["image", "exists", tag]).status.success());
    }

    let spec = quay_spec(&lab, &name, port, &tags[0])
        .replace(
            &format!("redis: {}\n", redis_image()),
            &format!("redis: {}\n", tags[1]),
        )
        .replace(
            &format!("pause: {PAUSE}\n"),
            &format!("pause: {}\n", tags[2]),
        )
        + &format!("    archive: {archive_str}\n");
    lab.put(&name, &spec);
    let took = once_ok(&lab, "archive load");
    eprintln!(
        "FIGURE quay (stand-in) images loaded from an archive -> Ready: {:.2} s",
        took.as_secs_f64()
    );
    let st = file_status(&lab.spec_path(&name)).unwrap();
    assert_eq!(st.phase, Phase::Ready);
    let images = &condition(&st, "ImagesPresent").unwrap().message;
    assert!(
        images.starts_with(&format!("loaded from {archive_str}")),
        "{images}"
    );
    for tag in &tags {
        assert!(images.contains(tag.as_str()), "{images}");
        assert!(sh("podman", &["image", "exists", tag]).status.success());
    }
    assert_eq!(inspect(&format!("{name}-app"), "{{.ImageName}}"), tags[0]);
    assert_eq!(
        initialize_posts(&mountpoint(&format!("{name}-sqlite-storage"))).len(),
        1
    );
}

/// Real Quay checks its own gunicorn workers at `https://localhost:PORT/`
/// inside its pod when SERVER_HOSTNAME is `localhost:PORT`; the pod
/// publishes PORT to 8443, so nothing answers there and Quay is never
/// healthy. The stand-in checks the same place; the status says why.
#[test]
fn quay_standin_localhost_on_another_port_is_never_healthy_and_says_why() {
    let mut lab = Lab::new();
    let name = unique("qsl");
    let mut port = free_port();
    while port == 8443 {
        port = free_port();
    }
    lab.track(&name, port);
    let spec = quay_spec(&lab, &name, port, &standin())
        .replace(&format!("hostname: {HOSTNAME}\n"), "hostname: localhost\n");
    lab.put(&name, &spec);
    let code = lab.once(&["--once-timeout", "40s"]);
    let log = std::fs::read_to_string(lab.dir.path().join("once.log")).unwrap_or_default();
    assert_eq!(code, 1, "not Ready:\n{log}");
    let st = file_status(&lab.spec_path(&name)).unwrap();
    assert_ne!(st.phase, Phase::Ready);
    let healthy = &condition(&st, "Healthy").unwrap().message;
    assert!(
        healthy.contains("not healthy: registry_gunicorn, web_gunicorn (with hostname localhost"),
        "{healthy}"
    );
    // Everything else is up: only the name is wrong.
    for u in ["pod", "redis", "app"] {
        assert_eq!(unit_active(&format!("{name}-{u}.service")), "active", "{u}");
    }
}
