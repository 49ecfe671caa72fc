//! The controller's own systemd unit, as `mrctl install` writes it:
//! Type=notify (the controller says READY=1 once it watches), a watchdog it
//! pings, Restart=always, logs to the journal. Managed over D-Bus.
//!
//! One controller per directory (see `host::lock`): a restart is safe, since
//! systemd stops the old process before it starts the new one, and the unit
//! sets `MIRROR_REGISTRY_LOCK_TIMEOUT` ([`LOCK_TIMEOUT`]) so that a new
//! process finding the lock still held (a controller started by hand, a
//! `--once`, a unit of another scope on the same directories) waits that
//! long for it to exit rather than failing at once; then it fails, and
//! Restart=always tries again until the other one is gone.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Error, Result};
use crate::host::files;
use crate::host::lock;
use crate::host::systemd::Systemd;
use crate::settings::{self, Scope};

/// Flags that place the controller's unit; hidden ones exist for tests and
/// for hosts that run more than one controller.
#[derive(Clone, Debug, clap::Args)]
pub struct ControllerArgs {
    /// Name of the controller's systemd unit.
    #[arg(long = "controller-unit", default_value = settings::CONTROLLER_UNIT, hide = true)]
    pub controller_unit: String,
    /// The controller binary the unit runs. Default: mirror-registry-controller
    /// beside this mrctl.
    #[arg(long = "controller-bin", value_name = "PATH")]
    pub controller_bin: Option<PathBuf>,
    /// Append the controller's log to this file instead of the journal.
    #[arg(long = "controller-log", value_name = "PATH", hide = true)]
    pub controller_log: Option<PathBuf>,
    /// WatchdogSec= of the unit.
    #[arg(long = "controller-watchdog", default_value = "30s", value_parser = humantime::parse_duration, hide = true)]
    pub controller_watchdog: Duration,
}

/// How long the unit's controller waits for another holder of its lock to
/// exit (well within TimeoutStartSec=).
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// `NAME` → `NAME.service`.
pub fn unit_name(name: &str) -> String {
    if name.ends_with(".service") {
        name.to_string()
    } else {
        format!("{name}.service")
    }
}

/// Everything the unit text depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitConfig {
    pub exec: PathBuf,
    pub scope: Scope,
    pub watch_dir: PathBuf,
    pub state_dir: PathBuf,
    /// Further environment (scope, podman socket, session bus...).
    pub env: Vec<(String, String)>,
    pub watchdog: Duration,
    pub log_file: Option<PathBuf>,
}

/// One `Environment=` value, quoted for systemd: `%` is a specifier, and
/// quotes and backslashes need escaping inside double quotes.
fn env_line(key: &str, value: &str) -> String {
    let v = format!("{key}={value}")
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%");
    format!("Environment=\"{v}\"")
}

/// The unit file's text. Pure.
pub fn unit_text(c: &UnitConfig) -> String {
    let mut env = vec![
        env_line(settings::env::SCOPE, &c.scope.to_string()),
        env_line(settings::env::WATCH_DIR, &c.watch_dir.display().to_string()),
        env_line(settings::env::STATE_DIR, &c.state_dir.display().to_string()),
        env_line(
            lock::LOCK_TIMEOUT_ENV,
            &humantime::format_duration(LOCK_TIMEOUT).to_string(),
        ),
    ];
    env.extend(c.env.iter().map(|(k, v)| env_line(k, v)));
    let log = match &c.log_file {
        Some(f) => format!(
            "StandardOutput=append:{p}\nStandardError=append:{p}",
            p = f.display().to_string().replace('%', "%%")
        ),
        None => "StandardOutput=journal\nStandardError=journal".to_string(),
    };
    format!(
        "# Written by mrctl install; mrctl uninstall removes it.
[Unit]
Description=mirror-registry controller for {watch}
Documentation=man:mrctl(1)
Wants=network-online.target
After=network-online.target

[Service]
Type=notify
NotifyAccess=main
WatchdogSec={watchdog}
Restart=always
RestartSec=2s
TimeoutStartSec=90s
TimeoutStopSec=30s
{env}
ExecStart={exec}
{log}
SyslogIdentifier=mirror-registry-controller

[Install]
WantedBy={wanted_by}
",
        watch = c.watch_dir.display(),
        watchdog = humantime::format_duration(c.watchdog),
        env = env.join("\n"),
        exec = crate::render::unit::quote(&c.exec.display().to_string()),
        wanted_by = settings::wanted_by(c.scope),
    )
}

/// The controller binary: the one given, else `mirror-registry-controller`
/// beside the running mrctl.
pub fn controller_binary(given: Option<&Path>) -> Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .map_err(files::io(
                "find the running mrctl",
                Path::new("/proc/self/exe"),
            ))?
            .with_file_name("mirror-registry-controller"),
    };
    let abs = std::fs::canonicalize(&path).map_err(|_| {
        Error::Failed(format!(
            "controller binary {} not found; give its path with --controller-bin",
            path.display()
        ))
    })?;
    if !abs.is_file() {
        return Err(Error::Failed(format!(
            "controller binary {} is not a file",
            abs.display()
        )));
    }
    Ok(abs)
}

