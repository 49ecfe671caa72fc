//! Named volumes (labelled as owned) and host data directories; each is
//! recorded before it is created, so Delete removes only what was created.

use super::super::{Context, Error};
use crate::api::defaults::Resolved;
use crate::host::files;
use crate::host::podman::Podman;
use crate::naming;
use crate::render::Desired;
use crate::store::{self, record::Record};

pub async fn ensure(
    cx: &Context,
    podman: &Podman,
    rec: &mut Record,
    desired: &Desired,
    r: &Resolved,
) -> Result<(), Error> {
    let labels = naming::owner_labels(&r.name);
    for v in &desired.volumes {
        if podman.volume(v).await?.is_none() {
            rec.volumes.insert(v.clone());
            store::record::save(&cx.state_dir, rec)?;
            podman.create_volume(v, &labels).await?;
            tracing::info!(registry = %r.name, volume = %v, "created volume");
        }
    }
    for p in &desired.data_paths {
        // A dangling symlink is not ours to create, or to remove later.
        if p.symlink_metadata().is_err() {
            rec.data_paths.insert(p.clone());
            store::record::save(&cx.state_dir, rec)?;
        }
        files::ensure_dir(p, 0o700)?;
    }
    Ok(())
}
