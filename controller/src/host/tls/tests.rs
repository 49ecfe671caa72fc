use super::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::pki_types::ServerName;

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn local_sans() -> (Vec<String>, Vec<IpAddr>) {
    default_sans("mirror.example.org", &[])
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// (bytes, mtime, inode) of each file, to prove a call rewrote nothing.
fn snapshot(paths: &[&Path]) -> Vec<(Vec<u8>, SystemTime, u64)> {
    paths
        .iter()
        .map(|p| {
            let m = fs::metadata(p).unwrap();
            (fs::read(p).unwrap(), m.modified().unwrap(), m.ino())
        })
        .collect()
}

/// A full TLS handshake in memory between a rustls client that trusts only
/// `ca_pem` and a rustls server presenting `server`.
fn handshake(ca_pem: &str, server: &Pem, name: &str) -> std::result::Result<(), rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let client_config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    handshake_with(client_config, server, name)
}

/// The same, with the client's own configuration.
fn handshake_with(
    client_config: rustls::ClientConfig,
    server: &Pem,
    name: &str,
) -> std::result::Result<(), rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = vec![CertificateDer::from_pem_slice(server.cert.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(server.key.as_bytes()).unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let server_name = ServerName::try_from(name.to_string()).unwrap();
    let mut client = rustls::ClientConnection::new(Arc::new(client_config), server_name).unwrap();
    let mut srv = rustls::ServerConnection::new(Arc::new(server_config)).unwrap();
    for _ in 0..20 {
        let mut buf = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            srv.read_tls(&mut buf.as_slice()).unwrap();
            srv.process_new_packets()?;
        }
        let mut buf = Vec::new();
        while srv.wants_write() {
            srv.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets()?;
        }
        if !client.is_handshaking() && !srv.is_handshaking() {
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn generated_ca_is_a_ten_year_p256_ca() {
    let t = now();
    let ca = generate_ca("Test CA", t).unwrap();
    let info = inspect(&ca.cert).unwrap();
    assert!(info.is_ca);
    assert_eq!(info.subject, "CN=Test CA");
    assert!(info.not_before <= t);
    let t0 = t.replace_nanosecond(0).unwrap();
    assert_eq!(info.not_after, t0 + Duration::days(3650));
    assert_eq!(info.not_before, t0 - Duration::hours(1));
    assert!(ca.key.contains("BEGIN PRIVATE KEY"));
    assert!(key_matches(&ca.cert, &ca.key).unwrap());
    assert!(signed_by(&ca.cert, &ca.cert).unwrap(), "self-signed");
    let der = first_cert_der(&ca.cert).unwrap();
    let cert = parse_der(&der).unwrap();
    assert_eq!(
        cert.signature_algorithm.algorithm,
        x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA256
    );
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    let bc = cert.basic_constraints().unwrap().unwrap().value;
    assert_eq!(bc.path_len_constraint, Some(0));
}

#[test]
fn generated_server_cert_has_sans_eku_and_validity() {
    let t = now();
    let ca = generate_ca("Test CA", t).unwrap();
    let (dns, ips) = local_sans();
    let server = generate_server(&ca, &dns, &ips, t).unwrap();
    let info = inspect(&server.cert).unwrap();
    assert!(!info.is_ca);
    assert_eq!(info.subject, "CN=mirror.example.org");
    assert_eq!(info.dns_names, dns);
    assert_eq!(info.ip_addrs, ips);
    assert!(info.not_before <= t);
    let lifetime = info.not_after - info.not_before;
    assert!(lifetime <= Duration::days(398), "{lifetime}");
    assert_eq!(
        info.not_after,
        t.replace_nanosecond(0).unwrap() + Duration::days(365)
    );
    assert!(signed_by(&server.cert, &ca.cert).unwrap());
    assert!(key_matches(&server.cert, &server.key).unwrap());
    assert!(!key_matches(&server.cert, &ca.key).unwrap());
    let der = first_cert_der(&server.cert).unwrap();
    let cert = parse_der(&der).unwrap();
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth);
}

#[test]
fn server_cert_needs_a_name_and_a_matching_ca_key() {
    let t = now();
    let ca = generate_ca("Test CA", t).unwrap();
    assert!(generate_server(&ca, &[], &[], t).is_err());
    let only_ip = generate_server(&ca, &[], &["10.0.0.1".parse().unwrap()], t).unwrap();
    assert_eq!(inspect(&only_ip.cert).unwrap().subject, "CN=10.0.0.1");
    let other = generate_ca("Other CA", t).unwrap();
    let mixed = Pem {
        cert: ca.cert.clone(),
        key: other.key,
    };
    let err = generate_server(&mixed, &names(&["a.example"]), &[], t).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    for bad in [
        "bad name",
        "-a.example",
        "a..example",
        "a.example/x",
        "é.example",
        "",
    ] {
        let err = generate_server(&ca, &names(&[bad]), &[], t).unwrap_err();
        assert!(
            err.to_string().contains("not a valid DNS name"),
            "{bad}: {err}"
        );
    }
    let wild = generate_server(&ca, &names(&["*.apps.example.org", "x_y"]), &[], t);
    assert!(wild.is_err(), "underscore is not a host name character");
    generate_server(&ca, &names(&["*.apps.example.org", "a-b.example"]), &[], t).unwrap();
    // A name too long for a CN still goes into the SANs.
    let long = format!("{}.example.org", "a".repeat(60));
    let s = generate_server(&ca, &names(&[&long, "short.example"]), &[], t).unwrap();
    let info = inspect(&s.cert).unwrap();
    assert_eq!(info.subject, "CN=short.example");
    assert_eq!(info.dns_names[0], long);
}

#[test]
fn server_cert_verifies_against_the_ca_in_a_real_tls_handshake() {
    let t = now();
    let ca = generate_ca("Test CA", t).unwrap();
    let (dns, ips) = local_sans();
    let server = generate_server(&ca, &dns, &ips, t).unwrap();
    for name in [
        "localhost",
        "mirror.example.org",
        "mirror",
        "127.0.0.1",
        "::1",
    ] {
        handshake(&ca.cert, &server, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let err = handshake(&ca.cert, &server, "other.example.org").unwrap_err();
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
                | rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForNameContext { .. }
                )
        ),
        "{err:?}"
    );
    // A client trusting another CA refuses the certificate.
    let other = generate_ca("Other CA", t).unwrap();
    let err = handshake(&other.cert, &server, "localhost").unwrap_err();
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        ),
        "{err:?}"
    );
}

