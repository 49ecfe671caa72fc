//! `mrctl completion SHELL` and the manual page (`mrctl man`), both
//! generated from the command definitions so they never drift.

use clap::CommandFactory;

use super::{Cli, Error, Result, EXIT_OK};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub fn completion(args: Args) -> Result<i32> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "mrctl", &mut std::io::stdout());
    Ok(EXIT_OK)
}

/// The man page, mrctl(1), as roff: `mrctl man > /usr/local/share/man/man1/mrctl.1`.
pub fn man() -> Result<i32> {
    let cmd = Cli::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut out)
        .map_err(|e| Error::Failed(format!("render the manual page: {e}")))?;
    use std::io::Write;
    std::io::stdout()
        .write_all(&out)
        .map_err(|e| Error::Failed(format!("write the manual page: {e}")))?;
    Ok(EXIT_OK)
}
