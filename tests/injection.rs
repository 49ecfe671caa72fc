//! No spec string can add a line, a directive or a key to what render
//! writes. Random strings (control characters, quotes, `%`, `$`,
//! backslashes, `:`, `,`, `#`, `;`, non-ASCII) go into each rendered field,
//! and each one is either refused (by validation, naming the field, or by
//! render itself when validation is bypassed) or comes back exactly:
//! - units: systemd loads them (written into the user manager's runtime
//!   unit directory under names unique to this process, loaded without a
//!   daemon-reload, removed afterwards) and its ExecStartPre/ExecStart/
//!   ExecStop/ExecStopPost argv, read over D-Bus with `busctl --json`, equal
//!   what was meant; `systemd-analyze --user verify` has nothing to say;
//! - config files: the registry's config.yml and Quay's config.yaml parse
//!   (serde_yaml, and PyYAML, Quay's own parser, when the host has it) to
//!   exactly the baseline's document with the value in its place;
//!   redis.conf splits (as Redis's `sdssplitargs` does) into the baseline's
//!   lines with the value in its place.
//!
//! "What was meant" is computed without the quoting code: render a baseline
//! spec whose fields hold distinct markers, load it through systemd once,
//! and replace the marker by the value in what systemd read.
//!
//! Seeded: `MIRROR_REGISTRY_INJECTION_SEED=<u64>` and
//! `MIRROR_REGISTRY_INJECTION_CASES=<n>` override the fixed defaults; a
//! failure prints the seed and the case.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use mirror_registry::api::defaults::{self, Resolved, Storage};
use mirror_registry::api::{load, validate};
use mirror_registry::render::quay::QuaySecrets;
use mirror_registry::render::{self, unit::quote, Context, Desired, Inputs};
use serde_yaml::Value as Yaml;

const DEFAULT_SEED: u64 = 0x6d69_7272_6f72_0001;
const DEFAULT_CASES: usize = 300;
const BATCH: usize = 60;

// ---------------------------------------------------------------- random

/// splitmix64: small, seeded, the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Pieces of a random value: harmless ones, and every kind of character
/// that means something to systemd, podman, YAML or Redis. No `q`: markers
/// are made of it, so a value never contains one.
#[rustfmt::skip]
const TOKENS: &[&str] = &[
    "a", "B", "z", "0", "9", "-", "_", ".", "/", "//", "/./", "..", " ", "  ", "\"", "'",
    "\\", "\\\\", "\\n", "\\x41", "%", "%t", "%%", "%n", "$", "$$", "$HOME", "${HOME}",
    "$(id)", "`", "{", "}", "[", "]", ":", ",", ";", " ; ", "#", "=", "&", "|", "!", "@", "*",
    "?", "~", "+", "<", ">", "é", "☃", "😀", "\u{a0}", "\u{200b}", "\n", "\r", "\t", "\0",
    "\u{1b}", "\u{7f}", "\u{85}", "\u{2028}", "\u{feff}",
    "\nExecStartPre=/bin/touch /tmp/PWNED", "\nkey: value", "\n- item", ": ", " #", "---",
    "...", "true", "null", "0x1f", "1e3",
];

fn random_string(rng: &mut Rng) -> String {
    let n = 1 + rng.below(6);
    // Half the values only printable: they pass validation more often, and
    // must then come back exactly.
    let printable = rng.below(2) == 0;
    let mut s = String::new();
    while s.chars().count() < n {
        let t = *rng.pick(TOKENS);
        if !printable || validate::forbidden_char(t).is_none() {
            s.push_str(t);
        }
    }
    s
}

/// A value for a field: paths start with `/` (mostly), images and names
/// with a letter (mostly), so that validation's first check is not always
/// the one that refuses.
fn random_value(rng: &mut Rng, kind: Kind) -> String {
    let body = random_string(rng);
    match (kind, rng.below(8)) {
        (_, 0) => body,
        (Kind::Path, _) => format!("/srv/{body}"),
        (Kind::Word, _) => format!("a{body}"),
    }
}

// ---------------------------------------------------------------- fields

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Path,
    Word,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Engine {
    Distribution,
    Quay,
}

/// A field render writes somewhere, its marker in the baseline and what
/// it takes.
#[derive(Clone, Copy, Debug)]
struct Field {
    /// The spec's field path; empty for values that are not in the spec
    /// (the generated secrets render is given).
    path: &'static str,
    marker: &'static str,
    kind: Kind,
    quay_only: bool,
}

