//! The controller's Prometheus metrics, through the official client library
//! (`prometheus-client`, prometheus/client_rust): no exposition text is
//! written by hand.
//!
//! Reconcile and work queue metrics carry the names controller-runtime
//! gives them, so dashboards made for Kubernetes operators chart this
//! controller unchanged. Per-registry figures are read at scrape time from
//! what the controller keeps (status copy, certificate, storage), except the
//! drift repair counter, which counts in this process.

use std::collections::BTreeSet;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::reconcile::queue::Next;

/// The `controller` label of the reconcile metrics and the work queue's
/// `name`, as controller-runtime would name this controller's kind.
pub const CONTROLLER: &str = "mirrorregistry";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub controller: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub controller: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistryLabels {
    pub name: String,
}

/// controller-runtime's buckets for `controller_runtime_reconcile_time_seconds`.
const RECONCILE_BUCKETS: [f64; 40] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9,
    1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0,
    25.0, 30.0, 40.0, 50.0, 60.0,
];

fn reconcile_histogram() -> Histogram {
    Histogram::new(RECONCILE_BUCKETS)
}

/// The process's metrics; see [`global`].
pub struct Metrics {
    pub registry: Registry,
    reconcile_total: Family<ResultLabels, Counter>,
    reconcile_errors: Family<ControllerLabels, Counter>,
    reconcile_time: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    active_workers: Family<ControllerLabels, Gauge>,
    queue_depth: Family<QueueLabels, Gauge>,
    queue_adds: Family<QueueLabels, Counter>,
    queue_retries: Family<QueueLabels, Counter>,
    drift_repairs: Family<RegistryLabels, Counter>,
    /// The names `drift_repairs` holds a series for (a Family lists none).
    drift_names: Mutex<BTreeSet<String>>,
}

/// The one set of metrics the process keeps: reconciles and the queue count
/// into it whether or not `--metrics-address` serves it (a few atomics).
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

fn controller() -> ControllerLabels {
    ControllerLabels {
        controller: CONTROLLER.into(),
    }
}

fn queue() -> QueueLabels {
    QueueLabels {
        controller: CONTROLLER.into(),
        name: CONTROLLER.into(),
    }
}

