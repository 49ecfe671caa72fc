//! Semantic validation: every problem is collected with its field path, so a
//! user fixes a file in one pass instead of one error at a time.

use std::fmt;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use serde_json::Value as Json;

use super::{Engine, MirrorRegistry, StorageSpec, API_VERSION, KIND};

/// One thing wrong with a spec, at a field path like `spec.tls.certFile`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Directories a `spec.root`, `spec.storage.path` or `spec.database.path`
/// may not be, whatever the deletion policy: with `Delete` the controller
/// removes that directory, and each of these is the host's (or every
/// registry's) rather than one registry's. Compared after normalisation
/// ([`normalize`]: no `.` components, duplicate or trailing slashes). An
/// entry ending in `/*` stands for every directory directly under it (a
/// user's home, a user's runtime directory). Directories *under* an entry
/// are allowed: `/srv/blobs`, `/var/lib/mirror-registry/quay`.
pub const SYSTEM_DIRS: &[&str] = &[
    "/",
    // The top level (FHS, with the usual merged-/usr links and mount points).
    "/bin",
    "/boot",
    "/boot/efi",
    "/dev",
    "/dev/shm",
    "/efi",
    "/etc",
    "/home",
    "/home/*",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/lost+found",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/run/user",
    "/run/user/*",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    // /usr and its standard directories.
    "/usr",
    "/usr/bin",
    "/usr/games",
    "/usr/include",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/libexec",
    "/usr/libx32",
    "/usr/sbin",
    "/usr/share",
    "/usr/src",
    "/usr/local",
    "/usr/local/bin",
    "/usr/local/etc",
    "/usr/local/games",
    "/usr/local/include",
    "/usr/local/lib",
    "/usr/local/libexec",
    "/usr/local/man",
    "/usr/local/sbin",
    "/usr/local/share",
    "/usr/local/src",
    // /var and its standard directories.
    "/var",
    "/var/backups",
    "/var/cache",
    "/var/lib",
    "/var/local",
    "/var/lock",
    "/var/log",
    "/var/mail",
    "/var/opt",
    "/var/run",
    "/var/spool",
    "/var/tmp",
    // What the registry's own machinery lives in: systemd's and podman's
    // configuration and state, TLS trust, the parent of every default root,
    // the controller's state directory and the default watch directory.
    "/etc/containers",
    "/etc/pki",
    "/etc/ssl",
    "/etc/systemd",
    "/etc/systemd/system",
    "/etc/systemd/user",
    "/etc/mirror-registry",
    "/run/containers",
    "/run/podman",
    "/run/systemd",
    "/var/lib/containers",
    "/var/lib/containers/storage",
    "/var/lib/systemd",
    "/var/lib/mirror-registry",
    "/var/lib/mirror-registry-controller",
];

/// `p` with `.` components, duplicate and trailing slashes removed; `None`
/// when it has a `..` component, which only the file system (symbolic
/// links) can resolve.
pub fn normalize(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => return None,
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

/// The [`SYSTEM_DIRS`] entry an absolute path is, after normalisation.
pub fn system_dir(p: &Path) -> Option<&'static str> {
    let p = normalize(p)?;
    SYSTEM_DIRS
        .iter()
        .copied()
        .find(|d| match d.strip_suffix("/*") {
            Some(parent) => p.parent() == Some(Path::new(parent)),
            None => p == Path::new(d),
        })
}

/// Characters no string of a spec may hold: control characters (newline,
/// carriage return, tab, NUL and the rest of C0, DEL, C1 with NEL), the
/// Unicode line and paragraph separators (line breaks to YAML 1.1 readers
/// such as Quay's and the registry's), the byte order mark and the
/// non-characters U+FFFE and U+FFFF. Neither a unit file nor the config
/// files can hold them as themselves.
pub fn is_forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
        )
}

/// The first forbidden character of `s` and its position (in characters).
pub fn forbidden_char(s: &str) -> Option<(usize, char)> {
    s.chars().enumerate().find(|(_, c)| is_forbidden_char(*c))
}

/// A value as a message shows it: forbidden characters escaped (`\n`,
/// `\u{7f}`), so a problem stays on one line whatever the value holds.
pub fn shown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if is_forbidden_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// "a control character (U+000A) at character 5", for messages.
pub fn describe_forbidden(i: usize, c: char) -> String {
    let what = if c.is_control() {
        "a control character"
    } else {
        "a line separator or non-character"
    };
    format!("{what} (U+{:04X}) at character {}", u32::from(c), i + 1)
}

