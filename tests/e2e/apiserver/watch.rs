//! Watch responses: a chunked JSON stream, one `{"type":…,"object":…}` event per line, fed by a
//! task per watch.
//!
//! The task first replays the changes the store handed it (history after the requested
//! resourceVersion, or synthetic ADDED events for a watch from "0"/unset), then forwards live
//! changes, filtered by resource, namespace and label selector. Invariants:
//! - an update that moves an object into the selection is sent as ADDED, out of it as DELETED,
//!   as the real server does;
//! - a BOOKMARK carries the newest resourceVersion the task has consumed from the store (matching
//!   or not), so resuming from it never skips an event; bookmarks go out every
//!   [`BOOKMARK_INTERVAL`] and right before a `timeoutSeconds` close, only when the client asked;
//! - a too-old resourceVersion yields one ERROR event (Status 410 Expired) and a clean end;
//! - `timeoutSeconds` ends the stream cleanly (terminating chunk); an abort (`drop_watches`,
//!   unreachable, a watch that fell too far behind) ends it with a body error, so hyper cuts the
//!   connection mid-stream and the client sees an unexpected EOF, like a lost connection;
//! - a stall (`stall_watches`) sends nothing more at all, and keeps the connection open until
//!   the client goes away or the watch is aborted.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::SinkExt;
use futures::channel::mpsc;
use http_body_util::{BodyExt, StreamBody};
use hyper::Response;
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, interval_at, sleep};
use tokio_util::sync::CancellationToken;

use super::reply::{Body, streaming};
use super::resource::Resource;
use super::selector::LabelSelector;
use super::store::{Change, ChangeType, WatchStart};

/// How often an idle watch that allows bookmarks gets one.
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);

/// What one watch request selects and how it behaves.
pub struct WatchSpec {
    pub resource: Resource,
    /// `None` for a cluster-wide watch.
    pub namespace: Option<String>,
    pub selector: LabelSelector,
    pub bookmarks: bool,
    /// `sendInitialEvents=true`: mark the end of the replay with the
    /// `k8s.io/initial-events-end` bookmark.
    pub initial_events_end: bool,
    pub timeout: Duration,
}

type Sender = mpsc::Sender<Result<Frame<Bytes>, io::Error>>;

/// What can interrupt a watch from outside: the tokens current when it started.
pub struct Interrupts {
    /// Cut the connection (`drop_watches`, unreachable).
    pub abort: CancellationToken,
    /// Go silent (`stall_watches`).
    pub stall: CancellationToken,
}

/// How often a stalled watch checks whether its client went away.
const STALL_POLL: Duration = Duration::from_millis(100);

/// Starts the task serving one watch and returns its streaming response. `start` is the store
/// snapshot, or the Status of an ERROR event to send instead.
pub fn respond(
    spec: WatchSpec,
    start: Result<WatchStart, Value>,
    interrupts: Interrupts,
    open: Arc<AtomicUsize>,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel(64);
    open.fetch_add(1, Ordering::SeqCst);
    tokio::spawn(async move {
        // Err only means the client went away; either way the watch is over.
        let _ = run(&spec, start, &interrupts, tx).await;
        open.fetch_sub(1, Ordering::SeqCst);
    });
    streaming(StreamBody::new(rx).boxed_unsync())
}

