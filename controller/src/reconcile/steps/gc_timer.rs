//! `spec.garbageCollection.schedule`: `<name>-gc.timer` (enabled, active)
//! and its `<name>-gc.service`, recorded before their files are written
//! (teardown removes them like the other units); removed again, while
//! still the controller's, when the schedule goes. The service is never
//! started here: the timer does that.

use super::super::{Context, Error};
use crate::api::defaults::Resolved;
use crate::host::files;
use crate::host::systemd::{ActiveState, Systemd};
use crate::naming;
use crate::render::gc::{self, GcCommand};
use crate::store::{self, record::Record};

/// mrctl beside the running controller (how install and the bundle lay
/// them out), with the controller's own flags.
fn command(cx: &Context) -> GcCommand {
    let mrctl = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("mrctl")))
        .unwrap_or_else(|| "/usr/local/bin/mrctl".into());
    GcCommand {
        mrctl,
        watch_dir: cx.watch_dir.clone(),
        state_dir: cx.state_dir.clone(),
        scope: cx.scope.to_string(),
        podman_socket: cx.podman_socket.clone(),
    }
}

pub async fn ensure(
    cx: &Context,
    systemd: &Systemd,
    rec: &mut Record,
    r: &Resolved,
) -> Result<(), Error> {
    let units = gc::units(r, &command(cx)).map_err(Error::Other)?;
    let timer = gc::timer_name(&r.name);
    if units.is_empty() || r.paused {
        return remove(cx, systemd, rec, r, !units.is_empty()).await;
    }
    if units.iter().any(|u| !rec.units.contains(&u.name)) {
        rec.units.extend(units.iter().map(|u| u.name.clone()));
        store::record::save(&cx.state_dir, rec)?;
    }
    files::ensure_dir(&cx.unit_dir, 0o755)?;
    let mut changed = false;
    for u in &units {
        changed |=
            files::write_if_changed(&cx.unit_dir.join(&u.name), u.content.as_bytes(), 0o644)?;
    }
    let state = systemd.unit(&timer).await?;
    if changed || state.need_daemon_reload {
        systemd.reload().await?;
    }
    if state.unit_file_state != "enabled" {
        systemd.enable(std::slice::from_ref(&timer)).await?;
    }
    if changed || !state.active_state.is_active() {
        // A new schedule takes effect when the timer restarts.
        systemd.restart(&timer).await?;
        tracing::info!(registry = %r.name, unit = %timer, schedule = ?r.gc_schedule, "garbage collection timer set");
    }
    Ok(())
}

/// No schedule (or paused, `keep_files`): the timer stopped and disabled;
/// without a schedule its files go too, while they are still ours.
async fn remove(
    cx: &Context,
    systemd: &Systemd,
    rec: &mut Record,
    r: &Resolved,
    keep_files: bool,
) -> Result<(), Error> {
    let names = [gc::timer_name(&r.name), gc::service_name(&r.name)];
    if !names.iter().any(|n| rec.units.contains(n)) {
        return Ok(());
    }
    let timer = systemd.unit(&names[0]).await?;
    if !matches!(
        timer.active_state,
        ActiveState::Inactive | ActiveState::Failed
    ) {
        systemd.stop(&names[0]).await?;
    }
    if timer.unit_file_state == "enabled" {
        systemd.disable(std::slice::from_ref(&names[0])).await?;
    }
    if keep_files {
        return Ok(());
    }
    let mut removed = false;
    for n in &names {
        let path = cx.unit_dir.join(n);
        let ours = files::read_optional(&path)?
            .is_none_or(|t| naming::unit_text_owned_by(&String::from_utf8_lossy(&t), &r.name));
        if ours {
            removed |= files::remove_if_exists(&path)?;
            rec.units.remove(n);
        }
    }
    if removed {
        systemd.reload().await?;
    }
    store::record::save(&cx.state_dir, rec)?;
    Ok(())
}
