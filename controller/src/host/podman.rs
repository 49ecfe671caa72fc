//! podman over its API socket: images, volumes and container lists through
//! bollard (the Docker-compatible API); pods and container inspection through
//! a few libpod endpoints, which know about pods.
//!
//! Every call here is one observation or one idempotent action; "not found"
//! is an answer (`None`, or `Ok` for removals), not an error.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{Volume, VolumeCreateOptions};
use bollard::query_parameters::{
    CreateImageOptions, ImportImageOptions, ListContainersOptions, ListVolumesOptions,
    RemoveContainerOptions, RemoveVolumeOptions,
};
use bollard::Docker;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncReadExt;

use super::libpod;

pub mod exec;
mod inspect;

use inspect::{bare_id, LibpodContainer};

/// Seconds bollard waits for one API answer. Loading an archive has its own
/// bound, [`load_timeout`].
const API_TIMEOUT_SECS: u64 = 600;
/// What every load may take, whatever its size, and what each MiB adds.
const LOAD_BASE_SECS: u64 = 600;
const LOAD_SECS_PER_MIB: u64 = 10;
const ARCHIVE_CHUNK: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("podman API socket {socket}: {source}")]
    Connect {
        socket: PathBuf,
        #[source]
        source: BollardError,
    },
    #[error("podman {op} {target}: {source}")]
    Api {
        op: &'static str,
        target: String,
        #[source]
        source: BollardError,
    },
    #[error("podman {op} {target}: {source}")]
    Libpod {
        op: &'static str,
        target: String,
        #[source]
        source: libpod::Error,
    },
    #[error("podman {op} {target}: HTTP {status}: {message}")]
    LibpodStatus {
        op: &'static str,
        target: String,
        status: u16,
        message: String,
    },
    #[error("podman {op} {target}: unexpected answer: {source}")]
    Decode {
        op: &'static str,
        target: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("read image archive {path}: {source}")]
    Archive {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("load image archive {path}: {source}")]
    Load {
        path: PathBuf,
        #[source]
        source: BollardError,
    },
    #[error(
        "load image archive {path} ({:.1} MiB): podman did not answer within {}s, \
         the bound for an archive of that size ({LOAD_BASE_SECS}s plus {LOAD_SECS_PER_MIB}s per MiB)",
        *bytes as f64 / 1048576.0,
        bound.as_secs()
    )]
    LoadTimeout {
        path: PathBuf,
        bytes: u64,
        bound: Duration,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// How long podman may take to answer the load of an archive of `bytes`.
/// It answers only once it has read and unpacked the whole archive, which
/// on a slow disk takes far longer than any other call should: so a load
/// gets its own bound, growing with the archive (857 MiB: about 2.5 hours),
/// and every other call keeps [`API_TIMEOUT_SECS`].
pub fn load_timeout(bytes: u64) -> Duration {
    let mib = bytes.div_ceil(1 << 20);
    Duration::from_secs(LOAD_BASE_SECS.saturating_add(mib.saturating_mul(LOAD_SECS_PER_MIB)))
}

/// The API socket podman serves for the user (`$XDG_RUNTIME_DIR`) or for
/// the system.
pub fn default_socket(user_scope: bool) -> PathBuf {
    if user_scope {
        let runtime = std::env::var_os("XDG_RUNTIME_DIR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            // The same fallback podman uses when XDG_RUNTIME_DIR is unset.
            .unwrap_or_else(|| PathBuf::from(format!("/run/user/{}", current_uid())));
        runtime.join("podman").join("podman.sock")
    } else {
        PathBuf::from("/run/podman/podman.sock")
    }
}

fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    // /proc/self is owned by the process's uid; avoids an unsafe getuid().
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeInfo {
    pub name: String,
    pub mountpoint: PathBuf,
    pub labels: BTreeMap<String, String>,
}

/// A podman network as libpod describes it (the fields we read).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct NetworkInfo {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Driver options, e.g. `mtu`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// What removing a network came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkRemoval {
    /// Removed, or there was none.
    Removed,
    /// Podman refused (containers of someone else's still use it): its
    /// words.
    Refused(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    /// The image reference the container was created from.
    pub image: String,
    /// Hex, without "sha256:", as [`Podman::image_id`] returns it.
    pub image_id: String,
    pub running: bool,
    /// libpod's state: created, running, paused, stopped, exited, …
    pub status: String,
    /// RFC 3339; `None` when it never started.
    pub started_at: Option<String>,
    pub restart_count: i64,
    pub labels: BTreeMap<String, String>,
    /// The id of the pod the container belongs to.
    pub pod: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct PodInfo {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Name")]
    pub name: String,
    /// Created, Running, Degraded, Stopped, Exited, …
    #[serde(rename = "State")]
    pub state: String,
    #[serde(rename = "Labels", default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
}

fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    Ok(<Option<T> as serde::Deserialize>::deserialize(d)?.unwrap_or_default())
}

/// A podman API client. Cheap to clone; clones share the call counter.
#[derive(Clone, Debug)]
pub struct Podman {
    docker: Docker,
    socket: PathBuf,
    calls: Arc<AtomicU64>,
}

fn is_not_found(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn label_filter(key: &str, value: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![format!("{key}={value}")])])
}

