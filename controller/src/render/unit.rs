//! systemd unit text: the pod unit shared by every engine, and a container
//! unit builder, shaped like `podman generate systemd --new` output.

use std::path::Path;

use super::{Context, Unit};
use crate::naming;

/// Quotes one command-line word for an Exec= line: `%` and `$` are
/// specifiers/variables to systemd, whitespace and quotes need quoting.
pub fn quote(arg: &str) -> String {
    let escaped = arg.replace('%', "%%").replace('$', "$$");
    if escaped.is_empty()
        || escaped
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'))
    {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        escaped
    }
}

fn exec(args: &[String]) -> String {
    // Specifiers like %t must survive, so only user-derived words are quoted
    // (by the callers); here words are joined with continuation lines.
    args.join(" \\\n\t")
}

const HEADER: &str = "# Written by mirror-registry-controller; edits are overwritten.\n";

fn pid_file(pod: &str) -> String {
    format!("%t/{pod}.pid")
}

fn pod_id_file(pod: &str) -> String {
    format!("%t/{pod}.pod-id")
}

/// `<name>-pod.service`: creates the pod (publishing `host_port` to
/// `container_port`, with `infra_image` or podman's own) and keeps its infra
/// container running. It wants its component units, so restarting the pod
/// brings them back.
pub fn pod_unit(
    name: &str,
    host_port: u16,
    container_port: u16,
    infra_image: Option<&str>,
    components: &[String],
    cx: &Context,
) -> Unit {
    let pod = naming::pod(name);
    let podman = quote(&cx.podman.display().to_string());
    let wants = components.join(" ");
    let mut create = vec![
        format!("ExecStartPre={podman} pod create"),
        format!("--infra-conmon-pidfile {}", pid_file(&pod)),
        format!("--pod-id-file {}", pod_id_file(&pod)),
        format!("--name {}", quote(&pod)),
    ];
    for (k, v) in naming::owner_labels(name) {
        create.push(format!("--label {}", quote(&format!("{k}={v}"))));
    }
    if let Some(image) = infra_image {
        create.push(format!("--infra-image {}", quote(image)));
    }
    create.push(format!("--publish {host_port}:{container_port}"));
    let content = format!(
        "{HEADER}[Unit]
Description=Podman pod {pod} of MirrorRegistry {name}
Wants=network-online.target {wants}
After=network-online.target
Before={wants}

[Service]
Environment=PODMAN_SYSTEMD_UNIT=%n
Restart=on-failure
TimeoutStopSec=70
ExecStartPre=/bin/rm -f {pid} {podid}
# A pod of ours left behind (a crash, a reboot) is removed; one of the same
# name that is not ours makes the create below fail, and stays.
ExecStartPre=/bin/sh -c '{podman} pod ps -q {ours} | xargs -r {podman} pod rm -f'
{create}
ExecStart={podman} pod start --pod-id-file {podid}
ExecStop={podman} pod stop --ignore --pod-id-file {podid} -t 10
ExecStopPost={podman} pod rm --ignore -f --pod-id-file {podid}
PIDFile={pid}
Type=forking

[Install]
WantedBy={wanted_by}
",
        pid = pid_file(&pod),
        podid = pod_id_file(&pod),
        create = exec(&create),
        ours = ours_filter(&pod, name),
        wanted_by = cx.wanted_by,
    );
    Unit {
        name: naming::pod_unit(name),
        content,
    }
}

/// podman filters selecting the object named `object` only when it carries
/// registry `name`'s owner label (podman ANDs filters of different keys).
/// Names are DNS labels with a suffix: nothing in them is special to a
/// regular expression, the shell or systemd; `$$` is systemd's `$`.
fn ours_filter(object: &str, name: &str) -> String {
    format!(
        "--filter name=^{object}$$ --filter label={}={name}",
        naming::OWNER_LABEL
    )
}

/// A bind mount or volume for `podman run -v`.
pub struct Mount<'a> {
    pub source: &'a str,
    pub target: &'a str,
    pub options: &'a str,
}

pub struct ContainerUnit<'a> {
    pub name: &'a str,
    pub component: &'a str,
    pub description: &'a str,
    pub image: &'a str,
    pub mounts: Vec<Mount<'a>>,
    /// Units this one needs besides the pod (e.g. redis before app).
    pub after: Vec<String>,
    pub env: Vec<(&'a str, &'a str)>,
    /// Command words after the image; empty: the image's default.
    pub args: Vec<&'a str>,
}

/// `<name>-<component>.service`: runs the container in the pod, in the
/// foreground, so systemd sees it exit and restarts it (Restart=always).
pub fn container_unit(c: &ContainerUnit<'_>, cx: &Context) -> Unit {
    let pod = naming::pod(c.name);
    let container = naming::container(c.name, c.component);
    let podman = quote(&cx.podman.display().to_string());
    let mut run = vec![
        format!("ExecStart={podman} run"),
        format!("--name {}", quote(&container)),
        format!("--pod-id-file {}", pod_id_file(&pod)),
        "--rm".into(),
        // The controller makes sure the image is present; a unit must never
        // reach out to a registry on an air-gapped host.
        "--pull never".into(),
    ];
    for (k, v) in naming::owner_labels(c.name) {
        run.push(format!("--label {}", quote(&format!("{k}={v}"))));
    }
    for (k, v) in &c.env {
        run.push(format!("--env {}", quote(&format!("{k}={v}"))));
    }
    for m in &c.mounts {
        run.push(format!(
            "--volume {}",
            quote(&format!("{}:{}:{}", m.source, m.target, m.options))
        ));
    }
    run.push(quote(c.image));
    run.extend(c.args.iter().map(|a| quote(a)));
    let pod_unit = naming::pod_unit(c.name);
    let mut after = vec![pod_unit.clone()];
    after.extend(c.after.iter().cloned());
    // Like the original's quay-app.service: it requires the pod and the
    // units it needs (BindsTo adds stopping with the pod).
    let requires = if c.after.is_empty() {
        String::new()
    } else {
        format!("Requires={}\n", after.join(" "))
    };
    let content = format!(
        "{HEADER}[Unit]
Description={desc} of MirrorRegistry {name}
BindsTo={pod_unit}
{requires}After={after}

[Service]
Environment=PODMAN_SYSTEMD_UNIT=%n
Restart=always
RestartSec=1
# A Go or C server as PID 1 exits 2 or 143 on SIGTERM: a clean stop.
SuccessExitStatus=2 143
TimeoutStopSec=70
# Never `run --replace`: only a container of ours by this name is removed
# (left behind by a crash or reboot); one that is not ours makes the run
# fail, and stays. Stop and cleanup select ours the same way.
ExecStartPre={podman} rm --force {ours}
{run}
ExecStop={podman} stop --time 10 {ours}
ExecStopPost={podman} rm --force {ours}
Type=simple

[Install]
WantedBy={wanted_by}
",
        desc = c.description,
        name = c.name,
        after = after.join(" "),
        run = exec(&run),
        ours = ours_filter(&container, c.name),
        wanted_by = cx.wanted_by,
    );
    Unit {
        name: naming::unit(c.name, c.component),
        content,
    }
}

/// Mount source for a path: its display form.
pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quoting() {
        assert_eq!(quote("plain-word"), "plain-word");
        assert_eq!(quote("/a b/c"), "\"/a b/c\"");
        assert_eq!(quote("100%"), "100%%");
        assert_eq!(quote("$HOME"), "$$HOME");
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
    }
}