#[test]
fn openssl_verifies_the_chain_for_tls_server_use() {
    let dir = tempfile::tempdir().unwrap();
    let t = now();
    let (dns, ips) = local_sans();
    let ensured = ensure_generated(dir.path(), &dns, &ips, t).unwrap();
    let out = Command::new("openssl")
        .args([
            "verify",
            "-purpose",
            "sslserver",
            "-verify_hostname",
            "localhost",
        ])
        .arg("-CAfile")
        .arg(&ensured.ca_file)
        .arg(&ensured.cert_file)
        .output()
        .expect("openssl is needed for this test");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn inspect_reads_the_first_cert_of_a_chain_and_rejects_garbage() {
    let t = now();
    let ca = generate_ca("Test CA", t).unwrap();
    let server = generate_server(&ca, &names(&["a.example"]), &[], t).unwrap();
    let chain = format!("{}{}", server.cert, ca.cert);
    assert_eq!(inspect(&chain).unwrap().subject, "CN=a.example");
    assert!(inspect("hello").is_err());
    assert!(inspect("").is_err());
    let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let err = inspect(broken).unwrap_err().to_string();
    assert!(err.contains("X.509"), "{err}");
    assert!(key_matches(&server.cert, "not a key").is_err());
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is needed for this test");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn key_matches_reads_pkcs8_pkcs1_and_sec1_keys_from_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let read = |f: &str| fs::read_to_string(d.join(f)).unwrap();
    // RSA in PKCS#1 ("RSA PRIVATE KEY") and PKCS#8, with a self-signed cert.
    openssl(&["genrsa", "-traditional", "-out", "rsa1.key", "2048"], d);
    openssl(
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", "rsa1.key", "-out", "rsa8.key",
        ],
        d,
    );
    openssl(
        &[
            "req", "-x509", "-new", "-key", "rsa1.key", "-subj", "/CN=rsa", "-days", "2", "-out",
            "rsa.crt",
        ],
        d,
    );
    // EC P-256 in SEC1 ("EC PRIVATE KEY", with curve parameters) and P-384.
    openssl(
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ec1.key",
        ],
        d,
    );
    openssl(
        &[
            "ecparam",
            "-name",
            "secp384r1",
            "-genkey",
            "-out",
            "ec384.key",
        ],
        d,
    );
    openssl(
        &[
            "req", "-x509", "-new", "-key", "ec1.key", "-subj", "/CN=ec", "-days", "2", "-out",
            "ec.crt",
        ],
        d,
    );
    openssl(
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ec384.key",
            "-subj",
            "/CN=ec384",
            "-days",
            "2",
            "-out",
            "ec384.crt",
        ],
        d,
    );
    assert!(read("rsa1.key").contains("BEGIN RSA PRIVATE KEY"));
    assert!(read("ec1.key").contains("BEGIN EC PRIVATE KEY"));
    assert!(
        read("ec384.key").contains("BEGIN EC PARAMETERS"),
        "params block first"
    );

    assert!(key_matches(&read("rsa.crt"), &read("rsa1.key")).unwrap());
    assert!(key_matches(&read("rsa.crt"), &read("rsa8.key")).unwrap());
    assert!(key_matches(&read("ec.crt"), &read("ec1.key")).unwrap());
    assert!(key_matches(&read("ec384.crt"), &read("ec384.key")).unwrap());
    assert!(!key_matches(&read("rsa.crt"), &read("ec1.key")).unwrap());
    assert!(!key_matches(&read("ec.crt"), &read("rsa1.key")).unwrap());
    assert!(!key_matches(&read("ec.crt"), &read("ec384.key")).unwrap());

    // An encrypted key is refused with a reason.
    openssl(
        &[
            "pkcs8", "-topk8", "-in", "ec1.key", "-passout", "pass:x", "-out", "enc.key",
        ],
        d,
    );
    let err = key_matches(&read("ec.crt"), &read("enc.key")).unwrap_err();
    assert!(err.to_string().contains("encrypted"), "{err}");
}

