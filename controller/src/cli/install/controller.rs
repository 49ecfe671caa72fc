//! The controller's unit as install and upgrade write it: it watches the
//! directories `mrctl` was given, with the environment a user manager may
//! not pass on, and its metrics listener (`super::super::controller_metrics`).

use super::super::controller_metrics::{self, MetricsArgs};
use super::super::controller_unit::{self, unit_name, UnitConfig};
use super::super::state::Paths;
use super::super::Result;
use super::flags::{absolute, RunArgs};
use crate::host::files;
use crate::host::systemd::{self, Systemd};
use crate::settings::Scope;

/// The controller's unit, as install and upgrade write it.
pub(super) fn controller_config(paths: &Paths, a: &RunArgs) -> Result<(String, String)> {
    let c = &a.controller;
    let exec = controller_unit::controller_binary(c.controller_bin.as_deref())?;
    let mut env = Vec::new();
    if let Some(s) = &paths.podman_socket_given {
        env.push((
            crate::settings::env::PODMAN_SOCKET.to_string(),
            s.display().to_string(),
        ));
    }
    if paths.scope == Scope::User {
        // A user manager started outside a login session may not pass these
        // on; the controller needs them for the session bus and podman.
        for k in ["XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS"] {
            if let Ok(v) = std::env::var(k) {
                env.push((k.to_string(), v));
            }
        }
    }
    let installed =
        files::read_optional(&systemd::unit_dir(paths.scope)?.join(unit_name(&c.controller_unit)))?;
    let installed = installed.map(|b| String::from_utf8_lossy(&b).into_owned());
    env.extend(controller_metrics::unit_env(
        &a.metrics,
        installed.as_deref(),
    )?);
    let cfg = UnitConfig {
        exec,
        scope: paths.scope,
        watch_dir: absolute(&paths.watch_dir),
        state_dir: absolute(&paths.state_dir),
        env,
        watchdog: c.controller_watchdog,
        log_file: c.controller_log.as_deref().map(absolute),
    };
    Ok((
        unit_name(&c.controller_unit),
        controller_unit::unit_text(&cfg),
    ))
}

pub(in crate::cli) async fn ensure_controller(
    paths: &Paths,
    systemd: &Systemd,
    a: &RunArgs,
) -> Result<()> {
    let (unit, text) = controller_config(paths, a)?;
    let unit_dir = systemd::unit_dir(paths.scope)?;
    let e = controller_unit::ensure(systemd, &unit_dir, &unit, &text).await?;
    let what = match (e.file_changed, e.started) {
        (true, true) => "written, enabled and started",
        (false, true) => "started",
        (true, false) => "updated",
        (false, false) => "already running",
    };
    outln!("controller {unit} ({} scope): {what}", paths.scope);
    if let Some(urls) = controller_metrics::urls(&controller_metrics::unit_env(
        &MetricsArgs::default(),
        Some(&text),
    )?) {
        outln!("controller {urls}");
    }
    Ok(())
}

/// Checks, writing nothing, that the controller's unit can be installed.
pub(in crate::cli) async fn preflight_controller(
    paths: &Paths,
    systemd: &Systemd,
    a: &RunArgs,
) -> Result<()> {
    let (unit, text) = controller_config(paths, a)?;
    controller_unit::preflight(systemd, &systemd::unit_dir(paths.scope)?, &unit, &text).await
}
