//! One controller per state directory and per watch directory.
//!
//! Two controllers converging the same registries would generate the same
//! certificate and keys at once, start the same units, write the same
//! records and tear down concurrently. So a controller holds, for its whole
//! life, an exclusive `flock(2)` on
//!
//! - `<state-dir>/.lock`, a file of its own, and
//! - the watch directory itself: the directory's inode, opened read-only.
//!   Nothing is put into the watched directory (it may be a GitOps checkout
//!   that must stay clean, and the spec scan never sees a lock there), and
//!   every controller, whatever its scope, user or state directory, locks
//!   the same inode, however the path is spelled.
//!
//! The kernel drops both when the process ends, however it ends (SIGKILL and
//! OOM kills included), so a lock is never stale and a new controller takes
//! it at once. The file descriptors are close-on-exec: no child inherits
//! them. Only once both are held does `.lock` get the holder's pid, unit and
//! watch directory (written over in place, never truncated before the lock
//! is held). A refused instance names the holder from the kernel's own
//! record (`/proc/locks`), falling back to that file, and its unit from
//! `/proc/<pid>/cgroup`.

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The lock file in the state directory.
pub const LOCK_FILE: &str = ".lock";

/// The environment variable of the controller's `--lock-timeout`.
pub const LOCK_TIMEOUT_ENV: &str = "MIRROR_REGISTRY_LOCK_TIMEOUT";

/// How often a waiting controller tries the lock again.
const POLL: Duration = Duration::from_millis(100);