#[test]
fn signed_by_checks_signature_and_issuer() {
    let t = now();
    let ca = generate_ca("Test CA", t).unwrap();
    let other = generate_ca("Test CA", t).unwrap(); // same name, other key
    let server = generate_server(&ca, &names(&["a.example"]), &[], t).unwrap();
    assert!(signed_by(&server.cert, &ca.cert).unwrap());
    assert!(!signed_by(&server.cert, &other.cert).unwrap());
    let third = generate_ca("Third CA", t).unwrap();
    assert!(!signed_by(&server.cert, &third.cert).unwrap());
}

fn info_with(dns: &[&str], ips: &[&str]) -> CertInfo {
    CertInfo {
        subject: String::new(),
        not_before: now(),
        not_after: now(),
        dns_names: names(dns),
        ip_addrs: ips.iter().map(|i| i.parse().unwrap()).collect(),
        is_ca: false,
    }
}

#[test]
fn covers_host_matches_exact_wildcard_and_ips() {
    let info = info_with(
        &["Mirror.Example.org", "*.apps.example.org"],
        &["10.0.0.1", "::1"],
    );
    assert!(covers_host(&info, "mirror.example.org"));
    assert!(covers_host(&info, "MIRROR.example.ORG"));
    assert!(covers_host(&info, "mirror.example.org."));
    assert!(covers_host(&info, "x.apps.example.org"));
    assert!(
        !covers_host(&info, "apps.example.org"),
        "wildcard needs a label"
    );
    assert!(
        !covers_host(&info, "a.b.apps.example.org"),
        "one label only"
    );
    assert!(!covers_host(&info, ".apps.example.org"));
    assert!(!covers_host(&info, "example.org"));
    assert!(!covers_host(&info, ""));
    assert!(covers_host(&info, "10.0.0.1"));
    assert!(!covers_host(&info, "10.0.0.2"));
    assert!(covers_host(&info, "::1"));
    assert!(covers_host(&info, "[::1]"));
    assert!(covers_host(&info, "0:0:0:0:0:0:0:1"), "IPs compare as IPs");
    // An IP written as a name never matches a DNS SAN.
    assert!(!covers_host(&info_with(&["10.0.0.1"], &[]), "10.0.0.1"));
}

