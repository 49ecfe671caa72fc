//! Day two on the real host: storage usage in status, garbage collection
//! that keeps every child of an index, backup and restore, a full disk.
//! Images are built here as OCI layouts (random layers, so every blob is
//! this test's own) and pushed with skopeo.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use mirror_registry::api::{Phase, Status};
use rand::RngCore;
use sha2::{Digest, Sha256};

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn global(lab: &Lab) -> Vec<String> {
    vec![
        "--watch-dir".into(),
        lab.watch().display().to_string(),
        "--state-dir".into(),
        lab.state().display().to_string(),
        "--scope".into(),
        "user".into(),
    ]
}

fn mrctl(lab: &Lab, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mrctl"))
        .args(global(lab))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn mrctl_ok(lab: &Lab, args: &[&str]) -> String {
    let o = mrctl(lab, args);
    assert!(o.status.success(), "mrctl {args:?}: {}", show(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// An OCI image layout being written: blobs, then `index.json` naming one
/// reference.
struct Layout {
    dir: PathBuf,
}

/// A blob as a descriptor needs it.
#[derive(Clone, Debug)]
struct Blob {
    digest: String,
    size: usize,
}

impl Layout {
    fn new(dir: PathBuf) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout { dir }
    }

    fn blob(&self, bytes: &[u8]) -> Blob {
        let digest = digest_of(bytes);
        let hex = digest.trim_start_matches("sha256:");
        std::fs::write(self.dir.join("blobs/sha256").join(hex), bytes).unwrap();
        Blob {
            digest,
            size: bytes.len(),
        }
    }

    /// A gzipped tar with one file of `kib` KiB of random bytes.
    fn random_layer(&self, kib: usize) -> Blob {
        let mut data = vec![0u8; kib * 1024];
        rand::rng().fill_bytes(&mut data);
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, "data.bin", &data[..]).unwrap();
        let tar = tar.into_inner().unwrap();
        let mut gz = Command::new("gzip")
            .args(["-n", "-1", "-c"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = gz.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&tar).unwrap());
        let out = gz.wait_with_output().unwrap();
        writer.join().unwrap();
        self.blob(&out.stdout)
    }

    /// An image manifest for `arch` over `layers`; returns it and its config.
    fn image(&self, arch: &str, layers: &[Blob]) -> (Blob, Blob) {
        let diff_ids: Vec<String> = layers.iter().map(|l| format!("\"{}\"", l.digest)).collect();
        let config = self.blob(
            format!(
                r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}},"config":{{}},"created":"{}"}}"#,
                diff_ids.join(","),
                unique("created")
            )
            .as_bytes(),
        );
        let layers_json: Vec<String> = layers
            .iter()
            .map(|l| {
                format!(
                    r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}"#,
                    l.digest, l.size
                )
            })
            .collect();
        let manifest = self.blob(
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{}]}}"#,
                config.digest,
                config.size,
                layers_json.join(",")
            )
            .as_bytes(),
        );
        (manifest, config)
    }

    /// An image index over `(manifest, arch)`.
    fn index(&self, children: &[(Blob, &str)]) -> Blob {
        let list: Vec<String> = children
            .iter()
            .map(|(m, arch)| {
                format!(
                    r#"{{"mediaType":"{MANIFEST}","digest":"{}","size":{},"platform":{{"architecture":"{arch}","os":"linux"}}}}"#,
                    m.digest, m.size
                )
            })
            .collect();
        self.blob(
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[{}]}}"#,
                list.join(",")
            )
            .as_bytes(),
        )
    }

    /// `index.json` naming `top` as reference `tag`; the skopeo source.
    fn tagged(&self, top: &Blob, media_type: &str, tag: &str) -> String {
        std::fs::write(
            self.dir.join("index.json"),
            format!(
                r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{media_type}","digest":"{}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"{tag}"}}}}]}}"#,
                top.digest, top.size
            ),
        )
        .unwrap();
        format!("oci:{}:{tag}", self.dir.display())
    }
}

/// The manifest digest `reference` resolves to, read raw from the registry.
fn remote_digest(auth: &Path, reference: &str) -> String {
    let raw = Command::new("skopeo")
        .args(["--command-timeout", "60s", "inspect", "--raw", "--authfile"])
        .arg(auth)
        .arg(reference)
        .output()
        .unwrap();
    assert!(
        raw.status.success(),
        "inspect {reference}: {}",
        String::from_utf8_lossy(&raw.stderr)
    );
    digest_of(&raw.stdout)
}

/// Pulls `reference` (every platform) into a fresh OCI layout; skopeo
/// checks each blob's digest as it copies.
fn pull_all(auth: &Path, reference: &str, into: &Path) {
    let _ = std::fs::remove_dir_all(into);
    skopeo(
        auth,
        &[
            "copy",
            "--all",
            reference,
            &format!("oci:{}:pulled", into.display()),
        ],
    );
}

fn blob_file(storage: &Path, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    storage.join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ))
}

