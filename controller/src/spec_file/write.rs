//! Replacing a user's spec file without ever losing an edit the controller
//! has not read: the new text goes to a temp file beside it and is renamed
//! over the original only if the original still holds the bytes the new text
//! was computed from.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::host::files::{self, io};

/// Marks the controller's own temp files, so the directory watcher and the
/// spec scanner pass over them.
pub const TEMP_MARKER: &str = crate::host::files::TEMP_MARKER;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{path} is a symlink (a git-sync or ConfigMap style checkout); it is left as it is and \
         its status is kept in the state directory only"
    )]
    Symlink { path: PathBuf },
    #[error("{path} is not a regular file")]
    NotRegular { path: PathBuf },
    #[error(transparent)]
    Files(#[from] files::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The file now holds the new text.
    Written,
    /// The file changed since it was read: nothing was written.
    Conflict,
    /// The file is gone: nothing was written (a deleted spec is not brought back).
    Missing,
}

/// Atomically replaces the spec file at `path` with `new_text`, only if its
/// bytes still equal `read_text` (what the caller read and based its decision
/// on). Keeps the file's mode and owner. A symlink is never replaced (that
/// would turn a managed checkout into a stray file): that is
/// [`Error::Symlink`], and the caller keeps status in its state directory.
///
/// The bytes are compared again right before the rename; an edit landing in
/// the instant between that check and the rename is the one race left.
pub fn replace_if_unchanged(path: &Path, read_text: &[u8], new_text: &[u8]) -> Result<Outcome> {
    replace_with(path, read_text, new_text, || {}, || {})
}

/// `before_recheck` runs after the temp file is ready and before the second
/// comparison, `before_exchange` after it; tests use them to land an edit
/// in those windows.
fn replace_with(
    path: &Path,
    read_text: &[u8],
    new_text: &[u8],
    before_recheck: impl FnOnce(),
    before_exchange: impl FnOnce(),
) -> Result<Outcome> {
    let Some(meta) = check_file(path)? else {
        return Ok(Outcome::Missing);
    };
    match files::read_optional(path)? {
        None => return Ok(Outcome::Missing),
        Some(current) if current != read_text => return Ok(Outcome::Conflict),
        Some(_) => {}
    }
    if new_text == read_text {
        return Ok(Outcome::Written);
    }

    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mode = meta.permissions().mode() & 0o7777;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}{}", crate::host::files::temp_prefix()))
        .permissions(fs::Permissions::from_mode(mode & 0o777))
        .tempfile_in(dir)
        .map_err(io("create temp file in", dir))?;
    let tmp_path = tmp.path().to_path_buf();
    tmp.write_all(new_text).map_err(io("write", &tmp_path))?;
    let file = tmp.as_file();
    let tmp_meta = file.metadata().map_err(io("stat", &tmp_path))?;
    if (tmp_meta.uid(), tmp_meta.gid()) != (meta.uid(), meta.gid()) {
        std::os::unix::fs::fchown(file, Some(meta.uid()), Some(meta.gid()))
            .map_err(io("chown", &tmp_path))?;
    }
    // After chown, which clears set-id bits; and exact, not filtered by the umask.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io("chmod", &tmp_path))?;
    file.sync_all().map_err(io("fsync", &tmp_path))?;

    before_recheck();
    // Dropping `tmp` on any early return removes the temp file.
    if check_file(path)?.is_none() {
        return Ok(Outcome::Missing);
    }
    match files::read_optional(path)? {
        None => return Ok(Outcome::Missing),
        Some(current) if current != read_text => return Ok(Outcome::Conflict),
        Some(_) => {}
    }
    before_exchange();
    // The check above and the rename are two steps; an edit landing
    // between them (a scheduler pause is enough) would be replaced. So the
    // files are exchanged atomically, and what was displaced is compared:
    // an edit found there is put back, and the write reported a conflict.
    match exchange(&tmp_path, path) {
        Ok(()) => {
            if files::read_optional(&tmp_path)?.as_deref() != Some(read_text) {
                exchange(&tmp_path, path).map_err(io("put back an edit into", path))?;
                // Dropping `tmp` removes what is now at its path: our text.
                return Ok(Outcome::Conflict);
            }
            // Dropping `tmp` removes the displaced old file.
            drop(tmp);
        }
        // A filesystem without RENAME_EXCHANGE: a plain rename.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
            tmp.persist(path).map_err(|e| files::Error::Io {
                op: "rename into place",
                path: path.to_path_buf(),
                source: e.error,
            })?;
        }
        Err(e) => return Err(io("exchange into place", path)(e).into()),
    }
    crate::host::files::count_write();
    if let Err(e) = fs::File::open(dir).and_then(|d| d.sync_all()) {
        // The rename happened; only its durability across a crash is in doubt.
        tracing::warn!(dir = %dir.display(), error = %e, "fsync of the spec directory failed");
    }
    Ok(Outcome::Written)
}

