//! The Kubernetes source (S1, S3): kube-runtime watchers on Services and EndpointSlices that
//! never stay deaf to the API.
//!
//! ```text
//!  one stream per (resource, namespace):
//!  client+Observe -> watcher -> Supervisor --\
//!  client+Observe -> watcher -> Supervisor ---+-> select_all -> Synchronizer -> IndexWriter
//!  ...                                        (stream id, change)
//!  Observe: idle timeout, bytes heard, Retry-After    Supervisor: retry policy, health, log
//! ```
//!
//! Each stream has its own client, whose HTTP layer ([`transport`]) notes what the stream hears
//! into its [`StreamHealth`] and fails a request silent for the idle timeout, so a stalled watch
//! is replaced; its [`Supervisor`] waits out failures by the one [`retry`] policy (kube's own
//! request retries are turned off, so no second policy hides behind it) and logs each once.
//! Watches ask for bookmarks and a server-side timeout of [`WATCH_TIMEOUT_SECS`]. Objects are
//! converted to model types as they arrive and dropped; while the API is away the last state
//! keeps being served. Read-only: no request here writes.
//!
//! Invariant: one task owns the [`Synchronizer`] (and so the index writer); event order within
//! a stream is kept.

pub mod failure;
pub mod freshness;
pub mod health;
pub mod retry;
pub mod supervisor;
pub mod sync;
pub mod transport;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt, stream::BoxStream};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use kube::client::ClientBuilder;
use kube::runtime::watcher;
use kube::{Api, Client};

use crate::index::IndexWriter;
pub use freshness::{LatencyHistogram, SourceStats};
pub use health::{StreamHealth, WatchState};
use retry::{Backoff, RetryPolicy};
use supervisor::Supervisor;
pub use sync::{Change, StreamScope, Synchronizer, WatchedKind};

/// Why a Kubernetes client could not be built. kube's own messages quote paths as
/// `'"/path"'`; these show them plainly, and every message is one line with no cause repeated.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig file could not be read or parsed.
    #[error("kubeconfig {path}: {reason}", reason = kubeconfig_reason(.reason, Some(.path)))]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why (shown in the message, not offered as a source: its text quotes the path).
        reason: kube::config::KubeconfigError,
    },
    /// No configuration could be inferred (not in a cluster, no KUBECONFIG, no ~/.kube/config).
    #[error("no Kubernetes credentials: {reason}", reason = infer_reason(.0))]
    Infer(kube::config::InferConfigError),
    /// The client could not be built from the configuration.
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

impl From<kube::config::InferConfigError> for ClientError {
    fn from(error: kube::config::InferConfigError) -> Self {
        Self::Infer(error)
    }
}

/// A kubeconfig error in words on one line, its path shown plainly; `named` is the file
/// already named before the message, which a read error then need not repeat.
fn kubeconfig_reason(error: &kube::config::KubeconfigError, named: Option<&PathBuf>) -> String {
    match error {
        kube::config::KubeconfigError::ReadConfig(io, path) if named == Some(path) => {
            format!("cannot read the file: {io}")
        }
        kube::config::KubeconfigError::ReadConfig(io, path) => {
            format!("cannot read {}: {io}", path.display())
        }
        // A parse error's text goes on with a snippet of the file: its first line has the
        // position and the problem.
        other => other
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
    }
}

/// Why inference failed: the in-cluster reason and the kubeconfig reason. kube's text is
/// `failed to infer config: in-cluster: (A), kubeconfig: (B)`; A is taken from it (kube keeps
/// the error private), B is rebuilt from the kubeconfig error (its source).
fn infer_reason(error: &kube::config::InferConfigError) -> String {
    use std::error::Error as _;
    let text = error.to_string();
    let kubeconfig = error
        .source()
        .and_then(|source| source.downcast_ref::<kube::config::KubeconfigError>());
    let Some(kubeconfig) = kubeconfig else {
        return text;
    };
    let in_cluster = text
        .strip_prefix("failed to infer config: in-cluster: (")
        .and_then(|rest| rest.strip_suffix(&format!("), kubeconfig: ({kubeconfig})")));
    match in_cluster {
        Some(in_cluster) => format!(
            "not in a cluster ({in_cluster}), and no kubeconfig ({})",
            kubeconfig_reason(kubeconfig, None)
        ),
        None => text,
    }
}

