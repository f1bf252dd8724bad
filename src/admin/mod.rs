//! The admin HTTP listener: health, readiness, metrics and the explain endpoint.
//!
//! ```text
//!  GET /livez                  200 while the process serves at all
//!  GET /readyz                 200 once every source synced; 503 with the reason otherwise,
//!                              and from the moment shutdown starts (lame duck)
//!  GET /metrics                Prometheus text (metrics::render)
//!  GET /debug/explain?name=N   JSON: does N exist, why or why not, and what it would answer;
//!                              400 with JSON {"name", "error"} when N is missing or no domain
//!                              name (an empty or over-long label, a space)
//!  GET /debug/source           JSON: the source's state; for the Kubernetes source, each watch
//!                              stream's state, failures and when it last heard from the API
//! ```
//!
//! Invariant: the admin side only reads (the index, counters, flags); nothing here can change
//! what DNS answers.

mod explain;
mod prometheus;
mod source;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::debug;

pub use explain::{ExplainError, explain};

use crate::dns::Responder;
use crate::index::Index;
use crate::metrics::Metrics;
use crate::source::kubernetes::SourceStats;
use prometheus::{SourceView, render};

/// What the admin endpoints read.
#[derive(Debug)]
pub struct AdminState {
    /// The served index.
    pub index: Index,
    /// The DNS counters.
    pub metrics: Arc<Metrics>,
    /// The responder, for the explain endpoint's answers.
    pub responder: Arc<Responder>,
    /// `file` or `kubernetes`.
    pub source_kind: &'static str,
    /// The watch source's counters, when it runs.
    pub watch: Option<Arc<SourceStats>>,
    /// Namespaces the watch source is limited to (empty: all).
    pub watched_namespaces: Vec<String>,
    /// Set when shutdown starts: readiness turns 503.
    pub shutting_down: AtomicBool,
}

impl AdminState {
    /// `Ok` when ready to take traffic, else the reason.
    pub fn readiness(&self) -> Result<(), String> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err("shutting down".to_string());
        }
        if !self.index.is_synced() {
            return Err(format!(
                "not synced: waiting for the first complete state from the {} source",
                self.source_kind
            ));
        }
        Ok(())
    }
}

/// Serves the admin endpoints on `listener` until `shutdown` is cancelled.
pub async fn serve_admin(
    listener: TcpListener,
    state: Arc<AdminState>,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => return,
        };
        let Ok((stream, peer)) = accepted else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, &request)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                debug!(%error, %peer, "admin connection ended");
            }
        });
    }
}

fn route(state: &AdminState, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != hyper::Method::GET {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET is served\n".into(),
        );
    }
    match request.uri().path() {
        "/livez" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match state.readiness() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
        },
        "/metrics" => {
            let source = SourceView {
                kind: state.source_kind,
                watch: state.watch.as_deref(),
            };
            let body = render(&state.metrics, &state.index, source);
            let mut response = text(StatusCode::OK, body);
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            response
        }
        "/debug/source" => json(format!("{:#}\n", source::describe(state))),
        "/debug/explain" => match query_param(request.uri().query().unwrap_or(""), "name") {
            Some(name) => match explain(state, &name) {
                Ok(answer) => json(format!("{answer:#}\n")),
                Err(error) => {
                    let body = serde_json::json!({"name": name, "error": error.to_string()});
                    let mut response = json(format!("{body:#}\n"));
                    *response.status_mut() = StatusCode::BAD_REQUEST;
                    response
                }
            },
            None => text(
                StatusCode::BAD_REQUEST,
                "missing query parameter: name\n".into(),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /livez, /readyz, /metrics, /debug/explain?name=..., /debug/source\n"
                .into(),
        ),
    }
}

fn json(body: String) -> Response<Full<Bytes>> {
    let mut response = text(StatusCode::OK, body);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// The decoded value of `key` in a query string (`%XX` and `+` decoded).
fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = || {
            let digits = bytes.get(i + 1..i + 3)?;
            u8::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
        };
        match (bytes[i], hex()) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_decode() {
        assert_eq!(query_param("name=a.b&x=1", "name").as_deref(), Some("a.b"));
        assert_eq!(
            query_param("x=1&name=a%2Eb%2", "name").as_deref(),
            Some("a.b%2")
        );
        assert_eq!(query_param("name=a+b", "name").as_deref(), Some("a b"));
        assert_eq!(query_param("x=1", "name"), None);
    }
}
