//! Engine `distribution`: the CNCF registry in `<name>-pod`, container
//! `<name>-registry`, TLS and htpasswd auth.

use super::unit::{container_unit, path_str, pod_unit_publishing, ContainerUnit, Mount};
use super::{
    root_dirs, split_storage, storage_source, yaml_scalar, Component, Context, Desired, File,
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

/// The registry's config.yml. No secrets: the htpasswd file and TLS key are
/// mounted beside it. Refused when a value cannot be a YAML scalar.
pub fn config(r: &Resolved) -> Result<String, String> {
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
http:
  addr: :{CONTAINER_PORT}
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
    ))
}

pub fn render(r: &Resolved, cx: &Context) -> Result<Desired, String> {
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
    Ok(Desired {
        name: r.name.clone(),
        pod: naming::pod(&r.name),
        pod_unit: pod_unit_publishing(
            &r.name,
            r.port,
            CONTAINER_PORT,
            &[DEBUG_PORT],
            r.images.pause.as_deref(),
            std::slice::from_ref(&registry.name),
            cx,
        )?,
        components: vec![Component {
            name: COMPONENT.to_string(),
            container: naming::container(&r.name, COMPONENT),
            unit: registry.name.clone(),
            image: image.clone(),
        }],
        units: vec![registry],
        files: vec![File {
            path: config_path,
            content: config(r)?,
            mode: 0o644,
        }],
        copies: vec![],
        dirs: root_dirs(&r.root),
        volumes,
        data_paths,
        images,
        port: r.port,
        health_path: "/v2/".to_string(),
    })
}
