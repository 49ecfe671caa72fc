//! What deletionPolicy Delete removes, and nothing else: volumes and data
//! directories the controller created, the files it wrote under the root,
//! and the directories it made for them once they are empty. A directory
//! that existed before (the root a user pointed at, a storage path) is never
//! removed, nor is anything a user put beside the controller's files, nor
//! anything another registry's record claims. Symlinks are never followed
//! out of the tree: a symlinked root or data path counts as pre-existing, a
//! symlink where the controller writes a file is left alone.
//!
//! The controller's teardown and `mrctl uninstall`/`delete` use the same
//! plan, so what mrctl announces is what the controller does.

use std::path::{Path, PathBuf};

use crate::api::validate::system_dir;
use crate::naming;
use crate::store::claims::{self, Claims, Held};
use crate::store::record::Record;

/// What Delete would remove for a record, given every other registry's
/// claims.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub volumes: Vec<String>,
    /// Data directories created by the controller: removed whole.
    pub trees: Vec<PathBuf>,
    /// The controller's files under the root.
    pub files: Vec<PathBuf>,
    /// Directories it created, deepest first: removed when empty.
    pub dirs: Vec<PathBuf>,
    /// What stays, each with why.
    pub kept: Vec<String>,
}

impl Plan {
    /// One line per thing to remove, for people.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self.volumes.iter().map(|v| format!("volume {v}")).collect();
        out.extend(
            self.trees
                .iter()
                .map(|p| format!("{} (all its contents)", p.display())),
        );
        out.extend(self.dirs.iter().map(|d| d.display().to_string()));
        if !self.files.is_empty() {
            out.push(format!(
                "{} file(s) the controller wrote: {}",
                self.files.len(),
                self.files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        out
    }
}

/// Every file the controller or `mrctl install` may write under a root,
/// whatever the engine: records older than the `files` field are cleaned
/// with this list.
pub fn layout_files(root: &Path) -> Vec<PathBuf> {
    use naming::root as r;
    let tls = r::tls_dir(root);
    vec![
        tls.join("ca.crt"),
        tls.join("ca.key"),
        tls.join("tls.crt"),
        tls.join("tls.key"),
        r::credentials_file(root),
        r::htpasswd_file(root),
        r::init_password_file(root),
        r::quay_secrets_file(root),
        r::init_user_marker(root),
        r::redis_conf(root),
        r::quay_config_dir(root).join(crate::render::quay::CONFIG_FILE),
        r::quay_config_dir(root).join("ssl.cert"),
        r::quay_config_dir(root).join("ssl.key"),
        r::config_dir(root).join(crate::render::distribution::CONFIG_FILE),
    ]
}

fn is_symlink(p: &Path) -> bool {
    p.symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
}

/// Whether `p` lies under `root` with no symlink between them (the root
/// itself may be one: the user pointed there).
fn plainly_under(root: &Path, p: &Path) -> bool {
    let Ok(rest) = p.strip_prefix(root) else {
        return false;
    };
    let mut at = root.to_path_buf();
    let mut parts = rest.components().peekable();
    while let Some(c) = parts.next() {
        at.push(c);
        if parts.peek().is_some() && is_symlink(&at) {
            return false;
        }
    }
    true
}

fn claimed_by_others(p: &Path, others: &[(String, Claims)]) -> Option<String> {
    others.iter().find_map(|(name, c)| {
        c.iter()
            .any(|x| matches!(&x.what, Held::Path(q) if claims::overlaps(p, q)))
            .then(|| name.clone())
    })
}

/// Why a directory that Delete leaves behind is still there.
pub fn why_kept(dir: &Path, created: bool) -> Option<String> {
    if dir.symlink_metadata().is_err() {
        return None;
    }
    if !created {
        return Some(format!(
            "{} kept: it existed before the registry used it",
            dir.display()
        ));
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if names.is_empty() {
        return None;
    }
    let more = names.len().saturating_sub(5);
    names.truncate(5);
    Some(format!(
        "{} kept: it holds {}{} that the controller did not write",
        dir.display(),
        names.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    ))
}

/// What Delete removes for `rec`.
pub fn plan(rec: &Record, others: &[(String, Claims)]) -> Plan {
    let mut p = Plan::default();
    for v in &rec.volumes {
        let other = others.iter().find(|(_, c)| {
            c.iter()
                .any(|x| matches!(&x.what, Held::Volume(w) if w == v))
        });
        match other {
            Some((o, _)) => p
                .kept
                .push(format!("volume {v} kept: registry {o} uses it")),
            None => p.volumes.push(v.clone()),
        }
    }
    let held = rec.held();
    for d in &rec.data_paths {
        if d.symlink_metadata().is_err() {
            continue;
        }
        // A data directory it made and then stopped using (its spec moved
        // to another storage) may hold someone else's data by now.
        let still_used = held.iter().any(
            |c| matches!(&c.what, Held::Path(q) if claims::normalise(q) == claims::normalise(d)),
        );
        if !still_used {
            p.kept.push(format!(
                "{} kept: the registry no longer uses it as its storage",
                d.display()
            ));
            continue;
        }
        if let Some(sys) = system_dir(d) {
            p.kept.push(format!(
                "{} kept: it is the system directory {sys}",
                d.display()
            ));
        } else if is_symlink(d) {
            p.kept
                .push(format!("{} kept: it is a symlink", d.display()));
        } else if let Some(o) = claimed_by_others(d, others) {
            p.kept
                .push(format!("{} kept: registry {o} uses it", d.display()));
        } else {
            p.trees.push(d.clone());
        }
    }
    let root = &rec.root;
    if root.as_os_str().is_empty() || !root.is_absolute() {
        return p;
    }
    // A record from before validation refused them may name one.
    if let Some(sys) = system_dir(root) {
        p.kept.push(format!(
            "{} kept, with everything in it: it is the system directory {sys}",
            root.display()
        ));
        return p;
    }
    if let Some(o) = claimed_by_others(root, others) {
        p.kept
            .push(format!("{} kept: registry {o} uses it", root.display()));
        return p;
    }
    let mut files: Vec<PathBuf> = rec.files.iter().cloned().collect();
    files.extend(layout_files(root));
    files.sort();
    files.dedup();
    for f in files {
        let plain_file = f.symlink_metadata().is_ok_and(|m| m.file_type().is_file());
        let in_tree = p.trees.iter().any(|t| f.starts_with(t));
        if plain_file && !in_tree && plainly_under(root, &f) {
            p.files.push(f);
        }
    }
    let mut dirs: Vec<PathBuf> = rec
        .created_dirs
        .iter()
        .filter(|d| d.starts_with(root) && plainly_under(root, d))
        .filter(|d| !is_symlink(d) && d.is_dir())
        .filter(|d| !p.trees.iter().any(|t| d.starts_with(t)))
        .cloned()
        .collect();
    // Deepest first, so a parent is looked at after its children.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    p.dirs = dirs;
    if !rec.root_created() {
        p.kept.push(format!(
            "{} kept: it existed before the registry used it (only the controller's files in it go)",
            root.display()
        ));
    }
    p
}

/// What carrying out a plan did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub removed: Vec<String>,
    pub kept: Vec<String>,
}

/// Removes the plan's trees, files and then empty directories. Volumes are
/// the caller's (they need podman). Errors name the path.
pub fn remove_paths(p: &Plan) -> Result<Outcome, String> {
    let mut out = Outcome {
        kept: p.kept.clone(),
        ..Outcome::default()
    };
    for t in &p.trees {
        match std::fs::remove_dir_all(t) {
            Ok(()) => out.removed.push(t.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("remove {}: {e}", t.display())),
        }
    }
    for f in &p.files {
        match std::fs::remove_file(f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("remove {}: {e}", f.display())),
        }
    }
    for d in &p.dirs {
        match std::fs::remove_dir(d) {
            Ok(()) => out.removed.push(d.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => out.kept.extend(why_kept(d, true)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::claims::Claim;
    use std::os::unix::fs::symlink;

    fn layout(root: &Path) {
        for d in ["config", "tls", "secrets"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("tls/ca.crt"), "ca").unwrap();
        std::fs::write(root.join("secrets/htpasswd"), "h").unwrap();
        std::fs::write(root.join("config/registry-config.yml"), "c").unwrap();
    }

    fn created(root: &Path) -> std::collections::BTreeSet<PathBuf> {
        ["", "config", "tls", "secrets"]
            .iter()
            .map(|d| {
                if d.is_empty() {
                    root.to_path_buf()
                } else {
                    root.join(d)
                }
            })
            .collect()
    }

    #[test]
    fn a_root_that_existed_keeps_the_users_files() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("mine.txt"), "user").unwrap();
        layout(&root);
        // Created the layout dirs, not the root.
        let mut dirs = created(&root);
        dirs.remove(&root);
        let rec = Record {
            root: root.clone(),
            created_dirs: dirs,
            ..Record::default()
        };
        let p = plan(&rec, &[]);
        assert!(p.kept.iter().any(|k| k.contains("existed before")), "{p:?}");
        let out = remove_paths(&p).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("mine.txt")).unwrap(),
            "user"
        );
        for d in ["config", "tls", "secrets"] {
            assert!(!root.join(d).exists(), "{d} left");
        }
        assert_eq!(out.removed.len(), 3, "{out:?}");
    }

    #[test]
    fn a_created_root_with_a_users_file_is_kept_and_said_why() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        layout(&root);
        std::fs::write(root.join("tls/notes.txt"), "user").unwrap();
        let rec = Record {
            root: root.clone(),
            created_dirs: created(&root),
            ..Record::default()
        };
        let out = remove_paths(&plan(&rec, &[])).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("tls/notes.txt")).unwrap(),
            "user"
        );
        assert!(!root.join("tls/ca.crt").exists());
        assert!(!root.join("config").exists());
        let kept = out.kept.join("\n");
        assert!(kept.contains("tls kept: it holds notes.txt"), "{kept}");
        assert!(kept.contains("root kept: it holds tls"), "{kept}");
    }

    #[test]
    fn symlinks_are_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("htpasswd"), "precious").unwrap();
        let root = t.path().join("root");
        layout(&root);
        // secrets replaced by a symlink out of the tree.
        std::fs::remove_dir_all(root.join("secrets")).unwrap();
        symlink(&outside, root.join("secrets")).unwrap();
        let storage = t.path().join("blobs-link");
        symlink(&outside, &storage).unwrap();
        let rec = Record {
            root: root.clone(),
            created_dirs: created(&root),
            data_paths: [storage.clone()].into(),
            ..Record::default()
        };
        let p = plan(&rec, &[]);
        remove_paths(&p).unwrap();
        assert_eq!(
            std::fs::read_to_string(outside.join("htpasswd")).unwrap(),
            "precious"
        );
        assert!(
            storage.symlink_metadata().is_ok(),
            "symlinked data path kept"
        );
        assert!(p.kept.iter().any(|k| k.contains("is a symlink")));

        // A symlinked root: treated as pre-existing, the target stays.
        let target = t.path().join("target");
        layout(&target);
        let link = t.path().join("rootlink");
        symlink(&target, &link).unwrap();
        let rec = Record {
            root: link.clone(),
            created_dirs: [link.clone()].into(),
            ..Record::default()
        };
        let p = plan(&rec, &[]);
        assert!(p.dirs.is_empty(), "{p:?}");
        remove_paths(&p).unwrap();
        assert!(target.is_dir() && link.symlink_metadata().is_ok());
    }

    #[test]
    fn an_old_record_reads_the_root_as_pre_existing() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        layout(&root);
        let json = format!(
            r#"{{"name":"old","specFile":"/x","root":"{}","units":[],"pod":"old-pod","containers":[],"volumes":[],"dataPaths":[],"trustDirs":[],"deletionPolicy":"Delete"}}"#,
            root.display()
        );
        let rec: Record = serde_json::from_str(&json).unwrap();
        assert!(!rec.root_created());
        let out = remove_paths(&plan(&rec, &[])).unwrap();
        assert!(root.join("tls").is_dir() && !root.join("tls/ca.crt").exists());
        assert!(out.kept.iter().any(|k| k.contains("existed before")));
    }

    #[test]
    fn a_system_directory_in_an_old_record_is_never_touched() {
        let rec = Record {
            root: PathBuf::from("/etc"),
            created_dirs: [PathBuf::from("/etc"), PathBuf::from("/etc/tls")].into(),
            data_paths: [PathBuf::from("/var/lib/")].into(),
            ..Record::default()
        };
        let p = plan(&rec, &[]);
        assert!(
            p.trees.is_empty() && p.files.is_empty() && p.dirs.is_empty(),
            "{p:?}"
        );
        assert_eq!(p.kept.len(), 2, "{:?}", p.kept);
    }

    /// A data directory it made, then stopped using (its spec moved to a
    /// volume), may hold another registry's data by now: kept.
    #[test]
    fn a_data_directory_no_longer_used_is_kept() {
        let t = tempfile::tempdir().unwrap();
        let data = t.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let mut claims = Claims::new();
        claims.insert(Claim {
            field: "spec.storage.volume".into(),
            what: Held::Volume("v".into()),
        });
        let rec = Record {
            root: t.path().join("root"),
            data_paths: [data.clone()].into(),
            claims: Some(claims),
            ..Record::default()
        };
        let p = plan(&rec, &[]);
        assert!(p.trees.is_empty(), "{p:?}");
        assert!(p.kept.iter().any(|k| k.contains("no longer uses it")));
    }

    #[test]
    fn what_another_registry_claims_stays() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        layout(&root);
        let data = t.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let rec = Record {
            root: root.clone(),
            created_dirs: created(&root),
            data_paths: [data.clone()].into(),
            volumes: ["shared".to_string()].into(),
            ..Record::default()
        };
        let mut c = Claims::new();
        c.insert(Claim {
            field: "spec.storage.path".into(),
            what: Held::Path(data.clone()),
        });
        c.insert(Claim {
            field: "spec.storage.volume".into(),
            what: Held::Volume("shared".into()),
        });
        c.insert(Claim {
            field: "spec.root".into(),
            what: Held::Path(root.join("tls")),
        });
        let p = plan(&rec, &[("b".into(), c)]);
        assert!(p.volumes.is_empty() && p.trees.is_empty() && p.files.is_empty());
        assert_eq!(p.kept.len(), 3, "{:?}", p.kept);
    }
}
