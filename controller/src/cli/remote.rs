//! `mrctl install|upgrade|uninstall --targetHostname HOST[:PORT]
//! --targetUsername USER -k KEY`: the same verbs on another host, over the
//! system's OpenSSH client, so ~/.ssh/config, known_hosts and an agent
//! apply. It never prompts (BatchMode): a wrong key, an unknown host key,
//! an unreachable host, a user without root rights or a target without
//! podman or systemd is a clear error from the check that runs first, and
//! nothing is copied or written on the target then.
//!
//! install and upgrade copy mrctl, the controller and, when run from an
//! unpacked bundle (or given --imageArchive), the image archive to
//! [`REMOTE_DIR`] on the target, then run the verb there in system scope
//! with the same flags, its output shown as it comes. The init password
//! travels on ssh's standard input, never on a command line. After install
//! the registry's CA is fetched and saved where podman on this host looks
//! for it, so `podman login` works without skipping TLS checks.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::bundle;
use super::controller_unit;
use super::{Error, Result, EXIT_FAILED, EXIT_OK};
use crate::host::files;

/// Where install puts mrctl, the controller and the image archive on the
/// target; the controller's unit and the spec's archive point there.
pub const REMOTE_DIR: &str = "/opt/mirror-registry";
/// How long the first connection may take before the host counts as
/// unreachable.
const CONNECT_TIMEOUT_S: u32 = 10;
/// The bound on the check that runs first.
const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(40);

#[derive(Clone, Debug, Default, clap::Args)]
pub struct RemoteArgs {
    /// Run on this host over SSH (the system's ssh; ~/.ssh/config,
    /// known_hosts and an agent apply). Default: this host.
    #[arg(
        long = "targetHostname",
        value_name = "HOST[:PORT]",
        help_heading = "Remote target"
    )]
    pub target_hostname: Option<String>,
    /// The SSH user on the target: root, or one with passwordless sudo.
    #[arg(
        long = "targetUsername",
        value_name = "USER",
        requires = "target_hostname",
        help_heading = "Remote target"
    )]
    pub target_username: Option<String>,
    /// The SSH identity (private key) file.
    #[arg(
        short = 'k',
        long = "ssh-key",
        value_name = "FILE",
        requires = "target_hostname",
        help_heading = "Remote target"
    )]
    pub ssh_key: Option<PathBuf>,
}

/// The target and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub key: Option<PathBuf>,
}

