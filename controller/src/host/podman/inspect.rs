//! The part of libpod's container inspect answer the controller reads, and
//! how it becomes a [`ContainerInfo`].

use std::collections::BTreeMap;

use super::{null_as_default, ContainerInfo};

/// The part of libpod's container inspect answer the controller reads.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct LibpodContainer {
    id: String,
    name: String,
    /// The image id (hex).
    image: String,
    /// The image reference the container was created from.
    #[serde(default)]
    image_name: String,
    #[serde(default)]
    pod: String,
    #[serde(default)]
    restart_count: i64,
    state: LibpodState,
    #[serde(default)]
    config: LibpodConfig,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LibpodState {
    #[serde(default)]
    status: String,
    #[serde(default)]
    running: bool,
    #[serde(default)]
    started_at: String,
}

#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LibpodConfig {
    #[serde(default, deserialize_with = "null_as_default")]
    labels: BTreeMap<String, String>,
}

impl LibpodContainer {
    pub(super) fn into_info(self) -> ContainerInfo {
        // Go's zero time means "never started".
        let started = &self.state.started_at;
        let started_at = (!started.is_empty() && !started.starts_with("0001-01-01"))
            .then(|| self.state.started_at.clone());
        ContainerInfo {
            id: self.id,
            name: self.name,
            image: self.image_name,
            image_id: bare_id(&self.image),
            running: self.state.running,
            status: self.state.status,
            started_at,
            restart_count: self.restart_count,
            labels: self.config.labels,
            pod: Some(self.pod).filter(|p| !p.is_empty()),
        }
    }
}

/// Image ids without the "sha256:" the Docker-compatible API puts in front,
/// so ids from either API compare equal.
pub(super) fn bare_id(id: &str) -> String {
    id.trim_start_matches("sha256:").to_string()
}
