//! `<state-dir>/<name>/.lock`: one piece of work on a registry at a time.
//! The controller holds it for the whole of one reconcile or teardown of
//! the name, `mrctl gc` for the whole of a collection (both restarts
//! included), so a reconcile never interleaves with a collection: neither
//! restarts or records the unit while the other is half-way.
//!
//! An exclusive `flock(2)`: the kernel drops it when its process ends,
//! however it ends, so a lock is never stale; the file is only its anchor
//! and says nothing. Teardown removes the file (with the registry's other
//! files) while holding it, so a taker checks, once it holds a lock, that
//! the path still names the file it locked, and tries again otherwise.
//!
//! Taking it never reads or decides anything about the registry: a caller
//! that cannot take it waits or gives up, and does nothing else.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{ensure_dir, Error};

pub const LOCK_FILE: &str = ".lock";

/// How often a waiting taker tries again.
const POLL: Duration = Duration::from_millis(100);

/// The lock, held until dropped.
#[derive(Debug)]
pub struct Held {
    _file: File,
}

/// The lock file of `name`.
pub fn path(state_dir: &Path, name: &str) -> PathBuf {
    super::dir(state_dir, name).join(LOCK_FILE)
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Lock {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Takes the lock when no other process holds it; `Ok(None)` when one
/// does. Creates the registry's directory and the empty lock file when
/// missing.
pub fn try_take(state_dir: &Path, name: &str) -> Result<Option<Held>, Error> {
    let path = path(state_dir, name);
    // A few rounds: each lost one means a teardown removed the file between
    // our open and our lock, which does not go on.
    for _ in 0..5 {
        ensure_dir(state_dir, name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io("open", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(io("lock", &path)(e)),
        }
        let locked = file.metadata().map_err(io("stat", &path))?;
        match std::fs::metadata(&path) {
            Ok(now) if now.dev() == locked.dev() && now.ino() == locked.ino() => {
                return Ok(Some(Held { _file: file }))
            }
            // Removed or replaced since we opened it: the lock on it keeps
            // out no one.
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("stat", &path)(e)),
        }
    }
    Err(io("lock", &path)(std::io::Error::other(
        "the lock file was removed each time it was locked",
    )))
}

/// Takes the lock, waiting up to `wait` for its holder without blocking
/// the runtime; `Ok(None)` when it is still held then. `on_wait` is called
/// once, at the first try that finds it held, with the holder's pid when
/// the kernel tells it.
pub async fn take(
    state_dir: &Path,
    name: &str,
    wait: Duration,
    mut on_wait: impl FnMut(Option<u32>),
) -> Result<Option<Held>, Error> {
    let deadline = Instant::now() + wait;
    let mut told = false;
    loop {
        if let Some(held) = try_take(state_dir, name)? {
            return Ok(Some(held));
        }
        if !told {
            told = true;
            on_wait(holder(state_dir, name));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(POLL.min(deadline - now)).await;
    }
}

/// The pid holding `name`'s lock, from the kernel's own record.
pub fn holder(state_dir: &Path, name: &str) -> Option<u32> {
    let m = std::fs::metadata(path(state_dir, name)).ok()?;
    crate::host::lock::flock_holder(m.dev(), m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let held = try_take(dir.path(), "a").unwrap().expect("free");
        // flock locks belong to the open file: a second open, even in this
        // process, is refused while the first is held.
        assert!(try_take(dir.path(), "a").unwrap().is_none());
        assert_eq!(holder(dir.path(), "a"), Some(std::process::id()));
        // Other names are not affected.
        let other = try_take(dir.path(), "b").unwrap();
        assert!(other.is_some());
        drop(held);
        assert!(try_take(dir.path(), "a").unwrap().is_some());
    }

    #[test]
    fn a_removed_lock_file_is_not_taken_for_a_held_lock() {
        let dir = tempfile::tempdir().unwrap();
        let first = try_take(dir.path(), "a").unwrap().expect("free");
        // Teardown removes the file while holding it; the next taker makes
        // a new one and holds that.
        std::fs::remove_file(path(dir.path(), "a")).unwrap();
        let second = try_take(dir.path(), "a").unwrap().expect("a new file");
        assert!(try_take(dir.path(), "a").unwrap().is_none());
        drop((first, second));
    }

    #[tokio::test]
    async fn a_waiting_taker_gets_it_once_released() {
        let dir = tempfile::tempdir().unwrap();
        let held = try_take(dir.path(), "a").unwrap().expect("free");
        let mut waited = None;
        let none = take(dir.path(), "a", Duration::from_millis(250), |p| {
            waited = Some(p)
        })
        .await
        .unwrap();
        assert!(none.is_none());
        assert_eq!(waited, Some(Some(std::process::id())));
        let state = dir.path().to_path_buf();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(held);
        });
        let got = take(&state, "a", Duration::from_secs(10), |_| {})
            .await
            .unwrap();
        assert!(got.is_some());
        release.await.unwrap();
    }
}
