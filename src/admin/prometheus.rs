//! `/metrics`: the query counters ([`Metrics::render`]) and what only the admin side reads:
//! the index's size and serial, the source's state and, for the Kubernetes source, each watch
//! stream's health; for the file source, its last load (`peerdns_file_*`).
//!
//! Invariant: rendering only reads; it takes no lock the query path takes.

use std::fmt::Write as _;

use crate::index::Index;
use crate::metrics::text::{counter, escape_label, gauge, header, histogram};
use crate::metrics::{FileLoadStatus, Metrics};
use crate::source::kubernetes::failure::FailureCause;
use crate::source::kubernetes::health::unix_ms_now;
use crate::source::kubernetes::{SourceStats, StreamHealth, WatchState};

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
    metrics.render(&mut out);
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
    gauge(
        &mut out,
        "peerdns_ixfr_history_changes",
        "Serial steps kept for IXFR (transfer.ixfr_history at most; 0 without [transfer]).",
        index.history_len() as f64,
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
    if source.kind == "file" {
        render_file(&mut out, metrics.file_load());
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
    let uptime = metrics.uptime();
    gauge(
        &mut out,
        "peerdns_uptime_seconds",
        "Seconds since the server started.",
        uptime.as_secs_f64(),
    );
    if let Some(bytes) = resident_bytes() {
        gauge(
            &mut out,
            "peerdns_process_resident_memory_bytes",
            "Resident memory of the process (what the sizing formula in the README predicts).",
            bytes as f64,
        );
    }
    out
}

/// This process's resident set size, from `/proc/self/statm` (Linux); `None` elsewhere.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // The kernel's page size (4 KiB on x86-64, up to 64 KiB on arm64), from the aux vector.
    Some(pages * rustix::param::page_size() as u64)
}

/// The file source's last load: whether it worked, when, and how many loads failed.
fn render_file(out: &mut String, status: &FileLoadStatus) {
    let last = status.last_load();
    gauge(
        out,
        "peerdns_file_last_load_success",
        "1 when the last load of the cluster file succeeded; 0 when it failed (the last good state is still served).",
        f64::from(u8::from(last.ok)),
    );
    let seconds = |unix_ms: u64| unix_ms as f64 / 1000.0;
    gauge(
        out,
        "peerdns_file_last_load_timestamp_seconds",
        "Unix time of the last successful load of the cluster file (the state being served).",
        seconds(last.success_unix_ms),
    );
    gauge(
        out,
        "peerdns_file_last_load_attempt_timestamp_seconds",
        "Unix time of the last attempt to load the cluster file, good or not.",
        seconds(last.attempt_unix_ms),
    );
    counter(
        out,
        "peerdns_file_load_errors_total",
        "Failed loads of the cluster file (each distinct failure once: a broken edit, a missing file).",
        status.errors(),
    );
    gauge(
        out,
        "peerdns_file_ignored_objects",
        "Objects of the cluster file the last good load did not use (see peerdns --check-config).",
        last.ignored.len() as f64,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_this_process_size() {
        let bytes = resident_bytes().expect("Linux has /proc/self/statm");
        // A test binary with its runtime holds megabytes, far less than a terabyte.
        assert!(bytes > 1 << 20 && bytes < 1 << 40, "{bytes} bytes");
        let before = resident_bytes().unwrap();
        let block = vec![1u8; 64 << 20];
        let after = resident_bytes().unwrap();
        assert!(
            after >= before + (32 << 20),
            "{before} -> {after} after touching 64 MiB"
        );
        drop(block);
    }
}
