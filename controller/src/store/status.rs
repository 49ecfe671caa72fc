//! `status.yaml`: the status copy every reader (`mrctl`) can rely on,
//! whatever the status mode (the spec file's own `status:` block is written
//! by `reconcile::writeback`).

use std::path::Path;

use super::{dir, events, Error};
use crate::api::Status;
use crate::host::files;

pub const STATUS_FILE: &str = "status.yaml";

/// The status copy of `name`; `None` when there is none or it does not
/// read.
pub fn load(state_dir: &Path, name: &str) -> Option<Status> {
    let bytes = files::read_optional(&dir(state_dir, name).join(STATUS_FILE)).ok()??;
    serde_yaml::from_slice(&bytes).ok()
}

/// Writes the status copy. A change of phase or of a condition's status is
/// also appended to the events log; an unchanged status writes nothing.
pub fn save(state_dir: &Path, name: &str, status: &Status) -> Result<bool, Error> {
    let d = super::ensure_dir(state_dir, name)?;
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
    let new_events = events::transitions(prev.as_ref(), status, &super::now_rfc3339());
    if !new_events.is_empty() {
        // The log is for people; losing a line must not fail a reconcile.
        if let Err(e) = events::append(&d.join(events::EVENTS_FILE), &new_events) {
            tracing::debug!(registry = name, error = %e, "cannot append to the events log");
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Condition, Phase};
    use crate::store::events::{self, MAX_EVENTS};
    use crate::store::remove;

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
        assert!(save(dir.path(), "a", &s1).unwrap());
        let ev = events::read(dir.path(), "a");
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert_eq!(ev[0].reason, "Progressing");
        assert_eq!(ev[0].message, "phase none -> Progressing: coming up");
        assert_eq!(ev[1].type_, "Warning");
        assert!(ev[1].message.starts_with("UnitsActive is False"));

        // Unchanged status: nothing written, no event.
        assert!(!save(dir.path(), "a", &s1).unwrap());
        assert_eq!(events::read(dir.path(), "a").len(), 2);

        // A changed message alone is written but is no transition.
        let mut s2 = s1.clone();
        s2.conditions[1].message = "y.service is inactive".into();
        assert!(save(dir.path(), "a", &s2).unwrap());
        assert_eq!(events::read(dir.path(), "a").len(), 2);

        let s3 = Status {
            phase: Phase::Ready,
            conditions: vec![
                cond("Ready", "True", "serving"),
                cond("UnitsActive", "True", "ok"),
            ],
            ..Status::default()
        };
        assert!(save(dir.path(), "a", &s3).unwrap());
        let ev = events::read(dir.path(), "a");
        assert_eq!(ev.len(), 4);
        assert_eq!(ev[2].message, "phase Progressing -> Ready: serving");
        assert_eq!(ev[3].type_, "Normal");

        // Bounded: flip many times, keep the last MAX_EVENTS.
        for i in 0..MAX_EVENTS {
            let s = if i % 2 == 0 { &s1 } else { &s3 };
            save(dir.path(), "a", s).unwrap();
        }
        assert_eq!(events::read(dir.path(), "a").len(), MAX_EVENTS);

        // Forgetting the registry removes the log too, and the directory.
        remove(dir.path(), "a").unwrap();
        assert!(!dir.path().join("a").exists());
    }
}
