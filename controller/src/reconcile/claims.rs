//! What a registry uses that no other registry may share: its root, its
//! storage and database (a host path or a podman volume) and its port (which
//! also makes its trust entry, `certs.d/<host>:<port>`). Two registries
//! sharing any of them would overwrite each other's config and secrets, or
//! write the same blobs and delete each other's data; paths count when one is
//! inside the other.
//!
//! Who keeps a contested claim: the registry whose ownership record holds it.
//! When neither record holds it (two new specs), or both do (records from a
//! version that did not check), the lower name keeps it, so every controller
//! decides the same way without talking to anyone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::api::defaults::{Resolved, Storage};

/// One thing a registry uses, with the spec field that names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claim {
    /// `spec.root`, `spec.storage.path`, `spec.database.volume`, `spec.port`.
    pub field: String,
    #[serde(flatten)]
    pub what: Held,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Held {
    Path(PathBuf),
    Volume(String),
    Port(u16),
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Held::Path(p) => write!(f, "{}", p.display()),
            Held::Volume(v) => write!(f, "volume {v}"),
            Held::Port(p) => write!(f, "port {p}"),
        }
    }
}

pub type Claims = BTreeSet<Claim>;

fn storage_claim(field: &str, s: &Storage) -> Claim {
    match s {
        Storage::Volume(v) => Claim {
            field: format!("{field}.volume"),
            what: Held::Volume(v.clone()),
        },
        Storage::Path(p) => Claim {
            field: format!("{field}.path"),
            what: Held::Path(normalise(p)),
        },
    }
}

/// The claims of a spec.
pub fn of(r: &Resolved) -> Claims {
    let mut out = Claims::new();
    out.insert(Claim {
        field: "spec.root".into(),
        what: Held::Path(normalise(&r.root)),
    });
    out.insert(storage_claim("spec.storage", &r.storage));
    if let Some(d) = &r.database {
        out.insert(storage_claim("spec.database", d));
    }
    out.insert(Claim {
        field: "spec.port".into(),
        what: Held::Port(r.port),
    });
    out
}

/// `.` and repeated or trailing separators gone (validation's rule); a
/// path with `..` (refused by validation) is compared as written.
pub fn normalise(p: &Path) -> PathBuf {
    crate::api::validate::normalize(p).unwrap_or_else(|| p.to_path_buf())
}

/// Whether two paths are the same directory or one lies inside the other,
/// by name and, when both exist, after resolving symlinks.
pub fn overlaps(a: &Path, b: &Path) -> bool {
    let nested = |a: &Path, b: &Path| a.starts_with(b) || b.starts_with(a);
    if nested(&normalise(a), &normalise(b)) {
        return true;
    }
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => nested(&a, &b),
        _ => false,
    }
}

fn clash(a: &Held, b: &Held) -> bool {
    match (a, b) {
        (Held::Path(a), Held::Path(b)) => overlaps(a, b),
        (Held::Volume(a), Held::Volume(b)) => a == b,
        (Held::Port(a), Held::Port(b)) => a == b,
        _ => false,
    }
}

/// Each pair of claims that collide, mine first.
pub fn clashes<'a>(mine: &'a Claims, other: &'a Claims) -> Vec<(&'a Claim, &'a Claim)> {
    let mut out = Vec::new();
    for m in mine {
        for o in other {
            if clash(&m.what, &o.what) {
                out.push((m, o));
            }
        }
    }
    out
}

/// One line per collision, naming the other registry and both fields.
pub fn describe(other: &str, hits: &[(&Claim, &Claim)]) -> Vec<String> {
    hits.iter()
        .map(|(m, o)| {
            if m.what == o.what {
                format!("{} {} is also {}'s {}", m.field, m.what, other, o.field)
            } else {
                format!(
                    "{} {} overlaps {}'s {} {}",
                    m.field, m.what, other, o.field, o.what
                )
            }
        })
        .collect()
}

/// Another registry as far as claims go: what its ownership record holds and
/// what its spec asks for now (either may be missing).
pub struct Other {
    pub name: String,
    pub recorded: Option<Claims>,
    pub wanted: Option<Claims>,
}

