//! Applies watcher events from several watch streams to the one index writer.
//!
//! Each stream watches one resource kind in one scope (all namespaces, or one) and reports
//! `Init / InitApply* / InitDone` for every (re)list, then `Apply` / `Delete`. The rules:
//!
//! - **First sync, in one step.** Until every stream has finished its first list, objects are
//!   kept aside (as model types; the index is still empty, so this is the only copy) and the
//!   index is untouched; when the last stream finishes, the whole state is applied with
//!   `replace_all` and the index is marked synced (R11: until then negatives are SERVFAIL).
//! - **Relists after that, in place.** `InitApply` objects are applied as they come (an
//!   unchanged object publishes nothing) and only their keys are remembered; `InitDone` deletes
//!   whatever the stream's scope holds that the relist did not mention. No second copy of the
//!   world is held.
//! - **Bad objects** are skipped with a warning naming them; the last good version stays.
//!
//! Invariant: the index is marked synced once and never unmarked: an API outage keeps the last
//! state served.

use std::collections::{HashMap, HashSet};
use std::time::{Instant, SystemTime};

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use kube::runtime::watcher::Event;
use tracing::{info, warn};

use super::freshness::SourceStats;
use crate::index::IndexWriter;
use crate::model::{ClusterState, EndpointSlice, Service, ServiceKey, SliceKey};
use crate::source::convert;

/// One watch stream's resource and scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamScope {
    /// What the stream watches.
    pub kind: WatchedKind,
    /// `None`: every namespace; else one namespace.
    pub namespace: Option<String>,
}

/// The resource a stream watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchedKind {
    /// `v1 services`.
    Services,
    /// `discovery.k8s.io/v1 endpointslices`.
    EndpointSlices,
}

impl WatchedKind {
    /// The resource's plural name, as logs and metric labels show it.
    pub fn as_str(self) -> &'static str {
        match self {
            WatchedKind::Services => "services",
            WatchedKind::EndpointSlices => "endpointslices",
        }
    }
}

/// One event from one stream.
#[derive(Debug)]
pub enum Change {
    /// A Service event.
    Service(Box<Event<core::Service>>),
    /// An EndpointSlice event.
    Slice(Box<Event<discovery::EndpointSlice>>),
}

#[derive(Debug, Default)]
struct StreamState {
    /// The first list finished (ever).
    listed_once: bool,
    /// Keys seen by the relist in progress; `Some` between `Init` and `InitDone`.
    relist_seen: Option<HashSet<Key>>,
    /// Objects gathered before the first sync.
    initial: HashMap<Key, Object>,
    /// The highest resourceVersion among them.
    initial_version: Option<u64>,
}

/// An event object's key (always, for deletes) and its model (when it converts).
type Converted = Option<(Key, Option<Object>)>;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Service(ServiceKey),
    Slice(SliceKey),
}

#[derive(Debug)]
enum Object {
    Service(Service),
    /// A slice, with its `endpoints.kubernetes.io/last-change-trigger-time` when present.
    Slice(EndpointSlice, Option<SystemTime>),
}

/// Applies events from a fixed set of streams to the index writer.
#[derive(Debug)]
pub struct Synchronizer {
    writer: IndexWriter,
    scopes: Vec<StreamScope>,
    streams: Vec<StreamState>,
    synced: bool,
    stats: std::sync::Arc<SourceStats>,
}

impl Synchronizer {
    /// A synchronizer for streams `scopes` (stream ids are indexes into it).
    pub fn new(
        writer: IndexWriter,
        scopes: Vec<StreamScope>,
        stats: std::sync::Arc<SourceStats>,
    ) -> Self {
        let streams = scopes.iter().map(|_| StreamState::default()).collect();
        Self {
            writer,
            scopes,
            streams,
            synced: false,
            stats,
        }
    }

    /// Ends the grace of endpoints that left their slice (see `index/departures.rs`).
    pub fn expire_departures(&mut self, now: Instant) {
        self.writer.expire_departures(now);
    }

    /// Applies one event of stream `stream`, received at `arrived`.
    pub fn handle(&mut self, stream: usize, change: Change, arrived: Instant) {
        if stream >= self.streams.len() {
            return;
        }
        match change {
            Change::Service(event) => self.handle_event(stream, *event, arrived, service_object),
            Change::Slice(event) => self.handle_event(stream, *event, arrived, slice_object),
        }
    }

    fn handle_event<K: kube::Resource>(
        &mut self,
        stream: usize,
        event: Event<K>,
        arrived: Instant,
        convert: fn(&K) -> Converted,
    ) {
        // The serial follows the API's resourceVersion (R8): each change is served at the
        // version of the object it applies (a deletion's, for a delete).
        if let Event::InitApply(object) | Event::Apply(object) | Event::Delete(object) = &event {
            let version = resource_version(object);
            self.writer.set_version(version);
            if !self.synced {
                let initial = &mut self.streams[stream].initial_version;
                *initial = (*initial).max(version);
            }
        }
        if matches!(
            event,
            Event::InitApply(_) | Event::Apply(_) | Event::Delete(_)
        ) {
            self.stats.record_event();
        }
        match event {
            Event::Init => self.begin_list(stream),
            Event::InitApply(object) => {
                if let Some((key, Some(object))) = convert(&object) {
                    self.list_item(stream, key, object, arrived);
                }
            }
            Event::InitDone => self.end_list(stream),
            Event::Apply(object) => {
                // An object that no longer converts keeps its last good version.
                if let Some((key, Some(object))) = convert(&object) {
                    self.apply(stream, key, object, arrived);
                }
            }
            Event::Delete(object) => {
                if let Some((key, _)) = convert(&object) {
                    self.delete(stream, &key);
                }
            }
        }
    }

