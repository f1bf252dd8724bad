//! The configuration file (TOML) and the command-line overrides laid over it.
//!
//! Every field has a doc line and a default, so an empty file is a valid configuration; unknown
//! keys are rejected with their name (`deny_unknown_fields`). Relative paths in the file are
//! resolved against the file's own directory, so `peerdns --config /etc/peerdns/peerdns.toml`
//! finds its cluster file wherever it is started from. A file that is not TOML for this schema
//! is a [`ParseError`] on one line, `FILE:LINE:COLUMN: KEY: MESSAGE` (the key dotted, as
//! `dns.zones[1]`, when the text parses far enough to find it). [`Config::validate`] checks
//! what serde cannot (zone names, ranges) and names the offending field.
//!
//! Invariant: a config that validates never makes the server panic (durations are bounded so
//! deadlines cannot overflow, counts that must be positive are).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::rr::Name;
use ipnet::IpNet;
use serde::Deserialize;

/// A configuration error, naming the file or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read config file: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown key, wrong type, ...): shown as
    /// `FILE:LINE:COLUMN: KEY: MESSAGE`.
    #[error("{path}{sep}{source}", sep = .source.separator())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's error, which names the key and line.
        source: ParseError,
    },
    /// A field holds a value that parses but makes no sense.
    #[error("config field {field}: {reason}")]
    Invalid {
        /// Dotted path of the field, e.g. `dns.zones[1]`.
        field: String,
        /// Why the value is refused.
        reason: String,
    },
}

/// Why TOML text is not a configuration, on one line: where (1-based line and column), the
/// dotted key at fault when the text parses far enough to tell (`dns.positive_ttl`,
/// `dns.zones[1]`), and the parser's message without its multi-line snippet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{}{message}", self.location_prefix(), self.key_prefix())]
pub struct ParseError {
    /// Line and column (1-based, in characters) of the fault, when the parser gives one.
    pub location: Option<(usize, usize)>,
    /// The dotted key whose name or value is at fault, when one is found.
    pub key: Option<String>,
    /// The parser's message (`unknown field ...`, `invalid type ...`).
    pub message: String,
}

impl ParseError {
    /// Locates `error`, the parser's error for `text`.
    fn new(error: &toml::de::Error, text: &str) -> Self {
        let message = error
            .message()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let offset = error.span().map(|span| span.start);
        let location = offset.and_then(|offset| {
            let before = text.get(..offset)?;
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            let line = before.matches('\n').count() + 1;
            Some((line, before[line_start..].chars().count() + 1))
        });
        let key = offset.and_then(|offset| key_at(text, offset));
        Self {
            location,
            key,
            message,
        }
    }

    /// What goes between a file's name and this error: `:` before `LINE:COLUMN`, else `: `.
    fn separator(&self) -> &'static str {
        match self.location {
            Some(_) => ":",
            None => ": ",
        }
    }

    fn location_prefix(&self) -> String {
        match self.location {
            Some((line, column)) => format!("{line}:{column}: "),
            None => String::new(),
        }
    }

    fn key_prefix(&self) -> String {
        match &self.key {
            Some(key) => format!("{key}: "),
            None => String::new(),
        }
    }
}

/// The dotted key whose name or value holds byte `offset` of `text` (array items as `[i]`),
/// when `text` parses as TOML.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let table = toml::de::DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    find_in_table(table.get_ref(), offset, &mut path).then(|| path.join("."))
}

fn find_in_table(table: &toml::de::DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table.iter() {
        path.push(key.get_ref().to_string());
        if key.span().contains(&offset) || find_in_value(value, offset, path) {
            return true;
        }
        path.pop();
    }
    false
}

/// Whether `value` (whose key ends `path`) holds `offset`, extending `path` to the innermost
/// key or array item that does.
fn find_in_value(
    value: &toml::Spanned<toml::de::DeValue<'_>>,
    offset: usize,
    path: &mut Vec<String>,
) -> bool {
    match value.get_ref() {
        toml::de::DeValue::Table(table) => {
            find_in_table(table, offset, path) || value.span().contains(&offset)
        }
        toml::de::DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if item.span().contains(&offset) {
                    if let Some(last) = path.last_mut() {
                        last.push_str(&format!("[{i}]"));
                    }
                    if let toml::de::DeValue::Table(table) = item.get_ref() {
                        find_in_table(table, offset, path);
                    }
                    return true;
                }
            }
            value.span().contains(&offset)
        }
        _ => value.span().contains(&offset),
    }
}

