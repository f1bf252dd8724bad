//! The Prometheus text exposition format (version 0.0.4): one writer per metric shape.
//!
//! Invariant: every writer emits `# HELP` and `# TYPE` once, then its samples; label values
//! given by callers go through [`escape_label`].

use std::fmt::Write as _;

use super::histogram::{BUCKETS, LatencyHistogram};

/// A label value with `\\`, `"` and newlines escaped, as the text format requires.
pub fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `# HELP` and `# TYPE` lines.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A counter without labels.
pub fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}

/// A gauge without labels.
pub fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

/// A histogram of durations, in seconds.
pub fn histogram(out: &mut String, name: &str, help: &str, histogram: &LatencyHistogram) {
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
