//! The quay engine's own steps around the generic reconcile: its generated
//! secrets (before render writes them into files), the verdict on Quay's
//! `/health/instance`, and the initial user, created once through Quay's
//! API after Quay is healthy.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Error;
use crate::api::defaults::Resolved;
use crate::api::Engine;
use crate::host::credentials::Credentials;
use crate::host::{files, secrets};
use crate::naming;
use crate::render::Inputs;

/// The initial user's email, as the original installer sets it.
pub const INIT_EMAIL: &str = "init@quay.io";
pub const INITIALIZE_PATH: &str = "/api/v1/user/initialize";
/// Creating a user hashes its password and writes the database: give Quay
/// longer than a health probe.
const INITIALIZE_TIMEOUT: Duration = Duration::from_secs(30);

/// The secrets render needs for this registry, kept under its root (and
/// taken over from the original installer's config.yaml under the same root
/// on first use). `None` for engines that need none.
pub fn inputs(r: &Resolved) -> Result<Option<Inputs>, Error> {
    if r.engine != Engine::Quay {
        return Ok(None);
    }
    let original = naming::root::original_quay_config(&r.root);
    let adopt = original.is_file().then_some(original.as_path());
    let (kept, changed) = secrets::ensure_quay_secrets(&naming::root::secrets_dir(&r.root), adopt)?;
    if changed {
        match adopt {
            Some(p) => {
                tracing::info!(registry = %r.name, from = %p.display(), "Quay secrets kept, taken over from the original installer's config")
            }
            None => tracing::info!(registry = %r.name, "Quay secrets generated and kept"),
        }
    }
    Ok(Some(Inputs {
        quay: Some(kept),
        ..Inputs::default()
    }))
}

/// Judges Quay's `/health/instance`: healthy when it answers 200 and every
/// service it lists is true.
pub fn judge_health(url: &str, code: u16, body: &str) -> Result<String, String> {
    let v: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| format!("GET {url} answered {code} with a body that is not JSON: {e}"))?;
    let Some(services) = v.pointer("/data/services").and_then(|s| s.as_object()) else {
        return Err(format!("GET {url} answered {code} without data.services"));
    };
    if services.is_empty() {
        return Err(format!("GET {url} answered {code} listing no services"));
    }
    let down: Vec<&str> = services
        .iter()
        .filter(|(_, ok)| ok.as_bool() != Some(true))
        .map(|(name, _)| name.as_str())
        .collect();
    if !down.is_empty() {
        return Err(format!(
            "GET {url} answered {code}: not healthy: {}{}",
            down.join(", "),
            self_check_hint(url, &down)
        ));
    }
    if code != 200 {
        return Err(format!("GET {url} answered {code}"));
    }
    let all: Vec<&str> = services.keys().map(String::as_str).collect();
    Ok(format!(
        "GET {url} answered 200 over verified TLS; every service healthy: {}",
        all.join(", ")
    ))
}

/// Quay checks its own gunicorn workers at `https://localhost:8443/`, unless
/// SERVER_HOSTNAME is `localhost:PORT`: then at that port, inside its pod,
/// where nothing listens (the pod publishes PORT to 8443). Those checks
/// then never pass; say why, since nothing else will.
fn self_check_hint(url: &str, down: &[&str]) -> &'static str {
    let port = url
        .strip_prefix("https://localhost:")
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse::<u16>().ok());
    let workers = down
        .iter()
        .any(|s| *s == "registry_gunicorn" || *s == "web_gunicorn");
    match port {
        Some(p) if workers && p != crate::render::quay::CONTAINER_PORT => {
            " (with hostname localhost, Quay checks its workers at https://localhost:<port>/ inside its pod, where it listens on 8443 only: use port 8443 or the host's name)"
        }
        _ => "",
    }
}

/// What the marker file records.
#[derive(Serialize, Deserialize)]
struct Marker {
    username: String,
}

fn marked(path: &Path, username: &str) -> Result<bool, Error> {
    Ok(files::read_optional(path)?
        .and_then(|b| serde_yaml::from_slice::<Marker>(&b).ok())
        .is_some_and(|m| m.username == username))
}

/// How Quay answered the initialize call.
#[derive(Debug, PartialEq, Eq)]
pub enum Initialized {
    Created,
    /// The database has users already: nothing to do, as the original
    /// installer treats it.
    AlreadyInitialized,
    Failed(String),
}

/// Reads Quay's answer to `POST /api/v1/user/initialize`.
pub fn judge_initialize(code: u16, body: &str) -> Initialized {
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            ["error_message", "detail", "message"]
                .iter()
                .find_map(|k| v.get(*k).and_then(|m| m.as_str()).map(str::to_string))
        })
        .unwrap_or_else(|| body.chars().take(200).collect());
    let lower = message.to_lowercase();
    match code {
        200 => Initialized::Created,
        400 if lower.contains("non-empty database") || lower.contains("already exists") => {
            Initialized::AlreadyInitialized
        }
        _ => Initialized::Failed(format!("answered {code}: {message}")),
    }
}

