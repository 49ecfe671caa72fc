//! `mrctl describe NAME`: the spec in short, the conditions, each component
//! with its unit's and container's live state, and the recent events.

use std::fmt::Write as _;
use std::time::Duration;

use super::get::message;
use super::state::{age_of, table, Paths, Registry, Spec};
use super::{Result, EXIT_OK};
use crate::api::defaults::{Resolved, Storage, Tls};
use crate::host::podman::Podman;
use crate::host::systemd::Systemd;
use crate::store;

/// Events shown, newest last.
const EVENTS_SHOWN: usize = 20;
/// How long to wait for systemd or podman before showing recorded state.
const LIVE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The registry's name.
    pub name: String,
}

pub async fn run(paths: &Paths, args: Args) -> Result<i32> {
    let r = paths.find(&args.name)?;
    out!("{}", describe(paths, &r).await);
    Ok(EXIT_OK)
}

fn field(out: &mut String, indent: usize, key: &str, value: impl std::fmt::Display) {
    let label = format!("{}{key}:", " ".repeat(indent));
    let _ = writeln!(out, "{label:<22}{value}");
}

fn indent(text: &str, by: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(by)))
        .collect()
}

async fn describe(paths: &Paths, r: &Registry) -> String {
    let mut out = String::new();
    field(&mut out, 0, "Name", &r.name);
    field(&mut out, 0, "Engine", r.engine());
    let files = match r.files.as_slice() {
        [] => "(none: removed)".to_string(),
        fs => fs
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    };
    field(&mut out, 0, "Spec File", files);
    field(&mut out, 0, "Age", r.age());
    field(&mut out, 0, "Phase", r.phase());
    field(&mut out, 0, "Message", message(r));
    let resolved = r.resolved(paths.host());
    if let Some(s) = &r.status {
        field(
            &mut out,
            0,
            "Endpoint",
            s.endpoint.as_deref().unwrap_or("-"),
        );
        let path = |p: &Option<std::path::PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "-".into())
        };
        field(&mut out, 0, "CA File", path(&s.ca_file));
        field(&mut out, 0, "Credentials File", path(&s.credentials_file));
        let hash = s.observed_spec_hash.as_deref().unwrap_or("-");
        let note = match &resolved {
            Some(_) if r.status_is_current(paths.host()) => " (current)",
            Some(_) => " (older than the spec file: the controller has not caught up)",
            None => "",
        };
        field(&mut out, 0, "Observed Spec Hash", format!("{hash}{note}"));
    }

    out.push_str("Spec:\n");
    match (&r.spec, &resolved) {
        (_, Some(x)) => spec_summary(&mut out, x),
        (Spec::Invalid(inv), _) => {
            out.push_str("  (invalid: the controller leaves the running registry as it is)\n");
            for p in &inv.problems {
                let _ = writeln!(out, "  - {p}");
            }
        }
        (Spec::Duplicate, _) => {
            out.push_str("  (the name is in more than one file: neither is applied)\n")
        }
        (Spec::Unreadable(e), _) => {
            let _ = writeln!(out, "  (unreadable: {e})");
        }
        _ => out.push_str("  (none: the spec file was removed)\n"),
    }

    storage_summary(&mut out, r);
    out.push_str("Conditions:\n");
    match r.status.as_ref().filter(|s| !s.conditions.is_empty()) {
        Some(s) => {
            let rows: Vec<Vec<String>> = s
                .conditions
                .iter()
                .map(|c| {
                    vec![
                        c.type_.clone(),
                        c.status.clone(),
                        c.reason.clone(),
                        age_of(&c.last_transition_time),
                        c.message.replace('\n', " "),
                    ]
                })
                .collect();
            out.push_str(&indent(
                &table(&["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"], &rows),
                2,
            ));
        }
        None => out.push_str("  (none yet: the controller has not reported)\n"),
    }

    out.push_str("Components:\n");
    out.push_str(&indent(&components(paths, r, resolved.as_ref()).await, 2));

    out.push_str("Events:\n");
    let events = store::events::read(&paths.state_dir, &r.name);
    if events.is_empty() {
        out.push_str("  (none)\n");
    } else {
        let skip = events.len().saturating_sub(EVENTS_SHOWN);
        let rows: Vec<Vec<String>> = events[skip..]
            .iter()
            .map(|e| {
                vec![
                    e.type_.clone(),
                    e.reason.clone(),
                    age_of(&e.time),
                    e.message.replace('\n', " "),
                ]
            })
            .collect();
        out.push_str(&indent(
            &table(&["TYPE", "REASON", "AGE", "MESSAGE"], &rows),
            2,
        ));
    }
    out
}

fn storage(s: &Storage) -> String {
    match s {
        Storage::Volume(v) => format!("volume {v}"),
        Storage::Path(p) => format!("path {}", p.display()),
    }
}

