//! What mrctl knows about registries: spec files in the watch dir (through
//! the controller's own index, so names resolve the same way) and status,
//! ownership record and events in the state dir. Also the small helpers the
//! commands share: tables, ages, spec file writes.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use super::{Error, Global, Result};
use crate::api::defaults::{self, HostFacts, Resolved};
use crate::api::load::{self, Invalid, Loaded};
use crate::api::{Condition, Status};
use crate::host::{self, files, podman};
use crate::reconcile::record::{self, Record};
use crate::reconcile::{claims, index, status as st};
use crate::settings::{self, Scope};

/// The directories and scope every command works with.
#[derive(Debug)]
pub struct Paths {
    pub watch_dir: PathBuf,
    pub state_dir: PathBuf,
    pub scope: Scope,
    pub podman_socket: PathBuf,
    /// The socket as given (flag or environment), for the controller unit.
    pub podman_socket_given: Option<PathBuf>,
    /// The state dir as given, for the controller unit.
    pub state_dir_given: bool,
    host: OnceLock<HostFacts>,
}

impl Paths {
    pub fn new(g: &Global) -> Paths {
        Paths {
            watch_dir: g.watch_dir.clone(),
            state_dir: g
                .state_dir
                .clone()
                .unwrap_or_else(|| settings::default_state_dir(g.scope)),
            scope: g.scope,
            podman_socket: g
                .podman_socket
                .clone()
                .unwrap_or_else(|| podman::default_socket(g.scope == Scope::User)),
            podman_socket_given: g.podman_socket.clone(),
            state_dir_given: g.state_dir.is_some(),
            host: OnceLock::new(),
        }
    }

    /// Host facts defaults depend on (the FQDN), read once.
    pub fn host(&self) -> &HostFacts {
        self.host.get_or_init(|| HostFacts { fqdn: host::fqdn() })
    }

    pub fn render_context(&self) -> crate::render::Context {
        crate::render::Context {
            podman: settings::podman_binary(),
            wanted_by: settings::wanted_by(self.scope).to_string(),
        }
    }

    /// A directory that exists but may not be read is an error that says
    /// who may read it; a missing one is simply empty.
    fn check_readable(&self, dir: &Path, what: &str) -> Result<()> {
        match std::fs::read_dir(dir) {
            Err(e) if e.kind() == ErrorKind::PermissionDenied => Err(Error::Failed(format!(
                "cannot read the {what} {}: permission denied; {}",
                dir.display(),
                run_as_hint(dir)
            ))),
            _ => Ok(()),
        }
    }

    /// A spec file read through the same gate as the controller's (a
    /// bounded read of a regular file inside the watch directory; in system
    /// scope only root's, not writable by others).
    pub fn read_spec(&self, path: &Path) -> Result<Vec<u8>> {
        crate::spec_file::read::read_spec(path, &self.watch_dir, self.scope == Scope::System)
            .map_err(Error::Failed)
    }

    /// Every registry: a spec file or an ownership record names it.
    pub fn list(&self) -> Result<Vec<Registry>> {
        self.check_readable(&self.watch_dir, "watch directory")?;
        self.check_readable(&self.state_dir, "state directory")?;
        let idx = self.index();
        let mut names: BTreeSet<String> = idx.names();
        names.extend(record::names(&self.state_dir));
        Ok(names.into_iter().map(|n| self.load(&n, &idx)).collect())
    }

    /// One registry, or NotFound when neither a spec file nor any state
    /// names it.
    pub fn find(&self, name: &str) -> Result<Registry> {
        self.lookup(name)?
            .ok_or_else(|| Error::NotFound(name.to_string()))
    }

    /// One registry, `None` when nothing names it.
    pub fn lookup(&self, name: &str) -> Result<Option<Registry>> {
        self.check_readable(&self.watch_dir, "watch directory")?;
        self.check_readable(&self.state_dir, "state directory")?;
        let idx = self.index();
        let r = self.load(name, &idx);
        let known = !r.files.is_empty() || r.record.is_some() || r.status.is_some();
        Ok(known.then_some(r))
    }

    /// Every collision between `r` and another registry known here (what
    /// its record holds and what its spec asks for), one line each. mrctl
    /// refuses on any, whoever the controller would let keep the claim.
    pub fn clashes_with_others(&self, r: &Resolved) -> Result<Vec<String>> {
        let mine = claims::of(r);
        let mut out = Vec::new();
        for other in self.list()?.into_iter().filter(|o| o.name != r.name) {
            let mut theirs = other.record.as_ref().map(Record::held).unwrap_or_default();
            if let Some(x) = other.resolved(self.host()) {
                theirs.extend(claims::of(&x));
            }
            out.extend(claims::describe(
                &other.name,
                &claims::clashes(&mine, &theirs),
            ));
        }
        Ok(out)
    }

    fn index(&self) -> index::Index {
        let strict = self.scope == Scope::System;
        index::rescan(
            &self.watch_dir,
            &self.state_dir,
            &index::Index::default(),
            strict,
        )
        .0
    }

