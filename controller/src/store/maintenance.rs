//! `maintenance.json` and `gc.json`: the day-two work `mrctl` does on a
//! running registry. While `mrctl gc` (or `backup`) holds
//! `maintenance.json`, the controller renders the registry read-only as
//! well, so the two never undo each other; a marker whose process is gone
//! counts for nothing, so a killed `mrctl` leaves no registry read-only
//! past the next reconcile. `gc.json` is the last collection's report,
//! which the controller puts into `status.storage`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{dir, ensure_dir, json_bytes, Error};
use crate::api::GcReport;
use crate::host::files;

pub const MAINTENANCE_FILE: &str = "maintenance.json";
pub const GC_FILE: &str = "gc.json";

/// Who holds the registry in maintenance, and what for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Marker {
    pub pid: u32,
    /// `garbage collection`, `backup`.
    pub what: String,
    /// Pushes are refused while it is held.
    pub read_only: bool,
    pub since: String,
}

fn alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// The marker of `name` when its process still runs.
pub fn active(state_dir: &Path, name: &str) -> Option<Marker> {
    let bytes = files::read_optional(&dir(state_dir, name).join(MAINTENANCE_FILE)).ok()??;
    let m: Marker = serde_json::from_slice(&bytes).ok()?;
    alive(m.pid).then_some(m)
}

/// Takes the marker for this process; refused while another live process
/// holds it. A stale marker (its process gone) is replaced.
pub fn take(state_dir: &Path, name: &str, what: &str, read_only: bool) -> Result<(), String> {
    if let Some(m) = active(state_dir, name) {
        if m.pid != std::process::id() {
            return Err(format!(
                "mirrorregistry/{name} is busy: {} (pid {}) since {}",
                m.what, m.pid, m.since
            ));
        }
    }
    let marker = Marker {
        pid: std::process::id(),
        what: what.to_string(),
        read_only,
        since: super::now_rfc3339(),
    };
    let write = || -> Result<(), Error> {
        let d = ensure_dir(state_dir, name)?;
        let path = d.join(MAINTENANCE_FILE);
        files::atomic_write(&path, &json_bytes(&path, &marker)?, 0o644)?;
        Ok(())
    };
    write().map_err(|e| e.to_string())
}

/// Gives the marker up (when this process holds it).
pub fn release(state_dir: &Path, name: &str) -> Result<(), Error> {
    let path = dir(state_dir, name).join(MAINTENANCE_FILE);
    let ours = files::read_optional(&path)?
        .and_then(|b| serde_json::from_slice::<Marker>(&b).ok())
        .is_some_and(|m| m.pid == std::process::id());
    if ours {
        files::remove_if_exists(&path)?;
    }
    Ok(())
}

/// The last garbage collection's report.
pub fn last_gc(state_dir: &Path, name: &str) -> Option<GcReport> {
    let bytes = files::read_optional(&dir(state_dir, name).join(GC_FILE)).ok()??;
    serde_json::from_slice(&bytes).ok()
}

pub fn save_gc(state_dir: &Path, name: &str, report: &GcReport) -> Result<(), Error> {
    let d = ensure_dir(state_dir, name)?;
    let path = d.join(GC_FILE);
    files::atomic_write(&path, &json_bytes(&path, report)?, 0o644)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_counts_while_its_process_lives() {
        let dir = tempfile::tempdir().unwrap();
        assert!(active(dir.path(), "a").is_none());
        take(dir.path(), "a", "garbage collection", true).unwrap();
        let m = active(dir.path(), "a").unwrap();
        assert_eq!(m.pid, std::process::id());
        // Another live process's marker refuses; a dead one's does not.
        let path = dir.path().join("a").join(MAINTENANCE_FILE);
        let other = Marker {
            pid: 1,
            ..m.clone()
        };
        std::fs::write(&path, serde_json::to_vec(&other).unwrap()).unwrap();
        let e = take(dir.path(), "a", "backup", false).unwrap_err();
        assert!(e.contains("busy: garbage collection (pid 1)"), "{e}");
        release(dir.path(), "a").unwrap();
        assert!(path.exists(), "not ours to release");
        let dead = Marker {
            pid: u32::MAX - 1,
            ..m
        };
        std::fs::write(&path, serde_json::to_vec(&dead).unwrap()).unwrap();
        assert!(active(dir.path(), "a").is_none());
        take(dir.path(), "a", "backup", false).unwrap();
        release(dir.path(), "a").unwrap();
        assert!(!path.exists());
    }
}
