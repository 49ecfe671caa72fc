//! The original mirror-registry's one-command UX on top of the controller:
//! `install` writes a spec from its flags and runs the controller under
//! systemd, `upgrade` moves it to new images keeping data, config and
//! credentials (`uninstall` is `super::uninstall`). By concern: [`flags`]
//! (the flags and the spec they describe), [`password`] (the init password,
//! install's one write outside the spec file), [`controller`] (the
//! controller's unit), [`progress`] (waiting, and what is printed); the
//! flows are here.

mod controller;
mod flags;
mod password;
mod progress;

use serde_json::Value as Json;

pub(crate) use flags::{spec_yaml, storage as storage_flag};
pub use flags::{EngineArg, InstallArgs, RunArgs, UpgradeArgs};
// What adopt shares with install: the controller's unit, the init
// password, waiting for Ready and what is printed then.
pub(in crate::cli) use controller::{
    ensure_controller as ensure_controller_unit, preflight_controller,
};
pub(in crate::cli) use flags::absolute;
pub(in crate::cli) use password::{read_given as read_password_given, write as write_password};
pub(in crate::cli) use progress::{
    print_access as print_ready_access, wait_ready as wait_until_ready,
};

use super::controller_unit;
use super::state::{edit_spec, place_spec, set_spec_value, Paths, Spec};
use super::{Error, Result, EXIT_FAILED, EXIT_OK};
use crate::api::defaults::{self, Resolved};
use crate::api::load;
use crate::host::credentials;
use crate::host::podman::Podman;
use crate::host::systemd::{self, Systemd};
use crate::naming;
use crate::reconcile::admission;
use crate::store::record;
use controller::{controller_config, ensure_controller};
use flags::{flag_for, spec_text};
use progress::{print_access, wait_ready};

/// An engine as the word the spec and a bundle's manifest use.
struct EngineArgWord(EngineArg);

impl EngineArgWord {
    fn as_str(&self) -> &'static str {
        match self.0 {
            EngineArg::Quay => "quay",
            EngineArg::Distribution => "distribution",
        }
    }
}

/// Top-level differences between two defaulted specs, as `field: old -> new`.
fn differences(old: &Resolved, new: &Resolved) -> Vec<String> {
    let (Ok(Json::Object(o)), Ok(Json::Object(n))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return vec![];
    };
    n.iter()
        .filter(|(k, v)| o.get(*k) != Some(*v))
        .map(|(k, v)| {
            let show = |x: Option<&Json>| x.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
            format!("{k}: {} -> {}", show(o.get(k)), show(Some(v)))
        })
        .collect()
}

/// Whether the port can be bound, i.e. nothing listens on it.
fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, port)).is_ok()
}

