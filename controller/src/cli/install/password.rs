//! The init password given to install: read (a terminal is asked without
//! echo), checked, and written to its 0600 file under the root. This is the
//! one thing install writes on the host itself besides the spec file and
//! the controller's unit; when writing it creates the root, an ownership
//! record saying so is written first.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use super::super::state::Paths;
use super::super::{Error, Result};
use super::InstallArgs;
use crate::api::defaults;
use crate::host::files;
use crate::naming;
use crate::store::record;

/// The password given with --initPassword: the value, or standard input for
/// `-` (without echo on a terminal). Checked, never printed.
pub(super) fn read_password(a: &InstallArgs) -> Result<Option<String>> {
    read_given(
        a.init_password.as_deref(),
        a.init_user.as_deref().unwrap_or(defaults::INIT_USERNAME),
    )
}

/// A password given as a flag's value, or `-` for standard input, for
/// `user`. Checked, never printed.
pub(in crate::cli) fn read_given(given: Option<&str>, user: &str) -> Result<Option<String>> {
    let pw = match given {
        None => return Ok(None),
        Some("-") => {
            let stdin = std::io::stdin();
            let tty = stdin.is_terminal();
            if tty {
                eprint!("Password for {user}: ");
                let _ = std::io::stderr().flush();
                stty("-echo");
            }
            let mut line = String::new();
            let read = stdin.lock().read_line(&mut line);
            if tty {
                stty("echo");
                eprintln!();
            }
            read.map_err(files::io("read the password from", Path::new("<stdin>")))?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
        Some(v) => v.to_string(),
    };
    if pw.is_empty() {
        return Err(Error::Usage("--initPassword: the password is empty".into()));
    }
    if pw.contains(['\n', '\r']) {
        return Err(Error::Usage(
            "--initPassword: the password holds a line break".into(),
        ));
    }
    if pw.len() > 72 {
        return Err(Error::Usage(
            "--initPassword: the password is longer than 72 bytes, more than bcrypt (htpasswd) can check".into(),
        ));
    }
    Ok(Some(pw))
}

/// Turns terminal echo off or on; the password never reaches stty.
fn stty(arg: &str) {
    if let Ok(tty) = std::fs::File::open("/dev/tty") {
        let _ = std::process::Command::new("stty")
            .arg(arg)
            .stdin(tty)
            .status();
    }
}

/// Writes the password file `pf` (0600, with a final newline), creating
/// the root and its secrets directory (0700) when missing, recorded first.
pub(in crate::cli) fn write(
    paths: &Paths,
    name: &str,
    root: &Path,
    pf: &Path,
    pw: &str,
) -> Result<()> {
    record_created_root(paths, name, root, pf)?;
    files::ensure_dir(root, 0o700)?;
    files::ensure_dir(&naming::root::secrets_dir(root), 0o700)?;
    files::write_if_changed(pf, format!("{pw}\n").as_bytes(), 0o600)?;
    Ok(())
}

/// install writes the password file before the controller sees the spec;
/// when that creates the root, the ownership record says so first, so that
/// deletionPolicy Delete may later remove it (a root that existed never is).
fn record_created_root(paths: &Paths, name: &str, root: &Path, password_file: &Path) -> Result<()> {
    // A root that exists (kept by an earlier uninstall, or the user's) is
    // the controller's to judge, from its record or what a Retain
    // teardown kept.
    if root.symlink_metadata().is_ok() || record::load(&paths.state_dir, name)?.is_some() {
        return Ok(());
    }
    let secrets = naming::root::secrets_dir(root);
    let mut rec = record::Record {
        name: name.to_string(),
        root: root.to_path_buf(),
        ..record::Record::default()
    };
    rec.created_dirs.extend(
        [root.to_path_buf(), secrets]
            .into_iter()
            .filter(|d| d.symlink_metadata().is_err()),
    );
    if password_file.starts_with(root) {
        rec.files.insert(password_file.to_path_buf());
    }
    if !rec.created_dirs.is_empty() || !rec.files.is_empty() {
        record::save(&paths.state_dir, &rec)?;
    }
    Ok(())
}
