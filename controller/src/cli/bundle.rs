//! `mrctl bundle`: the original's offline tarball. One `.tar.gz` holding
//! `mrctl`, `mirror-registry-controller`, `image-archive.tar` (every image
//! the chosen engines need, as `podman save -m` writes them), `bundle.json`
//! (which image each engine uses) and a short README. Unpacked on an
//! air-gapped host, `./mrctl install` finds the archive beside itself
//! ([`beside_self`]), loads what podman lacks with progress ([`load`]) and
//! pins the spec's images to the bundle's.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::controller_unit;
use super::install::{absolute, EngineArg};
use super::state::Paths;
use super::{Error, Result, EXIT_OK};
use crate::api::{defaults, load};
use crate::host::files;
use crate::host::podman::Podman;

pub const ARCHIVE: &str = "image-archive.tar";
pub const MANIFEST: &str = "bundle.json";
pub const README: &str = "README.md";
pub const CONTROLLER: &str = "mirror-registry-controller";
pub const MRCTL: &str = "mrctl";

#[derive(Debug, clap::Args)]
pub struct BundleArgs {
    /// The bundle to write (a .tar.gz).
    #[arg(short = 'o', long = "output", value_name = "FILE.tar.gz")]
    pub output: PathBuf,
    /// Engines whose images go in; repeat for more. Default: quay.
    #[arg(long, value_enum)]
    pub engine: Vec<EngineArg>,
    /// The distribution engine's image. Default: this version's.
    #[arg(long = "registryImage", value_name = "IMAGE")]
    pub registry_image: Option<String>,
    /// The quay engine's Quay image.
    #[arg(long = "quayImage", value_name = "IMAGE")]
    pub quay_image: Option<String>,
    /// The quay engine's Redis image.
    #[arg(long = "redisImage", value_name = "IMAGE")]
    pub redis_image: Option<String>,
    /// The pod's infra image, for every engine.
    #[arg(long = "pauseImage", value_name = "IMAGE")]
    pub pause_image: Option<String>,
    /// The controller binary to put in. Default: the one beside this mrctl.
    #[arg(long = "controller-bin", value_name = "PATH")]
    pub controller_bin: Option<PathBuf>,
}

/// `bundle.json`: per engine, the images (`registry`, `quay`, `redis`,
/// `pause`) the bundle holds for it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub engines: BTreeMap<String, BTreeMap<String, String>>,
}

/// A bundle found beside the running mrctl.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub archive: PathBuf,
    pub manifest: Manifest,
}

impl Found {
    /// The images the bundle holds for `engine`, by spec key.
    pub fn images(&self, engine: &str) -> BTreeMap<String, String> {
        self.manifest
            .engines
            .get(engine)
            .cloned()
            .unwrap_or_default()
    }
}

/// The image archive (and its manifest) in the directory of the running
/// mrctl, as an unpacked bundle has it.
pub fn beside_self() -> Result<Option<Found>> {
    let Ok(exe) = std::env::current_exe() else {
        return Ok(None);
    };
    let Some(dir) = exe.parent() else {
        return Ok(None);
    };
    beside(dir)
}

/// The bundle in `dir`, if its archive is there.
pub fn beside(dir: &Path) -> Result<Option<Found>> {
    let archive = dir.join(ARCHIVE);
    if !archive.is_file() {
        return Ok(None);
    }
    let path = dir.join(MANIFEST);
    let manifest = match files::read_optional(&path)? {
        Some(b) => serde_json::from_slice(&b).map_err(|e| {
            Error::Failed(format!("{}: not a bundle manifest: {e}", path.display()))
        })?,
        None => Manifest::default(),
    };
    Ok(Some(Found { archive, manifest }))
}

/// The images an engine needs, with the given ones pinned: what render
/// writes into its units for a spec of that engine.
fn engine_images(
    paths: &Paths,
    engine: EngineArg,
    pins: &[(&str, &Option<String>)],
) -> Result<BTreeMap<String, String>> {
    let engine_word = match engine {
        EngineArg::Quay => "quay",
        EngineArg::Distribution => "distribution",
    };
    let keys: &[&str] = match engine {
        EngineArg::Quay => &["quay", "redis", "pause"],
        EngineArg::Distribution => &["registry", "pause"],
    };
    let mut images = String::new();
    for (k, v) in pins {
        if let (true, Some(v)) = (keys.contains(k), v) {
            images.push_str(&format!(
                "    {k}: {}\n",
                serde_json::to_string(v).unwrap_or_default()
            ));
        }
    }
    let text = format!(
        "apiVersion: {}\nkind: {}\nmetadata:\n  name: bundle\nspec:\n  engine: {engine_word}\n  hostname: bundle.invalid\n  root: /nonexistent/bundle\n{}",
        crate::api::API_VERSION,
        crate::api::KIND,
        if images.is_empty() { String::new() } else { format!("  images:\n{images}") }
    );
    let l = load::parse(Path::new("bundle.yaml"), text.as_bytes())
        .map_err(|inv| Error::Usage(format!("the image flags do not make a valid spec:\n{inv}")))?;
    let r = defaults::resolve(&l.resource, &l.name, paths.host());
    let d = crate::render::render(&r, &paths.render_context()).map_err(Error::Failed)?;
    // render lists images in the order units use them; name each by the
    // spec key whose value it is.
    let by_key = serde_json::to_value(&r.images)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    for img in d.images {
        let key = by_key
            .iter()
            .find(|(k, v)| keys.contains(&k.as_str()) && v.as_str() == Some(img.as_str()))
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| "pause".into());
        out.insert(key, img);
    }
    Ok(out)
}

