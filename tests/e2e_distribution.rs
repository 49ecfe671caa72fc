//! End to end on the real host: a spec file dropped into the watched
//! directory becomes a registry that podman and skopeo push to with verified
//! TLS; a port change converges with the image kept; a broken spec leaves it
//! serving; removing the file tears it down and keeps the data.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use mirror_registry::api::Phase;
use mirror_registry::spec_file::splice::without_status;
use sha2::{Digest, Sha256};

const TEST_IMAGE: &str = "containers-storage:localhost/mirror-registry/testimage:latest";

/// Digest of the manifest skopeo wrote into a `dir:` copy.
fn dir_digest(dir: &Path) -> String {
    let manifest = std::fs::read(dir.join("manifest.json")).unwrap();
    format!("sha256:{}", hex::encode(Sha256::digest(manifest)))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn spec_file_to_registry_and_back() {
    let mut lab = Lab::new();
    let name = unique("e2e");
    let port = free_port();
    lab.track(&name, port);
    let path = lab.spec_path(&name);
    let root = lab.root(&name);
    lab.start(&[]);

    // 1. Drop the spec; wait for Ready in the file's own status.
    let spec = lab.spec(&name, port, "  # the user's comment stays\n");
    let t0 = Instant::now();
    lab.put(&name, &spec);
    let st = wait_phase(&path, Phase::Ready, Duration::from_secs(120));
    eprintln!(
        "FIGURE spec drop -> Ready: {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        without_status(&text),
        without_status(&spec),
        "only status was added"
    );
    assert!(text.starts_with("# written by a test\n"));
    assert_eq!(
        st.endpoint.as_deref(),
        Some(format!("https://localhost:{port}").as_str())
    );
    assert_all_conditions_true(&st);
    let ca = st.ca_file.clone().unwrap();
    assert_eq!(ca, root.join("tls/ca.crt"));
    assert_eq!(
        st.credentials_file.as_deref(),
        Some(root.join("secrets/init-credentials").as_path())
    );
    assert_eq!(st.components.len(), 1);
    assert_eq!(st.components[0].unit, format!("{name}-registry.service"));
    assert!(st.components[0].healthy);

    // Layout, modes, units enabled, the CA trusted by the host.
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("secrets")), 0o700);
    assert_eq!(mode(&root.join("secrets/init-credentials")), 0o600);
    assert_eq!(mode(&root.join("secrets/htpasswd")), 0o600);
    assert_eq!(mode(&root.join("tls/tls.key")), 0o600);
    for u in [
        format!("{name}-pod.service"),
        format!("{name}-registry.service"),
    ] {
        assert_eq!(unit_active(&u), "active", "{u}");
        let enabled = sh("systemctl", &["--user", "is-enabled", &u]);
        assert_eq!(
            String::from_utf8_lossy(&enabled.stdout).trim(),
            "enabled",
            "{u}"
        );
    }
    let trust = format!("/etc/containers/certs.d/localhost:{port}/ca.crt");
    assert_eq!(std::fs::read(&trust).unwrap(), std::fs::read(&ca).unwrap());
    // The pod on a network of its own, labelled as the registry's, whose
    // MTU is loopback's rather than podman's default 1500 (the registry's
    // speed to clients on this host).
    let network = format!("{name}-network");
    let net = sh_ok(
        "podman",
        &[
            "network",
            "inspect",
            "--format",
            "{{index .Options \"mtu\"}} {{index .Labels \"io.mirrorregistry.owner\"}} {{.DNSEnabled}}",
            &network,
        ],
    );
    assert_eq!(net.trim(), format!("65520 {name} false"));
    assert_eq!(
        container_mtu(&format!("{name}-registry")),
        "65520",
        "the container's interface"
    );
    let (user, password) = credentials(&root);
    assert!(password.len() >= 24);
    assert!(
        !lab.logs().contains(&password),
        "the password must never reach the logs"
    );
    assert!(!std::fs::read_to_string(&path).unwrap().contains(&password));

    // 2. Push with the generated credentials and the CA, pull back, same digest.
    let auth = lab.dir.path().join("auth.json");
    login(&auth, &format!("localhost:{port}"), &user, &password);
    let dest = format!("docker://localhost:{port}/e2e/busybox:1");
    skopeo(&auth, &["copy", TEST_IMAGE, &dest]);
    let pushed = skopeo(&auth, &["inspect", "--format", "{{.Digest}}", &dest])
        .trim()
        .to_string();
    let pulled_dir = lab.dir.path().join("pulled");
    skopeo(
        &auth,
        &["copy", &dest, &format!("dir:{}", pulled_dir.display())],
    );
    assert_eq!(dir_digest(&pulled_dir), pushed);

    // 3. Change the port: converges, the image is still there, the old
    //    trust entry is gone.
    let port2 = free_port();
    lab.track(&name, port2);
    let hash1 = st.observed_spec_hash.clone();
    let edited = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&format!("port: {port}\n"), &format!("port: {port2}\n"));
    std::fs::write(&path, edited).unwrap();
    let st2 = wait_for(
        Duration::from_secs(120),
        "the port change to converge",
        || {
            file_status(&path).filter(|s| {
                s.phase == Phase::Ready
                    && s.observed_spec_hash != hash1
                    && s.endpoint.as_deref() == Some(format!("https://localhost:{port2}").as_str())
            })
        },
    );
    assert_eq!(st2.phase, Phase::Ready);
    assert!(!Path::new(&format!("/etc/containers/certs.d/localhost:{port}")).exists());
    login(&auth, &format!("localhost:{port2}"), &user, &password);
    let dest2 = format!("docker://localhost:{port2}/e2e/busybox:1");
    let digest2 = skopeo(&auth, &["inspect", "--format", "{{.Digest}}", &dest2])
        .trim()
        .to_string();
    assert_eq!(digest2, pushed, "the image survived the port change");

    // 4. Break the spec: reported, and the registry keeps serving.
    let good = std::fs::read_to_string(&path).unwrap();
    let broken = good.replace(&format!("port: {port2}\n"), "port: 70000\n  prot: 1\n");
    std::fs::write(&path, &broken).unwrap();
    let st3 = wait_for(Duration::from_secs(60), "SpecValid False", || {
        file_status(&path)
            .filter(|s| condition(s, "SpecValid").is_some_and(|c| c.status == "False"))
    });
    let msg = &condition(&st3, "SpecValid").unwrap().message;
    assert!(
        msg.contains("spec.port: must be 1-65535, got 70000"),
        "{msg}"
    );
    assert!(msg.contains("spec.prot: unknown field"), "{msg}");
    assert_eq!(st3.phase, Phase::Failed);
    assert_eq!(
        without_status(&std::fs::read_to_string(&path).unwrap()),
        without_status(&broken),
        "the user's broken text is kept as written"
    );
    assert_eq!(unit_active(&format!("{name}-registry.service")), "active");
    let still = skopeo(&auth, &["inspect", "--format", "{{.Digest}}", &dest2])
        .trim()
        .to_string();
    assert_eq!(still, pushed, "still serving with a broken spec");

    // 5. Delete the file: units, pod and containers go; the data stays.
    std::fs::remove_file(&path).unwrap();
    wait_for(Duration::from_secs(60), "teardown", || {
        (!exists("pod", &format!("{name}-pod"))
            && !exists("container", &format!("{name}-registry"))
            && !lab.state().join(&name).join("owned.json").exists())
        .then_some(())
    });
    let home = std::env::var("HOME").unwrap();
    for u in [
        format!("{name}-pod.service"),
        format!("{name}-registry.service"),
    ] {
        assert!(
            !Path::new(&format!("{home}/.config/systemd/user/{u}")).exists(),
            "{u} file removed"
        );
        assert_ne!(unit_active(&u), "active", "{u}");
    }
    assert!(!Path::new(&format!("/etc/containers/certs.d/localhost:{port2}")).exists());
    assert!(
        !exists("network", &network),
        "the network goes with the pod"
    );
    assert!(exists("volume", &format!("{name}-storage")), "data kept");
    assert!(
        root.join("secrets/init-credentials").exists(),
        "credentials kept"
    );
}