/// Who holds a lock, as far as can be known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holder {
    pub pid: Option<u32>,
    /// The systemd unit the holder runs in, when it runs in one.
    pub unit: Option<String>,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("another mirror-registry-controller")?;
        match (self.pid, &self.unit) {
            (Some(p), Some(u)) => write!(f, " (pid {p}, unit {u})"),
            (Some(p), None) => write!(f, " (pid {p})"),
            (None, Some(u)) => write!(f, " (unit {u})"),
            (None, None) => Ok(()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another process holds `<state-dir>/.lock`.
    #[error("{holder} holds {} for state directory {}{}", path.display(), dir.display(), waited_note(*waited))]
    StateHeld {
        holder: Holder,
        path: PathBuf,
        dir: PathBuf,
        waited: Duration,
    },
    /// Another process holds the watch directory.
    #[error("{holder} holds the lock on watch directory {}{}", dir.display(), waited_note(*waited))]
    WatchHeld {
        holder: Holder,
        dir: PathBuf,
        waited: Duration,
    },
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    /// Whether another process holds a lock (rather than an I/O failure).
    pub fn is_held(&self) -> bool {
        matches!(self, Error::StateHeld { .. } | Error::WatchHeld { .. })
    }

    /// The holder, when another process holds a lock.
    pub fn holder(&self) -> Option<&Holder> {
        match self {
            Error::StateHeld { holder, .. } | Error::WatchHeld { holder, .. } => Some(holder),
            Error::Io { .. } => None,
        }
    }
}

fn waited_note(waited: Duration) -> String {
    if waited.is_zero() {
        String::new()
    } else {
        format!(
            " (still, after waiting {})",
            humantime::format_duration(waited)
        )
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// How to take the locks.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Create a missing watch directory (0755) once the state directory's
    /// lock is held, so that it can be locked too. Without it a missing
    /// watch directory is not locked (there is nothing in it to converge).
    pub create_watch_dir: bool,
    /// How long to wait for another holder to let go; zero: refuse at once.
    pub wait: Duration,
}

/// Both locks, held until dropped (or the process ends).
#[derive(Debug)]
pub struct Lock {
    state: File,
    watch: Option<File>,
    path: PathBuf,
}

impl Lock {
    /// Takes `<state_dir>/.lock`, then the watch directory, waiting up to
    /// `opts.wait` in all; `on_wait` is called at every try that finds a
    /// lock held (about ten times a second), with who holds it. The only
    /// things this may create are a missing state directory (0700), the
    /// empty lock file in it, and, with `create_watch_dir`, a missing watch
    /// directory once the state directory's lock is held. The holder's pid
    /// and unit go into the lock file only once both locks are held.
    pub fn acquire(
        state_dir: &Path,
        watch_dir: &Path,
        opts: Options,
        on_wait: &mut dyn FnMut(&Error),
    ) -> Result<Lock, Error> {
        let deadline = Instant::now() + opts.wait;
        if !state_dir.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(state_dir)
                .map_err(io("create directory", state_dir))?;
        }
        let path = state_dir.join(LOCK_FILE);
        // No truncate: the file holds the current holder's pid until this
        // process holds the lock.
        let state = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(io("open", &path))?;
        wait_for(
            &state,
            &path,
            deadline,
            opts.wait,
            on_wait,
            |holder, waited| Error::StateHeld {
                holder,
                path: path.clone(),
                dir: state_dir.to_path_buf(),
                waited,
            },
        )?;

        if opts.create_watch_dir && !watch_dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(watch_dir)
                .map_err(io("create directory", watch_dir))?;
        }
        let watch = match File::open(watch_dir) {
            Ok(f) if f.metadata().is_ok_and(|m| m.is_dir()) => {
                let held = wait_for(
                    &f,
                    watch_dir,
                    deadline,
                    opts.wait,
                    on_wait,
                    |holder, waited| Error::WatchHeld {
                        holder,
                        dir: watch_dir.to_path_buf(),
                        waited,
                    },
                );
                match held {
                    Ok(()) => Some(f),
                    Err(Error::Io { source, .. }) => {
                        // Some file systems (NFS) cannot flock a directory;
                        // the state directory's lock still stands.
                        tracing::warn!(dir = %watch_dir.display(), error = %source, "cannot lock the watch directory; only the state directory's lock keeps a second controller out");
                        None
                    }
                    Err(e) => return Err(e),
                }
            }
            // Missing, or not a directory: the daemon reports that itself.
            _ => None,
        };

        let lock = Lock { state, watch, path };
        lock.write_holder(watch_dir)?;
        Ok(lock)
    }

    /// The lock file in the state directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the watch directory is locked too.
    pub fn watch_locked(&self) -> bool {
        self.watch.is_some()
    }

    /// Writes who holds the lock: over the old content from its start, then
    /// cut to length, so a reader sees at worst a mix of old and new, never
    /// a file this write emptied (a new file is empty until now: readers go
    /// by /proc/locks first).
    fn write_holder(&self, watch_dir: &Path) -> Result<(), Error> {
        let mut text = format!("pid={}\n", std::process::id());
        if let Some(u) = own_unit() {
            text.push_str(&format!("unit={u}\n"));
        }
        let watch = std::fs::canonicalize(watch_dir).unwrap_or_else(|_| watch_dir.to_path_buf());
        text.push_str(&format!("watch_dir={}\n", watch.display()));
        self.state
            .write_all_at(text.as_bytes(), 0)
            .map_err(io("write", &self.path))?;
        self.state
            .set_len(text.len() as u64)
            .map_err(io("write", &self.path))?;
        Ok(())
    }
}

/// Tries `f`'s lock until it is held or `deadline` passes; a refusal says
/// it waited `wait`.
fn wait_for(
    f: &File,
    path: &Path,
    deadline: Instant,
    wait: Duration,
    on_wait: &mut dyn FnMut(&Error),
    held: impl Fn(Holder, Duration) -> Error,
) -> Result<(), Error> {
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => return Err(io("lock", path)(e)),
        }
        let holder = holder_of(f, path);
        let now = Instant::now();
        if now >= deadline {
            return Err(held(holder, wait));
        }
        on_wait(&held(holder, Duration::ZERO));
        std::thread::sleep(POLL.min(deadline - now));
    }
}

