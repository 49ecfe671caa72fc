//! `mrctl uninstall`: the original's removal, through the controller. Data
//! goes only with consent (`--autoApprove`, or yes at the prompt), whatever
//! the spec file says: before the spec is removed, its deletionPolicy is set
//! to what the user consented to and the controller must have recorded it,
//! since teardown follows the record. What is printed afterwards is what
//! exists then, never a prediction.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::controller_unit::{self, unit_name, ControllerArgs};
use super::state::{edit_spec, set_spec_value, Paths, Registry, Spec};
use super::wait::{self, Target};
use super::{Error, Result, EXIT_OK};
use crate::api::DeletionPolicy;
use crate::host::podman::Podman;
use crate::host::systemd::{self, Systemd};
use crate::naming;
use crate::reconcile::removal;
use crate::store::claims::Held;
use crate::store::record::{self, Record};

#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    /// Registry name.
    #[arg(long, default_value = "quay")]
    pub name: String,
    /// Delete the data too (volumes, storage, root directory), without
    /// asking. Without it, a terminal is asked; otherwise data is kept,
    /// whatever the spec's deletionPolicy says.
    #[arg(long = "autoApprove")]
    pub auto_approve: bool,
    /// How long to wait for the teardown.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub controller: ControllerArgs,
    #[command(flatten)]
    pub remote: super::remote::RemoteArgs,
}

/// Asks on a terminal whether data should go too, naming exactly what;
/// anything but yes keeps it.
fn ask_delete_data(name: &str, plan: &removal::Plan) -> bool {
    let what = plan.lines();
    if what.is_empty() {
        return false;
    }
    eprintln!("Deleting the data of mirrorregistry/{name} removes:");
    for w in &what {
        eprintln!("  - {w}");
    }
    for k in &plan.kept {
        eprintln!("  (kept: {k})");
    }
    eprint!("Delete it? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

fn policy_word(p: DeletionPolicy) -> &'static str {
    match p {
        DeletionPolicy::Delete => "Delete",
        DeletionPolicy::Retain => "Retain",
    }
}

/// Makes sure the teardown to come follows `want`: the spec says it and
/// the controller has recorded it. Refuses, having removed nothing, when
/// that cannot be made sure.
async fn ensure_policy(
    paths: &Paths,
    r: &Registry,
    want: DeletionPolicy,
    timeout: Duration,
    unit: &str,
) -> Result<()> {
    let recorded = r.record.as_ref().map(|x| x.deletion_policy);
    let word = policy_word(want);
    let consent = if want == DeletionPolicy::Delete {
        "delete"
    } else {
        "keep"
    };
    match (&r.spec, r.file()) {
        (Spec::Valid(l), Some(f)) => {
            if l.resource.spec.deletion_policy != want {
                edit_spec(paths, f, |doc| {
                    set_spec_value(doc, &["deletionPolicy"], Some(word.into()))
                })?;
                outln!(
                    "mirrorregistry/{}: deletionPolicy set to {word} in {} (to {consent} the data)",
                    r.name,
                    f.display()
                );
            }
        }
        _ if recorded.is_none_or(|p| p == want) => return Ok(()),
        _ => {
            return Err(Error::Failed(format!(
                "mirrorregistry/{}: its spec file is missing, invalid or not the only one, so the controller cannot be told to {consent} the data (it would follow deletionPolicy {}); nothing was removed. Fix the spec file, then uninstall again",
                r.name,
                recorded.map(policy_word).unwrap_or("Retain")
            )))
        }
    }
    if recorded.is_none() {
        // Nothing created yet; a reconcile racing this one reads the edit.
        return Ok(());
    }
    if !wait_record(paths, &r.name, want, timeout).await? {
        return Err(Error::Failed(format!(
            "the controller did not record deletionPolicy: {word} for mirrorregistry/{} within {}; nothing was removed. Is {unit} running?",
            r.name,
            humantime::format_duration(timeout)
        )));
    }
    Ok(())
}

/// Waits until the ownership record carries `want` (or there is none:
/// nothing was created yet).
async fn wait_record(
    paths: &Paths,
    name: &str,
    want: DeletionPolicy,
    timeout: Duration,
) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        match record::load(&paths.state_dir, name)? {
            None => return Ok(true),
            Some(r) if r.deletion_policy == want => return Ok(true),
            _ => {}
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(wait::POLL).await;
    }
}

/// The registry's data as a list of things that may or may not exist now.
fn data_of(rec: &Record) -> (Vec<String>, Vec<PathBuf>) {
    let mut volumes: Vec<String> = rec.volumes.iter().cloned().collect();
    let mut dirs: Vec<PathBuf> = rec.data_paths.iter().cloned().collect();
    for c in rec.held() {
        match c.what {
            Held::Volume(v) if !volumes.contains(&v) => volumes.push(v),
            Held::Path(p) if !dirs.contains(&p) => dirs.push(p),
            _ => {}
        }
    }
    (volumes, dirs)
}

async fn volume_exists(podman: &Podman, v: &str) -> Result<bool> {
    Ok(podman
        .volume(v)
        .await
        .map_err(|e| Error::Failed(e.to_string()))?
        .is_some())
}

