//! `mrctl gc NAME [--dry-run]`: deletes the blobs no manifest references
//! any more, with the distribution registry's own `garbage-collect`, while
//! the registry is read-only (pulls served, pushes refused at once with
//! 405 UNSUPPORTED), then makes it read-write again.
//!
//! `--delete-untagged` is never used: it deletes the children of manifest
//! lists (distribution issue 3004). Without it, the collector keeps every
//! manifest the registry still lists, tagged or not; deleting a manifest
//! (`DELETE /v2/<repo>/manifests/<digest>`, which the distribution engine's
//! config enables) is what makes its blobs collectable. Before anything is
//! deleted, the collector's dry run is checked against the blobs the tags
//! reach, read from the storage directly (`host::blob_store`); any overlap
//! stops the collection, and afterwards every such blob must still be there.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use super::super::state::Paths;
use super::super::{Error, Result};
use crate::api::day2::human_bytes;
use crate::api::defaults::Resolved;
use crate::api::{Engine, GcReport};
use crate::host::blob_store;
use crate::host::credentials;
use crate::host::podman::Podman;
use crate::host::systemd::Systemd;
use crate::naming;
use crate::render::distribution;
use crate::store::{self, maintenance};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The registry's name.
    pub name: String,
    /// List what would be deleted; change nothing (the registry stays
    /// writable).
    #[arg(long)]
    pub dry_run: bool,
    /// How long to wait for the registry to answer after each restart.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Where the registry's config is inside its container.
const CONFIG_IN_CONTAINER: &str = "/etc/docker/registry/config.yml";

pub async fn run(paths: &Paths, a: Args) -> Result<i32> {
    let r = super::resolved(paths, &a.name)?;
    if r.engine == Engine::Quay {
        outln!(
            "mirrorregistry/{}: the quay engine collects garbage by itself (Quay's garbage collection worker removes unreferenced blobs in the background); nothing to do",
            r.name
        );
        return Ok(super::super::EXIT_OK);
    }
    let podman = Podman::connect(&paths.podman_socket).await?;
    let container = naming::container(&r.name, distribution::COMPONENT);
    if !podman
        .container(&container)
        .await?
        .is_some_and(|c| c.running)
    {
        return Err(Error::Failed(format!(
            "mirrorregistry/{}: container {container} is not running; nothing collected",
            r.name
        )));
    }
    let storage = super::storage_dir(paths, &r).await?;
    if a.dry_run {
        let eligible = checked_dry_run(&podman, &container, &storage).await?;
        let bytes: u64 = eligible
            .iter()
            .map(|d| blob_store::blob_size(&storage, d))
            .sum();
        for d in &eligible {
            outln!("would delete blob {d}");
        }
        outln!(
            "mirrorregistry/{}: would delete {} blobs ({}); nothing changed",
            r.name,
            eligible.len(),
            human_bytes(bytes)
        );
        return Ok(super::super::EXIT_OK);
    }

    // Held to the end of this function, both restarts included: the
    // controller's reconcile of this registry waits meanwhile, so neither
    // restarts the unit or records what it runs while the other is half-way.
    let _held = lock(paths, &r, a.timeout).await?;
    maintenance::take(&paths.state_dir, &r.name, "garbage collection", true)
        .map_err(Error::Failed)?;
    let systemd = Systemd::connect(paths.scope).await?;
    let before = super::used(&storage)?;
    let t0 = Instant::now();
    outln!(
        "mirrorregistry/{}: read-only: pushes are refused, pulls served",
        r.name
    );
    let collected = collect(paths, &systemd, &podman, &r, &storage, a.timeout).await;
    // Writable again whatever happened: first the marker, so a reconcile
    // meanwhile renders the same read-write config.
    let released = maintenance::release(&paths.state_dir, &r.name);
    let back = super::set_read_only(paths, &systemd, &r, false, a.timeout).await;
    let read_only_millis = super::millis(t0);
    released?;
    back?;
    outln!(
        "mirrorregistry/{}: read-write again after {:.1} s",
        r.name,
        read_only_millis as f64 / 1000.0
    );
    let deleted = collected?;
    let after = super::used(&storage)?;
    let report = GcReport {
        time: store::now_rfc3339(),
        blobs_deleted: deleted,
        reclaimed_bytes: before.saturating_sub(after),
        read_only_millis,
    };
    maintenance::save_gc(&paths.state_dir, &r.name, &report)?;
    outln!(
        "mirrorregistry/{}: deleted {} blobs, reclaimed {} ({} -> {})",
        r.name,
        report.blobs_deleted,
        human_bytes(report.reclaimed_bytes),
        human_bytes(before),
        human_bytes(after)
    );
    Ok(super::super::EXIT_OK)
}

/// The registry's lock (`store::lock`), waiting up to `timeout` for the
/// controller's reconcile of it to end.
async fn lock(paths: &Paths, r: &Resolved, timeout: Duration) -> Result<store::lock::Held> {
    let by = |pid: Option<u32>| pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
    let held = store::lock::take(&paths.state_dir, &r.name, timeout, |pid| {
        outln!(
            "mirrorregistry/{}: waiting for the controller's reconcile of it{} to end",
            r.name,
            by(pid)
        );
    })
    .await?;
    held.ok_or_else(|| {
        let by = by(store::lock::holder(&paths.state_dir, &r.name));
        Error::Failed(format!(
            "mirrorregistry/{}: still busy after {}: another process{by} holds {}; nothing collected",
            r.name,
            humantime::format_duration(timeout),
            store::lock::path(&paths.state_dir, &r.name).display()
        ))
    })
}