/// Creates the initial user once, through Quay's API, when Healthy is
/// already true. Done is recorded in a 0600 marker under the secrets
/// directory, so later reconciles send nothing. Until it is done the
/// answer is `Some(why)`: Healthy is False (reason InitUserFailed), so the
/// registry is not Ready.
pub async fn ensure_init_user(
    r: &Resolved,
    client: Result<reqwest::Client, String>,
    creds: &Credentials,
) -> Result<Option<String>, Error> {
    let marker = naming::root::init_user_marker(&r.root);
    if marked(&marker, &creds.username)? {
        files::ensure_mode(&marker, 0o600)?;
        return Ok(None);
    }
    let url = format!("{}{INITIALIZE_PATH}", r.endpoint());
    let fail = |why: String| {
        // A password never leaves in a message, even if a server echoed it.
        let why = why.replace(&creds.password, "<redacted>");
        tracing::warn!(registry = %r.name, "initial user not created: POST {url} {why}");
        Some(format!(
            "Quay is healthy, but the initial user {} could not be created: POST {url} {why}",
            creds.username
        ))
    };
    let client = match client {
        Ok(cl) => cl,
        Err(e) => return Ok(fail(e)),
    };
    let body = serde_json::json!({
        "username": creds.username,
        "password": creds.password,
        "email": INIT_EMAIL,
        "access_token": true,
    });
    let resp = client
        .post(&url)
        .timeout(INITIALIZE_TIMEOUT)
        .json(&body)
        .send()
        .await;
    let outcome = match resp {
        Ok(resp) => {
            let code = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            judge_initialize(code, &text)
        }
        Err(e) => Initialized::Failed(format!("failed: {e}")),
    };
    match outcome {
        Initialized::Failed(why) => return Ok(fail(why)),
        Initialized::Created => {
            tracing::info!(registry = %r.name, user = %creds.username, "initial user created through Quay's API")
        }
        Initialized::AlreadyInitialized => {
            tracing::info!(registry = %r.name, user = %creds.username, "Quay's database already has users; initial user not created again")
        }
    }
    let text = serde_yaml::to_string(&Marker {
        username: creds.username.clone(),
    })
    .map_err(|e| Error::Other(format!("{}: {e}", marker.display())))?;
    files::write_if_changed(&marker, text.as_bytes(), 0o600)?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://q:8443/health/instance";

    #[test]
    fn healthy_only_with_200_and_every_service_true() {
        let ok =
            r#"{"data":{"services":{"auth":true,"database":true,"redis":true}},"status_code":200}"#;
        let msg = judge_health(URL, 200, ok).unwrap();
        assert!(msg.contains("auth, database, redis"), "{msg}");

        let redis_down = r#"{"data":{"services":{"auth":true,"redis":false}},"status_code":503}"#;
        let err = judge_health(URL, 503, redis_down).unwrap_err();
        assert!(err.ends_with("not healthy: redis"), "{err}");

        // A 200 that lists a false service is still not healthy.
        let odd = r#"{"data":{"services":{"storage":false}}}"#;
        assert!(judge_health(URL, 200, odd).is_err());
        assert!(judge_health(URL, 200, r#"{"data":{"services":{}}}"#).is_err());
        assert!(judge_health(URL, 200, "<html>").is_err());
        assert!(judge_health(URL, 500, r#"{"data":{"services":{"a":true}}}"#).is_err());
    }

    /// Real Quay 3.12's answers (LocalHealthCheck skips redis and storage).
    #[test]
    fn real_quay_health_and_the_localhost_port_trap() {
        let ok = r#"{"data":{"services":{"auth":true,"database":true,"disk_space":true,"registry_gunicorn":true,"service_key":true,"web_gunicorn":true}},"status_code":200}"#;
        let msg = judge_health("https://vm:18443/health/instance", 200, ok).unwrap();
        assert!(
            msg.ends_with(
                "auth, database, disk_space, registry_gunicorn, service_key, web_gunicorn"
            ),
            "{msg}"
        );

        let down = r#"{"data":{"services":{"auth":true,"database":true,"disk_space":true,"registry_gunicorn":false,"service_key":true,"web_gunicorn":false}},"status_code":503}"#;
        let err = judge_health("https://localhost:18443/health/instance", 503, down).unwrap_err();
        assert!(
            err.contains("not healthy: registry_gunicorn, web_gunicorn (with hostname localhost"),
            "{err}"
        );
        let err = judge_health("https://localhost:8443/health/instance", 503, down).unwrap_err();
        assert!(
            err.ends_with("not healthy: registry_gunicorn, web_gunicorn"),
            "{err}"
        );
        let err = judge_health("https://vm:18443/health/instance", 503, down).unwrap_err();
        assert!(
            err.ends_with("not healthy: registry_gunicorn, web_gunicorn"),
            "{err}"
        );
    }

    #[test]
    fn initialize_answers() {
        assert_eq!(judge_initialize(200, "{}"), Initialized::Created);
        let quay = r#"{"detail":"Cannot initialize user in a non-empty database","error_message":"Cannot initialize user in a non-empty database","status":400}"#;
        assert_eq!(judge_initialize(400, quay), Initialized::AlreadyInitialized);
        // What Quay 3.12 answers (endpoints/web.py): only "message".
        let real = r#"{"message":"Cannot initialize user in a non-empty database"}"#;
        assert_eq!(judge_initialize(400, real), Initialized::AlreadyInitialized);
        let short = r#"{"message":"Failed to initialize user: Invalid password, password must be at least 8 characters and contain no whitespace."}"#;
        assert!(
            matches!(judge_initialize(400, short), Initialized::Failed(m) if m.contains("Invalid password"))
        );
        assert_eq!(
            judge_initialize(400, r#"{"message":"User already exists"}"#),
            Initialized::AlreadyInitialized
        );
        assert_eq!(
            judge_initialize(400, r#"{"error_message":"Password too short"}"#),
            Initialized::Failed("answered 400: Password too short".into())
        );
        assert!(matches!(
            judge_initialize(500, "oops"),
            Initialized::Failed(m) if m == "answered 500: oops"
        ));
    }

    #[test]
    fn the_marker_counts_for_its_user_only() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("quay-init-user");
        assert!(!marked(&m, "init").unwrap());
        std::fs::write(&m, "username: init\n").unwrap();
        assert!(marked(&m, "init").unwrap());
        assert!(!marked(&m, "admin").unwrap());
    }
}
