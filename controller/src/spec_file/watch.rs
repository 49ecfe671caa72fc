//! Watching the spec directory. Level-triggered: the watcher only says "the
//! directory changed, look again"; the controller rescans it and compares
//! file contents itself, so merged or lost events cost nothing but a delay
//! until the next resync.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::write::TEMP_MARKER;
use crate::host::files::{self, io};

/// However busy the directory, a tick is sent at most this long after the
/// first change.
const MAX_DELAY: Duration = Duration::from_secs(2);
/// Quiet that ends the burst of events one save makes, unless an event
/// that ends a save (see [`Raw`]) comes first.
const LEADING: Duration = Duration::from_millis(15);

/// One relevant event, as the debounce sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Raw {
    /// A spec candidate renamed into place, or closed after writing: the
    /// last event of a save (an atomic replace, or a write in place), after
    /// which the file is whole. Ticks at once.
    SaveEnded,
    /// Anything else: ticks after [`LEADING`] of quiet.
    Changed,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("spec directory {path} does not exist (it must be created before it is watched)")]
    Missing { path: PathBuf },
    #[error("spec directory {path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("watch spec directory {path}: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error(transparent)]
    Files(#[from] files::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Keeps the directory watch alive; dropping it stops the watch, and the
/// tick channel then closes.
pub struct DirWatcher {
    _watcher: notify::RecommendedWatcher,
    dir: PathBuf,
}

impl DirWatcher {
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl std::fmt::Debug for DirWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirWatcher")
            .field("dir", &self.dir)
            .finish()
    }
}

/// Watches `dir` itself (not its subdirectories): creating, removing,
/// renaming or modifying any entry, including the `..data` symlink swap of a
/// Kubernetes ConfigMap volume, produces a tick: one as soon as a save has
/// ended or its events have landed, and one more after `debounce` of quiet
/// (at most [`MAX_DELAY`]) if further events came meanwhile. A tick already
/// waiting in the channel covers later changes too, so the channel never
/// backs up. Events for the controller's own temp files and mere reads are
/// ignored.
///
/// Requires no async runtime: the debounce runs on its own thread.
pub fn watch_dir(dir: &Path, debounce: Duration) -> Result<(DirWatcher, mpsc::Receiver<()>)> {
    check_dir(dir)?;
    let (raw_tx, raw_rx) = std_mpsc::channel::<Raw>();
    let (tx, rx) = mpsc::channel(1);
    let watched = dir.to_path_buf();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let raw = match res {
            Ok(event) if !is_relevant(&event) => None,
            Ok(event) if ends_a_save(&event) => Some(Raw::SaveEnded),
            Ok(_) => Some(Raw::Changed),
            Err(e) => {
                // Whatever went wrong, looking again is the safe answer.
                tracing::warn!(dir = %watched.display(), error = %e, "spec directory watch error");
                Some(Raw::Changed)
            }
        };
        if let Some(raw) = raw {
            let _ = raw_tx.send(raw);
        }
    })
    .map_err(|source| Error::Watch {
        path: dir.to_path_buf(),
        source,
    })?;
    watcher
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|source| Error::Watch {
            path: dir.to_path_buf(),
            source,
        })?;
    std::thread::Builder::new()
        .name("spec-dir-debounce".into())
        .spawn(move || debounce_loop(&raw_rx, &tx, debounce))
        .map_err(io("start the debounce thread for", dir))?;
    Ok((
        DirWatcher {
            _watcher: watcher,
            dir: dir.to_path_buf(),
        },
        rx,
    ))
}

fn check_dir(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::NotADirectory {
            path: dir.to_path_buf(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Missing {
            path: dir.to_path_buf(),
        }),
        Err(e) => Err(io("stat", dir)(e).into()),
    }
}

