//! `mrctl export NAME --to kube|kubernetes|quay-operator [-o FILE|DIR/|-]`:
//! what this host knows about a registry (its spec, the config render
//! makes of it, the TLS pair, credentials and kept keys under its root, the
//! directory its data is in), written as YAML for where it goes next. The
//! documents themselves come from `crate::export` (pure); this reads the
//! host and writes the output. Nothing on the host is changed.
//!
//! Secrets go only into files created 0600 or, when asked with `-o -`, to
//! standard output; every message names the files and objects that hold
//! them, never a value.

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::state::{run_as_hint, Paths, Spec};
use super::{Error, Result, EXIT_OK};
use crate::api::day2::human_bytes;
use crate::api::defaults::{Resolved, Storage, Tls};
use crate::api::Engine;
use crate::export::{self, kube, Document, Facts, SecretFile, Target, TlsFacts};
use crate::host::files;
use crate::host::podman::Podman;
use crate::naming;
use crate::render::quay::QuaySecrets;
use crate::render::{self, Inputs};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Targets:
  kube           a Pod for `podman kube play` on this host (podman 4.3 or later): the same
                 config, TLS pair, credentials and data, mounted from the host; no secret in it
  kubernetes     the CNCF registry on a cluster (distribution engine): ConfigMap, Secrets
                 (TLS pair and CA, htpasswd), PersistentVolumeClaim, Deployment, Service
  quay-operator  Quay under the Quay Operator (quay engine): a QuayRegistry and its config
                 bundle Secret, with the keys that keep Quay's database readable

Moving the images themselves: docs/outgrowing.md.")]
pub struct Args {
    /// The registry's name.
    pub name: String,
    /// Where the registry goes.
    #[arg(long = "to", value_enum, value_name = "TARGET")]
    pub to: Target,
    /// FILE: every document in one file; DIR/ (or an existing directory):
    /// one file per document; `-`: standard output. Files holding secrets
    /// are created 0600. Required when the export holds secrets
    /// (kubernetes, quay-operator); otherwise standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE|DIR/|-")]
    pub output: Option<String>,
    /// kubernetes: the PersistentVolumeClaim's request, e.g. 50Gi. Default:
    /// twice what the storage holds on this host, at least 10Gi.
    #[arg(long, value_name = "SIZE")]
    pub storage_size: Option<String>,
    /// quay-operator: the cluster provides object storage (e.g. OpenShift
    /// Data Foundation), so the operator manages it. Without it
    /// objectstorage is unmanaged and you add yours to the bundle.
    #[arg(long)]
    pub managed_storage: bool,
}

/// Where the documents go.
#[derive(Debug, PartialEq, Eq)]
enum Out {
    Stdout,
    File(PathBuf),
    Dir(PathBuf),
}

fn out_of(arg: Option<&str>, holds_secrets: bool, to: Target) -> Result<Out> {
    match arg {
        None if holds_secrets => Err(Error::Usage(format!(
            "an export --to {} holds secrets: give -o FILE or -o DIR/ (written 0600), or -o - to print them",
            to.as_str()
        ))),
        None | Some("-") => Ok(Out::Stdout),
        Some("") => Err(Error::Usage("-o: give FILE, DIR/ or -".into())),
        Some(p) if p.ends_with('/') || Path::new(p).is_dir() => Ok(Out::Dir(PathBuf::from(p))),
        Some(p) => Ok(Out::File(PathBuf::from(p))),
    }
}

