//! Query metrics and their Prometheus text rendering.
//!
//! [`Metrics`] is built once and shared: the query path records with array-indexed atomics
//! (no string formatting, no lock, no allocation); [`render`] formats everything, including
//! the index size and the source state, only when `/metrics` is scraped.
//!
//! Invariant: every label value is a fixed `&'static str` chosen by index, so the set of time
//! series is bounded whatever clients send.

mod histogram;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

pub use histogram::{BUCKETS, LatencyHistogram};

use crate::dns::Transport;
use crate::index::Index;
use crate::source::kubernetes::failure::FailureCause;
use crate::source::kubernetes::health::unix_ms_now;
use crate::source::kubernetes::{SourceStats, StreamHealth, WatchState};

/// Query types counted by name; everything else is `other`.
const QTYPES: [&str; 10] = [
    "A", "AAAA", "SRV", "PTR", "TXT", "SOA", "NS", "CNAME", "ANY", "other",
];
/// Response codes counted by name; everything else is `other`.
const RCODES: [&str; 8] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "other",
];
const TRANSPORTS: [&str; 2] = ["udp", "tcp"];
/// What response rate limiting did with a response over the rate.
const LIMITED_ACTIONS: [&str; 2] = ["dropped", "slipped"];

/// What response rate limiting did with one UDP response over its client's rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateLimited {
    /// Not sent at all.
    Dropped,
    /// Sent empty with TC set, so the client retries over TCP.
    Slipped,
}

fn qtype_index(rtype: RecordType) -> usize {
    match rtype {
        RecordType::A => 0,
        RecordType::AAAA => 1,
        RecordType::SRV => 2,
        RecordType::PTR => 3,
        RecordType::TXT => 4,
        RecordType::SOA => 5,
        RecordType::NS => 6,
        RecordType::CNAME => 7,
        RecordType::ANY => 8,
        _ => 9,
    }
}

fn rcode_index(rcode: ResponseCode) -> usize {
    match u16::from(rcode) {
        code @ 0..=5 => usize::from(code),
        16 => 6,
        _ => 7,
    }
}

fn transport_index(transport: Transport) -> usize {
    match transport {
        Transport::Udp => 0,
        Transport::Tcp => 1,
    }
}

/// What one query turned into, for the counters.
#[derive(Clone, Copy, Debug)]
pub struct QueryOutcome {
    /// The question's type, when a question could be read.
    pub qtype: Option<RecordType>,
    /// The response code sent; `None` when the message was dropped.
    pub rcode: Option<ResponseCode>,
    /// Whether TC was set.
    pub truncated: bool,
    /// Whether the answer was NODATA (NOERROR, no answer records, in our zones).
    pub nodata: bool,
}

/// Counters of the DNS side, shared by every transport task.
#[derive(Debug)]
pub struct Metrics {
    queries: [[AtomicU64; QTYPES.len()]; TRANSPORTS.len()],
    responses: [AtomicU64; RCODES.len()],
    nodata: AtomicU64,
    truncated: AtomicU64,
    dropped: AtomicU64,
    rate_limited: [AtomicU64; LIMITED_ACTIONS.len()],
    tcp_rejected: AtomicU64,
    udp_holds: AtomicU64,
    duration: LatencyHistogram,
    started: SystemTime,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            queries: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            responses: std::array::from_fn(|_| AtomicU64::new(0)),
            nodata: AtomicU64::new(0),
            truncated: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            rate_limited: std::array::from_fn(|_| AtomicU64::new(0)),
            tcp_rejected: AtomicU64::new(0),
            udp_holds: AtomicU64::new(0),
            duration: LatencyHistogram::default(),
            started: SystemTime::now(),
        }
    }
}

impl Metrics {
    /// Records one query: no allocation, no lock.
    pub fn record(&self, transport: Transport, outcome: QueryOutcome, took: Duration) {
        self.count(transport, outcome);
        self.duration.record(took);
    }

    /// Records the queries of one batch, all answered in `took` (from the batch's arrival to
    /// its responses' send): no allocation, no lock, one histogram update.
    pub fn record_batch(&self, transport: Transport, outcomes: &[QueryOutcome], took: Duration) {
        for outcome in outcomes {
            self.count(transport, *outcome);
        }
        self.duration.record_many(took, outcomes.len() as u64);
    }