/// controller-runtime's `result` label for what a reconcile asked for next.
pub fn result_label(next: Next) -> &'static str {
    match next {
        Next::Done => "success",
        Next::After(d) if d.is_zero() => "requeue",
        Next::After(_) => "requeue_after",
        Next::Backoff => "error",
    }
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let reconcile_total = Family::<ResultLabels, Counter>::default();
        registry.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            reconcile_total.clone(),
        );
        let reconcile_errors = Family::<ControllerLabels, Counter>::default();
        registry.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            reconcile_errors.clone(),
        );
        let reconcile_time: Family<ControllerLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(reconcile_histogram);
        registry.register(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            reconcile_time.clone(),
        );
        let active_workers = Family::<ControllerLabels, Gauge>::default();
        registry.register(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            active_workers.clone(),
        );
        let queue_depth = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "workqueue_depth",
            "Current depth of workqueue",
            queue_depth.clone(),
        );
        let queue_adds = Family::<QueueLabels, Counter>::default();
        registry.register(
            "workqueue_adds",
            "Total number of adds handled by workqueue",
            queue_adds.clone(),
        );
        let queue_retries = Family::<QueueLabels, Counter>::default();
        registry.register(
            "workqueue_retries",
            "Total number of retries handled by workqueue",
            queue_retries.clone(),
        );
        let drift_repairs = Family::<RegistryLabels, Counter>::default();
        registry.register(
            "mirror_registry_drift_repairs",
            "Times a registry whose spec had not changed was found drifted from what the controller set up (a unit stopped, a container gone, a unit or mounted file edited) and came back to Ready",
            drift_repairs.clone(),
        );
        // Series present from the start, at zero, as controller-runtime
        // does: a rate() over them works before the first error.
        for r in ["success", "error", "requeue", "requeue_after"] {
            let _ = reconcile_total.get_or_create(&ResultLabels {
                controller: CONTROLLER.into(),
                result: r.into(),
            });
        }
        let _ = reconcile_errors.get_or_create(&controller());
        let _ = reconcile_time.get_or_create(&controller());
        let _ = active_workers.get_or_create(&controller());
        let _ = queue_depth.get_or_create(&queue());
        let _ = queue_adds.get_or_create(&queue());
        let _ = queue_retries.get_or_create(&queue());
        Metrics {
            registry,
            reconcile_total,
            reconcile_errors,
            reconcile_time,
            active_workers,
            queue_depth,
            queue_adds,
            queue_retries,
            drift_repairs,
            drift_names: Mutex::default(),
        }
    }

    /// One reconcile ended, asking for `next`, after `took`.
    pub fn reconciled(&self, next: Next, took: Duration) {
        self.reconcile_total
            .get_or_create(&ResultLabels {
                controller: CONTROLLER.into(),
                result: result_label(next).into(),
            })
            .inc();
        if next == Next::Backoff {
            self.reconcile_errors.get_or_create(&controller()).inc();
        }
        self.reconcile_time
            .get_or_create(&controller())
            .observe(took.as_secs_f64());
    }

    /// A new request entered the queue (requests collapsing into one already
    /// waiting are not counted, as in client-go).
    pub fn queue_added(&self) {
        self.queue_adds.get_or_create(&queue()).inc();
    }

    /// A failed name was put back for a retry after its backoff.
    pub fn queue_retried(&self) {
        self.queue_retries.get_or_create(&queue()).inc();
    }

    /// Names waiting for a worker, and names being reconciled.
    pub fn queue_sizes(&self, waiting: usize, running: usize) {
        self.queue_depth
            .get_or_create(&queue())
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        self.active_workers
            .get_or_create(&controller())
            .set(i64::try_from(running).unwrap_or(i64::MAX));
    }

    pub fn drift_repaired(&self, name: &str) {
        self.track(name);
        self.drift_repairs
            .get_or_create(&RegistryLabels { name: name.into() })
            .inc();
    }

    pub fn drift_repairs(&self, name: &str) -> u64 {
        self.drift_repairs
            .get(&RegistryLabels { name: name.into() })
            .map(|c| c.get())
            .unwrap_or(0)
    }

    /// Makes the series `mirror_registry_drift_repairs_total{name}` exist
    /// (at zero) for a registry the controller looks after.
    pub fn track(&self, name: &str) {
        if let Ok(mut names) = self.drift_names.lock() {
            if names.insert(name.to_string()) {
                let _ = self
                    .drift_repairs
                    .get_or_create(&RegistryLabels { name: name.into() });
            }
        }
    }

    /// The series of registries the controller no longer knows go.
    pub fn forget_except(&self, known: &BTreeSet<String>) {
        let Ok(mut names) = self.drift_names.lock() else {
            return;
        };
        let gone: Vec<String> = names.difference(known).cloned().collect();
        for n in gone {
            names.remove(&n);
            self.drift_repairs.remove(&RegistryLabels { name: n });
        }
    }
}

/// Per-registry gauges read at scrape time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RegistryFigures {
    pub name: String,
    pub ready: bool,
    /// The served certificate's notAfter, in seconds since the epoch.
    pub certificate_expiry: Option<i64>,
    /// Bytes available to the registry's storage (statvfs f_bavail).
    pub storage_free: Option<u64>,
}

/// Which exposition format a scraper asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `application/openmetrics-text; version=1.0.0`: what Prometheus asks for.
    OpenMetrics,
    /// `text/plain; version=0.0.4`: curl, browsers, older scrapers.
    Text,
}

