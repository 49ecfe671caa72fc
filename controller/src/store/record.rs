//! The ownership record under `<state-dir>/<name>/`: what the controller
//! created for a registry, written before it creates anything, so a deleted
//! spec can be torn down even after a restart, and nothing it did not create
//! is ever touched.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::claims::{Claim, Claims, Held};
use super::{dir, json_bytes, Error};
use crate::api::DeletionPolicy;
use crate::host::files;

pub const RECORD_FILE: &str = "owned.json";

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
    /// The podman network it created for the pod (removed with the pod,
    /// whatever the deletionPolicy: it holds no data).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub networks: BTreeSet<String>,
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
    /// Directories the controller created: the root (when it did not exist)
    /// and the layout under it. With deletionPolicy Delete only these are
    /// removed, and only once empty. A record from before this field lists
    /// none, so its root reads as one that already existed.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub created_dirs: BTreeSet<PathBuf>,
    /// Files under the root the controller (or `mrctl install`) writes.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub files: BTreeSet<PathBuf>,
    /// What the registry uses, created or not, so no other registry shares
    /// it (see `claims`). Older records derive it from what they list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<Claims>,
}

impl Record {
    /// What this record holds: its claims, or for a record written before
    /// claims were kept, its root, created volumes and data paths and the
    /// port of its trust entries.
    pub fn held(&self) -> Claims {
        if let Some(c) = &self.claims {
            return c.clone();
        }
        let mut out = Claims::new();
        if !self.root.as_os_str().is_empty() {
            out.insert(Claim {
                field: "spec.root".into(),
                what: Held::Path(self.root.clone()),
            });
        }
        out.extend(self.volumes.iter().map(|v| Claim {
            field: "spec.storage.volume".into(),
            what: Held::Volume(v.clone()),
        }));
        out.extend(self.data_paths.iter().map(|p| Claim {
            field: "spec.storage.path".into(),
            what: Held::Path(p.clone()),
        }));
        let ports = self.trust_dirs.iter().filter_map(|d| {
            let name = d.file_name()?.to_str()?;
            name.rsplit_once(':')?.1.parse::<u16>().ok()
        });
        out.extend(ports.map(|p| Claim {
            field: "spec.port".into(),
            what: Held::Port(p),
        }));
        out
    }

    /// Whether the root was created by the controller (never when the
    /// record cannot tell).
    pub fn root_created(&self) -> bool {
        self.created_dirs.contains(&self.root)
    }
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
    let path = super::ensure_dir(state_dir, &r.name)?.join(RECORD_FILE);
    let json = json_bytes(&path, r)?;
    Ok(files::write_if_changed(&path, &json, 0o600)?)
}

/// Every other registry's recorded claims: what a teardown must not touch.
/// A record that cannot be read fails the whole answer: what it claims is
/// unknown, so nothing may be deleted.
pub fn others_claims(state_dir: &Path, me: &str) -> Result<Vec<(String, Claims)>, Error> {
    let mut out = Vec::new();
    for n in super::names(state_dir).into_iter().filter(|n| n != me) {
        if let Some(rec) = load(state_dir, &n)? {
            out.push((n, rec.held()));
        }
    }
    // Data a Retain teardown kept is still someone's: it comes back with
    // its spec.
    for n in super::retained::names(state_dir) {
        if n == me || out.iter().any(|(o, _)| *o == n) {
            continue;
        }
        if let Some(k) = super::retained::load_any(state_dir, &n) {
            out.push((format!("{n} (kept data)"), k.claims));
        }
    }
    Ok(out)
}
