//! `mrctl credentials NAME`: the initial user's name and password (read
//! from the 0600 credentials file, never from status), the endpoint and the
//! CA file clients trust.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::state::{run_as_hint, Paths, Registry};
use super::{Error, Result, EXIT_OK};
use crate::api::defaults::Tls;
use crate::host::credentials;
use crate::naming;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Yaml,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The registry's name.
    pub name: String,
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Format,
}

/// What `credentials` prints, with the API's field names.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Shown {
    pub username: String,
    pub password: String,
    pub endpoint: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub credentials_file: PathBuf,
}

/// The credentials file of a registry: as status reports it, else where
/// the spec puts it.
pub fn credentials_file(paths: &Paths, r: &Registry) -> Option<PathBuf> {
    r.status
        .as_ref()
        .and_then(|s| s.credentials_file.clone())
        .or_else(|| {
            r.resolved(paths.host())
                .map(|x| naming::root::credentials_file(&x.root))
        })
        .or_else(|| {
            r.record
                .as_ref()
                .map(|x| naming::root::credentials_file(&x.root))
        })
}

/// Reads the credentials file; a file this user may not read says who may.
pub fn read(file: &Path, name: &str) -> Result<credentials::Credentials> {
    match std::fs::metadata(file) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(Error::Failed(format!(
                "{} does not exist yet: the controller writes it when it first converges mirrorregistry/{name}",
                file.display()
            )))
        }
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            return Err(Error::Failed(format!(
                "not permitted to read {}: {}",
                file.display(),
                run_as_hint(file)
            )))
        }
        _ => {}
    }
    if let Err(e) = std::fs::File::open(file) {
        if e.kind() == ErrorKind::PermissionDenied {
            return Err(Error::Failed(format!(
                "not permitted to read {} (mode 0600): {}",
                file.display(),
                run_as_hint(file)
            )));
        }
    }
    Ok(credentials::read_credentials(file)?)
}

pub fn run(paths: &Paths, args: Args) -> Result<i32> {
    let r = paths.find(&args.name)?;
    let file = credentials_file(paths, &r).ok_or_else(|| {
        Error::Failed(format!(
            "mirrorregistry/{}: no credentials file known (its spec is not valid and it has no status yet)",
            args.name
        ))
    })?;
    let creds = read(&file, &args.name)?;
    let ca_file = r
        .status
        .as_ref()
        .and_then(|s| s.ca_file.clone())
        .or_else(|| {
            r.resolved(paths.host()).and_then(|x| match x.tls {
                Tls::Generated { .. } => Some(naming::root::tls_dir(&x.root).join("ca.crt")),
                Tls::Provided { .. } => None,
            })
        });
    let shown = Shown {
        username: creds.username,
        password: creds.password,
        endpoint: r.status.as_ref().and_then(|s| s.endpoint.clone()),
        ca_file,
        credentials_file: file,
    };
    match args.output {
        Format::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&shown)
                .map_err(|e| Error::Failed(format!("cannot write JSON: {e}")))?
        ),
        Format::Yaml => out!(
            "{}",
            serde_yaml::to_string(&shown)
                .map_err(|e| Error::Failed(format!("cannot write YAML: {e}")))?
        ),
        Format::Text => {
            let opt = |p: &Option<PathBuf>| {
                p.as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "-".into())
            };
            outln!("username: {}", shown.username);
            outln!("password: {}", shown.password);
            outln!("endpoint: {}", shown.endpoint.as_deref().unwrap_or("-"));
            outln!("caFile:   {}", opt(&shown.ca_file));
        }
    }
    Ok(EXIT_OK)
}
