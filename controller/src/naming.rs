//! Every name the controller derives from a registry's name, in one place, so
//! the default `quay` registry looks exactly like the original tool's:
//! pod `quay-pod`, containers `quay-app`, `quay-redis`, units `quay-pod.service`
//! and `quay-app.service`.

use std::path::PathBuf;

/// Label put on every container, volume, pod and network the controller
/// creates; its value is the owning registry's name.
pub const OWNER_LABEL: &str = "io.mirrorregistry.owner";
/// Label naming the software that manages the object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "mirror-registry";

pub fn pod(name: &str) -> String {
    format!("{name}-pod")
}

pub fn container(name: &str, component: &str) -> String {
    format!("{name}-{component}")
}

/// The podman network the pod joins: a bridge of its own, so its MTU is
/// not podman's default (see `render::NETWORK_MTU`).
pub fn network(name: &str) -> String {
    format!("{name}-network")
}

pub fn pod_unit(name: &str) -> String {
    format!("{}.service", pod(name))
}

pub fn unit(name: &str, component: &str) -> String {
    format!("{}.service", container(name, component))
}

/// Default named volume for image blobs.
pub fn storage_volume(name: &str) -> String {
    format!("{name}-storage")
}

/// Default named volume for Quay's SQLite database.
pub fn sqlite_volume(name: &str) -> String {
    format!("{name}-sqlite-storage")
}

/// Default root directory (config, TLS, secrets), like the original's --quayRoot.
pub fn default_root(name: &str) -> PathBuf {
    PathBuf::from("/var/lib/mirror-registry").join(name)
}

/// The labels that mark an object as owned by registry `name`.
pub fn owner_labels(name: &str) -> std::collections::BTreeMap<String, String> {
    [
        (OWNER_LABEL.to_string(), name.to_string()),
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
    ]
    .into_iter()
    .collect()
}

/// Whether labels mark an object as created for registry `name`.
pub fn owned_by(labels: &std::collections::BTreeMap<String, String>, name: &str) -> bool {
    labels.get(OWNER_LABEL).map(String::as_str) == Some(name)
}

/// Whether a unit file's text is one the controller wrote for `name`: it
/// carries the owner label on its podman command line.
pub fn unit_text_owned_by(text: &str, name: &str) -> bool {
    let label = format!("{OWNER_LABEL}={name}");
    text.match_indices(&label).any(|(i, _)| {
        text[i + label.len()..]
            .chars()
            .next()
            .is_none_or(|c| c.is_whitespace() || c == '"' || c == '\\')
    })
}

/// Layout under the root directory.
pub mod root {
    use std::path::{Path, PathBuf};
    pub fn config_dir(root: &Path) -> PathBuf {
        root.join("config")
    }
    pub fn tls_dir(root: &Path) -> PathBuf {
        root.join("tls")
    }
    pub fn secrets_dir(root: &Path) -> PathBuf {
        root.join("secrets")
    }
    pub fn credentials_file(root: &Path) -> PathBuf {
        secrets_dir(root).join("init-credentials")
    }
    pub fn htpasswd_file(root: &Path) -> PathBuf {
        secrets_dir(root).join("htpasswd")
    }
    /// The password `mrctl install --initPassword` was given, kept 0600.
    pub fn init_password_file(root: &Path) -> PathBuf {
        secrets_dir(root).join("init-password")
    }
    /// quay engine: the directory mounted at Quay's
    /// /quay-registry/conf/stack (config.yaml, ssl.cert, ssl.key).
    pub fn quay_config_dir(root: &Path) -> PathBuf {
        config_dir(root).join("quay")
    }
    /// quay engine: Redis's configuration, which holds its password.
    pub fn redis_conf(root: &Path) -> PathBuf {
        config_dir(root).join("redis.conf")
    }
    /// quay engine: the generated Redis password and Quay keys.
    pub fn quay_secrets_file(root: &Path) -> PathBuf {
        secrets_dir(root).join("quay-secrets.yaml")
    }
    /// quay engine: written once the initial user exists, so it is created
    /// through Quay's API only once.
    pub fn init_user_marker(root: &Path) -> PathBuf {
        secrets_dir(root).join("quay-init-user")
    }
    /// The config.yaml the original installer wrote under its --quayRoot,
    /// whose keys a new install under the same root takes over.
    pub fn original_quay_config(root: &Path) -> PathBuf {
        root.join("quay-config").join("config.yaml")
    }
}
