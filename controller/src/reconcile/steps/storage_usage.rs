//! The registry's storage as the host sees it: bytes used under the
//! storage directory, bytes free on its filesystem, and whether that keeps
//! `spec.storage.minFree` (the `StorageAvailable` condition). Observed on
//! every reconcile, so at least every resync.

use std::path::{Path, PathBuf};

use super::super::conditions::StorageSeen;
use crate::api::day2::{MinFree, FULL_BYTES};
use crate::api::defaults::{Resolved, Storage};
use crate::api::{GcReport, StorageStatus};
use crate::host::podman::Podman;

/// One look at the storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    pub path: PathBuf,
    pub used: u64,
    pub free: u64,
    pub total: u64,
}

/// The host directory holding the blobs: a volume's mountpoint (asked of
/// podman) or the storage path.
pub async fn host_dir(podman: &Podman, s: &Storage) -> Result<PathBuf, String> {
    match s {
        Storage::Path(p) => Ok(p.clone()),
        Storage::Volume(v) => match podman.volume(v).await {
            Ok(Some(info)) => Ok(info.mountpoint),
            Ok(None) => Err(format!("volume {v} does not exist")),
            Err(e) => Err(format!("volume {v}: {e}")),
        },
    }
}

/// Used and free bytes of `r`'s storage.
pub async fn observe(podman: &Podman, r: &Resolved) -> Result<Usage, String> {
    let path = host_dir(podman, &r.storage).await?;
    let p = path.clone();
    // A walk of a large store takes a while: off the reconcile's thread.
    tokio::task::spawn_blocking(move || measure(&p))
        .await
        .map_err(|e| format!("measure {}: {e}", path.display()))?
}

/// Used and free bytes of the filesystem under `path`.
pub fn measure(path: &Path) -> Result<Usage, String> {
    let st = rustix::fs::statvfs(path).map_err(|e| format!("statvfs {}: {e}", path.display()))?;
    let used = used_bytes(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    Ok(Usage {
        path: path.to_path_buf(),
        used,
        free: st.f_bavail.saturating_mul(st.f_frsize),
        total: st.f_blocks.saturating_mul(st.f_frsize),
    })
}

/// Bytes of the regular files under `dir`, symlinks not followed; entries
/// that vanish while it walks (a collection, an upload ending) are skipped.
pub fn used_bytes(dir: &Path) -> std::io::Result<u64> {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(x) => x,
            Err(e) if gone(&e) && d != dir => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let meta = match entry.path().symlink_metadata() {
                Ok(m) => m,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(e),
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total = total.saturating_add(meta.len());
            }
        }
    }
    Ok(total)
}

/// What StorageAvailable says of free bytes.
fn level(free: u64, min: u64) -> u8 {
    if free < FULL_BYTES {
        0
    } else if free < min {
        1
    } else {
        2
    }
}

/// What status reports, and what the condition is made from. Free space on
/// a busy filesystem moves all the time; a converged registry should not
/// rewrite its status for that, so the free bytes reported before stay
/// while they are within 1% of the filesystem (at least 1 MiB) of what is
/// seen now and say the same of minFree.
pub fn report(
    prev: Option<&StorageStatus>,
    seen: &Usage,
    min_free: MinFree,
    last_gc: Option<GcReport>,
) -> (StorageStatus, StorageSeen) {
    let min = min_free.bytes_of(seen.total);
    let slack = (seen.total / 100).max(1 << 20);
    let free = match prev {
        Some(p)
            if p.path == seen.path
                && p.free_bytes.abs_diff(seen.free) < slack
                && level(p.free_bytes, min) == level(seen.free, min) =>
        {
            p.free_bytes
        }
        _ => seen.free,
    };
    let status = StorageStatus {
        path: seen.path.clone(),
        used_bytes: seen.used,
        free_bytes: free,
        last_garbage_collection: last_gc,
    };
    let verdict = StorageSeen {
        path: seen.path.clone(),
        free,
        min_free: min_free.to_string(),
        full: level(seen.free, min) == 0,
        low: level(seen.free, min) == 1,
    };
    (status, verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(free: u64) -> Usage {
        Usage {
            path: "/s".into(),
            used: 5,
            free,
            total: 1000 << 20,
        }
    }

    #[test]
    fn free_bytes_move_only_beyond_the_slack_or_across_a_threshold() {
        let min = MinFree::Percent(10);
        let (first, v) = report(None, &usage(500 << 20), min, None);
        assert!(!v.full && !v.low);
        // 5 MiB less of 1000 MiB: within 1%, the reported figure stays.
        let (again, _) = report(Some(&first), &usage(495 << 20), min, None);
        assert_eq!(again.free_bytes, 500 << 20);
        // 20 MiB less: reported.
        let (moved, _) = report(Some(&first), &usage(480 << 20), min, None);
        assert_eq!(moved.free_bytes, 480 << 20);
        // Just below minFree (100 MiB), even within the slack: LowSpace at once.
        let near = report(None, &usage(101 << 20), min, None).0;
        let (low, v) = report(Some(&near), &usage(99 << 20), min, None);
        assert_eq!(low.free_bytes, 99 << 20);
        assert!(v.low && !v.full);
        let (_, v) = report(Some(&low), &usage(1000), min, None);
        assert!(v.full);
    }

    #[test]
    fn used_bytes_count_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("a")).unwrap();
        std::fs::write(d.path().join("a/x"), [0u8; 100]).unwrap();
        std::fs::write(d.path().join("y"), [0u8; 23]).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("l")).unwrap();
        assert_eq!(used_bytes(d.path()).unwrap(), 123);
        let m = measure(d.path()).unwrap();
        assert!(m.total >= m.free && m.used == 123);
    }
}
