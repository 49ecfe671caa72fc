//! `retained.json`: what a registry torn down with Retain leaves in the
//! state directory: which of its kept directories the controller created, so
//! a spec that comes back (the same name and root) may delete them later.
//! Without it a kept root would read as one that existed before.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::claims::Claims;
use super::record::Record;
use super::{dir, json_bytes, Error};
use crate::host::files;

pub const RETAINED_FILE: &str = "retained.json";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Retained {
    pub root: PathBuf,
    #[serde(default)]
    pub created_dirs: BTreeSet<PathBuf>,
    #[serde(default)]
    pub data_paths: BTreeSet<PathBuf>,
    /// What the registry used when it was torn down: its kept data, which
    /// no other registry's Delete may remove.
    #[serde(default)]
    pub claims: Claims,
}

/// Keeps what `rec` created of the data it leaves behind.
pub fn save(state_dir: &Path, rec: &Record) -> Result<(), Error> {
    let kept = Retained {
        root: rec.root.clone(),
        created_dirs: rec.created_dirs.clone(),
        data_paths: rec.data_paths.clone(),
        claims: rec.held(),
    };
    let path = super::ensure_dir(state_dir, &rec.name)?.join(RETAINED_FILE);
    let json = json_bytes(&path, &kept)?;
    files::write_if_changed(&path, &json, 0o600)?;
    Ok(())
}

/// What a Retain teardown of `name` kept under `root`, if that is where
/// the registry comes back; unreadable reads as nothing (pre-existing).
pub fn load(state_dir: &Path, name: &str, root: &Path) -> Option<Retained> {
    load_any(state_dir, name).filter(|r| r.root == root)
}

/// What a Retain teardown of `name` kept, wherever its root was.
pub fn load_any(state_dir: &Path, name: &str) -> Option<Retained> {
    let bytes = files::read_optional(&dir(state_dir, name).join(RETAINED_FILE)).ok()??;
    serde_json::from_slice::<Retained>(&bytes).ok()
}

/// Names with a retained.json, sorted.
pub fn names(state_dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(state_dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(RETAINED_FILE).is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// Forgets what a Retain teardown kept (after a Delete, or once a new
/// record holds it).
pub fn remove(state_dir: &Path, name: &str) -> Result<(), Error> {
    files::remove_if_exists(&dir(state_dir, name).join(RETAINED_FILE))?;
    let _ = std::fs::remove_dir(dir(state_dir, name));
    Ok(())
}
