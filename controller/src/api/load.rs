//! Text → validated resource, pure (no I/O). Every problem is reported with
//! the field path; YAML syntax errors with line and column.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use super::schema::{enum_values, json_schema, non_null, properties, type_names};
use super::validate::{validate, Problem};
use super::{MirrorRegistry, Status};

/// Spec files larger than this are refused before parsing.
pub const MAX_SPEC_BYTES: usize = 1 << 20;

/// A spec file that could not be accepted, with every problem found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {p}", self.file.display())?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

/// A parsed and valid spec file.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    pub resource: MirrorRegistry,
    /// metadata.name, or the file's stem.
    pub name: String,
}

/// The name a file's stem gives (`quay.yaml` → `quay`).
pub fn name_from_file(file: &Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Parses and validates a spec file's text. The status block is read
/// leniently: a damaged status is dropped (the controller rewrites it), never
/// a reason to reject the spec.
pub fn parse(file: &Path, bytes: &[u8]) -> Result<Loaded, Invalid> {
    let invalid = |problems: Vec<Problem>| Invalid {
        file: file.to_path_buf(),
        problems,
    };
    if bytes.len() > MAX_SPEC_BYTES {
        return Err(invalid(vec![Problem::new(
            "",
            format!(
                "file is {} bytes; a spec is at most {MAX_SPEC_BYTES}",
                bytes.len()
            ),
        )]));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        invalid(vec![Problem::new(
            "",
            format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.valid_up_to()
            ),
        )])
    })?;
    let mut doc: Yaml = serde_yaml::from_str(text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!("line {}, column {}: ", l.line(), l.column()))
            .unwrap_or_default();
        // serde_yaml repeats the location at the end of its message.
        let msg = e.to_string();
        let msg = match (e.location(), msg.find(" at line ")) {
            (Some(_), Some(i)) => format!("{}{}", &msg[..i], skip_location(&msg[i..])),
            _ => msg,
        };
        invalid(vec![Problem::new("", format!("{at}invalid YAML: {msg}"))])
    })?;
    let Yaml::Mapping(map) = &mut doc else {
        return Err(invalid(vec![Problem::new(
            "",
            format!(
                "expected a mapping with apiVersion, kind, metadata and spec, got {}",
                yaml_kind(&doc)
            ),
        )]));
    };
    let status = map
        .remove("status")
        .and_then(|s| serde_yaml::from_value::<Status>(s).ok());
    // An empty file the controller wrote status into is still empty: the
    // same message as before that write, whichever read comes first.
    if map.is_empty() {
        return Err(invalid(vec![Problem::new(
            "",
            "expected a mapping with apiVersion, kind, metadata and spec, got nothing but a status block",
        )]));
    }

    // Structural problems first; the offending nodes are dropped so the rest
    // can still be checked for meaning, and the user sees everything at once.
    let mut problems = Vec::new();
    check(&mut doc, json_schema(), "", &mut problems);
    let mut resource: MirrorRegistry = match serde_yaml::from_value(doc) {
        Ok(r) => r,
        Err(e) => {
            if problems.is_empty() {
                problems.push(Problem::new("", e.to_string()));
            }
            return Err(invalid(problems));
        }
    };
    resource.status = status;

    let (name, from_file) = match &resource.metadata.name {
        Some(n) => (n.clone(), false),
        None => (name_from_file(file), true),
    };
    problems.extend(validate(&resource, &name, from_file));
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    Ok(Loaded { resource, name })
}

/// Drops serde_yaml's " at line N column M" from a message tail.
fn skip_location(tail: &str) -> &str {
    let rest = tail.trim_start_matches(" at line ");
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.trim_start_matches(" column ");
    rest.trim_start_matches(|c: char| c.is_ascii_digit())
}

