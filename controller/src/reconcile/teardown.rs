//! Tearing a registry down after its spec file is gone, from the ownership
//! record alone: units, containers, pod and trust entry go; volumes and data
//! stay unless deletionPolicy is Delete.

use super::converge::remove_trust_dir;
use super::queue::Next;
use super::{record, Context, Error};
use crate::api::{DeletionPolicy, Phase, Status};
use crate::host::files;

pub async fn run(cx: &Context, name: &str) -> Next {
    let rec = match record::load(&cx.state_dir, name) {
        Ok(Some(r)) => r,
        Ok(None) => {
            // Nothing was created; only a status copy may be left.
            let _ = record::remove(&cx.state_dir, name);
            return Next::Done;
        }
        Err(e) => {
            tracing::error!(registry = name, error = %e, "cannot read the ownership record; nothing torn down");
            return Next::Backoff;
        }
    };
    let mut status = record::load_status(&cx.state_dir, name).unwrap_or_default();
    status.phase = Phase::Terminating;
    let _ = record::save_status(&cx.state_dir, name, &status);
    tracing::info!(registry = name, policy = ?rec.deletion_policy, "spec removed; tearing down");
    match teardown(cx, &rec).await {
        Ok(()) => {
            if let Err(e) = record::remove(&cx.state_dir, name) {
                tracing::warn!(registry = name, error = %e, "cannot remove the ownership record");
            }
            tracing::info!(registry = name, "torn down");
            Next::Done
        }
        Err(e) => {
            tracing::warn!(registry = name, error = %e, "teardown failed; will retry");
            let _ = record::save_status(
                &cx.state_dir,
                name,
                &Status {
                    phase: Phase::Terminating,
                    ..status
                },
            );
            if matches!(e, Error::Podman(_) | Error::Systemd(_)) {
                cx.reset_clients().await;
            }
            Next::Backoff
        }
    }
}

async fn teardown(cx: &Context, rec: &record::Record) -> Result<(), Error> {
    let (podman, systemd) = cx.clients().await?;
    // Components before the pod, so Restart=always does not bring them back.
    let pod_unit = format!("{}.service", rec.pod);
    let mut order: Vec<&String> = rec.units.iter().filter(|u| **u != pod_unit).collect();
    order.extend(rec.units.iter().filter(|u| **u == pod_unit));
    for u in &order {
        systemd.stop(u).await?;
    }
    let present: Vec<String> = rec
        .units
        .iter()
        .filter(|u| cx.unit_dir.join(u).exists())
        .cloned()
        .collect();
    if !present.is_empty() {
        systemd.disable(&present).await?;
    }
    let mut removed = false;
    for u in &rec.units {
        removed |= files::remove_if_exists(&cx.unit_dir.join(u))?;
    }
    if removed {
        systemd.reload().await?;
    }
    for u in &rec.units {
        systemd.reset_failed(u).await?;
    }
    for ctr in &rec.containers {
        podman.remove_container(ctr).await?;
    }
    podman.remove_pod(&rec.pod).await?;
    for d in &rec.trust_dirs {
        remove_trust_dir(d)?;
    }
    if rec.deletion_policy == DeletionPolicy::Delete {
        for v in &rec.volumes {
            podman.remove_volume(v).await?;
        }
        for p in &rec.data_paths {
            remove_tree(p)?;
        }
        remove_tree(&rec.root)?;
    }
    Ok(())
}

fn remove_tree(p: &std::path::Path) -> Result<(), Error> {
    if p.as_os_str().is_empty() || p == std::path::Path::new("/") {
        return Ok(());
    }
    match std::fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Other(format!("remove {}: {e}", p.display()))),
    }
}
