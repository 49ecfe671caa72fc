//! quay-standin: a STAND-IN for Red Hat Quay, for tests only. It is not Quay
//! and serves no registry.
//!
//! The real Quay image cannot be pulled on an offline test host, so
//! the end-to-end test of the quay engine runs this instead. It reads what
//! Quay reads, where Quay reads it, and answers the two endpoints the
//! controller uses, so the test can check what the controller set up and
//! sent:
//!
//! - `/quay-registry/conf/stack/`: `config.yaml`, `ssl.cert` and `ssl.key`;
//!   HTTPS on port 8443 with that pair, as Quay does.
//! - At start, the SQLite file config.yaml's `DB_URI` names is created (mode
//!   0644) unless it exists, as Quay's migration does before anything
//!   serves; when it cannot be, the stand-in exits non-zero, as Quay's
//!   entrypoint does.
//! - `GET /health/instance`: what Quay 3.12 answers (its LocalHealthCheck
//!   lists six services, never `redis` or `storage`): `auth` true when both
//!   secret keys are set; `database` when `DB_URI` is `/sqlite`'s file and
//!   that file is writable; `disk_space` and `service_key` true;
//!   `registry_gunicorn` and `web_gunicorn` when `localhost:8443` accepts a
//!   connection, or `localhost:PORT` when SERVER_HOSTNAME is
//!   `localhost:PORT` (Quay checks its own workers there, inside its pod).
//!   200 when all are true, else 503.
//! - `GET /standin/checks`: NOT Quay's; what Quay's health never says:
//!   `redis` true only when every Redis block of config.yaml authenticates
//!   (AUTH, then PING), `storage` when `/datastorage` is writable and
//!   config.yaml points at it.
//! - `POST /api/v1/user/initialize`, as Quay 3.12's `endpoints/web.py`: 404
//!   unless FEATURE_USER_INITIALIZE; 400 `{"message": ...}` when
//!   AUTHENTICATION_TYPE is not Database, when a user exists ("Cannot
//!   initialize user in a non-empty database"), or for a password shorter
//!   than 8 or holding whitespace; 500 without a username. The first valid
//!   call creates the user (200 with `access_token` when asked, `email`,
//!   `encrypted_password`, `username`). Users are kept in
//!   `/sqlite/standin-users.json`.
//! - Every request (method, path, body) is appended as one JSON line to
//!   `/sqlite/requests.jsonl` (mode 0600), so a test reads it through the
//!   volume. Bodies hold passwords: that file is test evidence, nothing more.
//!
//! Environment (for its own tests): `QUAY_STANDIN_CONFIG_DIR`,
//! `QUAY_STANDIN_SQLITE_DIR`, `QUAY_STANDIN_STORAGE_DIR`, `QUAY_STANDIN_LISTEN`.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("TLS set-up: {0}")]
    Tls(#[from] rustls::Error),
    #[error("listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, Error>;

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Where things are, as in Quay's image.
#[derive(Clone, Debug)]
struct Paths {
    config: PathBuf,
    sqlite: PathBuf,
    storage: PathBuf,
}

impl Paths {
    fn from_env() -> Paths {
        let var = |k: &str, d: &str| PathBuf::from(std::env::var_os(k).unwrap_or_else(|| d.into()));
        Paths {
            config: var("QUAY_STANDIN_CONFIG_DIR", "/quay-registry/conf/stack"),
            sqlite: var("QUAY_STANDIN_SQLITE_DIR", "/sqlite"),
            storage: var("QUAY_STANDIN_STORAGE_DIR", "/datastorage"),
        }
    }
    fn requests(&self) -> PathBuf {
        self.sqlite.join("requests.jsonl")
    }
    fn users(&self) -> PathBuf {
        self.sqlite.join("standin-users.json")
    }
}

/// A Redis block of config.yaml.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Redis {
    host: String,
    port: u16,
    password: Option<String>,
}

