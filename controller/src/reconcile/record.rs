//! The ownership record under `<state-dir>/<name>/`: what the controller
//! created for a registry, written before it creates anything, so a deleted
//! spec can be torn down even after a restart, and nothing it did not create
//! is ever touched.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::claims::{Claim, Claims, Held};
use crate::api::{DeletionPolicy, Status};
use crate::host::files;

pub const RECORD_FILE: &str = "owned.json";
pub const STATUS_FILE: &str = "status.yaml";
/// One JSON line per status transition, newest last; `mrctl describe` shows
/// the recent ones.
pub const EVENTS_FILE: &str = "events.jsonl";
/// How many events are kept per registry.
pub const MAX_EVENTS: usize = 100;
/// Longest event message kept, in characters.
const MAX_EVENT_MESSAGE: usize = 512;

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

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Files(#[from] files::Error),
    #[error("ownership record {path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    /// Nothing is written: an empty record would read as "nothing created".
    #[error("cannot serialise {path}: {message}")]
    Serialise { path: PathBuf, message: String },
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
    let path = d.join(RECORD_FILE);
    let mut json = serde_json::to_vec_pretty(r).map_err(|e| Error::Serialise {
        path: path.clone(),
        message: e.to_string(),
    })?;
    json.push(b'\n');
    Ok(files::write_if_changed(&path, &json, 0o600)?)
}

/// What a registry torn down with Retain leaves in the state directory:
/// which of its kept directories the controller created, so a spec that
/// comes back (the same name and root) may delete them later. Without it a
/// kept root would read as one that existed before.
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

/// What a Retain teardown of `name` kept, whatever root comes back.
pub fn load_retained(state_dir: &Path, name: &str) -> Option<Retained> {
    let bytes = files::read_optional(&dir(state_dir, name).join(RETAINED_FILE)).ok()??;
    serde_json::from_slice::<Retained>(&bytes).ok()
}