    fn begin_list(&mut self, stream: usize) {
        let state = &mut self.streams[stream];
        state.initial.clear();
        state.initial_version = None;
        state.relist_seen = Some(HashSet::new());
    }

    fn list_item(&mut self, stream: usize, key: Key, object: Object, arrived: Instant) {
        if let Some(seen) = self.streams[stream].relist_seen.as_mut() {
            seen.insert(key.clone());
        }
        self.apply(stream, key, object, arrived);
    }

    fn end_list(&mut self, stream: usize) {
        let seen = self.streams[stream].relist_seen.take().unwrap_or_default();
        if self.streams[stream].listed_once {
            self.stats.record_relist();
        }
        self.streams[stream].listed_once = true;
        if !self.synced {
            // Before the first sync the gathered objects are the keys' record: the set is
            // not needed, and freed now it is not left resident by the sync's release below.
            drop(seen);
            if self.streams.iter().all(|s| s.listed_once) {
                self.first_sync();
            }
            return;
        }
        let scope = &self.scopes[stream];
        let vanished: Vec<Key> = match scope.kind {
            WatchedKind::Services => self
                .writer
                .service_keys()
                .filter(|k| in_scope(scope, &k.namespace))
                .map(|k| Key::Service(k.clone()))
                .filter(|k| !seen.contains(k))
                .collect(),
            WatchedKind::EndpointSlices => self
                .writer
                .slice_keys()
                .filter(|k| in_scope(scope, &k.namespace))
                .map(Key::Slice)
                .filter(|k| !seen.contains(k))
                .collect(),
        };
        if !vanished.is_empty() {
            info!(removed = vanished.len(), scope = ?self.scopes[stream], "relist removed objects deleted while the watch was down");
        }
        for key in vanished {
            self.delete(stream, &key);
        }
    }

    fn first_sync(&mut self) {
        // Served at the highest resourceVersion listed, so replicas that list the same
        // objects report the same serial (R8); the time if the API gave none that parse.
        let version = self
            .streams
            .iter()
            .filter_map(|s| s.initial_version)
            .max()
            .or_else(unix_time);
        let mut state = ClusterState {
            version,
            ..ClusterState::default()
        };
        for stream in &mut self.streams {
            // Taken, not drained: a drained map keeps its table (megabytes for a large
            // cluster's list), and nothing is gathered here again.
            for object in std::mem::take(&mut stream.initial).into_values() {
                match object {
                    Object::Service(service) => state.services.push(service),
                    Object::Slice(slice, _) => state.slices.push(slice),
                }
            }
        }
        info!(
            services = state.services.len(),
            slices = state.slices.len(),
            "first complete list received: serving"
        );
        // The initial lists freed far more than the index keeps: `load_all` gives it back.
        self.writer.load_all(state);
        self.writer.mark_synced();
        self.synced = true;
        self.stats.mark_synced();
    }

    fn apply(&mut self, stream: usize, key: Key, object: Object, arrived: Instant) {
        if !self.synced {
            self.streams[stream].initial.insert(key, object);
            return;
        }
        match object {
            Object::Service(service) => self.writer.apply_service(service),
            Object::Slice(slice, trigger) => {
                self.writer.apply_slice(slice);
                self.stats.record_published(arrived, trigger);
            }
        }
    }

    fn delete(&mut self, stream: usize, key: &Key) {
        if !self.synced {
            self.streams[stream].initial.remove(key);
            return;
        }
        match key {
            Key::Service(key) => self.writer.delete_service(key),
            Key::Slice(key) => self.writer.delete_slice(key),
        }
    }
}

/// An object's resourceVersion as a number (etcd's revision; opaque strings give none).
fn resource_version<K: kube::Resource>(object: &K) -> Option<u64> {
    object.meta().resource_version.as_deref()?.parse().ok()
}

/// The Unix time in seconds.
fn unix_time() -> Option<u64> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?;
    Some(now.as_secs())
}

fn in_scope(scope: &StreamScope, namespace: &str) -> bool {
    scope.namespace.as_deref().is_none_or(|ns| ns == namespace)
}

/// Converts a Service event object: its key always (for deletes), its model when valid.
fn service_object(service: &core::Service) -> Converted {
    let name = service.metadata.name.clone()?;
    let namespace = convert::namespace_of(&service.metadata).to_string();
    let key = Key::Service(ServiceKey::new(namespace, name));
    match convert::service(service) {
        Ok(model) => Some((key, Some(Object::Service(model)))),
        Err(error) => {
            warn!(%error, "skipping a Service the API sent");
            Some((key, None))
        }
    }
}

/// Converts an EndpointSlice event object, keeping its trigger time for freshness.
fn slice_object(slice: &discovery::EndpointSlice) -> Converted {
    let name = slice.metadata.name.clone()?;
    let namespace = convert::namespace_of(&slice.metadata).to_string();
    let key = Key::Slice(SliceKey { namespace, name });
    match convert::endpoint_slice(slice) {
        Ok(Some(model)) => {
            let trigger = trigger_time(&slice.metadata);
            Some((key, Some(Object::Slice(model, trigger))))
        }
        Ok(None) => Some((key, None)),
        Err(error) => {
            warn!(%error, "skipping an EndpointSlice the API sent");
            Some((key, None))
        }
    }
}

/// The annotation the EndpointSlice controller sets to the time of the change that caused
/// this version of the slice.
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

fn trigger_time(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<SystemTime> {
    let text = meta.annotations.as_ref()?.get(TRIGGER_TIME_ANNOTATION)?;
    let timestamp: k8s_openapi::jiff::Timestamp = text.parse().ok()?;
    Some(SystemTime::from(timestamp))
}

#[cfg(test)]
mod tests;
