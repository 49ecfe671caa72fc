//! TLS material for the registry: a generated CA and server certificate kept
//! fresh on disk, and checks of a certificate/key pair the user supplies.
//!
//! Time is always a parameter (`now`) so renewal can be tested by moving it.
//!
//! Private keys are read in these PEM forms: PKCS#8 (`PRIVATE KEY`; ECDSA
//! P-256/P-384, RSA 2048–8192 bits, Ed25519), PKCS#1 (`RSA PRIVATE KEY`) and
//! SEC1 (`EC PRIVATE KEY`, P-256/P-384). Encrypted keys and P-521 are not
//! supported: the crypto backend (ring) cannot use them.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::files;

mod generated;
mod keys;
mod pinned;
mod user_pair;

#[cfg(test)]
use generated::ca_common_name;
pub use generated::{default_sans, ensure_generated, Ensured};
use keys::load_key_pair;
pub use keys::{key_matches, signed_by};
pub use pinned::pinned_client_config;
pub use user_pair::{check_user_pair, CheckedPair};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Files(#[from] files::Error),
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("private key: {0}")]
    Key(String),
    #[error("{what}: {source}")]
    Generate {
        what: String,
        #[source]
        source: rcgen::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// A certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pem")
            .field("cert", &self.cert)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub dns_names: Vec<String>,
    pub ip_addrs: Vec<IpAddr>,
    pub is_ca: bool,
}

/// Renew a generated certificate (or CA) this long before it expires.
pub const RENEW_BEFORE: Duration = Duration::days(30);
/// Lifetime of a generated CA.
pub const CA_VALIDITY: Duration = Duration::days(3650);
/// Lifetime of a generated server certificate; clients reject more than 398 days.
pub const SERVER_VALIDITY: Duration = Duration::days(365);
/// Certificates start this much before `now`, so a client whose clock is a
/// little behind the host's still accepts a freshly issued certificate.
const BACKDATE: Duration = Duration::hours(1);

const MAX_CN: usize = 64;

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const TLS_CERT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";

fn add(t: OffsetDateTime, d: Duration) -> Result<OffsetDateTime> {
    t.checked_add(d)
        .ok_or_else(|| Error::Certificate(format!("date {t} + {d} is out of range")))
}

/// `now` without its fraction of a second: X.509 times have whole seconds.
fn whole_seconds(now: OffsetDateTime) -> OffsetDateTime {
    now - Duration::nanoseconds(i64::from(now.nanosecond()))
}

