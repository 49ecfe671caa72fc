//! The API contract: every example is valid, every bad spec is rejected
//! naming its field, crds/ matches the types, `explain` reads the schema.

use std::path::{Path, PathBuf};

use mirror_registry::api::{defaults, load, schema, Engine};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

const HEAD: &str =
    "apiVersion: mirrorregistry.io/v1alpha1\nkind: MirrorRegistry\nmetadata:\n  name: t\n";

fn problems(text: &str) -> Vec<String> {
    match load::parse(Path::new("/specs/t.yaml"), text.as_bytes()) {
        Ok(_) => vec![],
        Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
    }
}

#[test]
fn every_example_is_valid() {
    let dir = repo().join("examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let bytes = std::fs::read(&path).unwrap();
            if let Err(e) = load::parse(&path, &bytes) {
                panic!("{e}");
            }
            n += 1;
        }
    }
    assert!(n >= 4, "expected the four examples, found {n}");
}

/// (spec body after the header, the field path the rejection must name,
/// a fragment of its message)
const BAD: &[(&str, &str, &str)] = &[
    (
        "spec:\n  port: 70000\n",
        "spec.port",
        "must be 1-65535, got 70000",
    ),
    ("spec:\n  port: 0\n", "spec.port", "must be 1-65535"),
    (
        "spec:\n  port: \"8443\"\n",
        "spec.port",
        "expected integer, got string",
    ),
    ("spec:\n  port: -1\n", "spec.port", ""),
    ("spec:\n  prot: 5000\n", "spec.prot", "did you mean 'port'"),
    (
        "spec:\n  engine: dist\n",
        "spec.engine",
        "must be one of quay, distribution",
    ),
    (
        "spec:\n  tls:\n    certFile: /a.crt\n",
        "spec.tls",
        "certFile and keyFile go together",
    ),
    (
        "spec:\n  tls:\n    keyFile: /a.key\n",
        "spec.tls",
        "certFile and keyFile go together",
    ),
    (
        "spec:\n  tls:\n    certFile: a.crt\n    keyFile: /a.key\n",
        "spec.tls.certFile",
        "absolute",
    ),
    (
        "spec:\n  tls:\n    certFile: /a.crt\n    keyFile: /a.key\n    extraSans: [x]\n",
        "spec.tls.extraSans",
        "only for a generated certificate",
    ),
    (
        "spec:\n  tls:\n    extraSans: [\"bad name\"]\n",
        "spec.tls.extraSans[0]",
        "not a host name",
    ),
    (
        "spec:\n  tls:\n    skipHostnameCheck: true\n",
        "spec.tls.skipHostnameCheck",
        "only with certFile",
    ),
    (
        "spec:\n  tls:\n    certfile: /a.crt\n",
        "spec.tls.certfile",
        "did you mean 'certFile'",
    ),
    (
        "spec:\n  hostname: bad_host\n",
        "spec.hostname",
        "not a valid host name",
    ),
    (
        "spec:\n  hostname: -a.example.org\n",
        "spec.hostname",
        "not a valid host name",
    ),
    (
        "spec:\n  root: relative/dir\n",
        "spec.root",
        "must be an absolute path",
    ),
    ("spec:\n  root: /\n", "spec.root", "must not be /"),
    (
        "spec:\n  storage:\n    volume: a\n    path: /b\n",
        "spec.storage",
        "not both",
    ),
    (
        "spec:\n  storage: {}\n",
        "spec.storage",
        "set one of volume or path",
    ),
    (
        "spec:\n  storage:\n    path: blobs\n",
        "spec.storage.path",
        "absolute",
    ),
    (
        "spec:\n  storage:\n    volume: -bad\n",
        "spec.storage.volume",
        "not a valid volume name",
    ),
    (
        "spec:\n  engine: distribution\n  database:\n    volume: db\n",
        "spec.database",
        "only for engine quay",
    ),
    (
        "spec:\n  engine: distribution\n  images:\n    quay: q:1\n",
        "spec.images.quay",
        "only for engine quay",
    ),
    (
        "spec:\n  engine: distribution\n  images:\n    redis: r:1\n",
        "spec.images.redis",
        "only for engine quay",
    ),
    (
        "spec:\n  engine: quay\n  images:\n    registry: r:2\n",
        "spec.images.registry",
        "only for engine distribution",
    ),
    (
        "spec:\n  images:\n    archive: image.tar\n",
        "spec.images.archive",
        "absolute",
    ),
    (
        "spec:\n  images:\n    pause: \"has space\"\n",
        "spec.images.pause",
        "not an image reference",
    ),
    (
        "spec:\n  initUser:\n    username: Admin\n",
        "spec.initUser.username",
        "not a valid user name",
    ),
    (
        "spec:\n  initUser:\n    passwordFile: pw\n",
        "spec.initUser.passwordFile",
        "absolute",
    ),
    (
        "spec:\n  paused: \"yes\"\n",
        "spec.paused",
        "expected boolean",
    ),
    (
        "spec:\n  deletionPolicy: Destroy\n",
        "spec.deletionPolicy",
        "must be one of Retain, Delete",
    ),
    (
        "spec:\n  storage: []\n",
        "spec.storage",
        "expected object, got array",
    ),
    (
        "status:\n  phase: Ready\nspex: {}\n",
        "spex",
        "did you mean 'spec'",
    ),
    // The issue's spec: a newline in a path would be a new unit directive.
    (
        "spec:\n  root: \"/tmp/injroot\\nExecStartPre=/bin/touch /tmp/PWNED-BY-SPEC\\nX-Ignore=\"\n",
        "spec.root",
        "control character (U+000A) at character 13",
    ),
    (
        "spec:\n  storage:\n    path: \"/srv/a\\rb\"\n",
        "spec.storage.path",
        "control character (U+000D)",
    ),
    (
        "spec:\n  database:\n    path: \"/srv/a\\0b\"\n",
        "spec.database.path",
        "control character (U+0000)",
    ),
    (
        "spec:\n  storage:\n    path: \"/srv/a:/etc:rw\"\n",
        "spec.storage.path",
        "must not contain ':'",
    ),
    (
        "spec:\n  database:\n    path: /srv/a,b\n",
        "spec.database.path",
        "must not contain ','",
    ),
    ("spec:\n  root: /srv/a:b\n", "spec.root", "must not contain ':'"),
    (
        "spec:\n  root: /srv/x/../../etc\n",
        "spec.root",
        "must not contain '..'",
    ),
    (
        "spec:\n  storage:\n    path: /srv/..\n",
        "spec.storage.path",
        "must not contain '..'",
    ),
    (
        "spec:\n  initUser:\n    passwordFile: /etc/mirror-registry/../shadow\n",
        "spec.initUser.passwordFile",
        "must not contain '..'",
    ),
    (
        "spec:\n  images:\n    archive: /opt/../x.tar\n",
        "spec.images.archive",
        "must not contain '..'",
    ),
    (
        "spec:\n  engine: distribution\n  images:\n    registry: \"--privileged\"\n",
        "spec.images.registry",
        "not an image reference",
    ),
    ("spec:\n  root: /etc/\n", "spec.root", "must not be /etc: a system directory"),
];

