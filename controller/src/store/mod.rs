//! What the controller and `mrctl` share on disk, and the only code that
//! reads or writes it. Per registry, under `<state-dir>/<name>/`:
//!
//! | file | module | written by | read by |
//! |---|---|---|---|
//! | `owned.json` | [`record`] | the controller, before it creates anything; `mrctl install` when it creates the root | teardown, admission, drift, every `mrctl` command |
//! | `status.yaml` | [`status`] | the controller, on every change | `mrctl get/describe/wait`, `--once` |
//! | `events.jsonl` | [`events`] | appended with `status.yaml` | `mrctl describe` |
//! | `retained.json` | [`retained`] | a Retain teardown | the next reconcile of the same name and root |
//! | `maintenance.json`, `gc.json` | [`maintenance`] | `mrctl gc` and `backup` | the reconcile (read-only config, `status.storage`) |
//! | `.lock` | [`lock`] | flocked by each reconcile and teardown, and by `mrctl gc` | (nobody reads it) |
//!
//! Beside them, [`index`] (which spec file in the watch directory holds
//! which name, so both sides resolve names the same way) and [`claims`]
//! (what a registry uses that no other may share, as kept in its record).
//! Field names and file names are the contract: an older `mrctl` reads what
//! a newer controller writes.

pub mod claims;
pub mod events;
pub mod index;
pub mod lock;
pub mod maintenance;
pub mod record;
pub mod retained;
pub mod status;

use std::path::{Path, PathBuf};

use crate::host::files;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Files(#[from] files::Error),
    #[error("ownership record {path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    /// Nothing is written: an empty record would read as "nothing created".
    #[error("cannot serialise {path}: {message}")]
    Serialise { path: PathBuf, message: String },
    #[error("cannot {op} the registry's lock {}: {source}", path.display())]
    Lock {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The directory of one registry's files.
pub fn dir(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join(name)
}

/// Creates the state directory and `name`'s directory (0700) and returns
/// the latter.
fn ensure_dir(state_dir: &Path, name: &str) -> Result<PathBuf, Error> {
    let d = dir(state_dir, name);
    files::ensure_dir(state_dir, 0o700)?;
    files::ensure_dir(&d, 0o700)?;
    Ok(d)
}

/// Pretty JSON with a final newline; nothing when it cannot be serialised.
fn json_bytes<T: serde::Serialize>(path: &Path, value: &T) -> Result<Vec<u8>, Error> {
    let mut json = serde_json::to_vec_pretty(value).map_err(|e| Error::Serialise {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    json.push(b'\n');
    Ok(json)
}

/// Names with an ownership record, sorted.
pub fn names(state_dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(state_dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(record::RECORD_FILE).is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// Forgets a registry: its record, status copy and events go, so it
/// disappears from `mrctl get`.
pub fn remove(state_dir: &Path, name: &str) -> Result<(), Error> {
    let d = dir(state_dir, name);
    files::remove_if_exists(&d.join(record::RECORD_FILE))?;
    files::remove_if_exists(&d.join(status::STATUS_FILE))?;
    files::remove_if_exists(&d.join(events::EVENTS_FILE))?;
    files::remove_if_exists(&d.join(maintenance::GC_FILE))?;
    // Last. Teardown holds it meanwhile, so a taker that opened it before
    // sees it gone and makes a new one (`lock::try_take`); restore, undoing
    // a failed restore of a name no registry has yet, does not need to.
    files::remove_if_exists(&d.join(lock::LOCK_FILE))?;
    let _ = std::fs::remove_dir(&d);
    Ok(())
}

/// RFC 3339, second precision, UTC: every time the store keeps (a
/// condition's lastTransitionTime, an event's time).
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    now.format(&fmt).unwrap_or_default()
}