fn gen_err(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> Error {
    let what = what.into();
    move |source| Error::Generate { what, source }
}

/// A new self-signed CA: ECDSA P-256, valid ten years, allowed to sign
/// end-entity certificates only (path length 0).
pub fn generate_ca(common_name: &str, now: OffsetDateTime) -> Result<Pem> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(gen_err("generate CA key"))?;
    let now = whole_seconds(now);
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - BACKDATE;
    params.not_after = add(now, CA_VALIDITY)?;
    let cert = params
        .self_signed(&key)
        .map_err(gen_err(format!("self-sign CA {common_name:?}")))?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A new server certificate signed by `ca`: ECDSA P-256, valid one year,
/// serverAuth, with the given names and addresses as SANs. The subject CN is
/// the first DNS name (the first address when there are no names).
pub fn generate_server(
    ca: &Pem,
    dns_names: &[String],
    ips: &[IpAddr],
    now: OffsetDateTime,
) -> Result<Pem> {
    if dns_names.is_empty() && ips.is_empty() {
        return Err(Error::Certificate(
            "a server certificate needs at least one DNS name or IP address".into(),
        ));
    }
    // RFC 5280 caps a CN at 64 characters; clients match on the SANs anyway.
    let cn = dns_names
        .iter()
        .find(|n| n.len() <= MAX_CN)
        .cloned()
        .or_else(|| ips.first().map(IpAddr::to_string))
        .unwrap_or_else(|| "mirror-registry".to_string());
    if !key_matches(&ca.cert, &ca.key)? {
        return Err(Error::Key(
            "the CA key does not match the CA certificate".into(),
        ));
    }
    let ca_key = load_key_pair(&ca.key)?;
    let issuer = Issuer::from_ca_cert_der(&first_cert_der(&ca.cert)?, ca_key)
        .map_err(gen_err("read CA certificate"))?;

    let mut params = CertificateParams::default();
    for name in dns_names {
        if !valid_dns_name(name) {
            return Err(Error::Certificate(format!(
                "{name:?} is not a valid DNS name for a certificate"
            )));
        }
        let ia5 = name
            .clone()
            .try_into()
            .map_err(gen_err(format!("DNS name {name:?}")))?;
        params.subject_alt_names.push(SanType::DnsName(ia5));
    }
    params
        .subject_alt_names
        .extend(ips.iter().copied().map(SanType::IpAddress));
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let now = whole_seconds(now);
    params.not_before = now - BACKDATE;
    params.not_after = add(now, SERVER_VALIDITY)?;

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(gen_err("generate server key"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(gen_err("sign server certificate"))?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A host name of ASCII letters, digits and hyphens (labels of 1–63, 253 in
/// all), optionally a leading `*.` wildcard label.
fn valid_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn first_cert_der(cert_pem: &str) -> Result<CertificateDer<'static>> {
    match CertificateDer::pem_slice_iter(cert_pem.as_bytes()).next() {
        Some(Ok(der)) => Ok(der),
        Some(Err(e)) => Err(Error::Certificate(format!("bad PEM: {e}"))),
        None => Err(Error::Certificate(
            "no PEM certificate (-----BEGIN CERTIFICATE-----) found".into(),
        )),
    }
}

fn parse_der<'a>(der: &'a [u8]) -> Result<X509Certificate<'a>> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| Error::Certificate(format!("not a valid X.509 certificate: {e}")))
}

/// Reads the first certificate of a PEM text.
pub fn inspect(cert_pem: &str) -> Result<CertInfo> {
    let der = first_cert_der(cert_pem)?;
    let cert = parse_der(&der)?;
    let mut dns_names = Vec::new();
    let mut ip_addrs = Vec::new();
    let san = cert
        .subject_alternative_name()
        .map_err(|e| Error::Certificate(format!("bad subjectAltName extension: {e}")))?;
    for name in san.iter().flat_map(|ext| ext.value.general_names.iter()) {
        match name {
            GeneralName::DNSName(n) => dns_names.push((*n).to_string()),
            GeneralName::IPAddress(bytes) => {
                if let Some(ip) = ip_from_bytes(bytes) {
                    ip_addrs.push(ip);
                }
            }
            _ => {}
        }
    }
    let is_ca = cert
        .basic_constraints()
        .map_err(|e| Error::Certificate(format!("bad basicConstraints extension: {e}")))?
        .is_some_and(|bc| bc.value.ca);
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        dns_names,
        ip_addrs,
        is_ca,
    })
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn normalize_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// True when the certificate is valid for `host`: an IP address matches an
/// IP SAN; a name matches a DNS SAN exactly or a wildcard SAN (`*.example.org`)
/// for exactly one more label, ignoring case. The subject CN is not used, as
/// current clients (Go, browsers) ignore it.
pub fn covers_host(info: &CertInfo, host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return info.ip_addrs.contains(&ip);
    }
    let host = normalize_name(host);
    if host.is_empty() {
        return false;
    }
    info.dns_names.iter().any(|san| {
        let san = normalize_name(san);
        if san == host {
            return true;
        }
        match (san.strip_prefix("*."), host.split_once('.')) {
            (Some(suffix), Some((label, rest))) => {
                !label.is_empty() && !suffix.is_empty() && rest == suffix
            }
            _ => false,
        }
    })
}

fn date(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    t.format(&fmt).unwrap_or_else(|_| t.to_string())
}

fn date_time(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let utc = t.to_offset(time::UtcOffset::UTC);
    match utc.format(&fmt) {
        Ok(s) => format!("{s} UTC"),
        Err(_) => t.to_string(),
    }
}

fn sans_list(info: &CertInfo) -> String {
    let all: Vec<String> = info
        .dns_names
        .iter()
        .cloned()
        .chain(info.ip_addrs.iter().map(IpAddr::to_string))
        .collect();
    all.join(", ")
}

#[cfg(test)]
mod tests;
