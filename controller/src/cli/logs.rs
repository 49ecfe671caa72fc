//! `mrctl logs NAME [COMPONENT] [-f]`: a component container's output,
//! read through podman's API (stdout and stderr merged, as kubectl does).

use std::io::Write;

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;

use super::state::{Paths, Registry};
use super::{Error, Result, EXIT_OK};
use crate::host::podman::Podman;
use crate::naming;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The registry's name.
    pub name: String,
    /// Component (`registry`; `app`, `redis`) or container name; may be
    /// left out when the registry has one component.
    pub component: Option<String>,
    /// Keep printing new output until the container stops or Ctrl-C.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<u64>,
    /// Prefix each line with its time.
    #[arg(long)]
    pub timestamps: bool,
}

/// The registry's containers: as the spec renders them, else as status
/// recorded them.
fn containers(paths: &Paths, r: &Registry) -> Vec<String> {
    let rendered = r
        .resolved(paths.host())
        .and_then(|x| crate::render::render(&x, &paths.render_context()).ok())
        .map(|d| {
            d.components
                .into_iter()
                .map(|c| c.container)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if !rendered.is_empty() {
        return rendered;
    }
    r.status
        .as_ref()
        .map(|s| s.components.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default()
}

pub async fn run(paths: &Paths, args: Args) -> Result<i32> {
    let r = paths.find(&args.name)?;
    let all = containers(paths, &r);
    let container = match &args.component {
        Some(c) => {
            let full = naming::container(&args.name, c);
            if all.contains(&full) {
                full
            } else if all.contains(c) {
                c.clone()
            } else {
                return Err(Error::Usage(format!(
                    "mirrorregistry/{} has no component {c}; its containers: {}",
                    args.name,
                    all.join(", ")
                )));
            }
        }
        None => match all.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(Error::Failed(format!(
                    "mirrorregistry/{} has no containers yet",
                    args.name
                )))
            }
            many => {
                return Err(Error::Usage(format!(
                    "mirrorregistry/{} has several containers; name one of: {}",
                    args.name,
                    many.join(", ")
                )))
            }
        },
    };
    let podman = Podman::connect(&paths.podman_socket).await?;
    if podman.container(&container).await?.is_none() {
        return Err(Error::Failed(format!(
            "container {container} does not exist (see `mrctl describe {}`)",
            args.name
        )));
    }
    let opts = LogsOptions {
        follow: args.follow,
        stdout: true,
        stderr: true,
        timestamps: args.timestamps,
        tail: args
            .tail
            .map(|n| n.to_string())
            .unwrap_or_else(|| "all".into()),
        ..Default::default()
    };
    let mut stream = podman.docker().logs(&container, Some(opts));
    let stdout = std::io::stdout();
    while let Some(item) = stream.next().await {
        let bytes = match item {
            Ok(LogOutput::StdOut { message })
            | Ok(LogOutput::StdErr { message })
            | Ok(LogOutput::Console { message }) => message,
            Ok(LogOutput::StdIn { .. }) => continue,
            Err(e) => {
                return Err(Error::Failed(format!("podman logs {container}: {e}")));
            }
        };
        let mut out = stdout.lock();
        // A closed pipe (`mrctl logs | head`) ends the command quietly.
        if out.write_all(&bytes).and_then(|_| out.flush()).is_err() {
            break;
        }
    }
    Ok(EXIT_OK)
}
