//! `mrctl backup NAME -o FILE.tar`: the registry's spec, root (TLS, CA,
//! credentials, engine secrets), blobs and, for quay, its database, in one
//! tar file (mode 0600: it holds secrets), while the registry serves.
//!
//! Consistent without stopping pushes: blobs are written before the links
//! naming them and never change, so the repositories (tags, manifest
//! links) are copied first and the blobs after; every link copied then
//! names a blob that is copied too. The maintenance marker keeps a garbage
//! collection from deleting blobs meanwhile.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::super::state::Paths;
use super::super::{Error, Result};
use super::archive::{self, Checksums, Header};
use crate::api::day2::human_bytes;
use crate::api::defaults::Resolved;
use crate::api::Engine;
use crate::host::files;
use crate::spec_file::splice::without_status;
use crate::store::{self, maintenance};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The registry's name.
    pub name: String,
    /// The tar file to write (refused when it exists).
    #[arg(short = 'o', long = "output", value_name = "FILE.tar")]
    pub output: PathBuf,
}

/// Where the distribution registry keeps tags and manifest links.
const REPOSITORIES: &str = "docker/registry/v2/repositories";

pub async fn run(paths: &Paths, a: Args) -> Result<i32> {
    let r = super::resolved(paths, &a.name)?;
    let reg = paths.find(&a.name)?;
    let spec_file = reg
        .file()
        .ok_or_else(|| Error::Failed(format!("mirrorregistry/{}: no spec file", r.name)))?
        .to_path_buf();
    let text = String::from_utf8(paths.read_spec(&spec_file)?)
        .map_err(|_| Error::Failed(format!("{}: not UTF-8 text", spec_file.display())))?;
    if a.output.symlink_metadata().is_ok() {
        return Err(Error::Failed(format!(
            "{} exists; choose another file or remove it",
            a.output.display()
        )));
    }
    let storage = super::storage_dir(paths, &r).await?;
    let database = match (&r.engine, &r.database) {
        (Engine::Quay, Some(d)) => Some(
            crate::reconcile::steps::storage_usage::host_dir(
                &crate::host::podman::Podman::connect(&paths.podman_socket).await?,
                d,
            )
            .await
            .map_err(|e| Error::Failed(format!("mirrorregistry/{}: database: {e}", r.name)))?,
        ),
        _ => None,
    };
    maintenance::take(&paths.state_dir, &r.name, "backup", false).map_err(Error::Failed)?;
    let result = write(
        &a.output,
        &r,
        &without_status(&text),
        &storage,
        database.as_deref(),
    );
    maintenance::release(&paths.state_dir, &r.name)?;
    let (files, bytes, took) = result?;
    outln!(
        "mirrorregistry/{}: backed up {files} files ({}) to {} in {:.1} s",
        r.name,
        human_bytes(bytes),
        a.output.display(),
        took.as_secs_f64()
    );
    Ok(super::super::EXIT_OK)
}

