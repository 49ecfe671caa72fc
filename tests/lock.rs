//! One controller per directory, against the real host: a second daemon or
//! a `--once` beside a running controller refuses at once and touches
//! nothing; a SIGKILLed holder's lock is free at once; the controller unit
//! mrctl installs waits for a controller started by hand to let go, and an
//! upgrade that replaces the unit goes through.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use mirror_registry::api::Phase;

const CONTROLLER: &str = env!("CARGO_BIN_EXE_mirror-registry-controller");
const EXIT_LOCKED: i32 = 3;

/// Runs a controller to its end, killing it if it outlives `bound` (a
/// refusal is expected long before). Returns its exit code, stderr and how
/// long it ran.
fn run_bounded(args: &[String], bound: Duration) -> (Option<i32>, String, Duration) {
    let t0 = Instant::now();
    let mut child = Command::new(CONTROLLER)
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while t0.elapsed() < bound {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let ran = t0.elapsed();
    if child.try_wait().ok().flatten().is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        ran,
    )
}

/// `args` with `--watch-dir`/`--state-dir` replaced.
fn with_dirs(lab: &Lab, watch: &Path, state: &Path, extra: &[&str]) -> Vec<String> {
    let mut a = lab.controller_args(extra);
    for (flag, v) in [("--watch-dir", watch), ("--state-dir", state)] {
        let i = a.iter().position(|x| x == flag).unwrap();
        a[i + 1] = v.display().to_string();
    }
    a
}

fn lock_record(state: &Path) -> String {
    std::fs::read_to_string(state.join(".lock")).unwrap_or_default()
}

fn holds(state: &Path, pid: u32) -> bool {
    lock_record(state).starts_with(&format!("pid={pid}\n"))
}

/// Every file under `dir` with its bytes, sorted: equal snapshots mean
/// nothing was written.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

/// A running controller with Ready registries: a second daemon on the same
/// directories, on the same watch directory with another state directory,
/// on the same state directory with another watch directory, and a `--once`
/// all exit at once with status 3, naming the holder and the directory;
/// the first one's registry is not restarted and no file changes.
#[test]
fn a_second_controller_refuses_and_the_first_keeps_its_registries() {
    let mut lab = Lab::new();
    let name = unique("lock-a");
    let port = free_port();
    lab.track(&name, port);
    lab.start(&[]);
    let first = lab.pid().unwrap();
    lab.put(&name, &lab.spec(&name, port, ""));
    wait_phase(
        &lab.spec_path(&name),
        Phase::Ready,
        Duration::from_secs(120),
    );
    let container = format!("{name}-registry");
    let started = started_at(&container);
    assert!(holds(&lab.state(), first), "{}", lock_record(&lab.state()));
    // Let the status settle: a converged controller writes nothing more.
    std::thread::sleep(Duration::from_secs(1));
    let (state_before, watch_before) = (snapshot(&lab.state()), snapshot(&lab.watch()));
    let roots_before = snapshot(&lab.root(&name));
    let bound = Duration::from_secs(20);
    let held_state = format!(
        "another mirror-registry-controller (pid {first}) holds {} for state directory {}",
        lab.state().join(".lock").display(),
        lab.state().display()
    );

    // 1. The same directories.
    let (code, err, ran) = run_bounded(&lab.controller_args(&[]), bound);
    assert_eq!(code, Some(EXIT_LOCKED), "{err}");
    // Its stderr is a pipe here, as the journal is under systemd: no colours.
    assert!(
        !err.contains('\u{1b}'),
        "escape codes in a piped log: {err:?}"
    );
    assert!(
        err.contains(&format!("{held_state}; refusing to start")),
        "{err}"
    );
    eprintln!(
        "FIGURE second controller refused after: {:.2} s",
        ran.as_secs_f64()
    );
    assert!(ran < Duration::from_secs(5), "{ran:?}");

    // 2. The same watch directory, another state directory.
    let other_state = lab.dir.path().join("other-state");
    let (code, err, _) = run_bounded(&with_dirs(&lab, &lab.watch(), &other_state, &[]), bound);
    assert_eq!(code, Some(EXIT_LOCKED), "{err}");
    assert!(
        err.contains(&format!(
            "another mirror-registry-controller (pid {first}) holds the lock on watch directory {}; refusing to start",
            lab.watch().display()
        )),
        "{err}"
    );
    assert_eq!(
        snapshot(&other_state),
        vec![(other_state.join(".lock"), vec![])],
        "only the empty lock file, nothing recorded"
    );

    // 3. The same state directory, another watch directory holding the
    // same spec: it would tear down or converge the same records.
    let other_watch = lab.dir.path().join("other-watch");
    std::fs::create_dir_all(&other_watch).unwrap();
    let copy = other_watch.join(format!("{name}.yaml"));
    std::fs::write(&copy, lab.spec(&name, port, "")).unwrap();
    let other_before = snapshot(&other_watch);
    let (code, err, _) = run_bounded(&with_dirs(&lab, &other_watch, &lab.state(), &[]), bound);
    assert_eq!(code, Some(EXIT_LOCKED), "{err}");
    assert!(err.contains(&held_state), "{err}");
    assert_eq!(snapshot(&other_watch), other_before, "no status written");

    // 4. --once obeys the same lock.
    let mut once = lab.controller_args(&["--once-timeout", "10s"]);
    once.push("--once".into());
    let (code, err, ran) = run_bounded(&once, bound);
    assert_eq!(code, Some(EXIT_LOCKED), "{err}");
    assert!(
        err.contains(&format!("{held_state}; refusing to run --once")),
        "{err}"
    );
    assert!(ran < Duration::from_secs(5), "{ran:?}");

    // The first controller and its registry are as they were.
    std::thread::sleep(Duration::from_secs(2));
    assert!(Path::new(&format!("/proc/{first}")).exists());
    assert!(holds(&lab.state(), first));
    assert_eq!(started_at(&container), started, "not restarted");
    assert!(serving(port));
    assert_eq!(snapshot(&lab.state()), state_before, "state untouched");
    assert_eq!(snapshot(&lab.watch()), watch_before, "spec untouched");
    assert_eq!(snapshot(&lab.root(&name)), roots_before, "root untouched");
    let log = lab.logs();
    assert!(
        !log.contains("refusing"),
        "the first one never refused:\n{log}"
    );
}

