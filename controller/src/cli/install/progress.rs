//! What install and upgrade print while they wait: each change of phase
//! or message, then where to push and who to log in as.

use std::time::{Duration, Instant};

use super::super::get;
use super::super::state::{Paths, Registry};
use super::super::wait::{self, Target};
use super::super::{credentials as creds_cmd, Error, Result};
use crate::api::{ConditionStatus, ConditionType, Phase};

/// Waits for Ready for the spec as it is now, printing each change of phase
/// or message. Stops early on Failed, which needs a change to the spec.
pub(in crate::cli) async fn wait_ready(
    paths: &Paths,
    name: &str,
    timeout: Duration,
) -> Result<Option<Registry>> {
    let start = Instant::now();
    let target = Target::Condition {
        type_: ConditionType::Ready.to_string(),
        status: ConditionStatus::True.to_string(),
    };
    let mut last = String::new();
    outln!(
        "waiting for mirrorregistry/{name} to become Ready (timeout {})",
        humantime::format_duration(timeout)
    );
    loop {
        let r = paths.lookup(name)?;
        if let Some(r) = &r {
            let current = r.status_is_current(paths.host());
            let line = if current {
                format!("{:<12} {}", r.phase(), get::message(r))
            } else {
                format!(
                    "{:<12} waiting for the controller to pick up the spec",
                    "Pending"
                )
            };
            if line != last {
                outln!("  {:>6.1}s  {line}", start.elapsed().as_secs_f64());
                last = line;
            }
            if wait::met(paths, Some(r), &target) {
                return paths.lookup(name);
            }
            if current && r.status.as_ref().is_some_and(|s| s.phase == Phase::Failed) {
                eprintln!(
                    "error: mirrorregistry/{name} failed: {}\n  (fix the spec, then run the command again; details: mrctl describe {name})",
                    get::message(r)
                );
                return Ok(None);
            }
        }
        if start.elapsed() >= timeout {
            eprintln!(
                "error: timed out waiting for the condition on mirrorregistry/{name}\n  (last seen: {}; details: mrctl describe {name})",
                last.trim()
            );
            return Ok(None);
        }
        tokio::time::sleep(wait::POLL).await;
    }
}

/// What install prints at the end: where to push, who to log in as.
pub(in crate::cli) fn print_access(
    paths: &Paths,
    r: &Registry,
    password_given: bool,
) -> Result<()> {
    let Some(s) = &r.status else {
        return Ok(());
    };
    let endpoint = s.endpoint.clone().unwrap_or_default();
    let host_port = endpoint.trim_start_matches("https://").to_string();
    let file = creds_cmd::credentials_file(paths, r)
        .ok_or_else(|| Error::Failed("no credentials file reported".into()))?;
    let c = creds_cmd::read(&file, &r.name)?;
    outln!();
    outln!("mirrorregistry/{} is Ready.", r.name);
    outln!("  Endpoint:     {endpoint}");
    outln!("  Username:     {}", c.username);
    if password_given {
        outln!("  Password:     (the one given with --initPassword)");
    } else {
        outln!("  Password:     {}", c.password);
    }
    outln!(
        "  Credentials:  {} (mode 0600; `mrctl credentials {}` prints them)",
        file.display(),
        r.name
    );
    match &s.ca_file {
        Some(ca) => outln!(
            "  CA:           {} (trusted by podman and skopeo on this host)",
            ca.display()
        ),
        None => outln!("  CA:           the issuer of your certificate (--sslCert)"),
    }
    outln!();
    outln!("Log in with:");
    outln!("  podman login -u {} {host_port}", c.username);
    Ok(())
}
