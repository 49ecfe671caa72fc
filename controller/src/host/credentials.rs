//! The registry's initial user: a password generated once and kept 0600
//! under the registry's root (or read from the user's password file), and
//! the htpasswd file the distribution engine authenticates against.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rand::distr::{Alphanumeric, SampleString};
use rand::rngs::OsRng;
use rand::TryRngCore;
use serde::{Deserialize, Serialize};

use super::files;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Files(#[from] files::Error),
    #[error("read password file {path}: {source}")]
    ReadPassword {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("password file {path} {problem}")]
    BadPassword {
        path: PathBuf,
        problem: &'static str,
    },
    #[error("credentials file {path}: {message}; fix or remove it (removing it generates a new password)")]
    BadCredentials { path: PathBuf, message: String },
    #[error("user name {user:?} cannot be used in htpasswd: {problem}")]
    BadUser { user: String, problem: &'static str },
    #[error("hash the password for {user:?}: {source}")]
    Hash {
        user: String,
        #[source]
        source: bcrypt::BcryptError,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Name of the file, under the secrets directory, that keeps the credentials.
pub const CREDENTIALS_FILE: &str = "init-credentials";
/// Length of a generated password.
pub const PASSWORD_LEN: usize = 32;
/// bcrypt cost of htpasswd entries: bcrypt's minimum. The distribution
/// registry verifies the hash on every authenticated request, so cost 10
/// (`htpasswd -B`'s default) spent ~50 ms of CPU per request, capping a
/// 2-core host at a few dozen requests a second. A work factor only slows
/// down someone who has the hash and guesses the password offline; here the
/// htpasswd file sits in the same root-only 0700 secrets directory as
/// `init-credentials`, which holds the password itself (a generated one has
/// ~190 bits, a user's passwordFile is kept there too), so whoever can read
/// the hash can read the password, and a higher cost protects nothing.
pub const BCRYPT_COST: u32 = 4;

/// The registry's initial user.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A new password: 32 characters from `[A-Za-z0-9]` (about 190 bits), drawn
/// from the operating system's RNG.
pub fn generate_password() -> String {
    // The OS RNG fails only when the kernel cannot provide randomness at all;
    // no password can be made then, so a panic is the honest outcome.
    Alphanumeric.sample_string(&mut OsRng.unwrap_err(), PASSWORD_LEN)
}

/// One htpasswd line, `user:$2y$10$…`: bcrypt with the `$2y$` prefix Apache's
/// `htpasswd -B` writes, which the distribution registry accepts.
pub fn htpasswd_line(user: &str, password: &str) -> Result<String> {
    let bad = |problem| Error::BadUser {
        user: user.to_string(),
        problem,
    };
    if user.is_empty() {
        return Err(bad("it is empty"));
    }
    if user.contains(':') {
        return Err(bad("it contains ':'"));
    }
    if user.chars().any(char::is_control) {
        return Err(bad("it contains a control character"));
    }
    // Refuse rather than silently truncate a password bcrypt cannot hold
    // (over 72 bytes): a login with the full password must work.
    let hash =
        bcrypt::non_truncating_hash_with_result(password, BCRYPT_COST).map_err(|source| {
            Error::Hash {
                user: user.to_string(),
                source,
            }
        })?;
    Ok(format!(
        "{user}:{}",
        hash.format_for_version(bcrypt::Version::TwoY)
    ))
}

/// True when `existing` (htpasswd content) has a line for `user` whose hash
/// verifies `password`. bcrypt salts differ every time, so this, not a byte
/// comparison, tells whether the file must be rewritten.
pub fn htpasswd_matches(existing: &str, user: &str, password: &str) -> bool {
    // bcrypt is slow by design (tens of ms); a converged reconcile asks the
    // same question every time, so remember which exact inputs verified.
    use sha2::{Digest, Sha256};
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static VERIFIED: OnceLock<Mutex<HashSet<[u8; 32]>>> = OnceLock::new();
    let key: [u8; 32] = Sha256::new()
        .chain_update(existing.as_bytes())
        .chain_update([0])
        .chain_update(user.as_bytes())
        .chain_update([0])
        .chain_update(password.as_bytes())
        .finalize()
        .into();
    let memo = VERIFIED.get_or_init(Mutex::default);
    if memo.lock().is_ok_and(|m| m.contains(&key)) {
        return true;
    }
    let ok = existing
        .lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(u, _)| *u == user)
        .any(|(_, hash)| bcrypt::verify(password, hash.trim_end()).unwrap_or(false));
    if ok {
        if let Ok(mut m) = memo.lock() {
            m.insert(key);
        }
    }
    ok
}

/// Reads a password file: one trailing newline is dropped; an empty password
/// is an error. Errors name the file; the password never appears in them.
pub fn read_password_file(path: &Path) -> Result<String> {
    let bytes = fs::read(path).map_err(|source| Error::ReadPassword {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| Error::BadPassword {
        path: path.to_path_buf(),
        problem: "is not UTF-8 text",
    })?;
    let password = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if password.is_empty() {
        return Err(Error::BadPassword {
            path: path.to_path_buf(),
            problem: "is empty",
        });
    }
    if password.contains(['\n', '\r']) {
        return Err(Error::BadPassword {
            path: path.to_path_buf(),
            problem: "holds more than one line",
        });
    }
    Ok(password.to_string())
}

/// The permission bits of `path` when group or others may read it (so the
/// caller can warn about a password file left readable), else `None`.
pub fn readable_by_others(path: &Path) -> Result<Option<u32>> {
    let meta = fs::metadata(path).map_err(|source| Error::ReadPassword {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    Ok((mode & 0o044 != 0).then_some(mode))
}

/// Reads a credentials file written by [`ensure_init_credentials`].
pub fn read_credentials(file: &Path) -> Result<Credentials> {
    let bytes = fs::read(file).map_err(|e| Error::BadCredentials {
        path: file.to_path_buf(),
        message: e.to_string(),
    })?;
    parse_credentials(file, &bytes)
}

fn parse_credentials(file: &Path, bytes: &[u8]) -> Result<Credentials> {
    let bad = |message: String| Error::BadCredentials {
        path: file.to_path_buf(),
        message,
    };
    // Both fields are strings, so serde_yaml's type errors name a position
    // or a field, not a value from the file.
    let creds: Credentials =
        serde_yaml::from_slice(bytes).map_err(|e| bad(format!("not valid YAML: {e}")))?;
    if creds.password.is_empty() {
        return Err(bad("the password is empty".into()));
    }
    Ok(creds)
}

fn render_credentials(creds: &Credentials) -> Result<String> {
    serde_yaml::to_string(creds).map_err(|e| Error::BadCredentials {
        path: PathBuf::from(CREDENTIALS_FILE),
        message: format!("cannot serialize: {e}"),
    })
}

/// Keeps `secrets_dir` (0700) holding `init-credentials` (0600) for
/// `username`, with the password from `password_file` when given, else the
/// password already kept there, else a newly generated one. A kept password
/// is never regenerated; a kept file that cannot be parsed is an error, not
/// overwritten. Returns the credentials and whether the file's content
/// changed (a mode repair alone is not a change).
pub fn ensure_init_credentials(
    secrets_dir: &Path,
    username: &str,
    password_file: Option<&Path>,
) -> Result<(Credentials, bool)> {
    files::ensure_dir(secrets_dir, 0o700)?;
    let file = secrets_dir.join(CREDENTIALS_FILE);
    let existing = files::read_optional(&file)?;
    let kept = existing
        .as_deref()
        .map(|bytes| parse_credentials(&file, bytes))
        .transpose()?;

    let password = match (password_file, kept) {
        (Some(path), _) => read_password_file(path)?,
        (None, Some(kept)) => kept.password,
        (None, None) => generate_password(),
    };
    let creds = Credentials {
        username: username.to_string(),
        password,
    };
    let content = render_credentials(&creds)?;
    let changed = existing.as_deref() != Some(content.as_bytes());
    if changed {
        files::atomic_write(&file, content.as_bytes(), 0o600)?;
    } else {
        files::ensure_mode(&file, 0o600)?;
    }
    Ok((creds, changed))
}

/// The bcrypt cost of the first htpasswd line (`user:$2y$NN$...`): a file
/// written at another cost (an earlier version's 10) is rewritten once.
fn hash_cost(text: &str) -> Option<u32> {
    let hash = text.lines().next()?.split_once(':')?.1;
    let mut parts = hash.split('$');
    parts.next()?;
    parts.next()?;
    parts.next()?.parse().ok()
}

/// Keeps `path` (0600) holding exactly one htpasswd line, for `creds`.
/// Rewrites it only when it does not verify (or holds other users), since a
/// fresh hash differs every time. Returns whether the content changed.
pub fn ensure_htpasswd(path: &Path, creds: &Credentials) -> Result<bool> {
    let existing = files::read_optional(path)?;
    let current = existing
        .as_deref()
        .and_then(|b| std::str::from_utf8(b).ok())
        .is_some_and(|text| {
            text.lines().filter(|l| !l.trim().is_empty()).count() == 1
                && hash_cost(text) == Some(BCRYPT_COST)
                && htpasswd_matches(text, &creds.username, &creds.password)
        });
    if current {
        files::ensure_mode(path, 0o600)?;
        return Ok(false);
    }
    let line = htpasswd_line(&creds.username, &creds.password)?;
    files::atomic_write(path, format!("{line}\n").as_bytes(), 0o600)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn generated_passwords_are_long_alphanumeric_and_differ() {
        let a = generate_password();
        let b = generate_password();
        assert_eq!(a.len(), PASSWORD_LEN);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn htpasswd_line_is_2y_cost_4_and_verifies() {
        let line = htpasswd_line("init", "s3cret").unwrap();
        let (user, hash) = line.split_once(':').unwrap();
        assert_eq!(user, "init");
        assert!(hash.starts_with("$2y$04$"), "{hash}");
        assert_eq!(hash_cost(&line), Some(4));
        assert!(!line.contains('\n'));
        assert!(htpasswd_matches(&line, "init", "s3cret"));
        assert!(!htpasswd_matches(&line, "init", "other"));
        assert!(!htpasswd_matches(&line, "someone", "s3cret"));
        assert!(htpasswd_matches(
            &format!("other:$2y$10$garbage\n{line}\n"),
            "init",
            "s3cret"
        ));
    }

    #[test]
    fn htpasswd_line_refuses_bad_input() {
        assert!(htpasswd_line("", "pw").is_err());
        assert!(htpasswd_line("a:b", "pw").is_err());
        assert!(htpasswd_line("a\nb", "pw").is_err());
        let long = "x".repeat(73);
        assert!(htpasswd_line("init", &long).is_err());
        let err = htpasswd_line("init", &long).unwrap_err().to_string();
        assert!(!err.contains(&long), "error must not echo the password");
    }

    #[test]
    fn htpasswd_matches_accepts_apache_2y_and_2b_hashes() {
        // Same hash with either prefix, as htpasswd -B and Go's bcrypt write.
        let parts = bcrypt::hash_with_result("pw", 4).unwrap();
        for v in [bcrypt::Version::TwoY, bcrypt::Version::TwoB] {
            let line = format!("u:{}", parts.format_for_version(v));
            assert!(htpasswd_matches(&line, "u", "pw"), "{line}");
        }
    }

    #[test]
    fn read_password_file_trims_one_newline_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        fs::write(&p, "abc\n").unwrap();
        assert_eq!(read_password_file(&p).unwrap(), "abc");
        fs::write(&p, "abc\r\n").unwrap();
        assert_eq!(read_password_file(&p).unwrap(), "abc");
        fs::write(&p, " abc ").unwrap();
        assert_eq!(read_password_file(&p).unwrap(), " abc ");
        fs::write(&p, "abc\n\n").unwrap();
        assert!(read_password_file(&p).is_err());
        fs::write(&p, "\n").unwrap();
        let err = read_password_file(&p).unwrap_err().to_string();
        assert!(
            err.contains(&p.display().to_string()) && err.contains("empty"),
            "{err}"
        );
        let missing = dir.path().join("missing");
        let err = read_password_file(&missing).unwrap_err().to_string();
        assert!(err.contains(&missing.display().to_string()), "{err}");
    }

    #[test]
    fn readable_by_others_reports_loose_modes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        fs::write(&p, "abc").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(readable_by_others(&p).unwrap(), None);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(readable_by_others(&p).unwrap(), Some(0o640));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o604)).unwrap();
        assert_eq!(readable_by_others(&p).unwrap(), Some(0o604));
    }

    #[test]
    fn generated_password_is_kept_across_calls_with_strict_modes() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("secrets");
        let (first, changed) = ensure_init_credentials(&secrets, "init", None).unwrap();
        assert!(changed);
        assert_eq!(first.username, "init");
        assert_eq!(first.password.len(), PASSWORD_LEN);
        assert_eq!(mode(&secrets), 0o700);
        let file = secrets.join(CREDENTIALS_FILE);
        assert_eq!(mode(&file), 0o600);
        assert_eq!(read_credentials(&file).unwrap(), first);
        let text = fs::read_to_string(&file).unwrap();
        assert!(text.starts_with("username: init\npassword: "), "{text:?}");

        let ino = fs::metadata(&file).unwrap().ino();
        let (second, changed) = ensure_init_credentials(&secrets, "init", None).unwrap();
        assert!(!changed);
        assert_eq!(second, first);
        assert_eq!(
            fs::metadata(&file).unwrap().ino(),
            ino,
            "file not rewritten"
        );

        // A mode drift is repaired without counting as a change.
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let (_, changed) = ensure_init_credentials(&secrets, "init", None).unwrap();
        assert!(!changed);
        assert_eq!(mode(&file), 0o600);

        // A new user name keeps the password.
        let (renamed, changed) = ensure_init_credentials(&secrets, "admin", None).unwrap();
        assert!(changed);
        assert_eq!(renamed.username, "admin");
        assert_eq!(renamed.password, first.password);
    }

    #[test]
    fn password_file_wins_and_its_changes_are_picked_up() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("secrets");
        let pwfile = dir.path().join("init-password");
        let (generated, _) = ensure_init_credentials(&secrets, "init", None).unwrap();

        fs::write(&pwfile, "from-file-1\n").unwrap();
        let (c, changed) = ensure_init_credentials(&secrets, "init", Some(&pwfile)).unwrap();
        assert!(changed);
        assert_eq!(c.password, "from-file-1");
        assert_ne!(c.password, generated.password);
        let (_, changed) = ensure_init_credentials(&secrets, "init", Some(&pwfile)).unwrap();
        assert!(!changed);

        fs::write(&pwfile, "from-file-2").unwrap();
        let (c, changed) = ensure_init_credentials(&secrets, "init", Some(&pwfile)).unwrap();
        assert!(changed);
        assert_eq!(c.password, "from-file-2");
        let kept = read_credentials(&secrets.join(CREDENTIALS_FILE)).unwrap();
        assert_eq!(kept.password, "from-file-2");

        // Dropping the password file keeps the last password, not a new one.
        let (c, changed) = ensure_init_credentials(&secrets, "init", None).unwrap();
        assert!(!changed);
        assert_eq!(c.password, "from-file-2");
    }

    #[test]
    fn tricky_passwords_survive_the_yaml_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("secrets");
        for pw in [
            "12345",
            "true",
            "a: b # c",
            "'\"quoted\"'",
            "*star",
            "null",
            " x ",
        ] {
            let pwfile = dir.path().join("pw");
            fs::write(&pwfile, pw).unwrap();
            let (c, _) = ensure_init_credentials(&secrets, "init", Some(&pwfile)).unwrap();
            assert_eq!(c.password, pw);
            let back = read_credentials(&secrets.join(CREDENTIALS_FILE)).unwrap();
            assert_eq!(back.password, pw);
        }
    }

    #[test]
    fn unreadable_kept_credentials_are_an_error_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("secrets");
        fs::create_dir(&secrets).unwrap();
        let file = secrets.join(CREDENTIALS_FILE);
        fs::write(&file, "not: [valid").unwrap();
        let err = ensure_init_credentials(&secrets, "init", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&file.display().to_string()), "{err}");
        assert_eq!(fs::read_to_string(&file).unwrap(), "not: [valid");
    }

    #[test]
    fn missing_password_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = ensure_init_credentials(&dir.path().join("s"), "init", Some(&missing))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&missing.display().to_string()), "{err}");
    }

    #[test]
    fn htpasswd_is_rewritten_only_when_it_does_not_verify() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("htpasswd");
        let creds = Credentials {
            username: "init".into(),
            password: "one".into(),
        };
        assert!(ensure_htpasswd(&p, &creds).unwrap());
        assert_eq!(mode(&p), 0o600);
        let before = fs::read(&p).unwrap();
        let ino = fs::metadata(&p).unwrap().ino();
        assert!(!ensure_htpasswd(&p, &creds).unwrap());
        assert_eq!(fs::read(&p).unwrap(), before, "bytes unchanged");
        assert_eq!(fs::metadata(&p).unwrap().ino(), ino, "not replaced");

        let changed = Credentials {
            password: "two".into(),
            ..creds.clone()
        };
        assert!(ensure_htpasswd(&p, &changed).unwrap());
        let text = fs::read_to_string(&p).unwrap();
        assert!(htpasswd_matches(&text, "init", "two"));
        assert!(!htpasswd_matches(&text, "init", "one"));
        assert_eq!(text.lines().count(), 1);

        // A stray extra user is dropped.
        fs::write(
            &p,
            format!("{}\n{text}", htpasswd_line("intruder", "x").unwrap()),
        )
        .unwrap();
        assert!(ensure_htpasswd(&p, &changed).unwrap());
        let text = fs::read_to_string(&p).unwrap();
        assert!(!text.contains("intruder"));
        assert!(htpasswd_matches(&text, "init", "two"));

        // A hash of an earlier version's cost 10 that verifies is rewritten
        // once at cost 4, then left alone.
        let old = bcrypt::hash_with_result("two", 10)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        fs::write(&p, format!("init:{old}\n")).unwrap();
        assert!(ensure_htpasswd(&p, &changed).unwrap());
        let text = fs::read_to_string(&p).unwrap();
        assert_eq!(hash_cost(&text), Some(BCRYPT_COST));
        assert!(htpasswd_matches(&text, "init", "two"));
        assert!(!ensure_htpasswd(&p, &changed).unwrap());
    }

    #[test]
    fn debug_redacts_the_password() {
        let creds = Credentials {
            username: "init".into(),
            password: "hunter2-very-secret".into(),
        };
        let shown = format!("{creds:?} {creds:#?}");
        assert!(shown.contains("init"));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redacted"));
    }
}
