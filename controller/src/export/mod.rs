//! Exports of one registry for where it goes when it outgrows this host
//! (`mrctl export NAME --to kube|kubernetes|quay-operator`):
//!
//! - `kube`: a Pod that podman's own `podman kube play` (4.3 and later)
//!   runs on this host, mounting the files and data the units mount
//!   (hostPath only: podman 4.3 mishandles Secret volume contents and
//!   re-playing PersistentVolumeClaims). It holds no secret values.
//! - `kubernetes`: the CNCF registry on a cluster: ConfigMap (the config
//!   this host runs), Secrets (the TLS pair and CA, the htpasswd file),
//!   PersistentVolumeClaim, Deployment, Service.
//! - `quay-operator`: a `QuayRegistry` and its config bundle Secret, whose
//!   config.yaml is this host's, less what the operator manages, with the
//!   keys that keep Quay's encrypted fields readable.
//!
//! Pure, like render: what the host knows comes in as [`Facts`] (read by
//! `cli/export.rs`), YAML documents go out. Render's own output (config
//! files, images) is reused, so an export carries the configuration this
//! host runs, not a re-derivation of it.

pub mod kube;
pub mod kubernetes;
pub mod quay_operator;
pub mod yaml;

use std::path::PathBuf;

use crate::api::defaults::Resolved;
use crate::api::Engine;
use crate::render::quay::QuaySecrets;
use crate::render::Desired;

/// Where an export goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// `podman kube play` on this host.
    Kube,
    /// The CNCF registry on a Kubernetes cluster.
    Kubernetes,
    /// Quay under the Quay Operator (OpenShift).
    QuayOperator,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Kube => "kube",
            Target::Kubernetes => "kubernetes",
            Target::QuayOperator => "quay-operator",
        }
    }
}

/// A file of the host whose content is secret: Debug never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretFile {
    pub path: PathBuf,
    pub content: String,
}

impl std::fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretFile")
            .field("path", &self.path)
            .field("content", &"<redacted>")
            .finish()
    }
}

/// The registry's TLS material as the host keeps it under `<root>/tls/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFacts {
    pub cert_file: PathBuf,
    pub cert: String,
    pub key: SecretFile,
    /// The generated CA (public); `None` for the user's own pair.
    pub ca: Option<String>,
}

/// What the host knows about one registry, as an export needs it.
#[derive(Clone, Debug)]
pub struct Facts {
    pub resolved: Resolved,
    /// Render's output with the host's generated secrets filled in: the
    /// config files and images the host runs.
    pub desired: Desired,
    pub tls: TlsFacts,
    /// distribution engine: `<root>/secrets/htpasswd`.
    pub htpasswd: Option<SecretFile>,
    /// quay engine: the kept keys (`<root>/secrets/quay-secrets.yaml`).
    pub quay_secrets: Option<QuaySecrets>,
    /// The host directory holding the image data: the podman volume's
    /// mountpoint or `spec.storage.path`.
    pub storage_dir: PathBuf,
    /// quay engine: the host directory holding the SQLite database.
    pub database_dir: Option<PathBuf>,
    /// kubernetes: the PersistentVolumeClaim's request, e.g. `10Gi`.
    pub storage_request: String,
    /// quay-operator: the cluster provides object storage, so the
    /// operator manages it.
    pub managed_storage: bool,
}

/// One YAML document of an export.
#[derive(Clone, PartialEq, Eq)]
pub struct Document {
    pub kind: &'static str,
    pub name: String,
    /// The document's YAML (comments first, no `---`).
    pub text: String,
    /// What secret it holds, when it holds one (never the value).
    pub secret: Option<&'static str>,
}

impl Document {
    /// `Kind/name`, as kubectl names objects.
    pub fn id(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text: &dyn std::fmt::Debug = if self.secret.is_some() {
            &"<redacted>"
        } else {
            &self.text
        };
        f.debug_struct("Document")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("text", text)
            .field("secret", &self.secret)
            .finish()
    }
}

