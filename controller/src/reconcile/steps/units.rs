//! Unit files written, the manager reloaded and units enabled, then each
//! unit started, restarted or left as [`unit_plan`](super::unit_plan)
//! decides; paused, every unit stopped and disabled instead. The inputs each
//! unit was started with are recorded once they all run with them, so a
//! restart a crash cut short is still done.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::ffi::OsStrExt;

use sha2::{Digest, Sha256};

use super::super::conditions::Outcome;
use super::super::{Context, Error};
use super::unit_plan::{self, Action, Decision, UnitView};
use crate::api::defaults::Resolved;
use crate::host::files;
use crate::host::systemd::{ActiveState, Systemd, UnitState};
use crate::naming;
use crate::render::Desired;
use crate::store::{self, record::Record};

/// The pod unit's state, then each component unit's, in start order.
pub async fn states(systemd: &Systemd, desired: &Desired) -> Result<Vec<UnitState>, Error> {
    let mut states = Vec::new();
    for u in desired.all_units() {
        states.push(systemd.unit(&u.name).await?);
    }
    Ok(states)
}

/// A registry whose units were never started (or were stopped by a pause):
/// writes its unit files, brings the manager up to date, and queues the
/// pod's start alone, without waiting. The pod mounts none of the files the
/// steps after this one write, so systemd creates it while they are made;
/// [`converge`] then starts the components, which wait for it. Returns the
/// states read again, for [`converge`]; `None` when it did nothing (the pod
/// already runs, or a unit is being stopped).
///
/// Unit files the manager has never loaded need no reload: systemd (246
/// and later) loads a unit it did not find before once its unit directory
/// changed, with the links enabling made. So when no unit was loaded, the
/// files are written and linked and the pod started at once; an older
/// systemd refuses that start ("not found") and the manager reloads
/// first, as it does for units it loaded before. A reload costs tens of
/// milliseconds of the manager's only thread, on the pod's path either
/// way: before its start, or (enabling in [`converge`]) between its steps.
pub async fn start_pod_early(
    cx: &Context,
    systemd: &Systemd,
    desired: &Desired,
    r: &Resolved,
    states: &[UnitState],
) -> Result<Option<Vec<UnitState>>, Error> {
    let quiet =
        |s: &UnitState| matches!(s.active_state, ActiveState::Inactive | ActiveState::Failed);
    if !states.iter().all(quiet) {
        return Ok(None);
    }
    let changed = write_unit_files(cx, desired)?;
    let pod = &desired.pod_unit.name;
    let unloaded = states.iter().all(|s| s.load_state == "not-found");
    let mut queued = false;
    if unloaded {
        let names: Vec<String> = desired.all_units().map(|u| u.name.clone()).collect();
        systemd.enable_unloaded(&names).await?;
        match systemd.queue_start_alone(pod).await {
            Ok(()) => {
                queued = true;
                tracing::info!(registry = %r.name, units = ?changed, "unit files written and enabled; the pod started without a reload");
            }
            Err(e) => {
                tracing::info!(registry = %r.name, error = %e, "the manager did not load the new units by itself; reloading");
                systemd.reload().await?;
            }
        }
    } else {
        update_manager(systemd, desired, r, &changed, states).await?;
    }
    if !queued {
        if states[0].active_state == ActiveState::Failed {
            systemd.reset_failed(pod).await?;
        }
        systemd.queue_start_alone(pod).await?;
    }
    Ok(Some(self::states(systemd, desired).await?))
}

/// Writes the unit files that differ; returns the names of those written.
fn write_unit_files(cx: &Context, desired: &Desired) -> Result<BTreeSet<String>, Error> {
    files::ensure_dir(&cx.unit_dir, 0o755)?;
    let mut changed = BTreeSet::new();
    for u in desired.all_units() {
        if files::write_if_changed(&cx.unit_dir.join(&u.name), u.content.as_bytes(), 0o644)? {
            changed.insert(u.name.clone());
        }
    }
    Ok(changed)
}

/// One reload for new unit text: enabling reloads when it links anything,
/// so reload separately only when it did not. Returns whether it acted.
async fn update_manager(
    systemd: &Systemd,
    desired: &Desired,
    r: &Resolved,
    changed: &BTreeSet<String>,
    states: &[UnitState],
) -> Result<bool, Error> {
    let Some(step) = unit_plan::manager_step(!changed.is_empty(), states) else {
        return Ok(false);
    };
    let names: Vec<String> = desired.all_units().map(|u| u.name.clone()).collect();
    let linked = step.enable && systemd.enable(&names).await?;
    if !linked && step.reload {
        systemd.reload().await?;
    }
    tracing::info!(registry = %r.name, units = ?changed, "unit files written or enabled; manager reloaded");
    Ok(true)
}

