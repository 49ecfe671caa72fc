//! Files the controller owns: written atomically, only when their content or
//! mode differs, so a converged reconcile touches nothing on disk.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Files written by this process, so benchmarks can show that a converged
/// reconcile writes nothing.
static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn writes() -> u64 {
    WRITES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Counts a write made outside this module (the spec file's status splice).
pub fn count_write() {
    WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Marks the controller's temp files (atomic writes in progress), so the
/// watchers pass over them and a later run can sweep what a killed one left.
pub const TEMP_MARKER: &str = ".mr-tmp";

/// The start of this process's temp file names after any per-file part:
/// the marker and the pid, so a later run tells a dead writer's leftovers
/// from a write in progress.
pub fn temp_prefix() -> String {
    format!("{TEMP_MARKER}-{}-", std::process::id())
}

/// The pid a temp file name carries, if it is one of ours.
fn temp_writer(file_name: &str) -> Option<u32> {
    let at = file_name.find(TEMP_MARKER)? + TEMP_MARKER.len();
    let rest = file_name[at..].strip_prefix('-')?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

/// Removes temp files directly in `dir` whose writer is gone: a process
/// killed between creating a temp file and renaming it into place leaves one
/// behind. Files of live writers are left alone. Returns what was removed.
pub fn remove_stale_temps(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return removed;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = temp_writer(&name) else {
            continue;
        };
        let alive = Path::new("/proc").join(pid.to_string()).exists();
        if !alive && e.file_type().is_ok_and(|t| t.is_file()) && fs::remove_file(e.path()).is_ok() {
            removed.push(e.path());
        }
    }
    removed
}

/// Wraps an I/O error with what was being done and to which path.
pub fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a file, `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", path)(e)),
    }
}

/// Makes sure `path` is a directory with exactly `mode`. Returns true when it
/// created the directory or changed its mode.
pub fn ensure_dir(path: &Path, mode: u32) -> Result<bool> {
    let mut changed = false;
    if !path.is_dir() {
        fs::create_dir_all(path).map_err(io("create directory", path))?;
        changed = true;
    }
    changed |= ensure_mode(path, mode)?;
    Ok(changed)
}

/// Sets the permission bits of `path` to `mode` when they differ.
pub fn ensure_mode(path: &Path, mode: u32) -> Result<bool> {
    let meta = fs::metadata(path).map_err(io("stat", path))?;
    if meta.permissions().mode() & 0o7777 == mode {
        return Ok(false);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io("chmod", path))?;
    Ok(true)
}

/// Writes `content` to `path` with `mode` unless the file already holds
/// exactly that. The write is atomic (temp file in the same directory, fsync,
/// rename), so readers never see half a file. Returns true when it wrote or
/// changed the mode.
pub fn write_if_changed(path: &Path, content: &[u8], mode: u32) -> Result<bool> {
    if read_optional(path)?.as_deref() == Some(content) {
        return ensure_mode(path, mode);
    }
    atomic_write(path, content, mode)?;
    Ok(true)
}

/// Atomically replaces `path` with `content`, created with `mode` from the
/// start so a secret is never briefly readable by others.
pub fn atomic_write(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    count_write();
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(&temp_prefix())
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(io("create temp file in", dir))?;
    tmp.write_all(content).map_err(io("write", path))?;
    tmp.as_file().sync_all().map_err(io("fsync", path))?;
    // tempfile's mode is filtered by the umask; set it exactly.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode)).map_err(io("chmod", path))?;
    tmp.persist(path).map_err(|e| Error::Io {
        op: "rename into place",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Removes a file; a missing file is not an error. Returns true when removed.
pub fn remove_if_exists(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io("remove", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_if_changed_writes_once_and_keeps_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        assert!(write_if_changed(&p, b"abc", 0o600).unwrap());
        assert!(!write_if_changed(&p, b"abc", 0o600).unwrap());
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            write_if_changed(&p, b"abc", 0o600).unwrap(),
            "mode drift is repaired"
        );
        assert!(write_if_changed(&p, b"abcd", 0o600).unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"abcd");
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(TEMP_MARKER))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn stale_temps_of_dead_writers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A pid that is surely gone: a child that has been reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let own = std::process::id();
        for n in [
            format!(".mr-tmp-{dead}-abc"),
            format!(".quay.yaml.mr-tmp-{dead}-xyz"),
            format!(".mr-tmp-{own}-live"),
            ".mr-tmp-nopid".to_string(),
            "quay.yaml".to_string(),
        ] {
            fs::write(d.join(n), b"x").unwrap();
        }
        let mut removed: Vec<String> = remove_stale_temps(d)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        removed.sort();
        assert_eq!(
            removed,
            vec![
                format!(".mr-tmp-{dead}-abc"),
                format!(".quay.yaml.mr-tmp-{dead}-xyz")
            ]
        );
        assert!(d.join(format!(".mr-tmp-{own}-live")).exists());
        assert!(d.join(".mr-tmp-nopid").exists());
        assert!(d.join("quay.yaml").exists());
        assert_eq!(temp_writer(&format!("{}ab", temp_prefix())), Some(own));
    }
}
