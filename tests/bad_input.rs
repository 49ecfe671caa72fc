//! The bad-input corpus against a running registry: each case gives a clear
//! condition naming the problem, and the registry keeps serving, untouched.
//! Plus bounded property tests of spec parsing and the status splice.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use mirror_registry::api::{load, Phase, Status};
use mirror_registry::host::tls;
use mirror_registry::spec_file::splice::{splice_status, without_status};

/// What a case does to the spec file.
enum Act {
    /// Replace the file with these bytes.
    Text(Vec<u8>),
    /// Replace the file with a symlink to this target.
    Symlink(PathBuf),
    /// Replace the file with a directory.
    Dir,
    /// Replace the file with a FIFO.
    Fifo,
    /// Add a second file with the same metadata.name.
    Duplicate,
}

struct Case {
    label: &'static str,
    act: Act,
    /// Condition expected False, and a fragment of its message.
    condition: &'static str,
    fragment: String,
}

fn status_of(lab: &Lab, name: &str) -> Option<Status> {
    let text = std::fs::read_to_string(lab.state().join(name).join("status.yaml")).ok()?;
    serde_yaml::from_str(&text).ok()
}

fn replace_with(path: &Path, act: &Act) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_dir(path);
    match act {
        Act::Text(b) => {
            let tmp = path.with_extension("tmp-new");
            std::fs::write(&tmp, b).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
        Act::Symlink(target) => std::os::unix::fs::symlink(target, path).unwrap(),
        Act::Dir => std::fs::create_dir(path).unwrap(),
        Act::Fifo => sh_ok("mkfifo", &[path.to_str().unwrap()]).truncate(0),
        Act::Duplicate => unreachable!(),
    }
}

