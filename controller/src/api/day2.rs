//! Day-two fields: the free space a registry's storage must keep
//! (`spec.storage.minFree`), scheduled garbage collection
//! (`spec.garbageCollection`), and what status reports of the storage
//! (`status.storage`). The size and percentage forms are parsed here, the
//! one place `minFree` is read.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `spec.storage.minFree` when the spec does not say: a tenth of the
/// filesystem, the margin kubelet's own disk-pressure threshold keeps.
pub const DEFAULT_MIN_FREE: MinFree = MinFree::Percent(10);

/// Below this many free bytes the storage counts as full: a blob upload of
/// a layer of any size no longer fits.
pub const FULL_BYTES: u64 = 1 << 20;

/// Free space the storage's filesystem must keep before `StorageAvailable`
/// turns False (`LowSpace`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum MinFree {
    Bytes(u64),
    /// Of the filesystem's size, 0-100.
    Percent(u8),
}

impl Default for MinFree {
    fn default() -> Self {
        DEFAULT_MIN_FREE
    }
}

impl MinFree {
    pub fn is_default(&self) -> bool {
        *self == DEFAULT_MIN_FREE
    }

    /// The bytes to keep free on a filesystem of `total` bytes.
    pub fn bytes_of(self, total: u64) -> u64 {
        match self {
            MinFree::Bytes(b) => b,
            MinFree::Percent(p) => total / 100 * u64::from(p),
        }
    }

    /// `5Gi`, `500Mi`, `2G`, `1048576` (bytes) or `10%`: Kubernetes'
    /// quantity suffixes (binary Ki Mi Gi Ti, decimal k M G T).
    pub fn parse(s: &str) -> Result<MinFree, String> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            return match p.trim().parse::<u8>() {
                Ok(n) if n <= 100 => Ok(MinFree::Percent(n)),
                _ => Err(format!(
                    "'{s}' is not a percentage from 0% to 100% (write e.g. 10%)"
                )),
            };
        }
        const UNITS: [(&str, u64); 8] = [
            ("Ki", 1 << 10),
            ("Mi", 1 << 20),
            ("Gi", 1 << 30),
            ("Ti", 1 << 40),
            ("k", 1_000),
            ("M", 1_000_000),
            ("G", 1_000_000_000),
            ("T", 1_000_000_000_000),
        ];
        let (digits, mult) = UNITS
            .iter()
            .find_map(|(u, m)| t.strip_suffix(u).map(|d| (d, *m)))
            .unwrap_or((t, 1));
        digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(mult))
            .map(MinFree::Bytes)
            .ok_or_else(|| {
                format!("'{s}' is not a size or a percentage (write e.g. 5Gi, 500Mi or 10%)")
            })
    }
}

impl std::fmt::Display for MinFree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MinFree::Percent(p) => write!(f, "{p}%"),
            MinFree::Bytes(b) => f.write_str(&human_bytes(*b)),
        }
    }
}

/// Bytes as people read them: `512 B`, `3.2 MiB`, `1.5 GiB`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// Garbage collection of unreferenced blobs (distribution engine; Quay
/// collects by itself). Manifests are deleted through the registry's API,
/// which the distribution engine always enables for its authenticated
/// users: collection only reclaims what such a delete left unreferenced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GarbageCollectionSpec {
    /// When to collect, in systemd calendar syntax (`Sun 03:00`, `daily`):
    /// runs `mrctl gc NAME` from the `<name>-gc.timer` unit. Omitted: only
    /// when `mrctl gc NAME` is run by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

/// The registry's storage as last observed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StorageStatus {
    /// Host directory holding the blobs (a volume's mountpoint, or spec.storage.path).
    pub path: PathBuf,
    /// Bytes of the files under `path`.
    pub used_bytes: u64,
    /// Bytes free for the registry on the filesystem holding `path`.
    pub free_bytes: u64,
    /// The last garbage collection (`mrctl gc`), when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_garbage_collection: Option<GcReport>,
}

/// What one garbage collection did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcReport {
    /// RFC 3339 time it finished.
    pub time: String,
    /// Blobs deleted.
    pub blobs_deleted: u64,
    /// Bytes the storage shrank by.
    pub reclaimed_bytes: u64,
    /// Milliseconds the registry refused pushes (read-only).
    pub read_only_millis: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_free_forms() {
        assert_eq!(MinFree::parse("10%"), Ok(MinFree::Percent(10)));
        assert_eq!(MinFree::parse("5Gi"), Ok(MinFree::Bytes(5 << 30)));
        assert_eq!(MinFree::parse("500Mi"), Ok(MinFree::Bytes(500 << 20)));
        assert_eq!(MinFree::parse("2G"), Ok(MinFree::Bytes(2_000_000_000)));
        assert_eq!(MinFree::parse("4096"), Ok(MinFree::Bytes(4096)));
        for bad in ["", "101%", "-1%", "5 GB", "x", "1.5Gi", "99999999999Ti"] {
            assert!(MinFree::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(MinFree::Percent(10).bytes_of(1000), 100);
        assert_eq!(MinFree::Bytes(7).bytes_of(1000), 7);
        assert_eq!(MinFree::parse("5Gi").unwrap().to_string(), "5.0 GiB");
        assert_eq!(human_bytes(512), "512 B");
    }
}
