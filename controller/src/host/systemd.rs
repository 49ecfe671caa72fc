//! systemd over D-Bus (org.freedesktop.systemd1): unit jobs that are waited
//! for, enablement, and the unit state the controller reports.
//!
//! The system manager and a user manager speak the same API; only the bus and
//! the unit directory differ, so one `Systemd` serves both scopes.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use zbus::names::InterfaceName;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};
use zbus::{proxy, Connection};

/// How long a start, restart or stop job may take before we give up waiting.
/// systemd's own default start timeout is 90s.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(90);

mod unit_state;

pub use unit_state::{ActiveState, UnitState};

const UNIT_INTERFACE: &str = "org.freedesktop.systemd1.Unit";
const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connect to the systemd {scope} manager on the {bus}: {source}")]
    Connect {
        scope: Scope,
        bus: &'static str,
        #[source]
        source: Box<zbus::Error>,
    },
    #[error("systemd {op} {target}: {source}")]
    Call {
        op: &'static str,
        target: String,
        #[source]
        source: Box<zbus::Error>,
    },
    #[error("systemd {op} {unit}: job finished with result '{result}'")]
    JobFailed {
        op: &'static str,
        unit: String,
        result: String,
    },
    #[error("systemd {op} {unit}: job did not finish within {}s", timeout.as_secs())]
    JobTimeout {
        op: &'static str,
        unit: String,
        timeout: Duration,
    },
    #[error("systemd {op} {unit}: the manager closed the signal stream before the job finished")]
    JobLost { op: &'static str, unit: String },
    #[error("systemd unit {unit}: property {property}: {message}")]
    Property {
        unit: String,
        property: &'static str,
        message: String,
    },
    #[error("cannot find the user unit directory: neither XDG_CONFIG_HOME nor HOME is set")]
    NoHome,
}

pub type Result<T> = std::result::Result<T, Error>;

/// Which manager the controller talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Scope {
    /// The system manager on the system bus; units in /etc/systemd/system.
    System,
    /// The calling user's manager on the session bus; units in
    /// ~/.config/systemd/user.
    User,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::System => "system",
            Scope::User => "user",
        })
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "system" => Ok(Scope::System),
            "user" => Ok(Scope::User),
            other => Err(format!("unknown scope '{other}': expected system or user")),
        }
    }
}

/// The directory the controller writes its unit files to for `scope`.
pub fn unit_dir(scope: Scope) -> Result<PathBuf> {
    match scope {
        Scope::System => Ok(PathBuf::from("/etc/systemd/system")),
        Scope::User => {
            let config = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
                Some(dir) => PathBuf::from(dir),
                None => std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|home| PathBuf::from(home).join(".config"))
                    .ok_or(Error::NoHome)?,
            };
            Ok(config.join("systemd").join("user"))
        }
    }
}

#[proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1",
    gen_blocking = false
)]
trait Manager {
    fn subscribe(&self) -> zbus::Result<()>;
    fn reload(&self) -> zbus::Result<()>;
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;
    fn enable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
        force: bool,
    ) -> zbus::Result<(bool, Vec<(String, String, String)>)>;
    fn disable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
    ) -> zbus::Result<Vec<(String, String, String)>>;

    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: OwnedObjectPath,
        unit: String,
        result: String,
    ) -> zbus::Result<()>;

    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> zbus::Result<String>;
}

#[derive(Clone, Copy)]
enum JobKind {
    Start,
    Restart,
    Stop,
}

impl JobKind {
    fn op(self) -> &'static str {
        match self {
            JobKind::Start => "start",
            JobKind::Restart => "restart",
            JobKind::Stop => "stop",
        }
    }
}

/// A connection to one systemd manager. Cheap to clone; clones share the
/// connection and the call counter.
#[derive(Clone)]
pub struct Systemd {
    scope: Scope,
    conn: Connection,
    manager: ManagerProxy<'static>,
    calls: Arc<AtomicU64>,
    job_timeout: Duration,
}

impl fmt::Debug for Systemd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Systemd")
            .field("scope", &self.scope)
            .field("dbus_calls", &self.dbus_calls())
            .finish()
    }
}