#[test]
fn bad_input_corpus_keeps_the_registry_serving() {
    let mut lab = Lab::new();
    let name = unique("bad");
    let port = free_port();
    let other_port = free_port();
    lab.track(&name, port);
    let path = lab.spec_path(&name);
    let good = lab.spec(&name, port, "");
    lab.start(&[]);
    lab.put(&name, &good);
    wait_phase(&path, Phase::Ready, Duration::from_secs(120));
    let container = format!("{name}-registry");
    let started = started_at(&container);

    // Material for the TLS and archive cases.
    let pki = lab.dir.path().join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let ca = tls::generate_ca("test CA", now).unwrap();
    let write_pair = |stem: &str, pem: &tls::Pem| -> (PathBuf, PathBuf) {
        let c = pki.join(format!("{stem}.crt"));
        let k = pki.join(format!("{stem}.key"));
        std::fs::write(&c, format!("{}{}", pem.cert, ca.cert)).unwrap();
        std::fs::write(&k, &pem.key).unwrap();
        (c, k)
    };
    let localhost = vec!["localhost".to_string()];
    let good_pair = tls::generate_server(&ca, &localhost, &[], now).unwrap();
    let other_pair = tls::generate_server(&ca, &localhost, &[], now).unwrap();
    let expired =
        tls::generate_server(&ca, &localhost, &[], now - time::Duration::days(800)).unwrap();
    let wrong_host = tls::generate_server(&ca, &["other.example".to_string()], &[], now).unwrap();
    let (good_c, _) = write_pair("good", &good_pair);
    let (_, other_k) = write_pair("other", &other_pair);
    let (exp_c, exp_k) = write_pair("expired", &expired);
    let (wh_c, wh_k) = write_pair("wrong-host", &wrong_host);
    let corrupt_archive = lab.dir.path().join("corrupt.tar");
    std::fs::write(&corrupt_archive, b"this is not a tar archive").unwrap();
    let outside = lab.dir.path().join("outside.yaml");
    std::fs::write(&outside, &good).unwrap();
    let missing_image = format!("localhost/mr-missing/{name}:1");

    let head = format!(
        "apiVersion: mirrorregistry.io/v1alpha1\nkind: MirrorRegistry\nmetadata:\n  name: {name}\n"
    );
    let with_spec = |spec: &str| -> Vec<u8> {
        format!("{head}spec:\n  engine: distribution\n  hostname: localhost\n  port: {port}\n  root: {}\n{spec}", lab.root(&name).display()).into_bytes()
    };
    let text = |s: &str| Act::Text(s.as_bytes().to_vec());
    let sv = "SpecValid";
    // "port taken" moves the registry to a port someone else holds.
    let cases = vec![
        Case { label: "unclosed flow", act: text(&format!("{head}spec: {{port: 1\n")), condition: sv, fragment: "invalid YAML".into() },
        Case { label: "bad indentation", act: text(&format!("{head}spec:\n  engine: distribution\n port: 1\n")), condition: sv, fragment: "invalid YAML".into() },
        Case { label: "tab indentation", act: text(&format!("{head}spec:\n\tport: 1\n")), condition: sv, fragment: "invalid YAML".into() },
        Case { label: "empty file", act: text(""), condition: sv, fragment: "expected a mapping".into() },
        Case { label: "only comments", act: text("# nothing here\n"), condition: sv, fragment: "expected a mapping".into() },
        Case { label: "a list", act: text("- a\n- b\n"), condition: sv, fragment: "expected a mapping".into() },
        Case { label: "a scalar", act: text("hello\n"), condition: sv, fragment: "expected a mapping".into() },
        Case { label: "two documents", act: text(&format!("{head}---\n{head}")), condition: sv, fragment: "invalid YAML".into() },
        Case { label: "duplicate keys", act: text(&format!("{head}spec:\n  port: 1\n  port: 2\n")), condition: sv, fragment: "duplicate".into() },
        Case { label: "binary garbage", act: Act::Text((0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect()), condition: sv, fragment: "".into() },
        Case { label: "NUL bytes", act: Act::Text(b"apiVersion: a\x00\x00\nkind: b\n".to_vec()), condition: sv, fragment: "".into() },
        Case { label: "huge file", act: Act::Text(vec![b'#'; 2 << 20]), condition: sv, fragment: "at most".into() },
        Case { label: "alias bomb", act: text("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n"), condition: sv, fragment: "".into() },
        Case { label: "deep nesting", act: text(&format!("{}{}", "[".repeat(10_000), "]".repeat(10_000))), condition: sv, fragment: "".into() },
        Case { label: "wrong apiVersion", act: text(&format!("apiVersion: v1\nkind: MirrorRegistry\nmetadata:\n  name: {name}\n")), condition: sv, fragment: "apiVersion: must be mirrorregistry.io/v1alpha1".into() },
        Case { label: "wrong kind", act: text(&format!("apiVersion: mirrorregistry.io/v1alpha1\nkind: Pod\nmetadata:\n  name: {name}\n")), condition: sv, fragment: "kind: must be MirrorRegistry".into() },
        Case { label: "missing apiVersion", act: text(&format!("kind: MirrorRegistry\nmetadata:\n  name: {name}\n")), condition: sv, fragment: "apiVersion: required".into() },
        Case { label: "unknown top-level field", act: Act::Text([with_spec(""), b"spek: {}\n".to_vec()].concat()), condition: sv, fragment: "spek: unknown field; did you mean 'spec'".into() },
        Case { label: "unknown spec field", act: Act::Text(with_spec("  prot: 1\n")), condition: sv, fragment: "spec.prot: unknown field".into() },
        Case { label: "port as string", act: text(&format!("{head}spec:\n  engine: distribution\n  port: \"{port}\"\n")), condition: sv, fragment: "spec.port: expected integer".into() },
        Case { label: "port 0", act: text(&format!("{head}spec:\n  engine: distribution\n  port: 0\n")), condition: sv, fragment: "spec.port: must be 1-65535".into() },
        Case { label: "port 70000", act: text(&format!("{head}spec:\n  engine: distribution\n  port: 70000\n")), condition: sv, fragment: "spec.port: must be 1-65535, got 70000".into() },
        Case { label: "port negative", act: text(&format!("{head}spec:\n  engine: distribution\n  port: -5\n")), condition: sv, fragment: "spec.port: must be 1-65535".into() },
        Case { label: "engine unknown", act: text(&format!("{head}spec:\n  engine: harbor\n")), condition: sv, fragment: "spec.engine: must be one of".into() },
        Case { label: "paused as string", act: Act::Text(with_spec("  paused: \"yes\"\n")), condition: sv, fragment: "spec.paused: expected boolean".into() },
        Case { label: "storage both", act: Act::Text(with_spec("  storage: {volume: a, path: /b}\n")), condition: sv, fragment: "spec.storage: set either volume or path".into() },
        Case { label: "storage relative", act: Act::Text(with_spec("  storage: {path: blobs}\n")), condition: sv, fragment: "spec.storage.path: must be an absolute path".into() },
        Case { label: "root relative", act: text(&format!("{head}spec:\n  engine: distribution\n  root: here\n")), condition: sv, fragment: "spec.root: must be an absolute path".into() },
        Case { label: "tls half", act: Act::Text(with_spec("  tls: {certFile: /x.crt}\n")), condition: sv, fragment: "spec.tls: certFile and keyFile go together".into() },
        Case { label: "database on distribution", act: Act::Text(with_spec("  database: {volume: db}\n")), condition: sv, fragment: "spec.database: only for engine quay".into() },
        Case { label: "bad hostname", act: text(&format!("{head}spec:\n  engine: distribution\n  hostname: \"under_score\"\n")), condition: sv, fragment: "spec.hostname".into() },
        Case { label: "bad username", act: Act::Text(with_spec("  initUser: {username: Root}\n")), condition: sv, fragment: "spec.initUser.username".into() },
        Case { label: "labels not strings", act: text(&format!("apiVersion: mirrorregistry.io/v1alpha1\nkind: MirrorRegistry\nmetadata:\n  name: {name}\n  labels: {{a: [1]}}\n")), condition: sv, fragment: "metadata.labels.a: expected string".into() },
        Case { label: "invalid name", act: text("apiVersion: mirrorregistry.io/v1alpha1\nkind: MirrorRegistry\nmetadata:\n  name: Not_A_Label\n"), condition: sv, fragment: "metadata.name: must be a DNS-1123 label".into() },
        Case { label: "symlink out of the directory", act: Act::Symlink(outside.clone()), condition: sv, fragment: "outside the watched directory".into() },
        Case { label: "dangling symlink", act: Act::Symlink(lab.dir.path().join("nowhere.yaml")), condition: sv, fragment: "cannot read".into() },
        Case { label: "a directory", act: Act::Dir, condition: sv, fragment: "not a regular file".into() },
        Case { label: "a FIFO", act: Act::Fifo, condition: sv, fragment: "not a regular file".into() },
        Case { label: "duplicate name", act: Act::Duplicate, condition: sv, fragment: "is also used by".into() },
        Case { label: "port taken", act: Act::Text(String::from_utf8(with_spec("")).unwrap().replace(&format!("port: {port}\n"), &format!("port: {other_port}\n")).into_bytes()), condition: "UnitsActive", fragment: format!("port {other_port} is already in use") },
        Case { label: "cert/key mismatch", act: Act::Text(with_spec(&format!("  tls: {{certFile: {}, keyFile: {}}}\n", good_c.display(), other_k.display()))), condition: "CertificateValid", fragment: "".into() },
        Case { label: "expired cert", act: Act::Text(with_spec(&format!("  tls: {{certFile: {}, keyFile: {}}}\n", exp_c.display(), exp_k.display()))), condition: "CertificateValid", fragment: "expired".into() },
        Case { label: "wrong-host cert", act: Act::Text(with_spec(&format!("  tls: {{certFile: {}, keyFile: {}}}\n", wh_c.display(), wh_k.display()))), condition: "CertificateValid", fragment: "localhost".into() },
        Case { label: "missing cert file", act: Act::Text(with_spec("  tls: {certFile: /nonexistent/tls.crt, keyFile: /nonexistent/tls.key}\n")), condition: "CertificateValid", fragment: "/nonexistent/tls.crt".into() },
        Case { label: "missing archive", act: Act::Text(with_spec(&format!("  images: {{registry: \"{missing_image}\", archive: /nonexistent/images.tar}}\n"))), condition: "ImagesPresent", fragment: "/nonexistent/images.tar".into() },
        Case { label: "corrupt archive", act: Act::Text(with_spec(&format!("  images: {{registry: \"{missing_image}\", archive: {}}}\n", corrupt_archive.display()))), condition: "ImagesPresent", fragment: corrupt_archive.display().to_string() },
    ];
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let _holder = std::net::TcpListener::bind(("0.0.0.0", other_port)).unwrap();

    for case in &cases {
        // Each case starts from the good spec, Ready.
        replace_with(&path, &Act::Text(good.clone().into_bytes()));
        wait_for(
            Duration::from_secs(60),
            &format!("Ready before case '{}'", case.label),
            || status_of(&lab, &name).filter(|s| s.phase == Phase::Ready),
        );
        let dup = lab.watch().join(format!("{name}-copy.yaml"));
        match &case.act {
            Act::Duplicate => std::fs::write(&dup, &good).unwrap(),
            other => replace_with(&path, other),
        }
        let st = wait_for(
            Duration::from_secs(60),
            &format!("a condition for case '{}'", case.label),
            || {
                status_of(&lab, &name)
                    .filter(|s| condition(s, case.condition).is_some_and(|c| c.status == "False"))
            },
        );
        let c = condition(&st, case.condition).unwrap();
        assert!(
            c.message.contains(&case.fragment),
            "case '{}': {} message {:?} lacks {:?}",
            case.label,
            case.condition,
            c.message,
            case.fragment
        );
        assert!(!c.reason.is_empty(), "case '{}' has a reason", case.label);
        assert!(
            serving(port),
            "case '{}': the registry stopped serving",
            case.label
        );
        let now_started = started_at(&container);
        assert!(
            now_started == started,
            "case '{}' restarted the registry:\n{}",
            case.label,
            lab.logs()
        );
        if let Act::Duplicate = case.act {
            std::fs::remove_file(&dup).unwrap();
        }
    }
    replace_with(&path, &Act::Text(good.clone().into_bytes()));
    wait_phase(&path, Phase::Ready, Duration::from_secs(60));
    assert!(
        started_at(&container) == started,
        "the registry was restarted:\n{}",
        lab.logs()
    );
    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644));
}