impl Format {
    /// From an Accept header: OpenMetrics when asked for by name.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// The exposition: the process's metrics, then the per-registry gauges.
pub fn encode(figures: &[RegistryFigures], format: Format) -> Result<String, std::fmt::Error> {
    let metrics = global();
    let mut per = Registry::default();
    let ready = Family::<RegistryLabels, Gauge>::default();
    per.register(
        "mirror_registry_ready",
        "1 when the registry's phase is Ready, else 0",
        ready.clone(),
    );
    let expiry = Family::<RegistryLabels, Gauge>::default();
    per.register(
        "mirror_registry_certificate_expiry_timestamp_seconds",
        "When the certificate the registry serves expires (notAfter), in seconds since the epoch",
        expiry.clone(),
    );
    let free = Family::<RegistryLabels, Gauge<i64>>::default();
    per.register(
        "mirror_registry_storage_free_bytes",
        "Bytes available on the filesystem holding the registry's storage (volume or path)",
        free.clone(),
    );
    for f in figures {
        let l = RegistryLabels {
            name: f.name.clone(),
        };
        ready.get_or_create(&l).set(i64::from(f.ready));
        if let Some(t) = f.certificate_expiry {
            expiry.get_or_create(&l).set(t);
        }
        if let Some(b) = f.storage_free {
            free.get_or_create(&l)
                .set(i64::try_from(b).unwrap_or(i64::MAX));
        }
    }
    let mut out = String::new();
    match format {
        Format::OpenMetrics => {
            use prometheus_client::encoding::text;
            text::encode_registry(&mut out, &metrics.registry)?;
            text::encode_registry(&mut out, &per)?;
            text::encode_eof(&mut out)?;
        }
        Format::Text => {
            use prometheus_client::encoding::prometheus_text;
            prometheus_text::encode(&mut out, &metrics.registry)?;
            prometheus_text::encode(&mut out, &per)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_controller_runtimes() {
        global().reconciled(Next::Backoff, Duration::from_millis(30));
        global().reconciled(Next::Done, Duration::from_millis(3));
        global().queue_added();
        global().track("reg-a");
        let figures = [RegistryFigures {
            name: "reg-a".into(),
            ready: true,
            certificate_expiry: Some(1_900_000_000),
            storage_free: Some(12345),
        }];
        for format in [Format::OpenMetrics, Format::Text] {
            let text = encode(&figures, format).unwrap();
            for want in [
                "controller_runtime_reconcile_total{controller=\"mirrorregistry\",result=\"error\"}",
                "controller_runtime_reconcile_total{controller=\"mirrorregistry\",result=\"success\"}",
                "controller_runtime_reconcile_errors_total{controller=\"mirrorregistry\"}",
                "controller_runtime_reconcile_time_seconds_count{controller=\"mirrorregistry\"}",
                "workqueue_depth{controller=\"mirrorregistry\",name=\"mirrorregistry\"} 0",
                "workqueue_adds_total{controller=\"mirrorregistry\",name=\"mirrorregistry\"}",
                "workqueue_retries_total{controller=\"mirrorregistry\",name=\"mirrorregistry\"}",
                "mirror_registry_drift_repairs_total{name=\"reg-a\"} 0",
                "mirror_registry_ready{name=\"reg-a\"} 1",
                "mirror_registry_certificate_expiry_timestamp_seconds{name=\"reg-a\"} 1900000000",
                "mirror_registry_storage_free_bytes{name=\"reg-a\"} 12345",
            ] {
                assert!(text.contains(want), "{format:?}: no {want} in\n{text}");
            }
            // The two encoders order a histogram's labels differently.
            assert!(
                text.lines().any(|l| l
                    .starts_with("controller_runtime_reconcile_time_seconds_bucket{")
                    && l.contains("le=\"0.05\"")
                    && l.contains("controller=\"mirrorregistry\"")),
                "{format:?}: no bucket le=0.05 in\n{text}"
            );
            assert_eq!(
                text.ends_with("# EOF\n"),
                format == Format::OpenMetrics,
                "{text}"
            );
        }
    }

    #[test]
    fn results_map_like_controller_runtime() {
        assert_eq!(result_label(Next::Done), "success");
        assert_eq!(result_label(Next::Backoff), "error");
        assert_eq!(result_label(Next::After(Duration::ZERO)), "requeue");
        assert_eq!(
            result_label(Next::After(Duration::from_secs(2))),
            "requeue_after"
        );
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            )),
            Format::OpenMetrics
        );
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
    }
}
