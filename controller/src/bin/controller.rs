//! mirror-registry-controller: converges podman pods, volumes, TLS,
//! credentials and systemd units to the MirrorRegistry specs in a directory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use mirror_registry::api::defaults::HostFacts;
use mirror_registry::host::{self, lock, podman, systemd};
use mirror_registry::observability;
use mirror_registry::reconcile::{run, Context, StatusMode};
use mirror_registry::settings::{self, Scope};
use mirror_registry::telemetry::{self, LogFormat};

/// The exit status of a controller that another one keeps out.
const EXIT_LOCKED: i32 = 3;
/// Invalid arguments, as clap exits for them.
const EXIT_USAGE: i32 = 2;

const AFTER_HELP: &str = "\
One controller per directory: the controller holds an exclusive lock on
<state-dir>/.lock and on the watch directory for as long as it runs (the
kernel drops it when the process ends, however it ends). Another controller
started on either directory, --once included, refuses before touching
anything, naming the holder (pid and unit); --lock-timeout makes it wait for
the holder to exit first (the unit mrctl install writes waits 30s).

Exit status:
  0  stopped by SIGTERM or SIGINT; with --once, every registry is Ready
  1  an error; with --once, a registry is not Ready within --once-timeout,
     or podman's socket or the systemd manager did not answer within 30s
  2  invalid arguments
  3  another controller holds the lock of the state or watch directory";

#[derive(Debug, Parser)]
#[command(name = "mirror-registry-controller", version, about, after_help = AFTER_HELP)]
struct Args {
    /// Directory of MirrorRegistry spec files (*.yaml, *.yml).
    #[arg(long, env = settings::env::WATCH_DIR, default_value = settings::DEFAULT_WATCH_DIR)]
    watch_dir: PathBuf,
    /// system: system bus and /etc/systemd/system; user: session bus and
    /// ~/.config/systemd/user.
    #[arg(
        long,
        env = settings::env::SCOPE,
        value_enum,
        default_value = settings::DEFAULT_SCOPE
    )]
    scope: Scope,
    /// What the controller owns: status copies, ownership records.
    #[arg(long, env = settings::env::STATE_DIR)]
    state_dir: Option<PathBuf>,
    /// Podman's API socket. Default: /run/podman/podman.sock (system),
    /// $XDG_RUNTIME_DIR/podman/podman.sock (user).
    #[arg(long, env = settings::env::PODMAN_SOCKET)]
    podman_socket: Option<PathBuf>,
    /// Look at every registry this often, for drift no event announced.
    #[arg(long, env = "MIRROR_REGISTRY_RESYNC_INTERVAL", default_value = "5m", value_parser = humantime::parse_duration)]
    resync_interval: Duration,
    /// inline: write status into the spec file too; state-only: never write
    /// the spec file.
    #[arg(
        long,
        env = "MIRROR_REGISTRY_STATUS_MODE",
        value_enum,
        default_value = "inline"
    )]
    status_mode: StatusMode,
    /// Reconcile every spec once and exit: 0 only if all are Ready. Takes
    /// the same lock as the daemon: refuses (exit 3) while another
    /// controller runs on these directories.
    #[arg(long, env = "MIRROR_REGISTRY_ONCE")]
    once: bool,
    /// With --once: how long to wait for registries to become Ready. It
    /// ends sooner, with status 1 naming the socket or bus, when podman's
    /// API socket or the systemd manager does not answer within 30s.
    #[arg(long, env = "MIRROR_REGISTRY_ONCE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    once_timeout: Duration,
    /// How long to wait for another controller holding the state or watch
    /// directory's lock to exit before refusing (exit 3); 0s: refuse at once.
    #[arg(long, env = lock::LOCK_TIMEOUT_ENV, default_value = "0s", value_parser = humantime::parse_duration)]
    lock_timeout: Duration,
    /// Serve Prometheus metrics at /metrics and a status page at / on
    /// ADDR (IP:PORT, e.g. 127.0.0.1:9161). Off unless given; not with
    /// --once. A loopback address unless --metrics-auth-file is given.
    #[arg(long, env = observability::ADDRESS_ENV, value_name = "ADDR")]
    metrics_address: Option<String>,
    /// With --metrics-address: HTTP Basic credentials every request must
    /// carry, from a file only the controller's user may read (mode 0600;
    /// 'username:' and 'password:' lines). Required for an address other
    /// than loopback.
    #[arg(long, env = observability::AUTH_FILE_ENV, value_name = "FILE")]
    metrics_auth_file: Option<PathBuf>,
    #[arg(
        long,
        env = "MIRROR_REGISTRY_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    telemetry::init(args.log_format);
    let listen = match metrics_listen(&args) {
        Ok(l) => l,
        Err(msg) => {
            eprintln!("error: {msg}");
            std::process::exit(EXIT_USAGE);
        }
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cx = Context::new(
        args.watch_dir,
        args.state_dir
            .unwrap_or_else(|| settings::default_state_dir(args.scope)),
        args.scope,
        args.status_mode,
        HostFacts { fqdn: host::fqdn() },
        mirror_registry::render::Context {
            podman: settings::podman_binary(),
            wanted_by: settings::wanted_by(args.scope).to_string(),
        },
        systemd::unit_dir(args.scope).context("unit directory")?,
        settings::certs_d(),
        args.podman_socket
            .unwrap_or_else(|| podman::default_socket(args.scope == Scope::User)),
    );
    let cx = Arc::new(cx);
    // Before anything is written: a second controller leaves everything as
    // the first one keeps it.
    let held = match run::take_lock(&cx, args.lock_timeout, !args.once) {
        Ok(l) => l,
        Err(e) if e.is_held() => {
            let msg = if args.once {
                format!(
                    "{e}; refusing to run --once beside it (it converges these registries already)"
                )
            } else {
                format!("{e}; refusing to start")
            };
            tracing::error!("{msg}");
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Status(&msg)]);
            std::process::exit(EXIT_LOCKED);
        }
        Err(e) => return Err(e).context("take the controller's lock"),
    };
    if args.once {
        let ready = run::once(cx, args.once_timeout, &held).await?;
        std::process::exit(if ready { 0 } else { 1 });
    }
    if let Some(l) = listen {
        let wanted = l.address;
        let addr = observability::serve(cx.clone(), l)
            .await
            .with_context(|| format!("--metrics-address {wanted}: cannot listen"))?;
        tracing::info!(
            "serving metrics at http://{addr}/metrics and the status page at http://{addr}/"
        );
    }
    run::run(cx, args.resync_interval, held).await
}

/// `--metrics-address` and `--metrics-auth-file`, checked before anything
/// starts; `None` when off.
fn metrics_listen(args: &Args) -> Result<Option<observability::Listen>, String> {
    let address = args.metrics_address.as_deref().filter(|a| !a.is_empty());
    match (address, &args.metrics_auth_file) {
        (None, Some(_)) => Err("--metrics-auth-file needs --metrics-address".into()),
        (None, None) => Ok(None),
        (Some(a), auth) => observability::listen(a, auth.as_deref()).map(Some),
    }
}
