//! TLS material for the registry: a generated CA and server certificate kept
//! fresh on disk, and checks of a certificate/key pair the user supplies.
//!
//! Time is always a parameter (`now`) so renewal can be tested by moving it.
//!
//! Private keys are read in these PEM forms: PKCS#8 (`PRIVATE KEY`; ECDSA
//! P-256/P-384, RSA 2048–8192 bits, Ed25519), PKCS#1 (`RSA PRIVATE KEY`) and
//! SEC1 (`EC PRIVATE KEY`, P-256/P-384). Encrypted keys and P-521 are not
//! supported: the crypto backend (ring) cannot use them.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::extensions::GeneralName;

use super::files;

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

// DER pieces to wrap PKCS#1 and SEC1 keys in PKCS#8, the only form ring reads.
const OID_RSA_ENCRYPTION: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn pkcs8_wrap(algorithm: &[u8], inner_key: &[u8]) -> PrivatePkcs8KeyDer<'static> {
    let mut body = vec![0x02, 0x01, 0x00]; // version 0
    body.extend(der_tlv(0x30, algorithm));
    body.extend(der_tlv(0x04, inner_key));
    PrivatePkcs8KeyDer::from(der_tlv(0x30, &body))
}

fn pkcs8_key_pair(pkcs8: &PrivatePkcs8KeyDer<'_>) -> Option<KeyPair> {
    KeyPair::try_from(pkcs8).ok()
}

fn load_key_pair(key_pem: &str) -> Result<KeyPair> {
    if key_pem.contains("ENCRYPTED PRIVATE KEY") || key_pem.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(Error::Key(
            "the key is encrypted; an unencrypted key is needed".into(),
        ));
    }
    let der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| match e {
        pem::Error::NoItemsFound => Error::Key(
            "no PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY) found".into(),
        ),
        e => Error::Key(format!("bad PEM: {e}")),
    })?;
    let pair = match &der {
        PrivateKeyDer::Pkcs8(k) => pkcs8_key_pair(k),
        PrivateKeyDer::Pkcs1(k) => {
            pkcs8_key_pair(&pkcs8_wrap(OID_RSA_ENCRYPTION, k.secret_pkcs1_der()))
        }
        PrivateKeyDer::Sec1(k) => [OID_P256, OID_P384].iter().find_map(|curve| {
            let alg = [OID_EC_PUBLIC_KEY, curve].concat();
            pkcs8_key_pair(&pkcs8_wrap(&alg, k.secret_sec1_der()))
        }),
        _ => None,
    };
    pair.ok_or_else(|| {
        Error::Key(
            "unsupported or malformed key (supported: RSA 2048-8192 bits, \
             ECDSA P-256/P-384, Ed25519)"
                .into(),
        )
    })
}

/// True when the private key belongs to the (first) certificate: the public
/// key derived from the private key equals the certificate's.
pub fn key_matches(cert_pem: &str, key_pem: &str) -> Result<bool> {
    let der = first_cert_der(cert_pem)?;
    let cert = parse_der(&der)?;
    let key = load_key_pair(key_pem)?;
    // Compare the key bits, not the whole SubjectPublicKeyInfo: the
    // algorithm parameters may be encoded differently for the same key.
    Ok(cert.public_key().subject_public_key.data.as_ref() == key.der_bytes())
}