#[test]
fn default_sans_cover_hostname_short_name_and_loopback() {
    let (dns, ips) = default_sans(
        "Mirror.Example.org",
        &names(&["10.1.2.3", "alias.example.org", "localhost"]),
    );
    assert_eq!(
        dns,
        names(&[
            "mirror.example.org",
            "mirror",
            "localhost",
            "alias.example.org"
        ])
    );
    let want: Vec<IpAddr> = ["127.0.0.1", "::1", "10.1.2.3"]
        .iter()
        .map(|i| i.parse().unwrap())
        .collect();
    assert_eq!(ips, want);

    let (dns, ips) = default_sans("localhost", &[]);
    assert_eq!(dns, names(&["localhost"]));
    assert_eq!(ips.len(), 2);

    let (dns, ips) = default_sans("192.168.1.5", &[]);
    assert_eq!(dns, names(&["localhost"]));
    assert_eq!(ips[0], "192.168.1.5".parse::<IpAddr>().unwrap());
}

fn write_pair(dir: &Path, pem: &Pem) -> (PathBuf, PathBuf) {
    let c = dir.join("user.crt");
    let k = dir.join("user.key");
    fs::write(&c, &pem.cert).unwrap();
    fs::write(&k, &pem.key).unwrap();
    (c, k)
}

#[test]
fn check_user_pair_accepts_a_good_pair() {
    let dir = tempfile::tempdir().unwrap();
    let t = now();
    let ca = generate_ca("User CA", t).unwrap();
    let server = generate_server(&ca, &names(&["mirror.example.org"]), &[], t).unwrap();
    let (c, k) = write_pair(dir.path(), &server);
    let pair = check_user_pair(&c, &k, "mirror.example.org", false, t).unwrap();
    assert_eq!(pair.info.dns_names, names(&["mirror.example.org"]));
    // What is handed back to be copied is exactly what was checked.
    assert_eq!(pair.cert, fs::read(&c).unwrap());
    assert_eq!(pair.key, fs::read(&k).unwrap());
    // A chain file (leaf first, then the CA) is fine too.
    fs::write(&c, format!("{}{}", server.cert, ca.cert)).unwrap();
    let chain = check_user_pair(&c, &k, "mirror.example.org", false, t).unwrap();
    assert_eq!(chain.cert, fs::read(&c).unwrap());
}

#[test]
fn check_user_pair_reports_a_mismatched_key() {
    let dir = tempfile::tempdir().unwrap();
    let t = now();
    let ca = generate_ca("User CA", t).unwrap();
    let server = generate_server(&ca, &names(&["mirror.example.org"]), &[], t).unwrap();
    let (c, k) = write_pair(
        dir.path(),
        &Pem {
            cert: server.cert,
            key: ca.key,
        },
    );
    let problems = check_user_pair(&c, &k, "mirror.example.org", false, t).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    let p = &problems[0];
    assert!(
        p.contains(&k.display().to_string()) && p.contains(&c.display().to_string()),
        "{p}"
    );
    assert!(p.contains("does not match") && p.ends_with('.'), "{p}");
}

