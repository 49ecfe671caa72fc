//! The one place where what the steps found becomes conditions, and
//! conditions become a phase and the Ready condition. Steps return typed
//! outcomes ([`Outcome`]); [`verdict`] folds them, in the order they
//! happened, into `status.conditions`, so every reason and message a
//! reconcile can report is written here.

use std::path::PathBuf;

use crate::api::day2::human_bytes;
use crate::api::{Condition, ConditionStatus, ConditionType as T, Phase, Reason, Status};

/// What one step found or did that status reports. Later outcomes set the
/// same condition again: the list is folded in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The spec parsed and validated.
    SpecValid,
    /// Admission refused the registry (`super::admission`): the message
    /// names the other registry or the object.
    Refused(String),
    /// Another program holds the port; the pod unit was not started.
    PortConflict {
        port: u16,
        unit: String,
    },
    Tls(TlsOutcome),
    /// The images are present (how: present, loaded, pulled), or which is
    /// missing and why.
    Images(Result<String, String>),
    /// A unit is being stopped by someone else; it is started again once
    /// stopped.
    Stopping(String),
    Observed(Observation),
    /// Quay is healthy but its initial user could not be created.
    InitUserFailed(String),
    /// A step failed with this error; the steps after it did not run.
    Failed(String),
    /// The storage's free space against spec.storage.minFree, or why it
    /// could not be read.
    Storage(Result<StorageSeen, String>),
}

/// What the storage step saw (`steps::storage_usage`).
#[derive(Clone, Debug, PartialEq)]
pub struct StorageSeen {
    pub path: PathBuf,
    /// As reported in status.storage.freeBytes.
    pub free: u64,
    /// spec.storage.minFree as written.
    pub min_free: String,
    pub full: bool,
    pub low: bool,
}

/// What the certificate step found.
#[derive(Clone, Debug, PartialEq)]
pub enum TlsOutcome {
    Generated {
        hostname: String,
        not_after: time::Date,
    },
    Provided {
        cert_file: PathBuf,
        not_after: time::Date,
    },
    /// The user's pair is refused: nothing was written.
    Invalid(Vec<String>),
}

/// Units, containers and the HTTPS endpoint as observed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    pub paused: bool,
    /// What does not run: `x.service is failed`, `container y is not running`.
    pub down: Vec<String>,
    /// The probe's verdict; `None` when it was not probed (paused, or
    /// something is down).
    pub probe: Option<Result<String, String>>,
}

impl Observation {
    /// Healthy: the probe succeeded.
    pub fn healthy(&self) -> bool {
        matches!(self.probe, Some(Ok(_)))
    }
}

/// One condition while it is being built.
struct Entry {
    type_: T,
    status: ConditionStatus,
    reason: Reason,
    message: String,
    last_transition_time: String,
}

/// Builds a condition list, keeping lastTransitionTime from the previous
/// status when a condition's status did not change.
struct Conditions<'a> {
    prev: &'a [Condition],
    now: &'a str,
    list: Vec<Entry>,
}

impl<'a> Conditions<'a> {
    fn new(prev: &'a [Condition], now: &'a str) -> Self {
        Conditions {
            prev,
            now,
            list: Vec::new(),
        }
    }