/// A small deterministic generator: no dependency, same cases every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn examples() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    out.sort();
    out
}

/// Mutated specs never panic the parser, and an accepted spec always
/// resolves and renders.
#[test]
fn property_parsing_never_panics() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let seeds = examples();
    let tokens: &[&[u8]] = &[
        b":",
        b"\n",
        b" ",
        b"- ",
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b"'",
        b"&a ",
        b"*a",
        b"!!binary ",
        b"#",
        b"\t",
        b"\xff",
        b"port: 99999\n",
        b"status:\n  phase: Ready\n",
    ];
    let host = mirror_registry::api::defaults::HostFacts {
        fqdn: "h.example.org".into(),
    };
    let cx = mirror_registry::render::Context {
        podman: "/usr/bin/podman".into(),
        wanted_by: "default.target".into(),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut n = 0;
    while n < 20_000 && std::time::Instant::now() < deadline {
        let mut b = seeds[rng.below(seeds.len())].clone().into_bytes();
        for _ in 0..=rng.below(4) {
            let at = rng.below(b.len() + 1);
            match rng.below(3) {
                0 => {
                    let t = tokens[rng.below(tokens.len())];
                    b.splice(at..at, t.iter().copied());
                }
                1 => {
                    let end = (at + rng.below(20)).min(b.len());
                    b.drain(at..end);
                }
                _ => {
                    if at < b.len() {
                        b[at] ^= 1 << rng.below(8);
                    }
                }
            }
        }
        if let Ok(l) = load::parse(Path::new("/specs/fuzz.yaml"), &b) {
            let r = mirror_registry::api::defaults::resolve(&l.resource, &l.name, &host);
            let _ = mirror_registry::render::render(&r, &cx);
        }
        n += 1;
    }
    assert!(n >= 1000, "only {n} cases ran");
}

