//! Tearing a registry down after its spec file is gone, from the ownership
//! record alone: units, containers, pod, its network and trust entry go;
//! volumes and data stay unless deletionPolicy is Delete.

use super::queue::Next;
use super::steps::trust::remove_trust_dir;
use super::{removal, Context, Error};
use crate::api::{DeletionPolicy, Phase, Status};
use crate::host::files;
use crate::host::podman::NetworkRemoval;
use crate::naming;
use crate::store::{self, claims, record};

pub async fn run(cx: &Context, name: &str) -> Next {
    let rec = match record::load(&cx.state_dir, name) {
        Ok(Some(r)) => r,
        Ok(None) => {
            // Nothing was created; only a status copy may be left.
            let _ = store::remove(&cx.state_dir, name);
            return Next::Done;
        }
        Err(e) => {
            tracing::error!(registry = name, error = %e, "cannot read the ownership record; nothing torn down");
            return Next::Backoff;
        }
    };
    let mut status = store::status::load(&cx.state_dir, name).unwrap_or_default();
    status.phase = Phase::Terminating;
    let _ = store::status::save(&cx.state_dir, name, &status);
    tracing::info!(registry = name, policy = ?rec.deletion_policy, "spec removed; tearing down");
    match teardown(cx, &rec).await {
        Ok(()) => {
            let kept = if rec.deletion_policy == DeletionPolicy::Retain {
                store::retained::save(&cx.state_dir, &rec)
            } else {
                store::retained::remove(&cx.state_dir, name)
            };
            if let Err(e) = kept {
                tracing::warn!(registry = name, error = %e, "cannot keep what the retained data's provenance is");
            }
            if let Err(e) = store::remove(&cx.state_dir, name) {
                tracing::warn!(registry = name, error = %e, "cannot remove the ownership record");
            }
            tracing::info!(registry = name, "torn down");
            Next::Done
        }
        Err(e) => {
            tracing::warn!(registry = name, error = %e, "teardown failed; will retry");
            let _ = store::status::save(
                &cx.state_dir,
                name,
                &Status {
                    phase: Phase::Terminating,
                    ..status
                },
            );
            if e.drops_clients() {
                cx.reset_clients().await;
            }
            Next::Backoff
        }
    }
}

async fn teardown(cx: &Context, rec: &record::Record) -> Result<(), Error> {
    let (podman, systemd) = cx.clients().await?;
    let name = rec.name.as_str();
    // What other registries claim, read first: when a record cannot be read
    // what it claims is unknown, and nothing is torn down until it can.
    let others = record::others_claims(&cx.state_dir, name)?;
    // Components before the pod, so Restart=always does not bring them back.
    let pod_unit = format!("{}.service", rec.pod);
    let mut order: Vec<&String> = rec.units.iter().filter(|u| **u != pod_unit).collect();
    order.extend(rec.units.iter().filter(|u| **u == pod_unit));
    // A unit file someone replaced with their own since is theirs: left
    // alone, with its unit.
    let mut ours = Vec::new();
    for u in order {
        match files::read_optional(&cx.unit_dir.join(u))? {
            Some(text) if !naming::unit_text_owned_by(&String::from_utf8_lossy(&text), name) => {
                tracing::warn!(registry = name, unit = %u, "unit file no longer the controller's; left alone");
            }
            _ => ours.push(u.clone()),
        }
    }
    for u in &ours {
        systemd.stop(u).await?;
    }
    let present: Vec<String> = ours
        .iter()
        .filter(|u| cx.unit_dir.join(u).exists())
        .cloned()
        .collect();
    if !present.is_empty() {
        systemd.disable(&present).await?;
    }
    let mut removed = false;
    for u in &ours {
        removed |= files::remove_if_exists(&cx.unit_dir.join(u))?;
    }
    if removed {
        systemd.reload().await?;
    }
    for u in &ours {
        systemd.reset_failed(u).await?;
    }
    // Only containers and the pod carrying this registry's owner label: one
    // of someone else's that took the name since is not ours to remove.
    for ctr in &rec.containers {
        match podman.container(ctr).await? {
            Some(c) if naming::owned_by(&c.labels, name) => podman.remove_container(&c.id).await?,
            Some(_) => {
                tracing::warn!(registry = name, container = %ctr, "container is not the controller's; left alone")
            }
            None => {}
        }
    }
    match podman.pod(&rec.pod).await? {
        Some(p) if naming::owned_by(&p.labels, name) => podman.remove_pod(&p.id).await?,
        Some(_) => {
            tracing::warn!(registry = name, pod = %rec.pod, "pod is not the controller's; left alone")
        }
        None => {}
    }
    // The network holds no data: it goes with the pod, whatever the policy.
    for n in &rec.networks {
        match podman.network(n).await? {
            Some(info) if naming::owned_by(&info.labels, name) => {
                if let NetworkRemoval::Refused(why) = podman.remove_network(n).await? {
                    tracing::warn!(registry = name, network = %n, "network kept: {why}");
                }
            }
            Some(_) => {
                tracing::warn!(registry = name, network = %n, "network is not the controller's; left alone")
            }
            None => {}
        }
    }
    for d in &rec.trust_dirs {
        let shared = others
            .iter()
            .any(|(_, c)| c.iter().any(|x| matches!(&x.what, claims::Held::Port(p) if d.to_string_lossy().ends_with(&format!(":{p}")))));
        if shared {
            tracing::warn!(registry = name, dir = %d.display(), "trust entry kept: another registry uses its port");
            continue;
        }
        remove_trust_dir(d)?;
    }
    if rec.deletion_policy == DeletionPolicy::Delete {
        let plan = removal::plan(rec, &others);
        for v in &plan.volumes {
            match podman.volume(v).await? {
                Some(info) if naming::owned_by(&info.labels, name) => {
                    podman.remove_volume(v).await?;
                    tracing::info!(registry = name, volume = %v, "volume removed");
                }
                Some(_) => {
                    tracing::warn!(registry = name, volume = %v, "volume is not labelled as this registry's; kept")
                }
                None => {}
            }
        }
        let out = removal::remove_paths(&plan).map_err(Error::Other)?;
        for r in &out.removed {
            tracing::info!(registry = name, path = %r, "removed");
        }
        for k in &out.kept {
            tracing::info!(registry = name, "{k}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a Retain teardown kept still counts as someone's, so another
    /// registry's Delete leaves it alone.
    #[test]
    fn kept_data_of_a_retained_registry_is_claimed() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("blobs");
        let mut rec = record::Record {
            name: "kept".into(),
            root: dir.path().join("root"),
            ..record::Record::default()
        };
        rec.claims = Some(
            [claims::Claim {
                field: "spec.storage.path".into(),
                what: claims::Held::Path(data.clone()),
            }]
            .into(),
        );
        store::retained::save(dir.path(), &rec).unwrap();
        let others = record::others_claims(dir.path(), "deleter").unwrap();
        assert_eq!(others.len(), 1, "{others:?}");
        assert!(others[0].0.starts_with("kept"));
        let deleter = record::Record {
            name: "deleter".into(),
            root: dir.path().join("root2"),
            data_paths: [data.clone()].into(),
            ..record::Record::default()
        };
        std::fs::create_dir_all(&data).unwrap();
        let p = removal::plan(&deleter, &others);
        assert!(p.trees.is_empty(), "{p:?}");
        assert!(
            p.kept
                .iter()
                .any(|k| k.contains("registry kept (kept data) uses it")),
            "{:?}",
            p.kept
        );
    }
}
