//! Golden files of everything render writes. Regenerate after an intended
//! change with `UPDATE_GOLDEN=1 cargo test --test render` and review the diff.

use std::path::{Path, PathBuf};

use mirror_registry::api::{defaults, load};
use mirror_registry::render::quay::QuaySecrets;
use mirror_registry::render::{self, Context, Inputs};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn context() -> Context {
    Context {
        podman: PathBuf::from("/usr/bin/podman"),
        wanted_by: "multi-user.target".into(),
    }
}

/// Fixed stand-ins for the secrets the host generates, so golden files are
/// stable; each shaped like a value that needs quoting in YAML.
fn fake_secrets() -> Inputs {
    Inputs {
        quay: Some(QuaySecrets {
            redis_password: "fake-redis-password".into(),
            secret_key: "fake-secret-key".into(),
            database_secret_key: "12345".into(),
        }),
        ..Inputs::default()
    }
}

fn render_example(example: &str) -> render::Desired {
    render_example_with(example, &fake_secrets())
}

fn render_example_with(example: &str, inputs: &Inputs) -> render::Desired {
    let path = repo().join("examples").join(format!("{example}.yaml"));
    let loaded = load::parse(&path, &std::fs::read(&path).unwrap()).unwrap();
    let host = defaults::HostFacts {
        fqdn: "registry.example.org".into(),
    };
    let resolved = defaults::resolve(&loaded.resource, &loaded.name, &host);
    render::render_with(&resolved, &context(), inputs).unwrap()
}

fn golden(dir: &Path, name: &str, actual: &str) {
    let path = dir.join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1", path.display()));
    assert!(
        expected == actual,
        "{} differs from the rendered output:\n{actual}\nRun with UPDATE_GOLDEN=1 to accept.",
        path.display()
    );
}

fn check_example(example: &str) -> render::Desired {
    let d = render_example(example);
    let dir = repo().join("tests/golden").join(example);
    for u in d.all_units() {
        golden(&dir, &u.name, &u.content);
    }
    for f in &d.files {
        golden(
            &dir,
            f.path.file_name().unwrap().to_str().unwrap(),
            &f.content,
        );
    }
    // Nothing stale in the golden directory either.
    let mut expected: Vec<String> = d.all_units().map(|u| u.name.clone()).collect();
    expected.extend(
        d.files
            .iter()
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned()),
    );
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    expected.sort();
    present.sort();
    assert_eq!(present, expected);
    d
}

#[test]
fn minimal_distribution_golden() {
    let d = check_example("minimal");
    assert_eq!(d.pod, "minimal-pod");
    assert_eq!(d.pod_unit.name, "minimal-pod.service");
    assert_eq!(d.units[0].name, "minimal-registry.service");
    assert_eq!(d.components[0].container, "minimal-registry");
    assert_eq!(d.volumes, ["minimal-storage"]);
    assert!(d.data_paths.is_empty());
    assert!(d.pod_unit.content.contains("--publish 8443:5000"));
    assert!(d.units[0].content.contains("Restart=always"));
    assert!(d.units[0].content.contains("--pull never"));
    assert_eq!(d.images, ["docker.io/library/registry:2"]);
}

#[test]
fn custom_tls_distribution_golden() {
    let d = check_example("custom-tls");
    assert_eq!(d.data_paths, [PathBuf::from("/srv/mirror-registry/blobs")]);
    assert!(d.volumes.is_empty());
    assert!(d.pod_unit.content.contains("--publish 5443:5000"));
    assert!(d.files[0]
        .content
        .contains("host: https://mirror.example.org:5443"));
}

#[test]
fn render_is_pure_and_secret_free() {
    let a = render_example("gitops");
    let b = render_example("gitops");
    assert_eq!(a, b);
    for u in a.all_units() {
        for word in ["password", "BEGIN", "PRIVATE"] {
            assert!(
                !u.content.to_lowercase().contains(&word.to_lowercase()),
                "{} has {word}",
                u.name
            );
        }
    }
}

