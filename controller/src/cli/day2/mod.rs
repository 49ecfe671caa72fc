//! Day two: `mrctl gc`, `backup` and `restore`, and what they share: the
//! registry held in maintenance (`store::maintenance`), read-only while
//! garbage is collected.
//!
//! Besides spec files and the controller's unit, these change the host
//! directly, because the work cannot wait for a reconcile: `gc` rewrites
//! the distribution registry's config (read-only, then read-write, as
//! render writes it with the maintenance marker held) and restarts its
//! unit; `restore` writes a root, a storage and a spec that do not exist yet.

pub mod archive;
pub mod backup;
pub mod gc;
pub mod restore;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::state::Paths;
use super::{Error, Result};
use crate::api::defaults::{Resolved, Tls};
use crate::host::files;
use crate::host::systemd::Systemd;
use crate::naming;
use crate::reconcile::steps::probe;
use crate::render::{self, distribution};

/// The CA the registry's clients trust (generated TLS), for probes.
fn ca_file(r: &Resolved) -> Option<PathBuf> {
    matches!(r.tls, Tls::Generated { .. }).then(|| naming::root::tls_dir(&r.root).join("ca.crt"))
}

/// Writes the distribution registry's config as render makes it, read-only
/// or not, restarts its unit (which also empties its in-memory blob
/// descriptor cache) and waits until it answers again.
async fn set_read_only(
    paths: &Paths,
    systemd: &Systemd,
    r: &Resolved,
    read_only: bool,
    timeout: Duration,
) -> Result<()> {
    let inputs = render::Inputs {
        read_only,
        ..Default::default()
    };
    let desired =
        render::render_with(r, &paths.render_context(), &inputs).map_err(Error::Failed)?;
    let config = desired
        .files
        .iter()
        .find(|f| f.path.ends_with(distribution::CONFIG_FILE))
        .ok_or_else(|| Error::Failed(format!("{}: no registry config rendered", r.name)))?;
    files::write_if_changed(&config.path, config.content.as_bytes(), config.mode)?;
    let unit = naming::unit(&r.name, distribution::COMPONENT);
    systemd.restart_recovering(&unit).await?;
    started_with(paths, r, &desired, &unit)?;
    wait_serving(r, timeout).await
}

/// Records in the registry's ownership record what its unit now runs
/// with, as the controller does after a restart: otherwise its next
/// reconcile would find the unit stale and restart it once more.
fn started_with(
    paths: &Paths,
    r: &Resolved,
    desired: &crate::render::Desired,
    unit: &str,
) -> Result<()> {
    let Some(mut rec) = crate::store::record::load(&paths.state_dir, &r.name)? else {
        return Ok(());
    };
    let digests = crate::reconcile::steps::units::input_digests(desired, r)
        .map_err(|e| Error::Failed(e.to_string()))?;
    if let Some(d) = digests.get(unit) {
        if rec.started_with.get(unit) != Some(d) {
            rec.started_with.insert(unit.to_string(), d.clone());
            crate::store::record::save(&paths.state_dir, &rec)?;
        }
    }
    Ok(())
}

/// Polls the registry's `/v2/` until it answers (200 or 401).
async fn wait_serving(r: &Resolved, timeout: Duration) -> Result<()> {
    let ca = ca_file(r);
    let deadline = Instant::now() + timeout;
    loop {
        match probe::probe(r, "/v2/", ca.as_deref()).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(Error::Failed(format!(
                    "mirrorregistry/{} did not answer within {}: {e}",
                    r.name,
                    humantime::format_duration(timeout)
                )))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The registry's host directory of blobs.
async fn storage_dir(paths: &Paths, r: &Resolved) -> Result<PathBuf> {
    let podman = crate::host::podman::Podman::connect(&paths.podman_socket).await?;
    crate::reconcile::steps::storage_usage::host_dir(&podman, &r.storage)
        .await
        .map_err(|e| Error::Failed(format!("mirrorregistry/{}: storage: {e}", r.name)))
}

/// A registry's resolved spec, or why there is none to work on.
fn resolved(paths: &Paths, name: &str) -> Result<Resolved> {
    let reg = paths.find(name)?;
    reg.resolved(paths.host()).ok_or_else(|| {
        Error::Failed(format!(
            "mirrorregistry/{name}: its spec file is not valid; see `mrctl validate -f {}`",
            reg.file()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "FILE".into())
        ))
    })
}

/// Milliseconds since `t`.
fn millis(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Used bytes under `dir`.
fn used(dir: &Path) -> Result<u64> {
    crate::reconcile::steps::storage_usage::used_bytes(dir)
        .map_err(|e| Error::Failed(format!("read {}: {e}", dir.display())))
}