impl Podman {
    /// Connects to the API socket and pings it, so a dead socket fails here
    /// and names itself.
    pub async fn connect(socket: &Path) -> Result<Self> {
        let connect_err = |source| Error::Connect {
            socket: socket.to_path_buf(),
            source,
        };
        let path = socket.to_str().ok_or_else(|| {
            connect_err(BollardError::SocketNotFoundError(
                socket.display().to_string(),
            ))
        })?;
        let docker =
            Docker::connect_with_unix(path, API_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
                .map_err(connect_err)?;
        let podman = Self {
            docker,
            socket: socket.to_path_buf(),
            calls: Arc::new(AtomicU64::new(0)),
        };
        podman.count();
        podman.docker.ping().await.map_err(connect_err)?;
        Ok(podman)
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// API requests made so far (by this value and its clones).
    pub fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// The bollard client, for callers that need an endpoint this adapter
    /// does not wrap (such as events). Calls made through it are not counted.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    pub async fn ping(&self) -> Result<()> {
        self.count();
        self.docker
            .ping()
            .await
            .map(|_| ())
            .map_err(|source| Error::Connect {
                socket: self.socket.clone(),
                source,
            })
    }

    pub async fn image_exists(&self, image: &str) -> Result<bool> {
        // libpod's exists answers without building an inspect document:
        // about a third of the time, on every reconcile.
        const OP: &str = "check image";
        let path = format!("/images/{}/exists", libpod::encode_segment(image));
        let response = self.libpod(OP, image, "GET", &path).await?;
        match response.status {
            204 => Ok(true),
            404 => Ok(false),
            _ => Err(unexpected(OP, image, &response)),
        }
    }

    /// The id (hex, without "sha256:") of the local image `image` (a name
    /// or id), `None` when absent.
    pub async fn image_id(&self, image: &str) -> Result<Option<String>> {
        self.count();
        match self.docker.inspect_image(image).await {
            Ok(i) => Ok(Some(bare_id(&i.id.unwrap_or_default()))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(source) => Err(Error::Api {
                op: "inspect image",
                target: image.to_string(),
                source,
            }),
        }
    }

    /// Loads the images in an archive as `podman save` writes it
    /// (docker-archive or oci-archive), streaming the file.
    pub async fn load_archive(&self, archive: &Path) -> Result<()> {
        let archive_err = |source| Error::Archive {
            path: archive.to_path_buf(),
            source,
        };
        let file = tokio::fs::File::open(archive).await.map_err(archive_err)?;
        let bytes = file.metadata().await.map_err(archive_err)?.len();
        // bollard wants a stream of plain bytes; a read error ends the stream
        // early and is reported here afterwards instead of as a bad archive.
        let read_error = Arc::new(Mutex::new(None));
        let body = file_stream(file, read_error.clone());
        let result = self.load_stream(archive, bytes, body).await;
        let read_error = read_error.lock().ok().and_then(|mut e| e.take());
        if let Some(e) = read_error {
            return Err(archive_err(e));
        }
        result
    }

    /// Loads the images in `body`, the `bytes` bytes of the archive at
    /// `archive` (which errors name), waiting for podman's answer up to
    /// [`load_timeout`] of its size instead of the client's bound.
    pub async fn load_stream(
        &self,
        archive: &Path,
        bytes: u64,
        body: impl Stream<Item = Bytes> + Send + 'static,
    ) -> Result<()> {
        self.load_within(archive, bytes, load_timeout(bytes), body)
            .await
    }

    async fn load_within(
        &self,
        archive: &Path,
        bytes: u64,
        bound: Duration,
        body: impl Stream<Item = Bytes> + Send + 'static,
    ) -> Result<()> {
        // A clone shares the connection pool; its timeout is its own.
        let loader = self.docker.clone().with_timeout(bound);
        self.count();
        let mut progress = loader.import_image_stream(ImportImageOptions::default(), body, None);
        while let Some(item) = progress.next().await {
            match item {
                Ok(_) => {}
                Err(BollardError::RequestTimeoutError) => {
                    return Err(Error::LoadTimeout {
                        path: archive.to_path_buf(),
                        bytes,
                        bound,
                    })
                }
                Err(source) => {
                    return Err(Error::Load {
                        path: archive.to_path_buf(),
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Pulls `image` (a full reference, tag included) from its registry.
    pub async fn pull(&self, image: &str) -> Result<()> {
        self.count();
        let options = CreateImageOptions {
            from_image: Some(image.to_string()),
            ..Default::default()
        };
        let mut progress = self.docker.create_image(Some(options), None, None);
        while let Some(item) = progress.next().await {
            item.map_err(|source| Error::Api {
                op: "pull",
                target: image.to_string(),
                source,
            })?;
        }
        Ok(())
    }

    pub async fn volume(&self, name: &str) -> Result<Option<VolumeInfo>> {
        self.count();
        match self.docker.inspect_volume(name).await {
            Ok(v) => Ok(Some(volume_info(v))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(source) => Err(Error::Api {
                op: "inspect volume",
                target: name.to_string(),
                source,
            }),
        }
    }

    pub async fn create_volume(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<()> {
        self.count();
        let options = VolumeCreateOptions {
            name: Some(name.to_string()),
            labels: Some(labels.clone().into_iter().collect()),
            ..Default::default()
        };
        self.docker
            .create_volume(options)
            .await
            .map(|_| ())
            .map_err(|source| Error::Api {
                op: "create volume",
                target: name.to_string(),
                source,
            })
    }

    /// Removes a volume; one that does not exist is already removed.
    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        self.count();
        match self
            .docker
            .remove_volume(name, Some(RemoveVolumeOptions { force: false }))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(source) => Err(Error::Api {
                op: "remove volume",
                target: name.to_string(),
                source,
            }),
        }
    }

    /// Volumes carrying the label `key=value`.
    pub async fn volumes_labelled(&self, key: &str, value: &str) -> Result<Vec<VolumeInfo>> {
        self.count();
        let options = ListVolumesOptions {
            filters: Some(label_filter(key, value)),
        };
        let list = self
            .docker
            .list_volumes(Some(options))
            .await
            .map_err(|source| Error::Api {
                op: "list volumes labelled",
                target: format!("{key}={value}"),
                source,
            })?;
        let mut volumes: Vec<VolumeInfo> = list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(volume_info)
            .collect();
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(volumes)
    }

    /// Inspects a container by name or id, `None` when absent. Uses the
    /// libpod endpoint: the Docker-compatible one does not say which pod a
    /// container belongs to, and one call is cheaper than two.
    pub async fn container(&self, name: &str) -> Result<Option<ContainerInfo>> {
        const OP: &str = "inspect container";
        let path = format!("/containers/{}/json", libpod::encode_segment(name));
        let response = self.libpod(OP, name, "GET", &path).await?;
        match response.status {
            404 => Ok(None),
            // A container being removed (`--rm`, `--replace` on restart) is
            // found by name, then gone when its record is read: podman
            // answers 500 "container <id> does not exist in ...". It is absent.
            500 if response.error_message().contains("does not exist") => Ok(None),
            _ if response.is_success() => serde_json::from_slice::<LibpodContainer>(&response.body)
                .map(|c| Some(c.into_info()))
                .map_err(|source| decode_error(OP, name, source)),
            _ => Err(unexpected(OP, name, &response)),
        }
    }

    /// Every container (running or not) carrying the label `key=value`.
    pub async fn containers_labelled(&self, key: &str, value: &str) -> Result<Vec<ContainerInfo>> {
        self.count();
        let options = ListContainersOptions {
            all: true,
            filters: Some(label_filter(key, value)),
            ..Default::default()
        };
        let list = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|source| Error::Api {
                op: "list containers labelled",
                target: format!("{key}={value}"),
                source,
            })?;
        // The list lacks start time, restarts and pod; inspect each. One
        // removed in between is simply no longer there.
        let mut containers = Vec::new();
        for summary in list {
            let Some(id) = summary.id else { continue };
            if let Some(info) = self.container(&id).await? {
                containers.push(info);
            }
        }
        containers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(containers)
    }

    /// Removes a container, stopping it first if needed; one that does not
    /// exist is already removed.
    pub async fn remove_container(&self, name: &str) -> Result<()> {
        self.count();
        let options = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        match self.docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(source) => Err(Error::Api {
                op: "remove container",
                target: name.to_string(),
                source,
            }),
        }
    }

    /// Inspects a pod by name or id (libpod API), `None` when absent.
    pub async fn pod(&self, name: &str) -> Result<Option<PodInfo>> {
        self.inspect("inspect pod", "pods", name).await
    }

    /// libpod's `GET /<collection>/<name>/json`, decoded; `None` on 404.
    async fn inspect<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        collection: &str,
        name: &str,
    ) -> Result<Option<T>> {
        let path = format!("/{collection}/{}/json", libpod::encode_segment(name));
        let response = self.libpod(op, name, "GET", &path).await?;
        match response.status {
            404 => Ok(None),
            _ if response.is_success() => serde_json::from_slice(&response.body)
                .map(Some)
                .map_err(|source| decode_error(op, name, source)),
            _ => Err(unexpected(op, name, &response)),
        }
    }

    /// Removes a pod and its containers (libpod API); one that does not
    /// exist is already removed.
    pub async fn remove_pod(&self, name: &str) -> Result<()> {
        const OP: &str = "remove pod";
        let path = format!("/pods/{}?force=true", libpod::encode_segment(name));
        let response = self.libpod(OP, name, "DELETE", &path).await?;
        match response.status {
            404 => Ok(()),
            _ if response.is_success() => Ok(()),
            _ => Err(unexpected(OP, name, &response)),
        }
    }

    /// Inspects a network by name (libpod API), `None` when absent.
    pub async fn network(&self, name: &str) -> Result<Option<NetworkInfo>> {
        self.inspect("inspect network", "networks", name).await
    }

    /// Creates a bridge network with this MTU and labels. No DNS: like
    /// podman's default network, a pod resolves names through the host's
    /// resolver, and no aardvark-dns process runs for it.
    pub async fn create_network(
        &self,
        name: &str,
        mtu: u32,
        labels: &BTreeMap<String, String>,
    ) -> Result<()> {
        const OP: &str = "create network";
        let body = serde_json::json!({
            "name": name,
            "driver": "bridge",
            "options": { "mtu": mtu.to_string() },
            "labels": labels,
            "dns_enabled": false,
        });
        let body = body.to_string();
        let response = self
            .libpod_with(OP, name, "POST", "/networks/create", body.as_bytes())
            .await?;
        if response.is_success() {
            Ok(())
        } else {
            Err(unexpected(OP, name, &response))
        }
    }

    /// Removes a network no container uses; one that does not exist is
    /// already removed. Never forced: podman would remove every container
    /// on it, whoever's they are.
    pub async fn remove_network(&self, name: &str) -> Result<NetworkRemoval> {
        const OP: &str = "remove network";
        let path = format!("/networks/{}", libpod::encode_segment(name));
        let response = self.libpod(OP, name, "DELETE", &path).await?;
        match response.status {
            404 => Ok(NetworkRemoval::Removed),
            _ if response.is_success() => Ok(NetworkRemoval::Removed),
            // "has associated containers with it ...: network is being used"
            500 if response.error_message().contains("being used") => {
                Ok(NetworkRemoval::Refused(response.error_message()))
            }
            _ => Err(unexpected(OP, name, &response)),
        }
    }

    async fn libpod(
        &self,
        op: &'static str,
        target: &str,
        method: &'static str,
        path: &str,
    ) -> Result<libpod::Response> {
        self.libpod_with(op, target, method, path, &[]).await
    }

    /// [`Podman::libpod`] with a JSON body (empty: none).
    async fn libpod_with(
        &self,
        op: &'static str,
        target: &str,
        method: &'static str,
        path: &str,
        body: &[u8],
    ) -> Result<libpod::Response> {
        self.count();
        libpod::request(&self.socket, method, path, body)
            .await
            .map_err(|source| Error::Libpod {
                op,
                target: target.to_string(),
                source,
            })
    }
}

/// An answer libpod should not have given, with its status and message.
fn unexpected(op: &'static str, target: &str, response: &libpod::Response) -> Error {
    Error::LibpodStatus {
        op,
        target: target.to_string(),
        status: response.status,
        message: response.error_message(),
    }
}

fn decode_error(op: &'static str, target: &str, source: serde_json::Error) -> Error {
    Error::Decode {
        op,
        target: target.to_string(),
        source,
    }
}

fn volume_info(v: Volume) -> VolumeInfo {
    VolumeInfo {
        name: v.name,
        mountpoint: PathBuf::from(v.mountpoint),
        labels: v.labels.into_iter().collect(),
    }
}

/// The file as a stream of chunks; a read error is stored in `error` and
/// ends the stream.
fn file_stream(
    file: tokio::fs::File,
    error: Arc<Mutex<Option<std::io::Error>>>,
) -> impl Stream<Item = Bytes> + Send + 'static {
    futures_util::stream::unfold(file, move |mut file| {
        let error = error.clone();
        async move {
            let mut buf = vec![0u8; ARCHIVE_CHUNK];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Bytes::from(buf), file))
                }
                Err(e) => {
                    if let Ok(mut slot) = error.lock() {
                        *slot = Some(e);
                    }
                    None
                }
            }
        }
    })
}