/// What to watch, and how patiently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchSettings {
    /// Namespaces to watch; empty means every namespace.
    pub namespaces: Vec<String>,
    /// A label selector applied to Services and EndpointSlices, e.g. `peerdns.io/serve=true`.
    pub label_selector: Option<String>,
    /// Longest wait between retries of a failing watch (see [`retry`]).
    pub max_backoff: Duration,
    /// A request that hears nothing at all for this long (no event, no bookmark, no byte) is
    /// failed, so a stalled watch is replaced.
    pub idle_timeout: Duration,
    /// How long a ready endpoint that vanishes from its slice keeps answering, so a move
    /// between slices written removal-first never blinks out.
    pub departure_grace: Duration,
}

impl Default for WatchSettings {
    fn default() -> Self {
        Self {
            namespaces: Vec::new(),
            label_selector: None,
            max_backoff: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(90),
            departure_grace: Duration::from_millis(500),
        }
    }
}

/// How often departed endpoints are checked for the end of their grace.
const DEPARTURE_TICK: Duration = Duration::from_millis(100);

/// The server-side timeout (`timeoutSeconds`) each watch asks for: the API server ends the
/// watch cleanly within five minutes and the watcher resumes it from its resourceVersion.
/// kube-runtime's own client-side guard is this plus 5 s, so peerdns's idle timeout (at most
/// [`MAX_IDLE_TIMEOUT`]) always fires first on a silent watch.
pub const WATCH_TIMEOUT_SECS: u32 = 290;

/// The longest accepted idle timeout: the watch's own server-side timeout.
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(WATCH_TIMEOUT_SECS as u64);

/// How long connecting to the API server (TCP and TLS) may take before the attempt fails and
/// is retried: a connection that takes longer goes to a dead address (kube's default is 30 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads the client configuration from a kubeconfig file, or by inference: in-cluster service
/// account, then `KUBECONFIG`, then `~/.kube/config`.
pub async fn client_config(kubeconfig: Option<&Path>) -> Result<kube::Config, ClientError> {
    Ok(match kubeconfig {
        Some(path) => {
            let wrap = |reason| ClientError::Kubeconfig {
                path: path.to_path_buf(),
                reason,
            };
            let file = kube::config::Kubeconfig::read_from(path).map_err(wrap)?;
            let options = kube::config::KubeConfigOptions::default();
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(wrap)?
        }
        None => kube::Config::infer().await?,
    })
}

/// Builds a client the way the watch streams do (without their HTTP layer): checks the
/// credentials and TLS settings without contacting the API.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, ClientError> {
    let config = client_config(kubeconfig).await?;
    Ok(ClientBuilder::try_from(stream_client_config(config))?.build())
}

/// The client configuration every watch stream uses: kube's own request retries off (the
/// supervisor's policy is the only one), and a short connect timeout.
fn stream_client_config(mut config: kube::Config) -> kube::Config {
    config.default_retry = false;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config
}

/// The streams to watch for `settings`, in the order of the returned scopes.
pub fn scopes(settings: &WatchSettings) -> Vec<StreamScope> {
    let namespaces: Vec<Option<String>> = if settings.namespaces.is_empty() {
        vec![None]
    } else {
        settings.namespaces.iter().cloned().map(Some).collect()
    };
    namespaces
        .into_iter()
        .flat_map(|namespace| {
            [WatchedKind::Services, WatchedKind::EndpointSlices].map(|kind| StreamScope {
                kind,
                namespace: namespace.clone(),
            })
        })
        .collect()
}

