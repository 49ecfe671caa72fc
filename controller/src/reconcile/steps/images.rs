//! Every image present: already there, loaded from the archive, or pulled.

use std::path::Path;

use crate::host::podman::Podman;

/// How the images are present, or a message naming the image missing and
/// why (the archive, the pull).
pub async fn ensure(
    podman: &Podman,
    images: &[String],
    archive: Option<&Path>,
) -> Result<String, String> {
    let mut missing = Vec::new();
    for i in images {
        if !podman.image_exists(i).await.map_err(|e| e.to_string())? {
            missing.push(i.clone());
        }
    }
    if missing.is_empty() {
        return Ok(format!("present: {}", images.join(", ")));
    }
    if let Some(a) = archive {
        if !a.is_file() {
            return Err(format!(
                "image {} is missing and spec.images.archive {} does not exist",
                missing.join(", "),
                a.display()
            ));
        }
        tracing::info!(archive = %a.display(), images = %missing.join(", "), "loading image archive");
        podman.load_archive(a).await.map_err(|e| {
            format!(
                "image {} is missing; loading {} failed: {e}",
                missing.join(", "),
                a.display()
            )
        })?;
        for m in &missing {
            if !podman.image_exists(m).await.map_err(|e| e.to_string())? {
                return Err(format!(
                    "image {m} is missing and the archive {} does not contain it",
                    a.display()
                ));
            }
        }
        return Ok(format!(
            "loaded from {}: {}",
            a.display(),
            missing.join(", ")
        ));
    }
    for m in &missing {
        tracing::info!(image = %m, "pulling image");
        podman.pull(m).await.map_err(|e| {
            format!("image {m} is missing and could not be pulled ({e}); on an air-gapped host set spec.images.archive")
        })?;
    }
    Ok(format!("pulled: {}", missing.join(", ")))
}
