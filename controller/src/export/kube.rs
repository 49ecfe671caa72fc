//! `--to kube`: a Pod for `podman kube play` on this host, serving what the
//! units serve: the same config file, TLS pair, htpasswd (or Quay's config
//! directory and Redis's config) and data, mounted from the host.
//!
//! Only what podman 4.3 (Debian 12's) plays correctly: hostPath volumes
//! (`File` or `Directory`), ports through hostPort, images already present
//! (`imagePullPolicy: Never`, as the units' `--pull never`). No Secret
//! volumes (4.3 mishandles their contents) and no PersistentVolumeClaim
//! (4.3 fails to play one again): the export holds no secret value, it
//! points at the host's own 0600 files.
//!
//! The pod is `<name>-kube`, so it never takes the units' names (`<name>-pod`,
//! `<name>-<component>`), and it carries no owner label: the controller
//! neither adopts nor removes it.

use std::path::{Path, PathBuf};

use serde_yaml::Value;

use super::yaml::{map, s, seq, to_text};
use super::{image_of, labels, Document, Facts};
use crate::api::Engine;
use crate::naming;
use crate::render::{distribution, quay};

/// The pod's name.
pub fn pod_name(name: &str) -> String {
    format!("{name}-kube")
}

/// One hostPath mount of a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostMount {
    pub volume: &'static str,
    pub host_path: PathBuf,
    /// `File` or `Directory`: play fails when the host has no such thing,
    /// rather than create an empty one.
    pub host_type: &'static str,
    pub mount_path: &'static str,
    pub read_only: bool,
}

/// A container of the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeContainer {
    pub name: &'static str,
    pub image: String,
    pub args: Vec<&'static str>,
    pub mounts: Vec<HostMount>,
    /// (containerPort, hostPort)
    pub port: Option<(u16, u16)>,
}

fn mount(
    volume: &'static str,
    host_path: &Path,
    host_type: &'static str,
    mount_path: &'static str,
    read_only: bool,
) -> HostMount {
    HostMount {
        volume,
        host_path: host_path.to_path_buf(),
        host_type,
        mount_path,
        read_only,
    }
}

/// The containers, with the mounts the units give them.
pub fn containers(f: &Facts) -> Result<Vec<KubeContainer>, String> {
    let r = &f.resolved;
    let tls_dir = naming::root::tls_dir(&r.root);
    Ok(match r.engine {
        Engine::Distribution => {
            let config = naming::root::config_dir(&r.root).join(distribution::CONFIG_FILE);
            vec![KubeContainer {
                name: distribution::COMPONENT,
                image: image_of(&f.desired, distribution::COMPONENT)?,
                args: vec![],
                mounts: vec![
                    mount(
                        "config",
                        &config,
                        "File",
                        "/etc/docker/registry/config.yml",
                        true,
                    ),
                    mount(
                        "tls-crt",
                        &tls_dir.join("tls.crt"),
                        "File",
                        "/certs/tls.crt",
                        true,
                    ),
                    mount(
                        "tls-key",
                        &tls_dir.join("tls.key"),
                        "File",
                        "/certs/tls.key",
                        true,
                    ),
                    mount(
                        "htpasswd",
                        &naming::root::htpasswd_file(&r.root),
                        "File",
                        "/auth/htpasswd",
                        true,
                    ),
                    mount(
                        "storage",
                        &f.storage_dir,
                        "Directory",
                        "/var/lib/registry",
                        false,
                    ),
                ],
                port: Some((distribution::CONTAINER_PORT, r.port)),
            }]
        }
        Engine::Quay => {
            let database = f
                .database_dir
                .as_deref()
                .ok_or("the quay engine's database directory is not known")?;
            vec![
                KubeContainer {
                    name: quay::REDIS,
                    image: image_of(&f.desired, quay::REDIS)?,
                    args: vec!["redis-server", quay::REDIS_CONF_MOUNT],
                    mounts: vec![mount(
                        "redis-conf",
                        &naming::root::redis_conf(&r.root),
                        "File",
                        quay::REDIS_CONF_MOUNT,
                        true,
                    )],
                    port: None,
                },
                KubeContainer {
                    name: quay::APP,
                    image: image_of(&f.desired, quay::APP)?,
                    args: vec!["registry"],
                    mounts: vec![
                        mount(
                            "quay-config",
                            &naming::root::quay_config_dir(&r.root),
                            "Directory",
                            quay::CONFIG_MOUNT,
                            false,
                        ),
                        mount("sqlite", database, "Directory", quay::SQLITE_MOUNT, false),
                        mount(
                            "storage",
                            &f.storage_dir,
                            "Directory",
                            quay::STORAGE_MOUNT,
                            false,
                        ),
                    ],
                    port: Some((quay::CONTAINER_PORT, r.port)),
                },
            ]
        }
    })
}

