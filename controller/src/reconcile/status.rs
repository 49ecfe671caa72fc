//! Conditions and phase, Kubernetes style, and writing status back: into the
//! spec file's `status:` block (inline mode) and always into the state dir.

use std::path::Path;

use crate::api::{Condition, Phase, Status};
use crate::spec_file::{splice, write};

pub const READY: &str = "Ready";
pub const SPEC_VALID: &str = "SpecValid";
pub const CERTIFICATE_VALID: &str = "CertificateValid";
pub const IMAGES_PRESENT: &str = "ImagesPresent";
pub const UNITS_ACTIVE: &str = "UnitsActive";
pub const HEALTHY: &str = "Healthy";

/// RFC 3339, second precision, UTC.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    now.format(&fmt).unwrap_or_default()
}

/// Builds a condition list, keeping lastTransitionTime from the previous
/// status when a condition's status did not change.
pub struct Conditions<'a> {
    prev: &'a [Condition],
    now: String,
    pub list: Vec<Condition>,
}

impl<'a> Conditions<'a> {
    pub fn new(prev: &'a [Condition]) -> Self {
        Conditions {
            prev,
            now: now_rfc3339(),
            list: Vec::new(),
        }
    }

    pub fn set(&mut self, type_: &str, ok: Option<bool>, reason: &str, message: impl Into<String>) {
        let status = match ok {
            Some(true) => "True",
            Some(false) => "False",
            None => "Unknown",
        };
        let last = self
            .prev
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| self.now.clone());
        self.list.retain(|c| c.type_ != type_);
        self.list.push(Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message: message.into(),
            last_transition_time: last,
        });
    }

    pub fn is_true(&self, type_: &str) -> bool {
        self.list
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    }

    pub fn get(&self, type_: &str) -> Option<&Condition> {
        self.list.iter().find(|c| c.type_ == type_)
    }
}

/// The YAML body of a status block.
pub fn to_yaml(status: &Status) -> Result<String, String> {
    serde_yaml::to_string(status).map_err(|e| format!("cannot serialise status: {e}"))
}

#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// The spec file already held this status (or state-only mode).
    Unchanged,
    Written,
    /// The file changed since it was read: nothing written, look again.
    Conflict,
    /// The file cannot take status (a symlink, or text the splice cannot
    /// place safely); status lives in the state dir only.
    StateOnly(String),
}

/// Splices `status` into the spec file `path` whose bytes were `read`, only
/// when the file's own status differs.
pub fn write_inline(
    path: &Path,
    read: &[u8],
    current: Option<&Status>,
    status: &Status,
) -> Written {
    if current == Some(status) {
        return Written::Unchanged;
    }
    let Ok(text) = std::str::from_utf8(read) else {
        return Written::StateOnly("file is not UTF-8".into());
    };
    let body = match to_yaml(status) {
        Ok(b) => b,
        Err(e) => return Written::StateOnly(e),
    };
    let new = match splice::splice_status_checked(text, Some(&body)) {
        Ok(t) => t,
        Err(e) => return Written::StateOnly(e.to_string()),
    };
    match write::replace_if_unchanged(path, read, new.as_bytes()) {
        Ok(write::Outcome::Written) => Written::Written,
        Ok(write::Outcome::Conflict) | Ok(write::Outcome::Missing) => Written::Conflict,
        Err(e) => Written::StateOnly(e.to_string()),
    }
}

/// Ready when every condition that matters is true.
pub fn phase_of(c: &Conditions<'_>, paused: bool, was_ready: bool) -> Phase {
    if !c.is_true(SPEC_VALID) {
        return Phase::Failed;
    }
    // Refused for a conflict: nothing happens until the user acts.
    if c.get(UNITS_ACTIVE)
        .is_some_and(|x| x.reason == super::admission::REASON)
    {
        return Phase::Failed;
    }
    if paused {
        return Phase::Paused;
    }
    let all = [CERTIFICATE_VALID, IMAGES_PRESENT, UNITS_ACTIVE, HEALTHY];
    if all.iter().all(|t| c.is_true(t)) {
        Phase::Ready
    } else if c
        .get(CERTIFICATE_VALID)
        .is_some_and(|x| x.status == "False")
    {
        Phase::Failed
    } else if was_ready {
        Phase::Degraded
    } else {
        Phase::Progressing
    }
}
