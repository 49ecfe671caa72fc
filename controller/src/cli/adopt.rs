//! `mrctl adopt`: takes over a registry the original mirror-registry
//! installed, keeping its data, its certificate and its init user.
//!
//! The original leaves three units (`quay-pod`, `quay-redis`, `quay-app`),
//! a pod and two containers of fixed names, two volumes (or directories) and
//! its `--quayRoot` (`quay-config/` with config.yaml and the TLS pair,
//! `quay-rootCA/`). adopt reads all of that from the unit files and
//! config.yaml, writes a spec whose names match, and hands the containers
//! over: the original's units are stopped and disabled once (their files
//! kept under the state directory), the ownership record lists the pod,
//! containers and units as the registry's own, and the controller starts
//! its units. Each container is stopped once and started once. The data
//! volumes, `quay-config/`, `quay-rootCA/` and the podman secret
//! `redis_pass` are never touched: the controller takes the original's
//! SECRET_KEY, DATABASE_SECRET_KEY and Redis password from config.yaml
//! (`reconcile::quay::inputs`) and serves the original's certificate.
//!
//! Everything that can refuse runs before anything changes; if the
//! hand-over fails before the spec is written, the original's units are
//! put back and started again.

use std::path::{Path, PathBuf};

use super::install::{
    absolute, ensure_controller_unit, preflight_controller, print_ready_access,
    read_password_given, spec_yaml, storage_flag, wait_until_ready, write_password, RunArgs,
};
use super::state::{place_spec, Paths};
use super::{Error, Result, EXIT_FAILED, EXIT_OK};
use crate::api::defaults::{self, Resolved, Storage};
use crate::api::{
    DeletionPolicy, Engine, ImagesSpec, InitUserSpec, Metadata, MirrorRegistry, Spec as ApiSpec,
    TlsSpec, API_VERSION, KIND,
};
use crate::host::files;
use crate::host::podman::Podman;
use crate::host::systemd::{self, Systemd};
use crate::naming;
use crate::store::{claims, record};

/// The original's fixed names (its templates do not vary them).
pub const ORIGINAL_POD: &str = "quay-pod";
pub const ORIGINAL_CONTAINERS: [&str; 2] = ["quay-app", "quay-redis"];
/// In the order they are stopped: dependants first.
pub const ORIGINAL_UNITS: [&str; 3] =
    ["quay-app.service", "quay-redis.service", "quay-pod.service"];
/// Where the original's unit files are kept, under `<state-dir>/<name>/`.
pub const KEPT_UNITS_DIR: &str = "adopted-units";

#[derive(Debug, clap::Args)]
pub struct AdoptArgs {
    /// The original's --quayRoot. Default: read from its quay-app.service.
    #[arg(long = "quayRoot", value_name = "DIR")]
    pub quay_root: Option<PathBuf>,
    /// Name of the registry it becomes (pod `<name>-pod`, units
    /// `<name>-*.service`); `quay` keeps the original's names.
    #[arg(long, default_value = "quay")]
    pub name: String,
    /// The original's initial user.
    #[arg(long = "initUser", value_name = "USER", default_value = defaults::INIT_USERNAME)]
    pub init_user: String,
    /// The original's init password (`-` reads it from standard input; a
    /// terminal is asked without echo). It is kept in a 0600 file under the
    /// root, so `mrctl credentials` prints a password that works.
    #[arg(long = "initPassword", value_name = "PASSWORD|-")]
    pub init_password: Option<String>,
    /// Image archive holding the original's images, when podman lacks them.
    #[arg(long = "imageArchive", value_name = "FILE")]
    pub image_archive: Option<PathBuf>,
    /// Print the spec and every change, and change nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

/// What the original installed, as its unit files and config.yaml say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Original {
    pub quay_root: PathBuf,
    pub hostname: String,
    pub port: u16,
    /// A volume name, or an absolute directory (its --quayStorage).
    pub storage: String,
    /// Likewise (its --sqliteStorage).
    pub sqlite: String,
    pub quay_image: String,
    pub redis_image: String,
    pub pause_image: String,
}

/// The words of a unit's `ExecStart=`, continuation lines joined. The
/// original's templates quote nothing, so whitespace splits them.
pub fn exec_words(text: &str) -> Option<Vec<String>> {
    let joined = text.replace("\\\n", " ");
    let line = joined
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("ExecStart="))?;
    Some(line.split_whitespace().map(str::to_string).collect())
}