/// A Ready distribution registry with its blobs at a path this test reads.
struct Registry {
    name: String,
    port: u16,
    path: PathBuf,
    auth: PathBuf,
    status: Status,
}

fn ready_registry(lab: &mut Lab, prefix: &str, storage: &Path, extra: &str) -> Registry {
    let name = unique(prefix);
    let port = free_port();
    lab.track(&name, port);
    let spec = lab.spec(
        &name,
        port,
        &format!("  storage:\n    path: {}\n{extra}", storage.display()),
    );
    lab.put(&name, &spec);
    let path = lab.spec_path(&name);
    let status = wait_phase(&path, Phase::Ready, Duration::from_secs(120));
    let (user, password) = credentials(&lab.root(&name));
    let auth = lab.dir.path().join(format!("{name}-auth.json"));
    login(&auth, &format!("localhost:{port}"), &user, &password);
    Registry {
        name,
        port,
        path,
        auth,
        status,
    }
}

impl Registry {
    fn reference(&self, repo_tag: &str) -> String {
        format!("docker://localhost:{}/{repo_tag}", self.port)
    }
}

#[test]
fn gc_keeps_every_child_of_an_index_and_reclaims_a_deleted_image() {
    let mut lab = Lab::new();
    lab.start(&[]);
    let storage = lab.dir.path().join("gc-storage");
    let reg = ready_registry(&mut lab, "d2-gc", &storage, "");
    let st = reg.status.storage.clone().expect("status.storage");
    assert_eq!(st.path, storage);
    assert!(st.free_bytes > 0);
    let avail = condition(&reg.status, "StorageAvailable").expect("StorageAvailable");
    assert_eq!(
        (avail.status.as_str(), avail.reason.as_str()),
        ("True", "Sufficient")
    );

    // A two-platform index; two plain images sharing one layer.
    let oci = Layout::new(lab.dir.path().join("oci"));
    let (amd_layer, arm_layer) = (oci.random_layer(256), oci.random_layer(256));
    let (amd, amd_cfg) = oci.image("amd64", std::slice::from_ref(&amd_layer));
    let (arm, arm_cfg) = oci.image("arm64", std::slice::from_ref(&arm_layer));
    let index = oci.index(&[(amd.clone(), "amd64"), (arm.clone(), "arm64")]);
    let src = oci.tagged(&index, INDEX, "multi");
    skopeo(
        &reg.auth,
        &[
            "copy",
            "--all",
            "--preserve-digests",
            &src,
            &reg.reference("multi/app:1"),
        ],
    );
    let shared = oci.random_layer(128);
    let (a_only, b_only) = (oci.random_layer(512), oci.random_layer(512));
    let (a, a_cfg) = oci.image("amd64", &[shared.clone(), a_only.clone()]);
    let (b, b_cfg) = oci.image("amd64", &[shared.clone(), b_only.clone()]);
    let src = oci.tagged(&a, MANIFEST, "a");
    skopeo(
        &reg.auth,
        &[
            "copy",
            "--preserve-digests",
            &src,
            &reg.reference("plain/a:1"),
        ],
    );
    let src = oci.tagged(&b, MANIFEST, "b");
    skopeo(
        &reg.auth,
        &[
            "copy",
            "--preserve-digests",
            &src,
            &reg.reference("plain/b:1"),
        ],
    );
    assert_eq!(
        remote_digest(&reg.auth, &reg.reference("multi/app:1")),
        index.digest
    );
    for d in [&b_only.digest, &b_cfg.digest, &b.digest] {
        assert!(blob_file(&storage, d).exists(), "{d} stored");
    }

    // B's manifest deleted through the registry's API.
    skopeo(&reg.auth, &["delete", &reg.reference("plain/b:1")]);

    let dry = mrctl_ok(&lab, &["gc", &reg.name, "--dry-run"]);
    for d in [&b_only.digest, &b_cfg.digest] {
        assert!(
            dry.contains(&format!("would delete blob {d}")),
            "{d} in:\n{dry}"
        );
        assert!(blob_file(&storage, d).exists(), "dry run deleted nothing");
    }
    for d in [
        &shared.digest,
        &a_only.digest,
        &amd_layer.digest,
        &arm_layer.digest,
        &amd.digest,
        &arm.digest,
    ] {
        assert!(
            !dry.contains(d.as_str()),
            "{d} is not to be deleted:\n{dry}"
        );
    }

    let t0 = Instant::now();
    let out = mrctl_ok(&lab, &["gc", &reg.name]);
    eprintln!(
        "FIGURE mrctl gc (small store): {:.2} s\n{out}",
        t0.elapsed().as_secs_f64()
    );
    assert!(out.contains("read-write again"), "{out}");
    // mrctl recorded what the registry now runs with: the controller,
    // looking at it after the restarts, does not restart it once more.
    let started = started_at(&format!("{}-registry", reg.name));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        started_at(&format!("{}-registry", reg.name)),
        started,
        "no restart after the collection:\n{}",
        lab.logs()
    );
    for d in [&b_only.digest, &b_cfg.digest] {
        assert!(!blob_file(&storage, d).exists(), "{d} collected");
    }
    // Everything a tag reaches is there and pulls, each platform included.
    for d in [
        &index.digest,
        &amd.digest,
        &arm.digest,
        &amd_cfg.digest,
        &arm_cfg.digest,
        &amd_layer.digest,
        &arm_layer.digest,
        &shared.digest,
        &a_only.digest,
        &a.digest,
        &a_cfg.digest,
    ] {
        assert!(blob_file(&storage, d).exists(), "{d} kept");
    }
    let pulled = lab.dir.path().join("pulled");
    pull_all(&reg.auth, &reg.reference("multi/app:1"), &pulled);
    for child in [&amd, &arm] {
        let by_digest = format!("docker://localhost:{}/multi/app@{}", reg.port, child.digest);
        assert_eq!(remote_digest(&reg.auth, &by_digest), child.digest);
        pull_all(&reg.auth, &by_digest, &pulled);
    }
    pull_all(&reg.auth, &reg.reference("plain/a:1"), &pulled);
    assert_eq!(
        remote_digest(&reg.auth, &reg.reference("plain/a:1")),
        a.digest
    );

    // Writable again; the report reaches status and the events.
    let src = oci.tagged(&b, MANIFEST, "b");
    skopeo(
        &reg.auth,
        &[
            "copy",
            "--preserve-digests",
            &src,
            &reg.reference("plain/b:2"),
        ],
    );
    let st = wait_for(
        Duration::from_secs(60),
        "status.storage.lastGarbageCollection",
        || {
            file_status(&reg.path)
                .and_then(|s| s.storage)
                .and_then(|s| s.last_garbage_collection)
        },
    );
    assert!(st.blobs_deleted >= 2, "{st:?}");
    assert!(st.reclaimed_bytes >= 512 * 1024, "{st:?}");
    assert!(st.read_only_millis > 0, "{st:?}");
    eprintln!(
        "FIGURE gc read-only window (small store): {} ms",
        st.read_only_millis
    );
    let describe = mrctl_ok(&lab, &["describe", &reg.name]);
    assert!(describe.contains("GarbageCollected"), "{describe}");
    assert!(describe.contains("Last Garbage Collection:"), "{describe}");
    assert!(
        describe.contains(&format!("Path: {}", storage.display()))
            || describe.contains(&storage.display().to_string()),
        "{describe}"
    );
    let wide = mrctl_ok(&lab, &["get", "-o", "wide"]);
    assert!(wide.lines().next().unwrap().contains("STORAGE"), "{wide}");
    let config =
        std::fs::read_to_string(lab.root(&reg.name).join("config/registry-config.yml")).unwrap();
    assert!(!config.contains("readonly"), "{config}");
}

