//! Private keys as PEM in the forms users have (PKCS#8, PKCS#1, SEC1),
//! turned into a key pair ring can use, and the checks a pair needs: the
//! key belongs to the certificate, the certificate is signed by the CA.

use rcgen::{KeyPair, PublicKeyData};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_parser::error::X509Error;

use super::{first_cert_der, parse_der, Error, Result};

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

pub(super) fn load_key_pair(key_pem: &str) -> Result<KeyPair> {
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
