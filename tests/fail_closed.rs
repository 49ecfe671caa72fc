//! Faults of the controller's own, or of what it reads, never move it toward
//! destruction and never hang it: `--once` with podman's socket missing ends
//! by itself, non-zero, naming the socket; mrctl reads a FIFO or a symlink to
//! /dev/zero in the watch directory through the same bounded gate as the
//! controller, so it answers instead of blocking; the controller beside such
//! files keeps a registry converging. (A panicking reconcile and a poisoned
//! index are unit-tested in `reconcile::tests` and `reconcile::queue`.)

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use mirror_registry::api::Phase;

/// Runs `cmd` and kills it if it takes longer than `limit`; returns its
/// output and how long it took.
fn bounded(mut cmd: Command, limit: Duration) -> (std::process::Output, Duration) {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            return (child.wait_with_output().unwrap(), start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}; killed\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn once_without_podman_ends_by_itself_naming_the_socket() {
    let lab = Lab::new();
    let name = unique("fc-once");
    lab.put(&name, &lab.spec(&name, free_port(), ""));
    let socket = lab.dir.path().join("no-such/podman.sock");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mirror-registry-controller"));
    cmd.args(lab.controller_args(&["--once", "--podman-socket", socket.to_str().unwrap()]));
    // The documented bound is 30 s of trying to connect; allow slack.
    let (out, took) = bounded(cmd, Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&socket.display().to_string()),
        "names the socket: {err}"
    );
    eprintln!(
        "FIGURE --once without podman ended after {:.1} s",
        took.as_secs_f64()
    );
    // Nothing was created for the registry.
    assert!(!lab.root(&name).exists());
    assert!(!lab.state().join(&name).join("owned.json").exists());
}

#[test]
fn fifos_and_dev_zero_in_the_watch_dir_block_nothing() {
    let mut lab = Lab::new();
    let name = unique("fc-fifo");
    let port = free_port();
    lab.track(&name, port);
    lab.put(&name, &lab.spec(&name, port, ""));
    // A FIFO nobody writes to and a symlink to an endless file, both with a
    // spec's name: reading either without bound would hang.
    sh_ok("mkfifo", &[lab.watch().join("fifo.yaml").to_str().unwrap()]);
    std::os::unix::fs::symlink("/dev/zero", lab.watch().join("zero.yaml")).unwrap();
    lab.start(&[]);
    let st = wait_phase(&lab.spec_path(&name), Phase::Ready, Duration::from_secs(90));
    assert_all_conditions_true(&st);
    for args in [
        vec!["get"],
        vec!["get", "-o", "yaml"],
        vec!["get", "fifo", "-o", "json"],
        vec!["describe", &name],
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mrctl"));
        cmd.args(["--watch-dir", lab.watch().to_str().unwrap()])
            .args([
                "--state-dir",
                lab.state().to_str().unwrap(),
                "--scope",
                "user",
            ])
            .args(&args);
        let (out, _) = bounded(cmd, Duration::from_secs(20));
        let text = String::from_utf8_lossy(&out.stdout);
        if args == ["get"] {
            assert!(text.contains(&name), "{args:?}: {text}");
        }
    }
    // Still serving, never torn down.
    assert!(serving(port));
    assert!(lab.state().join(&name).join("owned.json").exists());
}