impl Target {
    pub fn from_args(a: &RemoteArgs) -> Result<Option<Target>> {
        let Some(hp) = &a.target_hostname else {
            return Ok(None);
        };
        let (host, port) = match hp.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !h.contains(':') => {
                let port = p.parse().map_err(|_| {
                    Error::Usage(format!("--targetHostname {hp}: port {p:?} is not a number"))
                })?;
                (h.to_string(), Some(port))
            }
            _ => (hp.clone(), None),
        };
        if host.is_empty() || host.starts_with('-') {
            return Err(Error::Usage(format!(
                "--targetHostname {hp:?} is not a host name"
            )));
        }
        if let Some(k) = &a.ssh_key {
            std::fs::File::open(k).map_err(|e| {
                Error::Usage(format!("--ssh-key {}: cannot read it: {e}", k.display()))
            })?;
        }
        Ok(Some(Target {
            host,
            port,
            user: a.target_username.clone(),
            key: a.ssh_key.clone(),
        }))
    }

    fn shown(&self) -> String {
        match &self.user {
            Some(u) => format!("{u}@{}", self.host),
            None => self.host.clone(),
        }
    }

    /// `ssh` with options that make it never prompt and give up in time.
    fn ssh(&self, remote_command: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(["-o", "BatchMode=yes"])
            .args(["-o", &format!("ConnectTimeout={CONNECT_TIMEOUT_S}")])
            .args(["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]);
        if let Some(p) = self.port {
            c.args(["-p", &p.to_string()]);
        }
        if let Some(k) = &self.key {
            c.arg("-i").arg(k).args(["-o", "IdentitiesOnly=yes"]);
        }
        if let Some(u) = &self.user {
            c.args(["-l", u]);
        }
        c.arg("--").arg(&self.host).arg(remote_command);
        c
    }
}

/// Quotes one word for the remote POSIX shell.
pub fn sh_quote(w: &str) -> String {
    format!("'{}'", w.replace('\'', r"'\''"))
}

/// What ssh's own failure (exit 255) means, from its message.
pub fn classify(target: &Target, stderr: &str) -> String {
    let t = target.shown();
    let port = target
        .port
        .map(|p| format!(" port {p}"))
        .unwrap_or_default();
    let s = stderr.to_lowercase();
    let last = stderr
        .trim()
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .to_string();
    if s.contains("host key verification failed") || s.contains("no matching host key") {
        format!("{t}: the target's host key is not known here (or has changed): add it to ~/.ssh/known_hosts (ssh-keyscan, or one interactive ssh) after checking it. ssh said: {last}")
    } else if s.contains("permission denied") {
        format!("{t}: ssh authentication failed: the key (-k) or agent holds no key the target accepts for that user. ssh said: {last}")
    } else if s.contains("connection refused") {
        format!(
            "{}{port}: connection refused: nothing listens for ssh there",
            target.host
        )
    } else if s.contains("timed out") || s.contains("no route") || s.contains("unreachable") {
        format!("{}{port}: unreachable: {last}", target.host)
    } else if s.contains("could not resolve") || s.contains("name or service not known") {
        format!("{}: the host name does not resolve: {last}", target.host)
    } else {
        format!("{t}: ssh failed: {last}")
    }
}

/// Waits for `child` at most `bound`; kills it past that.
fn wait_bounded(mut child: Child, bound: Duration, what: &str) -> Result<Output> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => {
                return child
                    .wait_with_output()
                    .map_err(|e| Error::Failed(format!("{what}: {e}")))
            }
            Ok(None) if start.elapsed() > bound => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Failed(format!(
                    "{what}: no answer within {}s; nothing was changed on the target",
                    bound.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(Error::Failed(format!("{what}: {e}"))),
        }
    }
}