/// Why a zone name cannot be served.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ZoneNameError {
    /// `.` or empty.
    #[error("the root zone cannot be served")]
    Root,
    /// An empty label, a label over 63 bytes, or a character other than letters, digits, `-`
    /// and `_`.
    #[error("not a valid domain name")]
    Invalid,
    /// Valid labels that still make no name (over 255 bytes).
    #[error("{0}")]
    TooLong(String),
}

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// DNS serving: listeners, zones, TTLs, sizes.
    pub dns: DnsConfig,
    /// Where the cluster state comes from.
    pub source: SourceConfig,
    /// The admin HTTP listener and shutdown.
    pub admin: AdminConfig,
    /// Limits against hostile traffic: TCP connections, response rate limiting.
    pub limits: LimitsConfig,
    /// Logging.
    pub log: LogConfig,
    /// Zone transfers to secondaries (R14); left out: AXFR and IXFR are REFUSED.
    pub transfer: Option<TransferConfig>,
}

/// Zone transfers (`[transfer]`): who may pull the zones, who is told of changes.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TransferConfig {
    /// Networks (CIDRs) whose clients may AXFR and IXFR over TCP; empty: nobody.
    pub allow: Vec<IpNet>,
    /// Secondaries sent a NOTIFY (RFC 1996) whenever a zone's serial changes.
    pub notify: Vec<SocketAddr>,
    /// A TSIG key (RFC 8945) that transfer requests must be signed with.
    pub tsig_key_file: Option<PathBuf>,
    /// Serial steps kept for IXFR (each holds the changed Service's replaced records); an
    /// IXFR from an older serial gets the whole zone.
    pub ixfr_history: usize,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            notify: Vec::new(),
            tsig_key_file: None,
            ixfr_history: 1000,
        }
    }
}

/// Most serial steps `transfer.ixfr_history` may keep.
const MAX_IXFR_HISTORY: usize = 1_000_000;

/// The admin HTTP listener (`/livez`, `/readyz`, `/metrics`, `/debug/explain`) and shutdown.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin HTTP listener.
    pub listen: SocketAddr,
    /// Milliseconds between SIGTERM turning `/readyz` to 503 and the listeners closing, so load
    /// balancers stop sending queries first.
    pub lame_duck_ms: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9153)),
            lame_duck_ms: 0,
        }
    }
}

/// How SRV targets of headless Services are named (R3).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SrvTargetStyle {
    /// The endpoint's hostname, else its dashed IP (what CoreDNS does).
    #[default]
    Hostname,
    /// The endpoint's hostname, else its pod name, else its dashed IP.
    PodName,
}

/// DNS serving settings.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Addresses to serve on; each gets a UDP socket and a TCP listener.
    pub listen: Vec<SocketAddr>,
    /// Forward zones served (the cluster domain, or a custom zone such as `peers.example`).
    pub zones: Vec<String>,
    /// Reverse zones served for PTR answers (R7).
    pub reverse_zones: Vec<String>,
    /// TTL in seconds of every positive answer.
    pub positive_ttl: u32,
    /// TTL in seconds of negative answers: the SOA's TTL and its minimum field (R9).
    pub negative_ttl: u32,
    /// Largest UDP answer in bytes, whatever larger size a client's EDNS offers (R12).
    pub max_udp_payload: u16,
    /// Addresses published as glue for `ns.dns.<zone>` (R8); empty: the listen addresses that
    /// are not wildcards.
    pub nameserver_addresses: Vec<IpAddr>,
    /// How SRV targets are named when an endpoint has no hostname.
    pub srv_target: SrvTargetStyle,
    /// Whether every Service's not-ready endpoints (not terminating) answer their own names,
    /// as the `peerdns.io/not-ready-names` annotation asks for one Service (R15).
    pub not_ready_names: bool,
    /// Runtime worker threads (at most 1024); 0 means one per CPU core.
    pub workers: usize,
    /// Seconds a TCP connection may stay idle between queries before it is closed.
    pub tcp_idle_timeout_secs: u64,
    /// Microseconds a UDP worker holds before its next receive under sustained load (receive
    /// coalescing, `dns::udp`); 0 turns it off.
    pub udp_coalesce_us: u64,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 5353))],
            zones: vec!["cluster.local".to_string()],
            reverse_zones: vec!["in-addr.arpa".to_string(), "ip6.arpa".to_string()],
            positive_ttl: 5,
            negative_ttl: 1,
            max_udp_payload: 1232,
            nameserver_addresses: Vec::new(),
            srv_target: SrvTargetStyle::Hostname,
            not_ready_names: false,
            workers: 0,
            tcp_idle_timeout_secs: 10,
            udp_coalesce_us: 150,
        }
    }
}

