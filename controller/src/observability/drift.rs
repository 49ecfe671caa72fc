//! What `mirror_registry_drift_repairs_total` counts, decided in one place.
//!
//! A drift repair is one episode: a registry that was Ready, whose spec has
//! not changed, is found no longer as the controller set it up, and comes
//! back to Ready. "Not as set up" means, with every unit having last been
//! started with the inputs it has now (so nothing the controller changed
//! itself, like a renewed certificate or a new spec, explains it):
//! a unit not active (stopped, failed, or being restarted by systemd after
//! its container went), a container not running, a unit file that differs
//! from what the controller writes, or a file a container mounts that had
//! to be written back. Whoever restarts the process (the controller, or
//! systemd's `Restart=always` in the units the controller wrote) it counts
//! once, when Ready is reached again.
//!
//! The reconcile stays level-triggered: this only reads what a reconcile
//! observed and keeps, per name, whether an episode is open.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use crate::api::{Phase, Status};
use crate::host::files;
use crate::host::systemd::UnitState;
use crate::render::Desired;

/// What one reconcile found before it acted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Finding {
    /// Every unit had last been started with exactly its current inputs.
    pub settled: bool,
    /// What was not as the controller set it up.
    pub drifted: Vec<String>,
}

/// Compares what runs with what the controller set up, before the units
/// step acts. `started_with` is the ownership record's digest per unit of
/// what it was last started with, `digests` the same for now;
/// `inputs_rewritten`: a file a container mounts was written this
/// reconcile.
pub fn inspect(
    unit_dir: &Path,
    desired: &Desired,
    states: &[UnitState],
    started_with: &BTreeMap<String, String>,
    digests: &BTreeMap<String, String>,
    inputs_rewritten: bool,
) -> Finding {
    let settled = !started_with.is_empty() && started_with == digests;
    let mut drifted = Vec::new();
    if !settled {
        return Finding { settled, drifted };
    }
    for (u, s) in desired.all_units().zip(states) {
        if s.active_state != "active" {
            drifted.push(format!(
                "{} was {} ({})",
                u.name, s.active_state, s.sub_state
            ));
        }
        let on_disk = files::read_optional(&unit_dir.join(&u.name)).ok().flatten();
        if on_disk.as_deref() != Some(u.content.as_bytes()) {
            drifted.push(format!("unit file {} was changed or removed", u.name));
        }
    }
    if inputs_rewritten {
        drifted.push("a file its containers mount was changed".into());
    }
    Finding { settled, drifted }
}

