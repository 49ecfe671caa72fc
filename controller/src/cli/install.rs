//! The original mirror-registry's one-command UX on top of the controller:
//! `install` writes a spec from its flags and runs the controller under
//! systemd, `uninstall` removes the registry (data kept unless
//! --autoApprove), `upgrade` moves it to new images keeping data, config
//! and credentials.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::controller_metrics::{self, MetricsArgs};
use super::controller_unit::{self, unit_name, ControllerArgs, UnitConfig};
use super::state::{edit_spec, place_spec, set_spec_value, Paths, Registry, Spec};
use super::wait::{self, Target};
use super::{credentials as creds_cmd, Error, Result, EXIT_FAILED, EXIT_OK};
use crate::api::defaults::{self, Resolved};
use crate::api::{
    load, DeletionPolicy, Engine, ImagesSpec, InitUserSpec, Metadata, MirrorRegistry, Phase,
    Spec as ApiSpec, StorageSpec, TlsSpec, API_VERSION, KIND,
};
use crate::host::credentials;
use crate::host::files;
use crate::host::podman::Podman;
use crate::host::systemd::{self, Systemd};
use crate::naming;
use crate::reconcile::{admission, record};
use crate::settings::Scope;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineArg {
    /// Quay + Redis + SQLite, the original's layout.
    Quay,
    /// The CNCF distribution registry.
    Distribution,
}

