//! Status written back: always to the state directory's copy
//! (`store::status`), and in inline mode into the spec file's `status:`
//! block, only when it differs and only over the bytes that were read.

use std::path::Path;

use super::{Context, StatusMode};
use crate::api::defaults::{self, Resolved};
use crate::api::{load, Status};
use crate::spec_file::read::read_spec;
use crate::spec_file::{splice, write};
use crate::store;

#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// The spec file already held this status (or state-only mode).
    Unchanged,
    Written,
    /// The file changed since it was read: nothing written, look again.
    Conflict,
    /// The file cannot take status (a symlink, or text the splice cannot
    /// place safely); status lives in the state dir only.
    StateOnly(String),
}

/// How often a status is put into a file edited meanwhile (with the same
/// spec) before the reconcile is left to run again.
const REBASE_TRIES: usize = 3;

/// The YAML body of a status block.
pub fn to_yaml(status: &Status) -> Result<String, String> {
    serde_yaml::to_string(status).map_err(|e| format!("cannot serialise status: {e}"))
}

/// Splices `status` into the spec file `path` whose bytes were `read`, only
/// when the file's own status differs.
pub fn write_inline(
    path: &Path,
    read: &[u8],
    current: Option<&Status>,
    status: &Status,
) -> Written {
    if current == Some(status) {
        return Written::Unchanged;
    }
    let Ok(text) = std::str::from_utf8(read) else {
        return Written::StateOnly("file is not UTF-8".into());
    };
    let body = match to_yaml(status) {
        Ok(b) => b,
        Err(e) => return Written::StateOnly(e),
    };
    let new = match splice::splice_status_checked(text, Some(&body)) {
        Ok(t) => t,
        Err(e) => return Written::StateOnly(e.to_string()),
    };
    match write::replace_if_unchanged(path, read, new.as_bytes()) {
        Ok(write::Outcome::Written) => Written::Written,
        Ok(write::Outcome::Conflict) | Ok(write::Outcome::Missing) => Written::Conflict,
        Err(e) => Written::StateOnly(e.to_string()),
    }
}

/// Keeps `status` in the state directory; a failure is logged, never fatal.
pub fn keep_copy(cx: &Context, name: &str, status: &Status) {
    if let Err(e) = store::status::save(&cx.state_dir, name, status) {
        tracing::warn!(registry = name, error = %e, "cannot keep status in the state directory");
    }
}

/// Writes status to the state dir always, and into the spec file in inline
/// mode.
pub fn write_status(
    cx: &Context,
    name: &str,
    file: &Path,
    read: &[u8],
    current: Option<&Status>,
    status: &Status,
) -> Written {
    keep_copy(cx, name, status);
    if cx.status_mode == StatusMode::StateOnly {
        return Written::Unchanged;
    }
    let w = write_inline(file, read, current, status);
    match &w {
        Written::StateOnly(why) => {
            tracing::debug!(registry = name, file = %file.display(), why, "status kept in the state directory only")
        }
        Written::Written => {
            tracing::info!(
                registry = name,
                phase = status.phase.as_str(),
                "status written"
            )
        }
        Written::Conflict => {
            tracing::debug!(registry = name, file = %file.display(), "spec file changed since it was read; status not written over it")
        }
        Written::Unchanged => {}
    }
    w
}

/// [`write_status`] for an applied spec. Edited meanwhile: an edit that
/// leaves the spec as it was (comments, formatting, labels) leaves this
/// status true, so it goes into the new text instead of converging again,
/// which a user saving often would starve.
#[allow(clippy::too_many_arguments)]
pub fn write_rebasing(
    cx: &Context,
    name: &str,
    path: &Path,
    read: &[u8],
    in_file: Option<&Status>,
    resolved: &Resolved,
    status: &Status,
) -> Written {
    let mut written = write_status(cx, name, path, read, in_file, status);
    for _ in 0..REBASE_TRIES {
        if written != Written::Conflict {
            break;
        }
        let Some((bytes, in_file)) = reread_same_spec(cx, name, path, resolved) else {
            break;
        };
        written = write_status(cx, name, path, &bytes, in_file.as_ref(), status);
    }
    written
}

/// The spec file read again, with its status, when it still asks for the
/// same registry as `resolved`; `None` when it changed in substance (or
/// cannot be read), so a new reconcile must look at it.
fn reread_same_spec(
    cx: &Context,
    name: &str,
    path: &Path,
    resolved: &Resolved,
) -> Option<(Vec<u8>, Option<Status>)> {
    let bytes = read_spec(path, &cx.watch_dir, cx.strict()).ok()?;
    let loaded = load::parse(path, &bytes).ok()?;
    let again = defaults::resolve(&loaded.resource, &loaded.name, &cx.host);
    let same = matches!((again.hash(), resolved.hash()), (Ok(a), Ok(b)) if a == b);
    (loaded.name == name && same).then_some((bytes, loaded.resource.status))
}