pub fn run(paths: &Paths, args: Args) -> Result<i32> {
    if args.storage_size.is_some() && args.to != Target::Kubernetes {
        return Err(Error::Usage(
            "--storage-size goes with --to kubernetes".into(),
        ));
    }
    if args.managed_storage && args.to != Target::QuayOperator {
        return Err(Error::Usage(
            "--managed-storage goes with --to quay-operator".into(),
        ));
    }
    if let Some(size) = &args.storage_size {
        export::check_quantity(size).map_err(Error::Usage)?;
    }
    let holds_secrets = args.to != Target::Kube;
    let out = out_of(args.output.as_deref(), holds_secrets, args.to)?;
    refuse_watch_dir(paths, &out)?;

    let reg = paths.find(&args.name)?;
    let name = &args.name;
    let resolved = match (&reg.spec, reg.resolved(paths.host())) {
        (_, Some(r)) => r,
        (Spec::Missing, _) => {
            return Err(Error::Failed(format!(
                "mirrorregistry/{name} has no spec file: it is being torn down, and there is nothing to export"
            )))
        }
        (Spec::Duplicate, _) => {
            return Err(Error::Failed(format!(
                "mirrorregistry/{name}: more than one spec file claims it ({}); keep one",
                reg.files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
        (Spec::Unreadable(e), _) => {
            return Err(Error::Failed(format!("mirrorregistry/{name}: {e}")))
        }
        (_, None) => {
            return Err(Error::Failed(format!(
                "mirrorregistry/{name}: its spec is not valid; `mrctl validate -f {}` says why",
                reg.file().map(|f| f.display().to_string()).unwrap_or_default()
            )))
        }
    };
    export::supports(args.to, resolved.engine, name).map_err(Error::Failed)?;

    let (facts, notes) = gather(paths, &args, resolved)?;
    let docs = export::export(args.to, &facts).map_err(Error::Failed)?;
    write(&args, &facts, &docs, &out, &notes)?;
    Ok(EXIT_OK)
}

/// An output inside the watch directory would be read as a spec file.
fn refuse_watch_dir(paths: &Paths, out: &Out) -> Result<()> {
    let target = match out {
        Out::Stdout => return Ok(()),
        Out::File(f) => f.parent().map(Path::to_path_buf).unwrap_or_default(),
        Out::Dir(d) => d.clone(),
    };
    let abs = |p: &Path| {
        let p = if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        };
        std::fs::canonicalize(p).ok()
    };
    let watch = abs(&paths.watch_dir);
    // A directory that does not exist yet is checked by its nearest parent.
    let inside = target
        .ancestors()
        .find_map(abs)
        .zip(watch)
        .is_some_and(|(t, w)| t.starts_with(&w));
    if inside {
        return Err(Error::Usage(format!(
            "-o {}: that is in the watch directory {}, where the controller would read it as a spec; write it elsewhere",
            match out {
                Out::File(f) | Out::Dir(f) => f.display().to_string(),
                Out::Stdout => String::new(),
            },
            paths.watch_dir.display()
        )));
    }
    Ok(())
}

/// Reads a file of the registry's root; a missing one says the controller
/// has not written it yet, an unreadable one says who may read it.
fn read_host_file(path: &Path, name: &str) -> Result<String> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map_err(|_| Error::Failed(format!("{}: not UTF-8 text", path.display()))),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(Error::Failed(format!(
            "{} does not exist yet: the controller writes it when it first converges mirrorregistry/{name}",
            path.display()
        ))),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => Err(Error::Failed(format!(
            "not permitted to read {}: {}",
            path.display(),
            run_as_hint(path)
        ))),
        Err(source) => Err(files::io("read", path)(source).into()),
    }
}

fn secret_file(path: PathBuf, name: &str) -> Result<SecretFile> {
    let content = read_host_file(&path, name)?;
    Ok(SecretFile { path, content })
}

/// The kept keys of the quay engine, read, never generated.
fn quay_secrets(root: &Path, name: &str) -> Result<QuaySecrets> {
    let path = naming::root::quay_secrets_file(root);
    let text = read_host_file(&path, name)?;
    // Every field is a string, so serde_yaml's errors name a position or a
    // field, never a value.
    serde_yaml::from_str(&text).map_err(|e| {
        Error::Failed(format!(
            "{}: not as the controller writes it: {e}",
            path.display()
        ))
    })
}

/// The host directory a storage is in: a podman volume's mountpoint, or
/// the path itself.
fn host_dir(paths: &Paths, s: &Storage, name: &str) -> Result<PathBuf> {
    match s {
        Storage::Path(p) => Ok(p.clone()),
        Storage::Volume(v) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Failed(format!("start the async runtime: {e}")))?;
            let info = rt.block_on(async {
                let podman = Podman::connect(&paths.podman_socket).await?;
                podman.volume(v).await
            })?;
            info.map(|i| i.mountpoint).ok_or_else(|| {
                Error::Failed(format!(
                    "volume {v} does not exist yet: the controller creates it when it first converges mirrorregistry/{name}"
                ))
            })
        }
    }
}

/// Bytes of regular files under `dir`, symlinks not followed.
fn used_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let meta = entry.path().symlink_metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total = total.saturating_add(meta.len());
            }
        }
    }
    Ok(total)
}