impl From<EngineArg> for Engine {
    fn from(e: EngineArg) -> Engine {
        match e {
            EngineArg::Quay => Engine::Quay,
            EngineArg::Distribution => Engine::Distribution,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// Registry name: pod `<name>-pod`, units `<name>-*.service`.
    #[arg(long, default_value = "quay")]
    pub name: String,
    /// Registry software.
    #[arg(long, value_enum, default_value = "quay")]
    pub engine: EngineArg,
    /// Name (and port) clients use; default: this host's FQDN, port 8443.
    #[arg(long = "quayHostname", value_name = "HOST[:PORT]")]
    pub quay_hostname: Option<String>,
    /// Directory for config, TLS and secrets; default /var/lib/mirror-registry/<name>.
    #[arg(long = "quayRoot", value_name = "DIR")]
    pub quay_root: Option<PathBuf>,
    /// Image storage: a podman volume name, or an absolute directory.
    #[arg(long = "quayStorage", value_name = "VOLUME|DIR")]
    pub quay_storage: Option<String>,
    /// Quay's SQLite database: a podman volume name, or an absolute directory.
    #[arg(long = "sqliteStorage", value_name = "VOLUME|DIR")]
    pub sqlite_storage: Option<String>,
    /// Your server certificate (PEM); with --sslKey.
    #[arg(long = "sslCert", value_name = "FILE", requires = "ssl_key")]
    pub ssl_cert: Option<PathBuf>,
    /// Your server key (PEM); with --sslCert.
    #[arg(long = "sslKey", value_name = "FILE", requires = "ssl_cert")]
    pub ssl_key: Option<PathBuf>,
    /// Accept a certificate that does not name the hostname.
    #[arg(long = "sslCheckSkip")]
    pub ssl_check_skip: bool,
    /// The initial user; default init.
    #[arg(long = "initUser", value_name = "USER")]
    pub init_user: Option<String>,
    /// The initial user's password; `-` reads it from standard input (a
    /// terminal is asked without echo). It is kept in a 0600 file, never
    /// passed on. Omitted: one is generated.
    #[arg(long = "initPassword", value_name = "PASSWORD|-")]
    pub init_password: Option<String>,
    /// A file holding the initial password (one line); keeps it off the
    /// command line.
    #[arg(
        long = "initPasswordFile",
        value_name = "FILE",
        conflicts_with = "init_password"
    )]
    pub init_password_file: Option<PathBuf>,
    /// Image archive to load images from on an air-gapped host.
    #[arg(long = "imageArchive", value_name = "FILE")]
    pub image_archive: Option<PathBuf>,
    /// How long to wait for the registry to become Ready.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub controller: ControllerArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

#[derive(Debug, clap::Args)]
pub struct UpgradeArgs {
    /// Registry name.
    #[arg(long, default_value = "quay")]
    pub name: String,
    /// The distribution engine's image. Without any image flag, every
    /// engine image goes to this version's default.
    #[arg(long = "registryImage", value_name = "IMAGE")]
    pub registry_image: Option<String>,
    /// The quay engine's Quay image.
    #[arg(long = "quayImage", value_name = "IMAGE")]
    pub quay_image: Option<String>,
    /// The quay engine's Redis image.
    #[arg(long = "redisImage", value_name = "IMAGE")]
    pub redis_image: Option<String>,
    /// The pod's infra image.
    #[arg(long = "pauseImage", value_name = "IMAGE")]
    pub pause_image: Option<String>,
    /// Image archive holding the new images.
    #[arg(long = "imageArchive", value_name = "FILE")]
    pub image_archive: Option<PathBuf>,
    /// How long to wait for the registry to become Ready again.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub controller: ControllerArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    std::env::current_dir()
        .map(|d| d.join(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

/// `host[:port]` → (host, port).
pub fn split_host_port(s: &str) -> Result<(String, Option<u32>)> {
    match s.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => {
            let port: u32 = p.parse().map_err(|_| {
                Error::Usage(format!("--quayHostname {s}: port {p:?} is not a number"))
            })?;
            Ok((h.to_string(), Some(port)))
        }
        Some(_) => Err(Error::Usage(format!(
            "--quayHostname {s}: the host is empty"
        ))),
        None => Ok((s.to_string(), None)),
    }
}

/// A volume name, or a directory when it looks like a path.
fn storage(s: &str) -> StorageSpec {
    if s.contains('/') {
        StorageSpec {
            volume: None,
            path: Some(absolute(Path::new(s))),
        }
    } else {
        StorageSpec {
            volume: Some(s.to_string()),
            path: None,
        }
    }
}

/// The install flag that sets a spec field, for messages.
fn flag_for(field: &str) -> Option<&'static str> {
    let map = [
        ("metadata.name", "--name"),
        ("spec.engine", "--engine"),
        ("spec.hostname", "--quayHostname"),
        ("spec.port", "--quayHostname"),
        ("spec.root", "--quayRoot"),
        ("spec.storage", "--quayStorage"),
        ("spec.database", "--sqliteStorage"),
        ("spec.tls.certFile", "--sslCert"),
        ("spec.tls.keyFile", "--sslKey"),
        ("spec.tls.skipHostnameCheck", "--sslCheckSkip"),
        ("spec.tls", "--sslCert/--sslKey"),
        ("spec.initUser.username", "--initUser"),
        ("spec.initUser.passwordFile", "--initPasswordFile"),
        ("spec.images.archive", "--imageArchive"),
        ("spec.images", "--registryImage/--quayImage/--redisImage"),
    ];
    map.iter()
        .find(|(f, _)| field.starts_with(f))
        .map(|(_, flag)| *flag)
}

/// The spec the install flags describe, as the YAML text install writes.
fn spec_text(a: &InstallArgs, password_file: Option<PathBuf>) -> Result<String> {
    let (hostname, port) = match &a.quay_hostname {
        Some(hp) => split_host_port(hp)?,
        None => (String::new(), None),
    };
    let tls = (a.ssl_cert.is_some() || a.ssl_check_skip).then(|| TlsSpec {
        cert_file: a.ssl_cert.as_deref().map(absolute),
        key_file: a.ssl_key.as_deref().map(absolute),
        skip_hostname_check: a.ssl_check_skip,
        extra_sans: vec![],
    });
    let mr = MirrorRegistry {
        api_version: API_VERSION.into(),
        kind: KIND.into(),
        metadata: Metadata {
            name: Some(a.name.clone()),
            ..Metadata::default()
        },
        spec: ApiSpec {
            engine: a.engine.into(),
            hostname: (!hostname.is_empty()).then_some(hostname),
            port: port.unwrap_or(defaults::PORT),
            root: a.quay_root.as_deref().map(absolute),
            storage: a.quay_storage.as_deref().map(storage),
            database: a.sqlite_storage.as_deref().map(storage),
            tls,
            init_user: InitUserSpec {
                username: a.init_user.clone().unwrap_or_else(defaults::init_username),
                password_file,
            },
            images: ImagesSpec {
                archive: a.image_archive.as_deref().map(absolute),
                ..ImagesSpec::default()
            },
            paused: false,
            deletion_policy: DeletionPolicy::Retain,
        },
        status: None,
    };
    let mut v = serde_yaml::to_value(&mr)
        .map_err(|e| Error::Failed(format!("cannot write the spec: {e}")))?;
    // Leave out what says nothing beyond the defaults, so the file reads
    // like one a person wrote.
    if let Some(spec) = v.get_mut("spec").and_then(|s| s.as_mapping_mut()) {
        spec.remove("paused");
        spec.remove("deletionPolicy");
        let empty = |x: Option<&serde_yaml::Value>| {
            x.and_then(|x| x.as_mapping()).is_some_and(|m| m.is_empty())
        };
        if empty(spec.get("images")) {
            spec.remove("images");
        }
        if spec.get("initUser") == serde_yaml::to_value(InitUserSpec::default()).ok().as_ref() {
            spec.remove("initUser");
        }
    }
    let body = serde_yaml::to_string(&v)
        .map_err(|e| Error::Failed(format!("cannot write the spec: {e}")))?;
    Ok(format!(
        "# Written by mrctl install. Change it with `mrctl apply -f` or by editing it:\n# the controller converges the host to it.\n{body}"
    ))
}

/// The password given with --initPassword: the value, or standard input for
/// `-` (without echo on a terminal). Checked, never printed.
fn read_password(a: &InstallArgs) -> Result<Option<String>> {
    let pw = match a.init_password.as_deref() {
        None => return Ok(None),
        Some("-") => {
            let stdin = std::io::stdin();
            let tty = stdin.is_terminal();
            if tty {
                eprint!(
                    "Password for {}: ",
                    a.init_user.as_deref().unwrap_or(defaults::INIT_USERNAME)
                );
                let _ = std::io::stderr().flush();
                stty("-echo");
            }
            let mut line = String::new();
            let read = stdin.lock().read_line(&mut line);
            if tty {
                stty("echo");
                eprintln!();
            }
            read.map_err(|source| Error::Io {
                op: "read the password from",
                path: PathBuf::from("<stdin>"),
                source,
            })?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
        Some(v) => v.to_string(),
    };
    if pw.is_empty() {
        return Err(Error::Usage("--initPassword: the password is empty".into()));
    }
    if pw.contains(['\n', '\r']) {
        return Err(Error::Usage(
            "--initPassword: the password holds a line break".into(),
        ));
    }
    if pw.len() > 72 {
        return Err(Error::Usage(
            "--initPassword: the password is longer than 72 bytes, more than bcrypt (htpasswd) can check".into(),
        ));
    }
    Ok(Some(pw))
}

/// Turns terminal echo off or on; the password never reaches stty.
fn stty(arg: &str) {
    if let Ok(tty) = std::fs::File::open("/dev/tty") {
        let _ = std::process::Command::new("stty")
            .arg(arg)
            .stdin(tty)
            .status();
    }
}

/// Top-level differences between two defaulted specs, as `field: old -> new`.
fn differences(old: &Resolved, new: &Resolved) -> Vec<String> {
    let (Ok(Json::Object(o)), Ok(Json::Object(n))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return vec![];
    };
    n.iter()
        .filter(|(k, v)| o.get(*k) != Some(*v))
        .map(|(k, v)| {
            let show = |x: Option<&Json>| x.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
            format!("{k}: {} -> {}", show(o.get(k)), show(Some(v)))
        })
        .collect()
}

/// Whether the port can be bound, i.e. nothing listens on it.
fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, port)).is_ok()
}

