//! Thin adapters to the host: each does one thing and knows nothing of specs.

pub mod blob_store;
pub mod credentials;
pub mod files;
pub mod libpod;
pub mod lock;
pub mod podman;
pub mod secrets;
pub mod systemd;
pub mod tls;

/// The host's fully qualified name (`hostname --fqdn`), falling back to the
/// kernel's host name: the default `spec.hostname`.
pub fn fqdn() -> String {
    let out = std::process::Command::new("hostname")
        .arg("--fqdn")
        .output();
    if let Ok(o) = out {
        let s = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if o.status.success() && !s.is_empty() {
            return s;
        }
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