/// Who holds the lock of the open file `f`, looked up without taking it.
fn holder_of(f: &File, path: &Path) -> Holder {
    let from_kernel = f.metadata().ok().and_then(|m| {
        let locks = std::fs::read_to_string("/proc/locks").ok()?;
        flock_writer(&locks, m.dev(), m.ino())
    });
    // The lock file's own record, when it is the state directory's.
    let recorded = if path.file_name() == Some(LOCK_FILE.as_ref()) {
        std::fs::read_to_string(path)
            .map(|t| parse_holder(&t))
            .unwrap_or_default()
    } else {
        Holder::default()
    };
    let pid = from_kernel.or(recorded.pid.filter(|p| alive(*p)));
    let unit = pid.and_then(unit_of).or_else(|| {
        // The record's unit is trusted only for the pid it names.
        (recorded.pid.is_some() && recorded.pid == pid)
            .then(|| recorded.unit.clone())
            .flatten()
    });
    Holder { pid, unit }
}

/// Who holds the lock of `<state_dir>/.lock` or of `watch_dir`, without
/// taking either (taking them, even briefly, could refuse a controller
/// starting at that moment). `None` when neither is held, or when that
/// cannot be told (no /proc/locks).
pub fn probe(state_dir: &Path, watch_dir: &Path) -> Option<Error> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let path = state_dir.join(LOCK_FILE);
    let held_by = |p: &Path| {
        let m = std::fs::metadata(p).ok()?;
        flock_writer(&locks, m.dev(), m.ino())
    };
    if let Some(pid) = held_by(&path) {
        let recorded = std::fs::read_to_string(&path)
            .map(|t| parse_holder(&t))
            .unwrap_or_default();
        let unit = unit_of(pid).or(recorded.unit.filter(|_| recorded.pid == Some(pid)));
        return Some(Error::StateHeld {
            holder: Holder {
                pid: Some(pid),
                unit,
            },
            path,
            dir: state_dir.to_path_buf(),
            waited: Duration::ZERO,
        });
    }
    let pid = held_by(watch_dir)?;
    Some(Error::WatchHeld {
        holder: Holder {
            pid: Some(pid),
            unit: unit_of(pid),
        },
        dir: watch_dir.to_path_buf(),
        waited: Duration::ZERO,
    })
}

/// The pid holding an exclusive flock on the file `(dev, ino)`, from
/// `/proc/locks`.
pub fn flock_holder(dev: u64, ino: u64) -> Option<u32> {
    flock_writer(&std::fs::read_to_string("/proc/locks").ok()?, dev, ino)
}

fn alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// `major:minor` of a `st_dev`, as glibc's `major()`/`minor()` decode it.
fn major_minor(dev: u64) -> (u64, u64) {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff);
    (major, minor)
}

/// The pid holding an exclusive flock on the inode `(dev, ino)`, from the
/// text of `/proc/locks`: lines like
/// `1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF`; waiters (`->`) and
/// other kinds of lock are passed over.
fn flock_writer(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let (major, minor) = major_minor(dev);
    locks.lines().find_map(|line| {
        let t: Vec<&str> = line.split_whitespace().collect();
        let [_, kind, _, mode, pid, id, ..] = t.as_slice() else {
            return None;
        };
        if *kind != "FLOCK" || *mode != "WRITE" {
            return None;
        }
        let mut parts = id.split(':');
        let (ma, mi, i) = (parts.next()?, parts.next()?, parts.next()?);
        let same = u64::from_str_radix(ma, 16).ok()? == major
            && u64::from_str_radix(mi, 16).ok()? == minor
            && i.parse::<u64>().ok()? == ino;
        // A holder outside this pid namespace shows as 0 (or -1).
        same.then(|| pid.parse().ok()).flatten().filter(|p| *p != 0)
    })
}

/// A lock file's record: `pid=…`, `unit=…` lines.
fn parse_holder(text: &str) -> Holder {
    let mut h = Holder::default();
    for line in text.lines() {
        match line.split_once('=') {
            Some(("pid", v)) => h.pid = v.trim().parse().ok(),
            Some(("unit", v)) if !v.trim().is_empty() => h.unit = Some(v.trim().to_string()),
            _ => {}
        }
    }
    h
}

/// The systemd service a process runs in, from `/proc/<pid>/cgroup`.
fn unit_of(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    service_of_cgroup(&text)
}

