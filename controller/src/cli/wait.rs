//! `mrctl wait NAME --for=condition=Ready|delete --timeout=DUR`, with
//! kubectl's exit codes: 0 when met, 1 on timeout or when there is nothing
//! to wait for.

use std::time::Duration;

use super::get::message;
use super::state::{Paths, Registry};
use super::{Error, Result, EXIT_FAILED, EXIT_OK};
use crate::api::ConditionType;

/// How often the state dir is read while waiting.
pub const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The registry's name.
    pub name: String,
    /// `condition=TYPE` (status True), `condition=TYPE=False`, or `delete`.
    #[arg(long = "for", value_name = "condition=TYPE[=STATUS]|delete")]
    pub for_: String,
    /// Give up after this long: `30s`, `5m`.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// What is waited for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A condition with this status; for a valid spec, reported for the
    /// spec as it is now (not a status left from before an edit).
    Condition { type_: String, status: String },
    /// Nothing names the registry any more: no spec file, no state.
    Delete,
}

impl std::str::FromStr for Target {
    type Err = Error;

    fn from_str(s: &str) -> Result<Target> {
        if s == "delete" {
            return Ok(Target::Delete);
        }
        let Some(rest) = s.strip_prefix("condition=") else {
            return Err(Error::Usage(format!(
                "--for={s}: expected condition=TYPE[=STATUS] or delete"
            )));
        };
        let (t, status) = rest.split_once('=').unwrap_or((rest, "True"));
        let status = match status.to_ascii_lowercase().as_str() {
            "true" => "True",
            "false" => "False",
            "unknown" => "Unknown",
            other => {
                return Err(Error::Usage(format!(
                    "--for={s}: condition status must be True, False or Unknown, got {other}"
                )))
            }
        };
        if t.is_empty() {
            return Err(Error::Usage(format!(
                "--for={s}: the condition type is empty"
            )));
        }
        // kubectl matches condition types case-insensitively.
        let type_ = ConditionType::ALL
            .iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(t))
            .map(|k| k.to_string())
            .unwrap_or_else(|| t.to_string());
        Ok(Target::Condition {
            type_,
            status: status.to_string(),
        })
    }
}

/// Whether `r` (None: nothing names it) meets `target`.
pub fn met(paths: &Paths, r: Option<&Registry>, target: &Target) -> bool {
    match (target, r) {
        (Target::Delete, r) => r.is_none(),
        (Target::Condition { .. }, None) => false,
        (Target::Condition { type_, status }, Some(r)) => {
            let has = r.condition(type_).is_some_and(|c| &c.status == status);
            let current = r.loaded().is_none() || r.status_is_current(paths.host());
            has && current
        }
    }
}

/// Polls until `target` is met or `timeout` passes; `progress` sees every
/// registry state read. Ok(true) when met.
pub async fn until(
    paths: &Paths,
    name: &str,
    target: &Target,
    timeout: Duration,
    progress: &mut dyn FnMut(Option<&Registry>),
) -> Result<bool> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let r = paths.lookup(name)?;
        progress(r.as_ref());
        if met(paths, r.as_ref(), target) {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(POLL).await;
    }
}

pub async fn run(paths: &Paths, args: Args) -> Result<i32> {
    let target: Target = args.for_.parse()?;
    if matches!(target, Target::Condition { .. }) {
        // kubectl's answer for a resource that does not exist.
        paths.find(&args.name)?;
    }
    let mut last = None;
    let met = until(paths, &args.name, &target, args.timeout, &mut |r| {
        last = r.map(|r| format!("phase {}: {}", r.phase(), message(r)));
    })
    .await?;
    if met {
        outln!("mirrorregistry/{} condition met", args.name);
        return Ok(EXIT_OK);
    }
    eprintln!(
        "error: timed out waiting for the condition on mirrorregistry/{}",
        args.name
    );
    if let Some(l) = last {
        eprintln!("  (last seen: {l})");
    }
    Ok(EXIT_FAILED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_like_kubectl() {
        let c = |t: &str, s: &str| Target::Condition {
            type_: t.into(),
            status: s.into(),
        };
        assert_eq!("delete".parse::<Target>().unwrap(), Target::Delete);
        assert_eq!(
            "condition=Ready".parse::<Target>().unwrap(),
            c("Ready", "True")
        );
        assert_eq!(
            "condition=ready=false".parse::<Target>().unwrap(),
            c("Ready", "False")
        );
        assert_eq!(
            "condition=SpecValid=False".parse::<Target>().unwrap(),
            c("SpecValid", "False")
        );
        for bad in [
            "ready",
            "condition=",
            "condition=Ready=maybe",
            "jsonpath={.x}",
        ] {
            let e = bad.parse::<Target>().unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
    }
}