#[test]
fn every_bad_spec_is_rejected_naming_its_field() {
    for (body, path, fragment) in BAD {
        let text = format!("{HEAD}{body}");
        let got = problems(&text);
        assert!(
            got.iter()
                .any(|p| p.starts_with(&format!("{path}: ")) && p.contains(fragment)),
            "spec\n{text}\nexpected a problem at {path} containing {fragment:?}, got {got:?}"
        );
    }
}

#[test]
fn header_and_name_problems() {
    let got = problems("apiVersion: v1\nkind: Pod\nmetadata:\n  name: Bad_Name\n");
    for want in [
        "apiVersion: must be mirrorregistry.io/v1alpha1",
        "kind: must be MirrorRegistry",
        "metadata.name: must be a DNS-1123 label",
    ] {
        assert!(
            got.iter().any(|p| p.starts_with(want)),
            "{want} not in {got:?}"
        );
    }
    let missing = problems("metadata:\n  name: t\n");
    assert!(
        missing
            .iter()
            .any(|p| p.starts_with("apiVersion: required")),
        "{missing:?}"
    );
    // Without metadata.name the file name is the name, and must be valid too.
    let e = load::parse(
        Path::new("/specs/My_Registry.yaml"),
        b"apiVersion: mirrorregistry.io/v1alpha1\nkind: MirrorRegistry\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("taken from the file name"), "{e}");
    let ok = load::parse(
        Path::new("/specs/edge-1.yml"),
        b"apiVersion: mirrorregistry.io/v1alpha1\nkind: MirrorRegistry\n",
    )
    .unwrap();
    assert_eq!(ok.name, "edge-1");
}

#[test]
fn every_problem_is_reported_at_once() {
    let got = problems(&format!(
        "{HEAD}spec:\n  prot: 1\n  port: 70000\n  engine: dist\n  tls: {{certFile: /x}}\n  hostname: \"a b\"\n"
    ));
    for path in [
        "spec.prot",
        "spec.port",
        "spec.engine",
        "spec.tls",
        "spec.hostname",
    ] {
        assert!(
            got.iter().any(|p| p.starts_with(&format!("{path}: "))),
            "{path} missing from {got:?}"
        );
    }
}

#[test]
fn syntax_errors_name_file_line_and_column() {
    let e = load::parse(
        Path::new("/specs/broken.yaml"),
        b"apiVersion: x\nspec:\n  port: [\n",
    )
    .unwrap_err();
    let s = e.to_string();
    assert!(s.starts_with("/specs/broken.yaml: line "), "{s}");
    assert!(s.contains("column"), "{s}");
    let e = load::parse(Path::new("/specs/bin.yaml"), &[0xff, 0xfe, 0x00, 0x41]).unwrap_err();
    assert!(e.to_string().contains("not UTF-8"), "{e}");
    let e = load::parse(Path::new("/specs/list.yaml"), b"- a\n- b\n").unwrap_err();
    assert!(e.to_string().contains("expected a mapping"), "{e}");
    let huge = vec![b'#'; load::MAX_SPEC_BYTES + 1];
    let e = load::parse(Path::new("/specs/huge.yaml"), &huge).unwrap_err();
    assert!(e.to_string().contains("at most"), "{e}");
    let e = load::parse(Path::new("/specs/two.yaml"), b"a: 1\n---\nb: 2\n").unwrap_err();
    assert!(e.to_string().contains("invalid YAML"), "{e}");
}

#[test]
fn a_damaged_status_never_rejects_the_spec() {
    let text =
        format!("{HEAD}spec:\n  engine: distribution\nstatus:\n  phase: Sideways\n  bogus: 1\n");
    let l = load::parse(Path::new("/specs/t.yaml"), text.as_bytes()).unwrap();
    assert!(l.resource.status.is_none());
    let text = format!("{HEAD}spec:\n  engine: distribution\nstatus:\n  phase: Ready\n");
    let l = load::parse(Path::new("/specs/t.yaml"), text.as_bytes()).unwrap();
    assert_eq!(
        l.resource.status.unwrap().phase,
        mirror_registry::api::Phase::Ready
    );
}

#[test]
fn defaults_and_hash_ignore_formatting() {
    let host = defaults::HostFacts {
        fqdn: "Host.Example.ORG".into(),
    };
    let a = load::parse(
        Path::new("/s/r.yaml"),
        b"apiVersion: mirrorregistry.io/v1alpha1\nkind: MirrorRegistry\nspec:\n  engine: distribution\n",
    )
    .unwrap();
    let b = load::parse(
        Path::new("/s/r.yaml"),
        b"# a comment\napiVersion: \"mirrorregistry.io/v1alpha1\"\nkind: MirrorRegistry\nspec: {engine: distribution, port: 8443, paused: false}\n",
    )
    .unwrap();
    let ra = defaults::resolve(&a.resource, &a.name, &host);
    let rb = defaults::resolve(&b.resource, &b.name, &host);
    assert_eq!(ra.hash().unwrap(), rb.hash().unwrap());
    assert!(ra.hash().unwrap().starts_with("sha256:"));
    assert_eq!(ra.hostname, "host.example.org");
    assert_eq!(ra.port, 8443);
    assert_eq!(ra.engine, Engine::Distribution);
    assert_eq!(ra.root, PathBuf::from("/var/lib/mirror-registry/r"));
    assert_eq!(ra.storage, defaults::Storage::Volume("r-storage".into()));
    assert_eq!(ra.database, None);
    assert_eq!(
        ra.images.registry.as_deref(),
        Some(defaults::DISTRIBUTION_IMAGE)
    );
    let c = load::parse(
        Path::new("/s/r.yaml"),
        b"apiVersion: mirrorregistry.io/v1alpha1\nkind: MirrorRegistry\nspec:\n  engine: distribution\n  port: 9443\n",
    )
    .unwrap();
    assert_ne!(
        defaults::resolve(&c.resource, &c.name, &host)
            .hash()
            .unwrap(),
        ra.hash().unwrap()
    );
}

#[test]
fn crds_are_fresh() {
    for (name, content) in schema::generated_files() {
        let path = repo().join("crds").join(name);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == content,
            "{} is stale: run `cargo run --bin crdgen`",
            path.display()
        );
    }
}