/// The controller's unit, as install and upgrade write it.
fn controller_config(
    paths: &Paths,
    c: &ControllerArgs,
    m: &MetricsArgs,
) -> Result<(String, String)> {
    let exec = controller_unit::controller_binary(c.controller_bin.as_deref())?;
    let mut env = Vec::new();
    if let Some(s) = &paths.podman_socket_given {
        env.push((
            crate::settings::env::PODMAN_SOCKET.to_string(),
            s.display().to_string(),
        ));
    }
    if paths.scope == Scope::User {
        // A user manager started outside a login session may not pass these
        // on; the controller needs them for the session bus and podman.
        for k in ["XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS"] {
            if let Ok(v) = std::env::var(k) {
                env.push((k.to_string(), v));
            }
        }
    }
    let installed =
        files::read_optional(&systemd::unit_dir(paths.scope)?.join(unit_name(&c.controller_unit)))?;
    let installed = installed.map(|b| String::from_utf8_lossy(&b).into_owned());
    env.extend(controller_metrics::unit_env(m, installed.as_deref())?);
    let cfg = UnitConfig {
        exec,
        scope: paths.scope,
        watch_dir: absolute(&paths.watch_dir),
        state_dir: absolute(&paths.state_dir),
        env,
        watchdog: c.controller_watchdog,
        log_file: c.controller_log.as_deref().map(absolute),
    };
    Ok((
        unit_name(&c.controller_unit),
        controller_unit::unit_text(&cfg),
    ))
}

