//! The ownership record under `<state-dir>/<name>/`: what the controller
//! created for a registry, written before it creates anything, so a deleted
//! spec can be torn down even after a restart, and nothing it did not create
//! is ever touched.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::api::{DeletionPolicy, Status};
use crate::host::files;

pub const RECORD_FILE: &str = "owned.json";
pub const STATUS_FILE: &str = "status.yaml";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub name: String,
    /// The spec file this registry came from.
    pub spec_file: PathBuf,
    pub root: PathBuf,
    /// Unit names (files in the unit directory).
    pub units: BTreeSet<String>,
    pub pod: String,
    pub containers: BTreeSet<String>,
    /// Named volumes the controller created (not ones that already existed).
    pub volumes: BTreeSet<String>,
    /// Host data directories the controller created.
    pub data_paths: BTreeSet<PathBuf>,
    /// CA trust directories (certs.d/<host:port>) it wrote.
    pub trust_dirs: BTreeSet<PathBuf>,
    pub deletion_policy: DeletionPolicy,
    /// Per unit, a digest of what it was last started with (its unit file
    /// and the files its container mounts). A unit whose inputs no longer
    /// match is restarted, even when the write that changed them was made by
    /// a run that died before it could restart anything.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub started_with: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Files(#[from] files::Error),
    #[error("ownership record {path}: {message}")]
    Corrupt { path: PathBuf, message: String },
}

pub fn dir(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join(name)
}

pub fn load(state_dir: &Path, name: &str) -> Result<Option<Record>, Error> {
    let path = dir(state_dir, name).join(RECORD_FILE);
    let Some(bytes) = files::read_optional(&path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::Corrupt {
            path,
            message: e.to_string(),
        })
}

/// Writes the record when it changed. Returns true when written.
pub fn save(state_dir: &Path, r: &Record) -> Result<bool, Error> {
    let d = dir(state_dir, &r.name);
    files::ensure_dir(state_dir, 0o700)?;
    files::ensure_dir(&d, 0o700)?;
    let mut json = serde_json::to_vec_pretty(r).unwrap_or_default();
    json.push(b'\n');
    Ok(files::write_if_changed(&d.join(RECORD_FILE), &json, 0o600)?)
}

/// Forgets a registry: its record and status copy go, so it disappears from
/// `mrctl get`.
pub fn remove(state_dir: &Path, name: &str) -> Result<(), Error> {
    let d = dir(state_dir, name);
    files::remove_if_exists(&d.join(RECORD_FILE))?;
    files::remove_if_exists(&d.join(STATUS_FILE))?;
    let _ = std::fs::remove_dir(&d);
    Ok(())
}

/// Names with a record, sorted.
pub fn names(state_dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(state_dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(RECORD_FILE).is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

pub fn load_status(state_dir: &Path, name: &str) -> Option<Status> {
    let bytes = files::read_optional(&dir(state_dir, name).join(STATUS_FILE)).ok()??;
    serde_yaml::from_slice(&bytes).ok()
}

/// The status copy every reader (mrctl) can rely on, whatever the status mode.
pub fn save_status(state_dir: &Path, name: &str, status: &Status) -> Result<bool, Error> {
    let d = dir(state_dir, name);
    files::ensure_dir(state_dir, 0o700)?;
    files::ensure_dir(&d, 0o700)?;
    let yaml = serde_yaml::to_string(status).unwrap_or_default();
    Ok(files::write_if_changed(
        &d.join(STATUS_FILE),
        yaml.as_bytes(),
        0o644,
    )?)
}
