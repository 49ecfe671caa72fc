//! mirror-registry-controller: converges podman pods, volumes, TLS,
//! credentials and systemd units to the MirrorRegistry specs in a directory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use mirror_registry::api::defaults::HostFacts;
use mirror_registry::host::{self, podman, systemd};
use mirror_registry::reconcile::{run, Context, StatusMode};
use mirror_registry::settings::{self, Scope};
use mirror_registry::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(name = "mirror-registry-controller", version, about)]
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
    /// Reconcile every spec once and exit: 0 only if all are Ready.
    #[arg(long, env = "MIRROR_REGISTRY_ONCE")]
    once: bool,
    /// With --once: how long to wait for registries to become Ready.
    #[arg(long, env = "MIRROR_REGISTRY_ONCE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    once_timeout: Duration,
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
    if args.once {
        let ready = run::once(cx, args.once_timeout).await?;
        std::process::exit(if ready { 0 } else { 1 });
    }
    run::run(cx, args.resync_interval).await
}
