//! The reconcile of a registry whose one spec file is there: read it
//! through the gate, resolve it, run the steps, turn their outcomes into
//! status and write status back; then say when to look again.

use std::path::Path;
use std::time::Duration;

use super::conditions::{self, Outcome};
use super::queue::Next;
use super::writeback::{self, Written};
use super::{error_policy, invalid, steps, Context, PROGRESS_REQUEUE};
use crate::api::{defaults, load, ConditionType, Phase, Reason, Status};
use crate::naming;
use crate::spec_file::read::read_spec;
use crate::store;

/// How often a registry refused for a conflict looks again.
const CONFLICT_RECHECK: Duration = Duration::from_secs(5);

pub async fn reconcile_file(cx: &Context, name: &str, path: &Path) -> Next {
    let bytes = match read_spec(path, &cx.watch_dir, cx.strict()) {
        Ok(b) => b,
        // Gone since the last scan: rescan and look again.
        Err(_) if path.symlink_metadata().is_err() => {
            cx.rescan();
            return Next::After(Duration::from_millis(100));
        }
        Err(problem) => return invalid::unusable(cx, name, problem),
    };
    let loaded = match load::parse(path, &bytes) {
        Ok(l) => l,
        Err(inv) => return invalid::invalid_spec(cx, name, path, &bytes, &inv),
    };
    let resolved = defaults::resolve(&loaded.resource, &loaded.name, &cx.host);
    let hash = match resolved.hash() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(registry = name, error = %e, "internal fault; registry left as it is");
            return Next::Backoff;
        }
    };
    // What the file holds decides whether it needs a write; what was last
    // observed (the file's status, else the state directory's copy, as after
    // an editor saved the spec without it, or always in state-only mode)
    // carries transition times and whether the registry served before.
    let in_file = loaded.resource.status.clone();
    let prev = in_file
        .clone()
        .or_else(|| store::status::load(&cx.state_dir, name));
    let prev_conditions = prev
        .as_ref()
        .map(|p| p.conditions.clone())
        .unwrap_or_default();
    let was_ready = prev
        .as_ref()
        .is_some_and(|p| matches!(p.phase, Phase::Ready | Phase::Degraded));
    let now = store::now_rfc3339();
    let mut outcomes = vec![Outcome::SpecValid];

    let mut status = Status {
        observed_spec_hash: Some(hash),
        endpoint: Some(resolved.endpoint()),
        credentials_file: Some(naming::root::credentials_file(&resolved.root)),
        ..Status::default()
    };
    let mut on_error = None;
    match steps::converge(cx, &resolved, path, &mut outcomes).await {
        Ok(out) => {
            status.ca_file = out.ca_file;
            status.components = out.components;
            status.storage =
                storage_status(cx, name, prev.as_ref(), &resolved, out.storage).map(|(s, seen)| {
                    outcomes.push(seen);
                    s
                });
        }
        Err(e) => {
            on_error = Some(error_policy(name, &e));
            if e.drops_clients() {
                cx.reset_clients().await;
            }
            outcomes.push(Outcome::Failed(e.to_string()));
            status.ca_file = prev.as_ref().and_then(|p| p.ca_file.clone());
            status.components = prev
                .as_ref()
                .map(|p| p.components.clone())
                .unwrap_or_default();
            status.storage = prev.as_ref().and_then(|p| p.storage.clone());
        }
    }
    let (list, phase) = conditions::verdict(
        &prev_conditions,
        &now,
        &outcomes,
        resolved.paused,
        was_ready,
    );
    status.phase = phase;
    status.conditions = list;
    // Refused: the files this spec would use may be another registry's;
    // status keeps pointing where it did before.
    let refused_units = status
        .condition(ConditionType::UnitsActive)
        .is_some_and(|x| x.reason == Reason::Conflict);
    if on_error.is_none() && refused_units {
        status.storage = prev.as_ref().and_then(|p| p.storage.clone());
        status.endpoint = prev.as_ref().and_then(|p| p.endpoint.clone());
        status.credentials_file = prev.as_ref().and_then(|p| p.credentials_file.clone());
        status.ca_file = prev.as_ref().and_then(|p| p.ca_file.clone());
        status.components = prev
            .as_ref()
            .map(|p| p.components.clone())
            .unwrap_or_default();
    }
    crate::observability::drift::settle(name, prev.as_ref(), &status);

    let written =
        writeback::write_rebasing(cx, name, path, &bytes, in_file.as_ref(), &resolved, &status);
    if written == Written::Conflict {
        return Next::After(Duration::ZERO);
    }
    if let Some(next) = on_error {
        return next;
    }
    let refused = status
        .conditions
        .iter()
        .any(|c| c.reason == Reason::Conflict);
    match phase {
        // Looked at again by itself: the other registry or object may go.
        _ if refused => Next::After(CONFLICT_RECHECK),
        Phase::Ready | Phase::Paused | Phase::Failed => Next::Done,
        _ => Next::After(PROGRESS_REQUEUE),
    }
}

/// status.storage and the StorageAvailable outcome from what the storage
/// step saw; when it could not look, the last figures stay.
fn storage_status(
    cx: &Context,
    name: &str,
    prev: Option<&Status>,
    r: &defaults::Resolved,
    seen: Option<Result<steps::storage_usage::Usage, String>>,
) -> Option<(crate::api::StorageStatus, Outcome)> {
    let prev_storage = prev.and_then(|p| p.storage.as_ref());
    match seen? {
        Ok(usage) => {
            let last_gc = store::maintenance::last_gc(&cx.state_dir, name);
            let (s, seen) = steps::storage_usage::report(prev_storage, &usage, r.min_free, last_gc);
            Some((s, Outcome::Storage(Ok(seen))))
        }
        Err(e) => prev_storage.map(|s| (s.clone(), Outcome::Storage(Err(e)))),
    }
}