/// The check before anything is copied: reachable, authenticated, root (or
/// passwordless sudo), podman and systemd present. Returns the prefix
/// commands need (`sudo -n ` or nothing).
pub fn preflight(t: &Target) -> Result<String> {
    let script = r#"if [ "$(id -u)" = 0 ]; then s=; elif sudo -n true 2>/dev/null; then s=sudo; else echo "MR:noroot $(id -un)"; exit 0; fi
command -v podman >/dev/null 2>&1 || { echo MR:nopodman; exit 0; }
[ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 || { echo MR:nosystemd; exit 0; }
echo "MR:ok $s""#;
    let child = t
        .ssh(&format!("sh -c {}", sh_quote(script)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Failed(format!("cannot run ssh (OpenSSH client): {e}")))?;
    let o = wait_bounded(child, PREFLIGHT_TIMEOUT, &format!("ssh {}", t.shown()))?;
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    if o.status.code() == Some(255) {
        return Err(Error::Failed(format!(
            "{}; nothing was changed on the target",
            classify(t, &stderr)
        )));
    }
    let line = stdout
        .lines()
        .find(|l| l.starts_with("MR:"))
        .unwrap_or_default();
    let host = &t.host;
    match line.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["MR:ok"] => Ok(String::new()),
        ["MR:ok", "sudo"] => Ok("sudo -n ".into()),
        ["MR:noroot", user] => Err(Error::Failed(format!(
            "{host}: user {user} has no root rights (not root, and `sudo -n` asks for a password): use root or a user with passwordless sudo; nothing was changed on the target"
        ))),
        ["MR:nopodman"] => Err(Error::Failed(format!(
            "{host}: podman is not installed (install it, e.g. `dnf install podman`); nothing was changed on the target"
        ))),
        ["MR:nosystemd"] => Err(Error::Failed(format!(
            "{host}: systemd is not running as the init system there; the registry's units need it. Nothing was changed on the target"
        ))),
        _ => Err(Error::Failed(format!(
            "{}: the check on the target did not answer as expected (exit {:?}): {}",
            t.shown(),
            o.status.code(),
            stderr.trim()
        ))),
    }
}

/// The files install and upgrade copy: (local path, name on the target).
fn payload(
    controller_bin: Option<&Path>,
    archive: Option<&Path>,
) -> Result<Vec<(PathBuf, String)>> {
    let mrctl = std::env::current_exe().map_err(files::io(
        "find the running mrctl",
        Path::new("/proc/self/exe"),
    ))?;
    let mut out = vec![
        (mrctl, bundle::MRCTL.to_string()),
        (
            controller_unit::controller_binary(controller_bin)?,
            bundle::CONTROLLER.to_string(),
        ),
    ];
    match archive {
        Some(a) => {
            let a = super::install::absolute(a);
            std::fs::File::open(&a).map_err(|e| {
                Error::Usage(format!(
                    "--imageArchive {}: cannot read it: {e}",
                    a.display()
                ))
            })?;
            out.push((a, bundle::ARCHIVE.to_string()))
        }
        None => {
            if let Some(found) = bundle::beside_self()? {
                out.push((found.archive.clone(), bundle::ARCHIVE.to_string()));
                if let Some(dir) = found.archive.parent() {
                    let m = dir.join(bundle::MANIFEST);
                    if m.is_file() {
                        out.push((m, bundle::MANIFEST.to_string()));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Copies `files` to [`REMOTE_DIR`] as one tar stream over ssh, with
/// progress; they land in a staging directory first and are moved into
/// place only when all arrived, which the staging directory never outlives.
fn copy(t: &Target, sudo: &str, items: &[(PathBuf, String)]) -> Result<()> {
    let stage = tempfile::Builder::new()
        .prefix("mrctl-remote-")
        .tempdir()
        .map_err(|e| Error::Failed(format!("create a temporary directory: {e}")))?;
    let mut total: u64 = 0;
    let files_dir = stage.path().join(FILES_SUBDIR);
    for (from, name) in items {
        let link = stage.path().join(name);
        if name.starts_with(&format!("{FILES_SUBDIR}/")) {
            files::ensure_dir(&files_dir, 0o700)?;
        }
        std::os::unix::fs::symlink(from, &link).map_err(files::io("link", &link))?;
        total += std::fs::metadata(from).map(|m| m.len()).unwrap_or(0);
    }
    let names: Vec<&str> = items.iter().map(|(_, n)| n.as_str()).collect();
    let mut moves = names
        .iter()
        .map(|n| {
            if n.starts_with(&format!("{FILES_SUBDIR}/")) {
                // A key or a password: readable by root only.
                format!("mkdir -p -m 0700 \"$d\"/{FILES_SUBDIR} && chmod 0600 \"$i\"/{n} && mv -f \"$i\"/{n} \"$d\"/{n}")
            } else {
                format!("mv -f \"$i\"/{n} \"$d\"/{n}")
            }
        })
        .collect::<Vec<_>>();
    // An archive without its manifest: a manifest left from an earlier
    // bundle would name images this archive does not hold.
    if names.contains(&bundle::ARCHIVE) && !names.contains(&bundle::MANIFEST) {
        moves.push(format!("rm -f \"$d\"/{}", bundle::MANIFEST));
    }
    let moves = moves.join(" && ");
    let script = format!(
        "set -e; d={REMOTE_DIR}; i=$d/.incoming; {sudo}mkdir -p \"$d\"; {sudo}rm -rf \"$i\"; {sudo}mkdir -m 0700 \"$i\"; trap '{sudo}rm -rf \"$i\"' EXIT; {sudo}tar -x --no-same-owner -C \"$i\"; {sudo}sh -c {}",
        sh_quote(&format!("set -e; i={REMOTE_DIR}/.incoming; d={REMOTE_DIR}; {moves}"))
    );
    outln!(
        "copying {} to {}:{REMOTE_DIR} ({:.1} MiB)",
        names.join(", "),
        t.host,
        total as f64 / 1048576.0
    );
    let start = Instant::now();
    let mut tar = Command::new("tar")
        .arg("-c")
        .arg("-h")
        .arg("-C")
        .arg(stage.path())
        .args(&names)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Failed(format!("run tar: {e}")))?;
    let mut ssh = t
        .ssh(&format!("sh -c {}", sh_quote(&script)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Failed(format!("cannot run ssh: {e}")))?;
    let mut from = tar
        .stdout
        .take()
        .ok_or_else(|| Error::Failed("tar gave no output".into()))?;
    let mut to = ssh
        .stdin
        .take()
        .ok_or_else(|| Error::Failed("ssh took no input".into()))?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut sent, mut shown) = (0u64, 0u64);
    let total = total.max(1);
    let mut write_error = None;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                write_error = Some(format!("read from tar: {e}"));
                break;
            }
        };
        if let Err(e) = to.write_all(&buf[..n]) {
            write_error = Some(format!("the connection closed: {e}"));
            break;
        }
        sent += n as u64;
        let tenth = sent * 10 / total;
        if tenth > shown {
            shown = tenth;
            outln!(
                "  {:>6.1}s  {:>3}%",
                start.elapsed().as_secs_f64(),
                (sent * 100 / total).min(100)
            );
        }
    }
    drop(to);
    let tar_out = tar
        .wait_with_output()
        .map_err(|e| Error::Failed(format!("tar: {e}")))?;
    let o = ssh
        .wait_with_output()
        .map_err(|e| Error::Failed(format!("ssh: {e}")))?;
    if !o.status.success() || !tar_out.status.success() || write_error.is_some() {
        let why = if o.status.code() == Some(255) {
            classify(t, &String::from_utf8_lossy(&o.stderr))
        } else {
            format!(
                "{}{}",
                write_error.unwrap_or_default(),
                String::from_utf8_lossy(&o.stderr).trim()
            )
        };
        return Err(Error::Failed(format!(
            "copying to {}:{REMOTE_DIR} failed: {why}; the staging directory was removed",
            t.host
        )));
    }
    outln!("  {:>6.1}s  copied", start.elapsed().as_secs_f64());
    Ok(())
}

/// Flags naming a file the verb reads on this host. Over SSH the file is
/// copied to [`FILES_SUBDIR`] of [`REMOTE_DIR`] on the target (as
/// `<registry>-<label>`, 0600)
/// and the flag given there names the copy, so no path is read on the
/// wrong host.
pub const FILE_FLAGS: &[(&str, &str)] = &[
    ("--sslCert", "sslCert"),
    ("--sslKey", "sslKey"),
    ("--metrics-auth-file", "metricsAuth"),
];
/// Where the files of [`FILE_FLAGS`] land on the target, under
/// [`REMOTE_DIR`].
pub const FILES_SUBDIR: &str = "files";

/// The command line to run on the target, from the one given here.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// The verb and its flags.
    pub words: Vec<String>,
    /// Whether the init password goes on standard input.
    pub password: bool,
    /// Files to copy: (path here, name under [`REMOTE_DIR`]).
    pub files: Vec<(PathBuf, String)>,
}

/// The command line given to this mrctl, minus the remote flags and the
/// local paths the target has its own of; `--initPassword VALUE` and
/// `--initPasswordFile FILE` become `--initPassword -` (the value goes on
/// standard input); the files of [`FILE_FLAGS`] must be readable here and
/// are named by their copies on the target. `name` is the registry's.
pub fn forwarded_args(argv: &[OsString], name: &str) -> Result<Forwarded> {
    let drop_with_value = [
        "--targetHostname",
        "--targetUsername",
        "-k",
        "--ssh-key",
        "--controller-bin",
        "--imageArchive",
    ];
    let mut out = Forwarded::default();
    let mut it = argv
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned());
    // `--flag VALUE` or `--flag=VALUE`: the value, taken from `it` for the
    // first form.
    fn value(w: &str, flag: &str, it: &mut impl Iterator<Item = String>) -> Option<Option<String>> {
        if w == flag {
            Some(it.next())
        } else {
            w.strip_prefix(flag)
                .and_then(|r| r.strip_prefix('='))
                .map(|v| Some(v.to_string()))
        }
    }
    'words: while let Some(w) = it.next() {
        if drop_with_value.contains(&w.as_str()) {
            it.next();
            continue;
        }
        if drop_with_value
            .iter()
            .any(|f| f.starts_with("--") && w.starts_with(&format!("{f}=")))
            || (w.starts_with("-k") && !w.starts_with("--") && w.len() > 2)
        {
            continue;
        }
        for pw_flag in ["--initPassword", "--initPasswordFile"] {
            if value(&w, pw_flag, &mut it).is_some() {
                out.words
                    .extend(["--initPassword".to_string(), "-".to_string()]);
                out.password = true;
                continue 'words;
            }
        }
        for (flag, label) in FILE_FLAGS {
            let Some(v) = value(&w, flag, &mut it) else {
                continue;
            };
            let v = v.unwrap_or_default();
            let here = super::install::absolute(Path::new(&v));
            std::fs::File::open(&here).map_err(|e| {
                Error::Usage(format!(
                    "{flag} {v}: cannot read it on this host ({e}); over SSH the file is copied from here to the target"
                ))
            })?;
            let there = format!("{FILES_SUBDIR}/{name}-{label}");
            out.words
                .extend([flag.to_string(), format!("{REMOTE_DIR}/{there}")]);
            out.files.push((here, there));
            continue 'words;
        }
        out.words.push(w);
    }
    Ok(out)
}