/// The Kubernetes source, connected (one client per stream) but not yet running.
pub struct Watch {
    streams: Vec<BoxStream<'static, (usize, Change)>>,
    scopes: Vec<StreamScope>,
    stats: Arc<SourceStats>,
    departure_grace: Duration,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// Builds the watch streams of `settings` against the API server of `config`. Must be called
/// within a Tokio runtime (each client starts a task).
pub fn connect(config: kube::Config, settings: &WatchSettings) -> Result<Watch, ClientError> {
    let config = stream_client_config(config);
    let server: Arc<str> = config.cluster_url.to_string().into();
    let scopes = scopes(settings);
    let health: Vec<Arc<StreamHealth>> = scopes
        .iter()
        .map(|scope| Arc::new(StreamHealth::new(scope.clone())))
        .collect();
    let mut watcher_config = watcher::Config::default().timeout(WATCH_TIMEOUT_SECS);
    if let Some(selector) = &settings.label_selector {
        watcher_config = watcher_config.labels(selector);
    }
    let policy = RetryPolicy::capped_at(settings.max_backoff);
    let mut streams = Vec::with_capacity(scopes.len());
    for (id, (scope, health)) in scopes.iter().zip(&health).enumerate() {
        let observe = transport::Observe::new(health.clone(), settings.idle_timeout);
        let client = ClientBuilder::try_from(config.clone())?
            .with_layer(&observe)
            .build();
        let items = watcher_items(&client, scope, &watcher_config);
        let supervisor = Supervisor::new(
            items,
            health.clone(),
            Backoff::seeded(policy, id),
            server.clone(),
        );
        streams.push(supervisor.into_changes(id).boxed());
    }
    Ok(Watch {
        streams,
        scopes,
        stats: Arc::new(SourceStats::new(server, health)),
        departure_grace: settings.departure_grace,
    })
}

/// One stream's raw watcher items.
fn watcher_items(
    client: &Client,
    scope: &StreamScope,
    config: &watcher::Config,
) -> supervisor::WatcherItems {
    fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match namespace {
            Some(namespace) => Api::namespaced(client.clone(), namespace),
            None => Api::all(client.clone()),
        }
    }
    let namespace = scope.namespace.as_deref();
    match scope.kind {
        WatchedKind::Services => changes(
            watcher(api::<core::Service>(client, namespace), config.clone()),
            |event| Change::Service(Box::new(event)),
        ),
        WatchedKind::EndpointSlices => changes(
            watcher(
                api::<discovery::EndpointSlice>(client, namespace),
                config.clone(),
            ),
            |event| Change::Slice(Box::new(event)),
        ),
    }
}

fn changes<K: Send + 'static>(
    stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    wrap: fn(watcher::Event<K>) -> Change,
) -> supervisor::WatcherItems {
    stream.map(move |event| event.map(wrap)).boxed()
}

impl Watch {
    /// The source's counters and per-stream health, for metrics and `/debug/source`.
    pub fn stats(&self) -> Arc<SourceStats> {
        self.stats.clone()
    }

    /// Watches the cluster and feeds `writer` until `shutdown` completes.
    pub async fn run(self, writer: IndexWriter, shutdown: impl std::future::Future<Output = ()>) {
        let mut events = futures::stream::select_all(self.streams);
        let mut writer = writer;
        writer.set_departure_grace(self.departure_grace);
        let mut synchronizer = Synchronizer::new(writer, self.scopes, self.stats);
        let mut ticks = tokio::time::interval(DEPARTURE_TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            let next = tokio::select! {
                next = events.next() => next,
                _ = ticks.tick() => {
                    synchronizer.expire_departures(Instant::now());
                    continue;
                }
                () = &mut shutdown => return,
            };
            let Some((id, change)) = next else { return };
            synchronizer.handle(id, change, Instant::now());
        }
    }
}
