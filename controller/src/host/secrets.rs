//! Secrets the quay engine's configuration holds (Redis password, Quay's
//! SECRET_KEY and DATABASE_SECRET_KEY), generated once and kept 0600 under
//! the registry's root for good: DATABASE_SECRET_KEY encrypts fields in
//! Quay's database, so a new one would make them unreadable. Reconciles and
//! image upgrades read them back; nothing regenerates a kept value.

use std::path::{Path, PathBuf};

use rand::distr::{Alphanumeric, SampleString};
use rand::rngs::OsRng;
use rand::TryRngCore;
use serde::Deserialize;

use super::files;
use crate::render::quay::QuaySecrets;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Files(#[from] files::Error),
    #[error("secrets file {path}: {message}; fix it (removing it generates new keys, and Quay can no longer read what it encrypted with the old ones)")]
    Bad { path: PathBuf, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Name of the file, under the secrets directory, that keeps them.
pub const QUAY_SECRETS_FILE: &str = "quay-secrets.yaml";
/// Length of a generated Redis password.
pub const REDIS_PASSWORD_LEN: usize = 32;
/// Length of a generated SECRET_KEY or DATABASE_SECRET_KEY.
pub const KEY_LEN: usize = 48;

/// As kept on disk: a missing field is generated, the others are kept.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Kept {
    redis_password: Option<String>,
    secret_key: Option<String>,
    database_secret_key: Option<String>,
}

/// `len` characters from `[A-Za-z0-9]`, from the operating system's RNG.
pub fn generate(len: usize) -> String {
    // The OS RNG fails only when the kernel cannot provide randomness at
    // all; no secret can be made then, so a panic is the honest outcome.
    Alphanumeric.sample_string(&mut OsRng.unwrap_err(), len)
}

/// A kept value must be one line of text: it goes into YAML and redis.conf,
/// quoted, but a line break or control character has no safe form there.
fn check(path: &Path, field: &str, value: &str) -> Result<()> {
    let bad = |message: String| Error::Bad {
        path: path.to_path_buf(),
        message,
    };
    if value.is_empty() {
        return Err(bad(format!("{field} is empty")));
    }
    if value.chars().any(char::is_control) {
        return Err(bad(format!("{field} contains a control character")));
    }
    Ok(())
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Kept> {
    // Every field is a string, so serde_yaml's errors name a position or a
    // field, never a value from the file.
    let kept: Kept = serde_yaml::from_slice(bytes).map_err(|e| Error::Bad {
        path: path.to_path_buf(),
        message: format!("not valid YAML: {e}"),
    })?;
    for (field, v) in [
        ("redisPassword", &kept.redis_password),
        ("secretKey", &kept.secret_key),
        ("databaseSecretKey", &kept.database_secret_key),
    ] {
        if let Some(v) = v {
            check(path, field, v)?;
        }
    }
    Ok(kept)
}

/// Keeps `secrets_dir` (0700) holding `quay-secrets.yaml` (0600): the values
/// kept there, any missing one generated. When the file does not exist yet
/// and `adopt` names a Quay config.yaml written by the original installer
/// (`<quayRoot>/quay-config/config.yaml`), its SECRET_KEY,
/// DATABASE_SECRET_KEY and Redis password are taken over, so its database
/// stays readable. A file that cannot be parsed is an error, never
/// overwritten. Returns the secrets and whether the file's content changed.
pub fn ensure_quay_secrets(
    secrets_dir: &Path,
    adopt: Option<&Path>,
) -> Result<(QuaySecrets, bool)> {
    files::ensure_dir(secrets_dir, 0o700)?;
    let file = secrets_dir.join(QUAY_SECRETS_FILE);
    let existing = files::read_optional(&file)?;
    let kept = match &existing {
        Some(bytes) => parse(&file, bytes)?,
        None => adopt.map(adopt_from).unwrap_or_default(),
    };
    let secrets = QuaySecrets {
        redis_password: kept
            .redis_password
            .unwrap_or_else(|| generate(REDIS_PASSWORD_LEN)),
        secret_key: kept.secret_key.unwrap_or_else(|| generate(KEY_LEN)),
        database_secret_key: kept
            .database_secret_key
            .unwrap_or_else(|| generate(KEY_LEN)),
    };
    let content = serde_yaml::to_string(&secrets).map_err(|e| Error::Bad {
        path: file.clone(),
        message: format!("cannot serialize: {e}"),
    })?;
    let changed = existing.as_deref() != Some(content.as_bytes());
    if changed {
        files::atomic_write(&file, content.as_bytes(), 0o600)?;
    } else {
        files::ensure_mode(&file, 0o600)?;
    }
    Ok((secrets, changed))
}

/// The secrets of an original installer's config.yaml, each only when it is
/// a usable string; anything unreadable is simply not adopted.
fn adopt_from(config: &Path) -> Kept {
    let Ok(Some(bytes)) = files::read_optional(config) else {
        return Kept::default();
    };
    let Ok(v) = serde_yaml::from_slice::<serde_yaml::Value>(&bytes) else {
        return Kept::default();
    };
    let usable = |x: Option<&serde_yaml::Value>| {
        x.and_then(|s| s.as_str())
            .filter(|s| check(config, "", s).is_ok())
            .map(str::to_string)
    };
    Kept {
        redis_password: usable(v.get("USER_EVENTS_REDIS").and_then(|r| r.get("password"))),
        secret_key: usable(v.get("SECRET_KEY")),
        database_secret_key: usable(v.get("DATABASE_SECRET_KEY")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn generated_once_then_kept_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("secrets");
        let (a, changed) = ensure_quay_secrets(&secrets, None).unwrap();
        assert!(changed);
        assert_eq!(a.redis_password.len(), REDIS_PASSWORD_LEN);
        assert_eq!(a.secret_key.len(), KEY_LEN);
        assert_ne!(a.secret_key, a.database_secret_key);
        let file = secrets.join(QUAY_SECRETS_FILE);
        assert_eq!(mode(&secrets), 0o700);
        assert_eq!(mode(&file), 0o600);
        let ino = fs::metadata(&file).unwrap().ino();
        let bytes = fs::read(&file).unwrap();

        let (b, changed) = ensure_quay_secrets(&secrets, None).unwrap();
        assert!(!changed);
        assert_eq!(a, b);
        assert_eq!(fs::read(&file).unwrap(), bytes);
        assert_eq!(fs::metadata(&file).unwrap().ino(), ino, "not rewritten");

        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let (_, changed) = ensure_quay_secrets(&secrets, None).unwrap();
        assert!(!changed, "a mode repair is not a change");
        assert_eq!(mode(&file), 0o600);
    }

    #[test]
    fn a_missing_field_is_generated_and_the_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(QUAY_SECRETS_FILE);
        fs::write(&file, "secretKey: keep-me\ndatabaseSecretKey: 'k2'\n").unwrap();
        let (s, changed) = ensure_quay_secrets(dir.path(), None).unwrap();
        assert!(changed);
        assert_eq!(s.secret_key, "keep-me");
        assert_eq!(s.database_secret_key, "k2");
        assert_eq!(s.redis_password.len(), REDIS_PASSWORD_LEN);
    }

    #[test]
    fn a_broken_file_is_an_error_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(QUAY_SECRETS_FILE);
        for text in [
            "secretKey: [not, a, string]\n",
            "secretKey: ''\n",
            "other: x\n",
        ] {
            fs::write(&file, text).unwrap();
            let err = ensure_quay_secrets(dir.path(), None).unwrap_err();
            assert!(
                err.to_string().contains(&file.display().to_string()),
                "{err}"
            );
            assert_eq!(fs::read_to_string(&file).unwrap(), text);
        }
    }

    #[test]
    fn adopts_the_original_installers_keys_once() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("config.yaml");
        fs::write(
            &old,
            "SECRET_KEY: 'c2VjcmV0+/='\nDATABASE_SECRET_KEY: \"db-key\"\nUSER_EVENTS_REDIS:\n  host: localhost\n  password: redispw\n  port: 6379\n",
        )
        .unwrap();
        let secrets = dir.path().join("secrets");
        let (s, _) = ensure_quay_secrets(&secrets, Some(&old)).unwrap();
        assert_eq!(s.secret_key, "c2VjcmV0+/=");
        assert_eq!(s.database_secret_key, "db-key");
        assert_eq!(s.redis_password, "redispw");
        // Once kept, the file wins over the old config.
        fs::write(&old, "SECRET_KEY: other\n").unwrap();
        let (again, changed) = ensure_quay_secrets(&secrets, Some(&old)).unwrap();
        assert!(!changed);
        assert_eq!(again, s);
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let s = QuaySecrets {
            redis_password: "p4ss".into(),
            secret_key: "k3y".into(),
            database_secret_key: "d8".into(),
        };
        let d = format!("{s:?}");
        assert!(!d.contains("p4ss") && !d.contains("k3y") && !d.contains("d8"));
    }
}
