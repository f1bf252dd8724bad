//! Query counters: the bottom of the module graph (it names no other peerdns module).
//!
//! [`Metrics`] is built once and shared: the query path records with array-indexed atomics
//! (no string formatting, no lock, no allocation); [`Metrics::render`] formats the counters
//! only when `/metrics` is scraped (the admin listener adds the index's and the source's).
//! [`text`] writes the Prometheus text format, [`LatencyHistogram`] is the one histogram.
//! [`FileLoadStatus`] holds the file source's last load (the watcher records, `/metrics` and
//! `/debug/source` read it).
//!
//! Invariant: every label value is a fixed `&'static str` chosen by index, so the set of time
//! series is bounded whatever clients send.

mod file_load;
mod histogram;
pub mod text;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

pub use file_load::{FileLoadStatus, LastLoad};
pub use histogram::{BUCKETS, LatencyHistogram};
use text::{counter, header, histogram};

/// The transport a query came over, which decides its size limit and labels its counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP: 512 bytes, or the EDNS size within the configured cap.
    Udp,
    /// TCP: up to 65535 bytes.
    Tcp,
}

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

/// Kinds of zone transfer counted.
const TRANSFER_KINDS: [&str; 2] = ["axfr", "ixfr"];
/// How a zone transfer request ended.
const TRANSFER_OUTCOMES: [&str; 3] = ["complete", "refused", "aborted"];

/// How one zone transfer request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferOutcome {
    /// Every message sent.
    Complete,
    /// Answered with an error rcode (not allowed, not a zone, not synced, malformed).
    Refused,
    /// The connection failed or timed out mid-transfer.
    Aborted,
}

/// NOTIFY events counted.
const NOTIFY_EVENTS: [&str; 4] = ["sent", "acknowledged", "refused", "timed_out"];

/// One NOTIFY event (RFC 1996), for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotifyEvent {
    /// A NOTIFY sent to a secondary.
    Sent,
    /// Answered NOERROR.
    Acknowledged,
    /// Answered with an error rcode (the secondary does not take the zone from us).
    Refused,
    /// Not answered in time (it is sent again).
    TimedOut,
}

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
    transfers: [[AtomicU64; TRANSFER_OUTCOMES.len()]; TRANSFER_KINDS.len()],
    notify: [AtomicU64; NOTIFY_EVENTS.len()],
    duration: LatencyHistogram,
    started: SystemTime,
    file_load: Arc<FileLoadStatus>,
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
            transfers: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            notify: std::array::from_fn(|_| AtomicU64::new(0)),
            duration: LatencyHistogram::default(),
            started: SystemTime::now(),
            file_load: Arc::default(),
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

    /// Counts one zone transfer request of `kind` (`axfr` or `ixfr`) that ended as `outcome`.
    pub fn record_transfer(&self, kind: &str, outcome: TransferOutcome) {
        let k = TRANSFER_KINDS.iter().position(|k| *k == kind).unwrap_or(0);
        self.transfers[k][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Zone transfer requests of `kind` that ended as `outcome` so far.
    pub fn transfers(&self, kind: &str, outcome: TransferOutcome) -> u64 {
        TRANSFER_KINDS
            .iter()
            .position(|k| *k == kind)
            .map_or(0, |k| {
                self.transfers[k][outcome as usize].load(Ordering::Relaxed)
            })
    }

    /// Counts one NOTIFY event.
    pub fn record_notify(&self, event: NotifyEvent) {
        self.notify[event as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// NOTIFY events of one kind so far.
    pub fn notify_events(&self, event: NotifyEvent) -> u64 {
        self.notify[event as usize].load(Ordering::Relaxed)
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

impl Metrics {
    /// Writes these counters in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        header(
            out,
            "peerdns_queries_total",
            "counter",
            "DNS queries received, by transport and query type.",
        );
        for (t, transport) in TRANSPORTS.iter().enumerate() {
            for (q, qtype) in QTYPES.iter().enumerate() {
                let value = self.queries[t][q].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "peerdns_queries_total{{transport=\"{transport}\",type=\"{qtype}\"}} {value}"
                );
            }
        }
        header(
            out,
            "peerdns_responses_total",
            "counter",
            "DNS responses sent, by response code.",
        );
        for (r, rcode) in RCODES.iter().enumerate() {
            let value = self.responses[r].load(Ordering::Relaxed);
            let _ = writeln!(out, "peerdns_responses_total{{rcode=\"{rcode}\"}} {value}");
        }
        counter(
            out,
            "peerdns_nodata_responses_total",
            "NOERROR responses without answer records (NODATA).",
            self.nodata.load(Ordering::Relaxed),
        );
        counter(
            out,
            "peerdns_truncated_responses_total",
            "Responses sent with TC set (answer records cut to fit UDP).",
            self.truncated.load(Ordering::Relaxed),
        );
        counter(
            out,
            "peerdns_dropped_queries_total",
            "Messages dropped unanswered (no readable header, or a response).",
            self.dropped.load(Ordering::Relaxed),
        );
        counter(
            out,
            "peerdns_udp_holds_total",
            "Times a UDP worker waited dns.udp_coalesce_us before its next receive, under sustained load.",
            self.udp_holds.load(Ordering::Relaxed),
        );
        render_limits(out, self);
        header(
            out,
            "peerdns_transfers_total",
            "counter",
            "Zone transfer requests (AXFR, IXFR over TCP), by kind and how they ended.",
        );
        for (k, kind) in TRANSFER_KINDS.iter().enumerate() {
            for (o, outcome) in TRANSFER_OUTCOMES.iter().enumerate() {
                let value = self.transfers[k][o].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "peerdns_transfers_total{{kind=\"{kind}\",outcome=\"{outcome}\"}} {value}"
                );
            }
        }
        header(
            out,
            "peerdns_notify_total",
            "counter",
            "NOTIFY messages to secondaries (transfer.notify): sent, and their answers: acknowledged, refused, timed_out (sent again).",
        );
        for (e, event) in NOTIFY_EVENTS.iter().enumerate() {
            let value = self.notify[e].load(Ordering::Relaxed);
            let _ = writeln!(out, "peerdns_notify_total{{event=\"{event}\"}} {value}");
        }
        histogram(
            out,
            "peerdns_request_duration_seconds",
            "Time from a query's bytes to its response's bytes (UDP fast paths: from its batch's arrival to the batch's send).",
            &self.duration,
        );
    }

    /// The file source's load history (recorded by the file watcher; unused with the
    /// Kubernetes source).
    pub fn file_load(&self) -> &Arc<FileLoadStatus> {
        &self.file_load
    }

    /// How long since these metrics were created (the server started).
    pub fn uptime(&self) -> Duration {
        SystemTime::now()
            .duration_since(self.started)
            .unwrap_or_default()
    }
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
