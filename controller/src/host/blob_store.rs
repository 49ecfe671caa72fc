//! The distribution registry's filesystem layout, read from the host:
//! which blobs its tags reach. `mrctl gc` checks the registry's own
//! collector against it, because `garbage-collect --delete-untagged` is
//! known to delete the children of manifest lists (distribution issue
//! 3004): a blob reachable from a tag must never be among those it would
//! delete, nor missing afterwards.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// `<storage>/docker/registry/v2`.
pub fn v2(storage: &Path) -> PathBuf {
    storage.join("docker/registry/v2")
}

/// Where a blob's bytes are: `blobs/sha256/ab/abcd…/data`.
pub fn blob_path(storage: &Path, digest: &str) -> Option<PathBuf> {
    let hex = digest.strip_prefix("sha256:")?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(v2(storage).join(format!("blobs/sha256/{}/{hex}/data", &hex[..2])))
}

/// Every repository directory (one holding `_manifests`), by name.
fn repositories(storage: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let base = v2(storage).join("repositories");
    let mut out = Vec::new();
    if !base.exists() {
        return Ok(out);
    }
    let mut stack = vec![base.clone()];
    while let Some(d) = stack.pop() {
        if d.join("_manifests").is_dir() {
            let name = d
                .strip_prefix(&base)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            out.push((name, d.clone()));
        }
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let n = e.file_name();
            // `_layers`, `_manifests`, `_uploads` are the repository's own.
            if e.file_type()?.is_dir() && !n.to_string_lossy().starts_with('_') {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The digest a link file names.
fn link(path: &Path) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim();
    s.starts_with("sha256:").then(|| s.to_string())
}

/// Every blob a tag reaches: the tagged manifest, and for an index or
/// manifest list each child manifest, then each manifest's config and
/// layers. An error when a reachable manifest cannot be read: then nothing
/// can be said safely.
pub fn reachable_from_tags(storage: &Path) -> Result<BTreeSet<String>, String> {
    let mut seen = BTreeSet::new();
    let repos = repositories(storage).map_err(|e| format!("read {}: {e}", storage.display()))?;
    for (repo, dir) in repos {
        let tags = dir.join("_manifests/tags");
        let Ok(entries) = std::fs::read_dir(&tags) else {
            continue;
        };
        let mut todo: Vec<String> = entries
            .flatten()
            .filter_map(|e| link(&e.path().join("current/link")))
            .collect();
        while let Some(d) = todo.pop() {
            if !seen.insert(d.clone()) {
                continue;
            }
            let path = blob_path(storage, &d).ok_or_else(|| format!("{repo}: bad digest {d}"))?;
            let bytes = std::fs::read(&path)
                .map_err(|e| format!("{repo}: manifest {d} ({}): {e}", path.display()))?;
            let m: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{repo}: manifest {d} is not JSON: {e}"))?;
            let digests = |key: &str| -> Vec<String> {
                m.get(key)
                    .and_then(|x| x.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.get("digest")?.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            // Children of an index are manifests: read them in turn.
            todo.extend(digests("manifests"));
            seen.extend(digests("layers"));
            if let Some(c) = m
                .get("config")
                .and_then(|c| c.get("digest"))
                .and_then(|c| c.as_str())
            {
                seen.insert(c.to_string());
            }
            // Schema 1 manifests name their layers as fsLayers/blobSum.
            if let Some(a) = m.get("fsLayers").and_then(|x| x.as_array()) {
                seen.extend(
                    a.iter()
                        .filter_map(|x| x.get("blobSum")?.as_str().map(str::to_string)),
                );
            }
        }
    }
    Ok(seen)
}

/// Size of a stored blob (0 when it is not there).
pub fn blob_size(storage: &Path, digest: &str) -> u64 {
    blob_path(storage, digest)
        .and_then(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_blob(storage: &Path, body: &[u8]) -> String {
        use sha2::Digest;
        let d = format!("sha256:{}", hex::encode(sha2::Sha256::digest(body)));
        let p = blob_path(storage, &d).unwrap();
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
        d
    }

    #[test]
    fn an_index_reaches_every_child_and_its_layers() {
        let s = tempfile::tempdir().unwrap();
        let (cfg, layer) = (put_blob(s.path(), b"cfg"), put_blob(s.path(), b"layer"));
        let child = put_blob(
            s.path(),
            format!(r#"{{"config":{{"digest":"{cfg}"}},"layers":[{{"digest":"{layer}"}}]}}"#)
                .as_bytes(),
        );
        let index = put_blob(
            s.path(),
            format!(r#"{{"manifests":[{{"digest":"{child}"}}]}}"#).as_bytes(),
        );
        let orphan = put_blob(s.path(), b"orphan");
        let tag = v2(s.path()).join("repositories/a/b/_manifests/tags/v1/current");
        std::fs::create_dir_all(&tag).unwrap();
        std::fs::write(tag.join("link"), &index).unwrap();
        let r = reachable_from_tags(s.path()).unwrap();
        for d in [&cfg, &layer, &child, &index] {
            assert!(r.contains(d), "{d}");
        }
        assert!(!r.contains(&orphan));
        assert_eq!(blob_size(s.path(), &cfg), 3);
    }
}