async fn ensure_controller(
    paths: &Paths,
    systemd: &Systemd,
    c: &ControllerArgs,
    m: &MetricsArgs,
) -> Result<()> {
    let (unit, text) = controller_config(paths, c, m)?;
    let unit_dir = systemd::unit_dir(paths.scope)?;
    let e = controller_unit::ensure(systemd, &unit_dir, &unit, &text).await?;
    let what = match (e.file_changed, e.started) {
        (true, true) => "written, enabled and started",
        (false, true) => "started",
        (true, false) => "updated",
        (false, false) => "already running",
    };
    outln!("controller {unit} ({} scope): {what}", paths.scope);
    if let Some(urls) = controller_metrics::urls(&controller_metrics::unit_env(
        &MetricsArgs::default(),
        Some(&text),
    )?) {
        outln!("controller {urls}");
    }
    Ok(())
}

/// Waits for Ready for the spec as it is now, printing each change of phase
/// or message. Stops early on Failed, which needs a change to the spec.
async fn wait_ready(paths: &Paths, name: &str, timeout: Duration) -> Result<Option<Registry>> {
    let start = Instant::now();
    let target = Target::Condition {
        type_: "Ready".into(),
        status: "True".into(),
    };
    let mut last = String::new();
    outln!(
        "waiting for mirrorregistry/{name} to become Ready (timeout {})",
        humantime::format_duration(timeout)
    );
    loop {
        let r = paths.lookup(name)?;
        if let Some(r) = &r {
            let current = r.status_is_current(paths.host());
            let line = if current {
                format!("{:<12} {}", r.phase(), super::get::message(r))
            } else {
                format!(
                    "{:<12} waiting for the controller to pick up the spec",
                    "Pending"
                )
            };
            if line != last {
                outln!("  {:>6.1}s  {line}", start.elapsed().as_secs_f64());
                last = line;
            }
            if wait::met(paths, Some(r), &target) {
                return paths.lookup(name);
            }
            if current && r.status.as_ref().is_some_and(|s| s.phase == Phase::Failed) {
                eprintln!(
                    "error: mirrorregistry/{name} failed: {}\n  (fix the spec, then run the command again; details: mrctl describe {name})",
                    super::get::message(r)
                );
                return Ok(None);
            }
        }
        if start.elapsed() >= timeout {
            eprintln!(
                "error: timed out waiting for the condition on mirrorregistry/{name}\n  (last seen: {}; details: mrctl describe {name})",
                last.trim()
            );
            return Ok(None);
        }
        tokio::time::sleep(wait::POLL).await;
    }
}

