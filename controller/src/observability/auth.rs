//! Who may read the listener. On loopback, whoever is on this host (the
//! page and metrics hold no secret), with the Host header checked so a web
//! page elsewhere cannot read it through DNS rebinding. Anywhere else only
//! with HTTP Basic credentials from `--metrics-auth-file`: a file only its
//! owner (the controller's user) may read, holding `username:` and
//! `password:` like a registry's credentials file.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use base64::Engine as _;

use crate::host::credentials::{self, Credentials};

/// Credentials the listener asks for.
#[derive(Clone)]
pub struct BasicAuth {
    creds: Credentials,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("username", &self.creds.username)
            .finish_non_exhaustive()
    }
}

impl BasicAuth {
    /// Reads `file`, refusing one that group or others may read or write,
    /// or that is not a regular file owned by this process's user.
    pub fn from_file(file: &Path) -> Result<BasicAuth, String> {
        let meta = std::fs::symlink_metadata(file)
            .map_err(|e| format!("--metrics-auth-file {}: {e}", file.display()))?;
        if !meta.file_type().is_file() {
            return Err(format!(
                "--metrics-auth-file {}: not a regular file",
                file.display()
            ));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "--metrics-auth-file {}: mode {mode:04o} lets others read or change it; chmod 600 it",
                file.display()
            ));
        }
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(format!(
                "--metrics-auth-file {}: owned by uid {}, not by the controller's user (uid {me})",
                file.display(),
                meta.uid()
            ));
        }
        let creds =
            credentials::read_credentials(file).map_err(|e| format!("--metrics-auth-file: {e}"))?;
        if creds.username.is_empty() || creds.username.contains(':') {
            return Err(format!(
                "--metrics-auth-file {}: username must be non-empty, without ':'",
                file.display()
            ));
        }
        Ok(BasicAuth { creds })
    }

    /// Whether an `Authorization` header carries these credentials.
    pub fn allows(&self, header: Option<&str>) -> bool {
        let Some(encoded) = header.and_then(|h| {
            h.strip_prefix("Basic ")
                .or_else(|| h.strip_prefix("basic "))
        }) else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let want = format!("{}:{}", self.creds.username, self.creds.password);
        constant_time_eq(&decoded, want.as_bytes())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in b.iter().enumerate() {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ x);
    }
    diff == 0
}

pub fn is_loopback(addr: &SocketAddr) -> bool {
    match addr.ip() {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Whether a Host header names this host's loopback (or, `bound`, the
/// address the listener is bound to): what a browser or Prometheus on
/// this host sends, and what a rebinding page elsewhere cannot.
pub fn host_is_local(host: Option<&str>, bound: &SocketAddr) -> bool {
    let Some(host) = host else {
        // HTTP/1.0 without Host: a local client.
        return true;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host),
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match name.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback() || ip == bound.ip(),
        Err(_) => false,
    }
}

/// Parses `--metrics-address`: `IP:PORT`, `[IPv6]:PORT` or `localhost:PORT`.
pub fn parse_address(s: &str) -> Result<SocketAddr, String> {
    if let Some(port) = s.strip_prefix("localhost:") {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("--metrics-address {s}: bad port"))?;
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| {
        format!("--metrics-address {s}: expected IP:PORT, e.g. 127.0.0.1:9161 or [::1]:9161")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_hosts() {
        let bound = parse_address("localhost:9161").unwrap();
        assert_eq!(bound.to_string(), "127.0.0.1:9161");
        assert!(is_loopback(&bound));
        assert!(is_loopback(&parse_address("[::1]:1").unwrap()));
        assert!(!is_loopback(&parse_address("0.0.0.0:1").unwrap()));
        assert!(!is_loopback(&parse_address("192.0.2.1:1").unwrap()));
        assert!(parse_address("example.org:1").is_err());
        assert!(parse_address(":9161").is_err());
        assert!(host_is_local(Some("127.0.0.1:9161"), &bound));
        assert!(host_is_local(Some("localhost:9161"), &bound));
        assert!(host_is_local(Some("[::1]:9161"), &bound));
        assert!(!host_is_local(Some("attacker.example:9161"), &bound));
        assert!(!host_is_local(Some("127.0.0.1.nip.io:9161"), &bound));
    }

    #[test]
    fn the_auth_file_is_checked_and_compared() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("auth");
        std::fs::write(&f, "username: prom\npassword: s3cret\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = BasicAuth::from_file(&f).unwrap_err();
        assert!(e.contains("mode 0644"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let a = BasicAuth::from_file(&f).unwrap();
        assert!(!format!("{a:?}").contains("s3cret"));
        let header = |u: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(u)
            )
        };
        assert!(a.allows(Some(&header("prom:s3cret"))));
        assert!(!a.allows(Some(&header("prom:s3cre"))));
        assert!(!a.allows(Some(&header("prom:s3cretx"))));
        assert!(!a.allows(None));
        assert!(!a.allows(Some("Bearer x")));
    }
}