const ROOT: &str = "/srv/qqroot";
const STORAGE: &str = "/srv/qqstorage";
const DATABASE: &str = "/srv/qqdatabase";

#[rustfmt::skip]
const FIELDS: &[Field] = &[
    Field { path: "spec.root", marker: ROOT, kind: Kind::Path, quay_only: false },
    Field { path: "spec.storage.path", marker: STORAGE, kind: Kind::Path, quay_only: false },
    Field { path: "spec.storage.volume", marker: STORAGE, kind: Kind::Word, quay_only: false },
    Field { path: "spec.database.path", marker: DATABASE, kind: Kind::Path, quay_only: true },
    Field { path: "spec.database.volume", marker: DATABASE, kind: Kind::Word, quay_only: true },
    Field { path: "spec.images.registry", marker: "qqimgregistry", kind: Kind::Word, quay_only: false },
    Field { path: "spec.images.quay", marker: "qqimgquay", kind: Kind::Word, quay_only: true },
    Field { path: "spec.images.redis", marker: "qqimgredis", kind: Kind::Word, quay_only: true },
    Field { path: "spec.images.pause", marker: "qqimgpause", kind: Kind::Word, quay_only: false },
    Field { path: "spec.hostname", marker: "qqhost.example", kind: Kind::Word, quay_only: false },
    Field { path: "spec.initUser.username", marker: "qqusername", kind: Kind::Word, quay_only: true },
    Field { path: "", marker: "qqredispw", kind: Kind::Word, quay_only: true },
    Field { path: "", marker: "qqsecretkey", kind: Kind::Word, quay_only: true },
    Field { path: "", marker: "qqdbkey", kind: Kind::Word, quay_only: true },
];

fn secrets() -> Inputs {
    Inputs {
        quay: Some(QuaySecrets {
            redis_password: "qqredispw".into(),
            secret_key: "qqsecretkey".into(),
            database_secret_key: "qqdbkey".into(),
        }),
        ..Inputs::default()
    }
}

fn base_name() -> String {
    format!("qqbase{}", std::process::id())
}

fn context() -> Context {
    Context {
        // A binary that exists, so verify has nothing to say about it.
        podman: PathBuf::from("/usr/bin/podman"),
        wanted_by: "default.target".into(),
    }
}

/// The baseline spec of an engine: every rendered field holds its marker.
fn baseline_doc(engine: Engine, name: &str) -> Yaml {
    let text = match engine {
        Engine::Distribution => format!(
            "apiVersion: mirrorregistry.io/v1alpha1
kind: MirrorRegistry
metadata: {{name: {name}}}
spec:
  engine: distribution
  hostname: qqhost.example
  root: {ROOT}
  storage: {{path: {STORAGE}}}
  images: {{registry: qqimgregistry, pause: qqimgpause}}
"
        ),
        Engine::Quay => format!(
            "apiVersion: mirrorregistry.io/v1alpha1
kind: MirrorRegistry
metadata: {{name: {name}}}
spec:
  engine: quay
  hostname: qqhost.example
  root: {ROOT}
  storage: {{path: {STORAGE}}}
  database: {{path: {DATABASE}}}
  images: {{quay: qqimgquay, redis: qqimgredis, pause: qqimgpause}}
  initUser: {{username: qqusername}}
"
        ),
    };
    serde_yaml::from_str(&text).unwrap()
}

/// Sets a field of a spec document (a volume replaces the path).
fn set_field(doc: &mut Yaml, field: &str, value: &str) {
    let mut keys: Vec<&str> = field.split('.').skip(1).collect();
    let last = keys.pop().unwrap();
    let mut node = doc.get_mut("spec").unwrap();
    for k in keys {
        node = node.get_mut(k).unwrap();
    }
    let map = node.as_mapping_mut().unwrap();
    if last == "volume" {
        map.remove("path");
    }
    map.insert(Yaml::from(last), Yaml::from(value));
}

fn resolve(doc: &Yaml) -> Result<(Resolved, load::Loaded), load::Invalid> {
    let text = serde_yaml::to_string(doc).unwrap();
    let loaded = load::parse(Path::new("/specs/injection.yaml"), text.as_bytes())?;
    let host = defaults::HostFacts {
        fqdn: "unused.example".into(),
    };
    Ok((
        defaults::resolve(&loaded.resource, &loaded.name, &host),
        loaded,
    ))
}