/// A size-limited tmpfs, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&dir).unwrap();
        sh_ok(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
                &dir.display().to_string(),
            ],
        );
        Tmpfs(dir)
    }

    fn resize(&self, size: &str) {
        sh_ok(
            "mount",
            &[
                "-o",
                &format!("remount,size={size}"),
                &self.0.display().to_string(),
            ],
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = sh("umount", &["-l", &self.0.display().to_string()]);
    }
}

fn storage_condition(path: &Path) -> Option<(String, String, String)> {
    let s = file_status(path)?;
    let c = condition(&s, "StorageAvailable")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// skopeo copy that may fail; returns whether it did, its stderr and how long it took.
fn try_copy(auth: &Path, args: &[&str]) -> (bool, String, Duration) {
    let t0 = Instant::now();
    let o = Command::new("skopeo")
        .args(["--command-timeout", "120s", "copy", "--authfile"])
        .arg(auth)
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        t0.elapsed(),
    )
}

fn file_digest(p: &Path) -> String {
    digest_of(&std::fs::read(p).unwrap())
}

#[test]
fn a_full_disk_fails_the_push_keeps_serving_and_recovers_without_a_restart() {
    let mut lab = Lab::new();
    lab.start(&["--resync-interval", "2s"]);
    let disk = Tmpfs::mount(lab.dir.path().join("small"), "40m");
    let storage = disk.0.join("storage");
    let reg = ready_registry(&mut lab, "d2-full", &storage, "    minFree: 8Mi\n");
    let oci = Layout::new(lab.dir.path().join("oci"));
    let small = oci.random_layer(1024);
    let (a, a_cfg) = oci.image("amd64", std::slice::from_ref(&small));
    let src = oci.tagged(&a, MANIFEST, "a");
    skopeo(
        &reg.auth,
        &[
            "copy",
            "--preserve-digests",
            &src,
            &reg.reference("kept/a:1"),
        ],
    );
    let (s, reason, _) = wait_for(Duration::from_secs(30), "StorageAvailable", || {
        storage_condition(&reg.path)
    });
    assert_eq!((s.as_str(), reason.as_str()), ("True", "Sufficient"));
    let started = started_at(&format!("{}-registry", reg.name));

    // 48 MiB of random bytes do not fit on 40 MiB.
    let big = oci.random_layer(48 * 1024);
    let (b, _) = oci.image("amd64", std::slice::from_ref(&big));
    let src_b = oci.tagged(&b, MANIFEST, "b");
    let (ok, err, took) = try_copy(
        &reg.auth,
        &["--preserve-digests", &src_b, &reg.reference("big/b:1")],
    );
    eprintln!(
        "FIGURE push onto a full disk failed after {:.1} s: {}",
        took.as_secs_f64(),
        err.trim()
    );
    assert!(!ok, "the push onto a full disk failed");
    assert!(took < Duration::from_secs(100), "no hang: {took:?}");

    // A failed upload keeps what it wrote (the registry purges uploads
    // after a week); one cut short early may leave a few MiB: a client's
    // retry takes the rest.
    let mut seen = wait_for(Duration::from_secs(30), "StorageAvailable False", || {
        storage_condition(&reg.path).filter(|c| c.0 == "False")
    });
    for _ in 0..3 {
        if seen.1 == "Full" {
            break;
        }
        let (ok, err, _) = try_copy(
            &reg.auth,
            &["--preserve-digests", &src_b, &reg.reference("big/b:1")],
        );
        assert!(!ok, "the retried push failed too");
        eprintln!(
            "FIGURE retried push onto a nearly full disk: {}",
            err.trim()
        );
        seen = wait_for(Duration::from_secs(30), "StorageAvailable Full", || {
            storage_condition(&reg.path).filter(|c| c.1 == "Full")
        });
    }
    let (s, reason, message) = seen;
    assert_eq!(reason, "Full", "{message}");
    assert!(
        message.contains(&storage.display().to_string()),
        "names the path: {message}"
    );
    assert_eq!(s, "False");
    let st = file_status(&reg.path).unwrap();
    assert_eq!(st.phase, Phase::Ready, "pulls are still served: {st:?}");
    let wide = mrctl_ok(&lab, &["get", &reg.name, "-o", "wide"]);
    assert!(wide.contains("B!"), "storage short, marked: {wide}");
    let describe = mrctl_ok(&lab, &["describe", &reg.name]);
    assert!(
        describe.contains("StorageAvailable") && describe.contains("Full"),
        "{describe}"
    );

    // What was stored is intact and pulls.
    for d in [&small.digest, &a_cfg.digest, &a.digest] {
        assert_eq!(&file_digest(&blob_file(&storage, d)), d, "blob {d} intact");
    }
    let pulled = lab.dir.path().join("pulled");
    pull_all(&reg.auth, &reg.reference("kept/a:1"), &pulled);
    assert_eq!(
        remote_digest(&reg.auth, &reg.reference("kept/a:1")),
        a.digest
    );

    // Space freed (the filesystem grown): it recovers by itself.
    disk.resize("160m");
    let (_, reason, message) = wait_for(Duration::from_secs(30), "StorageAvailable True", || {
        storage_condition(&reg.path).filter(|c| c.0 == "True")
    });
    assert_eq!(reason, "Sufficient", "{message}");
    skopeo(
        &reg.auth,
        &[
            "copy",
            "--preserve-digests",
            &src_b,
            &reg.reference("big/b:1"),
        ],
    );
    assert_eq!(
        remote_digest(&reg.auth, &reg.reference("big/b:1")),
        b.digest
    );
    assert_eq!(
        started_at(&format!("{}-registry", reg.name)),
        started,
        "nobody restarted the registry"
    );
    let used = file_status(&reg.path)
        .and_then(|s| s.storage)
        .map(|s| s.used_bytes);
    eprintln!("FIGURE storage used after recovery: {used:?}");
    lab.stop();
    drop(lab);
}