/// Limits against hostile traffic (issue 6): how many TCP connections, for how long, and
/// response rate limiting (RRL) per client prefix over UDP.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// TCP connections open at once over every listener; one more is accepted and closed at
    /// once (so its client learns at once and can retry elsewhere).
    pub tcp_max_connections: usize,
    /// Seconds a TCP connection may stay open in all, however busy, before it is closed.
    pub tcp_max_connection_secs: u64,
    /// Queries answered on one TCP connection before it is closed; 0 means no limit.
    pub tcp_max_queries_per_connection: u32,
    /// UDP responses per second to one client prefix (/24 IPv4, /56 IPv6); 0 turns rate
    /// limiting off. TCP is never rate limited.
    pub rrl_responses_per_second: u32,
    /// Of the responses over the rate, every Nth is sent empty with TC set (so a real client
    /// retries over TCP) instead of dropped; 0 drops them all.
    pub rrl_slip: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            tcp_max_connections: 1000,
            tcp_max_connection_secs: 120,
            tcp_max_queries_per_connection: 0,
            rrl_responses_per_second: 0,
            rrl_slip: 2,
        }
    }
}

/// Largest accepted value of a field counted in seconds (one year), so deadlines never overflow.
const MAX_SECS: u64 = 365 * 24 * 3600;

/// Most runtime worker threads `dns.workers` may ask for: far more than any machine has cores
/// (a start asking for millions would spend minutes creating threads before failing).
const MAX_WORKERS: usize = 1024;

/// Largest accepted `dns.udp_coalesce_us` (1 ms). What arrives during a hold waits in the
/// socket's receive buffer (about 500 small datagrams, `dns::udp::bind_shared`): at 1 ms that
/// takes over 400k queries per second, more than a worker answers, and a worker that falls
/// behind receives full batches and stops holding.
const MAX_COALESCE_US: u64 = 1_000;

/// Shortest accepted `source.kubernetes.max_backoff_ms`: retrying a failing API faster than
/// ten times a second per watch helps nobody.
const MIN_BACKOFF_MS: u64 = 100;
/// Longest accepted `source.kubernetes.max_backoff_ms` (5 minutes).
const MAX_BACKOFF_MS: u64 = 300_000;
/// Shortest accepted `source.kubernetes.watch_idle_timeout_ms`: below a second, ordinary
/// latency would look like a stall.
const MIN_IDLE_TIMEOUT_MS: u64 = 1_000;
/// Longest accepted `source.kubernetes.watch_idle_timeout_ms`: the watches' server-side
/// timeout (290 s), past which kube-runtime's own guard replaces a silent watch anyway.
const MAX_IDLE_TIMEOUT_MS: u64 = 290_000;

/// Which source feeds the index.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The static cluster file.
    #[default]
    File,
    /// A live cluster, watched through the Kubernetes API.
    Kubernetes,
}

/// Where cluster state comes from.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SourceConfig {
    /// `file` (the static cluster file) or `kubernetes` (watch the API).
    pub kind: SourceKind,
    /// The static cluster file (Kubernetes YAML), watched for edits.
    pub file: PathBuf,
    /// Pod CIDRs (one per IP family) that StatefulSet pods in the file get addresses from.
    pub pod_cidrs: Vec<IpNet>,
    /// How often, in milliseconds, the file is checked for edits.
    pub poll_interval_ms: u64,
    /// The Kubernetes API source.
    pub kubernetes: KubernetesConfig,
}

/// The Kubernetes API source: credentials and what to watch.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesConfig {
    /// A kubeconfig file; unset: the in-cluster service account, else KUBECONFIG, else
    /// ~/.kube/config.
    pub kubeconfig: Option<PathBuf>,
    /// Namespaces to watch; empty: every namespace.
    pub namespaces: Vec<String>,
    /// A label selector for Services and EndpointSlices (e.g. `peerdns.io/serve=true`).
    pub label_selector: Option<String>,
    /// Longest wait, in milliseconds, between retries of a failing watch: every watch stream
    /// retries after at most 200 ms first, then twice as late each time, up to this.
    pub max_backoff_ms: u64,
    /// Milliseconds a watch may hear nothing at all (no event, no bookmark, no byte) before it
    /// is dropped and resumed from its last resourceVersion.
    pub watch_idle_timeout_ms: u64,
    /// Milliseconds a ready endpoint that vanishes from its slice (without turning not-ready
    /// first) keeps answering, so a move between slices never blinks out; 0 turns it off.
    pub departure_grace_ms: u64,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            kubeconfig: None,
            namespaces: Vec::new(),
            label_selector: None,
            max_backoff_ms: 3_000,
            watch_idle_timeout_ms: 90_000,
            departure_grace_ms: 500,
        }
    }
}

impl Default for SourceConfig {
    fn default() -> Self {
        Self {
            kind: SourceKind::File,
            kubernetes: KubernetesConfig::default(),
            file: PathBuf::from("cluster.yaml"),
            pod_cidrs: vec![IpNet::from(ipnet::Ipv4Net::new_assert(
                std::net::Ipv4Addr::new(10, 244, 0, 0),
                16,
            ))],
            poll_interval_ms: 250,
        }
    }
}