/// Ends when the watcher is dropped (its callback holds the raw sender) or
/// nobody listens for ticks any more.
fn debounce_loop(raw: &std_mpsc::Receiver<Raw>, out: &mpsc::Sender<()>, quiet: Duration) {
    let send = || match out.try_send(()) {
        Ok(()) | Err(mpsc::error::TrySendError::Full(())) => true,
        Err(mpsc::error::TrySendError::Closed(())) => false,
    };
    // Collects events until `quiet` passes without one (at most MAX_DELAY;
    // with `until_saved`, or until a save ends); None when the watcher is
    // gone. Returns whether any arrived.
    let settle = |quiet: Duration, until_saved: bool| -> Option<bool> {
        let deadline = Instant::now() + MAX_DELAY;
        let mut any = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Some(any);
            }
            match raw.recv_timeout(quiet.min(left)) {
                Ok(Raw::SaveEnded) if until_saved => return Some(true),
                Ok(_) => any = true,
                Err(std_mpsc::RecvTimeoutError::Timeout) => return Some(any),
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
    };
    while let Ok(first) = raw.recv() {
        // Leading edge: tick as soon as one save has ended (or its events
        // have gone quiet), then one trailing tick if more keep coming.
        if first != Raw::SaveEnded && settle(LEADING, true).is_none() {
            return;
        }
        if !send() {
            return;
        }
        match settle(quiet, false) {
            None => return,
            Some(true) => {
                if !send() {
                    return;
                }
            }
            Some(false) => {}
        }
    }
}

/// Reads are not changes (the controller reads every spec on each pass, and
/// must not wake itself up by that), nor is anything done to its own temp
/// files alone.
fn is_relevant(event: &notify::Event) -> bool {
    if let EventKind::Access(kind) = event.kind {
        if kind != AccessKind::Close(AccessMode::Write) {
            return false;
        }
    }
    event.paths.is_empty() || !event.paths.iter().all(|p| is_own_temp(p))
}

/// A spec candidate (a `*.yaml` or `*.yml` name, not hidden) renamed into
/// place or closed after writing.
fn ends_a_save(event: &notify::Event) -> bool {
    use notify::event::{ModifyKind, RenameMode};
    let target = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => event.paths.first(),
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => event.paths.first(),
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => event.paths.get(1),
        _ => None,
    };
    target.is_some_and(|p| {
        is_yaml_name(p)
            && !p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
    })
}

fn is_own_temp(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().contains(TEMP_MARKER))
}

/// The spec candidates of a directory, and what was passed over.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Regular files, or symlinks to regular files, named `*.yaml` or
    /// `*.yml` and not hidden; sorted.
    pub files: Vec<PathBuf>,
    /// Entries named like specs that are not used, with the reason, for a
    /// user who expects them to count. Sorted.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Lists the spec candidates in `dir` (see [`Scan`]). Hidden entries (a
/// leading `.`: editor swap files, the controller's temp files, a
/// ConfigMap's `..data`) are passed over silently.
pub fn scan_dir(dir: &Path) -> Result<Scan> {
    check_dir(dir)?;
    let mut scan = Scan::default();
    for entry in fs::read_dir(dir).map_err(io("read directory", dir))? {
        let entry = entry.map_err(io("read directory", dir))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !is_yaml_name(&path) {
            continue;
        }
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            // Removed since the listing: the next tick covers it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                scan.skipped
                    .push((path, format!("{name}: cannot stat: {e}")));
                continue;
            }
        };
        let reason = if meta.file_type().is_symlink() {
            match fs::metadata(&path) {
                Ok(m) if m.is_file() => None,
                Ok(m) if m.is_dir() => Some(format!("{name} is a symlink to a directory")),
                Ok(_) => Some(format!(
                    "{name} is a symlink to something that is not a regular file"
                )),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Some(format!("{name}: dangling symlink"))
                }
                Err(e) => Some(format!("{name}: cannot follow symlink: {e}")),
            }
        } else if meta.is_file() {
            None
        } else if meta.is_dir() {
            Some(format!("{name} is a directory"))
        } else {
            Some(format!("{name} is not a regular file"))
        };
        match reason {
            None => scan.files.push(path),
            Some(r) => scan.skipped.push((path, r)),
        }
    }
    scan.files.sort();
    scan.skipped.sort();
    Ok(scan)
}

