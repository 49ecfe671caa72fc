//! Reads unit, container and HTTPS state: the components status lists and
//! the [`Observation`] conditions are made from. Right after a (re)start it
//! looks again shortly until the registry answers, rather than report
//! Progressing and come back seconds later.

use std::path::Path;
use std::time::Duration;

use super::super::conditions::{Observation, Outcome};
use super::super::Error;
use super::{probe, units};
use crate::api::defaults::Resolved;
use crate::api::Component;
use crate::host::podman::Podman;
use crate::host::systemd::{Systemd, UnitState};
use crate::render::Desired;

/// How long a reconcile that started units waits for them to answer.
const SETTLE: Duration = Duration::from_secs(5);
/// How often the endpoint is polled while waiting: often during the first
/// second, when a registry that starts at all begins to answer, then less.
const POLL_FIRST: Duration = Duration::from_millis(5);
const POLL_FIRST_FOR: Duration = Duration::from_secs(1);
const POLL_THEN: Duration = Duration::from_millis(50);

/// What an observation looks at.
pub struct Seen<'a> {
    pub podman: &'a Podman,
    pub systemd: &'a Systemd,
    pub desired: &'a Desired,
    pub r: &'a Resolved,
    /// The CA the probe trusts (generated TLS).
    pub ca_file: Option<&'a Path>,
}

impl Seen<'_> {
    /// Observes, then (when `started`) waits until healthy or [`SETTLE`]
    /// passes; each full observation goes to `out`. Returns the components
    /// and whether the registry is healthy.
    ///
    /// While waiting only the endpoint is polled, through one client: a
    /// probe costs a connection, where a full observation also reads every
    /// unit and container, and polling that as often would take CPU from
    /// the very start it waits for. Once the endpoint answers (or the
    /// time is up) one full observation says what status reports.
    pub async fn settled(
        &self,
        started: bool,
        known: Option<Vec<UnitState>>,
        out: &mut Vec<Outcome>,
    ) -> Result<(Vec<Component>, bool), Error> {
        let (mut components, o) = self.observe(known).await?;
        let mut healthy = o.healthy();
        out.push(Outcome::Observed(o));
        if !started || healthy {
            return Ok((components, healthy));
        }
        let start = tokio::time::Instant::now();
        let deadline = start + SETTLE;
        let client = probe::https_client(self.r, self.ca_file, probe::PROBE_TIMEOUT).ok();
        while !healthy && tokio::time::Instant::now() < deadline {
            let wait = if client.is_some() && start.elapsed() < POLL_FIRST_FOR {
                POLL_FIRST
            } else {
                POLL_THEN
            };
            tokio::time::sleep(wait).await;
            let last = tokio::time::Instant::now() + wait >= deadline;
            let mut answer = None;
            if let Some(c) = &client {
                let p = probe::probe_with(c, self.r, &self.desired.health_path).await;
                if p.is_err() && !last {
                    continue;
                }
                answer = Some(p);
            }
            let (c, o) = self.observe_with(None, client.as_ref(), answer).await?;
            components = c;
            healthy = o.healthy();
            out.push(Outcome::Observed(o));
        }
        Ok((components, healthy))
    }

    /// One observation. `known`: unit states read this reconcile before
    /// anything acted, still current.
    pub async fn observe(
        &self,
        known: Option<Vec<UnitState>>,
    ) -> Result<(Vec<Component>, Observation), Error> {
        self.observe_with(known, None, None).await
    }

    /// [`Seen::observe`], probing through `client` when given (one made by
    /// `probe::https_client` for this registry; its connection is reused),
    /// or taking `answer`, the probe's result just before, as its own: the
    /// units and containers are read after it, so an endpoint that answered
    /// is one they still serve when they are found running.
    async fn observe_with(
        &self,
        known: Option<Vec<UnitState>>,
        client: Option<&reqwest::Client>,
        answer: Option<Result<String, String>>,
    ) -> Result<(Vec<Component>, Observation), Error> {
        let (desired, r) = (self.desired, self.r);
        let mut components = Vec::new();
        let mut down = Vec::new();
        let states = match known {
            Some(s) => s,
            None => units::states(self.systemd, desired).await?,
        };
        let pod_state = &states[0];
        if !pod_state.active_state.is_active() {
            down.push(format!(
                "{} is {}",
                desired.pod_unit.name, pod_state.active_state
            ));
        }
        for (comp, unit) in desired.components.iter().zip(states.iter().skip(1)) {
            let container = self.podman.container(&comp.container).await?;
            let running = container.as_ref().is_some_and(|x| x.running);
            let active = unit.active_state.is_active();
            if !active {
                down.push(format!("{} is {}", comp.unit, unit.active_state));
            } else if !running {
                down.push(format!("container {} is not running", comp.container));
            }
            components.push(Component {
                name: comp.container.clone(),
                unit: comp.unit.clone(),
                active_state: unit.active_state.to_string(),
                container: container.as_ref().map(|x| x.name.clone()),
                image: Some(comp.image.clone()),
                healthy: active && running,
            });
        }
        if r.paused {
            let o = Observation {
                paused: true,
                down,
                probe: None,
            };
            return Ok((components, o));
        }
        let probe = if down.is_empty() {
            let p = match (answer, client) {
                (Some(p), _) => p,
                (None, Some(c)) => probe::probe_with(c, r, &desired.health_path).await,
                (None, None) => probe::probe(r, &desired.health_path, self.ca_file).await,
            };
            if p.is_err() {
                for x in &mut components {
                    x.healthy = false;
                }
            }
            Some(p)
        } else {
            None
        };
        let o = Observation {
            paused: false,
            down,
            probe,
        };
        Ok((components, o))
    }
}
