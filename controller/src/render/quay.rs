//! Engine `quay`: the original mirror registry's layout. Pod `<name>-pod`
//! publishing `spec.port` to Quay's 8443; containers `<name>-redis` and
//! `<name>-app` (Quay on SQLite); units `<name>-pod.service`,
//! `<name>-redis.service` and `<name>-app.service`, the app requiring the pod
//! and Redis.
//!
//! Files and who reads them:
//! - `<root>/config/quay/` (0700) is Quay's `/quay-registry/conf/stack`:
//!   `config.yaml` (0600: the Redis password and Quay's keys), `ssl.cert`
//!   and `ssl.key` (0600), copied from `<root>/tls/`.
//! - `<root>/config/redis.conf` (0600) holds Redis's `requirepass`; Redis
//!   runs `redis-server /etc/mirror-registry/redis.conf`, so the password is
//!   in no unit file, environment or command line. That works the same with
//!   Red Hat's image (its entrypoint runs the command it is given) and with
//!   one built from Debian's package.
//! - Both images run as a non-root user (1001 in Red Hat's). Every mount
//!   carries podman's `U` option, which makes the mounted files owned by
//!   the container's user when it starts, so they stay 0600, readable by
//!   that user and root only, never by everyone. The controller writes them
//!   as root; a changed file restarts its container, which owns it again.

use super::unit::{container_unit, path_str, ContainerUnit, Mount};
use super::{
    config_value, root_dirs, split_storage, storage_source, yaml_quoted, Container, Context,
    Desired, File, FileCopy, Parts, Pod,
};
use crate::api::defaults::{Resolved, QUAY_IMAGE, QUAY_PAUSE_IMAGE, REDIS_IMAGE};
use crate::naming;
use serde::{Deserialize, Serialize};

/// The quay engine's generated secrets: made and kept by the host
/// (`host::secrets`), written into files by render.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuaySecrets {
    pub redis_password: String,
    pub secret_key: String,
    pub database_secret_key: String,
}

impl std::fmt::Debug for QuaySecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QuaySecrets { <redacted> }")
    }
}

pub const APP: &str = "app";
pub const REDIS: &str = "redis";
/// Where Quay listens inside the pod.
pub const CONTAINER_PORT: u16 = 8443;
pub const REDIS_PORT: u16 = 6379;
pub const HEALTH_PATH: &str = "/health/instance";
pub const CONFIG_FILE: &str = "config.yaml";
pub const CONFIG_MOUNT: &str = "/quay-registry/conf/stack";
pub const SQLITE_MOUNT: &str = "/sqlite";
pub const STORAGE_MOUNT: &str = "/datastorage";
pub const REDIS_CONF_MOUNT: &str = "/etc/mirror-registry/redis.conf";
/// Gunicorn worker counts, as the original installer sets them. Without
/// them Quay sizes its pools by the host's cores with a floor of 8 registry
/// workers: on a 2-core host Quay 3.12 held 5.9 GiB in 57 processes, with
/// them 4.2 GiB in 44 (docs/quay.md).
pub const WORKER_ENV: [(&str, &str); 2] = [
    ("WORKER_COUNT_UNSUPPORTED_MINIMUM", "1"),
    ("WORKER_COUNT", "1"),
];
/// Stands where a generated secret goes when render has none (a preview).
pub const PLACEHOLDER: &str = "<generated: kept in secrets/quay-secrets.yaml>";

/// A double-quoted redis.conf argument; refused when it holds a character
/// that could end the line ([`config_value`]).
fn redis_str(what: &str, s: &str) -> Result<String, String> {
    config_value(what, s)?;
    Ok(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

struct Values<'a> {
    redis_password: &'a str,
    secret_key: &'a str,
    database_secret_key: &'a str,
}

fn values(secrets: Option<&QuaySecrets>) -> Values<'_> {
    match secrets {
        Some(s) => Values {
            redis_password: &s.redis_password,
            secret_key: &s.secret_key,
            database_secret_key: &s.database_secret_key,
        },
        None => Values {
            redis_password: PLACEHOLDER,
            secret_key: PLACEHOLDER,
            database_secret_key: PLACEHOLDER,
        },
    }
}