impl Podman {
    /// Names of containers that started, stopped, died or were removed, as
    /// podman announces them. The stream ends with the connection; the
    /// caller reconnects.
    pub fn container_changes(&self) -> impl futures_util::Stream<Item = String> + Send + 'static {
        use futures_util::StreamExt;
        let opts = bollard::query_parameters::EventsOptions {
            filters: Some(
                [("type".to_string(), vec!["container".to_string()])]
                    .into_iter()
                    .collect(),
            ),
            ..Default::default()
        };
        self.docker
            .events(Some(opts))
            .take_while(|e| std::future::ready(e.is_ok()))
            .filter_map(|e| async move {
                let e = e.ok()?;
                let action = e.action.unwrap_or_default();
                let interesting = ["start", "stop", "die", "remove", "died", "kill"]
                    .iter()
                    .any(|a| action == *a);
                if !interesting {
                    return None;
                }
                e.actor?.attributes?.get("name").cloned()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_archive_may_load_for_longer_than_one_api_answer() {
        const MIB: u64 = 1 << 20;
        let api = Duration::from_secs(API_TIMEOUT_SECS);
        // The archive that timed out after 600 s on a slow host.
        let large = load_timeout(857 * MIB);
        assert_eq!(large, Duration::from_secs(600 + 8570));
        assert!(large > api * 10, "{large:?}");
        // Never shorter than one API answer, even for a tiny archive.
        assert_eq!(load_timeout(0), Duration::from_secs(600));
        assert!(load_timeout(1) >= api);
        // A MiB begun counts whole; the bound grows with the size.
        assert_eq!(load_timeout(MIB + 1), Duration::from_secs(620));
        assert!(load_timeout(2 * MIB) < load_timeout(3 * MIB));
        // No overflow for any size a file can claim.
        assert!(load_timeout(u64::MAX) > large);
    }

    #[test]
    fn a_load_timeout_names_the_archive_and_the_bound() {
        let e = Error::LoadTimeout {
            path: PathBuf::from("/srv/images/quay.tar"),
            bytes: 857 << 20,
            bound: load_timeout(857 << 20),
        }
        .to_string();
        assert!(e.contains("/srv/images/quay.tar"), "{e}");
        assert!(e.contains("857.0 MiB"), "{e}");
        assert!(e.contains("9170s"), "{e}");
    }

    /// Against a socket that takes the request and never answers, as podman
    /// does while it loads: the load ends at its own bound, with an error
    /// naming the archive, and the client's bound for other calls is left
    /// as it was.
    #[tokio::test]
    async fn a_load_podman_does_not_answer_ends_at_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("podman.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            // Read all it sends; answer nothing.
            while conn.read(&mut buf).await.map(|n| n > 0).unwrap_or(false) {}
        });
        let docker = Docker::connect_with_unix(
            socket.to_str().unwrap(),
            API_TIMEOUT_SECS,
            bollard::API_DEFAULT_VERSION,
        )
        .unwrap();
        let podman = Podman {
            docker,
            socket: socket.clone(),
            calls: Arc::new(AtomicU64::new(0)),
        };
        let archive = dir.path().join("images.tar");
        let body = futures_util::stream::iter([Bytes::from_static(b"not really a tar")]);
        let started = std::time::Instant::now();
        let e = podman
            .load_within(&archive, 16, Duration::from_secs(1), body)
            .await
            .unwrap_err();
        let waited = started.elapsed();
        assert!(
            matches!(&e, Error::LoadTimeout { path, bound, .. }
                if *path == archive && *bound == Duration::from_secs(1)),
            "{e:?}"
        );
        assert!(e.to_string().contains("images.tar"), "{e}");
        assert!(
            waited >= Duration::from_secs(1) && waited < Duration::from_secs(30),
            "{waited:?}"
        );
        assert_eq!(
            podman.docker().timeout(),
            Duration::from_secs(API_TIMEOUT_SECS)
        );
        server.abort();
    }