/// The parts of config.yaml the stand-in looks at.
#[derive(Clone, Debug, Default)]
struct Config {
    server_hostname: String,
    redis: Vec<(String, Option<Redis>)>,
    db_uri: Option<String>,
    authentication_type: Option<String>,
    storage_path: Option<String>,
    secret_key: bool,
    database_secret_key: bool,
    user_initialize: bool,
}

fn parse_config(path: &Path, text: &str) -> Result<Config> {
    let v: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| Error::Invalid {
        path: path.to_path_buf(),
        message: format!("not YAML: {e}"),
    })?;
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let redis = |k: &str| {
        let b = v.get(k)?;
        Some(Redis {
            host: b.get("host")?.as_str()?.to_string(),
            port: u16::try_from(b.get("port")?.as_u64()?).ok()?,
            password: b
                .get("password")
                .and_then(|p| p.as_str())
                .map(str::to_string),
        })
    };
    let storage_path = v
        .get("DISTRIBUTED_STORAGE_CONFIG")
        .and_then(|c| c.get("default"))
        .and_then(|d| d.as_sequence())
        .filter(|d| d.first().and_then(|x| x.as_str()) == Some("LocalStorage"))
        .and_then(|d| d.get(1))
        .and_then(|o| o.get("storage_path"))
        .and_then(|p| p.as_str())
        .map(str::to_string);
    Ok(Config {
        server_hostname: s("SERVER_HOSTNAME").unwrap_or_default(),
        redis: ["BUILDLOGS_REDIS", "USER_EVENTS_REDIS"]
            .iter()
            .map(|k| (k.to_string(), redis(k)))
            .collect(),
        db_uri: s("DB_URI"),
        authentication_type: s("AUTHENTICATION_TYPE"),
        storage_path,
        secret_key: s("SECRET_KEY").is_some_and(|x| !x.is_empty()),
        database_secret_key: s("DATABASE_SECRET_KEY").is_some_and(|x| !x.is_empty()),
        user_initialize: v.get("FEATURE_USER_INITIALIZE").and_then(|x| x.as_bool()) == Some(true),
    })
}

/// True when Redis at `r` accepts its password and answers PING.
fn redis_ok(r: &Redis) -> bool {
    let Ok(addrs) = (r.host.as_str(), r.port).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| redis_ok_at(a, r.password.as_deref()))
}

fn redis_ok_at(addr: SocketAddr, password: Option<&str>) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut req = Vec::new();
    if let Some(pw) = password {
        req.extend_from_slice(format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{pw}\r\n", pw.len()).as_bytes());
    }
    req.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
    if s.write_all(&req).is_err() {
        return false;
    }
    let mut r = BufReader::new(s);
    let mut line = String::new();
    if password.is_some() {
        if r.read_line(&mut line).is_err() || line != "+OK\r\n" {
            return false;
        }
        line.clear();
    }
    r.read_line(&mut line).is_ok() && line == "+PONG\r\n"
}

/// True when a file can be created in `dir`.
fn writable(dir: &Path) -> bool {
    let probe = dir.join(".standin-write-probe");
    let ok = fs::write(&probe, b"ok").is_ok();
    let _ = fs::remove_file(&probe);
    ok
}

/// The SQLite file `DB_URI` names, when it is one under `/sqlite`.
fn sqlite_file(cfg: &Config, paths: &Paths) -> Option<PathBuf> {
    let path = PathBuf::from(cfg.db_uri.as_deref()?.strip_prefix("sqlite:///")?);
    (path.parent() == Some(paths.sqlite.as_path())).then_some(path)
}