/// Whether `target` can carry a registry of `engine`; the refusal names
/// what to do instead.
pub fn supports(target: Target, engine: Engine, name: &str) -> Result<(), String> {
    match (target, engine) {
        (Target::Kube, _)
        | (Target::Kubernetes, Engine::Distribution)
        | (Target::QuayOperator, Engine::Quay) => Ok(()),
        (Target::Kubernetes, Engine::Quay) => Err(format!(
            "mirrorregistry/{name} runs the quay engine: export it with --to quay-operator \
             (Quay under the Quay Operator) or --to kube (podman on this host); --to kubernetes \
             writes the CNCF registry, which cannot read Quay's storage: move the images into \
             one with skopeo sync (docs/outgrowing.md)"
        )),
        (Target::QuayOperator, Engine::Distribution) => Err(format!(
            "mirrorregistry/{name} runs the distribution engine: export it with --to kubernetes \
             (the CNCF registry on a cluster) or --to kube (podman on this host); a Quay under \
             the operator starts empty: move the images into it with skopeo sync \
             (docs/outgrowing.md)"
        )),
    }
}

/// The documents of an export, in the order they are applied.
pub fn export(target: Target, facts: &Facts) -> Result<Vec<Document>, String> {
    supports(target, facts.resolved.engine, &facts.resolved.name)?;
    match target {
        Target::Kube => kube::documents(facts),
        Target::Kubernetes => kubernetes::documents(facts),
        Target::QuayOperator => quay_operator::documents(facts),
    }
}

/// The labels every exported object carries.
pub fn labels(name: &str) -> serde_yaml::Value {
    yaml::strings([
        ("app.kubernetes.io/name", "mirror-registry".to_string()),
        ("app.kubernetes.io/instance", name.to_string()),
    ])
}

/// The image a component of the host runs, as render chose it.
pub fn image_of(desired: &Desired, component: &str) -> Result<String, String> {
    desired
        .components
        .iter()
        .find(|c| c.name == component)
        .map(|c| c.image.clone())
        .ok_or_else(|| format!("render has no component '{component}'"))
}

/// The content of a config file render writes, found by its path.
pub fn rendered_file<'a>(desired: &'a Desired, path: &std::path::Path) -> Result<&'a str, String> {
    desired
        .files
        .iter()
        .find(|f| f.path == path)
        .map(|f| f.content.as_str())
        .ok_or_else(|| format!("render writes no {}", path.display()))
}

/// A Kubernetes quantity for a storage request: digits, then a binary or
/// decimal suffix (`10Gi`, `500M`) or none.
pub fn check_quantity(q: &str) -> Result<(), String> {
    let digits = q.bytes().take_while(u8::is_ascii_digit).count();
    let suffix = &q[digits..];
    let ok = digits > 0
        && q.as_bytes()[0] != b'0'
        && matches!(
            suffix,
            "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "k" | "M" | "G" | "T" | "P" | "E"
        );
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{}' is not a storage size: write a whole number with a suffix such as Gi or Ti (e.g. 50Gi)",
            crate::api::validate::shown(q)
        ))
    }
}

/// GiB.
const GI: u64 = 1 << 30;
/// The smallest request an export makes.
pub const MIN_REQUEST_GI: u64 = 10;

/// A storage request for data of `used` bytes: twice that, in whole GiB,
/// at least [`MIN_REQUEST_GI`]; room to keep mirroring.
pub fn storage_request(used: u64) -> String {
    let gi = used.saturating_mul(2).div_ceil(GI).max(MIN_REQUEST_GI);
    format!("{gi}Gi")
}

#[cfg(test)]
pub(crate) mod testing {
    //! Facts for a spec, with stand-ins for the host's files.
    use super::*;
    use crate::api::defaults::{self, HostFacts};
    use crate::api::load;
    use crate::naming;
    use crate::render::quay::QuaySecrets;
    use crate::render::{self, Context, Inputs};

