//! Spec → desired host state, pure: no I/O, no clock, no randomness. Same
//! input, same bytes out; golden files in tests/golden pin the output.

pub mod distribution;
pub mod gc;
pub mod quay;
pub mod unit;

use std::path::PathBuf;

use crate::api::defaults::{Resolved, Storage};
use crate::api::validate::{describe_forbidden, forbidden_char, shown};
use crate::api::Engine;
use crate::naming;
use quay::QuaySecrets;

/// Host facts render needs; chosen by the controller's scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    /// The podman binary units run.
    pub podman: PathBuf,
    /// Target units are enabled into: `multi-user.target` (system) or
    /// `default.target` (user).
    pub wanted_by: String,
}

/// Per-registry values render cannot make itself, because they are secret
/// and generated once: the host keeps them (`host::secrets`) and passes them
/// in. Without them render puts placeholders where they go (a preview).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inputs {
    /// quay engine: the Redis password and Quay's keys.
    pub quay: Option<QuaySecrets>,
    /// distribution engine: refuse pushes, serve pulls (`mrctl gc` holds
    /// the registry in maintenance: `store::maintenance`).
    pub read_only: bool,
}

/// The pod's network: a bridge of the registry's own (`naming::network`).
/// Podman's default bridge has an MTU of 1500, so a client on the same host
/// (oc-mirror on the bastion, the common case) talks to the registry in
/// 1500-byte segments where loopback carries 64 KiB ones; measured, a 1 GiB
/// push took 10% longer than against the same binary on the host. 65520 is
/// what podman's own rootless networking uses. Clients on other hosts still
/// come in through their NIC's MTU: TCP takes the smaller of the two MSSs.
pub const NETWORK_MTU: u32 = 65520;

/// The network a registry's pod joins, created by the controller before
/// the pod unit first starts (the unit names it; podman does not create
/// networks on demand).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    pub mtu: u32,
}

/// A file under the registry's root the controller writes.
#[derive(Clone, PartialEq, Eq)]
pub struct File {
    pub path: PathBuf,
    pub content: String,
    pub mode: u32,
}

impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A file only its owner may read holds secrets: never print it.
        let content: &dyn std::fmt::Debug = if self.mode & 0o077 == 0 {
            &"<redacted>"
        } else {
            &self.content
        };
        f.debug_struct("File")
            .field("path", &self.path)
            .field("content", content)
            .field("mode", &format_args!("{:o}", self.mode))
            .finish()
    }
}

/// A file copied from another file under the root, whose content render
/// cannot know (a certificate the host generated): written only when it
/// differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileCopy {
    pub from: PathBuf,
    pub to: PathBuf,
    pub mode: u32,
}

/// A systemd unit file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    pub name: String,
    pub content: String,
}

/// One container and the unit that runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    /// Short name (`registry`, `app`, `redis`).
    pub name: String,
    pub container: String,
    pub unit: String,
    pub image: String,
}

/// Everything the host should hold for one registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub name: String,
    pub pod: String,
    pub network: Network,
    pub pod_unit: Unit,
    /// Component units in start order.
    pub units: Vec<Unit>,
    pub components: Vec<Component>,
    pub files: Vec<File>,
    /// Files copied into place after the TLS step, like `files`.
    pub copies: Vec<FileCopy>,
    /// Directories under root, with modes.
    pub dirs: Vec<(PathBuf, u32)>,
    /// Named volumes to create (labelled as owned).
    pub volumes: Vec<String>,
    /// Host directories for data, created when missing.
    pub data_paths: Vec<PathBuf>,
    pub images: Vec<String>,
    /// The host port the pod publishes.
    pub port: u16,
    /// URL path probed over HTTPS for health.
    pub health_path: String,
}

impl Desired {
    /// Every unit: the pod's first, then the components' in start order.
    pub fn all_units(&self) -> impl Iterator<Item = &Unit> {
        std::iter::once(&self.pod_unit).chain(self.units.iter())
    }
}

/// Directory layout under root shared by every engine.
pub fn root_dirs(root: &std::path::Path) -> Vec<(PathBuf, u32)> {
    vec![
        (root.to_path_buf(), 0o700),
        (naming::root::config_dir(root), 0o700),
        (naming::root::tls_dir(root), 0o700),
        (naming::root::secrets_dir(root), 0o700),
    ]
}

/// The volume name or host path a storage mounts from.
pub fn storage_source(s: &Storage) -> String {
    match s {
        Storage::Volume(v) => v.clone(),
        Storage::Path(p) => p.display().to_string(),
    }
}

/// One container an engine runs: its component name, its unit, its image.
struct Container<'a> {
    component: &'a str,
    unit: Unit,
    image: &'a str,
}

/// The pod an engine runs its containers in, publishing `spec.port` to the
/// engine's port, made before the engine's files (its refusals come first).
struct Pod<'a> {
    name: String,
    unit: Unit,
    containers: Vec<Container<'a>>,
}

