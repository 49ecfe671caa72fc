//! A minimal HTTP/1.1 client for podman's libpod endpoints on its API socket.
//!
//! bollard speaks only the Docker-compatible API, which has no pods. These
//! few requests are small JSON exchanges, so one request per connection
//! (`Connection: close`) and a body read to the end is all that is needed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// libpod's API version prefix; podman 4.x and 5.x both answer it.
pub const API_PREFIX: &str = "/v4.0.0/libpod";

const TIMEOUT: Duration = Duration::from_secs(60);
/// Inspect and delete answers are a few KiB; refuse anything absurd.
const MAX_RESPONSE: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{method} {path} on {socket}: {source}")]
    Io {
        method: &'static str,
        path: String,
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{method} {path} on {socket}: no answer within {}s", TIMEOUT.as_secs())]
    Timeout {
        method: &'static str,
        path: String,
        socket: PathBuf,
    },
    #[error("{method} {path} on {socket}: malformed response: {message}")]
    Malformed {
        method: &'static str,
        path: String,
        socket: PathBuf,
        message: String,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// One HTTP response: status code and the (de-chunked) body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The error text of a libpod error body (`{"cause":…,"message":…}`),
    /// or the raw body.
    pub fn error_message(&self) -> String {
        #[derive(serde::Deserialize)]
        struct ErrorBody {
            message: String,
        }
        match serde_json::from_slice::<ErrorBody>(&self.body) {
            Ok(e) => e.message,
            Err(_) => String::from_utf8_lossy(&self.body).trim().to_string(),
        }
    }
}

/// Sends `method path` (path relative to [`API_PREFIX`], already encoded)
/// with a JSON body (empty: none) to the socket and returns the response.
pub async fn request(
    socket: &Path,
    method: &'static str,
    path: &str,
    body: &[u8],
) -> Result<Response> {
    let full = format!("{API_PREFIX}{path}");
    match tokio::time::timeout(TIMEOUT, exchange(socket, method, &full, body)).await {
        Ok(Ok(raw)) => parse(&raw).map_err(|message| Error::Malformed {
            method,
            path: full,
            socket: socket.to_path_buf(),
            message,
        }),
        Ok(Err(source)) => Err(Error::Io {
            method,
            path: full,
            socket: socket.to_path_buf(),
            source,
        }),
        Err(_) => Err(Error::Timeout {
            method,
            path: full,
            socket: socket.to_path_buf(),
        }),
    }
}

async fn exchange(
    socket: &Path,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<Vec<u8>> {
    let mut stream = UnixStream::connect(socket).await?;
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/json\r\n"
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: d\r\nUser-Agent: mirror-registry\r\n\
         Accept: application/json\r\n{content_type}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut raw = Vec::new();
    (&mut stream)
        .take(MAX_RESPONSE)
        .read_to_end(&mut raw)
        .await?;
    Ok(raw)
}

fn parse(raw: &[u8]) -> std::result::Result<Response, String> {
    let head_end = find(raw, b"\r\n\r\n").ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line '{status_line}'"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line '{status_line}'"))?;

    let mut chunked = false;
    let mut length: Option<usize> = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse()
                    .map_err(|_| format!("bad Content-Length '{value}'"))?,
            );
        }
    }

    let rest = &raw[head_end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)
            .ok_or_else(|| format!("body shorter than Content-Length {n}"))?
            .to_vec()
    } else {
        // Neither: the body runs until the server closed the connection.
        rest.to_vec()
    };
    Ok(Response { status, body })
}

fn dechunk(mut rest: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n").ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| "bad chunk size")?;
        // Chunk extensions (";name=value") are allowed and ignored.
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size '{size_text}'"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest.get(..size).ok_or("truncated chunk")?;
        body.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or("truncated chunk")?;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Percent-encodes one path segment (a pod or container name or id).
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_body() {
        let raw =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        let r = parse(raw).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"{}");
    }

    #[test]
    fn parses_chunked_body() {
        let raw = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n\
                    4;x=y\r\n{\"me\r\n10\r\nssage\":\"no pod\"}\r\n0\r\n\r\n";
        let r = parse(raw).unwrap();
        assert_eq!(r.status, 404);
        assert!(!r.is_success());
        assert_eq!(r.error_message(), "no pod");
    }

    #[test]
    fn body_until_close_without_length() {
        let r = parse(b"HTTP/1.0 500 Internal\r\n\r\nboom\n").unwrap();
        assert_eq!(r.status, 500);
        assert_eq!(r.error_message(), "boom");
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
    }

    #[test]
    fn encodes_path_segments() {
        assert_eq!(encode_segment("quay-pod"), "quay-pod");
        assert_eq!(encode_segment("a b/c?"), "a%20b%2Fc%3F");
    }
}
