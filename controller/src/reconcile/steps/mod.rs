//! The steps of a reconcile, in order. Each step observes, compares and
//! acts only on a difference, so a converged registry costs reads and
//! nothing else; each reports what status needs as an [`Outcome`]
//! (turned into conditions by `super::conditions`, nowhere else).
//!
//! | step | module | may refuse (nothing written) |
//! |---|---|---|
//! | admission: other registries' claims, foreign objects | `super::admission` | yes (`Conflict`) |
//! | ownership record, before anything it lists is made | [`ownership`] | |
//! | the port, held by another program | [`port`] | yes (`PortConflict`) |
//! | directories under the root | [`ownership`] | |
//! | quay's secrets, then render again with them | `super::quay` | |
//! | a user's certificate: checked and copied | [`tls`] | yes (`InvalidCertificate`) |
//! | images: present, loaded from the archive, or pulled | [`images`] | |
//! | the pod's network | [`network`] | |
//! | never started: unit files, and the pod's start queued ([`units::start_pod_early`]) | [`units`] | |
//! | a generated certificate: made and renewed | [`tls`] | |
//! | init credentials and htpasswd | [`credentials`] | |
//! | config files and copies | [`config`] | |
//! | volumes and data directories | [`storage`] | |
//! | used and free bytes of the storage (`StorageAvailable`) | [`storage_usage`] | |
//! | the host's trust entry for the generated CA | [`trust`] | |
//! | unit files, reload, enable, start or restart ([`unit_plan`] decides) | [`units`] | |
//! | observe units, containers and HTTPS, settling after a start | [`observe`] | |
//! | the garbage collection timer (`spec.garbageCollection.schedule`) | [`gc_timer`] | |
//! | quay's initial user, once it is healthy | `super::quay` | |

pub mod config;
pub mod credentials;
pub mod gc_timer;
pub mod images;
pub mod network;
pub mod observe;
pub mod ownership;
pub mod port;
pub mod probe;
pub mod storage;
pub mod storage_usage;
pub mod tls;
pub mod trust;
pub mod unit_plan;
pub mod units;

use std::path::{Path, PathBuf};

use super::conditions::Outcome;
use super::{admission, quay, Context, Error};
use crate::api::defaults::{Resolved, Tls};
use crate::api::{Component, Engine};
use crate::host::podman::Podman;
use crate::host::systemd::{Systemd, UnitState};
use crate::naming;
use crate::render::{self, Desired};
use crate::store;

/// What status reports besides conditions.
#[derive(Default)]
pub struct Converged {
    pub ca_file: Option<PathBuf>,
    pub components: Vec<Component>,
    /// The storage as observed (or why it could not be), for
    /// status.storage; `None` when the step was not reached.
    pub storage: Option<Result<storage_usage::Usage, String>>,
}