/// What the remote verb needs besides its flags.
pub struct Remote<'a> {
    pub target: Target,
    pub verb: &'a str,
    pub copy: bool,
    pub controller_bin: Option<&'a Path>,
    pub archive: Option<&'a Path>,
    /// The init password, for `--initPassword` (sent on stdin).
    pub password: Option<String>,
    /// The registry's name, to fetch its CA after install.
    pub name: &'a str,
}

/// Runs the verb on the target: check, copy, run there, and after install
/// save the registry's CA here.
pub fn run(r: Remote<'_>) -> Result<i32> {
    let t = &r.target;
    // Flags checked (files readable here) before the target is touched.
    let argv: Vec<OsString> = std::env::args_os().collect();
    let Forwarded {
        mut words,
        password: pw_forwarded,
        files: inputs,
    } = forwarded_args(&argv, r.name)?;
    let sudo = preflight(t)?;
    outln!(
        "{}: reachable over ssh, {}podman and systemd present",
        t.shown(),
        if sudo.is_empty() {
            "root, "
        } else {
            "passwordless sudo, "
        }
    );
    if r.copy || !inputs.is_empty() {
        let mut items = if r.copy {
            payload(r.controller_bin, r.archive)?
        } else {
            Vec::new()
        };
        items.extend(inputs);
        copy(t, &sudo, &items)?;
    }
    if !words
        .iter()
        .any(|w| w == "--scope" || w.starts_with("--scope="))
    {
        words.insert(0, "system".into());
        words.insert(0, "--scope".into());
    }
    let mrctl = format!("{REMOTE_DIR}/{}", bundle::MRCTL);
    let command = format!(
        "{sudo}{} {}",
        sh_quote(&mrctl),
        words
            .iter()
            .map(|w| sh_quote(w))
            .collect::<Vec<_>>()
            .join(" ")
    );
    outln!("running on {}: mrctl {}", t.host, words.join(" "));
    let mut child = t
        .ssh(&command)
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Error::Failed(format!("cannot run ssh: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        if let (true, Some(pw)) = (pw_forwarded, &r.password) {
            let _ = stdin.write_all(format!("{pw}\n").as_bytes());
        }
    }
    let status = child
        .wait()
        .map_err(|e| Error::Failed(format!("ssh: {e}")))?;
    match status.code() {
        Some(0) => {}
        Some(255) => {
            return Err(Error::Failed(format!(
            "{}: the connection failed while `mrctl {}` ran there; see `mrctl get` on the target",
            t.shown(),
            r.verb
        )))
        }
        c => return Ok(c.unwrap_or(EXIT_FAILED)),
    }
    if r.verb == "install" {
        save_ca(t, &sudo, &words, r.name)?;
    }
    if r.verb == "uninstall" {
        // The copies install made of this registry's files (FILE_FLAGS).
        let copies = FILE_FLAGS
            .iter()
            .map(|(_, label)| sh_quote(&format!("{REMOTE_DIR}/{FILES_SUBDIR}/{}-{label}", r.name)))
            .collect::<Vec<_>>()
            .join(" ");
        let _ = t
            .ssh(&format!("{sudo}rm -f -- {copies}"))
            .stdin(Stdio::null())
            .output();
    }
    Ok(EXIT_OK)
}