    pub const KEY: &str =
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleQ==\n-----END PRIVATE KEY-----\n";
    pub const HTPASSWD: &str = "init:$2y$04$abcdefghijklmnopqrstuvSECRETHASH\n";
    pub const SECRET_KEY: &str = "host-secret-key-0123456789";
    pub const DB_KEY: &str = "host-database-key-0123456789";
    pub const REDIS_PW: &str = "host-redis-password";

    pub fn facts(engine: &str, extra: &str) -> Facts {
        let text = format!(
            "apiVersion: mirrorregistry.io/v1alpha1\nkind: MirrorRegistry\nmetadata:\n  name: m1\nspec:\n  engine: {engine}\n  hostname: mirror.example.org\n  port: 8443\n  root: /srv/m1\n{extra}"
        );
        let loaded = load::parse(std::path::Path::new("m1.yaml"), text.as_bytes()).unwrap();
        let r = defaults::resolve(
            &loaded.resource,
            &loaded.name,
            &HostFacts {
                fqdn: "host.example.org".into(),
            },
        );
        let quay = (r.engine == Engine::Quay).then(|| QuaySecrets {
            redis_password: REDIS_PW.into(),
            secret_key: SECRET_KEY.into(),
            database_secret_key: DB_KEY.into(),
        });
        let cx = Context {
            podman: "/usr/bin/podman".into(),
            wanted_by: "default.target".into(),
        };
        let desired = render::render_with(
            &r,
            &cx,
            &Inputs {
                quay: quay.clone(),
                ..Inputs::default()
            },
        )
        .unwrap();
        let tls = naming::root::tls_dir(&r.root);
        Facts {
            tls: TlsFacts {
                cert_file: tls.join("tls.crt"),
                cert: "-----BEGIN CERTIFICATE-----\nY2VydA==\n-----END CERTIFICATE-----\n".into(),
                key: SecretFile {
                    path: tls.join("tls.key"),
                    content: KEY.into(),
                },
                ca: Some("-----BEGIN CERTIFICATE-----\nY2E=\n-----END CERTIFICATE-----\n".into()),
            },
            htpasswd: (r.engine == Engine::Distribution).then(|| SecretFile {
                path: naming::root::htpasswd_file(&r.root),
                content: HTPASSWD.into(),
            }),
            quay_secrets: quay,
            storage_dir: "/var/lib/containers/storage/volumes/m1-storage/_data".into(),
            database_dir: (r.engine == Engine::Quay)
                .then(|| "/var/lib/containers/storage/volumes/m1-sqlite-storage/_data".into()),
            storage_request: "10Gi".into(),
            managed_storage: false,
            desired,
            resolved: r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_requests_leave_room() {
        assert_eq!(storage_request(0), "10Gi");
        assert_eq!(storage_request(6 * GI), "12Gi");
        assert_eq!(storage_request(6 * GI + 1), "13Gi");
    }

    #[test]
    fn quantities() {
        for ok in ["10Gi", "1", "500M", "2Ti"] {
            assert!(check_quantity(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Gi", "10GB", "0Gi", "-1Gi", "1.5Gi", "10Gi\nx: y"] {
            assert!(check_quantity(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn each_engine_goes_where_it_can() {
        assert!(supports(Target::Kube, Engine::Quay, "a").is_ok());
        assert!(supports(Target::Kube, Engine::Distribution, "a").is_ok());
        let e = supports(Target::Kubernetes, Engine::Quay, "a").unwrap_err();
        assert!(e.contains("--to quay-operator"), "{e}");
        let e = supports(Target::QuayOperator, Engine::Distribution, "a").unwrap_err();
        assert!(e.contains("--to kubernetes"), "{e}");
    }

    #[test]
    fn debug_hides_secret_documents() {
        let d = Document {
            kind: "Secret",
            name: "x".into(),
            text: "data: c2VjcmV0".into(),
            secret: Some("a key"),
        };
        assert!(!format!("{d:?}").contains("c2VjcmV0"));
    }
}
