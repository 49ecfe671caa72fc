//! Checks that can refuse a registry before anything of it is recorded,
//! written, started or removed: another registry's claim on the same root,
//! storage, database or port, and objects under the registry's names that
//! the controller did not create (a container, the pod, its network, a
//! volume, a unit file, a trust entry). A refusal is reason `Conflict`,
//! naming the other registry or the object and what to do; nothing of
//! either side changes.

use std::path::Path;

use super::{Context, Error};
use crate::api::defaults::{self, Resolved, Storage, Tls};
use crate::api::load;
use crate::host::files;
use crate::host::podman::Podman;
use crate::naming;
use crate::render::Desired;
use crate::spec_file::read::read_spec;
use crate::store::claims::{self, Held};
use crate::store::record::{self, Record};

/// Refuses the registry, before anything of it is recorded, when another
/// registry's claim or a foreign object is in its way: the message of the
/// refusal (reason `Conflict`), or `None` to go ahead.
pub async fn check(
    cx: &Context,
    podman: &Podman,
    r: &Resolved,
    desired: &Desired,
    existing: Option<&Record>,
) -> Result<Option<String>, Error> {
    let others = others(cx, &r.name)?;
    if let Some(msg) = claim_conflict(r, existing, &others) {
        return Ok(Some(msg));
    }
    let foreign =
        foreign_objects((&cx.unit_dir, &cx.certs_d), podman, r, desired, existing).await?;
    Ok((!foreign.is_empty()).then(|| foreign_message(&foreign)))
}

/// Every other registry known here: its record's claims and its spec's.
pub fn others(cx: &Context, me: &str) -> Result<Vec<claims::Other>, Error> {
    let mut names = cx.all_names();
    names.remove(me);
    let mut out = Vec::new();
    for name in names {
        let recorded = record::load(&cx.state_dir, &name)?.map(|r| r.held());
        // A name in two files is refused for both; an invalid spec asks
        // for nothing. Either way only its record holds anything.
        let wanted = match cx.files_for(&name).as_slice() {
            [one] => read_spec(one, &cx.watch_dir, cx.strict())
                .ok()
                .and_then(|b| load::parse(one, &b).ok())
                .filter(|l| l.name == name)
                .map(|l| claims::of(&defaults::resolve(&l.resource, &l.name, &cx.host))),
            _ => None,
        };
        out.push(claims::Other {
            name,
            recorded,
            wanted,
        });
    }
    Ok(out)
}

/// `Some(message)` when this registry must give way to another's claim.
pub fn claim_conflict(
    r: &Resolved,
    rec: Option<&Record>,
    others: &[claims::Other],
) -> Option<String> {
    let mine = claims::of(r);
    let held = rec.map(Record::held);
    let mut lines = Vec::new();
    let mut who = Vec::new();
    for o in others {
        if let Some(l) = claims::yields_to(&r.name, &mine, held.as_ref(), o) {
            lines.extend(l);
            who.push(o.name.clone());
        }
    }
    (!lines.is_empty()).then(|| {
        format!(
            "{}; registry {} holds it, so nothing of {} was written, started or removed; it goes ahead once {} no longer uses it, or after this spec changes",
            lines.join("; "),
            who.join(", "),
            r.name,
            if who.len() == 1 { "that registry" } else { "they" }
        )
    })
}

/// The user's explicit choice of a volume, as opposed to the default name.
fn explicit_volume(r: &Resolved, v: &str) -> bool {
    let named = |s: &Option<&Storage>, default: String| matches!(s, Some(Storage::Volume(x)) if x == v && *x != default);
    named(&Some(&r.storage), naming::storage_volume(&r.name))
        || named(&r.database.as_ref(), naming::sqlite_volume(&r.name))
}