/// The MTU of a running container's interface, seen from the host inside
/// its namespace (the registry image has no shell tools); empty while it
/// does not run.
fn container_mtu(container: &str) -> String {
    let out = |o: std::process::Output| String::from_utf8_lossy(&o.stdout).trim().to_string();
    let pid = out(sh(
        "podman",
        &["inspect", "--format", "{{.State.Pid}}", container],
    ));
    if pid.is_empty() || pid == "0" {
        return String::new();
    }
    let link = out(sh(
        "nsenter",
        &["-t", &pid, "-n", "ip", "-o", "link", "show", "eth0"],
    ));
    link.split_whitespace()
        .skip_while(|w| *w != "mtu")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// Drops `networks` from an ownership record, as a record written before
/// the field (or by a run that died before recording) has none.
fn forget_networks(record: &Path) {
    let mut rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(record).unwrap()).unwrap();
    rec.as_object_mut().unwrap().remove("networks");
    std::fs::write(record, serde_json::to_vec_pretty(&rec).unwrap()).unwrap();
}

/// A registry as the version before its own network left it: the pod on
/// podman's default network (MTU 1500), no network in its ownership
/// record. The controller creates the network, records it, moves the pod
/// onto it with one restart, and the pushed image is still served.
#[test]
fn an_upgrade_moves_the_pod_onto_its_own_network() {
    let mut lab = Lab::new();
    let name = unique("e2e-net");
    let port = free_port();
    lab.track(&name, port);
    let path = lab.spec_path(&name);
    let root = lab.root(&name);
    let network = format!("{name}-network");
    let container = format!("{name}-registry");
    let pod_unit = format!("{name}-pod.service");
    lab.start(&["--resync-interval", "1h"]);
    lab.put(&name, &lab.spec(&name, port, ""));
    wait_phase(&path, Phase::Ready, Duration::from_secs(120));
    let (user, password) = credentials(&root);
    let auth = lab.dir.path().join("auth.json");
    login(&auth, &format!("localhost:{port}"), &user, &password);
    let dest = format!("docker://localhost:{port}/e2e/busybox:1");
    skopeo(&auth, &["copy", TEST_IMAGE, &dest]);
    let pushed = skopeo(&auth, &["inspect", "--format", "{{.Digest}}", &dest]);
    lab.stop();

    // Back to what the previous version ran.
    let unit_file = Path::new(&std::env::var("HOME").unwrap())
        .join(".config/systemd/user")
        .join(&pod_unit);
    let text = std::fs::read_to_string(&unit_file).unwrap();
    let old = text.replace(&format!("\t--network {network} \\\n"), "");
    assert_ne!(old, text, "the pod unit names the network");
    std::fs::write(&unit_file, old).unwrap();
    sh_ok("systemctl", &["--user", "daemon-reload"]);
    sh_ok("systemctl", &["--user", "restart", &pod_unit]);
    sh_ok(
        "systemctl",
        &["--user", "start", &format!("{name}-registry.service")],
    );
    sh_ok("podman", &["network", "rm", &network]);
    let record = lab.state().join(&name).join("owned.json");
    forget_networks(&record);
    assert!(!std::fs::read_to_string(&record).unwrap().contains(&network));
    wait_for(Duration::from_secs(60), "the old pod to serve", || {
        (container_mtu(&container) == "1500").then_some(())
    });

    lab.start(&["--resync-interval", "1h"]);
    let st = wait_for(
        Duration::from_secs(120),
        "the pod on its own network",
        || {
            file_status(&path).filter(|s| {
                s.phase == Phase::Ready
                    && exists("network", &network)
                    && exists("container", &container)
                    && container_mtu(&container) == "65520"
            })
        },
    );
    assert_all_conditions_true(&st);
    let rec = std::fs::read_to_string(&record).unwrap();
    assert!(rec.contains(&format!("\"{network}\"")), "recorded: {rec}");
    login(&auth, &format!("localhost:{port}"), &user, &password);
    let now = skopeo(&auth, &["inspect", "--format", "{{.Digest}}", &dest]);
    assert_eq!(now, pushed, "the image survived the move");

    // A network of the registry's that its record lost (a run that died
    // between creating and recording) is recorded again, so teardown
    // removes it.
    lab.stop();
    forget_networks(&record);
    lab.start(&["--resync-interval", "1h"]);
    wait_for(
        Duration::from_secs(60),
        "the network recorded again",
        || {
            std::fs::read_to_string(&record)
                .ok()
                .filter(|t| t.contains(&format!("\"{network}\"")))
        },
    );
    std::fs::remove_file(&path).unwrap();
    wait_for(Duration::from_secs(60), "teardown", || {
        (!exists("pod", &format!("{name}-pod")) && !exists("network", &network)).then_some(())
    });
}
