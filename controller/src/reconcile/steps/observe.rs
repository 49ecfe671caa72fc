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
    /// Observes, then (when `started`) again every 50 ms until healthy or
    /// [`SETTLE`] passes; each observation goes to `out`. Returns the
    /// components and whether the registry is healthy.
    pub async fn settled(
        &self,
        started: bool,
        known: Option<Vec<UnitState>>,
        out: &mut Vec<Outcome>,
    ) -> Result<(Vec<Component>, bool), Error> {
        let (mut components, o) = self.observe(known).await?;
        let mut healthy = o.healthy();
        out.push(Outcome::Observed(o));
        let deadline = tokio::time::Instant::now() + SETTLE;
        while started && !healthy && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let (c, o) = self.observe(None).await?;
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
            let p = probe::probe(r, &desired.health_path, self.ca_file).await;
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