    fn count(&self, transport: Transport, outcome: QueryOutcome) {
        let qtype = outcome.qtype.map_or(QTYPES.len() - 1, qtype_index);
        self.queries[transport_index(transport)][qtype].fetch_add(1, Ordering::Relaxed);
        match outcome.rcode {
            Some(rcode) => {
                self.responses[rcode_index(rcode)].fetch_add(1, Ordering::Relaxed);
            }
            None => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        if outcome.truncated {
            self.truncated.fetch_add(1, Ordering::Relaxed);
        }
        if outcome.nodata {
            self.nodata.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one UDP response dropped or slipped by response rate limiting.
    pub fn record_rate_limited(&self, action: RateLimited) {
        let index = match action {
            RateLimited::Dropped => 0,
            RateLimited::Slipped => 1,
        };
        self.rate_limited[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one TCP connection closed at accept because the connection limit was reached.
    pub fn record_tcp_rejected(&self) {
        self.tcp_rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one hold of a UDP worker under sustained load (`dns.udp_coalesce_us`).
    pub fn record_udp_hold(&self) {
        self.udp_holds.fetch_add(1, Ordering::Relaxed);
    }

    /// Holds of the UDP workers so far.
    pub fn udp_holds(&self) -> u64 {
        self.udp_holds.load(Ordering::Relaxed)
    }

    /// UDP responses rate limited so far, dropped and slipped together.
    pub fn rate_limited(&self) -> u64 {
        self.rate_limited
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// TCP connections rejected at the connection limit so far.
    pub fn tcp_connections_rejected(&self) -> u64 {
        self.tcp_rejected.load(Ordering::Relaxed)
    }

    /// Responses sent with `rcode` (by its mnemonic, e.g. `NXDOMAIN`).
    pub fn responses(&self, rcode: &str) -> u64 {
        RCODES
            .iter()
            .position(|name| *name == rcode)
            .map_or(0, |i| self.responses[i].load(Ordering::Relaxed))
    }
}

/// What `/metrics` reports besides the query counters.
#[derive(Clone, Copy, Debug)]
pub struct SourceView<'a> {
    /// `file` or `kubernetes`.
    pub kind: &'static str,
    /// The watch source's counters, when it runs.
    pub watch: Option<&'a SourceStats>,
}

/// Renders every metric in the Prometheus text format (version 0.0.4).
pub fn render(metrics: &Metrics, index: &Index, source: SourceView<'_>) -> String {
    let mut out = String::with_capacity(8192);
    header(
        &mut out,
        "peerdns_queries_total",
        "counter",
        "DNS queries received, by transport and query type.",
    );
    for (t, transport) in TRANSPORTS.iter().enumerate() {
        for (q, qtype) in QTYPES.iter().enumerate() {
            let value = metrics.queries[t][q].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "peerdns_queries_total{{transport=\"{transport}\",type=\"{qtype}\"}} {value}"
            );
        }
    }
    header(
        &mut out,
        "peerdns_responses_total",
        "counter",
        "DNS responses sent, by response code.",
    );
    for (r, rcode) in RCODES.iter().enumerate() {
        let value = metrics.responses[r].load(Ordering::Relaxed);
        let _ = writeln!(out, "peerdns_responses_total{{rcode=\"{rcode}\"}} {value}");
    }
    counter(
        &mut out,
        "peerdns_nodata_responses_total",
        "NOERROR responses without answer records (NODATA).",
        metrics.nodata.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "peerdns_truncated_responses_total",
        "Responses sent with TC set (answer records cut to fit UDP).",
        metrics.truncated.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "peerdns_dropped_queries_total",
        "Messages dropped unanswered (no readable header, or a response).",
        metrics.dropped.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "peerdns_udp_holds_total",
        "Times a UDP worker waited dns.udp_coalesce_us before its next receive, under sustained load.",
        metrics.udp_holds.load(Ordering::Relaxed),
    );
    render_limits(&mut out, metrics);
    histogram(
        &mut out,
        "peerdns_request_duration_seconds",
        "Time from a query's bytes to its response's bytes (UDP fast paths: from its batch's arrival to the batch's send).",
        &metrics.duration,
    );
    gauge(
        &mut out,
        "peerdns_index_services",
        "Services published in the index.",
        index.service_count() as f64,
    );
    gauge(
        &mut out,
        "peerdns_index_endpoints",
        "Ready endpoint addresses published in the index.",
        index.endpoint_count() as f64,
    );
    gauge(
        &mut out,
        "peerdns_index_names",
        "Names answerable below Services (Service names and endpoint labels).",
        index.name_count() as f64,
    );
    gauge(
        &mut out,
        "peerdns_index_serial",
        "The SOA serial (changes whenever an answer does).",
        f64::from(index.serial()),
    );
    header(
        &mut out,
        "peerdns_source_synced",
        "gauge",
        "1 once the source delivered its first complete state.",
    );
    let _ = writeln!(
        out,
        "peerdns_source_synced{{source=\"{}\"}} {}",
        source.kind,
        u8::from(index.is_synced())
    );
    if let Some(watch) = source.watch {
        render_watch(&mut out, watch);
    }
    header(
        &mut out,
        "peerdns_build_info",
        "gauge",
        "Build information; the value is always 1.",
    );
    let _ = writeln!(
        out,
        "peerdns_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let uptime = SystemTime::now()
        .duration_since(metrics.started)
        .unwrap_or_default();
    gauge(
        &mut out,
        "peerdns_uptime_seconds",
        "Seconds since the server started.",
        uptime.as_secs_f64(),
    );
    out
}

fn render_limits(out: &mut String, metrics: &Metrics) {
    header(
        out,
        "peerdns_rate_limited_total",
        "counter",
        "UDP responses over their client prefix's rate, by what was done (limits.rrl_*).",
    );
    for (a, action) in LIMITED_ACTIONS.iter().enumerate() {
        let value = metrics.rate_limited[a].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "peerdns_rate_limited_total{{action=\"{action}\"}} {value}"
        );
    }
    counter(
        out,
        "peerdns_tcp_connections_rejected_total",
        "TCP connections closed at accept: limits.tcp_max_connections were open.",
        metrics.tcp_rejected.load(Ordering::Relaxed),
    );
}

fn render_watch(out: &mut String, watch: &SourceStats) {
    counter(
        out,
        "peerdns_source_events_total",
        "Objects delivered by the Kubernetes API watches (list items, changes, deletions).",
        watch.events(),
    );
    counter(
        out,
        "peerdns_source_watch_restarts_total",
        "Completed relists after the first list (410 Gone, a failed resume).",
        watch.relists(),
    );
    let now = unix_ms_now();
    let age = |unix_ms: u64| match unix_ms {
        0 => f64::NAN,
        millis => now.saturating_sub(millis) as f64 / 1000.0,
    };
    gauge(
        out,
        "peerdns_source_last_event_age_seconds",
        "Seconds since any watch last heard from the API: an event, a bookmark or a list page (NaN before any).",
        age(watch.heard_unix_ms()),
    );
    render_streams(out, watch, &age);
    histogram(
        out,
        "peerdns_propagation_event_seconds",
        "From a watch event's arrival to its answers being served.",
        &watch.event_to_served,
    );
    histogram(
        out,
        "peerdns_propagation_trigger_seconds",
        "From an EndpointSlice's last-change-trigger-time to its answers being served.",
        &watch.trigger_to_served,
    );
}

/// Per watch stream: failures by cause, state, and heard age. Streams are labelled `resource`
/// and `watch_namespace` (`*`: all), not `namespace`, which Prometheus gives the scraped pod.
fn render_streams(out: &mut String, watch: &SourceStats, age: &dyn Fn(u64) -> f64) {
    let labels = |stream: &StreamHealth| {
        let namespace = stream.scope.namespace.as_deref().unwrap_or("*");
        format!(
            "resource=\"{}\",watch_namespace=\"{}\"",
            stream.scope.kind.as_str(),
            escape_label(namespace)
        )
    };
    header(
        out,
        "peerdns_source_api_errors_total",
        "counter",
        "Failed Kubernetes API requests and watches, by watch stream and cause.",
    );
    for stream in &watch.streams {
        let labels = labels(stream);
        for cause in FailureCause::ALL {
            let value = stream.failures(cause);
            let cause = cause.as_str();
            let _ = writeln!(
                out,
                "peerdns_source_api_errors_total{{{labels},cause=\"{cause}\"}} {value}"
            );
        }
    }
    header(
        out,
        "peerdns_source_watch_state",
        "gauge",
        "1 for the state each watch stream is in: listing, watching (established), backing_off or stalled.",
    );
    for stream in &watch.streams {
        let labels = labels(stream);
        let current = stream.state();
        for state in WatchState::ALL {
            let value = u8::from(state == current);
            let state = state.as_str();
            let _ = writeln!(
                out,
                "peerdns_source_watch_state{{{labels},state=\"{state}\"}} {value}"
            );
        }
    }
    header(
        out,
        "peerdns_source_watch_heard_age_seconds",
        "gauge",
        "Seconds since each watch stream last heard from the API: an event, a bookmark or a list page (NaN before any).",
    );
    for stream in &watch.streams {
        let labels = labels(stream);
        let value = age(stream.heard_unix_ms());
        let _ = writeln!(
            out,
            "peerdns_source_watch_heard_age_seconds{{{labels}}} {value}"
        );
    }
}

/// A label value with `\\`, `"` and newlines escaped, as the text format requires.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

fn histogram(out: &mut String, name: &str, help: &str, histogram: &LatencyHistogram) {
    header(out, name, "histogram", help);
    let cumulative = histogram.cumulative();
    for (i, count) in cumulative.iter().enumerate().take(BUCKETS - 1) {
        let bound = LatencyHistogram::bucket_bound(i).as_secs_f64();
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", histogram.count());
    let _ = writeln!(out, "{name}_sum {}", histogram.sum().as_secs_f64());
    let _ = writeln!(out, "{name}_count {}", histogram.count());
}