#[test]
fn a_port_change_touches_only_the_pod_unit() {
    let path = repo().join("examples/minimal.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let host = defaults::HostFacts {
        fqdn: "h.example.org".into(),
    };
    let base = load::parse(&path, text.as_bytes()).unwrap();
    let moved = load::parse(&path, format!("{text}  port: 9443\n").as_bytes()).unwrap();
    let a = render::render(
        &defaults::resolve(&base.resource, &base.name, &host),
        &context(),
    )
    .unwrap();
    let b = render::render(
        &defaults::resolve(&moved.resource, &moved.name, &host),
        &context(),
    )
    .unwrap();
    assert_ne!(a.pod_unit, b.pod_unit);
    assert_eq!(a.units, b.units);
    // The registry's advertised host changes with the port.
    assert_ne!(a.files, b.files);
}

#[test]
fn quay_golden() {
    let d = check_example("quay");
    // The original's names and ordering.
    assert_eq!(d.pod, "quay-pod");
    assert_eq!(d.pod_unit.name, "quay-pod.service");
    let units: Vec<&str> = d.units.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(units, ["quay-redis.service", "quay-app.service"]);
    let containers: Vec<&str> = d.components.iter().map(|c| c.container.as_str()).collect();
    assert_eq!(containers, ["quay-redis", "quay-app"]);
    assert!(d.pod_unit.content.contains("--publish 8443:8443"));
    assert!(d
        .pod_unit
        .content
        .contains("--infra-image registry.access.redhat.com/ubi8/pause:8.10-5"));
    let app = &d.units[1].content;
    assert!(app.contains("Requires=quay-pod.service quay-redis.service\n"));
    assert!(app.contains("After=quay-pod.service quay-redis.service\n"));
    for mount in [
        "--volume /var/lib/mirror-registry/quay/config/quay:/quay-registry/conf/stack:Z,U",
        "--volume sqlite-storage:/sqlite:Z,U",
        "--volume quay-storage:/datastorage:Z,U",
    ] {
        assert!(app.contains(mount), "{mount}");
    }
    assert!(app.contains("registry.redhat.io/quay/quay-rhel8:v3.12.14 \\\n\tregistry\n"));
    assert_eq!(
        d.images,
        [
            "registry.redhat.io/rhel8/redis-6:1-1766406130",
            "registry.redhat.io/quay/quay-rhel8:v3.12.14",
            "registry.access.redhat.com/ubi8/pause:8.10-5",
        ]
    );
    assert_eq!(d.volumes, ["quay-storage", "sqlite-storage"]);
    assert_eq!(d.health_path, "/health/instance");

    // Secrets only in 0600 files, never in a unit.
    let config = &d.files[0];
    assert!(config.path.ends_with("config/quay/config.yaml"));
    assert_eq!(config.mode, 0o600);
    assert_eq!(d.files[1].mode, 0o600);
    for key in [
        "SERVER_HOSTNAME: 'mirror.example.org:8443'",
        "DB_URI: sqlite:////sqlite/quay_sqlite.db",
        "SECRET_KEY: 'fake-secret-key'",
        "DATABASE_SECRET_KEY: '12345'",
        "FEATURE_USER_INITIALIZE: true",
        "SETUP_COMPLETE: true",
        "CREATE_NAMESPACE_ON_PUSH: true",
        "    - storage_path: /datastorage",
    ] {
        assert!(config.content.contains(key), "{key}");
    }
    assert_eq!(
        config
            .content
            .matches("  password: 'fake-redis-password'")
            .count(),
        2,
        "both Redis blocks carry the password"
    );
    assert!(d.files[1]
        .content
        .contains("requirepass \"fake-redis-password\"\n"));
    for u in d.all_units() {
        for secret in ["fake-redis-password", "fake-secret-key", "12345"] {
            assert!(!u.content.contains(secret), "{} holds {secret}", u.name);
        }
    }
    assert!(!format!("{:?}", d.files).contains("fake-secret-key"));

    // The TLS pair is copied into Quay's config directory as ssl.cert/ssl.key.
    let copies: Vec<(String, String, u32)> = d
        .copies
        .iter()
        .map(|c| {
            (
                c.from.display().to_string(),
                c.to.display().to_string(),
                c.mode,
            )
        })
        .collect();
    assert_eq!(
        copies,
        [
            (
                "/var/lib/mirror-registry/quay/tls/tls.crt".to_string(),
                "/var/lib/mirror-registry/quay/config/quay/ssl.cert".to_string(),
                0o600
            ),
            (
                "/var/lib/mirror-registry/quay/tls/tls.key".to_string(),
                "/var/lib/mirror-registry/quay/config/quay/ssl.key".to_string(),
                0o600
            ),
        ]
    );
}

