//! A command run inside a running container (`podman exec`), its output
//! collected: the registry's own `garbage-collect`.

use bollard::exec::{CreateExecOptions, StartExecResults};
use futures_util::StreamExt;

use super::{Error, Podman, Result};

/// What the command printed and how it ended.
#[derive(Debug, Default)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    /// `None` when podman did not say.
    pub exit_code: Option<i64>,
}

impl Podman {
    /// Runs `cmd` in `container` and waits for it to end.
    pub async fn exec(&self, container: &str, cmd: &[&str]) -> Result<Output> {
        const OP: &str = "exec in";
        let api = |source| Error::Api {
            op: OP,
            target: container.to_string(),
            source,
        };
        let created = self
            .docker()
            .create_exec(
                container,
                CreateExecOptions {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(cmd.to_vec()),
                    ..Default::default()
                },
            )
            .await
            .map_err(api)?;
        let mut out = Output::default();
        if let StartExecResults::Attached { mut output, .. } = self
            .docker()
            .start_exec(&created.id, None)
            .await
            .map_err(api)?
        {
            while let Some(chunk) = output.next().await {
                match chunk.map_err(api)? {
                    bollard::container::LogOutput::StdErr { message } => {
                        out.stderr.push_str(&String::from_utf8_lossy(&message))
                    }
                    other => out
                        .stdout
                        .push_str(&String::from_utf8_lossy(&other.into_bytes())),
                }
            }
        }
        out.exit_code = self
            .docker()
            .inspect_exec(&created.id)
            .await
            .map_err(api)?
            .exit_code;
        Ok(out)
    }
}