/// Names with a retained.json, sorted.
pub fn retained_names(state_dir: &Path) -> Vec<String> {
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

/// Keeps what `rec` created of the data it leaves behind.
pub fn save_retained(state_dir: &Path, rec: &Record) -> Result<(), Error> {
    let kept = Retained {
        root: rec.root.clone(),
        created_dirs: rec.created_dirs.clone(),
        data_paths: rec.data_paths.clone(),
        claims: rec.held(),
    };
    let d = dir(state_dir, &rec.name);
    files::ensure_dir(state_dir, 0o700)?;
    files::ensure_dir(&d, 0o700)?;
    let mut json = serde_json::to_vec_pretty(&kept).map_err(|e| Error::Serialise {
        path: d.join(RETAINED_FILE),
        message: e.to_string(),
    })?;
    json.push(b'\n');
    files::write_if_changed(&d.join(RETAINED_FILE), &json, 0o600)?;
    Ok(())
}

/// What a Retain teardown of `name` kept under `root`, if that is where
/// the registry comes back; unreadable reads as nothing (pre-existing).
pub fn retained(state_dir: &Path, name: &str, root: &Path) -> Option<Retained> {
    load_retained(state_dir, name).filter(|r| r.root == root)
}

/// Forgets what a Retain teardown kept (after a Delete, or once a new
/// record holds it).
pub fn remove_retained(state_dir: &Path, name: &str) -> Result<(), Error> {
    files::remove_if_exists(&dir(state_dir, name).join(RETAINED_FILE))?;
    let _ = std::fs::remove_dir(dir(state_dir, name));
    Ok(())
}

/// Forgets a registry: its record and status copy go, so it disappears from
/// `mrctl get`.
pub fn remove(state_dir: &Path, name: &str) -> Result<(), Error> {
    let d = dir(state_dir, name);
    files::remove_if_exists(&d.join(RECORD_FILE))?;
    files::remove_if_exists(&d.join(STATUS_FILE))?;
    files::remove_if_exists(&d.join(EVENTS_FILE))?;
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

/// The status copy every reader (mrctl) can rely on, whatever the status
/// mode. A change of phase or of a condition's status is also appended to
/// the events log; an unchanged status writes nothing.
pub fn save_status(state_dir: &Path, name: &str, status: &Status) -> Result<bool, Error> {
    let d = dir(state_dir, name);
    files::ensure_dir(state_dir, 0o700)?;
    files::ensure_dir(&d, 0o700)?;
    let path = d.join(STATUS_FILE);
    let yaml = serde_yaml::to_string(status).map_err(|e| Error::Serialise {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let old = files::read_optional(&path)?;
    if old.as_deref() == Some(yaml.as_bytes()) {
        return Ok(files::ensure_mode(&path, 0o644)?);
    }
    files::atomic_write(&path, yaml.as_bytes(), 0o644)?;
    let prev = old.and_then(|b| serde_yaml::from_slice::<Status>(&b).ok());
    let events = transitions(
        prev.as_ref(),
        status,
        &crate::reconcile::status::now_rfc3339(),
    );
    if !events.is_empty() {
        // The log is for people; losing a line must not fail a reconcile.
        if let Err(e) = append_events(&d.join(EVENTS_FILE), &events) {
            tracing::debug!(registry = name, error = %e, "cannot append to the events log");
        }
    }
    Ok(true)
}

/// Something that happened to a registry, Kubernetes-event style.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339, UTC.
    pub time: String,
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub message: String,
}

fn event(time: &str, ok: bool, reason: &str, message: String) -> Event {
    let mut message = message;
    if message.chars().count() > MAX_EVENT_MESSAGE {
        message = message.chars().take(MAX_EVENT_MESSAGE).collect::<String>() + "…";
    }
    Event {
        time: time.to_string(),
        type_: if ok { "Normal" } else { "Warning" }.to_string(),
        reason: reason.to_string(),
        message,
    }
}

/// The events between two statuses: a new phase, and each condition other
/// than Ready whose status changed.
pub fn transitions(prev: Option<&Status>, new: &Status, now: &str) -> Vec<Event> {
    use crate::api::Phase;
    let mut out = Vec::new();
    let ready = new.conditions.iter().find(|c| c.type_ == "Ready");
    if prev.map(|p| p.phase) != Some(new.phase) {
        let from = prev.map(|p| p.phase.as_str()).unwrap_or("none");
        let mut message = format!("phase {from} -> {}", new.phase.as_str());
        if let Some(r) = ready.filter(|r| !r.message.is_empty()) {
            message.push_str(": ");
            message.push_str(&r.message);
        }
        let ok = !matches!(new.phase, Phase::Failed | Phase::Degraded);
        out.push(event(now, ok, new.phase.as_str(), message));
    }
    for c in new.conditions.iter().filter(|c| c.type_ != "Ready") {
        let before = prev.and_then(|p| p.conditions.iter().find(|x| x.type_ == c.type_));
        if before.map(|b| b.status.as_str()) == Some(c.status.as_str()) {
            continue;
        }
        out.push(event(
            now,
            c.status == "True",
            &c.reason,
            format!("{} is {}: {}", c.type_, c.status, c.message),
        ));
    }
    out
}

fn append_events(path: &Path, new: &[Event]) -> Result<(), Error> {
    let old = files::read_optional(path)?.unwrap_or_default();
    let text = String::from_utf8_lossy(&old);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.extend(new.iter().filter_map(|e| serde_json::to_string(e).ok()));
    let skip = lines.len().saturating_sub(MAX_EVENTS);
    let mut out = lines[skip..].join("\n");
    out.push('\n');
    files::atomic_write(path, out.as_bytes(), 0o644)?;
    Ok(())
}

/// The recorded events of a registry, oldest first; lines that do not parse
/// are skipped.
pub fn events(state_dir: &Path, name: &str) -> Vec<Event> {
    let Ok(Some(bytes)) = files::read_optional(&dir(state_dir, name).join(EVENTS_FILE)) else {
        return Vec::new();
    };
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Condition, Phase};

    fn cond(t: &str, s: &str, msg: &str) -> Condition {
        Condition {
            type_: t.into(),
            status: s.into(),
            reason: "R".into(),
            message: msg.into(),
            last_transition_time: String::new(),
        }
    }

    #[test]
    fn status_transitions_become_bounded_events() {
        let dir = tempfile::tempdir().unwrap();
        let s1 = Status {
            phase: Phase::Progressing,
            conditions: vec![
                cond("Ready", "False", "coming up"),
                cond("UnitsActive", "False", "x.service is inactive"),
            ],
            ..Status::default()
        };
        assert!(save_status(dir.path(), "a", &s1).unwrap());
        let ev = events(dir.path(), "a");
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert_eq!(ev[0].reason, "Progressing");
        assert_eq!(ev[0].message, "phase none -> Progressing: coming up");
        assert_eq!(ev[1].type_, "Warning");
        assert!(ev[1].message.starts_with("UnitsActive is False"));

        // Unchanged status: nothing written, no event.
        assert!(!save_status(dir.path(), "a", &s1).unwrap());
        assert_eq!(events(dir.path(), "a").len(), 2);

        // A changed message alone is written but is no transition.
        let mut s2 = s1.clone();
        s2.conditions[1].message = "y.service is inactive".into();
        assert!(save_status(dir.path(), "a", &s2).unwrap());
        assert_eq!(events(dir.path(), "a").len(), 2);

        let s3 = Status {
            phase: Phase::Ready,
            conditions: vec![
                cond("Ready", "True", "serving"),
                cond("UnitsActive", "True", "ok"),
            ],
            ..Status::default()
        };
        assert!(save_status(dir.path(), "a", &s3).unwrap());
        let ev = events(dir.path(), "a");
        assert_eq!(ev.len(), 4);
        assert_eq!(ev[2].message, "phase Progressing -> Ready: serving");
        assert_eq!(ev[3].type_, "Normal");

        // Bounded: flip many times, keep the last MAX_EVENTS.
        for i in 0..MAX_EVENTS {
            let s = if i % 2 == 0 { &s1 } else { &s3 };
            save_status(dir.path(), "a", s).unwrap();
        }
        assert_eq!(events(dir.path(), "a").len(), MAX_EVENTS);

        // Forgetting the registry removes the log too, and the directory.
        remove(dir.path(), "a").unwrap();
        assert!(!dir.path().join("a").exists());
    }
}