/// Quay's config.yaml: the original installer's, key for key, on SQLite and
/// local storage. One difference: SUPER_USERS names the initial user (the
/// original names `admin`, a user it never creates and anyone could sign up
/// as). And Redis is addressed as 127.0.0.1, not `localhost`: podman 4.3
/// can rewrite a pod's shared /etc/hosts without its localhost line when a
/// member container is replaced, and a name that stops resolving would
/// make Quay lose Redis. Refused when a value cannot be a YAML scalar.
pub fn config(r: &Resolved, secrets: Option<&QuaySecrets>) -> Result<String, String> {
    let v = values(secrets);
    let password = yaml_quoted("Redis password", v.redis_password)?;
    let redis = |indent: &str| {
        format!("{indent}host: 127.0.0.1\n{indent}password: {password}\n{indent}port: {REDIS_PORT}")
    };
    Ok(format!(
        "# Written by mirror-registry-controller; edits are overwritten.
AUTHENTICATION_TYPE: Database
BUILDLOGS_REDIS:
{buildlogs}
DATABASE_SECRET_KEY: {database_secret_key}
DB_URI: sqlite:///{SQLITE_MOUNT}/quay_sqlite.db
DEFAULT_TAG_EXPIRATION: 2w
DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS: []
DISTRIBUTED_STORAGE_PREFERENCE:
  - default
DISTRIBUTED_STORAGE_CONFIG:
  default:
    - LocalStorage
    - storage_path: {STORAGE_MOUNT}
ENTERPRISE_LOGO_URL: /static/img/quay-horizontal-color.svg
FEATURE_ACI_CONVERSION: false
FEATURE_ANONYMOUS_ACCESS: true
FEATURE_APP_REGISTRY: false
FEATURE_APP_SPECIFIC_TOKENS: true
FEATURE_BUILD_SUPPORT: false
FEATURE_CHANGE_TAG_EXPIRATION: true
FEATURE_DIRECT_LOGIN: true
FEATURE_PARTIAL_USER_AUTOCOMPLETE: true
FEATURE_REPO_MIRROR: true
FEATURE_MAILING: false
FEATURE_REQUIRE_TEAM_INVITE: true
FEATURE_RESTRICTED_V1_PUSH: true
FEATURE_SECURITY_NOTIFICATIONS: true
FEATURE_SECURITY_SCANNER: false
FEATURE_USERNAME_CONFIRMATION: true
FEATURE_USER_CREATION: true
FEATURE_USER_LOG_ACCESS: true
GITHUB_LOGIN_CONFIG: {{}}
GITHUB_TRIGGER_CONFIG: {{}}
GITLAB_TRIGGER_KIND: {{}}
LOGS_MODEL: database
LOGS_MODEL_CONFIG: {{}}
LOG_ARCHIVE_LOCATION: default
PREFERRED_URL_SCHEME: https
REGISTRY_TITLE: Red Hat Quay
REGISTRY_TITLE_SHORT: Red Hat Quay
REPO_MIRROR_SERVER_HOSTNAME: null
REPO_MIRROR_TLS_VERIFY: false
SECRET_KEY: {secret_key}
SECURITY_SCANNER_ISSUER_NAME: security_scanner
SERVER_HOSTNAME: {server_hostname}
SETUP_COMPLETE: true
SUPER_USERS:
  - {super_user}
TAG_EXPIRATION_OPTIONS:
  - 0s
  - 1d
  - 1w
  - 2w
  - 4w
TEAM_RESYNC_STALE_TIME: 60m
TESTING: false
USERFILES_LOCATION: default
USERFILES_PATH: userfiles/
USER_EVENTS_REDIS:
{user_events}
USE_CDN: false
FEATURE_USER_INITIALIZE: true
CREATE_NAMESPACE_ON_PUSH: true
",
        buildlogs = redis("  "),
        user_events = redis("  "),
        database_secret_key = yaml_quoted("DATABASE_SECRET_KEY", v.database_secret_key)?,
        secret_key = yaml_quoted("SECRET_KEY", v.secret_key)?,
        server_hostname = yaml_quoted("hostname", &r.host_port())?,
        super_user = yaml_quoted("initial user", &r.init_username)?,
    ))
}