/// Splicing any status into any spec leaves the spec part as it was, and is
/// idempotent.
#[test]
fn property_splice_keeps_the_spec() {
    let mut rng = XorShift(0xD1B5_4A32_D192_ED03);
    let seeds = examples();
    let phases = ["Ready", "Progressing", "Failed"];
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut n = 0;
    while n < 5_000 && std::time::Instant::now() < deadline {
        let mut spec = seeds[rng.below(seeds.len())].clone();
        // Vary the surroundings: comments, blank lines, CRLF, no newline.
        match rng.below(4) {
            0 => spec.push_str("# trailing comment\n"),
            1 => spec = spec.replace('\n', "\r\n"),
            2 => spec = spec.trim_end().to_string(),
            _ => spec.insert_str(0, "# leading\n\n"),
        }
        let status = Status {
            phase: serde_yaml::from_str(phases[rng.below(3)]).unwrap(),
            endpoint: Some(format!("https://h:{}", rng.below(65535))),
            ..Status::default()
        };
        let body = serde_yaml::to_string(&status).unwrap();
        let once = splice_status(&spec, Some(&body));
        assert_eq!(without_status(&once), without_status(&spec), "case {n}");
        assert_eq!(
            splice_status(&once, Some(&body)),
            once,
            "idempotent, case {n}"
        );
        let v: serde_yaml::Value = serde_yaml::from_str(&once).unwrap();
        let back: Status = serde_yaml::from_value(v["status"].clone()).unwrap();
        assert_eq!(back, status);
        n += 1;
    }
    assert!(n >= 500, "only {n} cases ran");
}