/// Fetches the registry's CA from the target and saves it where podman and
/// skopeo here look for `HOST:PORT`.
fn save_ca(t: &Target, sudo: &str, words: &[String], name: &str) -> Result<()> {
    // The global flags given (scope, directories) find the same registry.
    let mut globals = Vec::new();
    let mut it = words.iter();
    while let Some(w) = it.next() {
        if ["--scope", "--watch-dir", "--state-dir", "--podman-socket"].contains(&w.as_str()) {
            globals.push(w.clone());
            if let Some(v) = it.next() {
                globals.push(v.clone());
            }
        }
    }
    let mut get = vec![format!("{REMOTE_DIR}/{}", bundle::MRCTL)];
    get.extend(globals);
    get.extend(["get".into(), name.into(), "-o".into(), "json".into()]);
    let cmd = format!(
        "{sudo}{}",
        get.iter()
            .map(|w| sh_quote(w))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let o = t
        .ssh(&cmd)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Failed(format!("ssh: {e}")))?;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).map_err(|e| {
        Error::Failed(format!(
            "reading mirrorregistry/{name}'s status from {}: {e}",
            t.host
        ))
    })?;
    let endpoint = v
        .pointer("/status/endpoint")
        .and_then(|e| e.as_str())
        .unwrap_or_default();
    let Some(ca_file) = v.pointer("/status/caFile").and_then(|c| c.as_str()) else {
        outln!("CA: the issuer of the certificate given with --sslCert; nothing saved here");
        return Ok(());
    };
    let host_port = endpoint.trim_start_matches("https://").to_string();
    let o = t
        .ssh(&format!("{sudo}cat {}", sh_quote(ca_file)))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Failed(format!("ssh: {e}")))?;
    if !o.status.success() || !o.stdout.starts_with(b"-----BEGIN CERTIFICATE") {
        return Err(Error::Failed(format!(
            "{}:{ca_file}: could not read the registry's CA",
            t.host
        )));
    }
    let dir = certs_d_here().join(&host_port);
    files::ensure_dir(&dir, 0o755)?;
    let path = dir.join("ca.crt");
    files::write_if_changed(&path, &o.stdout, 0o644)?;
    outln!(
        "CA of {endpoint} saved to {} (podman and skopeo here trust it): podman login {host_port}",
        path.display()
    );
    Ok(())
}