/// `--opt VALUE` or `--opt=VALUE`, the first of any of `names`.
fn option(words: &[String], names: &[&str]) -> Option<String> {
    let mut it = words.iter();
    while let Some(w) = it.next() {
        for n in names {
            if w == n {
                return it.next().cloned();
            }
            if let Some(v) = w.strip_prefix(&format!("{n}=")) {
                return Some(v.to_string());
            }
        }
    }
    None
}

/// Every value of a repeated option (`-v A:B -v C:D`).
fn options(words: &[String], names: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = words.iter();
    while let Some(w) = it.next() {
        for n in names {
            if w == n {
                if let Some(v) = it.next() {
                    out.push(v.clone());
                }
            } else if let Some(v) = w.strip_prefix(&format!("{n}=")) {
                out.push(v.to_string());
            }
        }
    }
    out
}

/// `podman run`'s options that take their value as the next word, as the
/// original's units write them.
const RUN_VALUE_OPTIONS: [&str; 12] = [
    "--name",
    "-v",
    "--volume",
    "--pod",
    "--conmon-pidfile",
    "--cidfile",
    "-e",
    "--env",
    "--secret",
    "--log-driver",
    "--cgroups",
    "--image-volume",
];

/// The image of a `podman run` command line: its first word that is not an
/// option or an option's value.
pub fn run_image(words: &[String]) -> Option<String> {
    let mut it = words.iter().skip_while(|w| *w != "run").skip(1);
    while let Some(w) = it.next() {
        if w.starts_with('-') {
            if !w.contains('=') && RUN_VALUE_OPTIONS.contains(&w.as_str()) {
                it.next();
            }
            continue;
        }
        return Some(w.clone());
    }
    None
}

/// The source of the mount whose target is `target` (`-v SRC:TARGET[:OPTS]`).
fn mount_source(words: &[String], target: &str) -> Option<String> {
    options(words, &["-v", "--volume"])
        .into_iter()
        .find_map(|m| {
            let mut parts = m.split(':');
            let (src, dst) = (parts.next()?, parts.next()?);
            (dst == target).then(|| src.to_string())
        })
}

