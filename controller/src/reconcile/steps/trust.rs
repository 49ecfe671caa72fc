//! The host trusts the generated CA for `host:port`
//! (`certs.d/<host:port>/ca.crt`), so podman login and skopeo verify TLS;
//! trust entries for an old host or port go. Teardown removes entries with
//! [`remove_trust_dir`] too.

use std::path::{Path, PathBuf};

use super::super::{Context, Error};
use super::config::read;
use crate::api::defaults::Resolved;
use crate::host::files;
use crate::store::{self, record::Record};

pub fn ensure(
    cx: &Context,
    rec: &mut Record,
    r: &Resolved,
    ca_file: Option<&Path>,
) -> Result<(), Error> {
    let trust_dir = cx.certs_d.join(r.host_port());
    if let Some(ca) = ca_file {
        files::ensure_dir(&trust_dir, 0o755)?;
        files::write_if_changed(&trust_dir.join("ca.crt"), &read(ca)?, 0o644)?;
    }
    let stale: Vec<PathBuf> = rec
        .trust_dirs
        .iter()
        .filter(|d| !(ca_file.is_some() && **d == trust_dir))
        .cloned()
        .collect();
    for d in stale {
        remove_trust_dir(&d)?;
        rec.trust_dirs.remove(&d);
        store::record::save(&cx.state_dir, rec)?;
    }
    Ok(())
}

/// Removes a trust entry: its CA file, then the directory if that leaves
/// it empty.
pub fn remove_trust_dir(d: &Path) -> Result<(), Error> {
    files::remove_if_exists(&d.join("ca.crt"))?;
    let _ = std::fs::remove_dir(d);
    Ok(())
}