    fn load(&self, name: &str, idx: &index::Index) -> Registry {
        let files = idx.files_for(name);
        let mut text = None;
        let spec = match files.as_slice() {
            [] => Spec::Missing,
            [one] => match self.read_spec(one) {
                Ok(bytes) => {
                    let parsed = load::parse(one, &bytes);
                    text = Some(bytes);
                    match parsed {
                        Ok(l) => Spec::Valid(Box::new(l)),
                        Err(e) => Spec::Invalid(e),
                    }
                }
                Err(e) => Spec::Unreadable(e.to_string()),
            },
            _ => Spec::Duplicate,
        };
        let record = record::load(&self.state_dir, name).ok().flatten();
        let status = record::load_status(&self.state_dir, name).or_else(|| match &spec {
            Spec::Valid(l) => l.resource.status.clone(),
            _ => None,
        });
        let created = std::fs::metadata(record::dir(&self.state_dir, name))
            .and_then(|m| m.created())
            .ok()
            .or_else(|| {
                files
                    .first()
                    .and_then(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
            });
        Registry {
            name: name.to_string(),
            files,
            text,
            spec,
            status,
            record,
            created,
        }
    }
}

/// Who may read a root-owned 0700 directory or 0600 file: the owner of the
/// nearest part of `path` this user can see.
pub fn run_as_hint(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let owner = path
        .ancestors()
        .find_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.uid());
    match owner {
        Some(0) => "it belongs to root: run mrctl as root (e.g. with sudo)".to_string(),
        Some(uid) => format!("it belongs to uid {uid}: run mrctl as that user"),
        None => "run mrctl as the user the controller runs as".to_string(),
    }
}

/// The spec side of a registry.
#[derive(Debug)]
pub enum Spec {
    /// No spec file: it was removed and the registry is (being) torn down.
    Missing,
    /// Two or more files claim the name; the controller applies neither.
    Duplicate,
    Unreadable(String),
    Invalid(Invalid),
    Valid(Box<Loaded>),
}

#[derive(Debug)]
pub struct Registry {
    pub name: String,
    /// Spec files claiming this name.
    pub files: Vec<PathBuf>,
    /// The one spec file's bytes, as read through the spec gate.
    pub text: Option<Vec<u8>>,
    pub spec: Spec,
    pub status: Option<Status>,
    pub record: Option<Record>,
    /// When the controller first saw it (its state directory was made), or
    /// else when its spec file was last written.
    pub created: Option<SystemTime>,
}

impl Registry {
    pub fn file(&self) -> Option<&Path> {
        match self.files.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    pub fn loaded(&self) -> Option<&Loaded> {
        match &self.spec {
            Spec::Valid(l) => Some(l),
            _ => None,
        }
    }

    pub fn resolved(&self, host: &HostFacts) -> Option<Resolved> {
        self.loaded()
            .map(|l| defaults::resolve(&l.resource, &l.name, host))
    }

    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
    }

    pub fn phase(&self) -> String {
        match (&self.status, &self.spec) {
            (Some(s), _) => s.phase.as_str().to_string(),
            (None, Spec::Missing) => "Terminating".to_string(),
            (None, _) => "Pending".to_string(),
        }
    }

    /// The Ready condition's status: True, False or Unknown.
    pub fn ready(&self) -> String {
        self.condition(st::READY)
            .map(|c| c.status.clone())
            .unwrap_or_else(|| "Unknown".to_string())
    }

    pub fn engine(&self) -> String {
        self.loaded()
            .map(|l| l.resource.spec.engine.as_str().to_string())
            .unwrap_or_else(|| "-".to_string())
    }

    pub fn endpoint(&self) -> String {
        self.status
            .as_ref()
            .and_then(|s| s.endpoint.clone())
            .unwrap_or_else(|| "-".to_string())
    }

    pub fn age(&self) -> String {
        self.created
            .and_then(|c| SystemTime::now().duration_since(c).ok())
            .map(human_duration)
            .unwrap_or_else(|| "-".to_string())
    }

    /// Whether the status describes the spec file as it is now (its
    /// observedSpecHash is the current spec's hash).
    pub fn status_is_current(&self, host: &HostFacts) -> bool {
        match (self.resolved(host), &self.status) {
            (Some(r), Some(s)) => r
                .hash()
                .is_ok_and(|h| s.observed_spec_hash.as_deref() == Some(h.as_str())),
            _ => false,
        }
    }
}

/// kubectl's short ages: 45s, 3m20s, 12m, 5h3m, 2d4h, 30d.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (m, h, days) = (s / 60, s / 3600, s / 86_400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        match s % 60 {
            0 => format!("{m}m"),
            r => format!("{m}m{r}s"),
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        match m % 60 {
            0 => format!("{h}h"),
            r => format!("{h}h{r}m"),
        }
    } else if h < 48 {
        format!("{h}h")
    } else if days < 8 {
        match h % 24 {
            0 => format!("{days}d"),
            r => format!("{days}d{r}h"),
        }
    } else {
        format!("{days}d")
    }
}

