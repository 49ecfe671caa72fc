//! A spec that is not applied: its file cannot be used, it is not valid,
//! or its name is in two files. Status says why; the host is left exactly
//! as it is (a running registry keeps running).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::conditions::not_applied;
use super::queue::Next;
use super::writeback::{keep_copy, write_status, Written};
use super::Context;
use crate::api::load::{self, Invalid};
use crate::api::{Reason, Status};
use crate::spec_file::read::read_spec;
use crate::store;

/// The same name in two files: both are told, neither wins, the host is left
/// alone.
pub fn duplicate(cx: &Context, name: &str, files: &[PathBuf]) -> Next {
    let mut next = Next::Done;
    for f in files {
        let Ok(bytes) = read_spec(f, &cx.watch_dir, cx.strict()) else {
            continue;
        };
        let others: Vec<String> = files
            .iter()
            .filter(|o| *o != f)
            .map(|o| o.display().to_string())
            .collect();
        let problem = format!(
            "metadata.name: '{name}' is also used by {}; each registry needs its own name, so neither file is applied",
            others.join(", ")
        );
        let prev = load::parse(f, &bytes)
            .ok()
            .and_then(|l| l.resource.status)
            .or_else(|| store::status::load(&cx.state_dir, name));
        let status = not_applied(prev.as_ref(), &[problem], Reason::DuplicateName);
        if write_status(cx, name, f, &bytes, prev.as_ref(), &status) == Written::Conflict {
            next = Next::After(Duration::ZERO);
        }
    }
    next
}

/// A file the spec gate refuses (`spec_file::read`): status goes to the
/// state directory only, since the file is not to be written either.
pub fn unusable(cx: &Context, name: &str, problem: String) -> Next {
    tracing::warn!(registry = name, "{problem}; registry left as it is");
    let prev = store::status::load(&cx.state_dir, name);
    let status = not_applied(prev.as_ref(), &[problem], Reason::UnusableFile);
    keep_copy(cx, name, &status);
    Next::Done
}

/// A spec that does not parse or validate: every problem, with its field.
pub fn invalid_spec(
    cx: &Context,
    name: &str,
    path: &Path,
    bytes: &[u8],
    invalid: &Invalid,
) -> Next {
    let prev = serde_yaml::from_slice::<serde_yaml::Value>(bytes)
        .ok()
        .and_then(|v| v.get("status").cloned())
        .and_then(|s| serde_yaml::from_value::<Status>(s).ok());
    let kept = prev
        .clone()
        .or_else(|| store::status::load(&cx.state_dir, name));
    let problems: Vec<String> = invalid.problems.iter().map(|p| p.to_string()).collect();
    tracing::warn!(registry = name, file = %path.display(), problems = %problems.join("; "), "invalid spec; registry left as it is");
    let status = not_applied(kept.as_ref(), &problems, Reason::InvalidSpec);
    match write_status(cx, name, path, bytes, prev.as_ref(), &status) {
        Written::Conflict => Next::After(Duration::ZERO),
        _ => Next::Done,
    }
}