/// Redis's configuration: the password, and nothing kept on disk (Quay uses
/// it for build logs and user events only). It listens on the pod's
/// loopback, where Quay reaches it at 127.0.0.1; nothing outside the pod
/// can.
pub fn redis_conf(secrets: Option<&QuaySecrets>) -> Result<String, String> {
    let v = values(secrets);
    Ok(format!(
        "# Written by mirror-registry-controller; edits are overwritten.
bind 127.0.0.1
port {REDIS_PORT}
protected-mode yes
requirepass {password}
save \"\"
appendonly no
dir /tmp
daemonize no
logfile \"\"
",
        password = redis_str("Redis password", v.redis_password)?,
    ))
}

pub fn render(
    r: &Resolved,
    cx: &Context,
    secrets: Option<&QuaySecrets>,
) -> Result<Desired, String> {
    let quay_image = r.images.quay.as_deref().unwrap_or(QUAY_IMAGE).to_string();
    let redis_image = r.images.redis.as_deref().unwrap_or(REDIS_IMAGE).to_string();
    let pause_image = r
        .images
        .pause
        .as_deref()
        .unwrap_or(QUAY_PAUSE_IMAGE)
        .to_string();
    let config_dir = naming::root::quay_config_dir(&r.root);
    let redis_conf_path = naming::root::redis_conf(&r.root);
    let tls_dir = naming::root::tls_dir(&r.root);
    let database = r
        .database
        .clone()
        .unwrap_or_else(|| crate::api::defaults::Storage::Volume(naming::sqlite_volume(&r.name)));
    let config_str = path_str(&config_dir);
    let redis_conf_str = path_str(&redis_conf_path);
    let storage = storage_source(&r.storage);
    let sqlite = storage_source(&database);

    let redis = container_unit(
        &ContainerUnit {
            name: &r.name,
            component: REDIS,
            description: "Redis container",
            image: &redis_image,
            mounts: vec![Mount {
                source: &redis_conf_str,
                target: REDIS_CONF_MOUNT,
                options: "ro,Z,U",
            }],
            after: vec![],
            env: vec![],
            args: vec!["redis-server", REDIS_CONF_MOUNT],
        },
        cx,
    )?;
    let app = container_unit(
        &ContainerUnit {
            name: &r.name,
            component: APP,
            description: "Quay container",
            image: &quay_image,
            mounts: vec![
                Mount {
                    source: &config_str,
                    target: CONFIG_MOUNT,
                    options: "Z,U",
                },
                Mount {
                    source: &sqlite,
                    target: SQLITE_MOUNT,
                    options: "Z,U",
                },
                Mount {
                    source: &storage,
                    target: STORAGE_MOUNT,
                    options: "Z,U",
                },
            ],
            after: vec![redis.name.clone()],
            env: WORKER_ENV.to_vec(),
            args: vec!["registry"],
        },
        cx,
    )?;
    let (volumes, data_paths) = split_storage(&[&r.storage, &database]);
    let mut dirs = root_dirs(&r.root);
    dirs.push((config_dir.clone(), 0o700));
    let containers = vec![
        Container {
            component: REDIS,
            unit: redis,
            image: &redis_image,
        },
        Container {
            component: APP,
            unit: app,
            image: &quay_image,
        },
    ];
    let pod = Pod::new(r, CONTAINER_PORT, &[], Some(&pause_image), containers, cx)?;
    let parts = Parts {
        files: vec![
            File {
                path: config_dir.join(CONFIG_FILE),
                content: config(r, secrets)?,
                mode: 0o600,
            },
            File {
                path: redis_conf_path,
                content: redis_conf(secrets)?,
                mode: 0o600,
            },
        ],
        copies: vec![
            FileCopy {
                from: tls_dir.join("tls.crt"),
                to: config_dir.join("ssl.cert"),
                mode: 0o600,
            },
            FileCopy {
                from: tls_dir.join("tls.key"),
                to: config_dir.join("ssl.key"),
                mode: 0o600,
            },
        ],
        dirs,
        volumes,
        data_paths,
        images: vec![redis_image.clone(), quay_image.clone(), pause_image.clone()],
        health_path: HEALTH_PATH,
    };
    Ok(pod.desired(r, parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_any_value_a_string() {
        assert_eq!(yaml_quoted("v", "it's").unwrap(), "'it''s'");
        assert_eq!(yaml_quoted("v", "123").unwrap(), "'123'");
        assert_eq!(redis_str("v", r#"a"b\c"#).unwrap(), r#""a\"b\\c""#);
        assert!(yaml_quoted("v", "a\nb: c").is_err());
        assert!(redis_str("v", "a\nport 1").is_err());
    }
}