fn path_value(p: &Path) -> Result<Value, String> {
    p.to_str()
        .map(s)
        .ok_or_else(|| format!("{} is not UTF-8", p.display()))
}

pub fn documents(f: &Facts) -> Result<Vec<Document>, String> {
    let r = &f.resolved;
    let name = pod_name(&r.name);
    let cs = containers(f)?;
    let mut containers = Vec::new();
    let mut volumes = Vec::new();
    for c in &cs {
        let mut fields = vec![
            ("name", s(c.name)),
            ("image", s(&c.image)),
            ("imagePullPolicy", s("Never")),
        ];
        if !c.args.is_empty() {
            fields.push(("args", seq(c.args.iter().map(|a| s(*a)))));
        }
        if let Some((container_port, host_port)) = c.port {
            fields.push((
                "ports",
                seq([map([
                    ("containerPort", Value::from(container_port)),
                    ("hostPort", Value::from(host_port)),
                    ("protocol", s("TCP")),
                ])]),
            ));
        }
        fields.push((
            "volumeMounts",
            seq(c.mounts.iter().map(|m| {
                map([
                    ("name", s(m.volume)),
                    ("mountPath", s(m.mount_path)),
                    ("readOnly", Value::from(m.read_only)),
                ])
            })),
        ));
        let mut m = serde_yaml::Mapping::new();
        for (k, v) in fields {
            m.insert(Value::from(k), v);
        }
        containers.push(Value::Mapping(m));
        for m in &c.mounts {
            volumes.push(map([
                ("name", s(m.volume)),
                (
                    "hostPath",
                    map([
                        ("path", path_value(&m.host_path)?),
                        ("type", s(m.host_type)),
                    ]),
                ),
            ]));
        }
    }
    let pod = map([
        ("apiVersion", s("v1")),
        ("kind", s("Pod")),
        (
            "metadata",
            map([("name", s(&name)), ("labels", labels(&r.name))]),
        ),
        (
            "spec",
            map([
                ("restartPolicy", s("Always")),
                ("containers", seq(containers)),
                ("volumes", seq(volumes)),
            ]),
        ),
    ]);
    let header = format!(
        "# MirrorRegistry {n} for `podman kube play` on this host: the config, TLS pair,\n\
         # credentials and data its units use, mounted from the host (no secret is in this file).\n\
         # Pause the registry first (spec.paused: true), so its units free port {port}; then\n\
         #   podman kube play FILE      and, to undo it,      podman kube down FILE\n",
        n = r.name,
        port = r.port
    );
    Ok(vec![Document {
        kind: "Pod",
        name,
        text: format!("{header}{}", to_text(&pod)?),
        secret: None,
    }])
}