/// Whether registry `me`, asking for `mine` and holding `held` by its own
/// record, must give way to `other`: `Some(lines)` naming each collision.
pub fn yields_to(
    me: &str,
    mine: &Claims,
    held: Option<&Claims>,
    other: &Other,
) -> Option<Vec<String>> {
    let mut theirs = Claims::new();
    theirs.extend(other.recorded.iter().flatten().cloned());
    theirs.extend(other.wanted.iter().flatten().cloned());
    let holds = |set: Option<&Claims>, c: &Claim| {
        set.is_some_and(|s| s.iter().any(|h| clash(&h.what, &c.what)))
    };
    // Decided per collision: each thing is kept by whoever holds it.
    let lost: Vec<(&Claim, &Claim)> = clashes(mine, &theirs)
        .into_iter()
        .filter(
            |(m, o)| match (holds(held, o), holds(other.recorded.as_ref(), m)) {
                (false, true) => true,
                (true, false) => false,
                _ => other.name.as_str() < me,
            },
        )
        .collect();
    (!lost.is_empty()).then(|| describe(&other.name, &lost))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(root: &str, storage: Held, port: u16) -> Claims {
        let mut c = Claims::new();
        c.insert(Claim {
            field: "spec.root".into(),
            what: Held::Path(root.into()),
        });
        let field = match &storage {
            Held::Volume(_) => "spec.storage.volume",
            _ => "spec.storage.path",
        };
        c.insert(Claim {
            field: field.into(),
            what: storage,
        });
        c.insert(Claim {
            field: "spec.port".into(),
            what: Held::Port(port),
        });
        c
    }

    #[test]
    fn nested_and_equal_paths_clash() {
        assert!(overlaps(Path::new("/srv/a"), Path::new("/srv/a/")));
        assert!(overlaps(Path::new("/srv/a/./b"), Path::new("/srv/a")));
        assert!(overlaps(Path::new("/srv//a"), Path::new("/srv/a/b/c")));
        assert!(!overlaps(Path::new("/srv/a"), Path::new("/srv/ab")));
        assert!(!overlaps(Path::new("/srv/a"), Path::new("/srv/b")));
    }

    #[test]
    fn who_gives_way() {
        let a = claims("/r/a", Held::Volume("a-storage".into()), 1000);
        let b_same_root = claims("/r/a", Held::Volume("b-storage".into()), 1001);
        // A holds by record; B is new: B gives way, A does not.
        let a_other = Other {
            name: "a".into(),
            recorded: Some(a.clone()),
            wanted: Some(a.clone()),
        };
        let lines = yields_to("b", &b_same_root, None, &a_other).unwrap();
        assert_eq!(lines, vec!["spec.root /r/a is also a's spec.root"]);
        let b_other = Other {
            name: "b".into(),
            recorded: None,
            wanted: Some(b_same_root.clone()),
        };
        assert!(yields_to("a", &a, Some(&a), &b_other).is_none());
        // Even when B's name sorts first.
        let zb = Other {
            name: "0b".into(),
            ..b_other
        };
        assert!(yields_to("a", &a, Some(&a), &zb).is_none());

        // Neither holds: the lower name keeps it.
        let a_new = Other {
            name: "a".into(),
            recorded: None,
            wanted: Some(a.clone()),
        };
        assert!(yields_to("b", &b_same_root, None, &a_new).is_some());
        let b_new = Other {
            name: "b".into(),
            recorded: None,
            wanted: Some(b_same_root.clone()),
        };
        assert!(yields_to("a", &a, None, &b_new).is_none());

        // Another's volume, a port, a nested storage path.
        let v = claims("/r/c", Held::Volume("a-storage".into()), 1002);
        let lines = yields_to("c", &v, None, &a_other).unwrap();
        assert_eq!(
            lines,
            vec!["spec.storage.volume volume a-storage is also a's spec.storage.volume"]
        );
        let p = claims("/r/d", Held::Volume("d".into()), 1000);
        assert!(yields_to("d", &p, None, &a_other).is_some());
        let nested = claims("/r/e", Held::Path("/r/a/blobs".into()), 1003);
        let lines = yields_to("e", &nested, None, &a_other).unwrap();
        assert_eq!(
            lines,
            vec!["spec.storage.path /r/a/blobs overlaps a's spec.root /r/a"]
        );
        // Nothing shared: nothing to say.
        let free = claims("/r/f", Held::Volume("f".into()), 1004);
        assert!(yields_to("f", &free, None, &a_other).is_none());
    }
}