/// Brings the units to `desired`. Returns whether it started or restarted
/// anything, and the unit states when nothing acted since they were read.
#[allow(clippy::too_many_arguments)]
pub async fn converge(
    cx: &Context,
    systemd: &Systemd,
    rec: &mut Record,
    desired: &Desired,
    r: &Resolved,
    inputs_changed: bool,
    states: Vec<UnitState>,
    out: &mut Vec<Outcome>,
) -> Result<(bool, Option<Vec<UnitState>>), Error> {
    let digests = input_digests(desired, r)?;
    let stale: BTreeSet<String> = digests
        .iter()
        .filter(|(u, d)| rec.started_with.get(*u).is_some_and(|old| old != *d))
        .map(|(u, _)| u.clone())
        .collect();
    // Before acting: what drifted from what was set up (a metric only).
    crate::observability::drift::found(
        &r.name,
        crate::observability::drift::inspect(
            &cx.unit_dir,
            desired,
            &states,
            &rec.started_with,
            &digests,
            inputs_changed,
        ),
    );
    let applied = apply(cx, systemd, desired, r, inputs_changed, &stale, states).await?;
    if let Some(unit) = &applied.stopping {
        out.push(Outcome::Stopping(unit.clone()));
    }
    if r.paused {
        rec.started_with.clear();
    } else if applied.stopping.is_none() {
        rec.started_with = digests;
    }
    store::record::save(&cx.state_dir, rec)?;
    Ok((applied.started, applied.states))
}

struct Applied {
    started: bool,
    /// Still current: nothing started since they were read.
    states: Option<Vec<UnitState>>,
    /// The unit someone is stopping, waited for.
    stopping: Option<String>,
}

/// Writes unit files that differ, reloads once, enables, and starts or
/// restarts only what changed, is `stale` (runs with other inputs than it
/// was last started with) or is not running.
async fn apply(
    cx: &Context,
    systemd: &Systemd,
    desired: &Desired,
    r: &Resolved,
    inputs_changed: bool,
    stale: &BTreeSet<String>,
    mut states: Vec<UnitState>,
) -> Result<Applied, Error> {
    let names: Vec<String> = desired.all_units().map(|u| u.name.clone()).collect();
    let changed = write_unit_files(cx, desired)?;
    if r.paused {
        if !changed.is_empty() {
            systemd.reload().await?;
        }
        // Only what is not yet stopped, reset and disabled: each of these
        // calls makes systemd signal a change, which looks at the registry
        // again; done every time, a paused registry was reconciled about
        // ten times a second.
        for (n, s) in names.iter().zip(&states).rev() {
            if !matches!(s.active_state, ActiveState::Inactive | ActiveState::Failed) {
                systemd.stop(n).await?;
            }
            if s.active_state == ActiveState::Failed {
                systemd.reset_failed(n).await?;
            }
        }
        if states.iter().any(|s| s.unit_file_state == "enabled") || !changed.is_empty() {
            systemd.disable(&names).await?;
        }
        return Ok(Applied {
            started: false,
            states: None,
            stopping: None,
        });
    }
    if update_manager(systemd, desired, r, &changed, &states).await? {
        states = self::states(systemd, desired).await?;
    }
    let views: Vec<UnitView<'_>> = names
        .iter()
        .zip(&states)
        .map(|(n, s)| UnitView {
            name: n,
            state: &s.active_state,
            file_changed: changed.contains(n),
            stale: stale.contains(n),
            auto_restart_after_us: s.auto_restart_pending().then_some(s.last_active_us),
        })
        .collect();
    let decision = unit_plan::decide(&views, inputs_changed);
    let started = decision.starts();
    let actions = match decision {
        Decision::Wait { stopping } => {
            return Ok(Applied {
                started: false,
                states: Some(states),
                stopping: Some(stopping),
            })
        }
        Decision::Act(actions) => actions,
    };
    for (n, action) in names.iter().zip(actions) {
        match action {
            Action::Leave => {}
            // A restart that cuts a unit's restart delay short can lose a
            // race with the unit's own cleanup (containers removed back to
            // back): it is started once more at once, not a failed reconcile.
            Action::Restart => systemd.restart_recovering(n).await?,
            Action::Start { reset_failed } => {
                if reset_failed {
                    systemd.reset_failed(n).await?;
                }
                systemd.start(n).await?;
            }
        }
    }
    Ok(Applied {
        started,
        states: (!started).then_some(states),
        stopping: None,
    })
}

/// Per unit, a digest of what it runs with: the pod unit its text, each
/// component its text and the files under root its container mounts (config
/// files, the server certificate and key, htpasswd).
pub fn input_digests(desired: &Desired, r: &Resolved) -> Result<BTreeMap<String, String>, Error> {
    let tls_dir = naming::root::tls_dir(&r.root);
    let mounted = desired.files.iter().map(|f| f.path.clone()).chain([
        tls_dir.join("tls.crt"),
        tls_dir.join("tls.key"),
        naming::root::htpasswd_file(&r.root),
    ]);
    let mut files = Sha256::new();
    for p in mounted {
        let bytes = files::read_optional(&p)?.unwrap_or_default();
        for part in [p.as_os_str().as_bytes(), &bytes] {
            files.update((part.len() as u64).to_le_bytes());
            files.update(part);
        }
    }
    let files = files.finalize();
    let mut out = BTreeMap::new();
    out.insert(
        desired.pod_unit.name.clone(),
        hex::encode(Sha256::digest(desired.pod_unit.content.as_bytes())),
    );
    for u in &desired.units {
        let mut h = Sha256::new();
        h.update(u.content.as_bytes());
        h.update(files);
        out.insert(u.name.clone(), hex::encode(h.finalize()));
    }
    Ok(out)
}
