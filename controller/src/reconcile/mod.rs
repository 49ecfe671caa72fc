//! The controller: a queue of names fed by the directory watcher and a
//! resync timer, and the reconcile function that converges one registry to
//! its spec file.

pub mod admission;
pub mod claims;
pub mod converge;
pub mod drift;
pub mod index;
pub mod quay;
pub mod queue;
pub mod record;
pub mod removal;
pub mod run;
pub mod status;
pub mod teardown;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use crate::api::defaults::HostFacts;
use crate::host::podman::Podman;
use crate::host::systemd::{Scope, Systemd};
use crate::render;

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
    Record(#[from] record::Error),
    #[error("{0}")]
    Other(String),
}

impl From<crate::host::podman::Error> for Error {
    fn from(e: crate::host::podman::Error) -> Self {
        Error::Podman(Box::new(e))
    }
}

/// Everything a reconcile needs, shared by all workers.
pub struct Context {
    pub watch_dir: PathBuf,
    pub state_dir: PathBuf,
    pub scope: Scope,
    pub status_mode: StatusMode,
    pub host: HostFacts,
    pub render: render::Context,
    pub unit_dir: PathBuf,
    pub certs_d: PathBuf,
    pub podman_socket: PathBuf,
    pub index: Mutex<index::Index>,
    clients: tokio::sync::Mutex<Option<(Podman, Systemd)>>,
}

impl Context {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        watch_dir: PathBuf,
        state_dir: PathBuf,
        scope: Scope,
        status_mode: StatusMode,
        host: HostFacts,
        render: render::Context,
        unit_dir: PathBuf,
        certs_d: PathBuf,
        podman_socket: PathBuf,
    ) -> Self {
        Context {
            watch_dir,
            state_dir,
            scope,
            status_mode,
            host,
            render,
            unit_dir,
            certs_d,
            podman_socket,
            index: Mutex::default(),
            clients: tokio::sync::Mutex::new(None),
        }
    }

    /// Connected clients, connecting (again) when needed: a podman socket or
    /// manager that was down is picked up as soon as it answers.
    pub async fn clients(&self) -> Result<(Podman, Systemd), Error> {
        let mut guard = self.clients.lock().await;
        // No ping per reconcile: a failed call resets the clients
        // (`reset_clients`) and the next reconcile connects again.
        if let Some((p, s)) = guard.as_ref() {
            return Ok((p.clone(), s.clone()));
        }
        let podman = Podman::connect(&self.podman_socket).await?;
        let systemd = Systemd::connect(self.scope).await?;
        *guard = Some((podman.clone(), systemd.clone()));
        Ok((podman, systemd))
    }

    /// Podman API and D-Bus calls made so far through the cached clients.
    pub async fn call_counts(&self) -> (u64, u64) {
        match self.clients.lock().await.as_ref() {
            Some((p, s)) => (p.api_calls(), s.dbus_calls()),
            None => (0, 0),
        }
    }

    /// Drops cached clients after an error, so the next reconcile reconnects
    /// (a restarted systemd manager means a new bus connection).
    pub async fn reset_clients(&self) {
        *self.clients.lock().await = None;
    }

    /// The index, rebuilt from the directory when a panic left its lock
    /// poisoned: it is derived data, and an empty or half-updated index
    /// would read as "these spec files are gone" and tear registries down.
    fn index(&self) -> std::sync::MutexGuard<'_, index::Index> {
        match self.index.lock() {
            Ok(g) => g,
            Err(poisoned) => {
                tracing::error!("the spec index was poisoned by a panic; rebuilding it from the watch directory");
                let mut g = poisoned.into_inner();
                *g = index::rescan(
                    &self.watch_dir,
                    &self.state_dir,
                    &index::Index::default(),
                    self.scope == Scope::System,
                )
                .0;
                self.index.clear_poison();
                g
            }
        }
    }

    /// Rescans the watch directory; returns the names to look at.
    pub fn rescan(&self) -> std::collections::BTreeSet<String> {
        let mut idx = self.index();
        let strict = self.scope == Scope::System;
        let (new, dirty) = index::rescan(&self.watch_dir, &self.state_dir, &idx, strict);
        *idx = new;
        dirty
    }

    /// Every name the controller knows: spec files, ownership records and
    /// status copies. A spec refused before anything of it was recorded
    /// (a conflict) and removed while the controller was stopped leaves
    /// only its status copy: looking at the name again removes it, so it
    /// does not linger in `mrctl get NAME`.
    pub fn all_names(&self) -> std::collections::BTreeSet<String> {
        let mut names = self.index().names();
        names.extend(record::names(&self.state_dir));
        names.extend(status_names(&self.state_dir));
        names
    }

    pub fn files_for(&self, name: &str) -> Vec<PathBuf> {
        self.index().files_for(name)
    }
}

/// Names with a status copy in the state directory.
fn status_names(state_dir: &std::path::Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(state_dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(record::STATUS_FILE).is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| crate::api::validate::is_dns1123_label(n))
        .collect()
}

/// Reconciles `name`, containing a panic: the registry is retried after its
/// backoff and the fault is told (log, and a Ready condition in the state
/// directory's status copy), never read as success or as "the spec is gone".
pub async fn reconcile_guarded(cx: &Context, name: &str) -> queue::Next {
    let start = std::time::Instant::now();
    let next = guard(cx, name, converge::reconcile(cx, name)).await;
    crate::observability::metrics::global().reconciled(next, start.elapsed());
    next
}

async fn guard(
    cx: &Context,
    name: &str,
    work: impl std::future::Future<Output = queue::Next>,
) -> queue::Next {
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
            queue::Next::Backoff
        }
    }
}

/// Marks the state directory's status copy with an internal fault, keeping
/// everything else it said.
fn report_internal_fault(cx: &Context, name: &str, what: &str) {
    let Some(mut s) = record::load_status(&cx.state_dir, name) else {
        return;
    };
    let prev = s.conditions.clone();
    let mut c = status::Conditions::new(&prev);
    c.set(
        status::READY,
        Some(false),
        "InternalError",
        format!("the controller hit an internal fault ({what}); nothing was changed, it retries"),
    );
    s.conditions.retain(|x| x.type_ != status::READY);
    s.conditions.extend(c.list);
    if let Err(e) = record::save_status(&cx.state_dir, name, &s) {
        tracing::warn!(registry = name, error = %e, "cannot keep status in the state directory");
    }
}

/// How long to wait before looking again at a registry still coming up.
pub const PROGRESS_REQUEUE: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

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
        record::save_status(&cx.state_dir, "a", &before).unwrap();
        let next = guard(&cx, "a", async { panic!("boom in a") }).await;
        assert_eq!(next, queue::Next::Backoff);
        let after = record::load_status(&cx.state_dir, "a").unwrap();
        let ready = after
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.reason, "InternalError");
        assert!(ready.message.contains("boom in a"), "{}", ready.message);
        assert_eq!(after.endpoint, before.endpoint);
        let ok = guard(&cx, "b", async { queue::Next::Done }).await;
        assert_eq!(ok, queue::Next::Done);
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
