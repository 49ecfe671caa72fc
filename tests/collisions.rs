//! Two registries never share a root, a storage path or volume, a database
//! volume or a port, against the real host: a copied spec that keeps the
//! first's root, a root nested in it, its storage path or volume, its port.
//! The newcomer says why (reason Conflict, naming the first and the field)
//! and nothing of the first changes: container, files, credentials, CA. Once
//! the first is gone the newcomer converges by itself.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use mirror_registry::api::{Phase, Status};

const READY: Duration = Duration::from_secs(90);

fn spec(name: &str, port: u16, root: &Path, extra: &str) -> String {
    format!(
        "apiVersion: mirrorregistry.io/v1alpha1\nkind: MirrorRegistry\nmetadata:\n  name: {name}\nspec:\n  engine: distribution\n  hostname: localhost\n  port: {port}\n  root: {}\n{extra}",
        root.display()
    )
}

/// Every file under `dir` with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

fn state_status(lab: &Lab, name: &str) -> Option<Status> {
    let text = std::fs::read_to_string(lab.state().join(name).join("status.yaml")).ok()?;
    serde_yaml::from_str(&text).ok()
}

/// What must not change about the first registry.
struct Snapshot {
    started: String,
    root: BTreeMap<PathBuf, Vec<u8>>,
    storage: BTreeMap<PathBuf, Vec<u8>>,
    trust: Vec<u8>,
}

fn snapshot(name: &str, root: &Path, storage: &Path, port: u16) -> Snapshot {
    Snapshot {
        started: started_at(&format!("{name}-registry")),
        root: tree(root),
        storage: tree(storage),
        trust: std::fs::read(format!("/etc/containers/certs.d/localhost:{port}/ca.crt")).unwrap(),
    }
}

#[test]
fn registries_never_share_root_storage_volume_or_port() {
    let mut lab = Lab::new();
    lab.start(&["--resync-interval", "1h"]);
    let a = unique("coll-a");
    let a_port = free_port();
    lab.track(&a, a_port);
    let a_root = lab.root(&a);
    let a_storage = lab.dir.path().join("a-blobs");
    lab.put(
        &a,
        &spec(
            &a,
            a_port,
            &a_root,
            &format!(
                "  storage: {{path: {}}}\n  deletionPolicy: Delete\n",
                a_storage.display()
            ),
        ),
    );
    wait_phase(&lab.spec_path(&a), Phase::Ready, READY);
    // Something stored, so the storage tree is not empty.
    let (user, password) = credentials(&a_root);
    let auth = lab.dir.path().join("auth.json");
    login(&auth, &format!("localhost:{a_port}"), &user, &password);
    skopeo(
        &auth,
        &[
            "copy",
            "containers-storage:localhost/mirror-registry/testimage:latest",
            &format!("docker://localhost:{a_port}/coll/busybox:1"),
        ],
    );
    let before = snapshot(&a, &a_root, &a_storage, a_port);
    assert!(!before.storage.is_empty());

    let a_volume_owner = unique("coll-v");
    let v_port = free_port();
    lab.track(&a_volume_owner, v_port);
    lab.put(
        &a_volume_owner,
        &spec(&a_volume_owner, v_port, &lab.root(&a_volume_owner), ""),
    );
    wait_phase(&lab.spec_path(&a_volume_owner), Phase::Ready, READY);
    let v_started = started_at(&format!("{a_volume_owner}-registry"));
    let shared_volume = format!("{a_volume_owner}-storage");

    let cases: Vec<(&str, String, String)> = vec![
        ("same root", format!("  root: {}\n", a_root.display()), "spec.root".into()),
        (
            "root nested in the other's root",
            format!("  root: {}\n", a_root.join("inner").display()),
            format!("overlaps {a}'s spec.root"),
        ),
        (
            "same storage path",
            format!("  storage: {{path: {}}}\n", a_storage.display()),
            "spec.storage.path".into(),
        ),
        (
            "storage path inside the other's root",
            format!("  storage: {{path: {}}}\n", a_root.join("blobs").display()),
            format!("overlaps {a}'s spec.root"),
        ),
        (
            "same storage volume",
            format!("  storage: {{volume: {shared_volume}}}\n"),
            format!("is also {a_volume_owner}'s spec.storage.volume"),
        ),
        (
            "a quay registry's database on the other's volume",
            format!("  engine: quay\n  database: {{volume: {shared_volume}}}\n"),
            format!("spec.database.volume volume {shared_volume} is also {a_volume_owner}'s spec.storage.volume"),
        ),
        (
            "same port (and so the same hostname:port)",
            format!("  port: {a_port}\n"),
            format!("is also {a}'s spec.port"),
        ),
    ];
    for (what, extra, needle) in &cases {
        let b = unique("coll-b");
        let b_port = free_port();
        lab.track(&b, b_port);
        // Spec fields given twice: the case's line wins (it comes last).
        let base = spec(&b, b_port, &lab.root(&b), "");
        let text = merge(&base, extra);
        lab.put(&b, &text);
        let st = wait_for(READY, &format!("{what}: Conflict"), || {
            state_status(&lab, &b)
                .filter(|s| condition(s, "UnitsActive").is_some_and(|c| c.reason == "Conflict"))
        });
        let c = condition(&st, "UnitsActive").unwrap();
        assert!(c.message.contains(needle.as_str()), "{what}: {}", c.message);
        assert_eq!(st.phase, Phase::Failed, "{what}");
        assert_eq!(condition(&st, "Ready").unwrap().reason, "Conflict");
        assert!(
            st.credentials_file.is_none(),
            "{what}: no other's credentials"
        );
        assert!(!exists("container", &format!("{b}-registry")), "{what}");
        assert!(!lab.root(&b).exists(), "{what}: nothing of b written");
        std::fs::remove_file(lab.spec_path(&b)).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        let after = snapshot(&a, &a_root, &a_storage, a_port);
        assert_eq!(after.started, before.started, "{what}: a not restarted");
        assert_eq!(
            after.root, before.root,
            "{what}: a's files, credentials and CA unchanged"
        );
        assert_eq!(after.storage, before.storage, "{what}: a's blobs unchanged");
        assert_eq!(
            after.trust, before.trust,
            "{what}: a's trust entry unchanged"
        );
        assert_eq!(
            started_at(&format!("{a_volume_owner}-registry")),
            v_started,
            "{what}"
        );
        assert!(exists("volume", &shared_volume));
        assert!(serving(a_port), "{what}: a still serves");
    }

    // The newcomer waits for the first to go, then converges by itself.
    let b = unique("coll-b");
    let b_port = free_port();
    lab.track(&b, b_port);
    lab.put(
        &b,
        &merge(
            &spec(&b, b_port, &lab.root(&b), ""),
            &format!("  root: {}\n", a_root.display()),
        ),
    );
    wait_for(READY, "b refused", || {
        state_status(&lab, &b)
            .filter(|s| condition(s, "UnitsActive").is_some_and(|c| c.reason == "Conflict"))
    });
    std::fs::remove_file(lab.spec_path(&a)).unwrap();
    let st = wait_phase(&lab.spec_path(&b), Phase::Ready, READY);
    assert_all_conditions_true(&st);
    assert!(
        a_root.join("secrets/init-credentials").exists(),
        "b's own now"
    );
}

