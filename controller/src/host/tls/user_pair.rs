//! A certificate and key the user supplies (`spec.tls.certFile` and
//! `keyFile`): every problem with them, each a sentence naming the file, or
//! the very bytes checked.

use std::path::Path;

use time::OffsetDateTime;

use super::keys::{key_matches, load_key_pair};
use super::{covers_host, date_time, inspect, sans_list, CertInfo, Error};

/// A user's pair that passed [`check_user_pair`]: the very bytes checked,
/// so what is copied is what was checked (a file swapped in between is not).
#[derive(Debug)]
pub struct CheckedPair {
    pub info: CertInfo,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

/// Checks a certificate/key pair the user supplies. Returns the certificate's
/// details, or every problem found, each a sentence naming the file.
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