fn spec_summary(out: &mut String, x: &Resolved) {
    field(out, 2, "Hostname", &x.hostname);
    field(out, 2, "Port", x.port);
    field(out, 2, "Root", x.root.display());
    field(out, 2, "Storage", storage(&x.storage));
    field(out, 2, "Storage Min Free", x.min_free);
    if let Some(cal) = &x.gc_schedule {
        field(
            out,
            2,
            "Garbage Collection",
            format!("{cal} (timer {})", crate::render::gc::timer_name(&x.name)),
        );
    }
    if let Some(db) = &x.database {
        field(out, 2, "Database", storage(db));
    }
    let tls = match &x.tls {
        Tls::Generated { extra_sans } if extra_sans.is_empty() => {
            "generated CA and certificate".into()
        }
        Tls::Generated { extra_sans } => format!(
            "generated CA and certificate (extra SANs: {})",
            extra_sans.join(", ")
        ),
        Tls::Provided {
            cert_file,
            key_file,
            skip_hostname_check,
        } => format!(
            "{} + {}{}",
            cert_file.display(),
            key_file.display(),
            if *skip_hostname_check {
                " (hostname check skipped)"
            } else {
                ""
            }
        ),
    };
    field(out, 2, "TLS", tls);
    let pw = match &x.init_password_file {
        Some(f) => format!("password from {}", f.display()),
        None => "password generated".into(),
    };
    field(out, 2, "Init User", format!("{} ({pw})", x.init_username));
    let mut images: Vec<String> = [
        ("registry", &x.images.registry),
        ("quay", &x.images.quay),
        ("redis", &x.images.redis),
        ("pause", &x.images.pause),
    ]
    .iter()
    .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
    .collect();
    if let Some(a) = &x.images.archive {
        images.push(format!("archive {}", a.display()));
    }
    field(out, 2, "Images", images.join(", "));
    field(out, 2, "Paused", x.paused);
    field(
        out,
        2,
        "Deletion Policy",
        format!("{:?}", x.deletion_policy),
    );
}

/// One row per component: the unit's and the container's state as systemd
/// and podman report them now, or as last recorded when they do not answer.
async fn components(paths: &Paths, r: &Registry, resolved: Option<&Resolved>) -> String {
    // (container, unit, image) from the spec as rendered, else from status.
    let mut list: Vec<(String, String, String)> = resolved
        .and_then(|x| crate::render::render(x, &paths.render_context()).ok())
        .map(|d| {
            d.components
                .iter()
                .map(|c| (c.container.clone(), c.unit.clone(), c.image.clone()))
                .collect()
        })
        .unwrap_or_default();
    if list.is_empty() {
        if let Some(s) = &r.status {
            list = s
                .components
                .iter()
                .map(|c| {
                    (
                        c.name.clone(),
                        c.unit.clone(),
                        c.image.clone().unwrap_or_default(),
                    )
                })
                .collect();
        }
    }
    if list.is_empty() {
        return "(none)\n".into();
    }
    let systemd = tokio::time::timeout(LIVE_TIMEOUT, Systemd::connect(paths.scope)).await;
    let podman = tokio::time::timeout(LIVE_TIMEOUT, Podman::connect(&paths.podman_socket)).await;
    let mut notes = Vec::new();
    let systemd = match systemd {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            notes.push(format!("unit state not available: {e}"));
            None
        }
        Err(_) => {
            notes.push("unit state not available: systemd did not answer".to_string());
            None
        }
    };
    let podman = match podman {
        Ok(Ok(p)) => Some(p),
        Ok(Err(e)) => {
            notes.push(format!("container state not available: {e}"));
            None
        }
        Err(_) => {
            notes.push("container state not available: podman did not answer".to_string());
            None
        }
    };
    let recorded = |container: &str| {
        r.status
            .as_ref()
            .and_then(|s| s.components.iter().find(|c| c.name == container))
    };
    let mut rows = Vec::new();
    for (container, unit, image) in list {
        let unit_state = match &systemd {
            Some(s) => match s.unit(&unit).await {
                Ok(u) if u.load_state == "not-found" => "not-found".to_string(),
                Ok(u) => format!(
                    "{} ({}, {})",
                    u.active_state, u.sub_state, u.unit_file_state
                ),
                Err(e) => format!("unknown: {e}"),
            },
            None => recorded(&container)
                .map(|c| format!("{} (recorded)", c.active_state))
                .unwrap_or_else(|| "unknown".into()),
        };
        let container_state = match &podman {
            Some(p) => match p.container(&container).await {
                Ok(Some(c)) if c.restart_count > 0 => {
                    format!("{} (restarts: {})", c.status, c.restart_count)
                }
                Ok(Some(c)) => c.status,
                Ok(None) => "absent".into(),
                Err(e) => format!("unknown: {e}"),
            },
            None => "unknown".into(),
        };
        let healthy = recorded(&container)
            .map(|c| c.healthy.to_string())
            .unwrap_or_else(|| "-".into());
        rows.push(vec![
            container,
            unit,
            unit_state,
            container_state,
            image,
            healthy,
        ]);
    }
    let mut out = table(
        &[
            "CONTAINER",
            "UNIT",
            "UNIT STATE",
            "CONTAINER STATE",
            "IMAGE",
            "HEALTHY",
        ],
        &rows,
    );
    for n in notes {
        let _ = writeln!(out, "({n})");
    }
    out
}

/// status.storage: used and free bytes, the last garbage collection.
fn storage_summary(out: &mut String, r: &Registry) {
    use crate::api::day2::human_bytes;
    let Some(s) = r.status.as_ref().and_then(|s| s.storage.as_ref()) else {
        return;
    };
    out.push_str("Storage:\n");
    field(out, 2, "Path", s.path.display());
    field(out, 2, "Used", human_bytes(s.used_bytes));
    field(out, 2, "Free", human_bytes(s.free_bytes));
    if let Some(g) = &s.last_garbage_collection {
        field(
            out,
            2,
            "Last Garbage Collection",
            format!(
                "{} ({}): {} blobs deleted, {} reclaimed, read-only for {} ms",
                g.time,
                age_of(&g.time),
                g.blobs_deleted,
                human_bytes(g.reclaimed_bytes),
                g.read_only_millis
            ),
        );
    }
}