impl<'a> Pod<'a> {
    /// The pod of `r`, started before `containers` (in their start order),
    /// also publishing each container port of `loopback` on 127.0.0.1 only
    /// (see [`unit::pod_unit_publishing`]).
    fn new(
        r: &Resolved,
        container_port: u16,
        loopback: &[u16],
        infra_image: Option<&str>,
        containers: Vec<Container<'a>>,
        cx: &Context,
    ) -> Result<Self, String> {
        let units: Vec<String> = containers.iter().map(|c| c.unit.name.clone()).collect();
        let unit = unit::pod_unit_publishing(
            &r.name,
            r.port,
            container_port,
            loopback,
            infra_image,
            &units,
            cx,
        )?;
        Ok(Pod {
            name: naming::pod(&r.name),
            unit,
            containers,
        })
    }

    /// The desired state of `r`: this pod and its containers, with what
    /// only the engine knows.
    fn desired(self, r: &Resolved, rest: Parts) -> Desired {
        let components = self
            .containers
            .iter()
            .map(|c| Component {
                name: c.component.to_string(),
                container: naming::container(&r.name, c.component),
                unit: c.unit.name.clone(),
                image: c.image.to_string(),
            })
            .collect();
        Desired {
            name: r.name.clone(),
            pod: self.name,
            network: Network {
                name: naming::network(&r.name),
                mtu: NETWORK_MTU,
            },
            pod_unit: self.unit,
            units: self.containers.into_iter().map(|c| c.unit).collect(),
            components,
            files: rest.files,
            copies: rest.copies,
            dirs: rest.dirs,
            volumes: rest.volumes,
            data_paths: rest.data_paths,
            images: rest.images,
            port: r.port,
            health_path: rest.health_path.to_string(),
        }
    }
}

/// What only an engine knows of its desired state (see [`Desired`]).
struct Parts {
    files: Vec<File>,
    copies: Vec<FileCopy>,
    dirs: Vec<(PathBuf, u32)>,
    volumes: Vec<String>,
    data_paths: Vec<PathBuf>,
    images: Vec<String>,
    health_path: &'static str,
}

fn split_storage(all: &[&Storage]) -> (Vec<String>, Vec<PathBuf>) {
    let mut volumes = Vec::new();
    let mut paths = Vec::new();
    for s in all {
        match s {
            Storage::Volume(v) => volumes.push(v.clone()),
            Storage::Path(p) => paths.push(p.clone()),
        }
    }
    (volumes, paths)
}

/// Refuses a value a config file cannot carry as itself: a control
/// character, line separator or non-character (see
/// `api::validate::is_forbidden_char`) would start a new line or key, or
/// read back as something else.
pub fn config_value(what: &str, v: &str) -> Result<(), String> {
    match forbidden_char(v) {
        Some((i, c)) => Err(format!(
            "{what} '{}' holds {}, which render does not write into a config file",
            shown(v),
            describe_forbidden(i, c)
        )),
        None => Ok(()),
    }
}

/// A YAML single-quoted scalar: always a string, whatever it looks like
/// (`'123'`, `'it''s'`); refused when it holds a character a quoted scalar
/// cannot carry ([`config_value`]).
pub fn yaml_quoted(what: &str, v: &str) -> Result<String, String> {
    config_value(what, v)?;
    Ok(format!("'{}'", v.replace('\'', "''")))
}

/// A YAML scalar that reads back as the string `v`: written plain when it
/// is unmistakably a string (a letter first, then only letters, digits and
/// `.-_/:`, and no word YAML 1.1 or 1.2 reads as a boolean or null),
/// single-quoted otherwise.
pub fn yaml_scalar(what: &str, v: &str) -> Result<String, String> {
    const WORDS: &[&str] = &[
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf",
    ];
    let plain = v.starts_with(|c: char| c.is_ascii_alphabetic())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/' | b':'))
        && !v.ends_with(':')
        && !WORDS.contains(&v.to_ascii_lowercase().as_str());
    if plain {
        Ok(v.to_string())
    } else {
        yaml_quoted(what, v)
    }
}

/// Renders the desired state of a validated, defaulted spec, with
/// placeholders for generated secrets (what `render_with` fills in): names,
/// units and layout are the same either way.
pub fn render(r: &Resolved, cx: &Context) -> Result<Desired, String> {
    render_with(r, cx, &Inputs::default())
}

/// Renders the desired state with the generated secrets the host keeps.
///
/// Refuses (an error, nothing rendered) a value it cannot write safely,
/// even one validation would have refused: a control character anywhere,
/// a mount path holding podman's separators, a name that is not a DNS-1123
/// label. No value can add a line, a directive or a key.
pub fn render_with(r: &Resolved, cx: &Context, inputs: &Inputs) -> Result<Desired, String> {
    let desired = match r.engine {
        Engine::Distribution => distribution::render(r, cx, inputs.read_only),
        Engine::Quay => quay::render(r, cx, inputs.quay.as_ref()),
    };
    desired.map_err(|e| format!("cannot render registry '{}': {e}", shown(&r.name)))
}
