//! The reconcile function. Each step observes, compares and acts only on a
//! difference, so a converged registry costs reads and nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::queue::Next;
use super::status::{self as st, Conditions, Written};
use super::{
    admission, claims, quay, record, teardown, Context, Error, StatusMode, PROGRESS_REQUEUE,
};
use crate::api::defaults::{self, Resolved, Tls};
use crate::api::{load, Component, Engine, Phase, Status};
use crate::host::podman::Podman;
use crate::host::systemd::{Systemd, UnitState};
use crate::host::{credentials, files, tls};
use crate::naming;
use crate::render::{self, Desired};
use crate::spec_file::read::read_spec;

/// Looks at registry `name` again: converge it to its spec file, report a
/// bad spec, or tear it down when its file is gone.
pub async fn reconcile(cx: &Context, name: &str) -> Next {
    let start = std::time::Instant::now();
    let (podman0, dbus0) = cx.call_counts().await;
    let writes0 = files::writes();
    let files = cx.files_for(name);
    let next = match files.as_slice() {
        [] => teardown::run(cx, name).await,
        [one] => reconcile_file(cx, name, one).await,
        many => duplicate(cx, name, many),
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

/// The same name in two files: both are told, neither wins, the host is left
/// alone.
fn duplicate(cx: &Context, name: &str, files: &[PathBuf]) -> Next {
    let mut next = Next::Done;
    for f in files {
        let strict = cx.scope == crate::host::systemd::Scope::System;
        let Ok(bytes) = read_spec(f, &cx.watch_dir, strict) else {
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
            .or_else(|| record::load_status(&cx.state_dir, name));
        let status = invalid_status(prev.as_ref(), &[problem], "DuplicateName");
        if write_status(cx, name, f, &bytes, prev.as_ref(), &status) == Written::Conflict {
            next = Next::After(Duration::ZERO);
        }
    }
    next
}

fn invalid_status(prev: Option<&Status>, problems: &[String], reason: &str) -> Status {
    let prev_conditions = prev.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
    let mut c = Conditions::new(prev_conditions);
    c.set(
        st::READY,
        Some(false),
        reason,
        "the spec is not valid; the running registry, if any, is left as it was",
    );
    c.set(st::SPEC_VALID, Some(false), reason, problems.join("; "));
    // What was observed before stays: the registry has not been touched.
    let mut s = prev.cloned().unwrap_or_default();
    s.phase = Phase::Failed;
    s.conditions = merge_conditions(prev_conditions, c.list);
    s
}

/// Replaces conditions of the same type, keeps the others, in a fixed order.
fn merge_conditions(
    prev: &[crate::api::Condition],
    new: Vec<crate::api::Condition>,
) -> Vec<crate::api::Condition> {
    let mut out: Vec<_> = prev
        .iter()
        .filter(|p| !new.iter().any(|n| n.type_ == p.type_))
        .cloned()
        .collect();
    out.extend(new);
    sort_conditions(&mut out);
    out
}

const ORDER: [&str; 6] = [
    st::READY,
    st::SPEC_VALID,
    st::CERTIFICATE_VALID,
    st::IMAGES_PRESENT,
    st::UNITS_ACTIVE,
    st::HEALTHY,
];

fn sort_conditions(list: &mut [crate::api::Condition]) {
    list.sort_by_key(|c| {
        ORDER
            .iter()
            .position(|t| *t == c.type_)
            .unwrap_or(ORDER.len())
    });
}

/// Writes status to the state dir always, and into the spec file in inline
/// mode.
fn write_status(
    cx: &Context,
    name: &str,
    file: &Path,
    read: &[u8],
    current: Option<&Status>,
    status: &Status,
) -> Written {
    if let Err(e) = record::save_status(&cx.state_dir, name, status) {
        tracing::warn!(registry = name, error = %e, "cannot keep status in the state directory");
    }
    if cx.status_mode == StatusMode::StateOnly {
        return Written::Unchanged;
    }
    let w = st::write_inline(file, read, current, status);
    match &w {
        Written::StateOnly(why) => {
            tracing::debug!(registry = name, file = %file.display(), why, "status kept in the state directory only")
        }
        Written::Written => {
            tracing::info!(
                registry = name,
                phase = status.phase.as_str(),
                "status written"
            )
        }
        Written::Conflict => {
            tracing::debug!(registry = name, file = %file.display(), "spec file changed since it was read; status not written over it")
        }
        Written::Unchanged => {}
    }
    w
}

async fn reconcile_file(cx: &Context, name: &str, path: &Path) -> Next {
    let strict = cx.scope == crate::host::systemd::Scope::System;
    let bytes = match read_spec(path, &cx.watch_dir, strict) {
        Ok(b) => b,
        // Gone since the last scan: rescan and look again.
        Err(_) if path.symlink_metadata().is_err() => {
            cx.rescan();
            return Next::After(Duration::from_millis(100));
        }
        Err(problem) => {
            tracing::warn!(registry = name, "{problem}; registry left as it is");
            let prev = record::load_status(&cx.state_dir, name);
            let status = invalid_status(prev.as_ref(), &[problem], "UnusableFile");
            if let Err(e) = record::save_status(&cx.state_dir, name, &status) {
                tracing::warn!(registry = name, error = %e, "cannot keep status in the state directory");
            }
            return Next::Done;
        }
    };
    let loaded = match load::parse(path, &bytes) {
        Ok(l) => l,
        Err(invalid) => {
            let prev = serde_yaml::from_slice::<serde_yaml::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("status").cloned())
                .and_then(|s| serde_yaml::from_value::<Status>(s).ok());
            let kept = prev
                .clone()
                .or_else(|| record::load_status(&cx.state_dir, name));
            let problems: Vec<String> = invalid.problems.iter().map(|p| p.to_string()).collect();
            tracing::warn!(registry = name, file = %path.display(), problems = %problems.join("; "), "invalid spec; registry left as it is");
            let status = invalid_status(kept.as_ref(), &problems, "InvalidSpec");
            return match write_status(cx, name, path, &bytes, prev.as_ref(), &status) {
                Written::Conflict => Next::After(Duration::ZERO),
                _ => Next::Done,
            };
        }
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
        .or_else(|| record::load_status(&cx.state_dir, name));
    let prev_conditions = prev
        .as_ref()
        .map(|p| p.conditions.clone())
        .unwrap_or_default();
    // Degraded stays Degraded while the trouble lasts: it served before.
    let was_ready = prev
        .as_ref()
        .is_some_and(|p| matches!(p.phase, Phase::Ready | Phase::Degraded));
    let mut c = Conditions::new(&prev_conditions);
    c.set(
        st::SPEC_VALID,
        Some(true),
        "Valid",
        "spec parsed and validated",
    );

    let mut status = Status {
        observed_spec_hash: Some(hash),
        endpoint: Some(resolved.endpoint()),
        credentials_file: Some(naming::root::credentials_file(&resolved.root)),
        ..Status::default()
    };
    let mut failed = false;
    match converge(cx, &resolved, path, &mut c).await {
        Ok(out) => {
            status.ca_file = out.ca_file;
            status.components = out.components;
            // Refused: the files this spec would use may be another
            // registry's; status keeps pointing where it did before.
            if c.get(st::UNITS_ACTIVE)
                .is_some_and(|x| x.reason == admission::REASON)
            {
                status.endpoint = prev.as_ref().and_then(|p| p.endpoint.clone());
                status.credentials_file = prev.as_ref().and_then(|p| p.credentials_file.clone());
                status.ca_file = prev.as_ref().and_then(|p| p.ca_file.clone());
                status.components = prev
                    .as_ref()
                    .map(|p| p.components.clone())
                    .unwrap_or_default();
            }
        }
        Err(e) => {
            failed = true;
            tracing::warn!(registry = name, error = %e, "reconcile failed; backing off");
            if matches!(e, Error::Podman(_) | Error::Systemd(_)) {
                cx.reset_clients().await;
            }
            c.set(st::HEALTHY, None, "ReconcileError", e.to_string());
            status.ca_file = prev.as_ref().and_then(|p| p.ca_file.clone());
            status.components = prev
                .as_ref()
                .map(|p| p.components.clone())
                .unwrap_or_default();
        }
    }
    for t in ORDER.iter().skip(2) {
        if c.get(t).is_none() {
            c.set(
                t,
                None,
                "NotChecked",
                "not checked: an earlier step did not complete",
            );
        }
    }
    let phase = st::phase_of(&c, resolved.paused, was_ready);
    let (reason, message) = ready_reason(&c, phase);
    c.set(st::READY, Some(phase == Phase::Ready), &reason, message);
    status.phase = phase;
    let mut list = c.list;
    sort_conditions(&mut list);
    status.conditions = list;
    crate::observability::drift::settle(name, prev.as_ref(), &status);

    let mut written = write_status(cx, name, path, &bytes, in_file.as_ref(), &status);
    // Edited meanwhile. An edit that leaves the spec as it was (comments,
    // formatting, labels) leaves this status true: put it into the new text
    // instead of converging again, which a user saving often would starve.
    for _ in 0..REBASE_TRIES {
        if written != Written::Conflict {
            break;
        }
        let Some((bytes, in_file)) = reread_same_spec(cx, name, path, &resolved) else {
            break;
        };
        written = write_status(cx, name, path, &bytes, in_file.as_ref(), &status);
    }
    if written == Written::Conflict {
        return Next::After(Duration::ZERO);
    }
    let refused = c_reason_is(&status, admission::REASON);
    match phase {
        _ if failed => Next::Backoff,
        // Looked at again by itself: the other registry or object may go.
        _ if refused => Next::After(CONFLICT_RECHECK),
        Phase::Ready | Phase::Paused | Phase::Failed => Next::Done,
        _ => Next::After(PROGRESS_REQUEUE),
    }
}

const REBASE_TRIES: usize = 3;

/// How often a registry refused for a conflict looks again.
const CONFLICT_RECHECK: Duration = Duration::from_secs(5);

fn c_reason_is(status: &Status, reason: &str) -> bool {
    status.conditions.iter().any(|c| c.reason == reason)
}

/// The spec file read again, with its status, when it still asks for the
/// same registry as `resolved`; `None` when it changed in substance (or
/// cannot be read), so a new reconcile must look at it.
fn reread_same_spec(
    cx: &Context,
    name: &str,
    path: &Path,
    resolved: &Resolved,
) -> Option<(Vec<u8>, Option<Status>)> {
    let strict = cx.scope == crate::host::systemd::Scope::System;
    let bytes = read_spec(path, &cx.watch_dir, strict).ok()?;
    let loaded = load::parse(path, &bytes).ok()?;
    let again = defaults::resolve(&loaded.resource, &loaded.name, &cx.host);
    let same = matches!((again.hash(), resolved.hash()), (Ok(a), Ok(b)) if a == b);
    (loaded.name == name && same).then_some((bytes, loaded.resource.status))
}

fn ready_reason(c: &Conditions<'_>, phase: Phase) -> (String, String) {
    match phase {
        Phase::Ready => ("Healthy".into(), "registry is serving".into()),
        Phase::Paused => (
            "Paused".into(),
            "spec.paused is true: units stopped, data kept".into(),
        ),
        _ => {
            // A refusal explains more than the steps it left unchecked.
            let not_true = || {
                ORDER
                    .iter()
                    .skip(1)
                    .filter_map(|t| c.get(t))
                    .filter(|x| x.status != "True")
            };
            let bad = not_true()
                .find(|x| x.reason == admission::REASON)
                .or_else(|| not_true().next());
            match bad {
                Some(b) => (b.reason.clone(), format!("{}: {}", b.type_, b.message)),
                None => ("Progressing".into(), "converging".into()),
            }
        }
    }
}

pub struct Converged {
    pub ca_file: Option<PathBuf>,
    pub components: Vec<Component>,
}

/// The steps, in order. Returns early, after observing, when a step refuses
/// a change (a port someone else holds, an invalid user certificate): then
/// nothing has been written and what runs keeps running.
async fn converge(
    cx: &Context,
    r: &Resolved,
    spec_file: &Path,
    c: &mut Conditions<'_>,
) -> Result<Converged, Error> {
    let mut desired = render::render(r, &cx.render).map_err(Error::Other)?;
    let (podman, systemd) = cx.clients().await?;
    let existing = record::load(&cx.state_dir, &r.name)?;
    let others = admission::others(cx, &r.name)?;
    let refusal = match admission::claim_conflict(r, existing.as_ref(), &others) {
        Some(msg) => Some(msg),
        None => {
            let foreign = admission::foreign_objects(
                (&cx.unit_dir, &cx.certs_d),
                &podman,
                r,
                &desired,
                existing.as_ref(),
            )
            .await?;
            (!foreign.is_empty()).then(|| admission::foreign_message(&foreign))
        }
    };
    if let Some(msg) = refusal {
        tracing::warn!(registry = %r.name, "{msg}");
        c.set(st::UNITS_ACTIVE, Some(false), admission::REASON, msg);
        // Nothing is observed: what runs under these names is either not
        // this registry's, or this registry as its previous spec made it
        // (whose port and files this spec no longer names); the status keeps
        // what was observed before.
        return Ok(Converged {
            ca_file: None,
            components: Vec::new(),
        });
    }
    let mut rec = record_ownership(cx, r, spec_file, &desired, existing)?;
    let states = unit_states(&systemd, &desired).await?;

    if !r.paused && port_conflict(cx, &desired, r, &states[0])? {
        c.set(
            st::UNITS_ACTIVE,
            Some(false),
            "PortConflict",
            format!(
                "port {} is already in use by another program; {} not started",
                r.port, desired.pod_unit.name
            ),
        );
        let ca_file = matches!(r.tls, Tls::Generated { .. })
            .then(|| naming::root::tls_dir(&r.root).join("ca.crt"));
        return refused(&podman, &systemd, &desired, r, ca_file, states, c).await;
    }

    // Directories are recorded as created before they are made: only
    // those are ever removed (deletionPolicy Delete), a root that existed
    // (or is a symlink) never is.
    let missing: Vec<PathBuf> = desired
        .dirs
        .iter()
        .map(|(d, _)| d.clone())
        .filter(|d| d.symlink_metadata().is_err() && !rec.created_dirs.contains(d))
        .collect();
    if !missing.is_empty() {
        rec.created_dirs.extend(missing);
        record::save(&cx.state_dir, &rec)?;
    }
    for (dir, mode) in &desired.dirs {
        files::ensure_dir(dir, *mode)?;
    }
    // Secrets an engine's files hold (quay), generated once the root is
    // recorded and laid out: render again with them.
    if let Some(inputs) = quay::inputs(r)? {
        desired = render::render_with(r, &cx.render, &inputs).map_err(Error::Other)?;
    }

    let Some(tls) = ensure_tls(r, c)? else {
        return refused(&podman, &systemd, &desired, r, None, states, c).await;
    };
    let mut inputs_changed = tls.changed;
    let ca_file = tls.ca_file;
    let (creds, htpasswd_changed) = ensure_credentials(r)?;
    inputs_changed |= htpasswd_changed;
    inputs_changed |= write_files(&desired)?;
    let images_ok = match ensure_images(&podman, &desired.images, r.images.archive.as_deref()).await
    {
        Ok(how) => {
            c.set(st::IMAGES_PRESENT, Some(true), "Present", how);
            true
        }
        Err(msg) => {
            c.set(st::IMAGES_PRESENT, Some(false), "ImageMissing", msg);
            false
        }
    };
    ensure_storage(cx, &podman, &mut rec, &desired, r).await?;
    ensure_trust(cx, &mut rec, r, ca_file.as_deref())?;

    let (started, states) = if images_ok {
        start_units(
            cx,
            &systemd,
            &mut rec,
            &desired,
            r,
            inputs_changed,
            states,
            c,
        )
        .await?
    } else {
        (false, Some(states))
    };
    let components = observe_settled(
        &podman,
        &systemd,
        &desired,
        r,
        ca_file.as_deref(),
        started,
        states,
        c,
    )
    .await?;

    // Quay: the initial user, once, after Quay answers healthy.
    if r.engine == Engine::Quay && c.is_true(st::HEALTHY) {
        let client = https_client(r, ca_file.as_deref(), PROBE_TIMEOUT);
        quay::ensure_init_user(r, client, &creds, c).await?;
    }
    Ok(Converged {
        ca_file,
        components,
    })
}

/// A refused change: observe what runs and report, touching nothing.
async fn refused(
    podman: &Podman,
    systemd: &Systemd,
    desired: &Desired,
    r: &Resolved,
    ca_file: Option<PathBuf>,
    states: Vec<UnitState>,
    c: &mut Conditions<'_>,
) -> Result<Converged, Error> {
    let components = observe(podman, systemd, desired, r, None, Some(states), c).await?;
    Ok(Converged {
        ca_file,
        components,
    })
}

/// Ownership first: whatever this reconcile may create is recorded before it
/// is made, so a crash in between still leaves a complete record.
fn record_ownership(
    cx: &Context,
    r: &Resolved,
    spec_file: &Path,
    desired: &Desired,
    existing: Option<record::Record>,
) -> Result<record::Record, Error> {
    let fresh = existing.is_none();
    let mut rec = existing.unwrap_or_default();
    // Back after a Retain teardown: what it created is still its own.
    let kept = fresh
        .then(|| record::retained(&cx.state_dir, &r.name, &r.root))
        .flatten();
    if let Some(k) = &kept {
        rec.created_dirs.extend(k.created_dirs.iter().cloned());
        rec.data_paths.extend(
            k.data_paths
                .iter()
                .filter(|p| desired.data_paths.contains(p))
                .cloned(),
        );
    }
    rec.claims = Some(claims::of(r));
    rec.files
        .extend(desired.files.iter().map(|f| f.path.clone()));
    rec.files
        .extend(desired.copies.iter().map(|f| f.to.clone()));
    rec.name = r.name.clone();
    rec.spec_file = spec_file.to_path_buf();
    rec.root = r.root.clone();
    rec.pod = desired.pod.clone();
    rec.deletion_policy = r.deletion_policy;
    rec.units
        .extend(desired.all_units().map(|u| u.name.clone()));
    rec.containers
        .extend(desired.components.iter().map(|x| x.container.clone()));
    if matches!(r.tls, Tls::Generated { .. }) {
        rec.trust_dirs.insert(cx.certs_d.join(r.host_port()));
    }
    record::save(&cx.state_dir, &rec)?;
    if kept.is_some() {
        record::remove_retained(&cx.state_dir, &r.name)?;
    }
    Ok(rec)
}

struct TlsStep {
    /// The CA clients trust, when the controller made it.
    ca_file: Option<PathBuf>,
    /// The served pair changed: whatever serves it restarts.
    changed: bool,
}

/// Generated: a CA and server certificate kept fresh. Provided: the pair
/// checked, then copied under the root. `None` when the user's pair is
/// refused (CertificateValid False), with nothing written.
fn ensure_tls(r: &Resolved, c: &mut Conditions<'_>) -> Result<Option<TlsStep>, Error> {
    let tls_dir = naming::root::tls_dir(&r.root);
    let now = time::OffsetDateTime::now_utc();
    match &r.tls {
        Tls::Generated { extra_sans } => {
            let (dns, ips) = tls::default_sans(&r.hostname, extra_sans);
            let e = tls::ensure_generated(&tls_dir, &dns, &ips, now)?;
            if let Some(why) = &e.reason {
                tracing::info!(registry = %r.name, "{why}");
            }
            c.set(
                st::CERTIFICATE_VALID,
                Some(true),
                "Generated",
                format!(
                    "generated certificate for {} valid until {}; renewed 30 days before",
                    r.hostname,
                    e.not_after.date()
                ),
            );
            Ok(Some(TlsStep {
                changed: e.cert_changed || e.ca_changed,
                ca_file: Some(e.ca_file),
            }))
        }
        Tls::Provided {
            cert_file,
            key_file,
            skip_hostname_check,
        } => {
            match tls::check_user_pair(cert_file, key_file, &r.hostname, *skip_hostname_check, now)
            {
                Ok(pair) => {
                    let info = pair.info;
                    // The bytes checked, not the files read again.
                    let mut changed =
                        files::write_if_changed(&tls_dir.join("tls.crt"), &pair.cert, 0o644)?;
                    changed |= files::write_if_changed(&tls_dir.join("tls.key"), &pair.key, 0o600)?;
                    c.set(
                        st::CERTIFICATE_VALID,
                        Some(true),
                        "Provided",
                        format!(
                            "{} valid until {}",
                            cert_file.display(),
                            info.not_after.date()
                        ),
                    );
                    Ok(Some(TlsStep {
                        ca_file: None,
                        changed,
                    }))
                }
                Err(problems) => {
                    c.set(
                        st::CERTIFICATE_VALID,
                        Some(false),
                        "InvalidCertificate",
                        problems.join(" "),
                    );
                    Ok(None)
                }
            }
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Other(format!("read {}: {e}", path.display())))
}

/// The init user's password (kept or generated) and, for distribution, the
/// registry's htpasswd. Returns the credentials and whether htpasswd changed.
fn ensure_credentials(r: &Resolved) -> Result<(credentials::Credentials, bool), Error> {
    let (creds, _) = credentials::ensure_init_credentials(
        &naming::root::secrets_dir(&r.root),
        &r.init_username,
        r.init_password_file.as_deref(),
    )?;
    let changed = r.engine == Engine::Distribution
        && credentials::ensure_htpasswd(&naming::root::htpasswd_file(&r.root), &creds)?;
    Ok((creds, changed))
}

/// Config files, and copies of files under the root (quay: the TLS pair into
/// Quay's config directory). Returns whether any changed.
fn write_files(desired: &Desired) -> Result<bool, Error> {
    let mut changed = false;
    for f in &desired.files {
        changed |= files::write_if_changed(&f.path, f.content.as_bytes(), f.mode)?;
    }
    for copy in &desired.copies {
        changed |= files::write_if_changed(&copy.to, &read(&copy.from)?, copy.mode)?;
    }
    Ok(changed)
}

/// Named volumes (labelled as owned) and host data directories; each is
/// recorded before it is created.
async fn ensure_storage(
    cx: &Context,
    podman: &Podman,
    rec: &mut record::Record,
    desired: &Desired,
    r: &Resolved,
) -> Result<(), Error> {
    let labels = naming::owner_labels(&r.name);
    for v in &desired.volumes {
        if podman.volume(v).await?.is_none() {
            rec.volumes.insert(v.clone());
            record::save(&cx.state_dir, rec)?;
            podman.create_volume(v, &labels).await?;
            tracing::info!(registry = %r.name, volume = %v, "created volume");
        }
    }
    for p in &desired.data_paths {
        // A dangling symlink is not ours to create, or to remove later.
        if p.symlink_metadata().is_err() {
            rec.data_paths.insert(p.clone());
            record::save(&cx.state_dir, rec)?;
        }
        files::ensure_dir(p, 0o700)?;
    }
    Ok(())
}

/// The host trusts the generated CA for `host:port`, so podman login and
/// skopeo verify TLS; trust entries for an old host or port go.
fn ensure_trust(
    cx: &Context,
    rec: &mut record::Record,
    r: &Resolved,
    ca_file: Option<&Path>,
) -> Result<(), Error> {
    let trust_dir = cx.certs_d.join(r.host_port());
    if let Some(ca) = ca_file {
        files::ensure_dir(&trust_dir, 0o755)?;
        files::write_if_changed(&trust_dir.join("ca.crt"), &read(ca)?, 0o644)?;
    }
    let stale: Vec<PathBuf> = rec
        .trust_dirs
        .iter()
        .filter(|d| !(ca_file.is_some() && **d == trust_dir))
        .cloned()
        .collect();
    for d in stale {
        remove_trust_dir(&d)?;
        rec.trust_dirs.remove(&d);
        record::save(&cx.state_dir, rec)?;
    }
    Ok(())
}

/// Units written, enabled and (re)started as needed; the inputs each unit
/// was started with are remembered once they all run with them, so a restart
/// a crash cut short is still done. Returns whether anything was started.
#[allow(clippy::too_many_arguments)]
async fn start_units(
    cx: &Context,
    systemd: &Systemd,
    rec: &mut record::Record,
    desired: &Desired,
    r: &Resolved,
    inputs_changed: bool,
    states: Vec<UnitState>,
    c: &mut Conditions<'_>,
) -> Result<(bool, Option<Vec<UnitState>>), Error> {
    let digests = input_digests(desired, r)?;
    let stale: BTreeSet<String> = digests
        .iter()
        .filter(|(u, d)| rec.started_with.get(*u).is_some_and(|old| old != *d))
        .map(|(u, _)| u.clone())
        .collect();
    // Before acting: what drifted from what was set up (a metric only).
    crate::observability::drift::found(
        &r.name,
        crate::observability::drift::inspect(
            &cx.unit_dir,
            desired,
            &states,
            &rec.started_with,
            &digests,
            inputs_changed,
        ),
    );
    let (started, states) =
        units(cx, systemd, desired, r, inputs_changed, &stale, states, c).await?;
    if r.paused {
        rec.started_with.clear();
    } else if c
        .get(st::UNITS_ACTIVE)
        .is_none_or(|x| x.reason != "PortConflict" && x.reason != "Stopping")
    {
        rec.started_with = digests;
    }
    record::save(&cx.state_dir, rec)?;
    Ok((started, states))
}

/// Observes; right after a (re)start, again shortly until the registry
/// answers, rather than report Progressing and come back seconds later.
#[allow(clippy::too_many_arguments)]
async fn observe_settled(
    podman: &Podman,
    systemd: &Systemd,
    desired: &Desired,
    r: &Resolved,
    ca_file: Option<&Path>,
    started: bool,
    known: Option<Vec<UnitState>>,
    c: &mut Conditions<'_>,
) -> Result<Vec<Component>, Error> {
    let mut components = observe(podman, systemd, desired, r, ca_file, known, c).await?;
    let deadline = tokio::time::Instant::now() + SETTLE;
    while started && !c.is_true(st::HEALTHY) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        components = observe(podman, systemd, desired, r, ca_file, None, c).await?;
    }
    Ok(components)
}

/// Per unit, a digest of what it runs with: the pod unit its text, each
/// component its text and the files under root its container mounts (config
/// files, the server certificate and key, htpasswd).
fn input_digests(desired: &Desired, r: &Resolved) -> Result<BTreeMap<String, String>, Error> {
    let tls_dir = naming::root::tls_dir(&r.root);
    let mounted = desired.files.iter().map(|f| f.path.clone()).chain([
        tls_dir.join("tls.crt"),
        tls_dir.join("tls.key"),
        naming::root::htpasswd_file(&r.root),
    ]);
    let mut files = Sha256::new();
    for p in mounted {
        let bytes = files::read_optional(&p)?.unwrap_or_default();
        for part in [p.as_os_str().as_bytes(), &bytes] {
            files.update((part.len() as u64).to_le_bytes());
            files.update(part);
        }
    }
    let files = files.finalize();
    let mut out = BTreeMap::new();
    out.insert(
        desired.pod_unit.name.clone(),
        hex::encode(Sha256::digest(desired.pod_unit.content.as_bytes())),
    );
    for u in &desired.units {
        let mut h = Sha256::new();
        h.update(u.content.as_bytes());
        h.update(files);
        out.insert(u.name.clone(), hex::encode(h.finalize()));
    }
    Ok(out)
}

/// How long a reconcile that started units waits for them to answer.
const SETTLE: Duration = Duration::from_secs(5);

pub fn remove_trust_dir(d: &Path) -> Result<(), Error> {
    files::remove_if_exists(&d.join("ca.crt"))?;
    let _ = std::fs::remove_dir(d);
    Ok(())
}

/// Makes every image present: already there, loaded from the archive, or
/// pulled. Err carries a message naming the image.
async fn ensure_images(
    podman: &Podman,
    images: &[String],
    archive: Option<&Path>,
) -> Result<String, String> {
    let mut missing = Vec::new();
    for i in images {
        if !podman.image_exists(i).await.map_err(|e| e.to_string())? {
            missing.push(i.clone());
        }
    }
    if missing.is_empty() {
        return Ok(format!("present: {}", images.join(", ")));
    }
    if let Some(a) = archive {
        if !a.is_file() {
            return Err(format!(
                "image {} is missing and spec.images.archive {} does not exist",
                missing.join(", "),
                a.display()
            ));
        }
        tracing::info!(archive = %a.display(), images = %missing.join(", "), "loading image archive");
        podman.load_archive(a).await.map_err(|e| {
            format!(
                "image {} is missing; loading {} failed: {e}",
                missing.join(", "),
                a.display()
            )
        })?;
        for m in &missing {
            if !podman.image_exists(m).await.map_err(|e| e.to_string())? {
                return Err(format!(
                    "image {m} is missing and the archive {} does not contain it",
                    a.display()
                ));
            }
        }
        return Ok(format!(
            "loaded from {}: {}",
            a.display(),
            missing.join(", ")
        ));
    }
    for m in &missing {
        tracing::info!(image = %m, "pulling image");
        podman.pull(m).await.map_err(|e| {
            format!("image {m} is missing and could not be pulled ({e}); on an air-gapped host set spec.images.archive")
        })?;
    }
    Ok(format!("pulled: {}", missing.join(", ")))
}

/// Whether something other than our pod holds `port`.
fn port_taken(port: u16) -> bool {
    std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).is_err()
}

/// The pod unit's state, then each component unit's, in start order.
async fn unit_states(systemd: &Systemd, desired: &Desired) -> Result<Vec<UnitState>, Error> {
    let mut states = Vec::new();
    for u in desired.all_units() {
        states.push(systemd.unit(&u.name).await?);
    }
    Ok(states)
}

/// Whether the port this registry should publish is held by another
/// program. Our own running pod holding it (its unit file publishes that
/// port) is not a conflict.
fn port_conflict(
    cx: &Context,
    desired: &Desired,
    r: &Resolved,
    pod_state: &UnitState,
) -> Result<bool, Error> {
    let publish = format!("--publish {}:", r.port);
    let ours = pod_state.active_state == "active"
        && files::read_optional(&cx.unit_dir.join(&desired.pod_unit.name))?
            .is_some_and(|b| String::from_utf8_lossy(&b).contains(&publish));
    Ok(!ours && port_taken(r.port))
}

/// Writes unit files that differ, reloads once, enables, and starts or
/// restarts only what changed, is `stale` (runs with other inputs than it
/// was last started with) or is not running. Returns whether it started or
/// restarted anything.
#[allow(clippy::too_many_arguments)]
async fn units(
    cx: &Context,
    systemd: &Systemd,
    desired: &Desired,
    r: &Resolved,
    inputs_changed: bool,
    stale: &BTreeSet<String>,
    mut states: Vec<UnitState>,
    c: &mut Conditions<'_>,
) -> Result<(bool, Option<Vec<UnitState>>), Error> {
    files::ensure_dir(&cx.unit_dir, 0o755)?;
    let pod = &desired.pod_unit.name;
    let names: Vec<String> = desired.all_units().map(|u| u.name.clone()).collect();
    let mut changed = BTreeSet::new();
    for u in desired.all_units() {
        if files::write_if_changed(&cx.unit_dir.join(&u.name), u.content.as_bytes(), 0o644)? {
            changed.insert(u.name.clone());
        }
    }
    if r.paused {
        if !changed.is_empty() {
            systemd.reload().await?;
        }
        // Only what is not yet stopped, reset and disabled: each of these
        // calls makes systemd signal a change, which looks at the registry
        // again; done every time, a paused registry was reconciled about
        // ten times a second.
        for (n, s) in names.iter().zip(&states).rev() {
            if !matches!(s.active_state.as_str(), "inactive" | "failed") {
                systemd.stop(n).await?;
            }
            if s.active_state == "failed" {
                systemd.reset_failed(n).await?;
            }
        }
        if states.iter().any(|s| s.unit_file_state == "enabled") || !changed.is_empty() {
            systemd.disable(&names).await?;
        }
        return Ok((false, None));
    }
    // One reload for new unit text: enabling reloads when it links anything,
    // so reload separately only when it did not. A run that died between
    // writing a unit file and reloading shows here too (NeedDaemonReload)
    // and gets its reload.
    let unenabled = states.iter().any(|s| s.unit_file_state != "enabled");
    let stale_load = states.iter().any(|s| s.need_daemon_reload);
    if !changed.is_empty() || unenabled || stale_load {
        let linked = unenabled && systemd.enable(&names).await?;
        if !linked && (!changed.is_empty() || stale_load) {
            systemd.reload().await?;
        }
        tracing::info!(registry = %r.name, units = ?changed, "unit files written or enabled; manager reloaded");
        states = unit_states(systemd, desired).await?;
    }
    // Someone (an admin, systemd) is stopping a unit: a start now would
    // replace their stop job and fail it. Look again once it has stopped.
    if let Some((n, _)) = names
        .iter()
        .zip(&states)
        .find(|(_, s)| s.active_state == "deactivating")
    {
        c.set(
            st::UNITS_ACTIVE,
            Some(false),
            "Stopping",
            format!("{n} is stopping; it is started again once stopped"),
        );
        return Ok((false, Some(states)));
    }
    let pod_active = states[0].active_state == "active";
    let pod_changed = changed.contains(pod) || stale.contains(pod);
    let mut pod_started = false;
    if pod_changed && pod_active {
        systemd.restart(pod).await?;
        pod_started = true;
    } else if !pod_active {
        systemd.reset_failed(pod).await?;
        systemd.start(pod).await?;
        pod_started = true;
    }
    let mut started = pod_started;
    for (u, s) in desired.units.iter().zip(states.iter().skip(1)) {
        let must_restart = changed.contains(&u.name) || inputs_changed || stale.contains(&u.name);
        match s.active_state.as_str() {
            // Running, or systemd is already bringing it back (Restart=always).
            "active" | "activating" if !pod_started && !must_restart => {}
            "active" | "activating" if !pod_started => {
                systemd.restart(&u.name).await?;
                started = true;
            }
            state => {
                if state == "failed" {
                    systemd.reset_failed(&u.name).await?;
                }
                systemd.start(&u.name).await?;
                started = true;
            }
        }
    }
    Ok((started, (!started).then_some(states)))
}

/// Reads unit, container and HTTPS state into conditions and components.
async fn observe(
    podman: &Podman,
    systemd: &Systemd,
    desired: &Desired,
    r: &Resolved,
    ca_file: Option<&Path>,
    known: Option<Vec<UnitState>>,
    c: &mut Conditions<'_>,
) -> Result<Vec<Component>, Error> {
    let mut components = Vec::new();
    let mut down = Vec::new();
    // States read this reconcile before anything acted are still current.
    let states = match known {
        Some(s) => s,
        None => unit_states(systemd, desired).await?,
    };
    let pod_state = &states[0];
    if pod_state.active_state != "active" {
        down.push(format!(
            "{} is {}",
            desired.pod_unit.name, pod_state.active_state
        ));
    }
    for (comp, unit) in desired.components.iter().zip(states.iter().skip(1)) {
        let container = podman.container(&comp.container).await?;
        let running = container.as_ref().is_some_and(|x| x.running);
        if unit.active_state != "active" {
            down.push(format!("{} is {}", comp.unit, unit.active_state));
        } else if !running {
            down.push(format!("container {} is not running", comp.container));
        }
        components.push(Component {
            name: comp.container.clone(),
            unit: comp.unit.clone(),
            active_state: unit.active_state.clone(),
            container: container.as_ref().map(|x| x.name.clone()),
            image: Some(comp.image.clone()),
            healthy: unit.active_state == "active" && running,
        });
    }
    if r.paused {
        c.set(
            st::UNITS_ACTIVE,
            Some(false),
            "Paused",
            "units stopped because spec.paused is true",
        );
        c.set(st::HEALTHY, None, "Paused", "not probed while paused");
        return Ok(components);
    }
    // A port conflict found while acting stands; anything else is observed.
    if c.get(st::UNITS_ACTIVE)
        .is_none_or(|x| x.reason != "PortConflict")
    {
        if down.is_empty() {
            c.set(
                st::UNITS_ACTIVE,
                Some(true),
                "Active",
                "all units active and containers running",
            );
        } else {
            c.set(st::UNITS_ACTIVE, Some(false), "NotActive", down.join("; "));
        }
    }
    if down.is_empty() {
        match probe(r, &desired.health_path, ca_file).await {
            Ok(msg) => c.set(st::HEALTHY, Some(true), "ProbeSucceeded", msg),
            Err(msg) => {
                for x in &mut components {
                    x.healthy = false;
                }
                c.set(st::HEALTHY, Some(false), "ProbeFailed", msg)
            }
        }
    } else {
        c.set(
            st::HEALTHY,
            Some(false),
            "NotRunning",
            "not probed: units are not active",
        );
    }
    Ok(components)
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A client for the registry's HTTPS endpoint through the published port,
/// verifying the certificate for the registry's hostname against its CA.
pub(crate) fn https_client(
    r: &Resolved,
    ca_file: Option<&Path>,
    timeout: Duration,
) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .min_tls_version(reqwest::tls::Version::TLS_1_2)
        .resolve(&r.hostname, SocketAddr::from((Ipv4Addr::LOCALHOST, r.port)));
    match (ca_file, &r.tls) {
        (Some(ca), _) => {
            let pem = std::fs::read(ca).map_err(|e| format!("read {}: {e}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            b = b.tls_built_in_root_certs(false).add_root_certificate(cert);
        }
        (None, Tls::Provided { .. }) => {
            // The user's CA may be one the host does not trust and the file
            // may hold the leaf alone: pin the served certificate to the
            // first one in certFile instead (its chain, dates and names were
            // checked when the pair was accepted). The pin holds during the
            // handshake, so nothing (a password) is sent before it.
            // The copy that is served (checked when it was made), not the
            // user's file, which may have changed since.
            let cert_file = &naming::root::tls_dir(&r.root).join("tls.crt");
            let pem = std::fs::read(cert_file)
                .map_err(|e| format!("read {}: {e}", cert_file.display()))?;
            let leaf = rustls_pemfile::certs(&mut pem.as_slice())
                .next()
                .and_then(|c| c.ok())
                .ok_or_else(|| format!("{}: no certificate", cert_file.display()))?;
            let config = tls::pinned_client_config(leaf)
                .map_err(|e| format!("{}: {e}", cert_file.display()))?;
            b = b.use_preconfigured_tls(config);
        }
        _ => {}
    }
    b.build().map_err(|e| e.to_string())
}

/// HTTPS GET of the health path, verified as [`https_client`] does.
async fn probe(r: &Resolved, path: &str, ca_file: Option<&Path>) -> Result<String, String> {
    let url = format!("{}{path}", r.endpoint());
    let client = https_client(r, ca_file, PROBE_TIMEOUT)?;
    let resp = client.get(&url).send().await.map_err(|e| {
        let mut msg = format!("GET {url}: {e}");
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        msg
    })?;
    let code = resp.status().as_u16();
    if r.engine == Engine::Quay {
        let body = resp.text().await.unwrap_or_default();
        return quay::judge_health(&url, code, &body);
    }
    if code == 200 || code == 401 {
        Ok(format!("GET {url} answered {code} over verified TLS"))
    } else {
        Err(format!("GET {url} answered {code}"))
    }
}