/// Reads what the original installed from its unit files in `unit_dir`
/// and the config.yaml under its root. Each problem names the file and
/// what it lacks.
pub fn discover(unit_dir: &Path, quay_root: Option<&Path>) -> Result<Original> {
    let read = |unit: &str| -> Result<(PathBuf, String)> {
        let path = unit_dir.join(unit);
        match files::read_optional(&path)? {
            Some(b) => Ok((path, String::from_utf8_lossy(&b).into_owned())),
            None => Err(Error::Failed(format!(
                "{} not found: no registry installed by the original mirror-registry in this scope (look with --scope system or --scope user)",
                path.display()
            ))),
        }
    };
    let (pod_path, pod_text) = read("quay-pod.service")?;
    let (app_path, app_text) = read("quay-app.service")?;
    let (redis_path, redis_text) = read("quay-redis.service")?;
    for (path, text) in [
        (&pod_path, &pod_text),
        (&app_path, &app_text),
        (&redis_path, &redis_text),
    ] {
        if naming::unit_text_owned_by(text, "quay")
            || text.contains(naming::OWNER_LABEL)
            || text.starts_with("# Written by mirror-registry-controller")
        {
            return Err(Error::Failed(format!(
                "{} was written by mirror-registry-controller, not the original installer: this registry is already managed (see `mrctl get`)",
                path.display()
            )));
        }
    }
    let missing = |path: &Path, what: &str| {
        Error::Failed(format!(
            "{}: {what} not found in ExecStart=; it does not look like the original installer's unit",
            path.display()
        ))
    };
    let pod = exec_words(&pod_text).ok_or_else(|| missing(&pod_path, "ExecStart="))?;
    let app = exec_words(&app_text).ok_or_else(|| missing(&app_path, "ExecStart="))?;
    let redis = exec_words(&redis_text).ok_or_else(|| missing(&redis_path, "ExecStart="))?;
    if option(&pod, &["--name"]).as_deref() != Some(ORIGINAL_POD) {
        return Err(missing(&pod_path, "--name quay-pod"));
    }
    let publish =
        option(&pod, &["--publish", "-p"]).ok_or_else(|| missing(&pod_path, "--publish"))?;
    let port: u16 = publish
        .split(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| {
            Error::Failed(format!(
                "{}: --publish {publish}: the host port is not a number",
                pod_path.display()
            ))
        })?;
    let pause_image =
        option(&pod, &["--infra-image"]).ok_or_else(|| missing(&pod_path, "--infra-image"))?;
    let config_dir = mount_source(&app, "/quay-registry/conf/stack")
        .ok_or_else(|| missing(&app_path, "-v ...:/quay-registry/conf/stack"))?;
    let sqlite =
        mount_source(&app, "/sqlite").ok_or_else(|| missing(&app_path, "-v ...:/sqlite"))?;
    let storage = mount_source(&app, "/datastorage")
        .ok_or_else(|| missing(&app_path, "-v ...:/datastorage"))?;
    let quay_image = run_image(&app).ok_or_else(|| missing(&app_path, "the Quay image"))?;
    let redis_image = run_image(&redis).ok_or_else(|| missing(&redis_path, "the Redis image"))?;
    let config_dir = PathBuf::from(config_dir);
    let root = match config_dir.file_name().and_then(|n| n.to_str()) {
        Some("quay-config") => config_dir.parent().map(Path::to_path_buf),
        _ => None,
    }
    .ok_or_else(|| {
        Error::Failed(format!(
            "{}: Quay's config is mounted from {}, not from <quayRoot>/quay-config",
            app_path.display(),
            config_dir.display()
        ))
    })?;
    if let Some(given) = quay_root {
        let given = absolute(given);
        if claims::normalise(&given) != claims::normalise(&root) {
            return Err(Error::Usage(format!(
                "--quayRoot {}: the original's quay-app.service mounts its config from {}, so its quayRoot is {}",
                given.display(),
                config_dir.display(),
                root.display()
            )));
        }
    }
    let config = config_dir.join("config.yaml");
    let bytes = files::read_optional(&config)?.ok_or_else(|| {
        Error::Failed(format!(
            "{} not found: the original's config (its SECRET_KEY and DATABASE_SECRET_KEY keep Quay's database readable)",
            config.display()
        ))
    })?;
    let v: serde_yaml::Value = serde_yaml::from_slice(&bytes)
        .map_err(|e| Error::Failed(format!("{}: not valid YAML: {e}", config.display())))?;
    for key in ["SECRET_KEY", "DATABASE_SECRET_KEY"] {
        if v.get(key).and_then(|s| s.as_str()).is_none() {
            return Err(Error::Failed(format!(
                "{}: {key} is missing or not a string; without it Quay's database cannot be read",
                config.display()
            )));
        }
    }
    let server = v
        .get("SERVER_HOSTNAME")
        .and_then(|s| s.as_str())
        .ok_or_else(|| {
            Error::Failed(format!("{}: SERVER_HOSTNAME is missing", config.display()))
        })?;
    let hostname = server
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(server)
        .to_string();
    Ok(Original {
        quay_root: root,
        hostname,
        port,
        storage,
        sqlite,
        quay_image,
        redis_image,
        pause_image,
    })
}

/// The TLS pair the original serves (its own CA's, or the user's
/// --sslCert/--sslKey it copied there).
pub fn tls_pair(root: &Path) -> (PathBuf, PathBuf) {
    let dir = root.join("quay-config");
    (dir.join("ssl.cert"), dir.join("ssl.key"))
}

