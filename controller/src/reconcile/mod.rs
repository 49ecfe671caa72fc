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

    /// Rescans the watch directory; returns the names to look at.
    pub fn rescan(&self) -> std::collections::BTreeSet<String> {
        let Ok(mut idx) = self.index.lock() else {
            return Default::default();
        };
        let strict = self.scope == Scope::System;
        let (new, dirty) = index::rescan(&self.watch_dir, &self.state_dir, &idx, strict);
        *idx = new;
        dirty
    }

    /// Every name the controller knows: spec files and ownership records.
    pub fn all_names(&self) -> std::collections::BTreeSet<String> {
        let mut names = self.index.lock().map(|i| i.names()).unwrap_or_default();
        names.extend(record::names(&self.state_dir));
        names
    }

    pub fn files_for(&self, name: &str) -> Vec<PathBuf> {
        self.index
            .lock()
            .map(|i| i.files_for(name))
            .unwrap_or_default()
    }
}

/// How long to wait before looking again at a registry still coming up.
pub const PROGRESS_REQUEUE: Duration = Duration::from_secs(2);
