//! A test Kubernetes API server: plain HTTP/1.1 on 127.0.0.1 port 0, speaking the list/watch
//! wire protocol closely enough that the unmodified `kube::runtime::watcher` runs against it.
//!
//! Layout: [`resource`] (the kinds served), [`store`] (objects, resourceVersions, history),
//! [`routes`] (paths, list, get), [`watch`] (streamed watches), [`query`] and [`selector`]
//! (request parameters), [`discovery`], [`reply`] (responses and `Status` errors), [`clock`],
//! and [`storm`] (a scripted API server upgrade, built from the fault switches).
//!
//! Tests write through direct calls ([`TestApiServer::apply`], [`TestApiServer::delete`]), never
//! over HTTP, and break things with the fault switches ([`TestApiServer::drop_watches`],
//! [`TestApiServer::stall_watches`], [`TestApiServer::expire_history`],
//! [`TestApiServer::fail_next`], [`TestApiServer::unavailable_next`],
//! [`TestApiServer::throttle_next`], [`TestApiServer::set_unreachable`]). Invariants: no request
//! panics, whatever its input; the store mutex is never held across an `.await`; every request
//! that arrives, answered or refused, is in [`TestApiServer::request_log`]; injected answers are
//! given in the order they were injected, one per request.

mod clock;
mod discovery;
mod query;
mod reply;
mod resource;
mod routes;
mod selector;
mod store;
pub mod storm;
mod watch;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub use clock::now_rfc3339;
pub use resource::Resource;

use reply::{Body, status_error, throttled};
use routes::Route;
use store::Store;

/// How a request was classified in the request log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    List,
    Watch,
    Get,
    Discovery,
    Unknown,
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// The raw (percent-encoded) query string.
    pub query: String,
    pub verb: Verb,
    pub resource: Option<Resource>,
    /// The HTTP status answered; `None` when the connection was cut instead (unreachable).
    pub status: Option<u16>,
    /// When it arrived.
    pub at: Instant,
}

/// An answer given instead of the real one to the next request (any path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Injected {
    /// 500 InternalError.
    InternalError,
    /// 503 ServiceUnavailable (an API server shutting down, a proxy without a backend).
    Unavailable,
    /// 429 TooManyRequests with `Retry-After`.
    Throttled { retry_after_secs: u64 },
}

/// State shared by the server's tasks and the test's handle.
struct Shared {
    store: Mutex<Store>,
    log: Mutex<Vec<RequestRecord>>,
    unreachable: AtomicBool,
    injected: Mutex<VecDeque<Injected>>,
    /// Cancelled by `drop_watches`; each watch holds the token current when it started.
    watch_abort: Mutex<CancellationToken>,
    /// Cancelled by `stall_watches`; each watch holds the token current when it started.
    watch_stall: Mutex<CancellationToken>,
    open_watches: Arc<AtomicUsize>,
    next_address_block: AtomicU32,
    /// Connections closed unanswered while unreachable.
    refused: AtomicUsize,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn watch_abort(&self) -> CancellationToken {
        self.watch_abort
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn watch_stall(&self) -> CancellationToken {
        self.watch_stall
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn injected(&self) -> MutexGuard<'_, VecDeque<Injected>> {
        self.injected.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, record: RequestRecord) {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
    }

    /// Answers one request, or `Err` to make hyper cut the connection (unreachable).
    fn respond(&self, request: &Request<Incoming>) -> Result<Response<Body>, std::io::Error> {
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        let route = Route::parse(&path);
        let (verb, resource) = route.verb(&query);
        let mut record = RequestRecord {
            method: request.method().to_string(),
            path: path.clone(),
            query: query.clone(),
            verb,
            resource,
            status: None,
            at: Instant::now(),
        };
        if self.unreachable.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            self.record(record);
            return Err(std::io::Error::other("api server unreachable"));
        }
        let response = self.answer(request.method(), route, &path, &query);
        record.status = Some(response.status().as_u16());
        self.record(record);
        Ok(response)
    }

    fn answer(&self, method: &Method, route: Route, path: &str, query: &str) -> Response<Body> {
        let injected = self.injected().pop_front();
        match injected {
            Some(Injected::InternalError) => {
                let message = "injected failure (fail_next)";
                return status_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message);
            }
            Some(Injected::Unavailable) => {
                let message = "injected: the API server is shutting down (unavailable_next)";
                return status_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    message,
                );
            }
            Some(Injected::Throttled { retry_after_secs }) => return throttled(retry_after_secs),
            None => {}
        }
        if method != Method::GET {
            let message = format!("method {method} is not supported by the test api server");
            return status_error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", &message);
        }
        routes::answer(self, route, path, query)
    }
}

/// A kubeconfig with one cluster, context and (credential-less) user, all named `test`.
const KUBECONFIG_TEMPLATE: &str = "\
apiVersion: v1
kind: Config
current-context: test
clusters:
- name: test
  cluster:
    server: SERVER_URL
contexts:
- name: test
  context:
    cluster: test
    user: test
    namespace: default
users:
- name: test
  user: {}
";

/// A running test API server; shuts down (listener, connections, watches) when dropped.
pub struct TestApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: CancellationToken,
}