#[test]
fn quay_without_secrets_renders_placeholders_and_the_same_units() {
    let with = render_example("quay");
    let without = render_example_with("quay", &Inputs::default());
    assert_eq!(with.pod_unit, without.pod_unit);
    assert_eq!(with.units, without.units);
    assert!(without.files[0].content.contains(render::quay::PLACEHOLDER));
    assert!(!without.files[0].content.contains("fake-"));
}

#[test]
fn a_new_quay_image_changes_only_the_app_unit() {
    let path = repo().join("examples/quay.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let host = defaults::HostFacts {
        fqdn: "h.example.org".into(),
    };
    let base = load::parse(&path, text.as_bytes()).unwrap();
    let upgraded = load::parse(
        &path,
        format!("{text}  images:\n    quay: registry.example.org/quay/quay-rhel8:v3.13.0\n")
            .as_bytes(),
    )
    .unwrap();
    let a = render::render_with(
        &defaults::resolve(&base.resource, &base.name, &host),
        &context(),
        &fake_secrets(),
    )
    .unwrap();
    let b = render::render_with(
        &defaults::resolve(&upgraded.resource, &upgraded.name, &host),
        &context(),
        &fake_secrets(),
    )
    .unwrap();
    assert_eq!(a.pod_unit, b.pod_unit);
    assert_eq!(a.units[0], b.units[0], "redis unchanged");
    assert_ne!(a.units[1], b.units[1]);
    assert_eq!(a.files, b.files, "config and secrets unchanged");
}

// Day two: the garbage collection timer and the read-only config.

#[test]
fn day_two_golden() {
    use mirror_registry::render::gc::{self, GcCommand};
    let d = check_example("day-two");
    assert_eq!(
        d.data_paths,
        [PathBuf::from("/srv/mirror-registry/day-two")]
    );
    let path = repo().join("examples/day-two.yaml");
    let loaded = load::parse(&path, &std::fs::read(&path).unwrap()).unwrap();
    let host = defaults::HostFacts {
        fqdn: "registry.example.org".into(),
    };
    let r = defaults::resolve(&loaded.resource, &loaded.name, &host);
    assert_eq!(
        r.min_free,
        mirror_registry::api::day2::MinFree::Bytes(20 << 30)
    );
    let cmd = GcCommand {
        mrctl: "/usr/local/bin/mrctl".into(),
        watch_dir: "/etc/mirror-registry".into(),
        state_dir: "/var/lib/mirror-registry-controller".into(),
        scope: "system".into(),
        podman_socket: "/run/podman/podman.sock".into(),
    };
    let units = gc::units(&r, &cmd).unwrap();
    assert_eq!(
        units.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
        ["day-two-gc.service", "day-two-gc.timer"]
    );
    let dir = repo().join("tests/golden/day-two-gc");
    for u in &units {
        golden(&dir, &u.name, &u.content);
    }
    let ro = render::render_with(
        &r,
        &context(),
        &Inputs {
            read_only: true,
            ..Inputs::default()
        },
    )
    .unwrap();
    golden(&dir, "registry-config.read-only.yml", &ro.files[0].content);
    assert!(ro.files[0]
        .content
        .contains("readonly:\n      enabled: true"));
    // Only the config differs.
    assert_eq!(
        ro.all_units().collect::<Vec<_>>(),
        d.all_units().collect::<Vec<_>>()
    );
    // No schedule, no timer.
    let minimal = {
        let p = repo().join("examples/minimal.yaml");
        let l = load::parse(&p, &std::fs::read(&p).unwrap()).unwrap();
        defaults::resolve(&l.resource, &l.name, &host)
    };
    assert!(gc::units(&minimal, &cmd).unwrap().is_empty());
}
