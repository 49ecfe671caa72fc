//! The controller: a queue of names fed by the directory watcher, host
//! events and a resync timer, and the reconcile that converges one registry
//! to its spec file.
//!
//! One reconcile ([`dispatch::reconcile`]) takes one of three paths:
//! teardown (no file names the registry), [`invalid`] (its file is
//! unusable or invalid, or two files name it: status only), or
//! [`file::reconcile_file`]: read and resolve the spec, run the steps
//! ([`steps::converge`]), turn their outcomes into conditions
//! ([`conditions::verdict`]) and write status back ([`writeback`]).

pub mod admission;
pub mod conditions;
mod context;
pub mod dispatch;
pub mod drift;
pub mod file;
pub mod invalid;
pub mod quay;
pub mod queue;
pub mod removal;
pub mod run;
pub mod steps;
pub mod teardown;
pub mod writeback;

use std::time::Duration;

pub use context::Context;
use queue::Next;

use crate::store;

/// Where status goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusMode {
    /// Into the spec file's `status:` block, and the state dir.
    Inline,
    /// Only into the state dir: the spec file is never written.
    StateOnly,
}

/// Errors of one reconcile; each names what failed. They set Ready=False
/// with the message and back off; they never tear anything down.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Podman(#[from] Box<crate::host::podman::Error>),
    #[error(transparent)]
    Systemd(#[from] crate::host::systemd::Error),
    #[error(transparent)]
    Files(#[from] crate::host::files::Error),
    #[error(transparent)]
    Tls(#[from] crate::host::tls::Error),
    #[error(transparent)]
    Credentials(#[from] crate::host::credentials::Error),
    #[error(transparent)]
    Secrets(#[from] crate::host::secrets::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("{0}")]
    Other(String),
}

impl From<crate::host::podman::Error> for Error {
    fn from(e: crate::host::podman::Error) -> Self {
        Error::Podman(Box::new(e))
    }
}

impl Error {
    /// A podman or D-Bus call failed: the cached clients are dropped, so
    /// the next reconcile connects again (a restarted manager means a new
    /// bus connection).
    pub fn drops_clients(&self) -> bool {
        matches!(self, Error::Podman(_) | Error::Systemd(_))
    }
}

/// What a failed reconcile of `name` asks for, in the spirit of kube-rs's
/// controller-rs `error_policy`: whatever failed, the name's backoff (the
/// queue's, exponential with jitter, up to a minute). A failure is never
/// retried in a tight loop and never read as "tear down"; status says what
/// failed (Healthy Unknown, ReconcileError).
pub fn error_policy(name: &str, e: &Error) -> Next {
    tracing::warn!(registry = name, error = %e, "reconcile failed; backing off");
    Next::Backoff
}

/// Reconciles `name`, containing a panic: the registry is retried after its
/// backoff and the fault is told (log, and a Ready condition in the state
/// directory's status copy), never read as success or as "the spec is gone".
pub async fn reconcile_guarded(cx: &Context, name: &str) -> Next {
    let start = std::time::Instant::now();
    let next = guard(cx, name, dispatch::reconcile(cx, name)).await;
    crate::observability::metrics::global().reconciled(next, start.elapsed());
    next
}

async fn guard(cx: &Context, name: &str, work: impl std::future::Future<Output = Next>) -> Next {
    use futures_util::FutureExt;
    match std::panic::AssertUnwindSafe(work).catch_unwind().await {
        Ok(next) => next,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            tracing::error!(registry = name, panic = %what, "reconcile panicked; nothing further done, retrying after backoff");
            report_internal_fault(cx, name, &what);
            Next::Backoff
        }
    }
}

/// Marks the state directory's status copy with an internal fault, keeping
/// everything else it said.
fn report_internal_fault(cx: &Context, name: &str, what: &str) {
    let Some(s) = store::status::load(&cx.state_dir, name) else {
        return;
    };
    writeback::keep_copy(cx, name, &conditions::internal_fault(s, what));
}

/// How long to wait before looking again at a registry still coming up.
pub const PROGRESS_REQUEUE: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::defaults::HostFacts;
    use crate::host::systemd::Scope;
    use crate::render;

    fn context(dir: &std::path::Path) -> Context {
        Context::new(
            dir.join("watch"),
            dir.join("state"),
            Scope::User,
            StatusMode::StateOnly,
            HostFacts {
                fqdn: "host.example".into(),
            },
            render::Context {
                podman: "/usr/bin/podman".into(),
                wanted_by: "default.target".into(),
            },
            dir.join("units"),
            dir.join("certs.d"),
            dir.join("podman.sock"),
        )
    }

    /// A reconcile that panics: backoff (never Done, never teardown), and
    /// the status copy says why, keeping what it said before.
    #[tokio::test]
    async fn a_panic_in_a_reconcile_is_contained_and_told() {
        let dir = tempfile::tempdir().unwrap();
        let cx = context(dir.path());
        let before = crate::api::Status {
            phase: crate::api::Phase::Ready,
            endpoint: Some("https://h:1".into()),
            ..Default::default()
        };
        store::status::save(&cx.state_dir, "a", &before).unwrap();
        let next = guard(&cx, "a", async { panic!("boom in a") }).await;
        assert_eq!(next, Next::Backoff);
        let after = store::status::load(&cx.state_dir, "a").unwrap();
        let ready = after
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.reason, "InternalError");
        assert!(ready.message.contains("boom in a"), "{}", ready.message);
        assert_eq!(after.endpoint, before.endpoint);
        let ok = guard(&cx, "b", async { Next::Done }).await;
        assert_eq!(ok, Next::Done);
    }

    /// A panic while the index was held must not read as "no spec files"
    /// (which would tear every registry down): the index is rebuilt.
    #[test]
    fn a_poisoned_index_is_rebuilt_not_read_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let cx = std::sync::Arc::new(context(dir.path()));
        std::fs::create_dir_all(&cx.watch_dir).unwrap();
        std::fs::write(
            cx.watch_dir.join("a.yaml"),
            "apiVersion: mirrorregistry.io/v1alpha1\nkind: MirrorRegistry\nmetadata: {name: a}\nspec: {engine: distribution}\n",
        )
        .unwrap();
        cx.rescan();
        assert_eq!(cx.files_for("a").len(), 1);
        let c = cx.clone();
        let _ = std::thread::spawn(move || {
            let _g = c.index.lock().unwrap();
            panic!("a fault while the index is held");
        })
        .join();
        assert!(cx.index.is_poisoned());
        assert_eq!(cx.files_for("a"), vec![cx.watch_dir.join("a.yaml")]);
        assert!(cx.all_names().contains("a"));
        assert!(!cx.index.is_poisoned());
    }
}