/// The lines of a controller unit that say what it manages: scope, watch
/// dir and state dir.
fn managed(text: &str) -> Vec<String> {
    let keys = [
        settings::env::SCOPE,
        settings::env::WATCH_DIR,
        settings::env::STATE_DIR,
    ];
    text.lines()
        .filter_map(|l| l.strip_prefix("Environment=\""))
        .filter(|l| keys.iter().any(|k| l.starts_with(&format!("{k}="))))
        .map(|l| l.trim_end_matches('"').replace("%%", "%"))
        .collect()
}

/// The directory a controller unit's text gives for `key`.
fn managed_dir(text: &str, key: &str) -> Option<PathBuf> {
    managed(text)
        .into_iter()
        .find_map(|l| l.strip_prefix(&format!("{key}=")).map(PathBuf::from))
}

/// Another process than `unit` holding the lock of the directories the
/// unit's text names: the unit's controller would wait for it.
fn lock_holder(text: &str, unit: &str) -> Option<lock::Error> {
    let state = managed_dir(text, settings::env::STATE_DIR)?;
    let watch = managed_dir(text, settings::env::WATCH_DIR)?;
    lock::probe(&state, &watch).filter(|e| e.holder().and_then(|h| h.unit.as_deref()) != Some(unit))
}

/// Whether the unit's running controller runs a binary since replaced on
/// disk (an upgrade copied a new one over the same path): the unit file is
/// the same then, yet the controller must restart to run the new binary.
fn binary_replaced(text: &str, unit: &str) -> bool {
    let (Some(state), Some(watch)) = (
        managed_dir(text, settings::env::STATE_DIR),
        managed_dir(text, settings::env::WATCH_DIR),
    ) else {
        return false;
    };
    lock::probe(&state, &watch)
        .as_ref()
        .and_then(|e| e.holder())
        .filter(|h| h.unit.as_deref() == Some(unit))
        .and_then(|h| h.pid)
        .is_some_and(exe_replaced)
}

/// The executable of process `pid` is no longer the file at its path.
fn exe_replaced(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .is_ok_and(|p| p.to_string_lossy().ends_with(" (deleted)"))
}

/// What `ensure` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Ensured {
    pub file_changed: bool,
    /// Started or restarted.
    pub started: bool,
}

/// Refuses, before anything is written, a unit that would take over a
/// controller managing other directories, or that systemd would not load
/// from the unit directory (a transient unit from systemd-run, or a file
/// earlier in the search path, wins over ours).
pub async fn preflight(systemd: &Systemd, unit_dir: &Path, unit: &str, text: &str) -> Result<()> {
    let path = unit_dir.join(unit);
    if let Some(old) = files::read_optional(&path)? {
        let (old, new) = (String::from_utf8_lossy(&old), managed(text));
        if managed(&old) != new {
            return Err(Error::Failed(format!(
                "{} already runs a controller for other directories ({}); changing it would orphan what it manages: use the same --watch-dir, --state-dir and --scope, or another --controller-unit",
                path.display(),
                managed(&old).join(", ")
            )));
        }
    }
    let state = systemd.unit(unit).await?;
    if !state.fragment_path.is_empty() && Path::new(&state.fragment_path) != path {
        return Err(Error::Failed(format!(
            "{unit} is loaded from {} rather than {}; stop it first (systemctl{} stop {unit}) or choose another --controller-unit",
            state.fragment_path,
            path.display(),
            if systemd.scope() == Scope::User { " --user" } else { "" }
        )));
    }
    Ok(())
}

/// Writes the unit when it differs, reloads, enables, and starts it (or
/// restarts it when its file changed). The start job of a Type=notify unit
/// finishes when the controller reports READY=1.
pub async fn ensure(systemd: &Systemd, unit_dir: &Path, unit: &str, text: &str) -> Result<Ensured> {
    if !unit_dir.is_dir() {
        files::ensure_dir(unit_dir, 0o755)?;
    }
    preflight(systemd, unit_dir, unit, text).await?;
    let path = unit_dir.join(unit);
    let file_changed = files::write_if_changed(&path, text.as_bytes(), 0o644)?;
    if file_changed {
        systemd.reload().await?;
    }
    let state = systemd.unit(unit).await?;
    if state.unit_file_state != "enabled" {
        systemd.enable(&[unit.to_string()]).await?;
    }
    let started = if state.active_state.is_active() && !file_changed && !binary_replaced(text, unit)
    {
        false
    } else {
        // A restart stops the unit's own controller first; anyone else
        // holding the lock is waited for, up to LOCK_TIMEOUT.
        if let Some(held) = lock_holder(text, unit) {
            eprintln!(
                "{held}; {unit} waits up to {} for it to exit",
                humantime::format_duration(LOCK_TIMEOUT)
            );
        }
        if state.active_state.is_active() {
            systemd.restart(unit).await
        } else {
            systemd.reset_failed(unit).await?;
            systemd.start(unit).await
        }
        .map_err(|e| {
            let held = lock_holder(text, unit)
                .map(|h| {
                    format!(
                        "; {h}: {unit} keeps trying (Restart=always) and takes over once it exits"
                    )
                })
                .unwrap_or_default();
            Error::Failed(format!(
                "{e}; the controller did not report ready (see its log: journalctl{} -u {unit}){held}",
                if systemd.scope() == Scope::User {
                    " --user"
                } else {
                    ""
                }
            ))
        })?;
        true
    };
    Ok(Ensured {
        file_changed,
        started,
    })
}

