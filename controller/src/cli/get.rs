//! `mrctl get`: a table of registries, or registries as the API's YAML or
//! JSON (the same field names as the spec file's).

// serde_yaml values keep the API's field order; JSON is written from them
// too.
use serde_yaml::{Mapping, Value};

use super::state::{table, Paths, Registry, Spec};
use super::{Error, Result, EXIT_OK};
use crate::api::{ConditionStatus, ConditionType, API_VERSION, KIND};

/// Words that name the resource type rather than a registry, as kubectl
/// accepts them: `mrctl get status`, `mrctl get mr NAME`.
const TYPE_WORDS: [&str; 5] = [
    "status",
    "mirrorregistry",
    "mirrorregistries",
    "mr",
    "mirrorregistry.mirrorregistry.io",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// More columns: components, root, spec file, message.
    Wide,
    Yaml,
    Json,
    /// `mirrorregistry/NAME` only.
    Name,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `status` (or nothing) for every registry, or a registry's name. A
    /// resource word (`mr`, `mirrorregistry`) may come first.
    #[arg(num_args = 0..=2, value_name = "NAME")]
    pub args: Vec<String>,
    /// Output format; default a table.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Output>,
}

pub fn run(paths: &Paths, args: Args) -> Result<i32> {
    let mut words: &[String] = &args.args;
    if let Some(first) = words.first() {
        if TYPE_WORDS.contains(&first.as_str()) {
            words = &words[1..];
        }
    }
    let (regs, single) = match words {
        [] => (paths.list()?, false),
        [name] => (vec![paths.find(name)?], true),
        _ => {
            return Err(Error::Usage(
                "get takes at most one registry name (`mrctl get NAME`)".into(),
            ))
        }
    };
    match args.output {
        Some(Output::Json) => {
            let v = document(&regs, single);
            let text = serde_json::to_string_pretty(&v)
                .map_err(|e| Error::Failed(format!("cannot write JSON: {e}")))?;
            outln!("{text}");
        }
        Some(Output::Yaml) => {
            let v = document(&regs, single);
            let text = serde_yaml::to_string(&v)
                .map_err(|e| Error::Failed(format!("cannot write YAML: {e}")))?;
            out!("{text}");
        }
        Some(Output::Name) => {
            for r in &regs {
                outln!("mirrorregistry/{}", r.name);
            }
        }
        out => {
            if regs.is_empty() {
                eprintln!(
                    "No resources found (watch dir {}, state dir {}).",
                    paths.watch_dir.display(),
                    paths.state_dir.display()
                );
                return Ok(EXIT_OK);
            }
            out!("{}", render_table(paths, &regs, out == Some(Output::Wide)));
        }
    }
    Ok(EXIT_OK)
}

fn render_table(paths: &Paths, regs: &[Registry], wide: bool) -> String {
    let mut headers = vec!["NAME", "ENGINE", "PHASE", "READY", "ENDPOINT", "AGE"];
    if wide {
        headers.extend(["COMPONENTS", "ROOT", "FILE", "STORAGE", "MESSAGE"]);
    }
    let rows: Vec<Vec<String>> = regs
        .iter()
        .map(|r| {
            let mut row = vec![
                r.name.clone(),
                r.engine(),
                r.phase(),
                r.ready(),
                r.endpoint(),
                r.age(),
            ];
            if wide {
                let comps = r
                    .status
                    .as_ref()
                    .map(|s| {
                        let healthy = s.components.iter().filter(|c| c.healthy).count();
                        format!("{healthy}/{}", s.components.len())
                    })
                    .unwrap_or_else(|| "-".into());
                let root = r
                    .resolved(paths.host())
                    .map(|x| x.root)
                    .or_else(|| r.record.as_ref().map(|x| x.root.clone()))
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "-".into());
                let file = match r.files.as_slice() {
                    [] => "-".to_string(),
                    fs => fs
                        .iter()
                        .map(|f| f.display().to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                };
                row.extend([comps, root, file, storage_cell(r), message(r)]);
            }
            row
        })
        .collect();
    table(&headers, &rows)
}

/// The one line that says why a registry is not Ready.
pub fn message(r: &Registry) -> String {
    match &r.spec {
        Spec::Duplicate => {
            return format!(
                "the name is used by {} files; none is applied",
                r.files.len()
            )
        }
        Spec::Missing if r.record.is_some() => return "spec file removed; tearing down".into(),
        _ => {}
    }
    for t in [ConditionType::SpecValid, ConditionType::Ready] {
        if let Some(c) = r
            .condition(t.as_str())
            .filter(|c| c.status != ConditionStatus::True)
        {
            return c.message.replace('\n', " ");
        }
    }
    r.condition(ConditionType::Ready.as_str())
        .map(|c| c.message.clone())
        .unwrap_or_else(|| "-".into())
}

/// A registry as the API's object: apiVersion, kind, metadata, spec (as
/// the file says it, with the API's defaults filled in) and status, in the
/// API's field order.
pub fn object(r: &Registry) -> Value {
    let mut o = Mapping::new();
    o.insert("apiVersion".into(), API_VERSION.into());
    o.insert("kind".into(), KIND.into());
    let (metadata, spec) = match &r.spec {
        Spec::Valid(l) => (
            serde_yaml::to_value(&l.resource.metadata).unwrap_or(Value::Null),
            serde_yaml::to_value(&l.resource.spec).ok(),
        ),
        // An invalid file's spec is shown as written, so the user sees what
        // the controller refuses.
        Spec::Invalid(_) => (
            Value::Null,
            r.text
                .as_deref()
                .and_then(|b| serde_yaml::from_slice::<Value>(b).ok())
                .and_then(|v| v.get("spec").cloned()),
        ),
        _ => (Value::Null, None),
    };
    let mut metadata = match metadata {
        Value::Mapping(m) => m,
        _ => Mapping::new(),
    };
    metadata.insert("name".into(), r.name.clone().into());
    o.insert("metadata".into(), Value::Mapping(metadata));
    if let Some(s) = spec {
        o.insert("spec".into(), s);
    }
    if let Some(v) = r.status.as_ref().and_then(|s| serde_yaml::to_value(s).ok()) {
        o.insert("status".into(), v);
    }
    Value::Mapping(o)
}

fn document(regs: &[Registry], single: bool) -> Value {
    if single {
        if let Some(r) = regs.first() {
            return object(r);
        }
    }
    let mut o = Mapping::new();
    o.insert("apiVersion".into(), "v1".into());
    o.insert("kind".into(), "List".into());
    o.insert(
        "items".into(),
        Value::Sequence(regs.iter().map(object).collect()),
    );
    Value::Mapping(o)
}

/// `used/free` of the registry's storage, `!` when StorageAvailable is
/// False (`2.1 GiB/120.0 MiB!`).
fn storage_cell(r: &Registry) -> String {
    let Some(st) = r.status.as_ref() else {
        return "-".into();
    };
    let Some(s) = &st.storage else {
        return "-".into();
    };
    let short = st
        .condition(crate::api::ConditionType::StorageAvailable)
        .is_some_and(|c| c.status == crate::api::ConditionStatus::False);
    format!(
        "{}/{}{}",
        crate::api::day2::human_bytes(s.used_bytes),
        crate::api::day2::human_bytes(s.free_bytes),
        if short { "!" } else { "" }
    )
}