fn own_unit() -> Option<String> {
    unit_of(std::process::id())
}

/// The `.service` a cgroup file places a process in: the last component of
/// the unified (`0::`) path, else of the `name=systemd` hierarchy's, when it
/// names a service. A process started by hand (in a session's `.scope`)
/// has none.
fn service_of_cgroup(text: &str) -> Option<String> {
    let path_of = |controllers: &str| {
        text.lines().find_map(|l| {
            let (_, rest) = l.split_once(':')?;
            let (ctrl, path) = rest.split_once(':')?;
            (ctrl == controllers).then_some(path)
        })
    };
    ["", "name=systemd"].iter().find_map(|p| {
        let leaf = path_of(p)?.rsplit('/').next()?;
        leaf.ends_with(".service").then(|| leaf.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let (s, w) = (t.path().join("state"), t.path().join("watch"));
        (t, s, w)
    }

    fn now(s: &Path, w: &Path) -> Result<Lock, Error> {
        Lock::acquire(
            s,
            w,
            Options {
                create_watch_dir: true,
                wait: Duration::ZERO,
            },
            &mut |_| {},
        )
    }

    #[test]
    fn a_second_holder_is_refused_and_named() {
        let (_t, s, w) = dirs();
        let first = now(&s, &w).unwrap();
        assert!(first.watch_locked());
        assert_eq!(first.path(), s.join(LOCK_FILE));
        let me = std::process::id();
        let rec = std::fs::read_to_string(s.join(LOCK_FILE)).unwrap();
        assert!(rec.starts_with(&format!("pid={me}\n")), "{rec}");

        // flock is per open file: a second open in this process conflicts.
        let e = now(&s, &w).unwrap_err();
        assert!(e.is_held());
        assert_eq!(e.holder().unwrap().pid, Some(me));
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("another mirror-registry-controller (pid {me}")),
            "{msg}"
        );
        assert!(
            msg.ends_with(&format!(
                "holds {} for state directory {}",
                s.join(LOCK_FILE).display(),
                s.display()
            )),
            "{msg}"
        );
        // The refused attempt wrote nothing.
        assert_eq!(std::fs::read_to_string(s.join(LOCK_FILE)).unwrap(), rec);

        // Same watch directory, another state directory.
        let other = s.with_file_name("other-state");
        let e = now(&other, &w).unwrap_err();
        assert!(
            matches!(&e, Error::WatchHeld { holder, .. } if holder.pid == Some(me)),
            "{e}"
        );
        assert!(
            e.to_string().ends_with(&format!(
                "holds the lock on watch directory {}",
                w.display()
            )),
            "{e}"
        );
        assert_eq!(
            std::fs::read(other.join(LOCK_FILE)).unwrap(),
            b"",
            "nothing recorded by a refused instance"
        );

        // probe names the holder without taking anything.
        let p = probe(&s, &w).unwrap();
        assert!(matches!(p, Error::StateHeld { .. }), "{p}");
        assert!(matches!(probe(&other, &w), Some(Error::WatchHeld { .. })));

        drop(first);
        assert!(probe(&s, &w).is_none());
        let again = now(&s, &w).unwrap();
        drop(again);
        now(&other, &w).unwrap();
    }

    #[test]
    fn a_waiting_holder_takes_over_when_the_first_lets_go() {
        let (_t, s, w) = dirs();
        let first = now(&s, &w).unwrap();
        let t0 = Instant::now();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            drop(first);
        });
        let mut waits = 0;
        let second = Lock::acquire(
            &s,
            &w,
            Options {
                create_watch_dir: false,
                wait: Duration::from_secs(10),
            },
            &mut |e| {
                assert!(e.is_held());
                waits += 1;
            },
        )
        .unwrap();
        release.join().unwrap();
        assert!(waits >= 2, "{waits}");
        assert!(t0.elapsed() < Duration::from_secs(3));
        assert!(second.watch_locked());

        // A bounded wait ends in a refusal that says how long it waited.
        let e = Lock::acquire(
            &s,
            &w,
            Options {
                create_watch_dir: false,
                wait: Duration::from_millis(300),
            },
            &mut |_| {},
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("(still, after waiting 300ms)"),
            "{e}"
        );
    }

    #[test]
    fn the_record_is_rewritten_in_place_to_its_length() {
        let (_t, s, w) = dirs();
        std::fs::create_dir_all(&s).unwrap();
        std::fs::write(
            s.join(LOCK_FILE),
            "pid=1\nunit=a-very-long-unit-name-left-by-someone.service\nwatch_dir=/somewhere/else/entirely\n",
        )
        .unwrap();
        let l = now(&s, &w).unwrap();
        let rec = std::fs::read_to_string(l.path()).unwrap();
        let h = parse_holder(&rec);
        assert_eq!(h.pid, Some(std::process::id()));
        assert!(rec.ends_with(&format!(
            "watch_dir={}\n",
            std::fs::canonicalize(&w).unwrap().display()
        )));
        assert!(!rec.contains("somewhere"), "{rec}");
    }

    #[test]
    fn a_missing_watch_directory_is_created_only_when_asked() {
        let (_t, s, w) = dirs();
        let l = Lock::acquire(&s, &w, Options::default(), &mut |_| {}).unwrap();
        assert!(!w.exists());
        assert!(!l.watch_locked());
        drop(l);
        let l = now(&s, &w).unwrap();
        assert!(w.is_dir() && l.watch_locked());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&s).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn proc_locks_lines_are_read() {
        // st_dev of 253:1 (fd:01) as glibc encodes it.
        let dev = (253 << 8) | 1;
        let text = "1: POSIX  ADVISORY  WRITE 10 fd:01:42 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 4321 fd:01:42 0 EOF\n\
                    2: -> FLOCK  ADVISORY  WRITE 999 fd:01:42 0 EOF\n\
                    3: FLOCK  ADVISORY  WRITE 77 fd:01:43 0 EOF\n";
        assert_eq!(flock_writer(text, dev, 42), Some(4321));
        assert_eq!(flock_writer(text, dev, 43), Some(77));
        assert_eq!(flock_writer(text, dev, 44), None);
        assert_eq!(flock_writer(text, 2049, 42), None);
        assert_eq!(major_minor((259 << 8) | 3), (259, 3));
    }

    #[test]
    fn units_are_read_from_cgroups() {
        let v2 = "0::/system.slice/mirror-registry-controller.service\n";
        assert_eq!(
            service_of_cgroup(v2).as_deref(),
            Some("mirror-registry-controller.service")
        );
        let hybrid =
            "9:name=systemd:/session.slice/c.service\n4:memory:/x\n0::/session.slice/c.service\n";
        assert_eq!(service_of_cgroup(hybrid).as_deref(), Some("c.service"));
        let v1 = "9:name=systemd:/user.slice/user@0.service/app.slice/d.service\n1:cpu:/\n";
        assert_eq!(service_of_cgroup(v1).as_deref(), Some("d.service"));
        let by_hand = "0::/user.slice/user-0.slice/session-3.scope\n";
        assert_eq!(service_of_cgroup(by_hand), None);
        assert_eq!(service_of_cgroup("0::/init.scope\n"), None);
        assert_eq!(
            parse_holder("pid=12\nunit=u.service\nwatch_dir=/w\n"),
            Holder {
                pid: Some(12),
                unit: Some("u.service".into())
            }
        );
        assert_eq!(parse_holder(""), Holder::default());
    }

    #[test]
    fn holders_are_described() {
        let h = |pid, unit: Option<&str>| Holder {
            pid,
            unit: unit.map(str::to_string),
        };
        assert_eq!(
            h(Some(1234), Some("mirror-registry-controller.service")).to_string(),
            "another mirror-registry-controller (pid 1234, unit mirror-registry-controller.service)"
        );
        assert_eq!(
            h(Some(1), None).to_string(),
            "another mirror-registry-controller (pid 1)"
        );
        assert_eq!(
            h(None, None).to_string(),
            "another mirror-registry-controller"
        );
    }
}
