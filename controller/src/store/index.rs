//! Which spec file holds which registry name, derived from the watched
//! directory each time it changes. It only tells the queue which names to look
//! at; reconcile re-reads the file itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::record;
use crate::api::load;
use crate::api::validate::is_dns1123_label;
use crate::spec_file::{read::read_spec, splice, watch};

/// One spec candidate as last seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// Hash of the file without its status block: our own status writes do
    /// not change it, a user's edit does.
    pub fingerprint: String,
}

#[derive(Clone, Debug, Default)]
pub struct Index {
    pub files: BTreeMap<PathBuf, Entry>,
    /// Entries the scan skipped, with why (a directory named *.yaml, ...).
    pub skipped: Vec<(PathBuf, String)>,
}

impl Index {
    pub fn files_for(&self, name: &str) -> Vec<PathBuf> {
        self.files
            .iter()
            .filter(|(_, e)| e.name == name)
            .map(|(p, _)| p.clone())
            .collect()
    }

    pub fn names(&self) -> BTreeSet<String> {
        self.files.values().map(|e| e.name.clone()).collect()
    }
}

fn fingerprint(bytes: &[u8]) -> String {
    let stripped = match std::str::from_utf8(bytes) {
        Ok(t) => splice::without_status(t).into_bytes(),
        Err(_) => bytes.to_vec(),
    };
    hex::encode(Sha256::digest(stripped))
}

/// The registry name a file stands for, even when it is invalid, so that a
/// broken edit is reported against the registry it breaks and never reads
/// as "this registry was deleted" (or renamed): a valid file's name; for an
/// invalid one the name this path had before, else the name its ownership
/// record gives, else a readable and valid metadata.name, else the stem.
pub fn name_of(path: &Path, bytes: &[u8], previous: Option<&Entry>, state_dir: &Path) -> String {
    if let Ok(l) = load::parse(path, bytes) {
        return l.name;
    }
    if let Some(p) = previous {
        return p.name.clone();
    }
    for n in super::names(state_dir) {
        if let Ok(Some(r)) = record::load(state_dir, &n) {
            if r.spec_file == path {
                return n;
            }
        }
    }
    let lenient = serde_yaml::from_slice::<serde_yaml::Value>(bytes)
        .ok()
        .and_then(|v| v.get("metadata")?.get("name")?.as_str().map(str::to_string))
        .filter(|n| is_dns1123_label(n));
    lenient.unwrap_or_else(|| load::name_from_file(path))
}

/// Rescans the directory. Returns the new index and the names to look at:
/// files added, removed or edited (ignoring status-only changes), under
/// their old and new names. Entries that cannot be used (a directory named
/// like a spec, a symlink out of the directory, an unsafe file in system
/// scope) stay in the index under the name they stand for, so they are
/// reported, never mistaken for a deleted spec.
pub fn rescan(
    dir: &Path,
    state_dir: &Path,
    old: &Index,
    strict: bool,
) -> (Index, BTreeSet<String>) {
    let mut index = Index::default();
    let mut dirty = BTreeSet::new();
    let scan = match watch::scan_dir(dir) {
        Ok(scan) => scan,
        Err(e) => {
            // Keep what we knew: a missing directory is not a deletion.
            tracing::warn!(dir = %dir.display(), error = %e, "cannot scan the watch directory");
            return (old.clone(), dirty);
        }
    };
    index.skipped = scan.skipped.clone();
    let candidates = scan
        .files
        .into_iter()
        .chain(scan.skipped.into_iter().map(|(p, _)| p));
    for path in candidates {
        let prev = old.files.get(&path);
        let (name, fp) = match read_spec(&path, dir, strict) {
            Ok(bytes) => {
                let fp = fingerprint(&bytes);
                let name = match prev {
                    Some(p) if p.fingerprint == fp => p.name.clone(),
                    _ => name_of(&path, &bytes, prev, state_dir),
                };
                (name, fp)
            }
            Err(problem) => {
                let name = match prev {
                    Some(p) => p.name.clone(),
                    None => name_of(&path, b"", None, state_dir),
                };
                (name, fingerprint(problem.as_bytes()))
            }
        };
        if prev.map(|p| (&p.name, &p.fingerprint)) != Some((&name, &fp)) {
            dirty.insert(name.clone());
            if let Some(p) = prev {
                dirty.insert(p.name.clone());
            }
        }
        index.files.insert(
            path,
            Entry {
                name,
                fingerprint: fp,
            },
        );
    }
    for (path, e) in &old.files {
        if !index.files.contains_key(path) {
            dirty.insert(e.name.clone());
        }
    }
    (index, dirty)
}
