//! `mrctl restore -f FILE.tar [--name NAME] [--port PORT]`: a registry
//! back from `mrctl backup`, on this host or another. The whole file is
//! read and every entry checked against its checksums before anything is
//! written, so a corrupt or truncated file changes nothing; a failure
//! while writing removes what was written. The spec file goes into the
//! watch directory last, and the controller brings the registry up with
//! the restored CA, certificate and credentials.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::super::state::{self, Paths};
use super::super::{Error, Result};
use super::archive::{self, Checksums, Header};
use crate::api::day2::human_bytes;
use crate::api::defaults::{self, Resolved, Storage};
use crate::api::load;
use crate::host::files;
use crate::host::podman::Podman;
use crate::naming;
use crate::store::record::{self, Record};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The backup file `mrctl backup` wrote.
    #[arg(short = 'f', long = "filename", value_name = "FILE.tar")]
    pub file: PathBuf,
    /// Restore under this name instead of the backed-up one.
    #[arg(long)]
    pub name: Option<String>,
    /// Publish on this port instead of the backed-up one.
    #[arg(long)]
    pub port: Option<u16>,
}

/// What the verifying read found.
struct Verified {
    header: Header,
    spec: String,
}

pub async fn run(paths: &Paths, a: Args) -> Result<i32> {
    let file = &a.file;
    let v = verify(file).map_err(|e| {
        Error::Failed(format!(
            "{}: not a usable backup: {e}; nothing was written",
            file.display()
        ))
    })?;
    let name = a.name.clone().unwrap_or_else(|| v.header.name.clone());
    let text = spec_text(&v.spec, &name, a.port)
        .map_err(|e| Error::Failed(format!("{}: spec.yaml: {e}", file.display())))?;
    let spec_path = paths.watch_dir.join(format!("{name}.yaml"));
    let loaded = load::parse(&spec_path, text.as_bytes()).map_err(|inv| {
        let problems: Vec<String> = inv.problems.iter().map(|p| p.to_string()).collect();
        Error::Failed(format!(
            "{}: its spec is not valid here: {}",
            file.display(),
            problems.join("; ")
        ))
    })?;
    let r = defaults::resolve(&loaded.resource, &loaded.name, paths.host());
    let podman = Podman::connect(&paths.podman_socket).await?;
    refuse_if_taken(paths, &podman, &r, &spec_path).await?;

    let mut made = Made::default();
    let result = write_all(&podman, file, &v, &r, &mut made).await;
    let (files_n, bytes) = match result {
        Ok(x) => x,
        Err(e) => {
            made.undo(&podman).await;
            return Err(e);
        }
    };
    // Recorded as created, so deletionPolicy Delete may remove it later;
    // written just before the spec so no teardown finds a record alone.
    let rec = Record {
        name: r.name.clone(),
        spec_file: spec_path.clone(),
        root: r.root.clone(),
        deletion_policy: r.deletion_policy,
        created_dirs: made.dirs.iter().cloned().collect(),
        files: made.root_files.iter().cloned().collect(),
        volumes: made.volume.iter().cloned().collect(),
        data_paths: made.paths.iter().cloned().collect(),
        ..Record::default()
    };
    let placed = record::save(&paths.state_dir, &rec)
        .map_err(Error::from)
        .and_then(|_| state::place_spec(&paths.watch_dir, &spec_path, &text));
    if let Err(e) = placed {
        let _ = crate::store::remove(&paths.state_dir, &r.name);
        made.undo(&podman).await;
        return Err(e);
    }
    outln!(
        "mirrorregistry/{} restored from {} ({files_n} files, {}) into {}; the controller brings it up: mrctl wait {} --for=condition=Ready",
        r.name,
        file.display(),
        human_bytes(bytes),
        spec_path.display(),
        r.name
    );
    Ok(super::super::EXIT_OK)
}

