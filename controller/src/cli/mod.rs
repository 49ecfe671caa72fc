//! `mrctl`: kubectl's habits for MirrorRegistry resources. Exit codes: 0 ok,
//! 1 failed or not ready, 2 usage.

pub mod explain;
pub mod validate;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "mrctl",
    version,
    about = "Manage mirror registries kept running by mirror-registry-controller"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check spec files and print every problem with its field path.
    Validate(validate::Args),
    /// Describe a field of the MirrorRegistry resource, e.g. `spec.tls`.
    Explain(explain::Args),
}

/// Runs a parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Validate(a) => validate::run(a),
        Command::Explain(a) => explain::run(a),
    }
}