/// What install prints at the end: where to push, who to log in as.
fn print_access(paths: &Paths, r: &Registry, password_given: bool) -> Result<()> {
    let Some(s) = &r.status else {
        return Ok(());
    };
    let endpoint = s.endpoint.clone().unwrap_or_default();
    let host_port = endpoint.trim_start_matches("https://").to_string();
    let file = creds_cmd::credentials_file(paths, r)
        .ok_or_else(|| Error::Failed("no credentials file reported".into()))?;
    let c = creds_cmd::read(&file, &r.name)?;
    outln!();
    outln!("mirrorregistry/{} is Ready.", r.name);
    outln!("  Endpoint:     {endpoint}");
    outln!("  Username:     {}", c.username);
    if password_given {
        outln!("  Password:     (the one given with --initPassword)");
    } else {
        outln!("  Password:     {}", c.password);
    }
    outln!(
        "  Credentials:  {} (mode 0600; `mrctl credentials {}` prints them)",
        file.display(),
        r.name
    );
    match &s.ca_file {
        Some(ca) => outln!(
            "  CA:           {} (trusted by podman and skopeo on this host)",
            ca.display()
        ),
        None => outln!("  CA:           the issuer of your certificate (--sslCert)"),
    }
    outln!();
    outln!("Log in with:");
    outln!("  podman login -u {} {host_port}", c.username);
    Ok(())
}

