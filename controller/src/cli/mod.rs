//! `mrctl`: kubectl's habits for MirrorRegistry resources, and the original
//! mirror-registry's one-command install, uninstall and upgrade on top.
//!
//! mrctl never talks to the controller: it reads status from the state dir
//! (`<state-dir>/<name>/status.yaml`) and specs from the watch dir, and it
//! changes things only by placing or removing spec files there, so it works
//! the same in `--status-mode state-only` and with the controller stopped.

/// `print!` that ends mrctl quietly when stdout is a closed pipe
/// (`mrctl get | head -1`) instead of panicking.
macro_rules! out {
    ($($t:tt)*) => { $crate::cli::write_out(format_args!($($t)*)) };
}

/// `println!`, likewise.
macro_rules! outln {
    () => { $crate::cli::write_out(format_args!("\n")) };
    ($($t:tt)*) => { $crate::cli::write_out(format_args!("{}\n", format_args!($($t)*))) };
}

pub mod adopt;
pub mod apply;
pub mod bundle;
pub mod completion;
pub mod controller_metrics;
pub mod controller_unit;
pub mod credentials;
pub mod day2;
pub mod describe;
pub mod explain;
pub mod export;
pub mod get;
pub mod install;
pub mod logs;
pub mod remote;
pub mod render;
pub mod state;
pub mod uninstall;
pub mod validate;
pub mod wait;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::settings::{self, Scope};

/// Exit codes, as `kubectl` uses them.
pub const EXIT_OK: i32 = 0;
/// A command failed, or what was waited for did not happen.
pub const EXIT_FAILED: i32 = 1;
/// The command line is wrong (clap uses 2 as well).
pub const EXIT_USAGE: i32 = 2;

const AFTER_HELP: &str = "\
Exit codes:
  0  ok
  1  failed, not found, invalid spec, or not ready in time (wait, install)
  2  usage: unknown command, flag or value

Shared flags read MIRROR_REGISTRY_WATCH_DIR, MIRROR_REGISTRY_STATE_DIR,
MIRROR_REGISTRY_SCOPE and MIRROR_REGISTRY_PODMAN_SOCKET, like the controller.";

#[derive(Debug, Parser)]
#[command(
    name = "mrctl",
    version,
    about = "Manage mirror registries kept running by mirror-registry-controller",
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the controller keeps things; the same flags, variables and
/// defaults as the controller's.
#[derive(Clone, Debug, clap::Args)]
pub struct Global {
    /// Directory of MirrorRegistry spec files the controller watches.
    #[arg(long, global = true, help_heading = "Global options", env = settings::env::WATCH_DIR, default_value = settings::DEFAULT_WATCH_DIR)]
    pub watch_dir: PathBuf,
    /// The controller's state directory (status copies, ownership records).
    /// Default: /var/lib/mirror-registry-controller (system),
    /// ~/.local/state/mirror-registry-controller (user).
    #[arg(long, global = true, help_heading = "Global options", env = settings::env::STATE_DIR)]
    pub state_dir: Option<PathBuf>,
    /// system: system bus and /etc/systemd/system; user: session bus and
    /// ~/.config/systemd/user.
    #[arg(long, global = true, help_heading = "Global options", env = settings::env::SCOPE, value_enum, default_value = settings::DEFAULT_SCOPE)]
    pub scope: Scope,
    /// Podman's API socket (logs, describe). Default: /run/podman/podman.sock
    /// (system), $XDG_RUNTIME_DIR/podman/podman.sock (user).
    #[arg(long, global = true, help_heading = "Global options", env = settings::env::PODMAN_SOCKET)]
    pub podman_socket: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List registries (`get`, `get status`) or show one (`get NAME -o yaml`).
    Get(get::Args),
    /// Show a registry in detail: spec, conditions, components, events.
    Describe(describe::Args),
    /// Validate a spec file and place it into the watch directory.
    Apply(apply::ApplyArgs),
    /// Remove a registry's spec file; the controller tears it down (data is
    /// kept unless spec.deletionPolicy is Delete).
    Delete(apply::DeleteArgs),
    /// Wait for a condition (`--for=condition=Ready`) or for deletion.
    Wait(wait::Args),
    /// Print a registry's user, password, endpoint and CA file.
    Credentials(credentials::Args),
    /// Print the logs of a registry's container.
    Logs(logs::Args),
    /// Check spec files and print every problem with its field path.
    Validate(validate::Args),
    /// Print the unit and config files a spec would produce; touches nothing.
    Render(render::Args),
    /// Describe a field of the MirrorRegistry resource, e.g. `spec.tls`.
    Explain(explain::Args),
    /// Write a registry as YAML for `podman kube play`, a Kubernetes cluster
    /// or the Quay Operator, when it outgrows this host.
    Export(export::Args),
    /// Install a registry and the controller in one command (the original
    /// mirror-registry's flags).
    Install(install::InstallArgs),
    /// Remove a registry (and the controller when it manages nothing else);
    /// data is kept unless --autoApprove.
    Uninstall(uninstall::UninstallArgs),
    /// Move a registry to new images (and the controller unit to this
    /// binary); data, config and credentials are kept.
    Upgrade(install::UpgradeArgs),
    /// Delete blobs no manifest references (distribution engine), the
    /// registry read-only meanwhile.
    Gc(day2::gc::Args),
    /// Write a registry's spec, TLS, credentials and data into one tar file.
    Backup(day2::backup::Args),
    /// Bring a registry back from a `mrctl backup` file, here or on another host.
    Restore(day2::restore::Args),
    /// Write one offline tarball: mrctl, the controller and every image the
    /// engines need (`./mrctl install` on the target finds them).
    Bundle(bundle::BundleArgs),
    /// Take over a registry the original mirror-registry installed, keeping
    /// its data, certificate and init user (`--dry-run` shows every change).
    Adopt(adopt::AdoptArgs),
    /// Print a shell completion script.
    Completion(completion::Args),
    /// Print the manual page (roff).
    #[command(hide = true)]
    Man,
}

