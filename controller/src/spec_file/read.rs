//! Reading a spec candidate safely: a bounded read of a regular file inside
//! the watched directory, and, in system scope, only files as trustworthy as
//! sshd's StrictModes wants (owned by root, not writable by others), since
//! whoever writes a spec there runs containers as root.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::api::load::MAX_SPEC_BYTES;

/// Reads a spec file, or says in one sentence why it is refused.
pub fn read_spec(path: &Path, watch_dir: &Path, strict: bool) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file; refused"));
    }
    let real = std::fs::canonicalize(path).map_err(|e| format!("{shown}: cannot resolve: {e}"))?;
    let dir = std::fs::canonicalize(watch_dir).unwrap_or_else(|_| watch_dir.to_path_buf());
    if !real.starts_with(&dir) {
        return Err(format!(
            "{shown} resolves to {}, outside the watched directory {}; refused",
            real.display(),
            dir.display()
        ));
    }
    if strict {
        if meta.uid() != 0 {
            return Err(format!(
                "{shown} is owned by uid {}, not root; refused (a spec runs containers as root)",
                meta.uid()
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(format!(
                "{shown} is writable by group or others (mode {:04o}); refused",
                meta.mode() & 0o7777
            ));
        }
    }
    if meta.len() > MAX_SPEC_BYTES as u64 {
        return Err(format!(
            "{shown} is {} bytes; a spec is at most {MAX_SPEC_BYTES}",
            meta.len()
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SPEC_BYTES as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("{shown}: cannot read: {e}"))?;
    if bytes.len() > MAX_SPEC_BYTES {
        return Err(format!(
            "{shown} grew past {MAX_SPEC_BYTES} bytes while read"
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn refusals() {
        let d = tempfile::tempdir().unwrap();
        let watch = d.path().join("w");
        std::fs::create_dir(&watch).unwrap();
        let ok = watch.join("a.yaml");
        std::fs::write(&ok, "x: 1\n").unwrap();
        std::fs::set_permissions(&ok, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_spec(&ok, &watch, false).unwrap(), b"x: 1\n");

        let outside = d.path().join("secret.yaml");
        std::fs::write(&outside, "x: 1\n").unwrap();
        let link = watch.join("b.yaml");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        assert!(read_spec(&link, &watch, false)
            .unwrap_err()
            .contains("outside the watched directory"));

        // A link inside the directory (the Kubernetes ..data layout) is fine.
        std::fs::create_dir(watch.join("..data")).unwrap();
        std::fs::write(watch.join("..data/c.yaml"), "x: 2\n").unwrap();
        std::os::unix::fs::symlink("..data/c.yaml", watch.join("c.yaml")).unwrap();
        assert_eq!(
            read_spec(&watch.join("c.yaml"), &watch, false).unwrap(),
            b"x: 2\n"
        );

        std::fs::set_permissions(&ok, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = read_spec(&ok, &watch, true).unwrap_err();
        if std::fs::metadata(&ok).unwrap().uid() == 0 {
            assert!(e.contains("writable by group or others"), "{e}");
            // Owned by someone else (only root can give a file away).
            std::fs::set_permissions(&ok, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(read_spec(&ok, &watch, true).is_ok());
            std::os::unix::fs::chown(&ok, Some(4321), None).unwrap();
            let e = read_spec(&ok, &watch, true).unwrap_err();
            assert!(e.contains("owned by uid 4321, not root"), "{e}");
            assert!(
                read_spec(&ok, &watch, false).is_ok(),
                "user scope does not ask"
            );
        }

        let dir = watch.join("d.yaml");
        std::fs::create_dir(&dir).unwrap();
        assert!(read_spec(&dir, &watch, false)
            .unwrap_err()
            .contains("not a regular file"));

        let huge = watch.join("h.yaml");
        std::fs::write(&huge, vec![b'#'; MAX_SPEC_BYTES + 10]).unwrap();
        assert!(read_spec(&huge, &watch, false)
            .unwrap_err()
            .contains("at most"));
    }
}