pub async fn install(paths: &Paths, a: InstallArgs) -> Result<i32> {
    let name = a.name.clone();
    let password = read_password(&a)?;
    let root = a
        .quay_root
        .as_deref()
        .map(absolute)
        .unwrap_or_else(|| naming::default_root(&name));
    let password_file = match (&password, &a.init_password_file) {
        (Some(_), _) => Some(naming::root::init_password_file(&root)),
        (None, Some(f)) => {
            let f = absolute(f);
            credentials::read_password_file(&f)
                .map_err(|e| Error::Usage(format!("--initPasswordFile: {e}")))?;
            Some(f)
        }
        (None, None) => None,
    };
    let text = spec_text(&a, password_file.clone())?;
    let mut dest = paths.watch_dir.join(format!("{name}.yaml"));
    let loaded = load::parse(&dest, text.as_bytes()).map_err(|invalid| {
        let lines: Vec<String> = invalid
            .problems
            .iter()
            .map(|p| match flag_for(&p.path) {
                Some(flag) => format!("  {p} ({flag})"),
                None => format!("  {p}"),
            })
            .collect();
        Error::Usage(format!(
            "the install flags do not make a valid spec:\n{}",
            lines.join("\n")
        ))
    })?;
    let resolved = defaults::resolve(&loaded.resource, &loaded.name, paths.host());
    crate::render::render(&resolved, &paths.render_context())
        .map_err(|e| Error::Failed(format!("--engine {}: {e}", resolved.engine.as_str())))?;

    // An installed registry is never reconfigured by a second install.
    let existing = paths.lookup(&name)?;
    let fresh = existing.is_none();
    if let Some(r) = &existing {
        match (&r.spec, r.file()) {
            (Spec::Valid(_), Some(file)) => {
                let old = r.resolved(paths.host()).ok_or_else(|| {
                    Error::Failed(format!("{}: cannot read the installed spec", file.display()))
                })?;
                let diff = differences(&old, &resolved);
                if !diff.is_empty() {
                    return Err(Error::Failed(format!(
                        "mirrorregistry/{name} is already installed ({}) with a different spec:\n  {}\ninstall does not change a running registry: use `mrctl upgrade` for images, `mrctl apply -f` for other changes, or `mrctl uninstall --name {name}` first",
                        file.display(),
                        diff.join("\n  ")
                    )));
                }
                if let (Some(pw), Some(pf)) = (&password, &password_file) {
                    if pf.exists() && credentials::read_password_file(pf).ok().as_ref() != Some(pw)
                    {
                        return Err(Error::Failed(format!(
                            "mirrorregistry/{name} is already installed with another init password ({}); install does not change it: edit that file (mode 0600) to change it",
                            pf.display()
                        )));
                    }
                }
                dest = file.to_path_buf();
            }
            (Spec::Missing, _) => {
                return Err(Error::Failed(format!(
                    "mirrorregistry/{name} is being torn down; wait for it (`mrctl wait {name} --for=delete`) and install again"
                )))
            }
            (Spec::Invalid(inv), _) => {
                return Err(Error::Failed(format!(
                    "mirrorregistry/{name} is already installed, but its spec file is not valid:\n{inv}\nfix it or `mrctl delete {name}` first"
                )))
            }
            _ => {
                return Err(Error::Failed(format!(
                    "mirrorregistry/{name} is claimed by {} spec files ({}); remove all but one first",
                    r.files.len(),
                    r.files
                        .iter()
                        .map(|f| f.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        }
    }
    if fresh {
        // A file of that name holding another registry (renamed by hand,
        // say) is that registry's spec: writing over it would tear it down.
        if dest.symlink_metadata().is_ok() {
            let held = paths
                .read_spec(&dest)
                .ok()
                .and_then(|b| load::parse(&dest, &b).ok())
                .map(|l| format!("mirrorregistry/{}", l.name))
                .unwrap_or_else(|| "something that is not a valid spec".into());
            return Err(Error::Failed(format!(
                "{} already exists and holds {held}; nothing was written. Install under another --name, or move that file first",
                dest.display()
            )));
        }
        refuse_collisions(paths, &resolved).await?;
    }
    if fresh && !port_free(resolved.port) {
        return Err(Error::Failed(format!(
            "port {} is already in use on this host; choose another with --quayHostname {}:PORT",
            resolved.port, resolved.hostname
        )));
    }
    // The controller's unit is checked before anything is written.
    let systemd = Systemd::connect(paths.scope).await?;
    let (unit, unit_text) = controller_config(paths, &a.controller, &a.metrics)?;
    controller_unit::preflight(
        &systemd,
        &systemd::unit_dir(paths.scope)?,
        &unit,
        &unit_text,
    )
    .await?;

    if let (Some(pw), Some(pf)) = (&password, &password_file) {
        record_created_root(paths, &name, &root, pf)?;
        files::ensure_dir(&root, 0o700)?;
        files::ensure_dir(&naming::root::secrets_dir(&root), 0o700)?;
        files::write_if_changed(pf, format!("{pw}\n").as_bytes(), 0o600)?;
    }
    if fresh {
        place_spec(&paths.watch_dir, &dest, &text)?;
        outln!("mirrorregistry/{name} created ({})", dest.display());
    } else {
        outln!(
            "mirrorregistry/{name} is already installed ({}) and unchanged",
            dest.display()
        );
    }
    ensure_controller(paths, &systemd, &a.controller, &a.metrics).await?;
    let Some(r) = wait_ready(paths, &name, a.timeout).await? else {
        return Ok(EXIT_FAILED);
    };
    print_access(paths, &r, password.is_some())?;
    Ok(EXIT_OK)
}

/// Before a new registry's spec is written: another registry's root,
/// storage, database or port, or a container, pod, volume, unit file or
/// trust entry under its names that is not its own, is refused here rather
/// than by the controller later.
async fn refuse_collisions(paths: &Paths, r: &Resolved) -> Result<()> {
    let mut problems = paths.clashes_with_others(r)?;
    let desired = crate::render::render(r, &paths.render_context()).map_err(Error::Failed)?;
    let podman = Podman::connect(&paths.podman_socket).await?;
    let unit_dir = systemd::unit_dir(paths.scope)?;
    let certs_d = crate::settings::certs_d();
    let record = record::load(&paths.state_dir, &r.name)?;
    problems.extend(
        admission::foreign_objects((&unit_dir, &certs_d), &podman, r, &desired, record.as_ref())
            .await
            .map_err(|e| Error::Failed(e.to_string()))?,
    );
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::Failed(format!(
        "mirrorregistry/{} cannot be installed:\n  {}\nnothing was written; choose another --name, --quayRoot, storage or port, or remove what is in the way",
        r.name,
        problems.join("\n  ")
    )))
}

/// install writes the password file before the controller sees the spec;
/// when that creates the root, the ownership record says so first, so that
/// deletionPolicy Delete may later remove it (a root that existed never is).
fn record_created_root(paths: &Paths, name: &str, root: &Path, password_file: &Path) -> Result<()> {
    // A root that exists (kept by an earlier uninstall, or the user's) is
    // the controller's to judge, from its record or what a Retain
    // teardown kept.
    if root.symlink_metadata().is_ok() || record::load(&paths.state_dir, name)?.is_some() {
        return Ok(());
    }
    let secrets = naming::root::secrets_dir(root);
    let mut rec = record::Record {
        name: name.to_string(),
        root: root.to_path_buf(),
        ..record::Record::default()
    };
    rec.created_dirs.extend(
        [root.to_path_buf(), secrets]
            .into_iter()
            .filter(|d| d.symlink_metadata().is_err()),
    );
    if password_file.starts_with(root) {
        rec.files.insert(password_file.to_path_buf());
    }
    if !rec.created_dirs.is_empty() || !rec.files.is_empty() {
        record::save(&paths.state_dir, &rec)?;
    }
    Ok(())
}

pub async fn upgrade(paths: &Paths, a: UpgradeArgs) -> Result<i32> {
    let name = a.name.clone();
    let r = paths.find(&name)?;
    let (loaded, file) = match (r.loaded(), r.file()) {
        (Some(l), Some(f)) => (l.clone(), f.to_path_buf()),
        _ => {
            return Err(Error::Failed(format!(
            "mirrorregistry/{name} has no valid spec file to upgrade (see `mrctl describe {name}`)"
        )))
        }
    };
    let any = a.registry_image.is_some()
        || a.quay_image.is_some()
        || a.redis_image.is_some()
        || a.pause_image.is_some();
    let mut edits: Vec<(&str, Option<serde_yaml::Value>)> = Vec::new();
    for (key, flag) in [
        ("registry", &a.registry_image),
        ("quay", &a.quay_image),
        ("redis", &a.redis_image),
        ("pause", &a.pause_image),
    ] {
        match flag {
            Some(img) => edits.push((key, Some(img.clone().into()))),
            // Unpinned: the defaults of this version.
            None if !any && key != "pause" => edits.push((key, None)),
            None => {}
        }
    }
    if let Some(arch) = &a.image_archive {
        edits.push(("archive", Some(absolute(arch).display().to_string().into())));
    }
    let apply = |doc: &mut serde_yaml::Value| {
        for (k, v) in &edits {
            set_spec_value(doc, &["images", k], v.clone());
        }
        // No empty `images:` left behind.
        if let Some(spec) = doc.get_mut("spec").and_then(|s| s.as_mapping_mut()) {
            if spec
                .get("images")
                .and_then(|i| i.as_mapping())
                .is_some_and(|m| m.is_empty())
            {
                spec.remove("images");
            }
        }
    };
    // The new spec, checked before anything changes.
    let mut doc: serde_yaml::Value = serde_yaml::from_slice(&paths.read_spec(&file)?)
        .map_err(|e| Error::Failed(format!("{}: {e}", file.display())))?;
    apply(&mut doc);
    let new_text = serde_yaml::to_string(&doc)
        .map_err(|e| Error::Failed(format!("cannot write the spec: {e}")))?;
    let new_loaded = load::parse(&file, new_text.as_bytes())
        .map_err(|inv| Error::Usage(format!("the upgraded spec would not be valid:\n{inv}")))?;
    let old = defaults::resolve(&loaded.resource, &loaded.name, paths.host());
    let new = defaults::resolve(&new_loaded.resource, &new_loaded.name, paths.host());
    crate::render::render(&new, &paths.render_context()).map_err(Error::Failed)?;

    let systemd = Systemd::connect(paths.scope).await?;
    ensure_controller(paths, &systemd, &a.controller, &a.metrics).await?;
    let images = |x: &Resolved| {
        crate::render::render(x, &paths.render_context())
            .map(|d| d.images)
            .unwrap_or_default()
    };
    let (before, after) = (images(&old), images(&new));
    if old == new {
        outln!("mirrorregistry/{name} is up to date ({})", after.join(", "));
    } else {
        edit_spec(paths, &file, apply)?;
        outln!(
            "mirrorregistry/{name}: images {} -> {}",
            before.join(", "),
            after.join(", ")
        );
    }
    let Some(r) = wait_ready(paths, &name, a.timeout).await? else {
        return Ok(EXIT_FAILED);
    };
    if old != new {
        outln!(
            "mirrorregistry/{} upgraded; data, config and credentials kept ({})",
            r.name,
            r.status
                .as_ref()
                .and_then(|s| s.endpoint.clone())
                .unwrap_or_default()
        );
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> InstallArgs {
        let mut v = vec!["mrctl", "install"];
        v.extend_from_slice(extra);
        match super::super::Cli::parse_from(v).command {
            super::super::Command::Install(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn host_port_splits() {
        assert_eq!(
            split_host_port("a.example:9443").unwrap(),
            ("a.example".into(), Some(9443))
        );
        assert_eq!(
            split_host_port("a.example").unwrap(),
            ("a.example".into(), None)
        );
        assert_eq!(split_host_port("a:x").unwrap_err().exit_code(), 2);
        assert_eq!(split_host_port(":1").unwrap_err().exit_code(), 2);
    }

    #[test]
    fn original_flags_map_onto_the_spec() {
        let a = args(&[
            "--engine",
            "distribution",
            "--name",
            "mirror",
            "--quayHostname",
            "reg.example.org:9443",
            "--quayRoot",
            "/srv/mirror",
            "--quayStorage",
            "/srv/blobs",
            "--sslCert",
            "/etc/pki/t.crt",
            "--sslKey",
            "/etc/pki/t.key",
            "--sslCheckSkip",
            "--initUser",
            "admin",
            "--imageArchive",
            "/opt/images.tar",
        ]);
        let text = spec_text(&a, Some(PathBuf::from("/srv/mirror/secrets/init-password"))).unwrap();
        let l = load::parse(Path::new("/w/mirror.yaml"), text.as_bytes()).unwrap();
        let s = &l.resource.spec;
        assert_eq!(l.name, "mirror");
        assert_eq!(s.engine, Engine::Distribution);
        assert_eq!(s.hostname.as_deref(), Some("reg.example.org"));
        assert_eq!(s.port, 9443);
        assert_eq!(s.root.as_deref(), Some(Path::new("/srv/mirror")));
        assert_eq!(
            s.storage.as_ref().unwrap().path.as_deref(),
            Some(Path::new("/srv/blobs"))
        );
        let tls = s.tls.as_ref().unwrap();
        assert!(tls.skip_hostname_check);
        assert_eq!(tls.cert_file.as_deref(), Some(Path::new("/etc/pki/t.crt")));
        assert_eq!(s.init_user.username, "admin");
        assert!(s.init_user.password_file.is_some());
        assert_eq!(
            s.images.archive.as_deref(),
            Some(Path::new("/opt/images.tar"))
        );
        assert!(!text.contains("paused"), "defaults left out:\n{text}");

        let d = args(&["--quayStorage", "my-volume"]);
        let text = spec_text(&d, None).unwrap();
        let l = load::parse(Path::new("/w/quay.yaml"), text.as_bytes()).unwrap();
        assert_eq!(l.name, "quay");
        assert_eq!(l.resource.spec.engine, Engine::Quay);
        assert_eq!(
            l.resource.spec.storage.as_ref().unwrap().volume.as_deref(),
            Some("my-volume")
        );
        assert!(!text.contains("initUser"), "{text}");
    }

    #[test]
    fn flags_are_named_for_spec_fields() {
        assert_eq!(flag_for("spec.port"), Some("--quayHostname"));
        assert_eq!(flag_for("spec.database.volume"), Some("--sqliteStorage"));
        assert_eq!(flag_for("spec.tls.certFile"), Some("--sslCert"));
        assert_eq!(flag_for("spec.paused"), None);
    }
}