fn is_yaml_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const DEBOUNCE: Duration = Duration::from_millis(100);
    const EXPECT: Duration = Duration::from_secs(5);

    async fn expect_tick(rx: &mut mpsc::Receiver<()>, what: &str) {
        match tokio::time::timeout(EXPECT, rx.recv()).await {
            Ok(Some(())) => {}
            Ok(None) => panic!("{what}: tick channel closed"),
            Err(_) => panic!("{what}: no tick within {EXPECT:?}"),
        }
    }

    async fn expect_quiet(rx: &mut mpsc::Receiver<()>, for_: Duration, what: &str) {
        if let Ok(r) = tokio::time::timeout(for_, rx.recv()).await {
            panic!("{what}: unexpected {r:?} within {for_:?}");
        }
    }

    /// A watched temp dir whose setup events (if any) have been drained.
    async fn watched(
        setup: impl FnOnce(&Path),
    ) -> (tempfile::TempDir, DirWatcher, mpsc::Receiver<()>) {
        let dir = tempfile::tempdir().unwrap();
        setup(dir.path());
        let (w, mut rx) = watch_dir(dir.path(), DEBOUNCE).unwrap();
        expect_quiet(&mut rx, Duration::from_millis(300), "right after watching").await;
        (dir, w, rx)
    }

    #[tokio::test]
    async fn create_edit_replace_delete_each_tick() {
        let (dir, _w, mut rx) = watched(|_| {}).await;
        let p = dir.path().join("quay.yaml");

        fs::write(&p, b"a: 1\n").unwrap();
        expect_tick(&mut rx, "create").await;

        {
            use std::io::Write;
            let mut f = fs::OpenOptions::new().append(true).open(&p).unwrap();
            f.write_all(b"b: 2\n").unwrap();
        }
        expect_tick(&mut rx, "in-place edit").await;

        // An editor's save: write a temp file, rename it over the original.
        let tmp = dir.path().join("quay.yaml.tmp~");
        fs::write(&tmp, b"a: 3\n").unwrap();
        fs::rename(&tmp, &p).unwrap();
        expect_tick(&mut rx, "rename over").await;

        fs::remove_file(&p).unwrap();
        expect_tick(&mut rx, "delete").await;
        expect_quiet(&mut rx, Duration::from_millis(500), "after the last tick").await;
    }

    /// Which events end a save (and tick without waiting for quiet): a
    /// spec renamed into place or closed after writing; never a hidden
    /// temp file's, nor a create or a write still going on.
    #[test]
    fn the_events_that_end_a_save() {
        use notify::event::{CreateKind, DataChange, ModifyKind, RenameMode};
        let ev = |kind, paths: &[&str]| notify::Event {
            kind,
            paths: paths.iter().map(PathBuf::from).collect(),
            attrs: Default::default(),
        };
        let to = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        let both = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert!(ends_a_save(&ev(to, &["/w/quay.yaml"])));
        assert!(ends_a_save(&ev(both, &["/w/.quay.tmp", "/w/quay.yml"])));
        assert!(ends_a_save(&ev(closed, &["/w/quay.yaml"])));
        assert!(!ends_a_save(&ev(closed, &["/w/.quay.yaml.swp"])));
        assert!(!ends_a_save(&ev(to, &["/w/..data"])));
        assert!(!ends_a_save(&ev(both, &["/w/quay.yaml", "/w/quay.yaml~"])));
        assert!(!ends_a_save(&ev(
            EventKind::Create(CreateKind::File),
            &["/w/quay.yaml"]
        )));
        assert!(!ends_a_save(&ev(
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            &["/w/quay.yaml"]
        )));
    }

    #[tokio::test]
    async fn kubernetes_symlink_swap_ticks() {
        let (dir, _w, mut rx) = watched(|d| {
            fs::create_dir(d.join("..2026_x")).unwrap();
            fs::write(d.join("..2026_x/a.yaml"), b"a: 1\n").unwrap();
            symlink("..2026_x", d.join("..data")).unwrap();
            symlink("..data/a.yaml", d.join("a.yaml")).unwrap();
        })
        .await;
        let d = dir.path();
        fs::create_dir(d.join("..2026_y")).unwrap();
        fs::write(d.join("..2026_y/a.yaml"), b"a: 2\n").unwrap();
        symlink("..2026_y", d.join("..data_tmp")).unwrap();
        fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
        expect_tick(&mut rx, "..data swap").await;
        assert_eq!(fs::read(d.join("a.yaml")).unwrap(), b"a: 2\n");
    }

    #[tokio::test]
    async fn a_burst_is_a_few_ticks() {
        let (dir, _w, mut rx) = watched(|_| {}).await;
        for i in 0..50 {
            fs::write(
                dir.path().join(format!("f{}.yaml", i % 5)),
                format!("n: {i}\n"),
            )
            .unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        expect_tick(&mut rx, "burst").await;
        let mut ticks = 1;
        while let Ok(Some(())) = tokio::time::timeout(Duration::from_secs(3), rx.recv()).await {
            ticks += 1;
        }
        assert!(ticks <= 3, "{ticks} ticks for one burst");
    }

    #[tokio::test]
    async fn own_temp_files_and_reads_do_not_tick() {
        let (dir, _w, mut rx) =
            watched(|d| fs::write(d.join("quay.yaml"), b"a: 1\n").unwrap()).await;
        let tmp = dir.path().join(format!(".quay.yaml{TEMP_MARKER}-x1"));
        fs::write(&tmp, b"a: 2\n").unwrap();
        fs::remove_file(&tmp).unwrap();
        let _ = fs::read(dir.path().join("quay.yaml")).unwrap();
        let _ = scan_dir(dir.path()).unwrap();
        expect_quiet(&mut rx, Duration::from_secs(1), "temp file and reads").await;
    }

    #[tokio::test]
    async fn dropping_the_watcher_closes_the_channel() {
        let (_dir, w, mut rx) = watched(|_| {}).await;
        drop(w);
        match tokio::time::timeout(EXPECT, rx.recv()).await {
            Ok(None) => {}
            other => panic!("expected a closed channel, got {other:?}"),
        }
    }

    #[test]
    fn watching_a_missing_dir_or_a_file_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = watch_dir(&missing, DEBOUNCE).unwrap_err();
        assert!(matches!(err, Error::Missing { .. }), "{err}");
        assert!(err.to_string().contains("nope"), "{err}");
        let file = dir.path().join("f");
        fs::write(&file, b"").unwrap();
        let err = watch_dir(&file, DEBOUNCE).unwrap_err();
        assert!(matches!(err, Error::NotADirectory { .. }), "{err}");
        assert!(matches!(scan_dir(&missing), Err(Error::Missing { .. })));
    }

    #[test]
    fn scan_lists_specs_and_says_what_it_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in [
            "b.yml",
            "a.yaml",
            "UPPER.YAML",
            "notes.txt",
            ".hidden.yaml",
            "quay.yaml~",
        ] {
            fs::write(d.join(f), b"a: 1\n").unwrap();
        }
        fs::write(d.join(format!(".a.yaml{TEMP_MARKER}-1")), b"").unwrap();
        fs::create_dir(d.join("dir.yaml")).unwrap();
        symlink("nowhere.yaml", d.join("dangling.yaml")).unwrap();
        symlink("a.yaml", d.join("link.yaml")).unwrap();
        symlink("dir.yaml", d.join("linkdir.yaml")).unwrap();
        // The ConfigMap layout.
        fs::create_dir(d.join("..2026_x")).unwrap();
        fs::write(d.join("..2026_x/cm.yaml"), b"a: 1\n").unwrap();
        symlink("..2026_x", d.join("..data")).unwrap();
        symlink("..data/cm.yaml", d.join("cm.yaml")).unwrap();

        let scan = scan_dir(d).unwrap();
        let names = |v: &[PathBuf]| -> Vec<String> {
            v.iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            names(&scan.files),
            ["UPPER.YAML", "a.yaml", "b.yml", "cm.yaml", "link.yaml"]
        );
        let skipped: Vec<String> = scan.skipped.iter().map(|(_, r)| r.clone()).collect();
        assert_eq!(
            skipped,
            [
                "dangling.yaml: dangling symlink",
                "dir.yaml is a directory",
                "linkdir.yaml is a symlink to a directory",
            ]
        );
        assert!(scan.skipped.iter().all(|(p, _)| p.parent() == Some(d)));
    }
}
