//! `mrctl validate -f FILE...`: each file's problems with their field paths,
//! then collisions (a shared root, storage, database or port) among the
//! files given and with the registries already known here.

use std::path::PathBuf;

use super::state::Paths;
use crate::api::defaults::{self, Resolved};
use crate::api::load;
use crate::reconcile::claims;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Spec files to check.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
}

pub fn run(paths: &Paths, args: Args) -> super::Result<i32> {
    let mut code = 0;
    let mut valid: Vec<(PathBuf, Resolved)> = Vec::new();
    for file in &args.files {
        let result = std::fs::read(file)
            .map_err(|e| format!("{}: cannot read: {e}", file.display()))
            .and_then(|bytes| load::parse(file, &bytes).map_err(|e| e.to_string()));
        match result {
            Ok(l) => {
                outln!("{}: valid (MirrorRegistry {})", file.display(), l.name);
                let r = defaults::resolve(&l.resource, &l.name, paths.host());
                valid.push((file.clone(), r));
            }
            Err(e) => {
                outln!("{e}");
                code = 1;
            }
        }
    }
    for (i, (fa, a)) in valid.iter().enumerate() {
        for (fb, b) in &valid[i + 1..] {
            let problem = if a.name == b.name {
                vec![format!(
                    "metadata.name {} is also {}'s",
                    a.name,
                    fb.display()
                )]
            } else {
                let (ca, cb) = (claims::of(a), claims::of(b));
                claims::describe(
                    &format!("{} ({})", b.name, fb.display()),
                    &claims::clashes(&ca, &cb),
                )
            };
            for p in problem {
                outln!("{}: {p}", fa.display());
                code = 1;
            }
        }
    }
    // Against what this host already runs: a file for a known name is that
    // registry's new spec, not a second registry.
    for (f, r) in &valid {
        match paths.clashes_with_others(r) {
            Ok(lines) => {
                for line in lines {
                    outln!("{}: {line}", f.display());
                    code = 1;
                }
            }
            // Checking a file needs no access to the host's registries.
            Err(e) => {
                eprintln!("note: not checked against the registries on this host: {e}");
                break;
            }
        }
    }
    Ok(code)
}
