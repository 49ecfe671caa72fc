//! Each distribution registry's own request metrics: its debug server's
//! Prometheus endpoint, which the pod publishes on 127.0.0.1 only, at a
//! port podman picks. The controller finds that port and passes the
//! registry's exposition through unchanged at `/registries/NAME/metrics`,
//! and lists those paths for Prometheus' HTTP service discovery at `/sd`.

use std::time::Duration;

use bollard::query_parameters::InspectContainerOptions;
use serde::Serialize;

use crate::api::Engine;
use crate::naming;
use crate::reconcile::Context;
use crate::render::distribution::{COMPONENT, DEBUG_PORT};

const TIMEOUT: Duration = Duration::from_secs(5);

/// The registry's exposition: content type and body.
pub struct Scraped {
    pub content_type: String,
    pub body: Vec<u8>,
}

/// The host port publishing `<name>-registry`'s debug server on 127.0.0.1,
/// when the container is this registry's own (carries its owner label).
pub async fn debug_port(cx: &Context, name: &str) -> Result<u16, String> {
    let (podman, _) = cx.clients().await.map_err(|e| format!("podman: {e}"))?;
    let container = naming::container(name, COMPONENT);
    let c = podman
        .docker()
        .inspect_container(&container, None::<InspectContainerOptions>)
        .await
        .map_err(|e| format!("inspect {container}: {e}"))?;
    let labels = c
        .config
        .as_ref()
        .and_then(|x| x.labels.clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    if !naming::owned_by(&labels, name) {
        return Err(format!("{container} is not this registry's container"));
    }
    let key = format!("{DEBUG_PORT}/tcp");
    c.network_settings
        .and_then(|n| n.ports)
        .and_then(|mut p| p.remove(&key))
        .flatten()
        .unwrap_or_default()
        .into_iter()
        .filter(|b| b.host_ip.as_deref() == Some("127.0.0.1"))
        .find_map(|b| b.host_port.and_then(|p| p.parse().ok()))
        .ok_or_else(|| {
            format!("{container} does not publish its debug port {DEBUG_PORT} on 127.0.0.1 (a registry started before this version: it is restarted once when its unit is rewritten)")
        })
}

/// Scrapes the registry's debug endpoint, asking for what the scraper
/// asked for.
pub async fn scrape(cx: &Context, name: &str, accept: Option<&str>) -> Result<Scraped, String> {
    let port = debug_port(cx, name).await?;
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let mut req = client.get(format!("http://127.0.0.1:{port}/metrics"));
    if let Some(a) = accept {
        req = req.header(reqwest::header::ACCEPT, a);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("GET 127.0.0.1:{port}/metrics: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!(
            "the registry's debug server answered {}",
            resp.status()
        ));
    }
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/plain; version=0.0.4")
        .to_string();
    let body = resp.bytes().await.map_err(|e| e.to_string())?.to_vec();
    Ok(Scraped { content_type, body })
}

/// One target group of Prometheus' HTTP service discovery.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct TargetGroup {
    pub targets: Vec<String>,
    pub labels: std::collections::BTreeMap<String, String>,
}

/// The scrape targets of every distribution registry with a spec, reached
/// through this listener at `authority` (what the client used to reach it).
pub fn service_discovery(views: &[super::facts::View], authority: &str) -> Vec<TargetGroup> {
    views
        .iter()
        .filter(|v| v.engine == Some(Engine::Distribution))
        .map(|v| TargetGroup {
            targets: vec![authority.to_string()],
            labels: [
                (
                    "__metrics_path__".to_string(),
                    format!("/registries/{}/metrics", v.name),
                ),
                ("registry".to_string(), v.name.clone()),
            ]
            .into_iter()
            .collect(),
        })
        .collect()
}
