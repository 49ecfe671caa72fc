//! Everything a reconcile needs, shared by all workers: directories, scope,
//! host facts, the index of spec names, and the podman and D-Bus clients
//! (connected on first use, dropped after a failed call).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use super::{Error, StatusMode};
use crate::api::defaults::HostFacts;
use crate::host::podman::Podman;
use crate::host::systemd::{Scope, Systemd};
use crate::render;
use crate::store::{self, index};

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
    fn index(&self) -> MutexGuard<'_, index::Index> {
        match self.index.lock() {
            Ok(g) => g,
            Err(poisoned) => {
                tracing::error!("the spec index was poisoned by a panic; rebuilding it from the watch directory");
                let mut g = poisoned.into_inner();
                *g = index::rescan(
                    &self.watch_dir,
                    &self.state_dir,
                    &index::Index::default(),
                    self.strict(),
                )
                .0;
                self.index.clear_poison();
                g
            }
        }
    }

    /// Rescans the watch directory; returns the names to look at.
    pub fn rescan(&self) -> BTreeSet<String> {
        let mut idx = self.index();
        let (new, dirty) = index::rescan(&self.watch_dir, &self.state_dir, &idx, self.strict());
        *idx = new;
        dirty
    }

    /// Every name the controller knows: spec files, ownership records and
    /// status copies. A spec refused before anything of it was recorded
    /// (a conflict) and removed while the controller was stopped leaves
    /// only its status copy: looking at the name again removes it, so it
    /// does not linger in `mrctl get NAME`.
    pub fn all_names(&self) -> BTreeSet<String> {
        let mut names = self.index().names();
        names.extend(store::names(&self.state_dir));
        names.extend(status_names(&self.state_dir));
        names
    }

    pub fn files_for(&self, name: &str) -> Vec<PathBuf> {
        self.index().files_for(name)
    }

    /// System scope: spec files must pass StrictModes (`spec_file::read`).
    pub fn strict(&self) -> bool {
        self.scope == Scope::System
    }
}

/// Names with a status copy in the state directory.
fn status_names(state_dir: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(state_dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(store::status::STATUS_FILE).is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| crate::api::validate::is_dns1123_label(n))
        .collect()
}