#[test]
fn check_user_pair_reports_expiry_with_the_date() {
    let dir = tempfile::tempdir().unwrap();
    let past = OffsetDateTime::new_utc(
        time::Date::from_calendar_date(2020, time::Month::March, 1).unwrap(),
        time::Time::from_hms(12, 0, 0).unwrap(),
    );
    let ca = generate_ca("Old CA", past).unwrap();
    let server = generate_server(&ca, &names(&["mirror.example.org"]), &[], past).unwrap();
    let (c, k) = write_pair(dir.path(), &server);
    let problems = check_user_pair(&c, &k, "mirror.example.org", false, now()).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(
        problems[0],
        format!(
            "Certificate file {} expired on 2021-03-01 12:00:00 UTC.",
            c.display()
        )
    );
    // And a certificate from the future is not yet valid.
    let early = past - Duration::days(10);
    let problems = check_user_pair(&c, &k, "mirror.example.org", false, early).unwrap_err();
    assert!(
        problems[0].contains("is not valid until 2020-03-01 11:00:00 UTC"),
        "{problems:?}"
    );
}

#[test]
fn check_user_pair_reports_a_wrong_host_unless_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let t = now();
    let ca = generate_ca("User CA", t).unwrap();
    let ip: IpAddr = "10.0.0.7".parse().unwrap();
    let server =
        generate_server(&ca, &names(&["a.example.org", "b.example.org"]), &[ip], t).unwrap();
    let (c, k) = write_pair(dir.path(), &server);
    let problems = check_user_pair(&c, &k, "mirror.example.org", false, t).unwrap_err();
    assert_eq!(
        problems,
        vec![format!(
            "Certificate file {} is not valid for hostname mirror.example.org; its subject \
             alternative names are: a.example.org, b.example.org, 10.0.0.7.",
            c.display()
        )]
    );
    let info = check_user_pair(&c, &k, "mirror.example.org", true, t)
        .unwrap()
        .info;
    assert_eq!(info.ip_addrs, vec![ip]);
}

#[test]
fn check_user_pair_reports_garbage_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let t = now();
    let c = dir.path().join("garbage.crt");
    let k = dir.path().join("garbage.key");
    fs::write(&c, "this is not a certificate\n").unwrap();
    fs::write(&k, [0xffu8, 0x00, 0x13]).unwrap();
    let problems = check_user_pair(&c, &k, "h", false, t).unwrap_err();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with(&format!(
            "Certificate file {} is unusable: no PEM certificate",
            c.display()
        )),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with(&format!(
            "Key file {} is unusable: no PEM private key",
            k.display()
        )),
        "{problems:?}"
    );

    let mc = dir.path().join("missing.crt");
    let mk = dir.path().join("missing.key");
    let problems = check_user_pair(&mc, &mk, "h", false, t).unwrap_err();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with(&format!("Cannot read certificate file {}: ", mc.display())),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with(&format!("Cannot read key file {}: ", mk.display())),
        "{problems:?}"
    );
    assert!(problems.iter().all(|p| p.ends_with('.')));
}