/// The spec whose names match what the original installed.
pub fn spec_text(
    o: &Original,
    name: &str,
    init_user: &str,
    password_file: Option<PathBuf>,
    archive: Option<PathBuf>,
) -> Result<String> {
    let (cert, key) = tls_pair(&o.quay_root);
    let mr = MirrorRegistry {
        api_version: API_VERSION.into(),
        kind: KIND.into(),
        metadata: Metadata {
            name: Some(name.to_string()),
            ..Metadata::default()
        },
        spec: ApiSpec {
            engine: Engine::Quay,
            hostname: Some(o.hostname.clone()),
            port: u32::from(o.port),
            root: Some(o.quay_root.clone()),
            storage: Some(storage_flag(&o.storage)),
            database: Some(storage_flag(&o.sqlite)),
            tls: Some(TlsSpec {
                cert_file: Some(cert),
                key_file: Some(key),
                skip_hostname_check: false,
                extra_sans: vec![],
            }),
            init_user: InitUserSpec {
                username: init_user.to_string(),
                password_file,
            },
            images: ImagesSpec {
                archive,
                registry: None,
                quay: Some(o.quay_image.clone()),
                redis: Some(o.redis_image.clone()),
                pause: Some(o.pause_image.clone()),
            },
            paused: false,
            deletion_policy: DeletionPolicy::Retain,
            garbage_collection: None,
        },
        status: None,
    };
    let body = spec_yaml(&mr)?;
    Ok(format!(
        "# Written by mrctl adopt from the registry the original mirror-registry installed\n# under {}; its data, certificate and secrets are kept where they were.\n{body}",
        o.quay_root.display()
    ))
}

fn storage_line(field: &str, s: &Storage) -> String {
    match s {
        Storage::Volume(v) => format!("volume {v} ({field}): kept as it is, mounted again"),
        Storage::Path(p) => format!(
            "directory {} ({field}): kept as it is, mounted again",
            p.display()
        ),
    }
}

/// Every change adopt and then the controller make, in order, and what
/// stays untouched.
pub fn plan(
    paths: &Paths,
    o: &Original,
    r: &Resolved,
    spec_file: &Path,
    password: bool,
) -> Vec<String> {
    let state = paths.state_dir.join(&r.name);
    let unit_dir = systemd::unit_dir(paths.scope)
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let mut out = Vec::new();
    for u in ORIGINAL_UNITS {
        out.push(format!(
            "stop and disable {u} (the original's); its file moves from {unit_dir} to {}",
            state.join(KEPT_UNITS_DIR).join(u).display()
        ));
    }
    out.push(format!(
        "remove the stopped containers {} and the pod {ORIGINAL_POD} (no data lives in them)",
        ORIGINAL_CONTAINERS.join(", ")
    ));
    out.push(format!(
        "write {} listing pod {}, containers and units as mirrorregistry/{}'s own (volumes and directories it did not create are never deleted)",
        state.join(record::RECORD_FILE).display(),
        naming::pod(&r.name),
        r.name
    ));
    if password {
        out.push(format!(
            "write {} (mode 0600): the original's init password",
            naming::root::init_password_file(&r.root).display()
        ));
    }
    out.push(format!("write the spec {}", spec_file.display()));
    out.push(format!(
        "install and start the controller unit ({} scope) unless it runs",
        paths.scope
    ));
    out.push(format!(
        "the controller writes {}, {} and {} under {} (SECRET_KEY, DATABASE_SECRET_KEY and the Redis password taken from quay-config/config.yaml)",
        "config/",
        "tls/",
        "secrets/",
        r.root.display()
    ));
    let units: Vec<String> = [naming::pod_unit(&r.name)]
        .into_iter()
        .chain(["redis", "app"].iter().map(|c| naming::unit(&r.name, c)))
        .collect();
    out.push(format!(
        "the controller writes, enables and starts {} in {unit_dir}: each container starts once more, with the same volumes",
        units.join(", ")
    ));
    out.push(storage_line("spec.storage", &r.storage));
    if let Some(d) = &r.database {
        out.push(storage_line("spec.database", d));
    }
    out.push(format!(
        "unchanged: {}/quay-config (config.yaml, ssl.cert, ssl.key), {}/quay-rootCA, the podman secret redis_pass; clients that trust the original's CA keep working",
        o.quay_root.display(),
        o.quay_root.display()
    ));
    out
}

