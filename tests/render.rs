//! Golden files of everything render writes. Regenerate after an intended
//! change with `UPDATE_GOLDEN=1 cargo test --test render` and review the diff.

use std::path::{Path, PathBuf};

use mirror_registry::api::{defaults, load};
use mirror_registry::render::{self, Context};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn context() -> Context {
    Context {
        podman: PathBuf::from("/usr/bin/podman"),
        wanted_by: "multi-user.target".into(),
    }
}

fn render_example(example: &str) -> render::Desired {
    let path = repo().join("examples").join(format!("{example}.yaml"));
    let loaded = load::parse(&path, &std::fs::read(&path).unwrap()).unwrap();
    let host = defaults::HostFacts {
        fqdn: "registry.example.org".into(),
    };
    let resolved = defaults::resolve(&loaded.resource, &loaded.name, &host);
    render::render(&resolved, &context()).unwrap()
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
