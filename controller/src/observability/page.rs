//! The status page: plain HTML rendered here, with its CSS inline and no
//! script, font, image or link to anywhere else, so it works air-gapped and
//! a browser asks nothing of any other host. Every value is escaped. The
//! views it is given hold no password or key (see `facts`).

use std::fmt::Write as _;

use super::browse::TagInfo;
use super::facts::View;
use crate::api::day2::human_bytes as bytes;

/// `&`, `<`, `>`, `"` and `'` escaped: text and attribute values alike.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A path segment or repository path for a link: anything outside the
/// characters names may hold is percent-encoded (`/` kept).
fn href_path(s: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.');
    percent_encoding::utf8_percent_encode(s, KEEP).to_string()
}

const STYLE: &str = "
:root{color-scheme:light;--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--muted:#59636e;--line:#d1d9e0}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
header{background:#24292f;color:#fff;padding:12px 24px;display:flex;gap:24px;align-items:baseline;flex-wrap:wrap}
header h1{font-size:18px;margin:0}
header a{color:#c9d1d9}
main{padding:16px 24px;max-width:1400px}
section.registry{background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px 16px;margin:0 0 16px}
h2{font-size:17px;margin:0 0 8px;display:flex;gap:10px;align-items:center}
h3{font-size:14px;margin:14px 0 4px;color:var(--muted)}
.badge{font-size:12px;font-weight:600;padding:1px 8px;border-radius:10px;color:#fff;background:var(--muted)}
.Ready{background:var(--ok)}.Failed,.Degraded{background:var(--bad)}.Progressing,.Pending{background:var(--warn)}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:0}
dt{color:var(--muted)}dd{margin:0;word-break:break-all}
table{border-collapse:collapse;width:100%;margin:2px 0}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:600}
td.True{color:var(--ok);font-weight:600}td.False{color:var(--bad);font-weight:600}td.Unknown{color:var(--warn)}
tr.Warning td{background:#fff8f8}
.problem{border-left:4px solid var(--bad);background:#fff8f8;padding:6px 10px;margin:8px 0}
.muted{color:var(--muted)}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace}
nav{margin:0 0 12px}
";

fn head(title: &str, out: &mut String) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<link rel=\"icon\" href=\"data:,\">\
<title>{}</title><style>{STYLE}</style></head><body>\
<header><h1>mirror-registry</h1><span>{}</span><a href=\"/\">Registries</a><a href=\"/metrics\">Metrics</a></header><main>",
        escape(title),
        escape(&crate::host::fqdn()),
    );
}

fn foot(out: &mut String) {
    let now = crate::store::now_rfc3339();
    let _ = writeln!(
        out,
        "<p class=\"muted\">Read at {} from the controller's state directory and each registry's API. Credentials are in each registry's credentials file: <code>mrctl credentials NAME</code>.</p></main></body></html>",
        escape(&now)
    );
}

fn date(t: &time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn summary(v: &View, out: &mut String) {
    let _ = write!(
        out,
        "<h2><span>{}</span><span class=\"badge {}\">{}</span></h2>",
        escape(&v.name),
        escape(&v.phase),
        escape(&v.phase)
    );
    if let Some(p) = &v.spec_problem {
        let _ = write!(
            out,
            "<div class=\"problem\">The spec cannot be applied: {}</div>",
            escape(p)
        );
    }
    out.push_str("<dl>");
    let mut row = |k: &str, v: String| {
        let _ = write!(out, "<dt>{k}</dt><dd>{v}</dd>");
    };
    row(
        "Engine",
        v.engine
            .map(|e| escape(e.as_str()))
            .unwrap_or_else(|| "-".into()),
    );
    row(
        "Endpoint",
        v.endpoint
            .as_deref()
            .map(|e| format!("<code>{}</code>", escape(e)))
            .unwrap_or_else(|| "-".into()),
    );
    row(
        "Spec file",
        v.spec_file
            .as_ref()
            .map(|f| format!("<code>{}</code>", escape(&f.display().to_string())))
            .unwrap_or_else(|| "-".into()),
    );
    row(
        "Certificate",
        match &v.certificate {
            Some(c) => {
                let days = (c.not_after - time::OffsetDateTime::now_utc()).whole_days();
                format!(
                    "expires {} ({} days); {}",
                    escape(&date(&c.not_after)),
                    days,
                    escape(&c.subject)
                )
            }
            None => "-".into(),
        },
    );
    row(
        "Storage",
        match &v.storage {
            Some(s) => format!(
                "{} free of {} ({}, <code>{}</code>)",
                bytes(s.free_bytes),
                bytes(s.total_bytes),
                escape(&s.source),
                escape(&s.path.display().to_string())
            ),
            None => "-".into(),
        },
    );
    row(
        "Drift repairs",
        format!("{} since the controller started", v.drift_repairs),
    );
    out.push_str("</dl>");
}

fn conditions(v: &View, out: &mut String) {
    out.push_str("<h3>Conditions</h3>");
    if v.conditions.is_empty() {
        out.push_str("<p class=\"muted\">none reported yet</p>");
        return;
    }
    out.push_str(
        "<table><tr><th>Type</th><th>Status</th><th>Reason</th><th>Message</th><th>Since</th></tr>",
    );
    for c in &v.conditions {
        let status = match c.status.as_str() {
            "True" | "False" => c.status.as_str(),
            _ => "Unknown",
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"{status}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&c.type_),
            escape(&c.status),
            escape(&c.reason),
            escape(&c.message),
            escape(&c.last_transition_time)
        );
    }
    out.push_str("</table>");
}

fn events(v: &View, out: &mut String) {
    out.push_str("<h3>Recent events</h3>");
    if v.events.is_empty() {
        out.push_str("<p class=\"muted\">none</p>");
        return;
    }
    out.push_str("<table><tr><th>Time</th><th>Type</th><th>Reason</th><th>Message</th></tr>");
    for e in &v.events {
        let class = if e.type_ == "Warning" {
            "Warning"
        } else {
            "Normal"
        };
        let _ = write!(
            out,
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&e.time),
            escape(&e.type_),
            escape(&e.reason),
            escape(&e.message)
        );
    }
    out.push_str("</table>");
}

/// `/`: every registry.
pub fn index(views: &[View]) -> String {
    let mut out = String::new();
    head("mirror-registry status", &mut out);
    let ready = views.iter().filter(|v| v.ready).count();
    let _ = write!(out, "<p>{} registries, {} Ready.</p>", views.len(), ready);
    for v in views {
        let _ = write!(
            out,
            "<section class=\"registry\" id=\"{}\">",
            escape(&v.name)
        );
        summary(v, &mut out);
        conditions(v, &mut out);
        events(v, &mut out);
        if v.resolved.is_some() {
            let _ = write!(
                out,
                "<p><a href=\"/registries/{}\">Repositories and tags of {}</a></p>",
                href_path(&v.name),
                escape(&v.name)
            );
        }
        out.push_str("</section>");
    }
    if views.is_empty() {
        out.push_str("<p class=\"muted\">No MirrorRegistry specs in the watch directory.</p>");
    }
    foot(&mut out);
    out
}

/// What the registry page lists: each repository and its tags, or why not.
pub struct RepositoryList {
    pub repositories: Vec<(String, Result<Vec<String>, String>)>,
    pub truncated: bool,
}

/// `/registries/NAME`: its summary and repositories.
pub fn registry(v: &View, list: Result<RepositoryList, String>) -> String {
    let mut out = String::new();
    head(&format!("{} - mirror-registry", v.name), &mut out);
    let _ = write!(
        out,
        "<nav><a href=\"/\">Registries</a> / {}</nav><section class=\"registry\">",
        escape(&v.name)
    );
    summary(v, &mut out);
    conditions(v, &mut out);
    out.push_str("<h3>Repositories</h3>");
    match list {
        Err(e) => {
            let _ = write!(
                out,
                "<div class=\"problem\">Cannot list repositories: {}</div>",
                escape(&e)
            );
        }
        Ok(l) if l.repositories.is_empty() => {
            out.push_str("<p class=\"muted\">No repositories yet.</p>");
        }
        Ok(l) => {
            out.push_str("<table><tr><th>Repository</th><th>Tags</th></tr>");
            for (repo, tags) in &l.repositories {
                let link = format!(
                    "/registries/{}/repositories/{}",
                    href_path(&v.name),
                    href_path(repo)
                );
                let tags = match tags {
                    Ok(t) if t.is_empty() => "<span class=\"muted\">no tags</span>".to_string(),
                    Ok(t) => {
                        let shown: Vec<String> = t.iter().take(20).map(|x| escape(x)).collect();
                        let more = t.len().saturating_sub(20);
                        let mut s = shown.join(", ");
                        if more > 0 {
                            let _ = write!(s, " and {more} more");
                        }
                        s
                    }
                    Err(e) => format!("<span class=\"muted\">{}</span>", escape(e)),
                };
                let _ = write!(
                    out,
                    "<tr><td><a href=\"{}\">{}</a></td><td>{}</td></tr>",
                    escape(&link),
                    escape(repo),
                    tags
                );
            }
            out.push_str("</table>");
            if l.truncated {
                out.push_str("<p class=\"muted\">Only the first repositories are listed.</p>");
            }
        }
    }
    out.push_str("</section>");
    foot(&mut out);
    out
}

/// `/registries/NAME/repositories/REPO`: each tag with digest and size.
pub fn repository(v: &View, repo: &str, tags: Result<Vec<TagInfo>, String>) -> String {
    let mut out = String::new();
    head(&format!("{repo} - {} - mirror-registry", v.name), &mut out);
    let _ = write!(
        out,
        "<nav><a href=\"/\">Registries</a> / <a href=\"/registries/{}\">{}</a> / {}</nav><section class=\"registry\">",
        href_path(&v.name),
        escape(&v.name),
        escape(repo)
    );
    let _ = write!(out, "<h2><span>{}</span></h2>", escape(repo));
    if let Some(e) = &v.endpoint {
        let host = e.trim_start_matches("https://");
        let _ = write!(
            out,
            "<p>Pull: <code>podman pull {}/{}:TAG</code></p>",
            escape(host),
            escape(repo)
        );
    }
    match tags {
        Err(e) => {
            let _ = write!(
                out,
                "<div class=\"problem\">Cannot list tags: {}</div>",
                escape(&e)
            );
        }
        Ok(t) if t.is_empty() => out.push_str("<p class=\"muted\">No tags.</p>"),
        Ok(t) => {
            out.push_str(
                "<table><tr><th>Tag</th><th>Digest</th><th>Size</th><th>Media type</th></tr>",
            );
            for x in &t {
                let size = match (x.size, x.platforms) {
                    (Some(s), 0) => format!("<span title=\"{s} bytes\">{}</span>", bytes(s)),
                    (Some(s), n) => format!(
                        "<span title=\"{s} bytes\">{}</span> ({n} platforms)",
                        bytes(s)
                    ),
                    (None, n) if n > 0 => format!("{n} platforms"),
                    (None, _) => "-".into(),
                };
                let digest = match (&x.digest, &x.error) {
                    (Some(d), _) => format!("<code>{}</code>", escape(d)),
                    (None, Some(e)) => format!("<span class=\"muted\">{}</span>", escape(e)),
                    (None, None) => "-".into(),
                };
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                    escape(&x.tag),
                    digest,
                    size,
                    escape(x.media_type.as_deref().unwrap_or("-"))
                );
            }
            out.push_str("</table>");
        }
    }
    out.push_str("</section>");
    foot(&mut out);
    out
}

