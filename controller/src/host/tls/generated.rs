//! The generated CA and server certificate, kept in a directory and
//! renewed before they expire; the SANs a generated certificate gets.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::keys::{key_matches, signed_by};
use super::{
    date, generate_ca, generate_server, inspect, normalize_name, sans_list, CertInfo, Pem, Result,
    CA_CERT, CA_KEY, MAX_CN, RENEW_BEFORE, TLS_CERT, TLS_KEY,
};
use crate::host::files;

/// What `ensure_generated` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ensured {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_changed: bool,
    pub cert_changed: bool,
    /// Why something changed, e.g. "certificate renewed: expires 2027-01-02
    /// (within 30 days)"; `None` when nothing did.
    pub reason: Option<String>,
    /// Expiry of the server certificate now on disk.
    pub not_after: OffsetDateTime,
}

fn read_text(path: &Path) -> Result<Option<String>> {
    Ok(files::read_optional(path)?.map(|b| String::from_utf8_lossy(&b).into_owned()))
}

/// Why a certificate's validity period calls for a new one, e.g. "expires
/// 2027-01-02 (within 30 days)", or `None` while it has long enough to run.
fn expiry_problem(info: &CertInfo, now: OffsetDateTime) -> Option<String> {
    if info.not_before > now {
        Some(format!("not valid until {}", date(info.not_before)))
    } else if info.not_after <= now {
        Some(format!("expired on {}", date(info.not_after)))
    } else if info.not_after - RENEW_BEFORE <= now {
        Some(format!(
            "expires {} (within {} days)",
            date(info.not_after),
            RENEW_BEFORE.whole_days()
        ))
    } else {
        None
    }
}

/// Why the CA on disk cannot be kept, or `None` when it can.
fn ca_problem(ca: &Pem, now: OffsetDateTime) -> Option<String> {
    let info = match inspect(&ca.cert) {
        Ok(info) => info,
        Err(e) => return Some(format!("CA {e}")),
    };
    if !info.is_ca {
        return Some("CA certificate is not a CA".into());
    }
    match key_matches(&ca.cert, &ca.key) {
        Ok(true) => {}
        Ok(false) => return Some("CA key does not match its certificate".into()),
        Err(e) => return Some(format!("CA {e}")),
    }
    expiry_problem(&info, now).map(|why| format!("CA {why}"))
}

fn name_set<'a>(names: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    names.into_iter().map(|n| normalize_name(n)).collect()
}

/// Why the server certificate on disk cannot be kept, or `None` when it can.
fn server_problem(
    server: &Pem,
    ca_cert: &str,
    dns_names: &[String],
    ips: &[IpAddr],
    now: OffsetDateTime,
) -> Option<String> {
    let (cert, key) = (server.cert.as_str(), server.key.as_str());
    let info = match inspect(cert) {
        Ok(info) => info,
        Err(e) => return Some(e.to_string()),
    };
    match signed_by(cert, ca_cert) {
        Ok(true) => {}
        Ok(false) => return Some("not signed by the current CA".into()),
        Err(e) => return Some(e.to_string()),
    }
    match key_matches(cert, key) {
        Ok(true) => {}
        Ok(false) => return Some("key does not match the certificate".into()),
        Err(e) => return Some(e.to_string()),
    }
    let have_ips: BTreeSet<IpAddr> = info.ip_addrs.iter().copied().collect();
    let want_ips: BTreeSet<IpAddr> = ips.iter().copied().collect();
    if name_set(&info.dns_names) != name_set(dns_names) || have_ips != want_ips {
        let mut want: Vec<String> = dns_names.to_vec();
        want.extend(ips.iter().map(IpAddr::to_string));
        return Some(format!(
            "subject alternative names changed from [{}] to [{}]",
            sans_list(&info),
            want.join(", ")
        ));
    }
    expiry_problem(&info, now)
}