/// Where podman on this host reads registry CAs: the system directory as
/// root, the user's otherwise.
fn certs_d_here() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        crate::settings::certs_d()
    } else {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        home.join(".config/containers/certs.d")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn remote_flags_and_the_password_stay_here() {
        let f = forwarded_args(
            &os(&[
                "mrctl",
                "install",
                "--targetHostname",
                "h:2222",
                "--targetUsername=root",
                "-k",
                "/k",
                "--initPassword",
                "s3cret",
                "--quayHostname",
                "localhost:9443",
                "--controller-bin",
                "/x",
            ]),
            "quay",
        )
        .unwrap();
        assert_eq!(
            f.words,
            [
                "install",
                "--initPassword",
                "-",
                "--quayHostname",
                "localhost:9443"
            ]
        );
        assert!(f.password);
        assert!(f.files.is_empty());
        let f = forwarded_args(
            &os(&[
                "mrctl",
                "uninstall",
                "-k/k",
                "--ssh-key=/k",
                "--autoApprove",
            ]),
            "quay",
        )
        .unwrap();
        assert_eq!(f.words, ["uninstall", "--autoApprove"]);
        assert!(!f.password);
        let f = forwarded_args(
            &os(&["mrctl", "install", "--initPasswordFile=/somewhere/pw"]),
            "quay",
        )
        .unwrap();
        assert_eq!(f.words, ["install", "--initPassword", "-"]);
        assert!(f.password);
    }

    #[test]
    fn files_in_flags_are_copied_or_refused() {
        let d = tempfile::tempdir().unwrap();
        let cert = d.path().join("server.crt");
        let key = d.path().join("server.key");
        std::fs::write(&cert, "c").unwrap();
        std::fs::write(&key, "k").unwrap();
        let f = forwarded_args(
            &os(&[
                "mrctl",
                "install",
                "--sslCert",
                cert.to_str().unwrap(),
                &format!("--sslKey={}", key.display()),
                "--quayRoot",
                "/srv/quay",
            ]),
            "reg",
        )
        .unwrap();
        assert_eq!(
            f.words,
            [
                "install",
                "--sslCert",
                "/opt/mirror-registry/files/reg-sslCert",
                "--sslKey",
                "/opt/mirror-registry/files/reg-sslKey",
                "--quayRoot",
                "/srv/quay"
            ]
        );
        assert_eq!(
            f.files,
            [
                (cert.clone(), "files/reg-sslCert".to_string()),
                (key.clone(), "files/reg-sslKey".to_string())
            ]
        );
        let e = forwarded_args(
            &os(&["mrctl", "install", "--sslCert", "/nonexistent/server.crt"]),
            "reg",
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string().contains("--sslCert /nonexistent/server.crt"),
            "{e}"
        );
    }

    #[test]
    fn targets_parse() {
        let a = RemoteArgs {
            target_hostname: Some("reg.example:2222".into()),
            target_username: Some("admin".into()),
            ssh_key: None,
        };
        let t = Target::from_args(&a).unwrap().unwrap();
        assert_eq!((t.host.as_str(), t.port), ("reg.example", Some(2222)));
        let bad = RemoteArgs {
            target_hostname: Some("h:x".into()),
            ..RemoteArgs::default()
        };
        assert_eq!(Target::from_args(&bad).unwrap_err().exit_code(), 2);
        let nokey = RemoteArgs {
            target_hostname: Some("h".into()),
            ssh_key: Some("/nonexistent/key".into()),
            ..RemoteArgs::default()
        };
        let e = Target::from_args(&nokey).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/key"), "{e}");
    }

    #[test]
    fn ssh_failures_name_their_cause() {
        let t = Target {
            host: "h".into(),
            port: Some(2222),
            user: Some("u".into()),
            key: None,
        };
        assert!(classify(&t, "Host key verification failed.\r\n").contains("host key is not known"));
        assert!(
            classify(&t, "u@h: Permission denied (publickey).").contains("authentication failed")
        );
        assert!(
            classify(&t, "ssh: connect to host h port 2222: Connection refused")
                .contains("connection refused")
        );
        assert!(
            classify(&t, "ssh: connect to host h port 2222: Connection timed out")
                .contains("unreachable")
        );
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
    }

    /// The real ssh client, against a host name that cannot resolve.
    #[test]
    fn an_unresolvable_host_is_reported() {
        if Command::new("ssh").arg("-V").output().is_err() {
            return;
        }
        let t = Target {
            host: "no-such-host.invalid".into(),
            port: None,
            user: None,
            key: None,
        };
        let e = preflight(&t).unwrap_err().to_string();
        assert!(
            e.contains("does not resolve") || e.contains("unreachable"),
            "{e}"
        );
        assert!(e.contains("nothing was changed"), "{e}");
    }
}