impl Systemd {
    /// Connects to the manager of `scope` and proves it answers by reading
    /// its version. Also subscribes, so the manager emits job signals.
    pub async fn connect(scope: Scope) -> Result<Self> {
        let bus = match scope {
            Scope::System => "system bus",
            Scope::User => "session bus",
        };
        let connect_err = |source| Error::Connect {
            scope,
            bus,
            source: Box::new(source),
        };
        let conn = match scope {
            Scope::System => Connection::system().await,
            Scope::User => Connection::session().await,
        }
        .map_err(connect_err)?;
        // Property caching would add a GetAll and a match rule per proxy and
        // could serve stale values; every read here goes to the manager.
        let manager = ManagerProxy::builder(&conn)
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(connect_err)?;
        let calls = Arc::new(AtomicU64::new(0));
        calls.fetch_add(2, Ordering::Relaxed);
        manager.version().await.map_err(connect_err)?;
        // Without a subscriber the manager does not emit JobRemoved.
        manager.subscribe().await.map_err(connect_err)?;
        Ok(Self {
            scope,
            conn,
            manager,
            calls,
            job_timeout: JOB_TIMEOUT,
        })
    }

    /// Changes how long start/restart/stop wait for their job.
    pub fn with_job_timeout(mut self, timeout: Duration) -> Self {
        self.job_timeout = timeout;
        self
    }

    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// D-Bus method calls made so far (by this value and its clones).
    pub fn dbus_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// daemon-reload: the manager rereads every unit file.
    pub async fn reload(&self) -> Result<()> {
        self.count();
        self.manager.reload().await.map_err(|source| Error::Call {
            op: "reload",
            target: format!("the {} manager", self.scope),
            source: Box::new(source),
        })
    }

    /// Starts `unit` and waits until its job finishes; an error carries the
    /// job result (failed, dependency, timeout, …).
    pub async fn start(&self, unit: &str) -> Result<()> {
        self.run_job(JobKind::Start, unit).await
    }

    /// Queues a start of `unit` alone (mode `ignore-requirements`: what it
    /// `Wants=` is not pulled in; ordering still holds) and returns without
    /// waiting. A later [`Systemd::start`] of the same unit joins that job.
    pub async fn queue_start_alone(&self, unit: &str) -> Result<()> {
        self.count();
        self.manager
            .start_unit(unit, "ignore-requirements")
            .await
            .map(drop)
            .map_err(|source| Error::Call {
                op: "start",
                target: unit.to_string(),
                source: Box::new(source),
            })
    }

    /// Restarts `unit` (starts it when inactive) and waits for the job.
    pub async fn restart(&self, unit: &str) -> Result<()> {
        self.run_job(JobKind::Restart, unit).await
    }

    /// Restarts `unit` like [`Systemd::restart`]; when that job fails (the
    /// unit went to its failed state: an `ExecStartPre` that lost a race
    /// with the previous container's removal, a start refused by the rate
    /// limit), clears the failed state and starts it once more. An error
    /// names the unit and the last job's result.
    pub async fn restart_recovering(&self, unit: &str) -> Result<()> {
        match self.restart(unit).await {
            Err(Error::JobFailed { result, .. }) if result == "failed" => {
                tracing::warn!(
                    unit,
                    "restart job failed; resetting the failed state and starting once more"
                );
                self.reset_failed(unit).await?;
                match self.start(unit).await {
                    Err(Error::JobFailed { unit, result, .. }) => Err(Error::JobFailed {
                        op: "start (after a failed restart and reset-failed)",
                        unit,
                        result,
                    }),
                    other => other,
                }
            }
            other => other,
        }
    }

    /// Stops `unit` and waits for the job. A unit the manager does not know
    /// is already stopped.
    pub async fn stop(&self, unit: &str) -> Result<()> {
        match self.run_job(JobKind::Stop, unit).await {
            Err(Error::Call { source, .. }) if is_no_such_unit(&source) => Ok(()),
            other => other,
        }
    }