/// Objects under this registry's names that are not its own: carrying its
/// owner label, or listed in its ownership record, makes them its own.
/// `dirs` are the unit directory and the trust (certs.d) directory.
pub async fn foreign_objects(
    dirs: (&Path, &Path),
    podman: &Podman,
    r: &Resolved,
    desired: &Desired,
    rec: Option<&Record>,
) -> Result<Vec<String>, Error> {
    let (unit_dir, certs_d) = dirs;
    let name = r.name.as_str();
    let mut out = Vec::new();
    for comp in &desired.components {
        if rec.is_some_and(|x| x.containers.contains(&comp.container)) {
            continue;
        }
        if let Some(c) = podman.container(&comp.container).await? {
            if !naming::owned_by(&c.labels, name) {
                out.push(format!(
                    "container {} already exists and was not created for {name}",
                    comp.container
                ));
            }
        }
    }
    if rec.is_none_or(|x| x.pod != desired.pod) {
        if let Some(p) = podman.pod(&desired.pod).await? {
            if !naming::owned_by(&p.labels, name) {
                out.push(format!(
                    "pod {} already exists and was not created for {name}",
                    desired.pod
                ));
            }
        }
    }
    let net = &desired.network.name;
    if !rec.is_some_and(|x| x.networks.contains(net)) {
        if let Some(n) = podman.network(net).await? {
            if !naming::owned_by(&n.labels, name) {
                out.push(format!(
                    "network {net} already exists and was not created for {name}"
                ));
            }
        }
    }
    for v in &desired.volumes {
        let listed = rec.is_some_and(|x| {
            x.volumes.contains(v)
                || x.held()
                    .iter()
                    .any(|c| matches!(&c.what, Held::Volume(w) if w == v))
        });
        if listed {
            continue;
        }
        let Some(info) = podman.volume(v).await? else {
            continue;
        };
        match info.labels.get(naming::OWNER_LABEL) {
            Some(owner) if owner == name => {}
            Some(owner) => out.push(format!(
                "volume {v} holds the data of registry {owner}; it is never shared"
            )),
            // An unlabelled volume the spec names on purpose is used (and
            // never removed); one that merely has the default name is not.
            None if explicit_volume(r, v) => {}
            None => out.push(format!(
                "volume {v} already exists and was not created for {name} (set spec.storage.volume to it to use it on purpose)"
            )),
        }
    }
    for u in desired.all_units() {
        if rec.is_some_and(|x| x.units.contains(&u.name)) {
            continue;
        }
        if let Some(text) = files::read_optional(&unit_dir.join(&u.name))? {
            if !naming::unit_text_owned_by(&String::from_utf8_lossy(&text), name) {
                out.push(format!(
                    "unit file {} already exists and was not written for {name}",
                    unit_dir.join(&u.name).display()
                ));
            }
        }
    }
    if matches!(r.tls, Tls::Generated { .. }) {
        let d = certs_d.join(r.host_port());
        if !rec.is_some_and(|x| x.trust_dirs.contains(&d)) && foreign_trust_dir(&d, r)? {
            out.push(format!(
                "trust directory {} already holds certificates that are not {name}'s",
                d.display()
            ));
        }
    }
    Ok(out)
}

/// A trust entry holding anything but this registry's own CA.
fn foreign_trust_dir(d: &Path, r: &Resolved) -> Result<bool, Error> {
    let Ok(entries) = std::fs::read_dir(d) else {
        return Ok(false);
    };
    let ours = files::read_optional(&naming::root::tls_dir(&r.root).join("ca.crt"))?;
    for e in entries.filter_map(|e| e.ok()) {
        if e.file_name() != "ca.crt" {
            return Ok(true);
        }
        let theirs = files::read_optional(&e.path())?;
        if ours.is_none() || theirs != ours {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The message of a foreign-object refusal.
pub fn foreign_message(objects: &[String]) -> String {
    format!(
        "{}; nothing was created, replaced or removed. Rename the registry (metadata.name), or remove or rename the object; the registry goes ahead by itself once it is gone",
        objects.join("; ")
    )
}