pub async fn install(paths: &Paths, mut a: InstallArgs) -> Result<i32> {
    let name = a.name.clone();
    if let Some(target) = super::remote::Target::from_args(&a.remote)? {
        // A password file is read here and its content sent like
        // --initPassword's: the target has no such file.
        let password = match &a.init_password_file {
            Some(f) => Some(
                credentials::read_password_file(&absolute(f))
                    .map_err(|e| Error::Usage(format!("--initPasswordFile: {e}")))?,
            ),
            None => password::read_password(&a)?,
        };
        return super::remote::run(super::remote::Remote {
            target,
            verb: "install",
            copy: true,
            controller_bin: a.run.controller.controller_bin.as_deref(),
            archive: a.image_archive.as_deref(),
            password,
            name: &name,
        });
    }
    // Run from an unpacked bundle: its archive and images, unless given.
    if a.image_archive.is_none() {
        if let Some(found) = super::bundle::beside_self()? {
            outln!("image archive beside mrctl: {}", found.archive.display());
            a.pinned_images = found.images(EngineArgWord(a.engine).as_str());
            a.image_archive = Some(found.archive);
        }
    }
    let password = password::read_password(&a)?;
    let root = a
        .quay_root
        .as_deref()
        .map(absolute)
        .unwrap_or_else(|| naming::default_root(&name));
    let password_file = match (&password, &a.init_password_file) {
        (Some(_), _) => Some(naming::root::init_password_file(&root)),
        (None, Some(f)) => {
            let f = absolute(f);
            credentials::read_password_file(&f)
                .map_err(|e| Error::Usage(format!("--initPasswordFile: {e}")))?;
            Some(f)
        }
        (None, None) => None,
    };
    let text = spec_text(&a, password_file.clone())?;
    let mut dest = paths.watch_dir.join(format!("{name}.yaml"));
    let loaded = load::parse(&dest, text.as_bytes()).map_err(|invalid| {
        let lines: Vec<String> = invalid
            .problems
            .iter()
            .map(|p| match flag_for(&p.path) {
                Some(flag) => format!("  {p} ({flag})"),
                None => format!("  {p}"),
            })
            .collect();
        Error::Usage(format!(
            "the install flags do not make a valid spec:\n{}",
            lines.join("\n")
        ))
    })?;
    let resolved = defaults::resolve(&loaded.resource, &loaded.name, paths.host());
    crate::render::render(&resolved, &paths.render_context())
        .map_err(|e| Error::Failed(format!("--engine {}: {e}", resolved.engine.as_str())))?;
    ensure_podman_socket(paths).await?;

    // An installed registry is never reconfigured by a second install.
    let existing = paths.lookup(&name)?;
    let fresh = existing.is_none();
    if let Some(r) = &existing {
        match (&r.spec, r.file()) {
            (Spec::Valid(_), Some(file)) => {
                let old = r.resolved(paths.host()).ok_or_else(|| {
                    Error::Failed(format!("{}: cannot read the installed spec", file.display()))
                })?;
                let diff = differences(&old, &resolved);
                if !diff.is_empty() {
                    return Err(Error::Failed(format!(
                        "mirrorregistry/{name} is already installed ({}) with a different spec:\n  {}\ninstall does not change a running registry: use `mrctl upgrade` for images, `mrctl apply -f` for other changes, or `mrctl uninstall --name {name}` first",
                        file.display(),
                        diff.join("\n  ")
                    )));
                }
                if let (Some(pw), Some(pf)) = (&password, &password_file) {
                    if pf.exists() && credentials::read_password_file(pf).ok().as_ref() != Some(pw)
                    {
                        return Err(Error::Failed(format!(
                            "mirrorregistry/{name} is already installed with another init password ({}); install does not change it: edit that file (mode 0600) to change it",
                            pf.display()
                        )));
                    }
                }
                dest = file.to_path_buf();
            }
            (Spec::Missing, _) => {
                return Err(Error::Failed(format!(
                    "mirrorregistry/{name} is being torn down; wait for it (`mrctl wait {name} --for=delete`) and install again"
                )))
            }
            (Spec::Invalid(inv), _) => {
                return Err(Error::Failed(format!(
                    "mirrorregistry/{name} is already installed, but its spec file is not valid:\n{inv}\nfix it or `mrctl delete {name}` first"
                )))
            }
            _ => {
                return Err(Error::Failed(format!(
                    "mirrorregistry/{name} is claimed by {} spec files ({}); remove all but one first",
                    r.files.len(),
                    r.files
                        .iter()
                        .map(|f| f.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        }
    }
    if fresh {
        // A file of that name holding another registry (renamed by hand,
        // say) is that registry's spec: writing over it would tear it down.
        if dest.symlink_metadata().is_ok() {
            let held = paths
                .read_spec(&dest)
                .ok()
                .and_then(|b| load::parse(&dest, &b).ok())
                .map(|l| format!("mirrorregistry/{}", l.name))
                .unwrap_or_else(|| "something that is not a valid spec".into());
            return Err(Error::Failed(format!(
                "{} already exists and holds {held}; nothing was written. Install under another --name, or move that file first",
                dest.display()
            )));
        }
        refuse_collisions(paths, &resolved).await?;
    }
    if fresh && !port_free(resolved.port) {
        return Err(Error::Failed(format!(
            "port {} is already in use on this host; choose another with --quayHostname {}:PORT",
            resolved.port, resolved.hostname
        )));
    }
    // The controller's unit is checked before anything is written.
    let systemd = Systemd::connect(paths.scope).await?;
    let (unit, unit_text) = controller_config(paths, &a.run)?;
    controller_unit::preflight(
        &systemd,
        &systemd::unit_dir(paths.scope)?,
        &unit,
        &unit_text,
    )
    .await?;

    // Air-gapped: the images are loaded here, with progress, rather than
    // by the controller in silence.
    if let Some(archive) = &a.image_archive {
        let images = crate::render::render(&resolved, &paths.render_context())
            .map(|d| d.images)
            .unwrap_or_default();
        let podman = Podman::connect(&paths.podman_socket).await?;
        super::bundle::load(&podman, &absolute(archive), &images).await?;
    }
    if let (Some(pw), Some(pf)) = (&password, &password_file) {
        password::write(paths, &name, &root, pf, pw)?;
    }
    if fresh {
        place_spec(&paths.watch_dir, &dest, &text)?;
        outln!("mirrorregistry/{name} created ({})", dest.display());
    } else {
        outln!(
            "mirrorregistry/{name} is already installed ({}) and unchanged",
            dest.display()
        );
    }
    ensure_controller(paths, &systemd, &a.run).await?;
    let Some(r) = wait_ready(paths, &name, a.run.timeout).await? else {
        return Ok(EXIT_FAILED);
    };
    print_access(paths, &r, password.is_some())?;
    Ok(EXIT_OK)
}

/// podman's API socket. Debian 12's podman package enables podman.socket;
/// Debian 13's (podman 5) and RHEL's do not, so on those hosts nothing
/// listens until someone runs `systemctl enable --now podman.socket`. When
/// the default socket is missing (no --podman-socket, no environment),
/// install does that itself over D-Bus, in its scope, so that the
/// controller finds the socket now and at every boot (sockets.target).
async fn ensure_podman_socket(paths: &Paths) -> Result<()> {
    const UNIT: &str = "podman.socket";
    if paths.podman_socket_given.is_some() || paths.podman_socket.exists() {
        return Ok(());
    }
    let systemd = Systemd::connect(paths.scope).await?;
    systemd.enable(&[UNIT.to_string()]).await.map_err(|e| {
        Error::Failed(format!(
            "podman's API socket {} is missing and {UNIT} could not be enabled ({e}); is podman installed?",
            paths.podman_socket.display()
        ))
    })?;
    systemd.start(UNIT).await?;
    if !paths.podman_socket.exists() {
        return Err(Error::Failed(format!(
            "{UNIT} was started but {} is still missing",
            paths.podman_socket.display()
        )));
    }
    outln!(
        "{UNIT} ({} scope): enabled and started, for podman's API socket {}",
        paths.scope,
        paths.podman_socket.display()
    );
    Ok(())
}

/// Before a new registry's spec is written: another registry's root,
/// storage, database or port, or a container, pod, volume, unit file or
/// trust entry under its names that is not its own, is refused here rather
/// than by the controller later.
async fn refuse_collisions(paths: &Paths, r: &Resolved) -> Result<()> {
    let mut problems = paths.clashes_with_others(r)?;
    let desired = crate::render::render(r, &paths.render_context()).map_err(Error::Failed)?;
    let podman = Podman::connect(&paths.podman_socket).await?;
    let unit_dir = systemd::unit_dir(paths.scope)?;
    let certs_d = crate::settings::certs_d();
    let record = record::load(&paths.state_dir, &r.name)?;
    problems.extend(
        admission::foreign_objects((&unit_dir, &certs_d), &podman, r, &desired, record.as_ref())
            .await
            .map_err(|e| Error::Failed(e.to_string()))?,
    );
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::Failed(format!(
        "mirrorregistry/{} cannot be installed:\n  {}\nnothing was written; choose another --name, --quayRoot, storage or port, or remove what is in the way",
        r.name,
        problems.join("\n  ")
    )))
}

pub async fn upgrade(paths: &Paths, mut a: UpgradeArgs) -> Result<i32> {
    let name = a.name.clone();
    if let Some(target) = super::remote::Target::from_args(&a.remote)? {
        return super::remote::run(super::remote::Remote {
            target,
            verb: "upgrade",
            copy: true,
            controller_bin: a.run.controller.controller_bin.as_deref(),
            archive: a.image_archive.as_deref(),
            password: None,
            name: &name,
        });
    }
    let r = paths.find(&name)?;
    let (loaded, file) = match (r.loaded(), r.file()) {
        (Some(l), Some(f)) => (l.clone(), f.to_path_buf()),
        _ => {
            return Err(Error::Failed(format!(
            "mirrorregistry/{name} has no valid spec file to upgrade (see `mrctl describe {name}`)"
        )))
        }
    };
    let any = a.registry_image.is_some()
        || a.quay_image.is_some()
        || a.redis_image.is_some()
        || a.pause_image.is_some();
    // Run from an unpacked bundle: its archive, and without image flags its
    // images for this registry's engine, as install does.
    let mut bundle_images = std::collections::BTreeMap::new();
    if a.image_archive.is_none() {
        if let Some(found) = super::bundle::beside_self()? {
            outln!("image archive beside mrctl: {}", found.archive.display());
            if !any {
                let engine = serde_json::to_value(loaded.resource.spec.engine)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                bundle_images = found.images(&engine);
            }
            a.image_archive = Some(found.archive);
        }
    }
    let mut edits: Vec<(&str, Option<serde_yaml::Value>)> = Vec::new();
    for (key, flag) in [
        ("registry", &a.registry_image),
        ("quay", &a.quay_image),
        ("redis", &a.redis_image),
        ("pause", &a.pause_image),
    ] {
        match (flag, bundle_images.get(key)) {
            (Some(img), _) | (None, Some(img)) => edits.push((key, Some(img.clone().into()))),
            // Unpinned: the defaults of this version.
            (None, None) if !any && key != "pause" => edits.push((key, None)),
            (None, None) => {}
        }
    }
    if let Some(arch) = &a.image_archive {
        edits.push(("archive", Some(absolute(arch).display().to_string().into())));
    }
    let apply = |doc: &mut serde_yaml::Value| {
        for (k, v) in &edits {
            set_spec_value(doc, &["images", k], v.clone());
        }
        // No empty `images:` left behind.
        if let Some(spec) = doc.get_mut("spec").and_then(|s| s.as_mapping_mut()) {
            if spec
                .get("images")
                .and_then(|i| i.as_mapping())
                .is_some_and(|m| m.is_empty())
            {
                spec.remove("images");
            }
        }
    };
    // The new spec, checked before anything changes.
    let mut doc: serde_yaml::Value = serde_yaml::from_slice(&paths.read_spec(&file)?)
        .map_err(|e| Error::Failed(format!("{}: {e}", file.display())))?;
    apply(&mut doc);
    let new_text = serde_yaml::to_string(&doc)
        .map_err(|e| Error::Failed(format!("cannot write the spec: {e}")))?;
    let new_loaded = load::parse(&file, new_text.as_bytes())
        .map_err(|inv| Error::Usage(format!("the upgraded spec would not be valid:\n{inv}")))?;
    let old = defaults::resolve(&loaded.resource, &loaded.name, paths.host());
    let new = defaults::resolve(&new_loaded.resource, &new_loaded.name, paths.host());
    crate::render::render(&new, &paths.render_context()).map_err(Error::Failed)?;

    let images = |x: &Resolved| {
        crate::render::render(x, &paths.render_context())
            .map(|d| d.images)
            .unwrap_or_default()
    };
    let (before, after) = (images(&old), images(&new));
    // The new images loaded here, with progress, before the spec changes:
    // an archive that lacks one stops the upgrade with nothing changed.
    if let Some(archive) = &a.image_archive {
        let podman = Podman::connect(&paths.podman_socket).await?;
        super::bundle::load(&podman, &absolute(archive), &after).await?;
    }
    let systemd = Systemd::connect(paths.scope).await?;
    ensure_controller(paths, &systemd, &a.run).await?;
    if old == new {
        outln!("mirrorregistry/{name} is up to date ({})", after.join(", "));
    } else {
        edit_spec(paths, &file, apply)?;
        outln!(
            "mirrorregistry/{name}: images {} -> {}",
            before.join(", "),
            after.join(", ")
        );
    }
    let Some(r) = wait_ready(paths, &name, a.run.timeout).await? else {
        return Ok(EXIT_FAILED);
    };
    if old != new {
        outln!(
            "mirrorregistry/{} upgraded; data, config and credentials kept ({})",
            r.name,
            r.status
                .as_ref()
                .and_then(|s| s.endpoint.clone())
                .unwrap_or_default()
        );
    }
    Ok(EXIT_OK)
}
