//! The unit decisions, as pure functions of what was observed: whether
//! the manager reloads or enables, and for each unit whether it is started,
//! restarted or left alone. `units.rs` carries them out; the tests below
//! run them without a host.

use crate::host::systemd::{ActiveState, UnitState};

/// What the manager must do before units are started: enable (which
/// reloads when it links anything) and/or reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManagerStep {
    /// Some unit file is not enabled.
    pub enable: bool,
    /// Unit text changed, or the manager holds an old load of a file (a run
    /// that died between writing a unit file and reloading): reload, unless
    /// enabling linked something (which reloaded).
    pub reload: bool,
}

/// `None`: the manager is current and every unit enabled. `files_changed`:
/// this reconcile wrote a unit file.
pub fn manager_step(files_changed: bool, states: &[UnitState]) -> Option<ManagerStep> {
    let enable = states.iter().any(|s| s.unit_file_state != "enabled");
    let reload = files_changed || states.iter().any(|s| s.need_daemon_reload);
    (enable || reload).then_some(ManagerStep { enable, reload })
}

/// What to do with one unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Running with its current inputs, or systemd is already bringing it
    /// back (`Restart=always`).
    Leave,
    Restart,
    /// Start it, clearing its failed state first (so the start limit does
    /// not refuse it) when `reset_failed`.
    Start {
        reset_failed: bool,
    },
}

/// One unit as the decision sees it.
#[derive(Clone, Copy, Debug)]
pub struct UnitView<'a> {
    pub name: &'a str,
    pub state: &'a ActiveState,
    /// This reconcile wrote its unit file.
    pub file_changed: bool,
    /// It runs with other inputs than it was last started with.
    pub stale: bool,
    /// systemd waits `RestartSec=` to bring it back, after it was active
    /// this long (microseconds).
    pub auto_restart_after_us: Option<u64>,
}

/// A unit that stayed up at least this long before it stopped (removed,
/// killed, crashed) is restarted at once instead of after the unit's
/// `RestartSec=`: that delay damps crash loops, and a run this long is not
/// one. Shorter runs keep systemd's pacing, so a crash loop restarts no
/// faster than it would without the controller.
pub const RESTART_AT_ONCE_AFTER_US: u64 = 1_000_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Someone (an admin, systemd) is stopping this unit: a start now would
    /// replace their stop job and fail it. Look again once it has stopped.
    Wait { stopping: String },
    /// Per unit, in start order (the pod first).
    Act(Vec<Action>),
}

impl Decision {
    /// Whether carrying it out starts or restarts anything.
    pub fn starts(&self) -> bool {
        matches!(self, Decision::Act(a) if a.iter().any(|x| *x != Action::Leave))
    }
}