#[derive(Default)]
struct State {
    /// This reconcile's finding, per name, until `settle` takes it.
    found: HashMap<String, Finding>,
    /// Names with a drift episode open.
    open: HashMap<String, Vec<String>>,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn with<T>(f: impl FnOnce(&mut State) -> T) -> Option<T> {
    let mut g = STATE.lock().ok()?;
    Some(f(g.get_or_insert_with(State::default)))
}

/// Keeps what the reconcile of `name` found, for [`settle`].
pub fn found(name: &str, finding: Finding) {
    with(|s| s.found.insert(name.to_string(), finding));
}

/// At the end of a reconcile of `name`: opens an episode when a Ready
/// registry with an unchanged spec was found drifted, closes it (counting
/// one repair) when the registry is Ready again. Returns whether a repair
/// was counted.
pub fn settle(name: &str, prev: Option<&Status>, now: &Status) -> bool {
    let finding = with(|s| s.found.remove(name)).flatten();
    let same_spec = prev.is_some_and(|p| {
        p.observed_spec_hash.is_some() && p.observed_spec_hash == now.observed_spec_hash
    });
    let was_ready = prev.is_some_and(|p| p.phase == Phase::Ready);
    let mut drifted = Vec::new();
    if let Some(f) = finding.filter(|f| f.settled) {
        drifted = f.drifted;
        // Units looked active but a container was gone (podman rm -f
        // caught before systemd noticed).
        let down = now
            .conditions
            .iter()
            .find(|c| c.type_ == "UnitsActive")
            .filter(|c| c.status == "False" && c.reason == "NotActive");
        if drifted.is_empty() {
            if let Some(c) = down {
                drifted.push(c.message.clone());
            }
        }
    }
    let counted = with(|s| {
        if !same_spec {
            s.open.remove(name);
            return false;
        }
        if was_ready && !drifted.is_empty() && !s.open.contains_key(name) {
            tracing::info!(registry = name, drift = %drifted.join("; "), "drift found");
            s.open.insert(name.to_string(), drifted);
        }
        if now.phase == Phase::Ready {
            if let Some(what) = s.open.remove(name) {
                tracing::info!(registry = name, drift = %what.join("; "), "drift repaired");
                return true;
            }
        }
        false
    })
    .unwrap_or(false);
    if counted {
        super::metrics::global().drift_repaired(name);
    }
    counted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Condition;

    fn status(phase: Phase, hash: &str, units: Option<(&str, &str)>) -> Status {
        Status {
            observed_spec_hash: Some(hash.into()),
            phase,
            conditions: units
                .map(|(s, r)| Condition {
                    type_: "UnitsActive".into(),
                    status: s.into(),
                    reason: r.into(),
                    message: "container x-registry is not running".into(),
                    last_transition_time: String::new(),
                })
                .into_iter()
                .collect(),
            ..Status::default()
        }
    }

    fn finding(settled: bool, drifted: &[&str]) -> Finding {
        Finding {
            settled,
            drifted: drifted.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn an_episode_counts_once_when_ready_again() {
        let n = "drift-unit-a";
        let ready = status(Phase::Ready, "h1", Some(("True", "Active")));
        let degraded = status(Phase::Degraded, "h1", Some(("False", "NotActive")));
        // Found drifted (systemd restarting the unit), not Ready yet.
        found(n, finding(true, &["x-registry.service was activating"]));
        assert!(!settle(n, Some(&ready), &degraded));
        // Still down: the same episode.
        found(n, finding(true, &["x-registry.service was activating"]));
        assert!(!settle(n, Some(&degraded), &degraded));
        // Ready again: one repair.
        found(n, finding(true, &[]));
        assert!(settle(n, Some(&degraded), &ready));
        // Converged: nothing more.
        found(n, finding(true, &[]));
        assert!(!settle(n, Some(&ready), &ready));
        // Repaired within one reconcile (a stopped unit started again).
        found(n, finding(true, &["x-registry.service was inactive"]));
        assert!(settle(n, Some(&ready), &ready));
        assert_eq!(super::super::metrics::global().drift_repairs(n), 2);
    }

    #[test]
    fn own_changes_and_new_specs_are_not_drift() {
        let n = "drift-unit-b";
        let ready = status(Phase::Ready, "h1", Some(("True", "Active")));
        let degraded = status(Phase::Degraded, "h1", Some(("False", "NotActive")));
        // Restarted for new inputs (a renewed certificate): not settled.
        found(n, finding(false, &[]));
        assert!(!settle(n, Some(&ready), &degraded));
        // The next look finds it starting after that restart: the registry
        // was not Ready before it, so no episode opens.
        found(n, finding(true, &["x-registry.service was activating"]));
        assert!(!settle(n, Some(&degraded), &degraded));
        found(n, finding(true, &[]));
        assert!(!settle(n, Some(&degraded), &ready));
        // A new spec while drifted closes the episode uncounted.
        found(n, finding(true, &["x-registry.service was inactive"]));
        assert!(!settle(n, Some(&ready), &degraded));
        let changed = status(Phase::Ready, "h2", Some(("True", "Active")));
        found(n, finding(false, &[]));
        assert!(!settle(n, Some(&degraded), &changed));
        // A container gone while its unit still looks active.
        found(n, finding(true, &[]));
        assert!(!settle(
            n,
            Some(&changed),
            &status(Phase::Degraded, "h2", Some(("False", "NotActive")))
        ));
        assert!(settle(n, Some(&changed), &changed));
        assert_eq!(super::super::metrics::global().drift_repairs(n), 1);
    }
}
