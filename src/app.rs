//! Wires a [`Config`] into a running server: index, source, responder, transports.
//!
//! [`start`] is what the binary runs and what the end-to-end tests start on 127.0.0.1 port 0.
//! With the file source it loads the cluster file (a broken file at start is an error, not an
//! empty server), marks the index synced, and spawns the file watcher; with the Kubernetes
//! source it builds the client (missing credentials are an error at start) and spawns the
//! watchers, which mark the index synced after their first complete list. Then it binds every
//! listener and spawns the transports.
//! [`Running::stop`] cancels them and waits for in-flight queries to finish.
//!
//! Invariant: the index writer is moved into the one source task; nothing else can write.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::{AdminState, serve_admin};
use crate::config::{Config, ConfigError, SourceKind, parse_zone_name};
use crate::dns::transfer::TransferSettings;
use crate::dns::transfer::notify::spawn_notifiers;
use crate::dns::{
    Authority, Listeners, RateLimitSettings, Responder, ServerSettings, TcpLimits, serve,
};
use crate::index::{Index, IndexWriter};
use crate::metrics::{FileLoadStatus, Metrics};
use crate::model::{ClusterState, ServiceKind};
use crate::source;
use crate::source::kubernetes::{SourceStats, WatchSettings};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The cluster file could not be loaded.
    #[error("cluster file: {0}")]
    Source(#[from] source::file::FileError),
    /// The Kubernetes client could not be built.
    #[error("{0}")]
    Kubernetes(#[from] source::kubernetes::ClientError),
    /// A listener could not be bound.
    #[error("{0}")]
    Bind(#[from] std::io::Error),
    /// The TSIG key file could not be read.
    #[error("transfer.tsig_key_file: {0}")]
    TsigKey(#[from] crate::dns::tsig::KeyFileError),
}

/// A started server.
#[derive(Debug)]
pub struct Running {
    /// The bound DNS addresses (UDP and TCP share each), in listen order.
    pub addresses: Vec<SocketAddr>,
    /// A read handle on the served index.
    pub index: Index,
    /// `dig` commands that show real answers from the loaded cluster.
    pub examples: Vec<String>,
    /// The Kubernetes source's counters, when that source runs.
    pub watch_stats: Option<Arc<SourceStats>>,
    /// The bound admin HTTP address.
    pub admin_address: SocketAddr,
    /// What the admin endpoints read (readiness included).
    pub admin: Arc<AdminState>,
    lame_duck: Duration,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Running {
    /// A `Running` dropped without [`Running::stop`] (a panicking test, say) still stops its
    /// workers: cancelling an already cancelled token does nothing.
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Running {
    /// Graceful shutdown: `/readyz` turns 503 at once, queries keep being answered for the
    /// lame-duck delay, then the listeners close, in-flight queries finish, and every task ends.
    pub async fn shutdown(self) {
        self.admin.shutting_down.store(true, Ordering::Release);
        tracing::info!(
            lame_duck_ms = self.lame_duck.as_millis() as u64,
            "shutting down: not ready"
        );
        tokio::time::sleep(self.lame_duck).await;
        self.stop().await;
    }

    /// Stops at once: closes the listeners, lets in-flight queries finish, waits for every task.
    pub async fn stop(mut self) {
        self.admin.shutting_down.store(true, Ordering::Release);
        self.shutdown.cancel();
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

/// Builds the answer rules' settings from the config.
pub fn authority(config: &Config) -> Result<Authority, ConfigError> {
    let zones = |field: &str, names: &[String]| {
        names
            .iter()
            .enumerate()
            .map(|(i, zone)| {
                parse_zone_name(zone).map_err(|reason| ConfigError::Invalid {
                    field: format!("{field}[{i}]"),
                    reason: reason.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let mut nameserver_addresses = config.dns.nameserver_addresses.clone();
    if nameserver_addresses.is_empty() {
        nameserver_addresses = config
            .dns
            .listen
            .iter()
            .map(SocketAddr::ip)
            .filter(|ip| !ip.is_unspecified())
            .collect();
        nameserver_addresses.dedup();
    }
    Ok(Authority {
        zones: zones("dns.zones", &config.dns.zones)?,
        reverse_zones: zones("dns.reverse_zones", &config.dns.reverse_zones)?,
        positive_ttl: config.dns.positive_ttl,
        negative_ttl: config.dns.negative_ttl,
        nameserver_addresses,
    })
}

/// Who may transfer the zones and with which key, when `[transfer]` is configured (the key
/// file is read here).
pub fn transfer_settings(config: &Config) -> Result<Option<TransferSettings>, StartError> {
    let Some(transfer) = &config.transfer else {
        return Ok(None);
    };
    let key = match &transfer.tsig_key_file {
        Some(path) => Some(crate::dns::tsig::TsigKey::load(path)?),
        None => None,
    };
    Ok(Some(TransferSettings {
        allow: transfer.allow.clone(),
        key,
    }))
}

/// Starts serving `config` on the current Tokio runtime.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    config.validate()?;
    let authority = authority(config)?;
    let (index, mut writer) = Index::new(0, config.dns.srv_target);
    writer.set_not_ready_names(config.dns.not_ready_names);
    writer.set_history_limit(config.transfer.as_ref().map_or(0, |t| t.ixfr_history));
    let shutdown = CancellationToken::new();
    let listeners = Listeners::bind(&config.dns.listen).await?;
    let addresses = listeners.local_addresses();
    let metrics = Arc::new(Metrics::default());
    let source = match config.source.kind {
        SourceKind::File => {
            let status = metrics.file_load().clone();
            start_file_source(config, writer, addresses.first(), status, &shutdown)?
        }
        SourceKind::Kubernetes => start_kubernetes_source(config, writer, &shutdown).await?,
    };
    let mut responder = Responder::new(
        authority,
        index.clone(),
        config.dns.max_udp_payload,
        metrics.clone(),
    );
    let transfers = transfer_settings(config)?;
    let notify_key = transfers.as_ref().and_then(|t| t.key.clone());
    if let Some(transfers) = transfers {
        responder = responder.with_transfers(transfers);
    }
    let responder = Arc::new(responder);
    let server = tokio::spawn(serve(
        listeners,
        responder.clone(),
        server_settings(config),
        shutdown.clone(),
    ));
    let secondaries = config.transfer.as_ref().map(|t| t.notify.as_slice());
    let mut tasks = spawn_notifiers(
        secondaries.unwrap_or_default(),
        Arc::new(responder.authority().clone()),
        index.clone(),
        notify_key,
        metrics.clone(),
        shutdown.clone(),
    );
    let admin_listener = TcpListener::bind(config.admin.listen).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot bind admin {}: {e}", config.admin.listen),
        )
    })?;
    let admin_address = admin_listener.local_addr()?;
    let admin = Arc::new(AdminState {
        index: index.clone(),
        metrics,
        responder,
        source_kind: match config.source.kind {
            SourceKind::File => "file",
            SourceKind::Kubernetes => "kubernetes",
        },
        watch: source.stats.clone(),
        watched_namespaces: match config.source.kind {
            SourceKind::File => Vec::new(),
            SourceKind::Kubernetes => config.source.kubernetes.namespaces.clone(),
        },
        shutting_down: AtomicBool::new(false),
    });
    let admin_task = tokio::spawn(serve_admin(admin_listener, admin.clone(), shutdown.clone()));
    Ok(Running {
        addresses,
        admin_address,
        index,
        examples: source.examples,
        watch_stats: source.stats,
        admin,
        lame_duck: Duration::from_millis(config.admin.lame_duck_ms),
        shutdown,
        tasks: {
            tasks.extend([server, source.task, admin_task]);
            tasks
        },
    })
}

/// The transports' settings from the config: UDP loops, TCP limits, rate limiting.
pub fn server_settings(config: &Config) -> ServerSettings {
    let limits = &config.limits;
    ServerSettings {
        udp_loops: worker_count(config.dns.workers),
        udp_coalesce: Duration::from_micros(config.dns.udp_coalesce_us),
        tcp: TcpLimits {
            idle_timeout: Duration::from_secs(config.dns.tcp_idle_timeout_secs),
            max_connections: limits.tcp_max_connections,
            max_lifetime: Duration::from_secs(limits.tcp_max_connection_secs),
            max_queries: limits.tcp_max_queries_per_connection,
        },
        rate_limit: RateLimitSettings {
            responses_per_second: limits.rrl_responses_per_second,
            slip: limits.rrl_slip,
        },
    }
}

/// A started source.
struct StartedSource {
    task: JoinHandle<()>,
    /// `dig` commands answering from the state loaded at start (file source only).
    examples: Vec<String>,
    stats: Option<Arc<SourceStats>>,
}

fn start_file_source(
    config: &Config,
    mut writer: IndexWriter,
    address: Option<&SocketAddr>,
    status: Arc<FileLoadStatus>,
    shutdown: &CancellationToken,
) -> Result<StartedSource, StartError> {
    let path: PathBuf = config.source.file.clone();
    let cidrs = config.source.pod_cidrs.clone();
    let (loaded, seen) = source::file::load_seen(&path, &cidrs)?;
    let state = loaded.state;
    tracing::info!(
        file = %path.display(),
        services = state.services.len(),
        slices = state.slices.len(),
        ignored = loaded.ignored.len(),
        "cluster file loaded"
    );
    status.loaded(loaded.ignored.iter().map(ToString::to_string).collect());
    let zone = config.dns.zones[0]
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let examples = example_queries(&state, &zone, address);
    // The load freed several times what the index keeps: `load_all` gives it back now.
    let mut state = state;
    state.version = file_version(&path);
    writer.load_all(state);
    writer.mark_synced();
    let watched = path.clone();
    let task = tokio::spawn(source::file::watch_from(
        path,
        cidrs,
        config.source.poll_interval(),
        Some(seen),
        status,
        move |mut state: ClusterState| {
            state.version = file_version(&watched);
            writer.load_all(state);
        },
        shutdown.clone().cancelled_owned(),
    ));
    Ok(StartedSource {
        task,
        examples,
        stats: None,
    })
}

async fn start_kubernetes_source(
    config: &Config,
    writer: IndexWriter,
    shutdown: &CancellationToken,
) -> Result<StartedSource, StartError> {
    let settings = &config.source.kubernetes;
    let client_config = source::kubernetes::client_config(settings.kubeconfig.as_deref()).await?;
    let watch = WatchSettings {
        namespaces: settings.namespaces.clone(),
        label_selector: settings.label_selector.clone(),
        max_backoff: Duration::from_millis(settings.max_backoff_ms),
        idle_timeout: Duration::from_millis(settings.watch_idle_timeout_ms),
        departure_grace: Duration::from_millis(settings.departure_grace_ms),
    };
    let watch = source::kubernetes::connect(client_config, &watch)?;
    let stats = watch.stats();
    tracing::info!(
        server = &*stats.server,
        namespaces = ?settings.namespaces,
        selector = settings.label_selector.as_deref().unwrap_or(""),
        "watching the Kubernetes API; negative answers are SERVFAIL until the first list"
    );
    let task = tokio::spawn(watch.run(writer, shutdown.clone().cancelled_owned()));
    Ok(StartedSource {
        task,
        examples: Vec::new(),
        stats: Some(stats),
    })
}

/// Worker threads to use: the configured number, or one per core for 0.
pub fn worker_count(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The cluster file's version: its modification time in seconds, so replicas serving the
/// same file report the same serial and a restart keeps it (R8).
fn file_version(path: &std::path::Path) -> Option<u64> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(modified.duration_since(UNIX_EPOCH).ok()?.as_secs())
}

/// Two `dig` commands answering from the loaded cluster: the first headless Service with a
/// ready named endpoint (SRV) and that endpoint (A).
fn example_queries(state: &ClusterState, zone: &str, address: Option<&SocketAddr>) -> Vec<String> {
    let Some(address) = address else {
        return Vec::new();
    };
    let server = match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
        IpAddr::V6(ip) if ip.is_unspecified() => "::1".to_string(),
        ip => ip.to_string(),
    };
    let dig =
        |name: String, rtype: &str| format!("dig @{server} -p {} {rtype} {name}", address.port());
    let mut headless: Vec<_> = state
        .services
        .iter()
        .filter(|s| s.kind == ServiceKind::Headless)
        .collect();
    headless.sort_by(|a, b| a.key.cmp(&b.key));
    for service in headless {
        let hostname = state
            .slices
            .iter()
            .filter(|slice| slice.service == service.key)
            .flat_map(|slice| &slice.endpoints)
            .filter(|endpoint| endpoint.ready)
            .filter_map(|endpoint| endpoint.hostname.as_deref())
            .min();
        if let Some(hostname) = hostname {
            let base = format!("{}.{}.svc.{zone}", service.key.name, service.key.namespace);
            return vec![
                dig(base.clone(), "SRV"),
                dig(format!("{hostname}.{base}"), "A"),
            ];
        }
    }
    Vec::new()
}
