//! `events.jsonl`: one JSON line per status transition, newest last, at
//! most [`MAX_EVENTS`]; `mrctl describe` shows the recent ones. Appended by
//! [`super::status::save`].

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{dir, Error};
use crate::api::{ConditionStatus, ConditionType, Phase, Status};
use crate::host::files;

pub const EVENTS_FILE: &str = "events.jsonl";
/// How many events are kept per registry.
pub const MAX_EVENTS: usize = 100;
/// Longest event message kept, in characters.
const MAX_EVENT_MESSAGE: usize = 512;

/// Something that happened to a registry, Kubernetes-event style.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339, UTC.
    pub time: String,
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub message: String,
}

fn event(time: &str, ok: bool, reason: &str, message: String) -> Event {
    let mut message = message;
    if message.chars().count() > MAX_EVENT_MESSAGE {
        message = message.chars().take(MAX_EVENT_MESSAGE).collect::<String>() + "…";
    }
    Event {
        time: time.to_string(),
        type_: if ok { "Normal" } else { "Warning" }.to_string(),
        reason: reason.to_string(),
        message,
    }
}

/// The events between two statuses: a new phase, and each condition other
/// than Ready whose status changed.
pub fn transitions(prev: Option<&Status>, new: &Status, now: &str) -> Vec<Event> {
    let mut out = Vec::new();
    let ready = new.condition(ConditionType::Ready);
    if prev.map(|p| p.phase) != Some(new.phase) {
        let from = prev.map(|p| p.phase.as_str()).unwrap_or("none");
        let mut message = format!("phase {from} -> {}", new.phase.as_str());
        if let Some(r) = ready.filter(|r| !r.message.is_empty()) {
            message.push_str(": ");
            message.push_str(&r.message);
        }
        let ok = !matches!(new.phase, Phase::Failed | Phase::Degraded);
        out.push(event(now, ok, new.phase.as_str(), message));
    }
    for c in new
        .conditions
        .iter()
        .filter(|c| !c.is(ConditionType::Ready))
    {
        let before = prev.and_then(|p| p.conditions.iter().find(|x| x.type_ == c.type_));
        if before.map(|b| b.status.as_str()) == Some(c.status.as_str()) {
            continue;
        }
        out.push(event(
            now,
            c.status == ConditionStatus::True,
            &c.reason,
            format!("{} is {}: {}", c.type_, c.status, c.message),
        ));
    }
    // A garbage collection `mrctl gc` reported since the last status.
    let gc = |s: &Status| {
        s.storage
            .as_ref()
            .and_then(|x| x.last_garbage_collection.clone())
    };
    if let Some(g) = gc(new).filter(|g| prev.and_then(gc).as_ref() != Some(g)) {
        out.push(event(
            now,
            true,
            "GarbageCollected",
            format!(
                "garbage collection at {} deleted {} blobs, reclaimed {}; pushes refused for {} ms",
                g.time,
                g.blobs_deleted,
                crate::api::day2::human_bytes(g.reclaimed_bytes),
                g.read_only_millis
            ),
        ));
    }
    out
}

/// Appends `new` to the log at `path`, keeping the last [`MAX_EVENTS`].
pub(super) fn append(path: &Path, new: &[Event]) -> Result<(), Error> {
    let old = files::read_optional(path)?.unwrap_or_default();
    let text = String::from_utf8_lossy(&old);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.extend(new.iter().filter_map(|e| serde_json::to_string(e).ok()));
    let skip = lines.len().saturating_sub(MAX_EVENTS);
    let mut out = lines[skip..].join("\n");
    out.push('\n');
    files::atomic_write(path, out.as_bytes(), 0o644)?;
    Ok(())
}

/// The recorded events of a registry, oldest first; lines that do not parse
/// are skipped.
pub fn read(state_dir: &Path, name: &str) -> Vec<Event> {
    let Ok(Some(bytes)) = files::read_optional(&dir(state_dir, name).join(EVENTS_FILE)) else {
        return Vec::new();
    };
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