impl TestApiServer {
    /// Binds 127.0.0.1:0 and starts serving.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let shutdown = CancellationToken::new();
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new()),
            log: Mutex::new(Vec::new()),
            unreachable: AtomicBool::new(false),
            injected: Mutex::new(VecDeque::new()),
            watch_abort: Mutex::new(shutdown.child_token()),
            watch_stall: Mutex::new(shutdown.child_token()),
            open_watches: Arc::new(AtomicUsize::new(0)),
            next_address_block: AtomicU32::new(0),
            refused: AtomicUsize::new(0),
        });
        tokio::spawn(accept_loop(listener, shared.clone(), shutdown.clone()));
        Self {
            shared,
            addr,
            shutdown,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client config pointing at this server (no kubeconfig file, no credentials).
    pub fn client_config(&self) -> kube::Config {
        kube::Config::new(self.url().parse().expect("server url is a valid uri"))
    }

    /// A client for this server.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.client_config()).expect("client from config")
    }

    /// Writes `<dir>/kubeconfig` pointing at this server (context `test`, namespace `default`)
    /// and returns its path.
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = KUBECONFIG_TEMPLATE.replace("SERVER_URL", &self.url());
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// Creates or updates an object (typed k8s object or JSON with apiVersion, kind and
    /// metadata.name); emits ADDED or MODIFIED unless nothing changed. Returns the stored state.
    pub fn apply(&self, object: &impl Serialize) -> Value {
        let value = serde_json::to_value(object).expect("object serializes to json");
        self.shared
            .store()
            .apply(value)
            .unwrap_or_else(|e| panic!("apply: {e}"))
    }

    /// Deletes an object (emits DELETED with its last state); returns that state, or `None`.
    pub fn delete(&self, resource: Resource, namespace: &str, name: &str) -> Option<Value> {
        self.shared.store().delete(resource, namespace, name)
    }

    /// One stored object.
    pub fn get(&self, resource: Resource, namespace: &str, name: &str) -> Option<Value> {
        self.shared.store().get(resource, namespace, name)
    }

    /// The stored objects of a resource, in one namespace or all, ordered by (namespace, name).
    pub fn list(&self, resource: Resource, namespace: Option<&str>) -> Vec<Value> {
        self.shared
            .store()
            .list(resource, namespace)
            .into_iter()
            .cloned()
            .collect()
    }

    /// The latest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().rv()
    }

    /// Ends every open watch abruptly (connection cut mid-stream); new watches are unaffected.
    pub fn drop_watches(&self) {
        let mut token = self
            .shared
            .watch_abort
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        token.cancel();
        *token = self.shutdown.child_token();
    }

    /// Forgets the change history: any watch or continue token from an older resourceVersion
    /// gets 410 Expired from now on. Open watches are not touched.
    pub fn expire_history(&self) {
        self.shared.store().expire_history();
    }

    /// Open watches go silent: their connections stay open but nothing more is sent, not even
    /// a bookmark or the end at `timeoutSeconds` (a half-open connection after a load
    /// balancer failover). New watches are unaffected.
    pub fn stall_watches(&self) {
        let mut token = self
            .shared
            .watch_stall
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        token.cancel();
        *token = self.shutdown.child_token();
    }

    /// The next `n` requests (any path) are answered 500 with an InternalError Status, after
    /// any answers injected before.
    pub fn fail_next(&self, n: u32) {
        self.inject(n, Injected::InternalError);
    }

    /// The next `n` requests are answered 503 ServiceUnavailable, after any injected before.
    pub fn unavailable_next(&self, n: u32) {
        self.inject(n, Injected::Unavailable);
    }

    /// The next `n` requests are answered 429 TooManyRequests with `Retry-After:
    /// retry_after_secs`, after any injected before.
    pub fn throttle_next(&self, n: u32, retry_after_secs: u64) {
        self.inject(n, Injected::Throttled { retry_after_secs });
    }

    /// Injected answers not given yet.
    pub fn injected_pending(&self) -> usize {
        self.shared.injected().len()
    }

    fn inject(&self, n: u32, answer: Injected) {
        let mut injected = self.shared.injected();
        injected.extend(std::iter::repeat_n(answer, n as usize));
    }

    /// While `true`, every connection is closed without an answer: new ones right after
    /// accept, kept-alive ones at their next request; open watches are cut when it turns on.
    pub fn set_unreachable(&self, unreachable: bool) {
        self.shared.unreachable.store(unreachable, Ordering::SeqCst);
        if unreachable {
            self.drop_watches();
        }
    }

    /// Every request so far, in arrival order.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many requests of `verb` on `resource` have been answered successfully (2xx).
    pub fn count(&self, verb: Verb, resource: Resource) -> usize {
        self.request_log()
            .iter()
            .filter(|r| r.verb == verb && r.resource == Some(resource))
            .filter(|r| r.status.is_some_and(|s| (200..300).contains(&s)))
            .count()
    }

    /// A number unique on this server, so each controller driver draws pod addresses from its
    /// own block.
    pub fn address_block(&self) -> u32 {
        self.shared
            .next_address_block
            .fetch_add(1, Ordering::SeqCst)
    }

    /// How many connections were closed unanswered because the server was unreachable (at
    /// accept, or at a request on a kept-alive connection; the latter are also logged).
    pub fn refused_connections(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// How many watch streams are being served right now.
    pub fn open_watches(&self) -> usize {
        self.shared.open_watches.load(Ordering::SeqCst)
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        if shared.unreachable.load(Ordering::SeqCst) {
            // Closed unanswered: the client sees the connection reset, as with a dead server.
            shared.refused.fetch_add(1, Ordering::SeqCst);
            drop(stream);
            continue;
        }
        tokio::spawn(serve_connection(stream, shared.clone(), shutdown.clone()));
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, shutdown: CancellationToken) {
    // As the real API server (Go sets TCP_NODELAY on every connection): without it, each small
    // watch event waits for the client's delayed ACK of the one before (40 to 200 ms).
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request: Request<Incoming>| {
        let answer = shared.respond(&request);
        async move { answer }
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        () = shutdown.cancelled() => {}
    }
}