    fn set(&mut self, type_: T, ok: Option<bool>, reason: Reason, message: impl Into<String>) {
        let status = ConditionStatus::of(ok);
        let last = self
            .prev
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| self.now.to_string());
        self.list.retain(|c| c.type_ != type_);
        self.list.push(Entry {
            type_,
            status,
            reason,
            message: message.into(),
            last_transition_time: last,
        });
    }

    fn get(&self, type_: T) -> Option<&Entry> {
        self.list.iter().find(|c| c.type_ == type_)
    }

    fn is_true(&self, type_: T) -> bool {
        self.get(type_)
            .is_some_and(|c| c.status == ConditionStatus::True)
    }

    /// The conditions, in the order of [`T::ALL`].
    fn into_list(self) -> Vec<Condition> {
        let mut list: Vec<Condition> = self
            .list
            .into_iter()
            .map(|e| Condition {
                type_: e.type_.to_string(),
                status: e.status.to_string(),
                reason: e.reason.to_string(),
                message: e.message,
                last_transition_time: e.last_transition_time,
            })
            .collect();
        sort(&mut list);
        list
    }

    /// Sets the conditions `o` speaks for.
    fn apply(&mut self, o: &Outcome) {
        match o {
            Outcome::SpecValid => self.set(
                T::SpecValid,
                Some(true),
                Reason::Valid,
                "spec parsed and validated",
            ),
            Outcome::Refused(msg) => self.set(T::UnitsActive, Some(false), Reason::Conflict, msg),
            Outcome::PortConflict { port, unit } => self.set(
                T::UnitsActive,
                Some(false),
                Reason::PortConflict,
                format!("port {port} is already in use by another program; {unit} not started"),
            ),
            Outcome::Tls(TlsOutcome::Generated {
                hostname,
                not_after,
            }) => self.set(
                T::CertificateValid,
                Some(true),
                Reason::Generated,
                format!(
                    "generated certificate for {hostname} valid until {not_after}; renewed 30 days before"
                ),
            ),
            Outcome::Tls(TlsOutcome::Provided {
                cert_file,
                not_after,
            }) => self.set(
                T::CertificateValid,
                Some(true),
                Reason::Provided,
                format!("{} valid until {not_after}", cert_file.display()),
            ),
            Outcome::Tls(TlsOutcome::Invalid(problems)) => self.set(
                T::CertificateValid,
                Some(false),
                Reason::InvalidCertificate,
                problems.join(" "),
            ),
            Outcome::Images(Ok(how)) => {
                self.set(T::ImagesPresent, Some(true), Reason::Present, how)
            }
            Outcome::Images(Err(msg)) => {
                self.set(T::ImagesPresent, Some(false), Reason::ImageMissing, msg)
            }
            Outcome::Stopping(unit) => self.set(
                T::UnitsActive,
                Some(false),
                Reason::Stopping,
                format!("{unit} is stopping; it is started again once stopped"),
            ),
            Outcome::Observed(o) => self.observed(o),
            Outcome::InitUserFailed(msg) => {
                self.set(T::Healthy, Some(false), Reason::InitUserFailed, msg)
            }
            Outcome::Failed(msg) => self.set(T::Healthy, None, Reason::ReconcileError, msg),
            Outcome::Storage(seen) => self.storage(seen),
        }
    }

    fn storage(&mut self, seen: &Result<StorageSeen, String>) {
        let seen = match seen {
            Ok(s) => s,
            Err(msg) => {
                return self.set(
                    T::StorageAvailable,
                    None,
                    Reason::NotChecked,
                    format!("cannot read the storage: {msg}"),
                )
            }
        };
        let (path, free) = (seen.path.display(), human_bytes(seen.free));
        if seen.full {
            self.set(
                T::StorageAvailable,
                Some(false),
                Reason::Full,
                format!("{path} is full ({free} free): pushes fail, pulls are served; free space on its filesystem"),
            )
        } else if seen.low {
            self.set(
                T::StorageAvailable,
                Some(false),
                Reason::LowSpace,
                format!(
                    "{path} has {free} free, below spec.storage.minFree {}",
                    seen.min_free
                ),
            )
        } else {
            self.set(
                T::StorageAvailable,
                Some(true),
                Reason::Sufficient,
                format!(
                    "{path} has {free} free (spec.storage.minFree {})",
                    seen.min_free
                ),
            )
        }
    }

    fn observed(&mut self, o: &Observation) {
        if o.paused {
            self.set(
                T::UnitsActive,
                Some(false),
                Reason::Paused,
                "units stopped because spec.paused is true",
            );
            self.set(T::Healthy, None, Reason::Paused, "not probed while paused");
            return;
        }
        // A port conflict found while acting stands; anything else is observed.
        if self
            .get(T::UnitsActive)
            .is_none_or(|x| x.reason != Reason::PortConflict)
        {
            if o.down.is_empty() {
                self.set(
                    T::UnitsActive,
                    Some(true),
                    Reason::Active,
                    "all units active and containers running",
                );
            } else {
                self.set(
                    T::UnitsActive,
                    Some(false),
                    Reason::NotActive,
                    o.down.join("; "),
                );
            }
        }
        match &o.probe {
            Some(Ok(msg)) => self.set(T::Healthy, Some(true), Reason::ProbeSucceeded, msg),
            Some(Err(msg)) => self.set(T::Healthy, Some(false), Reason::ProbeFailed, msg),
            None => self.set(
                T::Healthy,
                Some(false),
                Reason::NotRunning,
                "not probed: units are not active",
            ),
        }
    }
}

