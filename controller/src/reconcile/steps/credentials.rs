//! The initial user's password (kept, read from the user's file, or
//! generated once) and, for distribution, the registry's htpasswd.

use super::super::Error;
use crate::api::defaults::Resolved;
use crate::api::Engine;
use crate::host::credentials::{self, Credentials};
use crate::naming;

/// The credentials, and whether htpasswd changed (the registry restarts).
pub fn ensure(r: &Resolved) -> Result<(Credentials, bool), Error> {
    let (creds, _) = credentials::ensure_init_credentials(
        &naming::root::secrets_dir(&r.root),
        &r.init_username,
        r.init_password_file.as_deref(),
    )?;
    let changed = r.engine == Engine::Distribution
        && credentials::ensure_htpasswd(&naming::root::htpasswd_file(&r.root), &creds)?;
    Ok((creds, changed))
}
