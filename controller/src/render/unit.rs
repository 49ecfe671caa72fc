//! systemd unit text: the pod unit shared by every engine, and a container
//! unit builder, shaped like `podman generate systemd --new` output.

use std::path::Path;

use super::{Context, Unit};
use crate::api::validate::{
    describe_forbidden, forbidden_char, is_dns1123_label, is_forbidden_char, shown,
};
use crate::naming;

/// Quotes one command-line word for an Exec= line: `%` and `$` are
/// specifiers/variables to systemd, whitespace and quotes need quoting, and
/// a word starting with `#` or `;` would be a comment on a continuation
/// line. It never writes a line break: a control character comes out as a
/// C escape (`\u000a`), which systemd turns back into itself. Render
/// refuses such values before quoting them ([`exec_word`]); this is only
/// the last line of defence for a caller that did not.
pub fn quote(arg: &str) -> String {
    let escaped = arg.replace('%', "%%").replace('$', "$$");
    let needs_quotes = escaped.is_empty()
        || escaped.starts_with('#')
        || escaped.chars().any(|c| {
            c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';') || is_forbidden_char(c)
        });
    if !needs_quotes {
        return escaped;
    }
    let mut out = String::with_capacity(escaped.len() + 2);
    out.push('"');
    for c in escaped.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if is_forbidden_char(c) => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Refuses what an Exec= word cannot be: a value holding a control
/// character (a newline would start a new directive; systemd could take it
/// back from an escape, but podman and the containers are not meant to get
/// one either).
pub fn exec_word(what: &str, v: &str) -> Result<(), String> {
    match forbidden_char(v) {
        Some((i, c)) => Err(format!(
            "{what} '{}' holds {}, which render does not write into a unit file",
            shown(v),
            describe_forbidden(i, c)
        )),
        None => Ok(()),
    }
}

/// Refuses a unit name that would not be one word of a dependency list.
fn unit_name(what: &str, v: &str) -> Result<(), String> {
    if v.is_empty()
        || !v.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'.' | b'\\' | b'@' | b'-')
        })
    {
        return Err(format!("{what} '{}' is not a unit name", shown(v)));
    }
    Ok(())
}

/// Refuses a registry or component name: it is written unquoted (in
/// Description=, unit names, the pod's runtime files), so it must be a
/// DNS-1123 label, as validation requires.
fn plain_name(what: &str, v: &str) -> Result<(), String> {
    if !is_dns1123_label(v) {
        return Err(format!(
            "{what} '{}' is not a DNS-1123 label, so it cannot be written into a unit file",
            shown(v)
        ));
    }
    Ok(())
}

/// Refuses an image podman would read as an option, or one that cannot be
/// an Exec= word.
fn image(v: &str) -> Result<(), String> {
    exec_word("image", v)?;
    if v.is_empty() || v.starts_with('-') {
        return Err(format!(
            "image '{}' would not be read as an image by podman",
            shown(v)
        ));
    }
    Ok(())
}

/// Refuses a mount podman would read differently from what is meant: a `:`
/// or `,` in its source or target moves the separators of `--volume
/// SOURCE:TARGET:OPTIONS`.
fn mount(m: &Mount<'_>) -> Result<(), String> {
    for (what, v) in [("mount source", m.source), ("mount target", m.target)] {
        exec_word(what, v)?;
        if v.is_empty() || v.contains([':', ',']) {
            return Err(format!(
                "{what} '{}' is empty or holds ':' or ',', which podman's --volume reads as separators",
                shown(v)
            ));
        }
    }
    if !m
        .options
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b',' | b'='))
    {
        return Err(format!(
            "mount options '{}' are not podman's",
            shown(m.options)
        ));
    }
    Ok(())
}

/// Refuses host facts a unit cannot hold: the podman binary must be an
/// absolute path (a leading `-`, `@`, `+`, `!` or `:` is a prefix to
/// systemd), the install target a unit name.
fn context(cx: &Context) -> Result<(), String> {
    let podman = cx.podman.display().to_string();
    exec_word("podman binary", &podman)?;
    if !cx.podman.is_absolute() {
        return Err(format!(
            "podman binary '{}' is not an absolute path",
            shown(&podman)
        ));
    }
    // The pod unit also hands it to /bin/sh inside single quotes.
    if podman
        .chars()
        .any(|c| c.is_whitespace() || matches!(c, '\'' | '"' | '\\' | '$' | '`' | '%'))
    {
        return Err(format!(
            "podman binary '{}' holds characters a shell or systemd would read",
            shown(&podman)
        ));
    }
    unit_name("install target", &cx.wanted_by)
}