#[test]
fn ensure_generated_creates_files_with_modes_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let t = now();
    let (dns, ips) = local_sans();
    let first = ensure_generated(&tls, &dns, &ips, t).unwrap();
    assert!(first.ca_changed && first.cert_changed);
    let reason = first.reason.clone().unwrap();
    assert!(
        reason.contains("CA generated") && reason.contains("certificate issued"),
        "{reason}"
    );
    assert_eq!(mode(&tls), 0o700);
    assert_eq!(mode(&first.ca_file), 0o644);
    assert_eq!(mode(&tls.join("ca.key")), 0o600);
    assert_eq!(mode(&first.cert_file), 0o644);
    assert_eq!(mode(&first.key_file), 0o600);
    assert_eq!(first.cert_file, tls.join("tls.crt"));
    let cert = fs::read_to_string(&first.cert_file).unwrap();
    let ca = fs::read_to_string(&first.ca_file).unwrap();
    assert!(signed_by(&cert, &ca).unwrap());
    assert_eq!(inspect(&cert).unwrap().not_after, first.not_after);
    let ca_info = inspect(&ca).unwrap();
    assert!(
        ca_info
            .subject
            .starts_with("CN=mirror-registry CA mirror.example.org "),
        "{}",
        ca_info.subject
    );

    let files = [
        first.ca_file.as_path(),
        &tls.join("ca.key"),
        first.cert_file.as_path(),
        first.key_file.as_path(),
    ];
    let before = snapshot(&files);
    let second = ensure_generated(&tls, &dns, &ips, t).unwrap();
    assert!(!second.ca_changed && !second.cert_changed);
    assert_eq!(second.reason, None);
    assert_eq!(second.not_after, first.not_after);
    assert_eq!(snapshot(&files), before, "nothing rewritten");

    // Modes are repaired without counting as a change.
    fs::set_permissions(&first.key_file, fs::Permissions::from_mode(0o644)).unwrap();
    let third = ensure_generated(&tls, &dns, &ips, t).unwrap();
    assert!(!third.cert_changed);
    assert_eq!(mode(&first.key_file), 0o600);
}

#[test]
fn ca_names_fit_a_cn_and_differ_per_generation() {
    let long = format!("{}.example.org", "h".repeat(70));
    let a = ca_common_name(std::slice::from_ref(&long), &[]);
    let b = ca_common_name(&[long], &[]);
    assert!(a.len() <= 64, "{a}");
    assert!(a.starts_with("mirror-registry CA hhh"), "{a}");
    assert_ne!(a, b);
    generate_ca(&a, now()).unwrap();
    let ip = ca_common_name(&[], &["10.0.0.1".parse().unwrap()]);
    assert!(ip.starts_with("mirror-registry CA 10.0.0.1 "), "{ip}");
}

#[test]
fn ensure_generated_renews_the_server_cert_then_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let t = now();
    let (dns, ips) = local_sans();
    let first = ensure_generated(dir.path(), &dns, &ips, t).unwrap();
    let ca_before = fs::read(&first.ca_file).unwrap();
    let cert_before = fs::read(&first.cert_file).unwrap();

    // 340 days on, the one-year certificate is within 30 days of expiry.
    let later = t + Duration::days(340);
    let renewed = ensure_generated(dir.path(), &dns, &ips, later).unwrap();
    assert!(!renewed.ca_changed);
    assert!(renewed.cert_changed);
    let reason = renewed.reason.unwrap();
    assert!(
        reason.starts_with("certificate renewed: expires "),
        "{reason}"
    );
    assert!(reason.ends_with("(within 30 days)"), "{reason}");
    assert!(reason.contains(&date(first.not_after)), "{reason}");
    assert_eq!(fs::read(&first.ca_file).unwrap(), ca_before);
    assert_ne!(fs::read(&first.cert_file).unwrap(), cert_before);
    assert!(renewed.not_after > first.not_after);
    let again = ensure_generated(dir.path(), &dns, &ips, later).unwrap();
    assert!(!again.ca_changed && !again.cert_changed);

    // Ten years on, the CA itself is renewed and the certificate reissued.
    let decade = t + Duration::days(3650);
    let both = ensure_generated(dir.path(), &dns, &ips, decade).unwrap();
    assert!(both.ca_changed && both.cert_changed);
    let reason = both.reason.unwrap();
    assert!(reason.starts_with("CA generated: CA expire"), "{reason}");
    assert!(
        reason.contains("certificate renewed: not signed by the current CA"),
        "{reason}"
    );
    assert_ne!(fs::read(&first.ca_file).unwrap(), ca_before);
    let cert = fs::read_to_string(&both.cert_file).unwrap();
    let ca = fs::read_to_string(&both.ca_file).unwrap();
    assert!(signed_by(&cert, &ca).unwrap());
    assert!(inspect(&ca).unwrap().not_after > decade + Duration::days(3000));
}

