//! Defaults, applied in one place: `resolve` turns a spec as written into the
//! fully defaulted form every later step (render, reconcile, hash) uses.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::day2::MinFree;
use super::{DeletionPolicy, Engine, MirrorRegistry, StorageSpec};
use crate::naming;

pub const PORT: u32 = 8443;
pub const INIT_USERNAME: &str = "init";
pub const DISTRIBUTION_IMAGE: &str = "docker.io/library/registry:2";
// The quay engine's images: those the original installer (mirror-registry
// 2.0) ships and runs, by name, so its image archive loads them offline.
pub const QUAY_IMAGE: &str = "registry.redhat.io/quay/quay-rhel8:v3.12.14";
pub const REDIS_IMAGE: &str = "registry.redhat.io/rhel8/redis-6:1-1766406130";
pub const QUAY_PAUSE_IMAGE: &str = "registry.access.redhat.com/ubi8/pause:8.10-5";

pub fn port() -> u32 {
    PORT
}

pub fn init_username() -> String {
    INIT_USERNAME.to_string()
}

/// Facts about the host that defaults depend on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    pub fqdn: String,
}

/// Where data lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Storage {
    Volume(String),
    Path(PathBuf),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Tls {
    /// A CA and server certificate the controller generates and renews.
    Generated { extra_sans: Vec<String> },
    /// The user's own pair.
    Provided {
        cert_file: PathBuf,
        key_file: PathBuf,
        skip_hostname_check: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Images {
    pub archive: Option<PathBuf>,
    /// Engine images by component name (`registry`; or `app`, `redis`).
    pub registry: Option<String>,
    pub quay: Option<String>,
    pub redis: Option<String>,
    pub pause: Option<String>,
}

/// A spec with every default applied. Only ever built by [`resolve`] from a
/// validated spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resolved {
    pub name: String,
    pub engine: Engine,
    pub hostname: String,
    pub port: u16,
    pub root: PathBuf,
    pub storage: Storage,
    pub database: Option<Storage>,
    pub tls: Tls,
    pub init_username: String,
    pub init_password_file: Option<PathBuf>,
    pub images: Images,
    pub paused: bool,
    pub deletion_policy: DeletionPolicy,
    /// Left out of the hash while it is the default, so specs written
    /// before it existed keep their observedSpecHash.
    #[serde(skip_serializing_if = "MinFree::is_default")]
    pub min_free: MinFree,
    /// systemd calendar expression of `<name>-gc.timer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gc_schedule: Option<String>,
}

impl Resolved {
    /// `sha256:<hex>` of the defaulted spec: comments and formatting of the
    /// file do not change it, and neither does spelling out a default.
    /// An error (a path that is not UTF-8) is never a hash: a reconcile
    /// that cannot say which spec it observed does nothing.
    pub fn hash(&self) -> Result<String, String> {
        let json = serde_json::to_vec(self).map_err(|e| format!("cannot hash the spec: {e}"))?;
        Ok(format!("sha256:{}", hex::encode(Sha256::digest(json))))
    }

    /// `host:port` as clients write it.
    pub fn host_port(&self) -> String {
        format!("{}:{}", self.hostname, self.port)
    }

    pub fn endpoint(&self) -> String {
        format!("https://{}", self.host_port())
    }
}

/// A path as every later step uses it: without `.` components, duplicate or
/// trailing slashes (validation has refused `..`).
fn normal(p: &Path) -> PathBuf {
    super::validate::normalize(p).unwrap_or_else(|| p.to_path_buf())
}

fn storage(s: &Option<StorageSpec>, default_volume: String) -> Storage {
    match s {
        Some(StorageSpec {
            path: Some(p),
            volume: None,
            ..
        }) => Storage::Path(normal(p)),
        Some(StorageSpec {
            volume: Some(v), ..
        }) => Storage::Volume(v.clone()),
        _ => Storage::Volume(default_volume),
    }
}

/// Applies every default. `name` is the registry's name (metadata.name or the
/// file stem); call it on a spec that passed validation.
pub fn resolve(mr: &MirrorRegistry, name: &str, host: &HostFacts) -> Resolved {
    let spec = &mr.spec;
    let tls = match &spec.tls {
        Some(t) => match (&t.cert_file, &t.key_file) {
            (Some(c), Some(k)) => Tls::Provided {
                cert_file: normal(c),
                key_file: normal(k),
                skip_hostname_check: t.skip_hostname_check,
            },
            _ => Tls::Generated {
                extra_sans: t.extra_sans.clone(),
            },
        },
        None => Tls::Generated { extra_sans: vec![] },
    };
    let quay = spec.engine == Engine::Quay;
    Resolved {
        name: name.to_string(),
        engine: spec.engine,
        hostname: spec
            .hostname
            .clone()
            .unwrap_or_else(|| host.fqdn.clone())
            .to_ascii_lowercase(),
        port: u16::try_from(spec.port).unwrap_or(PORT as u16),
        root: spec
            .root
            .as_deref()
            .map(normal)
            .unwrap_or_else(|| naming::default_root(name)),
        storage: storage(&spec.storage, naming::storage_volume(name)),
        database: quay.then(|| storage(&spec.database, naming::sqlite_volume(name))),
        tls,
        init_username: spec.init_user.username.clone(),
        init_password_file: spec.init_user.password_file.as_deref().map(normal),
        images: Images {
            archive: spec.images.archive.as_deref().map(normal),
            registry: (!quay).then(|| {
                spec.images
                    .registry
                    .clone()
                    .unwrap_or_else(|| DISTRIBUTION_IMAGE.to_string())
            }),
            quay: quay.then(|| {
                spec.images
                    .quay
                    .clone()
                    .unwrap_or_else(|| QUAY_IMAGE.to_string())
            }),
            redis: quay.then(|| {
                spec.images
                    .redis
                    .clone()
                    .unwrap_or_else(|| REDIS_IMAGE.to_string())
            }),
            // The distribution engine keeps podman's own infra image.
            pause: spec
                .images
                .pause
                .clone()
                .or_else(|| quay.then(|| QUAY_PAUSE_IMAGE.to_string())),
        },
        paused: spec.paused,
        deletion_policy: spec.deletion_policy,
        // Validation refused what does not parse.
        min_free: spec
            .storage
            .as_ref()
            .and_then(|s| s.min_free.as_deref())
            .and_then(|m| MinFree::parse(m).ok())
            .unwrap_or_default(),
        gc_schedule: spec
            .garbage_collection
            .as_ref()
            .and_then(|g| g.schedule.clone()),
    }
}