#[test]
fn crd_is_structural() {
    let crd = schema::crd();
    let v = &crd["spec"]["versions"][0];
    let s = &v["schema"]["openAPIV3Schema"];
    assert_eq!(s["type"], "object");
    let text = serde_json::to_string(s).unwrap();
    for forbidden in ["\"$ref\"", "\"oneOf\"", "\"const\"", "\"$schema\""] {
        assert!(!text.contains(forbidden), "CRD schema contains {forbidden}");
    }
    assert_eq!(v["subresources"]["status"], serde_json::json!({}));
    let cols: Vec<&str> = v["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["Phase", "Endpoint", "Age"]);
    assert_eq!(
        s["properties"]["spec"]["properties"]["engine"]["enum"],
        serde_json::json!(["quay", "distribution"])
    );
}

#[test]
fn explain_reads_the_schema() {
    let t = schema::explain("spec.tls").unwrap();
    assert!(t.contains("FIELD:    spec.tls <object>"), "{t}");
    assert!(t.contains("certFile"), "{t}");
    let p = schema::explain("mirrorregistry.spec.port").unwrap();
    assert!(p.contains("DEFAULT:  8443"), "{p}");
    let e = schema::explain("spec.engine").unwrap();
    assert!(e.contains("ENUM:     quay, distribution"), "{e}");
    let c = schema::explain("status.conditions.reason").unwrap();
    assert!(c.contains("<string>"), "{c}");
    let err = schema::explain("spec.nope").unwrap_err();
    assert!(err.contains("fields are:") && err.contains("port"), "{err}");
}

#[test]
fn mrctl_validate_exit_codes() {
    let mrctl = env!("CARGO_BIN_EXE_mrctl");
    // An empty host: nothing runs that the examples could collide with.
    let dir = tempfile::tempdir().unwrap();
    let host = |c: &mut std::process::Command| {
        c.arg("--watch-dir")
            .arg(dir.path().join("watch"))
            .arg("--state-dir")
            .arg(dir.path().join("state"));
    };
    for n in ["minimal", "quay", "custom-tls", "gitops"] {
        let mut c = std::process::Command::new(mrctl);
        host(&mut c);
        let ok = c
            .arg("validate")
            .arg("-f")
            .arg(repo().join("examples").join(format!("{n}.yaml")))
            .output()
            .unwrap();
        assert_eq!(
            ok.status.code(),
            Some(0),
            "{n}: {}",
            String::from_utf8_lossy(&ok.stdout)
        );
    }
    // Together, minimal and quay would share port 8443: said, exit 1.
    let mut c = std::process::Command::new(mrctl);
    host(&mut c);
    let both = c
        .arg("validate")
        .arg("-f")
        .arg(repo().join("examples/minimal.yaml"))
        .arg(repo().join("examples/quay.yaml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&both.stdout);
    assert_eq!(both.status.code(), Some(1), "{text}");
    assert!(
        text.contains("minimal.yaml: spec.port port 8443 is also quay (")
            && text.contains("examples/quay.yaml)'s spec.port"),
        "{text}"
    );
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        format!("{HEAD}spec:\n  port: 70000\n  tls: {{certFile: /c}}\n"),
    )
    .unwrap();
    let out = std::process::Command::new(mrctl)
        .args(["validate", "-f"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bad.yaml: spec.port: must be 1-65535, got 70000"),
        "{text}"
    );
    assert!(
        text.contains("bad.yaml: spec.tls: certFile and keyFile go together"),
        "{text}"
    );
    let usage = std::process::Command::new(mrctl)
        .arg("validate")
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
}

/// Every string field, with a YAML line that sets it after the header.
const STRING_FIELDS: &[(&str, &str)] = &[
    (
        "apiVersion",
        "apiVersion: @V@\nkind: MirrorRegistry\nmetadata: {name: t}\n",
    ),
    (
        "kind",
        "apiVersion: mirrorregistry.io/v1alpha1\nkind: @V@\nmetadata: {name: t}\n",
    ),
    ("metadata.name", "metadata: {name: @V@}\n"),
    (
        "metadata.labels.team",
        "metadata: {name: t, labels: {team: @V@}}\n",
    ),
    (
        "metadata.annotations.source",
        "metadata: {name: t, annotations: {source: @V@}}\n",
    ),
    ("spec.hostname", "spec: {hostname: @V@}\n"),
    ("spec.root", "spec: {root: @V@}\n"),
    ("spec.storage.volume", "spec: {storage: {volume: @V@}}\n"),
    ("spec.storage.path", "spec: {storage: {path: @V@}}\n"),
    ("spec.database.volume", "spec: {database: {volume: @V@}}\n"),
    ("spec.database.path", "spec: {database: {path: @V@}}\n"),
    (
        "spec.tls.certFile",
        "spec: {tls: {certFile: @V@, keyFile: /k}}\n",
    ),
    (
        "spec.tls.keyFile",
        "spec: {tls: {certFile: /c, keyFile: @V@}}\n",
    ),
    (
        "spec.tls.extraSans[1]",
        "spec: {tls: {extraSans: [a.example, @V@]}}\n",
    ),
    (
        "spec.initUser.username",
        "spec: {initUser: {username: @V@}}\n",
    ),
    (
        "spec.initUser.passwordFile",
        "spec: {initUser: {passwordFile: @V@}}\n",
    ),
    ("spec.images.archive", "spec: {images: {archive: @V@}}\n"),
    ("spec.images.quay", "spec: {images: {quay: @V@}}\n"),
    ("spec.images.redis", "spec: {images: {redis: @V@}}\n"),
    ("spec.images.pause", "spec: {images: {pause: @V@}}\n"),
    (
        "spec.images.registry",
        "spec: {engine: distribution, images: {registry: @V@}}\n",
    ),
];

/// The header lines a STRING_FIELDS entry does not set itself.
fn with_header(line: &str) -> String {
    let mut text = String::new();
    if !line.starts_with("apiVersion") {
        text.push_str("apiVersion: mirrorregistry.io/v1alpha1\nkind: MirrorRegistry\n");
    }
    if !line.contains("metadata") {
        text.push_str("metadata: {name: t}\n");
    }
    text + line
}

#[test]
fn a_control_character_in_any_string_is_refused_naming_the_field() {
    for (field, line) in STRING_FIELDS {
        // A value that would be fine there, but for the one character.
        let good = match *field {
            "apiVersion" => "mirrorregistry.io/v1alpha1",
            "kind" => "MirrorRegistry",
            f if f.ends_with("File")
                || f.ends_with(".path")
                || f.ends_with("root")
                || f.ends_with("archive") =>
            {
                "/srv/x"
            }
            _ => "x1",
        };
        for (c, escape) in [
            ('\n', "\\n"),
            ('\r', "\\r"),
            ('\t', "\\t"),
            ('\0', "\\0"),
            ('\u{1b}', "\\e"),
            ('\u{7f}', "\\x7f"),
            ('\u{85}', "\\N"),
            ('\u{2028}', "\\L"),
        ] {
            let value = format!("\"{good}{escape}ExecStartPre=/bin/touch /tmp/x\"");
            let text = with_header(&line.replace("@V@", &value));
            let got = problems(&text);
            let want = format!("U+{:04X}", u32::from(c));
            assert!(
                got.iter()
                    .any(|p| p.starts_with(&format!("{field}: ")) && p.contains(&want)),
                "spec\n{text}\nexpected a problem at {field} naming {want}, got {got:?}"
            );
            // Every message is one line, the value escaped.
            assert!(got.iter().all(|p| !p.contains(c)), "{got:?}");
        }
        // The same field with the good value is valid (the lines are right).
        let text = with_header(&line.replace("@V@", good));
        let got = problems(&text);
        assert!(
            !got.iter().any(|p| p.starts_with(&format!("{field}: "))),
            "{text}: {got:?}"
        );
    }
    // Keys of labels and annotations too.
    let got = problems(&format!("{HEAD}  labels: {{\"a\\nb\": x}}\n"));
    assert!(
        got.iter()
            .any(|p| p.starts_with("metadata.labels[\"a\\nb\"]: key")),
        "{got:?}"
    );
}

#[test]
fn a_system_directory_is_refused_for_root_and_data_paths_naming_the_field() {
    use mirror_registry::api::validate::SYSTEM_DIRS;
    for policy in ["Retain", "Delete"] {
        for dir in SYSTEM_DIRS {
            let dir = dir.replace("/*", "/alice");
            let shown = if dir == "/" {
                String::new()
            } else {
                dir.clone()
            };
            // The same directory however it is written.
            for written in [
                dir.clone(),
                format!("{shown}/"),
                format!("{shown}/."),
                format!("{}//", shown.replacen('/', "//", 1)),
                shown.replace('/', "/./"),
            ] {
                if written.is_empty() {
                    continue;
                }
                for (field, spec) in [
                    ("spec.root", format!("  root: \"{written}\"\n")),
                    (
                        "spec.storage.path",
                        format!("  storage: {{path: \"{written}\"}}\n"),
                    ),
                    (
                        "spec.database.path",
                        format!("  database: {{path: \"{written}\"}}\n"),
                    ),
                ] {
                    let text = format!("{HEAD}spec:\n  deletionPolicy: {policy}\n{spec}");
                    let got = problems(&text);
                    assert!(
                        got.iter()
                            .any(|p| p.starts_with(&format!("{field}: must not be "))
                                && p.contains("system directory")),
                        "{text}: {got:?}"
                    );
                }
            }
        }
    }
    // Below a system directory is where a registry's own directories go.
    for ok in [
        "/var/lib/mirror-registry/t",
        "/srv/t-storage",
        "/home/alice/registry",
        "/tmp/t",
        "/opt/t/data",
    ] {
        let text = format!("{HEAD}spec:\n  root: {ok}\n  storage: {{path: {ok}/blobs}}\n");
        assert_eq!(problems(&text), Vec::<String>::new(), "{text}");
    }
}

#[test]
fn paths_are_normalised() {
    let host = defaults::HostFacts {
        fqdn: "h.example.org".into(),
    };
    let l = load::parse(
        Path::new("/s/t.yaml"),
        format!("{HEAD}spec:\n  engine: quay\n  root: /srv//t/./root/\n  storage: {{path: /srv/t/blobs/}}\n  database: {{path: /srv/./t/db}}\n  initUser: {{passwordFile: /etc/t//pw}}\n").as_bytes(),
    )
    .unwrap();
    let r = defaults::resolve(&l.resource, &l.name, &host);
    assert_eq!(r.root, PathBuf::from("/srv/t/root"));
    assert_eq!(r.root.to_str(), Some("/srv/t/root"));
    assert_eq!(
        r.storage,
        defaults::Storage::Path(PathBuf::from("/srv/t/blobs"))
    );
    assert_eq!(
        r.database,
        Some(defaults::Storage::Path(PathBuf::from("/srv/t/db")))
    );
    assert_eq!(
        r.init_password_file.as_deref().and_then(|p| p.to_str()),
        Some("/etc/t/pw")
    );
}
