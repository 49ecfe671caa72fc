//! Finds and replaces the top-level `status:` block in the text of a spec
//! file, leaving every other byte (comments, key order, quoting, line
//! endings) exactly as the user wrote it. Pure: no I/O.
//!
//! A full YAML parser with byte positions would be the exact tool, but
//! serde_yaml does not expose positions. A line scanner is enough here: the
//! top level of a spec is a block mapping, so its keys are the lines that
//! start at column 0. The scanner only has to know which column-0 lines are
//! *not* keys: comments, document markers, `- ` entries of a sequence that is
//! the value of the key above, and lines inside a multi-line quoted scalar or
//! flow collection. Block scalars (`|`, `>`) are tracked so that comment-like
//! lines inside them are not mistaken for comments.
//!
//! [`splice_status_checked`] re-parses the result and refuses any splice that
//! would change a value other than `status`, so a file the scanner misreads is
//! never damaged.

use std::ops::Range;

use serde_yaml::{Mapping, Value};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the spec file is not valid YAML, so its status cannot be spliced in safely: {0}")]
    Unparsable(#[source] serde_yaml::Error),
    #[error("the spec file's top level is not a YAML mapping, so it has no place for status")]
    NotAMapping,
    #[error("the status to write is not valid YAML: {0}")]
    BadStatus(#[source] serde_yaml::Error),
    #[error("splicing the status in would change {what}; the file is left as it is")]
    WouldChange { what: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Where the top-level `status:` block is: from the start of the `status:`
/// line to the start of the next top-level line (or the end of the first
/// document, or EOF). Comment and blank lines directly before that next line
/// (at any indentation, unless they are inside a block scalar) belong to it,
/// not to status, so a user's comment above the next key (or at
/// the end of the file) survives a status rewrite. `None` when the text has no
/// top-level `status` key.
pub fn find_status(text: &str) -> Option<Range<usize>> {
    let (lines, _) = classify(text);
    let doc_end = first_doc_end(&lines);
    let first_doc = &lines[..doc_end.unwrap_or(lines.len())];
    let s = first_doc
        .iter()
        .position(|l| l.kind == Kind::Top { status: true })?;
    // The next line that starts another top-level node or ends the document.
    let mut b = lines[s + 1..]
        .iter()
        .position(|l| matches!(l.kind, Kind::Top { .. } | Kind::DocStart | Kind::DocEnd))
        .map_or(lines.len(), |p| s + 1 + p);
    while b > s + 1 && lines[b - 1].kind == Kind::Trivia {
        b -= 1;
    }
    let end = lines.get(b).map_or(text.len(), |l| l.start);
    Some(lines[s].start..end)
}

/// The text with the status block replaced by `status_yaml` (a YAML mapping
/// body as serde_yaml emits it, without a `status:` line; it is indented by
/// two spaces under one), appended at the end of the document when the text
/// has no status, or removed when `status_yaml` is `None`. Every other byte is
/// kept; the new block uses the file's line ending (CRLF when the file does).
pub fn splice_status(text: &str, status_yaml: Option<&str>) -> String {
    let eol = line_ending(text);
    let block = status_yaml.map(|body| render_block(body, eol));
    let (lines, _) = classify(text);
    if let Some(r) = find_status(text) {
        let block = block.unwrap_or_default();
        // The comment and blank lines between the status block and the next
        // key. Kept after the block, unless a block scalar left open at the
        // end of the new status would swallow them: then they go before it.
        let run_end = lines
            .iter()
            .filter(|l| l.start >= r.end)
            .find(|l| l.kind != Kind::Trivia)
            .map_or(text.len(), |l| l.start);
        let run = &text[r.end..run_end];
        let mut out = String::with_capacity(text.len() + block.len());
        out.push_str(&text[..r.start]);
        if swallows(&block, run) {
            out.push_str(run);
            out.push_str(&block);
        } else {
            out.push_str(&block);
            out.push_str(run);
        }
        out.push_str(&text[run_end..]);
        return out;
    }
    let Some(block) = block else {
        return text.to_string();
    };
    let mut out = String::with_capacity(text.len() + block.len() + eol.len());
    match first_doc_end(&lines) {
        // Insert before `...` (or a second `---`) so status stays in the
        // first document; the marker starts a line, so no newline is needed.
        Some(i) => {
            let at = lines[i].start;
            out.push_str(&text[..at]);
            out.push_str(&block);
            out.push_str(&text[at..]);
        }
        None => {
            out.push_str(text);
            if !text.is_empty() && !text.ends_with('\n') {
                out.push_str(eol);
            }
            out.push_str(&block);
        }
    }
    out
}

/// The text without its status block: what the controller compares to tell a
/// user's edit from its own status write. A missing final newline is added,
/// because appending a status adds one and that is not a user edit.
pub fn without_status(text: &str) -> String {
    let mut out = match find_status(text) {
        Some(r) => {
            let mut s = String::with_capacity(text.len() - r.len());
            s.push_str(&text[..r.start]);
            s.push_str(&text[r.end..]);
            s
        }
        None => text.to_string(),
    };
    if !out.is_empty() && !out.ends_with('\n') {
        out.push_str(line_ending(text));
    }
    out
}

/// [`splice_status`], then a check that the result parses, that its `status`
/// is what was asked for, and that every other top-level value is unchanged.
/// An error means: do not write this file (keep the status in the state
/// directory instead).
pub fn splice_status_checked(text: &str, status_yaml: Option<&str>) -> Result<String> {
    let before = top_mapping(text)?;
    let want_status = match status_yaml {
        Some(body) => Some(serde_yaml::from_str::<Value>(body).map_err(Error::BadStatus)?),
        None => None,
    };
    let out = splice_status(text, status_yaml);
    let after = top_mapping(&out).map_err(|e| Error::WouldChange {
        what: format!("the file into something that does not parse ({e})"),
    })?;
    let status_key = Value::String("status".into());
    if after.get(&status_key) != want_status.as_ref() {
        return Err(Error::WouldChange {
            what: "the status into something other than what was written".into(),
        });
    }
    let others = |m: &Mapping| -> Vec<(Value, Value)> {
        m.iter()
            .filter(|(k, _)| **k != status_key)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let (b, a) = (others(&before), others(&after));
    if b.len() != a.len() {
        return Err(Error::WouldChange {
            what: "the set of top-level keys".into(),
        });
    }
    for (k, v) in &b {
        if after.get(k) != Some(v) {
            return Err(Error::WouldChange {
                what: format!("the value of top-level key {}", key_name(k)),
            });
        }
    }
    Ok(out)
}

fn key_name(k: &Value) -> String {
    match k {
        Value::String(s) => format!("`{s}`"),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim_end().to_string())
            .unwrap_or_else(|_| "(unprintable)".into()),
    }
}

fn top_mapping(text: &str) -> Result<Mapping> {
    match serde_yaml::from_str::<Value>(text).map_err(Error::Unparsable)? {
        Value::Mapping(m) => Ok(m),
        // An empty document parses as null: a file with no keys yet.
        Value::Null => Ok(Mapping::new()),
        _ => Err(Error::NotAMapping),
    }
}

/// The file's line ending, judged by its first line.
fn line_ending(text: &str) -> &'static str {
    match text.find('\n') {
        Some(i) if i > 0 && text.as_bytes()[i - 1] == b'\r' => "\r\n",
        _ => "\n",
    }
}

/// `status:` plus the body indented by two spaces; a one-line flow body such
/// as `{}` stays on the `status:` line.
fn render_block(body: &str, eol: &str) -> String {
    let body = body.strip_prefix("---\n").unwrap_or(body);
    let lines: Vec<&str> = body.lines().collect();
    match lines.as_slice() {
        [] => format!("status:{eol}"),
        [one] if one.starts_with('{') || one.starts_with('[') || *one == "null" || *one == "~" => {
            format!("status: {one}{eol}")
        }
        _ => {
            let mut out = String::with_capacity(body.len() + 3 * lines.len() + 8);
            out.push_str("status:");
            out.push_str(eol);
            for l in lines {
                // Empty lines stay empty: inside a block scalar they mean the
                // same, and trailing spaces would be noise.
                if !l.is_empty() {
                    out.push_str("  ");
                    out.push_str(l);
                }
                out.push_str(eol);
            }
            out
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A line starting a node of the top-level mapping at column 0.
    Top { status: bool },
    /// `---`
    DocStart,
    /// `...`
    DocEnd,
    /// Blank or comment-only, outside any scalar: it may belong to the next key.
    Trivia,
    /// Everything else: indented lines, column-0 continuations, scalar content.
    Content,
}

struct Line {
    start: usize,
    kind: Kind,
}

/// Index of the line that ends the first document: `...`, or a `---` after
/// the first document's content.
fn first_doc_end(lines: &[Line]) -> Option<usize> {
    let mut seen_content = false;
    for (i, l) in lines.iter().enumerate() {
        match l.kind {
            Kind::DocEnd => return Some(i),
            Kind::DocStart if seen_content => return Some(i),
            Kind::Top { .. } | Kind::Content => seen_content = true,
            Kind::DocStart | Kind::Trivia => {}
        }
    }
    None
}

/// A block scalar being read: lines indented deeper than `parent` (and blank
/// lines) are its content.
struct Block {
    parent: usize,
    /// `+` chomping: trailing blank lines are part of the value.
    keep: bool,
}

/// What carries over from one line to the next.
#[derive(Default)]
struct Carry {
    quote: Option<u8>,
    flow: usize,
    block: Option<Block>,
}

fn classify(text: &str) -> (Vec<Line>, Carry) {
    let mut lines = Vec::new();
    let mut carry = Carry::default();
    let mut pos = 0;
    while pos < text.len() {
        let next = text[pos..].find('\n').map_or(text.len(), |i| pos + i + 1);
        let mut start = pos;
        // A byte order mark is not part of the first line's content.
        if pos == 0 && text.starts_with('\u{feff}') {
            start = '\u{feff}'.len_utf8();
        }
        let raw = &text[start..next];
        let content = raw.strip_suffix('\n').unwrap_or(raw);
        let content = content.strip_suffix('\r').unwrap_or(content);
        let kind = classify_line(content.as_bytes(), &mut carry);
        lines.push(Line { start, kind });
        pos = next;
    }
    (lines, carry)
}

/// Whether `run` (comment and blank lines) placed right after `block` would
/// become content of a block scalar left open at the block's end.
fn swallows(block: &str, run: &str) -> bool {
    let Some(open) = classify(block).1.block else {
        return false;
    };
    for line in run.split_inclusive('\n') {
        let line = line.trim_end_matches(['\n', '\r']).as_bytes();
        if is_blank(line) {
            if open.keep {
                return true;
            }
            continue;
        }
        return indent_of(line) > open.parent;
    }
    false
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|c| matches!(c, b' ' | b'\t'))
}

fn indent_of(line: &[u8]) -> usize {
    line.iter().take_while(|c| **c == b' ').count()
}

/// `line` begins with `marker` followed by whitespace or the end of the line.
fn starts_with_indicator(line: &[u8], marker: &[u8]) -> bool {
    line.starts_with(marker) && matches!(line.get(marker.len()), None | Some(b' ' | b'\t'))
}

fn classify_line(line: &[u8], carry: &mut Carry) -> Kind {
    if let Some(block) = &carry.block {
        if is_blank(line) {
            return if block.keep {
                Kind::Content
            } else {
                Kind::Trivia
            };
        }
        if indent_of(line) > block.parent {
            return Kind::Content;
        }
        carry.block = None;
    }
    if carry.quote.is_some() || carry.flow > 0 {
        scan(line, carry);
        return Kind::Content;
    }
    if is_blank(line) {
        return Kind::Trivia;
    }
    let indent = indent_of(line);
    if line[indent] == b'#' {
        return Kind::Trivia;
    }
    if indent > 0 || line[0] == b'\t' {
        scan(line, carry);
        return Kind::Content;
    }
    if starts_with_indicator(line, b"---") {
        scan(&line[3..], carry);
        return Kind::DocStart;
    }
    if starts_with_indicator(line, b"...") {
        return Kind::DocEnd;
    }
    scan(line, carry);
    // A sequence entry or an explicit value at column 0 continues the node
    // of the key above it.
    if starts_with_indicator(line, b"-") || starts_with_indicator(line, b":") {
        return Kind::Content;
    }
    Kind::Top {
        status: is_status_key(line),
    }
}

fn is_status_key(line: &[u8]) -> bool {
    let rest = [&b"status"[..], b"\"status\"", b"'status'"]
        .iter()
        .find_map(|k| line.strip_prefix(*k));
    let Some(rest) = rest else {
        return false;
    };
    let rest = &rest[rest
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t'))
        .count()..];
    starts_with_indicator(rest, b":")
}

/// Reads one line's syntax far enough to know what it leaves open: a quoted
/// scalar, a flow collection, or a block scalar whose content follows.
fn scan(line: &[u8], carry: &mut Carry) {
    let n = line.len();
    let ws = |i: usize| matches!(line.get(i), None | Some(b' ' | b'\t'));
    // True where a new node may begin, so that a quote, bracket or `|` is
    // syntax rather than part of a plain scalar.
    let mut at_start = true;
    // Column of the node a block scalar on this line would belong to.
    let mut parent = indent_of(line).saturating_sub(1);
    let mut token_col = 0;
    let mut i = 0;
    while i < n {
        let c = line[i];
        if let Some(q) = carry.quote {
            if q == b'"' && c == b'\\' {
                i += 2;
                continue;
            }
            if c == q {
                if q == b'\'' && line.get(i + 1) == Some(&b'\'') {
                    i += 2;
                    continue;
                }
                carry.quote = None;
            }
            i += 1;
            continue;
        }
        let in_flow = carry.flow > 0;
        match c {
            b' ' | b'\t' => {}
            b'#' if i == 0 || ws(i - 1) => return,
            b'-' | b'?' if at_start && ws(i + 1) => parent = i,
            b':' if ws(i + 1)
                || (in_flow
                    && matches!(line.get(i + 1), Some(b',' | b'[' | b']' | b'{' | b'}'))) =>
            {
                if !in_flow {
                    parent = token_col;
                }
                at_start = true;
            }
            b',' if in_flow => at_start = true,
            b'[' | b'{' if at_start || in_flow => {
                carry.flow += 1;
                at_start = true;
            }
            b']' | b'}' if in_flow => {
                carry.flow -= 1;
                at_start = false;
            }
            b'"' | b'\'' if at_start => {
                carry.quote = Some(c);
                token_col = i;
                at_start = false;
            }
            b'|' | b'>' if at_start && !in_flow => {
                if let Some(keep) = block_header(&line[i + 1..]) {
                    carry.block = Some(Block { parent, keep });
                    return;
                }
                at_start = false;
            }
            // Anchors and tags come before the node they name.
            b'&' | b'!' if at_start => {
                while i + 1 < n && !ws(i + 1) {
                    i += 1;
                }
            }
            _ => {
                if at_start {
                    token_col = i;
                }
                at_start = false;
            }
        }
        i += 1;
    }
}

/// The rest of a block scalar header after `|` or `>`: indentation and
/// chomping indicators, then only whitespace or a comment. `Some(keep)` when
/// it is one.
fn block_header(rest: &[u8]) -> Option<bool> {
    let ind = rest
        .iter()
        .take_while(|c| matches!(c, b'1'..=b'9' | b'+' | b'-'))
        .count();
    if ind > 2 {
        return None;
    }
    let tail = &rest[ind..];
    let after_ws = &tail[tail
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t'))
        .count()..];
    let tail_ok = tail.is_empty()
        || (after_ws.len() < tail.len() && (after_ws.is_empty() || after_ws[0] == b'#'));
    tail_ok.then(|| rest[..ind].contains(&b'+'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS_A: &str = "observedSpecHash: sha256:abc\nphase: Ready\nconditions:\n- type: Ready\n  status: 'True'\n  reason: Healthy\n";
    const STATUS_B: &str =
        "phase: Degraded\nmessage: |-\n  line one\n  # not a comment\n\n  line four\n";

    fn parse(text: &str) -> Mapping {
        match serde_yaml::from_str::<Value>(text).unwrap() {
            Value::Mapping(m) => m,
            Value::Null => Mapping::new(),
            other => panic!("not a mapping: {other:?}"),
        }
    }

    /// The result parses, its status is `body`, and every other top-level
    /// value equals the original's.
    fn assert_spliced(original: &str, spliced: &str, body: Option<&str>) {
        let before = parse(original);
        let after = parse(spliced);
        let key = Value::String("status".into());
        let want = body.map(|b| serde_yaml::from_str::<Value>(b).unwrap());
        assert_eq!(after.get(&key), want.as_ref(), "status of:\n{spliced}");
        let keys =
            |m: &Mapping| -> Vec<Value> { m.keys().filter(|k| **k != key).cloned().collect() };
        assert_eq!(
            keys(&before),
            keys(&after),
            "top-level keys and their order:\n{spliced}"
        );
        for k in keys(&before) {
            assert_eq!(
                before.get(&k),
                after.get(&k),
                "value of {k:?} in:\n{spliced}"
            );
        }
    }

    const LAST: &str = "\
# A mirror registry.
apiVersion: mirror-registry.io/v1alpha1   # inline comment
kind: MirrorRegistry
metadata:
  name: quay
spec:
  hostname: \"mirror.example.org\"
  port: 8443
  # a full-line comment inside spec
  storage: {size: '10Gi'}
status:
  phase: Pending
  message: old
";

    #[test]
    fn replaces_last_status_and_keeps_every_other_byte() {
        let out = splice_status(LAST, Some(STATUS_A));
        let prefix = &LAST[..LAST.find("status:\n").unwrap()];
        assert!(out.starts_with(prefix), "{out}");
        assert_eq!(
            &out[prefix.len()..],
            format!("status:\n{}", indent2(STATUS_A))
        );
        assert_spliced(LAST, &out, Some(STATUS_A));
    }

    fn indent2(s: &str) -> String {
        s.lines()
            .map(|l| {
                if l.is_empty() {
                    "\n".to_string()
                } else {
                    format!("  {l}\n")
                }
            })
            .collect()
    }

    #[test]
    fn status_first_and_in_the_middle() {
        let first =
            "status: {phase: Pending}\napiVersion: v1 # c\n\n# about kind\nkind: MirrorRegistry\n";
        let out = splice_status(first, Some(STATUS_A));
        assert_eq!(
            out,
            format!(
                "status:\n{}apiVersion: v1 # c\n\n# about kind\nkind: MirrorRegistry\n",
                indent2(STATUS_A)
            )
        );
        assert_spliced(first, &out, Some(STATUS_A));

        let middle = "a: 1\nstatus:\n  phase: x\n  # trailing status comment\n\n# about b\nb: 'q'   # kept\n";
        let out = splice_status(middle, Some(STATUS_B));
        assert_eq!(
            out,
            format!(
                "a: 1\nstatus:\n{}  # trailing status comment\n\n# about b\nb: 'q'   # kept\n",
                indent2(STATUS_B)
            )
        );
        assert_spliced(middle, &out, Some(STATUS_B));
    }

    #[test]
    fn flow_forms_on_one_line() {
        for form in [
            "status: {}",
            "status: null",
            "status: ~",
            "status:",
            "status: {} # c",
            "\"status\": {}",
            "'status' : {a: 1}",
        ] {
            let text = format!("a: 1\n{form}\nb: 2\n");
            let r = find_status(&text).unwrap();
            assert_eq!(&text[r], format!("{form}\n"));
            let out = splice_status(&text, Some(STATUS_A));
            assert_spliced(&text, &out, Some(STATUS_A));
        }
        // Emitting an empty status keeps it on one line.
        assert_eq!(splice_status("a: 1\n", Some("{}\n")), "a: 1\nstatus: {}\n");
    }

    #[test]
    fn idempotent() {
        for text in [
            LAST,
            "a: 1\n",
            "a: 1",
            "status: x\na: 2\n",
            "a: 1\r\nb: 2\r\n",
        ] {
            let once = splice_status(text, Some(STATUS_B));
            let twice = splice_status(&once, Some(STATUS_B));
            assert_eq!(once, twice);
            let other = splice_status(&once, Some(STATUS_A));
            assert_eq!(splice_status(&other, Some(STATUS_B)), once);
        }
    }

    #[test]
    fn removes_status() {
        assert_eq!(
            splice_status(LAST, None),
            &LAST[..LAST.find("status:\n").unwrap()]
        );
        assert_eq!(
            splice_status("a: 1\nstatus: {}\n# c\nb: 2\n", None),
            "a: 1\n# c\nb: 2\n"
        );
        assert_eq!(splice_status("a: 1\n", None), "a: 1\n");
    }

    #[test]
    fn appends_when_absent() {
        assert_eq!(
            splice_status("a: 1\n# end\n", Some("phase: Ready\n")),
            "a: 1\n# end\nstatus:\n  phase: Ready\n"
        );
        assert_eq!(
            splice_status("", Some("phase: Ready\n")),
            "status:\n  phase: Ready\n"
        );
        assert_eq!(
            splice_status("a: 1", Some("phase: Ready\n")),
            "a: 1\nstatus:\n  phase: Ready\n"
        );
    }

    #[test]
    fn crlf_is_kept() {
        let text = "a: 1\r\nstatus:\r\n  phase: x\r\n# c\r\nb: \"2\"\r\n";
        let out = splice_status(text, Some("phase: Ready\nhealthy: true\n"));
        assert_eq!(
            out,
            "a: 1\r\nstatus:\r\n  phase: Ready\r\n  healthy: true\r\n# c\r\nb: \"2\"\r\n"
        );
        assert_spliced(text, &out, Some("phase: Ready\nhealthy: true\n"));
        let appended = splice_status("a: 1\r\nb: 2", Some("phase: Ready\n"));
        assert_eq!(appended, "a: 1\r\nb: 2\r\nstatus:\r\n  phase: Ready\r\n");
        assert_eq!(without_status(&appended), without_status("a: 1\r\nb: 2"));
    }

    #[test]
    fn no_trailing_newline() {
        let text = "a: 1\nstatus:\n  phase: x";
        assert_eq!(find_status(text), Some(5..text.len()));
        let out = splice_status(text, Some("phase: Ready\n"));
        assert_eq!(out, "a: 1\nstatus:\n  phase: Ready\n");
        assert_eq!(splice_status(text, None), "a: 1\n");
        let text = "status: {}\nb: 2";
        assert_eq!(
            splice_status(text, Some("phase: Ready\n")),
            "status:\n  phase: Ready\nb: 2"
        );
    }

    #[test]
    fn document_markers() {
        let text = "---\na: 1\nstatus: {}\n...\n";
        assert_eq!(
            splice_status(text, Some("phase: Ready\n")),
            "---\na: 1\nstatus:\n  phase: Ready\n...\n"
        );
        let text = "---\na: 1\n...\n";
        let out = splice_status(text, Some("phase: Ready\n"));
        assert_eq!(out, "---\na: 1\nstatus:\n  phase: Ready\n...\n");
        assert_spliced(text, &out, Some("phase: Ready\n"));
        assert_eq!(splice_status(&out, None), text);
        let text = "--- # start\nstatus: {}\n";
        assert_eq!(splice_status(text, None), "--- # start\n");
    }

    #[test]
    fn block_scalar_mentioning_status_is_not_matched() {
        let text = "script: |\n  status: not this\n  echo hi\nnote: >-\n  status: nor this\n";
        assert_eq!(find_status(text), None);
        let out = splice_status(text, Some("phase: Ready\n"));
        assert_eq!(out, format!("{text}status:\n  phase: Ready\n"));
        assert_spliced(text, &out, Some("phase: Ready\n"));
        // A status whose value holds a block scalar with comment-like and blank lines.
        let text = "status:\n  msg: |\n    a\n    # b\n\n    c\n  # real comment\nspec: 1\n";
        let r = find_status(text).unwrap();
        assert_eq!(&text[r], "status:\n  msg: |\n    a\n    # b\n\n    c\n");
    }

    #[test]
    fn nested_status_is_not_matched() {
        for text in [
            "spec: {status: x}\n",
            "spec:\n  status: x\n",
            "spec:\n- status: x\n",
            "spec: [a,\nstatus: x]\n",
            "spec: \"a\nstatus: x\"\n",
            "spec: 'it''s\nstatus: x'\n",
            "# status: x\n",
            "statuses: x\n",
            "status_x: 1\n",
        ] {
            assert_eq!(find_status(text), None, "{text:?}");
            let out = splice_status(text, Some("phase: Ready\n"));
            assert_spliced(text, &out, Some("phase: Ready\n"));
        }
    }

    #[test]
    fn column_zero_sequence_belongs_to_its_key() {
        let text = "status:\n- a\n- b\nspec:\n- c\n";
        assert_eq!(
            splice_status(text, Some("phase: Ready\n")),
            "status:\n  phase: Ready\nspec:\n- c\n"
        );
        let text = "a:\n- status: x\n";
        assert_eq!(find_status(text), None);
    }

    #[test]
    fn keep_chomped_block_keeps_its_blank_lines() {
        let body = "msg: |+\n  text\n\n";
        let text = splice_status("a: 1\nb: 2\n", Some(body));
        let text = splice_status(&text, Some(body));
        // Move status to the middle, where trailing blank lines matter.
        let middle = format!("a: 1\n{}b: 2\n", splice_status("", Some(body)));
        let out = splice_status(&middle, Some(body));
        assert_eq!(out, middle);
        assert_spliced("a: 1\nb: 2\n", &out, Some(body));
        assert_spliced("a: 1\nb: 2\n", &text, Some(body));
    }

    #[test]
    fn byte_order_mark_is_kept() {
        let text = "\u{feff}status: {}\na: 1\n";
        assert_eq!(splice_status(text, None), "\u{feff}a: 1\n");
    }

    #[test]
    fn checked_splice_refuses_what_it_cannot_do_safely() {
        assert!(splice_status_checked(LAST, Some(STATUS_A)).is_ok());
        assert!(splice_status_checked(LAST, None).is_ok());
        assert!(matches!(
            splice_status_checked("a: [1,\n", Some(STATUS_A)),
            Err(Error::Unparsable(_))
        ));
        assert!(matches!(
            splice_status_checked("- a\n- b\n", Some(STATUS_A)),
            Err(Error::NotAMapping)
        ));
        // A one-line flow mapping document has no block keys to splice into.
        assert!(matches!(
            splice_status_checked("{a: 1, status: x}\n", Some(STATUS_A)),
            Err(Error::WouldChange { .. })
        ));
        assert!(matches!(
            splice_status_checked("a: 1\n", Some("a: [")),
            Err(Error::BadStatus(_))
        ));
    }

    const SPECS: &[&str] = &[
        LAST,
        "",
        "a: 1",
        "a: 1\n",
        "# only a comment\n",
        "---\napiVersion: v1\nkind: MirrorRegistry\n...\n",
        "status: {}\n",
        "status:\n  phase: Ready\n",
        "status: {phase: Ready}  # mine\nspec:\n  x: 1\n",
        "apiVersion: v1\nstatus:\n  phase: Ready\n\n\n# comment for spec\nspec:\n  x: [1, 2,\n    3]\n",
        "a: 1\r\nstatus:\r\n  b: 2\r\nc: 3\r\n",
        "a: 1\r\nc: 3",
        "script: |\n  status: no\n  # no\n\nafter: 1\n",
        "folded: >\n  status: no\n\n",
        "list:\n- 1\n- status: no\nstatus: null\n",
        "'quoted': \"with # hash\"\n\"status\": 'x'\ntail: end   # c\n",
        "anchors: &a {x: 1}\nref: *a\nstatus: ~\n",
        "multi: \"line one\n  line two\"\nplain: multi\n  word\n",
        "empty:\nstatus:\n# c\n",
        "k: v\n# trailing comment\n\n",
        "status:\n  a: 1\n      # deep comment after status\n\nspec: 1\n",
        "status: x\n\n\nspec: 1\n",
        "status: x\n\n\n",
        "status: x\n    # deep comment at the end\n",
    ];

    const BODIES: &[Option<&str>] = &[
        None,
        Some("{}\n"),
        Some("phase: Ready\n"),
        Some(STATUS_A),
        Some(STATUS_B),
        Some("msg: |+\n  kept\n\n\nphase: Ready\n"),
        Some("msg: |+\n  kept\n\n"),
        Some("msg: |2-\n    indented first\n  then less\n"),
        Some("a: 'status: no'\nb: \"# no\"\n"),
    ];

    /// Bodies as serde_yaml really emits them, with strings that need
    /// quoting, block scalars and trailing newlines.
    fn emitted_bodies() -> Vec<String> {
        let strings = [
            "",
            "plain",
            "True",
            "null",
            "- not a list",
            ": colon",
            "# hash",
            "quote ' and \" both",
            "two\nlines",
            "trailing newline\n",
            "kept newlines\n\n\n",
            "  leading spaces\nthen not",
            "status: nested\n---\n...\n",
            "tab\there, unicode \u{e9}\u{2713}",
        ];
        strings
            .iter()
            .map(|s| {
                let mut cond = Mapping::new();
                cond.insert("type".into(), "Ready".into());
                cond.insert("message".into(), (*s).into());
                let mut m = Mapping::new();
                m.insert("phase".into(), "Ready".into());
                m.insert(
                    "conditions".into(),
                    Value::Sequence(vec![Value::Mapping(cond)]),
                );
                m.insert("message".into(), (*s).into());
                serde_yaml::to_string(&m).unwrap()
            })
            .collect()
    }

    #[test]
    fn emitted_status_round_trips() {
        for body in emitted_bodies() {
            for text in SPECS {
                let out = splice_status(text, Some(&body));
                assert_eq!(without_status(&out), without_status(text), "{out:?}");
                assert_eq!(splice_status(&out, Some(&body)), out);
                assert_spliced(text, &out, Some(&body));
            }
        }
    }

    #[test]
    fn splice_keeps_the_rest_for_every_spec_and_body() {
        for text in SPECS {
            for body in BODIES {
                let out = splice_status(text, *body);
                assert_eq!(
                    without_status(&out),
                    without_status(text),
                    "text {text:?} body {body:?} gave {out:?}"
                );
                assert_eq!(splice_status(&out, *body), out, "idempotent: {out:?}");
                assert_spliced(text, &out, *body);
                assert_eq!(
                    splice_status_checked(text, *body).unwrap(),
                    out,
                    "checked splice of {text:?} with {body:?}"
                );
                // Chains of rewrites end where a single one does.
                for other in BODIES {
                    let chained = splice_status(&splice_status(text, *other), *body);
                    assert_eq!(without_status(&chained), without_status(text));
                    assert_spliced(text, &chained, *body);
                }
            }
        }
    }
}