fn exec(args: &[String]) -> String {
    // Specifiers like %t must survive, so only user-derived words are quoted
    // (by the callers); here words are joined with continuation lines.
    args.join(" \\\n\t")
}

const HEADER: &str = "# Written by mirror-registry-controller; edits are overwritten.\n";

/// `TimeoutStartSec=` of the pod and container units: far beyond systemd's
/// default 90s, which a slow host's boot outlasts.
pub const START_TIMEOUT: &str = "15min";

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
) -> Result<Unit, String> {
    pod_unit_publishing(
        name,
        host_port,
        container_port,
        &[],
        infra_image,
        components,
        cx,
    )
}

/// [`pod_unit`], also publishing each of the container ports `loopback` on
/// 127.0.0.1 only, at a host port podman picks (read back from the
/// container): for the controller on this host, never beyond it.
pub fn pod_unit_publishing(
    name: &str,
    host_port: u16,
    container_port: u16,
    loopback: &[u16],
    infra_image: Option<&str>,
    components: &[String],
    cx: &Context,
) -> Result<Unit, String> {
    plain_name("registry name", name)?;
    context(cx)?;
    if let Some(i) = infra_image {
        image(i)?;
    }
    for c in components {
        unit_name("component unit", c)?;
    }
    let pod = naming::pod(name);
    let podman = quote(&cx.podman.display().to_string());
    let wants = components.join(" ");
    let ours = ours_filter(&pod, name);
    // `$$@` is systemd's `$@`: the create command, passed to the shell as
    // its arguments (quoted by systemd's rules, never a shell's).
    // A failed create leaves its pod-id file behind, which the second
    // create would refuse.
    let mut create = vec![
        format!(
            "ExecStartPre=/bin/sh -c '\"$$@\" || {{ {podman} pod ps -q {ours} | xargs -r {podman} pod rm -f && rm -f {podid} && \"$$@\"; }}' create",
            podid = pod_id_file(&pod),
        ),
        format!("{podman} pod create"),
        format!("--infra-conmon-pidfile {}", pid_file(&pod)),
        format!("--pod-id-file {}", pod_id_file(&pod)),
        format!("--name {}", quote(&pod)),
        format!("--network {}", quote(&naming::network(name))),
    ];
    for (k, v) in naming::owner_labels(name) {
        create.push(format!("--label {}", quote(&format!("{k}={v}"))));
    }
    if let Some(image) = infra_image {
        create.push(format!("--infra-image {}", quote(image)));
    }
    create.push(format!("--publish {host_port}:{container_port}"));
    for p in loopback {
        create.push(format!("--publish 127.0.0.1::{p}"));
    }
    let content = format!(
        "{HEADER}[Unit]
Description=Podman pod {pod} of MirrorRegistry {name}
Wants=network-online.target {wants}
After=network-online.target
Before={wants}

[Service]
Environment=PODMAN_SYSTEMD_UNIT=%n
Restart=on-failure
# At boot a slow host can take minutes to create and start the pod; past
# systemd's default 90s the start fails and nothing serves until the
# controller is back.
TimeoutStartSec={START_TIMEOUT}
TimeoutStopSec=70
ExecStartPre=/bin/rm -f {pid} {podid}
# Creates the pod. Only when that fails is a pod of ours by this name that
# was left behind (a crash, a reboot) looked for, removed, and the create
# made again: one podman process on an ordinary start. A pod of the same
# name that is not ours makes both creates fail, and stays.
{create}
ExecStart={podman} pod start --pod-id-file {podid}
ExecStop={podman} pod stop --ignore --pod-id-file {podid} -t 10
ExecStopPost={podman} pod rm --ignore -f --pod-id-file {podid}
ExecStopPost=/bin/rm -f {pid} {podid}
PIDFile={pid}
Type=forking

[Install]
WantedBy={wanted_by}
",
        pid = pid_file(&pod),
        podid = pod_id_file(&pod),
        create = exec(&create),
        wanted_by = cx.wanted_by,
    );
    Ok(Unit {
        name: naming::pod_unit(name),
        content,
    })
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
pub fn container_unit(c: &ContainerUnit<'_>, cx: &Context) -> Result<Unit, String> {
    plain_name("registry name", c.name)?;
    plain_name("component", c.component)?;
    context(cx)?;
    image(c.image)?;
    if c.description.contains('%') {
        return Err(format!("description '{}' holds '%'", shown(c.description)));
    }
    exec_word("description", c.description)?;
    for m in &c.mounts {
        mount(m)?;
    }
    for a in &c.after {
        unit_name("unit", a)?;
    }
    for (k, v) in &c.env {
        exec_word("environment variable", k)?;
        exec_word("environment value", v)?;
        if k.is_empty() || k.contains('=') {
            return Err(format!("environment variable '{}' is not a name", shown(k)));
        }
    }
    for a in &c.args {
        exec_word("argument", a)?;
    }
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
# As long as the pod's start: at boot on a slow host podman may take minutes.
TimeoutStartSec={START_TIMEOUT}
TimeoutStopSec=70
# Never `run --replace`, and no check before the run (a podman process on
# every start): a container of ours by this name is left behind only when
# the cleanup below failed (after a reboot the pod unit removes the old pod
# with its containers). Then the run fails, systemd runs ExecStopPost,
# which removes it, and starts again. One that is not ours makes the run
# fail, and stays: stop and cleanup select only ours.
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
    Ok(Unit {
        name: naming::unit(c.name, c.component),
        content,
    })
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
        // Never a line break, never a comment line.
        assert_eq!(quote("a\nb"), "\"a\\u000ab\"");
        assert_eq!(quote("#x"), "\"#x\"");
        assert_eq!(quote(";x"), "\";x\"");
    }

    #[test]
    fn start_timeout_outlasts_a_slow_boot() {
        use super::{container_unit, pod_unit, ContainerUnit};
        use crate::render::Context;
        let cx = Context {
            podman: "/usr/bin/podman".into(),
            wanted_by: "default.target".into(),
        };
        let pod = pod_unit("t", 1, 2, None, &["t-registry.service".into()], &cx).unwrap();
        let container = container_unit(
            &ContainerUnit {
                name: "t",
                component: "registry",
                description: "Registry container",
                image: "registry:2",
                mounts: vec![],
                after: vec![],
                env: vec![],
                args: vec![],
            },
            &cx,
        )
        .unwrap();
        for unit in [pod, container] {
            let values: Vec<&str> = unit
                .content
                .lines()
                .filter_map(|l| l.strip_prefix("TimeoutStartSec="))
                .collect();
            assert_eq!(values, ["15min"], "{}", unit.content);
            // In [Service], where systemd reads it.
            let service = unit.content.find("[Service]").unwrap();
            let line = unit.content.find("TimeoutStartSec=").unwrap();
            let install = unit.content.find("[Install]").unwrap();
            assert!(service < line && line < install, "{}", unit.content);
        }
        // systemd's default, which a slow boot outlasted.
        let minutes: u64 = super::START_TIMEOUT
            .strip_suffix("min")
            .and_then(|m| m.parse().ok())
            .unwrap();
        assert!(minutes * 60 >= 10 * 90);
    }

    #[test]
    fn refusals() {
        use super::{container_unit, pod_unit, ContainerUnit, Mount};
        use crate::render::Context;
        let cx = Context {
            podman: "/usr/bin/podman".into(),
            wanted_by: "default.target".into(),
        };
        let unit = |source: &str, image: &str| {
            container_unit(
                &ContainerUnit {
                    name: "t",
                    component: "registry",
                    description: "Registry container",
                    image,
                    mounts: vec![Mount {
                        source,
                        target: "/data",
                        options: "Z",
                    }],
                    after: vec![],
                    env: vec![],
                    args: vec![],
                },
                &cx,
            )
        };
        assert!(unit("/srv/a b/\"%$\\", "registry:2").is_ok());
        for (source, image) in [
            ("/tmp/x\nExecStartPre=/bin/touch /tmp/PWNED", "registry:2"),
            ("/srv/a\rb", "registry:2"),
            ("/srv/a\0b", "registry:2"),
            ("/srv/a:/etc", "registry:2"),
            ("/srv/a,b", "registry:2"),
            ("/srv/a", "--privileged"),
            ("/srv/a", "registry:2\nExecStartPre=/bin/true"),
        ] {
            let e = unit(source, image).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
        assert!(pod_unit("t", 1, 2, Some("a\tb"), &[], &cx).is_err());
        assert!(pod_unit("t x", 1, 2, None, &[], &cx).is_err());
        let bad_cx = Context {
            podman: "podman".into(),
            ..cx.clone()
        };
        assert!(pod_unit("t", 1, 2, None, &[], &bad_cx).is_err());
        let bad_cx = Context {
            wanted_by: "default.target\nExecStartPre=/bin/true".into(),
            ..cx
        };
        assert!(pod_unit("t", 1, 2, None, &[], &bad_cx).is_err());
    }
}
