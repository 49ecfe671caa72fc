//! The controller's observability listener, `--metrics-address ADDR` (off
//! unless given; loopback unless `--metrics-auth-file` is given too):
//!
//! | Path | What |
//! |---|---|
//! | `/metrics` | the controller's metrics ([`metrics`]), OpenMetrics or Prometheus text |
//! | `/registries/NAME/metrics` | that distribution registry's own request metrics ([`upstream`]) |
//! | `/sd` | Prometheus HTTP service discovery of those registry targets |
//! | `/` | the status page ([`page`]) |
//! | `/registries/NAME` | its repositories and tags, read from its API ([`browse`]) |
//! | `/registries/NAME/repositories/REPO` | each tag's digest and size |
//! | `/healthz` | `ok` |
//!
//! Read-only: GET and HEAD only, nothing on the host is changed through it.

pub mod auth;
pub mod browse;
pub mod drift;
pub mod facts;
pub mod metrics;
pub mod page;
mod server;
pub mod upstream;

use std::net::SocketAddr;
use std::path::Path;

pub use server::serve;

/// The controller's `--metrics-address`, from the environment.
pub const ADDRESS_ENV: &str = "MIRROR_REGISTRY_METRICS_ADDRESS";
/// The controller's `--metrics-auth-file`, from the environment.
pub const AUTH_FILE_ENV: &str = "MIRROR_REGISTRY_METRICS_AUTH_FILE";

/// What `--metrics-address` and `--metrics-auth-file` ask for, checked.
#[derive(Clone, Debug)]
pub struct Listen {
    pub address: SocketAddr,
    pub auth: Option<auth::BasicAuth>,
}

/// Checks the flags before anything starts: a non-loopback address
/// without credentials is refused (the message says what to add).
pub fn listen(address: &str, auth_file: Option<&Path>) -> Result<Listen, String> {
    let addr = auth::parse_address(address)?;
    let auth = auth_file.map(auth::BasicAuth::from_file).transpose()?;
    if !auth::is_loopback(&addr) && auth.is_none() {
        return Err(format!(
            "--metrics-address {address} is not a loopback address: serving the metrics and status page beyond this host requires --metrics-auth-file FILE (mode 0600, 'username:' and 'password:' lines); or use 127.0.0.1:PORT"
        ));
    }
    Ok(Listen {
        address: addr,
        auth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_goes_without_credentials() {
        assert!(listen("127.0.0.1:9161", None).is_ok());
        assert!(listen("[::1]:9161", None).is_ok());
        let e = listen("0.0.0.0:9161", None).unwrap_err();
        assert!(e.contains("requires --metrics-auth-file"), "{e}");
        assert!(listen("192.0.2.7:9161", None).is_err());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("auth");
        std::fs::write(&f, "username: prom\npassword: pw\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(listen("0.0.0.0:9161", Some(&f)).unwrap().auth.is_some());
    }
}
