//! `spec.garbageCollection.schedule`: `<name>-gc.timer` and the oneshot
//! `<name>-gc.service` it starts, which runs `mrctl gc NAME` with the
//! controller's directories and scope. Pure, like the rest of render.

use std::path::PathBuf;

use super::unit::{exec_word, quote};
use super::Unit;
use crate::api::defaults::Resolved;
use crate::api::validate::{forbidden_char, shown};
use crate::api::Engine;
use crate::naming;

/// How the timer's service calls mrctl: the binary and the controller's
/// own flags, so it finds the same registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcCommand {
    pub mrctl: PathBuf,
    pub watch_dir: PathBuf,
    pub state_dir: PathBuf,
    /// `system` or `user`.
    pub scope: String,
    pub podman_socket: PathBuf,
}

pub fn service_name(name: &str) -> String {
    format!("{name}-gc.service")
}

pub fn timer_name(name: &str) -> String {
    format!("{name}-gc.timer")
}

/// The service and timer, or none when no schedule is set (or the engine
/// collects by itself).
pub fn units(r: &Resolved, cmd: &GcCommand) -> Result<Vec<Unit>, String> {
    let Some(schedule) = r.gc_schedule.as_deref() else {
        return Ok(vec![]);
    };
    if r.engine != Engine::Distribution {
        return Ok(vec![]);
    }
    if let Some((i, c)) = forbidden_char(schedule) {
        return Err(format!(
            "spec.garbageCollection.schedule '{}' holds {}",
            shown(schedule),
            super::describe_forbidden(i, c)
        ));
    }
    let mut words = Vec::new();
    for (what, p) in [
        ("mrctl", &cmd.mrctl),
        ("--watch-dir", &cmd.watch_dir),
        ("--state-dir", &cmd.state_dir),
        ("--podman-socket", &cmd.podman_socket),
    ] {
        let s = p.display().to_string();
        exec_word(what, &s)?;
        words.push((what, quote(&s)));
    }
    let arg = |flag: &str| {
        words
            .iter()
            .find(|(w, _)| *w == flag)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let owner = format!("{}={}", naming::OWNER_LABEL, r.name);
    let service = format!(
        "# Written by mirror-registry-controller; edits are overwritten.
# {owner}
[Unit]
Description=Garbage collection of mirror registry {name}
After={registry}

[Service]
Type=oneshot
ExecStart={mrctl} --watch-dir {watch} --state-dir {state} --scope {scope} --podman-socket {socket} gc {name}
",
        name = r.name,
        registry = naming::unit(&r.name, super::distribution::COMPONENT),
        mrctl = arg("mrctl"),
        watch = arg("--watch-dir"),
        state = arg("--state-dir"),
        scope = quote(&cmd.scope),
        socket = arg("--podman-socket"),
    );
    let timer = format!(
        "# Written by mirror-registry-controller; edits are overwritten.
# {owner}
[Unit]
Description=Scheduled garbage collection of mirror registry {name}

[Timer]
OnCalendar={schedule}
Persistent=true
Unit={service}

[Install]
WantedBy=timers.target
",
        name = r.name,
        service = service_name(&r.name),
    );
    Ok(vec![
        Unit {
            name: service_name(&r.name),
            content: service,
        },
        Unit {
            name: timer_name(&r.name),
            content: timer,
        },
    ])
}
