//! `mrctl uninstall` keeps data unless the user consents, whatever the spec
//! file says, and prints what exists afterwards; `mrctl delete --dry-run`
//! says what deletionPolicy Delete would remove and removes nothing. Against
//! the real host, with the controller running as a process (the controller's
//! own unit is covered by tests/mrctl.rs).

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use mirror_registry::api::Phase;

const READY: Duration = Duration::from_secs(90);
const TEST_IMAGE: &str = "containers-storage:localhost/mirror-registry/testimage:latest";

fn mrctl(lab: &Lab, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mrctl"))
        .args(["--watch-dir", lab.watch().to_str().unwrap()])
        .args([
            "--state-dir",
            lab.state().to_str().unwrap(),
            "--scope",
            "user",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(lab: &Lab, args: &[&str]) -> String {
    let o = mrctl(lab, args);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        o.status.code(),
        Some(0),
        "mrctl {args:?}\n{out}\n{}\n--- controller\n{}",
        String::from_utf8_lossy(&o.stderr),
        lab.logs()
    );
    out
}

fn digest(auth: &Path, image: &str) -> String {
    skopeo(auth, &["inspect", "--format", "{{.Digest}}", image])
        .trim()
        .to_string()
}

/// The line of `out` that starts with `prefix`.
fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{out}"))
}

#[test]
fn uninstall_keeps_data_without_consent_whatever_the_spec_says() {
    let mut lab = Lab::new();
    lab.start(&[]);
    let name = unique("unins");
    let port = free_port();
    lab.track(&name, port);
    let root = lab.root(&name);
    let volume = format!("{name}-storage");
    let text = lab.spec(&name, port, "  deletionPolicy: Delete\n");
    lab.put(&name, &text);
    wait_phase(&lab.spec_path(&name), Phase::Ready, READY);
    let (user, password) = credentials(&root);
    let auth = lab.dir.path().join("auth.json");
    let host_port = format!("localhost:{port}");
    login(&auth, &host_port, &user, &password);
    let image = format!("docker://{host_port}/unins/busybox:1");
    skopeo(&auth, &["copy", TEST_IMAGE, &image]);
    let pushed = digest(&auth, &image);
    // No controller unit: the lab's controller does the teardown.
    let ctl = unique("unins-ctl");

    // 1. delete --dry-run: what Delete would remove, nothing removed.
    let out = ok(&lab, &["delete", &name, "--dry-run"]);
    assert!(out.contains("deletionPolicy Delete"), "{out}");
    assert!(out.contains(&format!("  - volume {volume}\n")), "{out}");
    assert!(out.contains(&format!("  - {}\n", root.display())), "{out}");
    assert!(out.contains("would be deleted (dry run"), "{out}");
    assert!(lab.spec_path(&name).exists() && exists("volume", &volume));
    assert_eq!(
        wait_phase(&lab.spec_path(&name), Phase::Ready, READY).phase,
        Phase::Ready
    );

    // 2. uninstall without consent (no terminal): the spec says Delete, the
    // data stays, and the printed lines say exactly what exists.
    let out = ok(
        &lab,
        &[
            "uninstall",
            "--name",
            &name,
            "--controller-unit",
            &ctl,
            "--timeout",
            "60s",
        ],
    );
    assert!(out.contains("deletionPolicy set to Retain"), "{out}");
    let kept = line(&out, "data kept: ");
    assert!(kept.contains(&format!("volume {volume}")), "{out}");
    assert!(kept.contains(&root.display().to_string()), "{out}");
    assert!(!out.contains("no longer present"), "{out}");
    assert!(!lab.spec_path(&name).exists());
    assert!(!lab.state().join(&name).join("owned.json").exists());
    assert!(exists("volume", &volume), "volume kept");
    assert!(root.join("secrets/init-credentials").exists(), "root kept");
    assert!(!exists("container", &format!("{name}-registry")));

    // 3. The same spec (still saying Delete) serves the kept image again.
    lab.put(&name, &text);
    wait_phase(&lab.spec_path(&name), Phase::Ready, READY);
    login(&auth, &host_port, &user, &password);
    assert_eq!(digest(&auth, &image), pushed, "kept blobs served again");

    // 4. uninstall --autoApprove: the data goes, and the lines say so.
    let out = ok(
        &lab,
        &[
            "uninstall",
            "--name",
            &name,
            "--controller-unit",
            &ctl,
            "--timeout",
            "60s",
            "--autoApprove",
        ],
    );
    let deleted = line(&out, "data deleted: ");
    assert!(deleted.contains(&format!("volume {volume}")), "{out}");
    assert!(deleted.contains(&root.display().to_string()), "{out}");
    assert!(!out.contains("still present"), "{out}");
    assert!(!exists("volume", &volume), "volume deleted");
    assert!(!root.exists(), "root deleted (the controller created it)");

    // 5. uninstall of a registry whose spec cannot be edited (invalid) and
    // whose record says Delete: refused, nothing removed.
    lab.put(&name, &text);
    wait_phase(&lab.spec_path(&name), Phase::Ready, READY);
    std::fs::write(lab.spec_path(&name), format!("{text}  bogus: 1\n")).unwrap();
    wait_for(READY, "SpecValid False", || {
        file_status(&lab.spec_path(&name))
            .filter(|s| condition(s, "SpecValid").is_some_and(|c| c.status == "False"))
    });
    let o = mrctl(
        &lab,
        &[
            "uninstall",
            "--name",
            &name,
            "--controller-unit",
            &ctl,
            "--timeout",
            "20s",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot be told to keep the data") && err.contains("nothing was removed"),
        "{err}"
    );
    assert!(lab.spec_path(&name).exists() && exists("volume", &volume));
    assert!(serving(port));
}