/// Creates the SQLite file at start, as Quay's migration does (0644 under
/// the container's umask); an existing one is kept.
fn create_database(cfg: &Config, paths: &Paths) -> Result<PathBuf> {
    let path = sqlite_file(cfg, paths).ok_or_else(|| Error::Invalid {
        path: paths.config.join("config.yaml"),
        message: format!(
            "DB_URI {:?} is not a SQLite file under {}",
            cfg.db_uri,
            paths.sqlite.display()
        ),
    })?;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(&path)
        .map_err(io("create the database", &path))?;
    Ok(path)
}

/// Where Quay checks its own gunicorn workers (`health/services.py`
/// `_compute_internal_endpoint`): `localhost:8443`, unless SERVER_HOSTNAME
/// is `localhost:PORT`.
fn self_check_port(server_hostname: &str) -> u16 {
    match server_hostname.split_once(':') {
        Some(("localhost", port)) => port.parse().unwrap_or(0),
        _ => 8443,
    }
}

/// True when something accepts a connection at `localhost:port`, resolved
/// through the container's /etc/hosts as Quay resolves it.
fn self_reachable(port: u16) -> bool {
    let Ok(addrs) = ("localhost", port).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
}

/// `/health/instance`: (status code, body).
fn health(cfg: &Config, paths: &Paths) -> (u16, Value) {
    let database =
        sqlite_file(cfg, paths).is_some_and(|f| OpenOptions::new().append(true).open(f).is_ok());
    let workers = self_reachable(self_check_port(&cfg.server_hostname));
    let services = json!({
        "auth": cfg.secret_key && cfg.database_secret_key,
        "database": database,
        "disk_space": true,
        "registry_gunicorn": workers,
        "service_key": true,
        "web_gunicorn": workers,
    });
    let all = services
        .as_object()
        .is_some_and(|m| m.values().all(|v| v == &Value::Bool(true)));
    let code = if all { 200 } else { 503 };
    (
        code,
        json!({"data": {"services": services}, "status_code": code}),
    )
}

/// `/standin/checks`: what Quay's health does not say.
fn checks(cfg: &Config, paths: &Paths) -> (u16, Value) {
    let redis = cfg
        .redis
        .iter()
        .all(|(_, r)| r.as_ref().is_some_and(redis_ok));
    let storage = cfg.storage_path.as_deref().map(Path::new) == Some(paths.storage.as_path())
        && writable(&paths.storage);
    (200, json!({"redis": redis, "storage": storage}))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut buf);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// How Quay's `user_initialize` answers a refusal.
fn message(code: u16, message: &str) -> (u16, Value) {
    (code, json!({ "message": message }))
}

fn quay_error(cfg: &Config, code: u16, message: &str) -> (u16, Value) {
    (
        code,
        json!({
            "detail": message,
            "error_message": message,
            "error_type": "invalid_request",
            "status": code,
            "title": "invalid_request",
            "type": format!("https://{}/api/v1/error/invalid_request", cfg.server_hostname),
        }),
    )
}

/// `POST /api/v1/user/initialize`.
fn initialize(cfg: &Config, paths: &Paths, body: &str, lock: &Mutex<()>) -> (u16, Value) {
    let _guard = lock.lock();
    if !cfg.user_initialize {
        return quay_error(cfg, 404, "not found");
    }
    if cfg.authentication_type.as_deref() != Some("Database") {
        return message(400, "Cannot initialize user in a non-database auth system");
    }
    let existing: Vec<Value> = fs::read(paths.users())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if !existing.is_empty() {
        return message(400, "Cannot initialize user in a non-empty database");
    }
    let Ok(req) = serde_json::from_str::<Value>(body) else {
        return message(500, "Internal Server Error");
    };
    let field = |k: &str| req.get(k).and_then(|v| v.as_str());
    let (Some(username), Some(password)) = (field("username"), field("password")) else {
        return message(500, "Internal Server Error");
    };
    // Quay requires no email while mail is off, as the original's config has it.
    let email = field("email").unwrap_or_default();
    if password.chars().count() < 8 || password.chars().any(char::is_whitespace) {
        return message(
            400,
            "Failed to initialize user: Invalid password, password must be at least 8 characters and contain no whitespace.",
        );
    }
    let users = json!([{"username": username, "email": email}]);
    let users_file = paths.users();
    if fs::write(&users_file, users.to_string()).is_err() {
        return quay_error(cfg, 500, "cannot write the user database");
    }
    let _ = fs::set_permissions(&users_file, fs::Permissions::from_mode(0o600));
    let mut out = json!({
        "email": email,
        "encrypted_password": random_hex(24),
        "username": username,
    });
    if req.get("access_token").and_then(|v| v.as_bool()) == Some(true) {
        out["access_token"] = Value::String(random_hex(20));
    }
    (200, out)
}

