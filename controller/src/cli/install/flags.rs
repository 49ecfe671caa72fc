//! The install and upgrade flags (the original's names), and the spec the
//! install flags describe.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::super::controller_metrics::MetricsArgs;
use super::super::controller_unit::ControllerArgs;
use super::super::{Error, Result};
use crate::api::defaults;
use crate::api::{
    DeletionPolicy, Engine, ImagesSpec, InitUserSpec, Metadata, MirrorRegistry, Spec as ApiSpec,
    StorageSpec, TlsSpec, API_VERSION, KIND,
};

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
    /// Images pinned by the bundle install runs from (`cli::bundle`), by
    /// spec key (`registry`, `quay`, `redis`, `pause`).
    #[arg(skip)]
    pub pinned_images: std::collections::BTreeMap<String, String>,
    #[command(flatten)]
    pub remote: crate::cli::remote::RemoteArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

/// What install and upgrade both take last: how long to wait, the
/// controller's unit and its metrics listener.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// How long to wait for the registry to become Ready.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub controller: ControllerArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

#[derive(Debug, clap::Args)]
#[command(mut_arg("timeout", |a| a.help("How long to wait for the registry to become Ready again")))]
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
    #[command(flatten)]
    pub remote: crate::cli::remote::RemoteArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `p` from the current directory, when relative.
pub(in crate::cli) fn absolute(p: &Path) -> PathBuf {
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
pub(crate) fn storage(s: &str) -> StorageSpec {
    if s.contains('/') {
        StorageSpec {
            volume: None,
            path: Some(absolute(Path::new(s))),
            min_free: None,
        }
    } else {
        StorageSpec {
            volume: Some(s.to_string()),
            path: None,
            min_free: None,
        }
    }
}

/// The install flag that sets a spec field, for messages.
pub(super) fn flag_for(field: &str) -> Option<&'static str> {
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
pub(super) fn spec_text(a: &InstallArgs, password_file: Option<PathBuf>) -> Result<String> {
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
                registry: a.pinned_images.get("registry").cloned(),
                quay: a.pinned_images.get("quay").cloned(),
                redis: a.pinned_images.get("redis").cloned(),
                pause: a.pinned_images.get("pause").cloned(),
            },
            paused: false,
            deletion_policy: DeletionPolicy::Retain,
            garbage_collection: None,
        },
        status: None,
    };
    let body = spec_yaml(&mr)?;
    Ok(format!(
        "# Written by mrctl install. Change it with `mrctl apply -f` or by editing it:\n# the controller converges the host to it.\n{body}"
    ))
}

/// A spec as YAML, leaving out what says nothing beyond the defaults, so
/// the file reads like one a person wrote.
pub(crate) fn spec_yaml(mr: &MirrorRegistry) -> Result<String> {
    let mut v = serde_yaml::to_value(mr)
        .map_err(|e| Error::Failed(format!("cannot write the spec: {e}")))?;
    if let Some(spec) = v.get_mut("spec").and_then(|s| s.as_mapping_mut()) {
        let is = |k: &str, v: serde_yaml::Value| spec.get(k) == Some(&v);
        let (unpaused, retained) = (
            is("paused", false.into()),
            is("deletionPolicy", "Retain".into()),
        );
        if unpaused {
            spec.remove("paused");
        }
        if retained {
            spec.remove("deletionPolicy");
        }
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
    serde_yaml::to_string(&v).map_err(|e| Error::Failed(format!("cannot write the spec: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::load;
    use clap::Parser;

    fn args(extra: &[&str]) -> InstallArgs {
        let mut v = vec!["mrctl", "install"];
        v.extend_from_slice(extra);
        match crate::cli::Cli::parse_from(v).command {
            crate::cli::Command::Install(a) => a,
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