/// `extra` spec lines replace those of the same key in `base`.
fn merge(base: &str, extra: &str) -> String {
    let keys: Vec<&str> = extra
        .lines()
        .filter_map(|l| l.trim().split(':').next())
        .collect();
    let mut out: Vec<String> = base
        .lines()
        .filter(|l| {
            !l.starts_with("  ")
                || !keys
                    .iter()
                    .any(|k| l.trim_start().starts_with(&format!("{k}:")))
        })
        .map(str::to_string)
        .collect();
    out.extend(extra.lines().map(str::to_string));
    out.join("\n") + "\n"
}

/// A running registry edited onto another's port: refused (Conflict naming
/// the other), its status says so rather than what its old containers or
/// the other's port show, it keeps serving as it was, and the other is
/// untouched. Found by the random sequences (tests/sequences.rs).
#[test]
fn a_running_registry_edited_onto_anothers_port_says_conflict() {
    let mut lab = Lab::new();
    lab.start(&["--resync-interval", "1h"]);
    let (a, b) = (unique("coll-pa"), unique("coll-pb"));
    let (a_port, b_port) = (free_port(), free_port());
    lab.track(&a, a_port);
    lab.track(&b, b_port);
    lab.put(&a, &lab.spec(&a, a_port, ""));
    lab.put(&b, &lab.spec(&b, b_port, ""));
    wait_phase(&lab.spec_path(&a), Phase::Ready, READY);
    wait_phase(&lab.spec_path(&b), Phase::Ready, READY);
    let (a_started, b_started) = (
        started_at(&format!("{a}-registry")),
        started_at(&format!("{b}-registry")),
    );
    lab.put(&b, &lab.spec(&b, a_port, ""));
    let st = wait_for(READY, "b refused", || {
        file_status(&lab.spec_path(&b))
            .filter(|s| condition(s, "UnitsActive").is_some_and(|c| c.reason == "Conflict"))
    });
    assert_eq!(st.phase, Phase::Failed);
    let ready = condition(&st, "Ready").unwrap();
    assert_eq!(ready.reason, "Conflict", "{ready:?}");
    assert!(
        ready.message.contains(&format!("is also {a}'s spec.port")),
        "{ready:?}"
    );
    assert_eq!(
        st.endpoint.as_deref(),
        Some(format!("https://localhost:{b_port}").as_str()),
        "the endpoint it still serves"
    );
    // Several reconciles later the refusal still stands, nothing restarted.
    std::thread::sleep(Duration::from_secs(6));
    let st = file_status(&lab.spec_path(&b)).unwrap();
    assert_eq!(condition(&st, "UnitsActive").unwrap().reason, "Conflict");
    assert_eq!(started_at(&format!("{a}-registry")), a_started);
    assert_eq!(started_at(&format!("{b}-registry")), b_started);
    assert!(serving(a_port) && serving(b_port));
}
