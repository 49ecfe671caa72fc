//! The backup file: a plain tar (readable with `tar -tvf`) of
//!
//! | entry | what |
//! |---|---|
//! | `mirror-registry-backup/backup.json` | [`Header`]: format, name, engine, when |
//! | `mirror-registry-backup/spec.yaml` | the spec file without its status |
//! | `root/…` | the registry's root: config, TLS (CA and key), secrets |
//! | `storage/…` | the blobs |
//! | `database/…` | quay: the SQLite database |
//! | `mirror-registry-backup/checksums.json` | sha256 and size of every file entry before it |
//!
//! The checksums come last, so a file cut short anywhere lacks them: a
//! restore reads the whole file and checks every entry against them before
//! it writes anything.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const FORMAT: u32 = 1;
pub const HEADER: &str = "mirror-registry-backup/backup.json";
pub const SPEC: &str = "mirror-registry-backup/spec.yaml";
pub const CHECKSUMS: &str = "mirror-registry-backup/checksums.json";
pub const ROOT: &str = "root";
pub const STORAGE: &str = "storage";
pub const DATABASE: &str = "database";

/// What the file holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    pub format: u32,
    pub name: String,
    pub engine: String,
    pub created: String,
    /// Bytes of the files in the archive, for progress.
    pub bytes: u64,
}

/// sha256 and size of one file entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sum {
    pub sha256: String,
    pub size: u64,
}

/// `checksums.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksums {
    pub files: BTreeMap<String, Sum>,
}

/// Reads `r` to its end, hashing; returns the sum.
pub fn sum_of(
    mut r: impl Read,
    mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<Sum> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        sink(&buf[..n])?;
        size += n as u64;
    }
    Ok(Sum {
        sha256: hex::encode(h.finalize()),
        size,
    })
}

/// An entry's path when it is one a backup may hold: relative, no `..`,
/// under one of the known prefixes.
pub fn safe_entry(p: &Path) -> Option<(&'static str, PathBuf)> {
    if p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    for prefix in [ROOT, STORAGE, DATABASE, "mirror-registry-backup"] {
        if let Ok(rest) = p.strip_prefix(prefix) {
            return Some((prefix, rest.to_path_buf()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_relative_known_entries() {
        assert_eq!(
            safe_entry(Path::new("root/tls/ca.crt")),
            Some((ROOT, PathBuf::from("tls/ca.crt")))
        );
        assert!(safe_entry(Path::new("/etc/passwd")).is_none());
        assert!(safe_entry(Path::new("root/../../etc/passwd")).is_none());
        assert!(safe_entry(Path::new("other/x")).is_none());
        let s = sum_of(&b"abc"[..], |_| Ok(())).unwrap();
        assert_eq!(s.size, 3);
        assert!(s.sha256.starts_with("ba7816bf"));
    }
}