/// Stops, disables and removes the unit. Returns whether there was one.
pub async fn remove(systemd: &Systemd, unit_dir: &Path, unit: &str) -> Result<bool> {
    let path = unit_dir.join(unit);
    let existed = path.exists();
    systemd.stop(unit).await?;
    if existed {
        systemd.disable(&[unit.to_string()]).await?;
        files::remove_if_exists(&path)?;
        systemd.reload().await?;
    }
    systemd.reset_failed(unit).await?;
    Ok(existed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real process whose binary is replaced at its path, as an upgrade
    /// copying over the same file does.
    #[test]
    fn a_binary_replaced_under_its_process_is_seen() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("sleeper");
        std::fs::copy("/bin/sleep", &bin).unwrap();
        let mut child = std::process::Command::new(&bin).arg("30").spawn().unwrap();
        let pid = child.id();
        assert!(!exe_replaced(pid));
        let new = d.path().join("sleeper.new");
        std::fs::copy("/bin/sleep", &new).unwrap();
        std::fs::rename(&new, &bin).unwrap();
        let replaced = exe_replaced(pid);
        let _ = child.kill();
        let _ = child.wait();
        assert!(replaced);
        assert!(!exe_replaced(u32::MAX));
    }

    #[test]
    fn unit_is_notify_with_watchdog_and_quoted_environment() {
        let c = UnitConfig {
            exec: PathBuf::from("/usr/local/bin/mirror-registry-controller"),
            scope: Scope::User,
            watch_dir: PathBuf::from("/srv/specs 100%"),
            state_dir: PathBuf::from("/var/lib/x"),
            env: vec![("XDG_RUNTIME_DIR".into(), "/run/user/0".into())],
            watchdog: Duration::from_secs(30),
            log_file: None,
        };
        let t = unit_text(&c);
        for want in [
            "Type=notify\n",
            "NotifyAccess=main\n",
            "WatchdogSec=30s\n",
            "Restart=always\n",
            "Environment=\"MIRROR_REGISTRY_SCOPE=user\"\n",
            "Environment=\"MIRROR_REGISTRY_WATCH_DIR=/srv/specs 100%%\"\n",
            "Environment=\"MIRROR_REGISTRY_STATE_DIR=/var/lib/x\"\n",
            "Environment=\"MIRROR_REGISTRY_LOCK_TIMEOUT=30s\"\n",
            "Environment=\"XDG_RUNTIME_DIR=/run/user/0\"\n",
            "ExecStart=/usr/local/bin/mirror-registry-controller\n",
            "StandardError=journal\n",
            "WantedBy=default.target\n",
        ] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
        let sys = unit_text(&UnitConfig {
            scope: Scope::System,
            log_file: Some(PathBuf::from("/tmp/c.log")),
            ..c
        });
        assert!(sys.contains("WantedBy=multi-user.target\n"));
        assert!(sys.contains("StandardError=append:/tmp/c.log\n"));
    }

    #[test]
    fn what_a_unit_manages_is_read_back() {
        let c = UnitConfig {
            exec: PathBuf::from("/bin/c"),
            scope: Scope::User,
            watch_dir: PathBuf::from("/w"),
            state_dir: PathBuf::from("/s"),
            env: vec![],
            watchdog: Duration::from_secs(30),
            log_file: None,
        };
        let a = unit_text(&c);
        assert_eq!(
            managed(&a),
            vec![
                "MIRROR_REGISTRY_SCOPE=user",
                "MIRROR_REGISTRY_WATCH_DIR=/w",
                "MIRROR_REGISTRY_STATE_DIR=/s"
            ]
        );
        let moved = unit_text(&UnitConfig {
            exec: PathBuf::from("/bin/new"),
            ..c.clone()
        });
        assert_eq!(
            managed(&moved),
            managed(&a),
            "a new binary manages the same"
        );
        let other = unit_text(&UnitConfig {
            watch_dir: PathBuf::from("/elsewhere"),
            ..c
        });
        assert_ne!(managed(&other), managed(&a));
        assert_eq!(
            managed_dir(&other, settings::env::WATCH_DIR),
            Some(PathBuf::from("/elsewhere"))
        );
        assert_eq!(
            managed_dir(&a, settings::env::STATE_DIR),
            Some(PathBuf::from("/s"))
        );
    }

    #[test]
    fn unit_names_get_their_suffix_once() {
        assert_eq!(unit_name("a"), "a.service");
        assert_eq!(unit_name("a.service"), "a.service");
    }
}
