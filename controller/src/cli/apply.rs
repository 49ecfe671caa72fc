//! `mrctl apply -f FILE` and `mrctl delete NAME`: the only ways mrctl changes
//! anything is by placing or removing spec files in the watch dir; the
//! controller does the rest.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::state::Paths;
use super::wait::{self, Target};
use super::{Error, Result, EXIT_FAILED, EXIT_OK};
use crate::api::{load, DeletionPolicy};
use crate::host::files;
use crate::spec_file::splice::without_status;

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The spec file; `-` reads standard input.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// The registry's name (a resource word like `mr` may come first).
    #[arg(num_args = 1..=2, required = true, value_name = "NAME")]
    pub args: Vec<String>,
    /// Wait until the controller has torn it down.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: how long.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// A registry that does not exist is not an error.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// Say what would be removed (with deletionPolicy Delete, which
    /// volumes and directories), and remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// What apply did, in kubectl's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Created,
    Configured,
    Unchanged,
}

impl Applied {
    pub fn as_str(self) -> &'static str {
        match self {
            Applied::Created => "created",
            Applied::Configured => "configured",
            Applied::Unchanged => "unchanged",
        }
    }
}

fn read_source(file: &Path) -> Result<Vec<u8>> {
    if file == Path::new("-") {
        let mut b = Vec::new();
        std::io::stdin()
            .read_to_end(&mut b)
            .map_err(files::io("read", Path::new("<stdin>")))?;
        return Ok(b);
    }
    Ok(std::fs::read(file).map_err(files::io("read", file))?)
}

/// Validates `text` and places it into the watch dir, replacing the file
/// that already holds the same name, else as `<name>.yaml`. An invalid
/// spec is refused with every problem; nothing is written then.
pub fn place(paths: &Paths, source: &Path, text: &[u8]) -> Result<(String, PathBuf, Applied)> {
    let loaded = load::parse(source, text).map_err(|invalid| {
        Error::Failed(format!(
            "{invalid}\n{}: not valid; nothing applied",
            source.display()
        ))
    })?;
    let name = loaded.name.clone();
    // A shared root, storage, database or port would be refused by the
    // controller (or take another's): say so before anything is placed.
    let resolved = crate::api::defaults::resolve(&loaded.resource, &name, paths.host());
    let clashes = paths.clashes_with_others(&resolved)?;
    if !clashes.is_empty() {
        return Err(Error::Failed(format!(
            "{}: {}\n{}: collides with another registry; nothing applied",
            source.display(),
            clashes.join(&format!("\n{}: ", source.display())),
            source.display()
        )));
    }
    let existing = paths.lookup(&name)?;
    let files = existing
        .as_ref()
        .map(|r| r.files.clone())
        .unwrap_or_default();
    let dest = match files.as_slice() {
        [] => paths.watch_dir.join(format!("{name}.yaml")),
        [one] => one.clone(),
        many => {
            return Err(Error::Failed(format!(
                "mirrorregistry/{name} is in several files ({}); remove all but one first",
                many.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    };
    if loaded.resource.metadata.name.is_none() && load::name_from_file(&dest) != name {
        return Err(Error::Failed(format!(
            "{}: metadata.name is missing and {} holds mirrorregistry/{name} under another file name; add `metadata: {{name: {name}}}`",
            source.display(),
            dest.display()
        )));
    }
    let text = std::str::from_utf8(text)
        .map_err(|_| Error::Failed(format!("{}: not UTF-8 text", source.display())))?;
    let new = without_status(text);
    let old = files::read_optional(&dest)?;
    if files.is_empty() {
        if let Some(old) = &old {
            // A file of that name that holds another registry.
            let other = load::parse(&dest, old)
                .map(|l| l.name)
                .unwrap_or_else(|_| "an unreadable spec".into());
            return Err(Error::Failed(format!(
                "{} already exists and holds {other}; give mirrorregistry/{name} a file of its own",
                dest.display()
            )));
        }
    }
    let unchanged = old
        .as_deref()
        .and_then(|b| std::str::from_utf8(b).ok())
        .is_some_and(|o| without_status(o) == new);
    if unchanged {
        return Ok((name, dest, Applied::Unchanged));
    }
    super::state::place_spec(&paths.watch_dir, &dest, &new)?;
    let how = if old.is_some() {
        Applied::Configured
    } else {
        Applied::Created
    };
    Ok((name, dest, how))
}

pub fn apply(paths: &Paths, args: ApplyArgs) -> Result<i32> {
    let bytes = read_source(&args.file)?;
    let source = if args.file == Path::new("-") {
        PathBuf::from("<stdin>")
    } else {
        args.file.clone()
    };
    match place(paths, &source, &bytes) {
        Ok((name, _, how)) => {
            outln!("mirrorregistry/{name} {}", how.as_str());
            Ok(EXIT_OK)
        }
        Err(Error::Failed(msg)) => {
            eprintln!("{msg}");
            Ok(EXIT_FAILED)
        }
        Err(e) => Err(e),
    }
}

pub async fn delete(paths: &Paths, args: DeleteArgs) -> Result<i32> {
    let name = match args.args.as_slice() {
        [one] => one.clone(),
        [kind, one] if ["mr", "mirrorregistry", "mirrorregistries"].contains(&kind.as_str()) => {
            one.clone()
        }
        _ => return Err(Error::Usage("delete takes one registry name".into())),
    };
    let Some(r) = paths.lookup(&name)? else {
        if args.ignore_not_found {
            return Ok(EXIT_OK);
        }
        return Err(Error::NotFound(name));
    };
    announce(paths, &r, args.dry_run)?;
    if args.dry_run {
        outln!("mirrorregistry/{name} would be deleted (dry run: nothing changed)");
        return Ok(EXIT_OK);
    }
    if r.files.is_empty() {
        outln!("mirrorregistry/{name} is already being deleted");
    } else {
        for f in &r.files {
            files::remove_if_exists(f)?;
        }
        outln!("mirrorregistry/{name} deleted");
    }
    if args.wait {
        let gone = wait::until(paths, &name, &Target::Delete, args.timeout, &mut |_| {}).await?;
        if !gone {
            eprintln!(
                "error: timed out waiting for the deletion of mirrorregistry/{name}: is the controller running for {}?",
                paths.watch_dir.display()
            );
            return Ok(EXIT_FAILED);
        }
    }
    Ok(EXIT_OK)
}

/// Before a delete: what the teardown will remove besides units, containers
/// and pod. It follows the ownership record's deletionPolicy (the spec as
/// the controller last applied it), so that is what is announced.
fn announce(paths: &Paths, r: &super::state::Registry, dry_run: bool) -> Result<()> {
    // Nothing recorded: nothing was created, nothing to announce.
    let Some(rec) = &r.record else {
        return Ok(());
    };
    let will = if dry_run { "would" } else { "will" };
    if rec.deletion_policy != DeletionPolicy::Delete {
        outln!(
            "mirrorregistry/{}: deletionPolicy Retain: its units, containers, pod and network {will} go; its data {will} be kept",
            r.name
        );
        return Ok(());
    }
    let others = crate::store::record::others_claims(&paths.state_dir, &r.name)?;
    let plan = crate::reconcile::removal::plan(rec, &others);
    outln!(
        "mirrorregistry/{}: deletionPolicy Delete: besides its units, containers, pod and network, the controller {will} remove:",
        r.name
    );
    let lines = plan.lines();
    if lines.is_empty() {
        outln!("  (no data of its own)");
    }
    for l in lines {
        outln!("  - {l}");
    }
    for k in &plan.kept {
        outln!("  kept: {k}");
    }
    Ok(())
}
