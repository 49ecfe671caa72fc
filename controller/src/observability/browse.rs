//! Repositories and tags, read server-side from a registry's own API
//! (Docker Registry HTTP API v2, which both engines serve) with the
//! registry's initial credentials. The credentials stay in this process:
//! they go only to the registry's own endpoint, over TLS verified as the
//! health probe verifies it, and never into a page or a browser's request.

use std::time::Duration;

use reqwest::header::{HeaderMap, ACCEPT, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::api::defaults::{Resolved, Tls};
use crate::host::credentials::{self, Credentials};
use crate::naming;

const TIMEOUT: Duration = Duration::from_secs(10);
/// Repositories listed per registry, at most.
pub const MAX_REPOSITORIES: usize = 1000;
/// Tags whose manifests are read per repository page, at most.
pub const MAX_TAGS: usize = 200;
const PAGE: usize = 100;
/// Children of an image index whose sizes are added up, at most.
const MAX_CHILDREN: usize = 16;

const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// A repository name as the distribution spec allows it: lower-case
/// components joined by `.`, `_`, `__` or dashes, separated by `/`.
pub fn valid_repository(name: &str) -> bool {
    let component = |c: &str| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && c.as_bytes()[0].is_ascii_alphanumeric()
            && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
    };
    name.len() <= 255 && name.split('/').all(component)
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
}

/// A tag as the repository page shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TagInfo {
    pub tag: String,
    pub digest: Option<String>,
    pub media_type: Option<String>,
    /// Bytes the image takes in the registry: its config and layers (an
    /// index: those of every platform's image).
    pub size: Option<u64>,
    /// Platforms in an image index; 0 for a single image.
    pub platforms: usize,
    pub error: Option<String>,
}

/// A client for one registry's API.
pub struct Client {
    http: reqwest::Client,
    base: Url,
    creds: Credentials,
}

#[derive(Deserialize)]
struct CatalogBody {
    #[serde(default)]
    repositories: Vec<String>,
}

#[derive(Deserialize)]
struct TagsBody {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(default)]
    size: u64,
    #[serde(default)]
    digest: Option<String>,
}

#[derive(Deserialize)]
struct ManifestBody {
    #[serde(default, rename = "mediaType")]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct TokenBody {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

impl Client {
    /// A client for `r`'s endpoint with its initial user's credentials.
    pub fn new(r: &Resolved) -> Result<Client, String> {
        let ca = matches!(r.tls, Tls::Generated { .. })
            .then(|| naming::root::tls_dir(&r.root).join("ca.crt"));
        let http = crate::reconcile::converge::https_client(r, ca.as_deref(), TIMEOUT)?;
        let creds = credentials::read_credentials(&naming::root::credentials_file(&r.root))
            .map_err(|e| format!("cannot read the registry's credentials: {e}"))?;
        let base = Url::parse(&r.endpoint()).map_err(|e| format!("endpoint: {e}"))?;
        Ok(Client { http, base, creds })
    }

    fn url(&self, path: &str) -> Result<Url, String> {
        self.base.join(path).map_err(|e| format!("{path}: {e}"))
    }