/// Puts `value` into the field of an already resolved spec, bypassing
/// validation; for the secrets, into the inputs.
fn set_resolved(r: &mut Resolved, inputs: &mut Inputs, field: &Field, value: &str) {
    let s = inputs.quay.as_mut().unwrap();
    match (field.path, field.marker) {
        ("spec.root", _) => r.root = PathBuf::from(value),
        ("spec.storage.path", _) => r.storage = Storage::Path(value.into()),
        ("spec.storage.volume", _) => r.storage = Storage::Volume(value.into()),
        ("spec.database.path", _) => r.database = Some(Storage::Path(value.into())),
        ("spec.database.volume", _) => r.database = Some(Storage::Volume(value.into())),
        ("spec.images.registry", _) => r.images.registry = Some(value.into()),
        ("spec.images.quay", _) => r.images.quay = Some(value.into()),
        ("spec.images.redis", _) => r.images.redis = Some(value.into()),
        ("spec.images.pause", _) => r.images.pause = Some(value.into()),
        ("spec.hostname", _) => r.hostname = value.into(),
        ("spec.initUser.username", _) => r.init_username = value.into(),
        ("", "qqredispw") => s.redis_password = value.into(),
        ("", "qqsecretkey") => s.secret_key = value.into(),
        ("", "qqdbkey") => s.database_secret_key = value.into(),
        other => panic!("no such field {other:?}"),
    }
}

// ---------------------------------------------------------------- systemd

/// The user manager, and the unit files this process put where it looks.
struct Manager {
    dir: PathBuf,
    written: Vec<PathBuf>,
}