/// Everything the export needs from the host, and notes for the user.
fn gather(paths: &Paths, args: &Args, resolved: Resolved) -> Result<(Facts, Vec<String>)> {
    let name = resolved.name.clone();
    let root = resolved.root.clone();
    let mut notes = Vec::new();
    let tls_dir = naming::root::tls_dir(&root);
    let cert_file = tls_dir.join("tls.crt");
    let tls = TlsFacts {
        cert: read_host_file(&cert_file, &name)?,
        cert_file,
        key: secret_file(tls_dir.join("tls.key"), &name)?,
        ca: match resolved.tls {
            Tls::Generated { .. } => Some(read_host_file(&tls_dir.join("ca.crt"), &name)?),
            Tls::Provided { .. } => None,
        },
    };
    let htpasswd = match resolved.engine {
        Engine::Distribution => Some(secret_file(naming::root::htpasswd_file(&root), &name)?),
        Engine::Quay => None,
    };
    let quay = match (resolved.engine, args.to) {
        (Engine::Quay, Target::QuayOperator) => Some(quay_secrets(&root, &name)?),
        _ => None,
    };
    let desired = render::render_with(
        &resolved,
        &paths.render_context(),
        &Inputs {
            quay: quay.clone(),
            ..Inputs::default()
        },
    )
    .map_err(Error::Failed)?;
    let (storage_dir, database_dir) = match args.to {
        Target::Kube => (
            host_dir(paths, &resolved.storage, &name)?,
            match &resolved.database {
                Some(db) => Some(host_dir(paths, db, &name)?),
                None => None,
            },
        ),
        _ => (PathBuf::new(), None),
    };
    let storage_request = match (&args.storage_size, args.to) {
        (Some(size), _) => size.clone(),
        (None, Target::Kubernetes) => {
            let measured = host_dir(paths, &resolved.storage, &name).and_then(|d| {
                used_bytes(&d).map_err(|e| Error::Failed(format!("{}: {e}", d.display())))
            });
            match measured {
                Ok(used) => {
                    let req = export::storage_request(used);
                    notes.push(format!(
                        "PersistentVolumeClaim/{} requests {req}: twice the {} this host's storage holds, at least {}Gi (--storage-size to choose)",
                        export::kubernetes::claim_name(&name),
                        human_bytes(used),
                        export::MIN_REQUEST_GI
                    ));
                    req
                }
                Err(e) => {
                    let req = export::storage_request(0);
                    notes.push(format!(
                        "PersistentVolumeClaim/{} requests {req}: this host's storage could not be measured ({e}); --storage-size to choose",
                        export::kubernetes::claim_name(&name)
                    ));
                    req
                }
            }
        }
        (None, _) => export::storage_request(0),
    };
    let facts = Facts {
        resolved,
        desired,
        tls,
        htpasswd,
        quay_secrets: quay,
        storage_dir,
        database_dir,
        storage_request,
        managed_storage: args.managed_storage,
    };
    if args.to == Target::Kube {
        // play fails on a missing hostPath; say which, and why, first.
        for c in kube::containers(&facts).map_err(Error::Failed)? {
            for m in c.mounts {
                let ok = match m.host_type {
                    "Directory" => m.host_path.is_dir(),
                    _ => m.host_path.is_file(),
                };
                if !ok {
                    return Err(Error::Failed(format!(
                        "{} is not a {} yet: the controller makes it when it converges mirrorregistry/{name}",
                        m.host_path.display(),
                        m.host_type.to_ascii_lowercase()
                    )));
                }
            }
        }
    }
    Ok((facts, notes))
}

fn header(args: &Args, facts: &Facts, docs: &[Document]) -> String {
    let secrets: Vec<String> = docs
        .iter()
        .filter(|d| d.secret.is_some())
        .map(Document::id)
        .collect();
    format!(
        "# mrctl export {} --to {} (engine {}): {}.\n# Holds secrets: {}.\n",
        facts.resolved.name,
        args.to.as_str(),
        facts.resolved.engine.as_str(),
        docs.iter().map(Document::id).collect::<Vec<_>>().join(", "),
        if secrets.is_empty() {
            "none".to_string()
        } else {
            secrets.join(", ")
        }
    )
}

fn joined(args: &Args, facts: &Facts, docs: &[Document]) -> String {
    let mut text = header(args, facts, docs);
    for d in docs {
        text.push_str("---\n");
        text.push_str(&d.text);
    }
    text
}

fn mode_of(secret: bool) -> u32 {
    if secret {
        0o600
    } else {
        0o644
    }
}

fn write_file(path: &Path, text: &str, secret: bool) -> Result<()> {
    if path
        .parent()
        .is_some_and(|p| !p.as_os_str().is_empty() && !p.is_dir())
    {
        return Err(Error::Failed(format!(
            "{}: its directory does not exist",
            path.display()
        )));
    }
    files::atomic_write(path, text.as_bytes(), mode_of(secret))?;
    Ok(())
}

fn describe_secret(d: &Document) -> String {
    format!("{} ({})", d.id(), d.secret.unwrap_or_default())
}

