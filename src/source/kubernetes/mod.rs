//! The Kubernetes source (DESIGN.md S1): kube-runtime watchers on Services and EndpointSlices.
//!
//! ```text
//!  watcher(Api<Service>)       \                                 (one pair per namespace,
//!  watcher(Api<EndpointSlice>)  }-- select_all --> Synchronizer --> IndexWriter
//!  ...                         /     (stream id, event)             or one cluster-wide)
//! ```
//!
//! Objects are converted to model types as they arrive and dropped. Watch errors back off
//! (kube-runtime's default backoff) and are retried forever, logged with what failed; while the
//! API is away the last state keeps being served. Read-only: no request here writes.
//!
//! Invariant: one task owns the [`Synchronizer`] (and so the index writer); event order within
//! a stream is kept.

pub mod freshness;
pub mod sync;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt, stream::BoxStream};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use kube::runtime::utils::ResetTimerBackoff;
use kube::runtime::watcher::ExponentialBackoff;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tracing::warn;

use crate::index::IndexWriter;
pub use freshness::{LatencyHistogram, SourceStats};
pub use sync::{Change, StreamScope, Synchronizer, WatchedKind};

/// Why a Kubernetes client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig file could not be read or parsed.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        source: kube::config::KubeconfigError,
    },
    /// No configuration could be inferred (not in a cluster, no KUBECONFIG, no ~/.kube/config).
    #[error("no Kubernetes credentials: {0}")]
    Infer(#[from] kube::config::InferConfigError),
    /// The client could not be built from the configuration.
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// What to watch, and how patiently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchSettings {
    /// Namespaces to watch; empty means every namespace.
    pub namespaces: Vec<String>,
    /// A label selector applied to Services and EndpointSlices, e.g. `peerdns.io/serve=true`.
    pub label_selector: Option<String>,
    /// Longest wait between retries of a failing watch (retries start at 800 ms or this,
    /// whichever is shorter, and double).
    pub max_backoff: Duration,
    /// How long a ready endpoint that vanishes from its slice keeps answering, so a move
    /// between slices written removal-first never blinks out.
    pub departure_grace: Duration,
}

impl Default for WatchSettings {
    fn default() -> Self {
        Self {
            namespaces: Vec::new(),
            label_selector: None,
            max_backoff: Duration::from_secs(30),
            departure_grace: Duration::from_millis(500),
        }
    }
}

/// How often departed endpoints are checked for the end of their grace.
const DEPARTURE_TICK: Duration = Duration::from_millis(100);

/// kube-runtime's exponential backoff with jitter, capped at `max`, reset after two quiet
/// minutes.
fn backoff(max: Duration) -> ResetTimerBackoff<ExponentialBackoff> {
    let first = Duration::from_millis(800).min(max);
    ResetTimerBackoff::new(
        ExponentialBackoff::from(
            backon::ExponentialBuilder::default()
                .with_min_delay(first)
                .with_max_delay(max)
                .with_factor(2.0)
                .with_jitter()
                .without_max_times(),
        ),
        Duration::from_secs(120),
    )
}

/// Builds a client from a kubeconfig file, or by inference: in-cluster service account, then
/// `KUBECONFIG`, then `~/.kube/config`.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, ClientError> {
    let config = match kubeconfig {
        Some(path) => {
            let wrap = |source| ClientError::Kubeconfig {
                path: path.to_path_buf(),
                source,
            };
            let file = kube::config::Kubeconfig::read_from(path).map_err(wrap)?;
            let options = kube::config::KubeConfigOptions::default();
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(wrap)?
        }
        None => kube::Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
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

type Tagged = (usize, Result<Change, watcher::Error>);

fn stream_for(
    client: &Client,
    scope: &StreamScope,
    id: usize,
    config: &watcher::Config,
    max_backoff: Duration,
) -> BoxStream<'static, Tagged> {
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
        WatchedKind::Services => tag(
            watcher(api::<core::Service>(client, namespace), config.clone())
                .backoff(backoff(max_backoff)),
            id,
            |event| Change::Service(Box::new(event)),
        ),
        WatchedKind::EndpointSlices => tag(
            watcher(
                api::<discovery::EndpointSlice>(client, namespace),
                config.clone(),
            )
            .default_backoff(),
            id,
            |event| Change::Slice(Box::new(event)),
        ),
    }
}

fn tag<K: Send + 'static>(
    stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    id: usize,
    wrap: fn(watcher::Event<K>) -> Change,
) -> BoxStream<'static, Tagged> {
    stream.map(move |event| (id, event.map(wrap))).boxed()
}

/// Watches the cluster and feeds `writer` until `shutdown` completes.
pub async fn run(
    client: Client,
    settings: WatchSettings,
    writer: IndexWriter,
    stats: Arc<SourceStats>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let scopes = scopes(&settings);
    let mut config = watcher::Config::default();
    if let Some(selector) = &settings.label_selector {
        config = config.labels(selector);
    }
    let streams: Vec<_> = scopes
        .iter()
        .enumerate()
        .map(|(id, scope)| stream_for(&client, scope, id, &config, settings.max_backoff))
        .collect();
    let mut events = futures::stream::select_all(streams);
    let mut writer = writer;
    writer.set_departure_grace(settings.departure_grace);
    let mut synchronizer = Synchronizer::new(writer, scopes.clone(), stats.clone());
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
        let Some((id, event)) = next else { return };
        match event {
            Ok(change) => synchronizer.handle(id, change, Instant::now()),
            Err(error) => {
                stats.record_api_error();
                let scope = &scopes[id];
                warn!(%error, kind = ?scope.kind, namespace = scope.namespace.as_deref().unwrap_or("*"), "watch failed; retrying with backoff");
            }
        }
    }
}
