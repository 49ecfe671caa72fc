//! `mrctl render -f FILE`: the unit and config files the controller would
//! write for a spec, each under a `# <path>` header, like `helm template`.
//! Pure: nothing is created, written or started.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::state::Paths;
use super::{Error, Result, EXIT_FAILED, EXIT_OK};
use crate::api::{defaults, load};
use crate::host::{files, systemd};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The spec file.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
}

pub fn run(paths: &Paths, args: Args) -> Result<i32> {
    let bytes = std::fs::read(&args.file).map_err(files::io("read", &args.file))?;
    let loaded = match load::parse(&args.file, &bytes) {
        Ok(l) => l,
        Err(invalid) => {
            eprintln!("{invalid}");
            return Ok(EXIT_FAILED);
        }
    };
    let resolved = defaults::resolve(&loaded.resource, &loaded.name, paths.host());
    let desired = crate::render::render(&resolved, &paths.render_context())
        .map_err(|e| Error::Failed(format!("{}: {e}", args.file.display())))?;
    let unit_dir = systemd::unit_dir(paths.scope)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# MirrorRegistry {} (engine {}, {} scope): the files the controller would write.\n# Nothing was changed.",
        resolved.name,
        resolved.engine.as_str(),
        paths.scope
    );
    for u in desired.all_units() {
        let _ = write!(
            out,
            "---\n# {}\n{}",
            unit_dir.join(&u.name).display(),
            u.content
        );
    }
    // spec.garbageCollection.schedule: the timer and its service.
    let gc_command = crate::render::gc::GcCommand {
        mrctl: std::env::current_exe().unwrap_or_else(|_| "mrctl".into()),
        watch_dir: paths.watch_dir.clone(),
        state_dir: paths.state_dir.clone(),
        scope: paths.scope.to_string(),
        podman_socket: paths.podman_socket.clone(),
    };
    for u in crate::render::gc::units(&resolved, &gc_command).map_err(Error::Failed)? {
        let _ = write!(
            out,
            "---\n# {}\n{}",
            unit_dir.join(&u.name).display(),
            u.content
        );
    }
    for f in &desired.files {
        let _ = write!(
            out,
            "---\n# {} (mode {:o})\n{}",
            f.path.display(),
            f.mode,
            f.content
        );
    }
    out.push_str("---\n");
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    let _ = writeln!(
        out,
        "# directories: {}",
        list(
            desired
                .dirs
                .iter()
                .map(|(d, m)| format!("{} ({m:o})", d.display()))
                .collect()
        )
    );
    let _ = writeln!(
        out,
        "# network: {} (mtu {})",
        desired.network.name, desired.network.mtu
    );
    let _ = writeln!(out, "# volumes: {}", list(desired.volumes.clone()));
    let _ = writeln!(
        out,
        "# data paths: {}",
        list(
            desired
                .data_paths
                .iter()
                .map(|p| p.display().to_string())
                .collect()
        )
    );
    let _ = writeln!(
        out,
        "# copied: {}",
        list(
            desired
                .copies
                .iter()
                .map(|c| format!("{} -> {} ({:o})", c.from.display(), c.to.display(), c.mode))
                .collect()
        )
    );
    let _ = writeln!(out, "# images: {}", list(desired.images.clone()));
    // Generated secrets appear above as placeholders; these files keep them.
    let kept = match resolved.engine {
        crate::api::Engine::Distribution => crate::naming::root::htpasswd_file(&resolved.root),
        crate::api::Engine::Quay => crate::naming::root::quay_secrets_file(&resolved.root),
    };
    let _ = writeln!(
        out,
        "# secrets (not shown, kept 0600): {}, {}",
        crate::naming::root::credentials_file(&resolved.root).display(),
        kept.display()
    );
    out!("{out}");
    Ok(EXIT_OK)
}
