//! Where things live, per scope: the one place both binaries take their
//! default directories from.

use std::path::PathBuf;

pub use crate::host::systemd::Scope;

/// The target units are enabled into, so they start on boot.
pub fn wanted_by(scope: Scope) -> &'static str {
    match scope {
        Scope::System => "multi-user.target",
        Scope::User => "default.target",
    }
}

pub const DEFAULT_WATCH_DIR: &str = "/etc/mirror-registry";
/// The scope both binaries use unless told otherwise.
pub const DEFAULT_SCOPE: &str = "system";
/// The systemd unit `mrctl install` runs the controller as.
pub const CONTROLLER_UNIT: &str = "mirror-registry-controller";

/// Environment variables both binaries read their shared flags from, and
/// that `mrctl install` sets in the controller's unit.
pub mod env {
    pub const WATCH_DIR: &str = "MIRROR_REGISTRY_WATCH_DIR";
    pub const STATE_DIR: &str = "MIRROR_REGISTRY_STATE_DIR";
    pub const SCOPE: &str = "MIRROR_REGISTRY_SCOPE";
    pub const PODMAN_SOCKET: &str = "MIRROR_REGISTRY_PODMAN_SOCKET";
}

/// The podman binary units run: the first in PATH, as systemd wants an
/// absolute path.
pub fn podman_binary() -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("podman"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/podman"))
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

/// Default state directory: what the controller owns (status copies,
/// ownership records).
pub fn default_state_dir(scope: Scope) -> PathBuf {
    match scope {
        Scope::System => PathBuf::from("/var/lib/mirror-registry-controller"),
        Scope::User => std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home().join(".local/state"))
            .join("mirror-registry-controller"),
    }
}

/// Where podman and skopeo look for a registry's CA: root's podman reads
/// /etc/containers/certs.d whatever the systemd scope; a rootless one its
/// own config directory.
pub fn certs_d() -> PathBuf {
    // SAFETY-free check of the effective uid through /proc (no libc crate).
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if root {
        PathBuf::from("/etc/containers/certs.d")
    } else {
        std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home().join(".config"))
            .join("containers/certs.d")
    }
}