#[test]
fn while_mrctl_holds_maintenance_the_controller_keeps_the_registry_read_only() {
    let mut lab = Lab::new();
    lab.start(&["--resync-interval", "2s"]);
    let storage = lab.dir.path().join("ro-storage");
    let reg = ready_registry(&mut lab, "d2-ro", &storage, "");
    let oci = Layout::new(lab.dir.path().join("oci"));
    let layer = oci.random_layer(256);
    let (a, _) = oci.image("amd64", std::slice::from_ref(&layer));
    let src = oci.tagged(&a, MANIFEST, "a");
    skopeo(
        &reg.auth,
        &["copy", "--preserve-digests", &src, &reg.reference("ro/a:1")],
    );
    let config = lab.root(&reg.name).join("config/registry-config.yml");

    let started = |n: &str| {
        let o = sh(
            "podman",
            &["inspect", "--format", "{{.State.StartedAt}}", n],
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let container = format!("{}-registry", reg.name);
    let started_before = started(&container);
    // This process holds the marker, as `mrctl gc` does while it collects.
    mirror_registry::store::maintenance::take(&lab.state(), &reg.name, "a test", true).unwrap();
    wait_for(Duration::from_secs(30), "the read-only config", || {
        std::fs::read_to_string(&config)
            .ok()
            .filter(|c| c.contains("readonly"))
    });
    // Served by the container restarted with that config, not the old one.
    wait_for(
        Duration::from_secs(30),
        "the registry to serve again",
        || {
            let now = started(&container);
            (!now.is_empty() && now != started_before && serving(reg.port)).then_some(())
        },
    );
    let (b, _) = oci.image("amd64", &[oci.random_layer(256)]);
    let src_b = oci.tagged(&b, MANIFEST, "b");
    let (ok, err, took) = try_copy(
        &reg.auth,
        &["--preserve-digests", &src_b, &reg.reference("ro/b:1")],
    );
    assert!(!ok, "a push is refused while read-only");
    assert!(
        took < Duration::from_secs(30),
        "refused at once, not a hang: {took:?}"
    );
    assert!(
        err.contains("unsupported") || err.contains("405"),
        "a clear error: {err}"
    );
    eprintln!(
        "FIGURE push while read-only refused after {:.2} s: {}",
        took.as_secs_f64(),
        err.trim()
    );
    let pulled = lab.dir.path().join("pulled");
    pull_all(&reg.auth, &reg.reference("ro/a:1"), &pulled);
    assert_eq!(remote_digest(&reg.auth, &reg.reference("ro/a:1")), a.digest);

    let started_read_only = started(&container);
    mirror_registry::store::maintenance::release(&lab.state(), &reg.name).unwrap();
    wait_for(Duration::from_secs(30), "the read-write config", || {
        std::fs::read_to_string(&config)
            .ok()
            .filter(|c| !c.contains("readonly"))
    });
    // The read-only container answers until the controller restarts it:
    // wait for its successor.
    wait_for(
        Duration::from_secs(30),
        "the registry to serve again",
        || {
            let now = started(&container);
            (!now.is_empty() && now != started_read_only && serving(reg.port)).then_some(())
        },
    );
    skopeo(
        &reg.auth,
        &[
            "copy",
            "--preserve-digests",
            &src_b,
            &reg.reference("ro/b:1"),
        ],
    );
    assert_eq!(remote_digest(&reg.auth, &reg.reference("ro/b:1")), b.digest);
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// `file` with the byte at `at` changed.
fn damaged(file: &Path, into: &Path, at: usize) {
    let mut b = std::fs::read(file).unwrap();
    b[at] ^= 0x55;
    std::fs::write(into, b).unwrap();
}

#[test]
fn backup_uninstall_restore_serves_the_same_digests_with_the_same_credentials_and_ca() {
    let mut lab = Lab::new();
    lab.start(&[]);
    let name = unique("d2-bk");
    let port = free_port();
    lab.track(&name, port);
    let root = lab.root(&name);
    lab.put(
        &name,
        &lab.spec(&name, port, "  # kept through the backup\n"),
    );
    let path = lab.spec_path(&name);
    let st = wait_phase(&path, Phase::Ready, Duration::from_secs(120));
    let ca_before = std::fs::read(st.ca_file.clone().unwrap()).unwrap();
    let (user, password) = credentials(&root);
    let auth = lab.dir.path().join("auth.json");
    let host_port = format!("localhost:{port}");
    login(&auth, &host_port, &user, &password);
    let reference = |x: &str| format!("docker://{host_port}/{x}");

    let oci = Layout::new(lab.dir.path().join("oci"));
    let (l1, l2) = (oci.random_layer(2048), oci.random_layer(256));
    let (amd, _) = oci.image("amd64", std::slice::from_ref(&l1));
    let (arm, _) = oci.image("arm64", std::slice::from_ref(&l2));
    let index = oci.index(&[(amd.clone(), "amd64"), (arm.clone(), "arm64")]);
    let src = oci.tagged(&index, INDEX, "multi");
    skopeo(
        &auth,
        &[
            "copy",
            "--all",
            "--preserve-digests",
            &src,
            &reference("bk/multi:1"),
        ],
    );
    let (plain, _) = oci.image("amd64", &[oci.random_layer(512)]);
    let src = oci.tagged(&plain, MANIFEST, "plain");
    skopeo(
        &auth,
        &["copy", "--preserve-digests", &src, &reference("bk/plain:1")],
    );

    let backup = lab.dir.path().join("bk.tar");
    let t0 = Instant::now();
    let out = mrctl_ok(
        &lab,
        &["backup", &name, "-o", &backup.display().to_string()],
    );
    eprintln!(
        "FIGURE backup (small store): {:.2} s: {out}",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(mode(&backup), 0o600, "it holds secrets");
    let listing = sh_ok("tar", &["-tf", &backup.display().to_string()]);
    for entry in [
        "mirror-registry-backup/spec.yaml",
        "root/tls/ca.key",
        "root/secrets/init-credentials",
        "mirror-registry-backup/checksums.json",
    ] {
        assert!(
            listing.lines().any(|l| l == entry),
            "{entry} in:\n{listing}"
        );
    }
    assert!(
        listing.contains("storage/docker/registry/v2/blobs/sha256/"),
        "{listing}"
    );
    // Refused over an existing file.
    assert_eq!(
        mrctl(
            &lab,
            &["backup", &name, "-o", &backup.display().to_string()]
        )
        .status
        .code(),
        Some(1)
    );

    // A cut-short or damaged copy is refused before anything is written.
    let size = std::fs::metadata(&backup).unwrap().len() as usize;
    let bytes = std::fs::read(&backup).unwrap();
    let cut = lab.dir.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..size / 2]).unwrap();
    let layer = std::fs::read(
        oci.dir
            .join("blobs/sha256")
            .join(l1.digest.trim_start_matches("sha256:")),
    )
    .unwrap();
    let at = bytes
        .windows(64)
        .position(|w| w == &layer[1000..1064])
        .expect("the layer is in the backup");
    let flipped = lab.dir.path().join("flipped.tar");
    damaged(&backup, &flipped, at + 10);
    let other = unique("d2-bk-other");
    lab.track(&other, 0);
    for bad in [&cut, &flipped] {
        let o = mrctl(
            &lab,
            &[
                "restore",
                "-f",
                &bad.display().to_string(),
                "--name",
                &other,
            ],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{}", show(&o));
        assert!(
            err.contains(&bad.display().to_string()) && err.contains("not a usable backup"),
            "{err}"
        );
        assert!(err.contains("nothing was written"), "{err}");
        assert!(!lab.spec_path(&other).exists());
        assert!(!exists("volume", &format!("{other}-storage")));
        assert!(!lab.state().join(&other).exists());
    }
    // The name in use: refused.
    let o = mrctl(&lab, &["restore", "-f", &backup.display().to_string()]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("the name is in use"),
        "{}",
        show(&o)
    );

    // Gone, data and all.
    let out = mrctl_ok(
        &lab,
        &[
            "uninstall",
            "--name",
            &name,
            "--controller-unit",
            &unique("d2-ctl"),
            "--timeout",
            "60s",
            "--autoApprove",
        ],
    );
    assert!(out.contains("data deleted"), "{out}");
    assert!(!root.exists() && !exists("volume", &format!("{name}-storage")));
    assert!(!serving(port));

    let t0 = Instant::now();
    let out = mrctl_ok(&lab, &["restore", "-f", &backup.display().to_string()]);
    eprintln!(
        "FIGURE restore (small store): {:.2} s: {out}",
        t0.elapsed().as_secs_f64()
    );
    let st = wait_phase(&path, Phase::Ready, Duration::from_secs(120));
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains("# kept through the backup"));
    assert_eq!(
        std::fs::read(st.ca_file.clone().unwrap()).unwrap(),
        ca_before,
        "the same CA"
    );
    assert_eq!(
        credentials(&root),
        (user.clone(), password.clone()),
        "the same credentials"
    );
    assert_eq!(mode(&root.join("secrets/init-credentials")), 0o600);
    // A fresh client with the same password and the host's trust (certs.d).
    let auth2 = lab.dir.path().join("auth2.json");
    login(&auth2, &host_port, &user, &password);
    assert_eq!(
        remote_digest(&auth2, &reference("bk/multi:1")),
        index.digest
    );
    assert_eq!(
        remote_digest(&auth2, &reference("bk/plain:1")),
        plain.digest
    );
    let pulled = lab.dir.path().join("pulled");
    pull_all(&auth2, &reference("bk/multi:1"), &pulled);
    for child in [&amd, &arm] {
        let by_digest = format!("docker://{host_port}/bk/multi@{}", child.digest);
        pull_all(&auth2, &by_digest, &pulled);
    }
    pull_all(&auth2, &reference("bk/plain:1"), &pulled);

    // Under another name and port beside it: the same content.
    let port2 = free_port();
    lab.track(&other, port2);
    let o = mrctl(
        &lab,
        &[
            "restore",
            "-f",
            &backup.display().to_string(),
            "--name",
            &other,
            "--port",
            &port2.to_string(),
        ],
    );
    // This spec names its root explicitly: another name would share it, so
    // the restore is refused, naming the root, and writes nothing.
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        err.contains(&root.display().to_string()),
        "the shared root is named: {err}"
    );
}

/// Stops and removes a registry's garbage collection units, whatever the test left.
struct GcUnits(String);

impl Drop for GcUnits {
    fn drop(&mut self) {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        for u in [
            format!("{}-gc.timer", self.0),
            format!("{}-gc.service", self.0),
        ] {
            let _ = sh("systemctl", &["--user", "disable", "--now", &u]);
            let _ = std::fs::remove_file(format!("{home}/.config/systemd/user/{u}"));
            let _ = sh("systemctl", &["--user", "reset-failed", &u]);
        }
        let _ = sh("systemctl", &["--user", "daemon-reload"]);
    }
}

fn unit_prop(unit: &str, prop: &str) -> String {
    sh_ok(
        "systemctl",
        &["--user", "show", "-p", prop, "--value", unit],
    )
    .trim()
    .to_string()
}

#[test]
fn a_schedule_runs_mrctl_gc_from_a_timer_and_goes_with_the_schedule() {
    let mut lab = Lab::new();
    lab.start(&[]);
    let storage = lab.dir.path().join("timer-storage");
    let reg = ready_registry(
        &mut lab,
        "d2-timer",
        &storage,
        "  garbageCollection:\n    schedule: Sun 03:00\n",
    );
    let _units = GcUnits(reg.name.clone());
    let (timer, service) = (
        format!("{}-gc.timer", reg.name),
        format!("{}-gc.service", reg.name),
    );
    wait_for(Duration::from_secs(30), "the timer active", || {
        (unit_active(&timer) == "active").then_some(())
    });
    assert_eq!(unit_prop(&timer, "UnitFileState"), "enabled");
    let next = unit_prop(&timer, "NextElapseUSecRealtime");
    assert!(next.starts_with("Sun "), "next run on a Sunday: {next}");
    let owned = std::fs::read_to_string(lab.state().join(&reg.name).join("owned.json")).unwrap();
    assert!(
        owned.contains(&timer) && owned.contains(&service),
        "{owned}"
    );

    // What the timer starts: mrctl gc, with the controller's directories.
    let oci = Layout::new(lab.dir.path().join("oci"));
    let (img, cfg) = oci.image("amd64", &[oci.random_layer(256)]);
    let src = oci.tagged(&img, MANIFEST, "x");
    skopeo(
        &reg.auth,
        &["copy", "--preserve-digests", &src, &reg.reference("t/x:1")],
    );
    skopeo(&reg.auth, &["delete", &reg.reference("t/x:1")]);
    sh_ok("systemctl", &["--user", "start", &service]);
    assert_eq!(
        unit_prop(&service, "Result"),
        "success",
        "{}",
        sh_ok(
            "journalctl",
            &["--user", "-u", &service, "--no-pager", "-n", "30"]
        )
    );
    assert!(
        !blob_file(&storage, &cfg.digest).exists(),
        "collected by the service"
    );
    let gc = wait_for(Duration::from_secs(60), "the report in status", || {
        file_status(&reg.path)
            .and_then(|s| s.storage)
            .and_then(|s| s.last_garbage_collection)
    });
    assert!(gc.blobs_deleted >= 3, "{gc:?}");

    // The schedule removed: timer and service go.
    lab.put(
        &reg.name,
        &lab.spec(
            &reg.name,
            reg.port,
            &format!("  storage:\n    path: {}\n", storage.display()),
        ),
    );
    // Its file removed, the unit stopped and the record updated: three
    // steps, the record last (it lists what may still exist), so all are
    // waited for.
    let owned_file = lab.state().join(&reg.name).join("owned.json");
    wait_for(Duration::from_secs(30), "the timer gone", || {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        let file_gone = !Path::new(&format!("{home}/.config/systemd/user/{timer}")).exists();
        let unrecorded = std::fs::read_to_string(&owned_file).is_ok_and(|o| !o.contains(&timer));
        (file_gone && unit_active(&timer) != "active" && unrecorded).then_some(())
    });
}

/// Nanoseconds since the epoch, as podman's event times are read here.
fn now_nanos() -> i128 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos()
}

