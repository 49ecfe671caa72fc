//! Config files render wrote, and copies of files under the root (quay:
//! the TLS pair into Quay's config directory), each written only when it
//! differs.

use std::path::Path;

use super::super::Error;
use crate::host::files;
use crate::render::Desired;

pub(super) fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Other(format!("read {}: {e}", path.display())))
}

/// Returns whether any file changed.
pub fn write(desired: &Desired) -> Result<bool, Error> {
    let mut changed = false;
    for f in &desired.files {
        changed |= files::write_if_changed(&f.path, f.content.as_bytes(), f.mode)?;
    }
    for copy in &desired.copies {
        changed |= files::write_if_changed(&copy.to, &read(&copy.from)?, copy.mode)?;
    }
    Ok(changed)
}
