//! `/debug/source`: what the source of cluster state is doing, and when it last heard from the
//! Kubernetes API, stream by stream (S3).
//!
//! The answer is JSON: the source kind, whether it synced; for the file source its last load
//! (`last_load`: when it was attempted, whether it worked, the error with file and line when
//! not, when the state served was loaded, distinct failures so far, the objects it ignored);
//! and for the Kubernetes source the
//! API server, the seconds since any stream last heard from it, and per stream (kind and
//! namespace) its state (`listing`, `watching`, `backing_off`, `stalled`), heard age, failures
//! by cause, the wait before its next retry, and its last failure in words.
//!
//! Invariant: it only reads the source's counters; nothing here changes what DNS answers.

use serde_json::{Map, Value, json};

use super::AdminState;
use crate::source::kubernetes::StreamHealth;
use crate::source::kubernetes::failure::FailureCause;
use crate::source::kubernetes::health::unix_ms_now;

/// The source's state now.
pub fn describe(state: &AdminState) -> Value {
    let mut body = json!({
        "source": state.source_kind,
        "synced": state.index.is_synced(),
    });
    if state.source_kind == "file" {
        body["last_load"] = file_load(state);
    }
    let Some(watch) = &state.watch else {
        return body;
    };
    let now = unix_ms_now();
    let streams: Vec<Value> = watch.streams.iter().map(|s| stream(s, now)).collect();
    body["server"] = json!(&*watch.server);
    body["heard_seconds_ago"] = seconds_since(now, watch.heard_unix_ms());
    body["events"] = json!(watch.events());
    body["relists"] = json!(watch.relists());
    body["streams"] = json!(streams);
    body
}

/// The file source's last load.
fn file_load(state: &AdminState) -> Value {
    let status = state.metrics.file_load();
    let last = status.last_load();
    let now = unix_ms_now();
    json!({
        "attempt_seconds_ago": seconds_since(now, last.attempt_unix_ms),
        "attempt_unix_ms": last.attempt_unix_ms,
        "ok": last.ok,
        "error": last.error,
        "success_seconds_ago": seconds_since(now, last.success_unix_ms),
        "success_unix_ms": last.success_unix_ms,
        "errors": status.errors(),
        "ignored": last.ignored,
    })
}

fn stream(health: &StreamHealth, now: u64) -> Value {
    let failures: Map<String, Value> = FailureCause::ALL
        .iter()
        .map(|cause| (cause.as_str().to_string(), json!(health.failures(*cause))))
        .collect();
    let last_failure = health.last_failure().map(|failure| {
        json!({
            "seconds_ago": seconds_since(now, failure.unix_ms),
            "cause": failure.cause.as_str(),
            "message": failure.message,
        })
    });
    let retry_in = health
        .retry_at_unix_ms()
        .map(|at| at.saturating_sub(now) as f64 / 1000.0);
    json!({
        "kind": health.scope.kind.as_str(),
        "namespace": health.scope.namespace.as_deref().unwrap_or("*"),
        "state": health.state().as_str(),
        "heard_seconds_ago": seconds_since(now, health.heard_unix_ms()),
        "failures": failures,
        "retry_in_seconds": retry_in,
        "last_failure": last_failure,
    })
}

/// Seconds from `unix_ms` to `now`, or null for 0 (never).
fn seconds_since(now: u64, unix_ms: u64) -> Value {
    match unix_ms {
        0 => Value::Null,
        at => json!(now.saturating_sub(at) as f64 / 1000.0),
    }
}