fn write(args: &Args, facts: &Facts, docs: &[Document], out: &Out, notes: &[String]) -> Result<()> {
    let secret_docs: Vec<&Document> = docs.iter().filter(|d| d.secret.is_some()).collect();
    // Messages go to stdout, unless the YAML does.
    let mut messages: Vec<String> = Vec::new();
    let shown_out: String;
    match out {
        Out::Stdout => {
            out!("{}", joined(args, facts, docs));
            shown_out = "the output".into();
            if !secret_docs.is_empty() {
                messages.push(format!(
                    "the output holds secrets: {}; keep it out of logs and version control",
                    secret_docs
                        .iter()
                        .map(|d| describe_secret(d))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        Out::File(path) => {
            let secret = !secret_docs.is_empty();
            write_file(path, &joined(args, facts, docs), secret)?;
            shown_out = path.display().to_string();
            messages.push(format!(
                "wrote {} (mode {:04o}): {}",
                path.display(),
                mode_of(secret),
                docs.iter().map(Document::id).collect::<Vec<_>>().join(", ")
            ));
            if secret {
                messages.push(format!(
                    "secrets are in {} (mode 0600): {}",
                    path.display(),
                    secret_docs
                        .iter()
                        .map(|d| describe_secret(d))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        Out::Dir(dir) => {
            if !dir.is_dir() {
                std::fs::create_dir_all(dir).map_err(files::io("create directory", dir))?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(files::io("chmod", dir))?;
            }
            let mut secret_paths = Vec::new();
            for (i, d) in docs.iter().enumerate() {
                let path = dir.join(format!(
                    "{:02}-{}-{}.yaml",
                    i + 1,
                    d.kind.to_ascii_lowercase(),
                    d.name
                ));
                let text = format!(
                    "{}---\n{}",
                    header(args, facts, std::slice::from_ref(d)),
                    d.text
                );
                write_file(&path, &text, d.secret.is_some())?;
                messages.push(format!(
                    "wrote {} (mode {:04o}): {}",
                    path.display(),
                    mode_of(d.secret.is_some()),
                    d.id()
                ));
                if d.secret.is_some() {
                    secret_paths.push(format!(
                        "{} ({})",
                        path.display(),
                        d.secret.unwrap_or_default()
                    ));
                }
            }
            shown_out = dir.display().to_string();
            if !secret_paths.is_empty() {
                messages.push(format!(
                    "secrets are in (mode 0600): {}",
                    secret_paths.join(", ")
                ));
            }
        }
    }
    if secret_docs.is_empty() {
        let held: Vec<String> = kube::secret_files(facts)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        messages.push(format!(
            "no secret is in {shown_out}: the pod mounts this host's own 0600 files ({})",
            held.join(", ")
        ));
    }
    messages.extend(notes.iter().cloned());
    messages.push(next_steps(args, facts, &shown_out));
    for m in messages {
        if *out == Out::Stdout {
            eprintln!("{m}");
        } else {
            outln!("{m}");
        }
    }
    Ok(())
}

fn next_steps(args: &Args, facts: &Facts, shown: &str) -> String {
    let name = &facts.resolved.name;
    match args.to {
        Target::Kube => format!(
            "next: pause mirrorregistry/{name} (spec.paused: true) so its units free port {}, then `podman kube play {shown}`; `podman kube down {shown}` and unpausing bring the units back",
            facts.resolved.port
        ),
        Target::Kubernetes => format!(
            "next: `kubectl apply -n NAMESPACE -f {shown}`, then copy the images over (docs/outgrowing.md)"
        ),
        Target::QuayOperator if facts.managed_storage => format!(
            "next: `oc apply -n NAMESPACE -f {shown}`, then copy the images over (docs/outgrowing.md)"
        ),
        Target::QuayOperator => format!(
            "next: add your object storage (DISTRIBUTED_STORAGE_CONFIG) to config.yaml in Secret/{} ({shown}), then `oc apply -n NAMESPACE -f {shown}` and copy the images over (docs/outgrowing.md)",
            export::quay_operator::bundle_name(name)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs() {
        let k = Target::Kubernetes;
        assert!(matches!(out_of(None, true, k), Err(Error::Usage(_))));
        assert_eq!(out_of(None, false, Target::Kube).unwrap(), Out::Stdout);
        assert_eq!(out_of(Some("-"), true, k).unwrap(), Out::Stdout);
        assert_eq!(
            out_of(Some("x/"), true, k).unwrap(),
            Out::Dir(PathBuf::from("x/"))
        );
        assert_eq!(
            out_of(Some("/"), true, k).unwrap(),
            Out::Dir(PathBuf::from("/"))
        );
        assert_eq!(
            out_of(Some("a.yaml"), true, k).unwrap(),
            Out::File(PathBuf::from("a.yaml"))
        );
    }

    #[test]
    fn used_bytes_counts_files_not_links() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("a")).unwrap();
        std::fs::write(d.path().join("a/b"), [0u8; 100]).unwrap();
        std::fs::write(d.path().join("c"), [0u8; 20]).unwrap();
        std::os::unix::fs::symlink("/usr", d.path().join("l")).unwrap();
        assert_eq!(used_bytes(d.path()).unwrap(), 120);
    }
}
