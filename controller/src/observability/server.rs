//! A small HTTP/1.1 server (hyper) for the observability listener.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use super::browse::{self, Client};
use super::metrics::{self, Format};
use super::{facts, page, upstream, Listen};
use crate::api::validate::is_dns1123_label;
use crate::reconcile::Context;

/// Connections served at once; more wait for one to end.
const MAX_CONNECTIONS: usize = 64;
/// Requests to one registry's API in flight at once for one page.
const API_CONCURRENCY: usize = 8;

struct Shared {
    cx: Arc<Context>,
    listen: Listen,
    bound: SocketAddr,
}

type Resp = Response<Full<Bytes>>;

/// Binds `listen.address` and serves it for as long as the process runs.
/// Returns the bound address (port 0 picks one).
pub async fn serve(cx: Arc<Context>, listen: Listen) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen.address).await?;
    let bound = listener.local_addr()?;
    let shared = Arc::new(Shared { cx, listen, bound });
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let s = shared.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let s = s.clone();
                    async move { Ok::<_, Infallible>(handle(&s, req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
                drop(permit);
            });
        }
    });
    Ok(bound)
}

fn header_str(req: &Request<Incoming>, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn html(status: StatusCode, body: String) -> Resp {
    respond(status, "text/html; charset=utf-8", body)
}

fn text(status: StatusCode, body: impl Into<String>) -> Resp {
    respond(status, "text/plain; charset=utf-8", body.into())
}

async fn handle(s: &Shared, req: Request<Incoming>) -> Resp {
    let mut resp = route(s, &req).await;
    let h = resp.headers_mut();
    // Nothing from anywhere else: inline styles only, no scripts, no frames.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    tracing::debug!(method = %req.method(), path = %req.uri().path(), status = resp.status().as_u16(), "metrics listener");
    resp
}

async fn route(s: &Shared, req: &Request<Incoming>) -> Resp {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "read-only: GET or HEAD\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match &s.listen.auth {
        Some(a) => {
            if !a.allows(header_str(req, header::AUTHORIZATION)) {
                let mut r = text(StatusCode::UNAUTHORIZED, "credentials required\n");
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"mirror-registry\", charset=\"UTF-8\""),
                );
                return r;
            }
        }
        None => {
            if !super::auth::host_is_local(header_str(req, header::HOST), &s.bound) {
                return text(
                    StatusCode::MISDIRECTED_REQUEST,
                    "this listener answers requests for this host's loopback address only\n",
                );
            }
        }
    }
    let path = req.uri().path();
    let accept = header_str(req, header::ACCEPT);
    match path {
        "/" => html(StatusCode::OK, page::index(&facts::gather(&s.cx).await)),
        "/metrics" => metrics_page(s, accept).await,
        "/sd" => {
            let authority = header_str(req, header::HOST)
                .map(str::to_string)
                .unwrap_or_else(|| s.bound.to_string());
            let groups = upstream::service_discovery(&facts::gather(&s.cx).await, &authority);
            respond(
                StatusCode::OK,
                "application/json",
                serde_json::to_string(&groups).unwrap_or_else(|_| "[]".into()),
            )
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        _ => match path.strip_prefix("/registries/") {
            Some(rest) => registry_route(s, rest, accept).await,
            None => not_found(),
        },
    }
}

fn not_found() -> Resp {
    html(
        StatusCode::NOT_FOUND,
        page::error("Not found", "Nothing here; see the list of registries."),
    )
}

async fn metrics_page(s: &Shared, accept: Option<&str>) -> Resp {
    let views = facts::gather(&s.cx).await;
    let known: BTreeSet<String> = views.iter().map(|v| v.name.clone()).collect();
    let m = metrics::global();
    m.forget_except(&known);
    for n in &known {
        m.track(n);
    }
    let format = Format::negotiate(accept);
    match metrics::encode(&facts::figures(&views), format) {
        Ok(body) => respond(StatusCode::OK, format.content_type(), body),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n"),
    }
}

async fn registry_route(s: &Shared, rest: &str, accept: Option<&str>) -> Resp {
    let (name, sub) = rest.split_once('/').unwrap_or((rest, ""));
    if !is_dns1123_label(name) {
        return not_found();
    }
    if sub == "metrics" {
        return match upstream::scrape(&s.cx, name, accept).await {
            Ok(x) => respond(StatusCode::OK, &x.content_type, x.body),
            Err(e) => text(StatusCode::BAD_GATEWAY, format!("{e}\n")),
        };
    }
    let Some(view) = facts::one(&s.cx, name).await else {
        return not_found();
    };
    if sub.is_empty() {
        let list = match &view.resolved {
            None => Err("the spec is not valid, so its endpoint is unknown".to_string()),
            Some(r) => repositories(r).await,
        };
        return html(StatusCode::OK, page::registry(&view, list));
    }
    let Some(encoded) = sub.strip_prefix("repositories/") else {
        return not_found();
    };
    let repo = percent_encoding::percent_decode_str(encoded)
        .decode_utf8_lossy()
        .into_owned();
    if !browse::valid_repository(&repo) {
        return not_found();
    }
    let tags = match &view.resolved {
        None => Err("the spec is not valid, so its endpoint is unknown".to_string()),
        Some(r) => tags(r, &repo).await,
    };
    html(StatusCode::OK, page::repository(&view, &repo, tags))
}

async fn repositories(r: &crate::api::defaults::Resolved) -> Result<page::RepositoryList, String> {
    let client = Client::new(r)?;
    let (names, truncated) = client.repositories().await?;
    let client = &client;
    let repositories = futures_util::stream::iter(names)
        .map(|n| async move {
            let t = client.tags(&n).await;
            (n, t)
        })
        .buffered(API_CONCURRENCY)
        .collect()
        .await;
    Ok(page::RepositoryList {
        repositories,
        truncated,
    })
}

async fn tags(
    r: &crate::api::defaults::Resolved,
    repo: &str,
) -> Result<Vec<browse::TagInfo>, String> {
    let client = Client::new(r)?;
    let names = client.tags(repo).await?;
    let client = &client;
    Ok(
        futures_util::stream::iter(names.into_iter().take(browse::MAX_TAGS))
            .map(|t| async move { client.tag(repo, &t).await })
            .buffered(API_CONCURRENCY)
            .collect()
            .await,
    )
}