#[test]
fn ensure_generated_reissues_on_san_change_bad_files_and_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = now();
    let (dns, ips) = local_sans();
    let first = ensure_generated(d, &dns, &ips, t).unwrap();
    let ca_before = fs::read(&first.ca_file).unwrap();

    // Same SANs in another order and case: kept.
    let mut shuffled: Vec<String> = dns.iter().rev().map(|n| n.to_uppercase()).collect();
    shuffled.rotate_left(1);
    let ips_rev: Vec<IpAddr> = ips.iter().rev().copied().collect();
    let same = ensure_generated(d, &shuffled, &ips_rev, t).unwrap();
    assert!(!same.cert_changed, "{:?}", same.reason);

    // Another SAN: reissued by the same CA.
    let mut more = dns.clone();
    more.push("alias.example.org".into());
    let r = ensure_generated(d, &more, &ips, t).unwrap();
    assert!(r.cert_changed && !r.ca_changed);
    assert!(r
        .reason
        .unwrap()
        .contains("subject alternative names changed"));
    let info = inspect(&fs::read_to_string(&r.cert_file).unwrap()).unwrap();
    assert!(info.dns_names.contains(&"alias.example.org".to_string()));

    // A garbled certificate: reissued.
    fs::write(&r.cert_file, "garbage").unwrap();
    let r = ensure_generated(d, &more, &ips, t).unwrap();
    assert!(r.cert_changed && !r.ca_changed);

    // A key that does not belong to the certificate: reissued.
    let stray = generate_ca("stray", t).unwrap();
    fs::write(&r.key_file, &stray.key).unwrap();
    let r = ensure_generated(d, &more, &ips, t).unwrap();
    assert!(r.cert_changed && !r.ca_changed);
    assert!(r.reason.unwrap().contains("key does not match"));
    let cert = fs::read_to_string(&r.cert_file).unwrap();
    assert!(key_matches(&cert, &fs::read_to_string(&r.key_file).unwrap()).unwrap());

    // A lost tls.key: reissued.
    fs::remove_file(&r.key_file).unwrap();
    let r = ensure_generated(d, &more, &ips, t).unwrap();
    assert!(r.cert_changed && !r.ca_changed);
    assert!(r.reason.unwrap().starts_with("certificate issued"));

    // A lost CA key: a new CA, and a certificate from it.
    fs::remove_file(d.join("ca.key")).unwrap();
    let r = ensure_generated(d, &more, &ips, t).unwrap();
    assert!(r.ca_changed && r.cert_changed);
    assert_ne!(fs::read(&first.ca_file).unwrap(), ca_before);
    let cert = fs::read_to_string(&r.cert_file).unwrap();
    let ca = fs::read_to_string(&r.ca_file).unwrap();
    assert!(signed_by(&cert, &ca).unwrap());
    let r = ensure_generated(d, &more, &ips, t).unwrap();
    assert!(!r.ca_changed && !r.cert_changed);
}

#[test]
fn a_pinned_leaf_is_accepted_from_any_issuer_and_nothing_else() {
    let t = now();
    let (dns, ips) = local_sans();
    let server = generate_server(&generate_ca("Pinned CA", t).unwrap(), &dns, &ips, t).unwrap();
    let other = generate_server(&generate_ca("Other CA", t).unwrap(), &dns, &ips, t).unwrap();
    let leaf = first_cert_der(&server.cert).unwrap();
    handshake_with(
        pinned_client_config(leaf.clone()).unwrap(),
        &server,
        "localhost",
    )
    .expect("the pinned certificate, though its CA is trusted nowhere");
    let err = handshake_with(pinned_client_config(leaf).unwrap(), &other, "localhost").unwrap_err();
    assert!(
        err.to_string().contains("other than the pinned one"),
        "{err}"
    );
}
