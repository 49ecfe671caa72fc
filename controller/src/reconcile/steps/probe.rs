//! The registry's HTTPS endpoint, reached through the published port and
//! verified for its hostname: against the generated CA, or pinned to the
//! user's served certificate.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use super::super::quay;
use crate::api::defaults::{Resolved, Tls};
use crate::api::Engine;
use crate::host::tls;
use crate::naming;

pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A client for the registry's HTTPS endpoint through the published port,
/// verifying the certificate for the registry's hostname against its CA.
pub fn https_client(
    r: &Resolved,
    ca_file: Option<&Path>,
    timeout: Duration,
) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .min_tls_version(reqwest::tls::Version::TLS_1_2)
        .resolve(&r.hostname, SocketAddr::from((Ipv4Addr::LOCALHOST, r.port)));
    match (ca_file, &r.tls) {
        (Some(ca), _) => {
            let pem = std::fs::read(ca).map_err(|e| format!("read {}: {e}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            b = b.tls_built_in_root_certs(false).add_root_certificate(cert);
        }
        (None, Tls::Provided { .. }) => {
            // The user's CA may be one the host does not trust and the file
            // may hold the leaf alone: pin the served certificate to the
            // first one in certFile instead (its chain, dates and names were
            // checked when the pair was accepted). The pin holds during the
            // handshake, so nothing (a password) is sent before it.
            // The copy that is served (checked when it was made), not the
            // user's file, which may have changed since.
            let cert_file = &naming::root::tls_dir(&r.root).join("tls.crt");
            let pem = std::fs::read(cert_file)
                .map_err(|e| format!("read {}: {e}", cert_file.display()))?;
            let leaf = rustls_pemfile::certs(&mut pem.as_slice())
                .next()
                .and_then(|c| c.ok())
                .ok_or_else(|| format!("{}: no certificate", cert_file.display()))?;
            let config = tls::pinned_client_config(leaf)
                .map_err(|e| format!("{}: {e}", cert_file.display()))?;
            b = b.use_preconfigured_tls(config);
        }
        _ => {}
    }
    b.build().map_err(|e| e.to_string())
}

/// HTTPS GET of the health path, verified as [`https_client`] does.
pub async fn probe(r: &Resolved, path: &str, ca_file: Option<&Path>) -> Result<String, String> {
    let client = https_client(r, ca_file, PROBE_TIMEOUT)?;
    probe_with(&client, r, path).await
}

/// [`probe`] through a client made once by [`https_client`], for probes
/// in quick succession.
pub async fn probe_with(
    client: &reqwest::Client,
    r: &Resolved,
    path: &str,
) -> Result<String, String> {
    let url = format!("{}{path}", r.endpoint());
    let resp = client.get(&url).send().await.map_err(|e| {
        let mut msg = format!("GET {url}: {e}");
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        msg
    })?;
    let code = resp.status().as_u16();
    if r.engine == Engine::Quay {
        let body = resp.text().await.unwrap_or_default();
        return quay::judge_health(&url, code, &body);
    }
    if code == 200 || code == 401 {
        Ok(format!("GET {url} answered {code} over verified TLS"))
    } else {
        Err(format!("GET {url} answered {code}"))
    }
}