/// A command's failure; its message names the file, field or unit at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("mirrorregistry/{0} not found")]
    NotFound(String),
    /// The command line asks for something impossible: exit 2.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Files(#[from] crate::host::files::Error),
    #[error(transparent)]
    Systemd(#[from] crate::host::systemd::Error),
    #[error(transparent)]
    Podman(#[from] Box<crate::host::podman::Error>),
    #[error(transparent)]
    Credentials(#[from] crate::host::credentials::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}

impl From<crate::host::podman::Error> for Error {
    fn from(e: crate::host::podman::Error) -> Self {
        Error::Podman(Box::new(e))
    }
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => EXIT_USAGE,
            _ => EXIT_FAILED,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Writes to stdout; a closed pipe ends the process with success, as the
/// reader has all it wanted.
pub fn write_out(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|_| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(EXIT_OK);
        }
    }
}

/// Runs a parsed command line; returns the process exit code. Errors are
/// printed here, on stderr, as `error: ...`.
pub fn run(cli: Cli) -> i32 {
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn dispatch(cli: Cli) -> Result<i32> {
    let paths = state::Paths::new(&cli.global);
    match cli.command {
        Command::Get(a) => get::run(&paths, a),
        Command::Describe(a) => block_on(describe::run(&paths, a)),
        Command::Apply(a) => apply::apply(&paths, a),
        Command::Delete(a) => block_on(apply::delete(&paths, a)),
        Command::Wait(a) => block_on(wait::run(&paths, a)),
        Command::Credentials(a) => credentials::run(&paths, a),
        Command::Logs(a) => block_on(logs::run(&paths, a)),
        Command::Validate(a) => validate::run(&paths, a),
        Command::Render(a) => render::run(&paths, a),
        Command::Explain(a) => explain::run(a),
        Command::Export(a) => export::run(&paths, a),
        Command::Install(a) => block_on(install::install(&paths, a)),
        Command::Uninstall(a) => block_on(uninstall::uninstall(&paths, a)),
        Command::Upgrade(a) => block_on(install::upgrade(&paths, a)),
        Command::Gc(a) => block_on(day2::gc::run(&paths, a)),
        Command::Backup(a) => block_on(day2::backup::run(&paths, a)),
        Command::Restore(a) => block_on(day2::restore::run(&paths, a)),
        Command::Bundle(a) => bundle::run(&paths, a),
        Command::Adopt(a) => block_on(adopt::adopt(&paths, a)),
        Command::Completion(a) => completion::completion(a),
        Command::Man => completion::man(),
    }
}

/// Commands that speak D-Bus or the podman API run on a small runtime of
/// their own; the others stay synchronous.
fn block_on<F: std::future::Future<Output = Result<i32>>>(f: F) -> Result<i32> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Failed(format!("start the async runtime: {e}")))?;
    rt.block_on(f)
}