/// RFC 1123 DNS label as Kubernetes names use it.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A host name (labels of letters, digits and '-', case-insensitive) or an IP
/// address.
pub fn is_hostname(s: &str) -> bool {
    if s.parse::<IpAddr>().is_ok() {
        return true;
    }
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// A podman volume name.
fn is_volume_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphanumeric())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A user name both Quay and htpasswd accept: lower-case letters and digits,
/// separated by single '.', '_' or '-'; 2 to 255 characters.
fn is_username(s: &str) -> bool {
    (2..=255).contains(&s.len())
        && s.split(['.', '_', '-']).all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// An image reference as podman reads one (`[host[:port]/]path[:tag][@digest]`):
/// it starts with a letter or digit, so podman cannot take it for an
/// option, and holds only letters, digits and `._-/:@`, so it needs no
/// quoting anywhere.
fn is_image_ref(s: &str) -> bool {
    s.len() <= 4096
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/' | b':' | b'@')
        })
}

/// A string found in a serialized spec: a value, or a key of a free-form map.
struct Found<'a> {
    path: String,
    text: &'a str,
    key: bool,
}

/// Every string of a serialized spec with its field path: apiVersion, kind,
/// metadata (labels and annotations, their keys too) and spec, whatever
/// fields the types grow. A key that is not an identifier is written
/// `labels["a.b/c"]`.
fn strings<'a>(v: &'a Json, path: &str, out: &mut Vec<Found<'a>>) {
    match v {
        Json::String(s) => out.push(Found {
            path: path.to_string(),
            text: s,
            key: false,
        }),
        Json::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                strings(item, &format!("{path}[{i}]"), out);
            }
        }
        Json::Object(map) => {
            for (k, item) in map {
                let identifier =
                    !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                let here = match (identifier, path.is_empty()) {
                    (true, true) => k.clone(),
                    (true, false) => format!("{path}.{k}"),
                    (false, _) => format!("{path}[\"{}\"]", shown(k).replace('"', "\\\"")),
                };
                out.push(Found {
                    path: here.clone(),
                    text: k,
                    key: true,
                });
                strings(item, &here, out);
            }
        }
        _ => {}
    }
}

struct Collector(Vec<Problem>);

impl Collector {
    fn push(&mut self, path: &str, message: impl Into<String>) {
        self.0.push(Problem::new(path, message));
    }

    fn absolute(&mut self, path: &str, p: Option<&Path>) {
        if let Some(p) = p {
            if !p.is_absolute() {
                self.push(
                    path,
                    format!(
                        "must be an absolute path, got '{}'",
                        shown(&p.display().to_string())
                    ),
                );
            }
            if normalize(p).is_none() {
                self.push(
                    path,
                    format!(
                        "must not contain '..' components, got '{}'",
                        shown(&p.display().to_string())
                    ),
                );
            }
        }
    }

    /// A host directory podman mounts (`--volume SOURCE:TARGET:OPTIONS`)
    /// and deletionPolicy Delete may remove: absolute, normalisable, with
    /// neither podman's separators nor a system directory.
    fn data_dir(&mut self, path: &str, p: Option<&Path>, example: &str) {
        let Some(p) = p else { return };
        self.absolute(path, Some(p));
        let text = p.display().to_string();
        for (sep, role) in [
            (':', "separates a volume's source, destination and options"),
            (',', "separates a volume's options"),
        ] {
            if text.contains(sep) {
                self.push(
                    path,
                    format!(
                        "must not contain '{sep}' (podman's --volume {role}), got '{}'",
                        shown(&text)
                    ),
                );
            }
        }
        if p.is_absolute() {
            if let Some(dir) = system_dir(p) {
                let which = match dir.strip_suffix("/*") {
                    Some(parent) => format!("{}, directly under {parent}", shown(&text)),
                    None => dir.to_string(),
                };
                self.push(
                    path,
                    format!(
                        "must not be {which}: a system directory that deletionPolicy Delete would wipe \
                         (the list: SYSTEM_DIRS in controller/src/api/validate.rs); \
                         use a directory of the registry's own, like {example}"
                    ),
                );
            }
        }
    }

    fn storage(&mut self, path: &str, s: Option<&StorageSpec>, example: &str) {
        let Some(s) = s else { return };
        match (&s.volume, &s.path) {
            (Some(_), Some(_)) => self.push(path, "set either volume or path, not both"),
            // Only minFree: the default volume keeps that much free.
            (None, None) if s.min_free.is_some() && path == "spec.storage" => {}
            (None, None) => self.push(path, "set one of volume or path"),
            (Some(v), None) if !is_volume_name(v) => self.push(
                &format!("{path}.volume"),
                format!("'{}' is not a valid volume name (letters, digits, '_', '.', '-'; starting with a letter or digit)", shown(v)),
            ),
            (None, Some(p)) => self.data_dir(&format!("{path}.path"), Some(p), example),
            _ => {}
        }
    }