pub async fn adopt(paths: &Paths, a: AdoptArgs) -> Result<i32> {
    let name = a.name.clone();
    let unit_dir = systemd::unit_dir(paths.scope)?;
    let original = discover(&unit_dir, a.quay_root.as_deref())?;
    if let Some(r) = paths.lookup(&name)? {
        let where_ = r
            .file()
            .map(|f| f.display().to_string())
            .unwrap_or_else(|| "its state".into());
        return Err(Error::Failed(format!(
            "mirrorregistry/{name} already exists ({where_}); adopt under another --name"
        )));
    }
    if record::load(&paths.state_dir, &name)?.is_some() {
        return Err(Error::Failed(format!(
            "{} exists: mirrorregistry/{name} has an ownership record already; adopt under another --name",
            paths.state_dir.join(&name).display()
        )));
    }
    let password_file = naming::root::init_password_file(&original.quay_root);
    let archive = a.image_archive.as_deref().map(absolute);
    let text = spec_text(
        &original,
        &name,
        &a.init_user,
        Some(password_file.clone()),
        archive.clone(),
    )?;
    let dest = paths.watch_dir.join(format!("{name}.yaml"));
    let loaded = crate::api::load::parse(&dest, text.as_bytes()).map_err(|inv| {
        Error::Failed(format!(
            "the original's install does not make a valid spec:\n{inv}"
        ))
    })?;
    let resolved = defaults::resolve(&loaded.resource, &loaded.name, paths.host());
    crate::render::render(&resolved, &paths.render_context())
        .map_err(|e| Error::Failed(format!("render: {e}")))?;
    let steps = plan(paths, &original, &resolved, &dest, true);

    if a.dry_run {
        outln!("# mrctl adopt --dry-run: nothing was changed.");
        outln!("# The spec it would write to {}:", dest.display());
        out!("{text}");
        outln!("# The changes, in order:");
        for s in &steps {
            outln!("#  - {s}");
        }
        return Ok(EXIT_OK);
    }

    // Everything that can refuse, before anything changes.
    let password = match read_password_given(a.init_password.as_deref(), &a.init_user)? {
        Some(p) => p,
        None => {
            return Err(Error::Usage(format!(
                "--initPassword is required: the original's init password (for {}) is kept so `mrctl credentials {name}` prints one that works; `--initPassword -` reads it from standard input",
                a.init_user
            )))
        }
    };
    if dest.symlink_metadata().is_ok() {
        return Err(Error::Failed(format!(
            "{} already exists; nothing was changed",
            dest.display()
        )));
    }
    let clashes = paths.clashes_with_others(&resolved)?;
    if !clashes.is_empty() {
        return Err(Error::Failed(format!(
            "mirrorregistry/{name} cannot adopt the original's registry:\n  {}\nnothing was changed",
            clashes.join("\n  ")
        )));
    }
    let podman = Podman::connect(&paths.podman_socket).await?;
    if archive.is_none() {
        let mut missing = Vec::new();
        for img in [
            &original.quay_image,
            &original.redis_image,
            &original.pause_image,
        ] {
            if !podman.image_exists(img).await? {
                missing.push(img.clone());
            }
        }
        if !missing.is_empty() {
            return Err(Error::Failed(format!(
                "podman lacks the original's images {}; give --imageArchive FILE holding them. Nothing was changed",
                missing.join(", ")
            )));
        }
    }
    for c in ORIGINAL_CONTAINERS {
        if let Some(info) = podman.container(c).await? {
            if info.labels.contains_key(naming::OWNER_LABEL) {
                return Err(Error::Failed(format!(
                    "container {c} carries {} already: it is not the original's. Nothing was changed",
                    naming::OWNER_LABEL
                )));
            }
        }
    }
    let systemd = Systemd::connect(paths.scope).await?;
    preflight_controller(paths, &systemd, &a.run).await?;

    for s in &steps {
        outln!("adopt: {s}");
    }
    let kept = paths.state_dir.join(&name).join(KEPT_UNITS_DIR);
    if let Err(e) = hand_over(&systemd, &podman, &unit_dir, &kept).await {
        let back = put_back(&systemd, &unit_dir, &kept).await;
        return Err(Error::Failed(format!(
            "the hand-over failed: {e}; {}",
            match back {
                Ok(()) => "the original's units were put back and started again".to_string(),
                Err(b) => format!(
                    "putting the original's units back failed too: {b}; they are kept in {}",
                    kept.display()
                ),
            }
        )));
    }
    let written = (|| -> Result<()> {
        let desired =
            crate::render::render(&resolved, &paths.render_context()).map_err(Error::Failed)?;
        let rec = record::Record {
            name: name.clone(),
            spec_file: dest.clone(),
            root: resolved.root.clone(),
            units: desired.all_units().map(|u| u.name.clone()).collect(),
            pod: desired.pod.clone(),
            containers: desired
                .components
                .iter()
                .map(|c| c.container.clone())
                .collect(),
            deletion_policy: DeletionPolicy::Retain,
            claims: Some(claims::of(&resolved)),
            ..record::Record::default()
        };
        record::save(&paths.state_dir, &rec)?;
        write_password(paths, &name, &resolved.root, &password_file, &password)?;
        place_spec(&paths.watch_dir, &dest, &text)?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(paths.state_dir.join(&name).join(record::RECORD_FILE));
        let back = put_back(&systemd, &unit_dir, &kept).await;
        return Err(Error::Failed(format!(
            "{e}; {}",
            match back {
                Ok(()) => "the original's units were put back and started again".to_string(),
                Err(b) => format!(
                    "putting the original's units back failed too: {b}; they are kept in {}",
                    kept.display()
                ),
            }
        )));
    }
    outln!("mirrorregistry/{name} created ({})", dest.display());
    ensure_controller_unit(paths, &systemd, &a.run).await?;
    let Some(r) = wait_until_ready(paths, &name, a.run.timeout).await? else {
        return Ok(EXIT_FAILED);
    };
    outln!(
        "mirrorregistry/{name} adopted: the original's data, certificate and init user kept; its unit files are in {}",
        kept.display()
    );
    print_ready_access(paths, &r, true)?;
    Ok(EXIT_OK)
}

/// Stops and disables the original's units, moves their files to `kept`,
/// and removes the stopped containers and pod its units leave behind.
async fn hand_over(systemd: &Systemd, podman: &Podman, unit_dir: &Path, kept: &Path) -> Result<()> {
    files::ensure_dir(kept, 0o700)?;
    for u in ORIGINAL_UNITS {
        let from = unit_dir.join(u);
        if let Some(bytes) = files::read_optional(&from)? {
            files::write_if_changed(&kept.join(u), &bytes, 0o644)?;
        }
    }
    for u in ORIGINAL_UNITS {
        systemd.stop(u).await?;
    }
    let names: Vec<String> = ORIGINAL_UNITS.iter().map(|u| u.to_string()).collect();
    systemd.disable(&names).await?;
    for u in ORIGINAL_UNITS {
        let from = unit_dir.join(u);
        std::fs::remove_file(&from)
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })
            .map_err(files::io("remove", &from))?;
    }
    systemd.reload().await?;
    for u in ORIGINAL_UNITS {
        // A unit that failed on its way down stays listed as failed.
        let _ = systemd.reset_failed(u).await;
    }
    for c in ORIGINAL_CONTAINERS {
        if let Some(info) = podman.container(c).await? {
            if !info.labels.contains_key(naming::OWNER_LABEL) {
                podman.remove_container(c).await?;
            }
        }
    }
    if let Some(p) = podman.pod(ORIGINAL_POD).await? {
        if !p.labels.contains_key(naming::OWNER_LABEL) {
            podman.remove_pod(ORIGINAL_POD).await?;
        }
    }
    Ok(())
}

