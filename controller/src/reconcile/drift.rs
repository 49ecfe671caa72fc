//! Drift announced by the host, so repairs start within seconds instead of at
//! the next resync: podman container events, systemd unit state changes, and
//! edits to unit files or CA trust entries. Each only enqueues the owning
//! registry's name; reconcile decides what, if anything, to do.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use notify::Watcher;

use super::queue::Queue;
use super::{record, Context};

/// The registry whose ownership record matches, if any.
/// Ownership records, re-read at most once a second: host events arrive
/// for every unit and container on the host, most of them not ours, and
/// each would otherwise read every record. The records stay the truth; this
/// only decides which name to look at.
fn owner(cx: &Context, matches: impl Fn(&record::Record) -> bool) -> Option<String> {
    static CACHE: Mutex<Option<(Instant, Vec<record::Record>)>> = Mutex::new(None);
    let mut cache = CACHE.lock().ok()?;
    let fresh = cache
        .as_ref()
        .is_some_and(|(at, _)| at.elapsed() < RECORDS_TTL);
    if !fresh {
        let records = record::names(&cx.state_dir)
            .into_iter()
            .filter_map(|n| record::load(&cx.state_dir, &n).ok().flatten())
            .collect();
        *cache = Some((Instant::now(), records));
    }
    cache
        .as_ref()?
        .1
        .iter()
        .find(|r| matches(r))
        .map(|r| r.name.clone())
}

const RECORDS_TTL: Duration = Duration::from_secs(1);

fn owner_of_container(cx: &Context, container: &str) -> Option<String> {
    owner(cx, |r| r.containers.contains(container))
}

fn owner_of_unit(cx: &Context, unit: &str) -> Option<String> {
    owner(cx, |r| r.units.contains(unit))
}

fn owner_of_path(cx: &Context, path: &Path) -> Option<String> {
    if path.parent() == Some(cx.unit_dir.as_path()) {
        let file = path.file_name()?.to_string_lossy().into_owned();
        return owner_of_unit(cx, &file);
    }
    let rel = path.strip_prefix(&cx.certs_d).ok()?;
    let dir = cx.certs_d.join(rel.components().next()?);
    owner(cx, |r| r.trust_dirs.contains(&dir))
}

/// Starts the drift listeners; they run until the process ends and
/// reconnect on their own after an outage.
pub fn spawn(cx: Arc<Context>, q: Queue) {
    tokio::spawn(podman_events(cx.clone(), q.clone()));
    tokio::spawn(systemd_events(cx.clone(), q.clone()));
    tokio::spawn(file_events(cx, q));
}

/// A listener that lost its source tries again after this, doubling up to
/// `RECONNECT_MAX` while the source stays away, so an outage costs a few
/// log lines and reconciles, not one every two seconds.
const RECONNECT: Duration = Duration::from_secs(2);
const RECONNECT_MAX: Duration = Duration::from_secs(60);
/// A stream that lived this long was a real connection: the next loss
/// starts again from `RECONNECT`.
const HEALTHY: Duration = Duration::from_secs(30);

fn next_delay(delay: Duration, lived: Duration) -> Duration {
    if lived >= HEALTHY {
        RECONNECT
    } else {
        (delay * 2).min(RECONNECT_MAX)
    }
}

/// Events sent while a listener was disconnected are lost, and a registry
/// that failed meanwhile may sit in a long backoff: once connected again,
/// look at every registry, as a resync would.
fn relist(cx: &Context, q: &Queue, what: &str) {
    tracing::info!("{what} is back; looking at every registry again");
    for n in cx.all_names() {
        q.add(&n);
    }
}

async fn podman_events(cx: Arc<Context>, q: Queue) {
    let mut lost = false;
    let mut delay = RECONNECT;
    loop {
        let started = tokio::time::Instant::now();
        if let Ok((podman, _)) = cx.clients().await {
            // A cached client outlives the socket: only an answer counts as
            // being back.
            if podman.ping().await.is_ok() {
                let mut s = Box::pin(podman.container_changes());
                if std::mem::take(&mut lost) {
                    relist(&cx, &q, "the podman API");
                }
                while let Some(container) = s.next().await {
                    if let Some(name) = owner_of_container(&cx, &container) {
                        tracing::debug!(registry = %name, container = %container, "container changed");
                        q.nudge(&name);
                    }
                }
                tracing::debug!("podman event stream ended; reconnecting");
            } else {
                cx.reset_clients().await;
            }
        }
        lost = true;
        delay = next_delay(delay, started.elapsed());
        tokio::time::sleep(delay).await;
    }
}

async fn systemd_events(cx: Arc<Context>, q: Queue) {
    let mut lost = false;
    let mut delay = RECONNECT;
    loop {
        let started = tokio::time::Instant::now();
        if let Ok((_, systemd)) = cx.clients().await {
            match systemd.unit_changes().await {
                Ok(s) => {
                    let mut s = Box::pin(s);
                    if std::mem::take(&mut lost) {
                        relist(&cx, &q, "the systemd manager");
                    }
                    while let Some(unit) = s.next().await {
                        if let Some(name) = owner_of_unit(&cx, &unit) {
                            tracing::debug!(registry = %name, unit = %unit, "unit changed");
                            q.nudge(&name);
                        }
                    }
                    tracing::debug!("systemd signal stream ended; reconnecting");
                }
                Err(e) => tracing::debug!(error = %e, "cannot subscribe to unit changes"),
            }
        }
        lost = true;
        delay = next_delay(delay, started.elapsed());
        tokio::time::sleep(delay).await;
    }
}

async fn file_events(cx: Arc<Context>, q: Queue) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if matches!(ev.kind, notify::EventKind::Access(_)) {
                return;
            }
            for p in ev.paths {
                let _ = tx.send(p);
            }
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch unit files and trust entries; drift there is found at resync");
            return;
        }
    };
    for (dir, mode) in [
        (&cx.unit_dir, notify::RecursiveMode::NonRecursive),
        (&cx.certs_d, notify::RecursiveMode::Recursive),
    ] {
        let _ = std::fs::create_dir_all(dir);
        if let Err(e) = watcher.watch(dir, mode) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch; drift there is found at resync");
        }
    }
    while let Some(p) = rx.recv().await {
        if let Some(name) = owner_of_path(&cx, &p) {
            tracing::debug!(registry = %name, path = %p.display(), "owned file changed");
            q.nudge(&name);
        }
    }
    drop(watcher);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_back_off_while_the_source_stays_away() {
        let mut d = RECONNECT;
        let mut seen = vec![];
        for _ in 0..8 {
            d = next_delay(d, Duration::ZERO);
            seen.push(d.as_secs());
        }
        assert_eq!(seen, vec![4, 8, 16, 32, 60, 60, 60, 60]);
        assert_eq!(next_delay(RECONNECT_MAX, HEALTHY), RECONNECT);
    }
}