/// Serves one watch until timeout, abort, or the client going away (`Err`).
async fn run(
    spec: &WatchSpec,
    start: Result<WatchStart, Value>,
    interrupts: &Interrupts,
    mut tx: Sender,
) -> Result<(), mpsc::SendError> {
    let abort = &interrupts.abort;
    let mut start = match start {
        Ok(start) => start,
        Err(status) => return send(&mut tx, "ERROR", &status).await,
    };
    for change in &start.replay {
        forward(spec, change, &mut tx).await?;
    }
    let mut last_rv = start.rv;
    if spec.initial_events_end {
        send(&mut tx, "BOOKMARK", &bookmark(spec.resource, last_rv, true)).await?;
    }
    let deadline = sleep(spec.timeout);
    tokio::pin!(deadline);
    let mut ticks = interval_at(Instant::now() + BOOKMARK_INTERVAL, BOOKMARK_INTERVAL);
    loop {
        tokio::select! {
            // Interruptions first: a change written right after `stall_watches` is not sent.
            biased;
            () = abort.cancelled() => return cut(&mut tx, "watch dropped").await,
            () = interrupts.stall.cancelled() => return stay_silent(abort, &mut tx).await,
            () = &mut deadline => return close(spec, last_rv, &mut tx).await,
            _ = ticks.tick(), if spec.bookmarks => {
                send(&mut tx, "BOOKMARK", &bookmark(spec.resource, last_rv, false)).await?;
            }
            received = start.live.recv() => match received {
                Ok(change) => {
                    last_rv = change.rv;
                    forward(spec, &change, &mut tx).await?;
                }
                Err(RecvError::Lagged(_)) => return cut(&mut tx, "watch fell behind").await,
                Err(RecvError::Closed) => return Ok(()),
            },
        }
    }
}

/// The clean end of a watch at `timeoutSeconds`: a last bookmark if allowed, then EOF.
async fn close(spec: &WatchSpec, last_rv: u64, tx: &mut Sender) -> Result<(), mpsc::SendError> {
    if spec.bookmarks {
        send(tx, "BOOKMARK", &bookmark(spec.resource, last_rv, false)).await?;
    }
    Ok(())
}

/// A stalled watch: nothing more is sent until the client goes away or the watch is aborted.
async fn stay_silent(abort: &CancellationToken, tx: &mut Sender) -> Result<(), mpsc::SendError> {
    loop {
        tokio::select! {
            () = abort.cancelled() => return cut(tx, "watch dropped").await,
            () = sleep(STALL_POLL) => {
                if tx.is_closed() {
                    return Ok(());
                }
            }
        }
    }
}

/// An abrupt end: a body error makes hyper cut the connection without the final chunk.
async fn cut(tx: &mut Sender, why: &str) -> Result<(), mpsc::SendError> {
    tx.send(Err(io::Error::other(why.to_string()))).await
}

/// Sends `change` if this watch selects it, in the shape the selector dictates.
async fn forward(
    spec: &WatchSpec,
    change: &Change,
    tx: &mut Sender,
) -> Result<(), mpsc::SendError> {
    match project(spec, change) {
        Some(event_type) => send(tx, event_type, &change.object).await,
        None => Ok(()),
    }
}

/// The event type `change` appears as on this watch, or `None` if the watch does not see it.
fn project(spec: &WatchSpec, change: &Change) -> Option<&'static str> {
    let in_scope = change.resource == spec.resource
        && spec
            .namespace
            .as_ref()
            .is_none_or(|ns| *ns == change.namespace);
    if !in_scope {
        return None;
    }
    let now = spec.selector.matches(&change.object);
    let before = change
        .previous
        .as_ref()
        .is_some_and(|p| spec.selector.matches(p));
    let shown = match (change.change, before, now) {
        (ChangeType::Added, _, true) => ChangeType::Added,
        (ChangeType::Modified, true, true) => ChangeType::Modified,
        (ChangeType::Modified, false, true) => ChangeType::Added,
        (ChangeType::Modified, true, false) | (ChangeType::Deleted, true, _) => ChangeType::Deleted,
        _ => return None,
    };
    Some(shown.as_str())
}

/// The object of a BOOKMARK event, shaped like the real server's: kind, apiVersion and
/// metadata.resourceVersion only (plus the initial-events-end annotation when it marks one).
fn bookmark(resource: Resource, rv: u64, initial_events_end: bool) -> Value {
    let mut metadata = json!({ "resourceVersion": rv.to_string() });
    if initial_events_end {
        metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    json!({ "kind": resource.kind(), "apiVersion": resource.api_version(), "metadata": metadata })
}

async fn send(tx: &mut Sender, event_type: &str, object: &Value) -> Result<(), mpsc::SendError> {
    let mut line = json!({ "type": event_type, "object": object }).to_string();
    line.push('\n');
    tx.send(Ok(Frame::data(Bytes::from(line)))).await
}