/// Puts the original's unit files back and starts them, as it left them.
async fn put_back(systemd: &Systemd, unit_dir: &Path, kept: &Path) -> Result<()> {
    for u in ORIGINAL_UNITS {
        if let Some(bytes) = files::read_optional(&kept.join(u))? {
            files::write_if_changed(&unit_dir.join(u), &bytes, 0o644)?;
        }
    }
    systemd.reload().await?;
    let names: Vec<String> = ORIGINAL_UNITS.iter().map(|u| u.to_string()).collect();
    systemd.enable(&names).await?;
    for u in ORIGINAL_UNITS.iter().rev() {
        systemd.start(u).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shape of the original installer's units (its templates filled in).
    const POD: &str = "[Service]\nExecStart=/usr/bin/podman pod create \\\n    --name quay-pod \\\n    --infra-image registry.access.redhat.com/ubi8/pause:8.10-5 \\\n    --publish 9443:8443 \\\n    --pod-id-file %t/%n-pod-id \\\n    --replace\n";
    const APP: &str = "[Service]\nExecStart=/usr/bin/podman run \\\n    --name quay-app \\\n    -v /root/quay-install/quay-config:/quay-registry/conf/stack:Z \\\n    -v sqlite-storage:/sqlite:Z,U \\\n    -v /srv/blobs:/datastorage:Z \\\n    --image-volume=ignore \\\n    --pod=quay-pod \\\n    --conmon-pidfile %t/%n-pid \\\n    --cidfile %t/%n-cid \\\n    --cgroups=no-conmon \\\n    --log-driver=journald \\\n    --replace \\\n    -e WORKER_COUNT=1 \\\n    registry.redhat.io/quay/quay-rhel8:v3.12.10 registry\n    \nExecStop=-/usr/bin/podman stop\n";
    const REDIS: &str = "[Service]\nExecStart=/usr/bin/podman run \\\n    --name quay-redis \\\n    --pod=quay-pod \\\n    --conmon-pidfile %t/%n-pid \\\n    --secret=redis_pass,type=env,target=REDIS_PASSWORD \\\n    --replace \\\n    registry.redhat.io/rhel8/redis-6:1-190\n";

    fn layout(dir: &Path, root: &Path) {
        std::fs::write(dir.join("quay-pod.service"), POD).unwrap();
        std::fs::write(
            dir.join("quay-app.service"),
            APP.replace("/root/quay-install", &root.display().to_string()),
        )
        .unwrap();
        std::fs::write(dir.join("quay-redis.service"), REDIS).unwrap();
        std::fs::create_dir_all(root.join("quay-config")).unwrap();
        std::fs::write(
            root.join("quay-config/config.yaml"),
            "SECRET_KEY: a\nDATABASE_SECRET_KEY: b\nSERVER_HOSTNAME: reg.example.org:9443\n",
        )
        .unwrap();
    }

    #[test]
    fn reads_the_originals_layout() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("quay-install");
        layout(t.path(), &root);
        let o = discover(t.path(), None).unwrap();
        assert_eq!(
            o,
            Original {
                quay_root: root.clone(),
                hostname: "reg.example.org".into(),
                port: 9443,
                storage: "/srv/blobs".into(),
                sqlite: "sqlite-storage".into(),
                quay_image: "registry.redhat.io/quay/quay-rhel8:v3.12.10".into(),
                redis_image: "registry.redhat.io/rhel8/redis-6:1-190".into(),
                pause_image: "registry.access.redhat.com/ubi8/pause:8.10-5".into(),
            }
        );
        let text = spec_text(&o, "quay", "init", None, None).unwrap();
        let l = crate::api::load::parse(Path::new("/w/quay.yaml"), text.as_bytes()).unwrap();
        let s = &l.resource.spec;
        assert_eq!(s.port, 9443);
        assert_eq!(s.root.as_deref(), Some(root.as_path()));
        assert_eq!(
            s.database.as_ref().unwrap().volume.as_deref(),
            Some("sqlite-storage")
        );
        assert_eq!(
            s.storage.as_ref().unwrap().path.as_deref(),
            Some(Path::new("/srv/blobs"))
        );
        assert_eq!(
            s.tls.as_ref().unwrap().cert_file.as_deref(),
            Some(root.join("quay-config/ssl.cert").as_path())
        );
    }

    #[test]
    fn a_wrong_root_or_a_managed_unit_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("quay-install");
        layout(t.path(), &root);
        let e = discover(t.path(), Some(Path::new("/elsewhere"))).unwrap_err();
        assert!(e.to_string().contains("its quayRoot is"), "{e}");
        assert_eq!(e.exit_code(), 2);

        std::fs::write(
            t.path().join("quay-redis.service"),
            "# Written by mirror-registry-controller; edits are overwritten.\n",
        )
        .unwrap();
        let e = discover(t.path(), None).unwrap_err();
        assert!(e.to_string().contains("already managed"), "{e}");

        std::fs::remove_file(t.path().join("quay-pod.service")).unwrap();
        let e = discover(t.path(), None).unwrap_err();
        assert!(e.to_string().contains("quay-pod.service not found"), "{e}");
    }

    #[test]
    fn a_config_without_its_keys_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("quay-install");
        layout(t.path(), &root);
        std::fs::write(root.join("quay-config/config.yaml"), "SERVER_HOSTNAME: x\n").unwrap();
        let e = discover(t.path(), None).unwrap_err();
        assert!(e.to_string().contains("SECRET_KEY is missing"), "{e}");
    }
}