/// The conditions and phase of an applied spec, from its steps' outcomes
/// in order: a condition no step reached is Unknown (NotChecked), and
/// Ready says what keeps the registry from serving. `now` is when the
/// reconcile began; `prev` the conditions last reported.
pub fn verdict(
    prev: &[Condition],
    now: &str,
    outcomes: &[Outcome],
    paused: bool,
    was_ready: bool,
) -> (Vec<Condition>, Phase) {
    let mut c = Conditions::new(prev, now);
    for o in outcomes {
        c.apply(o);
    }
    for t in &T::ALL[2..] {
        if c.get(*t).is_none() {
            c.set(
                *t,
                None,
                Reason::NotChecked,
                "not checked: an earlier step did not complete",
            );
        }
    }
    let phase = phase_of(&c, paused, was_ready);
    let (reason, message) = ready_reason(&c, phase);
    c.set(T::Ready, Some(phase == Phase::Ready), reason, message);
    (c.into_list(), phase)
}

/// Ready when every condition that matters is true.
fn phase_of(c: &Conditions<'_>, paused: bool, was_ready: bool) -> Phase {
    if !c.is_true(T::SpecValid) {
        return Phase::Failed;
    }
    // Refused for a conflict: nothing happens until the user acts.
    if c.get(T::UnitsActive)
        .is_some_and(|x| x.reason == Reason::Conflict)
    {
        return Phase::Failed;
    }
    if paused {
        return Phase::Paused;
    }
    let all = [
        T::CertificateValid,
        T::ImagesPresent,
        T::UnitsActive,
        T::Healthy,
    ];
    if all.iter().all(|t| c.is_true(*t)) {
        Phase::Ready
    } else if c
        .get(T::CertificateValid)
        .is_some_and(|x| x.status == ConditionStatus::False)
    {
        Phase::Failed
    } else if was_ready {
        // Degraded stays Degraded while the trouble lasts: it served before.
        Phase::Degraded
    } else {
        Phase::Progressing
    }
}

fn ready_reason(c: &Conditions<'_>, phase: Phase) -> (Reason, String) {
    match phase {
        Phase::Ready => (Reason::Healthy, "registry is serving".into()),
        Phase::Paused => (
            Reason::Paused,
            "spec.paused is true: units stopped, data kept".into(),
        ),
        _ => {
            // A refusal explains more than the steps it left unchecked.
            let not_true = || {
                T::ALL[1..]
                    .iter()
                    .filter_map(|t| c.get(*t))
                    .filter(|x| x.status != ConditionStatus::True)
            };
            let bad = not_true()
                .find(|x| x.reason == Reason::Conflict)
                .or_else(|| not_true().next());
            match bad {
                Some(b) => (b.reason, format!("{}: {}", b.type_, b.message)),
                None => (Reason::Progressing, "converging".into()),
            }
        }
    }
}

/// Status for a spec that is not applied (invalid, unusable, or its name
/// in two files): Ready and SpecValid False with `reason`; everything
/// observed before stays, since the registry has not been touched.
pub fn not_applied(prev: Option<&Status>, problems: &[String], reason: Reason) -> Status {
    let prev_conditions = prev.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
    let now = crate::store::now_rfc3339();
    let mut c = Conditions::new(prev_conditions, &now);
    c.set(
        T::Ready,
        Some(false),
        reason,
        "the spec is not valid; the running registry, if any, is left as it was",
    );
    c.set(T::SpecValid, Some(false), reason, problems.join("; "));
    let mut s = prev.cloned().unwrap_or_default();
    s.phase = Phase::Failed;
    s.conditions = merge(prev_conditions, c.into_list());
    s
}

/// `s` with Ready False for an internal fault (a panic), keeping everything
/// else it said.
pub fn internal_fault(mut s: Status, what: &str) -> Status {
    let prev = s.conditions.clone();
    let now = crate::store::now_rfc3339();
    let mut c = Conditions::new(&prev, &now);
    c.set(
        T::Ready,
        Some(false),
        Reason::InternalError,
        format!("the controller hit an internal fault ({what}); nothing was changed, it retries"),
    );
    s.conditions.retain(|x| !x.is(T::Ready));
    s.conditions.extend(c.into_list());
    s
}

/// Replaces conditions of the same type, keeps the others, in a fixed order.
fn merge(prev: &[Condition], new: Vec<Condition>) -> Vec<Condition> {
    let mut out: Vec<_> = prev
        .iter()
        .filter(|p| !new.iter().any(|n| n.type_ == p.type_))
        .cloned()
        .collect();
    out.extend(new);
    sort(&mut out);
    out
}

/// Known types in the order of [`T::ALL`], then any other.
fn sort(list: &mut [Condition]) {
    list.sort_by_key(|c| {
        T::ALL
            .iter()
            .position(|t| c.type_ == *t)
            .unwrap_or(T::ALL.len())
    });
}

#[cfg(test)]
mod tests;