fn readme(manifest: &Manifest) -> String {
    let mut s = String::from(
        "# mirror-registry, offline bundle\n\n\
         Everything needed to install a mirror registry on a host without network:\n\
         `mrctl`, `mirror-registry-controller`, and `image-archive.tar` with these images:\n\n",
    );
    for (engine, images) in &manifest.engines {
        for (k, v) in images {
            s.push_str(&format!("- {engine} {k}: `{v}`\n"));
        }
    }
    s.push_str(
        "\nOn the target host (root, podman and systemd installed):\n\n\
         ```\n\
         tar -xzf mirror-registry-bundle.tar.gz\n\
         ./mrctl install                      # --engine distribution, --quayHostname HOST:PORT, ...\n\
         ```\n\n\
         `./mrctl install` finds `image-archive.tar` beside itself and loads the images\n\
         podman lacks. To install on another host over SSH from here:\n\n\
         ```\n\
         ./mrctl install --targetHostname HOST --targetUsername USER -k ~/.ssh/KEY\n\
         ```\n\n\
         `./mrctl --help` lists every command; `./mrctl install --help` its flags.\n",
    );
    s
}

pub fn run(paths: &Paths, a: BundleArgs) -> Result<i32> {
    let output = absolute(&a.output);
    let name = output
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    if !(name.ends_with(".tar.gz") || name.ends_with(".tgz")) {
        return Err(Error::Usage(format!(
            "-o {}: the bundle is a gzip'd tar; name it FILE.tar.gz",
            a.output.display()
        )));
    }
    let out_dir = output.parent().unwrap_or(Path::new("/")).to_path_buf();
    if !out_dir.is_dir() {
        return Err(Error::Usage(format!(
            "-o {}: the directory {} does not exist",
            a.output.display(),
            out_dir.display()
        )));
    }
    let mrctl = std::env::current_exe().map_err(files::io(
        "find the running mrctl",
        Path::new("/proc/self/exe"),
    ))?;
    let controller = controller_unit::controller_binary(a.controller_bin.as_deref())?;
    let engines = if a.engine.is_empty() {
        vec![EngineArg::Quay]
    } else {
        a.engine.clone()
    };
    let pins = [
        ("registry", &a.registry_image),
        ("quay", &a.quay_image),
        ("redis", &a.redis_image),
        ("pause", &a.pause_image),
    ];
    let mut manifest = Manifest::default();
    for e in engines {
        let word = match e {
            EngineArg::Quay => "quay",
            EngineArg::Distribution => "distribution",
        };
        manifest
            .engines
            .insert(word.to_string(), engine_images(paths, e, &pins)?);
    }
    let mut images: Vec<String> = manifest
        .engines
        .values()
        .flat_map(|m| m.values().cloned())
        .collect();
    images.sort();
    images.dedup();

    let podman_bin = crate::settings::podman_binary();
    let missing: Vec<&String> = images
        .iter()
        .filter(|i| {
            !Command::new(&podman_bin)
                .args(["image", "exists", i.as_str()])
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    if !missing.is_empty() {
        return Err(Error::Failed(format!(
            "not in podman's image store: {}; pull or load them first (or name others with --quayImage, --redisImage, --registryImage, --pauseImage). Nothing was written",
            missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }

    // Built in a directory beside the output and renamed into place, so
    // a failure leaves no partial bundle.
    let stage = tempfile::Builder::new()
        .prefix(".mrctl-bundle-")
        .tempdir_in(&out_dir)
        .map_err(files::io("create a directory in", &out_dir))?;
    let dir = stage.path().join("content");
    files::ensure_dir(&dir, 0o755)?;
    let start = Instant::now();
    outln!("bundle: saving {} images to {ARCHIVE}:", images.len());
    for i in &images {
        outln!("  {i}");
    }
    let archive = dir.join(ARCHIVE);
    let o = Command::new(&podman_bin)
        .args(["save", "-m", "--format", "docker-archive", "-o"])
        .arg(&archive)
        .args(&images)
        .output()
        .map_err(files::io("run", &podman_bin))?;
    if !o.status.success() {
        return Err(Error::Failed(format!(
            "podman save failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    let size = std::fs::metadata(&archive).map(|m| m.len()).unwrap_or(0);
    outln!(
        "  {:>6.1}s  {ARCHIVE}: {:.1} MiB",
        start.elapsed().as_secs_f64(),
        size as f64 / 1048576.0
    );
    for (from, to) in [(&mrctl, MRCTL), (&controller, CONTROLLER)] {
        std::fs::copy(from, dir.join(to)).map_err(files::io("copy", from))?;
    }
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::Failed(format!("cannot write {MANIFEST}: {e}")))?;
    files::atomic_write(&dir.join(MANIFEST), &json, 0o644)?;
    files::atomic_write(&dir.join(README), readme(&manifest).as_bytes(), 0o644)?;
    outln!("bundle: compressing into {}", output.display());
    let tmp = stage.path().join("bundle.tar.gz");
    let o = Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .arg("-czf")
        .arg(&tmp)
        .args([MRCTL, CONTROLLER, ARCHIVE, MANIFEST, README])
        .output()
        .map_err(files::io("run", Path::new("tar")))?;
    if !o.status.success() {
        return Err(Error::Failed(format!(
            "tar failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    std::fs::rename(&tmp, &output).map_err(files::io("rename into place", &output))?;
    let size = std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0);
    outln!(
        "  {:>6.1}s  {}: {:.1} MiB ({} engines, {} images). Unpack it on the target and run ./mrctl install",
        start.elapsed().as_secs_f64(),
        output.display(),
        size as f64 / 1048576.0,
        manifest.engines.len(),
        images.len()
    );
    Ok(EXIT_OK)
}

/// Loads `archive` into podman through its API when any of `images` is
/// missing, printing how much is read as it goes.
pub async fn load(podman: &Podman, archive: &Path, images: &[String]) -> Result<()> {
    let mut missing = Vec::new();
    for i in images {
        if !podman.image_exists(i).await? {
            missing.push(i.clone());
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let size = std::fs::metadata(archive)
        .map_err(files::io("read", archive))?
        .len()
        .max(1);
    outln!(
        "loading {} from {} ({:.1} MiB)",
        missing.join(", "),
        archive.display(),
        size as f64 / 1048576.0
    );
    let start = Instant::now();
    let mut file = std::fs::File::open(archive).map_err(files::io("open", archive))?;
    let (tx, rx) =
        tokio::sync::mpsc::channel::<std::result::Result<bytes::Bytes, std::io::Error>>(4);
    let path = archive.to_path_buf();
    // The file is read on a thread and handed to the API as a stream;
    // every tenth is printed as it goes by.
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        let mut sent: u64 = 0;
        let mut shown = 0;
        loop {
            match file.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    sent += n as u64;
                    let tenth = (sent * 10 / size) as usize;
                    if tenth > shown {
                        shown = tenth;
                        outln!(
                            "  {:>6.1}s  {:>3}%",
                            start.elapsed().as_secs_f64(),
                            (sent * 100 / size).min(100)
                        );
                    }
                    if tx
                        .blocking_send(Ok(bytes::Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        return Ok(());
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(std::io::Error::new(e.kind(), e.to_string())));
                    return Err(e);
                }
            }
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    use futures_util::StreamExt;
    let body = body.filter_map(|r| async move { r.ok() });
    // podman answers once the whole archive is loaded: the load has its own
    // bound, growing with the archive's size (`load_timeout`).
    let result = podman.load_stream(archive, size, body).await;
    if let Ok(Err(e)) = reader.join() {
        return Err(Error::Failed(format!("read {}: {e}", path.display())));
    }
    result?;
    for i in &missing {
        if !podman.image_exists(i).await? {
            return Err(Error::Failed(format!(
                "{} does not hold {i}",
                path.display()
            )));
        }
    }
    outln!("  {:>6.1}s  loaded", start.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_is_found_by_its_archive() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(beside(d.path()).unwrap(), None);
        std::fs::write(d.path().join(ARCHIVE), b"x").unwrap();
        let f = beside(d.path()).unwrap().unwrap();
        assert_eq!(f.archive, d.path().join(ARCHIVE));
        assert!(f.images("quay").is_empty());
        std::fs::write(
            d.path().join(MANIFEST),
            r#"{"engines":{"distribution":{"registry":"r:1","pause":"p:1"}}}"#,
        )
        .unwrap();
        let f = beside(d.path()).unwrap().unwrap();
        assert_eq!(
            f.images("distribution").get("registry").map(String::as_str),
            Some("r:1")
        );
        std::fs::write(d.path().join(MANIFEST), "nope").unwrap();
        let e = beside(d.path()).unwrap_err();
        assert!(
            e.to_string().contains("bundle.json: not a bundle manifest"),
            "{e}"
        );
    }
}