/// Read-only, checked; the collector's dry run checked against the tags;
/// the collection; every blob a tag reaches still there. Returns how many
/// blobs went.
async fn collect(
    paths: &Paths,
    systemd: &Systemd,
    podman: &Podman,
    r: &Resolved,
    storage: &Path,
    timeout: Duration,
) -> Result<u64> {
    super::set_read_only(paths, systemd, r, true, timeout).await?;
    refuses_pushes(r, timeout).await?;
    let container = naming::container(&r.name, distribution::COMPONENT);
    let eligible = checked_dry_run(podman, &container, storage).await?;
    let reachable = blob_store::reachable_from_tags(storage).map_err(Error::Failed)?;
    outln!(
        "collecting: {} blobs reachable from tags are kept, {} to delete",
        reachable.len(),
        eligible.len()
    );
    let out = garbage_collect(podman, &container, false).await?;
    let missing: Vec<&String> = reachable
        .iter()
        .filter(|d| blob_store::blob_path(storage, d).is_none_or(|p| !p.exists()))
        .collect();
    if !missing.is_empty() {
        return Err(Error::Failed(format!(
            "mirrorregistry/{}: after garbage-collect, blobs reachable from tags are missing: {missing:?}\n{}",
            r.name, out
        )));
    }
    Ok(eligible
        .iter()
        .filter(|d| blob_store::blob_path(storage, d).is_none_or(|p| !p.exists()))
        .count() as u64)
}

/// The blobs the collector would delete; refused when one of them is
/// reachable from a tag.
async fn checked_dry_run(
    podman: &Podman,
    container: &str,
    storage: &Path,
) -> Result<BTreeSet<String>> {
    let out = garbage_collect(podman, container, true).await?;
    let eligible = eligible(&out);
    let reachable = blob_store::reachable_from_tags(storage).map_err(Error::Failed)?;
    let wrong: Vec<&String> = eligible.intersection(&reachable).collect();
    if !wrong.is_empty() {
        return Err(Error::Failed(format!(
            "garbage-collect would delete blobs reachable from tags ({wrong:?}); nothing deleted"
        )));
    }
    Ok(eligible)
}

/// Runs the registry's collector in its container; its output.
async fn garbage_collect(podman: &Podman, container: &str, dry_run: bool) -> Result<String> {
    let mut cmd = vec!["registry", "garbage-collect"];
    if dry_run {
        cmd.push("--dry-run");
    }
    cmd.push(CONFIG_IN_CONTAINER);
    let out = podman.exec(container, &cmd).await?;
    if out.exit_code != Some(0) {
        return Err(Error::Failed(format!(
            "`{}` in {container} exited {:?}: {}{}",
            cmd.join(" "),
            out.exit_code,
            out.stdout,
            out.stderr
        )));
    }
    Ok(format!("{}{}", out.stdout, out.stderr))
}

/// The digests after `blob eligible for deletion:` in the collector's output.
fn eligible(out: &str) -> BTreeSet<String> {
    out.lines()
        .filter_map(|l| l.split("blob eligible for deletion: ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|d| d.trim_matches('"').to_string())
        .filter(|d| d.starts_with("sha256:"))
        .collect()
}

/// Checks that the registry refuses an upload, authenticated as the
/// initial user, as read-only mode should.
async fn refuses_pushes(r: &Resolved, timeout: Duration) -> Result<()> {
    let creds = credentials::read_credentials(&naming::root::credentials_file(&r.root))?;
    let ca = super::ca_file(r);
    let client =
        crate::reconcile::steps::probe::https_client(r, ca.as_deref(), Duration::from_secs(10))
            .map_err(Error::Failed)?;
    let url = format!(
        "{}/v2/mirror-registry-gc/check/blobs/uploads/",
        r.endpoint()
    );
    // A reconcile that raced the restart may restart it once more: only an
    // answer decides.
    let deadline = std::time::Instant::now() + timeout;
    let resp = loop {
        match client
            .post(&url)
            .basic_auth(&creds.username, Some(&creds.password))
            .send()
            .await
        {
            Ok(resp) => break resp,
            Err(e) if std::time::Instant::now() >= deadline => {
                return Err(Error::Failed(format!("POST {url}: {e}")))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    match resp.status().as_u16() {
        405 => Ok(()),
        code => Err(Error::Failed(format!(
            "mirrorregistry/{}: read-only mode did not take: an upload was answered {code}; nothing collected",
            r.name
        ))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn eligible_blobs_are_read_from_the_collectors_output() {
        let out = "a/b\na/b: marking manifest sha256:aa\n2 blobs marked, 1 blobs and 0 manifests eligible for deletion\nblob eligible for deletion: sha256:bb\ntime=\"x\" level=info msg=\"Deleting blob: /docker/registry/v2/blobs/sha256/bb/bb\" go.version=go1.19\n";
        let e = super::eligible(out);
        assert_eq!(e.into_iter().collect::<Vec<_>>(), ["sha256:bb"]);
    }
}
