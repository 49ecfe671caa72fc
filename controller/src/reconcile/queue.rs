//! The work queue: requests are "look at NAME again", deduplicated per name;
//! one worker per name so a registry is never reconciled twice at once, while
//! different registries proceed in parallel. Failures back off exponentially
//! with jitter.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backoff::backoff::Backoff as _;
use backoff::ExponentialBackoff;

/// What a reconcile asks for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Converged: look again at the next resync or event.
    Done,
    /// Not there yet, not an error: look again after this.
    After(Duration),
    /// Failed: look again after the name's backoff.
    Backoff,
}

type Handler = Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = Next> + Send>> + Send + Sync>;

#[derive(Default)]
struct Entry {
    running: bool,
    pending: bool,
    backoff: Option<ExponentialBackoff>,
    /// When a failed name is due again; host events before then wait.
    retry_at: Option<std::time::Instant>,
}

/// A deduplicating per-name queue.
#[derive(Clone)]
pub struct Queue {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    handler: Handler,
    max_backoff: Duration,
}

fn new_backoff(max: Duration) -> ExponentialBackoff {
    ExponentialBackoff {
        initial_interval: Duration::from_millis(500),
        randomization_factor: 0.3,
        multiplier: 2.0,
        max_interval: max,
        // Retry forever: the controller never gives up on a registry.
        max_elapsed_time: None,
        ..ExponentialBackoff::default()
    }
}

impl Queue {
    pub fn new<F, Fut>(max_backoff: Duration, handler: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Next> + Send + 'static,
    {
        Queue {
            entries: Arc::default(),
            handler: Arc::new(move |n| Box::pin(handler(n))),
            max_backoff,
        }
    }

    /// Asks for `name` to be reconciled. If a reconcile of it is running,
    /// another follows it once; repeated requests collapse into one.
    pub fn add(&self, name: &str) {
        let start = {
            let Ok(mut map) = self.entries.lock() else {
                return;
            };
            let e = map.entry(name.to_string()).or_default();
            let new_request = !e.running || !e.pending;
            let start = if e.running {
                e.pending = true;
                false
            } else {
                e.running = true;
                e.pending = false;
                true
            };
            if new_request {
                crate::observability::metrics::global().queue_added();
            }
            report(&map);
            start
        };
        if start {
            let q = self.clone();
            let name = name.to_string();
            tokio::spawn(async move { q.work(name).await });
        }
    }

    /// Like `add`, for host events (a container died, a unit changed): a
    /// name backing off after failures waits for its retry instead, so a
    /// flapping host cannot drive a failing reconcile in a tight loop.
    pub fn nudge(&self, name: &str) {
        let waiting = self.entries.lock().is_ok_and(|m| {
            m.get(name)
                .and_then(|e| e.retry_at)
                .is_some_and(|at| at > std::time::Instant::now())
        });
        if !waiting {
            self.add(name);
        }
    }

    /// Asks for `name` after `delay`.
    pub fn add_after(&self, name: &str, delay: Duration) {
        let q = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            q.add(&name);
        });
    }

    /// Names with work running or pending.
    pub fn busy(&self) -> usize {
        self.entries
            .lock()
            .map(|m| m.values().filter(|e| e.running).count())
            .unwrap_or(0)
    }

    async fn work(&self, name: String) {
        loop {
            // A handler that panics must not leave the name "running" for
            // ever (never reconciled again while the daemon looks alive).
            let next = {
                use futures_util::FutureExt;
                match std::panic::AssertUnwindSafe((self.handler)(name.clone()))
                    .catch_unwind()
                    .await
                {
                    Ok(next) => next,
                    Err(_) => {
                        tracing::error!(registry = %name, "reconcile panicked; retrying after backoff");
                        Next::Backoff
                    }
                }
            };
            let retry = {
                let Ok(mut map) = self.entries.lock() else {
                    return;
                };
                let e = map.entry(name.clone()).or_default();
                let retry = match next {
                    Next::Done => {
                        e.backoff = None;
                        e.retry_at = None;
                        None
                    }
                    Next::After(d) => {
                        e.backoff = None;
                        e.retry_at = None;
                        Some(d)
                    }
                    Next::Backoff => {
                        crate::observability::metrics::global().queue_retried();
                        let max = self.max_backoff;
                        let b = e.backoff.get_or_insert_with(|| new_backoff(max));
                        let d = b.next_backoff().unwrap_or(max);
                        e.retry_at = Some(std::time::Instant::now() + d);
                        Some(d)
                    }
                };
                let retry = if e.pending {
                    // An event arrived meanwhile: look again now.
                    e.pending = false;
                    Some(Duration::ZERO)
                } else {
                    e.running = false;
                    retry
                };
                report(&map);
                retry
            };
            match retry {
                Some(d) if d.is_zero() => continue,
                Some(d) => {
                    self.add_after(&name, d);
                    return;
                }
                None => return,
            }
        }
    }
}

/// The queue's sizes for the metrics: names waiting for their worker
/// (`workqueue_depth`) and names being reconciled.
fn report(map: &HashMap<String, Entry>) {
    let waiting = map.values().filter(|e| e.pending).count();
    let running = map.values().filter(|e| e.running).count();
    crate::observability::metrics::global().queue_sizes(waiting, running);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn requests_collapse_while_running() {
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let q = Queue::new(Duration::from_secs(1), move |_n| {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                Next::Done
            }
        });
        for _ in 0..20 {
            q.add("a");
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        // One run plus at most one follow-up for the requests made meanwhile.
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(q.busy(), 0);
    }

    type Runs = Arc<Mutex<HashMap<String, usize>>>;

    /// A queue whose handler counts runs per name and answers `f(name, run)`.
    fn counting_queue(f: fn(&str, usize) -> Next) -> (Runs, Queue) {
        let runs = Runs::default();
        let r = runs.clone();
        let q = Queue::new(Duration::from_millis(200), move |n| {
            let r = r.clone();
            async move {
                let count = {
                    let mut m = r.lock().unwrap();
                    let c = m.entry(n.clone()).or_default();
                    *c += 1;
                    *c
                };
                f(&n, count)
            }
        });
        (runs, q)
    }

    #[tokio::test]
    async fn a_panicking_reconcile_is_retried_and_others_go_on() {
        let (runs, q) = counting_queue(|n, count| {
            if n == "a" && count == 1 {
                panic!("a fault inside the reconcile of a");
            }
            Next::Done
        });
        q.add("a");
        q.add("b");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let m = runs.lock().unwrap().clone();
        assert_eq!(m["a"], 2, "retried after the panic");
        assert_eq!(m["b"], 1);
        assert_eq!(q.busy(), 0, "nothing left marked running");
        q.add("a");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            runs.lock().unwrap()["a"],
            3,
            "and reconciled again on request"
        );
    }

    #[tokio::test]
    async fn names_run_in_parallel_and_failures_retry() {
        let (runs, q) = counting_queue(|n, count| {
            if n == "flaky" && count < 3 {
                Next::Backoff
            } else {
                Next::Done
            }
        });
        q.add("flaky");
        q.add("steady");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let m = runs.lock().unwrap();
        assert_eq!(m["steady"], 1);
        assert_eq!(m["flaky"], 3, "retried until it succeeded, then stopped");
    }
}