/// One HTTP request, as far as the stand-in cares.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    method: String,
    path: String,
    body: String,
}

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 1024 * 1024;

/// Reads one HTTP/1.1 request: head up to the blank line, then a body of
/// Content-Length bytes.
fn read_request(r: &mut impl Read) -> Option<Request> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > MAX_HEAD || r.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let len = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    if len > MAX_BODY {
        return None;
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

struct Server {
    cfg: Config,
    paths: Paths,
    log_lock: Mutex<()>,
    users_lock: Mutex<()>,
}

impl Server {
    fn record(&self, req: &Request) {
        let _guard = self.log_lock.lock();
        let line = json!({"method": req.method, "path": req.path, "body": req.body});
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(self.paths.requests());
        match file {
            Ok(mut f) => {
                let _ = writeln!(f, "{line}");
            }
            Err(e) => eprintln!(
                "quay-standin: cannot record to {}: {e}",
                self.paths.requests().display()
            ),
        }
    }

    fn route(&self, req: &Request) -> (u16, Value) {
        let path = req.path.split('?').next().unwrap_or_default();
        match (req.method.as_str(), path) {
            ("GET", "/health/instance") => health(&self.cfg, &self.paths),
            ("GET", "/standin/checks") => checks(&self.cfg, &self.paths),
            ("POST", "/api/v1/user/initialize") => {
                initialize(&self.cfg, &self.paths, &req.body, &self.users_lock)
            }
            (_, "/health/instance" | "/api/v1/user/initialize") => {
                quay_error(&self.cfg, 405, "method not allowed")
            }
            _ => quay_error(&self.cfg, 404, "not found: this is a stand-in for Quay"),
        }
    }

    fn serve(&self, tls: Arc<rustls::ServerConfig>, tcp: TcpStream) {
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = tcp.set_write_timeout(Some(Duration::from_secs(10)));
        let Ok(conn) = rustls::ServerConnection::new(tls) else {
            return;
        };
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        let Some(req) = read_request(&mut stream) else {
            return;
        };
        self.record(&req);
        let (code, body) = self.route(&req);
        let body = body.to_string();
        let resp = format!(
            "HTTP/1.1 {code} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            reason(code),
            body.len()
        );
        let _ = stream.write_all(resp.as_bytes());
        stream.conn.send_close_notify();
        let _ = stream.flush();
    }
}

fn tls_config(dir: &Path) -> Result<rustls::ServerConfig> {
    let cert_path = dir.join("ssl.cert");
    let key_path = dir.join("ssl.key");
    let cert_pem = fs::read(&cert_path).map_err(io("read", &cert_path))?;
    let key_pem = fs::read(&key_path).map_err(io("read", &key_path))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<std::result::Result<_, _>>()
        .map_err(io("parse", &cert_path))?;
    if certs.is_empty() {
        return Err(Error::Invalid {
            path: cert_path,
            message: "no certificate".into(),
        });
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(io("parse", &key_path))?
        .ok_or_else(|| Error::Invalid {
            path: key_path.clone(),
            message: "no private key".into(),
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?)
}

fn run() -> Result<()> {
    let paths = Paths::from_env();
    let config_path = paths.config.join("config.yaml");
    let text = fs::read_to_string(&config_path).map_err(io("read", &config_path))?;
    let cfg = parse_config(&config_path, &text)?;
    let tls = Arc::new(tls_config(&paths.config)?);
    let db = create_database(&cfg, &paths)?;
    eprintln!("quay-standin: database {}", db.display());
    let addr = std::env::var("QUAY_STANDIN_LISTEN").unwrap_or_else(|_| "0.0.0.0:8443".into());
    let listener = TcpListener::bind(&addr).map_err(|source| Error::Listen {
        addr: addr.clone(),
        source,
    })?;
    eprintln!(
        "quay-standin: a stand-in for Quay (tests only) serving https://{} on {addr}",
        cfg.server_hostname
    );
    let server = Arc::new(Server {
        cfg,
        paths,
        log_lock: Mutex::new(()),
        users_lock: Mutex::new(()),
    });
    for tcp in listener.incoming().flatten() {
        let (server, tls) = (server.clone(), tls.clone());
        std::thread::spawn(move || server.serve(tls, tcp));
    }
    Ok(())
}

fn main() -> ExitCode {
    // Quay's image takes a mode ("registry", "config", ...); only the
    // registry mode is stood in for.
    if let Some(mode) = std::env::args().nth(1).filter(|m| m != "registry") {
        eprintln!("quay-standin: mode {mode:?} is not supported; only \"registry\"");
        return ExitCode::from(2);
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quay-standin: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "SERVER_HOSTNAME: mirror.example.org:8443
AUTHENTICATION_TYPE: Database
BUILDLOGS_REDIS:
  host: localhost
  password: 'pw'
  port: 6379
USER_EVENTS_REDIS:
  host: localhost
  password: 'pw'
  port: 6379
DB_URI: sqlite:////sqlite/quay_sqlite.db
DISTRIBUTED_STORAGE_CONFIG:
  default:
    - LocalStorage
    - storage_path: /datastorage
SECRET_KEY: 'a'
DATABASE_SECRET_KEY: 'b'
FEATURE_USER_INITIALIZE: true
";

    fn lab() -> (tempfile::TempDir, Paths) {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            config: dir.path().join("conf"),
            sqlite: dir.path().join("sqlite"),
            storage: dir.path().join("datastorage"),
        };
        fs::create_dir_all(&paths.sqlite).unwrap();
        fs::create_dir_all(&paths.storage).unwrap();
        (dir, paths)
    }

    #[test]
    fn parses_the_parts_of_config_it_checks() {
        let c = parse_config(Path::new("config.yaml"), CONFIG).unwrap();
        assert_eq!(c.server_hostname, "mirror.example.org:8443");
        assert_eq!(c.redis.len(), 2);
        let r = c.redis[1].1.clone().unwrap();
        assert_eq!((r.host.as_str(), r.port), ("localhost", 6379));
        assert_eq!(r.password.as_deref(), Some("pw"));
        assert_eq!(c.storage_path.as_deref(), Some("/datastorage"));
        assert!(c.secret_key && c.database_secret_key && c.user_initialize);
    }

    #[test]
    fn initialize_once_then_non_empty_database() {
        let (_d, paths) = lab();
        let cfg = parse_config(Path::new("c"), CONFIG).unwrap();
        let lock = Mutex::new(());
        let body = r#"{"username":"init","password":"12345678","email":"init@example.org","access_token":true}"#;
        let (code, out) = initialize(&cfg, &paths, body, &lock);
        assert_eq!(code, 200, "{out}");
        assert_eq!(out["username"], "init");
        assert!(out["access_token"].as_str().is_some_and(|t| t.len() == 40));
        let (code, out) = initialize(&cfg, &paths, body, &lock);
        assert_eq!(code, 400);
        assert_eq!(
            out,
            json!({"message": "Cannot initialize user in a non-empty database"})
        );
    }

    #[test]
    fn initialize_refuses_short_passwords_and_creates_nothing() {
        let (_d, paths) = lab();
        let cfg = parse_config(Path::new("c"), CONFIG).unwrap();
        let lock = Mutex::new(());
        for pw in ["short", "has a space"] {
            let body = format!(r#"{{"username":"init","password":"{pw}"}}"#);
            let (code, out) = initialize(&cfg, &paths, &body, &lock);
            assert_eq!(code, 400);
            assert!(out["message"]
                .as_str()
                .unwrap()
                .starts_with("Failed to initialize user: Invalid password"));
        }
        assert_eq!(
            initialize(&cfg, &paths, r#"{"password":"12345678"}"#, &lock).0,
            500
        );
        assert!(!paths.users().exists());
        let ldap = parse_config(
            Path::new("c"),
            &CONFIG.replace("AUTHENTICATION_TYPE: Database", "AUTHENTICATION_TYPE: LDAP"),
        )
        .unwrap();
        let body = r#"{"username":"init","password":"12345678"}"#;
        assert_eq!(initialize(&ldap, &paths, body, &lock).0, 400);
        let off = parse_config(
            Path::new("c"),
            &CONFIG.replace(
                "FEATURE_USER_INITIALIZE: true",
                "FEATURE_USER_INITIALIZE: false",
            ),
        )
        .unwrap();
        assert_eq!(initialize(&off, &paths, body, &lock).0, 404);
        assert!(!paths.users().exists());
    }

    #[test]
    fn health_lists_what_quay_lists_and_reports_wrong_paths_truthfully() {
        let (_d, paths) = lab();
        // No Redis listens on port 1; the sqlite path differs from DB_URI's.
        let text = CONFIG.replace("port: 6379", "port: 1");
        let cfg = parse_config(Path::new("c"), &text).unwrap();
        assert!(create_database(&cfg, &paths).is_err());
        let (code, body) = health(&cfg, &paths);
        assert_eq!(code, 503);
        let s = body["data"]["services"].as_object().unwrap();
        let keys: Vec<&str> = s.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "auth",
                "database",
                "disk_space",
                "registry_gunicorn",
                "service_key",
                "web_gunicorn"
            ]
        );
        assert_eq!(s["database"], false);
        assert_eq!(s["auth"], true);
        assert_eq!(body["status_code"], 503);
        assert_eq!(checks(&cfg, &paths).1["redis"], false);
    }

    #[test]
    fn the_database_is_created_at_start_where_db_uri_says() {
        let (_d, paths) = lab();
        let text = CONFIG.replace(
            "sqlite:////sqlite/quay_sqlite.db",
            &format!("sqlite:///{}/quay_sqlite.db", paths.sqlite.display()),
        );
        let cfg = parse_config(Path::new("c"), &text).unwrap();
        let db = create_database(&cfg, &paths).unwrap();
        assert_eq!(db, paths.sqlite.join("quay_sqlite.db"));
        assert!(db.is_file());
        assert_eq!(health(&cfg, &paths).1["data"]["services"]["database"], true);
    }

    #[test]
    fn quay_checks_its_workers_at_8443_unless_named_localhost() {
        assert_eq!(self_check_port("mirror.example.org:8443"), 8443);
        assert_eq!(self_check_port("mirror.example.org:18443"), 8443);
        assert_eq!(self_check_port("localhost:18443"), 18443);
        assert_eq!(self_check_port("localhost"), 8443);
    }

    #[test]
    fn reads_a_request_with_its_body() {
        let raw = b"POST /api/v1/user/initialize HTTP/1.1\r\nHost: x\r\ncontent-length: 4\r\n\r\nabcdEXTRA";
        let req = read_request(&mut raw.as_slice()).unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/api/v1/user/initialize");
        assert_eq!(req.body, "abcd");
        assert!(read_request(&mut b"GET / HTTP/1.1\r\n".as_slice()).is_none());
    }
}
