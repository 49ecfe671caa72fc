//! One look at a registry: which path it takes, and what it cost.

use std::time::Duration;

use super::queue::Next;
use super::{file, invalid, teardown, Context};
use crate::host::files;
use crate::store;

/// How long a reconcile waits for `mrctl gc` to let go of a registry
/// before it gives its turn up and looks again (`LOCK_RETRY`): a
/// collection takes longer, and a name waiting forever would hold up
/// shutdown.
const LOCK_WAIT: Duration = Duration::from_secs(5);
const LOCK_RETRY: Duration = Duration::from_secs(1);

/// Looks at registry `name` again: converge it to its spec file, report a
/// bad spec, or tear it down when its file is gone.
pub async fn reconcile(cx: &Context, name: &str) -> Next {
    // No lock for a name no registry can have (only an invalid spec's
    // status is written under it), nor for one with neither a spec file
    // nor a state directory: nothing of it exists to converge, tear down
    // or collect, and taking the lock would create its directory.
    let lockable = crate::api::validate::is_dns1123_label(name)
        && (store::dir(&cx.state_dir, name).is_dir() || !cx.files_for(name).is_empty());
    let _held = if lockable {
        match store::lock::take(&cx.state_dir, name, LOCK_WAIT, |pid| {
            tracing::info!(registry = name, holder_pid = ?pid, "another process (mrctl gc) holds the registry; waiting for it")
        })
        .await
        {
            Ok(Some(held)) => Some(held),
            // Nothing was read or decided: the registry is looked at again,
            // never taken for gone.
            Ok(None) => return Next::After(LOCK_RETRY),
            Err(e) => {
                tracing::error!(registry = name, error = %e, "cannot take the registry's lock; nothing done");
                return Next::Backoff;
            }
        }
    } else {
        None
    };
    let start = std::time::Instant::now();
    let (podman0, dbus0) = cx.call_counts().await;
    let writes0 = files::writes();
    let files = cx.files_for(name);
    let next = match files.as_slice() {
        [] => teardown::run(cx, name).await,
        [one] => file::reconcile_file(cx, name, one).await,
        many => invalid::duplicate(cx, name, many),
    };
    // What one reconcile cost; a reconnect resets the counters, hence
    // saturating. Benchmarks read this line.
    let (podman1, dbus1) = cx.call_counts().await;
    tracing::debug!(
        registry = name,
        duration_us = start.elapsed().as_micros() as u64,
        podman_calls = podman1.saturating_sub(podman0),
        dbus_calls = dbus1.saturating_sub(dbus0),
        writes = files::writes() - writes0,
        next = ?next,
        "reconciled"
    );
    next
}