/// A short page for an error status.
pub fn error(title: &str, message: &str) -> String {
    let mut out = String::new();
    head(title, &mut out);
    let _ = write!(out, "<h2>{}</h2><p>{}</p>", escape(title), escape(message));
    foot(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Condition, Engine};

    fn view(name: &str) -> View {
        View {
            name: name.into(),
            engine: Some(Engine::Distribution),
            phase: "Failed".into(),
            ready: false,
            spec_problem: Some("spec.port: must be 1-65535, got 70000".into()),
            spec_file: Some("/etc/mirror-registry/x.yaml".into()),
            endpoint: Some("https://h:8443".into()),
            conditions: vec![Condition {
                type_: "SpecValid".into(),
                status: "False".into(),
                reason: "InvalidSpec".into(),
                message: "<script>alert(1)</script>".into(),
                last_transition_time: "2026-12-02T00:00:00Z".into(),
            }],
            events: vec![],
            certificate: None,
            storage: None,
            drift_repairs: 0,
            resolved: None,
        }
    }

    #[test]
    fn values_are_escaped_and_nothing_is_external() {
        let html = index(&[view("a\"b")]);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("a&quot;b"));
        assert!(html.contains("spec.port: must be 1-65535, got 70000"));
        for external in ["http://", "https://", "src=", "@import", "url("] {
            let outside = html
                .match_indices(external)
                .filter(|(i, _)| !html[*i..].starts_with("https://h:8443"))
                .count();
            assert_eq!(outside, 0, "{external} in\n{html}");
        }
    }

    #[test]
    fn sizes_read_in_iec_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(2 * 1024 * 1024 + 31457), "2.0 MiB");
        assert_eq!(href_path("library/a b"), "library/a%20b");
    }
}