/// Keeps a generated CA and server certificate in `dir`, idempotently.
///
/// `dir` is kept 0700 with `ca.crt` (0644), `ca.key` (0600), `tls.crt` (0644)
/// and `tls.key` (0600). A new CA is generated only when the kept one is
/// missing, unreadable, does not match its key, or is within [`RENEW_BEFORE`]
/// of expiry. A new server certificate is issued when it is missing,
/// unreadable, not signed by the current CA, does not match its key, has
/// other SANs than wanted (compared as sets), or is within [`RENEW_BEFORE`]
/// of expiry. Files that are fine are never rewritten (only their mode is
/// repaired), so the caller restarts what uses them only when
/// `ca_changed`/`cert_changed` say so.
pub fn ensure_generated(
    dir: &Path,
    dns_names: &[String],
    ips: &[IpAddr],
    now: OffsetDateTime,
) -> Result<Ensured> {
    files::ensure_dir(dir, 0o700)?;
    let ca_file = dir.join(CA_CERT);
    let ca_key_file = dir.join(CA_KEY);
    let cert_file = dir.join(TLS_CERT);
    let key_file = dir.join(TLS_KEY);
    let mut reasons = Vec::new();

    let kept_ca = read_pair(&ca_file, &ca_key_file)?;
    let ca_why = match &kept_ca {
        None => Some("no CA yet".to_string()),
        Some(ca) => ca_problem(ca, now),
    };
    let (ca, ca_changed) = match (kept_ca, ca_why) {
        (Some(ca), None) => (ca, false),
        (_, why) => {
            let ca = generate_ca(&ca_common_name(dns_names, ips), now)?;
            // Key first: a crash between the two writes leaves a pair that
            // does not match, which the next run detects and replaces.
            files::atomic_write(&ca_key_file, ca.key.as_bytes(), 0o600)?;
            files::atomic_write(&ca_file, ca.cert.as_bytes(), 0o644)?;
            reasons.push(format!(
                "CA generated: {}",
                why.unwrap_or_else(|| "no CA yet".into())
            ));
            (ca, true)
        }
    };

    let kept = read_pair(&cert_file, &key_file)?;
    let why = match &kept {
        None => Some("no certificate yet".to_string()),
        Some(server) => server_problem(server, &ca.cert, dns_names, ips, now),
    };
    let (server, cert_changed) = match (kept, why) {
        (Some(server), None) => (server, false),
        (kept, why) => {
            let server = generate_server(&ca, dns_names, ips, now)?;
            files::atomic_write(&key_file, server.key.as_bytes(), 0o600)?;
            files::atomic_write(&cert_file, server.cert.as_bytes(), 0o644)?;
            let verb = if kept.is_some() { "renewed" } else { "issued" };
            reasons.push(format!(
                "certificate {verb}: {}",
                why.unwrap_or_else(|| "no certificate yet".into())
            ));
            (server, true)
        }
    };

    // Repair modes only; a mode change alone needs no restart.
    files::ensure_mode(&ca_file, 0o644)?;
    files::ensure_mode(&ca_key_file, 0o600)?;
    files::ensure_mode(&cert_file, 0o644)?;
    files::ensure_mode(&key_file, 0o600)?;

    let not_after = inspect(&server.cert)?.not_after;
    let reason = (!reasons.is_empty()).then(|| reasons.join("; "));
    Ok(Ensured {
        ca_file,
        cert_file,
        key_file,
        ca_changed,
        cert_changed,
        reason,
        not_after,
    })
}

/// Both files of a pair, or `None` when either is missing.
fn read_pair(cert: &Path, key: &Path) -> Result<Option<Pem>> {
    Ok(match (read_text(cert)?, read_text(key)?) {
        (Some(cert), Some(key)) => Some(Pem { cert, key }),
        _ => None,
    })
}

/// A CA name unique to this host and moment, so CAs from different hosts or
/// generations are never confused by clients that trust several of them.
pub(super) fn ca_common_name(dns_names: &[String], ips: &[IpAddr]) -> String {
    let mut id = [0u8; 4];
    rand::Rng::fill(&mut rand::rng(), &mut id[..]);
    let suffix = format!(" {}", hex::encode(id));
    let mut cn = String::from("mirror-registry CA");
    let host = dns_names
        .first()
        .cloned()
        .or_else(|| ips.first().map(IpAddr::to_string));
    if let Some(host) = host {
        // Host names are ASCII, so a byte cut is a character cut.
        let room = MAX_CN.saturating_sub(cn.len() + 1 + suffix.len());
        let _ = write!(cn, " {}", &host[..host.len().min(room)]);
    }
    cn.push_str(&suffix);
    cn
}

/// SANs a generated certificate gets for `hostname`: the hostname, its short
/// name (first label) when different, `localhost`, 127.0.0.1 and ::1, plus
/// `extra` (each an IP address or a DNS name). Names are lower-cased and
/// duplicates dropped, keeping the first occurrence's order.
pub fn default_sans(hostname: &str, extra: &[String]) -> (Vec<String>, Vec<IpAddr>) {
    let mut names: Vec<String> = Vec::new();
    let mut ips: Vec<IpAddr> = Vec::new();
    let mut add = |entry: &str| {
        let entry = entry.trim();
        if entry.is_empty() {
            return;
        }
        let bare = entry
            .strip_prefix('[')
            .and_then(|e| e.strip_suffix(']'))
            .unwrap_or(entry);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        } else {
            let name = normalize_name(entry);
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
    };
    add(hostname);
    if hostname.parse::<IpAddr>().is_err() {
        if let Some((short, _)) = hostname.split_once('.') {
            add(short);
        }
    }
    add("localhost");
    add("127.0.0.1");
    add("::1");
    for e in extra {
        add(e);
    }
    (names, ips)
}