impl SourceConfig {
    /// The poll interval as a duration.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Logging settings.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `peerdns=debug` (`RUST_LOG` overrides it).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info".to_string(),
        }
    }
}

impl Config {
    /// Reads and parses a config file; relative paths in it become relative to its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        if config.source.file.is_relative() {
            config.source.file = base.join(&config.source.file);
        }
        if let Some(kubeconfig) = &mut config.source.kubernetes.kubeconfig
            && kubeconfig.is_relative()
        {
            *kubeconfig = base.join(&*kubeconfig);
        }
        if let Some(key) = config
            .transfer
            .as_mut()
            .and_then(|t| t.tsig_key_file.as_mut())
            && key.is_relative()
        {
            *key = base.join(&*key);
        }
        Ok(config)
    }

    /// Parses TOML text, with no path resolution.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        toml::from_str(text).map_err(|error| ParseError::new(&error, text))
    }

    /// Checks values serde cannot: non-empty lists, valid zone names, sane numbers.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: String, reason: &str| ConfigError::Invalid {
            field,
            reason: reason.to_string(),
        };
        if self.dns.listen.is_empty() {
            return Err(invalid(
                "dns.listen".into(),
                "at least one address is needed",
            ));
        }
        if self.dns.zones.is_empty() {
            return Err(invalid("dns.zones".into(), "at least one zone is needed"));
        }
        let all_zones = self.dns.zones.iter().map(|z| ("dns.zones", z));
        let reverse = self
            .dns
            .reverse_zones
            .iter()
            .map(|z| ("dns.reverse_zones", z));
        for (index, (field, zone)) in all_zones.chain(reverse).enumerate() {
            if let Err(reason) = parse_zone_name(zone) {
                let reason = reason.to_string();
                return Err(invalid(format!("{field}[{index}] ({zone:?})"), &reason));
            }
        }
        if self.dns.max_udp_payload < 512 {
            return Err(invalid(
                "dns.max_udp_payload".into(),
                "must be at least 512",
            ));
        }
        if self.dns.workers > MAX_WORKERS {
            let reason = format!("must be at most {MAX_WORKERS} (0: one per core)");
            return Err(invalid("dns.workers".into(), &reason));
        }
        if self.dns.udp_coalesce_us > MAX_COALESCE_US {
            let reason = format!("must be at most {MAX_COALESCE_US} (microseconds)");
            return Err(invalid("dns.udp_coalesce_us".into(), &reason));
        }
        let seconds = [
            ("dns.tcp_idle_timeout_secs", self.dns.tcp_idle_timeout_secs),
            (
                "limits.tcp_max_connection_secs",
                self.limits.tcp_max_connection_secs,
            ),
        ];
        for (field, value) in seconds {
            if !(1..=MAX_SECS).contains(&value) {
                let reason = format!("must be between 1 and {MAX_SECS}");
                return Err(invalid(field.into(), &reason));
            }
        }
        if self.limits.tcp_max_connections == 0 {
            return Err(invalid(
                "limits.tcp_max_connections".into(),
                "must be at least 1",
            ));
        }
        let kubernetes = &self.source.kubernetes;
        let milliseconds = [
            (
                "source.kubernetes.max_backoff_ms",
                kubernetes.max_backoff_ms,
                MIN_BACKOFF_MS..=MAX_BACKOFF_MS,
            ),
            (
                "source.kubernetes.watch_idle_timeout_ms",
                kubernetes.watch_idle_timeout_ms,
                MIN_IDLE_TIMEOUT_MS..=MAX_IDLE_TIMEOUT_MS,
            ),
        ];
        for (field, value, range) in milliseconds {
            if !range.contains(&value) {
                let reason = format!(
                    "must be between {} and {} (milliseconds)",
                    range.start(),
                    range.end()
                );
                return Err(invalid(field.into(), &reason));
            }
        }
        if self
            .transfer
            .as_ref()
            .is_some_and(|t| t.ixfr_history > MAX_IXFR_HISTORY)
        {
            let reason = format!("must be at most {MAX_IXFR_HISTORY}");
            return Err(invalid("transfer.ixfr_history".into(), &reason));
        }
        if self.source.poll_interval_ms == 0 {
            return Err(invalid(
                "source.poll_interval_ms".into(),
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Parses a zone name such as `cluster.local` or `cluster.local.` into a lowercase FQDN.
pub fn parse_zone_name(zone: &str) -> Result<Name, ZoneNameError> {
    let trimmed = zone.trim_end_matches('.');
    if trimmed.is_empty() {
        return Err(ZoneNameError::Root);
    }
    let valid = trimmed.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if !valid {
        return Err(ZoneNameError::Invalid);
    }
    Name::from_ascii(format!("{trimmed}."))
        .map(|name| name.to_lowercase())
        .map_err(|error| ZoneNameError::TooLong(error.to_string()))
}

#[cfg(test)]
mod tests;
