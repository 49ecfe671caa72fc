//! The host adapters against a real podman and a real systemd user manager.
//!
//! Needs the host that `hack/setup-host.sh` prepares: podman with its API
//! socket at `$XDG_RUNTIME_DIR/podman/podman.sock`, a systemd user manager on
//! the session bus, and the local test image. Set
//! `MIRROR_REGISTRY_SKIP_HOST_TESTS=1` to skip these tests.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptions, StartContainerOptions};
use mirror_registry::host::podman::{self, Podman};
use mirror_registry::host::systemd::{self, Scope, Systemd};

const TEST_IMAGE: &str = "localhost/mirror-registry/testimage:latest";
const LABEL: &str = "io.mirror-registry.test";

fn skip() -> bool {
    if std::env::var("MIRROR_REGISTRY_SKIP_HOST_TESTS").as_deref() == Ok("1") {
        eprintln!(
            "MIRROR_REGISTRY_SKIP_HOST_TESTS=1: skipping a test that needs podman and systemd"
        );
        return true;
    }
    false
}

/// A name no other test (or earlier run) uses.
fn unique(kind: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "mrtest-{kind}-{}-{nanos:x}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

const SETUP_HINT: &str = "run hack/setup-host.sh first, and export \
     XDG_RUNTIME_DIR=/run/user/$(id -u) DBUS_SESSION_BUS_ADDRESS=unix:path=$XDG_RUNTIME_DIR/bus \
     (or set MIRROR_REGISTRY_SKIP_HOST_TESTS=1 to skip host tests)";

async fn connect_podman() -> Podman {
    let socket = podman::default_socket(true);
    match Podman::connect(&socket).await {
        Ok(p) => p,
        Err(e) => panic!("{e}\n{SETUP_HINT}"),
    }
}

async fn connect_systemd() -> Systemd {
    match Systemd::connect(Scope::User).await {
        Ok(s) => s,
        Err(e) => panic!("{e}\n{SETUP_HINT}"),
    }
}

fn podman_bin() -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("podman"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/podman"))
}

fn quiet(program: &str, args: &[&str]) {
    let _ = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Removes what a test created even when it fails half way, through the
/// CLIs so it does not depend on the code under test.
#[derive(Default)]
struct Cleanup {
    containers: Vec<String>,
    volumes: Vec<String>,
    pods: Vec<String>,
    units: Vec<String>,
    images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for unit in &self.units {
            quiet("systemctl", &["--user", "stop", unit]);
            quiet("systemctl", &["--user", "disable", unit]);
            quiet("systemctl", &["--user", "reset-failed", unit]);
            if let Ok(dir) = systemd::unit_dir(Scope::User) {
                let _ = std::fs::remove_file(dir.join(unit));
                let _ = std::fs::remove_file(dir.join("default.target.wants").join(unit));
            }
        }
        if !self.units.is_empty() {
            quiet("systemctl", &["--user", "daemon-reload"]);
        }
        let podman = podman_bin();
        let podman = podman.to_string_lossy();
        for c in &self.containers {
            quiet(&podman, &["rm", "--force", "--ignore", c]);
        }
        for p in &self.pods {
            quiet(&podman, &["pod", "rm", "--force", "--ignore", p]);
        }
        for v in &self.volumes {
            quiet(&podman, &["volume", "rm", "--force", v]);
        }
        for i in &self.images {
            quiet(&podman, &["rmi", "--force", i]);
        }
    }
}

async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {}s",
            timeout.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn podman_volumes_and_containers() {
    if skip() {
        return;
    }
    let podman = connect_podman().await;
    let mut cleanup = Cleanup::default();
    let owner = unique("owner");

    // Volumes: labels round-trip, a label selector finds it, removal is
    // idempotent.
    let volume = unique("vol");
    cleanup.volumes.push(volume.clone());
    assert_eq!(podman.volume(&volume).await.unwrap(), None);
    let labels = BTreeMap::from([
        (LABEL.to_string(), owner.clone()),
        (
            "io.mirror-registry.component".to_string(),
            "storage".to_string(),
        ),
    ]);
    podman.create_volume(&volume, &labels).await.unwrap();
    let info = podman
        .volume(&volume)
        .await
        .unwrap()
        .expect("volume exists");
    assert_eq!(info.name, volume);
    assert_eq!(info.labels, labels);
    assert!(info.mountpoint.is_absolute(), "{info:?}");
    let found = podman.volumes_labelled(LABEL, &owner).await.unwrap();
    assert_eq!(
        found.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
        [volume.as_str()]
    );
    assert!(podman
        .volumes_labelled(LABEL, "nobody-owns-this")
        .await
        .unwrap()
        .is_empty());

    // Images.
    let image_id = podman.image_id(TEST_IMAGE).await.unwrap();
    assert!(
        image_id.as_deref().is_some_and(|id| !id.is_empty()),
        "{TEST_IMAGE} is missing: {SETUP_HINT}"
    );
    assert!(podman.image_exists(TEST_IMAGE).await.unwrap());
    assert!(!podman
        .image_exists("localhost/mirror-registry/no-such-image:latest")
        .await
        .unwrap());

    // Containers: created through bollard directly, observed through the
    // adapter.
    let name = unique("ctr");
    cleanup.containers.push(name.clone());
    assert_eq!(podman.container(&name).await.unwrap(), None);
    let body = ContainerCreateBody {
        image: Some(TEST_IMAGE.to_string()),
        labels: Some(HashMap::from([(LABEL.to_string(), owner.clone())])),
        host_config: Some(HostConfig {
            network_mode: Some("none".to_string()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptions {
        name: Some(name.clone()),
        ..Default::default()
    };
    podman
        .docker()
        .create_container(Some(options), body)
        .await
        .unwrap();
    let created = podman.container(&name).await.unwrap().expect("created");
    assert!(!created.running);
    assert_eq!(created.started_at, None, "{created:?}");
    podman
        .docker()
        .start_container(&name, None::<StartContainerOptions>)
        .await
        .unwrap();

    let calls_before = podman.api_calls();
    let c = podman
        .container(&name)
        .await
        .unwrap()
        .expect("container exists");
    assert_eq!(podman.api_calls(), calls_before + 1);
    assert_eq!(c.name, name);
    assert!(c.running, "{c:?}");
    assert_eq!(c.status, "running");
    assert!(c.started_at.is_some(), "{c:?}");
    assert_eq!(c.labels.get(LABEL), Some(&owner));
    assert_eq!(c.image, TEST_IMAGE);
    let bare = |id: &str| id.trim_start_matches("sha256:").to_string();
    assert_eq!(
        Some(bare(&c.image_id)),
        image_id.as_deref().map(bare),
        "{c:?}"
    );
    assert_eq!(c.pod, None);

    let listed = podman.containers_labelled(LABEL, &owner).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, c.id);

    // Stopped containers are still listed.
    quiet(
        &podman_bin().to_string_lossy(),
        &["stop", "--time", "1", &name],
    );
    let listed = podman.containers_labelled(LABEL, &owner).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(!listed[0].running, "{listed:?}");

    podman.remove_container(&name).await.unwrap();
    assert_eq!(podman.container(&name).await.unwrap(), None);
    podman.remove_container(&name).await.unwrap();
    assert!(podman
        .containers_labelled(LABEL, &owner)
        .await
        .unwrap()
        .is_empty());

    podman.remove_volume(&volume).await.unwrap();
    assert_eq!(podman.volume(&volume).await.unwrap(), None);
    podman.remove_volume(&volume).await.unwrap();
}

#[tokio::test]
async fn podman_pods_via_libpod() {
    if skip() {
        return;
    }
    let podman = connect_podman().await;
    let mut cleanup = Cleanup::default();
    let pod = unique("pod");
    cleanup.pods.push(pod.clone());

    assert_eq!(podman.pod(&pod).await.unwrap(), None);
    let out = Command::new(podman_bin())
        .args([
            "pod",
            "create",
            "--name",
            &pod,
            "--label",
            &format!("{LABEL}={pod}"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "podman pod create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();

    let calls_before = podman.api_calls();
    let info = podman.pod(&pod).await.unwrap().expect("pod exists");
    assert_eq!(podman.api_calls(), calls_before + 1);
    assert_eq!(info.name, pod);
    assert_eq!(info.id, id);
    assert_eq!(info.state, "Created");
    assert_eq!(info.labels.get(LABEL), Some(&pod));
    // By id as well as by name.
    assert_eq!(
        podman.pod(&id).await.unwrap().map(|p| p.name),
        Some(pod.clone())
    );

    // A container in the pod says which pod it belongs to.
    let member = unique("member");
    cleanup.containers.push(member.clone());
    let out = Command::new(podman_bin())
        .args(["create", "--pod", &pod, "--name", &member, TEST_IMAGE])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "podman create --pod: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = podman
        .container(&member)
        .await
        .unwrap()
        .expect("member exists");
    assert_eq!(c.pod.as_deref(), Some(id.as_str()));
    assert_eq!(c.status, "created");
    assert!(!c.running);

    podman.remove_pod(&pod).await.unwrap();
    assert_eq!(podman.pod(&pod).await.unwrap(), None);
    assert_eq!(podman.container(&member).await.unwrap(), None);
    podman.remove_pod(&pod).await.unwrap();
}

#[tokio::test]
async fn connect_names_a_dead_socket() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("podman.sock");
    let err = Podman::connect(&socket).await.unwrap_err().to_string();
    assert!(err.contains(&socket.display().to_string()), "{err}");
}

fn write_unit(dir: &Path, name: &str, body: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), body).unwrap();
}

#[tokio::test]
async fn systemd_units_lifecycle() {
    if skip() {
        return;
    }
    let systemd = connect_systemd().await;
    let dir = systemd::unit_dir(Scope::User).unwrap();
    let mut cleanup = Cleanup::default();

    let sleeper = format!("{}.service", unique("sleep"));
    let failing = format!("{}.service", unique("false"));
    cleanup.units.push(sleeper.clone());
    cleanup.units.push(failing.clone());

    let missing = systemd.unit(&sleeper).await.unwrap();
    assert_eq!(missing.load_state, "not-found", "{missing:?}");
    // Stopping or resetting a unit systemd does not know is not an error.
    systemd.stop(&sleeper).await.unwrap();
    systemd.reset_failed(&sleeper).await.unwrap();

    write_unit(
        &dir,
        &sleeper,
        "[Unit]\nDescription=mirror-registry host test\n\n\
         [Service]\nExecStart=/bin/sleep 300\n\n\
         [Install]\nWantedBy=default.target\n",
    );
    write_unit(
        &dir,
        &failing,
        "[Unit]\nDescription=mirror-registry host test (fails)\n\n\
         [Service]\nType=oneshot\nExecStart=/bin/false\n",
    );
    systemd.reload().await.unwrap();

    let loaded = systemd.unit(&sleeper).await.unwrap();
    assert_eq!(loaded.load_state, "loaded", "{loaded:?}");
    assert_eq!(loaded.active_state, "inactive");
    assert_eq!(loaded.unit_file_state, "disabled");
    assert_eq!(Path::new(&loaded.fragment_path), dir.join(&sleeper));
    assert!(!loaded.need_daemon_reload);

    // Enable creates the [Install] symlink in the user manager's tree.
    assert!(systemd
        .enable(std::slice::from_ref(&sleeper))
        .await
        .unwrap());
    let link = dir.join("default.target.wants").join(&sleeper);
    assert!(
        link.symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink()),
        "{} is not a symlink",
        link.display()
    );
    assert_eq!(
        systemd.unit(&sleeper).await.unwrap().unit_file_state,
        "enabled"
    );

    systemd.start(&sleeper).await.unwrap();
    let running = systemd.unit(&sleeper).await.unwrap();
    assert_eq!(running.active_state, "active", "{running:?}");
    assert_eq!(running.sub_state, "running");

    // An edited unit file needs a reload, and the manager says so.
    write_unit(
        &dir,
        &sleeper,
        "[Unit]\nDescription=mirror-registry host test, edited\n\n\
         [Service]\nExecStart=/bin/sleep 301\n\n\
         [Install]\nWantedBy=default.target\n",
    );
    assert!(systemd.unit(&sleeper).await.unwrap().need_daemon_reload);
    systemd.reload().await.unwrap();
    assert!(!systemd.unit(&sleeper).await.unwrap().need_daemon_reload);

    systemd.restart(&sleeper).await.unwrap();
    assert_eq!(systemd.unit(&sleeper).await.unwrap().active_state, "active");

    systemd.stop(&sleeper).await.unwrap();
    assert_eq!(
        systemd.unit(&sleeper).await.unwrap().active_state,
        "inactive"
    );

    // A failing start is an error naming the unit and the job result.
    let err = systemd.start(&failing).await.unwrap_err().to_string();
    assert!(err.contains(&failing), "{err}");
    assert!(err.contains("failed"), "{err}");
    assert_eq!(systemd.unit(&failing).await.unwrap().active_state, "failed");
    systemd.reset_failed(&failing).await.unwrap();
    assert_eq!(
        systemd.unit(&failing).await.unwrap().active_state,
        "inactive"
    );

    // Enabling again changes nothing.
    assert!(!systemd
        .enable(std::slice::from_ref(&sleeper))
        .await
        .unwrap());
    assert!(systemd
        .disable(std::slice::from_ref(&sleeper))
        .await
        .unwrap());
    assert!(
        link.symlink_metadata().is_err(),
        "{} still exists",
        link.display()
    );
    assert_eq!(
        systemd.unit(&sleeper).await.unwrap().unit_file_state,
        "disabled"
    );
    assert!(!systemd
        .disable(std::slice::from_ref(&sleeper))
        .await
        .unwrap());

    std::fs::remove_file(dir.join(&sleeper)).unwrap();
    std::fs::remove_file(dir.join(&failing)).unwrap();
    systemd.reload().await.unwrap();
    assert_eq!(
        systemd.unit(&sleeper).await.unwrap().load_state,
        "not-found"
    );
    assert!(systemd.dbus_calls() > 0);
}

#[tokio::test]
async fn systemd_unit_runs_a_podman_container() {
    if skip() {
        return;
    }
    let systemd = connect_systemd().await;
    let podman = connect_podman().await;
    let dir = systemd::unit_dir(Scope::User).unwrap();
    let mut cleanup = Cleanup::default();

    let container = unique("unitctr");
    let unit = format!("{container}.service");
    cleanup.units.push(unit.clone());
    cleanup.containers.push(container.clone());

    let bin = podman_bin();
    let bin = bin.display();
    // `podman run` in the foreground is the service's main process; the stop
    // commands make stopping quick and leave no container behind. `sleep` as
    // PID 1 ignores SIGTERM, so `podman stop` kills it and `podman run`
    // exits 137: a normal stop, not a failure.
    write_unit(
        &dir,
        &unit,
        &format!(
            "[Unit]\nDescription=mirror-registry host test container\n\n\
             [Service]\n\
             ExecStart={bin} run --rm --name {container} --network none {TEST_IMAGE}\n\
             ExecStop={bin} stop --ignore --time 2 {container}\n\
             ExecStopPost={bin} rm --force --ignore {container}\n\
             SuccessExitStatus=137 143\n\
             TimeoutStopSec=60\n"
        ),
    );
    systemd.reload().await.unwrap();
    systemd.start(&unit).await.unwrap();
    assert_eq!(systemd.unit(&unit).await.unwrap().active_state, "active");

    let info = wait_for(
        "container started by the unit",
        Duration::from_secs(30),
        || async {
            podman
                .container(&container)
                .await
                .unwrap()
                .filter(|c| c.running)
        },
    )
    .await;
    assert_eq!(info.name, container);
    assert_eq!(info.image, TEST_IMAGE);

    systemd.stop(&unit).await.unwrap();
    assert_eq!(systemd.unit(&unit).await.unwrap().active_state, "inactive");
    assert_eq!(podman.container(&container).await.unwrap(), None);

    std::fs::remove_file(dir.join(&unit)).unwrap();
    systemd.reload().await.unwrap();
}

fn podman_cli(args: &[&str]) {
    let out = Command::new(podman_bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "podman {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn podman_loads_archives_and_reports_pull_errors() {
    if skip() {
        return;
    }
    let podman = connect_podman().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cleanup = Cleanup::default();

    // An image of its own (the test image plus a label), so no other test
    // sees its name come and go.
    let image = format!("localhost/{}:latest", unique("load"));
    cleanup.images.push(image.clone());
    let containerfile = dir.path().join("Containerfile");
    std::fs::write(
        &containerfile,
        format!("FROM {TEST_IMAGE}\nLABEL {LABEL}={image}\n"),
    )
    .unwrap();
    let containerfile = containerfile.to_string_lossy().to_string();
    let context = dir.path().to_string_lossy().to_string();
    podman_cli(&[
        "build",
        "--pull=never",
        "-q",
        "-t",
        &image,
        "-f",
        &containerfile,
        &context,
    ]);
    let built = podman.image_id(&image).await.unwrap().expect("built image");

    // Both formats `podman save` writes.
    for format in ["docker-archive", "oci-archive"] {
        let archive = dir.path().join(format!("{format}.tar"));
        let archive_arg = archive.to_string_lossy().to_string();
        podman_cli(&["save", "--format", format, "-o", &archive_arg, &image]);
        podman_cli(&["rmi", &image]);
        assert!(!podman.image_exists(&image).await.unwrap(), "{image}");

        podman.load_archive(&archive).await.unwrap();
        assert!(podman.image_exists(&image).await.unwrap(), "{format}");
        if format == "docker-archive" {
            // docker-archive keeps the image config, hence the id.
            assert_eq!(podman.image_id(&image).await.unwrap(), Some(built.clone()));
        }
    }

    let missing = dir.path().join("missing.tar");
    let err = podman.load_archive(&missing).await.unwrap_err().to_string();
    assert!(err.contains(&missing.display().to_string()), "{err}");

    let garbage = dir.path().join("garbage.tar");
    std::fs::write(&garbage, b"this is not an image archive").unwrap();
    let err = podman.load_archive(&garbage).await.unwrap_err().to_string();
    assert!(err.contains(&garbage.display().to_string()), "{err}");

    // Nothing listens on port 1: the pull fails fast, naming the image.
    let unreachable = "localhost:1/mirror-registry/nothing:latest";
    let err = podman.pull(unreachable).await.unwrap_err().to_string();
    assert!(err.contains(unreachable), "{err}");
}

#[tokio::test]
async fn systemd_restart_recovering_resets_a_failed_unit_and_starts_it_once() {
    if skip() {
        return;
    }
    let systemd = connect_systemd().await;
    let dir = systemd::unit_dir(Scope::User).unwrap();
    let mut cleanup = Cleanup::default();
    let tmp = tempfile::tempdir().unwrap();

    // Fails its first start only (its ExecStartPre), as a unit that lost a
    // race with its previous container's removal would; every attempt
    // leaves a line in its counter.
    let flaky = format!("{}.service", unique("flaky"));
    let always = format!("{}.service", unique("broken"));
    cleanup.units.push(flaky.clone());
    cleanup.units.push(always.clone());
    let (flaky_count, always_count) = (tmp.path().join("flaky"), tmp.path().join("always"));
    let flag = tmp.path().join("flag");
    write_unit(
        &dir,
        &flaky,
        &format!(
            "[Unit]\nDescription=mirror-registry host test (fails once)\n\n\
             [Service]\nExecStartPre=/bin/sh -c 'echo x >> {c}; test -e {f} || {{ touch {f}; exit 1; }}'\n\
             ExecStart=/bin/sleep 300\n",
            c = flaky_count.display(),
            f = flag.display()
        ),
    );
    write_unit(
        &dir,
        &always,
        &format!(
            "[Unit]\nDescription=mirror-registry host test (always fails)\n\n\
             [Service]\nExecStartPre=/bin/sh -c 'echo x >> {c}; exit 1'\n\
             ExecStart=/bin/sleep 300\n",
            c = always_count.display()
        ),
    );
    systemd.reload().await.unwrap();
    let attempts = |p: &Path| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .count()
    };

    systemd.restart_recovering(&flaky).await.unwrap();
    assert_eq!(systemd.unit(&flaky).await.unwrap().active_state, "active");
    assert_eq!(
        attempts(&flaky_count),
        2,
        "the failed restart, then one start"
    );

    let err = systemd
        .restart_recovering(&always)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&always), "names the unit: {err}");
    assert!(err.contains("'failed'"), "names the job result: {err}");
    assert!(err.contains("after a failed restart"), "{err}");
    assert_eq!(
        attempts(&always_count),
        2,
        "one start after the restart, no more"
    );
    assert_eq!(systemd.unit(&always).await.unwrap().active_state, "failed");
}