/// When podman started `container` (its `start` events: every start of
/// the unit runs a new container by that name) since `since_nanos`.
fn start_times(container: &str, since_nanos: i128) -> Vec<i128> {
    let fmt = time::format_description::well_known::Rfc3339;
    let at = |n: i128| {
        time::OffsetDateTime::from_unix_timestamp_nanos(n)
            .unwrap()
            .format(&fmt)
            .unwrap()
    };
    // podman 4.3 reads nothing with an --until already past (it stops
    // before reading the log): a moment ahead, which it waits for.
    let until = now_nanos() + 2_000_000_000;
    let out = sh_ok(
        "podman",
        &[
            "events",
            "--since",
            &at(since_nanos - 1_000_000_000),
            "--until",
            &at(until),
            "--filter",
            &format!("container={container}"),
            "--filter",
            "event=start",
            "--format",
            "{{.Name}} {{.Time.UnixNano}}",
        ],
    );
    out.lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(n, _)| *n == container)
        .filter_map(|(_, t)| t.trim().parse::<i128>().ok())
        .filter(|t| *t >= since_nanos)
        .collect()
}

#[test]
fn gc_in_a_row_beside_a_busy_controller_restarts_the_registry_twice_each() {
    let mut lab = Lab::new();
    // Busy: a resync every second on top of the drift events every restart
    // of the registry raises.
    lab.start(&["--resync-interval", "1s"]);
    let storage = lab.dir.path().join("row-storage");
    let reg = ready_registry(&mut lab, "d2-row", &storage, "");
    let oci = Layout::new(lab.dir.path().join("oci"));
    // 24 MiB of random bytes: a pull of it, throttled, spans a restart,
    // and more of it than the sockets' buffers on both sides hold (what
    // is in them reaches the client even from a killed server).
    let big = oci.random_layer(24 * 1024);
    let (img, _) = oci.image("amd64", std::slice::from_ref(&big));
    let src = oci.tagged(&img, MANIFEST, "a");
    skopeo(
        &reg.auth,
        &[
            "copy",
            "--preserve-digests",
            &src,
            &reg.reference("row/a:1"),
        ],
    );
    let container = format!("{}-registry", reg.name);
    // Settled: the push's own reconciles are over.
    std::thread::sleep(Duration::from_secs(3));

    let (user, password) = credentials(&lab.root(&reg.name));
    let ca = lab.root(&reg.name).join("tls/ca.crt");
    let base = format!("https://localhost:{}/v2", reg.port);
    let mut marks = vec![now_nanos()];
    for i in 0..3 {
        // During the first gc: a blob pull in flight when the registry is
        // restarted read-only, and new requests every 50 ms.
        let watch = (i == 0).then(|| {
            let pulled = lab.dir.path().join("in-flight.blob");
            let pull = {
                let (url, auth) = (
                    format!("{base}/row/a/blobs/{}", big.digest),
                    format!("{user}:{password}"),
                );
                let (ca, pulled) = (ca.clone(), pulled.clone());
                std::thread::spawn(move || {
                    let t = Instant::now();
                    let o = Command::new("curl")
                        .args(["-sS", "--limit-rate", "8M", "-u", &auth, "--cacert"])
                        .arg(&ca)
                        .arg("-o")
                        .arg(&pulled)
                        .args(["-w", "%{http_code}", &url])
                        .output()
                        .unwrap();
                    (o, t.elapsed())
                })
            };
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let poll = {
                let (stop, url, ca) = (stop.clone(), format!("{base}/"), ca.clone());
                std::thread::spawn(move || {
                    // Outcome of each new request: the HTTP code, or curl's
                    // exit code when there was none (7: refused).
                    let mut seen = std::collections::BTreeMap::<String, usize>::new();
                    // The longest run of requests without an answer.
                    let (mut since, mut longest) = (None::<Instant>, Duration::ZERO);
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let asked = Instant::now();
                        let o = Command::new("curl")
                            .args(["-s", "-o", "/dev/null", "--max-time", "3", "--cacert"])
                            .arg(&ca)
                            .args(["-w", "%{http_code}", &url])
                            .output()
                            .unwrap();
                        let code = String::from_utf8_lossy(&o.stdout).to_string();
                        let key = if code == "000" {
                            let first = *since.get_or_insert(asked);
                            longest = longest.max(first.elapsed());
                            format!("curl exit {}", o.status.code().unwrap_or(-1))
                        } else {
                            since = None;
                            format!("HTTP {code}")
                        };
                        *seen.entry(key).or_default() += 1;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    (seen, longest)
                })
            };
            // The pull under way before the restart.
            std::thread::sleep(Duration::from_millis(500));
            (pull, pulled, stop, poll)
        });
        let t = Instant::now();
        let o = mrctl(&lab, &["gc", &reg.name]);
        if let Some((pull, pulled, stop, poll)) = watch {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let (seen, longest) = poll.join().unwrap();
            eprintln!(
                "FIGURE new requests to /v2/ during a gc: {seen:?}; longest without an answer {:.1} s",
                longest.as_secs_f64()
            );
            let (out, took) = pull.join().unwrap();
            assert!(
                out.status.success() && String::from_utf8_lossy(&out.stdout) == "200",
                "a pull in flight across the restart completes: {}",
                show(&out)
            );
            assert_eq!(
                file_digest(&pulled),
                big.digest,
                "and is whole ({:.1} s)",
                took.as_secs_f64()
            );
            eprintln!(
                "FIGURE a 24 MiB blob pull at 8 MiB/s across the read-only restart: whole, {:.1} s",
                took.as_secs_f64()
            );
        }
        assert!(
            o.status.success(),
            "gc {} of 3: {}\n--- controller log (tail)\n{}",
            i + 1,
            show(&o),
            lab.logs()
                .lines()
                .filter(|l| !l.contains("DEBUG"))
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        );
        eprintln!(
            "FIGURE gc {} took {:.1} s",
            i + 1,
            t.elapsed().as_secs_f64()
        );
        // A restart the controller raced in just after mrctl returned
        // counts for this gc.
        std::thread::sleep(Duration::from_secs(1));
        marks.push(now_nanos());
    }
    // A restart the controller still owes after the last gc shows within a
    // few resyncs.
    std::thread::sleep(Duration::from_secs(5));
    let starts = start_times(&container, marks[0]);
    let mut counts: Vec<usize> = marks
        .windows(2)
        .map(|w| starts.iter().filter(|t| **t >= w[0] && **t < w[1]).count())
        .collect();
    let late = marks.last().unwrap();
    counts.push(starts.iter().filter(|t| *t >= late).count());
    eprintln!("FIGURE registry starts per gc (then after the last): {counts:?}");
    assert_eq!(
        counts,
        [2, 2, 2, 0],
        "each gc restarts the registry twice (read-only, read-write), and nothing else does"
    );
    assert!(serving(reg.port));
    assert_eq!(
        remote_digest(&reg.auth, &reg.reference("row/a:1")),
        img.digest
    );
    pull_all(
        &reg.auth,
        &reg.reference("row/a:1"),
        &lab.dir.path().join("pulled"),
    );
}