impl Manager {
    fn new() -> Manager {
        let uid = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap_or(0);
        if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
            std::env::set_var("XDG_RUNTIME_DIR", format!("/run/user/{uid}"));
        }
        if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
            std::env::set_var(
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path=/run/user/{uid}/bus"),
            );
        }
        let runtime = PathBuf::from(std::env::var_os("XDG_RUNTIME_DIR").unwrap());
        // The manager's runtime unit directory (`systemd-analyze --user
        // unit-paths`): nothing there survives a reboot, and no daemon-reload
        // is needed for a unit name it has not loaded yet.
        let dir = runtime.join("systemd/user");
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("systemd-analyze")
            .args(["--user", "unit-paths"])
            .output()
            .expect("systemd-analyze");
        assert!(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| Path::new(l) == dir),
            "{} is not in the user manager's unit path; is a systemd user manager running (hack/setup-host.sh)?",
            dir.display()
        );
        Manager {
            dir,
            written: Vec::new(),
        }
    }

    fn write(&mut self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, content).unwrap();
        self.written.push(path.clone());
        path
    }

    /// What `systemd-analyze --user verify` says about the files.
    fn verify(&self, files: &[PathBuf]) -> String {
        if files.is_empty() {
            return String::new();
        }
        let out = Command::new("systemd-analyze")
            .args(["--user", "verify", "--man=no", "--generators=no"])
            .args(files)
            .output()
            .expect("systemd-analyze verify");
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        if !out.status.success() && text.is_empty() {
            text = format!("verify exited {}", out.status);
        }
        text
    }

    /// The unit as the manager loaded it: its load state and the argv of
    /// each Exec property, after the substitution systemd makes when it
    /// runs the command.
    fn load(&self, unit: &str) -> Loaded {
        let path = format!("/org/freedesktop/systemd1/unit/{}", bus_label(unit));
        let get = |iface: &str, props: &[&str]| -> Vec<serde_json::Value> {
            let out = Command::new("busctl")
                .args([
                    "--user",
                    "--json=short",
                    "get-property",
                    "org.freedesktop.systemd1",
                ])
                .arg(&path)
                .arg(iface)
                .args(props)
                .output()
                .expect("busctl");
            assert!(
                out.status.success(),
                "busctl get-property {unit}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        let state = get("org.freedesktop.systemd1.Unit", &["LoadState"]);
        let load_state = state[0]["data"].as_str().unwrap_or_default().to_string();
        let mut exec = BTreeMap::new();
        if load_state == "loaded" {
            let props = ["ExecStartPre", "ExecStart", "ExecStop", "ExecStopPost"];
            for (p, v) in props
                .iter()
                .zip(get("org.freedesktop.systemd1.Service", &props))
            {
                let cmds: Vec<Vec<String>> = v["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| {
                        c[1].as_array()
                            .unwrap()
                            .iter()
                            .map(|w| run_time_word(w.as_str().unwrap()))
                            .collect()
                    })
                    .collect();
                exec.insert(p.to_string(), cmds);
            }
        }
        Loaded { load_state, exec }
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        for p in &self.written {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Loaded {
    load_state: String,
    exec: BTreeMap<String, Vec<Vec<String>>>,
}

/// sd-bus's object path label escaping.
fn bus_label(s: &str) -> String {
    let mut out = String::new();
    for (i, b) in s.bytes().enumerate() {
        if b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// A word of an Exec line as the command gets it: systemd stores `$$` and
/// replaces it by `$` when it runs the command, and expands `${NAME}` (and a
/// word that is only `$NAME`). An expansion is marked, so it never equals a
/// literal value.
fn run_time_word(w: &str) -> String {
    let b = w.as_bytes();
    if b.first() == Some(&b'$') && !matches!(b.get(1), Some(b'{') | Some(b'$')) && b.len() > 1 {
        return format!("<expanded {w}>");
    }
    let mut out = String::new();
    let mut chars = w.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' {
            match chars.peek() {
                Some('$') => {
                    chars.next();
                    out.push('$');
                }
                Some('{') => return format!("<expanded {w}>"),
                _ => out.push('$'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------- configs

/// Redis's `sdssplitargs`, one config line to its arguments; None where
/// Redis reports an error.
fn redis_split(line: &str) -> Option<Vec<String>> {
    let b = line.as_bytes();
    let mut i = 0;
    let mut args = Vec::new();
    let space = |c: u8| matches!(c, b' ' | b'\n' | b'\r' | b'\t' | 0x0b | 0x0c);
    loop {
        while i < b.len() && space(b[i]) {
            i += 1;
        }
        if i >= b.len() {
            return Some(args);
        }
        let (mut inq, mut insq) = (false, false);
        let mut cur: Vec<u8> = Vec::new();
        loop {
            let c = b.get(i).copied();
            if inq {
                match c {
                    None => return None,
                    Some(b'\\')
                        if b.get(i + 1) == Some(&b'x')
                            && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
                            && b.get(i + 3).is_some_and(u8::is_ascii_hexdigit) =>
                    {
                        let h = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
                        cur.push(u8::from_str_radix(h, 16).unwrap());
                        i += 3;
                    }
                    Some(b'\\') if i + 1 < b.len() => {
                        i += 1;
                        cur.push(match b[i] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 8,
                            b'a' => 7,
                            other => other,
                        });
                    }
                    Some(b'"') => {
                        if b.get(i + 1).is_some_and(|&n| !space(n)) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    Some(other) => cur.push(other),
                }
            } else if insq {
                match c {
                    None => return None,
                    Some(b'\\') if b.get(i + 1) == Some(&b'\'') => {
                        i += 1;
                        cur.push(b'\'');
                    }
                    Some(b'\'') => {
                        if b.get(i + 1).is_some_and(|&n| !space(n)) {
                            return None;
                        }
                        i += 1;
                        break;
                    }
                    Some(other) => cur.push(other),
                }
            } else {
                match c {
                    None => break,
                    Some(c) if space(c) || c == 0 => break,
                    Some(b'"') => inq = true,
                    Some(b'\'') => insq = true,
                    Some(other) => cur.push(other),
                }
            }
            i += 1;
        }
        args.push(String::from_utf8(cur).ok()?);
    }
}

fn redis_lines(text: &str) -> Option<Vec<Vec<String>>> {
    text.split('\n')
        .map(|l| l.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n')))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(redis_split)
        .collect()
}

fn map_strings(v: &Yaml, f: &dyn Fn(&str) -> String) -> Yaml {
    match v {
        Yaml::String(s) => Yaml::String(f(s)),
        Yaml::Sequence(items) => Yaml::Sequence(items.iter().map(|i| map_strings(i, f)).collect()),
        Yaml::Mapping(m) => Yaml::Mapping(
            m.iter()
                .map(|(k, v)| (map_strings(k, f), map_strings(v, f)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// PyYAML's reading (Quay's own parser) of each text, as JSON; None when
/// the host has no python3 with yaml.
fn pyyaml(texts: &[String]) -> Option<Vec<Result<serde_json::Value, String>>> {
    const SCRIPT: &str = r#"
import json, sys, yaml
out = []
for text in json.load(sys.stdin):
    try:
        out.append({"ok": yaml.safe_load(text)})
    except Exception as e:
        out.append({"err": str(e)})
json.dump(out, sys.stdout)
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(texts).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        return None;
    }
    let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
    Some(
        v.into_iter()
            .map(|x| match x.get("ok") {
                Some(ok) => Ok(ok.clone()),
                None => Err(x["err"].as_str().unwrap_or_default().to_string()),
            })
            .collect(),
    )
}

fn json_strings(v: &serde_json::Value, f: &dyn Fn(&str) -> String) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        J::String(s) => J::String(f(s)),
        J::Array(items) => J::Array(items.iter().map(|i| json_strings(i, f)).collect()),
        J::Object(m) => J::Object(m.iter().map(|(k, v)| (f(k), json_strings(v, f))).collect()),
        other => other.clone(),
    }
}

// ---------------------------------------------------------------- the property

/// The baseline of an engine, as rendered and as systemd loaded it.
struct Baseline {
    name: String,
    desired: Desired,
    loaded: BTreeMap<String, Loaded>,
    pyyaml: BTreeMap<String, serde_json::Value>,
}

/// One rendered case waiting for systemd's answer.
struct Pending {
    label: String,
    engine: Engine,
    name: String,
    subst: Box<dyn Fn(&str) -> String>,
    desired: Desired,
}

struct Stats {
    refused_by_validation: usize,
    refused_by_render: usize,
    round_tripped: usize,
    units_loaded: usize,
    configs_parsed: usize,
    pyyaml_parsed: usize,
}

fn engine_of(e: Engine) -> &'static str {
    match e {
        Engine::Distribution => "distribution",
        Engine::Quay => "quay",
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn random_strings_are_refused_or_round_trip_through_systemd_and_config_parsers() {
    let seed = env_or("MIRROR_REGISTRY_INJECTION_SEED", DEFAULT_SEED);
    let cases = env_or("MIRROR_REGISTRY_INJECTION_CASES", DEFAULT_CASES);
    eprintln!("injection property: seed {seed} (MIRROR_REGISTRY_INJECTION_SEED), {cases} cases");
    let result = std::panic::catch_unwind(|| property(seed, cases));
    if let Err(e) = result {
        eprintln!(
            "FAILED with seed {seed}: rerun with MIRROR_REGISTRY_INJECTION_SEED={seed} \
             MIRROR_REGISTRY_INJECTION_CASES={cases}"
        );
        std::panic::resume_unwind(e);
    }
}

fn property(seed: u64, cases: usize) {
    let started = std::time::Instant::now();
    let mut rng = Rng(seed);
    let mut mgr = Manager::new();
    let base = base_name();
    let baselines: BTreeMap<&str, Baseline> = [Engine::Distribution, Engine::Quay]
        .into_iter()
        .map(|e| {
            let name = format!("{base}{}", &engine_of(e)[..1]);
            let (r, _) = resolve(&baseline_doc(e, &name)).expect("baseline is valid");
            let desired = render::render_with(&r, &context(), &secrets()).unwrap();
            let mut files = Vec::new();
            for u in desired.all_units() {
                files.push(mgr.write(&u.name, &u.content));
            }
            let said = mgr.verify(&files);
            assert!(said.is_empty(), "verify on the baseline: {said}");
            let loaded = desired
                .all_units()
                .map(|u| {
                    let l = mgr.load(&u.name);
                    assert_eq!(l.load_state, "loaded", "{}", u.name);
                    (u.name.clone(), l)
                })
                .collect();
            let texts: Vec<String> = desired.files.iter().map(|f| f.content.clone()).collect();
            let pyyaml = pyyaml(&texts)
                .map(|parsed| {
                    desired
                        .files
                        .iter()
                        .zip(parsed)
                        .filter(|(f, _)| !f.path.ends_with("redis.conf"))
                        .map(|(f, p)| (file_name(&f.path), p.unwrap()))
                        .collect()
                })
                .unwrap_or_default();
            (
                engine_of(e),
                Baseline {
                    name,
                    desired,
                    loaded,
                    pyyaml,
                },
            )
        })
        .collect();
    if baselines["quay"].pyyaml.is_empty() {
        eprintln!("python3 with yaml is missing: config files are parsed with serde_yaml only");
    }

    let mut stats = Stats {
        refused_by_validation: 0,
        refused_by_render: 0,
        round_tripped: 0,
        units_loaded: 0,
        configs_parsed: 0,
        pyyaml_parsed: 0,
    };
    let mut per_field: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    let mut pending: Vec<Pending> = Vec::new();
    for case in 0..cases {
        // Every field in turn; engine, mode and value at random.
        let field = FIELDS[case % FIELDS.len()];
        let engine = if field.quay_only || rng.below(2) == 0 {
            Engine::Quay
        } else {
            Engine::Distribution
        };
        let field = if field.path == "spec.images.registry" && engine == Engine::Quay {
            FIELDS[6] // the quay engine's own image
        } else {
            field
        };
        let value = random_value(&mut rng, field.kind);
        // Through validation when the value is in the spec, most of the
        // time; straight into render otherwise.
        let validated = !field.path.is_empty() && rng.below(3) != 0;
        let name = format!("mrinj-{}-{case}", std::process::id());
        let label = format!(
            "case {case} (seed {seed}): {} {} {} = {value:?}",
            engine_of(engine),
            if validated { "validated" } else { "direct" },
            if field.path.is_empty() {
                field.marker
            } else {
                field.path
            },
        );
        let key = format!(
            "{} {}",
            if field.path.is_empty() {
                field.marker
            } else {
                field.path
            },
            if validated { "validated" } else { "direct" }
        );
        let counts = per_field.entry(key).or_default();
        let b = &baselines[engine_of(engine)];
        let mut doc = baseline_doc(engine, &name);
        let mut inputs = secrets();
        let (r, meant) = if validated {
            set_field(&mut doc, field.path, &value);
            // serde_yaml carries any string exactly.
            let text = serde_yaml::to_string(&doc).unwrap();
            let back: Yaml = serde_yaml::from_str(&text).unwrap();
            assert_eq!(back, doc, "{label}: serde_yaml round trip");
            match resolve(&doc) {
                Err(invalid) => {
                    assert!(
                        invalid.problems.iter().any(|p| p.path == field.path),
                        "{label}: refused without naming {}: {invalid}",
                        field.path
                    );
                    for p in &invalid.problems {
                        assert!(
                            validate::forbidden_char(&p.to_string()).is_none(),
                            "{label}: a problem shows a control character: {p:?}"
                        );
                    }
                    stats.refused_by_validation += 1;
                    counts[0] += 1;
                    continue;
                }
                Ok((r, _)) => {
                    // What validation accepts is used normalised (paths) or
                    // lower-cased (the host name).
                    let meant = match field.path {
                        "spec.hostname" => value.to_ascii_lowercase(),
                        _ if field.kind == Kind::Path => validate::normalize(Path::new(&value))
                            .unwrap()
                            .display()
                            .to_string(),
                        _ => value.clone(),
                    };
                    (r, meant)
                }
            }
        } else {
            let (mut r, _) = resolve(&doc).unwrap();
            set_resolved(&mut r, &mut inputs, &field, &value);
            (r, value.clone())
        };
        let desired = match render::render_with(&r, &context(), &inputs) {
            Ok(d) => d,
            Err(e) => {
                assert!(
                    !validated,
                    "{label}: validation accepted it, render refused: {e}"
                );
                assert!(
                    validate::forbidden_char(&e).is_none(),
                    "{label}: the error shows a control character: {e:?}"
                );
                stats.refused_by_render += 1;
                counts[1] += 1;
                continue;
            }
        };
        counts[2] += 1;
        let (marker, base_name, case_name) = (field.marker, b.name.clone(), name.clone());
        // Files under the root are `Path::join`ed to it, which adds no `/`
        // after one the value ends with.
        let joined = if meant.ends_with('/') {
            meant.clone()
        } else {
            format!("{meant}/")
        };
        let subst = move |s: &str| {
            s.replace(&format!("{marker}/"), &joined)
                .replace(marker, &meant)
                .replace(&base_name, &case_name)
        };
        pending.push(Pending {
            label,
            engine,
            name,
            subst: Box::new(subst),
            desired,
        });
        if pending.len() == BATCH || case + 1 == cases {
            check_batch(&mut mgr, &baselines, &mut pending, &mut stats);
        }
    }
    check_batch(&mut mgr, &baselines, &mut pending, &mut stats);
    let elapsed = started.elapsed();
    eprintln!(
        "{cases} cases in {:.1}s: {} refused by validation, {} refused by render, {} round-tripped \
         ({} units loaded by systemd, {} config files parsed, {} by PyYAML)",
        elapsed.as_secs_f64(),
        stats.refused_by_validation,
        stats.refused_by_render,
        stats.round_tripped,
        stats.units_loaded,
        stats.configs_parsed,
        stats.pyyaml_parsed,
    );
    for (k, [v, r, ok]) in &per_field {
        eprintln!("  {k:40} refused by validation {v:3}, by render {r:3}, round-tripped {ok:3}");
    }
    assert_eq!(
        stats.refused_by_validation + stats.refused_by_render + stats.round_tripped,
        cases
    );
    // The property is only worth something when both outcomes happen.
    if cases >= 100 {
        assert!(stats.round_tripped * 5 >= cases, "too few round trips");
        assert!(stats.refused_by_validation > 0 && stats.refused_by_render > 0);
        for f in ["spec.root", "spec.storage.path", "spec.database.path"] {
            let ok = per_field.get(&format!("{f} validated")).map_or(0, |c| c[2]);
            assert!(ok > 0, "no value of {f} passed validation into systemd");
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn check_batch(
    mgr: &mut Manager,
    baselines: &BTreeMap<&str, Baseline>,
    pending: &mut Vec<Pending>,
    stats: &mut Stats,
) {
    if pending.is_empty() {
        return;
    }
    // Every unit of the batch is written before any is loaded.
    let mut files = Vec::new();
    for p in pending.iter() {
        for u in p.desired.all_units() {
            assert!(
                u.name.starts_with(&p.name),
                "{}: unit {} is not named after the registry",
                p.label,
                u.name
            );
            files.push(mgr.write(&u.name, &u.content));
        }
    }
    let said = mgr.verify(&files);
    if !said.is_empty() {
        // Name the case whose file verify talks about.
        let culprit = pending
            .iter()
            .find(|p| said.contains(&p.name))
            .map_or("?", |p| p.label.as_str());
        panic!("systemd-analyze verify: {culprit}:\n{said}");
    }
    let mut yaml_texts = Vec::new();
    let mut yaml_expected = Vec::new();
    for p in pending.iter() {
        let b = &baselines[engine_of(p.engine)];
        // Units: the same commands as the baseline's, the value in place
        // of the marker.
        for (u, bu) in p.desired.all_units().zip(b.desired.all_units()) {
            let got = mgr.load(&u.name);
            let want = b.loaded[&bu.name].clone();
            let want = Loaded {
                load_state: want.load_state,
                exec: want
                    .exec
                    .into_iter()
                    .map(|(k, cmds)| {
                        (
                            k,
                            cmds.into_iter()
                                .map(|argv| argv.iter().map(|w| (p.subst)(w)).collect())
                                .collect(),
                        )
                    })
                    .collect(),
            };
            assert_eq!(
                got, want,
                "{}: {} as systemd loaded it\n{}",
                p.label, u.name, u.content
            );
            stats.units_loaded += 1;
        }
        // Config files: the same document or lines, the value in place.
        assert_eq!(p.desired.files.len(), b.desired.files.len());
        for (f, bf) in p.desired.files.iter().zip(&b.desired.files) {
            let name = file_name(&f.path);
            if name == "redis.conf" {
                let got = redis_lines(&f.content);
                let want = redis_lines(&bf.content).map(|lines| {
                    lines
                        .into_iter()
                        .map(|args| args.iter().map(|a| (p.subst)(a)).collect())
                        .collect()
                });
                assert!(want.is_some(), "baseline redis.conf");
                assert_eq!(got, want, "{}: redis.conf\n{}", p.label, f.content);
            } else {
                let got: Yaml = serde_yaml::from_str(&f.content)
                    .unwrap_or_else(|e| panic!("{}: {name}: {e}\n{}", p.label, f.content));
                let base: Yaml = serde_yaml::from_str(&bf.content).unwrap();
                let want = map_strings(&base, &*p.subst);
                assert_eq!(got, want, "{}: {name}\n{}", p.label, f.content);
                if let Some(base_py) = b.pyyaml.get(&name) {
                    yaml_texts.push(f.content.clone());
                    yaml_expected.push((
                        format!("{}: {name} (PyYAML)\n{}", p.label, f.content),
                        json_strings(base_py, &*p.subst),
                    ));
                }
            }
            stats.configs_parsed += 1;
        }
        stats.round_tripped += 1;
    }
    if !yaml_texts.is_empty() {
        if let Some(parsed) = pyyaml(&yaml_texts) {
            for (got, (label, want)) in parsed.into_iter().zip(yaml_expected) {
                assert_eq!(got, Ok(want), "{label}");
                stats.pyyaml_parsed += 1;
            }
        }
    }
    pending.clear();
}

// ---------------------------------------------------------------- quoting

/// `unit::quote` alone: any word (control characters included, which
/// render refuses before quoting, but which quote must never write as a
/// line break) is one argv word to systemd, and exactly itself unless it
/// holds a NUL, which no argv can.
#[test]
fn quote_gives_systemd_any_word_as_itself() {
    let seed = env_or("MIRROR_REGISTRY_INJECTION_SEED", DEFAULT_SEED);
    let mut rng = Rng(seed ^ 0x0051_554f_5445);
    let mut mgr = Manager::new();
    let mut words: Vec<String> = (0..150).map(|_| random_string(&mut rng)).collect();
    words.extend(
        [
            "", ";", "#", "\\", "\"", "'", "%", "$", "$$", "${X}", "$X", "a b", "\\;", "-x", "@x",
            "\n", "\u{85}", "\u{2028}",
        ]
        .map(String::from),
    );
    let mut files = Vec::new();
    let mut units = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let name = format!("mrinj-{}-quote-{i}.service", std::process::id());
        // On a continuation line, as render writes words.
        let content = format!(
            "[Service]\nType=oneshot\nExecStart=/bin/true \\\n\t{} \\\n\tend\n",
            quote(w)
        );
        assert_eq!(content.lines().count(), 5, "{w:?}: {content}");
        files.push(mgr.write(&name, &content));
        units.push(name);
    }
    let mut with_nul = 0;
    for (w, u) in words.iter().zip(&units) {
        let got = mgr.load(u);
        if w.contains('\0') {
            // No argv holds a NUL: systemd keeps its escape as text. Still
            // one word, nothing added.
            let cmds = &got.exec["ExecStart"];
            assert!(
                cmds.len() == 1
                    && cmds[0].len() == 3
                    && cmds[0][0] == "/bin/true"
                    && cmds[0][2] == "end",
                "{w:?}: {got:?}"
            );
            with_nul += 1;
            continue;
        }
        assert_eq!(got.load_state, "loaded", "{w:?}");
        assert_eq!(
            got.exec["ExecStart"],
            vec![vec!["/bin/true".to_string(), w.clone(), "end".into()]],
            "{w:?} quoted as {}",
            quote(w)
        );
    }
    // verify warns of the NUL escapes it keeps as text; of nothing else.
    let clean: Vec<PathBuf> = files
        .iter()
        .zip(&words)
        .filter(|(_, w)| !w.contains('\0'))
        .map(|(f, _)| f.clone())
        .collect();
    let said = mgr.verify(&clean);
    assert!(said.is_empty(), "{said}");
    eprintln!(
        "{} words through systemd ({with_nul} with NUL, which stay one word but not NUL)",
        words.len()
    );
}

// ---------------------------------------------------------------- the issue

/// The issue's spec, field by field: validation refuses it naming the
/// field, and render refuses the same value given straight to it.
#[test]
fn the_issues_newline_is_refused_by_validation_and_by_render() {
    let evil = "/tmp/injroot\nExecStartPre=/bin/touch /tmp/PWNED-BY-SPEC\nX-Ignore=";
    for (engine, path) in [
        (Engine::Distribution, "spec.root"),
        (Engine::Distribution, "spec.storage.path"),
        (Engine::Quay, "spec.root"),
        (Engine::Quay, "spec.storage.path"),
        (Engine::Quay, "spec.database.path"),
    ] {
        let mut doc = baseline_doc(engine, "t");
        set_field(&mut doc, path, evil);
        let e = resolve(&doc).expect_err("refused");
        assert!(
            e.problems
                .iter()
                .any(|p| p.path == path && p.message.contains("control character (U+000A)")),
            "{e}"
        );

        let (mut r, _) = resolve(&baseline_doc(engine, "t")).unwrap();
        let mut inputs = secrets();
        let field = FIELDS.iter().find(|f| f.path == path).unwrap();
        set_resolved(&mut r, &mut inputs, field, evil);
        let e = render::render_with(&r, &context(), &inputs).unwrap_err();
        assert!(e.contains("U+000A"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        // And a ':' that would move podman's --volume separators.
        set_resolved(&mut r, &mut inputs, field, "/srv/a:/etc:rw");
        let e = render::render_with(&r, &context(), &inputs).unwrap_err();
        assert!(e.contains("':'"), "{e}");
    }
}