/// A controller killed with SIGKILL leaves no lock behind: one waiting with
/// --lock-timeout takes over at once, and one started afterwards with no
/// wait at all starts.
#[test]
fn after_a_sigkill_a_new_controller_takes_the_lock_at_once() {
    let mut lab = Lab::new();
    lab.start(&[]);
    let first = lab.pid().unwrap();
    wait_for(
        Duration::from_secs(10),
        "the first to hold the lock",
        || holds(&lab.state(), first).then_some(()),
    );

    // A second one, told to wait.
    let second_log = lab.dir.path().join("second.log");
    let mut second: Child = Command::new(CONTROLLER)
        .args(lab.controller_args(&["--lock-timeout", "60s"]))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&second_log).unwrap())
        .spawn()
        .unwrap();
    let second_pid = second.id();
    wait_for(Duration::from_secs(10), "the second to wait", || {
        std::fs::read_to_string(&second_log)
            .unwrap_or_default()
            .contains(&format!(
                "(pid {first}) holds {}",
                lab.state().join(".lock").display()
            ))
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(second.try_wait().unwrap().is_none(), "still waiting");
    assert!(holds(&lab.state(), first), "{}", lock_record(&lab.state()));

    lab.kill();
    let t0 = Instant::now();
    wait_for(Duration::from_secs(10), "the second to take over", || {
        holds(&lab.state(), second_pid).then_some(())
    });
    let took = t0.elapsed();
    eprintln!(
        "FIGURE SIGKILL of the holder -> waiting controller holds the lock: {:.2} s",
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    let log = std::fs::read_to_string(&second_log).unwrap();
    assert!(log.contains("waiting up to 1m for it to exit"), "{log}");
    assert!(log.contains("watching for MirrorRegistry specs"), "{log}");

    // SIGKILL the one that took over; a new one without any wait starts.
    let _ = second.kill();
    let _ = second.wait();
    let t0 = Instant::now();
    lab.start(&[]);
    let third = lab.pid().unwrap();
    wait_for(
        Duration::from_secs(10),
        "the third to hold the lock",
        || holds(&lab.state(), third).then_some(()),
    );
    eprintln!(
        "FIGURE SIGKILL of the holder -> a new controller (no wait) holds the lock: {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(!lab.logs().contains("refusing"), "{}", lab.logs());
}

fn unit_dir() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".config/systemd/user")
}

fn unit_prop(unit: &str, prop: &str) -> String {
    let out = sh(
        "systemctl",
        &["--user", "show", unit, "-p", prop, "--value"],
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes a controller unit a test installed, even when the test fails.
struct ControllerUnit(String);

impl Drop for ControllerUnit {
    fn drop(&mut self) {
        let u = format!("{}.service", self.0);
        let _ = sh("systemctl", &["--user", "stop", &u]);
        let _ = sh("systemctl", &["--user", "disable", &u]);
        let _ = std::fs::remove_file(unit_dir().join(&u));
        let _ = sh("systemctl", &["--user", "daemon-reload"]);
        let _ = sh("systemctl", &["--user", "reset-failed", &u]);
    }
}

fn mrctl(lab: &Lab, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mrctl"));
    c.args(["--watch-dir", lab.watch().to_str().unwrap()])
        .args(["--state-dir", lab.state().to_str().unwrap()])
        .args(["--scope", "user"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn show(o: &Output, log: &Path) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}--- controller log\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        std::fs::read_to_string(log).unwrap_or_default()
    )
}

/// `mrctl install` while a controller started by hand holds the
/// directories: the unit's controller waits for it (it does not fail, nor
/// run beside it) and takes over when it stops. Then `mrctl upgrade` with
/// another controller binary rewrites the unit; systemd restarts it, the
/// new process takes the lock at once, and the registry is not restarted.
/// A controller started by hand next to the unit refuses, naming the unit.
#[test]
fn an_upgrade_of_the_controller_unit_goes_through() {
    let mut lab = Lab::new();
    let name = unique("lock-up");
    let port = free_port();
    lab.track(&name, port);
    let ctl = unique("lock-ctl");
    let _guard = ControllerUnit(ctl.clone());
    let ctl_unit = format!("{ctl}.service");
    let log = lab.dir.path().join("unit.log");
    let root = lab.root(&name);
    let controller_flags = |bin: Option<&Path>| -> Vec<String> {
        let mut v: Vec<String> = [
            "--controller-unit",
            &ctl,
            "--controller-log",
            log.to_str().unwrap(),
            "--controller-watchdog",
            "2s",
            "--timeout",
            "120s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(b) = bin {
            v.extend(["--controller-bin".into(), b.display().to_string()]);
        }
        v
    };

    // A controller started by hand on the same directories.
    lab.start(&[]);
    let by_hand = lab.pid().unwrap();
    wait_for(Duration::from_secs(10), "the hand-started lock", || {
        holds(&lab.state(), by_hand).then_some(())
    });

    let t0 = Instant::now();
    let mut install: Vec<String> = [
        "install",
        "--engine",
        "distribution",
        "--name",
        &name,
        "--quayHostname",
        &format!("localhost:{port}"),
        "--quayRoot",
        root.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    install.extend(controller_flags(None));
    let install: Vec<&str> = install.iter().map(String::as_str).collect();
    let child = mrctl(&lab, &install).spawn().unwrap();
    wait_for(
        Duration::from_secs(60),
        "the unit's controller to wait",
        || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains(&format!("(pid {by_hand}) holds"))
                .then_some(())
        },
    );
    // Longer than WatchdogSec=2s: the waiting controller is not killed.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(unit_active(&ctl_unit), "activating", "waiting, not ready");
    let waiting: u32 = unit_prop(&ctl_unit, "MainPID").parse().unwrap();
    assert!(holds(&lab.state(), by_hand));
    lab.stop();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o, &log));
    eprintln!(
        "FIGURE mrctl install beside a hand-started controller -> Ready: {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("(pid {by_hand}) holds"))
            && err.contains(&format!("{ctl_unit} waits up to 30s for it to exit")),
        "{}",
        show(&o, &log)
    );
    assert_eq!(unit_active(&ctl_unit), "active");
    let main1: u32 = unit_prop(&ctl_unit, "MainPID").parse().unwrap();
    assert_eq!(main1, waiting, "the process that waited took over");
    assert_eq!(unit_prop(&ctl_unit, "NRestarts"), "0");
    let rec = lock_record(&lab.state());
    assert!(
        rec.starts_with(&format!("pid={main1}\nunit={ctl_unit}\n")),
        "{rec}"
    );
    let container = format!("{name}-registry");
    let started = started_at(&container);

    // upgrade, with the controller binary at another path: the unit file
    // changes and systemd restarts the controller.
    let bin = lab.dir.path().join("bin/mirror-registry-controller");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(CONTROLLER, &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log_before = std::fs::read_to_string(&log).unwrap_or_default().len();
    let mut upgrade: Vec<String> = ["upgrade", "--name", &name]
        .iter()
        .map(|s| s.to_string())
        .collect();
    upgrade.extend(controller_flags(Some(&bin)));
    let upgrade: Vec<&str> = upgrade.iter().map(String::as_str).collect();
    let t0 = Instant::now();
    let o = mrctl(&lab, &upgrade).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o, &log));
    eprintln!(
        "FIGURE mrctl upgrade replacing the controller unit: {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!(
            "controller {ctl_unit} (user scope): written, enabled and started"
        )),
        "{}",
        show(&o, &log)
    );
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("waits up to"),
        "{}",
        show(&o, &log)
    );
    assert_eq!(unit_active(&ctl_unit), "active");
    let main2: u32 = unit_prop(&ctl_unit, "MainPID").parse().unwrap();
    assert_ne!(main1, main2, "restarted");
    assert!(!Path::new(&format!("/proc/{main1}")).exists());
    assert!(unit_prop(&ctl_unit, "ExecStart").contains(bin.to_str().unwrap()));
    assert!(holds(&lab.state(), main2), "{}", lock_record(&lab.state()));
    let after = std::fs::read_to_string(&log).unwrap_or_default();
    let after = &after[log_before.min(after.len())..];
    assert!(
        !after.contains("waiting up to") && !after.contains("refusing"),
        "the new process took the lock at once:\n{after}"
    );
    assert_eq!(unit_prop(&ctl_unit, "NRestarts"), "0");
    assert_eq!(started_at(&container), started, "registry not restarted");
    assert!(serving(port));

    // By hand, next to the unit: refused, naming the unit.
    let (code, err, _) = run_bounded(&lab.controller_args(&[]), Duration::from_secs(20));
    assert_eq!(code, Some(EXIT_LOCKED), "{err}");
    assert!(
        err.contains(&format!(
            "another mirror-registry-controller (pid {main2}, unit {ctl_unit}) holds"
        )),
        "{err}"
    );
    assert_eq!(unit_active(&ctl_unit), "active");
    assert!(holds(&lab.state(), main2));
}
