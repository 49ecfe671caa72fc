//! Ownership first: whatever this reconcile may create is recorded before
//! it is made, so a crash in between still leaves a complete record
//! (`store::record`); teardown and Delete work from it alone.

use std::path::{Path, PathBuf};

use super::super::{Context, Error};
use crate::api::defaults::{Resolved, Tls};
use crate::host::files;
use crate::render::Desired;
use crate::store::{self, claims, record::Record};

/// The record updated with what `desired` may create, saved before any of
/// it exists. Back after a Retain teardown, what it created is still its
/// own (`retained.json` is folded in, then forgotten).
pub fn record(
    cx: &Context,
    r: &Resolved,
    spec_file: &Path,
    desired: &Desired,
    existing: Option<Record>,
) -> Result<Record, Error> {
    let fresh = existing.is_none();
    let mut rec = existing.unwrap_or_default();
    let kept = fresh
        .then(|| store::retained::load(&cx.state_dir, &r.name, &r.root))
        .flatten();
    if let Some(k) = &kept {
        rec.created_dirs.extend(k.created_dirs.iter().cloned());
        rec.data_paths.extend(
            k.data_paths
                .iter()
                .filter(|p| desired.data_paths.contains(p))
                .cloned(),
        );
    }
    rec.claims = Some(claims::of(r));
    rec.files
        .extend(desired.files.iter().map(|f| f.path.clone()));
    rec.files
        .extend(desired.copies.iter().map(|f| f.to.clone()));
    rec.name = r.name.clone();
    rec.spec_file = spec_file.to_path_buf();
    rec.root = r.root.clone();
    rec.pod = desired.pod.clone();
    rec.deletion_policy = r.deletion_policy;
    rec.units
        .extend(desired.all_units().map(|u| u.name.clone()));
    rec.containers
        .extend(desired.components.iter().map(|x| x.container.clone()));
    if matches!(r.tls, Tls::Generated { .. }) {
        rec.trust_dirs.insert(cx.certs_d.join(r.host_port()));
    }
    store::record::save(&cx.state_dir, &rec)?;
    if kept.is_some() {
        store::retained::remove(&cx.state_dir, &r.name)?;
    }
    Ok(rec)
}

/// The root and its layout. Directories are recorded as created before
/// they are made: only those are ever removed (deletionPolicy Delete), a
/// root that existed (or is a symlink) never is.
pub fn make_dirs(cx: &Context, rec: &mut Record, desired: &Desired) -> Result<(), Error> {
    let missing: Vec<PathBuf> = desired
        .dirs
        .iter()
        .map(|(d, _)| d.clone())
        .filter(|d| d.symlink_metadata().is_err() && !rec.created_dirs.contains(d))
        .collect();
    if !missing.is_empty() {
        rec.created_dirs.extend(missing);
        store::record::save(&cx.state_dir, rec)?;
    }
    for (dir, mode) in &desired.dirs {
        files::ensure_dir(dir, *mode)?;
    }
    Ok(())
}
