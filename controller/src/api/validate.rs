//! Semantic validation: every problem is collected with its field path, so a
//! user fixes a file in one pass instead of one error at a time.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

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

fn is_image_ref(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
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
                    format!("must be an absolute path, got '{}'", p.display()),
                );
            }
        }
    }

    fn storage(&mut self, path: &str, s: Option<&StorageSpec>) {
        let Some(s) = s else { return };
        match (&s.volume, &s.path) {
            (Some(_), Some(_)) => self.push(path, "set either volume or path, not both"),
            (None, None) => self.push(path, "set one of volume or path"),
            (Some(v), None) if !is_volume_name(v) => self.push(
                &format!("{path}.volume"),
                format!("'{v}' is not a valid volume name (letters, digits, '_', '.', '-'; starting with a letter or digit)"),
            ),
            (None, Some(p)) => {
                self.absolute(&format!("{path}.path"), Some(p));
                if p == Path::new("/") {
                    self.push(&format!("{path}.path"), "must not be /");
                }
            }
            _ => {}
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
    if mr.api_version != API_VERSION {
        c.push(
            "apiVersion",
            format!("must be {API_VERSION}, got '{}'", mr.api_version),
        );
    }
    if mr.kind != KIND {
        c.push("kind", format!("must be {KIND}, got '{}'", mr.kind));
    }
    if !is_dns1123_label(name) {
        let source = if name_from_file {
            " (taken from the file name; set metadata.name)"
        } else {
            ""
        };
        c.push(
            "metadata.name",
            format!("must be a DNS-1123 label (lower-case letters, digits, '-', at most 63), got '{name}'{source}"),
        );
    }

    let s = &mr.spec;
    if let Some(h) = &s.hostname {
        if !is_hostname(h) {
            c.push("spec.hostname", format!("'{h}' is not a valid host name"));
        }
    }
    if !(1..=65535).contains(&s.port) {
        c.push("spec.port", format!("must be 1-65535, got {}", s.port));
    }
    c.absolute("spec.root", s.root.as_deref());
    if s.root.as_deref() == Some(Path::new("/")) {
        c.push("spec.root", "must not be /");
    }
    c.storage("spec.storage", s.storage.as_ref());
    c.storage("spec.database", s.database.as_ref());
    c.only_for(
        "spec.database",
        s.database.is_some(),
        s.engine,
        Engine::Quay,
    );

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
                    format!("'{san}' is not a host name or IP address"),
                );
            }
        }
    }

    if !is_username(&s.init_user.username) {
        c.push(
            "spec.initUser.username",
            format!(
                "'{}' is not a valid user name (2-255 lower-case letters and digits, separated by '.', '_' or '-')",
                s.init_user.username
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
                    format!("'{v}' is not an image reference"),
                );
            }
        }
    }
    c.0
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
}