/// The units of one registry: `units[0]` the pod's, then each component's.
/// A pod whose text or inputs changed restarts; one not running starts.
/// A component restarts when its text, the files it mounts
/// (`inputs_changed`) or its recorded inputs changed, and starts when it is
/// not running (or waits for systemd's restart delay after a long run);
/// after the pod (re)started every component is started.
pub fn decide(units: &[UnitView<'_>], inputs_changed: bool) -> Decision {
    if let Some(u) = units.iter().find(|u| *u.state == ActiveState::Deactivating) {
        return Decision::Wait {
            stopping: u.name.to_string(),
        };
    }
    let Some((pod, components)) = units.split_first() else {
        return Decision::Act(Vec::new());
    };
    let pod_action = match (pod.file_changed || pod.stale, pod.state.is_active()) {
        (true, true) => Action::Restart,
        (_, false) => Action::Start { reset_failed: true },
        (false, true) => Action::Leave,
    };
    let pod_started = pod_action != Action::Leave;
    let mut actions = vec![pod_action];
    for u in components {
        let must_restart = u.file_changed || inputs_changed || u.stale;
        let waits_long_enough = u
            .auto_restart_after_us
            .is_some_and(|up| up >= RESTART_AT_ONCE_AFTER_US);
        let running = matches!(u.state, ActiveState::Active | ActiveState::Activating);
        actions.push(match (running && !pod_started, must_restart) {
            // systemd leaves a start job queued until the delay is over; a
            // restart cuts it short.
            (true, false) if waits_long_enough => Action::Restart,
            (true, false) => Action::Leave,
            (true, true) => Action::Restart,
            (false, _) => Action::Start {
                reset_failed: *u.state == ActiveState::Failed,
            },
        });
    }
    Decision::Act(actions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(active: &str, file: &str, reload: bool) -> UnitState {
        UnitState {
            active_state: active.into(),
            unit_file_state: file.into(),
            need_daemon_reload: reload,
            ..UnitState::default()
        }
    }

    fn view<'a>(name: &'a str, s: &'a ActiveState, changed: bool, stale: bool) -> UnitView<'a> {
        UnitView {
            name,
            state: s,
            file_changed: changed,
            stale,
            auto_restart_after_us: None,
        }
    }

    #[test]
    fn the_manager_is_left_alone_when_current() {
        let ok = [
            state("active", "enabled", false),
            state("active", "enabled", false),
        ];
        assert_eq!(manager_step(false, &ok), None);
        assert_eq!(
            manager_step(true, &ok),
            Some(ManagerStep {
                enable: false,
                reload: true
            })
        );
        // A run that died before its reload: the manager says so.
        let old_load = [
            state("active", "enabled", false),
            state("active", "enabled", true),
        ];
        assert_eq!(
            manager_step(false, &old_load),
            Some(ManagerStep {
                enable: false,
                reload: true
            })
        );
        // A new registry: enabling (which reloads when it links) is enough.
        let new = [state("inactive", "", false), state("inactive", "", false)];
        assert_eq!(
            manager_step(false, &new),
            Some(ManagerStep {
                enable: true,
                reload: false
            })
        );
        assert_eq!(
            manager_step(true, &new),
            Some(ManagerStep {
                enable: true,
                reload: true
            })
        );
    }

    #[test]
    fn a_converged_registry_is_left_alone() {
        let active = ActiveState::Active;
        let units = [
            view("p.service", &active, false, false),
            view("c.service", &active, false, false),
        ];
        let d = decide(&units, false);
        assert_eq!(d, Decision::Act(vec![Action::Leave, Action::Leave]));
        assert!(!d.starts());
    }

    #[test]
    fn changed_inputs_restart_components_only() {
        let active = ActiveState::Active;
        let units = [
            view("p.service", &active, false, false),
            view("c.service", &active, false, false),
        ];
        assert_eq!(
            decide(&units, true),
            Decision::Act(vec![Action::Leave, Action::Restart])
        );
        // A component whose recorded inputs differ (a restart a crash cut
        // short), or whose text changed, restarts.
        for (changed, stale) in [(true, false), (false, true)] {
            let units = [
                view("p.service", &active, false, false),
                view("c.service", &active, changed, stale),
            ];
            assert_eq!(
                decide(&units, false),
                Decision::Act(vec![Action::Leave, Action::Restart])
            );
        }
    }

    #[test]
    fn a_changed_or_stopped_pod_brings_every_component_up_again() {
        let active = ActiveState::Active;
        let failed = ActiveState::Failed;
        let inactive = ActiveState::Inactive;
        let units = [
            view("p.service", &active, true, false),
            view("c.service", &active, false, false),
        ];
        assert_eq!(
            decide(&units, false),
            Decision::Act(vec![
                Action::Restart,
                Action::Start {
                    reset_failed: false
                }
            ])
        );
        let units = [
            view("p.service", &inactive, false, false),
            view("c.service", &failed, false, false),
        ];
        assert_eq!(
            decide(&units, false),
            Decision::Act(vec![
                Action::Start { reset_failed: true },
                Action::Start { reset_failed: true }
            ])
        );
    }

    #[test]
    fn a_unit_systemd_is_restarting_is_left_to_it() {
        let active = ActiveState::Active;
        let activating = ActiveState::Activating;
        let failed = ActiveState::Failed;
        let units = [
            view("p.service", &active, false, false),
            view("c.service", &activating, false, false),
            view("d.service", &failed, false, false),
        ];
        assert_eq!(
            decide(&units, false),
            Decision::Act(vec![
                Action::Leave,
                Action::Leave,
                Action::Start { reset_failed: true }
            ])
        );
    }

    #[test]
    fn a_unit_waiting_to_restart_after_a_long_run_starts_now_a_crash_loop_waits() {
        let active = ActiveState::Active;
        let activating = ActiveState::Activating;
        let waiting = |up| UnitView {
            auto_restart_after_us: Some(up),
            ..view("c.service", &activating, false, false)
        };
        // Served for a minute, then removed: restarted at once (a start
        // would wait in systemd's queue for the delay).
        let units = [
            view("p.service", &active, false, false),
            waiting(60_000_000),
        ];
        assert_eq!(
            decide(&units, false),
            Decision::Act(vec![Action::Leave, Action::Restart])
        );
        // Died 200 ms after it started: systemd's RestartSec paces it.
        let units = [view("p.service", &active, false, false), waiting(200_000)];
        assert_eq!(
            decide(&units, false),
            Decision::Act(vec![Action::Leave, Action::Leave])
        );
    }

    #[test]
    fn a_unit_being_stopped_is_waited_for() {
        let active = ActiveState::Active;
        let stopping = ActiveState::Deactivating;
        let units = [
            view("p.service", &active, true, false),
            view("c.service", &stopping, false, false),
        ];
        assert_eq!(
            decide(&units, true),
            Decision::Wait {
                stopping: "c.service".into()
            }
        );
    }
}