    #[test]
    fn default_sockets() {
        assert_eq!(
            default_socket(false),
            PathBuf::from("/run/podman/podman.sock")
        );
        assert!(default_socket(true).ends_with("podman/podman.sock"));
    }

    #[test]
    fn container_info_reads_libpod_inspect() {
        let json = r#"{"Id":"c1","Name":"quay-app","Image":"7ae1","ImageName":"localhost/x:1",
            "Pod":"","RestartCount":2,"Other":{"deep":[1]},
            "State":{"Status":"created","Running":false,"StartedAt":"0001-01-01T00:00:00Z"},
            "Config":{"Labels":null}}"#;
        let c = serde_json::from_str::<LibpodContainer>(json)
            .unwrap()
            .into_info();
        assert_eq!(c.name, "quay-app");
        assert_eq!(c.image, "localhost/x:1");
        assert_eq!(c.image_id, "7ae1");
        assert_eq!(c.pod, None);
        assert_eq!(c.started_at, None);
        assert_eq!(c.restart_count, 2);
        assert!(c.labels.is_empty());

        let json = r#"{"Id":"c2","Name":"n","Image":"sha256:ab","Pod":"p1",
            "State":{"Status":"running","Running":true,"StartedAt":"2024-05-01T10:00:00Z"},
            "Config":{"Labels":{"owner":"quay"}}}"#;
        let c = serde_json::from_str::<LibpodContainer>(json)
            .unwrap()
            .into_info();
        assert!(c.running);
        assert_eq!(c.image_id, "ab");
        assert_eq!(c.pod.as_deref(), Some("p1"));
        assert_eq!(c.started_at.as_deref(), Some("2024-05-01T10:00:00Z"));
        assert_eq!(c.labels.get("owner").map(String::as_str), Some("quay"));
    }

    #[test]
    fn pod_info_reads_libpod_json() {
        let json = r#"{"Id":"abc","Name":"p","State":"Running","Labels":null,"Other":1}"#;
        let pod: PodInfo = serde_json::from_str(json).unwrap();
        assert_eq!(pod.id, "abc");
        assert_eq!(pod.state, "Running");
        assert!(pod.labels.is_empty());
    }
}