/// True when `ca_pem`'s key signed `cert_pem` and the names chain (the
/// certificate's issuer is the CA's subject).
pub fn signed_by(cert_pem: &str, ca_pem: &str) -> Result<bool> {
    let cert_der = first_cert_der(cert_pem)?;
    let cert = parse_der(&cert_der)?;
    let ca_der = first_cert_der(ca_pem)?;
    let ca = parse_der(&ca_der)?;
    if cert.issuer().as_raw() != ca.subject().as_raw() {
        return Ok(false);
    }
    match cert.verify_signature(Some(ca.public_key())) {
        Ok(()) => Ok(true),
        Err(X509Error::SignatureVerificationError) => Ok(false),
        Err(e) => Err(Error::Certificate(format!(
            "cannot verify the signature: {e}"
        ))),
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

/// Checks a certificate/key pair the user supplies. Returns the certificate's
/// details, or every problem found, each a sentence naming the file.
/// A user's pair that passed [`check_user_pair`]: the very bytes checked,
/// so what is copied is what was checked (a file swapped in between is not).
#[derive(Debug)]
pub struct CheckedPair {
    pub info: CertInfo,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

pub fn check_user_pair(
    cert_file: &Path,
    key_file: &Path,
    hostname: &str,
    skip_hostname_check: bool,
    now: OffsetDateTime,
) -> std::result::Result<CheckedPair, Vec<String>> {
    let mut problems = Vec::new();
    let cf = cert_file.display();
    let kf = key_file.display();

    let cert_bytes = std::fs::read(cert_file);
    let cert_pem = match &cert_bytes {
        Ok(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Err(e) => {
            problems.push(format!("Cannot read certificate file {cf}: {e}."));
            None
        }
    };
    let info = cert_pem.as_deref().and_then(|pem| match inspect(pem) {
        Ok(info) => Some(info),
        Err(e) => {
            problems.push(format!("Certificate file {cf} is unusable: {}.", cause(&e)));
            None
        }
    });

    let key_bytes = std::fs::read(key_file);
    let key_pem = match &key_bytes {
        Ok(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Err(e) => {
            problems.push(format!("Cannot read key file {kf}: {e}."));
            None
        }
    };
    let key_ok = key_pem
        .as_deref()
        .is_some_and(|pem| match load_key_pair(pem) {
            Ok(_) => true,
            Err(e) => {
                problems.push(format!("Key file {kf} is unusable: {}.", cause(&e)));
                false
            }
        });

    if let (Some(_), true, Some(cert), Some(key)) = (&info, key_ok, &cert_pem, &key_pem) {
        match key_matches(cert, key) {
            Ok(true) => {}
            Ok(false) => problems.push(format!(
                "Key file {kf} does not match certificate file {cf}: their public keys differ."
            )),
            Err(e) => problems.push(format!(
                "Cannot compare key file {kf} with certificate file {cf}: {}.",
                cause(&e)
            )),
        }
    }

    if let Some(info) = &info {
        if info.not_after <= now {
            problems.push(format!(
                "Certificate file {cf} expired on {}.",
                date_time(info.not_after)
            ));
        }
        if info.not_before > now {
            problems.push(format!(
                "Certificate file {cf} is not valid until {}.",
                date_time(info.not_before)
            ));
        }
        if !skip_hostname_check && !covers_host(info, hostname) {
            let sans = sans_list(info);
            let listed = if sans.is_empty() {
                "it has no subject alternative names".to_string()
            } else {
                format!("its subject alternative names are: {sans}")
            };
            problems.push(format!(
                "Certificate file {cf} is not valid for hostname {hostname}; {listed}."
            ));
        }
    }

    match (info, cert_bytes, key_bytes) {
        (Some(info), Ok(cert), Ok(key)) if problems.is_empty() => {
            Ok(CheckedPair { info, cert, key })
        }
        _ => Err(problems),
    }
}

/// The message of an error without the "certificate: "/"private key: " prefix
/// that a sentence naming the file already says.
fn cause(e: &Error) -> String {
    match e {
        Error::Certificate(m) | Error::Key(m) => m.trim_end_matches('.').to_string(),
        e => e.to_string(),
    }
}

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
fn ca_common_name(dns_names: &[String], ips: &[IpAddr]) -> String {
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

/// Accepts exactly one server certificate, whoever issued it.
#[derive(Debug)]
struct PinnedLeaf {
    leaf: CertificateDer<'static>,
    provider: std::sync::Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedLeaf {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.leaf.as_ref() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server presents a certificate other than the pinned one".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS client configuration (TLS 1.2 and later) that accepts exactly the
/// server certificate `leaf` (DER), whoever issued it: a pin, for a user's
/// pair whose CA the host may not trust or whose file holds the leaf alone
/// (its chain, dates and names are checked when the pair is accepted). The
/// handshake is still verified against that certificate's key, so only the
/// holder of the key passes, and nothing is sent to anyone else.
pub fn pinned_client_config(leaf: CertificateDer<'static>) -> Result<rustls::ClientConfig> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier = std::sync::Arc::new(PinnedLeaf {
        leaf,
        provider: provider.clone(),
    });
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Certificate(format!("TLS client set-up: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests;
