//! The `MirrorRegistry` resource: spec and status types, their defaults,
//! validation and schema. Field names here are the user-facing contract.

pub mod conditions;
pub mod day2;
pub mod defaults;
pub mod load;
pub mod schema;
pub mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use conditions::{ConditionStatus, ConditionType, Reason};
pub use day2::{GarbageCollectionSpec, GcReport, StorageStatus};

pub const GROUP: &str = "mirrorregistry.io";
pub const VERSION: &str = "v1alpha1";
pub const API_VERSION: &str = "mirrorregistry.io/v1alpha1";
pub const KIND: &str = "MirrorRegistry";

/// A container image registry kept running on this host.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "MirrorRegistry")]
pub struct MirrorRegistry {
    /// Always `mirrorregistry.io/v1alpha1`.
    pub api_version: String,
    /// Always `MirrorRegistry`.
    pub kind: String,
    /// Name and labels of the registry.
    #[serde(default)]
    pub metadata: Metadata,
    /// The desired registry.
    #[serde(default)]
    pub spec: Spec,
    /// What the controller observed. Written by the controller only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

/// Identifies the registry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// DNS-1123 label (lower-case letters, digits and '-', at most 63 characters).
    /// Names the pod, containers and units. Default: the spec file's name without
    /// its extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free-form labels; not interpreted by the controller.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Free-form annotations; not interpreted by the controller.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Which registry software runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Red Hat Quay with Redis and SQLite in one pod: the original mirror
    /// registry's layout.
    #[default]
    Quay,
    /// The CNCF distribution registry (registry:2) with htpasswd auth.
    Distribution,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Quay => "quay",
            Engine::Distribution => "distribution",
        }
    }
}

/// What happens to data when the spec is removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep volumes, storage, certificates and credentials.
    #[default]
    Retain,
    /// Remove volumes and the root directory too.
    Delete,
}

/// The desired registry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    /// Registry software: `quay` (Quay + Redis + SQLite, the original's layout)
    /// or `distribution` (the CNCF registry).
    #[serde(default)]
    pub engine: Engine,
    /// Host name clients use; the server certificate's SAN and Quay's
    /// SERVER_HOSTNAME. Default: this host's fully qualified name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Published HTTPS port on the host.
    #[serde(default = "defaults::port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u32,
    /// Absolute directory for config, TLS material and secrets (the original's
    /// --quayRoot). Default: `/var/lib/mirror-registry/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// Where image blobs live (the original's --quayStorage). Default: the
    /// podman volume `<name>-storage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
    /// Where Quay's SQLite database lives (the original's --sqliteStorage); quay
    /// engine only. Default: the podman volume `<name>-sqlite-storage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<StorageSpec>,
    /// TLS for the HTTPS endpoint. Omitted: a CA and a server certificate are
    /// generated under `<root>/tls` and renewed automatically.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// The initial user (the original's --initUser/--initPassword).
    #[serde(default)]
    pub init_user: InitUserSpec,
    /// Container images the engine runs, and an archive to load them from when
    /// the host is air-gapped.
    #[serde(default)]
    pub images: ImagesSpec,
    /// true: stop the registry's units and keep everything as it is.
    #[serde(default)]
    pub paused: bool,
    /// On removal of the spec: `Retain` keeps volumes and data, `Delete`
    /// removes them too (the original's uninstall --autoApprove).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Scheduled garbage collection (distribution engine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub garbage_collection: Option<GarbageCollectionSpec>,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            engine: Engine::default(),
            hostname: None,
            port: defaults::port(),
            root: None,
            storage: None,
            database: None,
            tls: None,
            init_user: InitUserSpec::default(),
            images: ImagesSpec::default(),
            paused: false,
            deletion_policy: DeletionPolicy::default(),
            garbage_collection: None,
        }
    }
}

/// A podman named volume or an absolute host directory; exactly one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageSpec {
    /// Name of a podman volume, created (and labelled as owned) when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// Absolute host directory, created when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// spec.storage only: free space its filesystem must keep, a size (`5Gi`,
    /// `500Mi`) or a percentage of the filesystem (`10%`); below it
    /// StorageAvailable is False (LowSpace). Default: 10%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_free: Option<String>,
}

/// User-supplied certificate, or options for the generated one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsSpec {
    /// PEM server certificate (chain) file (the original's --sslCert). Goes with keyFile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM private key file (the original's --sslKey). Goes with certFile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Accept a certificate whose SANs do not name the hostname (the
    /// original's --sslCheckSkip).
    #[serde(default)]
    pub skip_hostname_check: bool,
    /// More DNS names or IP addresses for the generated certificate; only
    /// without certFile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_sans: Vec<String>,
}

/// The initial user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InitUserSpec {
    /// User name.
    #[serde(default = "defaults::init_username")]
    pub username: String,
    /// File holding the password (one line). Omitted: a password is generated
    /// and kept in `<root>/secrets/init-credentials` (mode 0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

impl Default for InitUserSpec {
    fn default() -> Self {
        InitUserSpec {
            username: defaults::init_username(),
            password_file: None,
        }
    }
}

/// Engine images and the offline archive.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImagesSpec {
    /// Image archive (podman save / docker save tar) loaded when an image is
    /// missing, for air-gapped hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<PathBuf>,
    /// distribution engine: the registry image. Default: `docker.io/library/registry:2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// quay engine: the Quay image. Default: `registry.redhat.io/quay/quay-rhel8:v3.12.14`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quay: Option<String>,
    /// quay engine: the Redis image. Default: `registry.redhat.io/rhel8/redis-6:1-1766406130`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
    /// Pod infra image. Default: quay engine `registry.access.redhat.com/ubi8/pause:8.10-5`
    /// (the original's); distribution engine podman's own (`localhost/podman-pause`,
    /// built offline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<String>,
}

/// Lifecycle phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    #[default]
    Pending,
    Progressing,
    Ready,
    Degraded,
    Failed,
    Paused,
    Terminating,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Progressing => "Progressing",
            Phase::Ready => "Ready",
            Phase::Degraded => "Degraded",
            Phase::Failed => "Failed",
            Phase::Paused => "Paused",
            Phase::Terminating => "Terminating",
        }
    }
}

/// What the controller observed; written by the controller only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Status {
    /// sha256 of the parsed, defaulted spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_spec_hash: Option<String>,
    #[serde(default)]
    pub phase: Phase,
    /// URL clients push to and pull from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// CA certificate clients trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// File (mode 0600) holding the initial user's name and password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
    /// Kubernetes-style conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The registry's containers and units as observed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<Component>,
    /// The storage holding the blobs: used and free bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageStatus>,
}

/// A Kubernetes-style condition.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// Ready, SpecValid, CertificateValid, ImagesPresent, UnitsActive, Healthy.
    #[serde(rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    /// One CamelCase word.
    #[serde(default)]
    pub reason: String,
    /// What a person needs to know, naming the file, field or unit at fault.
    #[serde(default)]
    pub message: String,
    /// RFC 3339 time of the last change of `status`.
    #[serde(default)]
    pub last_transition_time: String,
}

/// One container of the registry and the unit that runs it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Component {
    pub name: String,
    pub unit: String,
    /// systemd ActiveState of the unit.
    #[serde(default)]
    pub active_state: String,
    /// Container name, when one exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default)]
    pub healthy: bool,
}
