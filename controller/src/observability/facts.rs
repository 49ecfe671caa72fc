//! What the status page and the per-registry gauges show, read when asked
//! from what the controller keeps: spec files (through the same index and
//! gate as mrctl), the status copy, the ownership record and events log in
//! the state directory, the served certificate, and the storage's
//! filesystem. Nothing here holds or reads a password or key.

use std::path::{Path, PathBuf};

use crate::api::defaults::{Resolved, Storage};
use crate::api::{Condition, Engine, Phase};
use crate::cli::state::{Paths, Registry, Spec};
use crate::cli::Global;
use crate::host::{files, tls};
use crate::naming;
use crate::reconcile::record::{self, Event};
use crate::reconcile::Context;

/// How many of a registry's latest events the page shows.
pub const RECENT_EVENTS: usize = 10;

/// One registry as the page shows it.
#[derive(Clone, Debug)]
pub struct View {
    pub name: String,
    pub engine: Option<Engine>,
    pub phase: String,
    pub ready: bool,
    /// Why the spec cannot be applied, when it cannot (invalid, unreadable,
    /// duplicate name, removed).
    pub spec_problem: Option<String>,
    pub spec_file: Option<PathBuf>,
    pub endpoint: Option<String>,
    pub conditions: Vec<Condition>,
    /// Newest first.
    pub events: Vec<Event>,
    pub certificate: Option<Certificate>,
    pub storage: Option<StorageFacts>,
    pub drift_repairs: u64,
    /// The spec as applied, when valid: where to browse it.
    pub resolved: Option<Resolved>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    pub subject: String,
    pub not_after: time::OffsetDateTime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageFacts {
    /// `volume NAME` or `path /srv/...`.
    pub source: String,
    /// The directory measured (a volume's mountpoint).
    pub path: PathBuf,
    pub free_bytes: u64,
    pub total_bytes: u64,
}

fn paths(cx: &Context) -> Paths {
    Paths::new(&Global {
        watch_dir: cx.watch_dir.clone(),
        state_dir: Some(cx.state_dir.clone()),
        scope: cx.scope,
        podman_socket: Some(cx.podman_socket.clone()),
    })
}

/// Every registry the controller knows, by name.
pub async fn gather(cx: &Context) -> Vec<View> {
    let p = paths(cx);
    let list = match p.list() {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "status page: cannot list registries");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for r in list {
        out.push(view(cx, &p, r).await);
    }
    out
}

/// One registry, `None` when nothing names it.
pub async fn one(cx: &Context, name: &str) -> Option<View> {
    let p = paths(cx);
    let r = p.lookup(name).ok()??;
    Some(view(cx, &p, r).await)
}

async fn view(cx: &Context, p: &Paths, r: Registry) -> View {
    let resolved = r.resolved(p.host());
    let spec_problem = match &r.spec {
        Spec::Valid(_) => None,
        Spec::Missing => Some("no spec file: the registry is being torn down".to_string()),
        Spec::Duplicate => Some(format!(
            "more than one spec file names it: {}",
            r.files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Spec::Unreadable(e) => Some(e.clone()),
        Spec::Invalid(i) => Some(
            i.problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        ),
    };
    let root = resolved
        .as_ref()
        .map(|x| x.root.clone())
        .or_else(|| r.record.as_ref().map(|x| x.root.clone()));
    let certificate = root.as_deref().and_then(certificate);
    let storage = match &resolved {
        Some(x) => storage(cx, &x.storage).await,
        None => None,
    };
    let mut events = record::events(&cx.state_dir, &r.name);
    events.reverse();
    events.truncate(RECENT_EVENTS);
    let status = r.status.clone().unwrap_or_default();
    View {
        name: r.name.clone(),
        engine: r.loaded().map(|l| l.resource.spec.engine),
        phase: r.phase(),
        ready: r.status.as_ref().is_some_and(|s| s.phase == Phase::Ready),
        spec_problem,
        spec_file: r.file().map(Path::to_path_buf),
        endpoint: status.endpoint.clone(),
        conditions: status.conditions.clone(),
        events,
        certificate,
        storage,
        drift_repairs: super::metrics::global().drift_repairs(&r.name),
        resolved,
    }
}

/// The certificate the registry serves (`<root>/tls/tls.crt`).
pub fn certificate(root: &Path) -> Option<Certificate> {
    let pem = files::read_optional(&naming::root::tls_dir(root).join("tls.crt")).ok()??;
    let info = tls::inspect(&String::from_utf8_lossy(&pem)).ok()?;
    Some(Certificate {
        subject: info.subject,
        not_after: info.not_after,
    })
}

/// The filesystem holding the registry's blobs: a volume's mountpoint (asked
/// of podman) or the storage path.
async fn storage(cx: &Context, s: &Storage) -> Option<StorageFacts> {
    let (source, path) = match s {
        Storage::Path(p) => (format!("path {}", p.display()), p.clone()),
        Storage::Volume(v) => {
            let (podman, _) = cx.clients().await.ok()?;
            let info = podman.volume(v).await.ok()??;
            (format!("volume {v}"), info.mountpoint)
        }
    };
    let st = rustix::fs::statvfs(&path).ok()?;
    Some(StorageFacts {
        source,
        path,
        free_bytes: st.f_bavail.saturating_mul(st.f_frsize),
        total_bytes: st.f_blocks.saturating_mul(st.f_frsize),
    })
}

/// The per-registry gauges of a set of views.
pub fn figures(views: &[View]) -> Vec<super::metrics::RegistryFigures> {
    views
        .iter()
        .map(|v| super::metrics::RegistryFigures {
            name: v.name.clone(),
            ready: v.ready,
            certificate_expiry: v.certificate.as_ref().map(|c| c.not_after.unix_timestamp()),
            storage_free: v.storage.as_ref().map(|s| s.free_bytes),
        })
        .collect()
}
