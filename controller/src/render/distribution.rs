//! Engine `distribution`: the CNCF registry in `<name>-pod`, container
//! `<name>-registry`, TLS and htpasswd auth.

use super::unit::{container_unit, path_str, ContainerUnit, Mount};
use super::{
    root_dirs, split_storage, storage_source, yaml_scalar, Container, Context, Desired, File,
    Parts, Pod,
};
use crate::api::defaults::{Resolved, DISTRIBUTION_IMAGE};
use crate::naming;

pub const COMPONENT: &str = "registry";
/// Where the registry listens inside the pod.
pub const CONTAINER_PORT: u16 = 5000;
/// The registry's debug server: its Prometheus metrics at /metrics (and Go's
/// expvar and pprof). The pod publishes it on 127.0.0.1 only; inside the
/// pod it listens on the pod's addresses, as the registry port does.
pub const DEBUG_PORT: u16 = 5001;
pub const CONFIG_FILE: &str = "registry-config.yml";
/// How long the registry lets requests in flight finish after SIGTERM (a
/// restart: `mrctl gc` makes two) before it exits; it stops accepting new
/// connections at once. Without it the registry exits on SIGTERM and cuts
/// every pull in progress. Below the unit's `podman stop --time 10`, so
/// the drain ends before podman kills.
pub const DRAIN_TIMEOUT: &str = "5s";

/// The registry's config.yml. No secrets: the htpasswd file and TLS key are
/// mounted beside it. Refused when a value cannot be a YAML scalar.
pub fn config(r: &Resolved) -> Result<String, String> {
    config_with(r, false)
}

/// The registry's storage config; `read_only`: the registry's maintenance
/// mode, in which it answers pushes and deletes with an error at once
/// (405 UNSUPPORTED) and keeps serving pulls.
fn storage_config(read_only: bool) -> &'static str {
    if read_only {
        "  maintenance:\n    readonly:\n      enabled: true\n"
    } else {
        ""
    }
}

/// [`config`], read-only while garbage is collected.
pub fn config_with(r: &Resolved, read_only: bool) -> Result<String, String> {
    Ok(format!(
        "# Written by mirror-registry-controller; edits are overwritten.
version: 0.1
log:
  level: info
  fields:
    service: registry
    registry: {name}
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
{maintenance}http:
  addr: :{CONTAINER_PORT}
  draintimeout: {DRAIN_TIMEOUT}
  host: {endpoint}
  tls:
    certificate: /certs/tls.crt
    key: /certs/tls.key
    minimumtls: tls1.2
  headers:
    X-Content-Type-Options: [nosniff]
  debug:
    addr: :{DEBUG_PORT}
    prometheus:
      enabled: true
      path: /metrics
auth:
  htpasswd:
    realm: {name}
    path: /auth/htpasswd
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
",
        name = yaml_scalar("name", &r.name)?,
        endpoint = yaml_scalar("endpoint", &r.endpoint())?,
        maintenance = storage_config(read_only),
    ))
}

pub fn render(r: &Resolved, cx: &Context, read_only: bool) -> Result<Desired, String> {
    let image = r
        .images
        .registry
        .clone()
        .unwrap_or_else(|| DISTRIBUTION_IMAGE.to_string());
    let config_path = naming::root::config_dir(&r.root).join(CONFIG_FILE);
    // Only the server pair: the CA key beside it never enters a container.
    let tls_dir = naming::root::tls_dir(&r.root);
    let tls_cert = path_str(&tls_dir.join("tls.crt"));
    let tls_key = path_str(&tls_dir.join("tls.key"));
    let htpasswd = path_str(&naming::root::htpasswd_file(&r.root));
    let config_str = path_str(&config_path);
    let storage = storage_source(&r.storage);
    let registry = container_unit(
        &ContainerUnit {
            name: &r.name,
            component: COMPONENT,
            description: "Registry container",
            image: &image,
            mounts: vec![
                Mount {
                    source: &config_str,
                    target: "/etc/docker/registry/config.yml",
                    options: "ro,Z",
                },
                Mount {
                    source: &tls_cert,
                    target: "/certs/tls.crt",
                    options: "ro,Z",
                },
                Mount {
                    source: &tls_key,
                    target: "/certs/tls.key",
                    options: "ro,Z",
                },
                Mount {
                    source: &htpasswd,
                    target: "/auth/htpasswd",
                    options: "ro,Z",
                },
                Mount {
                    source: &storage,
                    target: "/var/lib/registry",
                    options: "Z",
                },
            ],
            after: vec![],
            env: vec![],
            args: vec![],
        },
        cx,
    )?;
    let (volumes, data_paths) = split_storage(&[&r.storage]);
    let mut images = vec![image.clone()];
    images.extend(r.images.pause.clone());
    let registry = Container {
        component: COMPONENT,
        unit: registry,
        image: &image,
    };
    let pod = Pod::new(
        r,
        CONTAINER_PORT,
        &[DEBUG_PORT],
        r.images.pause.as_deref(),
        vec![registry],
        cx,
    )?;
    let parts = Parts {
        files: vec![File {
            path: config_path,
            content: config_with(r, read_only)?,
            mode: 0o644,
        }],
        copies: vec![],
        dirs: root_dirs(&r.root),
        volumes,
        data_paths,
        images,
        health_path: "/v2/",
    };
    Ok(pod.desired(r, parts))
}