/// The backed-up spec under `name`, on `port`.
fn spec_text(spec: &str, name: &str, port: Option<u16>) -> std::result::Result<String, String> {
    let mut doc: serde_yaml::Value = serde_yaml::from_str(spec).map_err(|e| e.to_string())?;
    let before = doc.clone();
    if let Some(m) = doc.as_mapping_mut() {
        m.remove("status");
        let meta = m
            .entry("metadata".into())
            .or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
        if let Some(meta) = meta.as_mapping_mut() {
            meta.insert("name".into(), name.into());
        }
    }
    if let Some(p) = port {
        state::set_spec_value(&mut doc, &["port"], Some(p.into()));
    }
    if doc == before {
        return Ok(spec.to_string());
    }
    let comments: String = spec
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let body = serde_yaml::to_string(&doc).map_err(|e| e.to_string())?;
    Ok(format!("{comments}{body}"))
}

/// Refuses a name, port, root or storage another registry has, or that
/// holds data already: a restore never writes over anything.
async fn refuse_if_taken(
    paths: &Paths,
    podman: &Podman,
    r: &Resolved,
    spec_path: &Path,
) -> Result<()> {
    let taken = |what: String| {
        Error::Failed(format!(
            "cannot restore mirrorregistry/{}: {what}; nothing was written (restore under another --name or --port)",
            r.name
        ))
    };
    if let Some(other) = paths.lookup(&r.name)? {
        let where_ = other
            .file()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the controller's state directory".into());
        return Err(taken(format!("the name is in use ({where_})")));
    }
    if spec_path.symlink_metadata().is_ok() {
        return Err(taken(format!("{} exists", spec_path.display())));
    }
    let clashes = paths.clashes_with_others(r)?;
    if !clashes.is_empty() {
        return Err(taken(clashes.join("; ")));
    }
    if not_empty(&r.root) {
        return Err(taken(format!(
            "{} exists and is not empty",
            r.root.display()
        )));
    }
    for s in std::iter::once(&r.storage).chain(r.database.iter()) {
        match s {
            Storage::Path(p) if not_empty(p) => {
                return Err(taken(format!("{} exists and is not empty", p.display())))
            }
            Storage::Volume(v) => {
                if let Some(info) = podman.volume(v).await? {
                    if not_empty(&info.mountpoint) {
                        return Err(taken(format!("volume {v} exists and is not empty")));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn not_empty(p: &Path) -> bool {
    match std::fs::read_dir(p) {
        Ok(mut d) => d.next().is_some(),
        Err(_) => p.symlink_metadata().is_ok(),
    }
}

/// Reads the whole file, checking every entry against `checksums.json`.
fn verify(file: &Path) -> std::result::Result<Verified, String> {
    let f = File::open(file).map_err(|e| e.to_string())?;
    let mut ar = tar::Archive::new(BufReader::with_capacity(1 << 20, f));
    let mut seen = Checksums::default();
    let (mut header, mut spec, mut sums) = (None, None, None);
    let started = Instant::now();
    let mut shown = Instant::now();
    let mut bytes = 0u64;
    for entry in ar.entries().map_err(|e| e.to_string())? {
        let mut e = entry.map_err(|e| format!("unreadable entry: {e}"))?;
        let path = e.path().map_err(|e| e.to_string())?.into_owned();
        let name = path.display().to_string();
        if archive::safe_entry(&path).is_none() {
            return Err(format!("unexpected entry {name}"));
        }
        match e.header().entry_type() {
            tar::EntryType::Directory => continue,
            tar::EntryType::Regular => {}
            other => return Err(format!("entry {name} is a {other:?}, not a file")),
        }
        let keep = [archive::HEADER, archive::SPEC, archive::CHECKSUMS].contains(&name.as_str());
        let mut content = Vec::new();
        let sum = archive::sum_of(&mut e, |b| {
            if keep {
                content.extend_from_slice(b);
            }
            Ok(())
        })
        .map_err(|err| format!("{name}: {err} (the file is cut short or damaged)"))?;
        bytes += sum.size;
        if shown.elapsed() >= Duration::from_secs(2) {
            shown = Instant::now();
            eprintln!(
                "restore: checked {} ({:.0} s)",
                human_bytes(bytes),
                started.elapsed().as_secs_f64()
            );
        }
        match name.as_str() {
            archive::HEADER => header = Some(content),
            archive::SPEC => spec = Some(content),
            archive::CHECKSUMS => {
                sums = Some(content);
                continue;
            }
            _ => {}
        }
        seen.files.insert(name, sum);
    }
    let sums: Checksums =
        serde_json::from_slice(&sums.ok_or("it ends before its checksums (cut short?)")?)
            .map_err(|e| format!("checksums.json: {e}"))?;
    if let Some((name, _)) = sums
        .files
        .iter()
        .find(|(n, s)| seen.files.get(*n) != Some(*s))
    {
        return Err(match seen.files.get(name) {
            None => format!("{name} is missing"),
            Some(_) => format!("{name} does not match its checksum (damaged)"),
        });
    }
    if let Some(extra) = seen.files.keys().find(|n| !sums.files.contains_key(*n)) {
        return Err(format!("{extra} is not in its checksums"));
    }
    let header: Header = serde_json::from_slice(&header.ok_or("no backup.json")?)
        .map_err(|e| format!("backup.json: {e}"))?;
    if header.format != archive::FORMAT {
        return Err(format!(
            "format {} (this mrctl reads {})",
            header.format,
            archive::FORMAT
        ));
    }
    let spec =
        String::from_utf8(spec.ok_or("no spec.yaml")?).map_err(|_| "spec.yaml is not UTF-8")?;
    Ok(Verified { header, spec })
}

/// What the restore created, to undo it on failure and record it on success.
#[derive(Default)]
struct Made {
    dirs: BTreeSet<PathBuf>,
    root_files: BTreeSet<PathBuf>,
    volume: Option<String>,
    paths: BTreeSet<PathBuf>,
    /// Directories whose whole content was written here.
    filled: Vec<PathBuf>,
}

impl Made {
    async fn undo(&self, podman: &Podman) {
        for d in &self.filled {
            if let Ok(entries) = std::fs::read_dir(d) {
                for e in entries.flatten() {
                    let p = e.path();
                    let _ = if p.is_dir() && !p.is_symlink() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                }
            }
        }
        for p in self.paths.iter().chain(self.dirs.iter().rev()) {
            let _ = std::fs::remove_dir(p);
        }
        if let Some(v) = &self.volume {
            let _ = podman.remove_volume(v).await;
        }
    }
}

/// A directory for data, created when missing; returns whether it was.
fn data_dir(p: &Path) -> Result<bool> {
    let missing = p.symlink_metadata().is_err();
    files::ensure_dir(p, 0o700)?;
    Ok(missing)
}

/// The host directory a storage's entries go to: a path (created when
/// missing) or a volume's mountpoint (the volume created, labelled as this
/// registry's, when missing).
async fn target(podman: &Podman, r: &Resolved, s: &Storage, made: &mut Made) -> Result<PathBuf> {
    match s {
        Storage::Path(p) => {
            if data_dir(p)? {
                made.paths.insert(p.clone());
            }
            made.filled.push(p.clone());
            Ok(p.clone())
        }
        Storage::Volume(name) => {
            if podman.volume(name).await?.is_none() {
                podman
                    .create_volume(name, &naming::owner_labels(&r.name))
                    .await?;
                made.volume = Some(name.clone());
            }
            let dir = podman
                .volume(name)
                .await?
                .map(|i| i.mountpoint)
                .ok_or_else(|| Error::Failed(format!("volume {name} vanished")))?;
            made.filled.push(dir.clone());
            Ok(dir)
        }
    }
}

/// Where each part of the archive goes, created; then every entry written.
async fn write_all(
    podman: &Podman,
    file: &Path,
    v: &Verified,
    r: &Resolved,
    made: &mut Made,
) -> Result<(usize, u64)> {
    if data_dir(&r.root)? {
        made.dirs.insert(r.root.clone());
    }
    made.filled.push(r.root.clone());
    let storage = target(podman, r, &r.storage, made).await?;
    let database = match &r.database {
        Some(d) => Some(target(podman, r, d, made).await?),
        None => None,
    };
    let dest = |prefix: &str| match prefix {
        archive::ROOT => Some(r.root.clone()),
        archive::STORAGE => Some(storage.clone()),
        archive::DATABASE => database.clone(),
        _ => None,
    };
    extract(file, v, &dest, made).map_err(|e| {
        Error::Failed(format!(
            "restore from {}: {e}; what was written is removed",
            file.display()
        ))
    })
}

/// The second read: every entry into place, checked again as it is written.
fn extract(
    file: &Path,
    v: &Verified,
    dest: &dyn Fn(&str) -> Option<PathBuf>,
    made: &mut Made,
) -> std::result::Result<(usize, u64), String> {
    let f = File::open(file).map_err(|e| e.to_string())?;
    let mut ar = tar::Archive::new(BufReader::with_capacity(1 << 20, f));
    let (mut n, mut bytes) = (0usize, 0u64);
    let started = Instant::now();
    let mut shown = Instant::now();
    let mut sums: Option<Checksums> = None;
    let mut written = Checksums::default();
    for entry in ar.entries().map_err(|e| e.to_string())? {
        let mut e = entry.map_err(|e| e.to_string())?;
        let path = e.path().map_err(|e| e.to_string())?.into_owned();
        let name = path.display().to_string();
        let (prefix, rel) =
            archive::safe_entry(&path).ok_or_else(|| format!("unexpected entry {name}"))?;
        if name == archive::CHECKSUMS {
            let mut b = Vec::new();
            e.read_to_end(&mut b).map_err(|e| e.to_string())?;
            sums = serde_json::from_slice(&b).ok();
            continue;
        }
        let Some(base) = dest(prefix) else { continue };
        let to = base.join(&rel);
        let mode = e.header().mode().unwrap_or(0o600) & 0o7777;
        let owner = (e.header().uid().ok(), e.header().gid().ok());
        match e.header().entry_type() {
            tar::EntryType::Directory => {
                if to.symlink_metadata().is_err() && prefix == archive::ROOT {
                    made.dirs.insert(to.clone());
                }
                std::fs::create_dir_all(&to).map_err(|err| format!("{}: {err}", to.display()))?;
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode))
                    .map_err(|err| format!("{}: {err}", to.display()))?;
            }
            tar::EntryType::Regular => {
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|err| format!("{}: {err}", parent.display()))?;
                }
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&to)
                    .map_err(|err| format!("{}: {err}", to.display()))?;
                let sum = archive::sum_of(&mut e, |b| out.write_all(b))
                    .map_err(|err| format!("{}: {err}", to.display()))?;
                out.sync_all()
                    .map_err(|err| format!("{}: {err}", to.display()))?;
                if let (Some(uid), Some(gid)) = owner {
                    let _ = std::os::unix::fs::chown(
                        &to,
                        u32::try_from(uid).ok(),
                        u32::try_from(gid).ok(),
                    );
                }
                if prefix == archive::ROOT {
                    made.root_files.insert(to.clone());
                }
                n += 1;
                bytes += sum.size;
                written.files.insert(name, sum);
                if shown.elapsed() >= Duration::from_secs(2) {
                    shown = Instant::now();
                    eprintln!(
                        "restore: {n} files, {} of {} ({:.0} s)",
                        human_bytes(bytes),
                        human_bytes(v.header.bytes),
                        started.elapsed().as_secs_f64()
                    );
                }
            }
            _ => {}
        }
    }
    // The file may have changed since it was checked.
    let sums = sums.ok_or("the checksums are gone")?;
    for (name, sum) in &written.files {
        if sums.files.get(name) != Some(sum) {
            return Err(format!("{name} changed since it was checked"));
        }
    }
    Ok((n, bytes))
}