/// The host files a kube export mounts that hold secrets: said, never read.
pub fn secret_files(f: &Facts) -> Vec<PathBuf> {
    let r = &f.resolved;
    let mut out = vec![naming::root::tls_dir(&r.root).join("tls.key")];
    match r.engine {
        Engine::Distribution => out.push(naming::root::htpasswd_file(&r.root)),
        Engine::Quay => {
            let dir = naming::root::quay_config_dir(&r.root);
            out.push(dir.join(quay::CONFIG_FILE));
            out.push(dir.join("ssl.key"));
            out.push(naming::root::redis_conf(&r.root));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::{self, facts};
    use super::*;
    use crate::api::defaults::Storage;

    /// `--volume SRC:DST:OPTS` words of a unit file, unquoted.
    fn unit_volumes(text: &str) -> Vec<(String, String, String)> {
        text.split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "--volume")
            .map(|w| {
                let v = w[1].trim_matches('"').trim_end_matches('\\');
                let parts: Vec<&str> = v.splitn(3, ':').collect();
                (
                    parts[0].to_string(),
                    parts[1].to_string(),
                    parts[2].to_string(),
                )
            })
            .collect()
    }

    /// The pod mounts exactly what the units mount: the same host files at
    /// the same places, read-only where the units' are, a volume by its
    /// mountpoint.
    #[test]
    fn mounts_are_the_units_mounts() {
        for engine in ["distribution", "quay"] {
            let f = facts(engine, "");
            let volume_dir = |src: &str| -> String {
                let storage = match &f.resolved.storage {
                    Storage::Volume(v) => v.clone(),
                    Storage::Path(p) => p.display().to_string(),
                };
                if src == storage {
                    f.storage_dir.display().to_string()
                } else if src == naming::sqlite_volume(&f.resolved.name) {
                    f.database_dir.as_ref().unwrap().display().to_string()
                } else {
                    src.to_string()
                }
            };
            let cs = containers(&f).unwrap();
            for (component, unit) in f.desired.components.iter().zip(&f.desired.units) {
                let mut want: Vec<(String, String, bool)> = unit_volumes(&unit.content)
                    .into_iter()
                    .map(|(src, dst, opts)| {
                        (volume_dir(&src), dst, opts.split(',').any(|o| o == "ro"))
                    })
                    .collect();
                want.sort();
                let c = cs.iter().find(|c| c.name == component.name).unwrap();
                let mut have: Vec<(String, String, bool)> = c
                    .mounts
                    .iter()
                    .map(|m| {
                        (
                            m.host_path.display().to_string(),
                            m.mount_path.to_string(),
                            m.read_only,
                        )
                    })
                    .collect();
                have.sort();
                assert_eq!(have, want, "{engine} {}", component.name);
                assert_eq!(c.image, component.image);
            }
        }
    }

    #[test]
    fn the_pod_publishes_the_port_and_holds_no_secret() {
        let f = facts("distribution", "");
        let docs = documents(&f).unwrap();
        assert_eq!(docs.len(), 1);
        let d = &docs[0];
        assert_eq!(d.id(), "Pod/m1-kube");
        assert!(d.secret.is_none());
        for secret in [testing::KEY, testing::HTPASSWD, "c2VjcmV0LWtleQ"] {
            assert!(!d.text.contains(secret.trim()));
        }
        let v: Value = serde_yaml::from_str(&d.text).unwrap();
        let c = &v["spec"]["containers"][0];
        assert_eq!(c["ports"][0]["hostPort"], Value::from(8443));
        assert_eq!(c["ports"][0]["containerPort"], Value::from(5000));
        assert_eq!(c["imagePullPolicy"], s("Never"));
        let vols = v["spec"]["volumes"].as_sequence().unwrap();
        assert!(vols.iter().all(|v| v.get("hostPath").is_some()));
        assert!(vols
            .iter()
            .any(|v| v["hostPath"]["path"]
                == s("/var/lib/containers/storage/volumes/m1-storage/_data")));
        assert!(v["metadata"]["labels"]
            .as_mapping()
            .unwrap()
            .keys()
            .all(|k| k.as_str() != Some(naming::OWNER_LABEL)));
    }

    #[test]
    fn quay_runs_redis_and_quay_as_the_units_do() {
        let f = facts("quay", "");
        let v: Value = serde_yaml::from_str(&documents(&f).unwrap()[0].text).unwrap();
        let cs = v["spec"]["containers"].as_sequence().unwrap();
        assert_eq!(cs[0]["name"], s("redis"));
        assert_eq!(
            cs[0]["args"],
            seq([s("redis-server"), s("/etc/mirror-registry/redis.conf")])
        );
        assert_eq!(cs[1]["name"], s("app"));
        assert_eq!(cs[1]["args"], seq([s("registry")]));
        assert_eq!(cs[1]["ports"][0]["containerPort"], Value::from(8443));
        assert!(!f.desired.files[0].content.is_empty());
        let text = &documents(&f).unwrap()[0].text;
        for secret in [testing::SECRET_KEY, testing::DB_KEY, testing::REDIS_PW] {
            assert!(!text.contains(secret));
        }
    }
}
