//! One look at a registry: which path it takes, and what it cost.

use super::queue::Next;
use super::{file, invalid, teardown, Context};
use crate::host::files;

/// Looks at registry `name` again: converge it to its spec file, report a
/// bad spec, or tear it down when its file is gone.
pub async fn reconcile(cx: &Context, name: &str) -> Next {
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