fn yaml_kind(v: &Yaml) -> &'static str {
    match v {
        Yaml::Null => "null",
        Yaml::Bool(_) => "boolean",
        Yaml::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Yaml::Number(_) => "number",
        Yaml::String(_) => "string",
        Yaml::Sequence(_) => "array",
        Yaml::Mapping(_) => "object",
        Yaml::Tagged(t) => yaml_kind(&t.value),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The closest known name, for "did you mean".
fn suggest<'a>(key: &str, known: impl Iterator<Item = &'a String>) -> Option<&'a String> {
    known
        .map(|k| (edit_distance(&key.to_lowercase(), &k.to_lowercase()), k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Walks the document along the schema and collects unknown fields, wrong
/// types and values outside an enum, all of them, not just the first.
/// Returns false when the node is wrong and its parent should drop it.
fn check(v: &mut Yaml, schema: &Json, path: &str, out: &mut Vec<Problem>) -> bool {
    let v = match v {
        Yaml::Tagged(t) => &mut t.value,
        other => other,
    };
    let types = type_names(schema);
    let nullable = schema.get("anyOf").is_some()
        || matches!(schema.get("type"), Some(Json::Array(ts)) if ts.iter().any(|t| t == "null"));
    if matches!(v, Yaml::Null) {
        if !nullable && !types.is_empty() && !types.iter().any(|t| t == "null") {
            // `spec:` with nothing after it means "all defaults"; an object
            // field left empty reads the same way.
            if types.iter().any(|t| t == "object") {
                return false;
            }
            out.push(Problem::new(
                path,
                format!("expected {}, got nothing", types.join(" or ")),
            ));
            return false;
        }
        return true;
    }
    let kind = yaml_kind(v);
    let ok = types.is_empty()
        || types
            .iter()
            .any(|t| t == kind || (t == "number" && kind == "integer"));
    if !ok {
        let shown = match v {
            Yaml::String(s) => format!(" \"{}\"", super::validate::shown(s)),
            Yaml::Number(n) => format!(" {n}"),
            Yaml::Bool(b) => format!(" {b}"),
            _ => String::new(),
        };
        out.push(Problem::new(
            path,
            format!("expected {}, got {kind}{shown}", types.join(" or ")),
        ));
        return false;
    }
    if let Some(values) = enum_values(schema) {
        let as_json = serde_json::to_value(v).unwrap_or(Json::Null);
        if !values.contains(&as_json) {
            let list: Vec<String> = values
                .iter()
                .map(|x| x.as_str().map(String::from).unwrap_or(x.to_string()))
                .collect();
            out.push(Problem::new(
                path,
                format!("must be one of {}, got {}", list.join(", "), as_json),
            ));
            return false;
        }
        return true;
    }
    let node = non_null(schema);
    if let Yaml::Number(n) = v {
        let (min, max) = (
            node.get("minimum").and_then(Json::as_f64),
            node.get("maximum").and_then(Json::as_f64),
        );
        let x = n.as_f64().unwrap_or(f64::NAN);
        if min.is_some_and(|m| x < m) || max.is_some_and(|m| x > m) {
            let bound = |b: Option<f64>| b.map(|b| b.to_string()).unwrap_or_default();
            out.push(Problem::new(
                path,
                format!("must be {}-{}, got {n}", bound(min), bound(max)),
            ));
            return false;
        }
    }
    match v {
        Yaml::Mapping(m) => {
            let props = properties(node);
            let extra = node.get("additionalProperties");
            let closed = matches!(extra, Some(Json::Bool(false)));
            let mut drop = Vec::new();
            for (k, child) in m.iter_mut() {
                let Some(key) = k.as_str() else {
                    out.push(Problem::new(
                        path,
                        format!("keys must be strings, got {}", yaml_kind(k)),
                    ));
                    drop.push(k.clone());
                    continue;
                };
                let here = join(path, key);
                let keep = match props.and_then(|p| p.get(key)) {
                    Some(s) => check(child, s, &here, out),
                    None if closed => {
                        let hint = props
                            .and_then(|p| suggest(key, p.keys()))
                            .map(|s| format!("; did you mean '{s}'?"))
                            .unwrap_or_default();
                        out.push(Problem::new(here, format!("unknown field{hint}")));
                        false
                    }
                    None => match extra {
                        Some(s @ Json::Object(_)) => check(child, s, &here, out),
                        _ => true,
                    },
                };
                if !keep {
                    drop.push(k.clone());
                }
            }
            for k in drop {
                m.remove(&k);
            }
            if let Some(Json::Array(req)) = node.get("required") {
                for r in req.iter().filter_map(Json::as_str) {
                    if !m.contains_key(r) {
                        out.push(Problem::new(join(path, r), "required field is missing"));
                    }
                }
            }
        }
        Yaml::Sequence(items) => {
            if let Some(item_schema) = node.get("items") {
                let mut i = 0;
                items.retain_mut(|item| {
                    i += 1;
                    check(item, item_schema, &format!("{path}[{}]", i - 1), out)
                });
            }
        }
        _ => {}
    }
    true
}