/// The age of an RFC 3339 time, or the text itself when it does not parse.
pub fn age_of(rfc3339: &str) -> String {
    let parsed =
        time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339);
    match parsed {
        Ok(t) => {
            let secs = (time::OffsetDateTime::now_utc() - t).whole_seconds().max(0);
            human_duration(Duration::from_secs(secs.unsigned_abs()))
        }
        Err(_) => rfc3339.to_string(),
    }
}

/// Columns padded to their widest cell, three spaces apart, as kubectl
/// prints them.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut out = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            out.push_str(c);
            if i + 1 < n {
                let pad = widths[i].saturating_sub(c.chars().count()) + 3;
                out.push_str(&" ".repeat(pad));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// Writes a spec file into the watch dir atomically (readers and the
/// controller's watcher never see half a file), creating the watch dir when
/// missing. Returns true when the content changed.
pub fn place_spec(watch_dir: &Path, path: &Path, text: &str) -> Result<bool> {
    if !watch_dir.is_dir() {
        files::ensure_dir(watch_dir, 0o755)?;
    }
    Ok(files::write_if_changed(path, text.as_bytes(), 0o644)?)
}

/// Edits a spec file through its YAML value: `edit` changes the document;
/// the file is rewritten only when the document changed. Leading comment
/// lines are kept; the status block is dropped (the controller writes it
/// again). Returns true when written.
pub fn edit_spec(
    paths: &Paths,
    path: &Path,
    edit: impl FnOnce(&mut serde_yaml::Value),
) -> Result<bool> {
    let watch_dir = &paths.watch_dir;
    let text = String::from_utf8(paths.read_spec(path)?)
        .map_err(|_| Error::Failed(format!("{}: not UTF-8 text", path.display())))?;
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text)
        .map_err(|e| Error::Failed(format!("{}: invalid YAML: {e}", path.display())))?;
    if let Some(m) = doc.as_mapping_mut() {
        m.remove("status");
    }
    let before = doc.clone();
    edit(&mut doc);
    if doc == before {
        return Ok(false);
    }
    let comments: String = text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let body = serde_yaml::to_string(&doc)
        .map_err(|e| Error::Failed(format!("{}: cannot write YAML: {e}", path.display())))?;
    place_spec(watch_dir, path, &format!("{comments}{body}"))
}

/// Sets `spec.<keys...>` in a spec document, creating mappings on the way;
/// `None` removes the key.
pub fn set_spec_value(
    doc: &mut serde_yaml::Value,
    keys: &[&str],
    value: Option<serde_yaml::Value>,
) {
    use serde_yaml::{Mapping, Value};
    let Some(root) = doc.as_mapping_mut() else {
        return;
    };
    let mut cur = root
        .entry(Value::from("spec"))
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    let (last, path) = match keys.split_last() {
        Some(x) => x,
        None => return,
    };
    for k in path {
        if !cur.is_mapping() {
            *cur = Value::Mapping(Mapping::new());
        }
        let Some(m) = cur.as_mapping_mut() else {
            return;
        };
        cur = m
            .entry(Value::from(*k))
            .or_insert_with(|| Value::Mapping(Mapping::new()));
    }
    if cur.is_null() {
        *cur = Value::Mapping(Mapping::new());
    }
    if let Some(m) = cur.as_mapping_mut() {
        match value {
            Some(v) => {
                m.insert(Value::from(*last), v);
            }
            None => {
                m.remove(*last);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        let s = |n| human_duration(Duration::from_secs(n));
        assert_eq!(s(5), "5s");
        assert_eq!(s(119), "119s");
        assert_eq!(s(200), "3m20s");
        assert_eq!(s(720), "12m");
        assert_eq!(s(5 * 3600 + 180), "5h3m");
        assert_eq!(s(20 * 3600), "20h");
        assert_eq!(s(3 * 86_400 + 7200), "3d2h");
        assert_eq!(s(40 * 86_400), "40d");
    }

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["NAME", "PHASE"],
            &[
                vec!["a".into(), "Ready".into()],
                vec!["long-name".into(), "Failed".into()],
            ],
        );
        assert_eq!(
            t,
            "NAME        PHASE\na           Ready\nlong-name   Failed\n"
        );
    }

    #[test]
    fn spec_values_are_set_and_removed() {
        let mut doc: serde_yaml::Value =
            serde_yaml::from_str("kind: MirrorRegistry\nspec:\n  port: 1\n").unwrap();
        set_spec_value(&mut doc, &["images", "registry"], Some("x:1".into()));
        set_spec_value(&mut doc, &["deletionPolicy"], Some("Delete".into()));
        assert_eq!(doc["spec"]["images"]["registry"], "x:1");
        assert_eq!(doc["spec"]["deletionPolicy"], "Delete");
        set_spec_value(&mut doc, &["images", "registry"], None);
        assert!(doc["spec"]["images"].get("registry").is_none());
        assert_eq!(doc["spec"]["port"], 1);
    }
}