/// After the teardown: what of the registry's data exists now.
async fn report(paths: &Paths, rec: &Record, plan: &removal::Plan, deleted: bool) -> Result<()> {
    let podman = Podman::connect(&paths.podman_socket).await?;
    let (volumes, dirs) = data_of(rec);
    let mut kept = Vec::new();
    let mut gone = Vec::new();
    for v in volumes {
        if volume_exists(&podman, &v).await? {
            kept.push(format!("volume {v}"));
        } else {
            gone.push(format!("volume {v}"));
        }
    }
    for d in dirs {
        if d.symlink_metadata().is_ok() {
            kept.push(d.display().to_string());
        } else {
            gone.push(d.display().to_string());
        }
    }
    if deleted {
        if !gone.is_empty() {
            outln!("data deleted: {}", gone.join(", "));
        }
        let leftover_files = plan.files.iter().filter(|f| f.exists()).count();
        if leftover_files > 0 {
            kept.push(format!("{leftover_files} of the controller's files"));
        }
        for k in &plan.kept {
            outln!("{k}");
        }
        for d in plan.dirs.iter().filter(|d| d.exists()) {
            if let Some(why) = removal::why_kept(d, true) {
                outln!("{why}");
            }
        }
        if !kept.is_empty() {
            outln!("still present: {}", kept.join(", "));
        }
    } else {
        if !kept.is_empty() {
            outln!(
                "data kept: {} (a new install with the same name serves it again; `mrctl uninstall --autoApprove` deletes it)",
                kept.join(", ")
            );
        }
        if !gone.is_empty() {
            outln!("no longer present: {}", gone.join(", "));
        }
    }
    Ok(())
}

/// Volumes an earlier install of the same name created (the record of this
/// one no longer lists them): only those carrying this registry's owner
/// label and no other registry uses.
async fn remove_leftovers(paths: &Paths, name: &str) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let podman = Podman::connect(&paths.podman_socket).await?;
    let others = record::others_claims(&paths.state_dir, name)?;
    let used = |v: &str| {
        others.iter().any(|(_, c)| {
            c.iter()
                .any(|x| matches!(&x.what, Held::Volume(w) if w == v))
        })
    };
    for v in podman.volumes_labelled(naming::OWNER_LABEL, name).await? {
        if v.labels.get(naming::MANAGED_BY_LABEL).map(String::as_str) == Some(naming::MANAGED_BY)
            && !used(&v.name)
        {
            podman.remove_volume(&v.name).await?;
            removed.push(format!("volume {}", v.name));
        }
    }
    Ok(removed)
}

pub async fn uninstall(paths: &Paths, a: UninstallArgs) -> Result<i32> {
    let name = a.name.clone();
    if let Some(target) = super::remote::Target::from_args(&a.remote)? {
        return super::remote::run(super::remote::Remote {
            target,
            verb: "uninstall",
            copy: false,
            controller_bin: None,
            archive: None,
            password: None,
            name: &name,
        });
    }
    let unit = unit_name(&a.controller.controller_unit);
    let unit_dir = systemd::unit_dir(paths.scope)?;
    let unit_file = unit_dir.join(&unit);
    let existing = paths.lookup(&name)?;
    if existing.is_none() && !unit_file.exists() {
        outln!("mirrorregistry/{name} is not installed; nothing to do");
        return Ok(EXIT_OK);
    }
    let systemd = Systemd::connect(paths.scope).await?;
    if let Some(r) = &existing {
        let others = record::others_claims(&paths.state_dir, &name)?;
        // What Delete would remove, for the question and the report.
        let plan = r
            .record
            .as_ref()
            .map(|rec| removal::plan(rec, &others))
            .unwrap_or_default();
        let delete_data =
            a.auto_approve || (std::io::stdin().is_terminal() && ask_delete_data(&name, &plan));
        // The controller tears the registry down: make sure it runs.
        if unit_file.exists() {
            let st = systemd.unit(&unit).await?;
            if !st.active_state.is_active() {
                systemd.reset_failed(&unit).await?;
                systemd.start(&unit).await?;
            }
        }
        let want = if delete_data {
            DeletionPolicy::Delete
        } else {
            DeletionPolicy::Retain
        };
        ensure_policy(paths, r, want, a.timeout, &unit).await?;
        let before = record::load(&paths.state_dir, &name)?;
        for f in &r.files {
            crate::host::files::remove_if_exists(f)?;
        }
        outln!("mirrorregistry/{name}: spec removed; the controller tears it down");
        let gone = wait::until(paths, &name, &Target::Delete, a.timeout, &mut |_| {}).await?;
        if !gone {
            return Err(Error::Failed(format!(
                "mirrorregistry/{name} was not torn down within {}; is the controller ({unit}) running for {}? See `mrctl describe {name}`",
                humantime::format_duration(a.timeout),
                paths.watch_dir.display()
            )));
        }
        outln!("mirrorregistry/{name}: units, containers, pod and network removed");
        if delete_data {
            let removed = remove_leftovers(paths, &name).await?;
            if !removed.is_empty() {
                outln!("also deleted: {}", removed.join(", "));
            }
        }
        if let Some(rec) = &before {
            report(paths, rec, &plan, delete_data).await?;
        }
    }
    let others: Vec<String> = paths.list()?.into_iter().map(|r| r.name).collect();
    if unit_file.exists() {
        if others.is_empty() {
            controller_unit::remove(&systemd, &unit_dir, &unit).await?;
            outln!("controller {unit}: stopped and removed");
        } else {
            outln!(
                "controller {unit}: kept, it still manages {}",
                others.join(", ")
            );
        }
    }
    Ok(EXIT_OK)
}