    /// Every string of the spec, keys of labels and annotations too: none
    /// may hold a control character (see [`is_forbidden_char`]).
    fn forbidden_chars(&mut self, mr: &MirrorRegistry) {
        // Plain data serializes; the status is the controller's, not the spec.
        let parts = [
            ("apiVersion", Json::String(mr.api_version.clone())),
            ("kind", Json::String(mr.kind.clone())),
            (
                "metadata",
                serde_json::to_value(&mr.metadata).unwrap_or(Json::Null),
            ),
            ("spec", serde_json::to_value(&mr.spec).unwrap_or(Json::Null)),
        ];
        let mut found = Vec::new();
        for (field, value) in &parts {
            strings(value, field, &mut found);
        }
        for f in found {
            if let Some((i, ch)) = forbidden_char(f.text) {
                let what = if f.key { "key" } else { "value" };
                self.push(
                    &f.path,
                    format!(
                        "{what} '{}' holds {}: control characters (newline, tab, NUL, ...) are not allowed in any field",
                        shown(f.text),
                        describe_forbidden(i, ch)
                    ),
                );
            }
        }
    }

    fn only_for(&mut self, path: &str, set: bool, engine: Engine, wanted: Engine) {
        if set && engine != wanted {
            self.push(
                path,
                format!(
                    "only for engine {}, but spec.engine is {}",
                    wanted.as_str(),
                    engine.as_str()
                ),
            );
        }
    }
}

/// Checks everything serde's types cannot. `name` is metadata.name or, when
/// absent, the file's stem (`name_from_file` says which, for the message).
pub fn validate(mr: &MirrorRegistry, name: &str, name_from_file: bool) -> Vec<Problem> {
    let mut c = Collector(Vec::new());
    c.forbidden_chars(mr);
    if mr.api_version != API_VERSION {
        c.push(
            "apiVersion",
            format!("must be {API_VERSION}, got '{}'", shown(&mr.api_version)),
        );
    }
    if mr.kind != KIND {
        c.push("kind", format!("must be {KIND}, got '{}'", shown(&mr.kind)));
    }
    if !is_dns1123_label(name) {
        let source = if name_from_file {
            " (taken from the file name; set metadata.name)"
        } else {
            ""
        };
        c.push(
            "metadata.name",
            format!("must be a DNS-1123 label (lower-case letters, digits, '-', at most 63), got '{}'{source}", shown(name)),
        );
    }

    let s = &mr.spec;
    if let Some(h) = &s.hostname {
        if !is_hostname(h) {
            c.push(
                "spec.hostname",
                format!("'{}' is not a valid host name", shown(h)),
            );
        }
    }
    if !(1..=65535).contains(&s.port) {
        c.push("spec.port", format!("must be 1-65535, got {}", s.port));
    }
    c.data_dir(
        "spec.root",
        s.root.as_deref(),
        &format!("/var/lib/mirror-registry/{}", shown(name)),
    );
    // The example path each message suggests.
    for (field, storage, example) in [
        ("spec.storage", &s.storage, "storage"),
        ("spec.database", &s.database, "sqlite-storage"),
    ] {
        let example = format!("/srv/{}-{example}", shown(name));
        c.storage(field, storage.as_ref(), &example);
    }
    c.only_for(
        "spec.database",
        s.database.is_some(),
        s.engine,
        Engine::Quay,
    );
    day_two(&mut c, s);

    if let Some(t) = &s.tls {
        match (&t.cert_file, &t.key_file) {
            (Some(_), None) | (None, Some(_)) => {
                c.push("spec.tls", "certFile and keyFile go together")
            }
            (Some(_), Some(_)) if !t.extra_sans.is_empty() => c.push(
                "spec.tls.extraSans",
                "only for a generated certificate, not with certFile",
            ),
            (None, None) if t.skip_hostname_check => c.push(
                "spec.tls.skipHostnameCheck",
                "only with certFile and keyFile",
            ),
            _ => {}
        }
        c.absolute("spec.tls.certFile", t.cert_file.as_deref());
        c.absolute("spec.tls.keyFile", t.key_file.as_deref());
        for (i, san) in t.extra_sans.iter().enumerate() {
            if !is_hostname(san) {
                c.push(
                    &format!("spec.tls.extraSans[{i}]"),
                    format!("'{}' is not a host name or IP address", shown(san)),
                );
            }
        }
    }

    if !is_username(&s.init_user.username) {
        c.push(
            "spec.initUser.username",
            format!(
                "'{}' is not a valid user name (2-255 lower-case letters and digits, separated by '.', '_' or '-')",
                shown(&s.init_user.username)
            ),
        );
    }
    c.absolute(
        "spec.initUser.passwordFile",
        s.init_user.password_file.as_deref(),
    );

    let i = &s.images;
    c.absolute("spec.images.archive", i.archive.as_deref());
    c.only_for(
        "spec.images.registry",
        i.registry.is_some(),
        s.engine,
        Engine::Distribution,
    );
    c.only_for("spec.images.quay", i.quay.is_some(), s.engine, Engine::Quay);
    c.only_for(
        "spec.images.redis",
        i.redis.is_some(),
        s.engine,
        Engine::Quay,
    );
    for (field, v) in [
        ("registry", &i.registry),
        ("quay", &i.quay),
        ("redis", &i.redis),
        ("pause", &i.pause),
    ] {
        if let Some(v) = v {
            if !is_image_ref(v) {
                c.push(
                    &format!("spec.images.{field}"),
                    format!(
                        "'{}' is not an image reference (letters, digits and '._-/:@', starting with a letter or digit)",
                        shown(v)
                    ),
                );
            }
        }
    }
    c.0
}