    /// GET with the registry's credentials: Basic, or when the registry
    /// asks for a bearer token (Quay), one fetched from its own token
    /// endpoint. Returns status, headers and body.
    async fn get(&self, url: Url, accept: Option<&str>) -> Result<(HeaderMap, Vec<u8>), String> {
        let send = |auth: Auth| {
            let mut req = self.http.get(url.clone());
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            req = match auth {
                Auth::Basic => req.basic_auth(&self.creds.username, Some(&self.creds.password)),
                Auth::Bearer(t) => req.bearer_auth(t),
            };
            req.send()
        };
        let shown = url.path().to_string();
        let mut resp = send(Auth::Basic)
            .await
            .map_err(|e| format!("GET {shown}: {}", error_chain(&e)))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let challenge = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            if let Some(token) = self.token(&challenge).await? {
                resp = send(Auth::Bearer(token))
                    .await
                    .map_err(|e| format!("GET {shown}: {}", error_chain(&e)))?;
            }
        }
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("GET {shown}: {}", error_chain(&e)))?;
        if !status.is_success() {
            return Err(format!("GET {shown} answered {status}"));
        }
        Ok((headers, body.to_vec()))
    }

    /// A bearer token for a `Bearer realm=...` challenge, fetched with the
    /// credentials only from the registry's own host and port.
    async fn token(&self, challenge: &str) -> Result<Option<String>, String> {
        let Some(params) = challenge.strip_prefix("Bearer ") else {
            return Ok(None);
        };
        let params = parse_challenge(params);
        let Some(realm) = params.iter().find(|(k, _)| k == "realm").map(|(_, v)| v) else {
            return Ok(None);
        };
        let mut realm = Url::parse(realm).map_err(|e| format!("token realm {realm}: {e}"))?;
        if realm.scheme() != "https"
            || realm.host_str() != self.base.host_str()
            || realm.port_or_known_default() != self.base.port_or_known_default()
        {
            return Err(format!(
                "the registry asks for a token from {}, which is not its own endpoint; credentials not sent",
                realm.origin().ascii_serialization()
            ));
        }
        for (k, v) in params
            .iter()
            .filter(|(k, _)| k == "service" || k == "scope")
        {
            realm.query_pairs_mut().append_pair(k, v);
        }
        let resp = self
            .http
            .get(realm)
            .basic_auth(&self.creds.username, Some(&self.creds.password))
            .send()
            .await
            .map_err(|e| format!("token: {}", error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(format!("the token endpoint answered {}", resp.status()));
        }
        let body: TokenBody = resp
            .json()
            .await
            .map_err(|e| format!("token: {}", error_chain(&e)))?;
        Ok(body.token.or(body.access_token))
    }

    /// Repository names (`/v2/_catalog`), at most [`MAX_REPOSITORIES`];
    /// true when there were more.
    pub async fn repositories(&self) -> Result<(Vec<String>, bool), String> {
        let mut out: Vec<String> = Vec::new();
        loop {
            let mut url = self.url("/v2/_catalog")?;
            url.query_pairs_mut().append_pair("n", &PAGE.to_string());
            if let Some(last) = out.last() {
                url.query_pairs_mut().append_pair("last", last);
            }
            let (_, body) = self.get(url, None).await?;
            let page: CatalogBody =
                serde_json::from_slice(&body).map_err(|e| format!("/v2/_catalog: {e}"))?;
            let n = page.repositories.len();
            out.extend(
                page.repositories
                    .into_iter()
                    .filter(|r| valid_repository(r)),
            );
            if n < PAGE {
                return Ok((out, false));
            }
            if out.len() >= MAX_REPOSITORIES {
                out.truncate(MAX_REPOSITORIES);
                return Ok((out, true));
            }
        }
    }

    /// A repository's tags, sorted.
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>, String> {
        if !valid_repository(repo) {
            return Err(format!("{repo:?} is not a repository name"));
        }
        let (_, body) = self
            .get(self.url(&format!("/v2/{repo}/tags/list"))?, None)
            .await?;
        let t: TagsBody = serde_json::from_slice(&body).map_err(|e| format!("{repo} tags: {e}"))?;
        let mut tags: Vec<String> = t
            .tags
            .unwrap_or_default()
            .into_iter()
            .filter(|t| valid_tag(t))
            .collect();
        tags.sort();
        Ok(tags)
    }

    async fn manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<(String, ManifestBody, u64), String> {
        let (headers, body) = self
            .get(
                self.url(&format!("/v2/{repo}/manifests/{reference}"))?,
                Some(MANIFEST_TYPES),
            )
            .await?;
        let digest = headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| format!("sha256:{}", hex::encode(Sha256::digest(&body))));
        let mut m: ManifestBody =
            serde_json::from_slice(&body).map_err(|e| format!("manifest {reference}: {e}"))?;
        if m.media_type.is_none() {
            m.media_type = headers
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
        }
        Ok((digest, m, body.len() as u64))
    }

    /// Digest, media type and size of `repo:tag`.
    pub async fn tag(&self, repo: &str, tag: &str) -> TagInfo {
        let mut info = TagInfo {
            tag: tag.to_string(),
            ..TagInfo::default()
        };
        if !valid_repository(repo) || !valid_tag(tag) {
            info.error = Some("not a repository or tag name".into());
            return info;
        }
        match self.manifest(repo, tag).await {
            Ok((digest, m, _)) => {
                info.digest = Some(digest);
                info.media_type = m.media_type.clone();
                if m.manifests.is_empty() {
                    info.size = Some(image_size(&m));
                } else {
                    info.platforms = m.manifests.len();
                    let mut total = 0;
                    let mut complete = true;
                    for child in m.manifests.iter().take(MAX_CHILDREN) {
                        let Some(d) = child.digest.as_deref().filter(|d| valid_digest(d)) else {
                            complete = false;
                            continue;
                        };
                        match self.manifest(repo, d).await {
                            Ok((_, cm, _)) => total += image_size(&cm),
                            Err(_) => complete = false,
                        }
                    }
                    info.size = (complete && m.manifests.len() <= MAX_CHILDREN).then_some(total);
                }
            }
            Err(e) => info.error = Some(e),
        }
        info
    }
}

enum Auth {
    Basic,
    Bearer(String),
}

fn valid_digest(d: &str) -> bool {
    d.split_once(':').is_some_and(|(alg, hex)| {
        !alg.is_empty()
            && alg.bytes().all(|b| b.is_ascii_alphanumeric())
            && !hex.is_empty()
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

fn image_size(m: &ManifestBody) -> u64 {
    m.config.as_ref().map(|c| c.size).unwrap_or(0) + m.layers.iter().map(|l| l.size).sum::<u64>()
}

/// `key="value",key2="value2"` of a WWW-Authenticate challenge.
fn parse_challenge(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while let Some((k, after)) = rest.split_once('=') {
        let key = k.trim().trim_start_matches(',').trim().to_string();
        let after = after.trim_start();
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (q[..end].to_string(), &q[end + 1..]),
                None => (q.to_string(), ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (after[..end].to_string(), &after[end..]),
                None => (after.to_string(), ""),
            }
        };
        out.push((key, value));
        rest = tail.trim_start().trim_start_matches(',');
    }
    out
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_they_reach_a_url() {
        assert!(valid_repository("library/busybox"));
        assert!(valid_repository("a.b_c__d--e/f9"));
        assert!(!valid_repository("../v2"));
        assert!(!valid_repository("Upper/case"));
        assert!(!valid_repository("a//b"));
        assert!(!valid_repository("a?x=1"));
        assert!(valid_tag("v1.2_3-rc"));
        assert!(!valid_tag(".hidden"));
        assert!(!valid_tag("a/b"));
        assert!(valid_digest("sha256:abc123"));
        assert!(!valid_digest("sha256:../x"));
    }

    #[test]
    fn challenges_parse() {
        let p = parse_challenge(
            r#"realm="https://h:8443/v2/auth",service="h:8443",scope="registry:catalog:*""#,
        );
        assert_eq!(
            p,
            vec![
                ("realm".into(), "https://h:8443/v2/auth".into()),
                ("service".into(), "h:8443".into()),
                ("scope".into(), "registry:catalog:*".into()),
            ]
        );
    }
}