    async fn run_job(&self, kind: JobKind, unit: &str) -> Result<()> {
        let op = kind.op();
        let call_err = |source| Error::Call {
            op,
            target: unit.to_string(),
            source: Box::new(source),
        };
        // Subscribe before queuing the job: a job that finishes at once would
        // otherwise signal before we listen.
        self.count();
        let mut removed = self.manager.receive_job_removed().await.map_err(call_err)?;
        self.count();
        let job = match kind {
            JobKind::Start => self.manager.start_unit(unit, "replace").await,
            JobKind::Restart => self.manager.restart_unit(unit, "replace").await,
            JobKind::Stop => self.manager.stop_unit(unit, "replace").await,
        }
        .map_err(call_err)?;

        let wait = async {
            while let Some(signal) = removed.next().await {
                let Ok(args) = signal.args() else { continue };
                if args.job().as_str() != job.as_str() {
                    continue;
                }
                return match args.result().as_str() {
                    "done" => Ok(()),
                    result => Err(Error::JobFailed {
                        op,
                        unit: unit.to_string(),
                        result: result.to_string(),
                    }),
                };
            }
            Err(Error::JobLost {
                op,
                unit: unit.to_string(),
            })
        };
        tokio::time::timeout(self.job_timeout, wait)
            .await
            .map_err(|_| Error::JobTimeout {
                op,
                unit: unit.to_string(),
                timeout: self.job_timeout,
            })?
    }

    /// Enables unit files (names in the unit search path, or absolute
    /// paths): creates the symlinks their [Install] section asks for.
    /// Returns whether anything changed on disk.
    ///
    /// Like `systemctl enable`, a change is followed by a reload: the manager
    /// caches UnitFileState (and the new dependencies) until it reloads, so
    /// without it `unit()` would go on reporting the old state.
    pub async fn enable(&self, unit_files: &[String]) -> Result<bool> {
        let changes = self.link(unit_files).await?;
        self.reload_after_changes(changes).await
    }

    /// [`Systemd::enable`] without the reload: for units the manager has
    /// not loaded yet, which it then loads from disk, links included.
    /// Returns whether anything changed on disk.
    pub async fn enable_unloaded(&self, unit_files: &[String]) -> Result<bool> {
        Ok(self.link(unit_files).await? > 0)
    }

    /// The symlinks of `enable`; the number of changes.
    async fn link(&self, unit_files: &[String]) -> Result<usize> {
        let files: Vec<&str> = unit_files.iter().map(String::as_str).collect();
        self.count();
        let (_, changes) = self
            .manager
            .enable_unit_files(&files, false, true)
            .await
            .map_err(|source| Error::Call {
                op: "enable",
                target: unit_files.join(" "),
                source: Box::new(source),
            })?;
        Ok(changes.len())
    }

    /// Removes the symlinks `enable` created; reloads after a change, as
    /// `enable` does. Returns whether anything changed on disk.
    pub async fn disable(&self, unit_files: &[String]) -> Result<bool> {
        let files: Vec<&str> = unit_files.iter().map(String::as_str).collect();
        self.count();
        let changes = self
            .manager
            .disable_unit_files(&files, false)
            .await
            .map_err(|source| Error::Call {
                op: "disable",
                target: unit_files.join(" "),
                source: Box::new(source),
            })?;
        self.reload_after_changes(changes.len()).await
    }

    async fn reload_after_changes(&self, changes: usize) -> Result<bool> {
        if changes == 0 {
            return Ok(false);
        }
        self.reload().await?;
        Ok(true)
    }

    /// Loads `unit` (a unit without a file reads as load_state "not-found")
    /// and reads its state in one GetAll call.
    pub async fn unit(&self, unit: &str) -> Result<UnitState> {
        let call_err = |op| {
            move |source| Error::Call {
                op,
                target: unit.to_string(),
                source: Box::new(source),
            }
        };
        self.count();
        let path = self
            .manager
            .load_unit(unit)
            .await
            .map_err(call_err("load"))?;
        let props = zbus::fdo::PropertiesProxy::builder(&self.conn)
            .destination("org.freedesktop.systemd1")
            .and_then(|b| b.path(path))
            .map_err(call_err("read properties of"))?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(call_err("read properties of"))?;
        self.count();
        let all = props
            .get_all(InterfaceName::from_static_str_unchecked(UNIT_INTERFACE))
            .await
            .map_err(|e| call_err("read properties of")(zbus::Error::from(e)))?;
        let reader = Props { unit, all: &all };
        Ok(UnitState {
            load_state: reader.string("LoadState")?,
            active_state: reader.string("ActiveState")?.into(),
            sub_state: reader.string("SubState")?,
            unit_file_state: reader.string("UnitFileState")?,
            need_daemon_reload: reader.boolean("NeedDaemonReload")?,
            fragment_path: reader.string("FragmentPath")?,
            last_active_us: reader
                .u64("ActiveExitTimestampMonotonic")?
                .saturating_sub(reader.u64("ActiveEnterTimestampMonotonic")?),
        })
    }