/// The file's metadata when it is a regular file, `None` when it is missing.
/// Swaps the files at `a` and `b` in one step (`renameat2` with
/// `RENAME_EXCHANGE`); both stay in place under the other's name.
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        a,
        rustix::fs::CWD,
        b,
        rustix::fs::RenameFlags::EXCHANGE,
    )
    .map_err(std::io::Error::from)
}

fn check_file(path: &Path) -> Result<Option<fs::Metadata>> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("stat", path)(e).into()),
    };
    if meta.file_type().is_symlink() {
        return Err(Error::Symlink {
            path: path.to_path_buf(),
        });
    }
    if !meta.is_file() {
        return Err(Error::NotRegular {
            path: path.to_path_buf(),
        });
    }
    Ok(Some(meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn temp_files(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(TEMP_MARKER))
            .collect()
    }

    #[test]
    fn writes_and_keeps_mode_and_owner() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("quay.yaml");
        fs::write(&p, b"a: 1\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        // Another owner can only be set when running as root; then it must be kept too.
        let chowned = std::os::unix::fs::chown(&p, Some(4321), Some(4322)).is_ok();
        let before = fs::metadata(&p).unwrap();

        assert_eq!(
            replace_if_unchanged(&p, b"a: 1\n", b"a: 1\nstatus: {}\n").unwrap(),
            Outcome::Written
        );
        assert_eq!(fs::read(&p).unwrap(), b"a: 1\nstatus: {}\n");
        let after = fs::metadata(&p).unwrap();
        assert_ne!(
            before.ino(),
            after.ino(),
            "replaced by rename, not rewritten in place"
        );
        assert_eq!(after.permissions().mode() & 0o7777, 0o640);
        assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
        if chowned {
            assert_eq!((after.uid(), after.gid()), (4321, 4322));
        }
        assert!(temp_files(dir.path()).is_empty());
    }

    #[test]
    fn same_text_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("quay.yaml");
        fs::write(&p, b"a: 1\n").unwrap();
        let ino = fs::metadata(&p).unwrap().ino();
        assert_eq!(
            replace_if_unchanged(&p, b"a: 1\n", b"a: 1\n").unwrap(),
            Outcome::Written
        );
        assert_eq!(fs::metadata(&p).unwrap().ino(), ino);
    }

    #[test]
    fn conflict_when_edited_after_reading() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("quay.yaml");
        fs::write(&p, b"a: 1\n").unwrap();
        let read_text = fs::read(&p).unwrap();
        fs::write(&p, b"a: 2 # the user's edit\n").unwrap();
        assert_eq!(
            replace_if_unchanged(&p, &read_text, b"a: 1\nstatus: {}\n").unwrap(),
            Outcome::Conflict
        );
        assert_eq!(fs::read(&p).unwrap(), b"a: 2 # the user's edit\n");
        assert!(temp_files(dir.path()).is_empty());
    }

    #[test]
    fn conflict_when_edited_while_writing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("quay.yaml");
        fs::write(&p, b"a: 1\n").unwrap();
        let out = replace_with(
            &p,
            b"a: 1\n",
            b"a: 1\nstatus: {}\n",
            || {
                assert_eq!(temp_files(dir.path()).len(), 1, "temp file is ready by now");
                fs::write(&p, b"a: 3\n").unwrap();
            },
            || {},
        )
        .unwrap();
        assert_eq!(out, Outcome::Conflict);
        assert_eq!(fs::read(&p).unwrap(), b"a: 3\n");
        assert!(temp_files(dir.path()).is_empty());

        let out = replace_with(
            &p,
            b"a: 3\n",
            b"b: 1\n",
            || fs::remove_file(&p).unwrap(),
            || {},
        )
        .unwrap();
        assert_eq!(out, Outcome::Missing);
        assert!(!p.exists());
        assert!(temp_files(dir.path()).is_empty());
    }

    #[test]
    fn missing_file_is_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("gone.yaml");
        assert_eq!(
            replace_if_unchanged(&p, b"a: 1\n", b"b: 2\n").unwrap(),
            Outcome::Missing
        );
        assert!(!p.exists());
        assert!(temp_files(dir.path()).is_empty());
    }

    #[test]
    fn symlink_is_refused() {
        // The Kubernetes ConfigMap layout: name.yaml -> ..data/name.yaml,
        // ..data -> ..2026_x.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir(d.join("..2026_x")).unwrap();
        fs::write(d.join("..2026_x/quay.yaml"), b"a: 1\n").unwrap();
        symlink("..2026_x", d.join("..data")).unwrap();
        let p = d.join("quay.yaml");
        symlink("..data/quay.yaml", &p).unwrap();

        let err = replace_if_unchanged(&p, b"a: 1\n", b"a: 1\nstatus: {}\n").unwrap_err();
        assert!(matches!(err, Error::Symlink { .. }), "{err}");
        assert!(err.to_string().contains("quay.yaml"), "{err}");
        assert!(fs::symlink_metadata(&p).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(&p).unwrap(), b"a: 1\n");
        assert!(temp_files(d).is_empty());
    }

    #[test]
    fn an_edit_after_the_last_check_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("quay.yaml");
        // In place (same inode), and renamed over (an editor's save).
        for renamed in [false, true] {
            fs::write(&p, b"a: 1\n").unwrap();
            let edit = || {
                if renamed {
                    let t = dir.path().join("edit.tmp");
                    fs::write(&t, b"a: 2\n").unwrap();
                    fs::rename(&t, &p).unwrap();
                } else {
                    fs::write(&p, b"a: 2\n").unwrap();
                }
            };
            let got = replace_with(&p, b"a: 1\n", b"a: 1\nstatus: {}\n", || {}, edit).unwrap();
            assert_eq!(got, Outcome::Conflict, "renamed: {renamed}");
            assert_eq!(fs::read(&p).unwrap(), b"a: 2\n", "renamed: {renamed}");
            assert!(temp_files(dir.path()).is_empty());
        }
        // Without an edit the exchange writes, and leaves no old file.
        fs::write(&p, b"a: 1\n").unwrap();
        let got = replace_with(&p, b"a: 1\n", b"a: 1\nstatus: {}\n", || {}, || {}).unwrap();
        assert_eq!(got, Outcome::Written);
        assert_eq!(fs::read(&p).unwrap(), b"a: 1\nstatus: {}\n");
        assert!(temp_files(dir.path()).is_empty());
    }

    #[test]
    fn directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("quay.yaml");
        fs::create_dir(&p).unwrap();
        let err = replace_if_unchanged(&p, b"", b"a: 1\n").unwrap_err();
        assert!(matches!(err, Error::NotRegular { .. }), "{err}");
        assert!(temp_files(dir.path()).is_empty());
    }
}
