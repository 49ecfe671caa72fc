//! `mrctl install` and `upgrade`'s `--metrics-address` and
//! `--metrics-auth-file`: the controller's metrics listener, written into
//! its unit as `MIRROR_REGISTRY_METRICS_ADDRESS` and
//! `MIRROR_REGISTRY_METRICS_AUTH_FILE`. Omitted, the installed unit's
//! setting is kept (a new unit has none: off); an empty address turns it
//! off. Checked as the controller checks it, before anything is written.

use std::path::{Path, PathBuf};

use super::{Error, Result};
use crate::observability;

#[derive(Clone, Debug, Default, clap::Args)]
pub struct MetricsArgs {
    /// Have the controller serve its Prometheus metrics (/metrics) and a
    /// status page (/) on ADDR, e.g. 127.0.0.1:9161. Omitted: as the
    /// installed controller unit has it (off in a new one); "" turns it
    /// off. A loopback address unless --metrics-auth-file is given.
    #[arg(long = "metrics-address", value_name = "ADDR")]
    pub metrics_address: Option<String>,
    /// With --metrics-address: a file (mode 0600, 'username:' and
    /// 'password:' lines) whose credentials every request must carry (HTTP
    /// Basic). Required for an address other than loopback.
    #[arg(long = "metrics-auth-file", value_name = "FILE")]
    pub metrics_auth_file: Option<PathBuf>,
}

/// The value of `Environment="KEY=VALUE"` in a unit's text, unquoted as
/// `controller_unit` quotes it.
fn env_value(unit_text: &str, key: &str) -> Option<String> {
    unit_text.lines().find_map(|l| {
        let quoted = l.strip_prefix("Environment=\"")?.strip_suffix('"')?;
        let mut out = String::new();
        let mut chars = quoted.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.extend(chars.next()),
                '%' => {
                    chars.next();
                    out.push('%');
                }
                c => out.push(c),
            }
        }
        out.strip_prefix(&format!("{key}=")).map(str::to_string)
    })
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    std::env::current_dir()
        .map(|d| d.join(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

/// The unit's environment for the listener, given the flags and the unit
/// as installed now (if any). Refuses what the controller would refuse.
pub fn unit_env(m: &MetricsArgs, installed: Option<&str>) -> Result<Vec<(String, String)>> {
    let kept = |key| installed.and_then(|t| env_value(t, key));
    let (address, auth) = match m.metrics_address.as_deref() {
        None if m.metrics_auth_file.is_some() => {
            return Err(Error::Usage(
                "--metrics-auth-file needs --metrics-address".into(),
            ))
        }
        None => (
            kept(observability::ADDRESS_ENV),
            kept(observability::AUTH_FILE_ENV).map(PathBuf::from),
        ),
        Some("") => (None, None),
        Some(a) => (
            Some(a.to_string()),
            m.metrics_auth_file.as_deref().map(absolute),
        ),
    };
    let Some(address) = address else {
        return Ok(Vec::new());
    };
    observability::listen(&address, auth.as_deref()).map_err(Error::Usage)?;
    let mut env = vec![(observability::ADDRESS_ENV.to_string(), address)];
    if let Some(f) = auth {
        env.push((
            observability::AUTH_FILE_ENV.to_string(),
            f.display().to_string(),
        ));
    }
    Ok(env)
}

/// The listener's URLs, from a unit's environment, for install to print.
pub fn urls(env: &[(String, String)]) -> Option<String> {
    let addr = env
        .iter()
        .find(|(k, _)| k == observability::ADDRESS_ENV)
        .map(|(_, v)| v)?;
    Some(format!(
        "metrics: http://{addr}/metrics   status page: http://{addr}/"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::controller_unit::{unit_text, UnitConfig};
    use crate::settings::Scope;

    fn args(a: Option<&str>, f: Option<&str>) -> MetricsArgs {
        MetricsArgs {
            metrics_address: a.map(str::to_string),
            metrics_auth_file: f.map(PathBuf::from),
        }
    }

    #[test]
    fn given_kept_or_turned_off() {
        assert!(unit_env(&args(None, None), None).unwrap().is_empty());
        let env = unit_env(&args(Some("127.0.0.1:9161"), None), None).unwrap();
        assert_eq!(
            env,
            vec![(
                "MIRROR_REGISTRY_METRICS_ADDRESS".to_string(),
                "127.0.0.1:9161".to_string()
            )]
        );
        let text = unit_text(&UnitConfig {
            exec: PathBuf::from("/usr/local/bin/mirror-registry-controller"),
            scope: Scope::System,
            watch_dir: PathBuf::from("/etc/mirror-registry"),
            state_dir: PathBuf::from("/var/lib/x"),
            env: env.clone(),
            watchdog: std::time::Duration::from_secs(30),
            log_file: None,
        });
        assert!(text.contains("Environment=\"MIRROR_REGISTRY_METRICS_ADDRESS=127.0.0.1:9161\"\n"));
        // Upgrade without the flag keeps it; "" turns it off.
        assert_eq!(unit_env(&args(None, None), Some(&text)).unwrap(), env);
        assert!(unit_env(&args(Some(""), None), Some(&text))
            .unwrap()
            .is_empty());
        assert_eq!(
            urls(&env).unwrap(),
            "metrics: http://127.0.0.1:9161/metrics   status page: http://127.0.0.1:9161/"
        );
        // Beyond loopback without credentials: refused, as by the controller.
        let e = unit_env(&args(Some("0.0.0.0:9161"), None), None).unwrap_err();
        assert!(e.to_string().contains("--metrics-auth-file"), "{e}");
        assert!(unit_env(&args(None, Some("/x")), None).is_err());
    }

    #[test]
    fn environment_values_unquote() {
        let t = "Environment=\"A=x\"\nEnvironment=\"MIRROR_REGISTRY_METRICS_AUTH_FILE=/srv/a \\\"b\\\" 100%%\"\n";
        assert_eq!(
            env_value(t, "MIRROR_REGISTRY_METRICS_AUTH_FILE").unwrap(),
            "/srv/a \"b\" 100%"
        );
        assert_eq!(env_value(t, "A").unwrap(), "x");
        assert!(env_value(t, "B").is_none());
    }
}
