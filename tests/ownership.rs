//! Only what the controller created is ever removed, and nothing it did not
//! create is replaced, against the real host: deletionPolicy Delete on a
//! root or storage path that already held a user's files, a user's file
//! added to a root the controller made, a symlinked root; and a container,
//! pod, volume, unit file or trust entry that already carries a registry's
//! name.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use mirror_registry::api::{Phase, Status};

const READY: Duration = Duration::from_secs(90);
const TEST_IMAGE: &str = "localhost/mirror-registry/testimage:latest";

fn unit_dir() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
        .join(".config/systemd/user")
}

/// A distribution spec with the given root and extra spec lines.
fn spec(name: &str, port: u16, root: &Path, extra: &str) -> String {
    format!(
        "apiVersion: mirrorregistry.io/v1alpha1\nkind: MirrorRegistry\nmetadata:\n  name: {name}\nspec:\n  engine: distribution\n  hostname: localhost\n  port: {port}\n  root: {}\n{extra}",
        root.display()
    )
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Waits until the registry's record and status copy are gone.
fn wait_torn_down(lab: &Lab, name: &str) {
    wait_for(READY, &format!("{name} torn down"), || {
        (!lab.state().join(name).join("owned.json").exists()).then_some(())
    });
}

/// The status copy in the state directory (refused registries may have no
/// other).
fn state_status(lab: &Lab, name: &str) -> Option<Status> {
    let text = std::fs::read_to_string(lab.state().join(name).join("status.yaml")).ok()?;
    serde_yaml::from_str(&text).ok()
}

fn wait_conflict(lab: &Lab, name: &str, needle: &str) -> Status {
    wait_for(READY, &format!("{name}: Conflict naming {needle}"), || {
        state_status(lab, name).filter(|s| {
            s.phase == Phase::Failed
                && condition(s, "UnitsActive")
                    .is_some_and(|c| c.reason == "Conflict" && c.message.contains(needle))
        })
    })
}

/// deletionPolicy Delete removes only what the controller created: a root
/// and a storage path that existed keep the user's files; a root the
/// controller made keeps a file the user added (and says so); a symlinked
/// root is never followed.
#[test]
fn delete_removes_only_what_the_controller_created() {
    let mut lab = Lab::new();
    lab.start(&[]);
    let base = lab.dir.path().to_path_buf();

    // 1. A root and storage path that already exist, with a user's files.
    let name = unique("own-pre");
    let port = free_port();
    lab.track(&name, port);
    let root = base.join("user-root");
    let storage = base.join("user-storage");
    write(&root.join("notes.txt"), "the user's");
    write(&root.join("mine/keep.txt"), "also the user's");
    write(&storage.join("README"), "the user's storage");
    lab.put(
        &name,
        &spec(
            &name,
            port,
            &root,
            &format!(
                "  storage: {{path: {}}}\n  deletionPolicy: Delete\n",
                storage.display()
            ),
        ),
    );
    wait_phase(&lab.spec_path(&name), Phase::Ready, READY);
    assert!(root.join("secrets/init-credentials").exists());
    std::fs::remove_file(lab.spec_path(&name)).unwrap();
    wait_torn_down(&lab, &name);
    assert_eq!(read(&root.join("notes.txt")), "the user's");
    assert_eq!(read(&root.join("mine/keep.txt")), "also the user's");
    assert_eq!(read(&storage.join("README")), "the user's storage");
    for d in ["config", "tls", "secrets"] {
        assert!(!root.join(d).exists(), "the controller's {d} removed");
    }
    assert!(
        lab.logs()
            .contains("kept: it existed before the registry used it"),
        "the kept root is said: {}",
        lab.logs()
    );

    // 2. A root the controller made, where the user later added a file.
    let name = unique("own-add");
    let port = free_port();
    lab.track(&name, port);
    let root = base.join("roots").join(&name);
    lab.put(
        &name,
        &spec(&name, port, &root, "  deletionPolicy: Delete\n"),
    );
    wait_phase(&lab.spec_path(&name), Phase::Ready, READY);
    write(&root.join("tls/my-client.pem"), "the user's");
    std::fs::remove_file(lab.spec_path(&name)).unwrap();
    wait_torn_down(&lab, &name);
    assert_eq!(read(&root.join("tls/my-client.pem")), "the user's");
    assert!(!root.join("tls/tls.key").exists() && !root.join("tls/ca.key").exists());
    assert!(!root.join("secrets").exists() && !root.join("config").exists());
    assert!(
        !exists("volume", &format!("{name}-storage")),
        "its own volume goes"
    );
    let logs = lab.logs();
    assert!(
        logs.contains("tls kept: it holds my-client.pem"),
        "what was kept and why: {logs}"
    );

    // 3. A root that is a symlink to the user's directory.
    let name = unique("own-link");
    let port = free_port();
    lab.track(&name, port);
    let target = base.join("link-target");
    write(&target.join("precious.txt"), "the user's");
    let link = base.join("link-root");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    lab.put(
        &name,
        &spec(&name, port, &link, "  deletionPolicy: Delete\n"),
    );
    wait_phase(&lab.spec_path(&name), Phase::Ready, READY);
    std::fs::remove_file(lab.spec_path(&name)).unwrap();
    wait_torn_down(&lab, &name);
    assert_eq!(read(&target.join("precious.txt")), "the user's");
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
    assert!(target.is_dir());
}

fn podman_ok(args: &[&str]) -> String {
    sh_ok("podman", args)
}

/// Someone else's object under a registry's name: the registry refuses
/// (Conflict naming it), the object is untouched through converge and
/// teardown, and once it is gone the registry converges by itself.
#[test]
fn foreign_objects_are_never_replaced_or_removed() {
    let mut lab = Lab::new();
    lab.start(&["--resync-interval", "1h"]);
    for kind in [
        "container",
        "pod",
        "network",
        "volume",
        "unit file",
        "trust entry",
    ] {
        let name = unique("own-foreign");
        let port = free_port();
        lab.track(&name, port);
        let root = lab.root(&name);
        let ctr = format!("{name}-registry");
        let pod = format!("{name}-pod");
        let volume = format!("{name}-storage");
        let network = format!("{name}-network");
        let unit_file = unit_dir().join(format!("{name}-registry.service"));
        let trust = PathBuf::from(format!("/etc/containers/certs.d/localhost:{port}"));
        // The foreign object, and how to see it is untouched.
        let (needle, fingerprint): (String, Box<dyn Fn() -> String>) = match kind {
            "container" => {
                podman_ok(&["run", "-d", "--name", &ctr, TEST_IMAGE, "sleep", "600"]);
                let c = ctr.clone();
                (
                    format!("container {ctr}"),
                    Box::new(move || {
                        podman_ok(&[
                            "inspect",
                            "--format",
                            "{{.Id}} {{.State.StartedAt}} {{.State.Running}}",
                            &c,
                        ])
                    }),
                )
            }
            "pod" => {
                podman_ok(&["pod", "create", "--name", &pod]);
                let p = pod.clone();
                (
                    format!("pod {pod}"),
                    Box::new(move || podman_ok(&["pod", "inspect", "--format", "{{.Id}}", &p])),
                )
            }
            "network" => {
                podman_ok(&["network", "create", "--disable-dns", &network]);
                let n = network.clone();
                (
                    format!("network {network}"),
                    Box::new(move || {
                        podman_ok(&["network", "inspect", "--format", "{{.ID}} {{.Options}}", &n])
                    }),
                )
            }
            "volume" => {
                podman_ok(&["volume", "create", &volume]);
                let mount =
                    podman_ok(&["volume", "inspect", "--format", "{{.Mountpoint}}", &volume]);
                write(&Path::new(mount.trim()).join("blob"), "someone's data");
                let v = volume.clone();
                (
                    format!("volume {volume}"),
                    Box::new(move || {
                        let m =
                            podman_ok(&["volume", "inspect", "--format", "{{.Mountpoint}}", &v]);
                        read(&Path::new(m.trim()).join("blob"))
                    }),
                )
            }
            "unit file" => {
                write(
                    &unit_file,
                    "[Service]\nExecStart=/bin/true\n# someone's unit\n",
                );
                let f = unit_file.clone();
                (
                    format!("unit file {}", unit_file.display()),
                    Box::new(move || read(&f)),
                )
            }
            _ => {
                write(&trust.join("ca.crt"), "someone's CA\n");
                let t = trust.clone();
                (
                    format!("trust directory {}", trust.display()),
                    Box::new(move || read(&t.join("ca.crt"))),
                )
            }
        };
        let before = fingerprint();
        lab.put(
            &name,
            &spec(&name, port, &root, "  deletionPolicy: Delete\n"),
        );
        let st = wait_conflict(&lab, &name, &needle);
        let ready = condition(&st, "Ready").unwrap();
        assert_eq!(ready.reason, "Conflict", "{kind}: {ready:?}");
        assert_eq!(fingerprint(), before, "{kind} untouched by converge");
        assert!(!root.exists(), "{kind}: nothing of the registry written");
        assert!(
            !lab.state().join(&name).join("owned.json").exists(),
            "{kind}: nothing recorded"
        );
        if kind != "container" {
            assert!(!exists("container", &ctr), "{kind}: nothing started");
        }
        // Teardown of the refused registry leaves it alone too.
        std::fs::remove_file(lab.spec_path(&name)).unwrap();
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(fingerprint(), before, "{kind} untouched by teardown");

        // Back, and the object goes: it converges by itself.
        lab.put(
            &name,
            &spec(&name, port, &root, "  deletionPolicy: Delete\n"),
        );
        wait_conflict(&lab, &name, &needle);
        match kind {
            "container" => drop(podman_ok(&["rm", "-f", &ctr])),
            "pod" => drop(podman_ok(&["pod", "rm", "-f", &pod])),
            "network" => drop(podman_ok(&["network", "rm", &network])),
            "volume" => drop(podman_ok(&["volume", "rm", "-f", &volume])),
            "unit file" => std::fs::remove_file(&unit_file).unwrap(),
            _ => std::fs::remove_dir_all(&trust).unwrap(),
        }
        let st = wait_phase(&lab.spec_path(&name), Phase::Ready, READY);
        assert_all_conditions_true(&st);
        std::fs::remove_file(lab.spec_path(&name)).unwrap();
        wait_torn_down(&lab, &name);
    }
}

/// The units clean up after themselves, with no controller running: a
/// pod of the registry's left behind (as a reboot or a crash leaves it,
/// with its container) is removed when the pod unit starts, and a container
/// of the registry's left in the pod is removed by the unit's cleanup after
/// its first run fails, and the unit comes back by itself.
#[test]
fn the_units_remove_what_the_registry_left_behind() {
    let mut lab = Lab::new();
    lab.start(&[]);
    let name = unique("own-left");
    let port = free_port();
    lab.track(&name, port);
    lab.put(&name, &lab.spec(&name, port, ""));
    wait_phase(&lab.spec_path(&name), Phase::Ready, READY);
    lab.stop();
    let pod_unit = format!("{name}-pod.service");
    let unit = format!("{name}-registry.service");
    let (pod, ctr) = (format!("{name}-pod"), format!("{name}-registry"));
    let owner = format!("io.mirrorregistry.owner={name}");
    let id = |kind: &str, what: &str| podman_ok(&[kind, "inspect", "--format", "{{.Id}}", what]);

    // 1. An old pod of ours, with a container in it, in the way.
    sh_ok("systemctl", &["--user", "stop", &unit, &pod_unit]);
    assert!(!exists("pod", &pod));
    podman_ok(&["pod", "create", "--name", &pod, "--label", &owner]);
    podman_ok(&[
        "create", "--pod", &pod, "--name", &ctr, "--label", &owner, TEST_IMAGE, "sleep", "600",
    ]);
    let (old_pod, old_ctr) = (id("pod", &pod), id("container", &ctr));
    sh_ok("systemctl", &["--user", "start", &unit]);
    wait_for(READY, "serving from a new pod", || {
        serving(port).then_some(())
    });
    assert_ne!(id("pod", &pod), old_pod, "the old pod was replaced");
    assert_ne!(id("container", &ctr), old_ctr, "its container went with it");
    assert_eq!(unit_active(&pod_unit), "active");

    // 2. A container of ours left in the running pod.
    sh_ok("systemctl", &["--user", "stop", &unit]);
    assert!(!exists("container", &ctr));
    podman_ok(&[
        "create", "--pod", &pod, "--name", &ctr, "--label", &owner, TEST_IMAGE, "sleep", "600",
    ]);
    let left = id("container", &ctr);
    let _ = sh("systemctl", &["--user", "start", &unit]);
    wait_for(READY, "serving again after the unit's own cleanup", || {
        (serving(port) && exists("container", &ctr) && id("container", &ctr) != left).then_some(())
    });
    assert_eq!(unit_active(&unit), "active");
}

/// The units guard themselves, with no controller running: systemd
/// restarting a registry's unit never replaces a container of the same
/// name that is not the registry's.
#[test]
fn a_unit_never_replaces_a_foreign_container() {
    let mut lab = Lab::new();
    lab.start(&[]);
    let name = unique("own-unit");
    let port = free_port();
    lab.track(&name, port);
    lab.put(&name, &lab.spec(&name, port, ""));
    wait_phase(&lab.spec_path(&name), Phase::Ready, READY);
    lab.stop();
    let unit = format!("{name}-registry.service");
    let ctr = format!("{name}-registry");
    sh_ok("systemctl", &["--user", "stop", &unit]);
    assert!(!exists("container", &ctr));
    podman_ok(&["run", "-d", "--name", &ctr, TEST_IMAGE, "sleep", "600"]);
    let before = podman_ok(&["inspect", "--format", "{{.Id}} {{.State.StartedAt}}", &ctr]);
    // systemd starts it (as Restart=always or a boot would): the run fails.
    // A Type=simple unit reads active until `podman run` has failed, which
    // takes a while on a loaded host: wait for that, not a fixed time.
    let _ = sh("systemctl", &["--user", "start", &unit]);
    wait_for(Duration::from_secs(60), "the unit's run to fail", || {
        (unit_active(&unit) != "active").then_some(())
    });
    assert_eq!(
        podman_ok(&["inspect", "--format", "{{.Id}} {{.State.StartedAt}}", &ctr]),
        before,
        "the foreign container was neither replaced nor restarted"
    );
    // Stopping the unit leaves it alone as well.
    let _ = sh("systemctl", &["--user", "stop", &unit]);
    assert!(exists("container", &ctr), "ExecStop/ExecStopPost spared it");
    // Once it is gone, the registry comes back with the controller.
    podman_ok(&["rm", "-f", &ctr]);
    lab.start(&[]);
    wait_for(READY, "serving again", || serving(port).then_some(()));
}

/// `mrctl install` of a new name whose `<name>.yaml` already holds another
/// registry's spec (a file renamed by hand) refuses, writing nothing: that
/// file is the other registry's, and writing over it would tear it down.
/// Found by the random sequences (tests/sequences.rs).
#[test]
fn install_never_writes_over_anothers_spec_file() {
    let lab = Lab::new();
    let (a, b) = (unique("own-a"), unique("own-b"));
    let text = lab.spec(&a, free_port(), "");
    std::fs::write(lab.watch().join(format!("{b}.yaml")), &text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mrctl"))
        .args(["--watch-dir", lab.watch().to_str().unwrap()])
        .args([
            "--state-dir",
            lab.state().to_str().unwrap(),
            "--scope",
            "user",
        ])
        .args(["install", "--engine", "distribution", "--name", &b])
        .args(["--quayHostname", &format!("localhost:{}", free_port())])
        .args(["--controller-unit", &unique("own-ctl"), "--timeout", "5s"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("already exists and holds mirrorregistry/{a}")),
        "{err}"
    );
    assert_eq!(
        read(&lab.watch().join(format!("{b}.yaml"))),
        text,
        "untouched"
    );
    assert!(!lab.state().join(&b).exists(), "nothing recorded");
}
