//! The daemon's loop: watcher ticks and the resync timer feed the queue.

use std::sync::Arc;
use std::time::Duration;

use super::queue::{Next, Queue};
use super::{drift, record, Context};
use crate::api::Phase;
use crate::host::files;
use crate::host::lock::{self, Lock};
use crate::render;
use crate::spec_file::watch;

const DEBOUNCE: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

fn queue(cx: &Arc<Context>) -> Queue {
    let cx = cx.clone();
    Queue::new(MAX_BACKOFF, move |name| {
        let cx = cx.clone();
        async move { super::reconcile_guarded(&cx, &name).await }
    })
}

/// The watchdog interval systemd asked for (half of WatchdogSec=), if any.
fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec)
        .then(|| Duration::from_micros(usec) / 2)
        .filter(|d| !d.is_zero())
}

/// Takes the controller's locks (see [`lock`]): `<state-dir>/.lock` and the
/// watch directory, before anything is written (no temp-file sweep, no
/// record, no unit) and before a missing watch directory is created.
/// `daemon`: the daemon creates a missing watch directory; `--once` does
/// not. While another controller holds a lock this waits up to `wait`,
/// telling systemd why (STATUS=) and pinging its watchdog, and says so
/// once in the log; zero refuses at once. It blocks the calling thread:
/// main calls it before the runtime has any other work.
pub fn take_lock(cx: &Context, wait: Duration, daemon: bool) -> Result<Lock, lock::Error> {
    let watchdog = watchdog_interval();
    let mut said = false;
    let mut pinged = std::time::Instant::now();
    let opts = lock::Options {
        create_watch_dir: daemon,
        wait,
    };
    let held = Lock::acquire(&cx.state_dir, &cx.watch_dir, opts, &mut |e| {
        if !said {
            said = true;
            let msg = format!(
                "{e}; waiting up to {} for it to exit",
                humantime::format_duration(wait)
            );
            tracing::warn!("{msg}");
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Status(&msg)]);
        }
        if watchdog.is_some_and(|w| pinged.elapsed() >= w) {
            pinged = std::time::Instant::now();
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
        }
    })?;
    if said {
        // An empty STATUS= clears the waiting message.
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Status("")]);
    }
    tracing::debug!(lock = %held.path().display(), watch_dir_locked = held.watch_locked(), "holding the controller's lock");
    Ok(held)
}

/// A controller killed in the middle of an atomic write leaves its temp file
/// behind. Before anything else, remove those of dead writers from every
/// directory the controller writes into: the watched directory, the state
/// directory, the unit directory, and each recorded registry's root and
/// trust directories.
fn sweep_temp_files(cx: &Context) {
    let mut dirs = vec![
        cx.watch_dir.clone(),
        cx.state_dir.clone(),
        cx.unit_dir.clone(),
    ];
    let subdirs = std::fs::read_dir(&cx.state_dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()));
    for e in subdirs {
        dirs.push(e.path());
        let name = e.file_name().to_string_lossy().into_owned();
        if let Ok(Some(rec)) = record::load(&cx.state_dir, &name) {
            if rec.root.is_absolute() {
                dirs.extend(render::root_dirs(&rec.root).into_iter().map(|(d, _)| d));
            }
            dirs.extend(rec.trust_dirs.iter().filter(|d| d.is_absolute()).cloned());
        }
    }
    for d in dirs {
        for f in files::remove_stale_temps(&d) {
            tracing::info!(file = %f.display(), "removed a temp file an interrupted write left behind");
        }
    }
}

/// Runs until SIGINT or SIGTERM, holding `_lock` (from [`take_lock`]) all
/// along.
pub async fn run(cx: Arc<Context>, resync: Duration, _lock: Lock) -> anyhow::Result<()> {
    crate::host::files::ensure_dir(&cx.watch_dir, 0o755).or_else(|e| {
        if cx.watch_dir.is_dir() {
            Ok(false)
        } else {
            Err(e)
        }
    })?;
    sweep_temp_files(&cx);
    let q = queue(&cx);
    cx.rescan();
    for n in cx.all_names() {
        q.add(&n);
    }
    let mut watcher = watch::watch_dir(&cx.watch_dir, DEBOUNCE)?;
    drift::spawn(cx.clone(), q.clone());
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    tracing::info!(dir = %cx.watch_dir.display(), scope = %cx.scope, "watching for MirrorRegistry specs");
    let mut timer = tokio::time::interval(resync);
    timer.tick().await;
    // Under a unit with WatchdogSec=, systemd restarts a controller that
    // stops answering; the ping comes from this loop, so a wedged loop
    // stops pinging.
    let watchdog = watchdog_interval();
    let mut ping = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            tick = watcher.1.recv() => {
                if tick.is_none() {
                    // The watch ended (directory replaced?): set it up again.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if let Ok(w) = watch::watch_dir(&cx.watch_dir, DEBOUNCE) {
                        watcher = w;
                    }
                }
                for n in cx.rescan() {
                    q.add(&n);
                }
            }
            _ = timer.tick() => {
                cx.rescan();
                for n in cx.all_names() {
                    q.add(&n);
                }
            }
            _ = ping.tick(), if watchdog.is_some() => {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    tracing::info!("stopping; registries keep running under systemd");
    Ok(())
}

/// How long `--once` waits for podman's API socket and the systemd manager
/// to answer before it gives up, naming the one that did not.
pub const ONCE_CONNECT: Duration = Duration::from_secs(30);

/// Waits until podman and systemd answer, or `until`: then the error names
/// the socket or bus that did not.
async fn connected(cx: &Context, until: tokio::time::Instant) -> anyhow::Result<()> {
    loop {
        match cx.clients().await {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= until => {
                return Err(anyhow::anyhow!(e).context("--once cannot reach the host"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Reconciles every known registry until it settles or `timeout` passes.
/// Ok(true) when every registry with a spec file is Ready (and every removed
/// one is torn down). Holds `_lock` (from [`take_lock`]), as the daemon
/// does, so it never races one.
pub async fn once(cx: Arc<Context>, timeout: Duration, _lock: &Lock) -> anyhow::Result<bool> {
    let deadline = tokio::time::Instant::now() + timeout;
    connected(
        &cx,
        deadline.min(tokio::time::Instant::now() + ONCE_CONNECT),
    )
    .await?;
    sweep_temp_files(&cx);
    cx.rescan();
    let names = cx.all_names();
    let mut tasks = Vec::new();
    for name in names {
        let cx = cx.clone();
        tasks.push(tokio::spawn(async move {
            let mut backoff = Duration::from_millis(250);
            loop {
                let next = super::reconcile_guarded(&cx, &name).await;
                let wait = match next {
                    Next::Done => break,
                    Next::After(d) => d.max(Duration::from_millis(200)),
                    Next::Backoff => {
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        backoff
                    }
                };
                if tokio::time::Instant::now() + wait > deadline {
                    break;
                }
                tokio::time::sleep(wait).await;
                cx.rescan();
            }
            let has_file = !cx.files_for(&name).is_empty();
            let ok = if has_file {
                record::load_status(&cx.state_dir, &name).is_some_and(|s| s.phase == Phase::Ready)
            } else {
                record::load(&cx.state_dir, &name).ok().flatten().is_none()
            };
            if !ok {
                let phase = record::load_status(&cx.state_dir, &name)
                    .map(|s| s.phase.as_str())
                    .unwrap_or("unknown");
                tracing::warn!(registry = %name, phase, "not ready");
            }
            ok
        }));
    }
    let mut all = true;
    for t in tasks {
        all &= t.await.unwrap_or(false);
    }
    Ok(all)
}