/// Writes the archive beside `out` and renames it into place once whole.
fn write(
    out: &Path,
    r: &Resolved,
    spec: &str,
    storage: &Path,
    database: Option<&Path>,
) -> Result<(usize, u64, Duration)> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".mrctl-backup-")
        .tempfile_in(dir)
        .map_err(|e| Error::Failed(format!("create a file in {}: {e}", dir.display())))?;
    // tempfile makes it 0600: it holds the registry's keys and passwords.
    let total = [
        Some(&r.root),
        Some(&storage.to_path_buf()),
        database.map(Path::to_path_buf).as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|d| crate::reconcile::steps::storage_usage::used_bytes(d).unwrap_or(0))
    .sum();
    let mut w = Writer {
        tar: tar::Builder::new(BufWriter::with_capacity(
            1 << 20,
            tmp.as_file().try_clone().map_err(io(out))?,
        )),
        sums: Checksums::default(),
        bytes: 0,
        total,
        started: Instant::now(),
        shown: Instant::now(),
    };
    let header = Header {
        format: archive::FORMAT,
        name: r.name.clone(),
        engine: r.engine.as_str().to_string(),
        created: store::now_rfc3339(),
        bytes: total,
    };
    let json = serde_json::to_vec_pretty(&header).map_err(|e| Error::Failed(e.to_string()))?;
    w.data(archive::HEADER, &json).map_err(io(out))?;
    w.data(archive::SPEC, spec.as_bytes()).map_err(io(out))?;
    w.tree(&r.root, archive::ROOT, &|_| true).map_err(io(out))?;
    let repos = storage.join(REPOSITORIES);
    // Links first, then what they name (see the module's comment).
    if repos.is_dir() {
        w.tree(
            &repos,
            &format!("{}/{REPOSITORIES}", archive::STORAGE),
            &|_| true,
        )
        .map_err(io(out))?;
    }
    w.tree(storage, archive::STORAGE, &|p| !p.starts_with(&repos))
        .map_err(io(out))?;
    if let Some(d) = database {
        w.tree(d, archive::DATABASE, &|_| true).map_err(io(out))?;
    }
    let sums = serde_json::to_vec(&w.sums).map_err(|e| Error::Failed(e.to_string()))?;
    let files = w.sums.files.len();
    w.data(archive::CHECKSUMS, &sums).map_err(io(out))?;
    let mut inner = w.tar.into_inner().map_err(io(out))?;
    inner.flush().map_err(io(out))?;
    inner.get_ref().sync_all().map_err(io(out))?;
    tmp.persist_noclobber(out)
        .map_err(|e| Error::Failed(format!("write {}: {}", out.display(), e.error)))?;
    files::count_write();
    Ok((files, w.bytes, w.started.elapsed()))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Failed(format!("write {}: {e}", path.display()))
}

struct Writer<W: Write> {
    tar: tar::Builder<W>,
    sums: Checksums,
    bytes: u64,
    total: u64,
    started: Instant,
    shown: Instant,
}

impl<W: Write> Writer<W> {
    fn data(&mut self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        self.tar.append_data(&mut h, name, bytes)?;
        if name != archive::CHECKSUMS {
            let sum = archive::sum_of(bytes, |_| Ok(()))?;
            self.sums.files.insert(name.to_string(), sum);
        }
        Ok(())
    }

    /// Every directory and regular file under `dir` (symlinks are not
    /// followed, nor kept) that `keep` accepts, named `prefix/…`. Uploads
    /// in progress are left out.
    fn tree(
        &mut self,
        dir: &Path,
        prefix: &str,
        keep: &dyn Fn(&Path) -> bool,
    ) -> std::io::Result<()> {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let mut entries: Vec<_> = std::fs::read_dir(&d)?.collect::<std::io::Result<_>>()?;
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let p = e.path();
                if !keep(&p) || e.file_name() == "_uploads" {
                    continue;
                }
                let meta = p.symlink_metadata()?;
                let rel = p.strip_prefix(dir).unwrap_or(&p);
                let name = format!("{prefix}/{}", rel.display());
                if meta.is_dir() {
                    let mut h = tar::Header::new_gnu();
                    h.set_metadata(&meta);
                    h.set_size(0);
                    self.tar.append_data(&mut h, &name, std::io::empty())?;
                    stack.push(p);
                } else if meta.is_file() {
                    self.file(&p, &name, &meta)?;
                }
            }
        }
        Ok(())
    }

    fn file(&mut self, path: &Path, name: &str, meta: &std::fs::Metadata) -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_metadata(meta);
        // Hashed while it is written: one read of each file.
        let f = File::open(path)?;
        let mut hashed = Hashing {
            inner: std::io::Read::take(f, meta.len()),
            hash: <sha2::Sha256 as sha2::Digest>::new(),
            size: 0,
        };
        self.tar.append_data(&mut h, name, &mut hashed)?;
        if hashed.size != meta.len() {
            return Err(std::io::Error::other(format!(
                "{} changed while it was read",
                path.display()
            )));
        }
        self.bytes += hashed.size;
        self.sums.files.insert(
            name.to_string(),
            archive::Sum {
                sha256: hex::encode(sha2::Digest::finalize(hashed.hash)),
                size: hashed.size,
            },
        );
        if self.shown.elapsed() >= Duration::from_secs(2) {
            self.shown = Instant::now();
            eprintln!(
                "backup: {} files, {} of about {} ({:.0} s)",
                self.sums.files.len(),
                human_bytes(self.bytes),
                human_bytes(self.total),
                self.started.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hash: sha2::Sha256,
    size: u64,
}

impl<R: std::io::Read> std::io::Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.hash, &buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}