    /// Clears the failed state of `unit`, so a start is not refused by the
    /// start rate limit. A unit the manager does not know is fine.
    pub async fn reset_failed(&self, unit: &str) -> Result<()> {
        self.count();
        match self.manager.reset_failed_unit(unit).await {
            Ok(()) => Ok(()),
            Err(e) if is_no_such_unit(&e) => Ok(()),
            Err(source) => Err(Error::Call {
                op: "reset-failed",
                target: unit.to_string(),
                source: Box::new(source),
            }),
        }
    }
}

fn is_no_such_unit(e: &zbus::Error) -> bool {
    matches!(e, zbus::Error::MethodError(name, _, _) if name.as_str() == NO_SUCH_UNIT)
}

struct Props<'a> {
    unit: &'a str,
    all: &'a HashMap<String, OwnedValue>,
}

impl Props<'_> {
    fn get(&self, property: &'static str) -> Result<&OwnedValue> {
        self.all.get(property).ok_or_else(|| Error::Property {
            unit: self.unit.to_string(),
            property,
            message: "missing".to_string(),
        })
    }

    fn string(&self, property: &'static str) -> Result<String> {
        let value = self.get(property)?;
        <&str>::try_from(&**value)
            .map(str::to_string)
            .map_err(|e| Error::Property {
                unit: self.unit.to_string(),
                property,
                message: e.to_string(),
            })
    }

    fn u64(&self, property: &'static str) -> Result<u64> {
        let value = self.get(property)?;
        u64::try_from(&**value).map_err(|e| Error::Property {
            unit: self.unit.to_string(),
            property,
            message: e.to_string(),
        })
    }

    fn boolean(&self, property: &'static str) -> Result<bool> {
        let value = self.get(property)?;
        bool::try_from(&**value).map_err(|e| Error::Property {
            unit: self.unit.to_string(),
            property,
            message: e.to_string(),
        })
    }
}

/// Decodes a unit object path (`/org/freedesktop/systemd1/unit/a_2dpod_2eservice`)
/// into its unit name (`a-pod.service`).
pub fn unit_name_from_path(path: &str) -> Option<String> {
    let enc = path.strip_prefix("/org/freedesktop/systemd1/unit/")?;
    let bytes = enc.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Systemd {
    /// Names of units whose state changes, as the manager announces them
    /// (PropertiesChanged on unit objects). The stream ends when the
    /// connection does; the caller reconnects.
    pub async fn unit_changes(
        &self,
    ) -> Result<impl futures_util::Stream<Item = String> + Send + 'static> {
        use futures_util::StreamExt;
        let err = |source: zbus::Error| Error::Call {
            op: "subscribe to unit changes",
            target: format!("the {} manager", self.scope),
            source: Box::new(source),
        };
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender("org.freedesktop.systemd1")
            .and_then(|b| b.interface("org.freedesktop.DBus.Properties"))
            .and_then(|b| b.member("PropertiesChanged"))
            .and_then(|b| b.path_namespace("/org/freedesktop/systemd1/unit"))
            .map_err(err)?
            .build();
        let stream = zbus::MessageStream::for_match_rule(rule, &self.conn, None)
            .await
            .map_err(err)?;
        Ok(stream.filter_map(|m| async move {
            let m = m.ok()?;
            let path = m.header().path()?.to_string();
            unit_name_from_path(&path)
        }))
    }
}

#[cfg(test)]
mod path_tests {
    #[test]
    fn decodes_unit_paths() {
        assert_eq!(
            super::unit_name_from_path("/org/freedesktop/systemd1/unit/e2e_2d1_2dpod_2eservice")
                .as_deref(),
            Some("e2e-1-pod.service")
        );
        assert_eq!(super::unit_name_from_path("/other"), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_parses_and_prints() {
        assert_eq!("system".parse::<Scope>(), Ok(Scope::System));
        assert_eq!("user".parse::<Scope>(), Ok(Scope::User));
        assert!("session".parse::<Scope>().is_err());
        assert_eq!(Scope::User.to_string(), "user");
        assert_eq!(Scope::System.to_string(), "system");
    }

    #[test]
    fn system_unit_dir_is_etc() {
        assert_eq!(
            unit_dir(Scope::System).ok(),
            Some(PathBuf::from("/etc/systemd/system"))
        );
    }
}