/// The steps, in order, each outcome pushed to `out` as it happens (so a
/// failed step leaves those before it reported). Returns early, after
/// observing, when a step refuses a change (another registry's claim, a
/// port someone else holds, an invalid user certificate): then nothing has
/// been written and what runs keeps running.
pub async fn converge(
    cx: &Context,
    r: &Resolved,
    spec_file: &Path,
    out: &mut Vec<Outcome>,
) -> Result<Converged, Error> {
    let mut desired = render::render(r, &cx.render).map_err(Error::Other)?;
    let (podman, systemd) = cx.clients().await?;
    let existing = store::record::load(&cx.state_dir, &r.name)?;
    if let Some(msg) = admission::check(cx, &podman, r, &desired, existing.as_ref()).await? {
        tracing::warn!(registry = %r.name, "{msg}");
        out.push(Outcome::Refused(msg));
        // Nothing is observed: what runs under these names is either not
        // this registry's, or this registry as its previous spec made it
        // (whose port and files this spec no longer names); the status keeps
        // what was observed before.
        return Ok(Converged::default());
    }
    let mut rec = ownership::record(cx, r, spec_file, &desired, existing)?;
    let states = units::states(&systemd, &desired).await?;

    if !r.paused && port::conflict(cx, &desired, r, &states[0])? {
        out.push(Outcome::PortConflict {
            port: r.port,
            unit: desired.pod_unit.name.clone(),
        });
        let ca_file = matches!(r.tls, Tls::Generated { .. })
            .then(|| naming::root::tls_dir(&r.root).join("ca.crt"));
        return refused(&podman, &systemd, &desired, r, ca_file, states, out).await;
    }
    ownership::make_dirs(cx, &mut rec, &desired)?;
    // Secrets an engine's files hold (quay), generated once the root is
    // recorded and laid out: render again with them. Likewise read-only
    // while `mrctl gc` holds the registry in maintenance, so a reconcile
    // meanwhile does not make it writable under the collection.
    let read_only = r.engine == Engine::Distribution
        && store::maintenance::active(&cx.state_dir, &r.name).is_some_and(|m| m.read_only);
    let quay_inputs = quay::inputs(r)?;
    if quay_inputs.is_some() || read_only {
        let inputs = render::Inputs {
            read_only,
            ..quay_inputs.unwrap_or_default()
        };
        desired = render::render_with(r, &cx.render, &inputs).map_err(Error::Other)?;
    }

    // A user's certificate is checked before anything starts: an invalid
    // one refuses the change. A generated one cannot be refused and only
    // the registry's container reads it (started by the units step below,
    // never by the pod's early start), so it is written while the pod
    // starts.
    let mut served = None;
    if !matches!(r.tls, Tls::Generated { .. }) {
        match ensure_tls(r, out)? {
            Some(s) => served = Some(s),
            None => return refused(&podman, &systemd, &desired, r, None, states, out).await,
        }
    }
    let images = images::ensure(&podman, &desired.images, r.images.archive.as_deref()).await;
    let images_ok = images.is_ok();
    out.push(Outcome::Images(images));
    network::ensure(cx, &podman, &mut rec, &desired, r).await?;
    // Never started yet: the pod is created while the steps below run.
    let mut states = states;
    if images_ok && !r.paused && rec.started_with.is_empty() {
        if let Some(now) = units::start_pod_early(cx, &systemd, &desired, r, &states).await? {
            states = now;
        }
    }
    let served = match served {
        Some(s) => s,
        None => match ensure_tls(r, out)? {
            Some(s) => s,
            None => return refused(&podman, &systemd, &desired, r, None, states, out).await,
        },
    };
    let ca_file = served.ca_file;
    let (creds, htpasswd_changed) = credentials::ensure(r)?;
    let inputs_changed = served.changed | htpasswd_changed | config::write(&desired)?;
    storage::ensure(cx, &podman, &mut rec, &desired, r).await?;
    let usage = storage_usage::observe(&podman, r).await;
    trust::ensure(cx, &mut rec, r, ca_file.as_deref())?;

    let (started, states) = if images_ok {
        units::converge(
            cx,
            &systemd,
            &mut rec,
            &desired,
            r,
            inputs_changed,
            states,
            out,
        )
        .await?
    } else {
        (false, Some(states))
    };
    let seen = observe::Seen {
        podman: &podman,
        systemd: &systemd,
        desired: &desired,
        r,
        ca_file: ca_file.as_deref(),
    };
    let (components, healthy) = seen.settled(started, states, out).await?;
    gc_timer::ensure(cx, &systemd, &mut rec, r).await?;

    // Quay: the initial user, once, after Quay answers healthy.
    if r.engine == Engine::Quay && healthy {
        let client = probe::https_client(r, ca_file.as_deref(), probe::PROBE_TIMEOUT);
        if let Some(msg) = quay::ensure_init_user(r, client, &creds).await? {
            out.push(Outcome::InitUserFailed(msg));
        }
    }
    Ok(Converged {
        ca_file,
        components,
        storage: Some(usage),
    })
}

/// The certificate step, its outcome reported; `None` when it refuses.
fn ensure_tls(r: &Resolved, out: &mut Vec<Outcome>) -> Result<Option<tls::Served>, Error> {
    let (outcome, served) = tls::ensure(r)?;
    out.push(Outcome::Tls(outcome));
    Ok(served)
}

/// A change refused after admission (a port someone else holds, an
/// invalid user certificate): observe what runs and report, touching
/// nothing.
async fn refused(
    podman: &Podman,
    systemd: &Systemd,
    desired: &Desired,
    r: &Resolved,
    ca_file: Option<PathBuf>,
    states: Vec<UnitState>,
    out: &mut Vec<Outcome>,
) -> Result<Converged, Error> {
    let seen = observe::Seen {
        podman,
        systemd,
        desired,
        r,
        ca_file: None,
    };
    let (components, observation) = seen.observe(Some(states)).await?;
    out.push(Outcome::Observed(observation));
    Ok(Converged {
        ca_file,
        components,
        storage: None,
    })
}