/// `spec.storage.minFree` and `spec.garbageCollection`.
fn day_two(c: &mut Collector, s: &super::Spec) {
    if let Some(m) = s.storage.as_ref().and_then(|x| x.min_free.as_deref()) {
        if let Err(e) = super::day2::MinFree::parse(m) {
            c.push("spec.storage.minFree", e);
        }
    }
    if s.database.as_ref().is_some_and(|d| d.min_free.is_some()) {
        c.push(
            "spec.database.minFree",
            "only spec.storage has a minFree (the blobs' filesystem)",
        );
    }
    if let Some(g) = &s.garbage_collection {
        c.only_for(
            "spec.garbageCollection",
            true,
            s.engine,
            Engine::Distribution,
        );
        if let Some(cal) = &g.schedule {
            // systemd checks the expression itself (the timer's OnCalendar=);
            // here only what could never be one, or could break the unit file.
            let ok = !cal.trim().is_empty()
                && cal
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || " :-*/.,~".contains(ch));
            if !ok {
                c.push(
                    "spec.garbageCollection.schedule",
                    format!(
                        "'{}' is not a systemd calendar expression (e.g. 'Sun 03:00', 'daily', '*-*-* 02:30')",
                        shown(cal)
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_dns1123_label("quay"));
        assert!(is_dns1123_label("a-1"));
        assert!(!is_dns1123_label("Quay"));
        assert!(!is_dns1123_label("-a"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_hostname("mirror.example.org"));
        assert!(is_hostname("127.0.0.1"));
        assert!(!is_hostname("bad_host"));
        assert!(!is_hostname("a..b"));
        assert!(is_username("init"));
        assert!(!is_username("Init"));
        assert!(!is_username("a"));
        assert!(!is_username("a:b"));
    }

    #[test]
    fn normalisation_and_system_directories() {
        let n = |p: &str| normalize(Path::new(p)).map(|p| p.display().to_string());
        assert_eq!(n("/srv//a/./b/").as_deref(), Some("/srv/a/b"));
        assert_eq!(n("/a/../b"), None);
        assert_eq!(system_dir(Path::new("/etc/")), Some("/etc"));
        assert_eq!(system_dir(Path::new("//usr/./local")), Some("/usr/local"));
        assert_eq!(system_dir(Path::new("/home/alice/")), Some("/home/*"));
        assert_eq!(system_dir(Path::new("/home/alice/registry")), None);
        assert_eq!(system_dir(Path::new("/var/lib/mirror-registry/quay")), None);
        for d in SYSTEM_DIRS {
            assert!(
                d.starts_with('/') && (d.len() == 1 || !d.ends_with('/')),
                "{d}"
            );
        }
    }

    #[test]
    fn messages_show_control_characters_escaped() {
        assert_eq!(shown("a\nb\u{0}\u{2028}é"), "a\\nb\\u{0}\\u{2028}é");
        assert_eq!(forbidden_char("ab\tc"), Some((2, '\t')));
        assert!(!is_image_ref("-v/:/host"));
        assert!(!is_image_ref("#x"));
        assert!(is_image_ref(
            "registry.example.org:5000/a/b:1@sha256:0123abcd"
        ));
    }
}
