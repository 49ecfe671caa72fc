//! `mrctl bundle` on the real host: the tarball holds mrctl, the
//! controller, the image archive (every image the engine needs, as podman
//! saved them), its manifest and a README; unpacked, `./mrctl install`
//! finds the archive beside itself, loads the image podman lacks (with
//! progress) and the registry becomes Ready. The guest test
//! (hack/test-vm-install.sh) does the same on a host with no network device.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use common::*;

const REGISTRY: &str = "localhost/mirror-registry/distribution:2.8";
const PAUSE: &str = "localhost/mirror-registry/pause:latest";

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Removes the test's image tag and controller unit.
struct Cleanup {
    tag: String,
    ctl: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let u = format!("{}.service", self.ctl);
        let _ = sh("systemctl", &["--user", "stop", &u]);
        let _ = sh("systemctl", &["--user", "disable", &u]);
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        let _ = std::fs::remove_file(format!("{home}/.config/systemd/user/{u}"));
        let _ = sh("systemctl", &["--user", "daemon-reload"]);
        let _ = sh("systemctl", &["--user", "reset-failed", &u]);
        let _ = sh("podman", &["untag", REGISTRY, &self.tag]);
        let _ = sh("podman", &["rmi", &self.tag]);
    }
}

#[test]
fn bundle_holds_everything_and_installs_from_beside_itself() {
    let mut lab = Lab::new();
    let name = unique("bundle");
    let port = free_port();
    lab.track(&name, port);
    // An image tag of this test's own: removed from podman after bundling,
    // so the install must load it from the archive.
    let tag = format!("localhost/{}/registry:2.8", unique("bundle-img"));
    let ctl = unique("bundle-ctl");
    let _cleanup = Cleanup {
        tag: tag.clone(),
        ctl: ctl.clone(),
    };
    sh_ok("podman", &["tag", REGISTRY, &tag]);
    let out = lab.dir.path().join("mirror-registry-bundle.tar.gz");

    // A bad -o is refused, having written nothing.
    let o = Command::new(env!("CARGO_BIN_EXE_mrctl"))
        .args(["bundle", "-o"])
        .arg(lab.dir.path().join("x.zip"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    // An image podman lacks is named, and nothing is written.
    let o = Command::new(env!("CARGO_BIN_EXE_mrctl"))
        .args(["bundle", "--engine", "distribution", "--registryImage"])
        .arg("localhost/no-such/image:1")
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("localhost/no-such/image:1"));
    assert!(!out.exists());

    let t0 = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_mrctl"))
        .args([
            "bundle",
            "--engine",
            "distribution",
            "--registryImage",
            &tag,
            "--pauseImage",
            PAUSE,
            "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    eprintln!(
        "FIGURE mrctl bundle (distribution): {:.2} s, {} bytes",
        t0.elapsed().as_secs_f64(),
        std::fs::metadata(&out).unwrap().len()
    );
    let listing = sh_ok("tar", &["-tzf", out.to_str().unwrap()]);
    let mut files: Vec<&str> = listing.lines().collect();
    files.sort();
    assert_eq!(
        files,
        [
            "README.md",
            "bundle.json",
            "image-archive.tar",
            "mirror-registry-controller",
            "mrctl"
        ]
    );
    let dir = lab.dir.path().join("unpacked");
    std::fs::create_dir_all(&dir).unwrap();
    sh_ok(
        "tar",
        &["-C", dir.to_str().unwrap(), "-xzf", out.to_str().unwrap()],
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("bundle.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["engines"]["distribution"]["registry"],
        tag.as_str()
    );
    assert_eq!(manifest["engines"]["distribution"]["pause"], PAUSE);
    // The archive holds both images, tagged.
    let archive_manifest = sh_ok(
        "tar",
        &[
            "-xOf",
            dir.join("image-archive.tar").to_str().unwrap(),
            "manifest.json",
        ],
    );
    for i in [&tag, PAUSE] {
        assert!(
            archive_manifest.contains(i),
            "{i} not in the archive: {archive_manifest}"
        );
    }
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(readme.contains("./mrctl install"), "{readme}");
    let v = sh_ok(dir.join("mrctl").to_str().unwrap(), &["--version"]);
    assert!(v.starts_with("mrctl "), "{v}");
    sh_ok(
        dir.join("mirror-registry-controller").to_str().unwrap(),
        &["--version"],
    );

    // The tag is gone from podman: only the archive has it now.
    sh_ok("podman", &["untag", REGISTRY, &tag]);
    assert!(!sh("podman", &["image", "exists", &tag]).status.success());

    let log = lab.dir.path().join("controller.log");
    let t0 = Instant::now();
    let child = Command::new(dir.join("mrctl"))
        .current_dir(&dir)
        .args(["--watch-dir", lab.watch().to_str().unwrap()])
        .args(["--state-dir", lab.state().to_str().unwrap()])
        .args(["--scope", "user"])
        .args([
            "install",
            "--engine",
            "distribution",
            "--name",
            &name,
            "--quayHostname",
            &format!("localhost:{port}"),
            "--quayRoot",
            lab.root(&name).to_str().unwrap(),
            "--controller-unit",
            &ctl,
            "--controller-log",
            log.to_str().unwrap(),
            "--timeout",
            "120s",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n--- controller log\n{}",
        show(&o),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    eprintln!(
        "FIGURE ./mrctl install from the bundle -> Ready: {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("image archive beside mrctl"), "{stdout}");
    assert!(stdout.contains(&format!("loading {tag}")), "{stdout}");
    assert!(stdout.contains("100%"), "progress shown: {stdout}");
    assert!(stdout.contains("is Ready."), "{stdout}");
    assert!(sh("podman", &["image", "exists", &tag]).status.success());
    // The spec pins the bundle's images and names its archive.
    let spec = std::fs::read_to_string(lab.spec_path(&name)).unwrap();
    assert!(spec.contains(&format!("registry: {tag}")), "{spec}");
    assert!(
        spec.contains(&format!(
            "archive: {}",
            dir.join("image-archive.tar").display()
        )),
        "{spec}"
    );
    // The controller unit runs the bundle's controller.
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let unit = std::fs::read_to_string(
        Path::new(&home).join(format!(".config/systemd/user/{ctl}.service")),
    )
    .unwrap();
    assert!(
        unit.contains(&dir.join("mirror-registry-controller").display().to_string()),
        "{unit}"
    );
    assert!(serving(port));
}
